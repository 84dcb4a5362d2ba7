//! PostgreSQL storage, for larger deployments and several server instances sharing one
//! database. PostgreSQL commits concurrent transactions itself, so writes go straight to the
//! pool; `synchronous_commit` must stay `on` (the default) for acknowledgements to be durable.

use std::time::{Duration, Instant};

use jemput_sync_protocol::{DocumentId, StorageId};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::{Chunk, ChunkId, ChunkKind, Storage, StorageError, now_millis, queries};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/server-postgres");

pub struct PostgresStorage {
    pool: PgPool,
}

impl PostgresStorage {
    /// Connects and applies pending migrations (serialised across instances by sqlx's
    /// advisory lock).
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StorageError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool, for the other store implementations in this module.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies migrations without starting a server (`jemput migrate`).
    pub async fn migrate(url: &str) -> Result<(), StorageError> {
        let storage = Self::open(url, 2).await?;
        storage.close().await;
        Ok(())
    }

    pub(super) async fn insert_chunk(
        tx: &mut Transaction<'static, Postgres>,
        document: &str,
        kind: ChunkKind,
        data: &[u8],
        now: i64,
    ) -> Result<ChunkId, sqlx::Error> {
        sqlx::query(queries::TOUCH_DOCUMENT)
            .bind(document)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        if kind == ChunkKind::Incremental {
            // New changes enter the batch sync feed; a compaction changes no content.
            super::postgres_feed::advance_feed(tx, document).await?;
        }
        let id: i64 = sqlx::query_scalar(queries::INSERT_CHUNK)
            .bind(document)
            .bind(kind.to_db())
            .bind(data)
            .bind(now)
            .fetch_one(&mut **tx)
            .await?;
        Ok(ChunkId(id))
    }
}

impl Storage for PostgresStorage {
    async fn load_chunks(&self, document: DocumentId) -> Result<Vec<Chunk>, StorageError> {
        let rows = sqlx::query(queries::LOAD_CHUNKS)
            .bind(document.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Chunk {
                    id: ChunkId(row.try_get("chunk_id")?),
                    kind: ChunkKind::from_db(i64::from(row.try_get::<i16, _>("kind")?))?,
                    data: row.try_get("data")?,
                })
            })
            .collect()
    }

    async fn document_exists(&self, document: DocumentId) -> Result<bool, StorageError> {
        let row = sqlx::query(queries::DOCUMENT_EXISTS)
            .bind(document.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn append_chunk(
        &self,
        document: DocumentId,
        data: Vec<u8>,
    ) -> Result<ChunkId, StorageError> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let id = Self::insert_chunk(
            &mut tx,
            &document.to_string(),
            ChunkKind::Incremental,
            &data,
            now_millis(),
        )
        .await?;
        tx.commit().await?;
        metrics::histogram!(crate::metrics::STORAGE_WRITE_SECONDS)
            .record(started.elapsed().as_secs_f64());
        Ok(id)
    }

    async fn compact(
        &self,
        document: DocumentId,
        replaced: Vec<ChunkId>,
        snapshot: Vec<u8>,
    ) -> Result<ChunkId, StorageError> {
        let document = document.to_string();
        let replaced: Vec<i64> = replaced.into_iter().map(|id| id.0).collect();
        let mut tx = self.pool.begin().await?;
        let id = Self::insert_chunk(
            &mut tx,
            &document,
            ChunkKind::Snapshot,
            &snapshot,
            now_millis(),
        )
        .await?;
        sqlx::query("DELETE FROM document_chunks WHERE document_id = $1 AND chunk_id = ANY($2)")
            .bind(&document)
            .bind(&replaced)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn load_sync_state(
        &self,
        document: DocumentId,
        peer_storage: &StorageId,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(sqlx::query_scalar(queries::LOAD_SYNC_STATE)
            .bind(document.to_string())
            .bind(peer_storage.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn save_sync_state(
        &self,
        document: DocumentId,
        peer_storage: &StorageId,
        state: Vec<u8>,
    ) -> Result<(), StorageError> {
        sqlx::query(queries::SAVE_SYNC_STATE)
            .bind(document.to_string())
            .bind(peer_storage.as_str())
            .bind(state)
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StorageError> {
        Ok(sqlx::query_scalar(queries::LOAD_SETTING)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn init_setting(&self, name: &str, value: &str) -> Result<String, StorageError> {
        sqlx::query(queries::INIT_SETTING)
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar(queries::LOAD_SETTING)
            .bind(name)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
