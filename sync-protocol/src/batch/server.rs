//! The server side of one batch exchange, as a sans-IO core.
//!
//! [`ServerExchange`] decides acknowledgements, updates, removals and repair answers; the
//! driver (the server crate) owns storage, the change feed, scope and the policy engine, and
//! passes what the core needs as values.
//!
//! # Driving contract
//!
//! For one request of an authenticated device:
//!
//! 1. Load the device's [`DeviceRecord`] (default for a new device) and call
//!    [`ServerExchange::begin`] with the request body (decompressed). Serialise exchanges per
//!    device (one at a time), so that a retry arriving while the original is still running
//!    sees the original's record.
//!    On [`Begin::Replay`] send those bytes and stop (nothing is stored); on
//!    [`Begin::Fresh`] continue.
//! 2. For each push `i` of [`ServerExchange::request`], in any order:
//!    - if the device may not write the document (scope), [`ServerExchange::refuse_push`]
//!      with [`RefusalReason::Unavailable`];
//!    - otherwise load the document (an empty one if it does not exist),
//!      [`ServerExchange::stage_push`] it, run actor binding and policy on the
//!      [`StagedPush`], store its new changes (and any compensating change) **durably**, then
//!      [`ServerExchange::settle_push`] with the stored document. An incomplete push (missing
//!      dependencies) must not be stored; settle it anyway and the core answers with a
//!      repair.
//! 3. For each repair `i`: load the document and [`ServerExchange::answer_repair`]; a
//!    document that does not exist or is out of scope is offered as [`FeedItem::LeftScope`]
//!    instead (the same answer for both, so it reveals nothing).
//! 4. Read the feed head (the highest sequence number stored so far), then offer the feed
//!    after [`ServerExchange::feed_after`] up to that head, in the device's scope, one item
//!    per document at the sequence number of its latest change or scope change, **in
//!    ascending order**, with the document and its knowledge row as stored. Stop at
//!    [`Offer::Full`].
//! 5. [`ServerExchange::finish`] with the feed head. In one transaction, apply the
//!    [`Settlement`] to the device's knowledge rows that have pending heads (or delete all
//!    its rows for [`Settlement::ForgetAll`]), then the [`Finished::knowledge`] updates, and
//!    store [`Finished::record`]. Only then send [`Finished::response`].
//!
//! Steps 2 and 3 may run documents in parallel; the core only needs `&mut self` per call.

use std::collections::BTreeMap;

use automerge::{Automerge, Change, ChangeHash};

use super::codec::{BatchDecodeError, decode_request, encode_response};
use super::cursor::{Cursor, ServerCursor};
use super::knowledge::{
    DocKnowledge, KnowledgeChange, KnowledgeUpdate, Settlement, bundle_since, holds_all,
};
use super::message::{
    Ack, BatchRequest, BatchResponse, CompensationReason, DocUpdate, IdempotencyKey, RefusalReason,
    RepairReply,
};
use super::{MAX_REPAIR_ROUNDS, repair};
use crate::ids::DocumentId;

/// Settings of the server side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Identifies the change feed in cursors ([`ServerCursor::epoch`]).
    pub epoch: u32,
    /// Updates stop being added once the response body would exceed this; the response then
    /// says `more`. A device may ask for less.
    pub max_response_bytes: usize,
    /// A push entry whose `changes` are larger is refused with [`RefusalReason::TooLarge`].
    pub max_push_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            epoch: 0,
            max_response_bytes: 256 * 1024,
            max_push_bytes: 4 * 1024 * 1024,
        }
    }
}

/// What the server stores per device between exchanges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Exchanges completed; the next one is numbered `exchanges + 1`.
    pub exchanges: u64,
    /// The last exchange, kept to answer a retry of it.
    pub last: Option<LastExchange>,
}

/// The last exchange of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastExchange {
    /// The request's idempotency key.
    pub key: IdempotencyKey,
    /// A 64-bit FNV-1a digest of the request body, to refuse a different body under the
    /// same key.
    pub request_digest: u64,
    /// The cursor the response carried.
    pub cursor: Cursor,
    /// The encoded response, sent again as is for a retry.
    pub response: Vec<u8>,
}

