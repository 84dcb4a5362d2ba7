//! Batch sync on an emulated 2G link (issue 6, item 5): the real `jemput` release binary behind
//! the user-space link emulator (300 ms RTT, 50 kbit/s each way), driven by the real SDK, and
//! the same workloads over the automerge-repo WebSocket protocol for comparison, against Jemput
//! and against the two peer servers: the JS reference server (automerge-repo 2.5.6) and samod.
//!
//! ```text
//! cargo build --release -p jemput-server --bin jemput
//! cargo build --release -p jemput-tests --examples
//! cargo run --release -p jemput-tests --example bench-2g -- \
//!     [--server target/release/jemput] [--docs 500] [--peers jemput,js-reference,samod] \
//!     [--samod-bin target/release/examples/samod-server] [--node node] [--search-steps 5]
//! ```
//!
//! Devices are filled and enrolled over loopback; only the measured syncs cross the emulated
//! link (the device's stored server URL is pointed at the emulator). Bytes are the emulator's
//! counters (TCP payload both ways: HTTP/WebSocket headers included, no TCP/IP headers).
//!
//! `--peers` chooses the WebSocket servers (batch sync always runs: it is the baseline). A peer
//! whose binary, Node.js or JS packages are missing is reported as "not run". A peer that does
//! not converge at `--docs` is run again at smaller sizes (bisection over multiples of 10,
//! `--search-steps` trials per workload, each on a fresh server) to find the largest size that
//! converges.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::{ActorId, Automerge, ChangeHash, ROOT, ReadDoc, transaction::Transactable};
use jemput_client_sdk::{Client, SyncOptions, SyncReport, enrol, http_client};
use jemput_sync_protocol::batch::DeviceLimits;
use jemput_sync_protocol::{DocumentId, Message};
use jemput_tests::link::{LinkEmulator, LinkProfile, LinkStats};
use jemput_tests::provision::{HOME_DISTRICT, point_device_at, sample_application};
use jemput_tests::{RawPeer, TestDatabase, TestServer};
use tokio::io::{AsyncBufReadExt, BufReader};

const RTT: Duration = Duration::from_millis(300);
const RATE_BYTES_PER_S: f64 = 50_000.0 / 8.0;
/// Every sync on the emulated link must end within this.
const DEADLINE: Duration = Duration::from_secs(300);
/// A WebSocket sync that receives nothing for this long has stalled.
const QUIET: Duration = Duration::from_secs(20);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Row {
    name: String,
    round_trips: String,
    up: u64,
    down: u64,
    secs: f64,
    goal: String,
}

async fn sync_until_complete(
    client: &Client,
    http: &reqwest::Client,
    what: &str,
) -> Result<Vec<SyncReport>> {
    sync_until_complete_with(client, http, what, &SyncOptions::default()).await
}

/// Syncs until a session completes, retrying errors, within [`DEADLINE`].
async fn sync_until_complete_with(
    client: &Client,
    http: &reqwest::Client,
    what: &str,
    options: &SyncOptions,
) -> Result<Vec<SyncReport>> {
    let end = Instant::now() + DEADLINE;
    let mut reports = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let outcome = tokio::time::timeout(left, client.sync(http, options))
            .await
            .map_err(|_| format!("{what}: no sync within {DEADLINE:?}"))?;
        match outcome {
            Ok(report) => {
                let complete = report.complete;
                reports.push(report);
                if complete {
                    return Ok(reports);
                }
            }
            Err(e) => eprintln!("{what}: sync error (retrying): {e}"),
        }
        if Instant::now() >= end {
            return Err(format!("{what}: incomplete after {DEADLINE:?}").into());
        }
    }
}

fn delta(before: LinkStats, after: LinkStats) -> LinkStats {
    LinkStats {
        bytes_up: after.bytes_up - before.bytes_up,
        bytes_down: after.bytes_down - before.bytes_down,
        connections: after.connections - before.connections,
        drops: after.drops - before.drops,
        round_trips: after.round_trips - before.round_trips,
    }
}

async fn heads_of(
    client: &Client,
    ids: &[DocumentId],
) -> Result<BTreeMap<DocumentId, Vec<ChangeHash>>> {
    let mut out = BTreeMap::new();
    for id in ids {
        let mut heads = client.document(*id).await?.get_heads();
        heads.sort();
        out.insert(*id, heads);
    }
    Ok(out)
}

