//! The `jemput` command line. Every setting is a flag with a `JEMPUT_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{ConnectionLimits, DatabaseConfig, ServeConfig, TlsConfig};
use crate::sync::{BatchConfig, HubConfig};
use crate::telemetry::{self, LogFormat};
use crate::{admin, startup, tls};

#[derive(Debug, Parser)]
#[command(
    name = "jemput",
    version,
    about = "Jemput: offline-first sync server for public service outreach"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "JEMPUT_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    log_format: LogFormat,
    /// Log filter, in RUST_LOG syntax.
    #[arg(long, global = true, env = "JEMPUT_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sync server.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Write a self-signed certificate for localhost (development only).
    DevCert(DevCertArgs),
    /// Manage accounts, devices and the audit log.
    Admin(admin::AdminArgs),
}

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// Directory of the embedded SQLite database (`jemput.db`).
    #[arg(long, env = "JEMPUT_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of SQLite (DATABASE_URL is read too).
    #[arg(long, env = "JEMPUT_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl DatabaseArgs {
    fn database(&self) -> DatabaseConfig {
        let url = self
            .database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .filter(|url| !url.is_empty());
        DatabaseConfig::from_parts(url.as_deref(), &self.data_dir)
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "JEMPUT_LISTEN", default_value = "127.0.0.1:3030")]
    listen: SocketAddr,
    #[command(flatten)]
    database: DatabaseArgs,
    /// PEM certificate chain; with --tls-key, serve HTTPS/WSS.
    #[arg(long, env = "JEMPUT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "JEMPUT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Largest WebSocket frame accepted, in bytes.
    #[arg(long, env = "JEMPUT_MAX_FRAME_BYTES", default_value_t = ConnectionLimits::default().max_frame_bytes)]
    max_frame_bytes: usize,
    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "JEMPUT_MAX_MESSAGE_BYTES", default_value_t = ConnectionLimits::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Messages queued towards one peer before it is dropped as too slow.
    #[arg(long, env = "JEMPUT_OUTBOUND_QUEUE", default_value_t = ConnectionLimits::default().outbound_queue)]
    outbound_queue: usize,
    /// Sync messages of one connection handled at once; more wait.
    #[arg(long, env = "JEMPUT_MAX_IN_FLIGHT", default_value_t = ConnectionLimits::default().max_in_flight)]
    max_in_flight: usize,
    /// Seconds between WebSocket pings.
    #[arg(long, env = "JEMPUT_PING_INTERVAL_SECS", default_value_t = 20)]
    ping_interval_secs: u64,
    /// Seconds of silence from a peer (while nothing is being written to it) before it is
    /// disconnected. Any frame counts, not only pongs.
    #[arg(long, env = "JEMPUT_IDLE_TIMEOUT_SECS", default_value_t = 120)]
    idle_timeout_secs: u64,
    /// Seconds without activity before a document leaves memory.
    #[arg(long, env = "JEMPUT_DOCUMENT_IDLE_SECS", default_value_t = 30)]
    document_idle_secs: u64,
    /// Documents kept in memory at most.
    #[arg(long, env = "JEMPUT_MAX_DOCUMENTS_IN_MEMORY", default_value_t = HubConfig::default().max_documents_in_memory)]
    max_documents_in_memory: usize,
    /// Largest batch sync request body accepted (after decompression), in bytes.
    #[arg(long, env = "JEMPUT_SYNC_MAX_REQUEST_BYTES", default_value_t = BatchConfig::default().max_request_bytes)]
    sync_max_request_bytes: usize,
    /// Batch sync responses stop adding updates at about this size (the device syncs again).
    #[arg(long, env = "JEMPUT_SYNC_MAX_RESPONSE_BYTES", default_value_t = BatchConfig::default().max_response_bytes)]
    sync_max_response_bytes: usize,
    /// Seconds shutdown waits for connections and writes to finish.
    #[arg(long, env = "JEMPUT_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    shutdown_grace_secs: u64,
}

impl ServeArgs {
    fn config(&self) -> ServeConfig {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        ServeConfig {
            listen: self.listen,
            database: self.database.database(),
            tls,
            limits: ConnectionLimits {
                max_frame_bytes: self.max_frame_bytes,
                max_message_bytes: self.max_message_bytes,
                outbound_queue: self.outbound_queue.max(1),
                max_in_flight: self.max_in_flight.max(1),
                ping_interval: Duration::from_secs(self.ping_interval_secs.max(1)),
                idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            },
            hub: HubConfig {
                document_idle: Duration::from_secs(self.document_idle_secs),
                max_documents_in_memory: self.max_documents_in_memory.max(1),
                ..HubConfig::default()
            },
            batch: BatchConfig {
                max_request_bytes: self.sync_max_request_bytes.max(1024),
                max_response_bytes: self.sync_max_response_bytes.max(1024),
                ..BatchConfig::default()
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }
}

#[derive(Debug, Args)]
struct DevCertArgs {
    /// Directory for cert.pem and key.pem.
    #[arg(long, env = "JEMPUT_DEV_CERT_DIR", default_value = "./data/tls")]
    out_dir: PathBuf,
    /// Extra host names or addresses besides localhost, 127.0.0.1 and ::1.
    #[arg(long = "name")]
    names: Vec<String>,
}

/// Entry point of the `jemput` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log);
    tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("jemput: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve(args) => {
            let config = args.config();
            let listener = std::net::TcpListener::bind(config.listen)?;
            let address = listener.local_addr()?;
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            tracing::info!(%address, database = ?config.database, "jemput starting");
            let announce = move || {
                // Machine-readable, once the database is ready: scripts and tests wait for it.
                println!("jemput listening on {scheme}://{address}");
                tracing::info!(%address, "jemput serving");
            };
            startup::serve(config, listener, announce, shutdown_signal()).await?;
        }
        Command::Migrate(args) => {
            startup::migrate(&args.database()).await?;
            println!("migrations applied");
        }
        Command::Admin(args) => admin::run(args).await?,
        Command::DevCert(args) => {
            let written = tls::write_dev_certificate(&args.out_dir, &args.names)?;
            println!("certificate: {}", written.cert.display());
            println!("private key: {}", written.key.display());
            println!(
                "run: jemput serve --tls-cert {} --tls-key {}",
                written.cert.display(),
                written.key.display()
            );
        }
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
