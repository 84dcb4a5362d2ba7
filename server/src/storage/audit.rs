//! The audit log's storage: the `AuditStore` part of the storage trait. Appends are serialised
//! (SQLite: the single writer; PostgreSQL: a transaction-level advisory lock) so that each
//! entry links to the one before and the chain never forks; `seq` being the primary key makes
//! a fork impossible even if that serialisation were bypassed.

use std::future::Future;

use crate::audit::chain::{self, EntryFields};
use crate::audit::{AuditAction, CitizenKey, NewAuditEntry};

use super::StorageError;
use super::accounts::UnixMillis;

/// One stored entry, exactly as in the table (so verification hashes what is stored).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntry {
    /// 1, 2, 3, ... without gaps.
    pub seq: i64,
    pub at: UnixMillis,
    /// An [`AuditAction`] wire name.
    pub action: String,
    pub actor_user_id: Option<i64>,
    pub actor_username: Option<String>,
    pub device_id: Option<String>,
    pub client_address: Option<String>,
    pub subject: Option<String>,
    pub citizen_key: Option<Vec<u8>>,
    pub detail: Option<String>,
    pub prev_hash: Vec<u8>,
    pub entry_hash: Vec<u8>,
}

impl AuditEntry {
    /// The hashed fields.
    pub fn fields(&self) -> EntryFields<'_> {
        EntryFields {
            seq: self.seq,
            at: self.at,
            action: &self.action,
            actor_user_id: self.actor_user_id,
            actor_username: self.actor_username.as_deref(),
            device_id: self.device_id.as_deref(),
            client_address: self.client_address.as_deref(),
            subject: self.subject.as_deref(),
            citizen_key: self.citizen_key.as_deref(),
            detail: self.detail.as_deref(),
            prev_hash: &self.prev_hash,
        }
    }

    /// `new` placed after the entry `seq - 1` whose hash is `prev_hash`, with its own hash.
    pub(super) fn link(new: NewAuditEntry, seq: i64, prev_hash: Vec<u8>) -> Self {
        let mut entry = AuditEntry {
            seq,
            at: new.at,
            action: new.action.as_str().to_owned(),
            actor_user_id: new.actor.user_id.map(|id| id.0),
            actor_username: new.actor.username,
            device_id: new.actor.device.map(String::from),
            client_address: new.client_address,
            subject: new.subject,
            citizen_key: new.citizen.map(|key| key.0.to_vec()),
            detail: new.detail,
            prev_hash,
            entry_hash: Vec::new(),
        };
        entry.entry_hash = chain::entry_hash(&entry.fields()).to_vec();
        entry
    }
}

/// Which entries `audit_entries` returns: all filters must hold; newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// At or after this time.
    pub since: Option<UnixMillis>,
    pub action: Option<AuditAction>,
    /// Done by this username (or `@server`, `@cli`).
    pub username: Option<String>,
    /// Concerning this citizen.
    pub citizen: Option<CitizenKey>,
    /// Entries before this `seq` (the cursor of the next page).
    pub before_seq: Option<i64>,
    /// At most this many (clamped to 1..=500).
    pub limit: u32,
}

pub trait AuditStore: Send + Sync {
    /// Appends `entry` at the head of the chain and returns it as stored (with its number and
    /// hash). Durable when it returns.
    fn append(
        &self,
        entry: NewAuditEntry,
    ) -> impl Future<Output = Result<AuditEntry, StorageError>> + Send;

