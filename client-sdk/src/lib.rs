//! Jemput client SDK: the field device's offline store, domain API and batch sync engine.
//!
//! - [`store`]: SQLite store (documents as snapshot + incremental chunks, the batch sync
//!   [`DeviceState`](jemput_sync_protocol::batch::DeviceState), the enrolment).
//! - [`client`]: [`Client`], the domain API (capture applications and visits, edit, submit,
//!   list); every local write uses an actor id registered at enrolment.
//! - [`sync`]: enrolment over HTTP and [`Client::sync`], the `POST /v1/sync` exchange.
//! - [`transport`]: [`SyncTransport`], the sync exchange over HTTP/1.1 with TLS 1.3 session
//!   resumption and 0-RTT early data (set it in [`SyncOptions::transport`]).
//!
//! Call [`sync::install_crypto_provider`] (or [`sync::http_client`], which does) at start-up:
//! the SDK uses rustls with the ring provider only.

#![warn(missing_docs)]

pub mod client;
pub mod store;
pub mod sync;
pub mod transport;

pub use client::{Applicant, Client, ClientError, CreatedApplication, NewApplication, NewVisit};
pub use store::{DocumentSummary, Enrolment, Store, StoreError};
pub use sync::{SyncError, SyncOptions, SyncReport, enrol, http_client, install_crypto_provider};
pub use transport::{SyncResponse, SyncTransport, TransportError, TransportStats};
