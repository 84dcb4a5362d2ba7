//! CBOR codec of batch sync messages.
//!
//! Every message is one CBOR map with small unsigned integer keys (one byte each on the
//! wire); per-document entries are maps of the same kind. The layout is in
//! `docs/BATCH-SYNC.md` and beside each field of [`super::message`].
//!
//! - The encoders are exact: shortest-form heads, definite lengths, keys in ascending
//!   order, optional fields and empty lists left out. The same message always encodes to the
//!   same bytes, which is what lets a server compare a retried request with the original.
//! - The decoders are lenient where a future version or another CBOR writer may differ:
//!   non-minimal length heads, whole numbers written as floats, `null`/`undefined` meaning
//!   "absent", unknown keys (integer or text) skipped, document ids also accepted as
//!   bs58check text. They are strict where it matters: `version` must be [`BATCH_VERSION`],
//!   keys and hashes have exact lengths, list sizes are bounded ([`MAX_ENTRIES`],
//!   [`MAX_HEADS`]), one map and nothing after it. They borrow from the input while parsing
//!   and allocate only for the result, so allocation is bounded by the input length; they
//!   never panic.

use automerge::ChangeHash;

use super::cursor::{Cursor, CursorError};
use super::message::{
    Ack, BatchRequest, BatchResponse, DocUpdate, IdempotencyKey, PushEntry, RepairReply,
    RepairRequest,
};
use super::{BATCH_VERSION, MAX_ENTRIES, MAX_HEADS};
use crate::cbor::{CborError, Reader, Writer};
use crate::ids::DocumentId;

/// Why bytes are not a batch sync message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchDecodeError {
    /// Malformed CBOR, or CBOR this codec refuses (indefinite lengths, nesting too deep).
    #[error("not valid CBOR: {0}")]
    Cbor(String),
    /// The top-level item is not a map.
    #[error("message is not a CBOR map")]
    NotAMap,
    /// A required key is missing, `null` or `undefined`.
    #[error("missing key `{0}`")]
    MissingKey(&'static str),
    /// A key holds a value of the wrong type.
    #[error("key `{key}` has the wrong type")]
    WrongType {
        /// The field, as named in `docs/BATCH-SYNC.md`.
        key: &'static str,
    },
    /// A byte string of the wrong length (key, hash, document id, cursor), or an empty one
    /// where content is required.
    #[error("key `{key}` has the wrong length")]
    InvalidLength {
        /// The field.
        key: &'static str,
    },
    /// A list longer than this version accepts.
    #[error("key `{key}` lists too many items")]
    TooMany {
        /// The field.
        key: &'static str,
    },
    /// A document id that does not parse.
    #[error("key `{key}` is not a document id")]
    InvalidDocumentId {
        /// The field.
        key: &'static str,
    },
    /// `version` is not one this code speaks.
    #[error("unsupported batch sync version {0}")]
    UnsupportedVersion(u64),
    /// Bytes follow the message map.
    #[error("trailing bytes after the message")]
    TrailingBytes,
}

// ---------------------------------------------------------------------------------------
// Keys

mod key {
    pub(super) const VERSION: u64 = 0;
    pub(super) const KEY: u64 = 1;
    pub(super) const CURSOR: u64 = 2;
    // Request.
    pub(super) const PUSH: u64 = 3;
    pub(super) const REPAIR: u64 = 4;
    pub(super) const MAX_RESPONSE: u64 = 5;
    // Response.
    pub(super) const ACKS: u64 = 3;
    pub(super) const UPDATES: u64 = 4;
    pub(super) const REMOVED: u64 = 5;
    pub(super) const REPAIR_REPLIES: u64 = 6;
    pub(super) const MORE: u64 = 7;
    // Document entries (push, update, repair request and reply).
    pub(super) const DOC: u64 = 0;
    pub(super) const HEADS: u64 = 1;
    pub(super) const CHANGES: u64 = 2;
    pub(super) const ROUND: u64 = 1;
    pub(super) const MESSAGE: u64 = 2;
    // Acknowledgement given as a map.
    pub(super) const STATUS: u64 = 0;
    pub(super) const REASON: u64 = 1;
}

/// Highest key any map of this version reads, plus one.
const SLOTS: usize = 8;

