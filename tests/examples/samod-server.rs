//! samod 0.16 as a standalone sync server: the comparison point of Jemput's benchmark.
//!
//! ```text
//! cargo run --release -p jemput-tests --example samod-server -- --port 0 --data-dir DIR
//! ```
//!
//! Prints `listening on PORT` on stdout once the socket is bound; serves automerge-repo's
//! WebSocket protocol at `/` and `/v1/ws` and `ok` at `/healthz`; stores documents under
//! `--data-dir` in automerge-repo's filesystem layout. Stops on Ctrl-C or SIGTERM after
//! flushing storage.

use std::{io::Write, net::SocketAddr, path::PathBuf};

use clap::Parser;

#[path = "support/samod_server.rs"]
mod samod_server;

/// samod 0.16 sync server over WebSocket.
#[derive(Parser)]
struct Args {
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Directory holding the documents (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.data_dir)?;
    let repo = samod_server::load_repo(&args.data_dir).await;
    let app = samod_server::router(&repo)?;

    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.host, args.port)).await?;
    let port = listener.local_addr()?.port();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {port}")?;
    stdout.flush()?;
    drop(stdout);

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    repo.stop().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (what a benchmark harness sends to end the run).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
