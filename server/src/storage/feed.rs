//! The change feed and the per-device records of batch sync (`POST /v1/sync`,
//! `docs/BATCH-SYNC.md`).
//!
//! Every stored change of a document (WebSocket or batch) takes the next feed sequence number
//! in the transaction that stores it, and the document remembers its latest number
//! (`documents.feed_seq`). Numbers become visible in order: SQLite has one writer;
//! PostgreSQL takes a transaction-level advisory lock before drawing a number, so a reader
//! that sees `N + 1` committed also sees `N`. A document whose region changes leaves a
//! scope-exit entry at the same number, so devices of the old region learn to delete it.
//!
//! Per device the server keeps its last exchange (to replay a retry), the regions it was
//! served for, and one knowledge row per document it is known to hold.

use std::future::Future;

use automerge::ChangeHash;
use jemput_sync_protocol::DocumentId;
use jemput_sync_protocol::batch::{
    Cursor, DeviceRecord as ExchangeRecord, DocKnowledge, IdempotencyKey, KnowledgeChange,
    KnowledgeUpdate, LastExchange, Settlement,
};

use super::{DeviceId, StorageError};

/// Which documents a device sees: those whose region lies in one of these (region codes,
/// matched as code prefixes), or every document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedScope {
    Everything,
    Regions(Vec<String>),
}

/// One feed entry in a device's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEntry {
    /// The document's latest change is at `seq`.
    Changed { seq: u64, document_id: DocumentId },
    /// The document left one of the scope's regions at `seq`; it is now in `region`, which
    /// the caller checks against the device's scope.
    Left {
        seq: u64,
        document_id: DocumentId,
        region: String,
    },
}

impl FeedEntry {
    pub fn seq(&self) -> u64 {
        match self {
            FeedEntry::Changed { seq, .. } | FeedEntry::Left { seq, .. } => *seq,
        }
    }
}

/// A bounded slice of the feed, ascending.
#[derive(Debug, Clone, Default)]
pub struct FeedPage {
    pub entries: Vec<FeedEntry>,
    /// Entries up to this number are all in the page; read on from here.
    pub through: u64,
    /// Nothing more up to the head.
    pub exhausted: bool,
}

/// What the server keeps of a device between exchanges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchDevice {
    pub record: ExchangeRecord,
    /// The device's regions when its feed position was last advanced (sorted, comma
    /// separated); a different value means the scope changed.
    pub regions: String,
}

/// Everything to store at the end of an exchange, in one transaction.
#[derive(Debug, Clone)]
pub struct ExchangeOutcome {
    pub settlement: Settlement,
    pub knowledge: Vec<KnowledgeUpdate>,
    pub device: BatchDevice,
}

pub trait FeedStore: Send + Sync {
    /// The highest feed number stored so far.
    fn feed_head(&self) -> impl Future<Output = Result<u64, StorageError>> + Send;

    /// Entries of `scope` with numbers in `(after, head]`, ascending, at most about `limit`.
    /// `after = None` reads from the start.
    fn feed_page(
        &self,
        scope: &FeedScope,
        after: Option<u64>,
        head: u64,
        limit: u32,
    ) -> impl Future<Output = Result<FeedPage, StorageError>> + Send;

    /// The device's record; default for a device that never synced.
    fn batch_device(
        &self,
        device: &DeviceId,
    ) -> impl Future<Output = Result<BatchDevice, StorageError>> + Send;

    /// What the device is known to hold of the document (default if nothing).
    fn knowledge(
        &self,
        device: &DeviceId,
        document: DocumentId,
    ) -> impl Future<Output = Result<DocKnowledge, StorageError>> + Send;

    /// Documents the device has a knowledge row for, with their indexed region (if any).
    fn known_documents(
        &self,
        device: &DeviceId,
    ) -> impl Future<Output = Result<Vec<(DocumentId, Option<String>)>, StorageError>> + Send;