    /// Entries matching `filter`, newest first.
    fn audit_entries(
        &self,
        filter: &AuditFilter,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StorageError>> + Send;

    /// Up to `limit` entries after `after_seq`, oldest first (for walking the chain).
    fn audit_chain(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StorageError>> + Send;
}

pub(super) mod sql {
    pub const COLUMNS: &str = "seq, at, action, actor_user_id, actor_username, device_id, \
        client_address, subject, citizen_key, detail, prev_hash, entry_hash";
    pub const HEAD: &str = "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1";
    pub const INSERT: &str = "INSERT INTO audit_log (seq, at, action, actor_user_id, \
        actor_username, device_id, client_address, subject, citizen_key, detail, prev_hash, \
        entry_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
    pub const CHAIN: &str = "SELECT seq, at, action, actor_user_id, actor_username, device_id, \
        client_address, subject, citizen_key, detail, prev_hash, entry_hash FROM audit_log \
        WHERE seq > $1 ORDER BY seq LIMIT $2";
}

/// A bound value of a filtered query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Param {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// The complete `SELECT` for `filter`, with numbered placeholders, and its values in order.
pub(super) fn filter_query(filter: &AuditFilter) -> (String, Vec<Param>) {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    let mut add = |clause: &str, param: Param| {
        params.push(param);
        clauses.push(format!("{clause} ${}", params.len()));
    };
    if let Some(since) = filter.since {
        add("at >=", Param::Int(since));
    }
    if let Some(action) = filter.action {
        add("action =", Param::Text(action.as_str().to_owned()));
    }
    if let Some(username) = &filter.username {
        add("actor_username =", Param::Text(username.clone()));
    }
    if let Some(citizen) = &filter.citizen {
        add("citizen_key =", Param::Bytes(citizen.0.to_vec()));
    }
    if let Some(before) = filter.before_seq {
        add("seq <", Param::Int(before));
    }
    let mut sql = format!("SELECT {} FROM audit_log", sql::COLUMNS);
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    params.push(Param::Int(i64::from(filter.limit.clamp(1, 500))));
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", params.len()));
    (sql, params)
}

/// Implements `AuditStore` for `$storage`, whose `$reads()` returns a pool and whose
/// `$write(|connection: &mut $conn| ...)` runs one atomic write; `$lock` is a statement run
/// first in every append to serialise appends (`None` when `$write` is already serial).
macro_rules! portable_audit_store {
    ($storage:ty, $conn:ty, $db:ty, $reads:ident, $write:ident, $lock:expr) => {
        use sqlx::Row;

        use $crate::audit::NewAuditEntry;
        use $crate::audit::chain::GENESIS;
        use $crate::storage::StorageError;
        use $crate::storage::audit::{
            AuditEntry, AuditFilter, AuditStore, Param, filter_query, sql,
        };

        async fn append_on(
            connection: &mut $conn,
            new: NewAuditEntry,
        ) -> Result<AuditEntry, sqlx::Error> {
            let lock: Option<&str> = $lock;
            if let Some(lock) = lock {
                sqlx::query(lock).execute(&mut *connection).await?;
            }
            let head = sqlx::query(sql::HEAD)
                .fetch_optional(&mut *connection)
                .await?;
            let (seq, prev_hash) = match head {
                Some(row) => (
                    row.try_get::<i64, _>("seq")? + 1,
                    row.try_get::<Vec<u8>, _>("entry_hash")?,
                ),
                None => (1, GENESIS.to_vec()),
            };
            let entry = AuditEntry::link(new, seq, prev_hash);
            sqlx::query(sql::INSERT)
                .bind(entry.seq)
                .bind(entry.at)
                .bind(&entry.action)
                .bind(entry.actor_user_id)
                .bind(&entry.actor_username)
                .bind(&entry.device_id)
                .bind(&entry.client_address)
                .bind(&entry.subject)
                .bind(&entry.citizen_key)
                .bind(&entry.detail)
                .bind(&entry.prev_hash)
                .bind(&entry.entry_hash)
                .execute(&mut *connection)
                .await?;
            Ok(entry)
        }

        impl AuditStore for $storage {
            async fn append(&self, entry: NewAuditEntry) -> Result<AuditEntry, StorageError> {
                self.$write(move |connection| Box::pin(append_on(connection, entry)))
                    .await
            }

            async fn audit_entries(
                &self,
                filter: &AuditFilter,
            ) -> Result<Vec<AuditEntry>, StorageError> {
                let (text, params) = filter_query(filter);
                let mut query = sqlx::query_as::<$db, AuditEntry>(sqlx::AssertSqlSafe(text));
                for param in params {
                    query = match param {
                        Param::Int(value) => query.bind(value),
                        Param::Text(value) => query.bind(value),
                        Param::Bytes(value) => query.bind(value),
                    };
                }
                Ok(query.fetch_all(self.$reads()).await?)
            }

            async fn audit_chain(
                &self,
                after_seq: i64,
                limit: u32,
            ) -> Result<Vec<AuditEntry>, StorageError> {
                Ok(sqlx::query_as::<$db, AuditEntry>(sql::CHAIN)
                    .bind(after_seq)
                    .bind(i64::from(limit.max(1)))
                    .fetch_all(self.$reads())
                    .await?)
            }
        }
    };
}

pub(super) use portable_audit_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_numbered_placeholders_only() {
        let filter = AuditFilter {
            since: Some(5),
            action: Some(AuditAction::LoginFailed),
            username: Some("x'; DROP TABLE audit_log; --".into()),
            before_seq: Some(99),
            limit: 10_000,
            ..AuditFilter::default()
        };
        let (sql, params) = filter_query(&filter);
        assert!(
            sql.ends_with(
                "FROM audit_log WHERE at >= $1 AND action = $2 AND actor_username = $3 \
                 AND seq < $4 ORDER BY seq DESC LIMIT $5"
            ),
            "{sql}"
        );
        assert_eq!(
            params[2],
            Param::Text("x'; DROP TABLE audit_log; --".into())
        );
        assert_eq!(params[4], Param::Int(500));
        let (sql, params) = filter_query(&AuditFilter::default());
        assert!(
            sql.ends_with("FROM audit_log ORDER BY seq DESC LIMIT $1"),
            "{sql}"
        );
        assert_eq!(params, vec![Param::Int(1)]);
    }
}
