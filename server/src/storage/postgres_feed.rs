//! `FeedStore` for PostgreSQL: feed numbers are drawn under a transaction-level advisory lock
//! (see `advance_feed`), so they become visible in order.

use sqlx::{Postgres, Row, Transaction};

use super::feed::{self, DeviceColumns, ExchangeOutcome, FeedStore};
use super::{DeviceId, PostgresStorage, StorageError, now_millis};

/// Serialises feed numbers across every connection and instance on this database, held to
/// commit: a reader never sees `N + 1` committed before `N`. The key is
/// `0x6a656d707574_0002` ("jemput", 2), used for nothing else.
const LOCK_FEED_HEAD: &str = "SELECT pg_advisory_xact_lock(7666654270442438658)";

/// Draws the next feed number for a change of `document` being stored on `connection`.
pub(super) async fn advance_feed(
    tx: &mut Transaction<'static, Postgres>,
    document: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(LOCK_FEED_HEAD).execute(&mut **tx).await?;
    let seq: i64 = sqlx::query_scalar(feed::NEXT_FEED_SEQ)
        .fetch_one(&mut **tx)
        .await?;
    sqlx::query(feed::SET_FEED_SEQ)
        .bind(seq)
        .bind(document)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl FeedStore for PostgresStorage {
    super::feed::portable_feed_reads!(pool);

    async fn record_exchange(
        &self,
        device: &DeviceId,
        outcome: ExchangeOutcome,
    ) -> Result<(), StorageError> {
        let device = device.as_str();
        let mut tx = self.pool().begin().await?;
        sqlx::query(feed::settlement_sql(outcome.settlement))
            .bind(device)
            .execute(&mut *tx)
            .await?;
        for update in &outcome.knowledge {
            let (sql, document, columns) = feed::knowledge_sql(update);
            let mut query = sqlx::query(sql).bind(device).bind(document);
            if let Some((confirmed, pending)) = columns {
                query = query.bind(confirmed).bind(pending);
            }
            query.execute(&mut *tx).await?;
        }
        let columns = DeviceColumns::from_device(&outcome.device);
        sqlx::query(feed::SAVE_DEVICE)
            .bind(device)
            .bind(columns.exchanges)
            .bind(columns.last_key)
            .bind(columns.last_digest)
            .bind(columns.last_cursor)
            .bind(columns.last_response)
            .bind(columns.regions)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
