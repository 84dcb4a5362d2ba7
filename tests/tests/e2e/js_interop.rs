//! Unchanged JS automerge-repo 2.5.6 clients (tests/js) syncing through `jemput serve`, on
//! SQLite and on PostgreSQL.

use std::time::Duration;

use jemput_tests::node::{js_peers_available, run_script};
use jemput_tests::provision::HOME_DISTRICT;
use jemput_tests::server::free_local_address;
use jemput_tests::{TestDatabase, TestServer, wait_until};

use crate::JEMPUT;

const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

/// WebSocket URLs of two officers of the home district, each with an enrolled device: JS
/// client A uses the first, B (and any fresh client) the second.
async fn two_officers(server: &TestServer) -> (String, String) {
    let a = server.officer("js-a", &[HOME_DISTRICT]).await;
    let b = server.officer("js-b", &[HOME_DISTRICT]).await;
    (server.ws_url_for(a.token()), server.ws_url_for(b.token()))
}

async fn script(name: &str, args: &[&str]) {
    let output = run_script(name, args, SCRIPT_LIMIT).await;
    assert!(
        output.success,
        "node {name} {args:?} failed\nstdout: {}\nstderr: {}",
        output.stdout, output.stderr
    );
}

#[tokio::test]
async fn js_clients_create_find_and_converge() {
    if !js_peers_available("js converge") {
        return;
    }
    for database in TestDatabase::every("js converge").await {
        let server = TestServer::start(JEMPUT, database).await;
        let (url, url_b) = two_officers(&server).await;
        script(
            "converge.mjs",
            &[
                "--url",
                &url,
                "--url-b",
                &url_b,
                "--docs",
                "4",
                "--changes",
                "5",
            ],
        )
        .await;
        // A second client asking while the first is still uploading must not be told
        // `doc-unavailable`.
        script(
            "converge.mjs",
            &[
                "--url",
                &url,
                "--url-b",
                &url_b,
                "--docs",
                "4",
                "--find-early",
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn a_document_created_offline_in_js_syncs_and_survives_a_server_kill() {
    if !js_peers_available("js offline create") {
        return;
    }
    for database in TestDatabase::every("js offline create").await {
        let state = tempfile::tempdir().expect("tempdir");
        let state_dir = state.path().to_str().expect("utf-8 path");
        script(
            "offline-create.mjs",
            &["--phase", "create", "--state-dir", state_dir],
        )
        .await;

        let mut server = TestServer::start(JEMPUT, database).await;
        let (url, url_b) = two_officers(&server).await;
        script(
            "offline-create.mjs",
            &[
                "--phase",
                "sync",
                "--state-dir",
                state_dir,
                "--url",
                &url,
                "--url-b",
                &url_b,
            ],
        )
        .await;
        server.kill().await;
        server.restart().await;
        // Same address and database after the restart, so the same URLs.
        script(
            "offline-create.mjs",
            &[
                "--phase",
                "verify",
                "--state-dir",
                state_dir,
                "--url",
                &url,
                "--url-b",
                &url_b,
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn a_js_client_that_started_before_the_server_syncs_once_it_is_up() {
    if !js_peers_available("js create and wait") {
        return;
    }
    let state = tempfile::tempdir().expect("tempdir");
    let state_dir = state.path().to_str().expect("utf-8 path").to_owned();
    // Enrol the officers, then take the server down before the client starts.
    let address = free_local_address();
    let mut server = TestServer::start_on(JEMPUT, TestDatabase::sqlite(), &[], &address).await;
    let (url, url_b) = two_officers(&server).await;
    assert!(server.stop().await, "server stops cleanly");
    let client = tokio::spawn({
        let state_dir = state_dir.clone();
        async move {
            run_script(
                "offline-create.mjs",
                &[
                    "--phase",
                    "create-and-wait",
                    "--state-dir",
                    &state_dir,
                    "--url",
                    &url,
                    "--url-b",
                    &url_b,
                ],
                SCRIPT_LIMIT,
            )
            .await
        }
    });
    let state_file = state.path().join("state.json");
    wait_until(Duration::from_secs(60), "documents created offline", || {
        let exists = state_file.exists();
        async move { exists }
    })
    .await;
    server.restart().await;
    let output = client.await.expect("client task");
    assert!(
        output.success,
        "create-and-wait failed\nstdout: {}\nstderr: {}",
        output.stdout, output.stderr
    );
}

#[tokio::test]
async fn js_edits_made_while_disconnected_merge_on_reconnect() {
    if !js_peers_available("js disconnected edits") {
        return;
    }
    for database in TestDatabase::every("js disconnected edits").await {
        let server = TestServer::start(JEMPUT, database).await;
        let (url, url_b) = two_officers(&server).await;
        for mode in ["new-repo", "same-repo"] {
            script(
                "disconnected-edits.mjs",
                &["--url", &url, "--url-b", &url_b, "--reconnect", mode],
            )
            .await;
        }
    }
}
