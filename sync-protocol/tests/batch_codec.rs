//! Codec properties of batch sync: every message round-trips, and no input (random bytes,
//! mutated messages, well-formed messages full of garbage) makes the decoders, the server
//! core or the device panic.

mod batch_support;

use automerge::ChangeHash;
use batch_support::{Device, actor};
use jemput_sync_protocol::DocumentId;
use jemput_sync_protocol::batch::{
    Ack, BatchRequest, BatchResponse, CompensationReason, Cursor, DeviceRecord, DocUpdate,
    IdempotencyKey, PushEntry, RefusalReason, RepairReply, RepairRequest, ServerConfig,
    ServerCursor, ServerExchange, decode_request, decode_response, encode_request, encode_response,
};
use proptest::prelude::*;

fn document_id() -> impl Strategy<Value = DocumentId> {
    any::<[u8; 16]>().prop_map(DocumentId::from_bytes)
}

fn heads() -> impl Strategy<Value = Vec<ChangeHash>> {
    prop::collection::vec(any::<[u8; 32]>().prop_map(ChangeHash), 0..4)
}

fn blob() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64)
}

fn cursor() -> impl Strategy<Value = Cursor> {
    prop::collection::vec(any::<u8>(), 1..=Cursor::MAX_LEN)
        .prop_map(|b| Cursor::from_bytes(b).expect("length in range"))
}

fn key() -> impl Strategy<Value = IdempotencyKey> {
    any::<[u8; 16]>().prop_map(IdempotencyKey::from_bytes)
}

fn request() -> impl Strategy<Value = BatchRequest> {
    let push = (
        document_id(),
        heads(),
        prop::collection::vec(any::<u8>(), 1..64),
    )
        .prop_map(|(document_id, heads, changes)| PushEntry {
            document_id,
            heads,
            changes,
        });
    let repair = (document_id(), any::<u32>(), prop::option::of(blob())).prop_map(
        |(document_id, round, message)| RepairRequest {
            document_id,
            round,
            message,
        },
    );
    (
        key(),
        prop::option::of(cursor()),
        prop::collection::vec(push, 0..4),
        prop::collection::vec(repair, 0..3),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(key, cursor, push, repair, max_response_bytes)| BatchRequest {
                key,
                cursor,
                push,
                repair,
                max_response_bytes,
            },
        )
}

fn ack() -> impl Strategy<Value = Ack> {
    prop_oneof![
        Just(Ack::Accepted),
        any::<u64>().prop_map(|c| Ack::Compensated(CompensationReason::from_code(c))),
        any::<u64>().prop_map(|c| Ack::Refused(RefusalReason::from_code(c))),
        Just(Ack::Repair),
        Just(Ack::Deferred),
        (5u64..).prop_map(Ack::Unknown),
    ]
}

fn response() -> impl Strategy<Value = BatchResponse> {
    let update =
        (document_id(), heads(), blob()).prop_map(|(document_id, heads, changes)| DocUpdate {
            document_id,
            heads,
            changes,
        });
    let reply = (document_id(), any::<u32>(), blob()).prop_map(|(document_id, round, message)| {
        RepairReply {
            document_id,
            round,
            message,
        }
    });
    (
        key(),
        cursor(),
        prop::collection::vec(ack(), 0..6),
        prop::collection::vec(update, 0..3),
        prop::collection::vec(document_id(), 0..3),
        prop::collection::vec(reply, 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(key, cursor, acks, updates, removed, repair, more)| BatchResponse {
                key,
                cursor,
                acks,
                updates,
                removed,
                repair,
                more,
            },
        )
}

proptest! {
    #[test]
    fn requests_round_trip(request in request()) {
        let bytes = encode_request(&request);
        prop_assert_eq!(decode_request(&bytes), Ok(request));
    }

    #[test]
    fn responses_round_trip(response in response()) {
        let bytes = encode_response(&response);
        prop_assert_eq!(decode_response(&bytes), Ok(response));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(&bytes);
        let _ = decode_response(&bytes);
        let _ = ServerExchange::begin(&ServerConfig::default(), &DeviceRecord::default(), &bytes);
        if let Ok(cursor) = Cursor::from_bytes(bytes) {
            let _ = ServerCursor::parse(&cursor, 0);
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        request in request(),
        response in response(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        for mut bytes in [encode_request(&request), encode_response(&response)] {
            for (at, value) in &flips {
                let i = at.index(bytes.len());
                bytes[i] = *value;
            }
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
            let truncated = &bytes[..cut.index(bytes.len() + 1)];
            let _ = decode_request(truncated);
            let _ = decode_response(truncated);
        }
    }

    /// A server answering garbage: the device checks, applies or refuses, never panics, and a
    /// refused response leaves it unchanged.
    #[test]
    fn devices_survive_garbage_responses(response in response(), edits in 0usize..3) {
        let mut device = Device::new(1);
        for i in 0..edits {
            device.edit(batch_support::doc_id(i as u32), "name", "Siti");
        }
        let request = decode_request(&device.request()).expect("own request");
        let mut response = response;
        // Half the time answer the right request, so the device gets past its checks.
        if response.more {
            response.key = request.key;
            response.acks.truncate(request.push.len());
            while response.acks.len() < request.push.len() {
                response.acks.push(Ack::Accepted);
            }
        }
        let before = device.state.clone();
        let mut docs = device.docs.clone();
        match device.state.apply_response(response, &mut docs) {
            Ok(_) => {}
            Err(_) => prop_assert_eq!(&device.state, &before),
        }
    }

    /// A server core fed well-formed requests full of garbage changes and sync messages.
    #[test]
    fn servers_survive_garbage_requests(request in request()) {
        let mut server = jemput_sync_protocol::batch::MemoryServer::new(
            ServerConfig::default(),
            actor(0xff),
        );
        let body = encode_request(&request);
        let response = server.handle(1, &body).expect("well-formed");
        let decoded = decode_response(&response).expect("valid response");
        prop_assert_eq!(decoded.acks.len(), request.push.len());
        // And a retry is answered identically.
        prop_assert_eq!(server.handle(1, &body).expect("replay"), response);
    }
}
