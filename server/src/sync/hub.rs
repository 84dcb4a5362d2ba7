//! Routes messages between connections and document actors.
//!
//! The hub owns the only map of live document actors and of which connections follow which
//! document. Every send to an actor happens under the hub's lock, and an actor leaves the
//! map only under that lock and only with an empty inbox, so a message is never sent to an
//! actor that has decided to stop. The lock is never held across an `.await`.
//!
//! Work per event is proportional to the event: a message touches one document and that
//! document's followers, never every connection or every document.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use automerge::ActorId;
use jemput_sync_protocol::{
    DocUnavailable, DocumentId, Ephemeral, ErrorMessage, Message, PeerId, PeerMetadata, StorageId,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::batch_push::{BatchPush, BatchPushOutcome};
use super::document::{DocCommand, DocumentActor};
use super::peer::{ConnectionId, PeerHandle};
use super::review::{ReviewError, ReviewOutcome, ReviewRequest};
use crate::audit::CitizenKeySecret;
use crate::storage::{ActorOwner, Storage, StorageError};

/// Limits and timings of the sync engine.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// A document with no activity for this long leaves memory.
    pub document_idle: Duration,
    /// At most this many documents are kept in memory; beyond it the least recently used
    /// ones are asked to leave early.
    pub max_documents_in_memory: usize,
    /// A peer that announced a document but has not uploaded it yet is waited for this long
    /// before another peer's `request` for it is answered `doc-unavailable`.
    pub upload_wait: Duration,
    /// Incremental chunks after which a document is compacted into one snapshot.
    pub compact_after_chunks: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            document_idle: Duration::from_secs(30),
            max_documents_in_memory: 20_000,
            upload_wait: Duration::from_secs(10),
            compact_after_chunks: 64,
        }
    }
}

/// Why a `join` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    #[error("peer id is in use by another device or user")]
    PeerIdInUse,
}

/// Which automerge-repo message brought a sync message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveKind {
    /// The peer has no copy and asks for one.
    Request,
    /// Any other sync message (including a document created on the peer).
    Sync,
}

/// Who the server is: its peer id, its storage id, its Automerge actor (already bound to
/// the server in storage) and the secret that keys citizens in the audit log.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub peer_id: PeerId,
    pub storage_id: StorageId,
    pub actor: ActorId,
    pub citizen_secret: CitizenKeySecret,
}

pub struct Hub<S> {
    storage: Arc<S>,
    config: HubConfig,
    server_peer_id: PeerId,
    server_storage_id: StorageId,
    /// This process's Automerge actor: compensations and review decisions are written by it.
    server_actor: ActorId,
    citizen_secret: CitizenKeySecret,
    /// Who each Automerge actor id belongs to, as bound in storage (bounded).
    actor_owners: Mutex<HashMap<ActorId, ActorOwner>>,
    report_count: AtomicU64,
    state: Mutex<HubState>,
    next_connection: AtomicU64,
    next_generation: AtomicU64,
    actors: TaskTracker,
}

#[derive(Default)]
struct HubState {
    documents: HashMap<DocumentId, ActorEntry>,
    followers: HashMap<DocumentId, HashMap<ConnectionId, PeerHandle>>,
    followed: HashMap<ConnectionId, HashSet<DocumentId>>,
    peers: HashMap<PeerId, PeerHandle>,
    ephemeral_seen: RecentSet,
    refusals_recorded: RecentSet,
    shutting_down: bool,
}

struct ActorEntry {
    inbox: mpsc::UnboundedSender<DocCommand>,
    generation: u64,
    last_used: u64,
}

/// A bounded set of recently seen ephemeral message keys, for de-duplication.
#[derive(Default)]
struct RecentSet {
    order: VecDeque<String>,
    members: HashSet<String>,
}

impl RecentSet {
    const CAPACITY: usize = 4096;

    /// Returns false if `key` was seen recently.
    fn insert(&mut self, key: String) -> bool {
        if self.members.contains(&key) {
            return false;
        }
        if self.order.len() == Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.members.remove(&old);
        }
        self.order.push_back(key.clone());
        self.members.insert(key);
        true
    }
}

