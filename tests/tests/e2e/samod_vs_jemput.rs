//! The scenarios against Jemput, the real `jemput-under-test` process: on SQLite, on PostgreSQL
//! when `JEMPUT_TEST_DATABASE_URL` is set, and over `wss://` with a self-signed certificate.

use jemput_tests::{TestDatabase, TestServer};
use tempfile::TempDir;

use super::{Endpoint, wss::self_signed_certificate};

/// A running Jemput and where samod clients reach it.
pub struct Jemput {
    pub endpoint: Endpoint,
    _server: TestServer,
    _certificate: Option<TempDir>,
}

/// One Jemput per database dialect available to the tests.
async fn servers(test: &str) -> Vec<Jemput> {
    let mut servers = Vec::new();
    for database in TestDatabase::every(&format!("samod {test}")).await {
        let server = TestServer::start(crate::JEMPUT, database).await;
        servers.push(Jemput {
            endpoint: Endpoint::new(&server.ws_url()),
            _server: server,
            _certificate: None,
        });
    }
    servers
}

scenario_tests!(servers);

/// The same scenarios over `wss://`, Jemput serving its own TLS (SQLite only: TLS is above the
/// storage).
mod wss {
    use super::*;

    async fn servers(_test: &str) -> [Jemput; 1] {
        let dir = TempDir::new().expect("certificate directory");
        let certified = self_signed_certificate();
        let cert_pem = certified.cert.pem();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, &cert_pem).expect("write certificate");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
        let (cert_arg, key_arg) = (cert.to_str().expect("path"), key.to_str().expect("path"));
        let server = TestServer::start_with_args(
            crate::JEMPUT,
            TestDatabase::sqlite(),
            &["--tls-cert", cert_arg, "--tls-key", key_arg],
        )
        .await;
        let ws_url = server.ws_url();
        assert!(ws_url.starts_with("wss://"), "{ws_url}");
        [Jemput {
            endpoint: Endpoint::with_root_pem(&ws_url, cert_pem.into_bytes()),
            _server: server,
            _certificate: Some(dir),
        }]
    }

    scenario_tests!(servers);
}