    /// Settles the device's pending knowledge, applies the updates and stores its record,
    /// atomically; durable when this returns.
    fn record_exchange(
        &self,
        device: &DeviceId,
        outcome: ExchangeOutcome,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
}

pub(super) const FEED_HEAD: &str = "SELECT seq FROM feed_head WHERE id = 1";

pub(super) const NEXT_FEED_SEQ: &str =
    "UPDATE feed_head SET seq = seq + 1 WHERE id = 1 RETURNING seq";

pub(super) const SET_FEED_SEQ: &str = "UPDATE documents SET feed_seq = $1 WHERE document_id = $2";

/// Run after the change's number was drawn and before the index row is replaced: records
/// that the document left its old region, if the new row moves it.
pub(super) const RECORD_SCOPE_EXIT: &str = "INSERT INTO feed_scope_exits (seq, document_id, region) \
     SELECT d.feed_seq, i.document_id, i.region FROM document_index i \
     JOIN documents d ON d.document_id = i.document_id \
     WHERE i.document_id = $1 AND i.region <> $2";

pub(super) const LOAD_DEVICE: &str = "SELECT exchanges, last_key, last_digest, last_cursor, \
     last_response, regions FROM batch_devices WHERE device_id = $1";

pub(super) const SAVE_DEVICE: &str = "INSERT INTO batch_devices (device_id, exchanges, \
     last_key, last_digest, last_cursor, last_response, regions, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (device_id) DO UPDATE SET \
     exchanges = excluded.exchanges, last_key = excluded.last_key, \
     last_digest = excluded.last_digest, last_cursor = excluded.last_cursor, \
     last_response = excluded.last_response, regions = excluded.regions, \
     updated_at = excluded.updated_at";

pub(super) const LOAD_KNOWLEDGE: &str = "SELECT confirmed, pending FROM batch_knowledge \
     WHERE device_id = $1 AND document_id = $2";

pub(super) const KNOWN_DOCUMENTS: &str = "SELECT k.document_id, i.region FROM batch_knowledge k \
     LEFT JOIN document_index i ON i.document_id = k.document_id WHERE k.device_id = $1";

pub(super) const FORGET_ALL: &str = "DELETE FROM batch_knowledge WHERE device_id = $1";

pub(super) const CONFIRM_PENDING: &str = "UPDATE batch_knowledge SET confirmed = pending, \
     pending = NULL WHERE device_id = $1 AND pending IS NOT NULL";

pub(super) const DISCARD_PENDING: &str = "UPDATE batch_knowledge SET pending = NULL \
     WHERE device_id = $1 AND pending IS NOT NULL";

pub(super) const SET_KNOWLEDGE: &str = "INSERT INTO batch_knowledge \
     (device_id, document_id, confirmed, pending) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (device_id, document_id) DO UPDATE SET confirmed = excluded.confirmed, \
     pending = excluded.pending";

pub(super) const DELETE_KNOWLEDGE: &str =
    "DELETE FROM batch_knowledge WHERE device_id = $1 AND document_id = $2";

/// The settlement statement for `settlement`.
pub(super) fn settlement_sql(settlement: Settlement) -> &'static str {
    match settlement {
        Settlement::ForgetAll => FORGET_ALL,
        Settlement::ConfirmPending => CONFIRM_PENDING,
        Settlement::DiscardPending => DISCARD_PENDING,
    }
}

/// One knowledge statement with its parameters after the device id: document, and for a
/// `Set`, the confirmed and pending columns.
pub(super) fn knowledge_sql(
    update: &KnowledgeUpdate,
) -> (&'static str, String, Option<(String, Option<String>)>) {
    let document = update.document_id.to_string();
    match &update.change {
        KnowledgeChange::Set(row) => (
            SET_KNOWLEDGE,
            document,
            Some((
                heads_to_column(&row.confirmed),
                row.pending.as_deref().map(heads_to_column),
            )),
        ),
        KnowledgeChange::Forget => (DELETE_KNOWLEDGE, document, None),
    }
}

