//! A connected, joined peer as the document side sees it: where to send its messages and how
//! to cut it off.

use std::fmt;
use std::sync::Arc;

use jemput_sync_protocol::{Message, PeerId, StorageId};

use crate::storage::{ActorOwner, Identity};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Identifies one WebSocket connection for its lifetime (a reconnect gets a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// What a connection's writer is asked to do.
#[derive(Debug)]
pub enum Outbound {
    Message(Message),
    /// Send this `error` message, then close the connection.
    Fatal(Message),
}

/// Cheap to clone; every clone addresses the same connection.
#[derive(Clone)]
pub struct PeerHandle {
    inner: Arc<PeerInner>,
}

struct PeerInner {
    connection: ConnectionId,
    peer_id: PeerId,
    /// Set only for peers that keep storage (non-ephemeral), whose sync state we persist.
    storage_id: Option<StorageId>,
    /// Who authenticated at upgrade; everything this peer does is judged as them.
    identity: Arc<Identity>,
    outbox: mpsc::Sender<Outbound>,
    closer: CancellationToken,
}

/// Why a message could not be queued for a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// The peer's queue was full: it is too slow, so it has been disconnected.
    TooSlow,
    /// The connection is already gone.
    Gone,
}

impl PeerHandle {
    pub fn new(
        connection: ConnectionId,
        peer_id: PeerId,
        storage_id: Option<StorageId>,
        identity: Arc<Identity>,
        outbox: mpsc::Sender<Outbound>,
        closer: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(PeerInner {
                connection,
                peer_id,
                storage_id,
                identity,
                outbox,
                closer,
            }),
        }
    }

    pub fn connection(&self) -> ConnectionId {
        self.inner.connection
    }

    pub fn peer_id(&self) -> &PeerId {
        &self.inner.peer_id
    }

    pub fn storage_id(&self) -> Option<&StorageId> {
        self.inner.storage_id.as_ref()
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.inner.identity
    }

    /// Whose Automerge actor ids this peer may write with: its device, or its user when it
    /// connected with a login session (a browser console).
    pub fn actor_owner(&self) -> ActorOwner {
        match self.inner.identity.device() {
            Some(device) => ActorOwner::Device(device.clone()),
            None => ActorOwner::User(self.inner.identity.user_id),
        }
    }

    /// Queues a message without waiting. A peer whose queue is full is disconnected rather
    /// than buffered without bound; it resumes from its sync state when it reconnects.
    pub fn send(&self, message: Message) -> Result<(), SendFailure> {
        match self.inner.outbox.try_send(Outbound::Message(message)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(connection = %self.connection(), peer = %self.peer_id(),
                    "outbound queue full; disconnecting slow peer");
                self.inner.closer.cancel();
                Err(SendFailure::TooSlow)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendFailure::Gone),
        }
    }

    /// Sends an `error` message (if there is room) and closes the connection.
    pub fn fail(&self, error: Message) {
        if self.inner.outbox.try_send(Outbound::Fatal(error)).is_err() {
            self.inner.closer.cancel();
        }
    }

    /// Closes the connection without a message (e.g. replaced by a newer one).
    pub fn close(&self) {
        self.inner.closer.cancel();
    }
}

impl fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerHandle")
            .field("connection", &self.inner.connection)
            .field("peer_id", &self.inner.peer_id)
            .finish()
    }
}
