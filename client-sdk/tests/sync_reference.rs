//! The sync engine end to end over real HTTP against the protocol crate's reference server
//! (`jemput_sync_protocol::batch::MemoryServer`, the reference the server crate's SQL driver
//! follows) behind a minimal axum `POST /v1/sync`: bearer token → device, gzip request
//! bodies, 400/422 for what `ExchangeError` says, and optionally lost replies.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ActorId, ROOT, ReadDoc};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jemput_client_sdk::client::NewVisit;
use jemput_client_sdk::{Client, Enrolment, SyncOptions, http_client};
use jemput_domain::RegionCode;
use jemput_sync_protocol::batch::memory::Verdict;
use jemput_sync_protocol::batch::{
    CompensationReason, ExchangeError, MemoryServer, RefusalReason, ServerConfig,
};
use jemput_tests::provision::sample_application;

struct Shared {
    server: MemoryServer,
    /// Replies to drop (the request is served, the device gets a 503 instead).
    drop_replies: usize,
    /// Requests to answer `425 Too Early` without serving them (as for TLS early data).
    too_early: usize,
    requests: usize,
    gzipped: usize,
    /// Request body sizes as received (before content decoding).
    wire_sizes: Vec<usize>,
}

type Handle = Arc<Mutex<Shared>>;

async fn sync(State(shared): State<Handle>, headers: HeaderMap, body: Bytes) -> Response {
    let device = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some("Bearer token-a") => 1,
        Some("Bearer token-b") => 2,
        _ => return StatusCode::UNAUTHORIZED.into_response(),
    };
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let wire_size = body.len();
    let body = if gzipped {
        let mut out = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(&body[..]);
        if std::io::Read::read_to_end(&mut decoder, &mut out).is_err() {
            return StatusCode::BAD_REQUEST.into_response();
        }
        out
    } else {
        body.to_vec()
    };
    let mut shared = shared.lock().expect("lock");
    if shared.too_early > 0 {
        shared.too_early -= 1;
        return StatusCode::TOO_EARLY.into_response();
    }
    shared.requests += 1;
    shared.gzipped += usize::from(gzipped);
    shared.wire_sizes.push(wire_size);
    match shared.server.handle(device, &body) {
        Ok(response) => {
            if shared.drop_replies > 0 {
                shared.drop_replies -= 1;
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            ([(header::CONTENT_TYPE, "application/cbor")], response).into_response()
        }
        Err(ExchangeError::Malformed(_)) => StatusCode::BAD_REQUEST.into_response(),
        Err(ExchangeError::KeyReused) => StatusCode::UNPROCESSABLE_ENTITY.into_response(),
    }
}

async fn serve(server: MemoryServer) -> (SocketAddr, Handle) {
    let shared = Arc::new(Mutex::new(Shared {
        server,
        drop_replies: 0,
        too_early: 0,
        requests: 0,
        gzipped: 0,
        wire_sizes: Vec::new(),
    }));
    let app = Router::new()
        .route("/v1/sync", post(sync))
        .with_state(Arc::clone(&shared));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, shared)
}

fn reference_server() -> MemoryServer {
    MemoryServer::new(ServerConfig::default(), ActorId::from(vec![0xff; 16]))
}

async fn device(
    dir: &tempfile::TempDir,
    name: &str,
    address: SocketAddr,
    token: &str,
    actor: u8,
) -> Client {
    let client = Client::open(&dir.path().join(format!("{name}.db")))
        .await
        .expect("open store");
    let enrolment = Enrolment {
        server_url: format!("http://{address}"),
        device_id: name.into(),
        device_token: token.into(),
        user_id: "7".into(),
        username: "budi".into(),
        regions: vec!["34.71.01".into()],
        actor_ids: vec![ActorId::from(vec![actor; 16])],
    };
    client
        .store()
        .save_enrolment(&enrolment, 0)
        .await
        .expect("enrol");
    client
}

fn options() -> SyncOptions {
    SyncOptions {
        backoff: Duration::from_millis(5),
        ..SyncOptions::default()
    }
}

fn http() -> reqwest::Client {
    http_client(None, Duration::from_secs(10)).expect("http client")
}

