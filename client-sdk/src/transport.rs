//! [`SyncTransport`]: the batch sync exchange (`POST /v1/sync`) over HTTP/1.1 with TLS 1.3
//! session resumption and 0-RTT early data.
//!
//! On a cold start over 2G every round trip costs about 300 ms. reqwest resumes TLS sessions
//! but cannot send early data over TCP, so a cold sync costs TCP + TLS + HTTP = 3 round trips.
//! This transport opens TCP, then TLS with tokio-rustls asked for early data, then HTTP/1.1
//! with hyper: on a resumed session the request leaves with the `ClientHello` (2 round trips).
//! Only `POST /v1/sync` goes this way; it is idempotent (a replay gets the stored answer), so
//! the server takes it from early data (RFC 8470).
//!
//! - One long-lived [`rustls::ClientConfig`] (its in-memory session store holds the tickets;
//!   ALPN always `http/1.1`, as resumption with early data needs the same ALPN).
//! - One kept connection (keep-alive), reused by the next exchange to the same origin and
//!   opened again when the server closed it. Its hyper task keeps reading after a response,
//!   so the ticket the server sends after a 0-RTT exchange is stored.
//! - Early data rejected by the server (an unknown or spent ticket): tokio-rustls sends the
//!   request again after the handshake. A `425 Too Early` answer: the caller sends the same
//!   request again at once, on this connection (its handshake is complete by then), and the
//!   next new connection does not use early data.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HOST, HeaderMap,
    HeaderValue, RETRY_AFTER,
};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use rustls::HandshakeKind;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::sync::{SyncError, tls_config};

/// Largest response body taken, on the wire and after gzip decoding.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Why an exchange over [`SyncTransport`] failed. None of these carries the device token.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The URL is not an `http://` or `https://` URL with a host.
    #[error("URL tidak sah: {0}")]
    InvalidUrl(String),
    /// The TCP connection could not be opened.
    #[error("tidak dapat terhubung ke {0}: {1}")]
    Connect(String, #[source] std::io::Error),
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(#[source] std::io::Error),
    /// The HTTP exchange failed (connection closed, malformed response).
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (a token that is not a valid header value).
    #[error("permintaan tidak dapat dibuat: {0}")]
    Request(String),
    /// No complete response within the timeout.
    #[error("tidak ada jawaban dalam {0:?}")]
    Timeout(Duration),
    /// The response body is larger than [`MAX_RESPONSE_BYTES`].
    #[error("jawaban melebihi {MAX_RESPONSE_BYTES} B")]
    TooLarge,
    /// The response body could not be read or decoded.
    #[error("badan jawaban tidak terbaca: {0}")]
    Body(String),
}

/// A response to a sync exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// The `Accept-Encoding` header value (request codings the server takes), if any.
    pub accept_encoding: Option<String>,
    /// The `Retry-After` header value, if any.
    pub retry_after: Option<String>,
    /// The body, gzip decoded.
    pub body: Vec<u8>,
}

/// Counts of what a [`SyncTransport`] did, for tests, benchmarks and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Connections opened (TCP).
    pub connections: u64,
    /// TLS handshakes completed in full (certificate sent).
    pub full_handshakes: u64,
    /// TLS handshakes that resumed a session.
    pub resumed_handshakes: u64,
    /// Connections that sent (the start of) their first request as early data.
    pub early_data_sent: u64,
    /// Connections whose early data the server accepted.
    pub early_data_accepted: u64,
    /// Requests sent (including those resent after a kept connection turned out closed).
    pub requests: u64,
    /// Requests sent on a kept connection.
    pub reused: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    full_handshakes: AtomicU64,
    resumed_handshakes: AtomicU64,
    early_data_sent: AtomicU64,
    early_data_accepted: AtomicU64,
    requests: AtomicU64,
    reused: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The HTTP/1.1 client of the sync exchange, sending it as TLS 1.3 early data on resumed
/// sessions; see the module documentation. Share one per process (in an `Arc`, e.g. in
/// [`SyncOptions::transport`](crate::SyncOptions::transport)) so that its session store and
/// connection are reused. Exchanges through one transport take turns (one connection).
pub struct SyncTransport {
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
    connection: Mutex<Option<Connection>>,
    /// Set by a `425 Too Early`: the next new connection does not send early data.
    no_early_data_next: AtomicBool,
    counters: Arc<Counters>,
}

