//! Support for Jemput's end-to-end tests: start the real server process on a random port with
//! a fresh database, speak the raw protocol to it, and run the JS peers.

pub mod database;
pub mod link;
pub mod node;
pub mod provision;
pub mod raw_peer;
pub mod server;
pub mod tls;
pub mod tls_session;

pub use database::TestDatabase;
pub use raw_peer::RawPeer;
pub use server::{DevCertificate, TestServer};

use std::time::{Duration, Instant};

/// Polls `condition` until it holds or `deadline` passes; never a bare sleep.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