// ---------------------------------------------------------------------------------------
// Encoding

/// Encodes a request body.
pub fn encode_request(request: &BatchRequest) -> Vec<u8> {
    let payload: usize = request.push.iter().map(|p| p.changes.len() + 40).sum();
    let mut w = Writer::with_capacity(64 + payload);
    let entries = 2
        + usize::from(request.cursor.is_some())
        + usize::from(!request.push.is_empty())
        + usize::from(!request.repair.is_empty())
        + usize::from(request.max_response_bytes.is_some());
    w.map(entries);
    w.uint(key::VERSION);
    w.uint(BATCH_VERSION);
    w.uint(key::KEY);
    w.bytes(request.key.as_bytes());
    if let Some(cursor) = &request.cursor {
        w.uint(key::CURSOR);
        w.bytes(cursor.as_bytes());
    }
    if !request.push.is_empty() {
        w.uint(key::PUSH);
        w.array(request.push.len());
        for push in &request.push {
            write_doc_entry(&mut w, &push.document_id, &push.heads, &push.changes);
        }
    }
    if !request.repair.is_empty() {
        w.uint(key::REPAIR);
        w.array(request.repair.len());
        for repair in &request.repair {
            write_repair(
                &mut w,
                &repair.document_id,
                repair.round,
                repair.message.as_deref(),
            );
        }
    }
    if let Some(max) = request.max_response_bytes {
        w.uint(key::MAX_RESPONSE);
        w.uint(max);
    }
    w.into_bytes()
}

/// Encodes a response body.
pub fn encode_response(response: &BatchResponse) -> Vec<u8> {
    let payload: usize = response.updates.iter().map(|u| u.changes.len() + 40).sum();
    let mut w = Writer::with_capacity(64 + payload);
    let entries = 3
        + usize::from(!response.acks.is_empty())
        + usize::from(!response.updates.is_empty())
        + usize::from(!response.removed.is_empty())
        + usize::from(!response.repair.is_empty())
        + usize::from(response.more);
    w.map(entries);
    w.uint(key::VERSION);
    w.uint(BATCH_VERSION);
    w.uint(key::KEY);
    w.bytes(response.key.as_bytes());
    w.uint(key::CURSOR);
    w.bytes(response.cursor.as_bytes());
    if !response.acks.is_empty() {
        w.uint(key::ACKS);
        w.array(response.acks.len());
        for ack in &response.acks {
            match ack.reason() {
                None => w.uint(ack.status()),
                Some(reason) => {
                    w.map(2);
                    w.uint(key::STATUS);
                    w.uint(ack.status());
                    w.uint(key::REASON);
                    w.uint(reason);
                }
            }
        }
    }
    if !response.updates.is_empty() {
        w.uint(key::UPDATES);
        w.array(response.updates.len());
        for update in &response.updates {
            write_doc_entry(&mut w, &update.document_id, &update.heads, &update.changes);
        }
    }
    if !response.removed.is_empty() {
        w.uint(key::REMOVED);
        w.array(response.removed.len());
        for id in &response.removed {
            w.bytes(id.as_bytes());
        }
    }
    if !response.repair.is_empty() {
        w.uint(key::REPAIR_REPLIES);
        w.array(response.repair.len());
        for reply in &response.repair {
            write_repair(
                &mut w,
                &reply.document_id,
                reply.round,
                Some(&reply.message),
            );
        }
    }
    if response.more {
        w.uint(key::MORE);
        w.bool(true);
    }
    w.into_bytes()
}

/// `{0: doc, 1: [heads], 2: changes}`: push entries and updates share the layout.
fn write_doc_entry(w: &mut Writer, id: &DocumentId, heads: &[ChangeHash], changes: &[u8]) {
    w.map(3);
    w.uint(key::DOC);
    w.bytes(id.as_bytes());
    w.uint(key::HEADS);
    w.array(heads.len());
    heads.iter().for_each(|h| w.bytes(&h.0));
    w.uint(key::CHANGES);
    w.bytes(changes);
}

