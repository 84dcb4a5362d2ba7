//! The scenarios against samod itself, served in-process as the `samod-server` example serves
//! it: a scenario that fails here is wrong, not the server under test.

use samod::Repo;
use tempfile::TempDir;
use tokio::task::JoinHandle;

use super::{Endpoint, Endpoints, samod_server};

/// A samod sync server on a random loopback port; aborted when dropped.
pub struct SamodServer {
    /// Clients A and B, each sending a token of its own, which samod ignores.
    pub endpoints: Endpoints,
    task: JoinHandle<()>,
    _repo: Repo,
    _data: TempDir,
}

impl Drop for SamodServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts samod over a fresh storage directory.
pub async fn spawn_samod_server() -> SamodServer {
    let data = TempDir::new().expect("server storage directory");
    let repo = samod_server::load_repo(data.path()).await;
    let app = samod_server::router(&repo).expect("repo running");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("bound address").port();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("samod server");
    });
    let endpoint = Endpoint::new(&format!("ws://127.0.0.1:{port}/v1/ws"));
    SamodServer {
        endpoints: Endpoints::unauthenticated(&endpoint),
        task,
        _repo: repo,
        _data: data,
    }
}

/// One samod server per scenario.
async fn servers(_test: &str) -> [SamodServer; 1] {
    [spawn_samod_server().await]
}

scenario_tests!(servers);
