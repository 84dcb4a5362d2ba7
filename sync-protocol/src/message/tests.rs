use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------------------
// A tiny CBOR builder for inputs `encode` would never produce.

#[derive(Clone)]
enum C {
    /// A map with cbor-x's non-minimal `b9 00 nn` header.
    Map(Vec<(&'static str, C)>),
    /// A map with a minimal header.
    MinMap(Vec<(&'static str, C)>),
    Text(String),
    Bytes(Vec<u8>),
    Uint(u64),
    F64(f64),
    Bool(bool),
    Array(Vec<C>),
    Undefined,
    Null,
    Raw(Vec<u8>),
}

fn t(s: &str) -> C {
    C::Text(s.to_owned())
}

fn cbor(c: &C) -> Vec<u8> {
    let mut out = Vec::new();
    write(c, &mut out);
    out
}

fn write(c: &C, out: &mut Vec<u8>) {
    let mut w = Writer::default();
    match c {
        C::Map(entries) => {
            out.extend_from_slice(&[0xb9, 0x00, entries.len() as u8]);
            write_entries(entries, out);
            return;
        }
        C::MinMap(entries) => {
            w.map(entries.len());
            out.extend(w.into_bytes());
            write_entries(entries, out);
            return;
        }
        C::Array(items) => {
            w.array(items.len());
            out.extend(w.into_bytes());
            items.iter().for_each(|i| write(i, out));
            return;
        }
        C::Text(s) => w.text(s),
        C::Bytes(b) => w.bytes(b),
        C::Uint(n) => w.uint(*n),
        C::Bool(b) => w.bool(*b),
        C::F64(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        C::Undefined => out.push(0xf7),
        C::Null => out.push(0xf6),
        C::Raw(b) => out.extend_from_slice(b),
    }
    out.extend(w.into_bytes());
}

fn write_entries(entries: &[(&'static str, C)], out: &mut Vec<u8>) {
    for (k, v) in entries {
        write(&t(k), out);
        write(v, out);
    }
}

fn peer(s: &str) -> PeerId {
    PeerId::parse(s).expect("valid peer id")
}

fn storage(s: &str) -> StorageId {
    StorageId::parse(s).expect("valid storage id")
}

fn doc() -> DocumentId {
    DocumentId::from_bytes([7; 16])
}

fn doc_text() -> C {
    C::Text(doc().to_string())
}

/// Decodes, expects `expected`, and checks the round trip of `expected`.
fn check(input: &C, expected: Message) {
    assert_eq!(decode(&cbor(input)), Ok(expected.clone()));
    assert_round_trip(&expected);
}

fn assert_round_trip(message: &Message) {
    let bytes = encode(message);
    assert_eq!(
        decode(&bytes).as_ref(),
        Ok(message),
        "{}",
        hex::encode(&bytes)
    );
}

fn sync_input(extra: Vec<(&'static str, C)>) -> C {
    let mut entries = vec![
        ("type", t("sync")),
        ("targetId", t("server")),
        ("data", C::Bytes(vec![0x42, 1, 2])),
        ("documentId", doc_text()),
        ("senderId", t("peer-a")),
    ];
    entries.extend(extra);
    C::Map(entries)
}

fn sync_message() -> Message {
    Message::Sync(DocMessage {
        sender_id: peer("peer-a"),
        target_id: peer("server"),
        document_id: doc(),
        data: vec![0x42, 1, 2],
    })
}

// ---------------------------------------------------------------------------------------
// One test per message type.

#[test]
fn join_with_storage() {
    let input = C::Map(vec![
        ("type", t("join")),
        ("senderId", t("peer-a")),
        (
            "peerMetadata",
            C::Map(vec![
                ("storageId", t("st-1")),
                ("isEphemeral", C::Bool(false)),
            ]),
        ),
        ("supportedProtocolVersions", C::Array(vec![t("1")])),
    ]);
    check(
        &input,
        Message::Join(Join {
            sender_id: peer("peer-a"),
            peer_metadata: Some(PeerMetadata {
                storage_id: Some(storage("st-1")),
                is_ephemeral: false,
            }),
            supported_protocol_versions: Some(vec!["1".into()]),
        }),
    );
}

#[test]
fn join_with_undefined_storage_and_no_versions() {
    let input = C::Map(vec![
        ("type", t("join")),
        ("senderId", t("peer-c")),
        (
            "peerMetadata",
            C::Map(vec![
                ("storageId", C::Undefined),
                ("isEphemeral", C::Bool(true)),
            ]),
        ),
    ]);
    check(
        &input,
        Message::Join(Join {
            sender_id: peer("peer-c"),
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: true,
            }),
            supported_protocol_versions: None,
        }),
    );
}

#[test]
fn join_metadata_may_be_empty_undefined_or_spelled_metadata() {
    let join = |metadata| {
        C::Map(vec![
            ("type", t("join")),
            ("senderId", t("p")),
            ("peerMetadata", metadata),
        ])
    };
    let decoded = |c: C| match decode(&cbor(&c)) {
        Ok(Message::Join(j)) => j.peer_metadata,
        other => panic!("{other:?}"),
    };
    assert_eq!(decoded(join(C::Map(vec![]))), Some(PeerMetadata::default()));
    assert_eq!(decoded(join(C::Undefined)), None);
    assert_eq!(decoded(join(C::Null)), None);
    let samod = C::MinMap(vec![
        ("type", t("join")),
        ("senderId", t("p")),
        ("metadata", C::MinMap(vec![("isEphemeral", C::Bool(true))])),
    ]);
    assert_eq!(
        decoded(samod),
        Some(PeerMetadata {
            storage_id: None,
            is_ephemeral: true
        })
    );
}

#[test]
fn peer_message() {
    let input = C::Map(vec![
        ("type", t("peer")),
        ("senderId", t("server")),
        (
            "peerMetadata",
            C::Map(vec![
                ("storageId", t("st-s")),
                ("isEphemeral", C::Bool(false)),
            ]),
        ),
        ("selectedProtocolVersion", t("1")),
        ("targetId", t("peer-a")),
    ]);
    check(
        &input,
        Message::Peer(super::Peer {
            sender_id: peer("server"),
            target_id: peer("peer-a"),
            peer_metadata: PeerMetadata {
                storage_id: Some(storage("st-s")),
                is_ephemeral: false,
            },
            selected_protocol_version: "1".into(),
        }),
    );
}

#[test]
fn peer_without_metadata_gets_the_default() {
    let input = C::MinMap(vec![
        ("type", t("peer")),
        ("senderId", t("server")),
        ("selectedProtocolVersion", t("1")),
        ("targetId", t("peer-a")),
    ]);
    let Ok(Message::Peer(p)) = decode(&cbor(&input)) else {
        panic!("not a peer message");
    };
    assert_eq!(p.peer_metadata, PeerMetadata::default());
}

#[test]
fn error_with_and_without_ids() {
    let js = C::Map(vec![
        ("type", t("error")),
        ("senderId", t("server")),
        ("message", t("unsupported protocol version")),
        ("targetId", t("peer-old")),
    ]);
    check(
        &js,
        Message::Error(ErrorMessage {
            message: "unsupported protocol version".into(),
            sender_id: Some(peer("server")),
            target_id: Some(peer("peer-old")),
        }),
    );
    let samod = C::MinMap(vec![("type", t("error")), ("message", t("bad"))]);
    check(
        &samod,
        Message::Error(ErrorMessage {
            message: "bad".into(),
            sender_id: None,
            target_id: None,
        }),
    );
}

#[test]
fn leave_has_exact_bytes() {
    let leave = Message::Leave {
        sender_id: peer("p"),
    };
    // {"type": "leave", "senderId": "p"}
    let expected = "a2647479706565\
                    6c65617665\
                    6873656e6465724964\
                    6170";
    assert_eq!(hex::encode(encode(&leave)), expected);
    check(
        &C::Map(vec![("type", t("leave")), ("senderId", t("p"))]),
        leave,
    );
}

#[test]
fn request_and_sync() {
    check(&sync_input(vec![]), sync_message());
    let request = C::Map(vec![
        ("type", t("request")),
        ("targetId", t("server")),
        ("documentId", doc_text()),
        ("data", C::Bytes(vec![0x42, 0, 0])),
        ("senderId", t("peer-b")),
    ]);
    check(
        &request,
        Message::Request(DocMessage {
            sender_id: peer("peer-b"),
            target_id: peer("server"),
            document_id: doc(),
            data: vec![0x42, 0, 0],
        }),
    );
}

#[test]
fn doc_unavailable() {
    let input = C::Map(vec![
        ("type", t("doc-unavailable")),
        ("documentId", doc_text()),
        ("targetId", t("peer-b")),
        ("senderId", t("server")),
    ]);
    check(
        &input,
        Message::DocUnavailable(DocUnavailable {
            sender_id: peer("server"),
            target_id: peer("peer-b"),
            document_id: doc(),
        }),
    );
}

#[test]
fn ephemeral_with_small_and_float_counts() {
    let input = |count| {
        C::Map(vec![
            ("type", t("ephemeral")),
            ("targetId", t("server")),
            ("documentId", doc_text()),
            ("data", C::Bytes(vec![0xa0])),
            ("count", count),
            ("sessionId", t("uufuf1swdxb")),
            ("senderId", t("peer-a")),
        ])
    };
    let expected = |count| {
        Message::Ephemeral(Ephemeral {
            sender_id: peer("peer-a"),
            target_id: peer("server"),
            document_id: doc(),
            session_id: "uufuf1swdxb".into(),
            count,
            data: vec![0xa0],
        })
    };
    check(&input(C::Uint(1)), expected(1));
    check(&input(C::F64(4_294_967_303.0)), expected(4_294_967_303));
    for bad in [1.5, -1.0, f64::NAN, f64::INFINITY, 1e20] {
        assert_eq!(
            decode(&cbor(&input(C::F64(bad)))),
            Err(DecodeError::WrongType { key: "count" }),
            "{bad}"
        );
    }
    assert_eq!(
        decode(&cbor(&input(C::Raw(vec![0x20])))),
        Err(DecodeError::WrongType { key: "count" })
    );
}

#[test]
fn remote_subscription_change() {
    let input = |add, remove| {
        C::Map(vec![
            ("type", t("remote-subscription-change")),
            ("targetId", t("server")),
            ("add", add),
            ("remove", remove),
            ("senderId", t("peer-b")),
        ])
    };
    let expected = |add, remove| {
        Message::RemoteSubscriptionChange(RemoteSubscriptionChange {
            sender_id: peer("peer-b"),
            target_id: peer("server"),
            add,
            remove,
        })
    };
    check(
        &input(C::Array(vec![t("st-a")]), C::Undefined),
        expected(Some(vec![storage("st-a")]), None),
    );
    check(
        &input(C::Null, C::Array(vec![])),
        expected(None, Some(vec![])),
    );
}

#[test]
fn remote_heads_changed_with_float_timestamp() {
    let head = "2RFtu2HSsHFkfyT3H3J5J7XaRSFPA4mqmGUfZ3tmmUuEbi4U3k";
    let input = C::Map(vec![
        ("type", t("remote-heads-changed")),
        ("targetId", t("peer-b")),
        ("documentId", doc_text()),
        (
            "newHeads",
            C::Map(vec![(
                "st-a",
                C::Map(vec![
                    ("heads", C::Array(vec![t(head)])),
                    ("timestamp", C::F64(1_796_053_947_062.0)),
                ]),
            )]),
        ),
        ("senderId", t("server")),
    ]);
    let new_heads = BTreeMap::from([(
        storage("st-a"),
        HeadsAtTime {
            heads: vec![head.into()],
            timestamp: 1_796_053_947_062,
        },
    )]);
    check(
        &input,
        Message::RemoteHeadsChanged(RemoteHeadsChanged {
            sender_id: peer("server"),
            target_id: peer("peer-b"),
            document_id: doc(),
            new_heads,
        }),
    );
}

#[test]
fn remote_heads_changed_needs_heads_and_timestamp() {
    let input = C::Map(vec![
        ("type", t("remote-heads-changed")),
        ("targetId", t("peer-b")),
        ("documentId", doc_text()),
        (
            "newHeads",
            C::Map(vec![("st-a", C::Map(vec![("heads", C::Array(vec![]))]))]),
        ),
        ("senderId", t("server")),
    ]);
    assert_eq!(
        decode(&cbor(&input)),
        Err(DecodeError::WrongType { key: "newHeads" })
    );
}

// ---------------------------------------------------------------------------------------
// Leniency and strictness.

#[test]
fn unknown_keys_are_skipped_whatever_they_hold() {
    let junk = C::MinMap(vec![(
        "deep",
        C::Array(vec![
            C::Raw(vec![0xc1, 0x1a, 0, 0, 0, 1]),
            C::F64(0.5),
            C::Null,
        ]),
    )]);
    let input = sync_input(vec![("extra", junk), ("count", t("not a number"))]);
    assert_eq!(decode(&cbor(&input)), Ok(sync_message()));
}

#[test]
fn null_and_undefined_mean_absent() {
    let input = C::Map(vec![
        ("type", t("sync")),
        ("targetId", t("server")),
        ("data", C::Bytes(vec![1])),
        ("documentId", C::Undefined),
        ("senderId", t("peer-a")),
    ]);
    assert_eq!(
        decode(&cbor(&input)),
        Err(DecodeError::MissingKey("documentId"))
    );
    let input = C::Map(vec![("type", C::Null)]);
    assert_eq!(decode(&cbor(&input)), Err(DecodeError::MissingKey("type")));
}

#[test]
fn a_repeated_key_keeps_its_last_value() {
    let input = sync_input(vec![("senderId", t("peer-z"))]);
    let Ok(Message::Sync(m)) = decode(&cbor(&input)) else {
        panic!("not a sync");
    };
    assert_eq!(m.sender_id, peer("peer-z"));
}

#[test]
fn data_may_be_tagged_as_uint8array() {
    let tagged = C::Raw(vec![0xd8, 0x40, 0x43, 0x42, 1, 2]);
    let input = C::Map(vec![
        ("type", t("sync")),
        ("targetId", t("server")),
        ("data", tagged),
        ("documentId", doc_text()),
        ("senderId", t("peer-a")),
    ]);
    assert_eq!(decode(&cbor(&input)), Ok(sync_message()));
}

#[test]
fn document_id_may_be_raw_bytes_a_url_or_a_uuid() {
    let with_id = |id| {
        C::Map(vec![
            ("type", t("doc-unavailable")),
            ("documentId", id),
            ("targetId", t("a")),
            ("senderId", t("b")),
        ])
    };
    let id_of = |c| decode(&cbor(&with_id(c))).map(|m| m.document_id().copied());
    assert_eq!(id_of(C::Bytes(vec![7; 16])), Ok(Some(doc())));
    assert_eq!(id_of(C::Text(doc().url())), Ok(Some(doc())));
    let uuid = "07070707-0707-0707-0707-070707070707";
    assert_eq!(id_of(t(uuid)), Ok(Some(doc())));
    assert!(matches!(
        id_of(C::Bytes(vec![7; 15])),
        Err(DecodeError::InvalidId {
            key: "documentId",
            ..
        })
    ));
    assert!(matches!(
        id_of(t("not-an-id")),
        Err(DecodeError::InvalidId {
            key: "documentId",
            ..
        })
    ));
    assert_eq!(
        id_of(C::Uint(3)),
        Err(DecodeError::WrongType { key: "documentId" })
    );
}

#[test]
fn malformed_messages_are_refused() {
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (vec![], DecodeError::Cbor("unexpected end of input".into())),
        (cbor(&t("sync")), DecodeError::NotAMap),
        (cbor(&C::Array(vec![])), DecodeError::NotAMap),
        (cbor(&C::Map(vec![])), DecodeError::MissingKey("type")),
        (
            cbor(&C::Map(vec![("type", t("hello"))])),
            DecodeError::UnknownType("hello".into()),
        ),
        (
            cbor(&C::Map(vec![("type", C::Uint(1))])),
            DecodeError::WrongType { key: "type" },
        ),
        (
            [cbor(&sync_input(vec![])), vec![0x00]].concat(),
            DecodeError::TrailingBytes,
        ),
        (
            cbor(&C::Map(vec![("type", t("leave")), ("senderId", t(""))])),
            DecodeError::InvalidId {
                key: "senderId",
                source: IdError::Empty,
            },
        ),
        (
            cbor(&C::Map(vec![("type", t("leave"))])),
            DecodeError::MissingKey("senderId"),
        ),
        (
            cbor(&C::Map(vec![
                ("type", t("join")),
                ("senderId", t("p")),
                ("supportedProtocolVersions", t("1")),
            ])),
            DecodeError::WrongType {
                key: "supportedProtocolVersions",
            },
        ),
        (
            cbor(&sync_input(vec![("data", t("text, not bytes"))])),
            DecodeError::WrongType { key: "data" },
        ),
        (
            // An indefinite-length map.
            vec![0xbf, 0xff],
            DecodeError::Cbor("indefinite-length items are not supported".into()),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(decode(&input), Err(expected), "{}", hex::encode(&input));
    }
}

#[test]
fn unknown_type_is_quoted_truncated() {
    let long = "x".repeat(10_000);
    let input = cbor(&C::Map(vec![("type", C::Text(long))]));
    assert_eq!(
        decode(&input),
        Err(DecodeError::UnknownType("x".repeat(64)))
    );
}

#[test]
fn huge_length_claims_do_not_allocate() {
    // A map claiming 2^60 entries, then a byte string claiming 2^60 bytes.
    let map = [0xbb, 0x10, 0, 0, 0, 0, 0, 0, 0];
    assert!(matches!(decode(&map), Err(DecodeError::Cbor(_))));
    let mut data = cbor(&C::Map(vec![("type", t("sync"))]));
    data[2] = 2; // two entries
    data.extend(cbor(&t("data")));
    data.extend([0x5b, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(decode(&data), Err(DecodeError::Cbor(_))));
}

#[test]
fn deep_nesting_is_refused() {
    let mut input = cbor(&C::Map(vec![("type", t("sync"))]));
    input[2] = 2;
    input.extend(cbor(&t("extra")));
    input.extend(std::iter::repeat_n(0x81, 100_000));
    input.push(0x00);
    assert!(matches!(decode(&input), Err(DecodeError::Cbor(_))));
}

#[test]
fn non_text_keys_are_skipped() {
    let mut input = cbor(&sync_input(vec![]));
    input[2] += 1;
    input.extend([0x01, 0x02]); // 1: 2
    assert_eq!(decode(&input), Ok(sync_message()));
}

#[test]
fn encode_writes_keys_in_js_order_with_minimal_heads() {
    let bytes = encode(&sync_message());
    assert_eq!(bytes[0], 0xa5);
    let keys: Vec<&str> = {
        let mut r = Reader::new(&bytes);
        let n = r.map_len().expect("map");
        (0..n)
            .map(|_| {
                let k = r.text().expect("key");
                r.skip(1).expect("value");
                k
            })
            .collect()
    };
    assert_eq!(keys, ["type", "targetId", "data", "documentId", "senderId"]);
}

#[test]
fn encode_leaves_out_what_is_none() {
    let join = Message::Join(Join {
        sender_id: peer("p"),
        peer_metadata: Some(PeerMetadata::default()),
        supported_protocol_versions: None,
    });
    let bytes = encode(&join);
    assert_eq!(bytes[0], 0xa3);
    assert!(!bytes.windows(9).any(|w| w == b"storageId"));
}

// ---------------------------------------------------------------------------------------
// Properties.

fn any_peer_id() -> impl Strategy<Value = PeerId> {
    "\\PC{1,24}".prop_map(|s| PeerId::parse(s).expect("non-empty and short"))
}

fn any_storage_id() -> impl Strategy<Value = StorageId> {
    "\\PC{1,24}".prop_map(|s| StorageId::parse(s).expect("non-empty and short"))
}

fn any_document_id() -> impl Strategy<Value = DocumentId> {
    any::<[u8; 16]>().prop_map(DocumentId::from_bytes)
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..48)
}

fn any_metadata() -> impl Strategy<Value = PeerMetadata> {
    (proptest::option::of(any_storage_id()), any::<bool>()).prop_map(
        |(storage_id, is_ephemeral)| PeerMetadata {
            storage_id,
            is_ephemeral,
        },
    )
}

fn any_doc_message() -> impl Strategy<Value = DocMessage> {
    (any_peer_id(), any_peer_id(), any_document_id(), any_bytes()).prop_map(
        |(sender_id, target_id, document_id, data)| DocMessage {
            sender_id,
            target_id,
            document_id,
            data,
        },
    )
}

fn any_storage_ids() -> impl Strategy<Value = Option<Vec<StorageId>>> {
    proptest::option::of(proptest::collection::vec(any_storage_id(), 0..3))
}

fn any_message() -> impl Strategy<Value = Message> {
    let versions = proptest::option::of(proptest::collection::vec("\\PC{0,4}", 0..3));
    let heads = proptest::collection::btree_map(
        any_storage_id(),
        (
            proptest::collection::vec("[1-9A-Za-z]{0,50}", 0..3),
            any::<u64>(),
        )
            .prop_map(|(heads, timestamp)| HeadsAtTime { heads, timestamp }),
        0..3,
    );
    prop_oneof![
        (
            any_peer_id(),
            proptest::option::of(any_metadata()),
            versions
        )
            .prop_map(|(sender_id, peer_metadata, supported_protocol_versions)| {
                Message::Join(Join {
                    sender_id,
                    peer_metadata,
                    supported_protocol_versions,
                })
            }),
        (any_peer_id(), any_peer_id(), any_metadata(), "\\PC{0,4}").prop_map(
            |(sender_id, target_id, peer_metadata, selected_protocol_version)| {
                Message::Peer(super::Peer {
                    sender_id,
                    target_id,
                    peer_metadata,
                    selected_protocol_version,
                })
            }
        ),
        (
            "\\PC{0,40}",
            proptest::option::of(any_peer_id()),
            proptest::option::of(any_peer_id())
        )
            .prop_map(
                |(message, sender_id, target_id)| Message::Error(ErrorMessage {
                    message,
                    sender_id,
                    target_id,
                })
            ),
        any_peer_id().prop_map(|sender_id| Message::Leave { sender_id }),
        any_doc_message().prop_map(Message::Request),
        any_doc_message().prop_map(Message::Sync),
        (any_peer_id(), any_peer_id(), any_document_id()).prop_map(
            |(sender_id, target_id, document_id)| Message::DocUnavailable(DocUnavailable {
                sender_id,
                target_id,
                document_id,
            })
        ),
        (any_doc_message(), "\\PC{0,12}", any::<u64>()).prop_map(|(m, session_id, count)| {
            Message::Ephemeral(Ephemeral {
                sender_id: m.sender_id,
                target_id: m.target_id,
                document_id: m.document_id,
                session_id,
                count,
                data: m.data,
            })
        }),
        (
            any_peer_id(),
            any_peer_id(),
            any_storage_ids(),
            any_storage_ids()
        )
            .prop_map(|(sender_id, target_id, add, remove)| {
                Message::RemoteSubscriptionChange(RemoteSubscriptionChange {
                    sender_id,
                    target_id,
                    add,
                    remove,
                })
            }),
        (any_peer_id(), any_peer_id(), any_document_id(), heads).prop_map(
            |(sender_id, target_id, document_id, new_heads)| {
                Message::RemoteHeadsChanged(RemoteHeadsChanged {
                    sender_id,
                    target_id,
                    document_id,
                    new_heads,
                })
            }
        ),
    ]
}

/// One edit of a valid encoding: flip, overwrite, insert, delete or truncate.
#[derive(Debug, Clone)]
enum Mutation {
    Xor(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn any_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Xor(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let at = |i: usize| i % bytes.len();
    match *mutation {
        Mutation::Xor(i, b) => {
            let i = at(i);
            bytes[i] ^= b;
        }
        Mutation::Set(i, b) => {
            let i = at(i);
            bytes[i] = b;
        }
        Mutation::Insert(i, b) => {
            let i = at(i);
            bytes.insert(i, b);
        }
        Mutation::Delete(i) => {
            let i = at(i);
            bytes.remove(i);
        }
        Mutation::Truncate(i) => {
            let i = at(i);
            bytes.truncate(i);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity(message in any_message()) {
        let bytes = encode(&message);
        prop_assert_eq!(decode(&bytes), Ok(message));
    }

    #[test]
    fn encoding_is_canonical(message in any_message()) {
        let bytes = encode(&message);
        let again = decode(&bytes).map(|m| encode(&m));
        prop_assert_eq!(again, Ok(bytes));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_maps_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..128),
        entries in 0..16u8,
    ) {
        let mut bytes = vec![0xb9, 0x00, entries];
        bytes.extend(cbor(&t("type")));
        bytes.extend(tail);
        let _ = decode(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(
        message in any_message(),
        mutations in proptest::collection::vec(any_mutation(), 1..6),
    ) {
        let mut bytes = encode(&message);
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        if let Ok(decoded) = decode(&bytes) {
            // Whatever still decodes must be a message we can send again.
            prop_assert_eq!(decode(&encode(&decoded)), Ok(decoded));
        }
    }
}
