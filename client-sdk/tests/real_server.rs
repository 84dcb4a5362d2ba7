//! The SDK against the real `jemput` server: enrolment over HTTP, then batch sync.
//!
//! Needs the server binary (`jemput`, or the tests crate's `jemput-under-test`) next to this
//! test's target directory, or its path in `JEMPUT_SERVER_BIN`; build it with
//! `cargo build -p jemput-server` (or `cargo test --workspace` builds it). Skipped, saying so,
//! when the binary is absent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jemput_client_sdk::{Client, SyncOptions, SyncTransport, TransportStats, enrol, http_client};
use jemput_tests::provision::{HOME_DISTRICT, ktp_application, sample_application};
use jemput_tests::tls_session::{counter_sum, metrics_text};
use jemput_tests::{DevCertificate, TestDatabase, TestServer};

/// The server binary's path, or `None` after saying the test is skipped.
fn server_binary() -> Option<String> {
    let found = std::env::var_os("JEMPUT_SERVER_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            let profile_dir = exe.parent()?.parent()?;
            ["jemput-under-test", "jemput"]
                .iter()
                .map(|name| profile_dir.join(name))
                .find(|path| path.is_file())
        });
    if found.is_none() {
        eprintln!(
            "SKIPPED: no jemput server binary found; build it (cargo build -p jemput-server) or set JEMPUT_SERVER_BIN"
        );
    }
    Some(found?.to_str().expect("utf-8 path").to_owned())
}

#[tokio::test]
async fn enrol_capture_and_sync_against_the_real_server() {
    let Some(binary) = server_binary() else {
        return;
    };
    let server = TestServer::start(&binary, TestDatabase::sqlite()).await;
    let officer = server
        .person("budi", "officer", &[HOME_DISTRICT], &[])
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = Client::open(&dir.path().join("field.db"))
        .await
        .expect("open");
    let http = http_client(None, Duration::from_secs(30)).expect("http");
    let enrolment = enrol(
        &client,
        &http,
        server.base_url(),
        "budi",
        &officer.password,
        "HP uji",
    )
    .await
    .expect("enrol over HTTP");
    assert!(!enrolment.actor_ids.is_empty());
    assert_eq!(enrolment.regions, vec![HOME_DISTRICT.to_owned()]);

    let created = client
        .create_application(sample_application())
        .await
        .expect("capture");
    client.submit(created.id).await.expect("submit");
    let report = client
        .sync(&http, &SyncOptions::default())
        .await
        .expect("sync");
    eprintln!("first sync against the real server: {report:?}");
    assert!(report.complete, "{report:?}");
    assert_eq!(report.acknowledged, vec![created.id], "{report:?}");
    assert!(report.refused.is_empty(), "{report:?}");

    // A second device of another officer in the same district receives it.
    let other = server
        .person("sari", "officer", &[HOME_DISTRICT], &[])
        .await;
    let client2 = Client::open(&dir.path().join("field2.db"))
        .await
        .expect("open");
    enrol(
        &client2,
        &http,
        server.base_url(),
        "sari",
        &other.password,
        "HP 2",
    )
    .await
    .expect("enrol");
    let report = client2
        .sync(&http, &SyncOptions::default())
        .await
        .expect("sync 2");
    assert!(report.updated.contains(&created.id), "{report:?}");
    let view = client2.application(created.id).await.expect("view");
    assert_eq!(view.tracking_code, created.tracking_code);
    let idle = client
        .sync(&http, &SyncOptions::default())
        .await
        .expect("idle");
    assert_eq!((idle.round_trips, idle.pushed), (1, 0));
}

