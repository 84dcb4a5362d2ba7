//! One document in memory: the actor that owns its Automerge state and the sync state of
//! every peer following it.
//!
//! Order of work for each batch of incoming messages:
//! 1. decode, and answer peers outside the document's region exactly as if it did not exist;
//! 2. find the changes the document does not have yet and refuse a message whose changes were
//!    made by an actor belonging to someone else (actor binding);
//! 3. apply the rest off the async reactor, judge each sender's changes against the document
//!    as it was (`policy`), and write compensating changes for what a sender may not do;
//! 4. make all new changes durable, with the document's index row, in one write;
//! 5. only then generate the replies and live pushes that reflect them.
//!
//! If the write fails, the in-memory document is reloaded from storage and the senders are
//! disconnected, so nothing that was not stored is ever acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use automerge::sync::{self, SyncDoc};
use automerge::{ActorId, Automerge, Change, ReadDoc};
use jemput_domain::{DocumentKind, RegionCode};
use jemput_sync_protocol::batch::RefusalReason;
use jemput_sync_protocol::{DocMessage, DocumentId, Ephemeral, Message};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::batch_push::{BatchPush, BatchPushOutcome, refusal_reason};
use super::hub::{Hub, ReceiveKind};
use super::index::{self, DocumentFacts};
use super::peer::{ConnectionId, PeerHandle};
use super::review::{self, ReviewError, ReviewOutcome, ReviewRequest};
use crate::audit::{AuditAction, AuditActor, NewAuditEntry};
use crate::policy::report::{PolicyReport, compensate};
use crate::policy::{Refusal, Rule, admit, judge};
use crate::storage::{ActorOwner, ChunkId, ChunkKind, Identity, Storage, StorageError};

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
    /// A supervisor's decision, written by the server into the document.
    Review {
        request: ReviewRequest,
        reply: oneshot::Sender<Result<ReviewOutcome, ReviewError>>,
    },
    /// A device's bundle of changes from `POST /v1/sync`.
    BatchPush {
        push: Box<BatchPush>,
        reply: oneshot::Sender<BatchPushOutcome>,
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
    /// Personal data delivered to this peer has been recorded in the audit log.
    read_audited: bool,
    /// The peer sent changes in this batch and must hear our heads back. Applying a batch
    /// at once can swallow the reply a one-at-a-time server would have sent: a peer's
    /// follow-up message announcing the heads we now share makes Automerge treat them as
    /// already told, and the peer would never learn its changes arrived.
    reply_owed: bool,
}

pub(super) struct DocumentActor<S> {
    hub: Arc<Hub<S>>,
    id: DocumentId,
    generation: u64,
    doc: Automerge,
    /// Kind and region, once the document has content (what scope is judged by).
    facts: Option<DocumentFacts>,
    /// Chunks this actor knows are contained in `doc`: the only ones compaction may delete.
    chunks: Vec<ChunkId>,
    incremental_chunks: usize,
    peers: HashMap<ConnectionId, PeerSync>,
    /// The tracking code last confirmed to be this document's alone (saves a lookup per write).
    unique_tracking_code: Option<String>,
}

/// One decoded message, admitted past the scope check.
struct Incoming {
    from: PeerHandle,
    message: sync::Message,
}

/// Whether every actor of some new changes belongs to their sender.
enum Binding {
    Own,
    /// This actor is bound to someone else.
    Foreign(ActorId),
    /// Ownership could not be looked up: not acceptance, the sender retries later.
    Unknown(StorageError),
}

/// What policy made of one sender's new changes, merged into the document.
enum Judged {
    Clean,
    /// A compensating change restored what these rules protect.
    Compensated(Vec<Rule>),
    /// A new document policy does not admit: drop the changes.
    Refused(Refusal),
    /// Writing the compensating change failed: drop the changes.
    Failed(String),
}

/// What happened to one sender's run of messages.
#[derive(Default)]
struct Verdicts {
    /// Senders whose message could not be applied at all (malformed changes).
    rejected: Vec<(ConnectionId, String)>,
    /// Senders who tried to create a document they may not.
    refused: Vec<(ConnectionId, Refusal)>,
    /// Senders whose changes were compensated, with the rules they broke.
    compensated: Vec<(ConnectionId, Vec<Rule>)>,
}