/// `count` edits on each of `ids`, returning the `save_after` of the edits per document.
async fn edit_many(
    client: &Client,
    ids: &[DocumentId],
    count: usize,
    tag: &str,
) -> Result<Vec<u8>> {
    let mut changes = Vec::new();
    for id in ids {
        let before = client.document(*id).await?.get_heads();
        for k in 0..count {
            let key = if k % 2 == 0 { "address" } else { "phone" };
            let value = if key == "phone" {
                format!("08{:010}", k * 7919 + changes.len())
            } else {
                format!("Jl. Malioboro No. {k} RT 0{} ({tag})", k % 9)
            };
            client.set_applicant(*id, key, &value).await?;
        }
        changes.extend(client.document(*id).await?.save_after(&before));
    }
    Ok(changes)
}

/// How far one automerge-repo WebSocket sync got.
struct WsOutcome {
    converged: usize,
    total: usize,
    /// Deepest per-document exchange count (sync messages we sent for one document).
    depth: u32,
    /// Why it ended before every document converged, and when the last one did.
    stopped: Option<String>,
}

impl WsOutcome {
    fn complete(&self) -> bool {
        self.converged == self.total
    }

    fn summary(&self) -> String {
        let mut out = format!("{}/{} converged", self.converged, self.total);
        if let Some(why) = &self.stopped {
            out.push_str(&format!("; {why}"));
        }
        out
    }
}

/// One measured WebSocket sync through the emulator.
struct WsRun {
    stats: LinkStats,
    secs: f64,
    outcome: WsOutcome,
}

/// Whether `doc` and the server agree, as far as this connection's sync state knows.
fn in_sync(doc: &Automerge, state: &sync::State) -> bool {
    let heads = doc.get_heads();
    state.their_heads.as_ref() == Some(&heads) && state.shared_heads == heads
}

