//! A batch push handed to a document's actor: one device's bundle of changes for one
//! document (`POST /v1/sync`), judged by the same scope, actor binding and policy as a
//! WebSocket sync message, and the actor's answer.

use automerge::{Automerge, ChangeHash};
use jemput_sync_protocol::batch::{CompensationReason, RefusalReason};

use crate::policy::{Refusal, Rule};
use crate::storage::Identity;

/// What the device pushed for one document.
#[derive(Debug, Clone)]
pub struct BatchPush {
    /// The device, as authenticated on the request.
    pub identity: Identity,
    /// `save_after(server_heads)` or `save()`: one Automerge chunk.
    pub changes: Vec<u8>,
    /// The device's heads once `changes` are applied.
    pub heads: Vec<ChangeHash>,
    /// A bundle larger than this is refused as too large.
    pub max_bytes: usize,
}

/// The actor's answer to a [`BatchPush`].
#[derive(Debug)]
pub enum BatchPushOutcome {
    /// Durable (with the index row and the feed number); `compensated` lists the rules a
    /// compensating change restored. `doc` is the document as stored.
    Stored {
        compensated: Vec<Rule>,
        doc: Box<Automerge>,
    },
    /// Dependencies are missing: nothing was stored; `doc` is the server's document, for
    /// the repair.
    Incomplete { doc: Box<Automerge> },
    /// Nothing was stored.
    Refused(RefusalReason),
    /// Storage failed or the server is shutting down: nothing may be acknowledged.
    Failed,
}

/// The batch protocol's refusal for a new document policy does not admit. An out-of-scope
/// document is answered like one that does not exist.
pub fn refusal_reason(refusal: Refusal) -> RefusalReason {
    match refusal {
        Refusal::UnknownSchema | Refusal::NoRegion => RefusalReason::UnsupportedSchema,
        Refusal::OutOfScope => RefusalReason::Unavailable,
    }
}

/// The batch protocol's compensation reason for the first rule broken.
pub fn compensation_reason(rules: &[Rule]) -> CompensationReason {
    match rules.first() {
        Some(Rule::StatusTransition { .. }) => CompensationReason::StatusTransition,
        Some(Rule::NotWritableByRole { .. } | Rule::TrackingCodeChanged) => {
            CompensationReason::FieldNotEditable
        }
        Some(Rule::LockedAfterDecision { .. }) => CompensationReason::ApprovedApplication,
        Some(Rule::SchemaChanged) => CompensationReason::SchemaViolation,
        Some(Rule::RegionOutOfScope) | None => CompensationReason::Unspecified,
    }
}
