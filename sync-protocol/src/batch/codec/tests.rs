use super::*;
use crate::batch::message::{CompensationReason, RefusalReason};

fn key() -> IdempotencyKey {
    IdempotencyKey::from_bytes([0x11; 16])
}

fn cursor3() -> Cursor {
    Cursor::from_bytes(vec![1, 2, 3]).expect("short cursor")
}

fn doc(n: u8) -> DocumentId {
    DocumentId::from_bytes([n; 16])
}

fn hash(n: u8) -> ChangeHash {
    ChangeHash([n; 32])
}

/// Builds CBOR by hand for inputs the encoder never writes.
fn cbor(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::default();
    f(&mut w);
    w.into_bytes()
}

fn check_request(bytes: &[u8], expected: Result<BatchRequest, BatchDecodeError>) {
    assert_eq!(decode_request(bytes), expected, "{bytes:02x?}");
}

#[test]
fn nothing_changed_request_has_exact_bytes() {
    let bytes = encode_request(&BatchRequest::empty(key(), Some(cursor3())));
    let mut expected = vec![0xa3, 0x00, 0x01, 0x01, 0x50];
    expected.extend([0x11; 16]);
    expected.extend([0x02, 0x43, 1, 2, 3]);
    assert_eq!(bytes, expected);
    check_request(&bytes, Ok(BatchRequest::empty(key(), Some(cursor3()))));
}

#[test]
fn nothing_changed_response_has_exact_bytes() {
    let response = BatchResponse {
        key: key(),
        cursor: cursor3(),
        acks: Vec::new(),
        updates: Vec::new(),
        removed: Vec::new(),
        repair: Vec::new(),
        more: false,
    };
    let bytes = encode_response(&response);
    let mut expected = vec![0xa3, 0x00, 0x01, 0x01, 0x50];
    expected.extend([0x11; 16]);
    expected.extend([0x02, 0x43, 1, 2, 3]);
    assert_eq!(bytes, expected);
    assert_eq!(decode_response(&bytes), Ok(response));
}

#[test]
fn every_field_round_trips() {
    let request = BatchRequest {
        key: key(),
        cursor: None,
        push: vec![PushEntry {
            document_id: doc(1),
            heads: vec![hash(1), hash(2)],
            changes: vec![0x85, 0x6f, 0x4a, 0x83],
        }],
        repair: vec![
            RepairRequest {
                document_id: doc(2),
                round: 3,
                message: Some(vec![0x42, 0]),
            },
            RepairRequest {
                document_id: doc(3),
                round: 5,
                message: None,
            },
        ],
        max_response_bytes: Some(20_000),
    };
    assert_eq!(decode_request(&encode_request(&request)), Ok(request));

    let response = BatchResponse {
        key: key(),
        cursor: cursor3(),
        acks: vec![
            Ack::Accepted,
            Ack::Compensated(CompensationReason::StatusTransition),
            Ack::Refused(RefusalReason::ForeignActor),
            Ack::Repair,
            Ack::Deferred,
            Ack::Unknown(99),
            Ack::Refused(RefusalReason::Unknown(700)),
        ],
        updates: vec![DocUpdate {
            document_id: doc(4),
            heads: vec![hash(9)],
            changes: Vec::new(),
        }],
        removed: vec![doc(5), doc(6)],
        repair: vec![RepairReply {
            document_id: doc(2),
            round: 3,
            message: vec![0x42, 1, 2],
        }],
        more: true,
    };
    assert_eq!(decode_response(&encode_response(&response)), Ok(response));
}

#[test]
fn plain_acks_cost_one_byte() {
    let response = |acks: Vec<Ack>| BatchResponse {
        key: key(),
        cursor: cursor3(),
        acks,
        updates: Vec::new(),
        removed: Vec::new(),
        repair: Vec::new(),
        more: false,
    };
    let none = encode_response(&response(Vec::new())).len();
    let ten = encode_response(&response(vec![Ack::Accepted; 10])).len();
    // Key, array header, ten status bytes.
    assert_eq!(ten - none, 1 + 1 + 10);
}

#[test]
fn decoder_is_lenient_where_writers_differ() {
    let id = doc(7);
    // Non-minimal map header (5 entries), as cbor-x writes.
    let mut lenient = vec![0xb9, 0x00, 0x05];
    // version as a half float 1.0
    lenient.extend([0x00, 0xf9, 0x3c, 0x00]);
    lenient.extend(cbor(|w| {
        w.uint(1);
        w.bytes(&[0x11; 16]);
        // an unknown text key, skipped
        w.text("future");
        w.array(2);
        w.uint(1);
        w.text("x");
        // cursor undefined: absent
        w.uint(2);
    }));
    lenient.push(0xf7);
    lenient.extend(cbor(|w| {
        w.uint(3);
        w.array(1);
        w.map(4);
        w.uint(0);
        w.text(&id.to_string());
        w.uint(1);
        w.array(0);
        w.uint(2);
        w.bytes(&[1]);
        w.uint(42); // unknown integer key inside an entry
        w.bool(true);
    }));
    check_request(
        &lenient,
        Ok(BatchRequest {
            push: vec![PushEntry {
                document_id: id,
                heads: Vec::new(),
                changes: vec![1],
            }],
            ..BatchRequest::empty(key(), None)
        }),
    );
}

