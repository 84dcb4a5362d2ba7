//! An in-memory server that drives [`ServerExchange`] exactly as the driving contract says:
//! the reference for the server crate's SQL driver, and the peer of property tests.
//!
//! Documents, the change feed (one sequence number per stored change or scope change), each
//! device's record, knowledge rows and scope live in maps. "Durable" means "in the map".
//! Scope is "every document" unless a document is hidden from a device.

use std::collections::BTreeMap;

use automerge::{ActorId, Automerge, Change};

use super::knowledge::{DocKnowledge, KnowledgeChange, Settlement};
use super::message::{CompensationReason, RefusalReason};
use super::server::{
    Begin, DeviceRecord, ExchangeError, FeedItem, Offer, PushOutcome, ServerConfig, ServerExchange,
};
use crate::ids::DocumentId;

/// What a [`MemoryServer`]'s policy decides about a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Store it.
    Accept,
    /// Store it; the policy has added a compensating change to the merged document.
    Compensate(CompensationReason),
    /// Store nothing.
    Refuse(RefusalReason),
}

/// Judges a push: its new changes and the merged document (to which a compensating change
/// may be added with the server's actor).
pub type Policy = Box<dyn FnMut(&[Change], &mut Automerge) -> Verdict + Send>;

/// A device as the server sees it: its record, knowledge rows and hidden documents.
#[derive(Debug, Clone, Default)]
struct DeviceEntry {
    record: DeviceRecord,
    knowledge: BTreeMap<DocumentId, DocKnowledge>,
    /// Documents out of the device's scope, with the sequence number of the change.
    hidden: BTreeMap<DocumentId, u64>,
    /// Documents back in scope, with the sequence number of the change.
    shown: BTreeMap<DocumentId, u64>,
}

#[derive(Debug, Clone)]
struct StoredDoc {
    doc: Automerge,
    seq: u64,
}

/// An in-memory batch sync server.
pub struct MemoryServer {
    config: ServerConfig,
    actor: ActorId,
    seq: u64,
    docs: BTreeMap<DocumentId, StoredDoc>,
    devices: BTreeMap<u64, DeviceEntry>,
    policy: Policy,
}

impl std::fmt::Debug for MemoryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryServer")
            .field("config", &self.config)
            .field("seq", &self.seq)
            .field("documents", &self.docs.len())
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

impl MemoryServer {
    /// A server with no documents that accepts every push; `actor` writes its changes.
    pub fn new(config: ServerConfig, actor: ActorId) -> Self {
        Self {
            config,
            actor,
            seq: 0,
            docs: BTreeMap::new(),
            devices: BTreeMap::new(),
            policy: Box::new(|_, _| Verdict::Accept),
        }
    }

    /// Replaces the policy.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The server's actor id.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// The feed head: the sequence number of the latest stored change or scope change.
    pub fn feed_head(&self) -> u64 {
        self.seq
    }

    /// A stored document.
    pub fn document(&self, id: &DocumentId) -> Option<&Automerge> {
        self.docs.get(id).map(|s| &s.doc)
    }

    /// Every stored document id.
    pub fn document_ids(&self) -> impl Iterator<Item = &DocumentId> {
        self.docs.keys()
    }

    /// Edits a document on the server (a supervisor's review, another transport), creating
    /// it if needed; the edit enters the feed if it changed the heads.
    pub fn edit(&mut self, id: DocumentId, edit: impl FnOnce(&mut Automerge)) {
        let mut doc = self
            .docs
            .get(&id)
            .map(|s| s.doc.clone())
            .unwrap_or_else(|| Automerge::new().with_actor(self.actor.clone()));
        edit(&mut doc);
        self.store(id, doc);
    }

    /// Takes a document out of a device's scope.
    pub fn hide(&mut self, device: u64, id: DocumentId) {
        self.seq += 1;
        let entry = self.devices.entry(device).or_default();
        entry.shown.remove(&id);
        entry.hidden.insert(id, self.seq);
    }

    /// Puts a document back into a device's scope.
    pub fn show(&mut self, device: u64, id: DocumentId) {
        self.seq += 1;
        let entry = self.devices.entry(device).or_default();
        if entry.hidden.remove(&id).is_some() {
            entry.shown.insert(id, self.seq);
        }
    }

    /// True when the device may see the document.
    pub fn visible(&self, device: u64, id: &DocumentId) -> bool {
        self.devices
            .get(&device)
            .is_none_or(|e| !e.hidden.contains_key(id))
    }

    /// A device's knowledge row, for tests that simulate a server whose record is wrong.
    pub fn knowledge_mut(&mut self, device: u64, id: DocumentId) -> &mut DocKnowledge {
        self.devices
            .entry(device)
            .or_default()
            .knowledge
            .entry(id)
            .or_default()
    }

