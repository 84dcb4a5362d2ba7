//! Who may do what, through the sync protocol and the review API: each adversarial case
//! asserts the refusal and that nothing legitimate was lost.

use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT, ReadDoc};
use jemput_domain::{RegionCode, TrackingCode};
use jemput_sync_protocol::{DocumentId, Message};
use jemput_tests::provision::{HOME_DISTRICT, HOME_VILLAGE, OTHER_DISTRICT, OTHER_VILLAGE};
use jemput_tests::{RawPeer, TestDatabase, TestServer};
use serde_json::{Value, json};

use crate::JEMPUT;
use crate::ws_protocol::{get, new_document_id, visit_in};

const NIK: &str = "3471011503850012";

fn tracking_code() -> String {
    let region = RegionCode::parse(HOME_VILLAGE).expect("region");
    TrackingCode::generate(&region, &mut rand::rng())
        .expect("tracking code")
        .as_str()
        .to_owned()
}

/// An application as an officer's phone captures it.
fn application(status: &str, tracking: &str, actor: ActorId) -> Automerge {
    let mut doc = Automerge::new().with_actor(actor);
    let mut tx = doc.transaction();
    tx.put(ROOT, "schema", "jemput/application@1").expect("put");
    tx.put(ROOT, "trackingCode", tracking).expect("put");
    tx.put(ROOT, "service", "DUKCAPIL-KTP-EL-BARU")
        .expect("put");
    let region = tx.put_object(ROOT, "region", ObjType::Map).expect("map");
    tx.put(&region, "district", HOME_DISTRICT).expect("put");
    tx.put(&region, "village", HOME_VILLAGE).expect("put");
    let applicant = tx.put_object(ROOT, "applicant", ObjType::Map).expect("map");
    tx.put(&applicant, "nik", NIK).expect("put");
    tx.put(&applicant, "name", "Siti Rahayu").expect("put");
    tx.put(ROOT, "status", status).expect("put");
    tx.commit();
    doc
}

fn set(doc: &mut Automerge, key: &str, value: &str) {
    let mut tx = doc.transaction();
    tx.put(ROOT, key, value).expect("put");
    tx.commit();
}

fn set_nik(doc: &mut Automerge, nik: &str) {
    let mut tx = doc.transaction();
    let (_, applicant) = tx.get(ROOT, "applicant").expect("get").expect("map");
    tx.put(&applicant, "nik", nik).expect("put");
    tx.commit();
}

fn nik_of(doc: &Automerge) -> Option<String> {
    let (_, applicant) = doc.get(ROOT, "applicant").ok()??;
    doc.get(&applicant, "nik")
        .ok()?
        .map(|(value, _)| value.as_str().unwrap_or_default().to_owned())
}

/// Reads a document afresh through a new connection of `url`.
async fn read_back(url: &str, peer: &str, id: DocumentId) -> Automerge {
    let mut reader = RawPeer::joined(url, peer, None).await;
    let mut copy = Automerge::new();
    reader
        .sync_document(id, &mut copy, &mut sync::State::new())
        .await;
    copy
}

/// Asks for `id` and expects `doc-unavailable`, the answer for a document that does not exist.
async fn expect_unavailable(url: &str, peer: &str, id: DocumentId) {
    let mut asker = RawPeer::joined(url, peer, None).await;
    let data = Automerge::new()
        .generate_sync_message(&mut sync::State::new())
        .expect("first message")
        .encode();
    let request = asker.sync_message("request", id, data);
    asker.send(&request).await;
    loop {
        match asker.recv().await {
            Some(Message::DocUnavailable(m)) if m.document_id == id => return,
            Some(Message::Sync(m)) if m.document_id == id => {
                let message = sync::Message::decode(&m.data).expect("sync");
                assert!(
                    message.changes.is_empty(),
                    "content of {id} leaked to {peer}"
                );
            }
            Some(_) => continue,
            None => panic!("{peer}: connection closed instead of doc-unavailable"),
        }
    }
}

/// Waits for the policy report (an ephemeral message from the server) on `id`.
async fn expect_report(peer: &mut RawPeer, id: DocumentId) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no policy report");
        match peer.recv().await {
            Some(Message::Ephemeral(m)) if m.document_id == id => {
                let value: ciborium::Value =
                    ciborium::from_reader(m.data.as_slice()).expect("CBOR report");
                let json = serde_json::to_value(&value).expect("report as JSON");
                return json;
            }
            Some(_) => continue,
            None => panic!("connection closed before the policy report"),
        }
    }
}

