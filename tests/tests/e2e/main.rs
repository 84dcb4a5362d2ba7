//! End-to-end tests: real servers driven by real clients, one binary of modules.

/// The real server binary, built from the same entry point as `jemput`.
pub const JEMPUT: &str = env!("CARGO_BIN_EXE_jemput-under-test");

mod accounts;
mod batch_sync;
mod durability;
mod js_interop;
mod ops;
mod policy;
mod samod_interop;
mod tls_resumption;
mod ws_protocol;
