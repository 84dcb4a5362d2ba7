//! Batch sync on an emulated 2G link (issue 6, item 5): the real `jemput` release binary behind
//! the user-space link emulator (300 ms RTT, 50 kbit/s each way), driven by the real SDK, and
//! the same workloads over the automerge-repo WebSocket protocol for comparison.
//!
//! ```text
//! cargo build --release -p jemput-server
//! cargo run --release -p jemput-tests --example bench-2g -- \
//!     [--server target/release/jemput] [--docs 500]
//! ```
//!
//! Devices are filled and enrolled over loopback; only the measured syncs cross the emulated
//! link (the device's stored server URL is pointed at the emulator). Bytes are the emulator's
//! counters (TCP payload both ways: HTTP/WebSocket headers included, no TCP/IP headers).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::{ActorId, Automerge, ChangeHash, ROOT, ReadDoc, transaction::Transactable};
use jemput_client_sdk::client::{Applicant, NewApplication};
use jemput_client_sdk::{Client, SyncOptions, SyncReport, enrol, http_client};
use jemput_domain::{FieldValue, Nik, RegionCode, ServiceCode, jakarta_today};
use jemput_sync_protocol::batch::DeviceLimits;
use jemput_sync_protocol::{DocumentId, Message};
use jemput_tests::link::{LinkEmulator, LinkProfile, LinkStats};
use jemput_tests::provision::{HOME_DISTRICT, HOME_VILLAGE};
use jemput_tests::{RawPeer, TestDatabase, TestServer};

const RTT: Duration = Duration::from_millis(300);
const RATE_BYTES_PER_S: f64 = 50_000.0 / 8.0;
/// Every sync on the emulated link must end within this.
const DEADLINE: Duration = Duration::from_secs(300);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Row {
    name: String,
    round_trips: String,
    up: u64,
    down: u64,
    secs: f64,
    goal: String,
}

