//! The device's offline store on SQLite: documents (snapshot plus incremental chunks), the
//! batch sync state and the enrolment.
//!
//! Every write that changes a document and the sync state happens in one transaction, so a
//! crash never leaves a cursor stored without the documents it covers, nor a local change
//! the sync state does not know about.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use automerge::{ActorId, Automerge, ChangeHash};
use jemput_sync_protocol::DocumentId;
use jemput_sync_protocol::batch::{
    Cursor, DeviceDoc, DeviceRepair, DeviceState, decode_request, encode_request,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

/// Incremental chunks a document may collect before it is compacted into one snapshot.
pub const COMPACT_AFTER_CHUNKS: i64 = 32;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// Migrating the store failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored Automerge bytes do not load.
    #[error("document {0} is corrupt: {1}")]
    Corrupt(DocumentId, Box<automerge::AutomergeError>),
    /// A stored value does not decode.
    #[error("stored {0} is invalid")]
    Invalid(&'static str),
    /// The device is not enrolled yet.
    #[error("perangkat belum terdaftar (run `jemput-field enrol` first)")]
    NotEnrolled,
}

/// The device's enrolment with a server.
#[derive(Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The server's base URL, e.g. `https://mpp.example.go.id`.
    pub server_url: String,
    /// The device id the server assigned.
    pub device_id: String,
    /// The device token (a secret: never printed by `Debug`).
    pub device_token: String,
    /// The officer's user id.
    pub user_id: String,
    /// The officer's username.
    pub username: String,
    /// Region codes the officer is assigned.
    pub regions: Vec<String>,
    /// Actor ids registered to the device at enrolment; every local write uses the first.
    pub actor_ids: Vec<ActorId>,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment")
            .field("server_url", &self.server_url)
            .field("device_id", &self.device_id)
            .field("device_token", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .field("regions", &self.regions)
            .field("actor_ids", &self.actor_ids)
            .finish()
    }
}

impl Enrolment {
    /// The actor every local write uses: the first id registered at enrolment.
    pub fn write_actor(&self) -> Result<&ActorId, StoreError> {
        self.actor_ids
            .first()
            .ok_or(StoreError::Invalid("enrolment actor ids"))
    }
}

/// The index row of a stored document, for listing without loading the CRDT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSummary {
    /// The document.
    pub id: DocumentId,
    /// `application` or `visit` (None: unknown schema).
    pub kind: Option<String>,
    /// Application status.
    pub status: Option<String>,
    /// Application tracking code.
    pub tracking_code: Option<String>,
    /// Service code.
    pub service: Option<String>,
    /// District code.
    pub district: Option<String>,
    /// Unix milliseconds of the last local store.
    pub updated_at: i64,
}

