//! SQLite storage: the embedded default (`./data/jemput.db`, WAL, no set-up).
//!
//! SQLite allows one writer at a time, so every write goes through a single writer task that
//! commits whatever has queued up in one transaction (group commit): one fsync serves many
//! concurrent documents. Reads use a separate pool, which WAL lets run beside the writer.

use std::any::Any;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use jemput_sync_protocol::{DocumentId, StorageId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{Chunk, ChunkId, ChunkKind, Storage, StorageError, now_millis, queries};

/// Jobs the writer takes in one transaction at most; bounds the latency of the first job.
const MAX_GROUP: usize = 512;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/server-sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStorageConfig {
    pub path: PathBuf,
    /// Readers kept open beside the single writer.
    pub read_connections: u32,
}

impl SqliteStorageConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            read_connections: 4,
        }
    }
}

enum WriteOp {
    Append {
        document: DocumentId,
        data: Vec<u8>,
    },
    Compact {
        document: DocumentId,
        replaced: Vec<ChunkId>,
        snapshot: Vec<u8>,
    },
    SaveSyncState {
        document: DocumentId,
        peer_storage: StorageId,
        state: Vec<u8>,
    },
    InitSetting {
        name: String,
        value: String,
    },
    /// Any other write, run by the writer inside the group transaction (see
    /// [`SqliteStorage::write_with`]).
    Custom(Option<CustomWrite>),
    /// Commit what was queued before it, then stop the writer.
    Close,
}

/// A write expressed as a function of the writer's connection; its value reaches the caller
/// only after the group transaction committed.
pub type CustomWrite = Box<
    dyn for<'c> FnOnce(
            &'c mut SqliteConnection,
        ) -> BoxFuture<'c, Result<Box<dyn Any + Send>, sqlx::Error>>
        + Send,
>;

enum WriteOutcome {
    Chunk(ChunkId),
    Done,
    Setting(String),
    Custom(Box<dyn Any + Send>),
}

struct WriteJob {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteOutcome, StorageError>>,
}

pub struct SqliteStorage {
    readers: SqlitePool,
    writer: mpsc::Sender<WriteJob>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(config: SqliteStorageConfig) -> Result<Self, StorageError> {
        if let Some(parent) = config.path.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| StorageError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&config.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives power loss, not only a crash of this process.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));

        let mut writer_connection = SqliteConnection::connect_with(&options).await?;
        MIGRATOR.run(&mut writer_connection).await?;

        let readers = SqlitePoolOptions::new()
            .max_connections(config.read_connections.max(1))
            .connect_with(options.read_only(true))
            .await?;

        let (writer, jobs) = mpsc::channel(4096);
        tokio::spawn(run_writer(writer_connection, jobs));
        Ok(Self { readers, writer })
    }

    /// Applies migrations to the database without starting a server (`jemput migrate`).
    pub async fn migrate(config: &SqliteStorageConfig) -> Result<(), StorageError> {
        let storage = Self::open(config.clone()).await?;
        storage.close().await;
        Ok(())
    }

    /// Runs `write` on the single writer connection, inside a group transaction, and returns
    /// its value once committed. Every SQLite write outside this module goes through here, so
    /// there is never a second writer to wait for.
    pub async fn write_with<T, F>(&self, write: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        let custom: CustomWrite = Box::new(move |connection| {
            Box::pin(async move {
                let value = write(connection).await?;
                Ok(Box::new(value) as Box<dyn Any + Send>)
            })
        });
        match self.write(WriteOp::Custom(Some(custom))).await? {
            WriteOutcome::Custom(value) => value
                .downcast::<T>()
                .map(|value| *value)
                .map_err(|_| unexpected()),
            _ => Err(unexpected()),
        }
    }

    /// The read pool (WAL readers), for queries outside this module.
    pub fn readers(&self) -> &SqlitePool {
        &self.readers
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, StorageError> {
        let (reply, outcome) = oneshot::channel();
        self.writer
            .send(WriteJob { op, reply })
            .await
            .map_err(|_| StorageError::Closed)?;
        outcome.await.map_err(|_| StorageError::Closed)?
    }
}

