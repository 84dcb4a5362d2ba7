//! Batch sync messages: what a device sends ([`BatchRequest`]) and what the server answers
//! ([`BatchResponse`]), with their per-document entries and reason codes.
//!
//! These are plain values; [`super::codec`] turns them into bytes and back. Field comments
//! give the CBOR key each field travels under (see `docs/BATCH-SYNC.md` for the layout).

use automerge::ChangeHash;

use super::cursor::Cursor;
use crate::ids::DocumentId;

/// 16 random bytes a device draws for each new request and reuses, unchanged, for every
/// retry of that request. The server answers a repeated key with the stored answer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey([u8; 16]);

impl IdempotencyKey {
    /// Wraps 16 bytes the caller drew from its RNG (this crate draws none).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdempotencyKey(")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, ")")
    }
}

/// Device → server: one exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    /// Key `1`: identifies this request across retries.
    pub key: IdempotencyKey,
    /// Key `2`: the cursor of the last response the device applied; `None` on a device that
    /// has never completed an exchange (the server then forgets what it knew the device had).
    pub cursor: Option<Cursor>,
    /// Key `3`: one entry per document with changes the server has not acknowledged.
    pub push: Vec<PushEntry>,
    /// Key `4`: documents being repaired.
    pub repair: Vec<RepairRequest>,
    /// Key `5`: the device asks the server to keep the response body below this many bytes
    /// (uncompressed), e.g. because its link drops long transfers. The server may go lower,
    /// and always sends at least one update so that sync makes progress.
    pub max_response_bytes: Option<u64>,
}

/// The changes of one document that the server has not acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct PushEntry {
    /// Key `0`: the document.
    pub document_id: DocumentId,
    /// Key `1`: the device's heads, i.e. the heads of the document once `changes` are applied
    /// on top of what the server has. The server checks it holds them all afterwards.
    pub heads: Vec<ChangeHash>,
    /// Key `2`: `save_after(server_heads)`: every change the server is not known to have, as
    /// concatenated Automerge change chunks (or a whole saved document when repairing).
    pub changes: Vec<u8>,
}

/// A document whose sync fell back to Automerge sync messages.
#[derive(Debug, Clone, PartialEq)]
pub struct RepairRequest {
    /// Key `0`: the document.
    pub document_id: DocumentId,
    /// Key `1`: the round, from 1; the server answers with the same number.
    pub round: u32,
    /// Key `2`: an encoded `automerge::sync::Message` with no changes (the device's changes
    /// always travel as pushes). `None` asks the server for its whole document: the fallback
    /// once [`MAX_REPAIR_ROUNDS`](super::MAX_REPAIR_ROUNDS) are spent or local data was lost.
    pub message: Option<Vec<u8>>,
}

/// Server → device: the answer to one [`BatchRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResponse {
    /// Key `1`: the request's key, echoed.
    pub key: IdempotencyKey,
    /// Key `2`: the device stores this once it has applied the whole response, and sends it
    /// with its next request.
    pub cursor: Cursor,
    /// Key `3`: one acknowledgement per entry of the request's `push`, in the same order.
    pub acks: Vec<Ack>,
    /// Key `4`: documents the device lacks changes of: entering its scope, changed on the
    /// server, compensated, or sent whole as a repair.
    pub updates: Vec<DocUpdate>,
    /// Key `5`: documents that left the device's scope; the device deletes them.
    pub removed: Vec<DocumentId>,
    /// Key `6`: the server's sync message for each document being repaired.
    pub repair: Vec<RepairReply>,
    /// Key `7`: the server held back updates to keep the response small; sync again at once.
    pub more: bool,
}

/// What the server did with one [`PushEntry`].
///
/// On the wire a bare unsigned integer (the status) or, when there is a reason, a map
/// `{0: status, 1: reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Status `0`: stored durably. The server has the pushed heads; if it has more, an update
    /// for the document in the same response carries them.
    Accepted,
    /// Status `1`: stored, then answered with a server-authored compensating change that
    /// restores what policy allows; the update for the document carries it.
    Compensated(CompensationReason),
    /// Status `2`: not stored. The device keeps its changes and does not push this document
    /// again until its heads move.
    Refused(RefusalReason),
    /// Status `3`: the changes depend on changes the server does not have; not stored. The
    /// response's `repair` section holds the server's first sync message for the document.
    Repair,
    /// Status `4`: not looked at this time (the server's per-exchange budget); push again.
    Deferred,
    /// A status this version does not know; treated like [`Ack::Deferred`].
    Unknown(u64),
}

impl Ack {
    /// The status code on the wire.
    pub fn status(&self) -> u64 {
        match self {
            Ack::Accepted => 0,
            Ack::Compensated(_) => 1,
            Ack::Refused(_) => 2,
            Ack::Repair => 3,
            Ack::Deferred => 4,
            Ack::Unknown(code) => *code,
        }
    }

    /// The reason code, for statuses that have one.
    pub fn reason(&self) -> Option<u64> {
        match self {
            Ack::Compensated(reason) => Some(reason.code()),
            Ack::Refused(reason) => Some(reason.code()),
            _ => None,
        }
    }

