//! HTTP routes: the WebSocket upgrade, health, readiness and metrics; the JSON API lives in
//! the submodules, one per area, and errors map to HTTP in `error.rs`, nowhere else.

pub mod api;
pub mod applications;
pub mod audit;
pub mod auth;
pub mod authenticated;
pub mod devices;
pub mod error;
pub mod services;
pub mod sync;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

use crate::config::ConnectionLimits;
use crate::storage::Storage;
use crate::sync::Hub;
use crate::ws::{UpgradeIdentity, serve_connection};
use authenticated::Authenticated;

/// Shared by every handler.
pub struct AppState<S> {
    pub hub: Arc<Hub<S>>,
    pub limits: ConnectionLimits,
    /// Limits of `POST /v1/sync`.
    pub batch: crate::sync::BatchConfig,
    pub metrics: PrometheusHandle,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// WebSocket connections, so shutdown can wait for them.
    pub connections: TaskTracker,
    pub ready: AtomicBool,
}

pub fn router<S: Storage>(state: Arc<AppState<S>>) -> Router {
    let api = api::routes(Arc::clone(state.hub.storage()));
    let batch = sync::routes(Arc::clone(&state.hub), state.batch);
    Router::new()
        .route("/v1/ws", get(websocket::<S>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/v1/applications", get(applications::list::<S>))
        .route(
            "/v1/applications/{id}/review",
            axum::routing::post(applications::review::<S>),
        )
        .with_state(state)
        .merge(api)
        .merge(batch)
        .layer(
            // Spans carry the path only: query strings will carry tokens.
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
            }),
        )
}

async fn websocket<S: Storage>(
    State(state): State<Arc<AppState<S>>>,
    Authenticated(identity): Authenticated,
    upgrade: WebSocketUpgrade,
) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is shutting down").into_response();
    }
    let limits = state.limits.clone();
    upgrade
        .max_frame_size(limits.max_frame_bytes)
        .max_message_size(limits.max_message_bytes)
        .on_failed_upgrade(|error| tracing::info!(%error, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            let hub = Arc::clone(&state.hub);
            let shutdown = state.shutdown.clone();
            let connection =
                serve_connection(socket, hub, limits, UpgradeIdentity { identity }, shutdown);
            state.connections.track_future(connection)
        })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz<S: Storage>(State(state): State<Arc<AppState<S>>>) -> Response {
    if !state.ready.load(Ordering::Relaxed) || state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response();
    }
    match state.hub.storage().ping().await {
        Ok(()) => "ready".into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check: storage unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable").into_response()
        }
    }
}

async fn metrics<S: Storage>(State(state): State<Arc<AppState<S>>>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
