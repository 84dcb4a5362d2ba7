//! `jemput-field`: a Jemput field device on the command line (enrol, capture, visit, list,
//! submit, sync). Messages are in Bahasa Indonesia; `--help` is in English.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use jemput_client_sdk::{
    Applicant, Client, NewApplication, NewVisit, SyncOptions, SyncTransport, enrol, http_client,
};
use jemput_domain::{FieldValue, Kk, Nik, RegionCode, ServiceCode, Sex, jakarta_today};
use jemput_sync_protocol::DocumentId;

/// A Jemput field device: capture applications offline and sync them over 2G.
#[derive(Parser)]
#[command(name = "jemput-field", version)]
struct Cli {
    /// The device's SQLite store.
    #[arg(
        long,
        global = true,
        default_value = "./jemput-field.db",
        env = "JEMPUT_FIELD_STORE"
    )]
    store: PathBuf,
    /// Extra trusted root certificate (PEM), e.g. a dev certificate of `jemput dev-cert`.
    #[arg(long, global = true, env = "JEMPUT_CA_CERT")]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol this device with a server; the password is read from stdin.
    Enrol {
        /// The server's base URL, e.g. `https://mpp.example.go.id`
        #[arg(long)]
        server: String,
        /// The officer's username.
        #[arg(long)]
        username: String,
        /// A label the officer recognises the device by.
        #[arg(long, default_value = "jemput-field")]
        label: String,
    },
    /// Capture a new application (status draft), offline.
    Capture {
        /// Service code from the catalogue, e.g. DUKCAPIL-KTP-EL-BARU.
        #[arg(long)]
        service: String,
        /// Village (desa/kelurahan) code, e.g. 34.71.01.1001.
        #[arg(long)]
        village: String,
        /// The applicant's NIK (16 digits).
        #[arg(long)]
        nik: String,
        /// The applicant's full name.
        #[arg(long)]
        name: String,
        /// Family card number.
        #[arg(long)]
        kk: Option<String>,
        /// Sex: L or P.
        #[arg(long)]
        sex: Option<String>,
        /// Phone number.
        #[arg(long)]
        phone: Option<String>,
        /// Street address.
        #[arg(long)]
        address: Option<String>,
        /// A service-specific field, NAME=VALUE (repeatable); true/false and integers are typed.
        #[arg(long = "field", value_parser = parse_field)]
        fields: Vec<(String, FieldValue)>,
        /// The visit document this application was taken during.
        #[arg(long)]
        visit: Option<String>,
    },
    /// Record a field visit.
    Visit {
        /// Village (desa/kelurahan) code.
        #[arg(long)]
        village: String,
        /// Purpose, e.g. home_visit, village_hall, school.
        #[arg(long)]
        purpose: Option<String>,
        /// Notes.
        #[arg(long)]
        notes: Option<String>,
    },
    /// List the documents on this device.
    List,
    /// Submit an application (draft → submitted).
    Submit {
        /// The application's document id.
        id: String,
    },
    /// Sync with the server (POST /v1/sync).
    Sync {
        /// Exchanges at most in this session.
        #[arg(long, default_value_t = 32)]
        max_exchanges: usize,
        /// Sync over the general HTTP client (reqwest) instead of the sync transport, which
        /// resumes TLS sessions with 0-RTT early data.
        #[arg(long)]
        no_early_data: bool,
    },
}

fn parse_field(s: &str) -> Result<(String, FieldValue), String> {
    let (name, value) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    let value = match value {
        "true" => FieldValue::Boolean(true),
        "false" => FieldValue::Boolean(false),
        v => v
            .parse::<i64>()
            .map_or_else(|_| FieldValue::Text(v.to_owned()), FieldValue::Integer),
    };
    Ok((name.to_owned(), value))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JEMPUT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    jemput_client_sdk::install_crypto_provider();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("galat: {message}");
            ExitCode::FAILURE
        }
    }
}

fn today() -> time::Date {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    jakarta_today(i64::try_from(secs).unwrap_or(0))
}

