//! The `jemput/application@1` document: one citizen's application for one service.

use std::collections::BTreeMap;
use std::fmt;

use automerge::Automerge;
use jemput_sync_protocol::DocumentId;
use time::{Date, OffsetDateTime};

use super::read::{Node, Obj, Reader, invalid, wrong_type};
use super::{InvalidValue, RegionRef, SchemaError, expect_schema, read_region};
use crate::civil::parse_iso_date;
use crate::nik::{Kk, Nik, Sex};
use crate::service::{FieldValue, ServiceCode};
use crate::tracking::TrackingCode;
use crate::workflow::{ApplicationStatus, DocumentKind, Role};

/// A typed, read-only view of an application document:
///
/// ```text
/// schema: "jemput/application@1"                       required
/// trackingCode: "JPT-3471-7K4Q-9XM2"                   required
/// service: "DUKCAPIL-KTP-EL-BARU"                      required, in the catalogue
/// region: { district: "34.71.01", village?: "34.71.01.1001" }   required
/// applicant?: { nik?, kk?, name?, birthDate?: "YYYY-MM-DD", sex?: "L"|"P", phone?, address? }
/// fields?: { <name>: string | number | boolean }        checked by Service::check_fields
/// attachments?: [ { sha256, kind?, mime?, size? } ]
/// consent?: { basis?, at?, by? }
/// capture?: { officer?, device?, at?, visit?: <document id> }
/// status: "draft" | "submitted" | ...                   required
/// history?: [ { at, to, from?, by?, role?, note? } ]
/// ```
///
/// Times are Automerge timestamps, numbers of milliseconds since the epoch, or RFC 3339
/// strings. NIK and KK numbers are checked as serde checks them (see [`Nik`]'s
/// `TryFrom<String>`), since a view has no reference date.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ApplicationView {
    /// The code the citizen was given.
    pub tracking_code: TrackingCode,
    /// The service applied for.
    pub service: ServiceCode,
    /// Where the application was taken.
    pub region: RegionRef,
    /// Who applies (personal data).
    pub applicant: ApplicantView,
    /// Service-specific fields, by name.
    pub fields: BTreeMap<String, FieldValue>,
    /// Photographed documents; the blobs travel separately.
    pub attachments: Vec<AttachmentView>,
    /// The applicant's consent to processing.
    pub consent: Option<ConsentView>,
    /// Who captured the application, where and when.
    pub capture: Option<CaptureView>,
    /// Where the application stands.
    pub status: ApplicationStatus,
    /// Status changes, oldest first.
    pub history: Vec<HistoryEntry>,
}

impl ApplicationView {
    /// Reads an application document; see the type's documentation for the schema.
    pub fn from_doc(doc: &Automerge) -> Result<Self, SchemaError> {
        let r = Reader::new(doc);
        let root = Obj::root();
        expect_schema(&r, DocumentKind::Application)?;
        Ok(Self {
            tracking_code: r.parsed(&root, "trackingCode", TrackingCode::parse)?,
            service: r.parsed(&root, "service", ServiceCode::parse)?,
            region: read_region(&r, &root, "region")?,
            applicant: match r.opt_map(&root, "applicant")? {
                Some(map) => ApplicantView::read(&r, &map)?,
                None => ApplicantView::default(),
            },
            fields: match r.opt_map(&root, "fields")? {
                Some(map) => read_fields(&r, &map)?,
                None => BTreeMap::new(),
            },
            attachments: read_list(&r, &root, "attachments", AttachmentView::read)?,
            consent: r
                .opt_map(&root, "consent")?
                .map(|m| ConsentView::read(&r, &m))
                .transpose()?,
            capture: r
                .opt_map(&root, "capture")?
                .map(|m| CaptureView::read(&r, &m))
                .transpose()?,
            status: r.parsed(&root, "status", ApplicationStatus::parse)?,
            history: read_list(&r, &root, "history", HistoryEntry::read)?,
        })
    }
}

/// The applicant block. Every part is personal data: `Debug` shows the NIK and KK masked and
/// nothing of the rest but whether it is there.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplicantView {
    /// The applicant's NIK.
    pub nik: Option<Nik>,
    /// The applicant's family card number.
    pub kk: Option<Kk>,
    /// Full name.
    pub name: Option<String>,
    /// Date of birth.
    pub birth_date: Option<Date>,
    /// `L` or `P`.
    pub sex: Option<Sex>,
    /// Phone number as written.
    pub phone: Option<String>,
    /// Street address as written.
    pub address: Option<String>,
}

impl ApplicantView {
    fn read(r: &Reader<'_>, map: &Obj) -> Result<Self, SchemaError> {
        Ok(Self {
            nik: r.opt_parsed(map, "nik", |s| Nik::try_from(s.to_owned()))?,
            kk: r.opt_parsed(map, "kk", |s| Kk::try_from(s.to_owned()))?,
            name: r.opt_str(map, "name")?,
            birth_date: r.opt_parsed(map, "birthDate", |s| {
                parse_iso_date(s).ok_or(InvalidValue::Date)
            })?,
            sex: r.opt_parsed(map, "sex", Sex::parse)?,
            phone: r.opt_str(map, "phone")?,
            address: r.opt_str(map, "address")?,
        })
    }
}

impl fmt::Debug for ApplicantView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicantView")
            .field("nik", &self.nik)
            .field("kk", &self.kk)
            .field("name", &Redacted(&self.name))
            .field("birth_date", &self.birth_date.map(|_| "<redacted>"))
            .field("sex", &self.sex)
            .field("phone", &Redacted(&self.phone))
            .field("address", &Redacted(&self.address))
            .finish()
    }
}

