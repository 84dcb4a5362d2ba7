//! The sync engine: enrolment and the batch exchange (`POST /v1/sync`) over HTTP(S).
//!
//! Drives [`DeviceState`] as its driving contract says: plan and persist the request before
//! sending it, resend the *same* request on failures (the server answers a retry from its
//! record), abandon and plan smaller after repeated drops, apply a response and store the
//! documents, deletions and state in one SQLite transaction, and exchange again while the
//! response says there is more, up to a cap.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use automerge::{ActorId, Automerge};
use jemput_sync_protocol::DocumentId;
use jemput_sync_protocol::batch::{
    BatchRequest, CompensationReason, DeviceLimits, DeviceState, IdempotencyKey, PlanError,
    RefusalReason, decode_response, encode_request,
};
use rand::RngCore;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
};
use serde_json::{Value, json};

use crate::client::{Client, now_ms};
use crate::store::{Enrolment, Loaded, Store, StoreError};
use crate::transport::SyncTransport;

/// Request bodies above this size are gzip-compressed.
pub const COMPRESS_ABOVE: usize = 256;

/// Default budget of one request body on the wire (after gzip): about 5 s at 2G's 50 kbit/s,
/// and the most a connection dropped mid-request costs to send again.
pub const DEFAULT_REQUEST_WIRE_BYTES: usize = 32 * 1024;

/// Default `max_response_bytes` asked of the server (uncompressed; about 32 KB after the
/// server's gzip), bounding what a reply lost to a drop costs to receive again.
pub const DEFAULT_RESPONSE_BYTES: u64 = 96 * 1024;

/// Why enrolment or sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// TLS set-up failed (a bad custom root certificate).
    #[error("TLS: {0}")]
    Tls(String),
    /// The HTTP client could not be built or the request failed for good.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The server refused the credentials (401/403).
    #[error("ditolak server (HTTP {0}): token tidak sah atau dicabut, daftarkan ulang perangkat")]
    Unauthorised(u16),
    /// The server answered something this client cannot use.
    #[error("jawaban server tidak terduga (HTTP {status}): {detail}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        detail: String,
    },
    /// The server kept failing or the link kept dropping.
    #[error("server tidak dapat dihubungi setelah {0} percobaan: {1}")]
    Unreachable(u32, String),
    /// The server answered a request body it could not decode.
    #[error("server menolak permintaan (HTTP {0})")]
    Rejected(u16),
}

/// How a sync session behaves.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Exchanges per session at most (a session loops while the server says there is more).
    pub max_exchanges: usize,
    /// Attempts of one planned request before it is abandoned and planned smaller.
    pub attempts: u32,
    /// First retry delay; doubles each attempt, capped at 16 × this.
    pub backoff: Duration,
    /// Limits of the first request. The SDK applies `max_request_bytes` to the body as sent
    /// (after gzip), so it bounds what a dropped link costs to send again.
    pub limits: DeviceLimits,
    /// Timeout of one HTTP exchange.
    pub timeout: Duration,
    /// The transport of the sync exchange: `None` sends it with the `reqwest::Client` given
    /// to [`Client::sync`]; a [`SyncTransport`] (shared, so that its TLS sessions and its
    /// connection are reused) sends it as TLS 1.3 early data on resumed sessions, saving a
    /// round trip on every cold start. Its own timeout applies then.
    pub transport: Option<Arc<SyncTransport>>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            max_exchanges: 32,
            attempts: 4,
            backoff: Duration::from_millis(500),
            limits: DeviceLimits {
                max_request_bytes: DEFAULT_REQUEST_WIRE_BYTES,
                max_response_bytes: Some(DEFAULT_RESPONSE_BYTES),
            },
            timeout: Duration::from_secs(120),
            transport: None,
        }
    }
}

