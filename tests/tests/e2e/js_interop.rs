//! Unchanged JS automerge-repo 2.5.6 clients (tests/js) syncing through `jemput serve`, on
//! SQLite and on PostgreSQL.

use std::time::Duration;

use jemput_tests::node::{js_peers_available, run_script};
use jemput_tests::server::free_local_address;
use jemput_tests::{TestDatabase, TestServer, wait_until};

use crate::JEMPUT;

const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

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
        let url = server.ws_url();
        script(
            "converge.mjs",
            &["--url", &url, "--docs", "4", "--changes", "5"],
        )
        .await;
        // A second client asking while the first is still uploading must not be told
        // `doc-unavailable`.
        script(
            "converge.mjs",
            &["--url", &url, "--docs", "4", "--find-early"],
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
        let url = server.ws_url();
        script(
            "offline-create.mjs",
            &["--phase", "sync", "--state-dir", state_dir, "--url", &url],
        )
        .await;
        server.kill().await;
        server.restart().await;
        let url = server.ws_url();
        script(
            "offline-create.mjs",
            &["--phase", "verify", "--state-dir", state_dir, "--url", &url],
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
    let address = free_local_address();
    let url = format!("ws://{address}/v1/ws");
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
    let _server = TestServer::start_on(JEMPUT, TestDatabase::sqlite(), &[], &address).await;
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
        let url = server.ws_url();
        for mode in ["new-repo", "same-repo"] {
            script(
                "disconnected-edits.mjs",
                &["--url", &url, "--reconnect", mode],
            )
            .await;
        }
    }
}