impl fmt::Debug for SyncTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncTransport")
            .field("timeout", &self.timeout)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Connection {
    origin: Origin,
    sender: SendRequest<Full<Bytes>>,
}

impl SyncTransport {
    /// A transport trusting the same roots as [`http_client`](crate::http_client) (the Web
    /// PKI roots and, for dev certificates, the PEM certificates in `extra_root`), with the
    /// ring provider; `timeout` bounds one exchange (connecting included).
    pub fn new(extra_root: Option<&Path>, timeout: Duration) -> Result<Self, SyncError> {
        let mut config = tls_config(extra_root)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.enable_early_data = true;
        Ok(Self::with_config(Arc::new(config), timeout))
    }

    /// A transport on a given rustls configuration (set `enable_early_data` and the ALPN
    /// `http/1.1` for 0-RTT). Its session store is shared with whatever else uses `config`.
    pub fn with_config(config: Arc<rustls::ClientConfig>, timeout: Duration) -> Self {
        Self {
            config,
            timeout,
            connection: Mutex::new(None),
            no_early_data_next: AtomicBool::new(false),
            counters: Arc::default(),
        }
    }

    /// What this transport did so far.
    pub fn stats(&self) -> TransportStats {
        let c = &self.counters;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        TransportStats {
            connections: get(&c.connections),
            full_handshakes: get(&c.full_handshakes),
            resumed_handshakes: get(&c.resumed_handshakes),
            early_data_sent: get(&c.early_data_sent),
            early_data_accepted: get(&c.early_data_accepted),
            requests: get(&c.requests),
            reused: get(&c.reused),
        }
    }

    /// Closes the kept connection, if any (the next exchange opens one, resuming the TLS
    /// session). For a device going offline, and for tests of cold starts.
    pub async fn disconnect(&self) {
        self.connection.lock().await.take();
    }

    /// Sends `POST url` with the sync exchange's headers (`Authorization: Bearer token`,
    /// CBOR content types, `Content-Encoding: gzip` when `gzipped`, `Accept-Encoding: gzip`)
    /// and returns the response, its body gzip-decoded. Within the timeout.
    pub async fn post(
        &self,
        url: &str,
        token: &str,
        body: Vec<u8>,
        gzipped: bool,
    ) -> Result<SyncResponse, TransportError> {
        let url = Url::parse(url).map_err(|e| TransportError::InvalidUrl(e.to_string()))?;
        let origin = Origin::of(&url)?;
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let request = build_request(&origin, &path, token, Bytes::from(body), gzipped)?;
        tokio::time::timeout(self.timeout, self.exchange(origin, request))
            .await
            .map_err(|_| TransportError::Timeout(self.timeout))?
    }