/// Why a request is not processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The body is not a batch request (HTTP 400).
    #[error("malformed request: {0}")]
    Malformed(#[from] BatchDecodeError),
    /// The key of the last request with a different body (HTTP 422).
    #[error("idempotency key reused with a different request")]
    KeyReused,
}

/// The first decision on a request.
#[derive(Debug)]
pub enum Begin {
    /// A retry of the last request: send these bytes, store nothing.
    Replay(Vec<u8>),
    /// A new request: drive the exchange.
    Fresh(Box<ServerExchange>),
}

/// A push with its changes applied to a copy of the server's document, for policy to judge.
#[derive(Debug)]
pub struct StagedPush {
    /// The server's document with the push merged (the original is untouched).
    pub merged: Automerge,
    /// Changes the server did not have, in causal order: check their actors and authors.
    pub new_changes: Vec<Change>,
    /// The server's heads before the push, for `merged.diff(before, merged.get_heads())`.
    pub before: Vec<ChangeHash>,
    /// False when changes are missing dependencies or a pushed head is absent: do not store
    /// anything; settle the push and the core starts a repair.
    pub complete: bool,
}

/// The driver's verdict on a staged push (refusals go through
/// [`ServerExchange::refuse_push`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored as pushed.
    Accepted,
    /// Stored, followed by a compensating change (already in the document passed to
    /// [`ServerExchange::settle_push`]).
    Compensated(CompensationReason),
    /// Not looked at (budget, overload); the device pushes again.
    Deferred,
}

/// One entry of the change feed, offered in ascending `seq`.
#[derive(Debug, Clone, Copy)]
pub enum FeedItem<'a> {
    /// The document changed (or entered the device's scope) at `seq`.
    Changed {
        /// The document.
        document_id: DocumentId,
        /// The sequence number of its latest change or scope entry.
        seq: u64,
        /// The document as stored.
        doc: &'a Automerge,
        /// The device's knowledge row as stored (default if none).
        knowledge: &'a DocKnowledge,
    },
    /// The document left the device's scope at `seq`.
    LeftScope {
        /// The document.
        document_id: DocumentId,
        /// The sequence number of the scope change.
        seq: u64,
    },
}

/// What happened to a feed item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// An update for the document is in the response.
    Delivered,
    /// The device already holds everything (its own push, or it was delivered before).
    AlreadyHas,
    /// The removal is in the response.
    Removed,
    /// The response is full: this item and everything after it wait for the next exchange.
    Full,
}

/// The result of an exchange, to store and send.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The response body.
    pub response: Vec<u8>,
    /// The response as a value (for logs and metrics).
    pub message: BatchResponse,
    /// The device's record to store.
    pub record: DeviceRecord,
    /// How to settle the device's pending knowledge, before applying `knowledge`.
    pub settlement: Settlement,
    /// Knowledge rows to write after the settlement.
    pub knowledge: Vec<KnowledgeUpdate>,
    /// The cursor minted.
    pub cursor: ServerCursor,
}

/// A document this exchange already answered for, and what the device holds of it before
/// applying the response.
#[derive(Debug, Clone)]
struct Handled {
    base: Vec<ChangeHash>,
    repairing: bool,
    update: Option<usize>,
}

/// One exchange in progress on the server. See the module documentation for the order of
/// calls.
#[derive(Debug)]
pub struct ServerExchange {
    config: ServerConfig,
    request: BatchRequest,
    digest: u64,
    exchange: u64,
    settlement: Settlement,
    feed_after: Option<u64>,
    budget: usize,
    used: usize,
    acks: Vec<Option<Ack>>,
    /// `None`: an update withdrawn (the document went into repair or left scope); indices
    /// stay stable for [`Handled::update`].
    updates: Vec<Option<DocUpdate>>,
    removed: Vec<DocumentId>,
    repairs: Vec<RepairReply>,
    handled: BTreeMap<DocumentId, Handled>,
    knowledge: BTreeMap<DocumentId, KnowledgeChange>,
    held_back_from: Option<u64>,
}