/// What one sync session did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// Document bundles pushed (counting each exchange).
    pub pushed: usize,
    /// Pushes the server stored.
    pub acknowledged: Vec<DocumentId>,
    /// Pushes stored and compensated by the server, with the reason.
    pub compensated: Vec<(DocumentId, CompensationReason)>,
    /// Pushes refused, with the reason (kept locally, not pushed again until edited).
    pub refused: Vec<(DocumentId, RefusalReason)>,
    /// Documents created or changed by the server's updates and repairs.
    pub updated: Vec<DocumentId>,
    /// Documents deleted because they left the officer's scope.
    pub removed: Vec<DocumentId>,
    /// Documents whose unacknowledged local changes were lost.
    pub lost_local_changes: Vec<DocumentId>,
    /// Documents in repair after the session.
    pub repairing: Vec<DocumentId>,
    /// Request body bytes put on the wire (after compression, retries included).
    pub bytes_sent: u64,
    /// Response body bytes received (after content decoding).
    pub bytes_received: u64,
    /// HTTP round trips (attempts included).
    pub round_trips: u32,
    /// Exchanges completed (responses applied).
    pub exchanges: u32,
    /// Requests abandoned and planned again smaller after repeated failures.
    pub abandoned: u32,
    /// False when the cap stopped the session with more to do.
    pub complete: bool,
}

/// Installs ring as the process's rustls provider (ignored if one is installed already).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The SDK's rustls configuration: ring provider, safe default protocol versions, trusting the
/// Web PKI roots and, for dev certificates, the PEM certificates in `extra_root`.
pub(crate) fn tls_config(extra_root: Option<&Path>) -> Result<rustls::ClientConfig, SyncError> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_root {
        let pem =
            std::fs::read(path).map_err(|e| SyncError::Tls(format!("{}: {e}", path.display())))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| SyncError::Tls(e.to_string()))?;
            roots.add(cert).map_err(|e| SyncError::Tls(e.to_string()))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SyncError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// An HTTP client on rustls with the ring provider, trusting the Web PKI roots and, for dev
/// certificates, the PEM certificates in `extra_root`. For enrolment, and for sync when
/// [`SyncOptions::transport`] is `None` (reqwest cannot send TLS 1.3 early data over TCP;
/// [`SyncTransport`] can).
pub fn http_client(
    extra_root: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, SyncError> {
    let config = tls_config(extra_root)?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(timeout)
        .build()?)
}

