//! The server side of one automerge-repo connection, as a sans-IO state machine.
//!
//! API CONTRACT (the server depends on these names):
//! ```ignore
//! let mut conn = Connection::new(ConnectionConfig { our_peer_id, our_metadata, expected_peer_id: None });
//! match conn.handle_message(message)? {       // Err(Violation) => send violation.to_error_message(..), close
//!     Inbound::Joined { remote, reply } => { /* send reply (a `peer` message) */ }
//!     Inbound::Request(m) | Inbound::Sync(m) => { /* route to document */ }
//!     Inbound::Ephemeral(e) => { /* relay */ }
//!     Inbound::Leave => { /* close */ }
//!     Inbound::Ignored { reason } => {}
//! }
//! ```

use crate::ids::PeerId;
use crate::message::{DocMessage, Ephemeral, Message, PeerMetadata};

#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub our_peer_id: PeerId,
    pub our_metadata: PeerMetadata,
    /// When set (bound by authentication at upgrade), a `join` claiming another id is refused.
    pub expected_peer_id: Option<PeerId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemotePeer {
    pub peer_id: PeerId,
    pub metadata: PeerMetadata,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Joined { remote: RemotePeer, reply: Message },
    Request(DocMessage),
    Sync(DocMessage),
    Ephemeral(Ephemeral),
    Leave,
    Ignored { reason: &'static str },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Violation {
    #[error("expected `join` before `{0}`")]
    NotJoined(&'static str),
    #[error("no supported protocol version offered")]
    UnsupportedProtocolVersion,
    #[error("senderId does not match the joined peer")]
    SenderMismatch,
    #[error("targetId is not this server")]
    TargetMismatch,
    #[error("peer id is not the one bound to this connection")]
    PeerIdNotAllowed,
    #[error("a `{0}` message is not accepted from a client")]
    UnexpectedMessage(&'static str),
}

pub struct Connection {
    config: ConnectionConfig,
    remote: Option<RemotePeer>,
}

impl Connection {
    pub fn new(config: ConnectionConfig) -> Self {
        Self { config, remote: None }
    }
    pub fn remote(&self) -> Option<&RemotePeer> {
        self.remote.as_ref()
    }
    pub fn our_peer_id(&self) -> &PeerId {
        &self.config.our_peer_id
    }
    pub fn handle_message(&mut self, message: Message) -> Result<Inbound, Violation> {
        todo!("{message:?}")
    }
    /// The `error` message to send before closing because of `violation`.
    pub fn error_message(&self, violation: &Violation) -> Message {
        todo!("{violation:?}")
    }
}
