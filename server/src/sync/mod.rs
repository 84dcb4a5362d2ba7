//! The live sync engine behind `/v1/ws`: one actor per document in memory, a hub that routes
//! messages from connections to document actors, and the peers those actors answer.

mod document;
mod hub;
mod peer;

pub use hub::{Hub, HubConfig, ReceiveKind};
pub use peer::{ConnectionId, Outbound, PeerHandle, SendFailure};
