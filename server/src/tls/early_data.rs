//! TLS connections that hand TLS 1.3 early data (0-RTT) to HTTP.
//!
//! axum-server's rustls acceptor is tokio-rustls 0.26, whose server side drives the handshake
//! to its end before it returns a stream and then reads only `ServerConnection::reader()`:
//! bytes a client sent as early data stay in rustls's early-data buffer, unread, and the
//! request they carry is lost (tokio-rustls's `early-data` feature covers its client side
//! only). [`EarlyDataAcceptor`] plugs into axum-server's `Accept` hook instead (so the accept
//! loop, graceful shutdown, connect info and HTTP upgrades stay axum-server's) and returns a
//! [`TlsStream`] of our own over rustls's `ServerConnection`:
//!
//! - the accept future returns as soon as the handshake is complete **or** the server has
//!   accepted early data and sent its first flight; in the second case the rest of the
//!   handshake (more early data, `EndOfEarlyData`, the client's `Finished`) is driven by the
//!   stream's reads, under the same deadline;
//! - reads return early data first, then the data sent after the handshake, as one plaintext
//!   stream (the protocol puts all early data before `EndOfEarlyData`, and all later data after
//!   the client's `Finished`);
//! - with `ServerConfig::send_half_rtt_data` the response to a request read from early data
//!   leaves with (right after) the server's first flight, which is what saves the round trip.
//!
//! Requests read before the handshake was confirmed may be replays; [`HandshakeState`] tells
//! the per-connection service ([`super::too_early`]) which they are.

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rustls::{HandshakeKind, ServerConfig, ServerConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::too_early::TagEarlyData;

/// TLS handshakes completed, by `kind` (`full`, `full_hrr`, `resumed`) and `early_data`
/// (`accepted` or `none`).
pub const TLS_HANDSHAKES: &str = "jemput_tls_handshakes_total";

/// Time a client has to complete its handshake, including the part after early data (as
/// axum-server's rustls acceptor).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connection knows about its handshake, shared with the service of its requests.
#[derive(Debug, Default)]
pub struct HandshakeState {
    /// The server accepted early data on this connection.
    pub(super) early_data: AtomicBool,
    /// The client's `Finished` was verified: the peer is live and holds the handshake keys.
    pub(super) confirmed: AtomicBool,
    /// Plaintext bytes handed to HTTP from early data (always the start of the stream).
    pub(super) early_bytes: AtomicU64,
    /// Requests dispatched on this connection so far.
    pub(super) requests: AtomicU64,
}

impl HandshakeState {
    /// True while every plaintext byte HTTP could have read came from early data: the server
    /// accepted early data and has not yet verified the client's `Finished`. A request whose
    /// head is parsed now may be a replay (RFC 8446 §8, RFC 8470 §5.2); one parsed after the
    /// handshake is confirmed cannot be, even if its bytes were sent as early data (a
    /// replayed ClientHello cannot be followed by a valid `Finished`).
    pub fn in_early_data(&self) -> bool {
        self.early_data.load(Ordering::Acquire) && !self.confirmed.load(Ordering::Acquire)
    }

    /// Counts a request about to be dispatched and says whether it is to be treated as early
    /// data: any request while [`Self::in_early_data`] (the safety rule), and also the
    /// connection's first request when it started in early data, even if the handshake was
    /// confirmed while HTTP read the rest of it (so the outcome does not depend on how fast
    /// the client's `Finished` arrived).
    pub fn next_request_is_early(&self) -> bool {
        let first = self.requests.fetch_add(1, Ordering::AcqRel) == 0;
        self.in_early_data() || (first && self.early_bytes.load(Ordering::Acquire) > 0)
    }

    /// Whether the server accepted early data on this connection.
    pub fn early_data_accepted(&self) -> bool {
        self.early_data.load(Ordering::Acquire)
    }

    /// Whether the handshake is confirmed (the client's `Finished` verified).
    pub fn confirmed(&self) -> bool {
        self.confirmed.load(Ordering::Acquire)
    }
}

/// An axum-server acceptor for TLS connections that may carry early data; see the module
/// documentation. Its service tags requests read from early data ([`TagEarlyData`]).
#[derive(Clone)]
pub struct EarlyDataAcceptor {
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
}

impl EarlyDataAcceptor {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            config,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Runs the handshake on `tcp` until HTTP can read: complete, or early data accepted.
    pub async fn handshake(&self, tcp: TcpStream) -> io::Result<TlsStream> {
        // A TLS flight and the response that follows it are separate writes: do not let
        // Nagle hold the second one back for an acknowledgement.
        tcp.set_nodelay(true)?;
        let conn = ServerConnection::new(Arc::clone(&self.config)).map_err(io::Error::other)?;
        let mut stream = TlsStream {
            tcp,
            conn,
            state: Arc::new(HandshakeState::default()),
            tcp_eof: false,
            close_notify_sent: false,
            deadline: Some(Box::pin(tokio::time::sleep(self.handshake_timeout))),
        };
        std::future::poll_fn(|cx| stream.poll_accept(cx)).await?;
        Ok(stream)
    }
}

impl<S: Send + 'static> axum_server::accept::Accept<TcpStream, S> for EarlyDataAcceptor {
    type Stream = TlsStream;
    type Service = TagEarlyData<S>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(TlsStream, TagEarlyData<S>)>> + Send>>;

    fn accept(&self, tcp: TcpStream, service: S) -> Self::Future {
        let acceptor = self.clone();
        Box::pin(async move {
            let stream = acceptor.handshake(tcp).await?;
            let service = TagEarlyData::new(service, stream.handshake_state());
            Ok((stream, service))
        })
    }
}

