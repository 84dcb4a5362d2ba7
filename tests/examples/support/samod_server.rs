//! samod 0.16 set up as a sync server: filesystem storage, axum WebSocket endpoints.
//!
//! The `samod-server` example serves it as a process (the benchmark's comparison server); the e2e
//! tests include this file with `#[path]` and serve it in-process to check the interop scenarios
//! themselves against the reference implementation.

use std::path::Path;

use axum::{
    Router,
    extract::{State, WebSocketUpgrade},
    response::Response,
    routing::get,
};
use samod::{AcceptorHandle, Repo, ShareConfig, Stopped, Url, storage::TokioFilesystemStorage};

/// Loads a repo over the automerge-repo filesystem layout under `data_dir`.
///
/// Clients may read and write every document, and fetch any document they ask for, but the
/// server announces nothing on its own: it does not push each stored document to every peer
/// that connects, as automerge-repo's sync server (`sharePolicy` false) does not.
pub async fn load_repo(data_dir: &Path) -> Repo {
    Repo::build_tokio()
        .with_storage(TokioFilesystemStorage::new(data_dir))
        .with_share_policy(ShareConfig::read_write().with_announce(false))
        .load()
        .await
}

/// The HTTP routes: WebSocket upgrades at `/` (automerge-repo's sync server) and `/v1/ws`
/// (Jemput's path), and `/healthz`.
pub fn router(repo: &Repo) -> Result<Router, Stopped> {
    // Only names the acceptor in samod's logs.
    let url = Url::parse("ws://samod-server/v1/ws").expect("a constant, valid URL");
    let acceptor = repo.make_acceptor(url)?;
    Ok(Router::new()
        .route("/", get(upgrade))
        .route("/v1/ws", get(upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(acceptor))
}

async fn upgrade(State(acceptor): State<AcceptorHandle>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| async move {
        // The repo's IO loop drives the connection from here on; `Err` only when it has stopped.
        if acceptor.accept_axum(socket, None).is_err() {
            eprintln!("samod repo stopped; connection dropped");
        }
    })
}
