//! The device side of batch sync: plan a request, apply the response.
//!
//! [`DeviceState`] is plain data the client SDK persists (in SQLite): the cursor, the request
//! in flight, and per document the local heads, the heads the server is known to hold and any
//! repair in progress. Documents themselves stay in the SDK's store; each step names the ones
//! it needs and takes them as a map, so a device with 500 documents loads only those that
//! changed.
//!
//! # Driving contract
//!
//! 1. After every local write, call [`DeviceState::note_local_change`] with the document's
//!    new heads (that is how the state knows which documents to push without loading all).
//! 2. To sync: load the documents [`DeviceState::documents_for_request`] names, draw 16
//!    random bytes and call [`DeviceState::plan_request`]. Persist the state (the request is
//!    now pending) *before* sending [`encode_request`](super::encode_request)`(&request)`.
//! 3. If the exchange fails (timeout, dropped connection, HTTP error), call `plan_request`
//!    again: while a request is pending it returns that same request, same key, so the
//!    server answers a retry with its stored response instead of acting twice. (A device
//!    may instead [`DeviceState::abandon_pending`]; that is safe, only less efficient.)
//! 4. On a response: decode it, load the documents
//!    [`DeviceState::documents_for_response`] names, call [`DeviceState::apply_response`],
//!    then persist in **one transaction** the documents listed in
//!    [`DeviceEffects::saved`], the deletions in [`DeviceEffects::deleted`] and the state
//!    (its cursor must never be stored without the documents it covers).
//! 5. While [`DeviceEffects::sync_again`] is set, go back to 2 (bound the number of
//!    exchanges per sync session in the driver).

use std::collections::{BTreeMap, BTreeSet};

use automerge::{ActorId, Automerge, ChangeHash};

use super::MAX_REPAIR_ROUNDS;
use super::cursor::Cursor;
use super::knowledge::{bundle_since, holds_all};
use super::message::{
    Ack, BatchRequest, BatchResponse, CompensationReason, IdempotencyKey, PushEntry, RefusalReason,
    RepairRequest,
};
use super::repair::{self, DeviceStep};
use crate::ids::DocumentId;

/// How big a device lets one exchange get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Pushes stop being added once the request body would exceed this (at least one push is
    /// always sent, so a large document still makes progress); the rest go in the next
    /// exchange. The size counted is the encoded, uncompressed body; a transport that
    /// compresses can plan against a larger figure and check what it sends, as the SDK does.
    pub max_request_bytes: usize,
    /// Sent to the server as the request's `max_response_bytes`.
    pub max_response_bytes: Option<u64>,
}

impl Default for DeviceLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 64 * 1024,
            max_response_bytes: None,
        }
    }
}

/// Everything the device remembers about batch sync.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceState {
    /// The actor given to documents the device first receives from the server (its own
    /// edits must use an actor bound to this device).
    pub actor: ActorId,
    /// The cursor of the last response applied; `None` before the first exchange.
    pub cursor: Option<Cursor>,
    /// The sync view of every document the device holds.
    pub documents: BTreeMap<DocumentId, DeviceDoc>,
    /// The request sent and not yet answered; retried as is.
    pub pending: Option<BatchRequest>,
}

/// The sync view of one document on the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceDoc {
    /// The document's heads on the device, as last noted.
    pub heads: Vec<ChangeHash>,
    /// Heads the server is known to hold: acknowledged pushes, applied updates. The next push
    /// is `save_after(server_heads)`.
    pub server_heads: Vec<ChangeHash>,
    /// The heads of a push the server refused; the document is not pushed again until its
    /// heads move.
    pub refused_at: Option<Vec<ChangeHash>>,
    /// A repair in progress.
    pub repair: Option<DeviceRepair>,
}

/// A repair in progress on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRepair {
    /// The round the next request carries.
    pub round: u32,
    /// The sync message to send; `None` asks for the whole document.
    pub message: Option<Vec<u8>>,
    /// The encoded `automerge::sync::State` between rounds.
    pub sync_state: Vec<u8>,
}