/// The per-document automerge-repo sync over one WebSocket, every document started at once,
/// with a fresh `sync::State` per document (as after a reconnect). Ends when every document
/// has converged, after [`QUIET`] without a message, at [`DEADLINE`], or when the server
/// closes the connection. `peer_id` should be new for each connection: the JS reference server
/// keeps its sync state per peer id after a disconnect, so reusing one would not start fresh.
async fn ws_sync(
    url: &str,
    peer_id: &str,
    docs: &mut BTreeMap<DocumentId, Automerge>,
) -> Result<WsOutcome> {
    let started = Instant::now();
    let at = || started.elapsed().as_secs_f64();
    let mut peer = RawPeer::joined(url, peer_id, None).await;
    let mut states: BTreeMap<DocumentId, (sync::State, u32)> = BTreeMap::new();
    let mut stopped = None;
    for (id, doc) in docs.iter_mut() {
        let mut state = sync::State::new();
        if let Some(message) = doc.generate_sync_message(&mut state) {
            let m = peer.sync_message("sync", *id, message.encode());
            if let Err(e) = peer.try_send(&m).await {
                stopped = Some(format!("send failed at {:.1} s ({e})", at()));
                break;
            }
        }
        states.insert(*id, (state, 1));
    }
    let mut converged = BTreeSet::new();
    let mut last_converged = 0.0;
    let end = started + DEADLINE;
    while stopped.is_none() && converged.len() < docs.len() {
        if Instant::now() >= end {
            stopped = Some(format!("deadline of {} s", DEADLINE.as_secs()));
            break;
        }
        match peer.recv_within(QUIET).await {
            Ok(Some(Message::Sync(m))) => {
                let id = m.document_id;
                let (Some(doc), Some((state, exchanges))) =
                    (docs.get_mut(&id), states.get_mut(&id))
                else {
                    continue;
                };
                doc.receive_sync_message(state, sync::Message::decode(&m.data)?)?;
                if in_sync(doc, state) {
                    if converged.insert(id) {
                        last_converged = at();
                    }
                } else {
                    converged.remove(&id);
                }
                if let Some(reply) = doc.generate_sync_message(state) {
                    *exchanges += 1;
                    let m = peer.sync_message("sync", id, reply.encode());
                    if let Err(e) = peer.try_send(&m).await {
                        stopped = Some(format!("send failed at {:.1} s ({e})", at()));
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                stopped = Some(format!("server closed the connection at {:.1} s", at()));
            }
            Err(()) => stopped = Some(format!("{} s of quiet", QUIET.as_secs())),
        }
    }
    let depth = states.values().map(|(_, n)| *n).max().unwrap_or(0);
    peer.close().await;
    let stopped =
        stopped.map(|why| format!("{why} (last document converged at {last_converged:.1} s)"));
    if let Some(why) = &stopped {
        eprintln!(
            "WebSocket {peer_id}: {}/{} converged; {why}",
            converged.len(),
            docs.len()
        );
    }
    Ok(WsOutcome {
        converged: converged.len(),
        total: docs.len(),
        depth,
        stopped,
    })
}

/// [`ws_sync`] through `link`, counting its bytes, round trips and time.
async fn ws_measured(
    link: &LinkEmulator,
    url: &str,
    peer_id: &str,
    docs: &mut BTreeMap<DocumentId, Automerge>,
) -> Result<WsRun> {
    let before = link.stats();
    let started = Instant::now();
    let outcome = ws_sync(url, peer_id, docs).await?;
    let secs = started.elapsed().as_secs_f64();
    Ok(WsRun {
        stats: delta(before, link.stats()),
        secs,
        outcome,
    })
}

/// [`ws_sync`] over loopback that must converge: how the peer servers are loaded.
async fn ws_load(
    url: &str,
    peer_id: &str,
    docs: &mut BTreeMap<DocumentId, Automerge>,
) -> Result<()> {
    let outcome = ws_sync(url, peer_id, docs).await?;
    if !outcome.complete() {
        return Err(format!("loading over loopback ({peer_id}): {}", outcome.summary()).into());
    }
    Ok(())
}

/// The device's WebSocket-side edits: 5 changes on each of `ids`.
fn ws_device_edits(docs: &mut BTreeMap<DocumentId, Automerge>, ids: &[DocumentId]) -> Result<()> {
    for id in ids {
        let doc = docs.get_mut(id).ok_or("doc")?;
        let applicant = match doc.get(ROOT, "applicant")? {
            Some((_, obj)) => obj,
            None => return Err("no applicant".into()),
        };
        for k in 0..5 {
            let mut tx = doc.transaction();
            tx.put(&applicant, "address", format!("Jl. Kaliurang km {k} (ws)"))?;
            tx.commit();
        }
    }
    Ok(())
}

/// The documents of one run of the WebSocket workloads at `n` of the device's `ids`, keeping
/// the shape of the full run (`n == ids.len()`: the first 2/5 edited on the device, the 50
/// documents at 4/5 edited on the server): the first 4n/5 documents, of which the first 2n/5
/// are edited on the device; n/10 from the block the server edits (`ids[4N/5..]`, where the
/// server-side copies exist); the rest from after that block. Exact for `n == ids.len()` and
/// for multiples of 10.
struct Shape {
    docs: Vec<DocumentId>,
    local: Vec<DocumentId>,
    remote: Vec<DocumentId>,
}

impl Shape {
    fn of(ids: &[DocumentId], n: usize) -> Self {
        let full = ids.len();
        let n = n.min(full);
        let (head, remote, tail) = (n * 4 / 5, n / 10, n - n * 4 / 5 - n / 10);
        let remote_at = full * 4 / 5;
        let tail_at = (remote_at + full / 10).min(full);
        let remote: Vec<DocumentId> = ids[remote_at..(remote_at + remote).min(full)].to_vec();
        let mut docs = ids[..head].to_vec();
        docs.extend(&remote);
        docs.extend(&ids[tail_at..(tail_at + tail).min(full)]);
        Self {
            local: ids[..n * 2 / 5].to_vec(),
            remote,
            docs,
        }
    }

    fn changes_label(&self) -> String {
        format!(
            "{} changes / {} docs + {} server docs",
            thousands(5 * self.local.len()),
            self.local.len(),
            self.remote.len()
        )
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The automerge-repo WebSocket servers compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WsServer {
    Jemput,
    JsReference,
    Samod,
}

impl WsServer {
    const ALL: [Self; 3] = [Self::Jemput, Self::JsReference, Self::Samod];

    fn name(self) -> &'static str {
        match self {
            Self::Jemput => "jemput",
            Self::JsReference => "js-reference",
            Self::Samod => "samod",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Jemput => "Jemput",
            Self::JsReference => "JS reference (automerge-repo 2.5.6)",
            Self::Samod => "samod 0.16",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Idle,
    Changes,
}

/// How to start the peer servers, and what they are loaded with.
struct Peers<'a> {
    node: String,
    samod_bin: String,
    /// The device's documents when the WebSocket comparison starts (its enrolled actor).
    base: &'a BTreeMap<DocumentId, Automerge>,
    /// The server-side copies of the documents the second officer edited (`Shape::remote` of
    /// the full run): base + the same 2 changes each that Jemput received.
    server_side: &'a BTreeMap<DocumentId, Automerge>,
    ids: &'a [DocumentId],
}

/// A peer sync server on a fresh data directory; killed when dropped.
struct PeerProcess {
    child: tokio::process::Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

fn js_reference_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/peers/js-reference-server.mjs")
}

impl Peers<'_> {
    /// Why `server` cannot run here, if it cannot.
    async fn missing(&self, server: WsServer) -> Option<String> {
        match server {
            WsServer::Jemput => None,
            WsServer::Samod => (!std::path::Path::new(&self.samod_bin).is_file()).then(|| {
                format!(
                    "{} not found (cargo build --release -p jemput-tests --examples)",
                    self.samod_bin
                )
            }),
            WsServer::JsReference => {
                let node_ok = tokio::process::Command::new(&self.node)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
                if !node_ok {
                    return Some(format!("Node.js `{}` not found (--node PATH)", self.node));
                }
                let installed = jemput_tests::node::js_dir()
                    .join("node_modules/@automerge/automerge-repo/package.json")
                    .exists();
                (!installed).then(|| {
                    "tests/js/node_modules missing (cd tests/js && npm ci --no-audit --no-fund)"
                        .to_owned()
                })
            }
        }
    }

    /// Starts `server` on port 0 and waits for its `listening on PORT` line (as
    /// `tests/bench/ws-bench.mjs` does).
    async fn start(&self, server: WsServer) -> Result<PeerProcess> {
        let dir = tempfile::tempdir()?;
        let mut command = match server {
            WsServer::JsReference => {
                let mut c = tokio::process::Command::new(&self.node);
                c.arg(js_reference_script());
                c
            }
            WsServer::Samod => tokio::process::Command::new(&self.samod_bin),
            WsServer::Jemput => return Err("Jemput is not a peer process here".into()),
        };
        command
            .arg("--port")
            .arg("0")
            .arg("--data-dir")
            .arg(dir.path())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let name = server.name();
        let mut child = command.spawn().map_err(|e| format!("start {name}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(port) = line.strip_prefix("listening on ") {
                    return Ok(port.trim().parse::<u16>().ok());
                }
                eprintln!("[{name}] {line}");
            }
            Ok::<_, std::io::Error>(None)
        })
        .await
        .map_err(|_| format!("{name} printed no port within 30 s"))??
        .ok_or_else(|| format!("{name} exited before listening"))?;
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{name}] {line}");
            }
        });
        Ok(PeerProcess {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        })
    }

    fn copies(
        from: &BTreeMap<DocumentId, Automerge>,
        ids: &[DocumentId],
    ) -> Result<BTreeMap<DocumentId, Automerge>> {
        ids.iter()
            .map(|id| Ok((*id, from.get(id).ok_or("document missing")?.clone())))
            .collect()
    }

    /// One run of `workloads` at `n` documents on a fresh `server`.
    ///
    /// How the peer workloads are built (the peers have no Jemput auth or scope): the server
    /// is loaded over loopback (not through the link) by a [`ws_sync`] of the device's
    /// documents. Then, through a fresh [`LinkEmulator`] in front of it, with fresh copies of
    /// the same documents: (a) a new WebSocket, nothing changed; (b) first the server-side
    /// copies of the documents the second officer edited on Jemput (the same 2 changes each)
    /// are synced to the server over loopback on another connection, then the device makes
    /// the same 5 edits on each of the same documents as on Jemput ([`ws_device_edits`]), and
    /// syncs on a new WebSocket. Every connection has its own peer id.
    async fn trial(
        &self,
        server: WsServer,
        n: usize,
        workloads: &[Workload],
    ) -> Result<(Option<WsRun>, Option<WsRun>)> {
        let shape = Shape::of(self.ids, n);
        let mut process = self.start(server).await?;
        let direct = format!("ws://{}/v1/ws", process.address);
        let mut device = Self::copies(self.base, &shape.docs)?;
        ws_load(&direct, "peer-bench-2g-load", &mut device.clone()).await?;
        let link = LinkEmulator::start(process.address, LinkProfile::edge_2g()).await?;
        let via_link = format!("ws://{}/v1/ws", link.address());
        let mut idle = None;
        let mut changes = None;
        for workload in workloads {
            match workload {
                Workload::Idle => {
                    idle = Some(
                        ws_measured(&link, &via_link, "peer-bench-2g-idle", &mut device).await?,
                    );
                }
                Workload::Changes => {
                    let mut edited = Self::copies(self.server_side, &shape.remote)?;
                    ws_load(&direct, "peer-bench-2g-server-edits", &mut edited).await?;
                    ws_device_edits(&mut device, &shape.local)?;
                    changes = Some(
                        ws_measured(&link, &via_link, "peer-bench-2g-changes", &mut device).await?,
                    );
                }
            }
        }
        drop(link);
        if let Err(e) = process.child.kill().await {
            eprintln!("stopping {}: {e}", server.name());
        }
        Ok((idle, changes))
    }

    /// Bisects sizes (multiples of 10) below `failed_at`, where `workload` did not converge on
    /// `server`, for the largest that does, in at most `steps` trials. Returns it with its
    /// run, and a line per trial.
    async fn largest_converging(
        &self,
        server: WsServer,
        workload: Workload,
        failed_at: usize,
        steps: u32,
    ) -> Result<(Option<(usize, WsRun)>, Vec<String>)> {
        let (mut lo, mut hi) = (0, failed_at);
        let mut best = None;
        let mut log = Vec::new();
        for _ in 0..steps {
            let mid = (lo + hi) / 2 / 10 * 10;
            if mid <= lo || mid >= hi {
                break;
            }
            eprintln!("{}: trying {mid} documents…", server.name());
            let (idle, changes) = self.trial(server, mid, &[workload]).await?;
            let run = match workload {
                Workload::Idle => idle,
                Workload::Changes => changes,
            }
            .ok_or("no run")?;
            log.push(match &run.outcome.stopped {
                None => format!("{mid}: converged in {:.2} s", run.secs),
                Some(why) => format!("{mid}: {}/{mid}, {why}", run.outcome.converged),
            });
            if run.outcome.complete() {
                lo = mid;
                best = Some((mid, run));
            } else {
                hi = mid;
            }
        }
        Ok((best, log))
    }
}

