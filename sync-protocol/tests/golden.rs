//! Golden tests: bytes captured from the real automerge-repo 2.5.6 JS classes
//! (`fixtures-js/generate.mjs` writes `tests/fixtures/js-messages.json`).
//!
//! For every fixture:
//! 1. `decode` accepts the JS bytes and yields what cbor-x decodes from them;
//! 2. what we `encode` from it reads back, with an independent decoder (ciborium), as the
//!    same JS object;
//! 3. our bytes equal the JS bytes once made canonical (minimal length headers, entries
//!    whose value is `undefined` dropped, whole floats written as integers, tag 64 removed):
//!    same keys, same order, same values.

use std::collections::BTreeMap;

use automerge::ReadDoc;
use automerge::sync::SyncDoc;
use ciborium::Value as Cbor;
use jemput_sync_protocol::{DocumentId, Message, PeerMetadata, decode, encode};
use serde_json::{Map, Value as Json, json};

struct Fixture {
    name: String,
    bytes: Vec<u8>,
    /// What cbor-x decodes, as JSON (`{"$bytes": hex}`, `{"$undefined": true}`).
    js: Json,
}

fn file() -> Json {
    serde_json::from_str(include_str!("fixtures/js-messages.json")).expect("fixture JSON")
}

fn fixtures() -> Vec<Fixture> {
    let file = file();
    let list = file["fixtures"].as_array().expect("fixtures array");
    list.iter()
        .map(|f| Fixture {
            name: f["name"].as_str().expect("name").to_owned(),
            bytes: hex::decode(f["hex"].as_str().expect("hex")).expect("valid hex"),
            js: f["js"].clone(),
        })
        .collect()
}

fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