#[tokio::test]
async fn two_devices_converge_through_the_reference_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (address, shared) = serve(reference_server()).await;
    let a = device(&dir, "a", address, "token-a", 1).await;
    let b = device(&dir, "b", address, "token-b", 2).await;
    let http = http();

    let visit = a
        .create_visit(NewVisit {
            village: RegionCode::parse("34.71.01.1001").expect("village"),
            purpose: Some("home_visit".into()),
            notes: None,
        })
        .await
        .expect("visit");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            a.create_application(sample_application())
                .await
                .expect("capture")
                .id,
        );
    }
    a.submit(ids[0]).await.expect("submit");

    let report = a.sync(&http, &options()).await.expect("sync a");
    assert!(report.complete);
    assert_eq!(report.pushed, 4);
    assert_eq!(report.acknowledged.len(), 4);
    assert_eq!(report.exchanges, 1);
    assert_eq!(report.round_trips, 1);
    assert!(
        shared.lock().expect("lock").gzipped >= 1,
        "a large body is gzipped"
    );
    {
        let shared = shared.lock().expect("lock");
        for id in ids.iter().chain([&visit]) {
            let on_server = shared.server.document(id).expect("stored on the server");
            for change in on_server.get_changes(&[]) {
                assert_eq!(change.actor_id(), &ActorId::from(vec![1; 16]));
            }
        }
    }

    // Nothing changed: one small round trip.
    let idle = a.sync(&http, &options()).await.expect("idle sync");
    assert_eq!((idle.round_trips, idle.pushed), (1, 0));
    assert!(idle.bytes_sent + idle.bytes_received < 200, "{idle:?}");

    // The second device receives everything, whole.
    let report = b.sync(&http, &options()).await.expect("sync b");
    assert_eq!(report.updated.len(), 4);
    assert_eq!(b.list().await.expect("list").len(), 4);
    assert_eq!(
        b.application(ids[0]).await.expect("view").status.as_str(),
        "submitted"
    );

    // A supervisor's decision on the server reaches the device.
    shared.lock().expect("lock").server.edit(ids[0], |doc| {
        let mut tx = doc.transaction();
        tx.put(ROOT, "status", "in_review").expect("put");
        tx.commit();
    });
    let report = a.sync(&http, &options()).await.expect("sync a again");
    assert_eq!(report.updated, vec![ids[0]]);
    assert_eq!(
        a.application(ids[0]).await.expect("view").status.as_str(),
        "in_review"
    );

    // B edits, A receives; both end with the server's heads.
    b.set_applicant(ids[1], "phone", "0811111111")
        .await
        .expect("edit");
    b.sync(&http, &options()).await.expect("sync b");
    a.sync(&http, &options()).await.expect("sync a");
    for id in &ids {
        let server_heads = shared
            .lock()
            .expect("lock")
            .server
            .document(id)
            .expect("doc")
            .get_heads();
        assert_eq!(a.document(*id).await.expect("a").get_heads(), server_heads);
        assert_eq!(b.document(*id).await.expect("b").get_heads(), server_heads);
    }
}

#[tokio::test]
async fn lost_replies_are_retried_with_the_same_request_then_abandoned_smaller() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (address, shared) = serve(reference_server()).await;
    let a = device(&dir, "a", address, "token-a", 1).await;
    let http = http();
    let id = a
        .create_application(sample_application())
        .await
        .expect("capture")
        .id;

    // One lost reply: the retry is the same request, answered from the server's record.
    shared.lock().expect("lock").drop_replies = 1;
    let report = a.sync(&http, &options()).await.expect("sync");
    assert_eq!(report.round_trips, 2);
    assert_eq!(report.acknowledged, vec![id]);
    assert_eq!(report.abandoned, 0);
    let feed = shared.lock().expect("lock").server.feed_head();
    assert_eq!(feed, 1, "the retried push was stored once");

    // Many lost replies: abandoned after the attempts, planned again, still converges.
    a.set_applicant(id, "phone", "0812").await.expect("edit");
    shared.lock().expect("lock").drop_replies = 5;
    let report = a.sync(&http, &options()).await.expect("sync");
    assert!(report.abandoned >= 1, "{report:?}");
    assert!(report.complete);
    let server_heads = shared
        .lock()
        .expect("lock")
        .server
        .document(&id)
        .expect("doc")
        .get_heads();
    assert_eq!(a.document(id).await.expect("doc").get_heads(), server_heads);
}

