//! TLS 1.3 session resumption and 0-RTT early data against the real server with a dev
//! certificate: a resumed handshake sends no certificate; `POST /v1/sync` sent as early data
//! is served (and a retry gets the same answer, changing nothing); any other request sent as
//! early data gets `425 Too Early` and is served once sent again after the handshake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use automerge::{ActorId, Automerge};
use jemput_sync_protocol::DocumentId;
use jemput_sync_protocol::batch::{Ack, decode_response};
use jemput_tests::provision::{HOME_DISTRICT, HOME_VILLAGE};
use jemput_tests::tls_session::{
    HttpResponse, TlsClient, client_config, counter_sum, http_request, metrics_text,
};
use jemput_tests::{DevCertificate, TestDatabase, TestServer};
use rustls::HandshakeKind;

use crate::JEMPUT;
use crate::batch_sync::Phone;
use crate::ws_protocol::new_document_id;

/// A server with a fresh dev certificate; returns the certificate's PEM path (and the
/// certificate, which must outlive the server).
async fn tls_server() -> (TestServer, DevCertificate, PathBuf) {
    let (server, certificate) = TestServer::start_tls(JEMPUT, TestDatabase::sqlite()).await;
    let cert = certificate.cert.clone();
    (server, certificate, cert)
}

fn certificate_len(cert_pem: &Path) -> usize {
    let pem = std::fs::read(cert_pem).expect("read certificate");
    rustls_pemfile::certs(&mut pem.as_slice())
        .map(|cert| cert.expect("PEM certificate").len())
        .sum()
}

/// A counter from `/metrics`, summed over the series whose labels contain every `labels`
/// fragment. Fetched over a fresh session (a full handshake), so it never counts as a
/// resumption itself.
async fn counter(server: &TestServer, cert: &Path, name: &str, labels: &[&str]) -> f64 {
    let metrics = metrics_text(&server.address(), cert)
        .await
        .expect("/metrics");
    counter_sum(&metrics, name, labels)
}

async fn get(client: &mut TlsClient, address: &str, path: &str) -> HttpResponse {
    client
        .send(&http_request("GET", path, address, &[], b""))
        .await
        .expect("send");
    client.response().await.expect("response")
}

fn sync_request(address: &str, token: &str, body: &[u8]) -> Vec<u8> {
    let auth = format!("Bearer {token}");
    http_request(
        "POST",
        "/v1/sync",
        address,
        &[
            ("authorization", &auth),
            ("content-type", "application/cbor"),
            ("accept", "application/cbor"),
        ],
        body,
    )
}

fn visit(actor: &ActorId, note: &str) -> Automerge {
    crate::batch_sync::visit(actor, HOME_DISTRICT, HOME_VILLAGE, note)
}

