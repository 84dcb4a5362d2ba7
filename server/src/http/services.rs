//! `GET /v1/services`: the service catalogue, exactly as shipped, with an `ETag` so devices on
//! 2G revalidate with `If-None-Match` and get an empty `304` when nothing changed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jemput_domain::catalogue;

use super::api::ApiState;
use super::authenticated::Authenticated;
use super::error::ApiError;
use crate::auth::{Action, permits};
use crate::storage::Storage;

pub async fn serve_catalogue<S: Storage>(
    State(_state): State<Arc<ApiState<S>>>,
    Authenticated(identity): Authenticated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    permits(&identity, Action::ReadServices)?;
    let catalogue = catalogue();
    let etag = HeaderValue::from_str(catalogue.etag()).map_err(ApiError::internal)?;
    // Private: the response needs a token, so shared caches must not keep it.
    let cache = HeaderValue::from_static("private, no-cache");
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok());
    if if_none_match.is_some_and(|tags| etag_matches(tags, catalogue.etag())) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        catalogue.json(),
    )
        .into_response())
}

/// `If-None-Match` semantics (RFC 9110 §13.1.2): `*`, or a list of tags compared weakly.
fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| {
        tag == "*"
            || tag.strip_prefix("W/").unwrap_or(tag) == etag.strip_prefix("W/").unwrap_or(etag)
    })
}

#[cfg(test)]
mod tests {
    use super::etag_matches;

    #[test]
    fn if_none_match() {
        let etag = "\"sha256-abc\"";
        assert!(etag_matches("\"sha256-abc\"", etag));
        assert!(etag_matches("\"x\", W/\"sha256-abc\"", etag));
        assert!(etag_matches("*", etag));
        assert!(!etag_matches("\"sha256-abd\"", etag));
        assert!(!etag_matches("sha256-abc", etag));
    }
}
