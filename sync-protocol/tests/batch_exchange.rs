//! Batch sync exchanges between a device and the in-memory server, scripted: sizes on the
//! wire, acknowledgements, compensation, refusal, scope, retries and repair.

mod batch_support;

use automerge::Automerge;
use batch_support::{Device, actor, application, change_count, doc_id, get, gzip_len, put};
use jemput_sync_protocol::batch::memory::Verdict;
use jemput_sync_protocol::batch::{
    Ack, CompensationReason, DeviceLimits, DocKnowledge, MemoryServer, RefusalReason, ServerConfig,
    decode_response,
};

const SERVER: u8 = 0xff;

fn server() -> MemoryServer {
    MemoryServer::new(
        ServerConfig {
            epoch: 7,
            ..ServerConfig::default()
        },
        actor(SERVER),
    )
}

/// A server with `n` applications and a device that has synced them all.
fn synced(n: u32) -> (MemoryServer, Device) {
    let mut server = server();
    for i in 0..n {
        server.edit(doc_id(i), |doc| application(doc, i));
    }
    let mut device = Device::new(1);
    device.sync(&mut server, 10);
    assert_eq!(device.docs.len(), n as usize);
    (server, device)
}

fn assert_converged(server: &MemoryServer, device: &Device) {
    for (id, doc) in &device.docs {
        let on_server = server.document(id).expect("server has it");
        assert_eq!(doc.get_heads(), on_server.get_heads(), "{id}");
        assert_eq!(change_count(doc), change_count(on_server), "{id}");
    }
}

#[test]
fn nothing_changed_is_one_small_round_trip_with_500_documents() {
    let (mut server, mut device) = synced(500);
    let exchanges = device.sync(&mut server, 3);
    assert_eq!(exchanges.len(), 1);
    let exchange = &exchanges[0];
    let (request, response) = (exchange.request_bytes.len(), exchange.response_bytes.len());
    println!("nothing changed, 500 documents: request {request} B, response {response} B");
    assert!(request + response < 100, "{request} + {response}");
    assert!(exchange.effects.saved.is_empty());
}

#[test]
fn representative_changed_exchange_stays_near_the_compressed_changes() {
    let (mut server, mut device) = synced(500);
    // 1,000 local changes over 200 documents, 50 other documents changed on the server.
    for i in 0..200 {
        for c in 0..5 {
            device.edit(doc_id(i), &format!("field{c}"), &format!("nilai {i}-{c}"));
        }
    }
    for i in 300..350 {
        server.edit(doc_id(i), |doc| put(doc, "status", "in_review"));
    }
    let changes_out: Vec<u8> = (0..200)
        .flat_map(|i| {
            let doc = &device.docs[&doc_id(i)];
            let known = server.document(&doc_id(i)).expect("known").get_heads();
            doc.save_after(&known)
        })
        .collect();
    let changes_in: Vec<u8> = (300..350)
        .flat_map(|i| {
            let doc = server.document(&doc_id(i)).expect("known");
            let known = device.docs[&doc_id(i)].get_heads();
            doc.save_after(&known)
        })
        .collect();

    let exchanges = device.sync(&mut server, 3);
    assert!(exchanges.len() <= 2, "{} round trips", exchanges.len());
    let mut wire = 0;
    for (i, exchange) in exchanges.iter().enumerate() {
        let (request, response) = (&exchange.request_bytes, &exchange.response_bytes);
        wire += gzip_len(request) + gzip_len(response);
        println!(
            "changed, exchange {}: request {} B (gzip {}), response {} B (gzip {})",
            i + 1,
            request.len(),
            gzip_len(request),
            response.len(),
            gzip_len(response),
        );
    }
    let compressed_changes = gzip_len(&changes_out) + gzip_len(&changes_in);
    let budget = compressed_changes * 5 / 4 + 64 * 250;
    println!(
        "changed: raw changes {} B, gzip changes {compressed_changes} B, wire (gzip bodies) \
         {wire} B, budget 1.25 x changes + 64 B x 250 = {budget} B",
        changes_out.len() + changes_in.len(),
    );
    assert!(wire <= budget, "{wire} > {budget}");
    let acknowledged: usize = exchanges.iter().map(|e| e.effects.acknowledged.len()).sum();
    let saved: usize = exchanges.iter().map(|e| e.effects.saved.len()).sum();
    assert_eq!(acknowledged, 200);
    assert_eq!(saved, 50);
    assert_converged(&server, &device);
}

