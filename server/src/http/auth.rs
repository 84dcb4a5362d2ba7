//! `POST /v1/auth/login`, `POST /v1/auth/logout`, `GET /v1/auth/me`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::api::ApiState;
use super::authenticated::{Authenticated, ClientAddress};
use super::error::{ApiError, Invalid, parse_json};
use crate::auth::login::{self, LoginAttempt, LoginError};
use crate::auth::{self, Action, Password, permits};
use crate::storage::{Credential, Identity, Storage, UnixMillis, UserAccount};

#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// The account as its owner and the API see it.
#[derive(Serialize)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub role: &'static str,
    pub regions: Vec<&'static str>,
    /// Empty: every agency.
    pub agencies: Vec<String>,
}

impl From<&UserAccount> for UserView {
    fn from(account: &UserAccount) -> Self {
        Self {
            id: account.id.0,
            username: account.username.to_string(),
            role: account.role.as_str(),
            regions: account.regions.iter().map(|r| r.as_str()).collect(),
            agencies: account.agencies.iter().map(|a| a.to_string()).collect(),
        }
    }
}

impl From<&Identity> for UserView {
    fn from(identity: &Identity) -> Self {
        Self {
            id: identity.user_id.0,
            username: identity.username.to_string(),
            role: identity.role.as_str(),
            regions: identity.regions.iter().map(|r| r.as_str()).collect(),
            agencies: identity.agencies.iter().map(|a| a.to_string()).collect(),
        }
    }
}

#[derive(Serialize)]
pub struct LoginResponse {
    token: String,
    token_type: &'static str,
    /// Unix milliseconds.
    expires_at: UnixMillis,
    user: UserView,
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::Throttled(retry) => ApiError::Throttled(retry),
            LoginError::InvalidCredentials => ApiError::InvalidCredentials,
            LoginError::Disabled => ApiError::AccountDisabled,
            LoginError::Storage(e) => ApiError::from(e),
            LoginError::Password(e) => ApiError::from(e),
            LoginError::Random(e) => ApiError::internal(e),
        }
    }
}

pub async fn login<S: Storage>(
    State(state): State<Arc<ApiState<S>>>,
    ClientAddress(address): ClientAddress,
    body: Bytes,
) -> Result<Json<LoginResponse>, ApiError> {
    let body: LoginRequest = parse_json(&body)?;
    let password = Password::presented(body.password).map_err(|_| Invalid::Password)?;
    let attempt = LoginAttempt {
        username: body.username,
        password,
        client_address: address,
    };
    let outcome = login::log_in(
        &*state.storage,
        &state.throttle,
        attempt,
        auth::now_millis(),
    )
    .await;
    let label = match &outcome {
        Ok(_) => "succeeded",
        Err(LoginError::Throttled(_)) => "throttled",
        Err(_) => "failed",
    };
    metrics::counter!(crate::metrics::LOGINS, "outcome" => label).increment(1);
    let success = outcome?;
    Ok(Json(LoginResponse {
        token: success.token.expose().to_owned(),
        token_type: "Bearer",
        expires_at: success.expires_at,
        user: UserView::from(&success.account),
    }))
}

pub async fn logout<S: Storage>(
    State(state): State<Arc<ApiState<S>>>,
    ClientAddress(address): ClientAddress,
    Authenticated(identity): Authenticated,
) -> Result<StatusCode, ApiError> {
    permits(&identity, Action::Logout)?;
    login::log_out(&*state.storage, &identity, address, auth::now_millis()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub struct MeResponse {
    user: UserView,
    /// `session` or `device`.
    credential: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<UnixMillis>,
}

pub async fn me<S: Storage>(
    State(_state): State<Arc<ApiState<S>>>,
    Authenticated(identity): Authenticated,
) -> Result<Json<MeResponse>, ApiError> {
    permits(&identity, Action::ReadOwnAccount)?;
    Ok(Json(MeResponse {
        user: UserView::from(&identity),
        credential: match identity.credential {
            Credential::Session(_) => "session",
            Credential::Device(_) => "device",
        },
        device_id: identity.device().map(|d| d.to_string()),
        expires_at: identity.expires_at,
    }))
}
