//! Durable storage of documents, behind one trait with one implementation per SQL dialect.
//!
//! Documents are kept as Automerge chunks: at most a few snapshots (`save()`) and any number
//! of incremental chunks (`save_after()`), loaded together and concatenated. Compaction writes
//! one new snapshot and deletes exactly the chunks the compacting process had loaded, so
//! several writers (tasks, server instances) never delete each other's work.
//!
//! Every method returns only after its effect is durable; callers acknowledge a change to a
//! peer only after `append_chunk` has returned `Ok`.

pub mod accounts;
mod accounts_sql;
pub mod audit;
pub mod feed;
pub mod index;
mod postgres;
mod postgres_accounts;
mod postgres_audit;
mod postgres_feed;
mod postgres_index;
mod queries;
mod sqlite;
mod sqlite_accounts;
mod sqlite_audit;
mod sqlite_feed;
mod sqlite_index;

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use jemput_sync_protocol::{DocumentId, StorageId};

pub use accounts::{
    AccountStore, ActorOwner, Credential, CredentialKind, CredentialRecord, CredentialState,
    DeviceId, DeviceRecord, Identity, NewDevice, NewUser, PasswordHash, SessionId, TokenHash,
    UnixMillis, UserAccount, UserId, Username,
};
pub use audit::{AuditEntry, AuditFilter, AuditStore};
pub use feed::{BatchDevice, ExchangeOutcome, FeedEntry, FeedPage, FeedScope, FeedStore};
pub use index::{IndexFilter, IndexRow, IndexStore};
pub use postgres::PostgresStorage;
pub use sqlite::{SqliteStorage, SqliteStorageConfig};

/// Identifies one stored chunk; increases with every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    Snapshot,
    Incremental,
}

impl ChunkKind {
    fn to_db(self) -> i16 {
        match self {
            ChunkKind::Snapshot => 0,
            ChunkKind::Incremental => 1,
        }
    }

    fn from_db(value: i64) -> Result<Self, StorageError> {
        match value {
            0 => Ok(ChunkKind::Snapshot),
            1 => Ok(ChunkKind::Incremental),
            other => Err(StorageError::Corrupt(format!("unknown chunk kind {other}"))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Chunk {
    pub id: ChunkId,
    pub kind: ChunkKind,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage is shutting down")]
    Closed,
    #[error("conflict: {0}")]
    Conflict(String),
}

/// What the sync server needs from a database. Implemented for SQLite and PostgreSQL; the
/// contract is exercised against both by one shared test suite.
pub trait Storage:
    AccountStore + AuditStore + FeedStore + index::IndexStore + Send + Sync + 'static
{
    /// Every chunk of a document in write order; empty when the document is unknown.
    fn load_chunks(
        &self,
        document: DocumentId,
    ) -> impl Future<Output = Result<Vec<Chunk>, StorageError>> + Send;

    /// Whether anything has been stored for the document.
    fn document_exists(
        &self,
        document: DocumentId,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;

    /// Appends an incremental chunk; durable when this returns `Ok`.
    fn append_chunk(
        &self,
        document: DocumentId,
        data: Vec<u8>,
    ) -> impl Future<Output = Result<ChunkId, StorageError>> + Send;

    /// Atomically stores `snapshot` and deletes exactly the chunks in `replaced`.
    fn compact(
        &self,
        document: DocumentId,
        replaced: Vec<ChunkId>,
        snapshot: Vec<u8>,
    ) -> impl Future<Output = Result<ChunkId, StorageError>> + Send;

    fn load_sync_state(
        &self,
        document: DocumentId,
        peer_storage: &StorageId,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StorageError>> + Send;

    fn save_sync_state(
        &self,
        document: DocumentId,
        peer_storage: &StorageId,
        state: Vec<u8>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// A persistent server setting (e.g. the server's own storage id).
    fn setting(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, StorageError>> + Send;

    /// Stores `value` unless a value is already set; returns the value in force.
    fn init_setting(
        &self,
        name: &str,
        value: &str,
    ) -> impl Future<Output = Result<String, StorageError>> + Send;

    /// Cheap round trip used by `/readyz`.
    fn ping(&self) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Flushes and closes; later calls fail with `StorageError::Closed`.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// Milliseconds since the Unix epoch, as stored in `created_at`/`updated_at` columns.
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Maps a unique-constraint violation to `Conflict`, anything else to `Database`.
fn conflict_or(error: sqlx::Error, what: &str) -> StorageError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StorageError::Conflict(what.to_owned())
        }
        _ => StorageError::Database(error),
    }
}
