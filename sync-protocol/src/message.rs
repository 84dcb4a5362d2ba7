//! automerge-repo messages and their CBOR codec.
//!
//! One message is one CBOR map with text keys, carried in one binary WebSocket frame. The
//! key names and the order in which [`encode`] writes them are those of automerge-repo 2.5.6
//! (`DocSynchronizer`, `NetworkSubsystem`, `WebSocketClientAdapter`,
//! `WebSocketServerAdapter`); the golden tests in `tests/golden.rs` hold bytes captured from
//! those JS classes.
//!
//! - [`decode`] is lenient where cbor-x is loose: non-minimal length headers, whole numbers
//!   sent as float64, `undefined`/`null` meaning "absent", unknown keys skipped, `data` as a
//!   bare or tag-64 byte string, and `metadata` (the adapter README's spelling, which samod
//!   also reads) as an alias of `peerMetadata`. It is strict where it matters: one map and
//!   nothing after it, every required key present and of the right type, ids parsed. It
//!   borrows from the input while parsing, so a hostile length header cannot make it
//!   allocate; the only allocations are the owned strings and byte vectors of the result,
//!   bounded by the input length.
//! - [`encode`] is exact: shortest-form CBOR, definite-length maps, keys in automerge-repo's
//!   order, optional fields left out when `None`. It cannot fail.

use std::collections::BTreeMap;

use crate::cbor::{CborError, Reader, Writer};
use crate::ids::{DocumentId, IdError, PeerId, StorageId};

/// One automerge-repo network message, as it travels between two peers.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Client → server handshake: who the client claims to be and what it speaks.
    Join(Join),
    /// Server → client handshake answer.
    Peer(Peer),
    /// A protocol error, sent just before closing (JS peers only log it).
    Error(ErrorMessage),
    /// Advisory "I am going away". The JS client never sends it.
    Leave {
        /// The departing peer.
        sender_id: PeerId,
    },
    /// Sync message from a peer with no copy of the document.
    Request(DocMessage),
    /// Any other sync message (a document created on a client arrives as `sync`).
    Sync(DocMessage),
    /// The sender does not have the document, or may not share it (the same answer).
    DocUnavailable(DocUnavailable),
    /// Presence and other never-stored broadcasts about one document.
    Ephemeral(Ephemeral),
    /// Changes the set of storages whose heads the sender wants to hear about.
    RemoteSubscriptionChange(RemoteSubscriptionChange),
    /// Heads of a document at some storage, for peers that subscribed to it.
    RemoteHeadsChanged(RemoteHeadsChanged),
}

/// What a peer says about its storage in `join` and `peer`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerMetadata {
    /// The peer's storage, if it has one; sync state may be kept per (document, storage).
    pub storage_id: Option<StorageId>,
    /// True when the peer will not reconnect with this storage (keep no sync state).
    pub is_ephemeral: bool,
}

/// `join`: the first message of a client.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    /// The id the client claims.
    pub sender_id: PeerId,
    /// `None` when the key is missing or `undefined`.
    pub peer_metadata: Option<PeerMetadata>,
    /// `None` when the key is missing (JS servers then assume `"1"`).
    pub supported_protocol_versions: Option<Vec<String>>,
}

/// `peer`: the server's answer to `join`.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// The server's id.
    pub sender_id: PeerId,
    /// The client's id, from its `join`.
    pub target_id: PeerId,
    /// The server's metadata. Decoded as the default when a (samod) peer leaves it out.
    pub peer_metadata: PeerMetadata,
    /// Always [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION) today.
    pub selected_protocol_version: String,
}

/// `error`: why the sender is about to close the connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorMessage {
    /// Human-readable reason.
    pub message: String,
    /// The sender, when it has an id (JS servers set it; samod does not).
    pub sender_id: Option<PeerId>,
    /// The receiver, when known.
    pub target_id: Option<PeerId>,
}

/// Body of `request` and `sync`: one Automerge sync message for one document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocMessage {
    /// The peer that generated the sync message.
    pub sender_id: PeerId,
    /// The peer it is for.
    pub target_id: PeerId,
    /// The document it is about.
    pub document_id: DocumentId,
    /// An encoded `automerge::sync::Message` (never empty from JS peers).
    pub data: Vec<u8>,
}

