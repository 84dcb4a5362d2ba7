//! Jemput's domain values: numbers, codes and statuses that can only be made by parsing.
//!
//! Every type here has a private representation, one fallible `parse` with a typed error, and
//! serde through `TryFrom<String>`, so a bad value can enter neither by hand nor by JSON. Once
//! parsed, a value is trusted everywhere. The crate is pure: no IO, no clock, no global RNG.
//! Reference data (the Kemendagri region table and the service catalogue) is compiled in from
//! `data/` and parsed once, on first use.
//!
//! - [`Nik`], [`Kk`]: population numbers, masked in `Debug`/`Display` (personal data).
//! - [`RegionCode`]: Kemendagri region codes from the embedded table.

#![warn(missing_docs)]

mod civil;
pub mod nik;
pub mod region;

pub use civil::jakarta_today;
pub use nik::{Kk, Nik, NikError, NikWarning, Sex, SexError};
pub use region::{RegionCode, RegionError, RegionLevel};
