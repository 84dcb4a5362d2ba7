//! The dialer over `wss://`: a samod server behind rustls with a self-signed certificate, which
//! a client reaches only when it trusts that certificate.

use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use samod::{Dialer, Repo, Url};
use tempfile::TempDir;
use tokio::task::JoinHandle;

use super::{
    Endpoint, Endpoints, samod_dialer::WsDialer, samod_dialer::install_ring_provider,
    samod_dialer::transport_from_ws, samod_server,
};

/// A samod sync server speaking `wss://` on a random loopback port; aborted when dropped.
pub struct WssSamodServer {
    pub endpoint: Endpoint,
    /// Clients A and B, each sending a token of its own, which samod ignores.
    pub endpoints: Endpoints,
    task: JoinHandle<()>,
    _repo: Repo,
    _data: TempDir,
}

impl Drop for WssSamodServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A development certificate for `127.0.0.1` and `localhost`, signed by its own key.
pub fn self_signed_certificate() -> rcgen::CertifiedKey<rcgen::KeyPair> {
    rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("self-signed certificate")
}

/// Starts samod behind TLS with a fresh self-signed certificate for `127.0.0.1`; the endpoint
/// trusts that certificate.
pub async fn spawn_wss_samod_server() -> WssSamodServer {
    install_ring_provider();
    let certified = self_signed_certificate();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server certificate");
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let data = TempDir::new().expect("server storage directory");
    let repo = samod_server::load_repo(data.path()).await;
    let acceptor = repo
        .make_acceptor(Url::parse("wss://127.0.0.1/").expect("URL"))
        .expect("repo running");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("bound address").port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (tls, acceptor) = (tls.clone(), acceptor.clone());
            tokio::spawn(async move {
                // A client that rejects our certificate fails the TLS handshake: nothing to do.
                let Ok(stream) = tls.accept(tcp).await else {
                    return;
                };
                if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                    let _ = acceptor.accept(transport_from_ws(ws));
                }
            });
        }
    });
    let endpoint = Endpoint::with_root_pem(
        &format!("wss://127.0.0.1:{port}/"),
        certified.cert.pem().into_bytes(),
    );
    WssSamodServer {
        endpoints: Endpoints::unauthenticated(&endpoint),
        endpoint,
        task,
        _repo: repo,
        _data: data,
    }
}

/// One samod server behind TLS per scenario.
async fn servers(_test: &str) -> [WssSamodServer; 1] {
    [spawn_wss_samod_server().await]
}

scenario_tests!(servers);

#[tokio::test]
async fn an_untrusted_certificate_fails_the_dial() {
    let server = spawn_wss_samod_server().await;
    let webpki_only = WsDialer::new(server.endpoint.url.clone()).expect("wss is supported");
    assert!(webpki_only.connect().await.is_err());
}

#[test]
fn only_websocket_urls_are_dialed() {
    let http = Url::parse("http://127.0.0.1:1/").expect("URL");
    assert!(WsDialer::new(http).is_err());
    let wss = Url::parse("wss://127.0.0.1:1/").expect("URL");
    assert!(WsDialer::with_root_pem(wss, b"not a certificate").is_err());
}