/// Bytes an update entry costs besides its changes and heads (map, keys, id, headers).
const UPDATE_OVERHEAD: usize = 28;
/// Bytes per head in an entry.
const HEAD_COST: usize = 34;

impl ServerExchange {
    /// Decodes the request and decides between a replay and a fresh exchange.
    pub fn begin(
        config: &ServerConfig,
        record: &DeviceRecord,
        body: &[u8],
    ) -> Result<Begin, ExchangeError> {
        let request = decode_request(body)?;
        let digest = fnv1a64(body);
        if let Some(last) = &record.last
            && last.key == request.key
        {
            return if last.request_digest == digest {
                Ok(Begin::Replay(last.response.clone()))
            } else {
                Err(ExchangeError::KeyReused)
            };
        }
        let settlement = match (&request.cursor, &record.last) {
            (None, _) => Settlement::ForgetAll,
            (Some(cursor), Some(last)) if *cursor == last.cursor => Settlement::ConfirmPending,
            (Some(_), _) => Settlement::DiscardPending,
        };
        let feed_after = request
            .cursor
            .as_ref()
            .and_then(|c| ServerCursor::parse(c, config.epoch))
            .map(|c| c.seq);
        let asked = request
            .max_response_bytes
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(usize::MAX);
        Ok(Begin::Fresh(Box::new(ServerExchange {
            config: *config,
            acks: vec![None; request.push.len()],
            request,
            digest,
            exchange: record.exchanges.saturating_add(1),
            settlement,
            feed_after,
            budget: config.max_response_bytes.min(asked),
            used: 0,
            updates: Vec::new(),
            removed: Vec::new(),
            repairs: Vec::new(),
            handled: BTreeMap::new(),
            knowledge: BTreeMap::new(),
            held_back_from: None,
        })))
    }

    /// The decoded request.
    pub fn request(&self) -> &BatchRequest {
        &self.request
    }

    /// What this request says about the device's last response.
    pub fn settlement(&self) -> Settlement {
        self.settlement
    }

    /// Offer the feed from after this sequence number; `None`: from the start (no cursor, or
    /// one this feed did not mint).
    pub fn feed_after(&self) -> Option<u64> {
        self.feed_after
    }

    /// Applies push `index` to a copy of `doc` (the server's document, or an empty one).
    /// Refuses malformed and oversized pushes; the driver then calls
    /// [`ServerExchange::refuse_push`] with the reason.
    pub fn stage_push(&self, index: usize, doc: &Automerge) -> Result<StagedPush, RefusalReason> {
        let entry = self
            .request
            .push
            .get(index)
            .ok_or(RefusalReason::Unspecified)?;
        if entry.changes.len() > self.config.max_push_bytes {
            return Err(RefusalReason::TooLarge);
        }
        // `clone`, not `fork`: a fork draws a new actor id, a clone keeps the server's.
        let mut merged = doc.clone();
        merged
            .load_incremental(&entry.changes)
            .map_err(|_| RefusalReason::Malformed)?;
        let complete = holds_all(&merged, &entry.heads);
        let new_changes = doc.get_changes_added(&merged);
        Ok(StagedPush {
            merged,
            new_changes,
            before: doc.get_heads(),
            complete,
        })
    }

    /// Records a refusal of push `index`; nothing of it may be stored.
    pub fn refuse_push(&mut self, index: usize, reason: RefusalReason) {
        if let Some(ack) = self.acks.get_mut(index) {
            *ack = Some(Ack::Refused(reason));
        }
    }

    /// Records the outcome of push `index`, given the document as now stored (with any
    /// compensating change). If the document does not hold every pushed head (an incomplete
    /// push), the acknowledgement becomes [`Ack::Repair`] and the server's first repair
    /// message goes into the response, whatever `outcome` said.
    pub fn settle_push(&mut self, index: usize, outcome: PushOutcome, doc: &Automerge) {
        let Some(entry) = self.request.push.get(index) else {
            return;
        };
        let id = entry.document_id;
        let device_heads = entry.heads.clone();
        let ack = match outcome {
            PushOutcome::Deferred => {
                self.set_ack(index, Ack::Deferred);
                return;
            }
            PushOutcome::Accepted => Ack::Accepted,
            PushOutcome::Compensated(reason) => Ack::Compensated(reason),
        };
        if !holds_all(doc, &device_heads) {
            self.set_ack(index, Ack::Repair);
            self.start_repair(id, repair::server_opening(doc), 1, device_heads);
            return;
        }
        self.set_ack(index, ack);
        self.deliver_after(id, device_heads, doc, false);
    }