async fn run(cli: Cli) -> Result<(), String> {
    let client = Client::open(&cli.store).await.map_err(|e| e.to_string())?;
    let http = || {
        http_client(cli.ca_cert.as_deref(), SyncOptions::default().timeout)
            .map_err(|e| e.to_string())
    };
    match cli.command {
        Command::Enrol {
            server,
            username,
            label,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .map_err(|e| e.to_string())?;
            let password = password.trim_end_matches(['\r', '\n']);
            let e = enrol(&client, &http()?, &server, &username, password, &label)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "Perangkat terdaftar: {} (petugas {}, wilayah {})",
                e.device_id,
                e.username,
                e.regions.join(", ")
            );
        }
        Command::Capture {
            service,
            village,
            nik,
            name,
            kk,
            sex,
            phone,
            address,
            fields,
            visit,
        } => {
            let today = today();
            let new = NewApplication {
                service: ServiceCode::parse(&service).map_err(|e| format!("layanan: {e}"))?,
                village: RegionCode::parse(&village).map_err(|e| format!("wilayah: {e}"))?,
                applicant: Applicant {
                    nik: Nik::parse(&nik, today).map_err(|e| format!("NIK: {e}"))?,
                    kk: kk
                        .map(|k| Kk::parse(&k, today))
                        .transpose()
                        .map_err(|e| format!("KK: {e}"))?,
                    name,
                    birth_date: None,
                    sex: sex
                        .map(|s| Sex::parse(&s))
                        .transpose()
                        .map_err(|e| format!("jenis kelamin: {e}"))?,
                    phone,
                    address,
                },
                fields: fields.into_iter().collect::<BTreeMap<_, _>>(),
                consent_basis: None,
                visit: visit
                    .map(|v| DocumentId::parse(&v))
                    .transpose()
                    .map_err(|e| format!("kunjungan: {e}"))?,
            };
            let created = client
                .create_application(new)
                .await
                .map_err(|e| e.to_string())?;
            println!("Permohonan dicatat: {}", created.id);
            println!("Kode lacak: {}", created.tracking_code);
        }
        Command::Visit {
            village,
            purpose,
            notes,
        } => {
            let id = client
                .create_visit(NewVisit {
                    village: RegionCode::parse(&village).map_err(|e| format!("wilayah: {e}"))?,
                    purpose,
                    notes,
                })
                .await
                .map_err(|e| e.to_string())?;
            println!("Kunjungan dicatat: {id}");
        }
        Command::List => {
            let docs = client.list().await.map_err(|e| e.to_string())?;
            if docs.is_empty() {
                println!("Belum ada dokumen.");
            }
            for d in docs {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    d.id,
                    d.kind.as_deref().unwrap_or("?"),
                    d.status.as_deref().unwrap_or("-"),
                    d.tracking_code.as_deref().unwrap_or("-"),
                    d.service.as_deref().unwrap_or("-"),
                );
            }
        }
        Command::Submit { id } => {
            let id = DocumentId::parse(&id).map_err(|e| format!("id: {e}"))?;
            let status = client.submit(id).await.map_err(|e| e.to_string())?;
            println!("Permohonan {id} kini berstatus {status}.");
        }
        Command::Sync {
            max_exchanges,
            no_early_data,
        } => {
            let timeout = SyncOptions::default().timeout;
            let transport = if no_early_data {
                None
            } else {
                let transport = SyncTransport::new(cli.ca_cert.as_deref(), timeout)
                    .map_err(|e| e.to_string())?;
                Some(Arc::new(transport))
            };
            let options = SyncOptions {
                max_exchanges,
                transport,
                ..SyncOptions::default()
            };
            let report = client
                .sync(&http()?, &options)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "Sinkron {}: {} dikirim, {} diterima server, {} diperbarui, {} dihapus",
                if report.complete {
                    "selesai"
                } else {
                    "belum selesai"
                },
                report.pushed,
                report.acknowledged.len(),
                report.updated.len(),
                report.removed.len()
            );
            for (id, reason) in &report.compensated {
                println!("  dikoreksi server: {id} ({reason:?})");
            }
            for (id, reason) in &report.refused {
                println!("  ditolak server: {id} ({reason:?})");
            }
            for id in &report.lost_local_changes {
                println!("  perubahan lokal hilang: {id}");
            }
            println!(
                "  {} putaran, {} B terkirim, {} B diterima",
                report.round_trips, report.bytes_sent, report.bytes_received
            );
        }
    }
    Ok(())
}
