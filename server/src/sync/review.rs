//! Review decisions (verifikasi): checked against the workflow, then written into the
//! application by the server's own actor with the supervisor recorded as the change's author,
//! so the decision syncs down to the officer's device like any other change.

use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{Author, Automerge, ObjType, ROOT, ReadDoc, ScalarValue};
use jemput_domain::{ApplicationStatus, Role, ServiceCode};

use crate::policy::plain::root_str;
use crate::storage::Identity;

/// Longest note accepted with a decision.
pub const MAX_NOTE_CHARS: usize = 2000;

#[derive(Debug, Clone)]
pub struct ReviewRequest {
    pub identity: Arc<Identity>,
    pub decision: ApplicationStatus,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewOutcome {
    pub status: ApplicationStatus,
    /// The document's heads after the decision (hex change hashes).
    pub heads: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// Unknown, not an application, or outside the reviewer's regions (indistinguishable).
    #[error("application not found")]
    NotFound,
    #[error("only supervisors and administrators decide on applications")]
    NotAReviewer,
    #[error("this application belongs to an agency the reviewer does not review")]
    NotYourAgency,
    #[error("cannot go from {from} to {to}")]
    NotAllowed {
        from: ApplicationStatus,
        to: ApplicationStatus,
    },
    #[error("a note is required for this decision")]
    NoteRequired,
    #[error("the note is longer than {MAX_NOTE_CHARS} characters")]
    NoteTooLong,
    #[error("storage unavailable, retry later")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

/// A decision ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub from: ApplicationStatus,
    pub to: ApplicationStatus,
    pub note: String,
    pub author: String,
    pub role: Role,
    pub at: i64,
}

/// Checks `request` against the application as it is now.
pub fn decide(doc: &Automerge, request: &ReviewRequest, now: i64) -> Result<Decision, ReviewError> {
    let identity = &request.identity;
    if !matches!(identity.role, Role::Supervisor | Role::Admin) {
        return Err(ReviewError::NotAReviewer);
    }
    let agency = root_str(doc, "service")
        .and_then(|code| ServiceCode::parse(&code).ok())
        .map(|code| code.service().agency.clone());
    if let Some(agency) = &agency
        && !identity.covers_agency(agency)
    {
        return Err(ReviewError::NotYourAgency);
    }
    let from = root_str(doc, "status")
        .and_then(|s| ApplicationStatus::parse(&s).ok())
        .ok_or_else(|| ReviewError::Internal("application has no readable status".into()))?;
    let to = request.decision;
    if !ApplicationStatus::transition_allowed(from, to, identity.role) {
        return Err(ReviewError::NotAllowed { from, to });
    }
    let note = request.note.trim().to_owned();
    if ApplicationStatus::note_required(from, to) && note.is_empty() {
        return Err(ReviewError::NoteRequired);
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(ReviewError::NoteTooLong);
    }
    Ok(Decision {
        from,
        to,
        note,
        author: identity.username.to_string(),
        role: identity.role,
        at: now,
    })
}

/// Writes the decision: the new status and an appended history entry. The change's actor is
/// the server's (the document's actor); its author is the supervisor.
pub fn write(doc: &mut Automerge, decision: &Decision) -> Result<(), automerge::AutomergeError> {
    doc.set_author(Some(Author::from(decision.author.clone().into_bytes())));
    let result = (|| {
        let mut tx = doc.transaction();
        tx.put(ROOT, "status", decision.to.as_str())?;
        let history = match tx.get(ROOT, "history")? {
            Some((automerge::Value::Object(ObjType::List), id)) => id,
            _ => tx.put_object(ROOT, "history", ObjType::List)?,
        };
        let entry = tx.insert_object(&history, tx.length(&history), ObjType::Map)?;
        tx.put(&entry, "at", ScalarValue::Timestamp(decision.at))?;
        tx.put(&entry, "by", decision.author.as_str())?;
        tx.put(&entry, "role", decision.role.as_str())?;
        tx.put(&entry, "from", decision.from.as_str())?;
        tx.put(&entry, "to", decision.to.as_str())?;
        if !decision.note.is_empty() {
            tx.put(&entry, "note", decision.note.as_str())?;
        }
        tx.commit();
        Ok(())
    })();
    doc.set_author(None);
    result
}