#[test]
fn a_retried_request_is_answered_from_the_record() {
    let (mut server, mut device) = synced(3);
    device.edit(doc_id(0), "name", "Siti");
    let request = device.request();
    let lost = server.handle(1, &request).expect("served");
    server.edit(doc_id(1), |doc| put(doc, "status", "approved"));
    // The reply was lost; the device sends the same request again.
    let retry = device.request();
    assert_eq!(retry, request);
    let replay = server.handle(1, &retry).expect("served");
    assert_eq!(replay, lost);
    device.receive(&replay).expect("applies");
    // The server's later edit arrives with the next exchange.
    device.sync(&mut server, 3);
    assert_converged(&server, &device);
    assert_eq!(
        change_count(server.document(&doc_id(0)).expect("doc")),
        2,
        "the push was stored once"
    );
}

#[test]
fn an_abandoned_request_loses_nothing() {
    let (mut server, mut device) = synced(3);
    device.edit(doc_id(0), "name", "Siti");
    server.edit(doc_id(2), |doc| put(doc, "status", "in_review"));
    let request = device.request();
    server.handle(1, &request).expect("served"); // reply lost
    device.state.abandon_pending();
    device.edit(doc_id(1), "name", "Budi");
    let exchanges = device.sync(&mut server, 3);
    // The lost delivery of document 2 is sent again, because the device did not send back
    // the cursor that confirmed it.
    assert!(exchanges[0].effects.saved.contains(&doc_id(2)));
    assert_converged(&server, &device);
}

#[test]
fn a_different_body_under_the_same_key_is_refused() {
    let (mut server, mut device) = synced(1);
    device.edit(doc_id(0), "name", "Siti");
    let request = device.request();
    server.handle(1, &request).expect("served");
    let mut other = request.clone();
    let last = other.len() - 1;
    other[last] ^= 1;
    assert!(server.handle(1, &other).is_err());
}

#[test]
fn policy_compensation_reaches_the_device_in_the_same_response() {
    let mut server = server().with_policy(Box::new(|_, merged: &mut Automerge| {
        if get(merged, "status").as_deref() == Some("approved") {
            put(merged, "status", "submitted");
            Verdict::Compensate(CompensationReason::StatusTransition)
        } else {
            Verdict::Accept
        }
    }));
    server.edit(doc_id(0), |doc| application(doc, 0));
    let mut device = Device::new(1);
    device.sync(&mut server, 3);
    device.edit(doc_id(0), "status", "approved");
    let exchange = device.sync_once(&mut server);
    let response = decode_response(&exchange.response_bytes).expect("decodes");
    assert_eq!(
        response.acks,
        [Ack::Compensated(CompensationReason::StatusTransition)]
    );
    assert_eq!(
        exchange.effects.compensated,
        [(doc_id(0), CompensationReason::StatusTransition)]
    );
    assert_eq!(
        get(&device.docs[&doc_id(0)], "status").as_deref(),
        Some("submitted")
    );
    assert!(!exchange.effects.sync_again);
    assert_converged(&server, &device);
}

#[test]
fn a_refused_push_is_not_pushed_again_until_the_document_moves() {
    let mut server = server().with_policy(Box::new(|changes, _: &mut Automerge| {
        if changes.iter().any(|c| c.actor_id() == &actor(9)) {
            Verdict::Refuse(RefusalReason::ForeignActor)
        } else {
            Verdict::Accept
        }
    }));
    server.edit(doc_id(0), |doc| application(doc, 0));
    let mut device = Device::new(9);
    device.sync(&mut server, 3);
    device.edit(doc_id(0), "name", "Palsu");
    let exchange = device.sync_once(&mut server);
    assert_eq!(
        exchange.effects.refused,
        [(doc_id(0), RefusalReason::ForeignActor)]
    );
    assert!(!exchange.effects.sync_again);
    assert_eq!(change_count(server.document(&doc_id(0)).expect("doc")), 1);
    let again = device.sync_once(&mut server);
    assert!(
        decode_response(&again.response_bytes)
            .expect("decodes")
            .acks
            .is_empty()
    );
}