    async fn exchange(
        &self,
        origin: Origin,
        request: Request<Full<Bytes>>,
    ) -> Result<SyncResponse, TransportError> {
        let mut slot = self.connection.lock().await;
        let kept = slot
            .take()
            .filter(|c| c.origin == origin && !c.sender.is_closed());
        let (mut sender, mut reused) = match kept {
            Some(connection) => (connection.sender, true),
            None => (self.connect(&origin).await?, false),
        };
        let response = loop {
            bump(&self.counters.requests);
            if reused {
                bump(&self.counters.reused);
            }
            let sent = match sender.ready().await {
                Ok(()) => sender.send_request(clone_request(&request)).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(response) => break response,
                // The kept connection was closed under us (an idle timeout): the exchange is
                // idempotent, so send it again on a new one.
                Err(error) if reused => {
                    tracing::debug!(%error, "koneksi sync lama tertutup, membuka yang baru");
                    sender = self.connect(&origin).await?;
                    reused = false;
                }
                Err(error) => return Err(error.into()),
            }
        };
        let (parts, body) = response.into_parts();
        let wire = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    TransportError::TooLarge
                } else {
                    TransportError::Body(e.to_string())
                }
            })?
            .to_bytes();
        if parts.status == StatusCode::TOO_EARLY {
            self.no_early_data_next.store(true, Ordering::Relaxed);
        }
        // Keep the connection for the next exchange; its task goes on reading (tickets).
        *slot = Some(Connection { origin, sender });
        Ok(SyncResponse {
            status: parts.status,
            accept_encoding: header(&parts.headers, ACCEPT_ENCODING),
            retry_after: header(&parts.headers, RETRY_AFTER),
            body: decode_body(&parts.headers, &wire)?,
        })
    }

    /// Opens a connection: TCP, TLS (early data on a resumed session) for `https`, and the
    /// HTTP/1.1 connection, whose task is spawned.
    async fn connect(&self, origin: &Origin) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let tcp = TcpStream::connect((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| TransportError::Connect(origin.authority.clone(), e))?;
        // Best effort: small requests should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        bump(&self.counters.connections);
        let io = if origin.tls {
            let name = ServerName::try_from(origin.host.clone())
                .map_err(|e| TransportError::InvalidUrl(e.to_string()))?;
            let early = !self.no_early_data_next.swap(false, Ordering::Relaxed);
            let mut tls = TlsConnector::from(Arc::clone(&self.config))
                .early_data(early)
                .connect(name, tcp)
                .await
                .map_err(TransportError::Tls)?;
            // The connector takes the early data path when rustls has a ticket allowing it.
            if early && tls.get_mut().1.early_data().is_some() {
                bump(&self.counters.early_data_sent);
            }
            let mut observed = Observed {
                inner: tls,
                counters: Arc::clone(&self.counters),
                recorded: false,
            };
            observed.observe();
            Io::Tls(Box::new(observed))
        } else {
            Io::Plain(tcp)
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "koneksi sync berakhir");
            }
        });
        Ok(sender)
    }
}

/// Where requests go: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    tls: bool,
    /// Host to connect to and to name in TLS (an IPv6 address without brackets).
    host: String,
    port: u16,
    /// The `Host` header: host, and port unless it is the scheme's default.
    authority: String,
}

impl Origin {
    fn of(url: &Url) -> Result<Self, TransportError> {
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(TransportError::InvalidUrl(format!("skema {other}"))),
        };
        let host_str = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| TransportError::InvalidUrl("tanpa host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| TransportError::InvalidUrl("tanpa port".into()))?;
        let authority = match url.port() {
            Some(port) => format!("{host_str}:{port}"),
            None => host_str.to_owned(),
        };
        let host = host_str
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host_str)
            .to_owned();
        Ok(Self {
            tls,
            host,
            port,
            authority,
        })
    }
}

/// The sync request, with the headers `send()` of the reqwest path sets, and `Host`.
fn build_request(
    origin: &Origin,
    path: &str,
    token: &str,
    body: Bytes,
    gzipped: bool,
) -> Result<Request<Full<Bytes>>, TransportError> {
    let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| TransportError::Request("token bukan nilai header yang sah".into()))?;
    authorization.set_sensitive(true);
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, origin.authority.as_str())
        .header(AUTHORIZATION, authorization)
        .header(CONTENT_TYPE, "application/cbor")
        .header(ACCEPT, "application/cbor")
        .header(ACCEPT_ENCODING, "gzip");
    if gzipped {
        builder = builder.header(CONTENT_ENCODING, "gzip");
    }
    builder
        .body(Full::new(body))
        .map_err(|e| TransportError::Request(e.to_string()))
}

/// A copy of a request whose body is in memory (cheap: `Bytes` is shared).
fn clone_request(request: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

fn header(headers: &HeaderMap, name: hyper::header::HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// The body as sent before `Content-Encoding` (gzip, or none), at most
/// [`MAX_RESPONSE_BYTES`].
fn decode_body(headers: &HeaderMap, wire: &[u8]) -> Result<Vec<u8>, TransportError> {
    let coding = header(headers, CONTENT_ENCODING).unwrap_or_default();
    match coding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(wire.to_vec()),
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(wire)
                .take(MAX_RESPONSE_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| TransportError::Body(format!("gzip: {e}")))?;
            if out.len() > MAX_RESPONSE_BYTES {
                return Err(TransportError::TooLarge);
            }
            Ok(out)
        }
        other => Err(TransportError::Body(format!(
            "Content-Encoding {other} tidak dikenal"
        ))),
    }
}

