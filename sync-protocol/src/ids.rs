//! Identifiers that travel on the wire: documents, peers, storages.
//!
//! Each is a parsed value: the only way to get one is through `parse` (or
//! [`DocumentId::from_bytes`] for bytes the caller already trusts), so code that holds one
//! never re-checks it.
//!
//! - [`DocumentId`]: 16 bytes, written as bs58check (base58 with a 4-byte double-SHA-256
//!   checksum and no version byte), 27–28 characters, exactly as automerge-repo writes it.
//!   Parsing also accepts `automerge:<id>` URLs (with an optional `#<head>|<head>` section)
//!   and legacy hyphenated UUIDs, as the JS library and samod do.
//! - [`PeerId`], [`StorageId`]: claims made by peers, non-empty and at most 256 bytes.

use std::fmt;

/// Why a string is not a valid identifier.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// The string is empty.
    #[error("identifier is empty")]
    Empty,
    /// The string is longer than the identifier allows.
    #[error("identifier is longer than {max} bytes")]
    TooLong {
        /// The largest accepted length, in bytes.
        max: usize,
    },
    /// Neither bs58check of 16 bytes nor a hyphenated UUID.
    #[error("document id is not valid bs58check of 16 bytes")]
    InvalidDocumentId,
    /// Starts with `automerge:` but has more than one `#` or a head that is not a bs58check
    /// change hash.
    #[error("automerge URL has a malformed heads section")]
    InvalidUrl,
}

/// An automerge-repo document id: 16 bytes, written as bs58check.
///
/// `Display` writes the bare bs58check form (`4NMNnkMhL8jXrdJ9jamS58PAVdXu`), the one
/// automerge-repo puts in `documentId`; [`DocumentId::url`] writes `automerge:<id>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId([u8; 16]);

/// Bytes in a bs58check-encoded document id: the 16-byte id and its 4-byte checksum.
const CHECKED_ID_LEN: usize = 16 + CHECKSUM_LEN;
/// The bs58check checksum length (first 4 bytes of SHA-256(SHA-256(payload))).
const CHECKSUM_LEN: usize = 4;
/// The longest base58 text that can encode `CHECKED_ID_LEN` bytes: each leading zero byte is
/// one `1`, the rest needs at most ⌈n·log(256)/log(58)⌉ digits, and the sum peaks at 28.
/// Longer input is rejected before decoding, which is quadratic in the input length.
const MAX_ID_CHARS: usize = 28;
/// A head in a URL is a 32-byte change hash plus checksum: at most 50 base58 digits.
const HEAD_LEN: usize = 32;
const MAX_HEAD_CHARS: usize = 50;
/// Room for base58 of `CHECKED_ID_LEN` bytes as the `bs58` crate sizes its scratch buffer.
const ENCODE_BUF: usize = CHECKED_ID_LEN + CHECKED_ID_LEN.div_ceil(2);
const URL_PREFIX: &str = "automerge:";

impl DocumentId {
    /// Wraps 16 bytes the caller already has (from storage, or from its own RNG).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// A new document id from 16 random bytes drawn by the caller (this crate has no RNG).
    pub fn random(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses a bs58check id, an `automerge:<id>[#<head>|<head>…]` URL (heads are checked,
    /// then dropped) or a legacy hyphenated UUID (its 16 bytes in written order, as
    /// `uuid.parse` in JS and `Uuid::parse_str` in samod map it).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if let Some(rest) = s.strip_prefix(URL_PREFIX) {
            return parse_url(rest);
        }
        if let Some(bytes) = parse_hyphenated_uuid(s) {
            return Ok(Self(bytes));
        }
        decode_bs58check::<16>(s, MAX_ID_CHARS)
            .map(Self)
            .ok_or(IdError::InvalidDocumentId)
    }

    /// The `automerge:<id>` URL of this document, without heads.
    pub fn url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }
}

/// The part after `automerge:`. As in JS `parseAutomergeUrl`: at most one `#`; an empty
/// heads section means "no heads"; the id inside a URL is bs58check only (no UUID).
fn parse_url(rest: &str) -> Result<DocumentId, IdError> {
    let mut sections = rest.split('#');
    let id = sections.next().unwrap_or_default();
    let heads = sections.next();
    if sections.next().is_some() {
        return Err(IdError::InvalidUrl);
    }
    let id = decode_bs58check::<16>(id, MAX_ID_CHARS).ok_or(IdError::InvalidDocumentId)?;
    if let Some(heads) = heads.filter(|h| !h.is_empty()) {
        let all_valid = heads
            .split('|')
            .all(|head| decode_bs58check::<HEAD_LEN>(head, MAX_HEAD_CHARS).is_some());
        if !all_valid {
            return Err(IdError::InvalidUrl);
        }
    }
    Ok(DocumentId(id))
}