fn application() -> NewApplication {
    let today = jakarta_today(1_780_000_000);
    NewApplication {
        service: ServiceCode::parse("DUKCAPIL-KTP-EL-BARU").expect("service"),
        village: RegionCode::parse(HOME_VILLAGE).expect("village"),
        applicant: Applicant {
            nik: Nik::parse("3471011503850001", today).expect("nik"),
            kk: None,
            name: "Siti Aminah".into(),
            birth_date: None,
            sex: None,
            phone: None,
            address: None,
        },
        fields: [
            ("recording_status", FieldValue::Text("belum_rekam".into())),
            ("marital_status", FieldValue::Text("kawin".into())),
            ("home_recording_needed", FieldValue::Boolean(false)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        consent_basis: None,
        visit: None,
    }
}

async fn point_at(client: &Client, url: &str) -> Result<()> {
    let mut tx = client.store().begin().await?;
    sqlx::query("UPDATE enrolment SET server_url = ? WHERE id = 1")
        .bind(url)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
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

/// The per-document automerge-repo sync over one WebSocket, every document started at once:
/// returns (documents converged, deepest per-document exchange count).
async fn ws_sync(url: &str, docs: &mut BTreeMap<DocumentId, Automerge>) -> Result<(usize, u32)> {
    let mut peer = RawPeer::joined(url, "peer-bench-2g", None).await;
    let mut states: BTreeMap<DocumentId, (sync::State, u32)> = BTreeMap::new();
    let converged = |doc: &Automerge, state: &sync::State| {
        let heads = doc.get_heads();
        state.their_heads.as_ref() == Some(&heads) && state.shared_heads == heads
    };
    for (id, doc) in docs.iter_mut() {
        let mut state = sync::State::new();
        if let Some(message) = doc.generate_sync_message(&mut state) {
            let m = peer.sync_message("sync", *id, message.encode());
            peer.send(&m).await;
        }
        states.insert(*id, (state, 1));
    }
    let end = Instant::now() + DEADLINE;
    loop {
        let done = docs
            .iter()
            .filter(|(id, doc)| states.get(id).is_some_and(|(s, _)| converged(doc, s)))
            .count();
        if done == docs.len() || Instant::now() >= end {
            let depth = states.values().map(|(_, n)| *n).max().unwrap_or(0);
            peer.close().await;
            return Ok((done, depth));
        }
        match peer.recv_within(Duration::from_secs(20)).await {
            Ok(Some(Message::Sync(m))) => {
                let (Some(doc), Some((state, exchanges))) =
                    (docs.get_mut(&m.document_id), states.get_mut(&m.document_id))
                else {
                    continue;
                };
                doc.receive_sync_message(state, sync::Message::decode(&m.data)?)?;
                if let Some(reply) = doc.generate_sync_message(state) {
                    *exchanges += 1;
                    let m = peer.sync_message("sync", m.document_id, reply.encode());
                    peer.send(&m).await;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("WebSocket closed".into()),
            Err(()) => {
                let depth = states.values().map(|(_, n)| *n).max().unwrap_or(0);
                let done = docs
                    .iter()
                    .filter(|(id, doc)| states.get(id).is_some_and(|(s, _)| converged(doc, s)))
                    .count();
                eprintln!(
                    "WebSocket: 20 s of quiet with {done}/{} converged",
                    docs.len()
                );
                return Ok((done, depth));
            }
        }
    }
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
    let binary = flag("--server").unwrap_or_else(|| "target/release/jemput".into());
    let n_docs: usize = flag("--docs").map_or(Ok(500), |s| s.parse())?;
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
        ids.push(device.create_application(application()).await?.id);
    }
    sync_until_complete(&device, &http, "fill").await?;
    sync_until_complete(&other, &http, "fill other").await?;
    sync_until_complete(&device, &http, "settle").await?;

    let link = LinkEmulator::start(server.address().parse()?, LinkProfile::edge_2g()).await?;
    let via_link = format!("http://{}", link.address());
    point_at(&device, &via_link).await?;
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();

    // (1) Nothing changed.
    let before = link.stats();
    let started = Instant::now();
    let reports = sync_until_complete(&device, &http, "idle").await?;
    let secs = started.elapsed().as_secs_f64();
    let s = delta(before, link.stats());
    let sdk_rt: u32 = reports.iter().map(|r| r.round_trips).sum();
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
    }

    // (3) The same workload on a link that drops every 20 KB.
    let dropping = LinkEmulator::start(
        server.address().parse()?,
        LinkProfile::edge_2g().dropping_every(20_000),
    )
    .await?;
    point_at(&device, &format!("http://{}", dropping.address())).await?;
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

    // (4) The same workloads over the automerge-repo WebSocket protocol, same link, same
    // server. The device's token; its enrolled actor for the edits.
    let token = device.store().require_enrolment().await?.device_token;
    let actor: ActorId = device.store().require_enrolment().await?.actor_ids[0].clone();
    let ws_url = format!("ws://{}/v1/ws?token={token}", link.address());
    let mut docs = BTreeMap::new();
    for id in &ids {
        docs.insert(*id, device.document(*id).await?.with_actor(actor.clone()));
    }
    for (label, workload) in [
        ("nothing changed", false),
        ("1,000 changes / 200 docs + 50 server docs", true),
    ] {
        if workload {
            let remote4: Vec<DocumentId> = ids.iter().copied().skip(400).take(50).collect();
            edit_many(&other, &remote4, 2, "server-4").await?;
            sync_until_complete(&other, &http, "server edits 4").await?;
            for id in ids.iter().take(200) {
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
        }
        let before = link.stats();
        let started = Instant::now();
        let (done, depth) = ws_sync(&ws_url, &mut docs).await?;
        let secs = started.elapsed().as_secs_f64();
        let s = delta(before, link.stats());
        rows.push(Row {
            name: format!("automerge-repo WS, {n_docs} docs, {label}"),
            round_trips: format!("{} (per doc {depth})", s.round_trips),
            up: s.bytes_up,
            down: s.bytes_down,
            secs,
            goal: format!("{done}/{n_docs} converged"),
        });
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
    for v in &verdicts {
        println!("- {v}");
    }
    drop(link);
    drop(server);
    Ok(())
}
