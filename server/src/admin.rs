//! `jemput admin ...`: accounts, devices and the audit log, from the server's own machine.
//!
//! Works on the same database as `jemput serve` (running or not). Every change goes through the
//! same functions as the API and is audited with the actor `@cli`. Passwords are read from
//! standard input (`--password-stdin`) or generated and printed once; they never appear on the
//! command line, where `ps` and shell history would keep them.

use std::io::BufRead;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use jemput_domain::{Agency, RegionCode, Role};

use crate::audit::{AuditActor, BrokenLink, verify_chain};
use crate::auth::devices::{self, DeviceError};
use crate::auth::users::{self, NewAccount, UserError};
use crate::auth::{Password, PasswordError, now_millis};
use crate::config::DatabaseConfig;
use crate::storage::{
    DeviceId, PostgresStorage, SqliteStorage, SqliteStorageConfig, Storage, StorageError,
    UserAccount, Username,
};

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Directory of the embedded SQLite database (`jemput.db`).
    #[arg(long, global = true, env = "JEMPUT_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of SQLite (DATABASE_URL is read too).
    #[arg(
        long,
        global = true,
        env = "JEMPUT_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Accounts of officers, supervisors and administrators.
    #[command(subcommand)]
    User(UserCommand),
    /// Enrolled phones.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account; prints a generated password once unless --password-stdin is given.
    Add {
        username: String,
        /// officer, supervisor or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Kemendagri code (repeat): an officer's district or village, a supervisor's prefix.
        #[arg(long = "region", value_parser = parse_region)]
        regions: Vec<RegionCode>,
        /// Catalogue agency a supervisor decides for (repeat); none means every agency.
        #[arg(long = "agency", value_parser = parse_agency)]
        agencies: Vec<Agency>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: its sessions end and its devices stop working at once.
    Disable { username: String },
    /// Replace an account's regions (and, with --agency or --all-agencies, its agencies).
    AssignRegion {
        username: String,
        /// Kemendagri codes.
        #[arg(required = true, value_parser = parse_region)]
        regions: Vec<RegionCode>,
        /// Catalogue agency (repeat); replaces the supervisor's agencies.
        #[arg(long = "agency", value_parser = parse_agency, conflicts_with = "all_agencies")]
        agencies: Vec<Agency>,
        /// Lift the supervisor's agency limit.
        #[arg(long)]
        all_agencies: bool,
    },
    /// Set a new password (from standard input with --password-stdin, else generated and
    /// printed once) and end the account's sessions.
    ResetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Revoke a device's token; it is refused from its next request or WebSocket frame.
    Revoke { device_id: String },
    /// List devices, of one user or of everyone.
    List {
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain from the first entry; report the first broken link and exit
    /// non-zero if there is one.
    Verify,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("reading standard input: {0}")]
    Stdin(#[from] std::io::Error),
    #[error("audit log broken at {0}")]
    ChainBroken(BrokenLink),
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).map_err(|_| "expected officer, supervisor or admin".to_owned())
}

fn parse_region(s: &str) -> Result<RegionCode, String> {
    RegionCode::parse(s).map_err(|e| e.to_string())
}

fn parse_agency(s: &str) -> Result<Agency, String> {
    let agency = Agency::parse(s).map_err(|e| e.to_string())?;
    let known = users::catalogue_agencies();
    if known.contains(&agency) {
        return Ok(agency);
    }
    let names: Vec<&str> = known.iter().map(Agency::as_str).collect();
    Err(format!(
        "not an agency of the catalogue; one of: {}",
        names.join(", ")
    ))
}

fn username(s: &str) -> Result<Username, AdminError> {
    Username::parse(s).map_err(|e| AdminError::Usage(e.to_string()))
}

/// Runs one admin command against the configured database.
pub async fn run(args: AdminArgs) -> Result<(), AdminError> {
    let url = args
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .filter(|url| !url.is_empty());
    match DatabaseConfig::from_parts(url.as_deref(), &args.data_dir) {
        DatabaseConfig::Sqlite { path } => {
            let storage = SqliteStorage::open(SqliteStorageConfig::new(path)).await?;
            run_on(storage, args.command).await
        }
        DatabaseConfig::Postgres { url, .. } => {
            let storage = PostgresStorage::open(url.expose(), 2).await?;
            run_on(storage, args.command).await
        }
    }
}

async fn run_on<S: Storage>(storage: S, command: AdminCommand) -> Result<(), AdminError> {
    let result = dispatch(&storage, command).await;
    storage.close().await;
    result
}