async fn run_writer(mut connection: SqliteConnection, mut jobs: mpsc::Receiver<WriteJob>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut close_reply = None;
    while close_reply.is_none() && jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        if let Some(at) = group
            .iter()
            .position(|job| matches!(job.op, WriteOp::Close))
        {
            // Jobs queued after the close marker are dropped: their callers see `Closed`.
            let mut rest = group.split_off(at);
            close_reply = Some(rest.swap_remove(0).reply);
        }
        if group.is_empty() {
            continue;
        }
        let started = Instant::now();
        let result = commit_group(&mut connection, &mut group).await;
        metrics::histogram!(crate::metrics::STORAGE_WRITE_SECONDS)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) => {
                for (job, outcome) in group.drain(..).zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(%error, jobs = group.len(), "sqlite group commit failed");
                for job in group.drain(..) {
                    let _ = job.reply.send(Err(StorageError::Corrupt(format!(
                        "commit failed: {error}"
                    ))));
                }
            }
        }
    }
    if let Err(error) = connection.close().await {
        tracing::warn!(%error, "closing the sqlite writer connection");
    }
    if let Some(reply) = close_reply {
        let _ = reply.send(Ok(WriteOutcome::Done));
    }
}

/// Runs every job in one transaction, each inside its own savepoint so one failing job does
/// not undo the others. Returns per-job outcomes only if the commit itself succeeded.
async fn commit_group(
    connection: &mut SqliteConnection,
    group: &mut [WriteJob],
) -> Result<Vec<Result<WriteOutcome, StorageError>>, sqlx::Error> {
    // IMMEDIATE: take the write lock up front, so a second process writing the same file
    // (`jemput admin`) waits on the busy timeout instead of failing this group mid-way.
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
    let mut outcomes = Vec::with_capacity(group.len());
    for job in group.iter_mut() {
        let mut savepoint = tx.begin().await?;
        match apply(&mut savepoint, &mut job.op).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                outcomes.push(Ok(outcome));
            }
            Err(error) => {
                savepoint.rollback().await?;
                outcomes.push(Err(StorageError::Database(error)));
            }
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

async fn apply(
    connection: &mut SqliteConnection,
    op: &mut WriteOp,
) -> Result<WriteOutcome, sqlx::Error> {
    let now = now_millis();
    match op {
        WriteOp::Append { document, data } => {
            let id = insert_chunk(connection, *document, ChunkKind::Incremental, data, now).await?;
            Ok(WriteOutcome::Chunk(id))
        }
        WriteOp::Compact {
            document,
            replaced,
            snapshot,
        } => {
            let id =
                insert_chunk(connection, *document, ChunkKind::Snapshot, snapshot, now).await?;
            let document = document.to_string();
            for chunk in replaced {
                sqlx::query("DELETE FROM document_chunks WHERE document_id = $1 AND chunk_id = $2")
                    .bind(&document)
                    .bind(chunk.0)
                    .execute(&mut *connection)
                    .await?;
            }
            Ok(WriteOutcome::Chunk(id))
        }
        WriteOp::SaveSyncState {
            document,
            peer_storage,
            state,
        } => {
            sqlx::query(queries::SAVE_SYNC_STATE)
                .bind(document.to_string())
                .bind(peer_storage.as_str())
                .bind(state.as_slice())
                .bind(now)
                .execute(&mut *connection)
                .await?;
            Ok(WriteOutcome::Done)
        }
        WriteOp::Close => Ok(WriteOutcome::Done),
        WriteOp::Custom(write) => match write.take() {
            Some(write) => Ok(WriteOutcome::Custom(write(connection).await?)),
            None => Err(sqlx::Error::Protocol("custom write ran twice".into())),
        },
        WriteOp::InitSetting { name, value } => {
            sqlx::query(queries::INIT_SETTING)
                .bind(name.as_str())
                .bind(value.as_str())
                .execute(&mut *connection)
                .await?;
            let value: String = sqlx::query_scalar(queries::LOAD_SETTING)
                .bind(name.as_str())
                .fetch_one(&mut *connection)
                .await?;
            Ok(WriteOutcome::Setting(value))
        }
    }
}

pub(super) async fn insert_chunk(
    connection: &mut SqliteConnection,
    document: DocumentId,
    kind: ChunkKind,
    data: &[u8],
    now: i64,
) -> Result<ChunkId, sqlx::Error> {
    let document = document.to_string();
    sqlx::query(queries::TOUCH_DOCUMENT)
        .bind(&document)
        .bind(now)
        .execute(&mut *connection)
        .await?;
    if kind == ChunkKind::Incremental {
        // New changes enter the batch sync feed; a compaction changes no content.
        super::sqlite_feed::advance_feed(connection, &document).await?;
    }
    let id: i64 = sqlx::query_scalar(queries::INSERT_CHUNK)
        .bind(&document)
        .bind(i64::from(kind.to_db()))
        .bind(data)
        .bind(now)
        .fetch_one(&mut *connection)
        .await?;
    Ok(ChunkId(id))
}

fn unexpected() -> StorageError {
    StorageError::Corrupt("writer returned an unexpected outcome".into())
}

impl Storage for SqliteStorage {
    async fn load_chunks(&self, document: DocumentId) -> Result<Vec<Chunk>, StorageError> {
        let rows = sqlx::query(queries::LOAD_CHUNKS)
            .bind(document.to_string())
            .fetch_all(&self.readers)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Chunk {
                    id: ChunkId(row.try_get("chunk_id")?),
                    kind: ChunkKind::from_db(row.try_get::<i64, _>("kind")?)?,
                    data: row.try_get("data")?,
                })
            })
            .collect()
    }

    async fn document_exists(&self, document: DocumentId) -> Result<bool, StorageError> {
        let row = sqlx::query(queries::DOCUMENT_EXISTS)
            .bind(document.to_string())
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.is_some())
    }

    async fn append_chunk(
        &self,
        document: DocumentId,
        data: Vec<u8>,
    ) -> Result<ChunkId, StorageError> {
        match self.write(WriteOp::Append { document, data }).await? {
            WriteOutcome::Chunk(id) => Ok(id),
            _ => Err(unexpected()),
        }
    }

    async fn compact(
        &self,
        document: DocumentId,
        replaced: Vec<ChunkId>,
        snapshot: Vec<u8>,
    ) -> Result<ChunkId, StorageError> {
        let op = WriteOp::Compact {
            document,
            replaced,
            snapshot,
        };
        match self.write(op).await? {
            WriteOutcome::Chunk(id) => Ok(id),
            _ => Err(unexpected()),
        }
    }

    async fn load_sync_state(
        &self,
        document: DocumentId,
        peer_storage: &StorageId,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(sqlx::query_scalar(queries::LOAD_SYNC_STATE)
            .bind(document.to_string())
            .bind(peer_storage.as_str())
            .fetch_optional(&self.readers)
            .await?)
    }

    async fn save_sync_state(
        &self,
        document: DocumentId,
        peer_storage: &StorageId,
        state: Vec<u8>,
    ) -> Result<(), StorageError> {
        let op = WriteOp::SaveSyncState {
            document,
            peer_storage: peer_storage.clone(),
            state,
        };
        self.write(op).await.map(|_| ())
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StorageError> {
        Ok(sqlx::query_scalar(queries::LOAD_SETTING)
            .bind(name)
            .fetch_optional(&self.readers)
            .await?)
    }

    async fn init_setting(&self, name: &str, value: &str) -> Result<String, StorageError> {
        let op = WriteOp::InitSetting {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        match self.write(op).await? {
            WriteOutcome::Setting(value) => Ok(value),
            _ => Err(unexpected()),
        }
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn close(&self) {
        // Queued writes are committed before the writer stops; a closed writer is fine.
        let _ = self.write(WriteOp::Close).await;
        self.readers.close().await;
    }
}