/// `doc-unavailable`: the sender cannot provide the document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocUnavailable {
    /// The peer that does not have the document.
    pub sender_id: PeerId,
    /// The peer that asked.
    pub target_id: PeerId,
    /// The document asked for.
    pub document_id: DocumentId,
}

/// `ephemeral`: a broadcast about a document that is relayed, never stored.
///
/// Receivers de-duplicate by `sender_id:session_id:count`; relays keep the original
/// `sender_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ephemeral {
    /// The peer that originated the message (kept when relayed).
    pub sender_id: PeerId,
    /// The next hop.
    pub target_id: PeerId,
    /// The document the message is about.
    pub document_id: DocumentId,
    /// Random per-process session of the originator.
    pub session_id: String,
    /// Increases with every ephemeral message of the session.
    pub count: u64,
    /// Application payload (CBOR in JS), opaque here.
    pub data: Vec<u8>,
}

/// `remote-subscription-change`: add or remove storages whose heads the sender follows.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSubscriptionChange {
    /// The subscriber.
    pub sender_id: PeerId,
    /// The peer asked to gossip heads.
    pub target_id: PeerId,
    /// Storages to start following (`undefined` in JS when none).
    pub add: Option<Vec<StorageId>>,
    /// Storages to stop following (`undefined` in JS when none).
    pub remove: Option<Vec<StorageId>>,
}

/// The heads of a document at one storage, and when they were seen there.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadsAtTime {
    /// bs58check-encoded change hashes, as sent.
    pub heads: Vec<String>,
    /// Milliseconds since the Unix epoch on the peer that first saw these heads.
    pub timestamp: u64,
}

/// `remote-heads-changed`: new heads of a document at some storages.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteHeadsChanged {
    /// The peer passing the news on.
    pub sender_id: PeerId,
    /// The subscriber.
    pub target_id: PeerId,
    /// The document whose heads changed.
    pub document_id: DocumentId,
    /// New heads per storage.
    pub new_heads: BTreeMap<StorageId, HeadsAtTime>,
}

/// Why bytes are not a message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// Malformed CBOR, or CBOR this codec refuses (indefinite lengths, nesting too deep).
    #[error("not valid CBOR: {0}")]
    Cbor(String),
    /// Well-formed CBOR whose top-level item is not a map.
    #[error("message is not a CBOR map")]
    NotAMap,
    /// A key the message type requires is missing, `null` or `undefined`.
    #[error("missing key `{0}`")]
    MissingKey(&'static str),
    /// A key holds a value of the wrong type (including a fractional or negative number
    /// where a count is expected).
    #[error("key `{key}` has the wrong type")]
    WrongType {
        /// The offending key.
        key: &'static str,
    },
    /// `type` names no message this protocol knows (truncated to 64 characters).
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    /// A peer, storage or document id that does not parse.
    #[error("invalid identifier in `{key}`: {source}")]
    InvalidId {
        /// The key holding the id.
        key: &'static str,
        /// Why it does not parse.
        source: crate::ids::IdError,
    },
    /// Bytes follow the message map.
    #[error("trailing bytes after the message")]
    TrailingBytes,
}

