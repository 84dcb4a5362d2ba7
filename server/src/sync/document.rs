//! One document in memory: the actor that owns its Automerge state and the sync state of
//! every peer following it.
//!
//! Order of work for each batch of incoming messages: apply them (off the async reactor),
//! make the new changes durable, and only then generate the replies and live pushes that
//! reflect them. If the write fails, the in-memory document is reloaded from storage and
//! the senders are disconnected, so nothing that was not stored is ever acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use automerge::Automerge;
use automerge::sync::{self, SyncDoc};
use jemput_sync_protocol::{DocMessage, DocumentId, Message};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::hub::{Hub, ReceiveKind};
use super::peer::{ConnectionId, PeerHandle};
use crate::storage::{ChunkId, ChunkKind, Storage, StorageError};

/// Commands the hub sends to a document actor.
pub(super) enum DocCommand {
    Receive {
        from: PeerHandle,
        kind: ReceiveKind,
        data: Vec<u8>,
        /// Held until the message has been handled: per-connection back-pressure.
        _permit: OwnedSemaphorePermit,
    },
    Unfollow {
        connection: ConnectionId,
    },
    /// Leave memory as soon as the inbox is empty.
    Evict,
}

/// At most this many commands are applied in one batch (one write, one reply round).
const MAX_BATCH: usize = 128;
/// On leaving memory, compact if at least this many incremental chunks accumulated.
const COMPACT_ON_EVICT: usize = 8;

struct PeerSync {
    peer: PeerHandle,
    state: sync::State,
    /// The peer asked with `request` while we had nothing: it waits for content or for
    /// `doc-unavailable`.
    waiting_since: Option<Instant>,
}

pub(super) struct DocumentActor<S> {
    hub: Arc<Hub<S>>,
    id: DocumentId,
    generation: u64,
    doc: Automerge,
    /// Chunks this actor knows are contained in `doc`: the only ones compaction may delete.
    chunks: Vec<ChunkId>,
    incremental_chunks: usize,
    peers: HashMap<ConnectionId, PeerSync>,
}

/// What applying a batch produced.
struct Applied {
    new_changes: Option<Vec<u8>>,
    change_count: usize,
    rejected: Vec<(ConnectionId, String)>,
}

impl<S: Storage> DocumentActor<S> {
    pub(super) fn new(hub: Arc<Hub<S>>, id: DocumentId, generation: u64) -> Self {
        Self {
            hub,
            id,
            generation,
            doc: Automerge::new(),
            chunks: Vec::new(),
            incremental_chunks: 0,
            peers: HashMap::new(),
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<DocCommand>) {
        if let Err(error) = self.load().await {
            tracing::error!(%error, document = %self.id, "loading document failed");
            metrics::counter!(crate::metrics::STORAGE_ERRORS).increment(1);
            self.fail_all(&mut commands);
            return;
        }
        let idle = self.hub.config().document_idle;
        let mut last_activity = Instant::now();
        let mut evicting = false;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let wake = self.next_wake(last_activity + idle);
            let received = tokio::select! {
                n = commands.recv_many(&mut batch, MAX_BATCH) => n,
                () = tokio::time::sleep_until(wake.into()) => 0,
            };
            if received > 0 {
                last_activity = Instant::now();
                evicting |= self.handle_batch(&mut batch).await;
            }
            self.answer_overdue_requests(Instant::now());
            if evicting || last_activity.elapsed() >= idle {
                self.persist_before_leaving().await;
                if self.hub.retire(self.id, self.generation, &commands) {
                    return;
                }
            }
        }
    }

    fn next_wake(&self, idle_deadline: Instant) -> Instant {
        let wait = self.hub.config().upload_wait;
        self.peers
            .values()
            .filter_map(|p| p.waiting_since.map(|since| since + wait))
            .fold(idle_deadline, Instant::min)
    }

