//! The `/v1/ws` endpoint: one automerge-repo connection per WebSocket.
//!
//! This is the only place that knows about frames, pings and timeouts. Protocol decisions
//! belong to `jemput_sync_protocol::Connection`; documents belong to the sync hub. The reader
//! (this task) and the writer (a second task) run separately so a slow uplink never stops us
//! from reading, and a slow downlink never stops us from receiving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket};
use futures_util::{SinkExt, StreamExt};
use jemput_sync_protocol::{Connection, ConnectionConfig, Inbound, Message, decode, encode};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth;
use crate::config::ConnectionLimits;
use crate::storage::Identity;

use crate::storage::Storage;
use crate::sync::{ConnectionId, Hub, Outbound, PeerHandle, ReceiveKind};

/// Who is on the other end, as established from the token at upgrade. The first `join` binds
/// a peer id to this identity; the protocol then refuses any other `senderId`, and the hub
/// refuses the same peer id from anyone else.
#[derive(Debug, Clone)]
pub struct UpgradeIdentity {
    pub identity: Identity,
}

/// Runs one connection until the peer leaves, breaks the protocol, goes silent or the server
/// shuts down.
pub async fn serve_connection<S: Storage>(
    socket: WebSocket,
    hub: Arc<Hub<S>>,
    limits: ConnectionLimits,
    identity: UpgradeIdentity,
    shutdown: CancellationToken,
) {
    let id = hub.new_connection_id();
    let span = tracing::info_span!("ws", connection = %id, peer = tracing::field::Empty);
    metrics::gauge!(crate::metrics::CONNECTIONS).increment(1.0);
    run(socket, hub, limits, identity, shutdown, id)
        .instrument(span)
        .await;
    metrics::gauge!(crate::metrics::CONNECTIONS).decrement(1.0);
}

/// Shared between reader and writer, for the keepalive decision.
struct Liveness {
    started: Instant,
    last_received_ms: AtomicU64,
    writing: AtomicBool,
}

impl Liveness {
    fn mark_received(&self) {
        self.last_received_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Silent for longer than `timeout`, and not because our own writes are still queued
    /// in front of the peer's answers (on 2G a pong can wait many seconds behind a download).
    fn is_dead(&self, timeout: Duration) -> bool {
        if self.writing.load(Ordering::Relaxed) {
            return false;
        }
        let silent_ms = (self.started.elapsed().as_millis() as u64)
            .saturating_sub(self.last_received_ms.load(Ordering::Relaxed));
        silent_ms > timeout.as_millis() as u64
    }
}

async fn run<S: Storage>(
    socket: WebSocket,
    hub: Arc<Hub<S>>,
    limits: ConnectionLimits,
    identity: UpgradeIdentity,
    shutdown: CancellationToken,
    id: ConnectionId,
) {
    let (sink, mut stream) = socket.split();
    let (outbox, outgoing) = mpsc::channel(limits.outbound_queue);
    let closer = shutdown.child_token();
    let liveness = Arc::new(Liveness {
        started: Instant::now(),
        last_received_ms: AtomicU64::new(0),
        writing: AtomicBool::new(false),
    });
    let writer = tokio::spawn(
        write_frames(
            sink,
            outgoing,
            closer.clone(),
            limits.ping_interval,
            Arc::clone(&liveness),
        )
        .in_current_span(),
    );

    let identity = Arc::new(identity.identity);
    let mut protocol = Connection::new(ConnectionConfig {
        our_peer_id: hub.server_peer_id().clone(),
        our_metadata: hub.server_metadata(),
        expected_peer_id: None,
    });
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut joined: Option<PeerHandle> = None;
    let mut watchdog = tokio::time::interval(Duration::from_secs(1));
    let fatal = |message: Message| {
        if outbox.try_send(Outbound::Fatal(message)).is_err() {
            closer.cancel();
        }
    };

    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = watchdog.tick() => {
                if liveness.is_dead(limits.idle_timeout) {
                    tracing::info!("peer silent for too long; closing");
                    break;
                }
                continue;
            }
            () = closer.cancelled() => break,
        };
        let bytes = match frame {
            None => break,
            Some(Err(error)) => {
                tracing::info!(%error, "websocket read failed");
                fatal(protocol_error(
                    &protocol,
                    &format!("websocket error: {error}"),
                ));
                break;
            }
            Some(Ok(Frame::Binary(bytes))) => bytes,
            Some(Ok(Frame::Text(_))) => {
                tracing::warn!("text frame refused");
                metrics::counter!(crate::metrics::PROTOCOL_ERRORS).increment(1);
                fatal(protocol_error(&protocol, "only binary frames are accepted"));
                break;
            }
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {
                liveness.mark_received();
                continue;
            }
            Some(Ok(Frame::Close(_))) => break,
        };
        liveness.mark_received();
        metrics::counter!(crate::metrics::FRAMES_IN).increment(1);
        metrics::counter!(crate::metrics::BYTES_IN).increment(bytes.len() as u64);

