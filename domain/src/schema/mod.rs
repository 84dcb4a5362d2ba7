//! Versioned document schemas and typed, read-only views of Jemput's Automerge documents.
//!
//! Every document names its schema in a root `schema` field (`jemput/application@1`,
//! `jemput/visit@1`). A view is strict where a wrong value would mislead the server (the
//! schema string, the type of every field this version knows, ids and enumerations), and
//! lenient where a device may be behind or ahead: optional fields may be missing or `null`,
//! and fields this version does not know are ignored. Enumerations and ids are accepted as
//! scalar strings (our SDK) and as Text objects (unchanged JS Automerge 3 clients).

mod application;
mod read;
#[cfg(test)]
mod tests;
mod visit;

pub use crate::service::FieldValue;
pub use application::{
    ApplicantView, ApplicationView, AttachmentView, CaptureView, ConsentView, HistoryEntry,
};
pub use visit::VisitView;

use automerge::Automerge;
use jemput_sync_protocol::IdError;

use crate::nik::{NikError, SexError};
use crate::region::{RegionCode, RegionError, RegionLevel};
use crate::service::ServiceCodeError;
use crate::tracking::TrackingCodeError;
use crate::workflow::{DocumentKind, UnknownValue};
use read::{Obj, Reader};

/// Schema of an application document, version 1.
pub const APPLICATION: &str = "jemput/application@1";
/// Schema of a field visit document, version 1.
pub const VISIT: &str = "jemput/visit@1";

/// Why a document does not fit its schema. Paths are dotted from the root, with list
/// indices in brackets (`history[2].to`); errors never carry the offending value, which may
/// be personal data.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The document could not be read.
    #[error("reading the document failed: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// The `schema` field is missing, or names a schema (or version) this view does not read.
    #[error("document schema is not {expected}")]
    Schema {
        /// The schema string this view reads.
        expected: &'static str,
    },
    /// A required field is missing (or `null`).
    #[error("{path} is missing")]
    Missing {
        /// Where.
        path: String,
    },
    /// A known field holds a value of the wrong type.
    #[error("{path} is a {found}, expected a {expected}")]
    WrongType {
        /// Where.
        path: String,
        /// The type this schema gives the field.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// A known field has the right type but an invalid value.
    #[error("{path} is invalid: {reason}")]
    Invalid {
        /// Where.
        path: String,
        /// Why.
        reason: InvalidValue,
    },
}

/// Why a value of the right type is not valid.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    /// Not a valid NIK or KK number.
    #[error("{0}")]
    Nik(#[from] NikError),
    /// Not `L` or `P`.
    #[error("{0}")]
    Sex(#[from] SexError),
    /// Not a region code in the table.
    #[error("{0}")]
    Region(#[from] RegionError),
    /// A region code of the wrong level (a village where a district belongs).
    #[error("region code is not a {expected}")]
    RegionLevel {
        /// The level the field needs.
        expected: RegionLevel,
    },
    /// The village does not lie in the document's district.
    #[error("village is not in the district")]
    RegionMismatch,
    /// Not a service code in the catalogue.
    #[error("{0}")]
    Service(#[from] ServiceCodeError),
    /// Not a tracking code.
    #[error("{0}")]
    TrackingCode(#[from] TrackingCodeError),
    /// Not one of an enumeration's values.
    #[error("{0}")]
    Enum(#[from] UnknownValue),
    /// Not an automerge-repo document id.
    #[error("{0}")]
    DocumentId(#[from] IdError),
    /// Not a `YYYY-MM-DD` calendar date.
    #[error("not a YYYY-MM-DD date")]
    Date,
    /// Not a time (milliseconds since the epoch, an Automerge timestamp or RFC 3339).
    #[error("not a timestamp")]
    Timestamp,
    /// Not 64 hexadecimal digits.
    #[error("not a SHA-256 in hexadecimal")]
    Sha256,
    /// A number that is negative, fractional or too large.
    #[error("number out of range")]
    OutOfRange,
}

/// Any Jemput document, read by its `schema` field.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentView {
    /// A `jemput/application@1` document.
    Application(Box<ApplicationView>),
    /// A `jemput/visit@1` document.
    Visit(VisitView),
}

impl DocumentView {
    /// Reads `doc` as whichever kind its `schema` field names.
    pub fn from_doc(doc: &Automerge) -> Result<Self, SchemaError> {
        match read_schema(&Reader::new(doc))? {
            Some(DocumentKind::Application) => {
                ApplicationView::from_doc(doc).map(|a| Self::Application(Box::new(a)))
            }
            Some(DocumentKind::Visit) => VisitView::from_doc(doc).map(Self::Visit),
            None => Err(SchemaError::Schema {
                expected: "a jemput schema",
            }),
        }
    }

    /// Which kind of document this is.
    pub fn kind(&self) -> DocumentKind {
        match self {
            Self::Application(_) => DocumentKind::Application,
            Self::Visit(_) => DocumentKind::Visit,
        }
    }
}

/// Where a document belongs: a district, and within it optionally a village.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegionRef {
    /// The district (kecamatan); the server's scope checks use it.
    pub district: RegionCode,
    /// The village (desa/kelurahan), inside `district`.
    pub village: Option<RegionCode>,
}

impl RegionRef {
    /// The most precise region known: the village, else the district.
    pub fn most_precise(&self) -> RegionCode {
        self.village.unwrap_or(self.district)
    }
}

/// The kind named by the root `schema` field, or `None` for a schema this crate does not read.
fn read_schema(r: &Reader<'_>) -> Result<Option<DocumentKind>, SchemaError> {
    Ok(r.opt_str(&Obj::root(), "schema")?
        .and_then(|s| DocumentKind::from_schema(&s)))
}

/// Checks the root `schema` field is exactly `kind`'s schema.
fn expect_schema(r: &Reader<'_>, kind: DocumentKind) -> Result<(), SchemaError> {
    match read_schema(r)? {
        Some(found) if found == kind => Ok(()),
        _ => Err(SchemaError::Schema {
            expected: kind.schema(),
        }),
    }
}

/// Reads `{ district, village? }` at `key` of `obj`.
fn read_region(r: &Reader<'_>, obj: &Obj, key: &str) -> Result<RegionRef, SchemaError> {
    let map = r
        .opt_map(obj, key)?
        .ok_or_else(|| read::missing(obj, key))?;
    let district = r.parsed(&map, "district", region_of_level(RegionLevel::District))?;
    let village = r.opt_parsed(&map, "village", region_of_level(RegionLevel::Village))?;
    if village.is_some_and(|v| v.district() != Some(district)) {
        return Err(read::invalid(
            map.child_path("village"),
            InvalidValue::RegionMismatch,
        ));
    }
    Ok(RegionRef { district, village })
}

/// A parser for region codes of exactly `level`.
fn region_of_level(level: RegionLevel) -> impl Fn(&str) -> Result<RegionCode, InvalidValue> {
    move |s| {
        let code = RegionCode::parse(s)?;
        if code.level() == level {
            Ok(code)
        } else {
            Err(InvalidValue::RegionLevel { expected: level })
        }
    }
}
