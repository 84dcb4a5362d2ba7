//! `IndexStore` for SQLite: writes through the single writer, reads through the pool.

use jemput_sync_protocol::DocumentId;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::index::{
    FilterQuery, IndexFilter, IndexRow, IndexStore, SELECT_INDEX, UPSERT_INDEX, filter_query,
    heads_from_column, heads_to_column,
};
use super::{ChunkId, ChunkKind, SqliteStorage, StorageError, conflict_or, now_millis, sqlite};

impl IndexStore for SqliteStorage {
    async fn append_indexed(
        &self,
        document: DocumentId,
        data: Vec<u8>,
        row: IndexRow,
    ) -> Result<ChunkId, StorageError> {
        let result = self
            .write_with(move |connection| {
                Box::pin(async move {
                    let now = now_millis();
                    let id = sqlite::insert_chunk(
                        connection,
                        document,
                        ChunkKind::Incremental,
                        &data,
                        now,
                    )
                    .await?;
                    sqlx::query(super::feed::RECORD_SCOPE_EXIT)
                        .bind(row.document_id.to_string())
                        .bind(&row.region)
                        .execute(&mut *connection)
                        .await?;
                    sqlx::query(UPSERT_INDEX)
                        .bind(row.document_id.to_string())
                        .bind(&row.kind)
                        .bind(&row.schema)
                        .bind(&row.region)
                        .bind(&row.status)
                        .bind(&row.service)
                        .bind(&row.agency)
                        .bind(&row.officer)
                        .bind(&row.tracking_code)
                        .bind(row.has_conflict)
                        .bind(heads_to_column(&row.heads))
                        .bind(row.updated_at)
                        .execute(&mut *connection)
                        .await?;
                    Ok(id)
                })
            })
            .await;
        match result {
            Err(StorageError::Database(error)) => Err(conflict_or(error, "tracking code in use")),
            other => other,
        }
    }

    async fn index_row(&self, document: DocumentId) -> Result<Option<IndexRow>, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_INDEX} WHERE document_id = $1"
        )))
        .bind(document.to_string())
        .fetch_optional(self.readers())
        .await?;
        row.map(|row| decode(&row)).transpose()
    }

    async fn document_for_tracking_code(
        &self,
        tracking_code: &str,
    ) -> Result<Option<DocumentId>, StorageError> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT document_id FROM document_index WHERE tracking_code = $1")
                .bind(tracking_code)
                .fetch_optional(self.readers())
                .await?;
        id.map(|id| parse_document_id(&id)).transpose()
    }

    async fn list_index(&self, filter: &IndexFilter) -> Result<Vec<IndexRow>, StorageError> {
        let FilterQuery {
            sql,
            strings,
            updated_before,
            limit,
        } = filter_query(filter);
        // The SQL text is built only from fixed fragments and numbered placeholders.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in strings {
            query = query.bind(value);
        }
        if let Some(before) = updated_before {
            query = query.bind(before);
        }
        let rows = query.bind(limit).fetch_all(self.readers()).await?;
        rows.iter().map(decode).collect()
    }
}

fn parse_document_id(id: &str) -> Result<DocumentId, StorageError> {
    DocumentId::parse(id).map_err(|e| StorageError::Corrupt(format!("document id {id:?}: {e}")))
}

fn decode(row: &SqliteRow) -> Result<IndexRow, StorageError> {
    Ok(IndexRow {
        document_id: parse_document_id(row.try_get("document_id")?)?,
        kind: row.try_get("kind")?,
        schema: row.try_get("schema")?,
        region: row.try_get("region")?,
        status: row.try_get("status")?,
        service: row.try_get("service")?,
        agency: row.try_get("agency")?,
        officer: row.try_get("officer")?,
        tracking_code: row.try_get("tracking_code")?,
        has_conflict: row.try_get("has_conflict")?,
        heads: heads_from_column(row.try_get("heads")?),
        updated_at: row.try_get("updated_at")?,
    })
}
