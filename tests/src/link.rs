//! A user-space link emulator: a TCP proxy that adds one-way delay, caps bandwidth and drops
//! connections, because this kernel has no netem. Tests and benchmarks point a client at
//! [`LinkEmulator::address`] instead of the server and read [`LinkEmulator::stats`] to count
//! bytes, connections, drops and round trips on the wire.
//!
//! Model, per direction of each connection:
//!
//! - **Serialisation**: bytes leave one at a time at `bandwidth_bps`, so a chunk of `n` bytes
//!   occupies the link for `8n / bandwidth_bps` seconds after the previous one (50 kbit/s:
//!   160 ms per kilobyte). The proxy stops reading from the sender while the link is busy, so
//!   the sender feels the back-pressure of a slow link (after its socket buffers fill).
//! - **Propagation**: each chunk arrives `delay` (half the RTT unless set per direction) after
//!   it left, however many chunks are in flight.
//! - **Drops**: after `drop_after_bytes` bytes in a direction the connection is reset (RST) in
//!   both directions, after the bytes before the limit have been delivered. Per connection by
//!   default; with [`DropMode::Repeating`] the count runs across connections, so the link cuts
//!   whatever connection carries each `N`-th byte of a direction.
//!
//! The TCP handshake itself is not delayed unless [`LinkProfile::emulate_handshake`] is set
//! (then the first upstream byte waits one RTT, as after SYN, SYN-ACK, ACK). Every queue is
//! bounded (64 chunks of at most 16 KiB per direction and connection) and every loop ends:
//! pumps at end of stream, error or drop, the accept loop when the emulator is dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Chunks in flight per direction and connection.
const QUEUE: usize = 64;
/// Largest chunk read at once; at low rates chunks are about 10 ms of transmission.
const MAX_CHUNK: usize = 16 * 1024;
const MIN_CHUNK: usize = 256;
/// Time allowed to connect to the target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One direction's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectionProfile {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Bits per second; 0 means unlimited.
    pub bandwidth_bps: u64,
}

/// How `drop_after_bytes` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DropMode {
    /// Each connection is reset once `N` bytes passed in one of its directions; a new
    /// connection starts from zero.
    #[default]
    PerConnection,
    /// The link resets whatever connection carries each `N`-th byte of a direction, counting
    /// across connections: "drops every N bytes".
    Repeating,
}

/// The link between the client and the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkProfile {
    /// Round-trip time; each direction gets half as its delay.
    pub rtt: Duration,
    /// Bandwidth of each direction, in bits per second; 0 means unlimited.
    pub bandwidth_bps: u64,
    /// Reset the connection after this many bytes in a direction (see `drop_mode`).
    pub drop_after_bytes: Option<u64>,
    /// How `drop_after_bytes` counts.
    pub drop_mode: DropMode,
    /// Client → target, overriding `rtt / 2` and `bandwidth_bps`.
    pub upstream: Option<DirectionProfile>,
    /// Target → client, overriding `rtt / 2` and `bandwidth_bps`.
    pub downstream: Option<DirectionProfile>,
    /// Delay the first upstream byte of each connection by one RTT, the cost of the TCP
    /// handshake on the emulated link.
    pub emulate_handshake: bool,
}

impl LinkProfile {
    /// The field link of the batch sync goals: 300 ms RTT, 50 kbit/s each way.
    pub fn edge_2g() -> Self {
        Self {
            rtt: Duration::from_millis(300),
            bandwidth_bps: 50_000,
            ..Self::default()
        }
    }

    /// The same link, dropping every `bytes` bytes of a direction (across connections).
    pub fn dropping_every(self, bytes: u64) -> Self {
        Self {
            drop_after_bytes: Some(bytes),
            drop_mode: DropMode::Repeating,
            ..self
        }
    }

    /// The behaviour of one direction.
    pub fn direction(&self, direction: Direction) -> DirectionProfile {
        let default = DirectionProfile {
            delay: self.rtt / 2,
            bandwidth_bps: self.bandwidth_bps,
        };
        match direction {
            Direction::Upstream => self.upstream.unwrap_or(default),
            Direction::Downstream => self.downstream.unwrap_or(default),
        }
    }
}

/// A direction of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → target.
    Upstream,
    /// Target → client.
    Downstream,
}

/// What crossed the link so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Bytes delivered client → target.
    pub bytes_up: u64,
    /// Bytes delivered target → client.
    pub bytes_down: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Connections reset by the drop rule.
    pub drops: u64,
    /// Upstream bursts that open a connection or follow downstream traffic: for a
    /// request/response protocol, the round trips the client started.
    pub round_trips: u64,
}

#[derive(Debug, Default)]
struct Counters {
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    connections: AtomicU64,
    drops: AtomicU64,
    round_trips: AtomicU64,
    /// Bytes per direction across connections, for [`DropMode::Repeating`].
    carried: Mutex<[u64; 2]>,
}

