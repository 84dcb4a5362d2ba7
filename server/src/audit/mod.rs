//! The audit log (UU PDP 27/2022 Art. 31-32: a record of processing and a per-citizen access
//! trail): what is recorded, the hash chain that makes it tamper-evident, and its verification.
//!
//! Entries are appended through [`AuditStore::append`](crate::storage::AuditStore::append),
//! which serialises appends so the chain never forks. A citizen is found by
//! [`CitizenKey`], an HMAC-SHA256 of the NIK under a server secret: the NIK itself is never
//! stored in the log.

pub mod chain;

use std::fmt;

use jemput_domain::Nik;
use rand::TryRngCore;
use rand::rngs::OsRng;

use crate::storage::{DeviceId, Identity, Storage, StorageError, UserId};

pub use chain::{BrokenLink, ChainReport, verify_chain};

/// What happened. The wire names (`as_str`) are what the log stores and `GET /v1/audit`
/// filters on; they never change once written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A password login that succeeded.
    LoginSucceeded,
    /// A password login that failed (wrong password, unknown or disabled account).
    LoginFailed,
    /// A session ended by its user.
    Logout,
    /// A phone enrolled by an officer.
    DeviceEnrolled,
    /// A device's token revoked (by an administrator, a supervisor or its officer).
    DeviceRevoked,
    /// An account created (admin CLI).
    UserCreated,
    /// An account disabled.
    UserDisabled,
    /// An account's regions or agencies replaced.
    RegionsAssigned,
    /// An account's password replaced.
    PasswordReset,
    /// A person read someone's personal data (an application, a listing with NIKs).
    PersonalDataRead,
    /// Personal data exported.
    Export,
    /// A supervisor's review decision.
    ReviewDecision,
    /// A change broke policy and the server answered with a compensating change.
    Compensation,
    /// A change or request refused outright (forged actor, out of scope).
    Refusal,
    /// An administrator looked up one citizen's audit trail.
    CitizenTrailRead,
}

impl AuditAction {
    pub const ALL: &'static [AuditAction] = &[
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::Logout,
        Self::DeviceEnrolled,
        Self::DeviceRevoked,
        Self::UserCreated,
        Self::UserDisabled,
        Self::RegionsAssigned,
        Self::PasswordReset,
        Self::PersonalDataRead,
        Self::Export,
        Self::ReviewDecision,
        Self::Compensation,
        Self::Refusal,
        Self::CitizenTrailRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login.succeeded",
            Self::LoginFailed => "login.failed",
            Self::Logout => "logout",
            Self::DeviceEnrolled => "device.enrolled",
            Self::DeviceRevoked => "device.revoked",
            Self::UserCreated => "user.created",
            Self::UserDisabled => "user.disabled",
            Self::RegionsAssigned => "user.regions_assigned",
            Self::PasswordReset => "user.password_reset",
            Self::PersonalDataRead => "personal_data.read",
            Self::Export => "export",
            Self::ReviewDecision => "review.decision",
            Self::Compensation => "change.compensated",
            Self::Refusal => "change.refused",
            Self::CitizenTrailRead => "audit.citizen_trail_read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who did it. A person (with the device they used), the server itself, or the admin CLI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditActor {
    pub user_id: Option<UserId>,
    /// A username, or `@server` / `@cli` (a username never contains `@`).
    pub username: Option<String>,
    pub device: Option<DeviceId>,
}

impl AuditActor {
    /// The person behind a request or connection.
    pub fn of(identity: &Identity) -> Self {
        Self {
            user_id: Some(identity.user_id),
            username: Some(identity.username.to_string()),
            device: identity.device().cloned(),
        }
    }

    /// The server acting on its own (compensating changes, refusals it decided).
    pub fn server() -> Self {
        Self {
            username: Some("@server".into()),
            ..Self::default()
        }
    }

    /// `jemput admin ...` on the server's machine.
    pub fn cli() -> Self {
        Self {
            username: Some("@cli".into()),
            ..Self::default()
        }
    }

    /// Nobody known (a login attempt under a name that matches no account).
    pub fn anonymous() -> Self {
        Self::default()
    }
}

/// One entry to append. Never put a NIK, a password or a token in any field: a citizen is
/// named only by `citizen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub at: crate::storage::UnixMillis,
    pub action: AuditAction,
    pub actor: AuditActor,
    /// The client's network address, when the action came over the network.
    pub client_address: Option<String>,
    /// What it was done to: a document id, a device id, a username.
    pub subject: Option<String>,
    /// The citizen whose personal data this concerns.
    pub citizen: Option<CitizenKey>,
    /// Free text or JSON: a decision and its note, a refusal's reason.
    pub detail: Option<String>,
}

impl NewAuditEntry {
    /// An entry with only the required fields; set the others with struct update syntax.
    pub fn new(at: crate::storage::UnixMillis, action: AuditAction, actor: AuditActor) -> Self {
        Self {
            at,
            action,
            actor,
            client_address: None,
            subject: None,
            citizen: None,
            detail: None,
        }
    }
}

/// HMAC-SHA256 of a NIK under the server's [`CitizenKeySecret`]: finds one citizen's trail
/// without the log holding the NIK.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CitizenKey(pub [u8; 32]);

impl CitizenKey {
    pub fn for_nik(nik: &Nik, secret: &CitizenKeySecret) -> Self {
        Self(nik.audit_key(&secret.0))
    }
}

impl fmt::Debug for CitizenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CitizenKey({}..)", hex::encode(&self.0[..4]))
    }
}

/// The server secret that keys [`CitizenKey`]s: 32 random bytes made at first start and kept
/// in `server_settings`. Whoever holds it and the log can test NIKs against the log, so it is
/// never logged, and a database dump should be treated as personal data.
#[derive(Clone)]
pub struct CitizenKeySecret(Vec<u8>);

impl fmt::Debug for CitizenKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CitizenKeySecret(***)")
    }
}

/// The `server_settings` row that holds the secret, hex-encoded.
const CITIZEN_KEY_SETTING: &str = "audit_citizen_key_secret";

/// The server's citizen-key secret, made (from the OS random generator) and stored on first
/// use; every later call, on any instance, returns the same one.
pub async fn citizen_key_secret<S: Storage>(storage: &S) -> Result<CitizenKeySecret, StorageError> {
    let mut fresh = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut fresh)
        .map_err(|e| StorageError::Corrupt(format!("OS random generator failed: {e}")))?;
    let stored = storage
        .init_setting(CITIZEN_KEY_SETTING, &hex::encode(fresh))
        .await?;
    match hex::decode(stored) {
        Ok(bytes) if bytes.len() >= 32 => Ok(CitizenKeySecret(bytes)),
        _ => Err(StorageError::Corrupt(format!(
            "setting {CITIZEN_KEY_SETTING} is not at least 32 hex-encoded bytes"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
            assert!(seen.insert(action.as_str()), "{action} twice");
        }
        assert_eq!(AuditAction::parse("login"), None);
    }

    #[test]
    fn citizen_key_depends_on_the_secret_and_hides_the_nik() {
        let today = jemput_domain::jakarta_today(1_790_000_000);
        let nik = Nik::parse("3471014509900001", today).expect("valid synthetic NIK");
        let a = CitizenKey::for_nik(&nik, &CitizenKeySecret(vec![1; 32]));
        let b = CitizenKey::for_nik(&nik, &CitizenKeySecret(vec![2; 32]));
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains("3471014509900001"));
        assert!(!hex::encode(a.0).contains("3471014509900001"));
    }
}
