//! `GET /v1/audit` (the log, filtered and paginated) and `/v1/audit/citizen` (one citizen's
//! trail, UU PDP Art. 32). Administrators only.
//!
//! The citizen's NIK travels in a header (`GET`, `Jemput-NIK`) or a JSON body (`POST`), never in
//! the URL, which proxies and access logs keep. It is turned into its keyed digest at once.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use jemput_domain::{Nik, jakarta_today};
use serde::{Deserialize, Serialize};

use super::api::ApiState;
use super::authenticated::{Authenticated, ClientAddress};
use super::error::{ApiError, Invalid, parse_json};
use crate::audit::{AuditAction, AuditActor, CitizenKey, NewAuditEntry};
use crate::auth::{self, Action, permits};
use crate::storage::{AuditEntry, AuditFilter, Identity, Storage, UnixMillis};

/// The header that carries a NIK for `GET /v1/audit/citizen`.
pub const NIK_HEADER: &str = "jemput-nik";
const DEFAULT_PAGE: u32 = 100;

#[derive(Deserialize)]
pub struct ListQuery {
    /// Unix milliseconds: entries at or after.
    since: Option<UnixMillis>,
    /// An action name, e.g. `login.failed`.
    action: Option<String>,
    /// Entries by this username (or `@server`, `@cli`).
    user: Option<String>,
    /// Cursor: entries before this number (`next_before` of the previous page).
    before: Option<i64>,
    limit: Option<u32>,
}

#[derive(Serialize)]
pub struct EntryView {
    seq: i64,
    at: UnixMillis,
    action: String,
    user_id: Option<i64>,
    username: Option<String>,
    device_id: Option<String>,
    client_address: Option<String>,
    subject: Option<String>,
    /// Hex HMAC of the citizen's NIK (never the NIK).
    citizen_key: Option<String>,
    detail: Option<String>,
    prev_hash: String,
    entry_hash: String,
}

impl From<AuditEntry> for EntryView {
    fn from(entry: AuditEntry) -> Self {
        Self {
            seq: entry.seq,
            at: entry.at,
            action: entry.action,
            user_id: entry.actor_user_id,
            username: entry.actor_username,
            device_id: entry.device_id,
            client_address: entry.client_address,
            subject: entry.subject,
            citizen_key: entry.citizen_key.map(hex::encode),
            detail: entry.detail,
            prev_hash: hex::encode(entry.prev_hash),
            entry_hash: hex::encode(entry.entry_hash),
        }
    }
}

#[derive(Serialize)]
pub struct EntryPage {
    entries: Vec<EntryView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<i64>,
}

fn page(entries: Vec<AuditEntry>, limit: u32) -> EntryPage {
    let full = entries.len() >= limit as usize;
    let next_before = entries.last().filter(|_| full).map(|e| e.seq);
    EntryPage {
        entries: entries.into_iter().map(EntryView::from).collect(),
        next_before,
    }
}

pub async fn list<S: Storage>(
    State(state): State<Arc<ApiState<S>>>,
    Authenticated(identity): Authenticated,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<EntryPage>, ApiError> {
    permits(&identity, Action::ReadAuditLog)?;
    let Query(query) = query?;
    let action = match query.action {
        Some(name) => Some(AuditAction::parse(&name).ok_or(Invalid::AuditAction)?),
        None => None,
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, 500);
    let entries = state
        .storage
        .audit_entries(&AuditFilter {
            since: query.since,
            action,
            username: query.user,
            citizen: None,
            before_seq: query.before,
            limit,
        })
        .await?;
    Ok(Json(page(entries, limit)))
}

#[derive(Deserialize)]
pub struct CitizenQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
pub struct CitizenRequest {
    nik: String,
    before: Option<i64>,
    limit: Option<u32>,
}

pub async fn citizen_by_header<S: Storage>(
    State(state): State<Arc<ApiState<S>>>,
    ClientAddress(address): ClientAddress,
    Authenticated(identity): Authenticated,
    headers: HeaderMap,
    query: Result<Query<CitizenQuery>, QueryRejection>,
) -> Result<Json<EntryPage>, ApiError> {
    permits(&identity, Action::ReadCitizenTrail)?;
    let Query(query) = query?;
    let nik = headers
        .get(NIK_HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or(Invalid::Nik)?;
    let request = CitizenRequest {
        nik: nik.trim().to_owned(),
        before: query.before,
        limit: query.limit,
    };
    citizen_trail(&state, &identity, address, request).await
}

pub async fn citizen_by_body<S: Storage>(
    State(state): State<Arc<ApiState<S>>>,
    ClientAddress(address): ClientAddress,
    Authenticated(identity): Authenticated,
    body: Bytes,
) -> Result<Json<EntryPage>, ApiError> {
    permits(&identity, Action::ReadCitizenTrail)?;
    let request: CitizenRequest = parse_json(&body)?;
    citizen_trail(&state, &identity, address, request).await
}

/// Records that `identity` looked, then returns the trail (including that record).
async fn citizen_trail<S: Storage>(
    state: &ApiState<S>,
    identity: &Identity,
    address: Option<std::net::IpAddr>,
    request: CitizenRequest,
) -> Result<Json<EntryPage>, ApiError> {
    let now = auth::now_millis();
    let nik = Nik::parse(&request.nik, jakarta_today(now / 1000)).map_err(|_| Invalid::Nik)?;
    let citizen = CitizenKey::for_nik(&nik, state.citizen_secret().await?);
    state
        .storage
        .append(NewAuditEntry {
            client_address: address.map(|a| a.to_string()),
            citizen: Some(citizen),
            ..NewAuditEntry::new(now, AuditAction::CitizenTrailRead, AuditActor::of(identity))
        })
        .await?;
    let limit = request.limit.unwrap_or(DEFAULT_PAGE).clamp(1, 500);
    let entries = state
        .storage
        .audit_entries(&AuditFilter {
            citizen: Some(citizen),
            before_seq: request.before,
            limit,
            ..AuditFilter::default()
        })
        .await?;
    Ok(Json(page(entries, limit)))
}