    /// Answers repair `index` with `doc` (the server's document): the next
    /// sync message, or the whole document as an update once the rounds are spent or when the
    /// device asks for it. The document is not changed (changes in the device's message are
    /// dropped: the device pushes its changes).
    pub fn answer_repair(&mut self, index: usize, doc: &mut Automerge) {
        let Some(entry) = self.request.repair.get(index) else {
            return;
        };
        let id = entry.document_id;
        let round = entry.round;
        let answer = match &entry.message {
            Some(message) if round <= MAX_REPAIR_ROUNDS => repair::server_answer(doc, message),
            _ => None,
        };
        match answer {
            Some((reply, device_heads)) => self.start_repair(id, reply, round, device_heads),
            None => {
                // The whole document, on top of what this exchange knows the device holds.
                let base = self
                    .handled
                    .get(&id)
                    .filter(|h| !h.repairing)
                    .map(|h| h.base.clone())
                    .unwrap_or_default();
                self.deliver_after(id, base, doc, true);
            }
        }
    }

    /// Offers one feed item. Items must come in ascending `seq`; after [`Offer::Full`] every
    /// further item is refused the same way.
    pub fn offer(&mut self, item: FeedItem<'_>) -> Offer {
        if self.held_back_from.is_some() {
            return Offer::Full;
        }
        match item {
            FeedItem::LeftScope { document_id, .. } => {
                if !self.removed.contains(&document_id) {
                    self.removed.push(document_id);
                }
                // The device deletes the document: no need to send it.
                self.drop_update(document_id);
                self.handled.remove(&document_id);
                self.repairs.retain(|r| r.document_id != document_id);
                self.knowledge.insert(document_id, KnowledgeChange::Forget);
                Offer::Removed
            }
            FeedItem::Changed {
                document_id,
                seq,
                doc,
                knowledge,
            } => {
                if let Some(handled) = self.handled.get(&document_id) {
                    if handled.repairing {
                        return Offer::AlreadyHas;
                    }
                    let base = handled.base.clone();
                    return if self.deliver_after(document_id, base, doc, false) {
                        Offer::Delivered
                    } else {
                        Offer::AlreadyHas
                    };
                }
                let base = knowledge.effective(self.settlement).to_vec();
                let Some(changes) = bundle_since(doc, &base) else {
                    return Offer::AlreadyHas;
                };
                let heads = doc.get_heads();
                let cost = changes.len() + UPDATE_OVERHEAD + HEAD_COST * heads.len();
                let any_update = self.updates.iter().any(Option::is_some);
                if any_update && self.used.saturating_add(cost) > self.budget {
                    self.held_back_from = Some(seq);
                    return Offer::Full;
                }
                self.push_update(document_id, base, heads, changes);
                Offer::Delivered
            }
        }
    }

    /// Ends the exchange: mints the cursor at `feed_head` (or just before the first item held
    /// back) and builds the response, the record and the knowledge updates.
    pub fn finish(self, feed_head: u64) -> Finished {
        let seq = match self.held_back_from {
            Some(seq) => seq.saturating_sub(1),
            None => feed_head,
        };
        let cursor = ServerCursor {
            epoch: self.config.epoch,
            seq,
            exchange: self.exchange,
        };
        let minted = cursor.to_cursor();
        let updates = self.updates.into_iter().flatten().collect();
        let message = BatchResponse {
            key: self.request.key,
            cursor: minted.clone(),
            acks: self
                .acks
                .into_iter()
                .map(|a| a.unwrap_or(Ack::Deferred))
                .collect(),
            updates,
            removed: self.removed,
            repair: self.repairs,
            more: self.held_back_from.is_some(),
        };
        let response = encode_response(&message);
        let record = DeviceRecord {
            exchanges: self.exchange,
            last: Some(LastExchange {
                key: self.request.key,
                request_digest: self.digest,
                cursor: minted,
                response: response.clone(),
            }),
        };
        let knowledge = self
            .knowledge
            .into_iter()
            .map(|(document_id, change)| KnowledgeUpdate {
                document_id,
                change,
            })
            .collect();
        Finished {
            response,
            message,
            record,
            settlement: self.settlement,
            knowledge,
            cursor,
        }
    }

