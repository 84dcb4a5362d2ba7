//! The document index: one SQL row per application or visit, recomputed from the merged
//! document whenever a change is accepted. Scope checks, listings and pages read it, never
//! the CRDT.

use std::future::Future;

use jemput_sync_protocol::DocumentId;

use super::{ChunkId, StorageError};

/// What the index knows of one document. Values were parsed from the document before they
/// were written here, so reading them back needs no further validation than the column types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    pub document_id: DocumentId,
    /// `application` or `visit`.
    pub kind: String,
    /// e.g. `jemput/application@1`.
    pub schema: String,
    /// The most specific Kemendagri code of the document (village, else district).
    pub region: String,
    pub status: Option<String>,
    pub service: Option<String>,
    pub agency: Option<String>,
    pub officer: Option<String>,
    pub tracking_code: Option<String>,
    /// Concurrent edits of the same field were merged; a supervisor should look.
    pub has_conflict: bool,
    /// Change hashes (hex) of the merged document.
    pub heads: Vec<String>,
    pub updated_at: i64,
}

/// Filters of `GET /v1/applications`; `None` means any. Region filters match a code prefix
/// (a supervisor's regency matches every village in it).
#[derive(Debug, Clone, Default)]
pub struct IndexFilter {
    pub kind: Option<String>,
    pub region_prefixes: Vec<String>,
    pub status: Option<String>,
    pub service: Option<String>,
    pub agencies: Vec<String>,
    pub updated_before: Option<i64>,
    pub limit: u32,
}

pub trait IndexStore: Send + Sync {
    /// Appends an incremental chunk and replaces the document's index row, atomically.
    /// Fails with `StorageError::Conflict` if the tracking code belongs to another document.
    fn append_indexed(
        &self,
        document: DocumentId,
        data: Vec<u8>,
        row: IndexRow,
    ) -> impl Future<Output = Result<ChunkId, StorageError>> + Send;

    fn index_row(
        &self,
        document: DocumentId,
    ) -> impl Future<Output = Result<Option<IndexRow>, StorageError>> + Send;

    /// The document that holds `tracking_code`, if any.
    fn document_for_tracking_code(
        &self,
        tracking_code: &str,
    ) -> impl Future<Output = Result<Option<DocumentId>, StorageError>> + Send;

    /// Rows matching `filter`, most recently updated first.
    fn list_index(
        &self,
        filter: &IndexFilter,
    ) -> impl Future<Output = Result<Vec<IndexRow>, StorageError>> + Send;
}

pub(super) const UPSERT_INDEX: &str = "INSERT INTO document_index \
    (document_id, kind, schema, region, status, service, agency, officer, tracking_code, \
     has_conflict, heads, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
    ON CONFLICT (document_id) DO UPDATE SET kind = excluded.kind, schema = excluded.schema, \
    region = excluded.region, status = excluded.status, service = excluded.service, \
    agency = excluded.agency, officer = excluded.officer, tracking_code = excluded.tracking_code, \
    has_conflict = excluded.has_conflict, heads = excluded.heads, updated_at = excluded.updated_at";

pub(super) const SELECT_INDEX: &str = "SELECT document_id, kind, schema, region, status, service, \
    agency, officer, tracking_code, has_conflict, heads, updated_at FROM document_index";

pub(super) fn heads_to_column(heads: &[String]) -> String {
    heads.join(",")
}

pub(super) fn heads_from_column(column: &str) -> Vec<String> {
    column
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A complete `SELECT` for `filter` and its parameters: bind `strings` in order, then
/// `updated_before` if present, then the limit.
pub(super) struct FilterQuery {
    pub sql: String,
    pub strings: Vec<String>,
    pub updated_before: Option<i64>,
    pub limit: i64,
}

pub(super) fn filter_query(filter: &IndexFilter) -> FilterQuery {
    let (mut sql, strings) = filter_sql(filter);
    let mut next = strings.len() + 1;
    if filter.updated_before.is_some() {
        sql.push_str(if sql.is_empty() { " WHERE " } else { " AND " });
        sql.push_str(&format!("updated_at < ${next}"));
        next += 1;
    }
    FilterQuery {
        sql: format!("{SELECT_INDEX}{sql} ORDER BY updated_at DESC, document_id LIMIT ${next}"),
        strings,
        updated_before: filter.updated_before,
        limit: i64::from(filter.limit.clamp(1, 500)),
    }
}

/// The WHERE clause of `filter` with numbered placeholders, and their values in order.
fn filter_sql(filter: &IndexFilter) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    let next = |params: &mut Vec<String>, value: String| {
        params.push(value);
        format!("${}", params.len())
    };
    if let Some(kind) = &filter.kind {
        let p = next(&mut params, kind.clone());
        clauses.push(format!("kind = {p}"));
    }
    if let Some(status) = &filter.status {
        let p = next(&mut params, status.clone());
        clauses.push(format!("status = {p}"));
    }
    if let Some(service) = &filter.service {
        let p = next(&mut params, service.clone());
        clauses.push(format!("service = {p}"));
    }
    if !filter.region_prefixes.is_empty() {
        let mut any = Vec::new();
        for prefix in &filter.region_prefixes {
            let exact = next(&mut params, prefix.clone());
            let below = next(&mut params, format!("{prefix}.%"));
            any.push(format!("region = {exact} OR region LIKE {below}"));
        }
        clauses.push(format!("({})", any.join(" OR ")));
    }
    if !filter.agencies.is_empty() {
        let mut any = Vec::new();
        for agency in &filter.agencies {
            let p = next(&mut params, agency.clone());
            any.push(format!("agency = {p}"));
        }
        clauses.push(format!("({})", any.join(" OR ")));
    }
    let mut sql = String::new();
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_numbered_placeholders_only() {
        let filter = IndexFilter {
            kind: Some("application".into()),
            region_prefixes: vec!["34.71".into()],
            status: Some("submitted'; DROP TABLE x; --".into()),
            ..IndexFilter::default()
        };
        let (sql, params) = filter_sql(&filter);
        assert_eq!(
            sql,
            " WHERE kind = $1 AND status = $2 AND (region = $3 OR region LIKE $4)"
        );
        assert_eq!(params[1], "submitted'; DROP TABLE x; --");
        assert_eq!(params[3], "34.71.%");
        let query = filter_query(&IndexFilter {
            updated_before: Some(5),
            limit: 10,
            ..filter
        });
        assert!(
            query
                .sql
                .ends_with("AND updated_at < $5 ORDER BY updated_at DESC, document_id LIMIT $6")
        );
    }

    #[test]
    fn heads_round_trip_through_the_column() {
        let heads = vec!["ab".to_owned(), "cd".to_owned()];
        assert_eq!(heads_from_column(&heads_to_column(&heads)), heads);
        assert!(heads_from_column("").is_empty());
    }
}