fn decoded(name: &str) -> Message {
    decode(&fixture(name).bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The JS object without its `undefined` entries: how it reads once sent through us.
fn without_undefined(js: &Json) -> Json {
    match js {
        Json::Object(map) => Json::Object(
            map.iter()
                .filter(|(_, v)| **v != json!({"$undefined": true}))
                .map(|(k, v)| (k.clone(), without_undefined(v)))
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(without_undefined).collect()),
        other => other.clone(),
    }
}

/// `PeerMetadata` always has `is_ephemeral`: `{}` from a JS client adapter connected without
/// metadata reads as `isEphemeral: false`, which is what JS makes of the missing key too.
fn with_is_ephemeral(mut js: Json) -> Json {
    if let Some(Json::Object(metadata)) = js.get_mut("peerMetadata") {
        metadata.entry("isEphemeral").or_insert(Json::Bool(false));
    }
    js
}

fn expected_view(js: &Json) -> Json {
    with_is_ephemeral(without_undefined(js))
}

fn bytes_json(b: &[u8]) -> Json {
    json!({ "$bytes": hex::encode(b) })
}

fn metadata_json(m: &PeerMetadata) -> Json {
    let mut o = Map::new();
    if let Some(s) = &m.storage_id {
        o.insert("storageId".into(), json!(s.as_str()));
    }
    o.insert("isEphemeral".into(), json!(m.is_ephemeral));
    Json::Object(o)
}

/// Our message as the JS object it stands for.
fn view(message: &Message) -> Json {
    let mut o = Map::new();
    let mut put = |k: &str, v: Json| {
        o.insert(k.to_owned(), v);
    };
    put("type", json!(message.type_name()));
    if let Some(s) = message.sender_id() {
        put("senderId", json!(s.as_str()));
    }
    if let Some(t) = message.target_id() {
        put("targetId", json!(t.as_str()));
    }
    if let Some(d) = message.document_id() {
        put("documentId", json!(d.to_string()));
    }
    match message {
        Message::Join(m) => {
            if let Some(md) = &m.peer_metadata {
                put("peerMetadata", metadata_json(md));
            }
            if let Some(v) = &m.supported_protocol_versions {
                put("supportedProtocolVersions", json!(v));
            }
        }
        Message::Peer(m) => {
            put("peerMetadata", metadata_json(&m.peer_metadata));
            put(
                "selectedProtocolVersion",
                json!(m.selected_protocol_version),
            );
        }
        Message::Error(m) => put("message", json!(m.message)),
        Message::Leave { .. } | Message::DocUnavailable(_) => {}
        Message::Request(m) | Message::Sync(m) => put("data", bytes_json(&m.data)),
        Message::Ephemeral(m) => {
            put("data", bytes_json(&m.data));
            put("count", json!(m.count));
            put("sessionId", json!(m.session_id));
        }
        Message::RemoteSubscriptionChange(m) => {
            let ids = |v: &Vec<_>| {
                json!(
                    v.iter()
                        .map(|s: &jemput_sync_protocol::StorageId| s.as_str())
                        .collect::<Vec<_>>()
                )
            };
            if let Some(add) = &m.add {
                put("add", ids(add));
            }
            if let Some(remove) = &m.remove {
                put("remove", ids(remove));
            }
        }
        Message::RemoteHeadsChanged(m) => {
            let heads: Map<String, Json> = m
                .new_heads
                .iter()
                .map(|(s, h)| {
                    let at = json!({ "heads": h.heads, "timestamp": h.timestamp });
                    (s.as_str().to_owned(), at)
                })
                .collect();
            put("newHeads", Json::Object(heads));
        }
    }
    Json::Object(o)
}

fn read_cbor(bytes: &[u8]) -> Cbor {
    ciborium::from_reader(bytes).expect("ciborium reads it")
}

/// What a JS decoder makes of CBOR, as JSON (read with ciborium, not with our reader).
fn cbor_to_js(v: &Cbor) -> Json {
    match v {
        Cbor::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_text().expect("text key").to_owned(), cbor_to_js(v)))
                .collect(),
        ),
        Cbor::Array(items) => Json::Array(items.iter().map(cbor_to_js).collect()),
        Cbor::Text(s) => json!(s),
        Cbor::Bytes(b) => bytes_json(b),
        Cbor::Integer(i) => json!(u64::try_from(*i).expect("non-negative")),
        Cbor::Float(f) => json!(f),
        Cbor::Bool(b) => json!(b),
        other => panic!("unexpected CBOR from our encoder: {other:?}"),
    }
}

/// The JS bytes as we would write them; `None` for values that mean "absent".
fn canonical(v: Cbor) -> Option<Cbor> {
    Some(match v {
        Cbor::Null => return None,
        Cbor::Map(entries) => Cbor::Map(
            entries
                .into_iter()
                .filter_map(|(k, v)| canonical(v).map(|v| (k, v)))
                .collect(),
        ),
        Cbor::Array(items) => Cbor::Array(items.into_iter().filter_map(canonical).collect()),
        Cbor::Float(f) if f >= 0.0 && f.fract() == 0.0 && f < 2f64.powi(64) => {
            Cbor::Integer((f as u64).into())
        }
        Cbor::Tag(64, inner) => return canonical(*inner),
        other => other,
    })
}

fn write_cbor(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("ciborium writes it");
    out
}

#[test]
fn every_fixture_decodes_to_what_js_decodes() {
    let all = fixtures();
    assert!(all.len() >= 18, "fixtures went missing");
    for f in all {
        let message = decode(&f.bytes).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(view(&message), expected_view(&f.js), "{}", f.name);
    }
}

#[test]
fn our_encoding_reads_as_the_same_js_object() {
    for f in fixtures() {
        let ours = encode(&decode(&f.bytes).expect("decodes"));
        assert_eq!(
            cbor_to_js(&read_cbor(&ours)),
            expected_view(&f.js),
            "{}",
            f.name
        );
    }
}

