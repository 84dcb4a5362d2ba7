//! Settings of a running server, built from the command line (see `cli`), with secrets kept
//! out of `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::sync::HubConfig;

/// A value that must never reach a log line (database URLs carry passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where documents are stored.
#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    /// The embedded default: one SQLite file.
    Sqlite { path: PathBuf },
    /// `postgres://…`, for larger deployments and several instances.
    Postgres { url: Secret, max_connections: u32 },
}

impl DatabaseConfig {
    /// A `postgres://` or `postgresql://` URL selects PostgreSQL; otherwise SQLite in
    /// `data_dir/jemput.db`.
    pub fn from_parts(database_url: Option<&str>, data_dir: &std::path::Path) -> Self {
        match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                DatabaseConfig::Postgres {
                    url: Secret::new(url),
                    max_connections: 16,
                }
            }
            Some(url) => DatabaseConfig::Sqlite {
                path: PathBuf::from(
                    url.trim_start_matches("sqlite://")
                        .trim_start_matches("sqlite:"),
                ),
            },
            None => DatabaseConfig::Sqlite {
                path: data_dir.join("jemput.db"),
            },
        }
    }
}

/// TLS certificate chain and private key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Per-connection limits and timings of the WebSocket endpoint.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Largest WebSocket frame accepted.
    pub max_frame_bytes: usize,
    /// Largest WebSocket message (all frames of one message) accepted.
    pub max_message_bytes: usize,
    /// Messages queued towards one peer before it is disconnected as too slow.
    pub outbound_queue: usize,
    /// Sync messages from one peer being handled at once; more wait (back-pressure).
    pub max_in_flight: usize,
    pub ping_interval: Duration,
    /// A peer from which nothing has arrived for this long (while we were not busy
    /// writing to it) is disconnected.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 8 << 20,
            max_message_bytes: 16 << 20,
            outbound_queue: 4096,
            max_in_flight: 256,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Everything `jemput serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub database: DatabaseConfig,
    pub tls: Option<TlsConfig>,
    pub limits: ConnectionLimits,
    pub hub: HubConfig,
    /// Limits of batch sync (`POST /v1/sync`).
    pub batch: crate::sync::BatchConfig,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
}
