//! `GET /v1/applications` (from the SQL index, scoped to the caller's regions and agencies)
//! and `POST /v1/applications/{id}/review` (a supervisor's decision, written by the server).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use jemput_domain::{ApplicationStatus, RegionCode, Role};
use jemput_sync_protocol::DocumentId;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::authenticated::Authenticated;
use super::error::{ApiError, Invalid, parse_json};
use crate::storage::{IndexFilter, IndexRow, Storage};
use crate::sync::{ReviewOutcome, ReviewRequest};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    service: Option<String>,
    /// A region code; must lie within the caller's regions.
    region: Option<String>,
    /// Unix milliseconds: only rows updated before it (paging).
    before: Option<i64>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ApplicationSummary {
    document_id: String,
    url: String,
    region: String,
    status: Option<String>,
    service: Option<String>,
    agency: Option<String>,
    officer: Option<String>,
    tracking_code: Option<String>,
    has_conflict: bool,
    updated_at: i64,
}

impl From<IndexRow> for ApplicationSummary {
    fn from(row: IndexRow) -> Self {
        Self {
            url: format!("automerge:{}", row.document_id),
            document_id: row.document_id.to_string(),
            region: row.region,
            status: row.status,
            service: row.service,
            agency: row.agency,
            officer: row.officer,
            tracking_code: row.tracking_code,
            has_conflict: row.has_conflict,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ApplicationList {
    applications: Vec<ApplicationSummary>,
    /// Pass as `before` to get the next page; absent on the last page.
    next_before: Option<i64>,
}

pub async fn list<S: Storage>(
    State(state): State<Arc<AppState<S>>>,
    Authenticated(identity): Authenticated,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ApplicationList>, ApiError> {
    let Query(query) = query?;
    let status = query
        .status
        .map(|s| ApplicationStatus::parse(&s).map(|s| s.as_str().to_owned()))
        .transpose()
        .map_err(|_| ApiError::Invalid(Invalid::Filter("status")))?;
    let region = query
        .region
        .map(|r| RegionCode::parse(&r))
        .transpose()
        .map_err(|_| ApiError::Invalid(Invalid::Filter("region")))?;
    let region_prefixes = match (identity.role, region) {
        (Role::Admin, Some(region)) => vec![region.as_str().to_owned()],
        (Role::Admin, None) => Vec::new(),
        (_, Some(region)) if identity.covers_region(&region) => {
            vec![region.as_str().to_owned()]
        }
        // Outside one's regions: the same answer as a region with no applications.
        (_, Some(_)) => {
            return Ok(Json(ApplicationList {
                applications: Vec::new(),
                next_before: None,
            }));
        }
        (_, None) => identity
            .regions
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
    };
    if identity.role != Role::Admin && region_prefixes.is_empty() {
        return Ok(Json(ApplicationList {
            applications: Vec::new(),
            next_before: None,
        }));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let filter = IndexFilter {
        kind: Some("application".into()),
        region_prefixes,
        status,
        service: query.service,
        agencies: identity
            .agencies
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
        updated_before: query.before,
        limit,
    };
    let rows = state.hub.storage().list_index(&filter).await?;
    let next_before = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.updated_at))
        .flatten();
    Ok(Json(ApplicationList {
        applications: rows.into_iter().map(ApplicationSummary::from).collect(),
        next_before,
    }))
}

#[derive(Debug, Deserialize)]
struct ReviewBody {
    decision: String,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Serialize)]
pub struct ReviewResponse {
    status: &'static str,
    heads: Vec<String>,
}

pub async fn review<S: Storage>(
    State(state): State<Arc<AppState<S>>>,
    Authenticated(identity): Authenticated,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ReviewResponse>, ApiError> {
    // An unparsable id names no document: the same answer as an unknown one.
    let document = DocumentId::parse(&id).map_err(|_| ApiError::NotFound("application"))?;
    let body: ReviewBody = parse_json(&body)?;
    let decision = ApplicationStatus::parse(&body.decision)
        .map_err(|_| ApiError::Invalid(Invalid::Filter("decision")))?;
    let request = ReviewRequest {
        identity: Arc::new(identity),
        decision,
        note: body.note,
    };
    let ReviewOutcome { status, heads } = state.hub.review(document, request).await?;
    Ok(Json(ReviewResponse {
        status: status.as_str(),
        heads,
    }))
}
