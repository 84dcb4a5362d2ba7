//! The `Authenticated` extractor: every API handler that takes it gets the caller's
//! [`Identity`], resolved from the token on this very request (so revocation, logout, expiry
//! and disabled accounts take effect at once), or the request is refused with 401.
//!
//! The token comes from `Authorization: Bearer <token>` or, for browsers' WebSocket which
//! cannot set headers, from `?token=`. Request spans never record the query string.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};

use super::AppState;
use super::error::ApiError;
use crate::auth::{self, AuthError};
use crate::storage::{AccountStore, Identity, Storage};

/// Application state that can resolve tokens.
pub trait AuthState: Send + Sync {
    type Accounts: AccountStore;
    fn accounts(&self) -> &Self::Accounts;
}

impl<S: Storage> AuthState for Arc<AppState<S>> {
    type Accounts = S;
    fn accounts(&self) -> &S {
        self.hub.storage()
    }
}

/// The caller, authenticated on this request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Identity);

impl<T: AuthState> FromRequestParts<T> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &T) -> Result<Self, ApiError> {
        let token = presented_token(&parts.headers, &parts.uri)?;
        let identity = auth::identity_for_token(state.accounts(), &token, auth::now_millis())
            .await
            .map_err(|error| {
                if !matches!(error, AuthError::Storage(_)) {
                    metrics::counter!(crate::metrics::AUTH_REFUSED).increment(1);
                }
                ApiError::from(error)
            })?;
        Ok(Authenticated(identity))
    }
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The token of a request: the `Authorization: Bearer` header, else `?token=`.
pub fn presented_token(headers: &HeaderMap, uri: &Uri) -> Result<String, AuthError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        return Ok(token.trim().to_owned());
    }
    Query::<TokenQuery>::try_from_uri(uri)
        .ok()
        .and_then(|query| query.0.token)
        .ok_or(AuthError::Missing)
}

/// The client's address (the TCP peer; no proxy header is trusted), when known.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<T: Send + Sync> FromRequestParts<T> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &T) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn check(header: Option<&str>, uri: &str) -> Result<String, String> {
        let mut headers = HeaderMap::new();
        if let Some(value) = header {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
        }
        let uri: Uri = uri.parse().expect("uri");
        presented_token(&headers, &uri).map_err(|e| e.to_string())
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        assert_eq!(check(Some("Bearer jms_abc"), "/v1/x"), Ok("jms_abc".into()));
        assert_eq!(
            check(Some("bearer jms_abc"), "/v1/x?token=jmd_q"),
            Ok("jms_abc".into())
        );
        assert_eq!(check(None, "/v1/ws?token=jmd_q&x=1"), Ok("jmd_q".into()));
        assert_eq!(check(None, "/v1/ws?token=jmd%5Fq"), Ok("jmd_q".into()));
        assert_eq!(
            check(Some("Basic dXNlcjpwdw=="), "/v1/x"),
            Err("token is not a Jemput token".into())
        );
        assert_eq!(check(None, "/v1/x"), Err("no token presented".into()));
    }
}
