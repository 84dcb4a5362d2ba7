//! samod 0.16 clients syncing through a server over the automerge-repo WebSocket protocol.
//!
//! Each scenario is a function of the server's [`Endpoints`], one per client, so one scenario
//! runs against every server: samod itself served in-process (the reference, which checks the
//! scenarios), Jemput on SQLite, and Jemput on PostgreSQL (`JEMPUT_TEST_DATABASE_URL`). On Jemput
//! each client is its own officer's enrolled device, whose token is in its URL; the reference
//! ignores the token. Every document a scenario creates is a field visit in the officers' home
//! region, so Jemput admits it. Every wait has a deadline.

use std::{
    convert::Infallible,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use automerge::{ChangeHash, ObjType, ReadDoc, ScalarValue, Value, transaction::Transactable};
use jemput_tests::provision::{HOME_DISTRICT, HOME_VILLAGE};
use samod::{BackoffConfig, DialerHandle, DocHandle, DocumentId, Repo, Url};
use tempfile::TempDir;

#[path = "../../examples/support/samod_dialer.rs"]
pub mod samod_dialer;
#[path = "../../examples/support/samod_server.rs"]
pub mod samod_server;

/// One test per scenario, run against each server that `$servers(test_name).await` starts (an
/// iterable of values with an `endpoints` field that stop their server when dropped).
macro_rules! scenario_tests {
    ($servers:path) => {
        scenario_tests!(@one $servers, two_clients_share_documents);
        scenario_tests!(@one $servers, document_created_offline_reaches_others);
        scenario_tests!(@one $servers, concurrent_edits_merge_after_reconnect);
        scenario_tests!(@one $servers, concurrent_edits_merge_after_restart);
    };
    (@one $servers:path, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $scenario() {
            for server in $servers(stringify!($scenario)).await {
                crate::samod_interop::$scenario(&server.endpoints).await;
            }
        }
    };
}

#[path = "samod_vs_jemput.rs"]
mod vs_jemput;
#[path = "samod_vs_reference.rs"]
mod vs_reference;
#[path = "samod_wss.rs"]
mod wss;

use samod_dialer::WsDialer;

/// The schema of a field-visit document, one of the two Jemput stores.
pub const VISIT_SCHEMA: &str = "jemput/visit@1";

/// How long any one wait may take before the scenario fails.
const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

/// Where a server accepts automerge-repo WebSocket connections.
#[derive(Clone, Debug)]
pub struct Endpoint {
    url: Url,
    /// Trusted roots for `wss://` with a self-signed certificate; `None`: webpki roots.
    root_pem: Option<Vec<u8>>,
}

impl Endpoint {
    /// `ws://host:port/v1/ws` or `wss://…` with a publicly trusted certificate. A token goes in
    /// the query (`?token=…`), as browser clients send it.
    pub fn new(url: &str) -> Self {
        Self {
            url: Url::parse(url).expect("server URL"),
            root_pem: None,
        }
    }

    /// `wss://…` trusting only the certificates in `root_pem`.
    pub fn with_root_pem(url: &str, root_pem: Vec<u8>) -> Self {
        Self {
            root_pem: Some(root_pem),
            ..Self::new(url)
        }
    }

    /// The same server, with `token` as the `token` query parameter.
    pub fn with_token(&self, token: &str) -> Self {
        let mut url = self.url.clone();
        url.query_pairs_mut().append_pair("token", token);
        Self {
            url,
            ..self.clone()
        }
    }

    fn dialer(&self) -> WsDialer {
        match &self.root_pem {
            None => WsDialer::new(self.url.clone()),
            Some(pem) => WsDialer::with_root_pem(self.url.clone(), pem),
        }
        .expect("dialer for the endpoint")
    }
}

/// Where each client of a scenario connects: on Jemput, each with its own officer's token.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub a: Endpoint,
    pub b: Endpoint,
}

