//! The server side of batch sync (`POST /v1/sync`, `docs/BATCH-SYNC.md`): drives the sans-IO
//! [`ServerExchange`] against storage, the change feed and the document actors, following
//! its driving contract step by step.
//!
//! Pushes go to the documents' actors (the same scope, actor binding and policy as the
//! WebSocket path, and followers see the change live); feed items and repairs read documents
//! from storage, which every actor has written before acknowledging, so reads never contend
//! with an actor. Exchanges of one device run one at a time, serialised by an in-memory lock:
//! with several server instances on one PostgreSQL database, two copies of one request that
//! reach different instances at the same moment may both run (the second record wins; the
//! device applies whichever reply matches its key, and pushes are idempotent by change hash,
//! so nothing is lost or duplicated, only work is done twice).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use automerge::Automerge;
use jemput_domain::{DocumentKind, RegionCode};
use jemput_sync_protocol::DocumentId;
use jemput_sync_protocol::batch::{
    BatchDecodeError, Begin, ExchangeError, FeedItem, Offer, PushOutcome, ServerConfig,
    ServerExchange,
};
use tokio::sync::OnceCell;

use super::batch_push::{BatchPush, BatchPushOutcome, compensation_reason};
use super::{Hub, index};
use crate::audit::{AuditAction, AuditActor, NewAuditEntry};
use crate::storage::{
    BatchDevice, ChunkKind, DeviceId, ExchangeOutcome, FeedEntry, FeedScope, Identity, Storage,
    StorageError,
};

/// Limits of batch sync.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// A request body (decoded) larger than this is answered 413.
    pub max_request_bytes: usize,
    /// Updates stop once a response would exceed this; the response then says `more`.
    pub max_response_bytes: usize,
    /// A pushed bundle larger than this is refused as too large.
    pub max_push_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 8 * 1024 * 1024,
            max_response_bytes: 256 * 1024,
            max_push_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Why an exchange produced no response.
