//! `AccountStore` for PostgreSQL: each write is one transaction on the pool.

use futures_util::future::BoxFuture;
use sqlx::PgConnection;

use super::{PostgresStorage, StorageError};

impl PostgresStorage {
    /// Runs `work` in one transaction, committed before this returns.
    pub(super) async fn in_transaction<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, sqlx::Error>> + Send,
    {
        let mut transaction = self.pool().begin().await?;
        let value = work(&mut transaction).await?;
        transaction.commit().await?;
        Ok(value)
    }
}

mod portable {
    super::super::accounts_sql::portable_account_store!(
        crate::storage::PostgresStorage,
        sqlx::PgConnection,
        pool,
        in_transaction
    );
}
