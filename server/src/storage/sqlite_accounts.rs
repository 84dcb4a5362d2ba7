//! `AccountStore` for SQLite: writes through the single writer, reads through the pool.

super::accounts_sql::portable_account_store!(
    crate::storage::SqliteStorage,
    sqlx::SqliteConnection,
    readers,
    write_with
);