impl Endpoints {
    /// A server that takes anyone: each client still sends a token of its own, which it ignores.
    pub fn unauthenticated(server: &Endpoint) -> Self {
        Self {
            a: server.with_token("client-a"),
            b: server.with_token("client-b"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// A creates documents and edits them; B, which has none of them, finds each through the server
/// and edits it; both end with the same heads and both edits.
pub async fn two_clients_share_documents(server: &Endpoints) {
    let a = Client::online(&server.a).await;
    let b = Client::online(&server.b).await;

    let mut docs = Vec::new();
    for i in 0..3 {
        let doc = a.create(&[("fromA", &format!("A{i}"))]).await;
        a.until_server_has(&doc).await;
        docs.push(doc);
    }
    for (i, doc_a) in docs.iter().enumerate() {
        let doc_b = b.find(doc_a.document_id()).await;
        assert_eq!(
            get(&doc_b, "fromA").as_deref(),
            Some(format!("A{i}").as_str())
        );
        put(&doc_b, "fromB", &format!("B{i}"));
        put(doc_a, "fromA2", &format!("A{i}'"));
    }
    for (i, doc_a) in docs.iter().enumerate() {
        let doc_b = b.find(doc_a.document_id()).await;
        converged(
            doc_a,
            &doc_b,
            &[
                ("fromA", &format!("A{i}")),
                ("fromB", &format!("B{i}")),
                ("fromA2", &format!("A{i}'")),
            ],
        )
        .await;
    }
    a.stop().await;
    b.stop().await;
}

/// A creates and edits a document before it ever connects; once A is online, B finds it.
pub async fn document_created_offline_reaches_others(server: &Endpoints) {
    let mut a = Client::offline().await;
    let doc_a = a.create(&[("status", "draft")]).await;
    put(&doc_a, "note", "captured offline");

    a.connect(&server.a).await;
    a.until_server_has(&doc_a).await;

    let b = Client::online(&server.b).await;
    let doc_b = b.find(doc_a.document_id()).await;
    put(&doc_b, "reviewed", "yes");
    converged(
        &doc_a,
        &doc_b,
        &[
            ("status", "draft"),
            ("note", "captured offline"),
            ("reviewed", "yes"),
        ],
    )
    .await;
    a.stop().await;
    b.stop().await;
}

/// A and B share a document; B drops its connection (its repo keeps running); both edit, on
/// different keys and on the same key; B reconnects; both converge to identical heads.
pub async fn concurrent_edits_merge_after_reconnect(server: &Endpoints) {
    let a = Client::online(&server.a).await;
    let mut b = Client::online(&server.b).await;
    let (doc_a, doc_b) = shared_document(&a, &b).await;

    b.disconnect();
    edit_apart(&doc_a, &doc_b);
    a.until_server_has(&doc_a).await;
    b.connect(&server.b).await;

    converged_after_edits_apart(&doc_a, &doc_b).await;
    a.stop().await;
    b.stop().await;
}

/// As [`concurrent_edits_merge_after_reconnect`], but B's process goes away: its repo stops,
/// and a new repo loads the document back from B's storage directory, edits it offline and
/// then connects.
pub async fn concurrent_edits_merge_after_restart(server: &Endpoints) {
    let a = Client::online(&server.a).await;
    let b = Client::online(&server.b).await;
    let (doc_a, doc_b) = shared_document(&a, &b).await;
    let id = doc_b.document_id().clone();
    drop(doc_b);
    let mut b = b.restart().await;

    let doc_b = b.find(&id).await;
    edit_apart(&doc_a, &doc_b);
    a.until_server_has(&doc_a).await;
    b.connect(&server.b).await;

    converged_after_edits_apart(&doc_a, &doc_b).await;
    a.stop().await;
    b.stop().await;
}

/// A document that A created, and that B has found and synced.
async fn shared_document(a: &Client, b: &Client) -> (DocHandle, DocHandle) {
    let doc_a = a.create(&[("title", "shared")]).await;
    a.until_server_has(&doc_a).await;
    let doc_b = b.find(doc_a.document_id()).await;
    converged(&doc_a, &doc_b, &[("title", "shared")]).await;
    (doc_a, doc_b)
}

/// Concurrent edits while B is offline: a key each, and one key both write.
fn edit_apart(doc_a: &DocHandle, doc_b: &DocHandle) {
    put(doc_a, "onlyA", "A");
    put(doc_a, "both", "A");
    put(doc_b, "onlyB", "B");
    put(doc_b, "both", "B");
}

async fn converged_after_edits_apart(doc_a: &DocHandle, doc_b: &DocHandle) {
    converged(
        doc_a,
        doc_b,
        &[("title", "shared"), ("onlyA", "A"), ("onlyB", "B")],
    )
    .await;
    // The conflict resolves the same way on both sides, to one of the two writes.
    let both = get(doc_a, "both");
    assert_eq!(both, get(doc_b, "both"));
    assert!(matches!(both.as_deref(), Some("A" | "B")), "{both:?}");
}

// ---------------------------------------------------------------------------------------------
// A samod client

/// A samod peer: a repo over its own storage directory and, while online, a dialer.
pub struct Client {
    storage: TempDir,
    repo: Repo,
    dialer: Option<DialerHandle<Infallible>>,
}

impl Client {
    /// A client that has not connected to anything.
    pub async fn offline() -> Self {
        let storage = TempDir::new().expect("client storage directory");
        let repo = load_client_repo(storage.path()).await;
        Self {
            storage,
            repo,
            dialer: None,
        }
    }

    /// A client connected to `server`.
    pub async fn online(server: &Endpoint) -> Self {
        let mut client = Self::offline().await;
        client.connect(server).await;
        client
    }

    /// Dials `server` and waits for the handshake.
    pub async fn connect(&mut self, server: &Endpoint) {
        let backoff = BackoffConfig {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            max_retries: None,
        };
        let dialer = self
            .repo
            .dial(backoff, Arc::new(server.dialer()))
            .expect("repo running");
        within("the handshake with the server", dialer.established())
            .await
            .expect("dialer retries forever");
        self.dialer = Some(dialer);
    }

    /// Closes the connection; the repo and its documents stay.
    pub fn disconnect(&mut self) {
        if let Some(dialer) = self.dialer.take() {
            dialer.close();
        }
    }

    /// Stops the repo (flushing storage) and loads a new one over the same directory, offline.
    pub async fn restart(mut self) -> Self {
        self.disconnect();
        self.repo.stop().await;
        let repo = load_client_repo(self.storage.path()).await;
        Self { repo, ..self }
    }

    /// Flushes storage and stops.
    pub async fn stop(self) {
        self.repo.stop().await;
    }

    /// A new field-visit document in the home region holding `fields` as scalar strings at the
    /// root.
    pub async fn create(&self, fields: &[(&str, &str)]) -> DocHandle {
        self.create_in(HOME_DISTRICT, HOME_VILLAGE, fields).await
    }

    /// A new field-visit document in `district` and `village` holding `fields` as scalar strings
    /// at the root. Schema, region and fields are one change, the document's first: Jemput
    /// decides from it whether the document may exist.
    pub async fn create_in(
        &self,
        district: &str,
        village: &str,
        fields: &[(&str, &str)],
    ) -> DocHandle {
        // A fresh random actor, used by this repo alone (samod gives every document it loads or
        // fetches a fresh one too): Jemput binds an actor to the first device that sends it.
        let mut doc = automerge::Automerge::new();
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(automerge::ROOT, "schema", VISIT_SCHEMA)?;
            let region = tx.put_object(automerge::ROOT, "region", ObjType::Map)?;
            tx.put(&region, "district", district)?;
            tx.put(&region, "village", village)?;
            for (key, value) in fields {
                tx.put(automerge::ROOT, *key, *value)?;
            }
            Ok(())
        })
        .expect("initial content");
        within("creating a document", self.repo.create(doc))
            .await
            .expect("repo running")
    }

    /// The document, from storage or from the server; fails if it is unavailable.
    pub async fn find(&self, id: &DocumentId) -> DocHandle {
        self.try_find(id)
            .await
            .unwrap_or_else(|| panic!("{id} unavailable"))
    }

    /// The document, or `None` once storage and every connected server say it is unavailable.
    pub async fn try_find(&self, id: &DocumentId) -> Option<DocHandle> {
        within(&format!("finding {id}"), self.repo.find(id.clone()))
            .await
            .expect("repo running")
    }

    /// Waits until the server has acknowledged every change this client has of `doc`.
    pub async fn until_server_has(&self, doc: &DocHandle) {
        let connection = self
            .dialer
            .as_ref()
            .and_then(DialerHandle::connection_id)
            .expect("client online");
        let what = format!("the server acknowledging {}", doc.document_id());
        within(&what, doc.they_have_our_changes(connection)).await;
    }
}

async fn load_client_repo(dir: &Path) -> Repo {
    Repo::build_tokio()
        .with_storage(samod::storage::TokioFilesystemStorage::new(dir))
        .load()
        .await
}

// ---------------------------------------------------------------------------------------------
// Documents and deadlines

/// Sets a root key to a scalar string.
pub fn put(doc: &DocHandle, key: &str, value: &str) {
    doc.with_document(|d| {
        d.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(automerge::ROOT, key, value)?;
            Ok(())
        })
        .map(drop)
        .map_err(|failure| failure.error)
    })
    .expect("local edit");
}

