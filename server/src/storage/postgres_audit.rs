//! `AuditStore` for PostgreSQL: several instances may append at once, so each append takes a
//! transaction-level advisory lock before reading the head; the lock is released at commit.

/// Serialises appends across every connection and instance on this database. The key is
/// `0x6a656d707574_0001` ("jemput", 1), used for nothing else.
const LOCK_AUDIT_HEAD: &str = "SELECT pg_advisory_xact_lock(7666654270442438657)";

super::audit::portable_audit_store!(
    crate::storage::PostgresStorage,
    sqlx::PgConnection,
    sqlx::Postgres,
    pool,
    in_transaction,
    Some(LOCK_AUDIT_HEAD)
);
