//! Batch sync (`POST /v1/sync`) against the real server, driven by the protocol's own device
//! state machine (`jemput_sync_protocol::batch::DeviceState`): convergence with WebSocket
//! writers, retries, the same policy as WebSocket, and the HTTP edges (auth, compression,
//! malformed bodies).

use std::collections::BTreeMap;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT};
use jemput_domain::{RegionCode, TrackingCode};
use jemput_sync_protocol::DocumentId;
use jemput_sync_protocol::batch::{
    Ack, BatchResponse, CompensationReason, DeviceEffects, DeviceLimits, DeviceState,
    IdempotencyKey, RefusalReason, decode_response, encode_request,
};
use jemput_tests::provision::{
    Credentials, HOME_DISTRICT, HOME_VILLAGE, OTHER_DISTRICT, OTHER_VILLAGE,
};
use jemput_tests::{RawPeer, TestDatabase, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::JEMPUT;
use crate::ws_protocol::{get, new_document_id};

/// One HTTP response, body de-chunked (never decompressed).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `POST /v1/sync` over a fresh HTTP/1.1 connection.
async fn post_sync(
    server: &TestServer,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let address = server.address();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let mut head = format!(
        "POST /v1/sync HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/cbor\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    // A server refusing a body early may reset the connection after its answer: keep what
    // arrived before the reset.
    if let Err(error) = stream.read_to_end(&mut raw).await {
        assert!(!raw.is_empty(), "no response: {error}");
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&raw[..end]);
        let size = usize::from_str_radix(size_text.trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

/// gzip with stored (uncompressed) DEFLATE blocks: a valid gzip stream without a compressor.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let crc = data.iter().fold(!0u32, |mut crc, &byte| {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
        crc
    });
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// A field device: the protocol's state machine and the documents it holds.
pub(crate) struct Phone {
    pub(crate) token: String,
    pub(crate) actor: ActorId,
    pub(crate) state: DeviceState,
    pub(crate) docs: BTreeMap<DocumentId, Automerge>,
}

/// One completed exchange.
struct Exchange {
    /// The documents pushed, in the request's order (acknowledgements follow it).
    pushed: Vec<DocumentId>,
    response: BatchResponse,
    effects: DeviceEffects,
    request_bytes: usize,
    response_bytes: usize,
}

impl Phone {
    pub(crate) fn of(officer: &Credentials) -> Self {
        let device = officer.device.as_ref().expect("an enrolled device");
        let actor: ActorId = device.actors[0].parse().expect("actor id");
        Phone {
            token: device.token.clone(),
            actor: actor.clone(),
            state: DeviceState::new(actor),
            docs: BTreeMap::new(),
        }
    }

    pub(crate) fn put(&mut self, id: DocumentId, doc: Automerge) {
        self.state.note_local_change(id, doc.get_heads());
        self.docs.insert(id, doc);
    }

    fn edit(&mut self, id: DocumentId, key: &str, value: &str) {
        let doc = self.docs.get_mut(&id).expect("held");
        set(doc, key, value);
        let heads = doc.get_heads();
        self.state.note_local_change(id, heads);
    }

    /// The body of the next request (the pending one on a retry).
    pub(crate) fn plan(&mut self) -> Vec<u8> {
        let key = IdempotencyKey::from_bytes(rand::random());
        let request = self
            .state
            .plan_request(key, &self.docs, DeviceLimits::default())
            .expect("plan");
        encode_request(&request)
    }

    pub(crate) fn apply(&mut self, body: &[u8]) -> (BatchResponse, DeviceEffects) {
        let response = decode_response(body).expect("a batch response");
        let effects = self
            .state
            .apply_response(response.clone(), &mut self.docs)
            .expect("apply");
        (response, effects)
    }

    async fn sync_once(&mut self, server: &TestServer) -> Exchange {
        let body = self.plan();
        let pushed = self
            .state
            .pending
            .as_ref()
            .map(|r| r.push.iter().map(|p| p.document_id).collect())
            .unwrap_or_default();
        let reply = post_sync(server, Some(&self.token), &[], &body).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.header("content-type"), Some("application/cbor"));
        let (response, effects) = self.apply(&reply.body);
        Exchange {
            pushed,
            response,
            effects,
            request_bytes: body.len(),
            response_bytes: reply.body.len(),
        }
    }
}

impl Exchange {
    fn acks(&self) -> BTreeMap<DocumentId, Ack> {
        self.pushed
            .iter()
            .copied()
            .zip(self.response.acks.iter().copied())
            .collect()
    }
}

fn set(doc: &mut Automerge, key: &str, value: &str) {
    let mut tx = doc.transaction();
    tx.put(ROOT, key, value).expect("put");
    tx.commit();
}

pub(crate) fn visit(actor: &ActorId, district: &str, village: &str, note: &str) -> Automerge {
    let mut doc = Automerge::new().with_actor(actor.clone());
    let mut tx = doc.transaction();
    tx.put(ROOT, "schema", "jemput/visit@1").expect("put");
    let place = tx.put_object(ROOT, "region", ObjType::Map).expect("map");
    tx.put(&place, "district", district).expect("put");
    tx.put(&place, "village", village).expect("put");
    tx.put(ROOT, "note", note).expect("put");
    tx.commit();
    doc
}

fn application(actor: &ActorId, status: &str) -> Automerge {
    let region = RegionCode::parse(HOME_VILLAGE).expect("region");
    let tracking = TrackingCode::generate(&region, &mut rand::rng()).expect("tracking code");
    let mut doc = Automerge::new().with_actor(actor.clone());
    let mut tx = doc.transaction();
    tx.put(ROOT, "schema", "jemput/application@1").expect("put");
    tx.put(ROOT, "trackingCode", tracking.as_str())
        .expect("put");
    tx.put(ROOT, "service", "DUKCAPIL-KTP-EL-BARU")
        .expect("put");
    let place = tx.put_object(ROOT, "region", ObjType::Map).expect("map");
    tx.put(&place, "district", HOME_DISTRICT).expect("put");
    tx.put(&place, "village", HOME_VILLAGE).expect("put");
    let applicant = tx.put_object(ROOT, "applicant", ObjType::Map).expect("map");
    tx.put(&applicant, "nik", "3471011503850012").expect("put");
    tx.put(&applicant, "name", "Siti Rahayu").expect("put");
    tx.put(ROOT, "status", status).expect("put");
    tx.commit();
    doc
}

/// Reads a document over WebSocket as `officer`, changes `key`, and syncs the change back.
async fn edit_over_websocket(
    server: &TestServer,
    officer: &Credentials,
    peer: &str,
    id: DocumentId,
    key: &str,
    value: &str,
) {
    let mut ws = RawPeer::joined(&server.ws_url_for(officer.token()), peer, None).await;
    let mut doc = Automerge::new();
    let mut state = sync::State::new();
    ws.sync_document(id, &mut doc, &mut state).await;
    set(&mut doc, key, value);
    ws.sync_document(id, &mut doc, &mut state).await;
    ws.close().await;
}

#[tokio::test]
async fn fifty_documents_converge_with_websocket_writers_and_retries_change_nothing() {
    for database in TestDatabase::every("batch_converge").await {
        let server = TestServer::start(JEMPUT, database).await;
        let alice = server.officer("alice", &[HOME_DISTRICT]).await;
        let bob = server.officer("bob", &[HOME_DISTRICT]).await;
        let mut phone = Phone::of(&alice);

        // First sync of an empty phone: one small exchange.
        let first = phone.sync_once(&server).await;
        assert!(first.response.updates.is_empty());
        assert!(!first.effects.sync_again);

        let ids: Vec<DocumentId> = (0..50).map(|_| new_document_id()).collect();
        for (n, id) in ids.iter().enumerate() {
            let doc = visit(
                &phone.actor,
                HOME_DISTRICT,
                HOME_VILLAGE,
                &format!("visit {n}"),
            );
            phone.put(*id, doc);
        }
        let pushed = phone.sync_once(&server).await;
        assert_eq!(pushed.response.acks.len(), 50);
        assert!(
            pushed.response.acks.iter().all(|a| *a == Ack::Accepted),
            "{:?}",
            pushed.response.acks
        );
        assert!(pushed.response.updates.is_empty(), "nothing new for alice");

        // Nothing changed: one request, a tiny response.
        let idle = phone.sync_once(&server).await;
        assert!(idle.response.updates.is_empty() && idle.response.acks.is_empty());
        assert!(!idle.effects.sync_again);
        assert!(
            idle.request_bytes + idle.response_bytes < 100,
            "{} + {} bytes",
            idle.request_bytes,
            idle.response_bytes
        );

        // Bob changes five documents over WebSocket; alice's next exchange brings them.
        for (n, id) in ids.iter().take(5).enumerate() {
            edit_over_websocket(&server, &bob, &format!("peer-bob-{n}"), *id, "bob", "seen").await;
        }
        let pulled = phone.sync_once(&server).await;
        assert_eq!(pulled.response.updates.len(), 5);
        for id in ids.iter().take(5) {
            assert_eq!(get(&phone.docs[id], "bob").as_deref(), Some("seen"));
        }
        let idle = phone.sync_once(&server).await;
        assert!(idle.response.updates.is_empty());

        // A retried request (same bytes) gets the same answer and changes nothing.
        phone.edit(ids[7], "note", "revisited");
        let body = phone.plan();
        let once = post_sync(&server, Some(&phone.token), &[], &body).await;
        let twice = post_sync(&server, Some(&phone.token), &[], &body).await;
        assert_eq!((once.status, twice.status), (200, 200));
        assert_eq!(once.body, twice.body, "a retry replays the stored response");
        let (response, _) = phone.apply(&twice.body);
        assert_eq!(response.acks, vec![Ack::Accepted]);
        // The same key with another body is a device bug.
        let mut other = body.clone();
        let last = other.len() - 1;
        other[last] ^= 1;
        let reused = post_sync(&server, Some(&phone.token), &[], &other).await;
        assert!(
            matches!(reused.status, 422 | 400),
            "status {}",
            reused.status
        );
        let idle = phone.sync_once(&server).await;
        assert!(idle.response.updates.is_empty() && idle.response.acks.is_empty());

        // Bob reads the revisit over WebSocket: stored once, live for everyone.
        let mut ws = RawPeer::joined(&server.ws_url_for(bob.token()), "peer-bob-read", None).await;
        let mut copy = Automerge::new();
        ws.sync_document(ids[7], &mut copy, &mut sync::State::new())
            .await;
        assert_eq!(get(&copy, "note").as_deref(), Some("revisited"));
        assert_eq!(copy.get_heads(), phone.docs[&ids[7]].get_heads());

        // A second phone of another officer starting from nothing gets all 50, whole.
        let mut fresh = Phone::of(&bob);
        let mut delivered = 0;
        for _ in 0..10 {
            let exchange = fresh.sync_once(&server).await;
            delivered += exchange.response.updates.len();
            if !exchange.effects.sync_again {
                break;
            }
        }
        assert_eq!(delivered, 50);
        for id in &ids {
            assert_eq!(fresh.docs[id].get_heads(), phone.docs[id].get_heads());
        }
    }
}

#[tokio::test]
async fn batch_pushes_obey_the_same_policy_as_websocket() {
    for database in TestDatabase::every("batch_policy").await {
        let server = TestServer::start(JEMPUT, database).await;
        let alice = server.officer("alice", &[HOME_DISTRICT]).await;
        let bob = server.officer("bob", &[HOME_DISTRICT]).await;
        let mut phone = Phone::of(&alice);
        let bob_actor: ActorId = bob.device.as_ref().expect("device").actors[0]
            .parse()
            .expect("actor");

        let forged = new_document_id();
        phone.put(
            forged,
            visit(&bob_actor, HOME_DISTRICT, HOME_VILLAGE, "not mine"),
        );
        let away = new_document_id();
        phone.put(
            away,
            visit(&phone.actor.clone(), OTHER_DISTRICT, OTHER_VILLAGE, "far"),
        );
        let approved = new_document_id();
        phone.put(approved, application(&phone.actor.clone(), "submitted"));
        let exchange = phone.sync_once(&server).await;
        let acks = exchange.acks();
        assert_eq!(acks[&forged], Ack::Refused(RefusalReason::ForeignActor));
        assert_eq!(acks[&away], Ack::Refused(RefusalReason::Unavailable));
        assert_eq!(acks[&approved], Ack::Accepted);

        // Approving is a supervisor's decision: stored, then undone by the server.
        phone.edit(approved, "status", "approved");
        let exchange = phone.sync_once(&server).await;
        assert_eq!(
            exchange.acks().get(&approved),
            Some(&Ack::Compensated(CompensationReason::StatusTransition))
        );
        assert_eq!(
            get(&phone.docs[&approved], "status").as_deref(),
            Some("submitted")
        );

        // Nothing refused reached the server: bob cannot read them.
        for (n, id) in [forged, away].into_iter().enumerate() {
            let mut ws =
                RawPeer::joined(&server.ws_url_for(bob.token()), &format!("peer-b{n}"), None).await;
            let request = ws.sync_message("request", id, {
                let empty = Automerge::new();
                empty
                    .generate_sync_message(&mut sync::State::new())
                    .expect("a first message")
                    .encode()
            });
            ws.send(&request).await;
            let answer = ws
                .recv_within(std::time::Duration::from_secs(20))
                .await
                .expect("an answer")
                .expect("open");
            assert!(
                matches!(answer, jemput_sync_protocol::Message::DocUnavailable(_)),
                "{answer:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_http_edges_of_batch_sync() {
    for database in TestDatabase::every("batch_http").await {
        let server = TestServer::start(JEMPUT, database).await;
        let alice = server.officer("alice", &[HOME_DISTRICT]).await;
        let mut phone = Phone::of(&alice);
        let body = phone.plan();

        let anonymous = post_sync(&server, None, &[], &body).await;
        assert_eq!(anonymous.status, 401);
        let session = post_sync(&server, Some(&alice.session), &[], &body).await;
        assert_eq!(session.status, 403);
        assert!(String::from_utf8_lossy(&session.body).contains("device_required"));

        let malformed = post_sync(&server, Some(&phone.token), &[], b"\xa1\x00\x02").await;
        assert_eq!(malformed.status, 400);
        assert_eq!(malformed.header("accept-encoding"), Some("zstd, gzip"));
        let garbage = post_sync(&server, Some(&phone.token), &[], b"not cbor at all").await;
        assert_eq!(garbage.status, 400);

        let brotli = post_sync(
            &server,
            Some(&phone.token),
            &[("Content-Encoding", "br")],
            &body,
        )
        .await;
        assert_eq!(brotli.status, 415);
        assert!(
            brotli
                .header("accept-encoding")
                .is_some_and(|v| v.contains("gzip"))
        );

        // The same request, gzip-compressed, still serves (and the server kept serving).
        let gzipped = post_sync(
            &server,
            Some(&phone.token),
            &[("Content-Encoding", "gzip")],
            &gzip_stored(&body),
        )
        .await;
        assert_eq!(
            gzipped.status,
            200,
            "{}",
            String::from_utf8_lossy(&gzipped.body)
        );
        assert_eq!(gzipped.header("accept-encoding"), Some("zstd, gzip"));
        phone.apply(&gzipped.body);

        // Large responses are compressed when the device accepts it.
        let mut other = Phone::of(&server.officer("bob", &[HOME_DISTRICT]).await);
        for n in 0..5 {
            let note = "panjang ".repeat(100) + &n.to_string();
            phone.put(
                new_document_id(),
                visit(&phone.actor.clone(), HOME_DISTRICT, HOME_VILLAGE, &note),
            );
        }
        phone.sync_once(&server).await;
        let body = other.plan();
        let compressed = post_sync(
            &server,
            Some(&other.token),
            &[("Accept-Encoding", "gzip")],
            &body,
        )
        .await;
        assert_eq!(compressed.status, 200);
        assert_eq!(compressed.header("content-encoding"), Some("gzip"));

        // A revoked device is refused.
        let revoke = format!(
            "/v1/devices/{}/revoke",
            alice.device.as_ref().expect("device").id
        );
        let (status, answer) = server
            .request("POST", &revoke, Some(&alice.session), None)
            .await;
        assert_eq!(status, 200, "{answer}");
        let body = phone.plan();
        let revoked = post_sync(&server, Some(&phone.token), &[], &body).await;
        assert_eq!(revoked.status, 401);
    }
}

/// Moves a visit to another district and village.
fn move_to(doc: &mut Automerge, district: &str, village: &str) {
    let mut tx = doc.transaction();
    let place = tx.put_object(ROOT, "region", ObjType::Map).expect("map");
    tx.put(&place, "district", district).expect("put");
    tx.put(&place, "village", village).expect("put");
    tx.commit();
}

#[tokio::test]
async fn documents_entering_and_leaving_a_devices_scope_are_delivered_and_removed() {
    for database in TestDatabase::every("batch_scope").await {
        let server = TestServer::start(JEMPUT, database).await;
        let alice = server.officer("alice", &[HOME_DISTRICT]).await;
        let carol = server
            .officer("carol", &[HOME_DISTRICT, OTHER_DISTRICT])
            .await;
        let mut phone = Phone::of(&alice);
        let mut roaming = Phone::of(&carol);
        phone.sync_once(&server).await;

        let home = new_document_id();
        let away = new_document_id();
        let actor = roaming.actor.clone();
        roaming.put(home, visit(&actor, HOME_DISTRICT, HOME_VILLAGE, "here"));
        roaming.put(away, visit(&actor, OTHER_DISTRICT, OTHER_VILLAGE, "there"));
        let pushed = roaming.sync_once(&server).await;
        assert!(pushed.response.acks.iter().all(|a| *a == Ack::Accepted));

        let pulled = phone.sync_once(&server).await;
        let delivered: Vec<DocumentId> = pulled
            .response
            .updates
            .iter()
            .map(|u| u.document_id)
            .collect();
        assert_eq!(delivered, vec![home]);

        // The document moves out of alice's district: her phone is told to delete it.
        let doc = roaming.docs.get_mut(&home).expect("held");
        move_to(doc, OTHER_DISTRICT, OTHER_VILLAGE);
        let heads = doc.get_heads();
        roaming.state.note_local_change(home, heads);
        let moved = roaming.sync_once(&server).await;
        assert_eq!(moved.response.acks, vec![Ack::Accepted]);
        let pulled = phone.sync_once(&server).await;
        assert_eq!(pulled.response.removed, vec![home]);
        assert!(!phone.docs.contains_key(&home));

        // Alice is given the other district too: both documents arrive.
        let assigned = server.admin(
            &[
                "user",
                "assign-region",
                "alice",
                HOME_DISTRICT,
                OTHER_DISTRICT,
            ],
            None,
        );
        assert!(assigned.status.success(), "{assigned:?}");
        let pulled = phone.sync_once(&server).await;
        let mut delivered: Vec<DocumentId> = pulled
            .response
            .updates
            .iter()
            .map(|u| u.document_id)
            .collect();
        delivered.sort();
        let mut expected = vec![home, away];
        expected.sort();
        assert_eq!(delivered, expected);
        assert_eq!(
            phone.docs[&away].get_heads(),
            roaming.docs[&away].get_heads()
        );
        let idle = phone.sync_once(&server).await;
        assert!(idle.response.updates.is_empty() && idle.response.removed.is_empty());

        // And taken away again: both are removed.
        let assigned = server.admin(&["user", "assign-region", "alice", HOME_DISTRICT], None);
        assert!(assigned.status.success(), "{assigned:?}");
        let pulled = phone.sync_once(&server).await;
        let mut removed = pulled.response.removed.clone();
        removed.sort();
        assert_eq!(removed, expected);
        assert!(phone.docs.is_empty());
    }
}

#[tokio::test]
async fn lost_replies_and_concurrent_copies_lose_and_duplicate_nothing() {
    for database in TestDatabase::every("batch_lost_reply").await {
        let server = TestServer::start(JEMPUT, database).await;
        let alice = server.officer("alice", &[HOME_DISTRICT]).await;
        let bob = server.officer("bob", &[HOME_DISTRICT]).await;
        let mut phone = Phone::of(&alice);
        let id = new_document_id();
        let actor = phone.actor.clone();
        phone.put(id, visit(&actor, HOME_DISTRICT, HOME_VILLAGE, "first"));
        phone.sync_once(&server).await;

        // Bob's change is delivered in a reply the phone never gets; it gives up on that
        // request and plans a new one with its old cursor: the change comes again.
        edit_over_websocket(&server, &bob, "peer-bob", id, "bob", "seen").await;
        let body = phone.plan();
        let lost = post_sync(&server, Some(&phone.token), &[], &body).await;
        assert_eq!(lost.status, 200);
        assert_eq!(
            decode_response(&lost.body).expect("response").updates.len(),
            1
        );
        phone.state.abandon_pending();
        let again = phone.sync_once(&server).await;
        assert_eq!(again.response.updates.len(), 1);
        assert_eq!(get(&phone.docs[&id], "bob").as_deref(), Some("seen"));

        // Two copies of one request at once (a retry racing the original): one exchange.
        phone.edit(id, "note", "second");
        let body = phone.plan();
        let (one, two) = tokio::join!(
            post_sync(&server, Some(&phone.token), &[], &body),
            post_sync(&server, Some(&phone.token), &[], &body)
        );
        assert_eq!((one.status, two.status), (200, 200));
        assert_eq!(one.body, two.body);
        let (response, _) = phone.apply(&one.body);
        assert_eq!(response.acks, vec![Ack::Accepted]);
        let idle = phone.sync_once(&server).await;
        assert!(idle.response.updates.is_empty() && idle.response.acks.is_empty());
    }
}

#[tokio::test]
async fn a_request_body_above_the_limit_is_refused_with_413() {
    let database = TestDatabase::sqlite();
    let server =
        TestServer::start_with_args(JEMPUT, database, &["--sync-max-request-bytes", "2048"]).await;
    let alice = server.officer("alice", &[HOME_DISTRICT]).await;
    let mut phone = Phone::of(&alice);
    let actor = phone.actor.clone();
    // Random text, so compression inside the document cannot shrink it.
    let note: String = (0..4096)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    phone.put(
        new_document_id(),
        visit(&actor, HOME_DISTRICT, HOME_VILLAGE, &note),
    );
    let body = phone.plan();
    assert!(body.len() > 2048);
    let refused = post_sync(&server, Some(&phone.token), &[], &body).await;
    assert_eq!(refused.status, 413);
    // The server keeps serving this device.
    phone.state.abandon_pending();
    phone.docs.clear();
    phone.state = DeviceState::new(actor);
    let served = phone.sync_once(&server).await;
    assert!(served.response.acks.is_empty());
}