    /// Rebuilds an acknowledgement from its wire codes; unknown codes are kept, not refused.
    pub fn from_codes(status: u64, reason: Option<u64>) -> Self {
        let reason = reason.unwrap_or(0);
        match status {
            0 => Ack::Accepted,
            1 => Ack::Compensated(CompensationReason::from_code(reason)),
            2 => Ack::Refused(RefusalReason::from_code(reason)),
            3 => Ack::Repair,
            4 => Ack::Deferred,
            other => Ack::Unknown(other),
        }
    }
}

/// Why a push was refused outright (nothing stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// `0`: no reason given.
    Unspecified,
    /// `1`: a change's actor id belongs to another device, user or the server (actor binding).
    ForeignActor,
    /// `2`: the document does not exist for this device or is outside its scope (the same
    /// answer, so a refusal reveals nothing).
    Unavailable,
    /// `3`: the bytes are not Automerge changes.
    Malformed,
    /// `4`: the push is larger than the server accepts for one document.
    TooLarge,
    /// `5`: the document's schema is not one this server accepts.
    UnsupportedSchema,
    /// A code this version does not know.
    Unknown(u64),
}

impl RefusalReason {
    /// The code on the wire.
    pub fn code(&self) -> u64 {
        match self {
            RefusalReason::Unspecified => 0,
            RefusalReason::ForeignActor => 1,
            RefusalReason::Unavailable => 2,
            RefusalReason::Malformed => 3,
            RefusalReason::TooLarge => 4,
            RefusalReason::UnsupportedSchema => 5,
            RefusalReason::Unknown(code) => *code,
        }
    }

    /// The reason for a wire code.
    pub fn from_code(code: u64) -> Self {
        match code {
            0 => RefusalReason::Unspecified,
            1 => RefusalReason::ForeignActor,
            2 => RefusalReason::Unavailable,
            3 => RefusalReason::Malformed,
            4 => RefusalReason::TooLarge,
            5 => RefusalReason::UnsupportedSchema,
            other => RefusalReason::Unknown(other),
        }
    }
}

/// Why the server compensated an accepted push (field and workflow policy, `DESIGN.md` §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompensationReason {
    /// `0`: no reason given.
    Unspecified,
    /// `1`: a status move this role may not make (officers: only `draft→submitted` and
    /// `needs_revision→submitted`).
    StatusTransition,
    /// `2`: a field this role may not edit.
    FieldNotEditable,
    /// `3`: applicant data of an approved application.
    ApprovedApplication,
    /// `4`: a value that breaks the document's schema (e.g. an enumeration as text).
    SchemaViolation,
    /// `5`: an edit of the append-only history.
    HistoryRewrite,
    /// A code this version does not know.
    Unknown(u64),
}

impl CompensationReason {
    /// The code on the wire.
    pub fn code(&self) -> u64 {
        match self {
            CompensationReason::Unspecified => 0,
            CompensationReason::StatusTransition => 1,
            CompensationReason::FieldNotEditable => 2,
            CompensationReason::ApprovedApplication => 3,
            CompensationReason::SchemaViolation => 4,
            CompensationReason::HistoryRewrite => 5,
            CompensationReason::Unknown(code) => *code,
        }
    }

    /// The reason for a wire code.
    pub fn from_code(code: u64) -> Self {
        match code {
            0 => CompensationReason::Unspecified,
            1 => CompensationReason::StatusTransition,
            2 => CompensationReason::FieldNotEditable,
            3 => CompensationReason::ApprovedApplication,
            4 => CompensationReason::SchemaViolation,
            5 => CompensationReason::HistoryRewrite,
            other => CompensationReason::Unknown(other),
        }
    }
}

/// Changes of one document that the device lacks.
#[derive(Debug, Clone, PartialEq)]
pub struct DocUpdate {
    /// Key `0`: the document.
    pub document_id: DocumentId,
    /// Key `1`: the server's heads; the device holds all of them once `changes` are loaded.
    pub heads: Vec<ChangeHash>,
    /// Key `2`: `save_after(what the device is known to have)`, or the whole document
    /// (`save()`) when the device is known to have nothing; `load_incremental` takes both.
    pub changes: Vec<u8>,
}

/// The server's sync message for a document being repaired.
#[derive(Debug, Clone, PartialEq)]
pub struct RepairReply {
    /// Key `0`: the document.
    pub document_id: DocumentId,
    /// Key `1`: the round it answers (1 when the server starts the repair).
    pub round: u32,
    /// Key `2`: an encoded `automerge::sync::Message`.
    pub message: Vec<u8>,
}

impl BatchRequest {
    /// A request that pushes nothing: what a device with no local changes sends.
    pub fn empty(key: IdempotencyKey, cursor: Option<Cursor>) -> Self {
        Self {
            key,
            cursor,
            push: Vec::new(),
            repair: Vec::new(),
            max_response_bytes: None,
        }
    }
}
