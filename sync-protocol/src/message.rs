//! automerge-repo messages and their CBOR codec.
//!
//! API CONTRACT (the server depends on exactly these names):
//! `decode(&[u8]) -> Result<Message, DecodeError>` (lenient: cbor-x quirks),
//! `encode(&Message) -> Vec<u8>` (exact, infallible, never panics).

use std::collections::BTreeMap;

use crate::ids::{DocumentId, PeerId, StorageId};

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Join(Join),
    Peer(Peer),
    Error(ErrorMessage),
    Leave { sender_id: PeerId },
    /// Sync message from a peer with no copy of the document.
    Request(DocMessage),
    Sync(DocMessage),
    DocUnavailable(DocUnavailable),
    Ephemeral(Ephemeral),
    RemoteSubscriptionChange(RemoteSubscriptionChange),
    RemoteHeadsChanged(RemoteHeadsChanged),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerMetadata {
    pub storage_id: Option<StorageId>,
    pub is_ephemeral: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub sender_id: PeerId,
    pub peer_metadata: Option<PeerMetadata>,
    /// `None` when the key is missing (JS servers then assume `"1"`).
    pub supported_protocol_versions: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub peer_metadata: PeerMetadata,
    pub selected_protocol_version: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorMessage {
    pub message: String,
    pub sender_id: Option<PeerId>,
    pub target_id: Option<PeerId>,
}

/// Body of `request` and `sync`: one Automerge sync message for one document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocMessage {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub document_id: DocumentId,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DocUnavailable {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub document_id: DocumentId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ephemeral {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub document_id: DocumentId,
    pub session_id: String,
    pub count: u64,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSubscriptionChange {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub add: Option<Vec<StorageId>>,
    pub remove: Option<Vec<StorageId>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeadsAtTime {
    /// bs58check-encoded change hashes, as sent.
    pub heads: Vec<String>,
    pub timestamp: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemoteHeadsChanged {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub document_id: DocumentId,
    pub new_heads: BTreeMap<StorageId, HeadsAtTime>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("not valid CBOR: {0}")]
    Cbor(String),
    #[error("message is not a CBOR map")]
    NotAMap,
    #[error("missing key `{0}`")]
    MissingKey(&'static str),
    #[error("key `{key}` has the wrong type")]
    WrongType { key: &'static str },
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("invalid identifier in `{key}`: {source}")]
    InvalidId {
        key: &'static str,
        source: crate::ids::IdError,
    },
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
}

pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    todo!("{bytes:?}")
}

pub fn encode(message: &Message) -> Vec<u8> {
    todo!("{message:?}")
}
