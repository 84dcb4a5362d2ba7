//! Operations: health, readiness, metrics, TLS, graceful shutdown, keepalive.

use std::time::{Duration, Instant};

use automerge::Automerge;
use automerge::sync;
use jemput_tests::{RawPeer, TestDatabase, TestServer};

use crate::JEMPUT;
use crate::ws_protocol::{doc_with, new_document_id, officer_url};

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
    assert_eq!(server.get("/healthz").await.0, 200);
    assert_eq!(server.get("/readyz").await.0, 200);
    let url = officer_url(&server, "petugas").await;
    let mut peer = RawPeer::joined(&url, "peer-metrics", None).await;
    peer.sync_document(
        new_document_id(),
        &mut doc_with("k", "v"),
        &mut sync::State::new(),
    )
    .await;
    let (status, body) = server.get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "jemput_websocket_connections",
        "jemput_documents_in_memory",
        "jemput_frames_in_total",
        "jemput_frames_out_total",
        "jemput_bytes_in_total",
        "jemput_bytes_out_total",
        "jemput_storage_write_seconds",
        "jemput_changes_applied_total",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully_and_keeps_what_was_acknowledged() {
    let mut server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
    let id = new_document_id();
    let url = officer_url(&server, "petugas").await;
    let mut peer = RawPeer::joined(&url, "peer-shutdown", Some("storage-1")).await;
    let mut doc = doc_with("before", "shutdown");
    peer.sync_document(id, &mut doc, &mut sync::State::new())
        .await;
    assert!(
        server.stop().await,
        "jemput exited with failure after SIGTERM"
    );
    server.restart().await;
    let url = officer_url(&server, "pembaca").await;
    let mut reader = RawPeer::joined(&url, "peer-reader", None).await;
    let mut copy = Automerge::new();
    reader
        .sync_document(id, &mut copy, &mut sync::State::new())
        .await;
    assert_eq!(copy.get_heads(), doc.get_heads());
}

#[tokio::test]
async fn a_silent_peer_is_dropped_but_one_still_sending_is_kept() {
    let server = TestServer::start_with_args(
        JEMPUT,
        TestDatabase::sqlite(),
        &["--idle-timeout-secs", "2", "--ping-interval-secs", "1"],
    )
    .await;
    let url = officer_url(&server, "petugas").await;

    // Never reads (so never answers pings), but keeps sending: must not be cut.
    let mut busy = RawPeer::joined(&url, "peer-busy-uplink", None).await;
    let id = new_document_id();
    let mut doc = doc_with("n", "0");
    let mut state = sync::State::new();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(5) {
        n += 1;
        crate::ws_protocol::put(&mut doc, "n", &n.to_string());
        let data = automerge::sync::SyncDoc::generate_sync_message(&doc, &mut sync::State::new())
            .expect("message")
            .encode();
        let message = busy.sync_message("sync", id, data);
        busy.send(&message).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    busy.sync_document(id, &mut doc, &mut state).await;

    // Sends nothing and reads nothing: dropped after the idle timeout.
    let mut silent = RawPeer::joined(&url, "peer-silent", None).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    silent.expect_closed().await;
}

#[tokio::test]
async fn serves_wss_with_a_dev_certificate() {
    let (server, certificate) = TestServer::start_tls(JEMPUT, TestDatabase::sqlite()).await;
    let cert = certificate.cert.clone();
    assert!(server.ws_url().starts_with("wss://"));
    let connector = jemput_tests::tls::connector_trusting(&cert);
    let officer = server
        .officer("petugas", &[jemput_tests::provision::HOME_DISTRICT])
        .await;
    let url = server.ws_url_for(officer.token());
    let mut peer = RawPeer::connect_tls(&url, "peer-tls", connector).await;
    peer.join(None).await;
    peer.sync_document(
        new_document_id(),
        &mut doc_with("secure", "yes"),
        &mut sync::State::new(),
    )
    .await;
}

fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(name) && !line.starts_with('#'))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn idle_documents_leave_memory_and_come_back_on_demand() {
    let server = TestServer::start_with_args(
        JEMPUT,
        TestDatabase::sqlite(),
        &["--document-idle-secs", "1"],
    )
    .await;
    let url = officer_url(&server, "petugas").await;
    let mut peer = RawPeer::joined(&url, "peer-evict", Some("storage-evict")).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = new_document_id();
        let mut doc = doc_with("i", &i.to_string());
        peer.sync_document(id, &mut doc, &mut sync::State::new())
            .await;
        ids.push((id, doc));
    }
    jemput_tests::wait_until(Duration::from_secs(20), "documents to leave memory", || {
        let server = &server;
        async move {
            let (_, body) = server.get("/metrics").await;
            gauge(&body, "jemput_documents_in_memory") == Some(0.0)
        }
    })
    .await;
    // Still served from storage, and still followed: a new reader gets everything.
    let reader_url = officer_url(&server, "pembaca").await;
    let mut reader = RawPeer::joined(&reader_url, "peer-evict-reader", None).await;
    for (id, doc) in &ids {
        let mut copy = Automerge::new();
        reader
            .sync_document(*id, &mut copy, &mut sync::State::new())
            .await;
        assert_eq!(copy.get_heads(), doc.get_heads());
    }
    // A follower whose document left memory still gets pushed a later change.
    let (first, doc) = &ids[0];
    let mut edited = doc.fork();
    crate::ws_protocol::put(&mut edited, "later", "edit");
    reader
        .sync_document(*first, &mut edited, &mut sync::State::new())
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no push after eviction");
        match peer.recv().await {
            Some(jemput_sync_protocol::Message::Sync(m)) if m.document_id == *first => break,
            Some(_) => continue,
            None => panic!("connection closed"),
        }
    }
}
