//! Which requests may be served from TLS 1.3 early data (RFC 8470).
//!
//! Early data can be replayed by anyone who recorded it, so a request read from it must be
//! safe to process twice. Only `POST /v1/sync` is: a retry with the same idempotency key gets
//! the stored response again and changes nothing (docs/BATCH-SYNC.md, "Idempotency"). Every
//! other request read from early data is answered `425 Too Early` without being processed;
//! the client sends it again once its handshake is complete (RFC 8470 §5.2).
//!
//! Two layers:
//!
//! - [`TagEarlyData`], per TLS connection (set up by [`super::early_data::EarlyDataAcceptor`]):
//!   marks a request with the [`EarlyData`] extension when its head was parsed before the
//!   handshake was confirmed, and the connection's first request if it started in early data;
//! - [`TooEarlyLayer`], on the router: answers 425 to a marked request, or to one carrying
//!   `Early-Data: 1` (a TLS-terminating proxy in front that forwarded early data, RFC 8470
//!   §5.1), unless [`replay_safe`] allows it.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use tower::{Layer, Service};

use super::early_data::HandshakeState;

/// Requests answered 425 because they arrived in early data and are not replay-safe.
pub const TOO_EARLY: &str = "jemput_http_too_early_total";

/// Request extension: the request was read from TLS 1.3 early data before the handshake was
/// confirmed, so it may be a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyData;

/// Whether a request may be processed although it may be a replay: only the idempotent
/// batch sync exchange.
pub fn replay_safe(method: &Method, path: &str) -> bool {
    method == Method::POST && path == "/v1/sync"
}

/// Whether a request is marked as early data, by this server's TLS layer or by a proxy.
pub fn is_early<B>(request: &Request<B>) -> bool {
    request.extensions().get::<EarlyData>().is_some() || proxied_early(request.headers())
}

fn proxied_early(headers: &HeaderMap) -> bool {
    headers
        .get_all("early-data")
        .iter()
        .any(|value| value.as_bytes().trim_ascii() == b"1")
}

/// Per-connection service that adds [`EarlyData`] to the requests
/// [`HandshakeState::next_request_is_early`] names.
#[derive(Clone)]
pub struct TagEarlyData<S> {
    inner: S,
    handshake: Arc<HandshakeState>,
}

impl<S> TagEarlyData<S> {
    pub fn new(inner: S, handshake: Arc<HandshakeState>) -> Self {
        Self { inner, handshake }
    }
}

impl<S, B> Service<Request<B>> for TagEarlyData<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if self.handshake.next_request_is_early() {
            request.extensions_mut().insert(EarlyData);
        }
        self.inner.call(request)
    }
}

/// Answers `425 Too Early` to early-data requests that are not [`replay_safe`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TooEarlyLayer;

impl<S> Layer<S> for TooEarlyLayer {
    type Service = TooEarly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TooEarly { inner }
    }
}

/// See [`TooEarlyLayer`].
#[derive(Debug, Clone)]
pub struct TooEarly<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for TooEarly<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if is_early(&request) && !replay_safe(request.method(), request.uri().path()) {
            metrics::counter!(TOO_EARLY).increment(1);
            tracing::debug!(
                method = %request.method(),
                path = %request.uri().path(),
                "request in TLS early data refused: 425"
            );
            return Either::Left(ready(Ok(too_early())));
        }
        Either::Right(self.inner.call(request))
    }
}

fn too_early() -> Response {
    (
        StatusCode::TOO_EARLY,
        "request sent in TLS early data: send it again after the handshake\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    async fn status(request: Request<Body>, tag: Option<Arc<HandshakeState>>) -> StatusCode {
        let inner = tower::service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(StatusCode::OK.into_response())
        });
        let service = TooEarlyLayer.layer(inner);
        let response = match tag {
            Some(state) => TagEarlyData::new(service, state).oneshot(request).await,
            None => service.oneshot(request).await,
        };
        response.expect("infallible").status()
    }

    fn request(method: Method, path: &str) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request")
    }

    fn early(mut request: Request<Body>) -> Request<Body> {
        request.extensions_mut().insert(EarlyData);
        request
    }

    #[tokio::test]
    async fn only_batch_sync_is_served_from_early_data() {
        assert_eq!(
            status(early(request(Method::POST, "/v1/sync")), None).await,
            StatusCode::OK
        );
        for (method, path) in [
            (Method::POST, "/v1/auth/login"),
            (Method::POST, "/v1/devices"),
            (Method::GET, "/v1/sync"),
            (Method::GET, "/healthz"),
            (Method::GET, "/v1/ws"),
            (Method::POST, "/v1/sync/"),
            (Method::PUT, "/v1/sync"),
        ] {
            assert_eq!(
                status(early(request(method.clone(), path)), None).await,
                StatusCode::TOO_EARLY,
                "{method} {path}"
            );
            assert_eq!(
                status(request(method.clone(), path), None).await,
                StatusCode::OK,
                "{method} {path} outside early data"
            );
        }
    }

    #[tokio::test]
    async fn a_proxy_marks_early_data_with_a_header() {
        let mut marked = request(Method::POST, "/v1/auth/login");
        marked
            .headers_mut()
            .insert("early-data", "1".parse().expect("header"));
        assert_eq!(status(marked, None).await, StatusCode::TOO_EARLY);
        let mut sync = request(Method::POST, "/v1/sync");
        sync.headers_mut()
            .insert("early-data", "1".parse().expect("header"));
        assert_eq!(status(sync, None).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_connection_tags_requests_until_the_handshake_is_confirmed() {
        use std::sync::atomic::Ordering;
        let login = || request(Method::POST, "/v1/auth/login");

        // No early data accepted: nothing is tagged.
        let state = Arc::new(HandshakeState::default());
        state.confirmed.store(true, Ordering::Release);
        assert_eq!(status(login(), Some(state.clone())).await, StatusCode::OK);
        assert_eq!(status(login(), Some(state)).await, StatusCode::OK);

        // Early data accepted: every request until the handshake is confirmed.
        let state = Arc::new(HandshakeState::default());
        state.early_data.store(true, Ordering::Release);
        state.early_bytes.store(100, Ordering::Release);
        assert_eq!(
            status(login(), Some(state.clone())).await,
            StatusCode::TOO_EARLY
        );
        assert_eq!(
            status(request(Method::POST, "/v1/sync"), Some(state.clone())).await,
            StatusCode::OK
        );
        state.confirmed.store(true, Ordering::Release);
        assert_eq!(status(login(), Some(state)).await, StatusCode::OK);

        // The first request started in early data: early even if the handshake was confirmed
        // by the time its head was parsed.
        let state = Arc::new(HandshakeState::default());
        state.early_data.store(true, Ordering::Release);
        state.early_bytes.store(100, Ordering::Release);
        state.confirmed.store(true, Ordering::Release);
        assert_eq!(
            status(login(), Some(state.clone())).await,
            StatusCode::TOO_EARLY
        );
        assert_eq!(status(login(), Some(state)).await, StatusCode::OK);

        // Early data accepted but none sent: the first request came after the handshake.
        let state = Arc::new(HandshakeState::default());
        state.early_data.store(true, Ordering::Release);
        state.confirmed.store(true, Ordering::Release);
        assert_eq!(status(login(), Some(state)).await, StatusCode::OK);
    }
}