async fn audit_actions(server: &TestServer, admin: &str) -> Vec<Value> {
    let (status, body) = server
        .request("GET", "/v1/audit?limit=500", Some(admin), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().cloned().unwrap_or_default()
}

fn has_entry(entries: &[Value], action: &str, subject: &DocumentId) -> bool {
    let subject = subject.to_string();
    entries
        .iter()
        .any(|e| e["action"] == action && e["subject"].as_str() == Some(subject.as_str()))
}

struct World {
    server: TestServer,
    alice: String,
    bob: String,
    outsider: String,
    supervisor_session: String,
    admin_session: String,
    alice_creds: jemput_tests::provision::Credentials,
}

async fn world(database: TestDatabase) -> World {
    let server = TestServer::start(JEMPUT, database).await;
    let alice_creds = server.officer("alice", &[HOME_DISTRICT]).await;
    let bob = server.officer("bob", &[HOME_DISTRICT]).await;
    let outsider = server.officer("orang-luar", &[OTHER_DISTRICT]).await;
    let supervisor = server
        .person("verifikator", "supervisor", &["34.71"], &[])
        .await;
    let admin = server.person("admin", "admin", &[], &[]).await;
    World {
        alice: server.ws_url_for(alice_creds.token()),
        bob: server.ws_url_for(bob.token()),
        outsider: server.ws_url_for(outsider.token()),
        supervisor_session: supervisor.session,
        admin_session: admin.session,
        alice_creds,
        server,
    }
}

#[tokio::test]
async fn a_change_made_with_another_devices_actor_is_refused() {
    let w = world(TestDatabase::sqlite()).await;
    let id = new_document_id();
    let mut alice = RawPeer::joined(&w.alice, "peer-alice", None).await;
    let mut doc = visit_in(HOME_DISTRICT, HOME_VILLAGE, "note", "from alice");
    alice
        .sync_document(id, &mut doc, &mut sync::State::new())
        .await;

    // Bob writes with Alice's actor id (a clone keeps the actor).
    let mut forged = doc.clone();
    set(&mut forged, "note", "forged by bob");
    let mut bob = RawPeer::joined(&w.bob, "peer-bob", None).await;
    let mut state = sync::State::new();
    let data = forged
        .generate_sync_message(&mut state)
        .expect("message")
        .encode();
    let first = bob.sync_message("sync", id, data);
    bob.send(&first).await;
    // Answer the server until it asks for the changes; then it sees the forged actor.
    let closed = loop {
        match bob.recv().await {
            Some(Message::Sync(m)) => {
                let message = sync::Message::decode(&m.data).expect("sync");
                forged
                    .receive_sync_message(&mut state, message)
                    .expect("apply");
                if let Some(reply) = forged.generate_sync_message(&mut state) {
                    let reply = bob.sync_message("sync", id, reply.encode());
                    bob.send(&reply).await;
                }
            }
            Some(Message::Error(e)) => break e.message,
            Some(_) => continue,
            None => panic!("closed without an error message"),
        }
    };
    assert!(closed.contains("actor"), "{closed}");

    let copy = read_back(&w.alice, "peer-alice-check", id).await;
    assert_eq!(get(&copy, "note").as_deref(), Some("from alice"));
    let entries = audit_actions(&w.server, &w.admin_session).await;
    assert!(has_entry(&entries, "change.refused", &id), "{entries:?}");
}

#[tokio::test]
async fn another_regions_document_is_answered_as_if_it_did_not_exist() {
    for database in TestDatabase::every("scope").await {
        let w = world(database).await;
        let id = new_document_id();
        let mut alice = RawPeer::joined(&w.alice, "peer-alice", None).await;
        let mut doc = application("draft", &tracking_code(), ActorId::random());
        alice
            .sync_document(id, &mut doc, &mut sync::State::new())
            .await;

        expect_unavailable(&w.outsider, "peer-outsider", id).await;
        // A random id gets the same answer.
        expect_unavailable(&w.outsider, "peer-outsider-2", new_document_id()).await;

        // Pushing changes into it is refused the same way and changes nothing.
        let mut outsider = RawPeer::joined(&w.outsider, "peer-outsider-3", None).await;
        let mut intruder = application("approved", &tracking_code(), ActorId::random());
        let data = intruder
            .generate_sync_message(&mut sync::State::new())
            .expect("message")
            .encode();
        let push = outsider.sync_message("sync", id, data);
        outsider.send(&push).await;
        match outsider.recv().await {
            Some(Message::DocUnavailable(m)) => assert_eq!(m.document_id, id),
            other => panic!("expected doc-unavailable, got {other:?}"),
        }
        set(&mut intruder, "x", "y");
        let copy = read_back(&w.alice, "peer-alice-check", id).await;
        assert_eq!(copy.get_heads(), doc.get_heads());
    }
}

#[tokio::test]
async fn a_new_document_outside_the_officers_region_is_not_stored() {
    let w = world(TestDatabase::sqlite()).await;
    let id = new_document_id();
    let mut alice = RawPeer::joined(&w.alice, "peer-alice", None).await;
    let doc = visit_in(OTHER_DISTRICT, OTHER_VILLAGE, "note", "not mine");
    let mut state = sync::State::new();
    let data = doc
        .generate_sync_message(&mut state)
        .expect("message")
        .encode();
    alice.send(&alice.sync_message("sync", id, data)).await;
    let mut doc = doc;
    let refused = loop {
        match alice.recv().await {
            Some(Message::Sync(m)) => {
                let message = sync::Message::decode(&m.data).expect("sync");
                doc.receive_sync_message(&mut state, message)
                    .expect("apply");
                if let Some(reply) = doc.generate_sync_message(&mut state) {
                    alice
                        .send(&alice.sync_message("sync", id, reply.encode()))
                        .await;
                }
            }
            Some(Message::DocUnavailable(m)) if m.document_id == id => break true,
            Some(_) => continue,
            None => panic!("closed"),
        }
    };
    assert!(refused);
    expect_unavailable(&w.outsider, "peer-outsider", id).await;
    let (status, body) = w
        .server
        .request("GET", "/v1/applications", Some(&w.admin_session), None)
        .await;
    assert_eq!(status, 200);
    assert!(!body.to_string().contains(&id.to_string()));
}

#[tokio::test]
async fn an_officer_approving_is_compensated_reported_and_audited() {
    for database in TestDatabase::every("compensation").await {
        let w = world(database).await;
        let id = new_document_id();
        let mut alice = RawPeer::joined(&w.alice, "peer-alice", None).await;
        let mut doc = application("submitted", &tracking_code(), ActorId::random());
        let mut state = sync::State::new();
        alice.sync_document(id, &mut doc, &mut state).await;

        set(&mut doc, "status", "approved");
        alice.sync_document(id, &mut doc, &mut state).await;
        // The server's compensating change came down with the sync.
        assert_eq!(get(&doc, "status").as_deref(), Some("submitted"));
        let report = expect_report(&mut alice, id).await;
        assert_eq!(report["event"], "compensated", "{report}");
        assert!(report.to_string().contains("status_transition"), "{report}");

        let copy = read_back(&w.bob, "peer-bob", id).await;
        assert_eq!(get(&copy, "status").as_deref(), Some("submitted"));
        assert_eq!(nik_of(&copy).as_deref(), Some(NIK));
        let entries = audit_actions(&w.server, &w.admin_session).await;
        assert!(
            has_entry(&entries, "change.compensated", &id),
            "{entries:?}"
        );
        // The audit log names the citizen by key only.
        assert!(!serde_json::to_string(&entries).expect("json").contains(NIK));
    }
}

#[tokio::test]
async fn a_supervisor_editing_a_nik_is_compensated() {
    let w = world(TestDatabase::sqlite()).await;
    let id = new_document_id();
    let mut alice = RawPeer::joined(&w.alice, "peer-alice", None).await;
    let mut doc = application("submitted", &tracking_code(), ActorId::random());
    alice
        .sync_document(id, &mut doc, &mut sync::State::new())
        .await;

    let url = w.server.ws_url_for(&w.supervisor_session);
    let mut console = RawPeer::joined(&url, "peer-console", None).await;
    let mut copy = Automerge::new();
    let mut state = sync::State::new();
    console.sync_document(id, &mut copy, &mut state).await;
    set_nik(&mut copy, "3471014708920031");
    console.sync_document(id, &mut copy, &mut state).await;
    assert_eq!(nik_of(&copy).as_deref(), Some(NIK));
    let stored = read_back(&w.bob, "peer-bob", id).await;
    assert_eq!(nik_of(&stored).as_deref(), Some(NIK));
}

#[tokio::test]
async fn review_decisions_are_written_by_the_server_and_reach_the_device() {
    for database in TestDatabase::every("review").await {
        let w = world(database).await;
        let id = new_document_id();
        let mut alice = RawPeer::joined(&w.alice, "peer-alice", None).await;
        let mut doc = application("submitted", &tracking_code(), ActorId::random());
        let mut state = sync::State::new();
        alice.sync_document(id, &mut doc, &mut state).await;

        let review = |decision: &str, note: &str| json!({"decision": decision, "note": note});
        let path = format!("/v1/applications/{id}/review");
        let server = &w.server;
        let supervisor = w.supervisor_session.as_str();

        // An officer cannot decide; a decision needs a note; in_review must come first.
        let alice_session = w.alice_creds.session.clone();
        let (status, _) = server
            .request(
                "POST",
                &path,
                Some(&alice_session),
                Some(&review("approved", "ok")),
            )
            .await;
        assert_eq!(status, 403);
        let (status, body) = server
            .request(
                "POST",
                &path,
                Some(supervisor),
                Some(&review("approved", "ok")),
            )
            .await;
        assert_eq!(status, 409, "{body}");
        let (status, body) = server
            .request(
                "POST",
                &path,
                Some(supervisor),
                Some(&review("in_review", "")),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = server
            .request(
                "POST",
                &path,
                Some(supervisor),
                Some(&review("approved", "  ")),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "note_required");
        let (status, body) = server
            .request(
                "POST",
                &path,
                Some(supervisor),
                Some(&review("approved", "Dokumen lengkap")),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "approved");

        // Unknown and out-of-region applications look the same.
        let (status, _) = server
            .request(
                "POST",
                &format!("/v1/applications/{}/review", new_document_id()),
                Some(supervisor),
                Some(&review("approved", "x")),
            )
            .await;
        assert_eq!(status, 404);

        // The decision syncs down to the officer's phone.
        alice.sync_document(id, &mut doc, &mut state).await;
        assert_eq!(get(&doc, "status").as_deref(), Some("approved"));
        let (_, history) = doc.get(ROOT, "history").expect("get").expect("history");
        assert_eq!(doc.length(&history), 2);

        // Applicant data is frozen now, even for the officer.
        set_nik(&mut doc, "3471014708920031");
        alice.sync_document(id, &mut doc, &mut state).await;
        assert_eq!(nik_of(&doc).as_deref(), Some(NIK));

        let (status, body) = server
            .request(
                "GET",
                "/v1/applications?status=approved",
                Some(supervisor),
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert!(body.to_string().contains(&id.to_string()), "{body}");
        let entries = audit_actions(server, &w.admin_session).await;
        assert!(has_entry(&entries, "review.decision", &id));
    }
}

#[tokio::test]
async fn a_tracking_code_collision_keeps_both_applications() {
    let w = world(TestDatabase::sqlite()).await;
    let code = tracking_code();
    let (first, second) = (new_document_id(), new_document_id());
    let mut alice = RawPeer::joined(&w.alice, "peer-alice", None).await;
    let mut bob = RawPeer::joined(&w.bob, "peer-bob", None).await;
    let mut a = application("submitted", &code, ActorId::random());
    let mut b = application("submitted", &code, ActorId::random());
    alice
        .sync_document(first, &mut a, &mut sync::State::new())
        .await;
    let mut state = sync::State::new();
    bob.sync_document(second, &mut b, &mut state).await;
    let report = expect_report(&mut bob, second).await;
    assert_eq!(report["event"], "tracking-code-reassigned", "{report}");
    let new_code = report["trackingCode"]
        .as_str()
        .expect("new code")
        .to_owned();
    assert_ne!(new_code, code);
    bob.sync_document(second, &mut b, &mut state).await;
    assert_eq!(get(&b, "trackingCode").as_deref(), Some(new_code.as_str()));
    assert_eq!(get(&a, "trackingCode").as_deref(), Some(code.as_str()));

    let (_, body) = w
        .server
        .request("GET", "/v1/applications", Some(&w.supervisor_session), None)
        .await;
    let text = body.to_string();
    assert!(text.contains(&code) && text.contains(&new_code), "{text}");
}

#[tokio::test]
async fn concurrent_offline_edits_of_one_field_are_flagged_for_the_supervisor() {
    let w = world(TestDatabase::sqlite()).await;
    let id = new_document_id();
    let mut alice = RawPeer::joined(&w.alice, "peer-alice", None).await;
    let mut mine = application("draft", &tracking_code(), ActorId::random());
    let mut alice_state = sync::State::new();
    alice.sync_document(id, &mut mine, &mut alice_state).await;
    let mut bob = RawPeer::joined(&w.bob, "peer-bob", None).await;
    let mut theirs = Automerge::new();
    let mut bob_state = sync::State::new();
    bob.sync_document(id, &mut theirs, &mut bob_state).await;

    // Both offline: different fields survive, the same field conflicts.
    set(&mut mine, "phoneNote", "alice");
    let mut tx = mine.transaction();
    let (_, applicant) = tx.get(ROOT, "applicant").expect("get").expect("map");
    tx.put(&applicant, "name", "Siti R.").expect("put");
    tx.commit();
    set(&mut theirs, "visitNote", "bob");
    let mut tx = theirs.transaction();
    let (_, applicant) = tx.get(ROOT, "applicant").expect("get").expect("map");
    tx.put(&applicant, "name", "Siti Rahayu S.").expect("put");
    tx.commit();

    alice.sync_document(id, &mut mine, &mut alice_state).await;
    bob.sync_document(id, &mut theirs, &mut bob_state).await;
    alice.sync_document(id, &mut mine, &mut alice_state).await;
    assert_eq!(mine.get_heads(), theirs.get_heads());
    assert_eq!(get(&mine, "phoneNote").as_deref(), Some("alice"));
    assert_eq!(get(&mine, "visitNote").as_deref(), Some("bob"));

    let (_, body) = w
        .server
        .request("GET", "/v1/applications", Some(&w.supervisor_session), None)
        .await;
    let row = body["applications"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["document_id"] == id.to_string())
        .cloned()
        .expect("listed");
    assert_eq!(row["has_conflict"], true, "{row}");
}

#[tokio::test]
async fn a_revoked_device_is_cut_off_at_its_next_frame_and_cannot_reconnect() {
    let w = world(TestDatabase::sqlite()).await;
    let id = new_document_id();
    let mut alice = RawPeer::joined(&w.alice, "peer-alice", None).await;
    let mut doc = visit_in(HOME_DISTRICT, HOME_VILLAGE, "note", "before");
    let mut state = sync::State::new();
    alice.sync_document(id, &mut doc, &mut state).await;

    let device = w.alice_creds.device.clone().expect("device");
    let output = w.server.admin(&["device", "revoke", &device.id], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    set(&mut doc, "note", "after revocation");
    let data = doc
        .generate_sync_message(&mut state)
        .expect("message")
        .encode();
    alice.send(&alice.sync_message("sync", id, data)).await;
    let closed = alice.expect_closed().await;
    assert!(
        closed.error_text().is_some_and(|t| t.contains("revoked")),
        "{closed:?}"
    );
    let copy = read_back(&w.bob, "peer-bob", id).await;
    assert_eq!(get(&copy, "note").as_deref(), Some("before"));

    let refused = tokio_tungstenite::connect_async(w.alice.as_str()).await;
    assert!(refused.is_err(), "a revoked token still upgrades");
}

#[tokio::test]
async fn another_identity_cannot_take_over_a_connected_peer_id() {
    let w = world(TestDatabase::sqlite()).await;
    let mut alice = RawPeer::joined(&w.alice, "peer-shared-name", None).await;
    let mut bob = RawPeer::connect(&w.bob, "peer-shared-name").await;
    bob.send(&Message::Join(jemput_sync_protocol::Join {
        sender_id: bob.peer_id.clone(),
        peer_metadata: None,
        supported_protocol_versions: Some(vec!["1".into()]),
    }))
    .await;
    let closed = bob.expect_closed().await;
    assert!(
        closed.error_text().is_some_and(|t| t.contains("in use")),
        "{closed:?}"
    );
    // Alice is still connected and syncing.
    alice
        .sync_document(
            new_document_id(),
            &mut visit_in(HOME_DISTRICT, HOME_VILLAGE, "k", "v"),
            &mut sync::State::new(),
        )
        .await;
}

#[tokio::test]
async fn the_websocket_needs_a_valid_token() {
    let w = world(TestDatabase::sqlite()).await;
    for url in [
        w.server.ws_url(),
        w.server.ws_url_for("jmd_not-a-real-token"),
        w.server.ws_url_for("garbage"),
    ] {
        let refused = tokio_tungstenite::connect_async(url.as_str()).await;
        assert!(refused.is_err(), "{url} upgraded");
    }
    // Logging out ends the session's WebSocket access too.
    let session = w.supervisor_session.clone();
    let (status, _) = w
        .server
        .request("POST", "/v1/auth/logout", Some(&session), None)
        .await;
    assert!(status == 200 || status == 204, "logout: {status}");
    let url = w.server.ws_url_for(&session);
    assert!(
        tokio_tungstenite::connect_async(url.as_str())
            .await
            .is_err()
    );
}
