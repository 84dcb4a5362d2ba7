//! The server side of one automerge-repo connection, as a sans-IO state machine.
//!
//! [`Connection`] owns the handshake and the per-message identity checks; it knows nothing
//! of documents, sockets or time. What it hands back ([`Inbound`]) is already checked, so
//! the document layer can trust `sender_id` and `target_id`.

use crate::PROTOCOL_VERSION;
use crate::ids::PeerId;
use crate::message::{DocMessage, Ephemeral, ErrorMessage, Join, Message, Peer, PeerMetadata};

/// What a [`Connection`] needs to know about this server.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Our id, sent as `senderId` and expected as every message's `targetId`.
    pub our_peer_id: PeerId,
    /// Sent to the client in `peer`.
    pub our_metadata: PeerMetadata,
    /// When set (bound by authentication at upgrade), a `join` claiming another id is refused.
    pub expected_peer_id: Option<PeerId>,
}

/// The client at the other end, as its `join` described it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotePeer {
    /// The id it joined with; every later message must carry it as `senderId`.
    pub peer_id: PeerId,
    /// Its storage metadata (the default, no storage and not ephemeral, if it sent none).
    pub metadata: PeerMetadata,
}

/// A checked message for the driver to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// The handshake succeeded (or was repeated): send `reply`, a `peer` message.
    Joined {
        /// Who joined.
        remote: RemotePeer,
        /// The `peer` message to send back.
        reply: Message,
    },
    /// A sync message from a client that has no copy of the document.
    Request(DocMessage),
    /// Any other sync message.
    Sync(DocMessage),
    /// An ephemeral message to relay (never store).
    Ephemeral(Ephemeral),
    /// The client says it is leaving: close the connection.
    Leave,
    /// A valid message that needs no action; `reason` is for logs.
    Ignored {
        /// Why nothing is done, in English.
        reason: &'static str,
    },
}

