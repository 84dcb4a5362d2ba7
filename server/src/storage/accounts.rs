//! Accounts, sessions, enrolled devices and Automerge actor bindings: the `AccountStore` part
//! of the storage trait and the values it speaks in.
//!
//! Tokens never reach this module, only their SHA-256 ([`TokenHash`]). Whether a credential
//! is still good is decided by `auth` from the [`CredentialRecord`] read here, with the current
//! time as an argument; the store only reads and writes rows.

use std::fmt;
use std::future::Future;

use automerge::ActorId;
use jemput_domain::{Agency, RegionCode, Role};

use super::StorageError;

/// Milliseconds since the Unix epoch, as stored in every time column.
pub type UnixMillis = i64;

/// A user account's database id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A login session's database id (never the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SessionId(pub i64);

/// Why a string is not a username.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a username is 3 to 64 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
)]
pub struct UsernameError;

/// A login name: 3-64 characters of `a-z 0-9 . _ -`, starting with a letter or digit. Names
/// are compared exactly; `parse` does not fold case, so `Budi` is refused rather than guessed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, UsernameError> {
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
        let first_ok = s
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let ok = (3..=64).contains(&s.len()) && first_ok && s.bytes().all(allowed);
        ok.then(|| Self(s.to_owned())).ok_or(UsernameError)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({})", self.0)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Username {
    type Error = UsernameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Username> for String {
    fn from(name: Username) -> Self {
        name.0
    }
}

/// Why a string is not a device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a device id is 32 lower-case hexadecimal digits")]
pub struct DeviceIdError;

/// An enrolled phone: 16 random bytes written as 32 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(s: &str) -> Result<Self, DeviceIdError> {
        let ok = s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self(s.to_owned())).ok_or(DeviceIdError)
    }

    /// The id made from 16 random bytes (drawn by the caller).
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DeviceId {
    type Error = DeviceIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> Self {
        id.0
    }
}

/// SHA-256 of a session or device token: all the database ever holds of a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// An argon2id PHC string (`$argon2id$v=19$...`). Not secret in the way a token is, but kept
/// out of `Debug` all the same.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(pub String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// A user account as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccount {
    pub id: UserId,
    pub username: Username,
    pub role: Role,
    /// Officers: their districts or villages; supervisors: their prefixes (e.g. a regency).
    pub regions: Vec<RegionCode>,
    /// A supervisor's agencies; empty means every agency.
    pub agencies: Vec<Agency>,
    pub created_at: UnixMillis,
    pub disabled_at: Option<UnixMillis>,
}

impl UserAccount {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

/// What `create_user` stores.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub role: Role,
    pub password_hash: PasswordHash,
    pub regions: Vec<RegionCode>,
    pub agencies: Vec<Agency>,
    pub created_at: UnixMillis,
}

/// What `enrol_device` stores: the device, its token hash and the actor ids registered to it.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub id: DeviceId,
    pub owner: UserId,
    pub label: String,
    pub token_hash: TokenHash,
    pub actors: Vec<ActorId>,
    pub enrolled_at: UnixMillis,
}

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub owner: UserId,
    pub owner_username: Username,
    pub label: String,
    pub enrolled_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// Which credential a request or connection presented.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// A login session (browser, CLI tools).
    Session(SessionId),
    /// An enrolled device's token.
    Device(DeviceId),
}

/// The kind of token, told apart by its prefix before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Session,
    Device,
}

/// Who is calling, resolved from a token on every request (and at every WebSocket upgrade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub username: Username,
    pub role: Role,
    pub regions: Vec<RegionCode>,
    /// A supervisor's agencies; empty means every agency.
    pub agencies: Vec<Agency>,
    pub credential: Credential,
    /// When the credential stops working by itself (sessions); devices last until revoked.
    pub expires_at: Option<UnixMillis>,
}

impl Identity {
    /// The enrolled device, when the token was a device token.
    pub fn device(&self) -> Option<&DeviceId> {
        match &self.credential {
            Credential::Device(id) => Some(id),
            Credential::Session(_) => None,
        }
    }

    /// Whether `region` lies in one of this user's assigned regions (a village in an
    /// officer's district, anything in a supervisor's regency). Administrators administer;
    /// they are not limited to a region.
    pub fn covers_region(&self, region: &RegionCode) -> bool {
        self.role == Role::Admin || self.regions.iter().any(|own| region.is_within(own))
    }

    /// Whether this user decides on applications of `agency`: every agency unless the
    /// account is limited to some.
    pub fn covers_agency(&self, agency: &Agency) -> bool {
        self.agencies.is_empty() || self.agencies.contains(agency)
    }
}