fn write_repair(w: &mut Writer, id: &DocumentId, round: u32, message: Option<&[u8]>) {
    w.map(2 + usize::from(message.is_some()));
    w.uint(key::DOC);
    w.bytes(id.as_bytes());
    w.uint(key::ROUND);
    w.uint(u64::from(round));
    if let Some(message) = message {
        w.uint(key::MESSAGE);
        w.bytes(message);
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

/// Decodes a request body.
pub fn decode_request(bytes: &[u8]) -> Result<BatchRequest, BatchDecodeError> {
    let slots = top_level(bytes)?;
    let at = |k: u64| slot(&slots, k);
    Ok(BatchRequest {
        key: required(at(key::KEY), "key", idempotency_key)?,
        cursor: optional(at(key::CURSOR), "cursor", cursor)?,
        push: optional(at(key::PUSH), "push", |r| list(r, "push", push_entry))?.unwrap_or_default(),
        repair: optional(at(key::REPAIR), "repair", |r| {
            list(r, "repair", repair_request)
        })?
        .unwrap_or_default(),
        max_response_bytes: optional(at(key::MAX_RESPONSE), "maxResponseBytes", |r| {
            uint(r, "maxResponseBytes")
        })?,
    })
}

/// Decodes a response body.
pub fn decode_response(bytes: &[u8]) -> Result<BatchResponse, BatchDecodeError> {
    let slots = top_level(bytes)?;
    let at = |k: u64| slot(&slots, k);
    Ok(BatchResponse {
        key: required(at(key::KEY), "key", idempotency_key)?,
        cursor: required(at(key::CURSOR), "cursor", cursor)?,
        acks: optional(at(key::ACKS), "acks", |r| list(r, "acks", ack))?.unwrap_or_default(),
        updates: optional(at(key::UPDATES), "updates", |r| {
            list(r, "updates", doc_update)
        })?
        .unwrap_or_default(),
        removed: optional(at(key::REMOVED), "removed", |r| {
            list(r, "removed", |r| document_id(r, "removed"))
        })?
        .unwrap_or_default(),
        repair: optional(at(key::REPAIR_REPLIES), "repair", |r| {
            list(r, "repair", repair_reply)
        })?
        .unwrap_or_default(),
        more: optional(at(key::MORE), "more", boolean)?.unwrap_or(false),
    })
}

/// Raw values of a map, by integer key; `None` when missing, `null` or `undefined`.
type Slots<'a> = [Option<&'a [u8]>; SLOTS];

fn slot<'a>(slots: &Slots<'a>, k: u64) -> Option<&'a [u8]> {
    usize::try_from(k)
        .ok()
        .and_then(|i| slots.get(i).copied().flatten())
}

/// Scans the top-level map, checks the version and that nothing follows.
fn top_level(bytes: &[u8]) -> Result<Slots<'_>, BatchDecodeError> {
    let mut reader = Reader::new(bytes);
    let slots = scan_map(&mut reader, 0, "message").map_err(|e| match e {
        BatchDecodeError::WrongType { .. } => BatchDecodeError::NotAMap,
        e => e,
    })?;
    if !reader.at_end() {
        return Err(BatchDecodeError::TrailingBytes);
    }
    let version = required(slot(&slots, key::VERSION), "version", |r| {
        uint(r, "version")
    })?;
    if version != BATCH_VERSION {
        return Err(BatchDecodeError::UnsupportedVersion(version));
    }
    Ok(slots)
}

/// Reads one map at `depth`, keeping the raw value of each integer key below [`SLOTS`]. A
/// repeated key keeps its last value; other keys, integer or not, are checked for
/// well-formedness and skipped.
fn scan_map<'a>(
    r: &mut Reader<'a>,
    depth: usize,
    what: &'static str,
) -> Result<Slots<'a>, BatchDecodeError> {
    let entries = r.map_len().map_err(|e| cbor_error(e, what))?;
    let mut slots: Slots<'a> = [None; SLOTS];
    for _ in 0..entries {
        let raw_key = r.item(depth + 1).map_err(|e| cbor_error(e, "map key"))?;
        let index = match Reader::new(raw_key).uint() {
            Ok(k) => usize::try_from(k).ok().filter(|i| *i < SLOTS),
            Err(CborError::WrongType(_)) => None,
            Err(e) => return Err(cbor_error(e, "map key")),
        };
        let value = if r.absent() {
            None
        } else {
            Some(r.item(depth + 1).map_err(|e| cbor_error(e, "map value"))?)
        };
        if let Some(cell) = index.and_then(|i| slots.get_mut(i)) {
            *cell = value;
        }
    }
    Ok(slots)
}

