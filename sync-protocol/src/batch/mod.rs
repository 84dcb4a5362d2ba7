//! Batch sync (`POST /v1/sync`): one request and one response carry every change a field
//! device has not had acknowledged and everything in its scope that changed since its cursor.
//!
//! The wire format and its semantics are specified in `docs/BATCH-SYNC.md`; this module is the
//! executable half of that document. Like the rest of the crate it is sans-IO: it never reads
//! a clock, draws randomness, touches storage or a socket. Callers pass the idempotency key
//! (random bytes they drew), the documents they loaded and the server's knowledge rows in, and
//! get messages and effects out.
//!
//! - [`message`]: [`BatchRequest`], [`BatchResponse`] and their per-document entries and
//!   reason codes.
//! - [`codec`]: [`encode_request`], [`decode_request`], [`encode_response`],
//!   [`decode_response`] (exact writer, lenient bounded reader, typed errors).
//! - [`cursor`]: the opaque [`Cursor`] the device stores, and [`ServerCursor`], one way for a
//!   server to fill it.
//! - [`knowledge`]: what the server records per (device, document) so the device never lists
//!   its documents' heads, and the bundle helpers built on it.
//! - [`device`]: [`DeviceState`], the device side (plan a request, apply a response).
//! - [`server`]: [`ServerExchange`], the server side of one exchange.
//! - [`memory`]: [`MemoryServer`], an in-memory server driving [`ServerExchange`]: the
//!   reference for the server crate's driver and the peer of tests.

pub mod codec;
pub mod cursor;
pub mod device;
pub mod knowledge;
pub mod memory;
pub mod message;
mod repair;
pub mod server;

pub use codec::{
    BatchDecodeError, decode_request, decode_response, encode_request, encode_response,
};
pub use cursor::{Cursor, CursorError, ServerCursor};
pub use device::{
    ApplyError, DeviceDoc, DeviceEffects, DeviceLimits, DeviceRepair, DeviceState, PlanError,
};
pub use knowledge::{DocKnowledge, KnowledgeChange, KnowledgeUpdate, Settlement};
pub use memory::MemoryServer;
pub use message::{
    Ack, BatchRequest, BatchResponse, CompensationReason, DocUpdate, IdempotencyKey, PushEntry,
    RefusalReason, RepairReply, RepairRequest,
};
pub use server::{
    Begin, DeviceRecord, ExchangeError, FeedItem, Finished, LastExchange, Offer, PushOutcome,
    ServerConfig, ServerExchange, StagedPush,
};

/// The protocol version this module speaks, sent as key `0` of every message.
pub const BATCH_VERSION: u64 = 1;

/// Repair rounds (sync messages per document) before both sides fall back to exchanging the
/// whole document. Bloom filters can be defeated by a peer that mines change hashes, so the
/// number of rounds is capped rather than left to converge.
pub const MAX_REPAIR_ROUNDS: u32 = 4;

/// Entries (pushes, acknowledgements, updates, removals or repairs) one message may carry.
pub const MAX_ENTRIES: usize = 10_000;

/// Heads one document entry may list. Automerge documents edited by a handful of devices have
/// one to a few heads; the bound only stops a hostile message from claiming millions.
pub const MAX_HEADS: usize = 1_024;
