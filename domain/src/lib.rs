//! Jemput's domain values: numbers, codes and statuses that can only be made by parsing, and
//! typed views of Jemput's Automerge documents.
//!
//! Every value type has a private representation, one fallible `parse` with a typed error,
//! and serde through `TryFrom<String>`, so a bad value can enter neither by hand nor by JSON.
//! Once parsed, a value is trusted everywhere. The crate is pure: no IO, no clock reads, no
//! global RNG (callers pass the date and the RNG in). Reference data, the Kemendagri region
//! table and the service catalogue, is compiled in from `data/` and parsed once, on first use.
//!
//! - [`Nik`], [`Kk`]: population numbers (personal data: masked in `Debug`/`Display`).
//! - [`RegionCode`]: Kemendagri region codes from the embedded table.
//! - [`ServiceCode`], [`catalogue`]: the service catalogue and its form fields.
//! - [`TrackingCode`]: codes made offline on the device and read aloud to citizens.
//! - [`Role`], [`DocumentKind`], [`ApplicationStatus`]: the workflow and who may move it.
//! - [`schema`]: schema strings and read-only views of application and visit documents.

#![warn(missing_docs)]

mod civil;
pub mod nik;
pub mod region;
pub mod schema;
pub mod service;
pub mod tracking;
pub mod workflow;

pub use civil::jakarta_today;
pub use nik::{Kk, Nik, NikError, NikWarning, Sex, SexError};
pub use region::{RegionCode, RegionError, RegionLevel};
pub use schema::{ApplicationView, DocumentView, SchemaError, VisitView};
pub use service::{
    Agency, AgencyError, Catalogue, FieldIssue, FieldKind, FieldProblem, FieldSpec, FieldValue,
    Service, ServiceCode, ServiceCodeError, catalogue,
};
pub use tracking::{RegionTooCoarse, TrackingCode, TrackingCodeError};
pub use workflow::{ApplicationStatus, DocumentKind, Role, UnknownValue};
