//! Sans-IO implementation of the automerge-repo network protocol (the wire format spoken by
//! `@automerge/automerge-repo-network-websocket` 2.5.x and samod), for Jemput.
//!
//! Nothing here performs IO, reads a clock or draws randomness: callers pass bytes and time in
//! and get messages and effects out. The server and the client SDK are the drivers.
//!
//! - [`ids`]: document, peer and storage ids, parsed once at the edge.
//! - [`message`]: the messages and their CBOR codec ([`decode`], [`encode`]).
//! - [`connection`]: the server side of one connection ([`Connection`]).
//! - [`batch`]: batch sync for field devices (`POST /v1/sync`): messages, codec, the device
//!   side ([`DeviceState`]) and the server side ([`ServerExchange`]).

#![warn(missing_docs)]

pub mod batch;
mod cbor;
pub mod connection;
pub mod ids;
pub mod message;

pub use batch::{
    BatchDecodeError, BatchRequest, BatchResponse, Cursor, DeviceEffects, DeviceState,
    IdempotencyKey, ServerExchange, decode_request, decode_response, encode_request,
    encode_response,
};
pub use connection::{Connection, ConnectionConfig, Inbound, RemotePeer, Violation};
pub use ids::{DocumentId, IdError, PeerId, StorageId};
pub use message::{
    DecodeError, DocMessage, DocUnavailable, Ephemeral, ErrorMessage, HeadsAtTime, Join, Message,
    Peer, PeerMetadata, RemoteHeadsChanged, RemoteSubscriptionChange, decode, encode,
};

/// The only protocol version automerge-repo peers speak today.
pub const PROTOCOL_VERSION: &str = "1";