async fn dispatch<S: Storage>(store: &S, command: AdminCommand) -> Result<(), AdminError> {
    let now = now_millis();
    let cli = AuditActor::cli();
    match command {
        AdminCommand::User(UserCommand::Add {
            username: name,
            role,
            regions,
            agencies,
            password_stdin,
        }) => {
            let (password, generated) = new_password(password_stdin)?;
            let shown = generated.then(|| password.clone());
            let account = NewAccount {
                username: username(&name)?,
                role,
                regions,
                agencies,
                password,
            };
            let created = users::create(store, account, cli, now).await?;
            println!("created {}", describe(&created));
            show_generated(&created, shown);
        }
        AdminCommand::User(UserCommand::List { json }) => {
            for account in store.list_users().await? {
                if json {
                    println!("{}", account_json(&account));
                } else {
                    println!("{}", describe(&account));
                }
            }
        }
        AdminCommand::User(UserCommand::Disable { username: name }) => {
            let account = users::disable(store, &username(&name)?, cli, now).await?;
            println!("disabled {}", describe(&account));
        }
        AdminCommand::User(UserCommand::AssignRegion {
            username: name,
            regions,
            agencies,
            all_agencies,
        }) => {
            let agencies = (all_agencies || !agencies.is_empty()).then_some(agencies);
            let account =
                users::assign_regions(store, &username(&name)?, regions, agencies, cli, now)
                    .await?;
            println!("assigned {}", describe(&account));
        }
        AdminCommand::User(UserCommand::ResetPassword {
            username: name,
            password_stdin,
        }) => {
            let (password, generated) = new_password(password_stdin)?;
            let shown = generated.then(|| password.clone());
            let account =
                users::reset_password(store, &username(&name)?, password, cli, now).await?;
            println!(
                "password reset for {}; their sessions have ended",
                account.username
            );
            show_generated(&account, shown);
        }
        AdminCommand::Device(DeviceCommand::Revoke { device_id }) => {
            let id =
                DeviceId::parse(device_id.trim()).map_err(|e| AdminError::Usage(e.to_string()))?;
            let device = devices::revoke(store, &id, cli, None, now).await?;
            println!("revoked device {} of {}", device.id, device.owner_username);
        }
        AdminCommand::Device(DeviceCommand::List { user }) => {
            let owner = match user {
                Some(name) => {
                    let name = username(&name)?;
                    let account = store.user(&name).await?.ok_or(UserError::NotFound(name))?;
                    Some(account.id)
                }
                None => None,
            };
            for device in store.list_devices(owner).await? {
                let state = if device.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}  {:<8} {}  {:?}",
                    device.id, state, device.owner_username, device.label
                );
            }
        }
        AdminCommand::Audit(AuditCommand::Verify) => {
            let report = verify_chain(store).await?;
            match report.broken {
                None => println!(
                    "audit log intact: {} entries, head {}",
                    report.verified,
                    hex::encode(report.head)
                ),
                Some(broken) => {
                    println!("audit log BROKEN at {broken}");
                    println!("entries 1 to {} verified", report.verified);
                    return Err(AdminError::ChainBroken(broken));
                }
            }
        }
    }
    Ok(())
}

/// The password to set, and whether it was generated (and so must be shown).
fn new_password(from_stdin: bool) -> Result<(Password, bool), AdminError> {
    if !from_stdin {
        return Ok((Password::generate()?, true));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    Ok((Password::new_password(line)?, false))
}

fn show_generated(account: &UserAccount, generated: Option<Password>) {
    if let Some(password) = generated {
        println!(
            "password for {} (shown once, give it to them in person): {}",
            account.username,
            password.expose()
        );
    }
}

/// `budi  officer  regions=34.71.01  agencies=(all)  active`
fn describe(account: &UserAccount) -> String {
    let regions: Vec<&str> = account.regions.iter().map(|r| r.as_str()).collect();
    let agencies: Vec<&str> = account.agencies.iter().map(Agency::as_str).collect();
    format!(
        "{}  {}  regions={}  agencies={}  {}",
        account.username,
        account.role,
        if regions.is_empty() {
            "-".to_owned()
        } else {
            regions.join(",")
        },
        match (account.role, agencies.is_empty()) {
            (Role::Supervisor, true) => "(all)".to_owned(),
            (_, true) => "-".to_owned(),
            (_, false) => agencies.join(","),
        },
        if account.is_disabled() {
            "disabled"
        } else {
            "active"
        },
    )
}

fn account_json(account: &UserAccount) -> serde_json::Value {
    serde_json::json!({
        "id": account.id.0,
        "username": account.username.as_str(),
        "role": account.role.as_str(),
        "regions": account.regions.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "agencies": account.agencies.iter().map(Agency::as_str).collect::<Vec<_>>(),
        "created_at": account.created_at,
        "disabled_at": account.disabled_at,
    })
}
