//! Batch sync from a cold start on an emulated 2G link (issue 6, item 5, last bullet): what a
//! "nothing changed" sync of a device holding 500 documents costs when the device has no open
//! connection: TCP handshake, TLS 1.3 with rustls (full handshake, resumed session, resumed
//! session with 0-RTT early data), then `POST /v1/sync`; against the same sync on an open
//! connection.
//!
//! ```text
//! cargo build --release -p jemput-server --bin jemput && cargo build --release -p jemput-tests --examples
//! JEMPUT_TEST_SERVER_LOG=warn cargo run --release -p jemput-tests --example bench-2g-cold -- \
//!     [--server target/release/jemput] [--docs 500] [--runs 5]
//! ```
//!
//! The release server serves HTTPS with a fresh dev certificate (`jemput dev-cert`: ECDSA
//! P-256, self-signed, so the chain is one certificate; a CA-issued chain adds its
//! intermediates to every full handshake). The device is filled and first synced over
//! loopback; the measured syncs cross `LinkEmulator` (300 ms RTT, 50 kbit/s each way) with
//! `emulate_handshake`, so opening a TCP connection costs one RTT before the first byte.
//!
//! Clients:
//!
//! - **SDK**: `jemput_client_sdk::Client::sync` with a reqwest client configured like
//!   `jemput_client_sdk::http_client` (rustls, ring). Cold: a new reqwest client per sync
//!   (no pooled connection), with a fresh rustls session store (full handshake) or one that
//!   holds a ticket from an earlier connection (resumed). reqwest cannot send early data over
//!   TCP (its `tls_early_data` is for HTTP/3; hyper-rustls never asks tokio-rustls for it).
//!   With 0-RTT: `Client::sync` with `SyncOptions::transport` set to the SDK's
//!   `SyncTransport` (tokio-rustls with early data, hyper HTTP/1.1), as `jemput-field` syncs;
//!   cold: its kept connection closed (`SyncTransport::disconnect`) before each sync, its
//!   session store holding the ticket of the previous connection.
//! - **raw**: `jemput_tests::tls_session::TlsClient`, tokio-rustls with `early-data` and a
//!   hand-written HTTP/1.1 request carrying what the SDK would send (same headers, body
//!   planned from the device's stored sync state with a new idempotency key). Used for
//!   0-RTT, and for full and resumed handshakes so the 0-RTT row has a like-for-like baseline.
//!
//! Columns: round trips the client waited for until it had the response (the emulator's
//! count of upstream bursts delivered by then, plus one for the TCP handshake on a cold
//! connection); bytes each way for the whole connection (TLS records and HTTP included, TCP/IP
//! headers not; closing included, measured after the link settled); time from starting the
//! sync to having the response. Median run by time of `--runs`. The server's own count of
//! handshakes by kind (from `/metrics`) confirms what each case did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jemput_client_sdk::{Client, Store, SyncOptions, SyncReport, SyncTransport, enrol};
use jemput_sync_protocol::batch::{DeviceLimits, IdempotencyKey, decode_response, encode_request};
use jemput_tests::link::{LinkEmulator, LinkProfile, LinkStats};
use jemput_tests::provision::{HOME_DISTRICT, point_device_at, sample_application};
use jemput_tests::tls_session::{
    TlsClient, client_config, counter_sum, http_request, metrics_text,
};
use jemput_tests::{TestDatabase, TestServer};
use rustls::HandshakeKind;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Time for the link to deliver what is in flight after a connection closes.
const SETTLE: Duration = Duration::from_millis(1500);
/// How long the raw client keeps reading after a 0-RTT response, for the session tickets
/// the server sends once the client's `Finished` is in (they are not on the response's path).
const TICKETS: Duration = Duration::from_millis(1200);

#[derive(Debug, Clone, Copy)]
struct Sample {
    round_trips: u64,
    up: u64,
    down: u64,
    secs: f64,
}

struct Row {
    case: &'static str,
    client: &'static str,
    samples: Vec<Sample>,
    server: String,
}

impl Row {
    fn median(&self) -> Sample {
        let mut sorted = self.samples.clone();
        sorted.sort_by(|a, b| a.secs.total_cmp(&b.secs));
        sorted[sorted.len() / 2]
    }
}

