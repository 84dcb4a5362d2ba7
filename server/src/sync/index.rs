//! What the server reads out of a merged document: its kind and region (for scope), its index
//! row, its tracking code, and the citizen it concerns (for the audit log).

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT, ReadDoc, ScalarValue};
use jemput_domain::{DocumentKind, Nik, RegionCode, ServiceCode, TrackingCode};
use jemput_sync_protocol::DocumentId;

use crate::audit::{CitizenKey, CitizenKeySecret};
use crate::policy::plain::{Plain, read_key, root_str};
use crate::policy::rules::{kind_of, region_of};
use crate::storage::IndexRow;

/// The facts scope is judged by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentFacts {
    pub kind: DocumentKind,
    pub region: RegionCode,
}

/// Kind and region, if the document has both (every stored document has: `admit` saw to it).
pub fn facts(doc: &Automerge) -> Option<DocumentFacts> {
    Some(DocumentFacts {
        kind: kind_of(doc)?,
        region: region_of(doc)?,
    })
}

/// The document's index row, read leniently (a device behind on the schema still indexes).
pub fn row(id: DocumentId, doc: &Automerge, now: i64) -> Option<IndexRow> {
    let facts = facts(doc)?;
    let service = root_str(doc, "service");
    let agency = service
        .as_deref()
        .and_then(|code| ServiceCode::parse(code).ok())
        .map(|code| code.service().agency.as_str().to_owned());
    let officer = match read_key(doc, &ROOT, "capture") {
        Some(Plain::Map(capture)) => match capture.get("officer") {
            Some(Plain::Scalar(ScalarValue::Str(officer))) => Some(officer.to_string()),
            _ => None,
        },
        _ => match read_key(doc, &ROOT, "officer") {
            Some(Plain::Scalar(ScalarValue::Str(officer))) => Some(officer.to_string()),
            _ => None,
        },
    };
    let application = facts.kind == DocumentKind::Application;
    Some(IndexRow {
        document_id: id,
        kind: facts.kind.as_str().to_owned(),
        schema: facts.kind.schema().to_owned(),
        region: facts.region.as_str().to_owned(),
        status: application.then(|| root_str(doc, "status")).flatten(),
        service: application.then_some(service).flatten(),
        agency: application.then_some(agency).flatten(),
        officer,
        tracking_code: application
            .then(|| tracking_code(doc).map(|code| code.as_str().to_owned()))
            .flatten(),
        has_conflict: has_conflicts(doc),
        heads: doc.get_heads().iter().map(ToString::to_string).collect(),
        updated_at: now,
    })
}

/// Whether concurrent offline edits of the same field were merged (Automerge picked a winner
/// deterministically; a supervisor should look at the loser).
fn has_conflicts(doc: &Automerge) -> bool {
    let conflicted = |obj: &automerge::ObjId, key: &str| {
        doc.get_all(obj, key)
            .map(|all| all.len() > 1)
            .unwrap_or(false)
    };
    if ["status", "service", "region", "trackingCode"]
        .iter()
        .any(|key| conflicted(&ROOT, key))
    {
        return true;
    }
    ["applicant", "fields"].iter().any(|key| {
        let Ok(Some((_, obj))) = doc.get(ROOT, *key) else {
            return false;
        };
        doc.keys(&obj).any(|field| conflicted(&obj, &field))
    })
}

pub fn tracking_code(doc: &Automerge) -> Option<TrackingCode> {
    TrackingCode::parse(&root_str(doc, "trackingCode")?).ok()
}

/// Writes a new tracking code as the document's current (server) actor.
pub fn set_tracking_code(
    doc: &mut Automerge,
    code: &TrackingCode,
) -> Result<(), automerge::AutomergeError> {
    let mut tx = doc.transaction();
    tx.put(ROOT, "trackingCode", code.as_str())?;
    tx.commit();
    Ok(())
}

/// The audit key of the applicant, if the document names a valid NIK.
pub fn citizen_key(doc: &Automerge, secret: &CitizenKeySecret, now: i64) -> Option<CitizenKey> {
    let Some(Plain::Map(applicant)) = read_key(doc, &ROOT, "applicant") else {
        return None;
    };
    let Some(Plain::Scalar(ScalarValue::Str(nik))) = applicant.get("nik") else {
        return None;
    };
    let today = jemput_domain::jakarta_today(now / 1000);
    let nik = Nik::parse(nik, today).ok()?;
    Some(CitizenKey::for_nik(&nik, secret))
}