impl Message {
    /// The wire name of the message type (`"sync"`, `"join"`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Join(_) => "join",
            Message::Peer(_) => "peer",
            Message::Error(_) => "error",
            Message::Leave { .. } => "leave",
            Message::Request(_) => "request",
            Message::Sync(_) => "sync",
            Message::DocUnavailable(_) => "doc-unavailable",
            Message::Ephemeral(_) => "ephemeral",
            Message::RemoteSubscriptionChange(_) => "remote-subscription-change",
            Message::RemoteHeadsChanged(_) => "remote-heads-changed",
        }
    }

    /// The `senderId`, for every type but an `error` without one.
    pub fn sender_id(&self) -> Option<&PeerId> {
        match self {
            Message::Join(m) => Some(&m.sender_id),
            Message::Peer(m) => Some(&m.sender_id),
            Message::Error(m) => m.sender_id.as_ref(),
            Message::Leave { sender_id } => Some(sender_id),
            Message::Request(m) | Message::Sync(m) => Some(&m.sender_id),
            Message::DocUnavailable(m) => Some(&m.sender_id),
            Message::Ephemeral(m) => Some(&m.sender_id),
            Message::RemoteSubscriptionChange(m) => Some(&m.sender_id),
            Message::RemoteHeadsChanged(m) => Some(&m.sender_id),
        }
    }

    /// The `targetId`; `join` and `leave` have none, an `error` may have none.
    pub fn target_id(&self) -> Option<&PeerId> {
        match self {
            Message::Join(_) | Message::Leave { .. } => None,
            Message::Peer(m) => Some(&m.target_id),
            Message::Error(m) => m.target_id.as_ref(),
            Message::Request(m) | Message::Sync(m) => Some(&m.target_id),
            Message::DocUnavailable(m) => Some(&m.target_id),
            Message::Ephemeral(m) => Some(&m.target_id),
            Message::RemoteSubscriptionChange(m) => Some(&m.target_id),
            Message::RemoteHeadsChanged(m) => Some(&m.target_id),
        }
    }

    /// The document the message is about, if it is about one.
    pub fn document_id(&self) -> Option<&DocumentId> {
        match self {
            Message::Request(m) | Message::Sync(m) => Some(&m.document_id),
            Message::DocUnavailable(m) => Some(&m.document_id),
            Message::Ephemeral(m) => Some(&m.document_id),
            Message::RemoteHeadsChanged(m) => Some(&m.document_id),
            Message::Join(_)
            | Message::Peer(_)
            | Message::Error(_)
            | Message::Leave { .. }
            | Message::RemoteSubscriptionChange(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// Longest `type` value quoted back in [`DecodeError::UnknownType`].
const MAX_QUOTED_TYPE: usize = 64;

/// Decodes one message from the bytes of one binary frame.
pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
    let fields = Fields::scan(frame)?;
    let message = match fields.required("type", text)? {
        "join" => Message::Join(Join {
            sender_id: fields.peer_id("senderId")?,
            peer_metadata: fields.peer_metadata()?,
            supported_protocol_versions: fields.optional("supportedProtocolVersions", strings)?,
        }),
        "peer" => Message::Peer(Peer {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            peer_metadata: fields.peer_metadata()?.unwrap_or_default(),
            selected_protocol_version: fields.required("selectedProtocolVersion", text)?.into(),
        }),
        "error" => Message::Error(ErrorMessage {
            message: fields.required("message", text)?.into(),
            sender_id: fields.optional("senderId", peer_id)?,
            target_id: fields.optional("targetId", peer_id)?,
        }),
        "leave" => Message::Leave {
            sender_id: fields.peer_id("senderId")?,
        },
        "request" => Message::Request(fields.doc_message()?),
        "sync" => Message::Sync(fields.doc_message()?),
        "doc-unavailable" => Message::DocUnavailable(DocUnavailable {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            document_id: fields.required("documentId", document_id)?,
        }),
        "ephemeral" => Message::Ephemeral(Ephemeral {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            document_id: fields.required("documentId", document_id)?,
            session_id: fields.required("sessionId", text)?.into(),
            count: fields.required("count", uint)?,
            data: fields.required("data", bytes)?.to_vec(),
        }),
        "remote-subscription-change" => {
            Message::RemoteSubscriptionChange(RemoteSubscriptionChange {
                sender_id: fields.peer_id("senderId")?,
                target_id: fields.peer_id("targetId")?,
                add: fields.optional("add", storage_ids)?,
                remove: fields.optional("remove", storage_ids)?,
            })
        }
        "remote-heads-changed" => Message::RemoteHeadsChanged(RemoteHeadsChanged {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            document_id: fields.required("documentId", document_id)?,
            new_heads: fields.required("newHeads", new_heads)?,
        }),
        other => {
            return Err(DecodeError::UnknownType(
                other.chars().take(MAX_QUOTED_TYPE).collect(),
            ));
        }
    };
    Ok(message)
}

/// Every key any message type reads; other keys are checked for well-formedness and skipped.
const KEYS: [&str; 15] = [
    "type",
    "senderId",
    "targetId",
    "peerMetadata",
    "metadata",
    "supportedProtocolVersions",
    "selectedProtocolVersion",
    "documentId",
    "data",
    "message",
    "sessionId",
    "count",
    "add",
    "remove",
    "newHeads",
];

/// The top-level map, scanned once: for each known key, the raw bytes of its value (`None`
/// when missing, `null` or `undefined`). A repeated key keeps its last value, as in a JS
/// object. Values are interpreted only once the type says which keys matter, so a stray
/// key of an odd type in a message that does not use it is harmless.
struct Fields<'a> {
    values: [Option<&'a [u8]>; KEYS.len()],
}

/// A value that does not fit its key, before the key is attached.
enum FieldError {
    Cbor(CborError),
    Id(IdError),
}

impl From<CborError> for FieldError {
    fn from(e: CborError) -> Self {
        Self::Cbor(e)
    }
}

impl From<IdError> for FieldError {
    fn from(e: IdError) -> Self {
        Self::Id(e)
    }
}

impl FieldError {
    fn at(self, key: &'static str) -> DecodeError {
        match self {
            FieldError::Cbor(CborError::WrongType(_)) => DecodeError::WrongType { key },
            FieldError::Cbor(e) => cbor_error(e),
            FieldError::Id(source) => DecodeError::InvalidId { key, source },
        }
    }
}

fn cbor_error(e: CborError) -> DecodeError {
    DecodeError::Cbor(e.to_string())
}

type Read<'a, T> = fn(&mut Reader<'a>) -> Result<T, FieldError>;

impl<'a> Fields<'a> {
    fn scan(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let entries = reader.map_len().map_err(|e| match e {
            CborError::WrongType(_) => DecodeError::NotAMap,
            e => cbor_error(e),
        })?;
        let mut fields = Fields {
            values: [None; KEYS.len()],
        };
        for _ in 0..entries {
            let key = reader.item(1).map_err(cbor_error)?;
            // A non-text key cannot come from a JS object; skip it like an unknown key.
            let slot = match Reader::new(key).text() {
                Ok(key) => KEYS.iter().position(|known| *known == key),
                Err(CborError::WrongType(_)) => None,
                Err(e) => return Err(cbor_error(e)),
            };
            let value = if reader.absent() {
                None
            } else {
                Some(reader.item(1).map_err(cbor_error)?)
            };
            if let Some(slot) = slot.and_then(|i| fields.values.get_mut(i)) {
                *slot = value;
            }
        }
        if !reader.at_end() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(fields)
    }

    fn optional<T>(&self, key: &'static str, read: Read<'a, T>) -> Result<Option<T>, DecodeError> {
        let Some(raw) = KEYS
            .iter()
            .position(|known| *known == key)
            .and_then(|i| self.values.get(i).copied().flatten())
        else {
            return Ok(None);
        };
        read(&mut Reader::new(raw)).map(Some).map_err(|e| e.at(key))
    }

    fn required<T>(&self, key: &'static str, read: Read<'a, T>) -> Result<T, DecodeError> {
        self.optional(key, read)?
            .ok_or(DecodeError::MissingKey(key))
    }

    fn peer_id(&self, key: &'static str) -> Result<PeerId, DecodeError> {
        self.required(key, peer_id)
    }

    /// `peerMetadata`, or `metadata` as the adapter README's CDDL spells it.
    fn peer_metadata(&self) -> Result<Option<PeerMetadata>, DecodeError> {
        match self.optional("peerMetadata", peer_metadata)? {
            Some(metadata) => Ok(Some(metadata)),
            None => self.optional("metadata", peer_metadata),
        }
    }

    fn doc_message(&self) -> Result<DocMessage, DecodeError> {
        Ok(DocMessage {
            sender_id: self.peer_id("senderId")?,
            target_id: self.peer_id("targetId")?,
            document_id: self.required("documentId", document_id)?,
            data: self.required("data", bytes)?.to_vec(),
        })
    }
}

fn text<'a>(r: &mut Reader<'a>) -> Result<&'a str, FieldError> {
    Ok(r.text()?)
}