fn cbor_error(e: CborError, key: &'static str) -> BatchDecodeError {
    match e {
        CborError::WrongType(_) => BatchDecodeError::WrongType { key },
        e => BatchDecodeError::Cbor(e.to_string()),
    }
}

type Field<T> = Result<T, BatchDecodeError>;

fn optional<'a, T>(
    raw: Option<&'a [u8]>,
    key: &'static str,
    read: impl FnOnce(&mut Reader<'a>) -> Field<T>,
) -> Field<Option<T>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let mut reader = Reader::new(raw);
    let value = read(&mut reader)?;
    // `raw` is exactly one item, so the reader is at its end; checked for robustness.
    if !reader.at_end() {
        return Err(BatchDecodeError::WrongType { key });
    }
    Ok(Some(value))
}

fn required<'a, T>(
    raw: Option<&'a [u8]>,
    key: &'static str,
    read: impl FnOnce(&mut Reader<'a>) -> Field<T>,
) -> Field<T> {
    optional(raw, key, read)?.ok_or(BatchDecodeError::MissingKey(key))
}

fn uint(r: &mut Reader<'_>, key: &'static str) -> Field<u64> {
    r.uint().map_err(|e| cbor_error(e, key))
}

fn boolean(r: &mut Reader<'_>) -> Field<bool> {
    r.bool().map_err(|e| cbor_error(e, "more"))
}

fn idempotency_key(r: &mut Reader<'_>) -> Field<IdempotencyKey> {
    let bytes = r.bytes().map_err(|e| cbor_error(e, "key"))?;
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|_| BatchDecodeError::InvalidLength { key: "key" })?;
    Ok(IdempotencyKey::from_bytes(bytes))
}

fn cursor(r: &mut Reader<'_>) -> Field<Cursor> {
    let bytes = r.bytes().map_err(|e| cbor_error(e, "cursor"))?;
    Cursor::from_bytes(bytes.to_vec()).map_err(|e| match e {
        CursorError::Empty | CursorError::TooLong => {
            BatchDecodeError::InvalidLength { key: "cursor" }
        }
    })
}

/// A list of at most [`MAX_ENTRIES`] items read by `item`. No `with_capacity(len)`: `len` is
/// a claim, and every element read proves its bytes exist.
fn list<'a, T>(
    r: &mut Reader<'a>,
    key: &'static str,
    mut item: impl FnMut(&mut Reader<'a>) -> Field<T>,
) -> Field<Vec<T>> {
    let len = r.array_len().map_err(|e| cbor_error(e, key))?;
    if len > MAX_ENTRIES as u64 {
        return Err(BatchDecodeError::TooMany { key });
    }
    let mut out = Vec::new();
    for _ in 0..len {
        out.push(item(r)?);
    }
    Ok(out)
}

/// 16 raw bytes, or any text form [`DocumentId::parse`] takes.
fn document_id(r: &mut Reader<'_>, key: &'static str) -> Field<DocumentId> {
    let mut as_text = r.clone();
    match as_text.text() {
        Ok(s) => {
            *r = as_text;
            DocumentId::parse(s).map_err(|_| BatchDecodeError::InvalidDocumentId { key })
        }
        Err(CborError::WrongType(_)) => {
            let bytes = r.bytes().map_err(|e| cbor_error(e, key))?;
            let raw: [u8; 16] = bytes
                .try_into()
                .map_err(|_| BatchDecodeError::InvalidDocumentId { key })?;
            Ok(DocumentId::from_bytes(raw))
        }
        Err(e) => Err(cbor_error(e, key)),
    }
}

fn heads(r: &mut Reader<'_>, key: &'static str) -> Field<Vec<ChangeHash>> {
    let len = r.array_len().map_err(|e| cbor_error(e, key))?;
    if len > MAX_HEADS as u64 {
        return Err(BatchDecodeError::TooMany { key });
    }
    let mut out = Vec::new();
    for _ in 0..len {
        let bytes = r.bytes().map_err(|e| cbor_error(e, key))?;
        let hash =
            ChangeHash::try_from(bytes).map_err(|_| BatchDecodeError::InvalidLength { key })?;
        out.push(hash);
    }
    Ok(out)
}

