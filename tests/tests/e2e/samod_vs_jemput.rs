//! The scenarios against Jemput, the real `jemput-under-test` process: on SQLite, on PostgreSQL
//! when `JEMPUT_TEST_DATABASE_URL` is set, and over `wss://` with a self-signed certificate. Each
//! samod client is an officer of the home district with an enrolled device and connects with
//! that device's token.
//!
//! Then what only Jemput does: a document outside an officer's regions is out of that officer's
//! reach, whether they ask for it by id or try to create it.

use jemput_tests::provision::{HOME_DISTRICT, OTHER_DISTRICT, OTHER_VILLAGE};
use jemput_tests::{TestDatabase, TestServer};
use tempfile::TempDir;

use super::{Client, Endpoint, Endpoints, converged, get, put, wss::self_signed_certificate};

/// A running Jemput and where samod clients reach it.
pub struct Jemput {
    /// Clients A and B: two officers of the home district, each on their own device.
    pub endpoints: Endpoints,
    server: TestServer,
    /// The certificate a `wss://` client must trust; `None` for `ws://`.
    root_pem: Option<Vec<u8>>,
    _certificate: Option<TempDir>,
}

impl Jemput {
    /// Starts Jemput on `database` (serving TLS with `certificate`'s files if given) and
    /// enrols clients A and B.
    async fn start(database: TestDatabase, certificate: Option<Certificate>) -> Self {
        let (server, root_pem, directory) = match certificate {
            None => (TestServer::start(crate::JEMPUT, database).await, None, None),
            Some(certificate) => {
                let cert = certificate.dir.path().join("cert.pem");
                let key = certificate.dir.path().join("key.pem");
                let (cert_arg, key_arg) =
                    (cert.to_str().expect("path"), key.to_str().expect("path"));
                let mut server = TestServer::start_with_args(
                    crate::JEMPUT,
                    database,
                    &["--tls-cert", cert_arg, "--tls-key", key_arg],
                )
                .await;
                server.trust_certificate(&cert);
                let ws_url = server.ws_url();
                assert!(ws_url.starts_with("wss://"), "{ws_url}");
                (server, Some(certificate.pem), Some(certificate.dir))
            }
        };
        let endpoints = Endpoints {
            a: officer(&server, root_pem.as_deref(), "samod-a", &[HOME_DISTRICT]).await,
            b: officer(&server, root_pem.as_deref(), "samod-b", &[HOME_DISTRICT]).await,
        };
        Self {
            endpoints,
            server,
            root_pem,
            _certificate: directory,
        }
    }

    /// Where a new officer assigned `regions` connects, with their enrolled device's token.
    async fn officer(&self, username: &str, regions: &[&str]) -> Endpoint {
        officer(&self.server, self.root_pem.as_deref(), username, regions).await
    }
}

/// Creates an officer assigned `regions` with an enrolled device; where that device connects,
/// trusting `root_pem` if the server serves TLS.
async fn officer(
    server: &TestServer,
    root_pem: Option<&[u8]>,
    username: &str,
    regions: &[&str],
) -> Endpoint {
    let officer = server.officer(username, regions).await;
    let url = server.ws_url_for(officer.token());
    match root_pem {
        None => Endpoint::new(&url),
        Some(pem) => Endpoint::with_root_pem(&url, pem.to_vec()),
    }
}

/// A self-signed certificate written to `cert.pem` and `key.pem` in `dir`.
struct Certificate {
    dir: TempDir,
    pem: Vec<u8>,
}

impl Certificate {
    fn new() -> Self {
        let dir = TempDir::new().expect("certificate directory");
        let certified = self_signed_certificate();
        let cert_pem = certified.cert.pem();
        std::fs::write(dir.path().join("cert.pem"), &cert_pem).expect("write certificate");
        std::fs::write(
            dir.path().join("key.pem"),
            certified.signing_key.serialize_pem(),
        )
        .expect("write key");
        Self {
            dir,
            pem: cert_pem.into_bytes(),
        }
    }
}