/// Enrols this device: logs in (`POST /v1/auth/login`), registers the device
/// (`POST /v1/devices`) and stores the enrolment with its actor ids. The password is not
/// stored.
pub async fn enrol(
    client: &Client,
    http: &reqwest::Client,
    server_url: &str,
    username: &str,
    password: &str,
    label: &str,
) -> Result<Enrolment, SyncError> {
    let base = server_url.trim_end_matches('/');
    let login = http
        .post(format!("{base}/v1/auth/login"))
        .header(CONTENT_TYPE, "application/json")
        .body(json!({"username": username, "password": password}).to_string())
        .send()
        .await?;
    let status = login.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(SyncError::Unauthorised(status.as_u16()));
    }
    let login: Value = expect_json(login, StatusCode::OK).await?;
    let session = field_str(&login, &["token"])?;
    let user_id = match &login["user"]["id"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let regions = login["user"]["regions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let device = http
        .post(format!("{base}/v1/devices"))
        .header(AUTHORIZATION, format!("Bearer {session}"))
        .header(CONTENT_TYPE, "application/json")
        .body(json!({"label": label}).to_string())
        .send()
        .await?;
    let device: Value = expect_json(device, StatusCode::CREATED).await?;
    let actor_ids = device["actor_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|h| hex::decode(h).map(ActorId::from))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|_| unexpected(201, "actor_ids is not hex"))?
        .unwrap_or_default();
    if actor_ids.is_empty() {
        return Err(unexpected(201, "no actor_ids"));
    }
    let enrolment = Enrolment {
        server_url: base.to_owned(),
        device_id: field_str(&device, &["device_id"])?,
        device_token: field_str(&device, &["device_token"])?,
        user_id,
        username: field_str(&login, &["user", "username"]).unwrap_or_else(|_| username.to_owned()),
        regions,
        actor_ids,
    };
    client.store.save_enrolment(&enrolment, now_ms()).await?;
    // The session was only needed to enrol; end it (best effort).
    let _ = http
        .post(format!("{base}/v1/auth/logout"))
        .header(AUTHORIZATION, format!("Bearer {session}"))
        .send()
        .await;
    tracing::info!(device = %enrolment.device_id, "perangkat terdaftar");
    Ok(enrolment)
}

async fn expect_json(response: reqwest::Response, want: StatusCode) -> Result<Value, SyncError> {
    let status = response.status();
    let text = response.text().await?;
    if status != want {
        return Err(unexpected(
            status.as_u16(),
            &text.chars().take(200).collect::<String>(),
        ));
    }
    serde_json::from_str(&text).map_err(|_| unexpected(status.as_u16(), "body is not JSON"))
}

fn field_str(v: &Value, path: &[&str]) -> Result<String, SyncError> {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur.as_str()
        .map(str::to_owned)
        .ok_or_else(|| unexpected(200, &format!("missing {}", path.join("."))))
}

fn unexpected(status: u16, detail: &str) -> SyncError {
    SyncError::Unexpected {
        status,
        detail: detail.to_owned(),
    }
}

/// One attempt's outcome.
enum Attempt {
    /// A response body to apply, and whether the server takes gzip request bodies (from the
    /// `Accept-Encoding` it lists, RFC 7694; `None` when it lists nothing).
    Response(Vec<u8>, Option<bool>),
    /// Try the same request again after the delay (network error, 5xx, 503).
    Retry(String, Option<Duration>),
    /// Resend the same request uncompressed (415).
    Uncompressed,
    /// Resend the same request at once (425 Too Early: it arrived in TLS early data and the
    /// server, or a proxy in front of it, wants it after the handshake).
    TooEarly,
    /// Abandon and plan again smaller (413).
    TooLarge,
}

impl Client {
    /// Runs a sync session against the enrolled server; see the module documentation. The
    /// exchange goes over `options.transport` when set, else over `http`.
    pub async fn sync(
        &self,
        http: &reqwest::Client,
        options: &SyncOptions,
    ) -> Result<SyncReport, SyncError> {
        let enrolment = self.store.require_enrolment().await?;
        let url = format!("{}/v1/sync", enrolment.server_url);
        let mut report = SyncReport::default();
        let mut limits = options.limits;
        let mut compress = true;
        let transport = match &options.transport {
            Some(transport) => Transport::Sdk(transport),
            None => Transport::Reqwest(http),
        };
        for _ in 0..options.max_exchanges {
            let planned = self.plan(limits, compress).await?;
            report.pushed += planned.pushed;
            let mut attempt = 0u32;
            let mut too_early = false;
            let response = loop {
                attempt += 1;
                let outcome = match send(
                    transport,
                    &url,
                    &enrolment.device_token,
                    &planned,
                    compress,
                    &mut report,
                )
                .await
                {
                    Ok(outcome) => outcome,
                    Err(SyncError::Rejected(status)) => {
                        // The server cannot use this request: abandon it, never resend it.
                        self.abandon().await?;
                        return Err(SyncError::Rejected(status));
                    }
                    Err(e) => return Err(e),
                };
                match outcome {
                    Attempt::Response(bytes, takes_gzip) => {
                        if let Some(takes_gzip) = takes_gzip {
                            compress = takes_gzip;
                        }
                        break Some(bytes);
                    }
                    Attempt::Uncompressed if compress => {
                        compress = false;
                        attempt -= 1;
                    }
                    Attempt::Uncompressed => {
                        return Err(unexpected(415, "server refused an uncompressed body"));
                    }
                    Attempt::TooEarly if !too_early => {
                        // Once per request, at once and without counting as an attempt.
                        too_early = true;
                        attempt -= 1;
                    }
                    Attempt::TooEarly => {
                        tracing::warn!(attempt, "sync ditolak 425 Too Early lagi, diulang");
                        if attempt >= options.attempts {
                            break None;
                        }
                    }
                    Attempt::TooLarge => break None,
                    Attempt::Retry(why, delay) => {
                        tracing::warn!(attempt, %why, "sync gagal, diulang");
                        if attempt >= options.attempts {
                            break None;
                        }
                        let backoff = options.backoff * 2u32.pow((attempt - 1).min(4));
                        tokio::time::sleep(delay.unwrap_or(backoff)).await;
                    }
                }
            };
            let Some(bytes) = response else {
                // Repeated drops (or 413): abandon the request and plan a smaller one. Safe:
                // the server serves the next request as if the lost response was never sent.
                report.abandoned += 1;
                if limits.max_request_bytes <= 4096 && report.abandoned > 3 {
                    return Err(SyncError::Unreachable(
                        attempt,
                        "link keeps dropping".into(),
                    ));
                }
                limits.max_request_bytes = (limits.max_request_bytes / 2).max(4096);
                limits.max_response_bytes = Some(
                    limits
                        .max_response_bytes
                        .unwrap_or(256 * 1024)
                        .div_ceil(2)
                        .max(4096),
                );
                self.abandon().await?;
                continue;
            };
            let again = self.apply(&bytes, &mut report).await?;
            report.exchanges += 1;
            if !again {
                report.complete = true;
                break;
            }
        }
        report.repairing.sort();
        report.repairing.dedup();
        Ok(report)
    }

    /// Plans the next request (or takes the pending one), sized so that its body as sent
    /// (gzip-compressed when `compress`) fits `limits.max_request_bytes`, and persists it
    /// before it is sent.
    async fn plan(&self, limits: DeviceLimits, compress: bool) -> Result<Planned, SyncError> {
        let _guard = self.lock.lock().await;
        let mut tx = self.store.begin().await?;
        let before = Store::load_state(&mut tx).await?;
        let mut state = before.clone();
        let mut key = [0u8; 16];
        rand::rng().fill_bytes(&mut key);
        let key = IdempotencyKey::from_bytes(key);
        // Load what the request needs; a local copy that is gone is asked for whole instead.
        let docs = loop {
            let ids = state.documents_for_request();
            let docs = loaded_docs(load_or_lose(&mut tx, &ids, &mut state).await?);
            match state.clone().plan_request(key, &docs, limits) {
                Ok(_) => break docs,
                Err(PlanError::MissingDocument(id)) => state.document_lost(id),
            }
        };
        // The compressed size is only known once planned: plan against the expected ratio,
        // then rescale by the observed one, keeping the fullest plan that fits.
        let budget = limits.max_request_bytes;
        let retry = before.pending.is_some();
        let candidates = state.documents_for_request().len();
        let mut planning = limits;
        if compress {
            planning.max_request_bytes = budget.saturating_mul(EXPECTED_COMPRESSION);
        }
        // The fullest plan that fits; growing stops after a few tries, shrinking ends at a
        // single push, which always goes.
        let mut best: Option<(DeviceState, Planned)> = None;
        let mut growths_left = 2;
        loop {
            let mut trial = state.clone();
            let request = trial
                .plan_request(key, &docs, planning)
                .map_err(|e| unexpected(0, &e.to_string()))?;
            let planned = Planned::new(&request, compress);
            let wire = planned.wire_len();
            if retry || planned.pushed <= 1 || wire <= budget {
                let fuller = best.as_ref().is_none_or(|(_, b)| planned.pushed > b.pushed);
                let full_enough = retry
                    || planned.pushed >= candidates
                    || wire >= budget / 10 * 8
                    || !fuller
                    || growths_left == 0;
                if fuller {
                    best = Some((trial, planned));
                }
                if full_enough {
                    break;
                }
                growths_left -= 1;
            } else if best.is_some() {
                // Grown past the budget: the last plan that fitted stands.
                break;
            }
            planning.max_request_bytes = rescale(planning.max_request_bytes, budget / 10 * 9, wire);
        }
        let Some((state, planned)) = best else {
            return Err(unexpected(0, "no request fits the budget"));
        };
        Store::save_state(&mut tx, &before, &state).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(planned)
    }

    async fn abandon(&self) -> Result<(), SyncError> {
        let _guard = self.lock.lock().await;
        let mut tx = self.store.begin().await?;
        let before = Store::load_state(&mut tx).await?;
        let mut state = before.clone();
        state.abandon_pending();
        Store::save_state(&mut tx, &before, &state).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Applies a response body; documents, deletions and state commit together. Returns
    /// whether to exchange again.
    async fn apply(&self, body: &[u8], report: &mut SyncReport) -> Result<bool, SyncError> {
        let response = decode_response(body)
            .map_err(|e| unexpected(200, &format!("response does not decode: {e}")))?;
        let _guard = self.lock.lock().await;
        let mut tx = self.store.begin().await?;
        let before = Store::load_state(&mut tx).await?;
        let mut state = before.clone();
        let ids = state.documents_for_response(&response);
        let loaded = load_or_lose(&mut tx, &ids, &mut state).await?;
        let mut docs: BTreeMap<DocumentId, Automerge> =
            loaded.iter().map(|(id, l)| (*id, l.doc.clone())).collect();
        let effects = match state.apply_response(response, &mut docs) {
            Ok(effects) => effects,
            Err(e) => {
                // A stray or mismatched response: leave everything as it was.
                tracing::warn!(error = %e, "jawaban sync diabaikan");
                return Ok(false);
            }
        };
        let now = now_ms();
        for id in &effects.saved {
            let Some(doc) = docs.get(id) else { continue };
            let base = if effects.lost_local_changes.contains(id) {
                None
            } else {
                loaded.get(id)
            };
            Store::save(&mut tx, *id, doc, base, now).await?;
        }
        for id in &effects.deleted {
            Store::delete(&mut tx, *id).await?;
        }
        Store::save_state(&mut tx, &before, &state).await?;
        tx.commit().await.map_err(StoreError::from)?;

        report.acknowledged.extend(&effects.acknowledged);
        report
            .compensated
            .extend(effects.compensated.iter().copied());
        report.refused.extend(effects.refused.iter().copied());
        report.updated.extend(&effects.saved);
        report.removed.extend(&effects.deleted);
        report
            .lost_local_changes
            .extend(&effects.lost_local_changes);
        report.repairing.extend(&effects.repairing);
        Ok(effects.sync_again)
    }
}

/// Loads the named documents; one the store lacks or cannot load is marked lost in the sync
/// state, so sync asks the server for all of it (its next save replaces the bad copy).
async fn load_or_lose(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    ids: &[DocumentId],
    state: &mut jemput_sync_protocol::batch::DeviceState,
) -> Result<BTreeMap<DocumentId, Loaded>, SyncError> {
    let mut out = BTreeMap::new();
    for id in ids {
        match Store::load(tx, *id).await {
            Ok(Some(loaded)) => {
                out.insert(*id, loaded);
            }
            Ok(None) => state.document_lost(*id),
            Err(StoreError::Corrupt(_, error)) => {
                tracing::error!(document = %id, %error, "dokumen lokal rusak, diminta ulang dari server");
                state.document_lost(*id);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn loaded_docs(loaded: BTreeMap<DocumentId, Loaded>) -> BTreeMap<DocumentId, Automerge> {
    loaded.into_iter().map(|(id, l)| (id, l.doc)).collect()
}

/// Gzip-compresses a body.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

/// Typical ratio of a request body's size to its gzip size (Automerge change bundles of form
/// data compress about threefold), used as the first guess when planning to a wire budget.
const EXPECTED_COMPRESSION: usize = 3;

/// `planned × target ÷ observed`: the planning budget that should put the wire size at
/// `target`, given that `planned` gave `observed`.
fn rescale(planned: usize, target: usize, observed: usize) -> usize {
    let scaled = planned as u128 * target as u128 / observed.max(1) as u128;
    usize::try_from(scaled).unwrap_or(usize::MAX)
}

/// A planned request's body, encoded and as it goes on the wire.
struct Planned {
    /// Document bundles pushed.
    pushed: usize,
    /// The CBOR body.
    body: Vec<u8>,
    /// The gzip body, when compressing and the body is large enough to gain from it.
    gzipped: Option<Vec<u8>>,
}

impl Planned {
    fn new(request: &BatchRequest, compress: bool) -> Self {
        let body = encode_request(request);
        let gzipped = (compress && body.len() > COMPRESS_ABOVE).then(|| gzip(&body));
        Self {
            pushed: request.push.len(),
            body,
            gzipped,
        }
    }

    /// Bytes of the body as sent.
    fn wire_len(&self) -> usize {
        self.gzipped.as_ref().map_or(self.body.len(), Vec::len)
    }
}

/// Which HTTP client carries the sync exchange.
#[derive(Clone, Copy)]
enum Transport<'a> {
    Reqwest(&'a reqwest::Client),
    Sdk(&'a SyncTransport),
}

/// One response, whichever the transport.
struct Reply {
    status: StatusCode,
    /// The `Accept-Encoding` header value.
    accept_encoding: Option<String>,
    /// The `Retry-After` header value.
    retry_after: Option<String>,
    /// The body after content decoding.
    body: Vec<u8>,
}

async fn send(
    transport: Transport<'_>,
    url: &str,
    token: &str,
    planned: &Planned,
    compress: bool,
    report: &mut SyncReport,
) -> Result<Attempt, SyncError> {
    let (wire, gzipped) = match &planned.gzipped {
        Some(gzipped) if compress => (gzipped.clone(), true),
        _ => (planned.body.clone(), false),
    };
    report.round_trips += 1;
    report.bytes_sent += wire.len() as u64;
    let reply = match transport {
        Transport::Reqwest(http) => send_reqwest(http, url, token, wire, gzipped).await,
        Transport::Sdk(transport) => transport
            .post(url, token, wire, gzipped)
            .await
            .map(|r| Reply {
                status: r.status,
                accept_encoding: r.accept_encoding,
                retry_after: r.retry_after,
                body: r.body,
            })
            .map_err(|e| e.to_string()),
    };
    let reply = match reply {
        Ok(reply) => reply,
        Err(why) => return Ok(Attempt::Retry(why, None)),
    };
    report.bytes_received += reply.body.len() as u64;
    classify(reply)
}

async fn send_reqwest(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    wire: Vec<u8>,
    gzipped: bool,
) -> Result<Reply, String> {
    let mut request = http
        .post(url)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/cbor")
        .header(ACCEPT, "application/cbor");
    if gzipped {
        request = request.header(CONTENT_ENCODING, "gzip");
    }
    let response = request.body(wire).send().await.map_err(|e| e.to_string())?;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let accept_encoding = header(ACCEPT_ENCODING);
    let retry_after = header(RETRY_AFTER);
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok(Reply {
        status,
        accept_encoding,
        retry_after,
        body: body.to_vec(),
    })
}

/// Whether an `Accept-Encoding` value lists gzip.
fn lists_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("gzip")
    })
}

/// A `Retry-After` in seconds, capped at a minute (an HTTP date is ignored).
fn retry_delay(retry_after: &str) -> Option<Duration> {
    retry_after
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(60)))
}

/// What to do with a response, by its status.
fn classify(reply: Reply) -> Result<Attempt, SyncError> {
    let takes_gzip = reply.accept_encoding.as_deref().map(lists_gzip);
    match reply.status {
        StatusCode::OK => Ok(Attempt::Response(reply.body, takes_gzip)),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(SyncError::Unauthorised(reply.status.as_u16()))
        }
        StatusCode::PAYLOAD_TOO_LARGE => Ok(Attempt::TooLarge),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Ok(Attempt::Uncompressed),
        StatusCode::TOO_EARLY => Ok(Attempt::TooEarly),
        StatusCode::NOT_FOUND => Err(unexpected(404, "the server has no /v1/sync")),
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            Err(SyncError::Rejected(reply.status.as_u16()))
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => Ok(Attempt::Retry(
            format!("HTTP {s}"),
            reply.retry_after.as_deref().and_then(retry_delay),
        )),
        s => Err(unexpected(s.as_u16(), "unexpected status")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: StatusCode) -> Reply {
        Reply {
            status,
            accept_encoding: None,
            retry_after: None,
            body: b"body".to_vec(),
        }
    }

    #[test]
    fn statuses_map_to_attempts() {
        assert!(matches!(
            classify(reply(StatusCode::OK)),
            Ok(Attempt::Response(body, None)) if body == b"body"
        ));
        assert!(matches!(
            classify(reply(StatusCode::TOO_EARLY)),
            Ok(Attempt::TooEarly)
        ));
        assert!(matches!(
            classify(reply(StatusCode::PAYLOAD_TOO_LARGE)),
            Ok(Attempt::TooLarge)
        ));
        assert!(matches!(
            classify(reply(StatusCode::UNSUPPORTED_MEDIA_TYPE)),
            Ok(Attempt::Uncompressed)
        ));
        assert!(matches!(
            classify(reply(StatusCode::FORBIDDEN)),
            Err(SyncError::Unauthorised(403))
        ));
        assert!(matches!(
            classify(reply(StatusCode::UNPROCESSABLE_ENTITY)),
            Err(SyncError::Rejected(422))
        ));
        let mut busy = reply(StatusCode::SERVICE_UNAVAILABLE);
        busy.retry_after = Some("300".into());
        assert!(matches!(
            classify(busy),
            Ok(Attempt::Retry(_, Some(d))) if d == Duration::from_secs(60)
        ));
        let mut ok = reply(StatusCode::OK);
        ok.accept_encoding = Some("zstd, GZIP;q=0.5".into());
        assert!(matches!(classify(ok), Ok(Attempt::Response(_, Some(true)))));
        let mut ok = reply(StatusCode::OK);
        ok.accept_encoding = Some("identity".into());
        assert!(matches!(
            classify(ok),
            Ok(Attempt::Response(_, Some(false)))
        ));
    }
}