/// The two feed queries (changed documents, scope exits) for `scope`, with numbered
/// placeholders: `$1` after, `$2` head, `$3` limit, then the region strings.
pub(super) fn feed_queries(scope: &FeedScope) -> (String, String, Vec<String>) {
    let (changed_filter, exit_filter, params) = match scope {
        FeedScope::Everything => (String::new(), String::new(), Vec::new()),
        FeedScope::Regions(regions) => {
            let mut params = Vec::new();
            let mut changed = Vec::new();
            let mut exits = Vec::new();
            for region in regions {
                params.push(region.clone());
                let exact = params.len() + 3;
                params.push(format!("{region}.%"));
                let below = params.len() + 3;
                changed.push(format!("i.region = ${exact} OR i.region LIKE ${below}"));
                exits.push(format!("e.region = ${exact} OR e.region LIKE ${below}"));
            }
            if regions.is_empty() {
                changed.push("1 = 0".into());
                exits.push("1 = 0".into());
            }
            (
                format!(" AND ({})", changed.join(" OR ")),
                format!(" AND ({})", exits.join(" OR ")),
                params,
            )
        }
    };
    let changed = format!(
        "SELECT d.document_id, d.feed_seq AS seq, i.region FROM documents d \
         JOIN document_index i ON i.document_id = d.document_id \
         WHERE d.feed_seq > $1 AND d.feed_seq <= $2{changed_filter} \
         ORDER BY d.feed_seq LIMIT $3"
    );
    let exits = format!(
        "SELECT e.document_id, e.seq, i.region FROM feed_scope_exits e \
         JOIN document_index i ON i.document_id = e.document_id \
         WHERE e.seq > $1 AND e.seq <= $2{exit_filter} ORDER BY e.seq LIMIT $3"
    );
    (changed, exits, params)
}

/// Merges the two ascending lists into one page; a list that filled its limit may have more
/// after its last number, so the page stops there.
pub(super) fn merge_page(
    changed: Vec<(DocumentId, u64)>,
    exits: Vec<(DocumentId, u64, String)>,
    limit: u32,
    head: u64,
) -> FeedPage {
    let full = |n: usize| n >= limit as usize;
    let mut through = head;
    if full(changed.len())
        && let Some((_, seq)) = changed.last()
    {
        through = through.min(*seq);
    }
    if full(exits.len())
        && let Some((_, seq, _)) = exits.last()
    {
        through = through.min(*seq);
    }
    let mut entries: Vec<FeedEntry> = changed
        .into_iter()
        .filter(|(_, seq)| *seq <= through)
        .map(|(document_id, seq)| FeedEntry::Changed { seq, document_id })
        .chain(exits.into_iter().filter(|(_, seq, _)| *seq <= through).map(
            |(document_id, seq, region)| FeedEntry::Left {
                seq,
                document_id,
                region,
            },
        ))
        .collect();
    // At one number a document's exit comes before its change.
    entries.sort_by_key(|e| (e.seq(), matches!(e, FeedEntry::Changed { .. })));
    FeedPage {
        entries,
        through,
        exhausted: through == head,
    }
}

pub(super) fn heads_to_column(heads: &[ChangeHash]) -> String {
    heads
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn heads_from_column(column: &str) -> Result<Vec<ChangeHash>, StorageError> {
    column
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            h.parse()
                .map_err(|_| StorageError::Corrupt(format!("change hash {h:?}")))
        })
        .collect()
}

/// The columns of a device record, as stored.
pub(super) struct DeviceColumns {
    pub exchanges: i64,
    pub last_key: Option<Vec<u8>>,
    pub last_digest: Option<i64>,
    pub last_cursor: Option<Vec<u8>>,
    pub last_response: Option<Vec<u8>>,
    pub regions: String,
}