    /// Handles one batch; returns true if the document was asked to leave memory.
    async fn handle_batch(&mut self, batch: &mut Vec<DocCommand>) -> bool {
        let mut evict = false;
        let mut received = Vec::new();
        for command in batch.drain(..) {
            match command {
                DocCommand::Receive {
                    from,
                    kind,
                    data,
                    _permit,
                } => received.push((from, kind, data, _permit)),
                DocCommand::Unfollow { connection } => self.unfollow(connection).await,
                DocCommand::Evict => evict = true,
            }
        }
        if received.is_empty() {
            return evict;
        }

        let mut messages = Vec::with_capacity(received.len());
        for (from, kind, data, _) in &received {
            self.ensure_peer(from).await;
            match sync::Message::decode(data) {
                Ok(message) => messages.push((from.connection(), message)),
                Err(error) => {
                    tracing::warn!(%error, document = %self.id, peer = %from.peer_id(),
                        "malformed automerge sync message");
                    metrics::counter!(crate::metrics::PROTOCOL_ERRORS).increment(1);
                    from.fail(self.hub.error_to(from, "malformed automerge sync message"));
                }
            }
            if *kind == ReceiveKind::Request
                && let Some(peer) = self.peers.get_mut(&from.connection())
            {
                peer.waiting_since.get_or_insert_with(Instant::now);
            }
        }

        let heads_before = self.doc.get_heads();
        let applied = match self.apply(messages).await {
            Ok(applied) => applied,
            Err(()) => {
                self.recover(received.iter().map(|(from, ..)| from)).await;
                return evict;
            }
        };
        for (connection, reason) in &applied.rejected {
            if let Some(peer) = self.peers.remove(connection) {
                tracing::warn!(document = %self.id, peer = %peer.peer.peer_id(), %reason,
                    "rejected sync message");
                metrics::counter!(crate::metrics::PROTOCOL_ERRORS).increment(1);
                peer.peer
                    .fail(self.hub.error_to(&peer.peer, "invalid sync message"));
            }
        }

        let changed = match applied.new_changes {
            Some(bytes) => match self.hub.storage().append_chunk(self.id, bytes).await {
                Ok(chunk) => {
                    self.chunks.push(chunk);
                    self.incremental_chunks += 1;
                    metrics::counter!(crate::metrics::CHANGES_APPLIED)
                        .increment(applied.change_count as u64);
                    true
                }
                Err(error) => {
                    tracing::error!(%error, document = %self.id, "storing changes failed");
                    metrics::counter!(crate::metrics::STORAGE_ERRORS).increment(1);
                    self.recover(received.iter().map(|(from, ..)| from)).await;
                    return evict;
                }
            },
            None => false,
        };
        debug_assert!(changed || self.doc.get_heads() == heads_before);

        // Durable: now answer the senders, and push to every follower if anything changed.
        let recipients: Vec<PeerHandle> = if changed {
            self.hub.followers(self.id)
        } else {
            received.iter().map(|(from, ..)| from.clone()).collect()
        };
        self.send_sync_messages(recipients).await;
        if changed && self.incremental_chunks >= self.hub.config().compact_after_chunks {
            self.compact().await;
        }
        evict
    }

    /// Applies the messages to the document off the async reactor.
    async fn apply(&mut self, messages: Vec<(ConnectionId, sync::Message)>) -> Result<Applied, ()> {
        let mut doc = std::mem::take(&mut self.doc);
        let mut peers = std::mem::take(&mut self.peers);
        let result = tokio::task::spawn_blocking(move || {
            let heads_before = doc.get_heads();
            let mut rejected = Vec::new();
            for (connection, message) in messages {
                let Some(peer) = peers.get_mut(&connection) else {
                    continue;
                };
                if let Err(error) = doc.receive_sync_message(&mut peer.state, message) {
                    rejected.push((connection, error.to_string()));
                }
            }
            let applied = if doc.get_heads() == heads_before {
                Applied {
                    new_changes: None,
                    change_count: 0,
                    rejected,
                }
            } else {
                Applied {
                    change_count: doc.get_changes(&heads_before).len(),
                    new_changes: Some(doc.save_after(&heads_before)),
                    rejected,
                }
            };
            (doc, peers, applied)
        })
        .await;
        match result {
            Ok((doc, peers, applied)) => {
                self.doc = doc;
                self.peers = peers;
                Ok(applied)
            }
            Err(error) => {
                tracing::error!(%error, document = %self.id, "applying sync messages panicked");
                Err(())
            }
        }
    }