/// Link counters around one sync: `before`, when the client had the response, and after the
/// connection closed and the link settled.
fn sample(
    before: LinkStats,
    at_response: LinkStats,
    after: LinkStats,
    secs: f64,
    cold: bool,
) -> Sample {
    Sample {
        round_trips: at_response.round_trips - before.round_trips + u64::from(cold),
        up: after.bytes_up - before.bytes_up,
        down: after.bytes_down - before.bytes_down,
        secs,
    }
}

/// A reqwest client as `jemput_client_sdk::http_client` builds it, on `config`.
fn reqwest_client(config: &rustls::ClientConfig) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config.clone())
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// The SDK's rustls configuration (no ALPN, default session store) trusting `cert`.
fn sdk_tls(cert: &Path) -> rustls::ClientConfig {
    jemput_tests::tls::client_config_trusting(cert)
}

/// One SDK sync that must be a single complete "nothing changed" exchange.
async fn sdk_sync(device: &Client, http: &reqwest::Client) -> Result<SyncReport> {
    sdk_sync_with(device, http, &SyncOptions::default()).await
}

/// [`sdk_sync`] with `options` (a `SyncTransport`).
async fn sdk_sync_with(
    device: &Client,
    http: &reqwest::Client,
    options: &SyncOptions,
) -> Result<SyncReport> {
    let report = device.sync(http, options).await?;
    if !report.complete || report.round_trips != 1 || !report.updated.is_empty() {
        return Err(format!("not a one-exchange idle sync: {report:?}").into());
    }
    Ok(report)
}

/// The request the SDK would send next for an idle device: its stored sync state planned with
/// a new key (not stored: the device's state is left as it was), with the SDK's headers.
async fn planned_request(device: &Client, host: &str) -> Result<(Vec<u8>, IdempotencyKey)> {
    let enrolment = device.store().require_enrolment().await?;
    let mut tx = device.store().begin().await?;
    let mut state = Store::load_state(&mut tx).await?;
    drop(tx);
    if state.pending.is_some() {
        return Err("the device has a pending request".into());
    }
    let key = IdempotencyKey::from_bytes(rand::random());
    let request = state.plan_request(key, &BTreeMap::new(), DeviceLimits::default())?;
    if !request.push.is_empty() || !request.repair.is_empty() {
        return Err("the device has changes to push".into());
    }
    let body = encode_request(&request);
    let auth = format!("Bearer {}", enrolment.device_token);
    let bytes = http_request(
        "POST",
        "/v1/sync",
        host,
        &[
            ("authorization", &auth),
            ("content-type", "application/cbor"),
            ("accept", "application/cbor"),
            ("accept-encoding", "gzip, zstd"),
        ],
        &body,
    );
    Ok((bytes, key))
}

