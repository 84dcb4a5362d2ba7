//! Identifiers that travel on the wire: documents, peers, storages.
//!
//! API CONTRACT (used by the server; implementation owned by the protocol work):
//! - `DocumentId`: 16 bytes; `FromStr`/`parse` accepts bs58check (4-byte double-SHA-256
//!   checksum, no version byte) and `automerge:<id>` URLs (optionally with `#heads`), and legacy
//!   hyphenated UUIDs; `Display` writes bs58check. `random(bytes: [u8;16])` constructor.
//! - `PeerId`, `StorageId`: non-empty strings of bounded length (≤ 256 bytes), parsed.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("document id is not valid bs58check of 16 bytes")]
    InvalidDocumentId,
}

/// An automerge-repo document id: 16 bytes, written as bs58check.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId([u8; 16]);

impl DocumentId {
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
    pub fn parse(s: &str) -> Result<Self, IdError> {
        todo!("{s}")
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!()
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl std::str::FromStr for DocumentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A peer's claimed identity (`peer-<base36>` from JS, `peer-<u64>` from samod).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PeerId(String);

impl PeerId {
    pub const MAX_LEN: usize = 256;
    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { max: Self::MAX_LEN });
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies a peer's storage (a UUID per storage directory in JS).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct StorageId(String);

impl StorageId {
    pub const MAX_LEN: usize = 256;
    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { max: Self::MAX_LEN });
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StorageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
