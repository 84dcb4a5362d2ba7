//! `POST /v1/sync`: batch sync for field devices (`docs/BATCH-SYNC.md`). The handler only
//! moves bytes; `sync::batch` drives the exchange and `error.rs` maps its errors.
//!
//! Content coding (section 1 of the spec): request bodies in gzip or zstd are decoded before
//! the handler sees them (another coding: 415); responses above 256 bytes are compressed with
//! a coding the device accepts; every response says which codings the server decodes.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderValue;
use axum::http::header::{ACCEPT_ENCODING, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::SizeAbove;
use tower_http::decompression::RequestDecompressionLayer;

use super::authenticated::{AuthState, Authenticated};
use super::error::ApiError;
use crate::storage::Storage;
use crate::sync::{BatchConfig, BatchSync, Hub};

/// The content codings the server decodes in request bodies, as advertised.
const ACCEPTED_ENCODINGS: &str = "zstd, gzip";
/// Bodies this small are sent as they are: compressing would make them larger.
const COMPRESS_ABOVE: u64 = 256;

impl<S: Storage> AuthState for Arc<BatchSync<S>> {
    type Accounts = S;
    fn accounts(&self) -> &S {
        self.storage()
    }
}

/// The batch sync route with its state.
pub fn routes<S: Storage>(hub: Arc<Hub<S>>, config: BatchConfig) -> Router {
    let state = Arc::new(BatchSync::new(hub, config));
    Router::new()
        .route("/v1/sync", post(sync::<S>))
        // Applies to the decoded body, so a small compressed bomb is refused too.
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
        .layer(
            RequestDecompressionLayer::new()
                .gzip(true)
                .zstd(true)
                .no_br()
                .no_deflate(),
        )
        .layer(
            CompressionLayer::new()
                .zstd(true)
                .gzip(true)
                .no_br()
                .no_deflate()
                .compress_when(SizeAbove::new(COMPRESS_ABOVE)),
        )
        .layer(axum::middleware::map_response(advertise_encodings))
        .with_state(state)
}

async fn sync<S: Storage>(
    State(state): State<Arc<BatchSync<S>>>,
    Authenticated(identity): Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    let response = state.exchange(&identity, &body).await?;
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/cbor"))],
        response,
    )
        .into_response())
}

/// RFC 7694 §3: every response lists the codings accepted for request bodies.
async fn advertise_encodings(mut response: Response) -> Response {
    response.headers_mut().insert(
        ACCEPT_ENCODING,
        HeaderValue::from_static(ACCEPTED_ENCODINGS),
    );
    response
}
