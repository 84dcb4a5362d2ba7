use proptest::prelude::*;

use super::*;
use crate::ids::{DocumentId, StorageId};
use crate::message::{DocUnavailable, RemoteHeadsChanged, RemoteSubscriptionChange};

const SERVER: &str = "jemput-server";

fn peer(s: &str) -> PeerId {
    PeerId::parse(s).expect("valid peer id")
}

fn server_metadata() -> PeerMetadata {
    PeerMetadata {
        storage_id: Some(StorageId::parse("server-storage").expect("valid")),
        is_ephemeral: false,
    }
}

fn connection(expected: Option<&str>) -> Connection {
    Connection::new(ConnectionConfig {
        our_peer_id: peer(SERVER),
        our_metadata: server_metadata(),
        expected_peer_id: expected.map(peer),
    })
}

fn join(sender: &str, versions: Option<&[&str]>) -> Message {
    Message::Join(Join {
        sender_id: peer(sender),
        peer_metadata: Some(PeerMetadata {
            storage_id: None,
            is_ephemeral: true,
        }),
        supported_protocol_versions: versions.map(|v| v.iter().map(|s| s.to_string()).collect()),
    })
}

fn doc_message(sender: &str, target: &str) -> DocMessage {
    DocMessage {
        sender_id: peer(sender),
        target_id: peer(target),
        document_id: DocumentId::from_bytes([1; 16]),
        data: vec![0x42],
    }
}

fn sync(sender: &str, target: &str) -> Message {
    Message::Sync(doc_message(sender, target))
}

fn joined(sender: &str) -> Connection {
    let mut conn = connection(None);
    conn.handle_message(join(sender, Some(&["1"])))
        .expect("join succeeds");
    conn
}

#[test]
fn join_is_answered_with_peer() {
    let mut conn = connection(None);
    let result = conn.handle_message(join("peer-a", Some(&["1"])));
    let remote = RemotePeer {
        peer_id: peer("peer-a"),
        metadata: PeerMetadata {
            storage_id: None,
            is_ephemeral: true,
        },
    };
    let reply = Message::Peer(Peer {
        sender_id: peer(SERVER),
        target_id: peer("peer-a"),
        peer_metadata: server_metadata(),
        selected_protocol_version: "1".into(),
    });
    assert_eq!(
        result,
        Ok(Inbound::Joined {
            remote: remote.clone(),
            reply
        })
    );
    assert_eq!(conn.remote(), Some(&remote));
    assert_eq!(conn.our_peer_id(), &peer(SERVER));
}

#[test]
fn protocol_versions() {
    let check = |versions: Option<&[&str]>, ok: bool| {
        let result = connection(None).handle_message(join("p", versions));
        assert_eq!(result.is_ok(), ok, "{versions:?}");
        if !ok {
            assert_eq!(result, Err(Violation::UnsupportedProtocolVersion));
        }
    };
    check(None, true);
    check(Some(&["1"]), true);
    check(Some(&["2", "1"]), true);
    check(Some(&["2"]), false);
    check(Some(&[]), false);
}

#[test]
fn refused_join_is_answered_to_the_claimed_id() {
    let mut conn = connection(None);
    let violation = conn
        .handle_message(join("peer-old", Some(&["2"])))
        .expect_err("refused");
    assert_eq!(conn.remote(), None);
    let Message::Error(error) = conn.error_message(&violation) else {
        panic!("not an error message");
    };
    assert_eq!(error.sender_id, Some(peer(SERVER)));
    assert_eq!(error.target_id, Some(peer("peer-old")));
    assert!(error.message.contains("unsupported protocol version"));
}

#[test]
fn expected_peer_id_is_enforced() {
    let mut conn = connection(Some("peer-a"));
    assert_eq!(
        conn.handle_message(join("peer-b", None)),
        Err(Violation::PeerIdNotAllowed)
    );
    assert_eq!(conn.remote(), None);
    assert!(matches!(
        conn.handle_message(join("peer-a", None)),
        Ok(Inbound::Joined { .. })
    ));
}

#[test]
fn nothing_but_join_before_join() {
    let mut conn = connection(None);
    assert_eq!(
        conn.handle_message(sync("peer-a", SERVER)),
        Err(Violation::NotJoined("sync"))
    );
    assert_eq!(
        conn.handle_message(Message::Leave {
            sender_id: peer("peer-a")
        }),
        Err(Violation::NotJoined("leave"))
    );
    let Message::Error(error) = conn.error_message(&Violation::NotJoined("sync")) else {
        panic!("not an error message");
    };
    assert_eq!(error.target_id, None);
    assert_eq!(error.sender_id, Some(peer(SERVER)));
}