#[tokio::test]
async fn too_early_is_sent_again_at_once_and_served_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (address, shared) = serve(reference_server()).await;
    let a = device(&dir, "a", address, "token-a", 1).await;
    let id = a
        .create_application(sample_application())
        .await
        .expect("capture")
        .id;
    shared.lock().expect("lock").too_early = 1;
    let options = SyncOptions {
        // A 425 must not wait for the backoff.
        backoff: Duration::from_secs(30),
        ..options()
    };
    let started = std::time::Instant::now();
    let report = a.sync(&http(), &options).await.expect("sync");
    assert!(started.elapsed() < Duration::from_secs(10), "{report:?}");
    assert!(report.complete, "{report:?}");
    assert_eq!(
        report.round_trips, 2,
        "the 425, then the same request served"
    );
    assert_eq!(report.acknowledged, vec![id]);
    assert_eq!(shared.lock().expect("lock").requests, 1);
}

#[tokio::test]
async fn refusals_compensations_and_removals_are_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = reference_server().with_policy(Box::new(move |_, doc| {
        let status = doc
            .get(ROOT, "status")
            .ok()
            .flatten()
            .and_then(|(v, _)| v.into_string().ok());
        match status.as_deref() {
            Some("approved") => Verdict::Refuse(RefusalReason::ForeignActor),
            Some("submitted") => {
                // Undo the submission (as a server would for a forbidden transition).
                let mut tx = doc.transaction();
                tx.put(ROOT, "status", "draft").expect("put");
                tx.commit();
                Verdict::Compensate(CompensationReason::StatusTransition)
            }
            _ => Verdict::Accept,
        }
    }));
    let (address, shared) = serve(server).await;
    let a = device(&dir, "a", address, "token-a", 1).await;
    let http = http();
    let compensated = a
        .create_application(sample_application())
        .await
        .expect("capture")
        .id;
    a.submit(compensated).await.expect("submit");
    let refused = a
        .create_application(sample_application())
        .await
        .expect("capture")
        .id;
    a.edit(refused, |tx| {
        tx.put(ROOT, "status", "approved")?;
        Ok(())
    })
    .await
    .expect("edit");
    let kept = a
        .create_application(sample_application())
        .await
        .expect("capture")
        .id;

    let report = a.sync(&http, &options()).await.expect("sync");
    assert_eq!(
        report.compensated,
        vec![(compensated, CompensationReason::StatusTransition)]
    );
    assert_eq!(report.refused, vec![(refused, RefusalReason::ForeignActor)]);
    assert_eq!(
        a.application(compensated)
            .await
            .expect("view")
            .status
            .as_str(),
        "draft"
    );

    // A document leaving the officer's scope is deleted from the device.
    shared.lock().expect("lock").server.hide(1, kept);
    let report = a.sync(&http, &options()).await.expect("sync");
    assert_eq!(report.removed, vec![kept]);
    assert!(a.document(kept).await.is_err());
    assert_eq!(a.list().await.expect("list").len(), 2);
}