#[derive(Debug, thiserror::Error)]
pub enum BatchSyncError {
    /// Batch sync is for enrolled devices: their actor ids and knowledge rows are per device.
    #[error("batch sync needs a device token")]
    NotADevice,
    /// The body is not a batch request, or an unsupported version (400).
    #[error("malformed batch request: {0}")]
    Malformed(#[from] BatchDecodeError),
    /// The key of the previous request with another body (422).
    #[error("idempotency key reused with a different request")]
    KeyReused,
    /// Storage failed or the server is shutting down; nothing was recorded (503).
    #[error("storage unavailable")]
    Unavailable(#[source] Option<StorageError>),
}

impl From<StorageError> for BatchSyncError {
    fn from(error: StorageError) -> Self {
        BatchSyncError::Unavailable(Some(error))
    }
}

impl From<ExchangeError> for BatchSyncError {
    fn from(error: ExchangeError) -> Self {
        match error {
            ExchangeError::Malformed(error) => BatchSyncError::Malformed(error),
            ExchangeError::KeyReused => BatchSyncError::KeyReused,
        }
    }
}

/// How a response came about, for metrics.
enum Served {
    Fresh,
    /// A retry answered with the stored response.
    Replay,
}

/// Feed entries read per query.
const FEED_PAGE: u32 = 256;
/// Pushes handed to document actors at once.
const PUSHES_AT_ONCE: usize = 32;

pub struct BatchSync<S> {
    hub: Arc<Hub<S>>,
    config: BatchConfig,
    epoch: OnceCell<u32>,
    /// One exchange per device at a time (this process only; see the module documentation).
    running: Mutex<HashMap<DeviceId, Arc<tokio::sync::Mutex<()>>>>,
}

impl<S: Storage> BatchSync<S> {
    pub fn new(hub: Arc<Hub<S>>, config: BatchConfig) -> Self {
        Self {
            hub,
            config,
            epoch: OnceCell::new(),
            running: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    pub fn storage(&self) -> &S {
        self.hub.storage()
    }

    /// Serves one request body (already decompressed) of an authenticated device; returns
    /// the response body, durable before it is returned.
    pub async fn exchange(
        &self,
        identity: &Identity,
        body: &[u8],
    ) -> Result<Vec<u8>, BatchSyncError> {
        let device = identity.device().ok_or(BatchSyncError::NotADevice)?.clone();
        let lock = Arc::clone(self.locks().entry(device.clone()).or_default());
        let result = {
            let _running = lock.lock().await;
            self.exchange_alone(identity, &device, body).await
        };
        let outcome = match &result {
            Ok((_, Served::Fresh)) => "served",
            Ok((_, Served::Replay)) => "replayed",
            Err(_) => "failed",
        };
        metrics::counter!(crate::metrics::BATCH_EXCHANGES, "outcome" => outcome).increment(1);
        let mut locks = self.locks();
        // Ours and the map's: nobody else waits, so the entry can go (the map stays bounded
        // by the devices syncing right now).
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&device);
        }
        result.map(|(response, _)| response)
    }

    fn locks(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, Arc<tokio::sync::Mutex<()>>>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn server_config(&self) -> Result<ServerConfig, StorageError> {
        let epoch = self
            .epoch
            .get_or_try_init(|| async {
                let drawn = rand::random::<u32>().to_string();
                let value = self
                    .storage()
                    .init_setting("batch_feed_epoch", &drawn)
                    .await?;
                value
                    .parse::<u32>()
                    .map_err(|_| StorageError::Corrupt("batch_feed_epoch".into()))
            })
            .await?;
        Ok(ServerConfig {
            epoch: *epoch,
            max_response_bytes: self.config.max_response_bytes,
            max_push_bytes: self.config.max_push_bytes,
        })
    }

    async fn exchange_alone(
        &self,
        identity: &Identity,
        device: &DeviceId,
        body: &[u8],
    ) -> Result<(Vec<u8>, Served), BatchSyncError> {
        let config = self.server_config().await?;
        let stored = self.storage().batch_device(device).await?;
        let mut exchange = match ServerExchange::begin(&config, &stored.record, body)? {
            Begin::Replay(response) => return Ok((response, Served::Replay)),
            Begin::Fresh(exchange) => exchange,
        };
        self.push(identity, &mut exchange).await?;
        self.repair(identity, &mut exchange).await?;

        let head = self.storage().feed_head().await?;
        let regions = regions_key(identity);
        // A change of the officer's regions: announce what left, and read the feed from the
        // start so documents of a new region arrive (knowledge rows skip what the device has).
        let scope_changed = stored.record.last.is_some() && stored.regions != regions;
        if scope_changed {
            for (document_id, region) in self.storage().known_documents(device).await? {
                if !region.as_deref().is_some_and(|r| covers(identity, r)) {
                    exchange.offer(FeedItem::LeftScope {
                        document_id,
                        seq: 0,
                    });
                }
            }
        }
        let after = if scope_changed {
            None
        } else {
            exchange.feed_after()
        };
        let mut reads = Vec::new();
        self.offer_feed(identity, device, &mut exchange, after, head, &mut reads)
            .await?;

        let finished = exchange.finish(head);
        // Until every document of a new scope went out, keep the old regions: the next
        // exchange reads from the start again.
        let regions = if scope_changed && finished.message.more {
            stored.regions
        } else {
            regions
        };
        let outcome = ExchangeOutcome {
            settlement: finished.settlement,
            knowledge: finished.knowledge,
            device: BatchDevice {
                record: finished.record,
                regions,
            },
        };
        self.storage().record_exchange(device, outcome).await?;
        for entry in reads {
            if let Err(error) = self.storage().append(entry).await {
                tracing::error!(%error, "audit append failed");
            }
        }
        Ok((finished.response, Served::Fresh))
    }

    /// Step 2: every push through its document's actor; a failed store fails the exchange
    /// (nothing unstored is acknowledged; a retry finds what was stored by hash).
    async fn push(
        &self,
        identity: &Identity,
        exchange: &mut ServerExchange,
    ) -> Result<(), BatchSyncError> {
        let pushes: Vec<(usize, DocumentId, BatchPush)> = exchange
            .request()
            .push
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let push = BatchPush {
                    identity: identity.clone(),
                    changes: entry.changes.clone(),
                    heads: entry.heads.clone(),
                    max_bytes: self.config.max_push_bytes,
                };
                (index, entry.document_id, push)
            })
            .collect();
        let mut pushes = pushes.into_iter().peekable();
        while pushes.peek().is_some() {
            let group: Vec<_> = pushes.by_ref().take(PUSHES_AT_ONCE).collect();
            let outcomes = futures_util::future::join_all(group.into_iter().map(
                |(index, document, push)| async move {
                    (index, self.hub.batch_push(document, push).await)
                },
            ))
            .await;
            for (index, outcome) in outcomes {
                match outcome {
                    BatchPushOutcome::Stored { compensated, doc } => {
                        let outcome = if compensated.is_empty() {
                            PushOutcome::Accepted
                        } else {
                            PushOutcome::Compensated(compensation_reason(&compensated))
                        };
                        exchange.settle_push(index, outcome, &doc);
                    }
                    // The core answers with a repair, since `doc` lacks the pushed heads.
                    BatchPushOutcome::Incomplete { doc } => {
                        exchange.settle_push(index, PushOutcome::Accepted, &doc)
                    }
                    BatchPushOutcome::Refused(reason) => exchange.refuse_push(index, reason),
                    BatchPushOutcome::Failed => return Err(BatchSyncError::Unavailable(None)),
                }
            }
        }
        Ok(())
    }

    /// Step 3: repairs of documents the device may see; any other is answered as removed.
    async fn repair(
        &self,
        identity: &Identity,
        exchange: &mut ServerExchange,
    ) -> Result<(), BatchSyncError> {
        let documents: Vec<DocumentId> = exchange
            .request()
            .repair
            .iter()
            .map(|r| r.document_id)
            .collect();
        for (index, document_id) in documents.into_iter().enumerate() {
            let visible = self
                .storage()
                .index_row(document_id)
                .await?
                .is_some_and(|row| covers(identity, &row.region));
            if !visible {
                exchange.offer(FeedItem::LeftScope {
                    document_id,
                    seq: 0,
                });
                continue;
            }
            let mut doc = self.load(document_id).await?;
            exchange.answer_repair(index, &mut doc);
        }
        Ok(())
    }

    /// Step 4: the feed after `after` up to `head`, in the device's scope, ascending.
    /// Applications delivered are added to `reads`, to record who received whose personal
    /// data (as the WebSocket path does).
    async fn offer_feed(
        &self,
        identity: &Identity,
        device: &DeviceId,
        exchange: &mut ServerExchange,
        mut after: Option<u64>,
        head: u64,
        reads: &mut Vec<NewAuditEntry>,
    ) -> Result<(), BatchSyncError> {
        let scope = feed_scope(identity);
        loop {
            let page = self
                .storage()
                .feed_page(&scope, after, head, FEED_PAGE)
                .await?;
            for entry in page.entries {
                let offer = match entry {
                    FeedEntry::Changed { seq, document_id } => {
                        let doc = self.load(document_id).await?;
                        let knowledge = self.storage().knowledge(device, document_id).await?;
                        let offer = exchange.offer(FeedItem::Changed {
                            document_id,
                            seq,
                            doc: &doc,
                            knowledge: &knowledge,
                        });
                        if offer == Offer::Delivered {
                            reads.extend(self.personal_data_read(identity, document_id, &doc));
                        }
                        offer
                    }
                    FeedEntry::Left {
                        seq,
                        document_id,
                        region,
                    } => {
                        if covers(identity, &region) {
                            continue;
                        }
                        exchange.offer(FeedItem::LeftScope { document_id, seq })
                    }
                };
                if offer == Offer::Full {
                    return Ok(());
                }
            }
            if page.exhausted {
                return Ok(());
            }
            after = Some(page.through);
        }
    }

    /// The audit entry for delivering an application to `identity` (UU PDP Art. 32: who
    /// received this citizen's data), keyed by the citizen, never the NIK.
    fn personal_data_read(
        &self,
        identity: &Identity,
        document_id: DocumentId,
        doc: &Automerge,
    ) -> Option<NewAuditEntry> {
        let facts = index::facts(doc)?;
        if facts.kind != DocumentKind::Application {
            return None;
        }
        let now = crate::auth::now_millis();
        let mut entry =
            NewAuditEntry::new(now, AuditAction::PersonalDataRead, AuditActor::of(identity));
        entry.subject = Some(document_id.to_string());
        entry.citizen = index::citizen_key(doc, self.hub.citizen_secret(), now);
        entry.detail = Some("batch sync".into());
        Some(entry)
    }

    /// A document as stored, loaded off the reactor.
    async fn load(&self, document: DocumentId) -> Result<Automerge, StorageError> {
        let chunks = self.storage().load_chunks(document).await?;
        let actor = self.hub.server_actor().clone();
        tokio::task::spawn_blocking(move || {
            let mut doc = Automerge::new().with_actor(actor);
            for chunk in chunks {
                if let Err(error) = doc.load_incremental(&chunk.data) {
                    tracing::error!(%error, %document, chunk = chunk.id.0,
                        snapshot = (chunk.kind == ChunkKind::Snapshot), "skipping unreadable chunk");
                }
            }
            doc
        })
        .await
        .map_err(|error| StorageError::Corrupt(format!("loading panicked: {error}")))
    }
}

/// Whether `identity` sees documents of `region` (a stored, already validated code).
fn covers(identity: &Identity, region: &str) -> bool {
    RegionCode::parse(region).is_ok_and(|region| identity.covers_region(&region))
}

fn feed_scope(identity: &Identity) -> FeedScope {
    if identity.role == jemput_domain::Role::Admin {
        return FeedScope::Everything;
    }
    FeedScope::Regions(
        identity
            .regions
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
    )
}

/// The device's scope as stored with its record, to notice when it changes.
fn regions_key(identity: &Identity) -> String {
    let mut regions: Vec<&str> = identity.regions.iter().map(|r| r.as_str()).collect();
    regions.sort_unstable();
    format!("{}:{}", identity.role.as_str(), regions.join(","))
}
