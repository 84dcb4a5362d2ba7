//! rustls client configuration for tests that talk to a server with a dev certificate.

use std::path::Path;
use std::sync::Arc;

use tokio_tungstenite::Connector;

/// A WebSocket TLS connector that trusts exactly the certificate in `cert_pem`.
pub fn connector_trusting(cert_pem: &Path) -> Connector {
    Connector::Rustls(Arc::new(client_config_trusting(cert_pem)))
}

pub fn client_config_trusting(cert_pem: &Path) -> rustls::ClientConfig {
    let pem = std::fs::read(cert_pem).expect("read certificate");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.expect("PEM certificate")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