    /// Serves one request body of `device`; returns the response body.
    pub fn handle(&mut self, device: u64, body: &[u8]) -> Result<Vec<u8>, ExchangeError> {
        let record = self.devices.entry(device).or_default().record.clone();
        let mut exchange = match ServerExchange::begin(&self.config, &record, body)? {
            Begin::Replay(response) => return Ok(response),
            Begin::Fresh(exchange) => exchange,
        };
        self.apply_pushes(device, &mut exchange);
        self.answer_repairs(device, &mut exchange);
        let head = self.seq;
        self.offer_feed(device, &mut exchange, head);
        let finished = exchange.finish(head);

        let entry = self.devices.entry(device).or_default();
        match finished.settlement {
            Settlement::ForgetAll => entry.knowledge.clear(),
            settlement => {
                for row in entry.knowledge.values_mut() {
                    if row.pending.is_some() {
                        *row = row.settled(settlement);
                    }
                }
            }
        }
        for update in finished.knowledge {
            match update.change {
                KnowledgeChange::Set(row) => {
                    entry.knowledge.insert(update.document_id, row);
                }
                KnowledgeChange::Forget => {
                    entry.knowledge.remove(&update.document_id);
                }
            }
        }
        entry.record = finished.record;
        Ok(finished.response)
    }

    fn apply_pushes(&mut self, device: u64, exchange: &mut ServerExchange) {
        let ids: Vec<DocumentId> = exchange
            .request()
            .push
            .iter()
            .map(|p| p.document_id)
            .collect();
        for (index, id) in ids.into_iter().enumerate() {
            if !self.visible(device, &id) {
                exchange.refuse_push(index, RefusalReason::Unavailable);
                continue;
            }
            let current = self.current(&id);
            let staged = match exchange.stage_push(index, &current) {
                Ok(staged) => staged,
                Err(reason) => {
                    exchange.refuse_push(index, reason);
                    continue;
                }
            };
            if !staged.complete {
                exchange.settle_push(index, PushOutcome::Accepted, &current);
                continue;
            }
            let mut merged = staged.merged;
            let outcome = match (self.policy)(&staged.new_changes, &mut merged) {
                Verdict::Refuse(reason) => {
                    exchange.refuse_push(index, reason);
                    continue;
                }
                Verdict::Accept => PushOutcome::Accepted,
                Verdict::Compensate(reason) => PushOutcome::Compensated(reason),
            };
            self.store(id, merged.clone());
            exchange.settle_push(index, outcome, &merged);
        }
    }

    fn answer_repairs(&mut self, device: u64, exchange: &mut ServerExchange) {
        let ids: Vec<DocumentId> = exchange
            .request()
            .repair
            .iter()
            .map(|r| r.document_id)
            .collect();
        for (index, id) in ids.into_iter().enumerate() {
            if !self.visible(device, &id) || !self.docs.contains_key(&id) {
                exchange.offer(FeedItem::LeftScope {
                    document_id: id,
                    seq: 0,
                });
                continue;
            }
            let mut doc = self.current(&id);
            exchange.answer_repair(index, &mut doc);
        }
    }

    fn offer_feed(&self, device: u64, exchange: &mut ServerExchange, head: u64) {
        let after = exchange.feed_after();
        let is_new = |seq: u64| after.is_none_or(|a| seq > a);
        let empty = DeviceEntry::default();
        let entry = self.devices.get(&device).unwrap_or(&empty);
        let mut items: Vec<(u64, DocumentId, bool)> = Vec::new();
        for (id, stored) in &self.docs {
            match entry.hidden.get(id) {
                Some(&hidden_at) if is_new(hidden_at) => items.push((hidden_at, *id, false)),
                Some(_) => {}
                None => {
                    let seq = stored.seq.max(entry.shown.get(id).copied().unwrap_or(0));
                    if is_new(seq) {
                        items.push((seq, *id, true));
                    }
                }
            }
        }
        items.retain(|(seq, _, _)| *seq <= head);
        items.sort();
        let no_knowledge = DocKnowledge::default();
        for (seq, id, visible) in items {
            let item = match (visible, self.docs.get(&id)) {
                (true, Some(stored)) => FeedItem::Changed {
                    document_id: id,
                    seq,
                    doc: &stored.doc,
                    knowledge: entry.knowledge.get(&id).unwrap_or(&no_knowledge),
                },
                _ => FeedItem::LeftScope {
                    document_id: id,
                    seq,
                },
            };
            if exchange.offer(item) == Offer::Full {
                break;
            }
        }
    }

    fn current(&self, id: &DocumentId) -> Automerge {
        self.docs
            .get(id)
            .map(|s| s.doc.clone())
            .unwrap_or_else(|| Automerge::new().with_actor(self.actor.clone()))
    }

    fn store(&mut self, id: DocumentId, doc: Automerge) {
        let changed = self
            .docs
            .get(&id)
            .is_none_or(|s| s.doc.get_heads() != doc.get_heads());
        if !changed {
            return;
        }
        self.seq += 1;
        self.docs.insert(id, StoredDoc { doc, seq: self.seq });
    }
}