#[test]
fn rejoin_with_the_same_id_handshakes_again() {
    let mut conn = joined("peer-a");
    let again = Message::Join(Join {
        sender_id: peer("peer-a"),
        peer_metadata: None,
        supported_protocol_versions: None,
    });
    let Ok(Inbound::Joined { remote, reply }) = conn.handle_message(again) else {
        panic!("no second handshake");
    };
    assert_eq!(remote.metadata, PeerMetadata::default());
    assert_eq!(conn.remote(), Some(&remote));
    assert_eq!(reply.type_name(), "peer");
}

#[test]
fn rejoin_with_another_id_is_a_sender_mismatch() {
    let mut conn = joined("peer-a");
    assert_eq!(
        conn.handle_message(join("peer-b", None)),
        Err(Violation::SenderMismatch)
    );
    assert_eq!(conn.remote().map(|r| r.peer_id.as_str()), Some("peer-a"));
    let Message::Error(error) = conn.error_message(&Violation::SenderMismatch) else {
        panic!("not an error message");
    };
    assert_eq!(error.target_id, Some(peer("peer-a")));
}

#[test]
fn addressing_is_checked_after_join() {
    let mut conn = joined("peer-a");
    assert_eq!(
        conn.handle_message(sync("peer-b", SERVER)),
        Err(Violation::SenderMismatch)
    );
    assert_eq!(
        conn.handle_message(sync("peer-a", "someone-else")),
        Err(Violation::TargetMismatch)
    );
    assert_eq!(
        conn.handle_message(Message::Leave {
            sender_id: peer("peer-b")
        }),
        Err(Violation::SenderMismatch)
    );
}

#[test]
fn messages_map_to_inbound() {
    let mut conn = joined("peer-a");
    let m = doc_message("peer-a", SERVER);
    assert_eq!(
        conn.handle_message(Message::Request(m.clone())),
        Ok(Inbound::Request(m.clone()))
    );
    assert_eq!(
        conn.handle_message(Message::Sync(m.clone())),
        Ok(Inbound::Sync(m.clone()))
    );
    let e = Ephemeral {
        sender_id: m.sender_id.clone(),
        target_id: m.target_id.clone(),
        document_id: m.document_id,
        session_id: "s".into(),
        count: 1,
        data: vec![1],
    };
    assert_eq!(
        conn.handle_message(Message::Ephemeral(e.clone())),
        Ok(Inbound::Ephemeral(e))
    );
    assert_eq!(
        conn.handle_message(Message::Leave {
            sender_id: peer("peer-a")
        }),
        Ok(Inbound::Leave)
    );
}

#[test]
fn informational_messages_are_ignored() {
    let mut conn = joined("peer-a");
    let ignored = [
        Message::Error(ErrorMessage {
            message: "oops".into(),
            sender_id: None,
            target_id: None,
        }),
        Message::DocUnavailable(DocUnavailable {
            sender_id: peer("peer-a"),
            target_id: peer(SERVER),
            document_id: DocumentId::from_bytes([2; 16]),
        }),
        Message::RemoteSubscriptionChange(RemoteSubscriptionChange {
            sender_id: peer("peer-a"),
            target_id: peer(SERVER),
            add: Some(vec![]),
            remove: None,
        }),
        Message::RemoteHeadsChanged(RemoteHeadsChanged {
            sender_id: peer("peer-a"),
            target_id: peer(SERVER),
            document_id: DocumentId::from_bytes([2; 16]),
            new_heads: Default::default(),
        }),
    ];
    for message in ignored {
        let name = message.type_name();
        assert!(
            matches!(conn.handle_message(message), Ok(Inbound::Ignored { .. })),
            "{name}"
        );
    }
}

#[test]
fn peer_from_a_client_is_a_violation() {
    let mut conn = joined("peer-a");
    let peer_message = Message::Peer(Peer {
        sender_id: peer("peer-a"),
        target_id: peer(SERVER),
        peer_metadata: PeerMetadata::default(),
        selected_protocol_version: "1".into(),
    });
    assert_eq!(
        conn.handle_message(peer_message),
        Err(Violation::UnexpectedMessage("peer"))
    );
}