fn check_sync_response(
    response: &jemput_tests::tls_session::HttpResponse,
    key: IdempotencyKey,
) -> Result<()> {
    if response.status != 200 {
        return Err(format!(
            "POST /v1/sync: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
        .into());
    }
    let decoded = decode_response(&response.body)?;
    if decoded.key != key || !decoded.updates.is_empty() {
        return Err("unexpected sync response".into());
    }
    Ok(())
}

/// Server-side TLS handshakes by kind, read from `/metrics` over loopback (a full handshake
/// of its own, which the caller discounts).
async fn handshakes(server: &TestServer, cert: &Path) -> Result<[f64; 3]> {
    let metrics = metrics_text(&server.address(), cert).await?;
    let count = |labels: &[&str]| counter_sum(&metrics, "jemput_tls_handshakes_total", labels);
    Ok([
        count(&["kind=\"full\""]),
        count(&["kind=\"resumed\"", "early_data=\"none\""]),
        count(&["kind=\"resumed\"", "early_data=\"accepted\""]),
    ])
}

fn describe(before: [f64; 3], after: [f64; 3]) -> String {
    // The later /metrics fetch is a full handshake of its own.
    format!(
        "full {}, resumed {}, resumed+0-RTT {}",
        after[0] - before[0] - 1.0,
        after[1] - before[1],
        after[2] - before[2]
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let binary = flag("--server").unwrap_or_else(|| "target/release/jemput".into());
    let n_docs: usize = flag("--docs").map_or(Ok(500), |s| s.parse())?;
    let runs: usize = flag("--runs").map_or(Ok(5), |s| s.parse())?;
    if !Path::new(&binary).is_file() {
        return Err(format!("{binary} not found: cargo build --release -p jemput-server").into());
    }
    jemput_client_sdk::install_crypto_provider();

    let dir = tempfile::tempdir()?;
    let (mut server, certificate) = TestServer::start_tls(&binary, TestDatabase::sqlite()).await;
    let cert: PathBuf = certificate.cert.clone();

    // A device holding `n_docs` applications, filled and synced over loopback.
    let http = reqwest_client(&sdk_tls(&cert))?;
    let person = server
        .person("budi", "officer", &[HOME_DISTRICT], &[])
        .await;
    let device = Client::open(&dir.path().join("budi.db")).await?;
    enrol(
        &device,
        &http,
        server.base_url(),
        "budi",
        &person.password,
        "HP budi",
    )
    .await?;
    eprintln!("filling the device with {n_docs} applications (loopback)…");
    for _ in 0..n_docs {
        device.create_application(sample_application()).await?;
    }
    for _ in 0..20 {
        if device.sync(&http, &SyncOptions::default()).await?.complete {
            break;
        }
    }
    sdk_sync(&device, &http).await?;
    drop(http);

    let link = LinkEmulator::start(
        server.address().parse()?,
        LinkProfile {
            emulate_handshake: true,
            ..LinkProfile::edge_2g()
        },
    )
    .await?;
    let via_link = link.address().to_string();
    point_device_at(&device, &format!("https://{via_link}")).await?;
    let mut rows = Vec::new();

    // (i) Warm: an open connection (opened by an unmeasured sync).
    let counts = handshakes(&server, &cert).await?;
    let warm = reqwest_client(&sdk_tls(&cert))?;
    sdk_sync(&device, &warm).await?;
    let mut samples = Vec::new();
    for _ in 0..runs {
        let before = link.stats();
        let started = Instant::now();
        sdk_sync(&device, &warm).await?;
        let secs = started.elapsed().as_secs_f64();
        let at_response = link.stats();
        tokio::time::sleep(SETTLE).await;
        samples.push(sample(before, at_response, link.stats(), secs, false));
    }
    drop(warm);
    tokio::time::sleep(SETTLE).await;
    rows.push(Row {
        case: "warm (open connection)",
        client: "SDK",
        samples,
        server: describe(counts, handshakes(&server, &cert).await?) + " (1 opening connection)",
    });

    // (ii, iii) Cold with the SDK: a new reqwest client (no pooled connection) per sync, on a
    // fresh session store or on one holding tickets.
    let resumable = sdk_tls(&cert);
    {
        // Tickets for `resumable`, from a connection over loopback.
        let primer = reqwest_client(&resumable)?;
        primer
            .get(format!("{}/healthz", server.base_url()))
            .send()
            .await?
            .bytes()
            .await?;
    }
    for (case, resumed) in [
        ("cold, full TLS 1.3 handshake", false),
        ("cold, resumed TLS 1.3 session", true),
    ] {
        let counts = handshakes(&server, &cert).await?;
        let mut samples = Vec::new();
        for _ in 0..runs {
            let config = if resumed {
                resumable.clone()
            } else {
                sdk_tls(&cert)
            };
            let before = link.stats();
            let started = Instant::now();
            let cold = reqwest_client(&config)?;
            sdk_sync(&device, &cold).await?;
            let secs = started.elapsed().as_secs_f64();
            let at_response = link.stats();
            drop(cold);
            tokio::time::sleep(SETTLE).await;
            samples.push(sample(before, at_response, link.stats(), secs, true));
        }
        rows.push(Row {
            case,
            client: "SDK",
            samples,
            server: describe(counts, handshakes(&server, &cert).await?),
        });
    }

    // (iv) Cold with the SDK's SyncTransport: resumed with 0-RTT. Primed by an unmeasured
    // sync over the link (a full handshake, whose ticket arrives before its response).
    {
        let transport = Arc::new(SyncTransport::new(Some(&cert), Duration::from_secs(120))?);
        let options = SyncOptions {
            transport: Some(Arc::clone(&transport)),
            ..SyncOptions::default()
        };
        // Unused: the exchange goes over the transport.
        let unused = reqwest_client(&sdk_tls(&cert))?;
        sdk_sync_with(&device, &unused, &options).await?;
        transport.disconnect().await;
        tokio::time::sleep(SETTLE).await;
        let counts = handshakes(&server, &cert).await?;
        let mut samples = Vec::new();
        for _ in 0..runs {
            let stats = transport.stats();
            let before = link.stats();
            let started = Instant::now();
            sdk_sync_with(&device, &unused, &options).await?;
            let secs = started.elapsed().as_secs_f64();
            let at_response = link.stats();
            let after = transport.stats();
            if after.connections != stats.connections + 1
                || after.resumed_handshakes != stats.resumed_handshakes + 1
                || after.early_data_accepted != stats.early_data_accepted + 1
            {
                return Err(format!("SDK 0-RTT: not a resumed 0-RTT connection: {after:?}").into());
            }
            // The kept connection reads the ticket sent after the 0-RTT response; then close.
            tokio::time::sleep(TICKETS).await;
            transport.disconnect().await;
            tokio::time::sleep(SETTLE).await;
            samples.push(sample(before, at_response, link.stats(), secs, true));
        }
        rows.push(Row {
            case: "cold, resumed + 0-RTT early data",
            client: "SDK",
            samples,
            server: describe(counts, handshakes(&server, &cert).await?),
        });
    }

    // (ii, iii, iv) Cold with the raw client: full, resumed, resumed with 0-RTT.
    let early_config = client_config(&cert, true);
    // The same session store, without offering early data.
    let resume_config = {
        let mut config = (*early_config).clone();
        config.enable_early_data = false;
        std::sync::Arc::new(config)
    };
    {
        let mut primer = TlsClient::connect(&server.address(), early_config.clone()).await?;
        primer
            .send(&http_request(
                "GET",
                "/healthz",
                &server.address(),
                &[],
                b"",
            ))
            .await?;
        primer.response().await?;
        primer.close().await;
    }
    for (case, mode) in [
        ("cold, full TLS 1.3 handshake", 0),
        ("cold, resumed TLS 1.3 session", 1),
        ("cold, resumed + 0-RTT early data", 2),
    ] {
        let counts = handshakes(&server, &cert).await?;
        let mut samples = Vec::new();
        for _ in 0..runs {
            let (request, key) = planned_request(&device, &via_link).await?;
            let before = link.stats();
            let started = Instant::now();
            let mut client = match mode {
                0 => {
                    let mut c = TlsClient::connect(&via_link, client_config(&cert, false)).await?;
                    c.send(&request).await?;
                    c
                }
                1 => {
                    // The same session store as the 0-RTT runs, without sending early data.
                    let mut c = TlsClient::connect(&via_link, resume_config.clone()).await?;
                    c.send(&request).await?;
                    c
                }
                _ => TlsClient::connect_early(&via_link, early_config.clone(), &request).await?,
            };
            let response = client.response().await?;
            let secs = started.elapsed().as_secs_f64();
            let at_response = link.stats();
            check_sync_response(&response, key)?;
            let expected = match mode {
                0 => HandshakeKind::Full,
                _ => HandshakeKind::Resumed,
            };
            if client.handshake_kind() != Some(expected)
                || client.early_data_accepted() != (mode == 2)
            {
                return Err(format!(
                    "{case}: handshake {:?}, early data accepted {}",
                    client.handshake_kind(),
                    client.early_data_accepted()
                )
                .into());
            }
            // New tickets arrive after the response on a 0-RTT connection; read them so the
            // next run can resume (before the response otherwise).
            client.drain(TICKETS).await;
            client.close().await;
            tokio::time::sleep(SETTLE).await;
            samples.push(sample(before, at_response, link.stats(), secs, true));
        }
        rows.push(Row {
            case,
            client: "raw",
            samples,
            server: describe(counts, handshakes(&server, &cert).await?),
        });
    }

    println!(
        "\nBatch sync, {n_docs} documents, nothing changed; 300 ms RTT, 50 kbit/s each way, TCP handshake emulated; median of {runs} runs by time\n"
    );
    println!("| case | client | round trips | bytes up | bytes down | time s | server saw |");
    println!("|---|---|---:|---:|---:|---:|---|");
    for row in &rows {
        let m = row.median();
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {} |",
            row.case, row.client, m.round_trips, m.up, m.down, m.secs, row.server
        );
    }
    println!("\nEvery run (round trips / up / down / seconds):");
    for row in &rows {
        let runs: Vec<String> = row
            .samples
            .iter()
            .map(|s| format!("{}/{}/{}/{:.2}", s.round_trips, s.up, s.down, s.secs))
            .collect();
        println!("- {} ({}): {}", row.case, row.client, runs.join(", "));
    }
    server.stop().await;
    Ok(())
}