impl<S: Storage> Hub<S> {
    pub fn new(storage: Arc<S>, config: HubConfig, identity: ServerIdentity) -> Arc<Self> {
        Arc::new(Self {
            storage,
            config,
            server_peer_id: identity.peer_id,
            server_storage_id: identity.storage_id,
            server_actor: identity.actor,
            citizen_secret: identity.citizen_secret,
            actor_owners: Mutex::new(HashMap::new()),
            report_count: AtomicU64::new(1),
            state: Mutex::new(HubState::default()),
            next_connection: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
            actors: TaskTracker::new(),
        })
    }

    pub fn server_peer_id(&self) -> &PeerId {
        &self.server_peer_id
    }

    /// The metadata the server announces in its `peer` message.
    pub fn server_metadata(&self) -> PeerMetadata {
        PeerMetadata {
            storage_id: Some(self.server_storage_id.clone()),
            is_ephemeral: false,
        }
    }

    pub fn storage(&self) -> &Arc<S> {
        &self.storage
    }

    pub(super) fn config(&self) -> &HubConfig {
        &self.config
    }

    pub(super) fn server_actor(&self) -> &ActorId {
        &self.server_actor
    }

    pub(super) fn citizen_secret(&self) -> &CitizenKeySecret {
        &self.citizen_secret
    }

    /// A fresh `count` for ephemeral messages the server sends itself.
    pub(super) fn next_report_count(&self) -> u64 {
        self.report_count.fetch_add(1, Ordering::Relaxed)
    }

    /// The owner of `actor`, binding it to `claimant` if nobody owns it yet.
    pub(super) async fn actor_owner(
        &self,
        actor: &ActorId,
        claimant: &ActorOwner,
    ) -> Result<ActorOwner, StorageError> {
        const CACHE_LIMIT: usize = 100_000;
        if let Some(owner) = self.owners().get(actor) {
            return Ok(owner.clone());
        }
        let owner = self
            .storage
            .bind_actor_if_unbound(actor, claimant, crate::auth::now_millis())
            .await?;
        let mut owners = self.owners();
        if owners.len() >= CACHE_LIMIT {
            owners.clear();
        }
        owners.insert(actor.clone(), owner.clone());
        Ok(owner)
    }

    fn owners(&self) -> MutexGuard<'_, HashMap<ActorId, ActorOwner>> {
        self.actor_owners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this refusal is new (not recorded recently): a device that keeps re-sending a
    /// refused document must not fill the audit log with copies.
    pub(super) fn first_refusal(&self, key: String) -> bool {
        self.lock().refusals_recorded.insert(key)
    }

    /// Stops `connection` following `document` (it was denied access).
    pub(super) fn unfollow(&self, document: DocumentId, connection: ConnectionId) {
        let mut state = self.lock();
        if let Some(followers) = state.followers.get_mut(&document) {
            followers.remove(&connection);
            if followers.is_empty() {
                state.followers.remove(&document);
            }
        }
        if let Some(followed) = state.followed.get_mut(&connection) {
            followed.remove(&document);
        }
    }

    /// Writes a supervisor's decision into an application (see `review`).
    pub async fn review(
        self: &Arc<Self>,
        document: DocumentId,
        request: ReviewRequest,
    ) -> Result<ReviewOutcome, ReviewError> {
        if !self.is_in_memory(document) {
            match self.storage.document_exists(document).await {
                Ok(true) => {}
                Ok(false) => return Err(ReviewError::NotFound),
                Err(error) => {
                    tracing::error!(%error, %document, "storage lookup failed");
                    return Err(ReviewError::Unavailable);
                }
            }
        }
        let (reply, outcome) = oneshot::channel();
        self.dispatch(document, None, DocCommand::Review { request, reply });
        outcome.await.unwrap_or(Err(ReviewError::Unavailable))
    }

    /// Hands a device's batch push to the document's actor (starting one, which creates the
    /// document if policy admits it) and waits for the outcome.
    pub async fn batch_push(
        self: &Arc<Self>,
        document: DocumentId,
        push: BatchPush,
    ) -> BatchPushOutcome {
        let (reply, outcome) = oneshot::channel();
        let command = DocCommand::BatchPush {
            push: Box::new(push),
            reply,
        };
        self.dispatch(document, None, command);
        outcome.await.unwrap_or(BatchPushOutcome::Failed)
    }

