//! The `jemput/visit@1` document: one field visit (kunjungan) by an outreach officer.

use std::fmt;

use automerge::Automerge;
use jemput_sync_protocol::DocumentId;
use time::OffsetDateTime;

use super::application::Redacted;
use super::read::{Node, Obj, Reader, invalid, wrong_type};
use super::{InvalidValue, RegionRef, SchemaError, expect_schema, read_region};
use crate::workflow::DocumentKind;

/// A typed, read-only view of a visit document:
///
/// ```text
/// schema: "jemput/visit@1"                               required
/// region: { district: "34.71.01", village?: "34.71.01.1001" }   required
/// officer?: <user id>        device?: <device id>        at?: <time the visit began>
/// purpose?: "home_visit" | "village_hall" | "school" | ... (free, as the device labels it)
/// notes?: <free text>
/// applications?: [ <document id>, ... ]                   the applications taken
/// ```
///
/// `Debug` hides the notes, which may name people.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VisitView {
    /// Where the visit took place.
    pub region: RegionRef,
    /// The officer's user id.
    pub officer: Option<String>,
    /// The device id.
    pub device: Option<String>,
    /// When the visit began (device clock).
    pub at: Option<OffsetDateTime>,
    /// Why the officer went (home visit for the elderly, a school, a village hall...).
    pub purpose: Option<String>,
    /// The officer's notes.
    pub notes: Option<String>,
    /// The application documents captured during the visit.
    pub applications: Vec<DocumentId>,
}

impl VisitView {
    /// Reads a visit document; see the type's documentation for the schema.
    pub fn from_doc(doc: &Automerge) -> Result<Self, SchemaError> {
        let r = Reader::new(doc);
        let root = Obj::root();
        expect_schema(&r, DocumentKind::Visit)?;
        Ok(Self {
            region: read_region(&r, &root, "region")?,
            officer: r.opt_str(&root, "officer")?,
            device: r.opt_str(&root, "device")?,
            at: r.opt_time(&root, "at")?,
            purpose: r.opt_str(&root, "purpose")?,
            notes: r.opt_str(&root, "notes")?,
            applications: read_ids(&r, &root, "applications")?,
        })
    }
}

impl fmt::Debug for VisitView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VisitView")
            .field("region", &self.region)
            .field("officer", &self.officer)
            .field("device", &self.device)
            .field("at", &self.at)
            .field("purpose", &self.purpose)
            .field("notes", &Redacted(&self.notes))
            .field("applications", &self.applications)
            .finish()
    }
}

/// A list of document ids (scalar strings or Text) at `key`; absent means empty.
fn read_ids(r: &Reader<'_>, obj: &Obj, key: &str) -> Result<Vec<DocumentId>, SchemaError> {
    let Some(list) = r.opt_list(obj, key)? else {
        return Ok(Vec::new());
    };
    r.items(&list)?
        .into_iter()
        .map(|(node, path)| match node {
            Node::Str(s) => {
                DocumentId::parse(&s).map_err(|e| invalid(path, InvalidValue::DocumentId(e)))
            }
            other => Err(wrong_type(path, "string", &other)),
        })
        .collect()
}