#[test]
fn every_violation_has_an_english_error() {
    let conn = joined("peer-a");
    let violations = [
        Violation::NotJoined("sync"),
        Violation::UnsupportedProtocolVersion,
        Violation::SenderMismatch,
        Violation::TargetMismatch,
        Violation::PeerIdNotAllowed,
        Violation::UnexpectedMessage("peer"),
    ];
    for violation in violations {
        let Message::Error(error) = conn.error_message(&violation) else {
            panic!("not an error message");
        };
        assert!(error.message.len() > 10, "{violation:?}");
        assert_eq!(error.target_id, Some(peer("peer-a")));
        // What we send must survive our own codec.
        let message = Message::Error(error);
        assert_eq!(
            crate::decode(&crate::encode(&message)).as_ref(),
            Ok(&message)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Handshake sequences against a model.

const PEERS: [&str; 3] = ["peer-a", "peer-b", "peer-c"];

#[derive(Debug, Clone)]
enum Step {
    Join {
        who: usize,
        versions: Option<Vec<&'static str>>,
    },
    Sync {
        who: usize,
        to_us: bool,
    },
    Leave {
        who: usize,
    },
    Peer {
        who: usize,
    },
}

fn any_step() -> impl Strategy<Value = Step> {
    let versions = prop_oneof![
        Just(None),
        Just(Some(vec!["1"])),
        Just(Some(vec!["2"])),
        Just(Some(vec![])),
        Just(Some(vec!["2", "1"])),
    ];
    prop_oneof![
        (0..PEERS.len(), versions).prop_map(|(who, versions)| Step::Join { who, versions }),
        (0..PEERS.len(), any::<bool>()).prop_map(|(who, to_us)| Step::Sync { who, to_us }),
        (0..PEERS.len()).prop_map(|who| Step::Leave { who }),
        (0..PEERS.len()).prop_map(|who| Step::Peer { who }),
    ]
}

fn message_of(step: &Step) -> Message {
    match step {
        Step::Join { who, versions } => join(PEERS[*who], versions.as_deref()),
        Step::Sync { who, to_us } => sync(PEERS[*who], if *to_us { SERVER } else { "other" }),
        Step::Leave { who } => Message::Leave {
            sender_id: peer(PEERS[*who]),
        },
        Step::Peer { who } => Message::Peer(Peer {
            sender_id: peer(PEERS[*who]),
            target_id: peer(SERVER),
            peer_metadata: PeerMetadata::default(),
            selected_protocol_version: "1".into(),
        }),
    }
}

/// What the protocol says should happen, written as plainly as possible.
fn model(
    joined: &mut Option<usize>,
    expected: Option<usize>,
    step: &Step,
) -> Result<&'static str, Violation> {
    let sender = match step {
        Step::Join { who, .. }
        | Step::Sync { who, .. }
        | Step::Leave { who }
        | Step::Peer { who } => *who,
    };
    match (*joined, step) {
        (None, Step::Join { .. }) => {}
        (None, _) => return Err(Violation::NotJoined(message_of(step).type_name())),
        (Some(j), _) if j != sender => return Err(Violation::SenderMismatch),
        _ => {}
    }
    match step {
        Step::Join { who, versions } => {
            if expected.is_some_and(|e| e != *who) {
                return Err(Violation::PeerIdNotAllowed);
            }
            if versions.as_ref().is_some_and(|v| !v.contains(&"1")) {
                return Err(Violation::UnsupportedProtocolVersion);
            }
            *joined = Some(*who);
            Ok("joined")
        }
        Step::Sync { to_us: false, .. } => Err(Violation::TargetMismatch),
        Step::Sync { to_us: true, .. } => Ok("sync"),
        Step::Leave { .. } => Ok("leave"),
        Step::Peer { .. } => Err(Violation::UnexpectedMessage("peer")),
    }
}

fn kind(inbound: &Inbound) -> &'static str {
    match inbound {
        Inbound::Joined { .. } => "joined",
        Inbound::Sync(_) => "sync",
        Inbound::Leave => "leave",
        Inbound::Request(_) => "request",
        Inbound::Ephemeral(_) => "ephemeral",
        Inbound::Ignored { .. } => "ignored",
    }
}

proptest! {
    #[test]
    fn handshake_sequences_follow_the_model(
        expected in proptest::option::of(0..PEERS.len()),
        steps in proptest::collection::vec(any_step(), 0..12),
    ) {
        let mut conn = connection(expected.map(|e| PEERS[e]));
        let mut joined = None;
        for step in &steps {
            let want = model(&mut joined, expected, step);
            let got = conn.handle_message(message_of(step));
            prop_assert_eq!(got.as_ref().map(kind).map_err(Clone::clone), want, "{:?}", step);
            if let Ok(Inbound::Sync(m)) = &got {
                prop_assert_eq!(Some(&m.sender_id), conn.remote().map(|r| &r.peer_id));
                prop_assert_eq!(&m.target_id, conn.our_peer_id());
            }
            let remote = conn.remote().map(|r| r.peer_id.as_str());
            prop_assert_eq!(remote, joined.map(|j| PEERS[j]));
        }
    }
}
