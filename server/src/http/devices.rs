//! `POST /v1/devices` (enrol), `GET /v1/devices`, `POST /v1/devices/{id}/revoke`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use jemput_domain::Role;
use serde::{Deserialize, Serialize};

use super::api::ApiState;
use super::auth::UserView;
use super::authenticated::{Authenticated, ClientAddress};
use super::error::{ApiError, Invalid, parse_json};
use crate::auth::devices::{self, DeviceError};
use crate::auth::policy::supervises;
use crate::auth::{self, Action, permits};
use crate::storage::{DeviceId, DeviceRecord, Storage, UnixMillis, UserAccount, Username};

impl From<DeviceError> for ApiError {
    fn from(error: DeviceError) -> Self {
        match error {
            DeviceError::NotFound => ApiError::NotFound("device"),
            DeviceError::LabelTooLong => ApiError::Invalid(Invalid::Label),
            DeviceError::Denied(denied) => ApiError::Forbidden(denied),
            DeviceError::Storage(e) => ApiError::from(e),
            DeviceError::Random(e) => ApiError::internal(e),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct EnrolRequest {
    /// A name the officer recognises, e.g. "HP Samsung dinas".
    label: Option<String>,
}

#[derive(Serialize)]
pub struct EnrolResponse {
    device_id: String,
    /// Shown once; the server keeps only its hash.
    device_token: String,
    /// Automerge actor ids (hex) bound to this device, for the SDK to write with.
    actor_ids: Vec<String>,
    user: UserView,
}

pub async fn enrol<S: Storage>(
    State(state): State<Arc<ApiState<S>>>,
    ClientAddress(address): ClientAddress,
    Authenticated(identity): Authenticated,
    body: Bytes,
) -> Result<(StatusCode, Json<EnrolResponse>), ApiError> {
    let body: EnrolRequest = if body.is_empty() {
        EnrolRequest::default()
    } else {
        parse_json(&body)?
    };
    let enrolment = devices::enrol(
        &*state.storage,
        &identity,
        body.label,
        address,
        auth::now_millis(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(EnrolResponse {
            device_id: enrolment.device.id.to_string(),
            device_token: enrolment.token.expose().to_owned(),
            actor_ids: enrolment.actors.iter().map(|a| a.to_hex_string()).collect(),
            user: UserView::from(&identity),
        }),
    ))
}

#[derive(Serialize)]
pub struct DeviceView {
    device_id: String,
    owner: String,
    label: String,
    enrolled_at: UnixMillis,
    revoked_at: Option<UnixMillis>,
}

impl From<DeviceRecord> for DeviceView {
    fn from(device: DeviceRecord) -> Self {
        Self {
            device_id: device.id.to_string(),
            owner: device.owner_username.to_string(),
            label: device.label,
            enrolled_at: device.enrolled_at,
            revoked_at: device.revoked_at,
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    /// Devices of this user only.
    user: Option<String>,
}

#[derive(Serialize)]
pub struct DeviceList {
    devices: Vec<DeviceView>,
}

/// An officer's own devices; a supervisor's officers' devices; every device for an admin.
pub async fn list<S: Storage>(
    State(state): State<Arc<ApiState<S>>>,
    Authenticated(identity): Authenticated,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<DeviceList>, ApiError> {
    let Query(query) = query?;
    let store = &*state.storage;
    let owners: Vec<UserAccount> = match query.user {
        Some(name) => {
            let name = Username::parse(&name).map_err(|_| Invalid::Username)?;
            let owner = store.user(&name).await?.ok_or(ApiError::NotFound("user"))?;
            permits(&identity, Action::ListDevices { owner: &owner })?;
            vec![owner]
        }
        None => match identity.role {
            Role::Admin => Vec::new(),
            Role::Supervisor => store
                .list_users()
                .await?
                .into_iter()
                .filter(|user| supervises(&identity, user))
                .collect(),
            Role::Officer => store
                .user_by_id(identity.user_id)
                .await?
                .into_iter()
                .collect(),
        },
    };
    let mut devices = Vec::new();
    if owners.is_empty() && identity.role == Role::Admin {
        devices = store.list_devices(None).await?;
    }
    for owner in owners {
        devices.extend(store.list_devices(Some(owner.id)).await?);
    }
    Ok(Json(DeviceList {
        devices: devices.into_iter().map(DeviceView::from).collect(),
    }))
}

pub async fn revoke<S: Storage>(
    State(state): State<Arc<ApiState<S>>>,
    ClientAddress(address): ClientAddress,
    Authenticated(identity): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let id = DeviceId::parse(&id).map_err(|_| Invalid::DeviceId)?;
    let device =
        devices::revoke_as(&*state.storage, &identity, &id, address, auth::now_millis()).await?;
    Ok(Json(DeviceView::from(device)))
}
