//! A [`samod::Dialer`] for `ws://` and `wss://` over tokio-tungstenite and rustls (ring).
//!
//! samod's own WebSocket dialer sits behind its `tungstenite` feature, which pulls OpenSSL through
//! native TLS; this one keeps the tree on rustls with the ring provider. Shared by the e2e tests
//! and the examples, which include it with `#[path]` (samod is a dev-dependency only).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt, future, stream::BoxStream};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use samod::{DialError, Dialer, Transport, Url};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::{
    Connector, WebSocketStream, connect_async_tls_with_config,
    tungstenite::{self, Message},
};

/// Installs ring as the process-wide rustls provider; a provider already installed is kept.
pub fn install_ring_provider() {
    // `Err` only means some provider is installed already: the tree has ring alone, so it is ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a [`WsDialer`] could not be set up.
#[derive(Debug)]
pub enum WsDialerError {
    /// The URL's scheme is neither `ws` nor `wss`.
    Scheme(String),
    /// The root certificate PEM held no certificate or could not be parsed.
    RootPem(String),
    /// rustls rejected the configuration.
    Tls(rustls::Error),
}

impl std::fmt::Display for WsDialerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Scheme(scheme) => write!(f, "unsupported URL scheme {scheme:?}: use ws or wss"),
            Self::RootPem(why) => write!(f, "root certificate PEM: {why}"),
            Self::Tls(error) => write!(f, "TLS configuration: {error}"),
        }
    }
}

impl std::error::Error for WsDialerError {}

/// Dials one WebSocket URL; samod calls [`Dialer::connect`] again on every reconnection.
pub struct WsDialer {
    url: Url,
    /// `None`: tokio-tungstenite's default client configuration (webpki roots).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl WsDialer {
    /// A dialer for `ws://…` or for `wss://…` checked against the public webpki roots.
    pub fn new(url: Url) -> Result<Self, WsDialerError> {
        check_scheme(&url)?;
        install_ring_provider();
        Ok(Self { url, tls: None })
    }

    /// A dialer for `wss://…` that trusts only the certificates in `root_pem`, e.g. a server's
    /// self-signed development certificate.
    pub fn with_root_pem(url: Url, root_pem: &[u8]) -> Result<Self, WsDialerError> {
        check_scheme(&url)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(root_pem) {
            let cert = cert.map_err(|e| WsDialerError::RootPem(e.to_string()))?;
            roots.add(cert).map_err(WsDialerError::Tls)?;
        }
        if roots.is_empty() {
            return Err(WsDialerError::RootPem("no certificate found".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(WsDialerError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            url,
            tls: Some(Arc::new(config)),
        })
    }
}

fn check_scheme(url: &Url) -> Result<(), WsDialerError> {
    match url.scheme() {
        "ws" | "wss" => Ok(()),
        other => Err(WsDialerError::Scheme(other.to_string())),
    }
}

impl Dialer for WsDialer {
    /// Every failure is worth a retry: the server may be restarting or the network down.
    type Error = std::convert::Infallible;

    fn url(&self) -> Url {
        self.url.clone()
    }

    fn connect(
        &self,
    ) -> futures_util::future::BoxFuture<'static, Result<Transport, DialError<Self::Error>>> {
        let url = self.url.clone();
        let connector = self.tls.clone().map(Connector::Rustls);
        Box::pin(async move {
            let (ws, _response) =
                connect_async_tls_with_config(url.as_str(), None, true, connector)
                    .await
                    .map_err(DialError::transient)?;
            Ok(transport_from_ws(ws))
        })
    }
}

/// Turns a tokio-tungstenite WebSocket (client or server side) into a samod [`Transport`]: one
/// binary message per samod message, as automerge-repo's WebSocket adapter frames them.
pub fn transport_from_ws<S>(ws: WebSocketStream<S>) -> Transport
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let inbound: BoxStream<'static, Result<Vec<u8>, InboundError>> = stream
        .filter_map(|message| {
            future::ready(match message {
                Ok(Message::Binary(bytes)) => Some(Ok(bytes.to_vec())),
                // tungstenite answers pings itself; a close frame is followed by the stream's end.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_)) => {
                    None
                }
                Ok(Message::Text(_)) => Some(Err(InboundError::Text)),
                Err(error) => Some(Err(InboundError::WebSocket(error))),
            })
        })
        .boxed();
    let outbound = sink.with(|bytes: Vec<u8>| {
        future::ready(Ok::<_, tungstenite::Error>(Message::Binary(bytes.into())))
    });
    Transport::new(inbound, outbound)
}

/// Why reading from a WebSocket transport failed.
#[derive(Debug)]
pub enum InboundError {
    /// The socket failed or broke the WebSocket protocol.
    WebSocket(tungstenite::Error),
    /// A text message: the automerge-repo protocol sends binary messages only.
    Text,
}

impl std::fmt::Display for InboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WebSocket(error) => write!(f, "websocket receive error: {error}"),
            Self::Text => f.write_str("unexpected text message on websocket"),
        }
    }
}

impl std::error::Error for InboundError {}