impl DeviceColumns {
    pub(super) fn from_device(device: &BatchDevice) -> Self {
        let last = device.record.last.as_ref();
        Self {
            exchanges: i64::try_from(device.record.exchanges).unwrap_or(i64::MAX),
            last_key: last.map(|l| l.key.as_bytes().to_vec()),
            // The digest is 64 bits; stored as the signed integer with the same bits.
            last_digest: last.map(|l| l.request_digest as i64),
            last_cursor: last.map(|l| l.cursor.as_bytes().to_vec()),
            last_response: last.map(|l| l.response.clone()),
            regions: device.regions.clone(),
        }
    }

    pub(super) fn into_device(self) -> Result<BatchDevice, StorageError> {
        let last = match (
            self.last_key,
            self.last_digest,
            self.last_cursor,
            self.last_response,
        ) {
            (Some(key), Some(digest), Some(cursor), Some(response)) => Some(LastExchange {
                key: IdempotencyKey::from_bytes(
                    key.try_into()
                        .map_err(|_| StorageError::Corrupt("idempotency key length".into()))?,
                ),
                request_digest: digest as u64,
                cursor: Cursor::from_bytes(cursor)
                    .map_err(|e| StorageError::Corrupt(format!("cursor: {e}")))?,
                response,
            }),
            _ => None,
        };
        Ok(BatchDevice {
            record: ExchangeRecord {
                exchanges: u64::try_from(self.exchanges).unwrap_or(0),
                last,
            },
            regions: self.regions,
        })
    }
}

pub(super) fn knowledge_from_columns(
    confirmed: &str,
    pending: Option<&str>,
) -> Result<DocKnowledge, StorageError> {
    Ok(DocKnowledge {
        confirmed: heads_from_column(confirmed)?,
        pending: pending.map(heads_from_column).transpose()?,
    })
}

pub(super) fn parse_document_id(id: &str) -> Result<DocumentId, StorageError> {
    DocumentId::parse(id).map_err(|e| StorageError::Corrupt(format!("document id {id:?}: {e}")))
}

pub(super) fn seq_to_db(seq: Option<u64>) -> i64 {
    seq.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX))
}

