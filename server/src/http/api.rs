//! The JSON API of accounts, devices, the audit log and the service catalogue: its shared
//! state and its routes, merged into the server's router in `http/mod.rs`.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::OnceCell;
use tower_http::compression::CompressionLayer;

use super::authenticated::AuthState;
use super::{audit, auth, devices, services};
use crate::audit::{CitizenKeySecret, citizen_key_secret};
use crate::auth::{LoginThrottle, ThrottleConfig};
use crate::storage::{Storage, StorageError};

/// What these handlers share.
pub struct ApiState<S> {
    pub storage: Arc<S>,
    /// Failed logins, in this process only (see `auth::throttle`).
    pub throttle: LoginThrottle,
    citizen_secret: OnceCell<CitizenKeySecret>,
}

impl<S: Storage> ApiState<S> {
    pub fn new(storage: Arc<S>, throttle: ThrottleConfig) -> Self {
        Self {
            storage,
            throttle: LoginThrottle::new(throttle),
            citizen_secret: OnceCell::new(),
        }
    }

    /// The citizen-key secret, read (or made) once per process.
    pub async fn citizen_secret(&self) -> Result<&CitizenKeySecret, StorageError> {
        self.citizen_secret
            .get_or_try_init(|| citizen_key_secret(&*self.storage))
            .await
    }
}

impl<S: Storage> AuthState for Arc<ApiState<S>> {
    type Accounts = S;
    fn accounts(&self) -> &S {
        &self.storage
    }
}

/// Every route of this API, with its state.
pub fn routes<S: Storage>(storage: Arc<S>) -> Router {
    let state = Arc::new(ApiState::new(storage, ThrottleConfig::default()));
    Router::new()
        .route("/v1/auth/login", post(auth::login::<S>))
        .route("/v1/auth/logout", post(auth::logout::<S>))
        .route("/v1/auth/me", get(auth::me::<S>))
        .route(
            "/v1/devices",
            post(devices::enrol::<S>).get(devices::list::<S>),
        )
        .route("/v1/devices/{id}/revoke", post(devices::revoke::<S>))
        .route("/v1/audit", get(audit::list::<S>))
        .route(
            "/v1/audit/citizen",
            get(audit::citizen_by_header::<S>).post(audit::citizen_by_body::<S>),
        )
        .route("/v1/services", get(services::serve_catalogue::<S>))
        // The catalogue is ~50 kB of JSON; on 2G gzip makes it ~8 kB.
        .layer(CompressionLayer::new())
        .with_state(state)
}
