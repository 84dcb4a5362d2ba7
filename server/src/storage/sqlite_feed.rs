//! `FeedStore` for SQLite: writes through the single writer (which also orders feed
//! numbers), reads through the pool.

use sqlx::{Row, SqliteConnection};

use super::feed::{self, DeviceColumns, ExchangeOutcome, FeedStore};
use super::{DeviceId, SqliteStorage, StorageError, now_millis};

/// Draws the next feed number for a change of `document` being stored on `connection`.
pub(super) async fn advance_feed(
    connection: &mut SqliteConnection,
    document: &str,
) -> Result<(), sqlx::Error> {
    let seq: i64 = sqlx::query_scalar(feed::NEXT_FEED_SEQ)
        .fetch_one(&mut *connection)
        .await?;
    sqlx::query(feed::SET_FEED_SEQ)
        .bind(seq)
        .bind(document)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

impl FeedStore for SqliteStorage {
    super::feed::portable_feed_reads!(readers);

    async fn record_exchange(
        &self,
        device: &DeviceId,
        outcome: ExchangeOutcome,
    ) -> Result<(), StorageError> {
        let device = device.as_str().to_owned();
        self.write_with(move |connection| {
            Box::pin(async move {
                sqlx::query(feed::settlement_sql(outcome.settlement))
                    .bind(&device)
                    .execute(&mut *connection)
                    .await?;
                for update in &outcome.knowledge {
                    let (sql, document, columns) = feed::knowledge_sql(update);
                    let mut query = sqlx::query(sql).bind(&device).bind(document);
                    if let Some((confirmed, pending)) = columns {
                        query = query.bind(confirmed).bind(pending);
                    }
                    query.execute(&mut *connection).await?;
                }
                let columns = DeviceColumns::from_device(&outcome.device);
                sqlx::query(feed::SAVE_DEVICE)
                    .bind(&device)
                    .bind(columns.exchanges)
                    .bind(columns.last_key)
                    .bind(columns.last_digest)
                    .bind(columns.last_cursor)
                    .bind(columns.last_response)
                    .bind(columns.regions)
                    .bind(now_millis())
                    .execute(&mut *connection)
                    .await?;
                Ok(())
            })
        })
        .await
    }
}