#[tokio::test]
async fn syncs_over_https_trusting_a_dev_certificate() {
    let Some(binary) = server_binary() else {
        return;
    };
    let (server, certificate) = TestServer::start_tls(&binary, TestDatabase::sqlite()).await;
    let cert = certificate.cert.clone();
    let officer = server
        .person("budi", "officer", &[HOME_DISTRICT], &[])
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = Client::open(&dir.path().join("field.db"))
        .await
        .expect("open");

    // Without the dev certificate the handshake fails; with it, enrolment and sync work.
    let untrusting = http_client(None, Duration::from_secs(30)).expect("http");
    assert!(
        enrol(
            &client,
            &untrusting,
            server.base_url(),
            "budi",
            &officer.password,
            "HP"
        )
        .await
        .is_err()
    );
    let http = http_client(Some(&cert), Duration::from_secs(30)).expect("http");
    enrol(
        &client,
        &http,
        server.base_url(),
        "budi",
        &officer.password,
        "HP",
    )
    .await
    .expect("enrol over https");
    let created = client
        .create_application(sample_application())
        .await
        .expect("capture");
    let report = client
        .sync(&http, &SyncOptions::default())
        .await
        .expect("sync over https");
    assert_eq!(report.acknowledged, vec![created.id], "{report:?}");
}

/// The server's count of resumed handshakes whose early data it accepted (`/metrics`, fetched
/// on a full handshake of its own).
async fn early_data_accepted_on_server(server: &TestServer, cert: &Path) -> f64 {
    let metrics = metrics_text(&server.address(), cert)
        .await
        .expect("/metrics");
    counter_sum(
        &metrics,
        "jemput_tls_handshakes_total",
        &["kind=\"resumed\"", "early_data=\"accepted\""],
    )
}

/// What changed in a transport's counters.
fn delta(after: TransportStats, before: TransportStats) -> TransportStats {
    TransportStats {
        connections: after.connections - before.connections,
        full_handshakes: after.full_handshakes - before.full_handshakes,
        resumed_handshakes: after.resumed_handshakes - before.resumed_handshakes,
        early_data_sent: after.early_data_sent - before.early_data_sent,
        early_data_accepted: after.early_data_accepted - before.early_data_accepted,
        requests: after.requests - before.requests,
        reused: after.reused - before.reused,
    }
}

#[tokio::test]
async fn sync_transport_resumes_with_0rtt_over_https() {
    let Some(binary) = server_binary() else {
        return;
    };
    let (server, certificate) = TestServer::start_tls(&binary, TestDatabase::sqlite()).await;
    let cert = certificate.cert.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = http_client(Some(&cert), Duration::from_secs(30)).expect("http");
    let client = enrolled_device(&server, &http, dir.path(), "budi").await;

    // Without the dev certificate the transport's handshake fails.
    let untrusting = SyncTransport::new(None, Duration::from_secs(10)).expect("transport");
    let error = untrusting
        .post(
            &format!("{}/v1/sync", server.base_url()),
            "t",
            vec![],
            false,
        )
        .await
        .expect_err("untrusted certificate");
    assert!(error.to_string().starts_with("TLS"), "{error}");

    let transport =
        Arc::new(SyncTransport::new(Some(&cert), Duration::from_secs(30)).expect("transport"));
    let options = SyncOptions {
        transport: Some(Arc::clone(&transport)),
        ..SyncOptions::default()
    };

    // Session 1: a full handshake (no ticket yet); the kept connection serves a second sync.
    let first = client
        .create_application(sample_application())
        .await
        .expect("capture");
    let report = client.sync(&http, &options).await.expect("sync 1");
    assert!(report.complete, "{report:?}");
    assert_eq!(report.acknowledged, vec![first.id], "{report:?}");
    let s = transport.stats();
    assert_eq!(
        (
            s.connections,
            s.full_handshakes,
            s.resumed_handshakes,
            s.early_data_sent
        ),
        (1, 1, 0, 0),
        "{s:?}"
    );
    let idle = client.sync(&http, &options).await.expect("idle sync");
    assert_eq!((idle.round_trips, idle.pushed), (1, 0), "{idle:?}");
    let s2 = delta(transport.stats(), s);
    assert_eq!(
        (s2.connections, s2.reused),
        (0, 1),
        "kept connection: {s2:?}"
    );

    // Session 2, on a new connection: the session resumes and the request goes as early data.
    let on_server_before = early_data_accepted_on_server(&server, &cert).await;
    transport.disconnect().await;
    let second = client
        .create_application(ktp_application("3471015204900002", "Dewi Lestari"))
        .await
        .expect("capture 2");
    let before = transport.stats();
    let report = client.sync(&http, &options).await.expect("sync 2");
    assert!(report.complete, "{report:?}");
    assert_eq!(report.acknowledged, vec![second.id], "{report:?}");
    assert_eq!(report.round_trips, 1, "{report:?}");
    let d = delta(transport.stats(), before);
    assert_eq!(
        (
            d.connections,
            d.full_handshakes,
            d.resumed_handshakes,
            d.early_data_sent,
            d.early_data_accepted
        ),
        (1, 0, 1, 1, 1),
        "the second session's connection resumes with 0-RTT: {d:?}"
    );
    assert_eq!(
        early_data_accepted_on_server(&server, &cert).await - on_server_before,
        1.0,
        "the server counts one resumed handshake with early data accepted"
    );

    // Session 3: the ticket of the 0-RTT connection arrives after its response; the kept
    // connection's task reads it, so a later cold start resumes with 0-RTT again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    transport.disconnect().await;
    let before = transport.stats();
    let idle = client.sync(&http, &options).await.expect("sync 3");
    assert!(idle.complete, "{idle:?}");
    let d = delta(transport.stats(), before);
    assert_eq!(
        (d.connections, d.resumed_handshakes, d.early_data_accepted),
        (1, 1, 1),
        "{d:?}"
    );

    // The data converged: another officer's device in the district receives both.
    let client2 = enrolled_device(&server, &http, dir.path(), "sari").await;
    let report = client2.sync(&http, &options).await.expect("sync other");
    assert!(report.complete, "{report:?}");
    for id in [first.id, second.id] {
        assert!(report.updated.contains(&id), "{id} missing: {report:?}");
        let view = client2.application(id).await.expect("view");
        let mine = client.application(id).await.expect("view mine");
        assert_eq!(view.tracking_code, mine.tracking_code);
    }
}