fn ws_row(server: WsServer, n: usize, label: &str, run: &WsRun) -> Row {
    Row {
        name: format!("automerge-repo WS → {}, {n} docs, {label}", server.label()),
        round_trips: format!("{} (per doc {})", run.stats.round_trips, run.outcome.depth),
        up: run.stats.bytes_up,
        down: run.stats.bytes_down,
        secs: run.secs,
        goal: run.outcome.summary(),
    }
}

/// Round trips, bytes and time of one batch sync, for the ratios.
#[derive(Clone, Copy, Default)]
struct BatchFigures {
    round_trips: u64,
    bytes: u64,
    secs: f64,
}

fn times(a: f64, b: f64) -> String {
    let r = a / b.max(f64::MIN_POSITIVE);
    if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.1}×")
    }
}

/// `run` against batch sync's figures: "N× the round trips, N× the bytes, N× the time".
fn ratio(run: &WsRun, batch: BatchFigures) -> String {
    format!(
        "{} the round trips, {} the bytes, {} the time",
        times(run.stats.round_trips as f64, batch.round_trips as f64),
        times(
            (run.stats.bytes_up + run.stats.bytes_down) as f64,
            batch.bytes as f64
        ),
        times(run.secs, batch.secs)
    )
}

/// An officer in the home district with an SDK device enrolled over loopback.
async fn device_for(
    server: &TestServer,
    http: &reqwest::Client,
    dir: &std::path::Path,
    name: &str,
) -> Result<Client> {
    let person = server.person(name, "officer", &[HOME_DISTRICT], &[]).await;
    let client = Client::open(&dir.join(format!("{name}.db"))).await?;
    enrol(
        &client,
        http,
        server.base_url(),
        name,
        &person.password,
        name,
    )
    .await?;
    Ok(client)
}