    fn set_ack(&mut self, index: usize, ack: Ack) {
        if let Some(slot) = self.acks.get_mut(index) {
            *slot = Some(ack);
        }
    }

    fn start_repair(
        &mut self,
        id: DocumentId,
        message: Vec<u8>,
        round: u32,
        device_heads: Vec<ChangeHash>,
    ) {
        self.used = self.used.saturating_add(message.len() + UPDATE_OVERHEAD);
        self.repairs.retain(|r| r.document_id != id);
        self.repairs.push(RepairReply {
            document_id: id,
            round,
            message,
        });
        self.drop_update(id);
        self.handled.insert(
            id,
            Handled {
                base: device_heads.clone(),
                repairing: true,
                update: None,
            },
        );
        self.knowledge.insert(
            id,
            KnowledgeChange::Set(DocKnowledge {
                confirmed: device_heads,
                pending: None,
            }),
        );
    }

    /// Puts (or replaces) the update bringing a device that holds `base` up to `doc`.
    /// With `always`, an update is sent even when there is nothing new (a device that asked
    /// for the whole document waits for one to learn the server's heads). Returns whether
    /// there is an update.
    fn deliver_after(
        &mut self,
        id: DocumentId,
        base: Vec<ChangeHash>,
        doc: &Automerge,
        always: bool,
    ) -> bool {
        let changes = match bundle_since(doc, &base) {
            Some(changes) => changes,
            None if always => Vec::new(),
            None => {
                if self.handled.get(&id).is_some_and(|h| h.update.is_some()) {
                    return true;
                }
                self.handled.insert(
                    id,
                    Handled {
                        base: base.clone(),
                        repairing: false,
                        update: None,
                    },
                );
                self.knowledge.insert(
                    id,
                    KnowledgeChange::Set(DocKnowledge {
                        confirmed: base,
                        pending: None,
                    }),
                );
                return false;
            }
        };
        self.push_update(id, base, doc.get_heads(), changes);
        true
    }

    fn push_update(
        &mut self,
        id: DocumentId,
        base: Vec<ChangeHash>,
        heads: Vec<ChangeHash>,
        changes: Vec<u8>,
    ) {
        self.used = self
            .used
            .saturating_add(changes.len() + UPDATE_OVERHEAD + HEAD_COST * heads.len());
        let update = Some(DocUpdate {
            document_id: id,
            heads: heads.clone(),
            changes,
        });
        let index = match self.handled.get(&id).and_then(|h| h.update) {
            Some(index) if index < self.updates.len() => {
                self.updates[index] = update;
                index
            }
            _ => {
                self.updates.push(update);
                self.updates.len() - 1
            }
        };
        self.handled.insert(
            id,
            Handled {
                base: base.clone(),
                repairing: false,
                update: Some(index),
            },
        );
        self.knowledge.insert(
            id,
            KnowledgeChange::Set(DocKnowledge {
                confirmed: base,
                pending: Some(heads),
            }),
        );
    }

    /// Withdraws the update of `id`, if any (indices of the others stay valid).
    fn drop_update(&mut self, id: DocumentId) {
        if let Some(index) = self.handled.get(&id).and_then(|h| h.update)
            && let Some(slot) = self.updates.get_mut(index)
        {
            *slot = None;
        }
    }
}

/// 64-bit FNV-1a: a cheap, dependency-free digest to tell a retry from a different request
/// under the same key (a device can only confuse itself, so no cryptographic strength is
/// needed).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