/// A document as loaded: its content and the last chunk read (compaction deletes only up to
/// that chunk).
#[derive(Debug)]
pub struct Loaded {
    /// The document.
    pub doc: Automerge,
    /// Heads when loaded (an incremental save stores what came after them).
    pub heads: Vec<ChangeHash>,
    /// Chunks read.
    pub chunks: i64,
    /// Highest chunk sequence number read.
    pub last_chunk: i64,
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(30));
        // Writers are serialised by the client; WAL lets readers run beside them.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/client").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Begins a transaction (SQLite's writer lock is taken at the first write).
    pub async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Stores the enrolment (replacing any earlier one) and a fresh sync state for its actor.
    pub async fn save_enrolment(&self, e: &Enrolment, now_ms: i64) -> Result<(), StoreError> {
        let actor = e.write_actor()?.clone();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT OR REPLACE INTO enrolment (id, server_url, device_id, device_token, user_id, \
             username, regions, actor_ids, enrolled_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.server_url)
        .bind(&e.device_id)
        .bind(&e.device_token)
        .bind(&e.user_id)
        .bind(&e.username)
        .bind(e.regions.join(","))
        .bind(
            e.actor_ids
                .iter()
                .map(ActorId::to_hex_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        // A new enrolment is a new device to the server: start sync from nothing.
        sqlx::query("DELETE FROM sync_state")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO sync_state (id, actor) VALUES (1, ?)")
            .bind(actor.to_bytes())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE sync_docs SET server_heads = x'', refused_at = NULL")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The enrolment, if the device is enrolled.
    pub async fn enrolment(&self) -> Result<Option<Enrolment>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT server_url, device_id, device_token, user_id, username, regions, actor_ids \
             FROM enrolment WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let split = |s: String| -> Vec<String> {
            s.split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let actor_ids = split(row.try_get("actor_ids")?)
            .iter()
            .map(|h| ActorId::from_str(h).map_err(|_| StoreError::Invalid("actor id")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Enrolment {
            server_url: row.try_get("server_url")?,
            device_id: row.try_get("device_id")?,
            device_token: row.try_get("device_token")?,
            user_id: row.try_get("user_id")?,
            username: row.try_get("username")?,
            regions: split(row.try_get("regions")?),
            actor_ids,
        }))
    }

    /// The enrolment, or [`StoreError::NotEnrolled`].
    pub async fn require_enrolment(&self) -> Result<Enrolment, StoreError> {
        self.enrolment().await?.ok_or(StoreError::NotEnrolled)
    }

    /// Loads a document, or `None` if the store does not hold it.
    pub async fn load(
        tx: &mut Transaction<'_, Sqlite>,
        id: DocumentId,
    ) -> Result<Option<Loaded>, StoreError> {
        let Some(row) = sqlx::query("SELECT snapshot FROM documents WHERE id = ?")
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&mut **tx)
            .await?
        else {
            return Ok(None);
        };
        let snapshot: Vec<u8> = row.try_get("snapshot")?;
        let mut doc =
            Automerge::load(&snapshot).map_err(|e| StoreError::Corrupt(id, Box::new(e)))?;
        let rows =
            sqlx::query("SELECT seq, data FROM document_chunks WHERE doc_id = ? ORDER BY seq")
                .bind(id.as_bytes().as_slice())
                .fetch_all(&mut **tx)
                .await?;
        let mut last_chunk = 0;
        for row in &rows {
            let data: Vec<u8> = row.try_get("data")?;
            doc.load_incremental(&data)
                .map_err(|e| StoreError::Corrupt(id, Box::new(e)))?;
            last_chunk = row.try_get("seq")?;
        }
        Ok(Some(Loaded {
            heads: doc.get_heads(),
            doc,
            chunks: rows.len() as i64,
            last_chunk,
        }))
    }

    /// Stores a document: the whole of a new one, or the changes after `loaded`'s heads as
    /// one incremental chunk (compacting when chunks pile up), and refreshes its index row.
    pub async fn save(
        tx: &mut Transaction<'_, Sqlite>,
        id: DocumentId,
        doc: &Automerge,
        loaded: Option<&Loaded>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let summary = summarise(id, doc, now_ms);
        let key = id.as_bytes().as_slice();
        match loaded {
            None => {
                sqlx::query(
                    "INSERT OR REPLACE INTO documents (id, snapshot, kind, status, tracking_code, \
                     service, district, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(key)
                .bind(doc.save())
                .bind(&summary.kind)
                .bind(&summary.status)
                .bind(&summary.tracking_code)
                .bind(&summary.service)
                .bind(&summary.district)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
                sqlx::query("DELETE FROM document_chunks WHERE doc_id = ?")
                    .bind(key)
                    .execute(&mut **tx)
                    .await?;
            }
            Some(loaded) if loaded.chunks + 1 >= COMPACT_AFTER_CHUNKS => {
                // Compact: the snapshot replaces exactly the chunks this load read.
                sqlx::query("DELETE FROM document_chunks WHERE doc_id = ? AND seq <= ?")
                    .bind(key)
                    .bind(loaded.last_chunk)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE documents SET snapshot = ? WHERE id = ?")
                    .bind(doc.save())
                    .bind(key)
                    .execute(&mut **tx)
                    .await?;
                update_index(tx, &summary).await?;
            }
            Some(loaded) => {
                if doc.get_heads() != loaded.heads {
                    let chunk = doc.save_after(&loaded.heads);
                    sqlx::query("INSERT INTO document_chunks (doc_id, data) VALUES (?, ?)")
                        .bind(key)
                        .bind(chunk)
                        .execute(&mut **tx)
                        .await?;
                }
                update_index(tx, &summary).await?;
            }
        }
        Ok(())
    }

    /// Deletes a document and its sync row.
    pub async fn delete(
        tx: &mut Transaction<'_, Sqlite>,
        id: DocumentId,
    ) -> Result<(), StoreError> {
        let key = id.as_bytes().as_slice();
        for sql in [
            "DELETE FROM document_chunks WHERE doc_id = ?",
            "DELETE FROM documents WHERE id = ?",
            "DELETE FROM sync_docs WHERE doc_id = ?",
        ] {
            sqlx::query(sql).bind(key).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Lists stored documents from the index, most recently stored first.
    pub async fn list(&self) -> Result<Vec<DocumentSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, status, tracking_code, service, district, updated_at FROM documents \
             ORDER BY updated_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DocumentSummary {
                    id: doc_id(row.try_get("id")?)?,
                    kind: row.try_get("kind")?,
                    status: row.try_get("status")?,
                    tracking_code: row.try_get("tracking_code")?,
                    service: row.try_get("service")?,
                    district: row.try_get("district")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Records a local write in the sync state (`DeviceState::note_local_change`), in the
    /// transaction that stores the document.
    pub async fn note_local_change(
        tx: &mut Transaction<'_, Sqlite>,
        id: DocumentId,
        heads: &[ChangeHash],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sync_docs (doc_id, heads, server_heads) VALUES (?, ?, x'') \
             ON CONFLICT (doc_id) DO UPDATE SET heads = excluded.heads",
        )
        .bind(id.as_bytes().as_slice())
        .bind(join_heads(heads))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Loads the whole sync state.
    pub async fn load_state(tx: &mut Transaction<'_, Sqlite>) -> Result<DeviceState, StoreError> {
        let row = sqlx::query("SELECT actor, cursor, pending FROM sync_state WHERE id = 1")
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(StoreError::NotEnrolled)?;
        let actor: Vec<u8> = row.try_get("actor")?;
        let mut state = DeviceState::new(ActorId::from(actor));
        let cursor: Option<Vec<u8>> = row.try_get("cursor")?;
        state.cursor = cursor
            .map(|c| Cursor::from_bytes(c).map_err(|_| StoreError::Invalid("cursor")))
            .transpose()?;
        let pending: Option<Vec<u8>> = row.try_get("pending")?;
        state.pending = pending
            .map(|p| decode_request(&p).map_err(|_| StoreError::Invalid("pending request")))
            .transpose()?;
        let rows = sqlx::query(
            "SELECT doc_id, heads, server_heads, refused_at, repair_round, repair_message, \
             repair_state FROM sync_docs",
        )
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            let round: Option<i64> = row.try_get("repair_round")?;
            let repair = round
                .map(|round| -> Result<DeviceRepair, StoreError> {
                    Ok(DeviceRepair {
                        round: u32::try_from(round)
                            .map_err(|_| StoreError::Invalid("repair round"))?,
                        message: row.try_get("repair_message")?,
                        sync_state: row
                            .try_get::<Option<Vec<u8>>, _>("repair_state")?
                            .unwrap_or_default(),
                    })
                })
                .transpose()?;
            let refused: Option<Vec<u8>> = row.try_get("refused_at")?;
            state.documents.insert(
                doc_id(row.try_get("doc_id")?)?,
                DeviceDoc {
                    heads: split_heads(&row.try_get::<Vec<u8>, _>("heads")?)?,
                    server_heads: split_heads(&row.try_get::<Vec<u8>, _>("server_heads")?)?,
                    refused_at: refused.map(|r| split_heads(&r)).transpose()?,
                    repair,
                },
            );
        }
        Ok(state)
    }

    /// Stores `after`, writing only what differs from `before` (the state as loaded).
    pub async fn save_state(
        tx: &mut Transaction<'_, Sqlite>,
        before: &DeviceState,
        after: &DeviceState,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE sync_state SET actor = ?, cursor = ?, pending = ? WHERE id = 1")
            .bind(after.actor.to_bytes())
            .bind(after.cursor.as_ref().map(|c| c.as_bytes().to_vec()))
            .bind(after.pending.as_ref().map(encode_request))
            .execute(&mut **tx)
            .await?;
        for id in before.documents.keys() {
            if !after.documents.contains_key(id) {
                sqlx::query("DELETE FROM sync_docs WHERE doc_id = ?")
                    .bind(id.as_bytes().as_slice())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        for (id, doc) in &after.documents {
            if before.documents.get(id) == Some(doc) {
                continue;
            }
            let repair = doc.repair.as_ref();
            sqlx::query(
                "INSERT OR REPLACE INTO sync_docs (doc_id, heads, server_heads, refused_at, \
                 repair_round, repair_message, repair_state) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id.as_bytes().as_slice())
            .bind(join_heads(&doc.heads))
            .bind(join_heads(&doc.server_heads))
            .bind(doc.refused_at.as_deref().map(join_heads))
            .bind(repair.map(|r| i64::from(r.round)))
            .bind(repair.and_then(|r| r.message.clone()))
            .bind(repair.map(|r| r.sync_state.clone()))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Loads the named documents into a map (those the store lacks are left out).
    pub async fn load_many(
        tx: &mut Transaction<'_, Sqlite>,
        ids: &[DocumentId],
    ) -> Result<BTreeMap<DocumentId, Loaded>, StoreError> {
        let mut out = BTreeMap::new();
        for id in ids {
            if let Some(loaded) = Self::load(tx, *id).await? {
                out.insert(*id, loaded);
            }
        }
        Ok(out)
    }
}

async fn update_index(
    tx: &mut Transaction<'_, Sqlite>,
    s: &DocumentSummary,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE documents SET kind = ?, status = ?, tracking_code = ?, service = ?, district = ?, \
         updated_at = ? WHERE id = ?",
    )
    .bind(&s.kind)
    .bind(&s.status)
    .bind(&s.tracking_code)
    .bind(&s.service)
    .bind(&s.district)
    .bind(s.updated_at)
    .bind(s.id.as_bytes().as_slice())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The index row of a document, read through the domain's typed views.
pub fn summarise(id: DocumentId, doc: &Automerge, now_ms: i64) -> DocumentSummary {
    use jemput_domain::DocumentView;
    let mut s = DocumentSummary {
        id,
        kind: None,
        status: None,
        tracking_code: None,
        service: None,
        district: None,
        updated_at: now_ms,
    };
    match DocumentView::from_doc(doc) {
        Ok(DocumentView::Application(a)) => {
            s.kind = Some("application".into());
            s.status = Some(a.status.as_str().into());
            s.tracking_code = Some(a.tracking_code.as_str().into());
            s.service = Some(a.service.as_str().into());
            s.district = Some(a.region.district.as_str().into());
        }
        Ok(DocumentView::Visit(v)) => {
            s.kind = Some("visit".into());
            s.district = Some(v.region.district.as_str().into());
        }
        Err(_) => {}
    }
    s
}

fn doc_id(bytes: Vec<u8>) -> Result<DocumentId, StoreError> {
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::Invalid("document id"))?;
    Ok(DocumentId::from_bytes(bytes))
}

fn join_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

fn split_heads(bytes: &[u8]) -> Result<Vec<ChangeHash>, StoreError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(StoreError::Invalid("heads"));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            ChangeHash(h)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ROOT, ReadDoc};
    use jemput_sync_protocol::batch::{BatchRequest, IdempotencyKey};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("field.db"))
            .await
            .expect("open");
        (dir, store)
    }

    fn enrolment() -> Enrolment {
        Enrolment {
            server_url: "http://127.0.0.1:1".into(),
            device_id: "dev-1".into(),
            device_token: "rahasia-token".into(),
            user_id: "7".into(),
            username: "budi".into(),
            regions: vec!["34.71.01".into()],
            actor_ids: vec![ActorId::from(vec![0xab; 16])],
        }
    }

    fn doc_with(actor: &ActorId, value: i64) -> Automerge {
        let mut doc = Automerge::new().with_actor(actor.clone());
        let mut tx = doc.transaction();
        tx.put(ROOT, "n", value).expect("put");
        tx.commit();
        doc
    }

    #[tokio::test]
    async fn enrolment_round_trips_and_hides_the_token() {
        let (_dir, store) = store().await;
        assert!(store.enrolment().await.expect("read").is_none());
        store.save_enrolment(&enrolment(), 1).await.expect("save");
        let read = store.enrolment().await.expect("read").expect("enrolled");
        assert_eq!(read, enrolment());
        assert!(!format!("{read:?}").contains("rahasia"));
    }

    #[tokio::test]
    async fn documents_save_incrementally_and_compact() {
        let (_dir, store) = store().await;
        let actor = ActorId::from(vec![1; 16]);
        let id = DocumentId::from_bytes([9; 16]);
        let mut tx = store.begin().await.expect("begin");
        Store::save(&mut tx, id, &doc_with(&actor, 0), None, 1)
            .await
            .expect("save");
        tx.commit().await.expect("commit");
        for i in 1..=(COMPACT_AFTER_CHUNKS + 3) {
            let mut tx = store.begin().await.expect("begin");
            let loaded = Store::load(&mut tx, id).await.expect("load").expect("held");
            let mut doc = loaded.doc.clone().with_actor(actor.clone());
            let mut am = doc.transaction();
            am.put(ROOT, "n", i).expect("put");
            am.commit();
            Store::save(&mut tx, id, &doc, Some(&loaded), 2)
                .await
                .expect("save");
            tx.commit().await.expect("commit");
        }
        let mut tx = store.begin().await.expect("begin");
        let loaded = Store::load(&mut tx, id).await.expect("load").expect("held");
        let (value, _) = loaded.doc.get(ROOT, "n").expect("get").expect("set");
        assert_eq!(value.as_i64(), Some(COMPACT_AFTER_CHUNKS + 3));
        assert!(
            loaded.chunks < COMPACT_AFTER_CHUNKS,
            "compacted: {}",
            loaded.chunks
        );
        Store::delete(&mut tx, id).await.expect("delete");
        assert!(Store::load(&mut tx, id).await.expect("load").is_none());
    }

    #[tokio::test]
    async fn device_state_round_trips() {
        let (_dir, store) = store().await;
        store.save_enrolment(&enrolment(), 1).await.expect("save");
        let actor = ActorId::from(vec![1; 16]);
        let doc = doc_with(&actor, 1);
        let id = DocumentId::from_bytes([3; 16]);
        let mut tx = store.begin().await.expect("begin");
        let before = Store::load_state(&mut tx).await.expect("state");
        assert_eq!(before.actor, enrolment().actor_ids[0]);
        Store::note_local_change(&mut tx, id, &doc.get_heads())
            .await
            .expect("note");
        let mut state = Store::load_state(&mut tx).await.expect("state");
        assert_eq!(state.documents[&id].heads, doc.get_heads());
        let noted = state.clone();
        state.cursor = Some(Cursor::from_bytes(vec![1, 2, 3]).expect("cursor"));
        state.pending = Some(BatchRequest::empty(
            IdempotencyKey::from_bytes([5; 16]),
            state.cursor.clone(),
        ));
        state.document_lost(DocumentId::from_bytes([4; 16]));
        if let Some(d) = state.documents.get_mut(&id) {
            d.server_heads = d.heads.clone();
            d.refused_at = Some(d.heads.clone());
        }
        Store::save_state(&mut tx, &noted, &state)
            .await
            .expect("save state");
        tx.commit().await.expect("commit");
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(Store::load_state(&mut tx).await.expect("state"), state);
    }
}