/// A client broke the protocol: send [`Connection::error_message`], then close.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Violation {
    /// A message other than `join` arrived first (the type is named).
    #[error("expected `join` before `{0}`")]
    NotJoined(&'static str),
    /// `supportedProtocolVersions` does not contain [`PROTOCOL_VERSION`].
    #[error("no supported protocol version offered")]
    UnsupportedProtocolVersion,
    /// A `senderId` other than the joined peer's, including a second `join` under a new id.
    #[error("senderId does not match the joined peer")]
    SenderMismatch,
    /// A `targetId` other than our peer id.
    #[error("targetId is not this server")]
    TargetMismatch,
    /// `join` claimed an id other than [`ConnectionConfig::expected_peer_id`].
    #[error("peer id is not the one bound to this connection")]
    PeerIdNotAllowed,
    /// A message only a server sends (`peer`) came from the client.
    #[error("a `{0}` message is not accepted from a client")]
    UnexpectedMessage(&'static str),
}

/// The server side of one connection: handshake, then identity checks on every message.
///
/// # Driving contract
///
/// 1. Create one `Connection` per accepted WebSocket with [`Connection::new`]; bind
///    [`ConnectionConfig::expected_peer_id`] if authentication fixed the peer's id.
/// 2. For every binary frame, [`decode`](crate::decode) it (a decode error is the
///    driver's to report; this type only sees well-formed messages) and pass the result to
///    [`Connection::handle_message`]:
///    - `Ok(Inbound::Joined { reply, .. })`: send `reply`. The client may `join` again with
///      the same id (the JS server answers every `join`); answer each one.
///    - `Ok(Inbound::Request | Sync | Ephemeral)`: route to the document layer. The
///      message's `sender_id` is the joined peer and its `target_id` is us.
///    - `Ok(Inbound::Leave)`: close the connection.
///    - `Ok(Inbound::Ignored { reason })`: nothing to do; log `reason` if useful.
///    - `Err(violation)`: send [`Connection::error_message`]`(&violation)`, then close.
///      The state is unchanged by a violation; the driver is expected to stop feeding it.
/// 3. Outgoing messages do not pass through here: the driver builds them with
///    [`Connection::our_peer_id`] as `sender_id` and the [`Connection::remote`] id as
///    `target_id`.
///
/// No clock, no randomness, no IO: the same messages in give the same results out.
pub struct Connection {
    config: ConnectionConfig,
    remote: Option<RemotePeer>,
    /// The id a refused `join` claimed, so that the error can be addressed to it (as the JS
    /// server addresses "unsupported protocol version").
    refused_claim: Option<PeerId>,
}

impl Connection {
    /// A connection that has not seen `join` yet.
    pub fn new(config: ConnectionConfig) -> Self {
        Self {
            config,
            remote: None,
            refused_claim: None,
        }
    }

    /// The joined client, once `join` has succeeded.
    pub fn remote(&self) -> Option<&RemotePeer> {
        self.remote.as_ref()
    }

    /// Our id, the `senderId` of everything we send.
    pub fn our_peer_id(&self) -> &PeerId {
        &self.config.our_peer_id
    }

    /// Checks one decoded message from the client and says what to do with it.
    pub fn handle_message(&mut self, message: Message) -> Result<Inbound, Violation> {
        self.check_addressing(&message)?;
        match message {
            Message::Join(join) => self.handle_join(join),
            Message::Request(m) => Ok(Inbound::Request(m)),
            Message::Sync(m) => Ok(Inbound::Sync(m)),
            Message::Ephemeral(m) => Ok(Inbound::Ephemeral(m)),
            Message::Leave { .. } => Ok(Inbound::Leave),
            // JS peers only log errors; the client will close or carry on by itself.
            Message::Error(_) => Ok(Inbound::Ignored {
                reason: "error messages from a client are informational",
            }),
            // A client answers a `request` we sent with this. The server does not ask
            // clients for documents yet, so nothing waits for the answer; it is not wrong
            // for a client to send it (a JS repo also announces unavailability to peers
            // that asked it for a document it lost or denies).
            Message::DocUnavailable(_) => Ok(Inbound::Ignored {
                reason: "the server does not request documents from clients",
            }),
            // Heads gossip (off by default in JS) is not implemented by the server yet:
            // subscriptions are not recorded and no heads are forwarded. Harmless to accept.
            Message::RemoteSubscriptionChange(_) => Ok(Inbound::Ignored {
                reason: "remote heads subscriptions are not supported yet",
            }),
            Message::RemoteHeadsChanged(_) => Ok(Inbound::Ignored {
                reason: "remote heads gossip is not supported yet",
            }),
            // Only the accepting side answers `join` with `peer`: a client sending one is
            // confused about its role.
            Message::Peer(_) => Err(Violation::UnexpectedMessage("peer")),
        }
    }

    /// Before `join`, only `join`; after it, the joined id as `senderId` (a second `join`
    /// under another id included) and our id as `targetId` wherever the type has one.
    fn check_addressing(&self, message: &Message) -> Result<(), Violation> {
        let Some(remote) = &self.remote else {
            return match message {
                Message::Join(_) => Ok(()),
                other => Err(Violation::NotJoined(other.type_name())),
            };
        };
        if message.sender_id().is_some_and(|id| *id != remote.peer_id) {
            return Err(Violation::SenderMismatch);
        }
        if message
            .target_id()
            .is_some_and(|id| *id != self.config.our_peer_id)
        {
            return Err(Violation::TargetMismatch);
        }
        Ok(())
    }

    /// The id bound by authentication, then the protocol version. A refused `join` changes
    /// nothing but the address of the error message; an accepted one (again) replaces the
    /// recorded metadata.
    fn handle_join(&mut self, join: Join) -> Result<Inbound, Violation> {
        if let Some(expected) = &self.config.expected_peer_id
            && *expected != join.sender_id
        {
            self.refused_claim = Some(join.sender_id);
            return Err(Violation::PeerIdNotAllowed);
        }
        let speaks_ours = join
            .supported_protocol_versions
            .as_ref()
            .is_none_or(|versions| versions.iter().any(|v| v == PROTOCOL_VERSION));
        if !speaks_ours {
            self.refused_claim = Some(join.sender_id);
            return Err(Violation::UnsupportedProtocolVersion);
        }
        let remote = RemotePeer {
            peer_id: join.sender_id,
            metadata: join.peer_metadata.unwrap_or_default(),
        };
        let reply = Message::Peer(Peer {
            sender_id: self.config.our_peer_id.clone(),
            target_id: remote.peer_id.clone(),
            peer_metadata: self.config.our_metadata.clone(),
            selected_protocol_version: PROTOCOL_VERSION.to_owned(),
        });
        self.remote = Some(remote.clone());
        self.refused_claim = None;
        Ok(Inbound::Joined { remote, reply })
    }

    /// The `error` message to send before closing because of `violation`.
    ///
    /// Addressed to the joined peer, or to the id a refused `join` claimed, or to nobody.
    pub fn error_message(&self, violation: &Violation) -> Message {
        let target_id = self
            .remote
            .as_ref()
            .map(|remote| remote.peer_id.clone())
            .or_else(|| self.refused_claim.clone());
        Message::Error(ErrorMessage {
            message: explain(violation),
            sender_id: Some(self.config.our_peer_id.clone()),
            target_id,
        })
    }
}

/// A sentence a developer reading a browser console can act on.
fn explain(violation: &Violation) -> String {
    match violation {
        Violation::NotJoined(type_name) => {
            format!("expected a `join` message before `{type_name}`; closing the connection")
        }
        Violation::UnsupportedProtocolVersion => format!(
            "unsupported protocol version: this server speaks only version \"{PROTOCOL_VERSION}\""
        ),
        Violation::SenderMismatch => {
            "senderId does not match the peer id this connection joined with".to_owned()
        }
        Violation::TargetMismatch => "targetId is not this server's peer id".to_owned(),
        Violation::PeerIdNotAllowed => {
            "this connection is authenticated for a different peer id".to_owned()
        }
        Violation::UnexpectedMessage(type_name) => {
            format!("a `{type_name}` message is sent by servers, not accepted from a client")
        }
    }
}

#[cfg(test)]
mod tests;