    /// Generates one sync message per recipient (off the reactor) and queues them.
    async fn send_sync_messages(&mut self, recipients: Vec<PeerHandle>) {
        for peer in &recipients {
            self.ensure_peer(peer).await;
        }
        let doc = std::mem::take(&mut self.doc);
        let mut peers = std::mem::take(&mut self.peers);
        let server = self.hub.server_peer_id().clone();
        let document = self.id;
        let result = tokio::task::spawn_blocking(move || {
            let empty = doc.get_heads().is_empty();
            let mut outgoing = Vec::with_capacity(recipients.len());
            for recipient in recipients {
                let Some(peer) = peers.get_mut(&recipient.connection()) else {
                    continue;
                };
                if empty && peer.waiting_since.is_some() {
                    // Nothing to offer yet; `answer_overdue_requests` decides when to give up.
                    continue;
                }
                peer.waiting_since = None;
                if let Some(message) = doc.generate_sync_message(&mut peer.state) {
                    outgoing.push((
                        recipient.clone(),
                        Message::Sync(DocMessage {
                            sender_id: server.clone(),
                            target_id: recipient.peer_id().clone(),
                            document_id: document,
                            data: message.encode(),
                        }),
                    ));
                }
            }
            (doc, peers, outgoing)
        })
        .await;
        match result {
            Ok((doc, peers, outgoing)) => {
                self.doc = doc;
                self.peers = peers;
                for (peer, message) in outgoing {
                    if peer.send(message).is_err() {
                        self.peers.remove(&peer.connection());
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, document = %self.id, "generating sync messages panicked");
                let empty: [&PeerHandle; 0] = [];
                self.recover(empty.into_iter()).await;
            }
        }
    }

    /// A peer that asked for a document we do not have is told so, unless another peer has
    /// announced it and is still uploading (then we wait up to `upload_wait`).
    fn answer_overdue_requests(&mut self, now: Instant) {
        if !self.doc.get_heads().is_empty() {
            return;
        }
        let wait = self.hub.config().upload_wait;
        let uploading: Vec<ConnectionId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state.their_heads.as_ref().is_some_and(|h| !h.is_empty()))
            .map(|(connection, _)| *connection)
            .collect();
        for (connection, peer) in &mut self.peers {
            let Some(since) = peer.waiting_since else {
                continue;
            };
            let someone_else_uploading = uploading.iter().any(|c| c != connection);
            if someone_else_uploading && now < since + wait {
                continue;
            }
            peer.waiting_since = None;
            let _ = peer.peer.send(self.hub.unavailable(&peer.peer, self.id));
        }
    }