fn kb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1000.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let bench_started = Instant::now();
    let binary = flag("--server").unwrap_or_else(|| "target/release/jemput".into());
    let n_docs: usize = flag("--docs").map_or(Ok(500), |s| s.parse())?;
    let search_steps: u32 = flag("--search-steps").map_or(Ok(5), |s| s.parse())?;
    let mut ws_servers = Vec::new();
    for name in flag("--peers")
        .unwrap_or_else(|| "jemput,js-reference,samod".into())
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let server = WsServer::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| format!("--peers: unknown {name} (jemput, js-reference, samod)"))?;
        ws_servers.push(server);
    }
    if !std::path::Path::new(&binary).is_file() {
        return Err(format!("{binary} not found: cargo build --release -p jemput-server").into());
    }
    let server = TestServer::start_with_args(&binary, TestDatabase::sqlite(), &[]).await;
    let dir = tempfile::tempdir()?;
    let http = http_client(None, Duration::from_secs(120))?;
    let device = device_for(&server, &http, dir.path(), "budi").await?;
    let other = device_for(&server, &http, dir.path(), "sari").await?;

    eprintln!("filling the device with {n_docs} applications (loopback)…");
    let mut ids = Vec::new();
    for _ in 0..n_docs {
        ids.push(device.create_application(sample_application()).await?.id);
    }
    sync_until_complete(&device, &http, "fill").await?;
    sync_until_complete(&other, &http, "fill other").await?;
    sync_until_complete(&device, &http, "settle").await?;

    let link = LinkEmulator::start(server.address().parse()?, LinkProfile::edge_2g()).await?;
    let via_link = format!("http://{}", link.address());
    point_device_at(&device, &via_link).await?;
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();

    // (1) Nothing changed.
    let before = link.stats();
    let started = Instant::now();
    let reports = sync_until_complete(&device, &http, "idle").await?;
    let secs = started.elapsed().as_secs_f64();
    let s = delta(before, link.stats());
    let sdk_rt: u32 = reports.iter().map(|r| r.round_trips).sum();
    let batch_idle = BatchFigures {
        round_trips: s.round_trips,
        bytes: s.bytes_up + s.bytes_down,
        secs,
    };
    let ok = s.round_trips == 1 && s.bytes_up + s.bytes_down <= 1000;
    verdicts.push(format!(
        "nothing changed: {} round trip(s), {} B ≤ 1,000 B: {}",
        s.round_trips,
        s.bytes_up + s.bytes_down,
        if ok { "PASS" } else { "FAIL" }
    ));
    rows.push(Row {
        name: format!("batch, {n_docs} docs, nothing changed"),
        round_trips: format!("{} (SDK {sdk_rt})", s.round_trips),
        up: s.bytes_up,
        down: s.bytes_down,
        secs,
        goal: format!("1 RT, ≤ 1 KB: {}", if ok { "pass" } else { "FAIL" }),
    });

    // (2) 1,000 local changes over 200 documents + 50 documents changed on the server: with
    // the SDK's default limits, then again (the same 200 documents, 50 others on the server)
    // with a request budget above the workload's uncompressed size.
    let pf = |b: bool| if b { "PASS" } else { "FAIL" };
    let mut clean_bytes = 0;
    let mut batch_changes = Vec::new();
    let raised = SyncOptions {
        limits: DeviceLimits {
            max_request_bytes: 256 * 1024,
            ..DeviceLimits::default()
        },
        ..SyncOptions::default()
    };
    for (variant, options, remote_from) in [
        ("default limits", SyncOptions::default(), 200),
        ("max_request_bytes 256 KiB", raised, 450),
    ] {
        let local: Vec<DocumentId> = ids.iter().copied().take(200).collect();
        let remote: Vec<DocumentId> = ids.iter().copied().skip(remote_from).take(50).collect();
        let mut changes = edit_many(&other, &remote, 2, "server").await?;
        let pushed = sync_until_complete(&other, &http, "server edits").await?;
        let refused: usize = pushed.iter().map(|r| r.refused.len()).sum();
        changes.extend(edit_many(&device, &local, 5, "device").await?);
        let compressed = jemput_client_sdk::sync::gzip(&changes).len() as u64;
        let changed_docs = (local.len() + remote.len()) as u64;
        let before = link.stats();
        let started = Instant::now();
        let reports = sync_until_complete_with(&device, &http, "changes", &options).await?;
        let secs = started.elapsed().as_secs_f64();
        let s = delta(before, link.stats());
        let sdk_rt: u32 = reports.iter().map(|r| r.round_trips).sum();
        let device_refused: usize = reports.iter().map(|r| r.refused.len()).sum();
        let bytes = s.bytes_up + s.bytes_down;
        let byte_goal = 1.25 * compressed as f64 + 64.0 * changed_docs as f64;
        let time_goal = 1.3 * bytes as f64 / RATE_BYTES_PER_S + 3.0 * RTT.as_secs_f64();
        let rt_ok = s.round_trips <= 2;
        let bytes_ok = (bytes as f64) <= byte_goal;
        let time_ok = secs <= time_goal;
        verdicts.push(format!(
        "changes ({variant}): {} round trip(s) ≤ 2: {}; {bytes} B ≤ 1.25 × {compressed} B (gzip of {} B of save_after) + 64 × {changed_docs} = {byte_goal:.0} B: {}; {secs:.2} s ≤ 1.3 × {bytes} B ÷ 6,250 B/s + 3 × 0.3 s = {time_goal:.2} s: {}",
        s.round_trips,
        pf(rt_ok),
        changes.len(),
        pf(bytes_ok),
        pf(time_ok)
    ));
        if refused + device_refused > 0 {
            verdicts.push(format!(
                "warning: {refused} server-side and {device_refused} device pushes refused"
            ));
        }
        rows.push(Row {
            name: format!("batch, 1,000 changes / 200 docs + 50 server docs, {variant}"),
            round_trips: format!("{} (SDK {sdk_rt})", s.round_trips),
            up: s.bytes_up,
            down: s.bytes_down,
            secs,
            goal: format!(
                "≤ 2 RT {}, ≤ {:.1} KB {}, ≤ {time_goal:.1} s {}",
                pf(rt_ok).to_lowercase(),
                byte_goal / 1000.0,
                pf(bytes_ok).to_lowercase(),
                pf(time_ok).to_lowercase()
            ),
        });
        if clean_bytes == 0 {
            clean_bytes = bytes;
        }
        batch_changes.push((
            variant,
            BatchFigures {
                round_trips: s.round_trips,
                bytes,
                secs,
            },
        ));
    }

    // (3) The same workload on a link that drops every 20 KB.
    let dropping = LinkEmulator::start(
        server.address().parse()?,
        LinkProfile::edge_2g().dropping_every(20_000),
    )
    .await?;
    point_device_at(&device, &format!("http://{}", dropping.address())).await?;
    let remote3: Vec<DocumentId> = ids.iter().copied().skip(250).take(50).collect();
    let local3: Vec<DocumentId> = ids.iter().copied().skip(300).take(200).collect();
    edit_many(&other, &remote3, 2, "server-3").await?;
    sync_until_complete(&other, &http, "server edits 3").await?;
    edit_many(&device, &local3, 5, "device-3").await?;
    let expected = heads_of(&device, &local3).await?;
    let started = Instant::now();
    let reports = sync_until_complete(&device, &http, "dropping").await?;
    let secs = started.elapsed().as_secs_f64();
    let s = dropping.stats();
    let sdk_rt: u32 = reports.iter().map(|r| r.round_trips).sum();
    let abandoned: u32 = reports.iter().map(|r| r.abandoned).sum();
    let lost: usize = reports.iter().map(|r| r.lost_local_changes.len()).sum();
    let bytes = s.bytes_up + s.bytes_down;
    let resent_per_drop = bytes.saturating_sub(clean_bytes) / s.drops.max(1);
    // Verify: the server (seen by a fresh device of a third officer) and both devices agree.
    sync_until_complete(&other, &http, "other after drops").await?;
    let third = device_for(&server, &http, dir.path(), "tari").await?;
    sync_until_complete(&third, &http, "verifier").await?;
    let on_device = heads_of(&device, &ids).await?;
    let on_server = heads_of(&third, &ids).await?;
    let on_other = heads_of(&other, &ids).await?;
    let kept = local3.iter().all(|id| {
        let (want, got) = (&expected[id], &on_server[id]);
        want.iter().all(|h| got.contains(h)) || want == got
    });
    let agree =
        on_device == on_server && on_other == on_server && third.list().await?.len() == n_docs;
    let mut duplicates = 0;
    for id in &ids {
        let doc = device.document(*id).await?;
        let hashes: Vec<_> = doc.get_changes(&[]).iter().map(|c| c.hash()).collect();
        let mut unique = hashes.clone();
        unique.sort();
        unique.dedup();
        duplicates += hashes.len() - unique.len();
    }
    let drop_ok = kept && agree && duplicates == 0 && lost == 0 && resent_per_drop <= 32_000;
    verdicts.push(format!(
        "drops every 20 KB: {} drops, {} connections, {abandoned} requests abandoned, ≈{resent_per_drop} B re-sent per drop (vs the clean run) ≤ 32 KB; heads agree on device, server and a second device: {agree}; device edits kept: {kept}; duplicate changes: {duplicates}; lost local changes: {lost}: {}",
        s.drops, s.connections, pf(drop_ok)
    ));
    rows.push(Row {
        name: "batch, same workload, drop every 20 KB".into(),
        round_trips: format!("{} (SDK {sdk_rt})", s.round_trips),
        up: s.bytes_up,
        down: s.bytes_down,
        secs,
        goal: format!(
            "{} drops, ≈{} KB re-sent/drop, converged {}",
            s.drops,
            kb(resent_per_drop),
            pf(drop_ok).to_lowercase()
        ),
    });
    drop(dropping);

    // (4) The same workloads over the automerge-repo WebSocket protocol, same link: against
    // Jemput (the device's token; its enrolled actor for the edits), then against the JS
    // reference server and samod, each fresh and loaded with the same documents.
    let token = device.store().require_enrolment().await?.device_token;
    let actor: ActorId = device.store().require_enrolment().await?.actor_ids[0].clone();
    let ws_url = format!("ws://{}/v1/ws?token={token}", link.address());
    let mut docs = BTreeMap::new();
    for id in &ids {
        docs.insert(*id, device.document(*id).await?.with_actor(actor.clone()));
    }
    let base = docs.clone();
    let full = Shape::of(&ids, n_docs);
    let changes_label = full.changes_label();
    // (workload, server, documents, run), in the order they ran.
    let mut ws_runs: Vec<(Workload, WsServer, usize, WsRun)> = Vec::new();
    let mut ws_notes = Vec::new();
    let jemput_ws = ws_servers.contains(&WsServer::Jemput);
    if jemput_ws {
        let run = ws_measured(&link, &ws_url, "peer-bench-2g-idle", &mut docs).await?;
        ws_runs.push((Workload::Idle, WsServer::Jemput, n_docs, run));
    }
    // The server-side edits: the second officer, through Jemput (loopback). Its copies are
    // what the peer servers receive as their server-side changes.
    edit_many(&other, &full.remote, 2, "server-4").await?;
    sync_until_complete(&other, &http, "server edits 4").await?;
    let mut server_side = BTreeMap::new();
    for id in &full.remote {
        server_side.insert(*id, other.document(*id).await?);
    }
    if jemput_ws {
        ws_device_edits(&mut docs, &full.local)?;
        let run = ws_measured(&link, &ws_url, "peer-bench-2g-changes", &mut docs).await?;
        ws_runs.push((Workload::Changes, WsServer::Jemput, n_docs, run));
    }
    let peers = Peers {
        node: flag("--node").unwrap_or_else(|| "node".into()),
        samod_bin: flag("--samod-bin")
            .unwrap_or_else(|| "target/release/examples/samod-server".into()),
        base: &base,
        server_side: &server_side,
        ids: &ids,
    };
    // Samod first: the JS reference's size search comes last.
    for server in [WsServer::Samod, WsServer::JsReference] {
        if !ws_servers.contains(&server) {
            continue;
        }
        if let Some(why) = peers.missing(server).await {
            eprintln!("{}: not run: {why}", server.name());
            ws_notes.push(format!("{}: not run: {why}", server.label()));
            continue;
        }
        eprintln!("{}: {n_docs} documents…", server.name());
        let (idle, changes) = peers
            .trial(server, n_docs, &[Workload::Idle, Workload::Changes])
            .await?;
        for (workload, run) in [(Workload::Idle, idle), (Workload::Changes, changes)] {
            let run = run.ok_or("no run")?;
            let complete = run.outcome.complete();
            let summary = run.outcome.summary();
            ws_runs.push((workload, server, n_docs, run));
            if complete || search_steps == 0 {
                continue;
            }
            let (best, log) = peers
                .largest_converging(server, workload, n_docs, search_steps)
                .await?;
            let what = match workload {
                Workload::Idle => "nothing changed",
                Workload::Changes => "with changes",
            };
            ws_notes.push(format!(
                "{}, {what}: does not converge at {n_docs} documents ({summary}); bisection over smaller sizes, each on a fresh server: {}",
                server.label(),
                log.join("; ")
            ));
            match best {
                Some((n, run)) => {
                    ws_notes.push(format!(
                        "{}, {what}: largest size that converged: {n} documents",
                        server.label()
                    ));
                    ws_runs.push((workload, server, n, run));
                }
                None => ws_notes.push(format!(
                    "{}, {what}: no size tried converged",
                    server.label()
                )),
            }
        }
    }
    let mut ratios = Vec::new();
    for (workload, server, n, run) in &ws_runs {
        let label = match workload {
            Workload::Idle => "nothing changed".to_owned(),
            Workload::Changes if *n == n_docs => changes_label.clone(),
            Workload::Changes => Shape::of(&ids, *n).changes_label(),
        };
        rows.push(ws_row(*server, *n, &label, run));
        let subject = format!("{}, {n} docs, {label}", server.label());
        if !run.outcome.complete() {
            ratios.push(format!(
                "{subject}: not converged ({}/{n}); no ratio",
                run.outcome.converged
            ));
            continue;
        }
        match workload {
            // Batch sync's cost with nothing changed does not depend on the number of documents.
            Workload::Idle => ratios.push(format!(
                "{subject}: {} of batch sync{}",
                ratio(run, batch_idle),
                if *n == n_docs {
                    String::new()
                } else {
                    format!(" (batch sync measured at {n_docs} documents)")
                }
            )),
            Workload::Changes if *n != n_docs => ratios.push(format!(
                "{subject}: no ratio (batch sync measured only with the {n_docs}-document workload)"
            )),
            Workload::Changes => {
                let against: Vec<String> = batch_changes
                    .iter()
                    .rev()
                    .map(|(variant, figures)| {
                        format!("{} of batch sync ({variant})", ratio(run, *figures))
                    })
                    .collect();
                ratios.push(format!("{subject}: {}", against.join("; ")));
            }
        }
    }

    println!("\n| workload | round trips | up KB | down KB | total KB | time s | goal |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {} |",
            r.name,
            r.round_trips,
            kb(r.up),
            kb(r.down),
            kb(r.up + r.down),
            r.secs,
            r.goal
        );
    }
    println!();
    for r in &ratios {
        println!("- {r}");
    }
    for n in &ws_notes {
        println!("- {n}");
    }
    println!();
    for v in &verdicts {
        println!("- {v}");
    }
    println!(
        "\nbench wall time: {:.0} s",
        bench_started.elapsed().as_secs_f64()
    );
    drop(link);
    drop(server);
    Ok(())
}