fn bytes<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], FieldError> {
    Ok(r.bytes()?)
}

fn uint(r: &mut Reader<'_>) -> Result<u64, FieldError> {
    Ok(r.uint()?)
}

fn peer_id(r: &mut Reader<'_>) -> Result<PeerId, FieldError> {
    Ok(PeerId::parse(r.text()?)?)
}

/// A text string in any form [`DocumentId::parse`] takes (automerge-repo sends bs58check),
/// or 16 raw bytes (samod accepts those too).
fn document_id(r: &mut Reader<'_>) -> Result<DocumentId, FieldError> {
    let mut as_text = r.clone();
    match as_text.text() {
        Ok(s) => Ok(DocumentId::parse(s)?),
        Err(CborError::WrongType(_)) => {
            let raw: [u8; 16] = r
                .bytes()?
                .try_into()
                .map_err(|_| IdError::InvalidDocumentId)?;
            Ok(DocumentId::from_bytes(raw))
        }
        Err(e) => Err(e.into()),
    }
}

fn strings(r: &mut Reader<'_>) -> Result<Vec<String>, FieldError> {
    let len = r.array_len()?;
    // No `with_capacity(len)`: `len` is a claim; every element read proves a byte exists.
    let mut out = Vec::new();
    for _ in 0..len {
        out.push(r.text()?.to_owned());
    }
    Ok(out)
}

