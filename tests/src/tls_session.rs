//! TLS 1.3 sessions seen from the client: full, resumed and 0-RTT handshakes with rustls over
//! a TCP stream that counts its bytes, and a minimal HTTP/1.1 exchange on top (the request may
//! travel as early data). For the resumption tests and the cold-start benchmark; the SDK's
//! reqwest client cannot send early data over TCP (hyper-rustls never asks tokio-rustls for
//! it), so 0-RTT is measured with this client.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use rustls::{ClientConfig, HandshakeKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long [`TlsClient::response`] waits.
pub const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A client configuration trusting `cert_pem`, offering HTTP/1.1 by ALPN like the server,
/// with its own session store (so its first handshake is a full one), optionally willing to
/// send early data.
pub fn client_config(cert_pem: &Path, early_data: bool) -> Arc<ClientConfig> {
    let mut config = crate::tls::client_config_trusting(cert_pem);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.enable_early_data = early_data;
    Arc::new(config)
}

/// Bytes through a stream, both ways.
#[derive(Debug, Default)]
pub struct ByteCounts {
    read: AtomicU64,
    written: AtomicU64,
}

impl ByteCounts {
    /// Bytes received from the peer.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Bytes sent to the peer.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

/// A stream that counts what passes through it.
pub struct Counted<S> {
    inner: S,
    counts: Arc<ByteCounts>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.counts.read.fetch_add(n, Ordering::Relaxed);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            self.counts.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The server's `/metrics` text, fetched over a fresh full handshake trusting `cert_pem`, so
/// the fetch never counts as a resumption itself.
pub async fn metrics_text(address: &str, cert_pem: &Path) -> io::Result<String> {
    let mut client = TlsClient::connect(address, client_config(cert_pem, false)).await?;
    client
        .send(&http_request("GET", "/metrics", address, &[], b""))
        .await?;
    let response = client.response().await?;
    client.close().await;
    if response.status != 200 {
        return Err(io::Error::other(format!(
            "/metrics: HTTP {}",
            response.status
        )));
    }
    Ok(String::from_utf8_lossy(&response.body).into_owned())
}

/// The sum of counter `name` in Prometheus text over the series whose labels contain every
/// fragment of `labels`.
pub fn counter_sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .sum()
}

/// One HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 request (keep-alive) with `Content-Length`.
pub fn http_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A TLS client connection with byte counters.
pub struct TlsClient {
    stream: TlsStream<Counted<TcpStream>>,
    counts: Arc<ByteCounts>,
    /// Bytes from the server when the client finished its handshake: the server's flight.
    handshake_read: u64,
    /// Received but not yet parsed.
    pending: Vec<u8>,
}

impl TlsClient {
    /// Connects and completes the handshake (full, or resumed if `config` holds a ticket for
    /// `localhost`). Never sends early data.
    pub async fn connect(address: &str, config: Arc<ClientConfig>) -> io::Result<Self> {
        let (tcp, counts) = counted(address).await?;
        let stream = TlsConnector::from(config)
            .connect(server_name(), tcp)
            .await?;
        let handshake_read = counts.read();
        Ok(Self {
            stream,
            counts,
            handshake_read,
            pending: Vec::new(),
        })
    }

    /// Connects and sends `request` as early data when `config` holds a ticket that allows
    /// it (`enable_early_data` set), then completes the handshake; rustls resends the request
    /// after the handshake if the server rejected the early data. The response is not read.
    pub async fn connect_early(
        address: &str,
        config: Arc<ClientConfig>,
        request: &[u8],
    ) -> io::Result<Self> {
        let (tcp, counts) = counted(address).await?;
        let mut stream = TlsConnector::from(config)
            .early_data(true)
            .connect(server_name(), tcp)
            .await?;
        stream.write_all(request).await?;
        // Completes the handshake (the ClientHello and the early data leave together).
        stream.flush().await?;
        Ok(Self {
            stream,
            counts,
            handshake_read: 0,
            pending: Vec::new(),
        })
    }

    /// Full, resumed, or (with a HelloRetryRequest) full with an extra round trip.
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.stream.get_ref().1.handshake_kind()
    }

    /// Whether the server accepted the early data.
    pub fn early_data_accepted(&self) -> bool {
        self.stream.get_ref().1.is_early_data_accepted()
    }

    /// Bytes the server sent before the client completed the handshake ([`Self::connect`]
    /// only): its first flight, certificate included on a full handshake.
    pub fn handshake_bytes_read(&self) -> u64 {
        self.handshake_read
    }

    /// Bytes on the wire so far, both ways.
    pub fn counts(&self) -> &ByteCounts {
        &self.counts
    }

    /// Sends raw bytes (a request made with [`http_request`]).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads one response (`Content-Length` or chunked body), within [`RESPONSE_TIMEOUT`].
    pub async fn response(&mut self) -> io::Result<HttpResponse> {
        tokio::time::timeout(RESPONSE_TIMEOUT, self.read_response())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response in time"))?
    }

    /// Keeps reading for `duration` (or until the server closes): rustls processes what the
    /// server sends after a response, such as session tickets after a 0-RTT exchange. Any
    /// application data is kept for [`Self::response`].
    pub async fn drain(&mut self, duration: std::time::Duration) {
        let _ = tokio::time::timeout(duration, async { while self.fill().await.is_ok() {} }).await;
    }

    async fn read_response(&mut self) -> io::Result<HttpResponse> {
        let end = loop {
            if let Some(end) = find(&self.pending, b"\r\n\r\n") {
                break end;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
        self.pending.drain(..end + 4);
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no status line in {head:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut response = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().map_err(io::Error::other)?;
            response.body = self.take(length).await?;
        } else if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line = loop {
                    if let Some(end) = find(&self.pending, b"\r\n") {
                        break end;
                    }
                    self.fill().await?;
                };
                let size = String::from_utf8_lossy(&self.pending[..line]).into_owned();
                self.pending.drain(..line + 2);
                let size = usize::from_str_radix(size.trim(), 16).map_err(io::Error::other)?;
                let chunk = self.take(size + 2).await?;
                if size == 0 {
                    break;
                }
                response.body.extend_from_slice(&chunk[..size]);
            }
        }
        Ok(response)
    }

    /// Sends close_notify and closes the connection.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        let n = self.stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pending.extend_from_slice(&buf[..n]);
        Ok(())
    }

    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.pending.len() < n {
            self.fill().await?;
        }
        Ok(self.pending.drain(..n).collect())
    }
}

fn server_name() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from("localhost").expect("server name")
}

async fn counted(address: &str) -> io::Result<(Counted<TcpStream>, Arc<ByteCounts>)> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let counts = Arc::new(ByteCounts::default());
    Ok((
        Counted {
            inner: tcp,
            counts: Arc::clone(&counts),
        },
        counts,
    ))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