pub(super) fn seq_from_db(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

/// The reads of [`FeedStore`], the same SQL on both dialects: expands to those trait methods
/// inside `impl FeedStore for ...`, reading through the storage's `$reads()` pool. The
/// implementing module imports `sqlx::Row`.
macro_rules! portable_feed_reads {
    ($reads:ident) => {
        async fn feed_head(&self) -> Result<u64, $crate::storage::StorageError> {
            let seq: i64 = sqlx::query_scalar($crate::storage::feed::FEED_HEAD)
                .fetch_one(self.$reads())
                .await?;
            Ok($crate::storage::feed::seq_from_db(seq))
        }

        async fn feed_page(
            &self,
            scope: &$crate::storage::feed::FeedScope,
            after: Option<u64>,
            head: u64,
            limit: u32,
        ) -> Result<$crate::storage::feed::FeedPage, $crate::storage::StorageError> {
            let (changed_sql, exits_sql, params) = $crate::storage::feed::feed_queries(scope);
            let head_db = i64::try_from(head).unwrap_or(i64::MAX);
            // The SQL text is built only from fixed fragments and numbered placeholders.
            let mut changed = sqlx::query(sqlx::AssertSqlSafe(changed_sql))
                .bind($crate::storage::feed::seq_to_db(after))
                .bind(head_db)
                .bind(i64::from(limit));
            let mut exits = sqlx::query(sqlx::AssertSqlSafe(exits_sql))
                .bind($crate::storage::feed::seq_to_db(after))
                .bind(head_db)
                .bind(i64::from(limit));
            for value in &params {
                changed = changed.bind(value.clone());
                exits = exits.bind(value.clone());
            }
            let changed = changed
                .fetch_all(self.$reads())
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        $crate::storage::feed::parse_document_id(row.try_get("document_id")?)?,
                        $crate::storage::feed::seq_from_db(row.try_get("seq")?),
                    ))
                })
                .collect::<Result<Vec<_>, $crate::storage::StorageError>>()?;
            let exits = exits
                .fetch_all(self.$reads())
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        $crate::storage::feed::parse_document_id(row.try_get("document_id")?)?,
                        $crate::storage::feed::seq_from_db(row.try_get("seq")?),
                        row.try_get("region")?,
                    ))
                })
                .collect::<Result<Vec<_>, $crate::storage::StorageError>>()?;
            Ok($crate::storage::feed::merge_page(
                changed, exits, limit, head,
            ))
        }

        async fn batch_device(
            &self,
            device: &$crate::storage::DeviceId,
        ) -> Result<$crate::storage::feed::BatchDevice, $crate::storage::StorageError> {
            let row = sqlx::query($crate::storage::feed::LOAD_DEVICE)
                .bind(device.as_str())
                .fetch_optional(self.$reads())
                .await?;
            let Some(row) = row else {
                return Ok($crate::storage::feed::BatchDevice::default());
            };
            $crate::storage::feed::DeviceColumns {
                exchanges: row.try_get("exchanges")?,
                last_key: row.try_get("last_key")?,
                last_digest: row.try_get("last_digest")?,
                last_cursor: row.try_get("last_cursor")?,
                last_response: row.try_get("last_response")?,
                regions: row.try_get("regions")?,
            }
            .into_device()
        }

        async fn knowledge(
            &self,
            device: &$crate::storage::DeviceId,
            document: jemput_sync_protocol::DocumentId,
        ) -> Result<jemput_sync_protocol::batch::DocKnowledge, $crate::storage::StorageError> {
            let row = sqlx::query($crate::storage::feed::LOAD_KNOWLEDGE)
                .bind(device.as_str())
                .bind(document.to_string())
                .fetch_optional(self.$reads())
                .await?;
            match row {
                Some(row) => $crate::storage::feed::knowledge_from_columns(
                    row.try_get("confirmed")?,
                    row.try_get::<Option<String>, _>("pending")?.as_deref(),
                ),
                None => Ok(jemput_sync_protocol::batch::DocKnowledge::default()),
            }
        }

        async fn known_documents(
            &self,
            device: &$crate::storage::DeviceId,
        ) -> Result<
            Vec<(jemput_sync_protocol::DocumentId, Option<String>)>,
            $crate::storage::StorageError,
        > {
            let rows = sqlx::query($crate::storage::feed::KNOWN_DOCUMENTS)
                .bind(device.as_str())
                .fetch_all(self.$reads())
                .await?;
            rows.iter()
                .map(|row| {
                    Ok((
                        $crate::storage::feed::parse_document_id(row.try_get("document_id")?)?,
                        row.try_get("region")?,
                    ))
                })
                .collect()
        }
    };
}
pub(super) use portable_feed_reads;

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DocumentId {
        DocumentId::from_bytes([n; 16])
    }

    #[test]
    fn pages_stop_where_a_full_list_may_go_on() {
        let changed = vec![(id(1), 2), (id(2), 5)];
        let exits = vec![(id(3), 3, "34".to_owned())];
        let page = merge_page(changed.clone(), exits.clone(), 2, 9);
        assert_eq!(page.through, 5);
        assert!(!page.exhausted);
        let seqs: Vec<u64> = page.entries.iter().map(FeedEntry::seq).collect();
        assert_eq!(seqs, vec![2, 3, 5]);
        let page = merge_page(changed, exits, 10, 9);
        assert!(page.exhausted);
    }

    #[test]
    fn region_filters_are_placeholders_only() {
        let (changed, exits, params) = feed_queries(&FeedScope::Regions(vec![
            "34.71".into(),
            "x' OR 1=1".into(),
        ]));
        assert!(changed.contains("i.region = $4 OR i.region LIKE $5"));
        assert!(exits.contains("e.region = $6 OR e.region LIKE $7"));
        assert_eq!(params[1], "34.71.%");
        assert!(!changed.contains("OR 1=1"));
    }
}