#[test]
fn documents_leave_and_enter_the_scope() {
    let (mut server, mut device) = synced(3);
    server.hide(1, doc_id(1));
    let exchange = device.sync_once(&mut server);
    assert_eq!(exchange.effects.deleted, [doc_id(1)]);
    assert!(!device.docs.contains_key(&doc_id(1)));
    server.edit(doc_id(1), |doc| put(doc, "status", "in_review"));
    server.show(1, doc_id(1));
    let exchange = device.sync_once(&mut server);
    assert_eq!(exchange.effects.saved, [doc_id(1)]);
    assert_converged(&server, &device);
}

#[test]
fn a_push_to_a_document_out_of_scope_is_refused_and_removed() {
    let (mut server, mut device) = synced(2);
    server.hide(1, doc_id(0));
    device.edit(doc_id(0), "name", "Siti");
    let exchange = device.sync_once(&mut server);
    assert_eq!(
        exchange.effects.refused,
        [(doc_id(0), RefusalReason::Unavailable)]
    );
    assert_eq!(exchange.effects.deleted, [doc_id(0)]);
    assert_eq!(exchange.effects.lost_local_changes, [doc_id(0)]);
}

#[test]
fn a_device_that_lost_a_document_gets_it_whole() {
    let (mut server, mut device) = synced(2);
    device.docs.remove(&doc_id(0));
    device.state.document_lost(doc_id(0));
    device.sync(&mut server, 3);
    assert_converged(&server, &device);
    assert!(device.docs.contains_key(&doc_id(0)));
}

#[test]
fn a_wrong_server_record_falls_back_to_sync_messages() {
    let (mut server, mut device) = synced(2);
    // The server believes the device holds changes it never received.
    server.edit(doc_id(0), |doc| put(doc, "status", "in_review"));
    let heads = server.document(&doc_id(0)).expect("doc").get_heads();
    *server.knowledge_mut(1, doc_id(0)) = DocKnowledge {
        confirmed: heads,
        pending: None,
    };
    server.edit(doc_id(0), |doc| put(doc, "status", "approved"));
    let exchanges = device.sync(&mut server, 6);
    assert!(exchanges[0].effects.repairing.contains(&doc_id(0)));
    assert!(exchanges.len() <= 3, "{}", exchanges.len());
    assert_converged(&server, &device);
}

#[test]
fn a_server_that_lost_changes_gets_them_back_through_repair() {
    let (mut server, mut device) = synced(1);
    let backup = server.document(&doc_id(0)).expect("doc").clone();
    device.edit(doc_id(0), "name", "Siti");
    device.sync(&mut server, 3);
    // The server is restored from a backup taken before the push; the device does not know.
    let mut restored = self::server();
    restored.edit(doc_id(0), |doc| *doc = backup);
    device.edit(doc_id(0), "phone", "0812");
    let exchanges = device.sync(&mut restored, 6);
    let acks: Vec<Ack> = exchanges
        .iter()
        .flat_map(|e| decode_response(&e.response_bytes).expect("decodes").acks)
        .collect();
    assert_eq!(acks.first(), Some(&Ack::Repair));
    assert_converged(&restored, &device);
    assert_eq!(
        get(restored.document(&doc_id(0)).expect("doc"), "name").as_deref(),
        Some("Siti")
    );
}