/// One Jemput per database dialect available to the tests.
async fn servers(test: &str) -> Vec<Jemput> {
    let mut servers = Vec::new();
    for database in TestDatabase::every(&format!("samod {test}")).await {
        servers.push(Jemput::start(database, None).await);
    }
    servers
}

scenario_tests!(servers);

/// The same scenarios over `wss://`, Jemput serving its own TLS (SQLite only: TLS is above the
/// storage).
mod wss {
    use super::*;

    async fn servers(_test: &str) -> [Jemput; 1] {
        [Jemput::start(TestDatabase::sqlite(), Some(Certificate::new())).await]
    }

    scenario_tests!(servers);
}

// ---------------------------------------------------------------------------------------------
// Scope: Jemput only (the reference serves every document to everyone)

/// C, an officer of another district, asks for A's home document by id and is told it is
/// unavailable, exactly as for a document that does not exist; B, of the home district, finds
/// it, and A and B keep syncing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_districts_officer_finds_a_home_document_unavailable() {
    for jemput in servers("home document by id").await {
        let elsewhere = jemput.officer("samod-c", &[OTHER_DISTRICT]).await;
        let a = Client::online(&jemput.endpoints.a).await;
        let doc_a = a.create(&[("title", "home")]).await;
        a.until_server_has(&doc_a).await;
        let id = doc_a.document_id().clone();

        let c = Client::online(&elsewhere).await;
        assert!(
            c.try_find(&id).await.is_none(),
            "an officer of {OTHER_DISTRICT} was given a document of {HOME_DISTRICT}"
        );
        let b = Client::online(&jemput.endpoints.b).await;
        let doc_b = b.find(&id).await;
        put(&doc_b, "seen", "B");
        put(&doc_a, "edited", "A");
        converged(
            &doc_a,
            &doc_b,
            &[("title", "home"), ("seen", "B"), ("edited", "A")],
        )
        .await;
        for client in [a, b, c] {
            client.stop().await;
        }
    }
}

/// A, an officer of the home district, creates a document in another district: the server
/// stores nothing, so C, an officer of that district, never gets it, not even from storage after
/// a restart, while C does get a document that D, a colleague of C's, created there. A's own
/// copy and A's other documents are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_created_outside_the_creators_regions_is_refused() {
    for mut jemput in servers("document outside the creator's regions").await {
        let elsewhere = jemput.officer("samod-c", &[OTHER_DISTRICT]).await;
        let colleague = jemput.officer("samod-d", &[OTHER_DISTRICT]).await;
        let d = Client::online(&colleague).await;
        let theirs = d
            .create_in(OTHER_DISTRICT, OTHER_VILLAGE, &[("title", "theirs")])
            .await;
        d.until_server_has(&theirs).await;
        d.stop().await;

        let a = Client::online(&jemput.endpoints.a).await;
        let stray = a
            .create_in(OTHER_DISTRICT, OTHER_VILLAGE, &[("title", "stray")])
            .await;
        let stray_id = stray.document_id().clone();
        // Sent after the stray document on the same connection: once the server has it, it has
        // read (and judged) the stray one.
        let home = a.create(&[("title", "home")]).await;
        a.until_server_has(&home).await;

        let c = Client::online(&elsewhere).await;
        assert!(
            c.try_find(&stray_id).await.is_none(),
            "a document A may not create in {OTHER_DISTRICT} reached an officer there"
        );
        c.stop().await;
        assert_eq!(get(&stray, "title").as_deref(), Some("stray"));

        // Not in storage either: a restarted server has only what it stored.
        a.stop().await;
        jemput.server.restart().await;
        let c = Client::online(&elsewhere).await;
        assert!(
            c.try_find(&stray_id).await.is_none(),
            "a refused document was stored and reached an officer of {OTHER_DISTRICT}"
        );
        let theirs_c = c.find(theirs.document_id()).await;
        assert_eq!(get(&theirs_c, "title").as_deref(), Some("theirs"));
        let b = Client::online(&jemput.endpoints.b).await;
        let home_b = b.find(home.document_id()).await;
        assert_eq!(get(&home_b, "title").as_deref(), Some("home"));
        c.stop().await;
        b.stop().await;
    }
}
