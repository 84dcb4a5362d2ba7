//! Jemput sync server: an automerge-repo compatible WebSocket sync server that stores
//! documents durably in SQLite (embedded default) or PostgreSQL.
//!
//! Entry points: [`cli::main`] for the binary, [`startup::serve`] for tests and embedding.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod policy;
pub mod startup;
pub mod storage;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod ws;