/// A photographed document, referenced by content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttachmentView {
    /// SHA-256 of the blob (written as 64 hex digits).
    pub sha256: [u8; 32],
    /// What the photo shows (e.g. `ktp`, `kk`, `akta`), as the device labels it.
    pub kind: Option<String>,
    /// Media type, e.g. `image/jpeg`.
    pub mime: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
}

impl AttachmentView {
    fn read(r: &Reader<'_>, map: &Obj) -> Result<Self, SchemaError> {
        Ok(Self {
            sha256: r.parsed(map, "sha256", parse_sha256)?,
            kind: r.opt_str(map, "kind")?,
            mime: r.opt_str(map, "mime")?,
            size: r.opt_u64(map, "size")?,
        })
    }
}

/// The applicant's consent to processing (UU PDP 27/2022).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsentView {
    /// The lawful basis, as the device records it.
    pub basis: Option<String>,
    /// When consent was given.
    pub at: Option<OffsetDateTime>,
    /// Who gave it (the applicant or a guardian; personal data, hidden from `Debug`).
    pub by: Option<String>,
}

impl ConsentView {
    fn read(r: &Reader<'_>, map: &Obj) -> Result<Self, SchemaError> {
        Ok(Self {
            basis: r.opt_str(map, "basis")?,
            at: r.opt_time(map, "at")?,
            by: r.opt_str(map, "by")?,
        })
    }
}

impl fmt::Debug for ConsentView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsentView")
            .field("basis", &self.basis)
            .field("at", &self.at)
            .field("by", &Redacted(&self.by))
            .finish()
    }
}

/// Who captured the application, with which device, when, and during which visit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CaptureView {
    /// The officer's user id.
    pub officer: Option<String>,
    /// The device id.
    pub device: Option<String>,
    /// When the application was captured (device clock).
    pub at: Option<OffsetDateTime>,
    /// The visit document it was captured during.
    pub visit: Option<DocumentId>,
}

impl CaptureView {
    fn read(r: &Reader<'_>, map: &Obj) -> Result<Self, SchemaError> {
        Ok(Self {
            officer: r.opt_str(map, "officer")?,
            device: r.opt_str(map, "device")?,
            at: r.opt_time(map, "at")?,
            visit: r.opt_parsed(map, "visit", DocumentId::parse)?,
        })
    }
}

/// One status change. `Debug` hides the note, which may name the applicant.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// When.
    pub at: OffsetDateTime,
    /// The user id of who made the change.
    pub by: Option<String>,
    /// In which role.
    pub role: Option<Role>,
    /// The status before (absent on the first entry).
    pub from: Option<ApplicationStatus>,
    /// The status after.
    pub to: ApplicationStatus,
    /// The reviewer's note (required for review decisions; see
    /// [`ApplicationStatus::note_required`]).
    pub note: Option<String>,
}

impl HistoryEntry {
    fn read(r: &Reader<'_>, map: &Obj) -> Result<Self, SchemaError> {
        Ok(Self {
            at: r.time(map, "at")?,
            by: r.opt_str(map, "by")?,
            role: r.opt_parsed(map, "role", Role::parse)?,
            from: r.opt_parsed(map, "from", ApplicationStatus::parse)?,
            to: r.parsed(map, "to", ApplicationStatus::parse)?,
            note: r.opt_str(map, "note")?,
        })
    }
}

impl fmt::Debug for HistoryEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistoryEntry")
            .field("at", &self.at)
            .field("by", &self.by)
            .field("role", &self.role)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("note", &Redacted(&self.note))
            .finish()
    }
}

/// Debug-prints an optional personal string as `Some(<redacted>)` or `None`.
pub(super) struct Redacted<'a>(pub(super) &'a Option<String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some(<redacted>)"),
            None => f.write_str("None"),
        }
    }
}

/// Reads the list at `key` (absent = empty), each item a map read by `item`.
pub(super) fn read_list<T>(
    r: &Reader<'_>,
    obj: &Obj,
    key: &str,
    item: impl Fn(&Reader<'_>, &Obj) -> Result<T, SchemaError>,
) -> Result<Vec<T>, SchemaError> {
    let Some(list) = r.opt_list(obj, key)? else {
        return Ok(Vec::new());
    };
    r.items(&list)?
        .into_iter()
        .map(|(node, path)| match node {
            Node::Map(map) => item(r, &map),
            other => Err(wrong_type(path, "map", &other)),
        })
        .collect()
}

fn read_fields(r: &Reader<'_>, map: &Obj) -> Result<BTreeMap<String, FieldValue>, SchemaError> {
    let mut out = BTreeMap::new();
    for key in r.keys(map) {
        let Some((node, path)) = r.get(map, &key)? else {
            continue;
        };
        let value = match node {
            Node::Str(s) => FieldValue::Text(s),
            Node::Bool(b) => FieldValue::Boolean(b),
            Node::Int(i) => FieldValue::Integer(i),
            Node::Uint(u) => match i64::try_from(u) {
                Ok(i) => FieldValue::Integer(i),
                Err(_) => return Err(invalid(path, InvalidValue::OutOfRange)),
            },
            Node::F64(x) => FieldValue::Float(x),
            Node::Timestamp(_) | Node::Map(_) | Node::List(_) | Node::Other => FieldValue::Other,
        };
        out.insert(key, value);
    }
    Ok(out)
}

fn parse_sha256(s: &str) -> Result<[u8; 32], InvalidValue> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| InvalidValue::Sha256)?;
    Ok(out)
}