    pub fn new_connection_id(&self) -> ConnectionId {
        ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed))
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock leaves maps that are still consistent (every
        // mutation is a single insert or remove), so recovering the guard is safe.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a joined peer. A previous connection that claimed the same peer id with
    /// the same credential is closed and forgotten (the newest `join` wins, as with the JS
    /// server: a phone that reconnects replaces its dead socket). Anyone else claiming a peer
    /// id in use is refused, so nobody can knock another device off by copying its id.
    pub fn join(&self, peer: PeerHandle) -> Result<(), JoinRefused> {
        let replaced = {
            let mut state = self.lock();
            if let Some(current) = state.peers.get(peer.peer_id())
                && current.identity().credential != peer.identity().credential
            {
                return Err(JoinRefused::PeerIdInUse);
            }
            state.peers.insert(peer.peer_id().clone(), peer.clone())
        };
        if let Some(old) = replaced
            && old.connection() != peer.connection()
        {
            tracing::info!(peer = %peer.peer_id(), old = %old.connection(),
                new = %peer.connection(), "peer re-joined; closing its older connection");
            self.leave(&old);
            old.close();
        }
        Ok(())
    }

    /// Forgets a connection: it follows no document any more.
    pub fn leave(&self, peer: &PeerHandle) {
        let connection = peer.connection();
        let mut state = self.lock();
        if state
            .peers
            .get(peer.peer_id())
            .is_some_and(|current| current.connection() == connection)
        {
            state.peers.remove(peer.peer_id());
        }
        let Some(documents) = state.followed.remove(&connection) else {
            return;
        };
        for document in documents {
            if let Some(followers) = state.followers.get_mut(&document) {
                followers.remove(&connection);
                if followers.is_empty() {
                    state.followers.remove(&document);
                }
            }
            if let Some(actor) = state.documents.get(&document) {
                let _ = actor.inbox.send(DocCommand::Unfollow { connection });
            }
        }
    }

    /// Hands a sync message to its document. `permit` bounds how many messages one
    /// connection may have queued; it is released when the document has handled this one.
    pub async fn receive(
        self: &Arc<Self>,
        from: &PeerHandle,
        kind: ReceiveKind,
        document: DocumentId,
        data: Vec<u8>,
        permit: OwnedSemaphorePermit,
    ) {
        if kind == ReceiveKind::Request && !self.is_in_memory(document) {
            match self.storage.document_exists(document).await {
                Ok(true) => {}
                Ok(false) => {
                    if !self.is_in_memory(document) {
                        // Unknown documents get no actor: random ids must not fill memory.
                        let _ = from.send(self.unavailable(from, document));
                        return;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, %document, "storage lookup failed");
                    metrics::counter!(crate::metrics::STORAGE_ERRORS).increment(1);
                    from.fail(self.error_to(from, "storage unavailable, retry later"));
                    return;
                }
            }
        }
        let command = DocCommand::Receive {
            from: from.clone(),
            kind,
            data,
            _permit: permit,
        };
        self.dispatch(document, Some(from), command);
    }

    fn is_in_memory(&self, document: DocumentId) -> bool {
        self.lock().documents.contains_key(&document)
    }

    /// Sends `command` to the document's actor, starting one if none is live, and makes
    /// `follower` (if any) follow the document.
    fn dispatch(
        self: &Arc<Self>,
        document: DocumentId,
        follower: Option<&PeerHandle>,
        command: DocCommand,
    ) {
        let mut state = self.lock();
        if state.shutting_down {
            return;
        }
        if let Some(peer) = follower {
            let connection = peer.connection();
            state
                .followers
                .entry(document)
                .or_default()
                .insert(connection, peer.clone());
            state
                .followed
                .entry(connection)
                .or_default()
                .insert(document);
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut command = command;
        if let Some(actor) = state.documents.get_mut(&document) {
            actor.last_used = generation;
            match actor.inbox.send(command) {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => {
                    // Unreachable while actors leave only through `retire`; recover anyway.
                    tracing::warn!(%document, "document actor vanished; starting a new one");
                    state.documents.remove(&document);
                    command = returned;
                }
            }
        }
        if state.documents.len() >= self.config.max_documents_in_memory {
            evict_least_recently_used(&mut state);
        }
        let (inbox, commands) = mpsc::unbounded_channel();
        let _ = inbox.send(command);
        state.documents.insert(
            document,
            ActorEntry {
                inbox,
                generation,
                last_used: generation,
            },
        );
        metrics::gauge!(crate::metrics::DOCUMENTS_IN_MEMORY).set(state.documents.len() as f64);
        drop(state);
        let actor = DocumentActor::new(Arc::clone(self), document, generation);
        self.actors.spawn(actor.run(commands));
    }

    /// The connections following `document` right now.
    pub(super) fn followers(&self, document: DocumentId) -> Vec<PeerHandle> {
        self.lock()
            .followers
            .get(&document)
            .map(|followers| followers.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Called by an actor that wants to stop. Succeeds only if no command is waiting for
    /// it; the actor must then stop without touching the document again.
    pub(super) fn retire(
        &self,
        document: DocumentId,
        generation: u64,
        commands: &mpsc::UnboundedReceiver<DocCommand>,
    ) -> bool {
        let mut state = self.lock();
        let ours = state
            .documents
            .get(&document)
            .is_some_and(|entry| entry.generation == generation);
        if !ours {
            return true;
        }
        if !commands.is_empty() {
            return false;
        }
        state.documents.remove(&document);
        metrics::gauge!(crate::metrics::DOCUMENTS_IN_MEMORY).set(state.documents.len() as f64);
        true
    }

    /// Relays presence data to the document's other followers; never stored.
    pub fn relay_ephemeral(&self, from: &PeerHandle, message: Ephemeral) {
        let key = format!(
            "{}:{}:{}",
            message.sender_id, message.session_id, message.count
        );
        let recipients: Vec<PeerHandle> = {
            let mut state = self.lock();
            if !state.ephemeral_seen.insert(key) {
                return;
            }
            let Some(followers) = state.followers.get(&message.document_id) else {
                return;
            };
            if !followers.contains_key(&from.connection()) {
                // Only followers of a document may speak about it.
                return;
            }
            followers
                .values()
                .filter(|peer| peer.connection() != from.connection())
                .cloned()
                .collect()
        };
        for peer in recipients {
            let relayed = Ephemeral {
                target_id: peer.peer_id().clone(),
                ..message.clone()
            };
            let _ = peer.send(Message::Ephemeral(relayed));
        }
    }

    pub(super) fn unavailable(&self, to: &PeerHandle, document: DocumentId) -> Message {
        Message::DocUnavailable(DocUnavailable {
            sender_id: self.server_peer_id.clone(),
            target_id: to.peer_id().clone(),
            document_id: document,
        })
    }

    pub(super) fn error_to(&self, to: &PeerHandle, text: &str) -> Message {
        Message::Error(ErrorMessage {
            message: text.to_owned(),
            sender_id: Some(self.server_peer_id.clone()),
            target_id: Some(to.peer_id().clone()),
        })
    }

    /// Stops taking work, lets every document finish its in-flight writes and persist its
    /// peers' sync states, and waits for them (at most `deadline`).
    pub async fn shutdown(&self, deadline: Duration) {
        {
            let mut state = self.lock();
            state.shutting_down = true;
            for entry in state.documents.values() {
                let _ = entry.inbox.send(DocCommand::Evict);
            }
        }
        self.actors.close();
        if tokio::time::timeout(deadline, self.actors.wait())
            .await
            .is_err()
        {
            tracing::warn!("document actors did not finish before the shutdown deadline");
        }
    }
}

/// Asks a few of the least recently used documents to leave memory. Approximate LRU over a
/// small sample (as Redis does) keeps this O(1) per call instead of O(documents).
fn evict_least_recently_used(state: &mut HubState) {
    const SAMPLE: usize = 16;
    const EVICT: usize = 4;
    let mut sample: Vec<(&DocumentId, u64)> = state
        .documents
        .iter()
        .take(SAMPLE)
        .map(|(id, entry)| (id, entry.last_used))
        .collect();
    sample.sort_by_key(|(_, last_used)| *last_used);
    for (document, _) in sample.into_iter().take(EVICT) {
        if let Some(entry) = state.documents.get(document) {
            let _ = entry.inbox.send(DocCommand::Evict);
        }
    }
}