fn storage_ids(r: &mut Reader<'_>) -> Result<Vec<StorageId>, FieldError> {
    let len = r.array_len()?;
    let mut out = Vec::new();
    for _ in 0..len {
        out.push(StorageId::parse(r.text()?)?);
    }
    Ok(out)
}

/// `{storageId?, isEphemeral?}`; a missing `isEphemeral` is false (a JS client adapter
/// connected without metadata sends `{}`).
fn peer_metadata(r: &mut Reader<'_>) -> Result<PeerMetadata, FieldError> {
    let mut metadata = PeerMetadata::default();
    for _ in 0..r.map_len()? {
        let key = r.text()?;
        let absent = r.absent();
        match (key, absent) {
            ("storageId", true) => metadata.storage_id = None,
            ("storageId", false) => metadata.storage_id = Some(StorageId::parse(r.text()?)?),
            ("isEphemeral", true) => metadata.is_ephemeral = false,
            ("isEphemeral", false) => metadata.is_ephemeral = r.bool()?,
            (_, true) => {}
            (_, false) => r.skip(2)?,
        }
    }
    Ok(metadata)
}

/// `{<storageId>: {heads: [..], timestamp}}`.
fn new_heads(r: &mut Reader<'_>) -> Result<BTreeMap<StorageId, HeadsAtTime>, FieldError> {
    let mut out = BTreeMap::new();
    for _ in 0..r.map_len()? {
        let storage_id = StorageId::parse(r.text()?)?;
        out.insert(storage_id, heads_at_time(r)?);
    }
    Ok(out)
}