#[tokio::test]
async fn a_link_dropping_every_20_kb_still_delivers_every_change_once() {
    use jemput_tests::link::{DropMode, LinkEmulator, LinkProfile};
    use rand::RngCore;

    let dir = tempfile::tempdir().expect("temp dir");
    let (address, shared) = serve(reference_server()).await;
    let link = LinkEmulator::start(
        address,
        LinkProfile {
            drop_after_bytes: Some(20_000),
            drop_mode: DropMode::Repeating,
            ..LinkProfile::default()
        },
    )
    .await
    .expect("link");
    let a = device(&dir, "a", link.address(), "token-a", 1).await;
    let mut ids = Vec::new();
    for _ in 0..80 {
        let id = a
            .create_application(sample_application())
            .await
            .expect("capture")
            .id;
        // Incompressible notes, so the bodies really are large on the wire.
        let mut noise = [0u8; 400];
        rand::rng().fill_bytes(&mut noise);
        a.set_applicant(id, "address", &hex::encode(noise))
            .await
            .expect("edit");
        ids.push(id);
    }
    let options = SyncOptions {
        max_exchanges: 64,
        attempts: 2,
        ..options()
    };
    let report = a
        .sync(&http(), &options)
        .await
        .expect("sync over the dropping link");
    assert!(report.complete, "{report:?}");
    assert!(
        report.abandoned >= 1,
        "the first plan is too large for this link"
    );
    let mut acknowledged = report.acknowledged.clone();
    acknowledged.sort();
    acknowledged.dedup();
    assert_eq!(acknowledged.len(), ids.len());
    let mut local = Vec::new();
    for id in &ids {
        local.push(a.document(*id).await.expect("local").get_heads());
    }
    let shared = shared.lock().expect("lock");
    for (id, heads) in ids.iter().zip(&local) {
        let on_server = shared.server.document(id).expect("stored").get_heads();
        assert_eq!(&on_server, heads, "every change arrived");
    }
    eprintln!(
        "dropping link: {} round trips, {} exchanges, {} abandoned, {} B sent",
        report.round_trips, report.exchanges, report.abandoned, report.bytes_sent
    );
}

#[tokio::test]
async fn requests_fill_the_budget_on_the_wire_after_compression() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (address, shared) = serve(reference_server()).await;
    let a = device(&dir, "a", address, "token-a", 1).await;
    for _ in 0..150 {
        a.create_application(sample_application())
            .await
            .expect("capture");
    }
    let budget = 8 * 1024;
    let mut options = options();
    options.limits.max_request_bytes = budget;
    let report = a.sync(&http(), &options).await.expect("sync");
    assert!(report.complete, "{report:?}");
    assert_eq!(report.acknowledged.len(), 150);
    let sizes = shared.lock().expect("lock").wire_sizes.clone();
    assert!(
        sizes.len() >= 2,
        "150 applications do not fit 8 KiB: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|&size| size <= budget),
        "every request fits the budget as sent: {sizes:?}"
    );
    eprintln!("request sizes on the wire: {sizes:?}");
    // Planning against the uncompressed size would send a fraction of the budget each time.
    let (last, full) = sizes.split_last().expect("requests");
    assert!(
        full.iter().all(|&size| size >= budget / 2),
        "requests before the last fill at least half the budget: {sizes:?} (last {last})"
    );
}

#[tokio::test]
async fn a_corrupt_local_copy_is_fetched_whole_from_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (address, shared) = serve(reference_server()).await;
    let a = device(&dir, "a", address, "token-a", 1).await;
    let http = http();
    let id = a
        .create_application(sample_application())
        .await
        .expect("capture")
        .id;
    a.sync(&http, &options()).await.expect("sync");

    // The device's copy is damaged; then the server changes the document.
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("a.db").display()))
            .await
            .expect("open the store directly");
    sqlx::query("UPDATE documents SET snapshot = x'00ff' WHERE id = ?")
        .bind(id.as_bytes().as_slice())
        .execute(&pool)
        .await
        .expect("corrupt");
    sqlx::query("DELETE FROM document_chunks")
        .execute(&pool)
        .await
        .expect("corrupt");
    pool.close().await;
    assert!(a.document(id).await.is_err());
    shared.lock().expect("lock").server.edit(id, |doc| {
        let mut tx = doc.transaction();
        tx.put(ROOT, "status", "in_review").expect("put");
        tx.commit();
    });

    let report = a.sync(&http, &options()).await.expect("sync");
    assert!(report.complete, "{report:?}");
    let server_heads = shared
        .lock()
        .expect("lock")
        .server
        .document(&id)
        .expect("doc")
        .get_heads();
    assert_eq!(
        a.document(id).await.expect("healed").get_heads(),
        server_heads
    );
    assert_eq!(
        a.application(id).await.expect("view").status.as_str(),
        "in_review"
    );
}