/// A credential found by its token hash, with everything needed to judge it; `auth` decides.
#[derive(Debug, Clone)]
pub struct CredentialRecord {
    pub account: UserAccount,
    pub credential: Credential,
    pub state: CredentialState,
}

/// The parts of a credential that change after it was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialState {
    pub expires_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
    pub user_disabled_at: Option<UnixMillis>,
}

/// Who an Automerge actor id belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ActorOwner {
    Device(DeviceId),
    User(UserId),
    /// The server's own actor (review decisions, compensating changes).
    Server,
}

impl ActorOwner {
    pub(crate) fn to_columns(&self) -> (&'static str, String) {
        match self {
            ActorOwner::Device(id) => ("device", id.as_str().to_owned()),
            ActorOwner::User(id) => ("user", id.0.to_string()),
            ActorOwner::Server => ("server", "server".to_owned()),
        }
    }

    pub(crate) fn from_columns(kind: &str, id: &str) -> Result<Self, StorageError> {
        let corrupt = || StorageError::Corrupt(format!("actor owner {kind}/{id}"));
        match kind {
            "device" => DeviceId::parse(id)
                .map(ActorOwner::Device)
                .map_err(|_| corrupt()),
            "user" => id
                .parse()
                .map(|id| ActorOwner::User(UserId(id)))
                .map_err(|_| corrupt()),
            "server" => Ok(ActorOwner::Server),
            _ => Err(corrupt()),
        }
    }
}

/// Accounts, sessions, devices and actor bindings. Every write is durable when it returns.
pub trait AccountStore: Send + Sync {
    /// Fails with `StorageError::Conflict` when the username is taken.
    fn create_user(
        &self,
        user: NewUser,
    ) -> impl Future<Output = Result<UserAccount, StorageError>> + Send;

    fn user(
        &self,
        username: &Username,
    ) -> impl Future<Output = Result<Option<UserAccount>, StorageError>> + Send;

    fn user_by_id(
        &self,
        id: UserId,
    ) -> impl Future<Output = Result<Option<UserAccount>, StorageError>> + Send;

    /// The account and its password hash, for login.
    fn login_record(
        &self,
        username: &Username,
    ) -> impl Future<Output = Result<Option<(UserAccount, PasswordHash)>, StorageError>> + Send;

    /// Every account, by username.
    fn list_users(&self) -> impl Future<Output = Result<Vec<UserAccount>, StorageError>> + Send;

    /// Disables the account and revokes its sessions (its devices stop working because every
    /// check looks at the account). `None` when there is no such user.
    fn disable_user(
        &self,
        username: &Username,
        at: UnixMillis,
    ) -> impl Future<Output = Result<Option<UserAccount>, StorageError>> + Send;

    /// Replaces the account's regions, and its agencies when `agencies` is `Some`.
    fn assign_regions(
        &self,
        username: &Username,
        regions: Vec<RegionCode>,
        agencies: Option<Vec<Agency>>,
    ) -> impl Future<Output = Result<Option<UserAccount>, StorageError>> + Send;

    /// Replaces the password hash and revokes every session of the account.
    fn set_password(
        &self,
        username: &Username,
        hash: PasswordHash,
        at: UnixMillis,
    ) -> impl Future<Output = Result<Option<UserAccount>, StorageError>> + Send;

    fn create_session(
        &self,
        user: UserId,
        token_hash: TokenHash,
        created_at: UnixMillis,
        expires_at: UnixMillis,
    ) -> impl Future<Output = Result<SessionId, StorageError>> + Send;

