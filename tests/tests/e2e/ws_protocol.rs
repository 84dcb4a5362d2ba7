//! The automerge-repo protocol against the real server process: handshake, sync, live
//! push, unknown documents, ephemeral relay, peer replacement, and bad input.

use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT, ReadDoc};
use jemput_sync_protocol::{DocumentId, Ephemeral, Join, Message, PeerMetadata};
use jemput_tests::provision::{HOME_DISTRICT, HOME_VILLAGE};
use jemput_tests::{RawPeer, TestDatabase, TestServer};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::JEMPUT;

pub fn new_document_id() -> DocumentId {
    DocumentId::from_bytes(*uuid::Uuid::new_v4().as_bytes())
}

/// A field-visit document in the test officers' home region, with one extra key.
pub fn doc_with(key: &str, value: &str) -> Automerge {
    visit_in(HOME_DISTRICT, HOME_VILLAGE, key, value)
}

pub fn visit_in(district: &str, village: &str, key: &str, value: &str) -> Automerge {
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    tx.put(ROOT, "schema", "jemput/visit@1").expect("put");
    let region = tx
        .put_object(ROOT, "region", automerge::ObjType::Map)
        .expect("region");
    tx.put(&region, "district", district).expect("put");
    tx.put(&region, "village", village).expect("put");
    tx.put(ROOT, key, value).expect("put");
    tx.commit();
    doc
}

/// The WebSocket URL of a new officer in the home district, with an enrolled device.
pub async fn officer_url(server: &TestServer, username: &str) -> String {
    let officer = server.officer(username, &[HOME_DISTRICT]).await;
    server.ws_url_for(officer.token())
}

pub fn put(doc: &mut Automerge, key: &str, value: &str) {
    let mut tx = doc.transaction();
    tx.put(ROOT, key, value).expect("put");
    tx.commit();
}