impl<S: Storage> DocumentActor<S> {
    pub(super) fn new(hub: Arc<Hub<S>>, id: DocumentId, generation: u64) -> Self {
        Self {
            hub,
            id,
            generation,
            doc: Automerge::new(),
            facts: None,
            chunks: Vec::new(),
            incremental_chunks: 0,
            peers: HashMap::new(),
            unique_tracking_code: None,
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
        let mut reviews = Vec::new();
        let mut pushes = Vec::new();
        for command in batch.drain(..) {
            match command {
                DocCommand::Receive {
                    from,
                    kind,
                    data,
                    _permit,
                } => received.push((from, kind, data, _permit)),
                DocCommand::Unfollow { connection } => self.unfollow(connection).await,
                DocCommand::Review { request, reply } => reviews.push((request, reply)),
                DocCommand::BatchPush { push, reply } => pushes.push((push, reply)),
                DocCommand::Evict => evict = true,
            }
        }
        if !received.is_empty() {
            self.receive(received).await;
        }
        for (push, reply) in pushes {
            let outcome = self.batch_push(*push).await;
            // The exchange may have been abandoned; what is stored stays stored.
            let _ = reply.send(outcome);
        }
        for (request, reply) in reviews {
            let outcome = self.review(request).await;
            // The caller may have given up waiting; the decision stands either way.
            let _ = reply.send(outcome);
        }
        evict
    }

    async fn receive(
        &mut self,
        received: Vec<(PeerHandle, ReceiveKind, Vec<u8>, OwnedSemaphorePermit)>,
    ) {
        tracing::trace!(document = %self.id, messages = received.len(), "receiving");
        let senders: Vec<PeerHandle> = received.iter().map(|(from, ..)| from.clone()).collect();
        let mut incoming = Vec::with_capacity(received.len());
        for (from, kind, data, _permit) in received {
            if !self.may_see(from.identity()) {
                self.deny(&from);
                continue;
            }
            self.ensure_peer(&from).await;
            match sync::Message::decode(&data) {
                Ok(message) => {
                    tracing::trace!(document = %self.id, peer = %from.peer_id(),
                        heads = ?message.heads, changes = message.changes.len(),
                        need = message.need.len(), have = message.have.len(), "sync message in");
                    incoming.push(Incoming {
                        from: from.clone(),
                        message,
                    })
                }
                Err(error) => {
                    tracing::warn!(%error, document = %self.id, peer = %from.peer_id(),
                        "malformed automerge sync message");
                    metrics::counter!(crate::metrics::PROTOCOL_ERRORS).increment(1);
                    self.peers.remove(&from.connection());
                    from.fail(self.hub.error_to(&from, "malformed automerge sync message"));
                    continue;
                }
            }
            if kind == ReceiveKind::Request
                && let Some(peer) = self.peers.get_mut(&from.connection())
            {
                peer.waiting_since.get_or_insert_with(Instant::now);
            }
        }

        let incoming = self.refuse_forged_actors(incoming).await;
        let heads_before = self.doc.get_heads();
        let Ok(verdicts) = self.apply(incoming).await else {
            self.recover(senders.iter()).await;
            return;
        };
        self.report_verdicts(&verdicts).await;

        let changed = self.doc.get_heads() != heads_before;
        tracing::trace!(document = %self.id, changed, "applied");
        if changed && !self.persist_changes(&heads_before, &senders).await {
            return;
        }
        // Durable: now answer the senders, and push to every follower if anything changed.
        let recipients = if changed {
            self.hub.followers(self.id)
        } else {
            senders
        };
        self.send_sync_messages(recipients).await;
        if changed && self.incremental_chunks >= self.hub.config().compact_after_chunks {
            self.compact().await;
        }
    }

    /// Scope: a document with content is visible to those whose regions cover it. One that
    /// has none yet is visible to anyone (it may be theirs to create; `admit` decides).
    fn may_see(&self, identity: &Identity) -> bool {
        match &self.facts {
            Some(facts) => identity.covers_region(&facts.region),
            None => true,
        }
    }

    /// Answers exactly as for a document that does not exist, and forgets the peer here.
    fn deny(&mut self, peer: &PeerHandle) {
        self.peers.remove(&peer.connection());
        self.hub.unfollow(self.id, peer.connection());
        // The peer may be gone already; then there is nobody to tell.
        let _ = peer.send(self.hub.unavailable(peer, self.id));
    }

    /// Drops (and reports) every message carrying a change whose actor belongs to someone
    /// other than its sender. Unknown actors are bound to the sender on first use.
    async fn refuse_forged_actors(&mut self, incoming: Vec<Incoming>) -> Vec<Incoming> {
        let doc = std::mem::take(&mut self.doc);
        let found = tokio::task::spawn_blocking(move || {
            let actors: Vec<Vec<ActorId>> = incoming
                .iter()
                .map(|m| new_change_actors(&doc, &m.message))
                .collect();
            (doc, incoming, actors)
        })
        .await;
        let (doc, incoming, actors) = match found {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, document = %self.id, "reading changes panicked");
                let _ = self.load().await;
                return Vec::new();
            }
        };
        self.doc = doc;
        let mut accepted = Vec::with_capacity(incoming.len());
        for (message, actors) in incoming.into_iter().zip(actors) {
            let owner = message.from.actor_owner();
            match self.check_binding(&actors, &owner).await {
                Binding::Own => accepted.push(message),
                Binding::Foreign(actor) => self.refuse_forgery(&message.from, &actor).await,
                Binding::Unknown(error) => {
                    tracing::error!(%error, document = %self.id, "actor lookup failed");
                    self.peers.remove(&message.from.connection());
                    message.from.fail(
                        self.hub
                            .error_to(&message.from, "storage unavailable, retry later"),
                    );
                }
            }
        }
        accepted
    }

    /// Actor binding: every actor must be `owner`'s; unknown actors are bound to it.
    async fn check_binding(&self, actors: &[ActorId], owner: &ActorOwner) -> Binding {
        for actor in actors {
            match self.hub.actor_owner(actor, owner).await {
                Ok(bound) if bound == *owner => {}
                Ok(_) => return Binding::Foreign(actor.clone()),
                Err(error) => return Binding::Unknown(error),
            }
        }
        Binding::Own
    }

    async fn refuse_forgery(&mut self, from: &PeerHandle, actor: &ActorId) {
        tracing::warn!(document = %self.id, peer = %from.peer_id(), %actor,
            "refused changes made by an actor that belongs to someone else");
        metrics::counter!(crate::metrics::POLICY_REFUSALS).increment(1);
        self.peers.remove(&from.connection());
        self.audit(
            AuditAction::Refusal,
            AuditActor::of(from.identity()),
            Some(format!("forged_actor actor={actor}")),
        )
        .await;
        from.fail(self.hub.error_to(
            from,
            "refused: these changes were made by an actor that belongs to another device or user",
        ));
    }

    /// Applies the messages off the reactor, judging each sender's run of messages.
    async fn apply(&mut self, incoming: Vec<Incoming>) -> Result<Verdicts, ()> {
        if incoming.is_empty() {
            return Ok(Verdicts::default());
        }
        let mut doc = std::mem::take(&mut self.doc);
        let mut peers = std::mem::take(&mut self.peers);
        let mut facts = self.facts.clone();
        let result = tokio::task::spawn_blocking(move || {
            let verdicts = apply_and_judge(&mut doc, &mut peers, &mut facts, incoming);
            (doc, peers, facts, verdicts)
        })
        .await;
        match result {
            Ok((doc, peers, facts, verdicts)) => {
                self.doc = doc;
                self.peers = peers;
                self.facts = facts;
                Ok(verdicts)
            }
            Err(error) => {
                tracing::error!(%error, document = %self.id, "applying sync messages panicked");
                Err(())
            }
        }
    }

    /// Tells each sender what policy did with its changes, and records it.
    async fn report_verdicts(&mut self, verdicts: &Verdicts) {
        for (connection, reason) in &verdicts.rejected {
            if let Some(peer) = self.peers.remove(connection) {
                tracing::warn!(document = %self.id, peer = %peer.peer.peer_id(), %reason,
                    "rejected sync message");
                metrics::counter!(crate::metrics::PROTOCOL_ERRORS).increment(1);
                peer.peer
                    .fail(self.hub.error_to(&peer.peer, "invalid sync message"));
            }
        }
        for (connection, refusal) in &verdicts.refused {
            let Some(peer) = self.peers.get(connection).map(|p| p.peer.clone()) else {
                continue;
            };
            tracing::info!(document = %self.id, peer = %peer.peer_id(), reason = refusal.code(),
                "refused a new document");
            metrics::counter!(crate::metrics::POLICY_REFUSALS).increment(1);
            let key = format!(
                "{}:{:?}:{}",
                self.id,
                peer.identity().credential,
                refusal.code()
            );
            if self.hub.first_refusal(key) {
                self.audit(
                    AuditAction::Refusal,
                    AuditActor::of(peer.identity()),
                    Some(format!("new_document {}", refusal.code())),
                )
                .await;
            }
            self.deny(&peer);
        }
        for (connection, rules) in &verdicts.compensated {
            let Some(peer) = self.peers.get(connection).map(|p| p.peer.clone()) else {
                continue;
            };
            metrics::counter!(crate::metrics::COMPENSATIONS).increment(1);
            let codes: Vec<&str> = rules.iter().map(Rule::code).collect();
            tracing::info!(document = %self.id, peer = %peer.peer_id(), rules = ?codes,
                "compensated changes that broke policy");
            self.audit(
                AuditAction::Compensation,
                AuditActor::of(peer.identity()),
                Some(format!("rules={}", codes.join(","))),
            )
            .await;
            self.report(&peer, PolicyReport::compensated(rules).to_cbor());
        }
    }

    /// A device's bundle from `POST /v1/sync`: the same scope, actor binding and policy as
    /// `receive`, stored durably with the index row and a feed number, then pushed live to
    /// the WebSocket followers. Nothing is stored for a refused or incomplete push.
    async fn batch_push(&mut self, push: BatchPush) -> BatchPushOutcome {
        if !self.may_see(&push.identity) {
            return BatchPushOutcome::Refused(RefusalReason::Unavailable);
        }
        if push.changes.len() > push.max_bytes {
            return BatchPushOutcome::Refused(RefusalReason::TooLarge);
        }
        let doc = std::mem::take(&mut self.doc);
        let staged = tokio::task::spawn_blocking(move || {
            let staged = stage(&doc, &push);
            (doc, push, staged)
        })
        .await;
        let (doc, push, staged) = match staged {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, document = %self.id, "staging a batch push panicked");
                let _ = self.load().await;
                return BatchPushOutcome::Failed;
            }
        };
        self.doc = doc;
        let Some((mut merged, actors, complete)) = staged else {
            return BatchPushOutcome::Refused(RefusalReason::Malformed);
        };
        if !complete {
            return BatchPushOutcome::Incomplete {
                doc: Box::new(self.doc.clone()),
            };
        }
        if actors.is_empty() {
            return self.stored(Vec::new());
        }
        let owner = match push.identity.device() {
            Some(device) => ActorOwner::Device(device.clone()),
            None => ActorOwner::User(push.identity.user_id),
        };
        match self.check_binding(&actors, &owner).await {
            Binding::Own => {}
            Binding::Foreign(actor) => {
                tracing::warn!(document = %self.id, %actor,
                    "refused a batch push made by an actor that belongs to someone else");
                metrics::counter!(crate::metrics::POLICY_REFUSALS).increment(1);
                self.audit(
                    AuditAction::Refusal,
                    AuditActor::of(&push.identity),
                    Some(format!("forged_actor actor={actor}")),
                )
                .await;
                return BatchPushOutcome::Refused(RefusalReason::ForeignActor);
            }
            Binding::Unknown(error) => {
                tracing::error!(%error, document = %self.id, "actor lookup failed");
                return BatchPushOutcome::Failed;
            }
        }
        let heads_before = self.doc.get_heads();
        let is_new = self.facts.is_none();
        let before = std::mem::take(&mut self.doc);
        let identity = push.identity.clone();
        let judged = tokio::task::spawn_blocking(move || {
            let judged = admit_and_judge(&before, is_new, &mut merged, &identity);
            (before, merged, judged)
        })
        .await;
        let (before, merged, judged) = match judged {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, document = %self.id, "judging a batch push panicked");
                let _ = self.load().await;
                return BatchPushOutcome::Failed;
            }
        };
        let compensated = match judged {
            Judged::Clean => Vec::new(),
            Judged::Compensated(rules) => rules,
            Judged::Refused(refusal) => {
                self.doc = before;
                tracing::info!(document = %self.id, reason = refusal.code(),
                    "refused a new document pushed in a batch");
                metrics::counter!(crate::metrics::POLICY_REFUSALS).increment(1);
                let key = format!(
                    "{}:{:?}:{}",
                    self.id,
                    push.identity.credential,
                    refusal.code()
                );
                if self.hub.first_refusal(key) {
                    self.audit(
                        AuditAction::Refusal,
                        AuditActor::of(&push.identity),
                        Some(format!("new_document {}", refusal.code())),
                    )
                    .await;
                }
                return BatchPushOutcome::Refused(refusal_reason(refusal));
            }
            Judged::Failed(_) => {
                self.doc = before;
                return BatchPushOutcome::Refused(RefusalReason::Malformed);
            }
        };
        self.doc = merged;
        self.facts = index::facts(&self.doc);
        if !self.persist_changes(&heads_before, &[]).await {
            return BatchPushOutcome::Failed;
        }
        if !compensated.is_empty() {
            metrics::counter!(crate::metrics::COMPENSATIONS).increment(1);
            let codes: Vec<&str> = compensated.iter().map(Rule::code).collect();
            tracing::info!(document = %self.id, rules = ?codes,
                "compensated batch-pushed changes that broke policy");
            self.audit(
                AuditAction::Compensation,
                AuditActor::of(&push.identity),
                Some(format!("rules={}", codes.join(","))),
            )
            .await;
        }
        let followers = self.hub.followers(self.id);
        self.send_sync_messages(followers).await;
        if self.incremental_chunks >= self.hub.config().compact_after_chunks {
            self.compact().await;
        }
        self.stored(compensated)
    }

    fn stored(&self, compensated: Vec<Rule>) -> BatchPushOutcome {
        BatchPushOutcome::Stored {
            compensated,
            doc: Box::new(self.doc.clone()),
        }
    }

    /// Sends a policy report to one peer as an ephemeral message on this document.
    fn report(&self, peer: &PeerHandle, data: Vec<u8>) {
        let count = self.hub.next_report_count();
        let message = Message::Ephemeral(Ephemeral {
            sender_id: self.hub.server_peer_id().clone(),
            target_id: peer.peer_id().clone(),
            document_id: self.id,
            session_id: self.hub.server_peer_id().to_string(),
            count,
            data,
        });
        let _ = peer.send(message);
    }

    /// Makes the new changes durable together with the index row (resolving a tracking-code
    /// collision first). Returns false if nothing may be acknowledged.
    async fn persist_changes(
        &mut self,
        heads_before: &[automerge::ChangeHash],
        senders: &[PeerHandle],
    ) -> bool {
        if let Err(error) = self.resolve_tracking_code_collision(senders).await {
            tracing::error!(%error, document = %self.id, "tracking code lookup failed");
            self.recover(senders.iter()).await;
            return false;
        }
        let row = index::row(self.id, &self.doc, now_ms());
        let doc = std::mem::take(&mut self.doc);
        let heads = heads_before.to_vec();
        let Ok((doc, bytes, count)) = tokio::task::spawn_blocking(move || {
            let bytes = doc.save_after(&heads);
            let count = doc.get_changes(&heads).len();
            (doc, bytes, count)
        })
        .await
        else {
            self.recover(senders.iter()).await;
            return false;
        };
        self.doc = doc;
        let written = match row {
            Some(row) => self.hub.storage().append_indexed(self.id, bytes, row).await,
            None => self.hub.storage().append_chunk(self.id, bytes).await,
        };
        match written {
            Ok(chunk) => {
                self.chunks.push(chunk);
                self.incremental_chunks += 1;
                metrics::counter!(crate::metrics::CHANGES_APPLIED).increment(count as u64);
                true
            }
            Err(error) => {
                tracing::error!(%error, document = %self.id, "storing changes failed");
                metrics::counter!(crate::metrics::STORAGE_ERRORS).increment(1);
                self.recover(senders.iter()).await;
                false
            }
        }
    }

    /// A tracking code is made offline on the device, so two devices can pick the same one.
    /// The later document gets a new code from the server (same regency), written into it as
    /// a server change; its sender is told the new code. Neither application is lost.
    async fn resolve_tracking_code_collision(
        &mut self,
        senders: &[PeerHandle],
    ) -> Result<(), StorageError> {
        let Some(code) = index::tracking_code(&self.doc) else {
            return Ok(());
        };
        if self.unique_tracking_code.as_deref() == Some(code.as_str()) {
            return Ok(());
        }
        let Some(holder) = self
            .hub
            .storage()
            .document_for_tracking_code(code.as_str())
            .await?
        else {
            return Ok(());
        };
        if holder == self.id {
            self.unique_tracking_code = Some(code.as_str().to_owned());
            return Ok(());
        }
        let mut replacement = code.clone();
        for _ in 0..8 {
            replacement = code.regenerate(&mut rand::rng());
            if self
                .hub
                .storage()
                .document_for_tracking_code(replacement.as_str())
                .await?
                .is_none()
            {
                break;
            }
        }
        index::set_tracking_code(&mut self.doc, &replacement).map_err(|error| {
            StorageError::Corrupt(format!("writing a new tracking code: {error}"))
        })?;
        tracing::info!(document = %self.id, "tracking code collision resolved with a new code");
        self.audit(
            AuditAction::Compensation,
            AuditActor::server(),
            Some(format!("tracking_code_reassigned holder={holder}")),
        )
        .await;
        for sender in senders {
            self.report(
                sender,
                PolicyReport::tracking_code_reassigned(replacement.as_str()).to_cbor(),
            );
        }
        Ok(())
    }

    /// Generates one sync message per recipient (off the reactor) and queues them.
    async fn send_sync_messages(&mut self, recipients: Vec<PeerHandle>) {
        let mut allowed = Vec::with_capacity(recipients.len());
        for peer in recipients {
            if self.may_see(peer.identity()) {
                self.ensure_peer(&peer).await;
                allowed.push(peer);
            } else {
                self.deny(&peer);
            }
        }
        let doc = std::mem::take(&mut self.doc);
        let mut peers = std::mem::take(&mut self.peers);
        let server = self.hub.server_peer_id().clone();
        let document = self.id;
        let result = tokio::task::spawn_blocking(move || {
            let empty = doc.get_heads().is_empty();
            let mut outgoing = Vec::with_capacity(allowed.len());
            for recipient in allowed {
                let Some(peer) = peers.get_mut(&recipient.connection()) else {
                    continue;
                };
                if empty && peer.waiting_since.is_some() {
                    // Nothing to offer yet; `answer_overdue_requests` decides when to give up.
                    continue;
                }
                peer.waiting_since = None;
                if std::mem::take(&mut peer.reply_owed) {
                    peer.state.last_sent_heads.clear();
                }
                if let Some(message) = doc.generate_sync_message(&mut peer.state) {
                    tracing::trace!(%document, peer = %recipient.peer_id(), heads = ?message.heads,
                        changes = message.changes.len(), need = message.need.len(),
                        "sync message out");
                    let carries_content = !message.changes.is_empty();
                    outgoing.push((
                        recipient.clone(),
                        carries_content,
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
        let outgoing = match result {
            Ok((doc, peers, outgoing)) => {
                self.doc = doc;
                self.peers = peers;
                outgoing
            }
            Err(error) => {
                tracing::error!(%error, document = %self.id, "generating sync messages panicked");
                let none: [&PeerHandle; 0] = [];
                self.recover(none.into_iter()).await;
                return;
            }
        };
        for (peer, carries_content, message) in outgoing {
            if carries_content {
                self.audit_personal_data_read(&peer).await;
            }
            if peer.send(message).is_err() {
                self.peers.remove(&peer.connection());
            }
        }
    }

    /// Records, once per connection, that a person received this application's personal
    /// data (UU PDP Art. 32: who saw this citizen's data), keyed by the citizen, not the NIK.
    async fn audit_personal_data_read(&mut self, peer: &PeerHandle) {
        let already = self
            .peers
            .get(&peer.connection())
            .is_none_or(|p| p.read_audited);
        if already || !matches!(&self.facts, Some(f) if f.kind == DocumentKind::Application) {
            return;
        }
        if let Some(state) = self.peers.get_mut(&peer.connection()) {
            state.read_audited = true;
        }
        let citizen = index::citizen_key(&self.doc, self.hub.citizen_secret(), now_ms());
        let mut entry = NewAuditEntry::new(
            now_ms(),
            AuditAction::PersonalDataRead,
            AuditActor::of(peer.identity()),
        );
        entry.subject = Some(self.id.to_string());
        entry.citizen = citizen;
        entry.detail = Some("sync".into());
        if let Err(error) = self.hub.storage().append(entry).await {
            tracing::error!(%error, document = %self.id, "audit append failed");
        }
    }

    async fn audit(&self, action: AuditAction, actor: AuditActor, detail: Option<String>) {
        let mut entry = NewAuditEntry::new(now_ms(), action, actor);
        entry.subject = Some(self.id.to_string());
        entry.detail = detail;
        entry.citizen = index::citizen_key(&self.doc, self.hub.citizen_secret(), now_ms());
        if let Err(error) = self.hub.storage().append(entry).await {
            tracing::error!(%error, document = %self.id, "audit append failed");
        }
    }

    /// A supervisor's decision: checked, written as a server change with the supervisor as
    /// author, made durable, pushed to every follower, and recorded.
    async fn review(&mut self, request: ReviewRequest) -> Result<ReviewOutcome, ReviewError> {
        let Some(facts) = self.facts.clone() else {
            return Err(ReviewError::NotFound);
        };
        if facts.kind != DocumentKind::Application || !request.identity.covers_region(&facts.region)
        {
            return Err(ReviewError::NotFound);
        }
        let heads_before = self.doc.get_heads();
        let change = review::decide(&self.doc, &request, now_ms())?;
        let doc = std::mem::take(&mut self.doc);
        let written = tokio::task::spawn_blocking(move || {
            let mut doc = doc;
            let result = review::write(&mut doc, &change);
            (doc, result.map(|()| change))
        })
        .await;
        let change = match written {
            Ok((doc, result)) => {
                self.doc = doc;
                result.map_err(|error| ReviewError::Internal(error.to_string()))?
            }
            Err(error) => {
                let _ = self.load().await;
                return Err(ReviewError::Internal(error.to_string()));
            }
        };
        if !self.persist_changes(&heads_before, &[]).await {
            return Err(ReviewError::Unavailable);
        }
        let followers = self.hub.followers(self.id);
        self.send_sync_messages(followers).await;
        self.audit(
            AuditAction::ReviewDecision,
            AuditActor::of(&request.identity),
            Some(format!("{}->{}: {}", change.from, change.to, change.note)),
        )
        .await;
        Ok(ReviewOutcome {
            status: change.to,
            heads: self
                .doc
                .get_heads()
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
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
                read_audited: false,
                reply_owed: false,
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
        let actor = self.hub.server_actor().clone();
        let loaded = tokio::task::spawn_blocking(move || {
            // Every change the server itself writes (compensations, decisions) is by its actor.
            let mut doc = Automerge::new().with_actor(actor);
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
            let facts = index::facts(&doc);
            (doc, ids, incremental, facts)
        })
        .await
        .map_err(|error| StorageError::Corrupt(format!("loading panicked: {error}")))?;
        (self.doc, self.chunks, self.incremental_chunks, self.facts) = loaded;
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
            self.peers.remove(&sender.connection());
            sender.fail(
                self.hub
                    .error_to(sender, "storage unavailable, retry later"),
            );
        }
        if let Err(error) = self.load().await {
            tracing::error!(%error, document = %self.id, "reloading after failure failed");
            self.doc = Automerge::new().with_actor(self.hub.server_actor().clone());
            self.facts = None;
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
                match command {
                    DocCommand::Receive { from, .. } => {
                        from.fail(self.hub.error_to(&from, "storage unavailable, retry later"))
                    }
                    DocCommand::Review { reply, .. } => {
                        let _ = reply.send(Err(ReviewError::Unavailable));
                    }
                    DocCommand::BatchPush { reply, .. } => {
                        let _ = reply.send(BatchPushOutcome::Failed);
                    }
                    DocCommand::Unfollow { .. } | DocCommand::Evict => {}
                }
            }
            if self.hub.retire(self.id, self.generation, commands) {
                return;
            }
        }
    }
}

/// The actors of the changes in `message` that `doc` does not have yet. A V1 message carries
/// change chunks, read one by one; anything else (a V2 message's document chunk, compressed
/// chunks) is loaded into a copy of the document, which resolves dependencies on what the
/// document already holds.
fn new_change_actors(doc: &Automerge, message: &sync::Message) -> Vec<ActorId> {
    let mut actors = HashSet::new();
    let parsed: Option<Vec<Change>> = message
        .changes
        .iter()
        .map(|chunk| Change::from_bytes(chunk.to_vec()).ok())
        .collect();
    let changes = match parsed {
        Some(changes) => changes,
        None => {
            let mut scratch = doc.clone();
            for chunk in message.changes.iter() {
                // Unreadable: `receive_sync_message` will reject the message itself.
                let _ = scratch.load_incremental(chunk);
            }
            // `a.get_changes_added(b)` lists what `b` has and `a` lacks.
            doc.get_changes_added(&scratch)
        }
    };
    for change in changes {
        if doc.get_change_by_hash(&change.hash()).is_none() {
            actors.insert(change.actor_id().clone());
        }
    }
    actors.into_iter().collect()
}

/// Applies each sender's consecutive messages, then judges what that sender changed.
fn apply_and_judge(
    doc: &mut Automerge,
    peers: &mut HashMap<ConnectionId, PeerSync>,
    facts: &mut Option<DocumentFacts>,
    incoming: Vec<Incoming>,
) -> Verdicts {
    let mut verdicts = Verdicts::default();
    let mut runs: Vec<(PeerHandle, Vec<sync::Message>)> = Vec::new();
    for Incoming { from, message } in incoming {
        match runs.last_mut() {
            Some((sender, messages)) if sender.connection() == from.connection() => {
                messages.push(message)
            }
            _ => runs.push((from, vec![message])),
        }
    }
    for (sender, messages) in runs {
        let connection = sender.connection();
        let carries_changes = messages.iter().any(|m| !m.changes.is_empty());
        let before = carries_changes.then(|| doc.fork());
        let Some(peer) = peers.get_mut(&connection) else {
            continue;
        };
        let state_before = peer.state.clone();
        peer.reply_owed |= carries_changes;
        for message in messages {
            if let Err(error) = doc.receive_sync_message(&mut peer.state, message) {
                verdicts.rejected.push((connection, error.to_string()));
                break;
            }
        }
        let Some(before) = before else {
            continue;
        };
        if before.get_heads() == doc.get_heads() {
            continue;
        }
        match admit_and_judge(&before, facts.is_none(), doc, sender.identity()) {
            Judged::Clean => {}
            Judged::Compensated(rules) => verdicts.compensated.push((connection, rules)),
            Judged::Refused(refusal) => {
                // Not stored, not acknowledged: as if the message never came.
                *doc = before;
                peer.state = state_before;
                verdicts.refused.push((connection, refusal));
                continue;
            }
            Judged::Failed(error) => {
                *doc = before;
                peer.state = state_before;
                verdicts.rejected.push((connection, error));
                continue;
            }
        }
        *facts = index::facts(doc);
    }
    verdicts
}

/// Policy on a sender's changes, now merged into `doc` (`before` is the document without
/// them): admission of a new document, then the per-change rules, with a compensating
/// change written into `doc` for what the sender's role may not do. Shared by WebSocket
/// sync and batch pushes, so both obey exactly the same rules.
fn admit_and_judge(
    before: &Automerge,
    is_new: bool,
    doc: &mut Automerge,
    identity: &Identity,
) -> Judged {
    let in_scope = |region: &RegionCode| identity.covers_region(region);
    if is_new && let Err(refusal) = admit(doc, in_scope) {
        return Judged::Refused(refusal);
    }
    let judgement = judge((!is_new).then_some(before), doc, identity.role, in_scope);
    if judgement.is_clean() {
        return Judged::Clean;
    }
    match compensate(doc, &judgement.restore) {
        Ok(_) => Judged::Compensated(judgement.broken),
        Err(error) => {
            tracing::error!(%error, "compensating change failed; dropping the changes");
            Judged::Failed(error.to_string())
        }
    }
}

/// A copy of `doc` with `push` merged, the new changes' actors, and whether the device's
/// heads are all present (no dependency missing). `None`: not Automerge data.
fn stage(doc: &Automerge, push: &BatchPush) -> Option<(Automerge, Vec<ActorId>, bool)> {
    // `clone`, not `fork`: a fork draws a new actor id, a clone keeps the server's.
    let mut merged = doc.clone();
    merged.load_incremental(&push.changes).ok()?;
    let complete = merged.get_missing_deps(&push.heads).is_empty();
    let actors: HashSet<ActorId> = doc
        .get_changes_added(&merged)
        .iter()
        .map(|c| c.actor_id().clone())
        .collect();
    Some((merged, actors.into_iter().collect(), complete))
}

fn now_ms() -> i64 {
    crate::auth::now_millis()
}
