//! A hand-driven automerge-repo peer over a real WebSocket: for protocol tests that need to
//! send exactly the bytes they choose, including malformed ones.

use std::time::{Duration, Instant};

use automerge::Automerge;
use automerge::sync::{self, SyncDoc};
use futures_util::{SinkExt, StreamExt};
use jemput_sync_protocol::{
    DocMessage, DocumentId, Join, Message, PeerId, PeerMetadata, StorageId, decode, encode,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct RawPeer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub peer_id: PeerId,
    pub server_id: Option<PeerId>,
    /// Messages received while waiting for something else.
    backlog: Vec<Message>,
}

/// What the server did with a connection we expected it to close.
#[derive(Debug, Default)]
pub struct Closed {
    pub messages: Vec<Message>,
}

impl Closed {
    pub fn error_text(&self) -> Option<&str> {
        self.messages.iter().find_map(|m| match m {
            Message::Error(e) => Some(e.message.as_str()),
            _ => None,
        })
    }
}

impl RawPeer {
    pub async fn connect(url: &str, peer_id: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        Self {
            ws,
            peer_id: PeerId::parse(peer_id).expect("valid peer id"),
            server_id: None,
            backlog: Vec::new(),
        }
    }

    /// Connects over TLS with the given connector (see [`crate::tls`]).
    pub async fn connect_tls(
        url: &str,
        peer_id: &str,
        connector: tokio_tungstenite::Connector,
    ) -> Self {
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
                .await
                .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        Self {
            ws,
            peer_id: PeerId::parse(peer_id).expect("valid peer id"),
            server_id: None,
            backlog: Vec::new(),
        }
    }

    /// Connects and completes the `join`/`peer` handshake.
    pub async fn joined(url: &str, peer_id: &str, storage_id: Option<&str>) -> Self {
        let mut peer = Self::connect(url, peer_id).await;
        peer.join(storage_id).await;
        peer
    }

    pub async fn join(&mut self, storage_id: Option<&str>) {
        let join = Message::Join(Join {
            sender_id: self.peer_id.clone(),
            peer_metadata: Some(PeerMetadata {
                storage_id: storage_id.map(|s| StorageId::parse(s).expect("storage id")),
                is_ephemeral: storage_id.is_none(),
            }),
            supported_protocol_versions: Some(vec!["1".into()]),
        });
        self.send(&join).await;
        match self.recv().await {
            Some(Message::Peer(peer)) => {
                assert_eq!(peer.target_id, self.peer_id);
                assert_eq!(peer.selected_protocol_version, "1");
                self.server_id = Some(peer.sender_id);
            }
            other => panic!("expected `peer`, got {other:?}"),
        }
    }

    pub async fn send(&mut self, message: &Message) {
        self.send_bytes(encode(message)).await;
    }

    /// Like [`RawPeer::send`], but hands back the error (e.g. the server reset the
    /// connection) instead of panicking: for benchmarks against servers that may drop us.
    pub async fn try_send(
        &mut self,
        message: &Message,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.ws.send(Frame::Binary(encode(message).into())).await
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Frame::Binary(bytes.into()))
            .await
            .expect("send frame");
    }

    pub async fn send_frame(&mut self, frame: Frame) {
        self.ws.send(frame).await.expect("send frame");
    }

    /// The next protocol message, or `None` if the connection closed. Panics after 10 s.
    pub async fn recv(&mut self) -> Option<Message> {
        if !self.backlog.is_empty() {
            return Some(self.backlog.remove(0));
        }
        self.recv_within(Duration::from_secs(10))
            .await
            .expect("a message or a close within 10 s")
    }

    /// `Err(())` on timeout, `Ok(None)` on close.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Message>, ()> {
        let deadline = Instant::now() + limit;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let frame = match tokio::time::timeout(remaining, self.ws.next()).await {
                Err(_) => return Err(()),
                Ok(frame) => frame,
            };
            match frame {
                None | Some(Err(_)) | Some(Ok(Frame::Close(_))) => return Ok(None),
                Some(Ok(Frame::Binary(bytes))) => {
                    return Ok(Some(decode(&bytes).expect("server sends valid messages")));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads until the server closes the connection (panics if it does not within 10 s).
    pub async fn expect_closed(&mut self) -> Closed {
        let mut closed = Closed::default();
        loop {
            match self.recv_within(Duration::from_secs(10)).await {
                Ok(Some(message)) => closed.messages.push(message),
                Ok(None) => return closed,
                Err(()) => panic!("server did not close the connection; got {closed:?}"),
            }
        }
    }

    pub fn sync_message(&self, kind: &str, document: DocumentId, data: Vec<u8>) -> Message {
        let body = DocMessage {
            sender_id: self.peer_id.clone(),
            target_id: self.server_id.clone().expect("joined"),
            document_id: document,
            data,
        };
        match kind {
            "request" => Message::Request(body),
            _ => Message::Sync(body),
        }
    }

    /// Runs the Automerge sync protocol for one document until both sides have the same
    /// heads. Messages for other documents are kept for later `recv` calls.
    pub async fn sync_document(
        &mut self,
        document: DocumentId,
        doc: &mut Automerge,
        state: &mut sync::State,
    ) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut first = true;
        // Take in what the server pushed since we last looked, so "converged" is judged
        // against what it has now, not what it had when we last synced.
        self.drain_pushes(document, doc, state).await;
        loop {
            if let Some(message) = doc.generate_sync_message(state) {
                let kind = if first && doc.get_heads().is_empty() {
                    "request"
                } else {
                    "sync"
                };
                let message = self.sync_message(kind, document, message.encode());
                self.send(&message).await;
            }
            first = false;
            let heads = doc.get_heads();
            if state.their_heads.as_ref() == Some(&heads) && state.shared_heads == heads {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sync of {document} did not converge"
            );
            match self.recv_within(Duration::from_millis(500)).await {
                Ok(Some(Message::Sync(m))) if m.document_id == document => {
                    let message = sync::Message::decode(&m.data).expect("valid sync message");
                    doc.receive_sync_message(state, message)
                        .expect("apply server changes");
                }
                Ok(Some(Message::DocUnavailable(m))) if m.document_id == document => {
                    panic!("server answered doc-unavailable for {document}")
                }
                Ok(Some(other)) => self.backlog.push(other),
                Ok(None) => panic!("connection closed while syncing {document}"),
                Err(()) => {}
            }
        }
    }

    /// Applies messages already waiting for `document` (until 200 ms of quiet), keeping
    /// others in the backlog.
    async fn drain_pushes(
        &mut self,
        document: DocumentId,
        doc: &mut Automerge,
        state: &mut sync::State,
    ) {
        let mut kept = Vec::new();
        for message in std::mem::take(&mut self.backlog) {
            match message {
                Message::Sync(m) if m.document_id == document => {
                    let message = sync::Message::decode(&m.data).expect("valid sync message");
                    doc.receive_sync_message(state, message)
                        .expect("apply server changes");
                }
                other => kept.push(other),
            }
        }
        self.backlog = kept;
        while let Ok(Some(message)) = self.recv_within(Duration::from_millis(200)).await {
            match message {
                Message::Sync(m) if m.document_id == document => {
                    let message = sync::Message::decode(&m.data).expect("valid sync message");
                    doc.receive_sync_message(state, message)
                        .expect("apply server changes");
                }
                other => self.backlog.push(other),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