        // A revoked device or ended session is cut off at its next frame.
        match auth::credential_still_valid(hub.storage().as_ref(), &identity, auth::now_millis())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!("credential revoked or expired; closing");
                fatal(protocol_error(&protocol, "credential revoked or expired"));
                break;
            }
            Err(error) => {
                tracing::error!(%error, "credential check failed; closing");
                fatal(protocol_error(
                    &protocol,
                    "storage unavailable, retry later",
                ));
                break;
            }
        }

        let message = match decode(&bytes) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, bytes = bytes.len(), "malformed message");
                metrics::counter!(crate::metrics::PROTOCOL_ERRORS).increment(1);
                fatal(protocol_error(
                    &protocol,
                    &format!("malformed message: {error}"),
                ));
                break;
            }
        };
        let inbound = match protocol.handle_message(message) {
            Ok(inbound) => inbound,
            Err(violation) => {
                tracing::warn!(%violation, "protocol violation");
                metrics::counter!(crate::metrics::PROTOCOL_ERRORS).increment(1);
                fatal(protocol.error_message(&violation));
                break;
            }
        };
        let inbound_kind = match &inbound {
            Inbound::Request(_) => ReceiveKind::Request,
            _ => ReceiveKind::Sync,
        };
        match inbound {
            Inbound::Joined { remote, reply } => {
                tracing::Span::current().record("peer", tracing::field::display(&remote.peer_id));
                let rejoin = joined
                    .as_ref()
                    .is_some_and(|peer| peer.peer_id() == &remote.peer_id);
                if !rejoin {
                    let storage_id = (!remote.metadata.is_ephemeral)
                        .then(|| remote.metadata.storage_id.clone())
                        .flatten();
                    let peer = PeerHandle::new(
                        id,
                        remote.peer_id.clone(),
                        storage_id,
                        Arc::clone(&identity),
                        outbox.clone(),
                        closer.clone(),
                    );
                    if let Err(refused) = hub.join(peer.clone()) {
                        tracing::warn!(%refused, "join refused");
                        fatal(protocol_error(&protocol, &refused.to_string()));
                        break;
                    }
                    joined = Some(peer);
                    tracing::info!(ephemeral = remote.metadata.is_ephemeral, "peer joined");
                }
                if outbox.try_send(Outbound::Message(reply)).is_err() {
                    break;
                }
            }
            Inbound::Request(message) | Inbound::Sync(message) => {
                // `Connection` only yields these after a join.
                let Some(peer) = joined.as_ref() else { break };
                let permit = tokio::select! {
                    permit = Arc::clone(&in_flight).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = closer.cancelled() => break,
                };
                hub.receive(
                    peer,
                    inbound_kind,
                    message.document_id,
                    message.data,
                    permit,
                )
                .await;
            }
            Inbound::Ephemeral(message) => {
                if let Some(peer) = joined.as_ref() {
                    hub.relay_ephemeral(peer, message);
                }
            }
            Inbound::Leave => break,
            Inbound::Ignored { reason } => tracing::debug!(reason, "message ignored"),
        }
    }

    if let Some(peer) = joined.take() {
        hub.leave(&peer);
    }
    drop(outbox);
    // Let the writer flush a final error message, then make sure it stops.
    if tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .is_err()
    {
        closer.cancel();
    }
    closer.cancel();
    tracing::info!("connection closed");
}

fn protocol_error(protocol: &Connection, text: &str) -> Message {
    Message::Error(jemput_sync_protocol::ErrorMessage {
        message: text.to_owned(),
        sender_id: Some(protocol.our_peer_id().clone()),
        target_id: protocol.remote().map(|remote| remote.peer_id.clone()),
    })
}

async fn write_frames(
    mut sink: futures_util::stream::SplitSink<WebSocket, Frame>,
    mut outgoing: mpsc::Receiver<Outbound>,
    closer: CancellationToken,
    ping_interval: Duration,
    liveness: Arc<Liveness>,
) {
    let mut ping = tokio::time::interval(ping_interval);
    ping.tick().await;
    loop {
        let (frame, last) = tokio::select! {
            outbound = outgoing.recv() => match outbound {
                Some(Outbound::Message(message)) => (Frame::Binary(encode(&message).into()), false),
                Some(Outbound::Fatal(message)) => (Frame::Binary(encode(&message).into()), true),
                None => break,
            },
            _ = ping.tick() => (Frame::Ping(Default::default()), false),
            () = closer.cancelled() => break,
        };
        if let Frame::Binary(bytes) = &frame {
            metrics::counter!(crate::metrics::FRAMES_OUT).increment(1);
            metrics::counter!(crate::metrics::BYTES_OUT).increment(bytes.len() as u64);
        }
        liveness.writing.store(true, Ordering::Relaxed);
        let sent = tokio::select! {
            sent = sink.send(frame) => sent,
            () = closer.cancelled() => break,
        };
        liveness.writing.store(false, Ordering::Relaxed);
        if let Err(error) = sent {
            tracing::debug!(%error, "websocket write failed");
            closer.cancel();
            return;
        }
        if last {
            break;
        }
    }
    let close = Frame::Close(Some(CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    }));
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(close)).await;
    closer.cancel();
}