    /// Idempotent: a session revoked earlier keeps its first revocation time.
    fn revoke_session(
        &self,
        session: SessionId,
        at: UnixMillis,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Stores the device and binds its registered actor ids to it, atomically.
    fn enrol_device(
        &self,
        device: NewDevice,
    ) -> impl Future<Output = Result<DeviceRecord, StorageError>> + Send;

    fn device(
        &self,
        id: &DeviceId,
    ) -> impl Future<Output = Result<Option<DeviceRecord>, StorageError>> + Send;

    /// Devices of one account, or of every account, by enrolment time.
    fn list_devices(
        &self,
        owner: Option<UserId>,
    ) -> impl Future<Output = Result<Vec<DeviceRecord>, StorageError>> + Send;

    /// Revokes the device's token. Idempotent: the first revocation time is kept. `None` when
    /// there is no such device.
    fn revoke_device(
        &self,
        id: &DeviceId,
        at: UnixMillis,
    ) -> impl Future<Output = Result<Option<DeviceRecord>, StorageError>> + Send;

    /// The credential whose token hashes to `hash`, valid or not.
    fn credential_by_token_hash(
        &self,
        kind: CredentialKind,
        hash: TokenHash,
    ) -> impl Future<Output = Result<Option<CredentialRecord>, StorageError>> + Send;

    /// The current state of a credential already resolved (one indexed lookup), for checks
    /// repeated during a long-lived connection.
    fn credential_state(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<Option<CredentialState>, StorageError>> + Send;

    /// Who the actor id belongs to, if anyone.
    fn actor_owner(
        &self,
        actor: &ActorId,
    ) -> impl Future<Output = Result<Option<ActorOwner>, StorageError>> + Send;

    /// Binds the actor id to `owner` unless it is bound already, atomically, and returns the
    /// owner in force: `owner` itself, or whoever bound the id first.
    fn bind_actor_if_unbound(
        &self,
        actor: &ActorId,
        owner: &ActorOwner,
        at: UnixMillis,
    ) -> impl Future<Output = Result<ActorOwner, StorageError>> + Send;
}

/// SQL both dialects share (`$n` placeholders, `ON CONFLICT`).
pub(super) mod sql {
    pub const INSERT_USER: &str = "INSERT INTO users (username, role, password_hash, created_at) \
        VALUES ($1, $2, $3, $4) RETURNING user_id";
    pub const USER_BY_ID: &str = "SELECT user_id, username, role, created_at, disabled_at \
        FROM users WHERE user_id = $1";
    pub const USER_BY_NAME: &str = "SELECT user_id, username, role, created_at, disabled_at \
        FROM users WHERE username = $1";
    pub const ALL_USERS: &str =
        "SELECT user_id, username, role, created_at, disabled_at FROM users ORDER BY username";
    pub const USER_PASSWORD: &str = "SELECT password_hash FROM users WHERE user_id = $1";
    pub const USER_REGIONS: &str =
        "SELECT region FROM user_regions WHERE user_id = $1 ORDER BY region";
    pub const USER_AGENCIES: &str =
        "SELECT agency FROM user_agencies WHERE user_id = $1 ORDER BY agency";
    pub const ALL_REGIONS: &str = "SELECT user_id, region FROM user_regions";
    pub const ALL_AGENCIES: &str = "SELECT user_id, agency FROM user_agencies";
    pub const INSERT_REGION: &str = "INSERT INTO user_regions (user_id, region) VALUES ($1, $2) \
        ON CONFLICT (user_id, region) DO NOTHING";
    pub const INSERT_AGENCY: &str = "INSERT INTO user_agencies (user_id, agency) VALUES ($1, $2) \
        ON CONFLICT (user_id, agency) DO NOTHING";
    pub const DELETE_REGIONS: &str = "DELETE FROM user_regions WHERE user_id = $1";
    pub const DELETE_AGENCIES: &str = "DELETE FROM user_agencies WHERE user_id = $1";
    pub const USER_ID_BY_NAME: &str = "SELECT user_id FROM users WHERE username = $1";
    pub const DISABLE_USER: &str =
        "UPDATE users SET disabled_at = COALESCE(disabled_at, $2) WHERE user_id = $1";
    pub const SET_PASSWORD: &str = "UPDATE users SET password_hash = $2 WHERE user_id = $1";
    pub const REVOKE_USER_SESSIONS: &str =
        "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";

    pub const INSERT_SESSION: &str = "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) \
        VALUES ($1, $2, $3, $4) RETURNING session_id";
    pub const REVOKE_SESSION: &str =
        "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2) WHERE session_id = $1";
    pub const SESSION_BY_HASH: &str = "SELECT s.session_id, s.user_id, s.expires_at, \
        s.revoked_at FROM sessions s WHERE s.token_hash = $1";
    pub const SESSION_STATE: &str = "SELECT s.expires_at, s.revoked_at, u.disabled_at \
        FROM sessions s JOIN users u ON u.user_id = s.user_id WHERE s.session_id = $1";

    pub const INSERT_DEVICE: &str = "INSERT INTO devices (device_id, token_hash, user_id, label, enrolled_at) \
        VALUES ($1, $2, $3, $4, $5)";
    pub const DEVICE_BY_ID: &str = "SELECT d.device_id, d.user_id, u.username, d.label, \
        d.enrolled_at, d.revoked_at FROM devices d JOIN users u ON u.user_id = d.user_id \
        WHERE d.device_id = $1";
    pub const DEVICES_OF: &str = "SELECT d.device_id, d.user_id, u.username, d.label, \
        d.enrolled_at, d.revoked_at FROM devices d JOIN users u ON u.user_id = d.user_id \
        WHERE d.user_id = $1 ORDER BY d.enrolled_at, d.device_id";
    pub const ALL_DEVICES: &str = "SELECT d.device_id, d.user_id, u.username, d.label, \
        d.enrolled_at, d.revoked_at FROM devices d JOIN users u ON u.user_id = d.user_id \
        ORDER BY d.enrolled_at, d.device_id";
    pub const DEVICE_BY_HASH: &str =
        "SELECT device_id, user_id, revoked_at FROM devices WHERE token_hash = $1";
    pub const DEVICE_STATE: &str = "SELECT d.revoked_at, u.disabled_at \
        FROM devices d JOIN users u ON u.user_id = d.user_id WHERE d.device_id = $1";
    pub const REVOKE_DEVICE: &str =
        "UPDATE devices SET revoked_at = COALESCE(revoked_at, $2) WHERE device_id = $1";

    pub const ACTOR_OWNER: &str =
        "SELECT owner_kind, owner_id FROM actor_bindings WHERE actor_id = $1";
    pub const REGISTER_ACTOR: &str = "INSERT INTO actor_bindings (actor_id, owner_kind, owner_id, registered, bound_at) \
        VALUES ($1, $2, $3, $4, $5)";
    pub const BIND_ACTOR: &str = "INSERT INTO actor_bindings (actor_id, owner_kind, owner_id, registered, bound_at) \
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (actor_id) DO NOTHING";
}

/// A `users` row as read, before its regions and agencies are attached.
#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    #[sqlx(rename = "user_id")]
    pub id: i64,
    pub username: String,
    pub role: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

impl UserRow {
    pub(super) fn into_account(
        self,
        regions: &[String],
        agencies: &[String],
    ) -> Result<UserAccount, StorageError> {
        Ok(UserAccount {
            id: UserId(self.id),
            username: username_from_db(self.username)?,
            role: role_from_db(&self.role)?,
            regions: regions
                .iter()
                .map(|r| region_from_db(r))
                .collect::<Result<_, _>>()?,
            agencies: agencies
                .iter()
                .map(|a| agency_from_db(a))
                .collect::<Result<_, _>>()?,
            created_at: self.created_at,
            disabled_at: self.disabled_at,
        })
    }
}

/// A `devices` row joined with its owner's username.
#[derive(sqlx::FromRow)]
pub(super) struct DeviceRow {
    #[sqlx(rename = "device_id")]
    pub id: String,
    #[sqlx(rename = "user_id")]
    pub owner: i64,
    #[sqlx(rename = "username")]
    pub owner_username: String,
    pub label: String,
    pub enrolled_at: i64,
    pub revoked_at: Option<i64>,
}

impl DeviceRow {
    pub(super) fn into_record(self) -> Result<DeviceRecord, StorageError> {
        Ok(DeviceRecord {
            id: device_id_from_db(self.id)?,
            owner: UserId(self.owner),
            owner_username: username_from_db(self.owner_username)?,
            label: self.label,
            enrolled_at: self.enrolled_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// Parses a role read back from the database.
pub(super) fn role_from_db(value: &str) -> Result<Role, StorageError> {
    Role::parse(value).map_err(|_| StorageError::Corrupt(format!("unknown role {value:?}")))
}

pub(super) fn username_from_db(value: String) -> Result<Username, StorageError> {
    Username::parse(&value).map_err(|_| StorageError::Corrupt(format!("bad username {value:?}")))
}

pub(super) fn device_id_from_db(value: String) -> Result<DeviceId, StorageError> {
    DeviceId::parse(&value).map_err(|_| StorageError::Corrupt(format!("bad device id {value:?}")))
}

pub(super) fn region_from_db(value: &str) -> Result<RegionCode, StorageError> {
    RegionCode::parse(value).map_err(|_| StorageError::Corrupt(format!("bad region {value:?}")))
}

pub(super) fn agency_from_db(value: &str) -> Result<Agency, StorageError> {
    Agency::parse(value).map_err(|_| StorageError::Corrupt(format!("bad agency {value:?}")))
}

/// Lower-case hex, the form actor ids are stored in.
pub(super) fn actor_to_db(actor: &ActorId) -> String {
    actor.to_hex_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["budi", "siti.rahma", "op_3471", "a-1", "123"] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "Budi",
            ".budi",
            "budi rahma",
            "bu@di",
            &"x".repeat(65),
        ] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_ids() {
        let id = DeviceId::from_random([0xab; 16]);
        assert_eq!(DeviceId::parse(id.as_str()), Ok(id));
        assert!(DeviceId::parse("ABABABABABABABABABABABABABABABAB").is_err());
        assert!(DeviceId::parse("abab").is_err());
    }

    #[test]
    fn actor_owner_columns_round_trip() {
        for owner in [
            ActorOwner::Device(DeviceId::from_random([7; 16])),
            ActorOwner::User(UserId(42)),
            ActorOwner::Server,
        ] {
            let (kind, id) = owner.to_columns();
            assert_eq!(ActorOwner::from_columns(kind, &id).ok(), Some(owner));
        }
        assert!(ActorOwner::from_columns("alien", "x").is_err());
    }
}