#[tokio::test]
async fn a_resumed_handshake_sends_no_certificate() {
    let (server, _dir, cert) = tls_server().await;
    let address = server.address();
    let config = client_config(&cert, false);
    let resumed_before = counter(
        &server,
        &cert,
        "jemput_tls_handshakes_total",
        &["kind=\"resumed\""],
    )
    .await;

    let mut first = TlsClient::connect(&address, config.clone())
        .await
        .expect("full handshake");
    assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
    // A request after the handshake: its response comes after the tickets.
    assert_eq!(get(&mut first, &address, "/healthz").await.status, 200);
    let full = first.handshake_bytes_read();
    first.close().await;

    let mut second = TlsClient::connect(&address, config.clone())
        .await
        .expect("resumed handshake");
    assert_eq!(second.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(get(&mut second, &address, "/healthz").await.status, 200);
    let resumed = second.handshake_bytes_read();
    second.close().await;

    // The server's flight: ServerHello … Finished. A full one carries the certificate (and
    // its signature); a resumed one cannot even hold the certificate.
    let certificate = certificate_len(&cert) as u64;
    assert!(
        resumed < certificate,
        "resumed flight {resumed} B, certificate {certificate} B"
    );
    assert!(
        full >= resumed + certificate,
        "full flight {full} B, resumed {resumed} B, certificate {certificate} B"
    );
    let resumed_after = counter(
        &server,
        &cert,
        "jemput_tls_handshakes_total",
        &["kind=\"resumed\""],
    )
    .await;
    assert_eq!(resumed_after - resumed_before, 1.0);
}

#[tokio::test]
async fn the_sdk_http_client_resumes_sessions() {
    let (server, _dir, cert) = tls_server().await;
    let http = jemput_client_sdk::http_client(Some(&cert), Duration::from_secs(30))
        .expect("SDK HTTP client");
    let labels = ["kind=\"resumed\""];
    let before = counter(&server, &cert, "jemput_tls_handshakes_total", &labels).await;
    for _ in 0..3 {
        // `Connection: close`: every request on a new connection.
        let response = http
            .get(format!("{}/healthz", server.base_url()))
            .header("connection", "close")
            .send()
            .await
            .expect("GET /healthz");
        assert!(response.status().is_success());
        response.bytes().await.expect("body");
    }
    let after = counter(&server, &cert, "jemput_tls_handshakes_total", &labels).await;
    assert_eq!(
        after - before,
        2.0,
        "the second and third connections resume"
    );
}

#[tokio::test]
async fn batch_sync_in_early_data_is_served_and_a_retry_gets_the_same_answer() {
    let (server, _dir, cert) = tls_server().await;
    let address = server.address();
    let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
    let mut device = Phone::of(&officer);
    let config = client_config(&cert, true);

    // First exchange, after a full handshake: the device starts from nothing. The
    // connection leaves tickets that allow early data.
    let mut first = TlsClient::connect(&address, config.clone())
        .await
        .expect("full handshake");
    assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
    let body = device.plan();
    first
        .send(&sync_request(&address, &device.token, &body))
        .await
        .expect("send");
    let reply = first.response().await.expect("response");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    device.apply(&reply.body);
    first.close().await;

    // A new document pushed by a request sent entirely as early data.
    let id = new_document_id();
    let doc = visit(&device.actor, "sent in early data");
    device.put(id, doc);
    let body = device.plan();
    let request = sync_request(&address, &device.token, &body);
    assert!(request.len() < 16 * 1024, "fits the server's early data");
    let replayed_before = counter(
        &server,
        &cert,
        "jemput_batch_exchanges_total",
        &["outcome=\"replayed\""],
    )
    .await;

    let mut early = TlsClient::connect_early(&address, config.clone(), &request)
        .await
        .expect("0-RTT");
    assert_eq!(early.handshake_kind(), Some(HandshakeKind::Resumed));
    assert!(
        early.early_data_accepted(),
        "the server took the early data"
    );
    let answer = early.response().await.expect("response");
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("content-type"), Some("application/cbor"));
    let response = decode_response(&answer.body).expect("a batch response");
    assert_eq!(response.acks, vec![Ack::Accepted]);
    // The same connection after the handshake serves anything.
    assert_eq!(get(&mut early, &address, "/healthz").await.status, 200);
    early.close().await;

    // A retry of the same request (a lost reply), again as early data: the stored answer,
    // byte for byte.
    let mut retry = TlsClient::connect_early(&address, config.clone(), &request)
        .await
        .expect("0-RTT retry");
    assert!(retry.early_data_accepted());
    let again = retry.response().await.expect("response");
    retry.close().await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, answer.body);

    // The same request without early data, after a full handshake: the same answer.
    let mut plain = TlsClient::connect(&address, client_config(&cert, false))
        .await
        .expect("full handshake");
    assert_eq!(plain.handshake_kind(), Some(HandshakeKind::Full));
    plain.send(&request).await.expect("send");
    let without = plain.response().await.expect("response");
    plain.close().await;
    assert_eq!(without.status, 200);
    assert_eq!(without.body, answer.body);

    let replayed_after = counter(
        &server,
        &cert,
        "jemput_batch_exchanges_total",
        &["outcome=\"replayed\""],
    )
    .await;
    assert_eq!(
        replayed_after - replayed_before,
        2.0,
        "both retries replayed"
    );
    let early_handshakes = counter(
        &server,
        &cert,
        "jemput_tls_handshakes_total",
        &["kind=\"resumed\"", "early_data=\"accepted\""],
    )
    .await;
    assert_eq!(early_handshakes, 2.0);

    // The push was stored once: another officer's device in the district receives it.
    device.apply(&answer.body);
    let colleague = server.officer("rekan", &[HOME_DISTRICT]).await;
    let mut other = Phone::of(&colleague);
    let mut client = TlsClient::connect(&address, client_config(&cert, false))
        .await
        .expect("handshake");
    let body = other.plan();
    client
        .send(&sync_request(&address, &other.token, &body))
        .await
        .expect("send");
    let reply = client.response().await.expect("response");
    client.close().await;
    assert_eq!(reply.status, 200);
    let response = decode_response(&reply.body).expect("a batch response");
    let received: Vec<DocumentId> = response.updates.iter().map(|u| u.document_id).collect();
    assert_eq!(received, vec![id]);
    other.apply(&reply.body);
    assert_eq!(other.docs[&id].get_heads(), device.docs[&id].get_heads());

    let mut server = server;
    assert!(
        server.stop().await,
        "graceful shutdown with TLS connections served"
    );
}

#[tokio::test]
async fn other_requests_in_early_data_get_425_and_are_served_after_the_handshake() {
    let (server, _dir, cert) = tls_server().await;
    let address = server.address();
    let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
    let config = client_config(&cert, true);
    let logins = || async {
        counter(
            &server,
            &cert,
            "jemput_logins_total",
            &["outcome=\"succeeded\""],
        )
        .await
    };
    let logins_before = logins().await;

    // Tickets that allow early data.
    let mut first = TlsClient::connect(&address, config.clone())
        .await
        .expect("full handshake");
    assert_eq!(get(&mut first, &address, "/healthz").await.status, 200);
    first.close().await;

    // A login is not idempotent: refused unprocessed in early data, served once sent again on
    // the same connection after the handshake.
    let credentials = serde_json::json!({
        "username": officer.username,
        "password": officer.password,
    })
    .to_string();
    let login = http_request(
        "POST",
        "/v1/auth/login",
        &address,
        &[("content-type", "application/json")],
        credentials.as_bytes(),
    );
    let mut early = TlsClient::connect_early(&address, config.clone(), &login)
        .await
        .expect("0-RTT");
    assert!(
        early.early_data_accepted(),
        "the server took the early data"
    );
    let refused = early.response().await.expect("response");
    assert_eq!(
        refused.status,
        425,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    early.send(&login).await.expect("send again");
    let served = early.response().await.expect("response");
    assert_eq!(
        served.status,
        200,
        "{}",
        String::from_utf8_lossy(&served.body)
    );
    let token: serde_json::Value = serde_json::from_slice(&served.body).expect("JSON");
    assert!(token["token"].is_string());
    early.close().await;
    assert_eq!(
        logins().await - logins_before,
        1.0,
        "only the login sent after the handshake was processed"
    );

    // Even a GET may not be served from early data.
    let health = http_request("GET", "/healthz", &address, &[], b"");
    let mut early = TlsClient::connect_early(&address, config, &health)
        .await
        .expect("0-RTT");
    assert!(early.early_data_accepted());
    assert_eq!(early.response().await.expect("response").status, 425);
    early.close().await;
    assert_eq!(
        counter(&server, &cert, "jemput_http_too_early_total", &[]).await,
        2.0
    );
}