fn heads_at_time(r: &mut Reader<'_>) -> Result<HeadsAtTime, FieldError> {
    let mut heads = None;
    let mut timestamp = None;
    for _ in 0..r.map_len()? {
        let key = r.text()?;
        let absent = r.absent();
        match (key, absent) {
            ("heads", true) => heads = None,
            ("heads", false) => heads = Some(strings(r)?),
            ("timestamp", true) => timestamp = None,
            ("timestamp", false) => timestamp = Some(r.uint()?),
            (_, true) => {}
            (_, false) => r.skip(3)?,
        }
    }
    match (heads, timestamp) {
        (Some(heads), Some(timestamp)) => Ok(HeadsAtTime { heads, timestamp }),
        _ => Err(CborError::WrongType("`heads` and `timestamp`").into()),
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// Encodes one message for one binary frame.
///
/// Keys come in the order automerge-repo 2.5.6 writes them for the same type, so for a
/// message JS would send, the output equals the JS bytes with their map headers made
/// minimal, `undefined` entries dropped and whole floats written as integers.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut w = Writer::with_capacity(128 + payload_len(message));
    match message {
        // WebSocketClientAdapter's joinMessage(): type, senderId, peerMetadata,
        // supportedProtocolVersions.
        Message::Join(m) => {
            let entries = 2
                + usize::from(m.peer_metadata.is_some())
                + usize::from(m.supported_protocol_versions.is_some());
            w.map(entries);
            w.entry_text("type", "join");
            w.entry_text("senderId", m.sender_id.as_str());
            if let Some(metadata) = &m.peer_metadata {
                w.text("peerMetadata");
                write_metadata(&mut w, metadata);
            }
            if let Some(versions) = &m.supported_protocol_versions {
                w.text("supportedProtocolVersions");
                w.array(versions.len());
                versions.iter().for_each(|v| w.text(v));
            }
        }
        // WebSocketServerAdapter: type, senderId, peerMetadata, selectedProtocolVersion,
        // targetId.
        Message::Peer(m) => {
            w.map(5);
            w.entry_text("type", "peer");
            w.entry_text("senderId", m.sender_id.as_str());
            w.text("peerMetadata");
            write_metadata(&mut w, &m.peer_metadata);
            w.entry_text("selectedProtocolVersion", &m.selected_protocol_version);
            w.entry_text("targetId", m.target_id.as_str());
        }
        // WebSocketServerAdapter: type, senderId, message, targetId.
        Message::Error(m) => {
            let entries =
                2 + usize::from(m.sender_id.is_some()) + usize::from(m.target_id.is_some());
            w.map(entries);
            w.entry_text("type", "error");
            if let Some(sender_id) = &m.sender_id {
                w.entry_text("senderId", sender_id.as_str());
            }
            w.entry_text("message", &m.message);
            if let Some(target_id) = &m.target_id {
                w.entry_text("targetId", target_id.as_str());
            }
        }
        Message::Leave { sender_id } => {
            w.map(2);
            w.entry_text("type", "leave");
            w.entry_text("senderId", sender_id.as_str());
        }
        // DocSynchronizer, then NetworkSubsystem appends senderId.
        Message::Request(m) => {
            w.map(5);
            w.entry_text("type", "request");
            w.entry_text("targetId", m.target_id.as_str());
            w.entry_text("documentId", &m.document_id.to_string());
            w.text("data");
            w.bytes(&m.data);
            w.entry_text("senderId", m.sender_id.as_str());
        }
        Message::Sync(m) => {
            w.map(5);
            w.entry_text("type", "sync");
            w.entry_text("targetId", m.target_id.as_str());
            w.text("data");
            w.bytes(&m.data);
            w.entry_text("documentId", &m.document_id.to_string());
            w.entry_text("senderId", m.sender_id.as_str());
        }
        Message::DocUnavailable(m) => {
            w.map(4);
            w.entry_text("type", "doc-unavailable");
            w.entry_text("documentId", &m.document_id.to_string());
            w.entry_text("targetId", m.target_id.as_str());
            w.entry_text("senderId", m.sender_id.as_str());
        }
        Message::Ephemeral(m) => {
            w.map(7);
            w.entry_text("type", "ephemeral");
            w.entry_text("targetId", m.target_id.as_str());
            w.entry_text("documentId", &m.document_id.to_string());
            w.text("data");
            w.bytes(&m.data);
            w.text("count");
            w.uint(m.count);
            w.entry_text("sessionId", &m.session_id);
            w.entry_text("senderId", m.sender_id.as_str());
        }
        // Repo's change-remote-subs handler.
        Message::RemoteSubscriptionChange(m) => {
            let entries = 3 + usize::from(m.add.is_some()) + usize::from(m.remove.is_some());
            w.map(entries);
            w.entry_text("type", "remote-subscription-change");
            w.entry_text("targetId", m.target_id.as_str());
            if let Some(add) = &m.add {
                w.text("add");
                write_storage_ids(&mut w, add);
            }
            if let Some(remove) = &m.remove {
                w.text("remove");
                write_storage_ids(&mut w, remove);
            }
            w.entry_text("senderId", m.sender_id.as_str());
        }
        // Repo's notify-remote-heads handler.
        Message::RemoteHeadsChanged(m) => {
            w.map(5);
            w.entry_text("type", "remote-heads-changed");
            w.entry_text("targetId", m.target_id.as_str());
            w.entry_text("documentId", &m.document_id.to_string());
            w.text("newHeads");
            w.map(m.new_heads.len());
            for (storage_id, at) in &m.new_heads {
                w.text(storage_id.as_str());
                w.map(2);
                w.text("heads");
                w.array(at.heads.len());
                at.heads.iter().for_each(|h| w.text(h));
                w.text("timestamp");
                w.uint(at.timestamp);
            }
            w.entry_text("senderId", m.sender_id.as_str());
        }
    }
    w.into_bytes()
}

/// Repo's `{storageId, isEphemeral}`, without `storageId` when there is none.
fn write_metadata(w: &mut Writer, metadata: &PeerMetadata) {
    w.map(1 + usize::from(metadata.storage_id.is_some()));
    if let Some(storage_id) = &metadata.storage_id {
        w.entry_text("storageId", storage_id.as_str());
    }
    w.text("isEphemeral");
    w.bool(metadata.is_ephemeral);
}

fn write_storage_ids(w: &mut Writer, ids: &[StorageId]) {
    w.array(ids.len());
    ids.iter().for_each(|id| w.text(id.as_str()));
}

/// The bulk of a message, to size the output buffer once.
fn payload_len(message: &Message) -> usize {
    match message {
        Message::Request(m) | Message::Sync(m) => m.data.len(),
        Message::Ephemeral(m) => m.data.len(),
        Message::Error(m) => m.message.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
