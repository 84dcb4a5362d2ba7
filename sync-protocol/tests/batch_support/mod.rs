//! Test support shared by the batch sync test binaries: a field device that keeps its
//! documents in a map and drives `DeviceState`, and document helpers.

#![allow(dead_code)]

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ROOT, ReadDoc};
use jemput_sync_protocol::DocumentId;
use jemput_sync_protocol::batch::{
    ApplyError, BatchDecodeError, DeviceEffects, DeviceLimits, DeviceState, IdempotencyKey,
    MemoryServer, decode_response, encode_request,
};

/// A document id from a number.
pub fn doc_id(n: u32) -> DocumentId {
    let mut bytes = [0x5a; 16];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    DocumentId::from_bytes(bytes)
}

/// An actor id from a number (devices 1.., the server 0xff).
pub fn actor(n: u8) -> ActorId {
    ActorId::from([n; 16])
}

/// One committed change setting `key` to a scalar string.
pub fn put(doc: &mut Automerge, key: &str, value: &str) {
    let mut tx = doc.transaction();
    tx.put(ROOT, key, value).expect("put");
    tx.commit();
}

/// The scalar string under `key`, if any.
pub fn get(doc: &Automerge, key: &str) -> Option<String> {
    match doc.get(ROOT, key).ok()?? {
        (automerge::Value::Scalar(s), _) => match s.as_ref() {
            automerge::ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// A form-like application document, as the server creates it (one change).
pub fn application(doc: &mut Automerge, n: u32) {
    let mut tx = doc.transaction();
    let fields = [
        ("schema", "jemput/application@1".to_string()),
        ("trackingCode", format!("JPT-3471-{n:04}-9XM2")),
        ("service", "DUKCAPIL-KTP-EL-BARU".to_string()),
        ("district", "34.71.01".to_string()),
        ("village", "34.71.01.1001".to_string()),
        ("nik", format!("3471014{n:09}")),
        ("name", format!("Warga Sintetis {n}")),
        ("birthDate", "1990-01-01".to_string()),
        ("sex", "P".to_string()),
        ("phone", format!("0812{n:08}")),
        ("address", format!("Jl. Malioboro No. {n}, Yogyakarta")),
        ("status", "draft".to_string()),
    ];
    for (key, value) in fields {
        tx.put(ROOT, key, value).expect("put");
    }
    tx.commit();
}

/// Total changes in a document's history.
pub fn change_count(doc: &Automerge) -> usize {
    doc.get_changes(&[]).len()
}

/// One exchange as seen on the wire.
#[derive(Debug)]
pub struct Exchange {
    pub request_bytes: Vec<u8>,
    pub response_bytes: Vec<u8>,
    pub effects: DeviceEffects,
}

/// A field device holding its documents in memory.
#[derive(Debug)]
pub struct Device {
    pub id: u64,
    pub state: DeviceState,
    pub docs: BTreeMap<DocumentId, Automerge>,
    pub limits: DeviceLimits,
    keys: u64,
}

/// Why a response was not applied.
#[derive(Debug)]
pub enum ReceiveError {
    Decode(BatchDecodeError),
    Apply(ApplyError),
}

impl Device {
    pub fn new(id: u64) -> Self {
        Self {
            id,
            state: DeviceState::new(actor(id as u8)),
            docs: BTreeMap::new(),
            limits: DeviceLimits::default(),
            keys: 0,
        }
    }

    /// A local edit (creating the document if needed).
    pub fn edit(&mut self, id: DocumentId, key: &str, value: &str) {
        let actor = self.state.actor.clone();
        let doc = self
            .docs
            .entry(id)
            .or_insert_with(|| Automerge::new().with_actor(actor.clone()));
        doc.set_actor(actor);
        put(doc, key, value);
        self.state.note_local_change(id, doc.get_heads());
    }

    /// The next request body (the pending one again while it is unanswered).
    pub fn request(&mut self) -> Vec<u8> {
        self.keys += 1;
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&self.id.to_be_bytes());
        key[8..].copy_from_slice(&self.keys.to_be_bytes());
        let request = self
            .state
            .plan_request(IdempotencyKey::from_bytes(key), &self.docs, self.limits)
            .expect("every document is loaded");
        encode_request(&request)
    }

    /// Applies a response body.
    pub fn receive(&mut self, body: &[u8]) -> Result<DeviceEffects, ReceiveError> {
        let response = decode_response(body).map_err(ReceiveError::Decode)?;
        self.state
            .apply_response(response, &mut self.docs)
            .map_err(ReceiveError::Apply)
    }

    /// One round trip with `server`.
    pub fn sync_once(&mut self, server: &mut MemoryServer) -> Exchange {
        let request_bytes = self.request();
        let response_bytes = server.handle(self.id, &request_bytes).expect("served");
        let effects = self.receive(&response_bytes).expect("applies");
        Exchange {
            request_bytes,
            response_bytes,
            effects,
        }
    }

    /// Round trips until the device has nothing more to do; panics after `max`.
    pub fn sync(&mut self, server: &mut MemoryServer, max: usize) -> Vec<Exchange> {
        let mut exchanges = Vec::new();
        for _ in 0..max {
            let exchange = self.sync_once(server);
            let again = exchange.effects.sync_again;
            exchanges.push(exchange);
            if !again {
                return exchanges;
            }
        }
        panic!("device {} still syncing after {max} exchanges", self.id);
    }
}

/// gzip size of `bytes` (HTTP compresses batch bodies).
pub fn gzip_len(bytes: &[u8]) -> usize {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("in memory");
    encoder.finish().expect("in memory").len()
}
