//! The SDK against the real `jemput` server: enrolment over HTTP, then batch sync.
//!
//! Needs the server binary (`jemput`, or the tests crate's `jemput-under-test`) next to this
//! test's target directory, or its path in `JEMPUT_SERVER_BIN`; build it with
//! `cargo build -p jemput-server` (or `cargo test --workspace` builds it). Skipped, saying so,
//! when the binary is absent or the server does not serve `POST /v1/sync` yet (404).

use std::path::PathBuf;
use std::time::Duration;

use jemput_client_sdk::client::{Applicant, NewApplication};
use jemput_client_sdk::{Client, SyncError, SyncOptions, enrol, http_client};
use jemput_domain::{FieldValue, Nik, RegionCode, ServiceCode, jakarta_today};
use jemput_tests::provision::{HOME_DISTRICT, HOME_VILLAGE};
use jemput_tests::{TestDatabase, TestServer};

fn server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("JEMPUT_SERVER_BIN") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    ["jemput-under-test", "jemput"]
        .iter()
        .map(|name| profile_dir.join(name))
        .find(|path| path.is_file())
}

fn application() -> NewApplication {
    let today = jakarta_today(1_780_000_000);
    NewApplication {
        service: ServiceCode::parse("DUKCAPIL-KTP-EL-BARU").expect("service"),
        village: RegionCode::parse(HOME_VILLAGE).expect("village"),
        applicant: Applicant {
            nik: Nik::parse("3471011503850001", today).expect("nik"),
            kk: None,
            name: "Siti Aminah".into(),
            birth_date: None,
            sex: None,
            phone: None,
            address: None,
        },
        fields: [
            ("recording_status", FieldValue::Text("belum_rekam".into())),
            ("marital_status", FieldValue::Text("kawin".into())),
            ("home_recording_needed", FieldValue::Boolean(false)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        consent_basis: None,
        visit: None,
    }
}

#[tokio::test]
async fn enrol_capture_and_sync_against_the_real_server() {
    let Some(binary) = server_binary() else {
        eprintln!(
            "SKIPPED: no jemput server binary found; build it (cargo build -p jemput-server) or set JEMPUT_SERVER_BIN"
        );
        return;
    };
    let server =
        TestServer::start(binary.to_str().expect("utf-8 path"), TestDatabase::sqlite()).await;
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
        .create_application(application())
        .await
        .expect("capture");
    client.submit(created.id).await.expect("submit");
    let report = match client.sync(&http, &SyncOptions::default()).await {
        Err(SyncError::Unexpected { status: 404, .. }) => {
            eprintln!("SKIPPED: the server does not serve POST /v1/sync yet (404)");
            return;
        }
        other => other.expect("sync"),
    };
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
        eprintln!(
            "SKIPPED: no jemput server binary found; build it (cargo build -p jemput-server) or set JEMPUT_SERVER_BIN"
        );
        return;
    };
    let certs = tempfile::tempdir().expect("temp dir");
    let status = std::process::Command::new(&binary)
        .args(["dev-cert", "--out-dir"])
        .arg(certs.path())
        .status()
        .expect("run jemput dev-cert");
    assert!(status.success());
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    let mut server = TestServer::start_with_args(
        binary.to_str().expect("utf-8 path"),
        TestDatabase::sqlite(),
        &[
            "--tls-cert",
            cert.to_str().expect("utf-8 path"),
            "--tls-key",
            key.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    assert!(server.base_url().starts_with("https://"));
    server.trust_certificate(&cert);
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
        .create_application(application())
        .await
        .expect("capture");
    match client.sync(&http, &SyncOptions::default()).await {
        Err(SyncError::Unexpected { status: 404, .. }) => {
            eprintln!("SKIPPED: the server does not serve POST /v1/sync yet (404)");
        }
        other => {
            let report = other.expect("sync over https");
            assert_eq!(report.acknowledged, vec![created.id], "{report:?}");
        }
    }
}