/// What the driver must do after [`DeviceState::apply_response`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEffects {
    /// The new cursor (already in the state).
    pub cursor: Cursor,
    /// Documents changed (or created) in the map passed in: store them.
    pub saved: Vec<DocumentId>,
    /// Documents that left the device's scope: delete them from the store.
    pub deleted: Vec<DocumentId>,
    /// Documents whose unacknowledged local changes are gone: deleted with the document
    /// (it left the scope), or replaced by the server's copy because they could not be
    /// merged with it (worth telling the officer).
    pub lost_local_changes: Vec<DocumentId>,
    /// Pushes the server stored.
    pub acknowledged: Vec<DocumentId>,
    /// Pushes refused, with the reason.
    pub refused: Vec<(DocumentId, RefusalReason)>,
    /// Pushes stored and compensated, with the reason (the compensation is merged already).
    pub compensated: Vec<(DocumentId, CompensationReason)>,
    /// Documents whose sync fell back to repair.
    pub repairing: Vec<DocumentId>,
    /// Documents even the server's whole copy could not be loaded into or from; sync leaves
    /// them alone (report them).
    pub unrepairable: Vec<DocumentId>,
    /// More to do: unsent pushes, held-back updates or repair rounds. Sync again now.
    pub sync_again: bool,
}

/// Why a request could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A document [`DeviceState::documents_for_request`] named is not in the map.
    #[error("document {0} was not loaded")]
    MissingDocument(DocumentId),
}

/// Why a response was not applied. Nothing changed; the request stays pending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// No request is pending (a stray or duplicated response).
    #[error("no request is pending")]
    NotPending,
    /// The response answers another request.
    #[error("response answers another request")]
    KeyMismatch,
    /// The response does not acknowledge every push, one for one.
    #[error("expected {expected} acknowledgements, got {got}")]
    AckCountMismatch {
        /// Pushes in the pending request.
        expected: usize,
        /// Acknowledgements in the response.
        got: usize,
    },
    /// A document [`DeviceState::documents_for_response`] named is not in the map.
    #[error("document {0} was not loaded")]
    MissingDocument(DocumentId),
}

impl DeviceState {
    /// A device that has never synced; `actor` is its Automerge actor id.
    pub fn new(actor: ActorId) -> Self {
        Self {
            actor,
            cursor: None,
            documents: BTreeMap::new(),
            pending: None,
        }
    }

    /// Records a local write (or a new document) with the document's new heads.
    pub fn note_local_change(&mut self, id: DocumentId, heads: Vec<ChangeHash>) {
        self.documents.entry(id).or_default().heads = heads;
    }

    /// The local copy of a document is gone or unreadable: ask the server for all of it.
    /// Local changes the server had not acknowledged are lost with it.
    pub fn document_lost(&mut self, id: DocumentId) {
        let doc = self.documents.entry(id).or_default();
        doc.heads.clear();
        doc.server_heads.clear();
        doc.refused_at = None;
        doc.repair = Some(whole_document_repair());
    }

    /// Gives up on the pending request. Safe at any time: the server then serves the next
    /// request as if the last response had never been sent.
    pub fn abandon_pending(&mut self) {
        self.pending = None;
    }

    /// Makes refused documents eligible for pushing again, e.g. when the officer asks to
    /// retry or once a day: a refusal for [`RefusalReason::Unavailable`] may end when the
    /// officer's regions change. Returns how many documents were refused.
    pub fn retry_refused(&mut self) -> usize {
        let mut count = 0;
        for doc in self.documents.values_mut() {
            count += usize::from(doc.refused_at.take().is_some());
        }
        count
    }

    /// True when there is something to push or repair, or a request to retry.
    pub fn needs_sync(&self) -> bool {
        self.pending.is_some()
            || self
                .documents
                .values()
                .any(|d| d.is_dirty() || d.repair.is_some())
    }