#[test]
fn our_encoding_equals_the_js_bytes_made_canonical() {
    for f in fixtures() {
        if f.name == "join-without-versions" {
            // `peerMetadata: {}` becomes `{isEphemeral: false}` (see `with_is_ephemeral`).
            continue;
        }
        let ours = encode(&decode(&f.bytes).expect("decodes"));
        let js = canonical(read_cbor(&f.bytes)).expect("a map");
        assert_eq!(
            hex::encode(&ours),
            hex::encode(write_cbor(&js)),
            "{}",
            f.name
        );
    }
}

#[test]
fn the_fixtures_cover_what_cbor_x_does() {
    let all = fixtures();
    // Every map header cbor-x writes is the non-minimal `b9 00 nn`.
    assert!(all.iter().all(|f| f.bytes.starts_with(&[0xb9, 0x00])));
    // `storageId: undefined` is written as f7.
    let no_storage = fixture("join-without-storage").bytes;
    assert!(contains(&no_storage, b"storageId\xf7"));
    // Whole numbers ≥ 2^32 are float64.
    assert!(contains(
        &fixture("remote-heads-changed").bytes,
        b"timestamp\xfb"
    ));
    assert!(contains(
        &fixture("ephemeral-count-above-2^32").bytes,
        b"count\xfb"
    ));
    // cbor-x's default options tag byte strings.
    assert!(contains(
        &fixture("sync-tagged-uint8array").bytes,
        &[0xd8, 0x40]
    ));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn special_values() {
    let Message::Join(join) = decoded("join-without-storage") else {
        panic!("not a join");
    };
    assert_eq!(
        join.peer_metadata,
        Some(PeerMetadata {
            storage_id: None,
            is_ephemeral: true
        })
    );
    let Message::Join(join) = decoded("join-without-versions") else {
        panic!("not a join");
    };
    assert_eq!(join.supported_protocol_versions, None);

    let Message::RemoteHeadsChanged(heads) = decoded("remote-heads-changed") else {
        panic!("not remote-heads-changed");
    };
    let timestamps: Vec<u64> = heads.new_heads.values().map(|h| h.timestamp).collect();
    assert!(timestamps.iter().all(|t| *t >= 1 << 32), "{timestamps:?}");

    let Message::Ephemeral(e) = decoded("ephemeral-count-above-2^32") else {
        panic!("not ephemeral");
    };
    assert_eq!(e.count, (1 << 32) + 7);

    assert_eq!(
        decoded("sync-tagged-uint8array"),
        decoded("sync-from-client")
    );
}

#[test]
fn sync_data_is_a_real_automerge_sync_message() {
    let Message::Sync(sync) = decoded("sync-from-client") else {
        panic!("not a sync");
    };
    let message = automerge::sync::Message::decode(&sync.data).expect("an Automerge sync message");
    assert!(!message.heads.is_empty());
    // It carries the document A created: applying it to an empty document shows its fields
    // (JS Automerge 3 writes plain strings as Text objects).
    let mut doc = automerge::Automerge::new();
    let mut state = automerge::sync::State::new();
    doc.receive_sync_message(&mut state, message)
        .expect("applies");
    let (_, schema) = doc
        .get(automerge::ROOT, "schema")
        .expect("readable")
        .expect("the document has a schema");
    assert_eq!(doc.text(&schema).expect("a text"), "jemput/application@1");
}

#[test]
fn document_ids_read_as_js_reads_them() {
    let file = file();
    let ids = file["ids"].as_array().expect("ids");
    let mut seen = BTreeMap::new();
    for entry in ids {
        let input = entry["input"].as_str().expect("input");
        let id = DocumentId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(
            hex::encode(id.as_bytes()),
            entry["hex"].as_str().expect("hex"),
            "{input}"
        );
        assert_eq!(
            id.to_string(),
            entry["documentId"].as_str().expect("id"),
            "{input}"
        );
        seen.insert(entry["note"].as_str().expect("note").to_owned(), ());
    }
    assert!(seen.contains_key("URL with heads") && seen.len() >= 6);
}
