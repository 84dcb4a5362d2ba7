//! TLS with rustls on the ring provider, and `jemput dev-cert`.
//!
//! Field devices on 2G pay for every round trip and every byte of a cold connection, so the
//! server resumes TLS 1.3 sessions and takes TLS 1.3 early data (0-RTT) for the one request
//! that is safe to replay, `POST /v1/sync`:
//!
//! - **Resumption, stateful.** Tickets are 32-byte random ids into an in-memory store of at
//!   most [`SESSION_CACHE_ENTRIES`] sessions (oldest evicted first, a few hundred bytes each);
//!   rustls removes an entry when a client presents it (`StoresServerSessions::take`), so a
//!   ticket resumes at most one connection. Each full or resumed handshake issues
//!   [`TLS13_TICKETS`] ticket. No ticket-encryption key exists (rustls's stateless
//!   `ticketer` stays off): there is no key to rotate or share, and rustls accepts early data
//!   only with stateful tickets (RFC 8446 §8.1). A ticket is only valid on the instance that
//!   issued it; on another instance, or after a restart, the client falls back to a full
//!   handshake.
//! - **Early data.** Up to [`MAX_EARLY_DATA_BYTES`] per connection, read by our own stream
//!   ([`early_data`]; tokio-rustls's server never reads early data). A request parsed before
//!   the handshake is confirmed, or that started in early data, is tagged and, unless it is
//!   `POST /v1/sync`, answered `425 Too Early` ([`too_early`]). Replays: a replayed
//!   ClientHello names a ticket already taken (same instance) or unknown (another instance),
//!   so rustls falls back to a full handshake and discards the early data unread; and the
//!   sync exchange itself answers a repeated idempotency key with its stored response,
//!   changing nothing.
//! - **Half-RTT data.** The response to a request read from early data is sent right after
//!   the server's first flight, before the client's `Finished` arrives; that is where 0-RTT
//!   saves its round trip. It is encrypted with keys that mix in the (EC)DHE share of the
//!   ClientHello (rustls resumes with `psk_dhe_ke` only), so only the client that made the
//!   ClientHello can read it; there is no client authentication for it to bypass.

pub mod early_data;
pub mod too_early;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerSessionMemoryCache;

/// Resumable sessions kept in memory (TLS 1.3 tickets and TLS 1.2 session ids), oldest
/// evicted first: a device resumes if fewer than this many connections were made since its
/// last one. About 8,192 × (a 32-byte id kept twice + a session value of about 100–200
/// bytes + map overhead) ≈ 3 MB at most.
pub const SESSION_CACHE_ENTRIES: usize = 8 * 1024;

/// TLS 1.3 tickets sent after each handshake (rustls sends 2 by default): one replaces the
/// ticket the client just spent. A second would cost every cold connection about 90 bytes
/// on the downlink, before the response (about 14 ms at 50 kbit/s), and fill the store twice
/// as fast with spares that rustls's client rarely uses (it keeps up to 8 and takes the
/// newest). A ticket arrives right after the client's `Finished`, ahead of the response (or,
/// after 0-RTT, about one round trip after it): a connection that delivered a response
/// nearly always delivered the ticket too, and one that did not costs one full handshake.
pub const TLS13_TICKETS: usize = 1;

/// Early data accepted per connection: a "nothing changed" sync request is about 250 bytes,
/// one record holds 16 KiB. A larger request sends the rest after the handshake.
pub const MAX_EARLY_DATA_BYTES: u32 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Installs ring as the process-wide rustls provider. Safe to call more than once.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the server configuration from PEM files. Only HTTP/1.1 is offered: WebSocket
/// clients upgrade over it. Resumption and early data as in the module documentation: serve
/// it with [`early_data::EarlyDataAcceptor`], which reads early data (an acceptor that does
/// not would lose the requests it carries).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certificates(cert)?;
    let key = read_private_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.send_tls13_tickets = TLS13_TICKETS;
    config.max_early_data_size = MAX_EARLY_DATA_BYTES;
    config.send_half_rtt_data = true;
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.to_owned(),
        })
}

/// Paths written by [`write_dev_certificate`].
#[derive(Debug)]
pub struct DevCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes a self-signed certificate for `localhost`, `127.0.0.1` and `::1` (plus any extra
/// names) to `dir/cert.pem` and `dir/key.pem`. For development only.
pub fn write_dev_certificate(
    dir: &Path,
    extra_names: &[String],
) -> Result<DevCertificate, TlsError> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(extra_names.iter().cloned());
    let certified = rcgen::generate_simple_self_signed(names)?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    write_file(&cert, certified.cert.pem().as_bytes(), 0o644)?;
    write_file(
        &key,
        certified.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    Ok(DevCertificate { cert, key })
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })?;
    file.write_all(contents).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificate_loads_as_server_config() {
        install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_dev_certificate(dir.path(), &[]).expect("written");
        let config = server_config(&written.cert, &written.key).expect("config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // Stateful tickets: rustls takes early data only without a ticketer.
        assert!(!config.ticketer.enabled());
        assert!(config.session_storage.can_cache());
        assert_eq!(config.send_tls13_tickets, TLS13_TICKETS);
        assert_eq!(config.max_early_data_size, MAX_EARLY_DATA_BYTES);
        assert!(config.send_half_rtt_data);
    }

    #[test]
    fn missing_key_is_a_typed_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_dev_certificate(dir.path(), &[]).expect("written");
        let error = server_config(&written.cert, &written.cert).expect_err("no key");
        assert!(matches!(error, TlsError::NoKey { .. }), "{error}");
    }
}
