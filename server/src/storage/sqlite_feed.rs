//! `FeedStore` for SQLite: writes through the single writer (which also orders feed
//! numbers), reads through the pool.

use jemput_sync_protocol::DocumentId;
use jemput_sync_protocol::batch::DocKnowledge;
use sqlx::{Row, SqliteConnection};

use super::feed::{
    self, BatchDevice, DeviceColumns, ExchangeOutcome, FeedPage, FeedScope, FeedStore,
};
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
    async fn feed_head(&self) -> Result<u64, StorageError> {
        let seq: i64 = sqlx::query_scalar(feed::FEED_HEAD)
            .fetch_one(self.readers())
            .await?;
        Ok(feed::seq_from_db(seq))
    }

    async fn feed_page(
        &self,
        scope: &FeedScope,
        after: Option<u64>,
        head: u64,
        limit: u32,
    ) -> Result<FeedPage, StorageError> {
        let (changed_sql, exits_sql, params) = feed::feed_queries(scope);
        let head_db = i64::try_from(head).unwrap_or(i64::MAX);
        // The SQL text is built only from fixed fragments and numbered placeholders.
        let mut changed = sqlx::query(sqlx::AssertSqlSafe(changed_sql))
            .bind(feed::seq_to_db(after))
            .bind(head_db)
            .bind(i64::from(limit));
        let mut exits = sqlx::query(sqlx::AssertSqlSafe(exits_sql))
            .bind(feed::seq_to_db(after))
            .bind(head_db)
            .bind(i64::from(limit));
        for value in &params {
            changed = changed.bind(value.clone());
            exits = exits.bind(value.clone());
        }
        let changed = changed
            .fetch_all(self.readers())
            .await?
            .iter()
            .map(|row| {
                Ok((
                    feed::parse_document_id(row.try_get("document_id")?)?,
                    feed::seq_from_db(row.try_get("seq")?),
                ))
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        let exits = exits
            .fetch_all(self.readers())
            .await?
            .iter()
            .map(|row| {
                Ok((
                    feed::parse_document_id(row.try_get("document_id")?)?,
                    feed::seq_from_db(row.try_get("seq")?),
                    row.try_get("region")?,
                ))
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(feed::merge_page(changed, exits, limit, head))
    }

    async fn batch_device(&self, device: &DeviceId) -> Result<BatchDevice, StorageError> {
        let row = sqlx::query(feed::LOAD_DEVICE)
            .bind(device.as_str())
            .fetch_optional(self.readers())
            .await?;
        let Some(row) = row else {
            return Ok(BatchDevice::default());
        };
        DeviceColumns {
            exchanges: row.try_get("exchanges")?,
            last_key: row.try_get("last_key")?,
            last_digest: row.try_get("last_digest")?,
            last_cursor: row.try_get("last_cursor")?,
            last_response: row.try_get("last_response")?,
            regions: row.try_get("regions")?,
        }
        .into_device()
    }

    async fn knowledge(
        &self,
        device: &DeviceId,
        document: DocumentId,
    ) -> Result<DocKnowledge, StorageError> {
        let row = sqlx::query(feed::LOAD_KNOWLEDGE)
            .bind(device.as_str())
            .bind(document.to_string())
            .fetch_optional(self.readers())
            .await?;
        match row {
            Some(row) => feed::knowledge_from_columns(
                row.try_get("confirmed")?,
                row.try_get::<Option<String>, _>("pending")?.as_deref(),
            ),
            None => Ok(DocKnowledge::default()),
        }
    }

    async fn known_documents(
        &self,
        device: &DeviceId,
    ) -> Result<Vec<(DocumentId, Option<String>)>, StorageError> {
        let rows = sqlx::query(feed::KNOWN_DOCUMENTS)
            .bind(device.as_str())
            .fetch_all(self.readers())
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    feed::parse_document_id(row.try_get("document_id")?)?,
                    row.try_get("region")?,
                ))
            })
            .collect()
    }

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
