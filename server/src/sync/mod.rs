//! The live sync engine behind `/v1/ws`: one actor per document in memory, a hub that routes
//! messages from connections to document actors, and the peers those actors answer.

pub mod batch;
pub mod batch_push;
mod document;
mod hub;
pub mod index;
mod peer;
pub mod review;

pub use batch::{BatchConfig, BatchSync, BatchSyncError};
pub use hub::{Hub, HubConfig, JoinRefused, ReceiveKind, ServerIdentity};
pub use peer::{ConnectionId, Outbound, PeerHandle, SendFailure};
pub use review::{ReviewError, ReviewOutcome, ReviewRequest};