/// Decodes bs58check text holding exactly `N` payload bytes; `None` for anything else.
fn decode_bs58check<const N: usize>(s: &str, max_chars: usize) -> Option<[u8; N]> {
    if s.is_empty() || s.len() > max_chars {
        return None;
    }
    // Payload + checksum, plus one spare byte so that one byte too many is a length
    // mismatch rather than a buffer error (both are rejected either way).
    let mut buf = [0u8; 64];
    let payload_len = bs58::decode(s).with_check(None).onto(&mut buf[..]).ok()?;
    if payload_len != N {
        return None;
    }
    let mut out = [0u8; N];
    out.copy_from_slice(buf.get(..N)?);
    Some(out)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (any case, any version) to its 16 bytes.
fn parse_hyphenated_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut digits = b.iter().filter(|&&c| c != b'-');
    let mut out = [0u8; 16];
    for byte in &mut out {
        let hi = hex_value(*digits.next()?)?;
        let lo = hex_value(*digits.next()?)?;
        *byte = (hi << 4) | lo;
    }
    // With the length and the four dashes fixed, a dash anywhere else leaves fewer than 32
    // digits, which the loop above rejects.
    Some(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ENCODE_BUF];
        let len = bs58::encode(&self.0)
            .with_check()
            .onto(&mut buf[..])
            .map_err(|_| fmt::Error)?;
        let text = buf.get(..len).ok_or(fmt::Error)?;
        f.write_str(std::str::from_utf8(text).map_err(|_| fmt::Error)?)
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

impl TryFrom<&str> for DocumentId {
    type Error = IdError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

/// Checks shared by [`PeerId`] and [`StorageId`].
fn check_claim(s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > max {
        return Err(IdError::TooLong { max });
    }
    Ok(())
}

/// A peer's claimed identity (`peer-<base36>` from JS, `peer-<u64>` from samod).
///
/// Anyone can claim any id; bind it to an authenticated connection with
/// [`ConnectionConfig::expected_peer_id`](crate::ConnectionConfig::expected_peer_id).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PeerId(String);

impl PeerId {
    /// The longest accepted peer id, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Accepts any non-empty string of at most [`PeerId::MAX_LEN`] bytes.
    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        check_claim(&s, Self::MAX_LEN)?;
        Ok(Self(s))
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PeerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for PeerId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for PeerId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

/// Identifies a peer's storage (a UUID per storage directory in JS).
///
/// A non-ephemeral peer with a storage id expects its sync state to be kept per
/// (document, storage id), so that a reconnect is cheap.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct StorageId(String);

impl StorageId {
    /// The longest accepted storage id, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Accepts any non-empty string of at most [`StorageId::MAX_LEN`] bytes.
    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        check_claim(&s, Self::MAX_LEN)?;
        Ok(Self(s))
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StorageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StorageId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for StorageId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for StorageId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Generated by automerge-repo 2.5.6 (`generateAutomergeUrl`), with the bytes JS's
    /// `documentIdToBinary` gives for them; more in `tests/fixtures/js-messages.json`.
    const JS_IDS: [(&str, &str); 4] = [
        (
            "3oyQuAF5yXSAirCfeGU49ajHmaWH",
            "c9b07ea3218f47439f85d0ae4fd7245b",
        ),
        (
            "ddwvfPg1QQGQMmdLjWBAEAQ78d1",
            "2d573ab1da104b4495dfb2930570153e",
        ),
        ("11111111111111114Ki9Gx", "00000000000000000000000000000000"),
        (
            "4ZrjxJnU1LA5xSyrWMNuXTozYEvA",
            "ffffffffffffffffffffffffffffffff",
        ),
    ];

    fn bytes_of(hex: &str) -> [u8; 16] {
        hex::decode(hex).expect("hex").try_into().expect("16 bytes")
    }

    #[test]
    fn reads_and_writes_ids_as_js_does() {
        for (text, hex) in JS_IDS {
            let id = DocumentId::parse(text).expect(text);
            assert_eq!(id.as_bytes(), &bytes_of(hex), "{text}");
            assert_eq!(id.to_string(), text);
            assert_eq!(id.url(), format!("automerge:{text}"));
            assert_eq!(format!("{id:?}"), format!("DocumentId({text})"));
        }
    }

    #[test]
    fn reads_urls_with_and_without_heads() {
        let (text, hex) = JS_IDS[0];
        let head = "r4om7BJtdZoNsM9YyfNXjXh2FKNBG5vpoqaxkXWw5d6nELVdN";
        for url in [
            format!("automerge:{text}"),
            format!("automerge:{text}#"),
            format!("automerge:{text}#{head}"),
            format!("automerge:{text}#{head}|{head}"),
        ] {
            assert_eq!(
                DocumentId::parse(&url).map(|id| id.0),
                Ok(bytes_of(hex)),
                "{url}"
            );
        }
        for bad in [
            format!("automerge:{text}#{head}#{head}"),
            format!("automerge:{text}#nothead"),
            format!("automerge:{text}#{head}|"),
        ] {
            assert_eq!(DocumentId::parse(&bad), Err(IdError::InvalidUrl), "{bad}");
        }
        let uuid_in_url = "automerge:6ba7b810-9dad-11d1-80b4-00c04fd430c8";
        assert_eq!(
            DocumentId::parse(uuid_in_url),
            Err(IdError::InvalidDocumentId)
        );
    }

    #[test]
    fn reads_legacy_uuids_in_written_byte_order() {
        // As JS `interpretAsDocumentId` maps them (tests/fixtures/js-messages.json).
        let cases = [
            (
                "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                "2VzPLXwa47QWna8JFvmCpx6t7VTY",
            ),
            (
                "F47AC10B-58CC-4372-A567-0E02B2C3D479",
                "4QYpWnnupss2BiDc8B6Y6FRnoWkq",
            ),
        ];
        for (uuid, bs58) in cases {
            let id = DocumentId::parse(uuid).expect(uuid);
            assert_eq!(id.to_string(), bs58);
            assert_eq!(
                hex::encode(id.as_bytes()),
                uuid.replace('-', "").to_lowercase()
            );
        }
        for bad in [
            "6ba7b810-9dad-11d1-80b4-00c04fd430c",
            "6ba7b810-9dad-11d1-80b4-00c04fd430cg",
            "6ba7b8109dad-11d1-80b4-00c04fd430c8a",
            "6ba7b810-9dad-11d1-80b4-00c04fd430-8",
            "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
        ] {
            assert_eq!(
                DocumentId::parse(bad),
                Err(IdError::InvalidDocumentId),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_an_id() {
        let (text, _) = JS_IDS[0];
        let mut corrupted = text.to_owned();
        corrupted.replace_range(5..6, if &text[5..6] == "a" { "b" } else { "a" });
        let twenty_bytes = bs58::encode([1u8; 20]).with_check().into_string();
        let fifteen_bytes = bs58::encode([1u8; 15]).with_check().into_string();
        let with_version = bs58::encode([1u8; 16]).with_check_version(0).into_string();
        let cases = [
            ("", IdError::Empty),
            ("automerge:", IdError::InvalidDocumentId),
            (corrupted.as_str(), IdError::InvalidDocumentId),
            ("0OIl", IdError::InvalidDocumentId),
            (twenty_bytes.as_str(), IdError::InvalidDocumentId),
            (fifteen_bytes.as_str(), IdError::InvalidDocumentId),
            (with_version.as_str(), IdError::InvalidDocumentId),
            ("é", IdError::InvalidDocumentId),
        ];
        for (input, expected) in cases {
            assert_eq!(DocumentId::parse(input), Err(expected), "{input:?}");
        }
        let long = "z".repeat(100_000);
        assert_eq!(DocumentId::parse(&long), Err(IdError::InvalidDocumentId));
    }

    #[test]
    fn peer_and_storage_ids_are_bounded() {
        assert_eq!(PeerId::parse(""), Err(IdError::Empty));
        assert_eq!(StorageId::parse(""), Err(IdError::Empty));
        let max = "x".repeat(256);
        assert_eq!(
            PeerId::parse(max.clone()).map(|p| p.as_str().len()),
            Ok(256)
        );
        assert_eq!(
            PeerId::parse(max.clone() + "x"),
            Err(IdError::TooLong { max: 256 })
        );
        assert_eq!(
            StorageId::try_from(max + "x"),
            Err(IdError::TooLong { max: 256 })
        );
        let id: PeerId = "peer-1".parse().expect("valid");
        assert_eq!((id.as_ref(), id.to_string().as_str()), ("peer-1", "peer-1"));
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(bytes in any::<[u8; 16]>()) {
            let id = DocumentId::from_bytes(bytes);
            let text = id.to_string();
            prop_assert!(text.len() <= MAX_ID_CHARS);
            prop_assert_eq!(DocumentId::parse(&text), Ok(id));
            prop_assert_eq!(DocumentId::parse(&id.url()), Ok(id));
            prop_assert_eq!(text, bs58::encode(bytes).with_check().into_string());
        }

        #[test]
        fn uuid_text_maps_to_its_bytes(bytes in any::<[u8; 16]>()) {
            let h = hex::encode(bytes);
            let uuid = format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]);
            prop_assert_eq!(DocumentId::parse(&uuid).map(|id| id.0), Ok(bytes));
            prop_assert_eq!(DocumentId::parse(&uuid.to_uppercase()).map(|id| id.0), Ok(bytes));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,64}") {
            let _ = DocumentId::parse(&s);
            let _ = DocumentId::parse(&format!("automerge:{s}"));
            let _ = DocumentId::parse(&format!("automerge:4ZrjxJnU1LA5xSyrWMNuXTozYEvA#{s}"));
        }
    }
}