pub fn get(doc: &Automerge, key: &str) -> Option<String> {
    doc.get(ROOT, key)
        .expect("read")
        .map(|(value, _)| value.as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn join_is_answered_with_peer_and_protocol_version_1() {
    let server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
    let url = officer_url(&server, "petugas").await;
    let mut peer = RawPeer::connect(&url, "peer-handshake").await;
    peer.send(&Message::Join(Join {
        sender_id: peer.peer_id.clone(),
        peer_metadata: Some(PeerMetadata {
            storage_id: None,
            is_ephemeral: true,
        }),
        supported_protocol_versions: None,
    }))
    .await;
    let Some(Message::Peer(reply)) = peer.recv().await else {
        panic!("expected peer")
    };
    assert_eq!(reply.target_id.as_str(), "peer-handshake");
    assert_eq!(reply.selected_protocol_version, "1");
    assert!(reply.peer_metadata.storage_id.is_some());
    assert!(!reply.peer_metadata.is_ephemeral);
}

#[tokio::test]
async fn a_document_created_on_one_peer_reaches_another_and_edits_are_pushed_live() {
    for database in TestDatabase::every("live push").await {
        let server = TestServer::start(JEMPUT, database).await;
        let alice_url = officer_url(&server, "alice").await;
        let bob_url = officer_url(&server, "bob").await;
        let id = new_document_id();

        let mut alice = RawPeer::joined(&alice_url, "peer-alice", Some("storage-alice")).await;
        let mut alice_doc = doc_with("name", "Siti");
        let mut alice_state = sync::State::new();
        alice
            .sync_document(id, &mut alice_doc, &mut alice_state)
            .await;

        let mut bob = RawPeer::joined(&bob_url, "peer-bob", None).await;
        let mut bob_doc = Automerge::new();
        let mut bob_state = sync::State::new();
        bob.sync_document(id, &mut bob_doc, &mut bob_state).await;
        assert_eq!(get(&bob_doc, "name").as_deref(), Some("Siti"));

        // Alice edits; Bob receives it without asking.
        put(&mut alice_doc, "status", "submitted");
        alice
            .sync_document(id, &mut alice_doc, &mut alice_state)
            .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while get(&bob_doc, "status").is_none() {
            assert!(tokio::time::Instant::now() < deadline, "no live push");
            if let Some(Message::Sync(m)) = bob.recv().await {
                let message = sync::Message::decode(&m.data).expect("sync message");
                bob_doc
                    .receive_sync_message(&mut bob_state, message)
                    .expect("apply");
                if let Some(reply) = bob_doc.generate_sync_message(&mut bob_state) {
                    let reply = bob.sync_message("sync", id, reply.encode());
                    bob.send(&reply).await;
                }
            }
        }
        assert_eq!(alice_doc.get_heads(), bob_doc.get_heads());
    }
}

#[tokio::test]
async fn a_request_for_an_unknown_document_is_answered_doc_unavailable() {
    let server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
    let url = officer_url(&server, "penanya").await;
    let mut peer = RawPeer::joined(&url, "peer-asker", None).await;
    let id = new_document_id();
    let mut empty = Automerge::new();
    let message = empty
        .generate_sync_message(&mut sync::State::new())
        .expect("first message");
    let request = peer.sync_message("request", id, message.encode());
    peer.send(&request).await;
    match peer.recv().await {
        Some(Message::DocUnavailable(m)) => assert_eq!(m.document_id, id),
        other => panic!("expected doc-unavailable, got {other:?}"),
    }
    let _ = &mut empty;
}

#[tokio::test]
async fn ephemeral_messages_are_relayed_to_other_followers_with_the_original_sender() {
    let server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
    let url = officer_url(&server, "alice").await;
    let bob_url = officer_url(&server, "bob").await;
    let id = new_document_id();
    let mut alice = RawPeer::joined(&url, "peer-alice", None).await;
    let mut doc = doc_with("k", "v");
    alice
        .sync_document(id, &mut doc, &mut sync::State::new())
        .await;
    let mut bob = RawPeer::joined(&bob_url, "peer-bob", None).await;
    bob.sync_document(id, &mut Automerge::new(), &mut sync::State::new())
        .await;

    let presence = Ephemeral {
        sender_id: alice.peer_id.clone(),
        target_id: alice.server_id.clone().expect("joined"),
        document_id: id,
        session_id: "session-1".into(),
        count: 1,
        data: vec![1, 2, 3],
    };
    alice.send(&Message::Ephemeral(presence.clone())).await;
    // A duplicate (same sender, session and count) is relayed once.
    alice.send(&Message::Ephemeral(presence)).await;
    match bob.recv().await {
        Some(Message::Ephemeral(m)) => {
            assert_eq!(m.sender_id.as_str(), "peer-alice");
            assert_eq!(m.target_id.as_str(), "peer-bob");
            assert_eq!(m.data, vec![1, 2, 3]);
        }
        other => panic!("expected ephemeral, got {other:?}"),
    }
    assert!(
        bob.recv_within(Duration::from_millis(500)).await.is_err(),
        "duplicate ephemeral message relayed twice"
    );
}

#[tokio::test]
async fn a_second_join_with_the_same_peer_id_replaces_the_first_connection() {
    let server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
    let url = officer_url(&server, "petugas").await;
    let mut first = RawPeer::joined(&url, "peer-same", None).await;
    let mut second = RawPeer::joined(&url, "peer-same", None).await;
    first.expect_closed().await;
    // The newer connection keeps working.
    let id = new_document_id();
    second
        .sync_document(id, &mut doc_with("k", "v"), &mut sync::State::new())
        .await;
}

/// Bad input: each case gets an `error` message and a close, and the server keeps serving
/// everyone else.
mod bad_input {
    use super::*;

    async fn assert_server_still_serves(server: &TestServer) {
        let url = officer_url(server, &format!("saksi{}", uuid::Uuid::new_v4().simple())).await;
        let mut peer = RawPeer::joined(&url, "peer-bystander", None).await;
        peer.sync_document(
            new_document_id(),
            &mut doc_with("still", "alive"),
            &mut sync::State::new(),
        )
        .await;
    }

    async fn refused(server: &TestServer, peer: &mut RawPeer, expected: &str) {
        let closed = peer.expect_closed().await;
        let text = closed
            .error_text()
            .unwrap_or_else(|| panic!("no error message before close: {closed:?}"));
        assert!(text.contains(expected), "error `{text}` lacks `{expected}`");
        assert_server_still_serves(server).await;
    }

    #[tokio::test]
    async fn malformed_cbor() {
        let server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
        let url = officer_url(&server, "pengirim").await;
        let mut peer = RawPeer::connect(&url, "peer-bad").await;
        peer.send_bytes(vec![0xbf, 0xff, 0x13, 0x37, 0x00]).await;
        refused(&server, &mut peer, "malformed message").await;
    }

    #[tokio::test]
    async fn text_frame() {
        let server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
        let url = officer_url(&server, "pengirim").await;
        let mut peer = RawPeer::connect(&url, "peer-bad").await;
        peer.send_frame(Frame::Text(r#"{"type":"join"}"#.into()))
            .await;
        refused(&server, &mut peer, "binary").await;
    }

    #[tokio::test]
    async fn message_before_join() {
        let server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
        let url = officer_url(&server, "pengirim").await;
        let mut peer = RawPeer::connect(&url, "peer-bad").await;
        peer.server_id = Some(jemput_sync_protocol::PeerId::parse("anyone").expect("id"));
        let message = peer.sync_message("sync", new_document_id(), vec![0x42, 0, 0, 0]);
        peer.send(&message).await;
        refused(&server, &mut peer, "join").await;
    }

    #[tokio::test]
    async fn sender_id_changed_after_join() {
        let server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
        let url = officer_url(&server, "pengirim").await;
        let mut peer = RawPeer::joined(&url, "peer-honest", None).await;
        let doc = doc_with("k", "v");
        let data = doc
            .generate_sync_message(&mut sync::State::new())
            .expect("message")
            .encode();
        let mut message = peer.sync_message("sync", new_document_id(), data);
        if let Message::Sync(body) = &mut message {
            body.sender_id = jemput_sync_protocol::PeerId::parse("peer-impostor").expect("id");
        }
        peer.send(&message).await;
        refused(&server, &mut peer, "senderId").await;
    }

    #[tokio::test]
    async fn unsupported_protocol_version() {
        let server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
        let url = officer_url(&server, "pengirim").await;
        let mut peer = RawPeer::connect(&url, "peer-future").await;
        peer.send(&Message::Join(Join {
            sender_id: peer.peer_id.clone(),
            peer_metadata: None,
            supported_protocol_versions: Some(vec!["2".into()]),
        }))
        .await;
        refused(&server, &mut peer, "version").await;
    }

    #[tokio::test]
    async fn garbage_inside_a_sync_message() {
        let server = TestServer::start(JEMPUT, TestDatabase::sqlite()).await;
        let url = officer_url(&server, "pengirim").await;
        let mut peer = RawPeer::joined(&url, "peer-bad", None).await;
        let message = peer.sync_message("sync", new_document_id(), vec![0x42, 0xff, 0xff, 0xff]);
        peer.send(&message).await;
        refused(&server, &mut peer, "sync message").await;
    }

    #[tokio::test]
    async fn oversized_frame() {
        let server = TestServer::start_with_args(
            JEMPUT,
            TestDatabase::sqlite(),
            &["--max-frame-bytes", "4096", "--max-message-bytes", "4096"],
        )
        .await;
        let url = officer_url(&server, "pengirim").await;
        let mut peer = RawPeer::joined(&url, "peer-big", None).await;
        let message = peer.sync_message("sync", new_document_id(), vec![0x42; 64 * 1024]);
        peer.send(&message).await;
        let closed = peer.expect_closed().await;
        assert!(
            closed
                .messages
                .iter()
                .all(|m| !matches!(m, Message::Sync(_))),
            "oversized message was processed: {closed:?}"
        );
        assert_server_still_serves(&server).await;
    }
}