fn bytes(r: &mut Reader<'_>, key: &'static str) -> Field<Vec<u8>> {
    Ok(r.bytes().map_err(|e| cbor_error(e, key))?.to_vec())
}

/// Entries sit at depth 2 (top-level map → list → entry).
const ENTRY_DEPTH: usize = 2;

/// `{0: doc, 1: heads, 2: changes}` with `changes` non-empty.
fn doc_entry(
    r: &mut Reader<'_>,
    names: [&'static str; 3],
) -> Field<(DocumentId, Vec<ChangeHash>, Vec<u8>)> {
    let [doc_key, heads_key, changes_key] = names;
    let slots = scan_map(r, ENTRY_DEPTH, doc_key)?;
    let id = required(slot(&slots, key::DOC), doc_key, |r| document_id(r, doc_key))?;
    let hs = required(slot(&slots, key::HEADS), heads_key, |r| heads(r, heads_key))?;
    let changes = required(slot(&slots, key::CHANGES), changes_key, |r| {
        bytes(r, changes_key)
    })?;
    Ok((id, hs, changes))
}

fn push_entry(r: &mut Reader<'_>) -> Field<PushEntry> {
    let (document_id, heads, changes) = doc_entry(r, ["push.doc", "push.heads", "push.changes"])?;
    if changes.is_empty() {
        return Err(BatchDecodeError::InvalidLength {
            key: "push.changes",
        });
    }
    Ok(PushEntry {
        document_id,
        heads,
        changes,
    })
}

fn doc_update(r: &mut Reader<'_>) -> Field<DocUpdate> {
    let (document_id, heads, changes) =
        doc_entry(r, ["updates.doc", "updates.heads", "updates.changes"])?;
    Ok(DocUpdate {
        document_id,
        heads,
        changes,
    })
}

fn round(r: &mut Reader<'_>) -> Field<u32> {
    let n = uint(r, "repair.round")?;
    u32::try_from(n).map_err(|_| BatchDecodeError::WrongType {
        key: "repair.round",
    })
}

fn repair_request(r: &mut Reader<'_>) -> Field<RepairRequest> {
    let slots = scan_map(r, ENTRY_DEPTH, "repair")?;
    Ok(RepairRequest {
        document_id: required(slot(&slots, key::DOC), "repair.doc", |r| {
            document_id(r, "repair.doc")
        })?,
        round: required(slot(&slots, key::ROUND), "repair.round", round)?,
        message: optional(slot(&slots, key::MESSAGE), "repair.message", |r| {
            bytes(r, "repair.message")
        })?,
    })
}

fn repair_reply(r: &mut Reader<'_>) -> Field<RepairReply> {
    let slots = scan_map(r, ENTRY_DEPTH, "repair")?;
    Ok(RepairReply {
        document_id: required(slot(&slots, key::DOC), "repair.doc", |r| {
            document_id(r, "repair.doc")
        })?,
        round: required(slot(&slots, key::ROUND), "repair.round", round)?,
        message: required(slot(&slots, key::MESSAGE), "repair.message", |r| {
            bytes(r, "repair.message")
        })?,
    })
}

/// A bare status, or `{0: status, 1: reason}`.
fn ack(r: &mut Reader<'_>) -> Field<Ack> {
    let mut as_uint = r.clone();
    match as_uint.uint() {
        Ok(status) => {
            *r = as_uint;
            return Ok(Ack::from_codes(status, None));
        }
        Err(CborError::WrongType(_)) => {}
        Err(e) => return Err(cbor_error(e, "acks")),
    }
    let slots = scan_map(r, ENTRY_DEPTH, "acks")?;
    let status = required(slot(&slots, key::STATUS), "acks.status", |r| {
        uint(r, "acks.status")
    })?;
    let reason = optional(slot(&slots, key::REASON), "acks.reason", |r| {
        uint(r, "acks.reason")
    })?;
    Ok(Ack::from_codes(status, reason))
}

#[cfg(test)]
mod tests;