/// A root key's value, if it is a scalar string.
pub fn get(doc: &DocHandle, key: &str) -> Option<String> {
    doc.with_document(|d| match d.get(automerge::ROOT, key) {
        Ok(Some((Value::Scalar(value), _))) => match value.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    })
}

fn heads(doc: &DocHandle) -> Vec<ChangeHash> {
    doc.with_document(|d| d.get_heads())
}

/// Waits until both sides have the same heads and every `expected` key on both.
pub async fn converged(a: &DocHandle, b: &DocHandle, expected: &[(&str, &str)]) {
    let what = format!("{} converging", a.document_id());
    eventually(&what, || {
        let (heads_a, heads_b) = (heads(a), heads(b));
        if heads_a != heads_b {
            return Err(format!("heads differ: A {heads_a:?}, B {heads_b:?}"));
        }
        for (key, value) in expected {
            for (side, doc) in [("A", a), ("B", b)] {
                let seen = get(doc, key);
                if seen.as_deref() != Some(*value) {
                    return Err(format!("{side} has {key} = {seen:?}, not {value:?}"));
                }
            }
        }
        Ok(())
    })
    .await;
}

/// Polls `probe` until it holds; fails with its last complaint once [`DEADLINE`] has passed.
pub async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(why) if Instant::now() >= deadline => {
                panic!("{what}: not within {DEADLINE:?}: {why}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// `future`'s output, or a failure naming `what` once [`DEADLINE`] has passed.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}