/// The connection's byte stream: plain TCP, or TLS observed for the handshake's outcome.
enum Io {
    Plain(TcpStream),
    Tls(Box<Observed>),
}

/// A TLS stream that records, once its handshake is complete (after the first write and
/// flush on a 0-RTT connection), whether it resumed and whether its early data was accepted.
struct Observed {
    inner: TlsStream<TcpStream>,
    counters: Arc<Counters>,
    recorded: bool,
}

impl Observed {
    fn observe(&mut self) {
        if self.recorded {
            return;
        }
        let connection = self.inner.get_ref().1;
        if connection.is_handshaking() {
            return;
        }
        self.recorded = true;
        let kind = connection.handshake_kind();
        let accepted = connection.is_early_data_accepted();
        match kind {
            Some(HandshakeKind::Resumed) => bump(&self.counters.resumed_handshakes),
            Some(_) => bump(&self.counters.full_handshakes),
            None => {}
        }
        if accepted {
            bump(&self.counters.early_data_accepted);
        }
        tracing::debug!(?kind, early_data_accepted = accepted, "TLS tersambung");
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Tls(tls) => {
                let result = Pin::new(&mut tls.inner).poll_read(cx, buf);
                tls.observe();
                result
            }
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Io::Tls(tls) => {
                let result = Pin::new(&mut tls.inner).poll_write(cx, buf);
                tls.observe();
                result
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Io::Tls(tls) => {
                let result = Pin::new(&mut tls.inner).poll_write_vectored(cx, bufs);
                tls.observe();
                result
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(tcp) => tcp.is_write_vectored(),
            Io::Tls(tls) => tls.inner.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Tls(tls) => {
                let result = Pin::new(&mut tls.inner).poll_flush(cx);
                tls.observe();
                result
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(&mut tls.inner).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> Origin {
        Origin::of(&Url::parse(url).expect("url")).expect("origin")
    }

    #[test]
    fn origin_names_host_port_and_host_header() {
        let o = origin("https://sync.example.id/v1/sync");
        assert_eq!(
            (o.tls, o.host.as_str(), o.port, o.authority.as_str()),
            (true, "sync.example.id", 443, "sync.example.id")
        );
        let o = origin("http://127.0.0.1:8080/v1/sync");
        assert_eq!(
            (o.tls, o.host.as_str(), o.port, o.authority.as_str()),
            (false, "127.0.0.1", 8080, "127.0.0.1:8080")
        );
        let o = origin("https://[::1]:8443/v1/sync");
        assert_eq!(
            (o.host.as_str(), o.port, o.authority.as_str()),
            ("::1", 8443, "[::1]:8443")
        );
        assert!(matches!(
            Origin::of(&Url::parse("ftp://example.id/").expect("url")),
            Err(TransportError::InvalidUrl(_))
        ));
    }

    #[test]
    fn request_carries_the_sync_headers() {
        let o = origin("https://localhost:8443");
        let request = build_request(&o, "/v1/sync", "rahasia", Bytes::from_static(b"x"), true)
            .expect("request");
        let h = request.headers();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "/v1/sync");
        assert_eq!(h[HOST], "localhost:8443");
        assert_eq!(h[AUTHORIZATION], "Bearer rahasia");
        assert!(h[AUTHORIZATION].is_sensitive());
        assert_eq!(h[CONTENT_TYPE], "application/cbor");
        assert_eq!(h[ACCEPT], "application/cbor");
        assert_eq!(h[ACCEPT_ENCODING], "gzip");
        assert_eq!(h[CONTENT_ENCODING], "gzip");
        let plain = build_request(&o, "/v1/sync", "t", Bytes::new(), false).expect("request");
        assert!(plain.headers().get(CONTENT_ENCODING).is_none());
        // A token that cannot be a header value is refused, without echoing it.
        let error = build_request(&o, "/v1/sync", "a\nb", Bytes::new(), false)
            .expect_err("bad token")
            .to_string();
        assert!(!error.contains("a\nb"), "{error}");
    }

    #[test]
    fn decodes_gzip_and_identity_bodies_and_refuses_others() {
        let mut headers = HeaderMap::new();
        assert_eq!(decode_body(&headers, b"abc").expect("identity"), b"abc");
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let gz = crate::sync::gzip(b"hello hello hello");
        assert_eq!(
            decode_body(&headers, &gz).expect("gzip"),
            b"hello hello hello"
        );
        assert!(matches!(
            decode_body(&headers, b"not gzip"),
            Err(TransportError::Body(_))
        ));
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(matches!(
            decode_body(&headers, b"x"),
            Err(TransportError::Body(_))
        ));
    }

    #[test]
    fn joins_repeated_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(header(&headers, ACCEPT_ENCODING), None);
        headers.append(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        headers.append(ACCEPT_ENCODING, HeaderValue::from_static("zstd"));
        assert_eq!(
            header(&headers, ACCEPT_ENCODING).as_deref(),
            Some("gzip, zstd")
        );
    }

    /// Over `http://` against an in-process server: the request's headers arrive, a
    /// `425 Too Early` is passed on with the connection kept, the next exchange reuses it, and
    /// a gzip body is decoded.
    #[tokio::test]
    async fn keeps_the_connection_and_decodes_gzip_over_http() {
        use std::sync::Mutex as StdMutex;

        use axum::extract::State;
        use axum::response::IntoResponse;

        type Seen = Arc<StdMutex<Vec<(HeaderMap, Vec<u8>)>>>;
        async fn sync(
            State(seen): State<Seen>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> axum::response::Response {
            let first = {
                let mut seen = seen.lock().expect("lock");
                seen.push((headers, body.to_vec()));
                seen.len() == 1
            };
            if first {
                return StatusCode::TOO_EARLY.into_response();
            }
            (
                [
                    (CONTENT_ENCODING, "gzip"),
                    (ACCEPT_ENCODING, "gzip"),
                    (RETRY_AFTER, "5"),
                ],
                crate::sync::gzip(b"jawaban jawaban jawaban"),
            )
                .into_response()
        }

        let seen = Seen::default();
        let app = axum::Router::new()
            .route("/v1/sync", axum::routing::post(sync))
            .with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });

        let transport = SyncTransport::new(None, Duration::from_secs(10)).expect("transport");
        let url = format!("http://{address}/v1/sync");
        let body = crate::sync::gzip(b"permintaan");
        let early = transport
            .post(&url, "rahasia", body.clone(), true)
            .await
            .expect("425");
        assert_eq!(early.status, StatusCode::TOO_EARLY);
        let response = transport
            .post(&url, "rahasia", body.clone(), true)
            .await
            .expect("200");
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body, b"jawaban jawaban jawaban");
        assert_eq!(response.accept_encoding.as_deref(), Some("gzip"));
        assert_eq!(response.retry_after.as_deref(), Some("5"));
        let stats = transport.stats();
        assert_eq!((stats.connections, stats.requests, stats.reused), (1, 2, 1));
        assert_eq!(stats.full_handshakes + stats.resumed_handshakes, 0);

        let seen = seen.lock().expect("lock");
        let (headers, received) = &seen[1];
        assert_eq!(received, &body);
        assert_eq!(headers[HOST], address.to_string());
        assert_eq!(headers[AUTHORIZATION], "Bearer rahasia");
        assert_eq!(headers[CONTENT_ENCODING], "gzip");
        assert_eq!(headers[CONTENT_TYPE], "application/cbor");
        assert_eq!(headers[ACCEPT_ENCODING], "gzip");
    }

    #[tokio::test]
    async fn times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        // Accepts, never answers.
        let _server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let transport = SyncTransport::new(None, Duration::from_millis(200)).expect("transport");
        let error = transport
            .post(
                &format!("http://{address}/v1/sync"),
                "rahasia",
                vec![1],
                false,
            )
            .await
            .expect_err("timeout");
        assert!(matches!(error, TransportError::Timeout(_)), "{error}");
        assert!(!format!("{error} {error:?}").contains("rahasia"));
    }
}