/// A running link emulator; stops accepting and cuts its connections when dropped.
#[derive(Debug)]
pub struct LinkEmulator {
    address: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl LinkEmulator {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target` through `profile`.
    pub async fn start(target: SocketAddr, profile: LinkProfile) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(listener, target, profile, counters.clone()));
        Ok(Self {
            address,
            counters,
            task,
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        let c = &self.counters;
        LinkStats {
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
            drops: c.drops.load(Ordering::Relaxed),
            round_trips: c.round_trips.load(Ordering::Relaxed),
        }
    }
}

impl Drop for LinkEmulator {
    fn drop(&mut self) {
        // Aborting the accept loop drops its `JoinSet`, which aborts every connection.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    profile: LinkProfile,
    counters: Arc<Counters>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                counters.connections.fetch_add(1, Ordering::Relaxed);
                connections.spawn(connection(client, target, profile, counters.clone()));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// What happens to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Open,
    /// One side failed: close both (FIN).
    Close,
    /// The drop rule fired: reset both (RST).
    Reset,
}

/// State the two directions of one connection share.
struct Link {
    profile: LinkProfile,
    counters: Arc<Counters>,
    fate: watch::Sender<Fate>,
    /// Direction of the last bytes delivered (0 none, 1 up, 2 down), for round trips.
    last: AtomicU8,
    opened: Instant,
}

async fn connection(
    client: TcpStream,
    target: SocketAddr,
    profile: LinkProfile,
    counters: Arc<Counters>,
) {
    let Ok(Ok(server)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await
    else {
        return;
    };
    // Latency matters more than segment count on an emulated link; errors only cost speed.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (fate, _) = watch::channel(Fate::Open);
    let link = Arc::new(Link {
        profile,
        counters,
        fate,
        last: AtomicU8::new(0),
        opened: Instant::now(),
    });
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let ((client_read, server_write), (server_read, client_write)) = tokio::join!(
        pump(client_read, server_write, Direction::Upstream, link.clone()),
        pump(
            server_read,
            client_write,
            Direction::Downstream,
            link.clone()
        ),
    );
    if *link.fate.borrow() == Fate::Reset {
        for (read, write) in [(client_read, client_write), (server_read, server_write)] {
            if let Ok(stream) = read.reunite(write) {
                // Best effort: a socket that refuses still closes, with a FIN.
                let _ = stream.set_zero_linger();
            }
        }
    }
}

enum Chunk {
    Data {
        arrives: Instant,
        bytes: Vec<u8>,
    },
    /// The sender finished: half-close once everything before has arrived.
    End {
        arrives: Instant,
    },
    /// The drop rule fired: reset once everything before has arrived.
    Cut {
        arrives: Instant,
    },
}

/// Moves one direction: a reader that serialises at the link rate and a writer that delivers
/// each chunk after the propagation delay. Returns the halves for a reset.
async fn pump(
    from: OwnedReadHalf,
    to: OwnedWriteHalf,
    direction: Direction,
    link: Arc<Link>,
) -> (OwnedReadHalf, OwnedWriteHalf) {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::join!(
        read_side(from, tx, direction, link.clone()),
        write_side(to, rx, direction, link),
    )
}

async fn read_side(
    mut from: OwnedReadHalf,
    tx: mpsc::Sender<Chunk>,
    direction: Direction,
    link: Arc<Link>,
) -> OwnedReadHalf {
    let profile = link.profile.direction(direction);
    let mut fate = link.fate.subscribe();
    let mut buf = vec![0u8; chunk_size(profile.bandwidth_bps)];
    let mut free_at = if direction == Direction::Upstream && link.profile.emulate_handshake {
        link.opened + link.profile.rtt
    } else {
        link.opened
    };
    let mut passed: u64 = 0;
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = fate.wait_for(|f| *f != Fate::Open) => return from,
        };
        let n = match read {
            Ok(n) if n > 0 => n,
            // End of stream or an error: the far side gets a FIN after what is in flight.
            _ => {
                let arrives = free_at.max(Instant::now()) + profile.delay;
                let _ = tx.send(Chunk::End { arrives }).await;
                return from;
            }
        };
        let (allowed, cut) = drop_rule(&link, direction, passed, n as u64);
        passed += allowed;
        let allowed = allowed as usize;
        let start = free_at.max(Instant::now());
        free_at = start + transmission(allowed, profile.bandwidth_bps);
        tokio::select! {
            _ = tokio::time::sleep_until(free_at) => {}
            _ = fate.wait_for(|f| *f != Fate::Open) => return from,
        }
        let arrives = free_at + profile.delay;
        let bytes = buf.get(..allowed).unwrap_or_default().to_vec();
        if allowed > 0 && tx.send(Chunk::Data { arrives, bytes }).await.is_err() {
            return from;
        }
        if cut {
            let _ = tx.send(Chunk::Cut { arrives }).await;
            return from;
        }
    }
}

async fn write_side(
    mut to: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Chunk>,
    direction: Direction,
    link: Arc<Link>,
) -> OwnedWriteHalf {
    let mut fate = link.fate.subscribe();
    loop {
        let chunk = tokio::select! {
            chunk = rx.recv() => chunk,
            _ = fate.wait_for(|f| *f != Fate::Open) => return to,
        };
        let Some(chunk) = chunk else { return to };
        let arrives = match &chunk {
            Chunk::Data { arrives, .. } | Chunk::End { arrives } | Chunk::Cut { arrives } => {
                *arrives
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(arrives) => {}
            _ = fate.wait_for(|f| *f != Fate::Open) => return to,
        }
        match chunk {
            Chunk::Data { bytes, .. } => {
                if to.write_all(&bytes).await.is_err() {
                    link.fate.send_replace(Fate::Close);
                    return to;
                }
                record_delivery(&link, direction, bytes.len() as u64);
            }
            Chunk::End { .. } => {
                let _ = to.shutdown().await;
                return to;
            }
            Chunk::Cut { .. } => {
                link.counters.drops.fetch_add(1, Ordering::Relaxed);
                link.fate.send_replace(Fate::Reset);
                return to;
            }
        }
    }
}

/// How many of `n` new bytes may pass given `passed` on this connection, and whether the
/// connection is then cut.
fn drop_rule(link: &Link, direction: Direction, passed: u64, n: u64) -> (u64, bool) {
    let Some(limit) = link.profile.drop_after_bytes else {
        return (n, false);
    };
    match link.profile.drop_mode {
        DropMode::PerConnection => {
            let left = limit.saturating_sub(passed);
            if n >= left { (left, true) } else { (n, false) }
        }
        DropMode::Repeating => {
            let mut carried = match link.counters.carried.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let slot = &mut carried[direction as usize];
            let limit = limit.max(1);
            let next_boundary = (*slot / limit + 1) * limit;
            let left = next_boundary - *slot;
            let (allowed, cut) = if n >= left { (left, true) } else { (n, false) };
            *slot += allowed;
            (allowed, cut)
        }
    }
}

fn record_delivery(link: &Link, direction: Direction, n: u64) {
    let counters = &link.counters;
    match direction {
        Direction::Upstream => {
            counters.bytes_up.fetch_add(n, Ordering::Relaxed);
            if link.last.swap(1, Ordering::Relaxed) != 1 {
                counters.round_trips.fetch_add(1, Ordering::Relaxed);
            }
        }
        Direction::Downstream => {
            counters.bytes_down.fetch_add(n, Ordering::Relaxed);
            link.last.store(2, Ordering::Relaxed);
        }
    }
}

/// Time `n` bytes occupy a link of `bps` bits per second.
fn transmission(n: usize, bps: u64) -> Duration {
    if bps == 0 {
        return Duration::ZERO;
    }
    let nanos = (n as u128 * 8 * 1_000_000_000) / u128::from(bps);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// About 10 ms of transmission, within [`MIN_CHUNK`, `MAX_CHUNK`].
fn chunk_size(bps: u64) -> usize {
    if bps == 0 {
        return MAX_CHUNK;
    }
    usize::try_from(bps / 8 / 100)
        .unwrap_or(MAX_CHUNK)
        .clamp(MIN_CHUNK, MAX_CHUNK)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio::time::{Instant, timeout};

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(20);

    /// A target that reads each connection to its end and reports (bytes, when it ended).
    async fn sink() -> (SocketAddr, mpsc::Receiver<(usize, Instant)>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut total = 0;
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        total += n;
                    }
                    let _ = tx.send((total, Instant::now())).await;
                });
            }
        });
        (address, rx)
    }

    /// A target that echoes every connection.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.into_split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                    let _ = write.shutdown().await;
                });
            }
        });
        address
    }

    async fn send(address: SocketAddr, bytes: usize) {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        // A reset link may refuse part of the write; the counters say what passed.
        let _ = stream.write_all(&vec![7u8; bytes]).await;
        let _ = stream.shutdown().await;
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    }

    #[tokio::test]
    async fn ten_kilobytes_at_50_kbits_take_their_serialisation_time_plus_the_delay() {
        timeout(DEADLINE, async {
            let (target, mut ended) = sink().await;
            let link = LinkEmulator::start(target, LinkProfile::edge_2g())
                .await
                .expect("start");
            let started = Instant::now();
            send(link.address(), 10_000).await;
            let (received, at) = ended.recv().await.expect("sink reports");
            let elapsed = at - started;
            // 10,000 B × 8 / 50,000 bit/s = 1.6 s, plus 150 ms one way.
            assert!(elapsed >= Duration::from_millis(1_500), "{elapsed:?}");
            assert_eq!(received, 10_000);
            let stats = link.stats();
            assert_eq!(stats.bytes_up, 10_000);
            assert_eq!(stats.bytes_down, 0);
            assert_eq!(stats.connections, 1);
            assert_eq!(stats.drops, 0);
            assert_eq!(stats.round_trips, 1);
        })
        .await
        .expect("within the deadline");
    }

    #[tokio::test]
    async fn both_directions_are_delayed_and_counted() {
        timeout(DEADLINE, async {
            let link = LinkEmulator::start(
                echo().await,
                LinkProfile {
                    rtt: Duration::from_millis(200),
                    ..LinkProfile::default()
                },
            )
            .await
            .expect("start");
            let mut stream = TcpStream::connect(link.address()).await.expect("connect");
            let mut reply = vec![0u8; 3_000];
            for round in 0..2u8 {
                let started = Instant::now();
                stream.write_all(&[round; 3_000]).await.expect("write");
                stream.read_exact(&mut reply).await.expect("echo");
                assert!(reply.iter().all(|b| *b == round));
                assert!(started.elapsed() >= Duration::from_millis(190));
            }
            stream.shutdown().await.expect("shutdown");
            assert_eq!(stream.read(&mut reply).await.expect("eof"), 0);
            let stats = link.stats();
            assert_eq!((stats.bytes_up, stats.bytes_down), (6_000, 6_000));
            assert_eq!(stats.round_trips, 2);
        })
        .await
        .expect("within the deadline");
    }

    #[tokio::test]
    async fn a_connection_is_reset_after_its_byte_budget() {
        timeout(DEADLINE, async {
            let (target, mut ended) = sink().await;
            let profile = LinkProfile {
                drop_after_bytes: Some(4_000),
                ..LinkProfile::default()
            };
            let link = LinkEmulator::start(target, profile).await.expect("start");
            send(link.address(), 10_000).await;
            let (received, _) = ended.recv().await.expect("sink reports");
            assert!(received <= 4_000, "{received}");
            // A new connection gets its own budget.
            send(link.address(), 1_000).await;
            let (received, _) = ended.recv().await.expect("sink reports");
            assert_eq!(received, 1_000);
            let stats = link.stats();
            assert_eq!(stats.bytes_up, 5_000);
            assert_eq!(stats.drops, 1);
            assert_eq!(stats.connections, 2);
        })
        .await
        .expect("within the deadline");
    }

    #[tokio::test]
    async fn repeating_drops_count_across_connections() {
        timeout(DEADLINE, async {
            let (target, mut ended) = sink().await;
            let profile = LinkProfile::default().dropping_every(5_000);
            let link = LinkEmulator::start(target, profile).await.expect("start");
            let mut received = Vec::new();
            for _ in 0..4 {
                send(link.address(), 3_000).await;
                received.push(ended.recv().await.expect("sink reports").0);
            }
            // 3,000 pass; the 5,000th byte is the 2,000th of the second connection; the
            // third passes whole; the 10,000th byte is the 2,000th of the fourth.
            assert_eq!(received[0], 3_000);
            assert!(received[1] <= 2_000);
            assert_eq!(received[2], 3_000);
            assert!(received[3] <= 2_000);
            let stats = link.stats();
            assert_eq!(stats.bytes_up, 3_000 + 2_000 + 3_000 + 2_000);
            assert_eq!(stats.drops, 2);
        })
        .await
        .expect("within the deadline");
    }

    #[tokio::test]
    async fn dropping_the_emulator_closes_its_connections() {
        timeout(DEADLINE, async {
            let link = LinkEmulator::start(echo().await, LinkProfile::default())
                .await
                .expect("start");
            let mut stream = TcpStream::connect(link.address()).await.expect("connect");
            stream.write_all(b"ping").await.expect("write");
            let mut reply = [0u8; 4];
            stream.read_exact(&mut reply).await.expect("echo");
            let address = link.address();
            drop(link);
            let mut rest = Vec::new();
            // The proxy side is gone: end of stream or a reset, not a hang.
            let _ = stream.read_to_end(&mut rest).await;
            assert!(TcpStream::connect(address).await.is_err());
        })
        .await
        .expect("within the deadline");
    }

    #[test]
    fn serialisation_time_matches_the_rate() {
        assert_eq!(transmission(1_000, 50_000), Duration::from_millis(160));
        assert_eq!(transmission(1_000, 0), Duration::ZERO);
        assert_eq!(chunk_size(50_000), MIN_CHUNK);
        assert_eq!(chunk_size(0), MAX_CHUNK);
    }
}
