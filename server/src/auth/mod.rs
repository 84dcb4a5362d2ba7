//! Who is calling: passwords, session and device tokens, the identity a token resolves to,
//! the login throttle, and the role × action policy.
//!
//! Every check that depends on time takes the current time as an argument. Every request (and
//! the WebSocket code, at upgrade and while a connection lives) resolves its token again, so a
//! revoked device, a logged-out session or a disabled account stops working at once.

pub mod devices;
pub mod login;
pub mod password;
pub mod policy;
pub mod throttle;
pub mod token;
pub mod users;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::storage::{
    AccountStore, CredentialRecord, CredentialState, Identity, StorageError, UnixMillis,
};

pub use password::{Password, PasswordError};
pub use policy::{Action, Denied, permits};
pub use throttle::{LoginThrottle, ThrottleConfig};
pub use token::Token;

/// How long a login session lasts: one working day and then some. Devices have no expiry
/// (they are offline for days); they are revoked instead.
pub const SESSION_LIFETIME_MILLIS: UnixMillis = 12 * 60 * 60 * 1000;

/// Why a token does not identify anyone. Clients are told only "not authenticated"; the
/// variant is for logs and metrics.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token presented")]
    Missing,
    #[error("token is not a Jemput token")]
    Malformed,
    #[error("no credential has this token")]
    Unknown,
    #[error("session expired")]
    Expired,
    #[error("credential revoked")]
    Revoked,
    #[error("account disabled")]
    Disabled,
    #[error("cannot check the token: {0}")]
    Storage(#[from] StorageError),
}

/// Whether a credential in `state` may be used at `now`.
pub fn check_state(state: &CredentialState, now: UnixMillis) -> Result<(), AuthError> {
    if state.user_disabled_at.is_some() {
        return Err(AuthError::Disabled);
    }
    if state.revoked_at.is_some() {
        return Err(AuthError::Revoked);
    }
    match state.expires_at {
        Some(expires) if expires <= now => Err(AuthError::Expired),
        _ => Ok(()),
    }
}

/// Resolves a presented session or device token to the identity behind it, checking revocation,
/// expiry and the account at `now`. Use at every request and WebSocket upgrade.
pub async fn identity_for_token<A: AccountStore>(
    accounts: &A,
    token: &str,
    now: UnixMillis,
) -> Result<Identity, AuthError> {
    let (kind, hash) = token::parse_presented(token)?;
    let record = accounts
        .credential_by_token_hash(kind, hash)
        .await?
        .ok_or(AuthError::Unknown)?;
    check_state(&record.state, now)?;
    Ok(identity_of(record))
}

fn identity_of(record: CredentialRecord) -> Identity {
    let account = record.account;
    Identity {
        user_id: account.id,
        username: account.username,
        role: account.role,
        regions: account.regions,
        agencies: account.agencies,
        credential: record.credential,
        expires_at: record.state.expires_at,
    }
}

/// Whether the credential behind `identity` still holds at `now` (one indexed lookup): for a
/// long-lived connection to re-check before acting on a frame. A credential that has vanished
/// counts as revoked.
pub async fn credential_still_valid<A: AccountStore>(
    accounts: &A,
    identity: &Identity,
    now: UnixMillis,
) -> Result<bool, StorageError> {
    Ok(accounts
        .credential_state(&identity.credential)
        .await?
        .is_some_and(|state| check_state(&state, now).is_ok()))
}

/// The wall clock in Unix milliseconds: read once at the edge (a handler, the CLI) and passed
/// down.
pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(expires: Option<i64>, revoked: Option<i64>, disabled: Option<i64>) -> CredentialState {
        CredentialState {
            expires_at: expires,
            revoked_at: revoked,
            user_disabled_at: disabled,
        }
    }

    #[test]
    fn credential_states() {
        let check = |s: CredentialState, now: i64| check_state(&s, now).map_err(|e| e.to_string());
        assert!(check(state(Some(100), None, None), 99).is_ok());
        assert_eq!(
            check(state(Some(100), None, None), 100),
            Err("session expired".into())
        );
        assert!(check(state(None, None, None), i64::MAX).is_ok());
        assert_eq!(
            check(state(None, Some(5), None), 6),
            Err("credential revoked".into())
        );
        assert_eq!(
            check(state(Some(100), Some(5), Some(5)), 6),
            Err("account disabled".into())
        );
    }
}