#[test]
fn large_catch_ups_are_split_by_the_devices_response_limit() {
    let mut server = server();
    for i in 0..40 {
        server.edit(doc_id(i), |doc| application(doc, i));
    }
    let mut device = Device::new(1);
    device.limits = DeviceLimits {
        max_response_bytes: Some(4 * 1024),
        ..DeviceLimits::default()
    };
    let exchanges = device.sync(&mut server, 40);
    assert!(exchanges.len() > 3, "{}", exchanges.len());
    for exchange in &exchanges {
        assert!(exchange.response_bytes.len() < 4 * 1024 + 1024);
    }
    assert_eq!(device.docs.len(), 40);
    assert_converged(&server, &device);
}

#[test]
fn a_new_device_document_is_pushed_whole_and_acknowledged() {
    let mut server = server();
    let mut device = Device::new(1);
    device.edit(doc_id(77), "schema", "jemput/visit@1");
    device.edit(doc_id(77), "village", "34.71.01.1001");
    let exchange = device.sync_once(&mut server);
    assert_eq!(exchange.effects.acknowledged, [doc_id(77)]);
    assert!(exchange.effects.saved.is_empty(), "nothing to send back");
    assert!(!exchange.effects.sync_again);
    assert_converged(&server, &device);
    // A second device receives it.
    let mut other = Device::new(2);
    other.sync(&mut server, 3);
    assert_eq!(
        other.docs[&doc_id(77)].get_heads(),
        device.docs[&doc_id(77)].get_heads()
    );
}

#[test]
fn a_copy_that_cannot_merge_is_replaced_by_the_servers() {
    let mut server = server();
    let mut device = Device::new(1);
    device.edit(doc_id(5), "name", "Siti");
    device.sync(&mut server, 3);
    // The device loses the document and, wrongly, starts it again under the same actor:
    // its first change reuses sequence number 1, which Automerge refuses to merge.
    device.docs.remove(&doc_id(5));
    device.state.document_lost(doc_id(5));
    device.edit(doc_id(5), "name", "Budi");
    let exchanges = device.sync(&mut server, 4);
    let last = exchanges.last().expect("one exchange");
    assert!(
        exchanges
            .iter()
            .any(|e| e.effects.lost_local_changes.contains(&doc_id(5)))
    );
    assert!(!last.effects.sync_again);
    assert_converged(&server, &device);
    assert_eq!(
        get(&device.docs[&doc_id(5)], "name").as_deref(),
        Some("Siti")
    );
}

/// The worked example of `docs/BATCH-SYNC.md`: one document edited on the device (one
/// change), one changed on the server, 500 documents held.
#[test]
fn worked_example_sizes() {
    let (mut server, mut device) = synced(500);
    device.edit(doc_id(7), "status", "submitted");
    server.edit(doc_id(9), |doc| put(doc, "status", "in_review"));
    let pushed = device.docs[&doc_id(7)]
        .save_after(&server.document(&doc_id(7)).expect("doc").get_heads())
        .len();
    let delivered = server
        .document(&doc_id(9))
        .expect("doc")
        .save_after(&device.docs[&doc_id(9)].get_heads())
        .len();
    let exchange = device.sync_once(&mut server);
    let (request, response) = (&exchange.request_bytes, &exchange.response_bytes);
    println!(
        "worked example: pushed change {pushed} B, delivered change {delivered} B; request {} B \
         (gzip {}), response {} B (gzip {})",
        request.len(),
        gzip_len(request),
        response.len(),
        gzip_len(response)
    );
    // Request: 1 map + 2 version + 18 key + 10 cursor + 2 push key and list + the entry
    // (1 map + 18 id + 2 heads key and list + 34 head + 1 key + 2 length + the change).
    assert_eq!(
        request.len(),
        1 + 2 + 18 + 10 + 2 + 1 + 18 + 2 + 34 + 1 + 2 + pushed
    );
    // Response: 1 + 2 + 18 + 10 + acks (key, list, one status byte) + updates (key, list,
    // the entry with the delivered change).
    assert_eq!(
        response.len(),
        1 + 2 + 18 + 10 + 3 + 2 + 1 + 18 + 2 + 34 + 1 + 2 + delivered
    );
    assert!(!exchange.effects.sync_again);
    assert_converged(&server, &device);
}
