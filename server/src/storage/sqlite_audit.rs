//! `AuditStore` for SQLite: appends run on the single writer, one after another, so reading
//! the head and inserting after it cannot interleave with another append.

super::audit::portable_audit_store!(
    crate::storage::SqliteStorage,
    sqlx::SqliteConnection,
    sqlx::Sqlite,
    readers,
    write_with,
    None
);