    /// The documents [`DeviceState::plan_request`] needs loaded: those with changes to push
    /// and those sending their whole content in a repair. Empty while a request is pending.
    pub fn documents_for_request(&self) -> Vec<DocumentId> {
        if self.pending.is_some() {
            return Vec::new();
        }
        self.documents
            .iter()
            .filter(|(_, d)| d.is_dirty() || d.repair.as_ref().is_some_and(|r| r.message.is_none()))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The next request: the pending one if there is one (a retry), otherwise a new one with
    /// `key`, pushing `save_after(server_heads)` for every document with unacknowledged
    /// changes (within `limits`) and carrying every repair in progress. The request is
    /// pending once this returns.
    pub fn plan_request(
        &mut self,
        key: IdempotencyKey,
        docs: &BTreeMap<DocumentId, Automerge>,
        limits: DeviceLimits,
    ) -> Result<BatchRequest, PlanError> {
        if let Some(pending) = &self.pending {
            return Ok(pending.clone());
        }
        let mut push = Vec::new();
        let mut repair = Vec::new();
        let mut size = 64usize;
        for (id, state) in &mut self.documents {
            if let Some(rep) = &state.repair {
                repair.push(RepairRequest {
                    document_id: *id,
                    round: rep.round,
                    message: rep.message.clone(),
                });
                size += rep.message.as_ref().map_or(0, Vec::len) + 32;
                // Asking for the whole document: send ours whole too, so that both sides hold
                // everything after this exchange whatever the Bloom filters said.
                if rep.message.is_none()
                    && let Some(doc) = docs.get(id)
                    && let Some(changes) = bundle_since(doc, &[])
                {
                    state.heads = doc.get_heads();
                    size += changes.len();
                    push.push(PushEntry {
                        document_id: *id,
                        heads: state.heads.clone(),
                        changes,
                    });
                }
                continue;
            }
            if !state.is_dirty() {
                continue;
            }
            let doc = docs.get(id).ok_or(PlanError::MissingDocument(*id))?;
            state.heads = doc.get_heads();
            let Some(changes) = bundle_since(doc, &state.server_heads) else {
                continue;
            };
            let entry_size = changes.len() + 40 + 34 * state.heads.len();
            if !push.is_empty() && size + entry_size > limits.max_request_bytes {
                continue;
            }
            size += entry_size;
            push.push(PushEntry {
                document_id: *id,
                heads: state.heads.clone(),
                changes,
            });
        }
        let request = BatchRequest {
            key,
            cursor: self.cursor.clone(),
            push,
            repair,
            max_response_bytes: limits.max_response_bytes,
        };
        self.pending = Some(request.clone());
        Ok(request)
    }

    /// The documents [`DeviceState::apply_response`] needs loaded: every document the
    /// response updates or repairs, and pushed documents the server sent into repair, that
    /// the device holds with some content. (Documents new to the device, or lost, are
    /// created in the map.)
    pub fn documents_for_response(&self, response: &BatchResponse) -> Vec<DocumentId> {
        let mut ids = BTreeSet::new();
        ids.extend(response.updates.iter().map(|u| u.document_id));
        ids.extend(response.repair.iter().map(|r| r.document_id));
        if let Some(pending) = &self.pending {
            let repaired = pending
                .push
                .iter()
                .zip(&response.acks)
                .filter(|(_, ack)| matches!(ack, Ack::Repair))
                .map(|(push, _)| push.document_id);
            ids.extend(repaired);
        }
        ids.into_iter()
            .filter(|id| self.documents.get(id).is_some_and(|d| !d.heads.is_empty()))
            .collect()
    }

    /// Applies a response to the pending request: acknowledgements, updates (merged into the
    /// documents in `docs`), repair rounds, removals (taken out of `docs`), then the cursor.
    ///
    /// Checks everything before changing anything: on an error the state and `docs` are as
    /// they were and the request is still pending.
    pub fn apply_response(
        &mut self,
        response: BatchResponse,
        docs: &mut BTreeMap<DocumentId, Automerge>,
    ) -> Result<DeviceEffects, ApplyError> {
        let request = self.pending.as_ref().ok_or(ApplyError::NotPending)?;
        if request.key != response.key {
            return Err(ApplyError::KeyMismatch);
        }
        if request.push.len() != response.acks.len() {
            return Err(ApplyError::AckCountMismatch {
                expected: request.push.len(),
                got: response.acks.len(),
            });
        }
        if let Some(missing) = self
            .documents_for_response(&response)
            .into_iter()
            .find(|id| !docs.contains_key(id))
        {
            return Err(ApplyError::MissingDocument(missing));
        }
        let request = self.pending.take().ok_or(ApplyError::NotPending)?;

        let mut effects = DeviceEffects {
            cursor: response.cursor.clone(),
            saved: Vec::new(),
            deleted: Vec::new(),
            lost_local_changes: Vec::new(),
            acknowledged: Vec::new(),
            refused: Vec::new(),
            compensated: Vec::new(),
            repairing: Vec::new(),
            unrepairable: Vec::new(),
            sync_again: response.more,
        };
        let removed: BTreeSet<DocumentId> = response.removed.iter().copied().collect();
        let replied: BTreeSet<DocumentId> = response.repair.iter().map(|r| r.document_id).collect();
        let mut saved = BTreeSet::new();

        for (push, ack) in request.push.iter().zip(&response.acks) {
            self.apply_ack(push, *ack, &replied, docs, &mut effects);
        }
        for update in &response.updates {
            if removed.contains(&update.document_id) {
                continue;
            }
            let id = update.document_id;
            let doc = docs
                .entry(id)
                .or_insert_with(|| Automerge::new().with_actor(self.actor.clone()));
            let state = self.documents.entry(id).or_default();
            saved.insert(id);
            let whole = state.repair.as_ref().is_some_and(|r| r.message.is_none());
            let mut loaded = doc.load_incremental(&update.changes).is_ok();
            if !loaded && whole {
                // The server's whole document does not merge into ours (e.g. our copy reused
                // an actor id and sequence number): take the server's copy and report ours
                // as lost, rather than asking for the whole document forever.
                if let Ok(fresh) = Automerge::load(&update.changes) {
                    *doc = fresh.with_actor(self.actor.clone());
                    loaded = true;
                    state.refused_at = None;
                    effects.lost_local_changes.push(id);
                }
            }
            state.heads = doc.get_heads();
            if loaded && holds_all(doc, &update.heads) {
                state.server_heads = update.heads.clone();
                state.repair = None;
            } else if !loaded && whole {
                // Even the server's copy does not load: nothing more sync can do.
                state.repair = None;
                effects.unrepairable.push(id);
            } else if !loaded {
                state.repair = Some(whole_document_repair());
                effects.repairing.push(id);
            } else if state.repair.is_none() {
                state.repair = Some(opening_repair(doc));
                effects.repairing.push(id);
            }
        }
        for reply in &response.repair {
            if removed.contains(&reply.document_id) {
                continue;
            }
            let id = reply.document_id;
            let doc = docs
                .entry(id)
                .or_insert_with(|| Automerge::new().with_actor(self.actor.clone()));
            let state = self.documents.entry(id).or_default();
            let sync_state = state.repair.as_ref().map_or_else(
                || automerge::sync::State::new().encode(),
                |r| r.sync_state.clone(),
            );
            match repair::device_receive(doc, &sync_state, &reply.message) {
                DeviceStep::Done { server_heads } => {
                    state.server_heads = server_heads;
                    state.repair = None;
                }
                DeviceStep::Continue {
                    message,
                    sync_state,
                } => {
                    let round = reply.round.saturating_add(1);
                    state.repair = Some(if round > MAX_REPAIR_ROUNDS {
                        whole_document_repair()
                    } else {
                        DeviceRepair {
                            round,
                            message: Some(message),
                            sync_state,
                        }
                    });
                    effects.repairing.push(id);
                }
                DeviceStep::Broken => {
                    state.repair = Some(whole_document_repair());
                    effects.repairing.push(id);
                }
            }
            state.heads = doc.get_heads();
            saved.insert(id);
        }
        for id in &response.removed {
            docs.remove(id);
            saved.remove(id);
            if let Some(state) = self.documents.remove(id) {
                if state.heads != state.server_heads {
                    effects.lost_local_changes.push(*id);
                }
                effects.deleted.push(*id);
            }
        }

        self.cursor = Some(response.cursor);
        effects.saved = saved.into_iter().collect();
        effects.repairing.sort();
        effects.repairing.dedup();
        effects.sync_again |= self.needs_sync();
        Ok(effects)
    }

    fn apply_ack(
        &mut self,
        push: &PushEntry,
        ack: Ack,
        replied: &BTreeSet<DocumentId>,
        docs: &BTreeMap<DocumentId, Automerge>,
        effects: &mut DeviceEffects,
    ) {
        let id = push.document_id;
        let Some(state) = self.documents.get_mut(&id) else {
            return;
        };
        match ack {
            Ack::Accepted | Ack::Compensated(_) => {
                state.server_heads = push.heads.clone();
                state.refused_at = None;
                effects.acknowledged.push(id);
                if let Ack::Compensated(reason) = ack {
                    effects.compensated.push((id, reason));
                }
            }
            Ack::Refused(reason) => {
                state.refused_at = Some(push.heads.clone());
                effects.refused.push((id, reason));
            }
            Ack::Repair => {
                effects.repairing.push(id);
                if !replied.contains(&id) && state.repair.is_none() {
                    state.repair = Some(match docs.get(&id) {
                        Some(doc) => opening_repair(doc),
                        None => whole_document_repair(),
                    });
                }
            }
            Ack::Deferred | Ack::Unknown(_) => {}
        }
    }
}

impl DeviceDoc {
    /// Has changes the server has not acknowledged and that are worth pushing.
    fn is_dirty(&self) -> bool {
        self.repair.is_none()
            && self.heads != self.server_heads
            && self.refused_at.as_ref() != Some(&self.heads)
    }
}

fn opening_repair(doc: &Automerge) -> DeviceRepair {
    let (message, sync_state) = repair::device_opening(doc);
    DeviceRepair {
        round: 1,
        message: Some(message),
        sync_state,
    }
}

fn whole_document_repair() -> DeviceRepair {
    DeviceRepair {
        round: MAX_REPAIR_ROUNDS + 1,
        message: None,
        sync_state: Vec::new(),
    }
}