/// A server TLS stream over TCP whose plaintext starts with the early data, if any.
pub struct TlsStream {
    tcp: TcpStream,
    conn: ServerConnection,
    state: Arc<HandshakeState>,
    tcp_eof: bool,
    close_notify_sent: bool,
    /// Until the handshake is confirmed.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl TlsStream {
    /// The handshake state shared with this connection's requests.
    pub fn handshake_state(&self) -> Arc<HandshakeState> {
        Arc::clone(&self.state)
    }

    /// The rustls connection, for inspection.
    pub fn connection(&self) -> &ServerConnection {
        &self.conn
    }

    /// Drives the handshake until HTTP may read.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let flushed = self.poll_write_tls(cx)?.is_ready();
            if flushed && (!self.conn.is_handshaking() || self.state.early_data_accepted()) {
                return Poll::Ready(Ok(()));
            }
            self.check_deadline(cx)?;
            if !flushed {
                return Poll::Pending;
            }
            if self.tcp_eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "end of stream during the TLS handshake",
                )));
            }
            ready!(self.poll_read_tls(cx))?;
        }
    }

    /// Reads TLS records from TCP and processes them.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = SyncIo {
            tcp: &mut self.tcp,
            cx,
        };
        match self.conn.read_tls(&mut io) {
            Ok(0) => self.tcp_eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        }
        if let Err(error) = self.conn.process_new_packets() {
            // Send the alert describing the error if we can; the error is what matters.
            let _ = self.poll_write_tls(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
        }
        self.note_progress();
        Poll::Ready(Ok(()))
    }

    /// Writes whatever rustls has queued for the peer.
    fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut io = SyncIo {
                tcp: &mut self.tcp,
                cx,
            };
            match self.conn.write_tls(&mut io) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake not completed in time",
            ));
        }
        Ok(())
    }

    /// Records what the last records changed: early data accepted, handshake confirmed.
    fn note_progress(&mut self) {
        if !self.state.early_data_accepted() && self.conn.early_data().is_some() {
            self.state.early_data.store(true, Ordering::Release);
        }
        if !self.conn.is_handshaking() && !self.state.confirmed() {
            self.state.confirmed.store(true, Ordering::Release);
            self.deadline = None;
            let kind = match self.conn.handshake_kind() {
                Some(HandshakeKind::Full) => "full",
                Some(HandshakeKind::FullWithHelloRetryRequest) => "full_hrr",
                Some(HandshakeKind::Resumed) => "resumed",
                None => "unknown",
            };
            let early = if self.state.early_data_accepted() {
                "accepted"
            } else {
                "none"
            };
            tracing::debug!(kind, early_data = early, "TLS handshake complete");
            metrics::counter!(TLS_HANDSHAKES, "kind" => kind, "early_data" => early).increment(1);
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Early data comes first in the stream: drain it before anything else.
            if let Some(mut early) = this.conn.early_data() {
                let n = early.read(buf.initialize_unfilled())?;
                if n > 0 {
                    this.state.early_bytes.fetch_add(n as u64, Ordering::AcqRel);
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
            }
            match this.conn.reader().read(buf.initialize_unfilled()) {
                // 0: the peer sent close_notify.
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // UnexpectedEof: TCP closed without close_notify.
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Nothing buffered. Send what rustls queued (the rest of the handshake, tickets
            // once the client's Finished is in, alerts); a full socket only delays it.
            if let Poll::Ready(Err(e)) = this.poll_write_tls(cx) {
                return Poll::Ready(Err(e));
            }
            if this.conn.is_handshaking() {
                this.check_deadline(cx)?;
            }
            if this.tcp_eof {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(this.poll_read_tls(cx))?;
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            // Before the handshake allows sending, rustls buffers the plaintext.
            let n = this.conn.writer().write(buf)?;
            let flushed = this.poll_write_tls(cx)?;
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            // rustls's buffer was full.
            if flushed.is_pending() {
                return Poll::Pending;
            }
            if this.conn.is_handshaking() {
                // Plaintext held until the handshake completes (no half-RTT data): progress
                // needs the client's records.
                this.check_deadline(cx)?;
                if this.tcp_eof {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                ready!(this.poll_read_tls(cx))?;
                continue;
            }
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.writer().flush()?;
        ready!(this.poll_write_tls(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_notify_sent {
            this.conn.send_close_notify();
            this.close_notify_sent = true;
        }
        ready!(this.poll_write_tls(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// Blocking-style `Read`/`Write` over the TCP stream for rustls, `WouldBlock` when not ready.
struct SyncIo<'a, 'b> {
    tcp: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.tcp).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