/// `{0: 1, 1: key}` followed by `extra` entries (the map header counts them).
fn request_with(extra_entries: usize, extra: impl FnOnce(&mut Writer)) -> Vec<u8> {
    cbor(|w| {
        w.map(2 + extra_entries);
        w.uint(0);
        w.uint(1);
        w.uint(1);
        w.bytes(&[0x11; 16]);
        extra(w);
    })
}

fn push_with(w: &mut Writer, heads: &[&[u8]], changes: &[u8]) {
    w.uint(3);
    w.array(1);
    w.map(3);
    w.uint(0);
    w.bytes(&[7; 16]);
    w.uint(1);
    w.array(heads.len());
    heads.iter().for_each(|h| w.bytes(h));
    w.uint(2);
    w.bytes(changes);
}

#[test]
fn decoder_is_strict_where_it_matters() {
    use BatchDecodeError as E;
    let cases: Vec<(Vec<u8>, BatchDecodeError)> = vec![
        (vec![], E::Cbor("unexpected end of input".into())),
        (vec![0x80], E::NotAMap),
        (
            cbor(|w| {
                w.map(1);
                w.uint(1);
                w.bytes(&[0x11; 16]);
            }),
            E::MissingKey("version"),
        ),
        (
            cbor(|w| {
                w.map(2);
                w.uint(0);
                w.uint(2);
                w.uint(1);
                w.bytes(&[0x11; 16]);
            }),
            E::UnsupportedVersion(2),
        ),
        (
            cbor(|w| {
                w.map(2);
                w.uint(0);
                w.uint(1);
                w.uint(1);
                w.bytes(&[0x11; 15]);
            }),
            E::InvalidLength { key: "key" },
        ),
        (
            {
                let mut b = request_with(0, |_| {});
                b.push(0x00);
                b
            },
            E::TrailingBytes,
        ),
        (
            request_with(1, |w| {
                w.uint(2);
                w.bytes(&[]);
            }),
            E::InvalidLength { key: "cursor" },
        ),
        (
            request_with(1, |w| {
                w.uint(2);
                w.bytes(&[0; 65]);
            }),
            E::InvalidLength { key: "cursor" },
        ),
        (
            request_with(1, |w| push_with(w, &[&[0; 31]], &[1])),
            E::InvalidLength { key: "push.heads" },
        ),
        (
            request_with(1, |w| push_with(w, &[&[0; 32]], &[])),
            E::InvalidLength {
                key: "push.changes",
            },
        ),
        (
            request_with(1, |w| {
                w.uint(3);
                w.array(MAX_ENTRIES + 1);
                (0..=MAX_ENTRIES).for_each(|_| w.uint(0));
            }),
            E::TooMany { key: "push" },
        ),
        (
            request_with(1, |w| {
                w.uint(3);
                w.array(1);
                w.map(3);
                w.uint(0);
                w.bytes(&[7; 16]);
                w.uint(1);
                w.array(MAX_HEADS + 1);
                (0..=MAX_HEADS).for_each(|_| w.bytes(&[]));
                w.uint(2);
                w.bytes(&[1]);
            }),
            E::TooMany { key: "push.heads" },
        ),
        (
            request_with(1, |w| {
                w.uint(3);
                w.array(1);
                w.map(2);
                w.uint(0);
                w.bytes(&[7; 16]);
                w.uint(2);
                w.bytes(&[1]);
            }),
            E::MissingKey("push.heads"),
        ),
        (
            request_with(1, |w| {
                w.uint(4);
                w.array(1);
                w.map(2);
                w.uint(0);
                w.bytes(&[7; 15]);
                w.uint(1);
                w.uint(1);
            }),
            E::InvalidDocumentId { key: "repair.doc" },
        ),
        (
            request_with(1, |w| {
                w.uint(4);
                w.array(1);
                w.map(2);
                w.uint(0);
                w.bytes(&[7; 16]);
                w.uint(1);
                w.uint(u64::from(u32::MAX) + 1);
            }),
            E::WrongType {
                key: "repair.round",
            },
        ),
        (
            request_with(1, |w| {
                w.uint(5);
                w.text("lots");
            }),
            E::WrongType {
                key: "maxResponseBytes",
            },
        ),
    ];
    for (bytes, expected) in cases {
        check_request(&bytes, Err(expected));
    }
}

#[test]
fn response_requires_a_cursor() {
    let bytes = cbor(|w| {
        w.map(2);
        w.uint(0);
        w.uint(1);
        w.uint(1);
        w.bytes(&[0x11; 16]);
    });
    assert_eq!(
        decode_response(&bytes),
        Err(BatchDecodeError::MissingKey("cursor"))
    );
}

#[test]
fn acks_decode_in_both_forms() {
    let bytes = cbor(|w| {
        w.map(4);
        w.uint(0);
        w.uint(1);
        w.uint(1);
        w.bytes(&[0x11; 16]);
        w.uint(2);
        w.bytes(&[9]);
        w.uint(3);
        w.array(3);
        w.uint(0);
        w.map(2);
        w.uint(0);
        w.uint(1);
        w.uint(1);
        w.uint(3);
        // a map without a reason: reason 0
        w.map(1);
        w.uint(0);
        w.uint(2);
    });
    let response = decode_response(&bytes).expect("decodes");
    assert_eq!(
        response.acks,
        [
            Ack::Accepted,
            Ack::Compensated(CompensationReason::ApprovedApplication),
            Ack::Refused(RefusalReason::Unspecified),
        ]
    );
}