/// A device enrolled with `server` as a new officer `username`.
async fn enrolled_device(
    server: &TestServer,
    http: &reqwest::Client,
    dir: &Path,
    username: &str,
) -> Client {
    let officer = server
        .person(username, "officer", &[HOME_DISTRICT], &[])
        .await;
    let client = Client::open(&dir.join(format!("{username}.db")))
        .await
        .expect("open");
    enrol(
        &client,
        http,
        server.base_url(),
        username,
        &officer.password,
        "HP",
    )
    .await
    .expect("enrol");
    client
}

#[tokio::test]
async fn sync_transport_resends_early_data_the_server_rejects() {
    let Some(binary) = server_binary() else {
        return;
    };
    let certificate = DevCertificate::generate(&binary);
    let cert = certificate.cert.clone();
    // Two servers named `localhost`: a ticket of one is unknown to the other.
    let one = TestServer::start_tls_with(&binary, TestDatabase::sqlite(), &certificate).await;
    let two = TestServer::start_tls_with(&binary, TestDatabase::sqlite(), &certificate).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let http = http_client(Some(&cert), Duration::from_secs(30)).expect("http");
    let device_one = enrolled_device(&one, &http, dir.path(), "budi").await;
    let device_two = enrolled_device(&two, &http, dir.path(), "sari").await;
    let transport =
        Arc::new(SyncTransport::new(Some(&cert), Duration::from_secs(30)).expect("transport"));
    let options = SyncOptions {
        transport: Some(Arc::clone(&transport)),
        ..SyncOptions::default()
    };
    let report = device_one.sync(&http, &options).await.expect("sync one");
    assert!(report.complete, "{report:?}");

    // The ticket from server one goes to server two with early data: server two falls back
    // to a full handshake and rejects the early data, and the request is sent again after it.
    let created = device_two
        .create_application(sample_application())
        .await
        .expect("capture");
    let before = transport.stats();
    let report = device_two.sync(&http, &options).await.expect("sync two");
    assert!(report.complete, "{report:?}");
    assert_eq!(report.acknowledged, vec![created.id], "{report:?}");
    assert_eq!(report.round_trips, 1, "{report:?}");
    let d = delta(transport.stats(), before);
    assert_eq!(
        (
            d.connections,
            d.full_handshakes,
            d.early_data_sent,
            d.early_data_accepted
        ),
        (1, 1, 1, 0),
        "early data offered, rejected, and the request resent: {d:?}"
    );
    assert_eq!(early_data_accepted_on_server(&two, &cert).await, 0.0);
}