    /// Creates the sync state for a peer seen for the first time in this actor's life,
    /// resuming a persisted one for peers that keep storage.
    async fn ensure_peer(&mut self, peer: &PeerHandle) {
        if self.peers.contains_key(&peer.connection()) {
            return;
        }
        let mut state = sync::State::new();
        if let Some(storage_id) = peer.storage_id() {
            match self
                .hub
                .storage()
                .load_sync_state(self.id, storage_id)
                .await
            {
                Ok(Some(bytes)) => match sync::State::decode(&bytes) {
                    Ok(decoded) => state = decoded,
                    Err(error) => {
                        tracing::warn!(%error, document = %self.id, "ignoring corrupt sync state")
                    }
                },
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, document = %self.id, "loading sync state failed")
                }
            }
        }
        self.peers.insert(
            peer.connection(),
            PeerSync {
                peer: peer.clone(),
                state,
                waiting_since: None,
            },
        );
    }

    async fn unfollow(&mut self, connection: ConnectionId) {
        if let Some(peer) = self.peers.remove(&connection) {
            self.save_sync_state(&peer).await;
        }
    }

    async fn save_sync_state(&self, peer: &PeerSync) {
        let Some(storage_id) = peer.peer.storage_id() else {
            return;
        };
        if let Err(error) = self
            .hub
            .storage()
            .save_sync_state(self.id, storage_id, peer.state.encode())
            .await
        {
            tracing::warn!(%error, document = %self.id, "saving sync state failed");
        }
    }

    async fn persist_before_leaving(&mut self) {
        for peer in self.peers.values() {
            self.save_sync_state(peer).await;
        }
        if self.incremental_chunks >= COMPACT_ON_EVICT {
            self.compact().await;
        }
    }

    async fn load(&mut self) -> Result<(), StorageError> {
        let chunks = self.hub.storage().load_chunks(self.id).await?;
        let document = self.id;
        let loaded = tokio::task::spawn_blocking(move || {
            let mut doc = Automerge::new();
            let mut ids = Vec::with_capacity(chunks.len());
            let mut incremental = 0;
            for chunk in chunks {
                match doc.load_incremental(&chunk.data) {
                    Ok(_) => {
                        ids.push(chunk.id);
                        if chunk.kind == ChunkKind::Incremental {
                            incremental += 1;
                        }
                    }
                    // Kept in storage (not in `ids`), so compaction never deletes it.
                    Err(error) => tracing::error!(%error, %document, chunk = chunk.id.0,
                        "skipping unreadable chunk"),
                }
            }
            (doc, ids, incremental)
        })
        .await
        .map_err(|error| StorageError::Corrupt(format!("loading panicked: {error}")))?;
        (self.doc, self.chunks, self.incremental_chunks) = loaded;
        Ok(())
    }

    async fn compact(&mut self) {
        let doc = std::mem::take(&mut self.doc);
        let Ok((doc, snapshot)) = tokio::task::spawn_blocking(move || {
            let snapshot = doc.save();
            (doc, snapshot)
        })
        .await
        else {
            tracing::error!(document = %self.id, "compaction panicked; reloading");
            let _ = self.load().await;
            return;
        };
        self.doc = doc;
        let replaced = self.chunks.clone();
        match self
            .hub
            .storage()
            .compact(self.id, replaced, snapshot)
            .await
        {
            Ok(snapshot_id) => {
                self.chunks = vec![snapshot_id];
                self.incremental_chunks = 0;
            }
            Err(error) => tracing::warn!(%error, document = %self.id, "compaction failed"),
        }
    }

    /// After a failed write or a panic: forget what is not stored and cut off the senders,
    /// whose sync states now claim changes we do not have. They resume on reconnect.
    async fn recover<'a>(&mut self, senders: impl Iterator<Item = &'a PeerHandle>) {
        for sender in senders {
            if let Some(peer) = self.peers.remove(&sender.connection()) {
                peer.peer.fail(
                    self.hub
                        .error_to(&peer.peer, "storage unavailable, retry later"),
                );
            }
        }
        if let Err(error) = self.load().await {
            tracing::error!(%error, document = %self.id, "reloading after failure failed");
            self.doc = Automerge::new();
            self.chunks.clear();
            for (_, peer) in self.peers.drain() {
                peer.peer.fail(
                    self.hub
                        .error_to(&peer.peer, "storage unavailable, retry later"),
                );
            }
        }
        // Sync states of the remaining peers may describe what we just dropped.
        for peer in self.peers.values_mut() {
            peer.state = sync::State::new();
        }
    }

    /// The document could not be loaded: nobody waiting on it can be answered.
    fn fail_all(&self, commands: &mut mpsc::UnboundedReceiver<DocCommand>) {
        loop {
            while let Ok(command) = commands.try_recv() {
                if let DocCommand::Receive { from, .. } = command {
                    from.fail(self.hub.error_to(&from, "storage unavailable, retry later"));
                }
            }
            if self.hub.retire(self.id, self.generation, commands) {
                return;
            }
        }
    }
}
