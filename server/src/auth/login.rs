//! Password login and logout: the throttle, the password check, the session and the audit
//! entries, in that order.

use std::net::IpAddr;

use super::SESSION_LIFETIME_MILLIS;
use super::password::{self, Password, PasswordError};
use super::throttle::{LoginThrottle, RetryAfter};
use super::token::{RandomError, Token};
use crate::audit::{AuditAction, AuditActor, NewAuditEntry};
use crate::storage::{
    AccountStore, AuditStore, Credential, CredentialKind, Identity, StorageError, UnixMillis,
    UserAccount, Username,
};

/// What a client offered.
#[derive(Debug)]
pub struct LoginAttempt {
    /// As typed: not yet known to be a valid username.
    pub username: String,
    pub password: Password,
    pub client_address: Option<IpAddr>,
}

/// A new session; `token` is shown to the client once.
#[derive(Debug)]
pub struct LoginSuccess {
    pub token: Token,
    pub expires_at: UnixMillis,
    pub account: UserAccount,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("too many failed logins")]
    Throttled(RetryAfter),
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("account disabled")]
    Disabled,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Checks the throttle, then the password (as long for an unknown name as for a wrong
/// password), then the account; opens a session and records the outcome in the audit log.
pub async fn log_in<A: AccountStore + AuditStore>(
    store: &A,
    throttle: &LoginThrottle,
    attempt: LoginAttempt,
    now: UnixMillis,
) -> Result<LoginSuccess, LoginError> {
    let address = attempt.client_address;
    throttle
        .check(&attempt.username, address, now)
        .map_err(LoginError::Throttled)?;
    let record = match Username::parse(&attempt.username) {
        Ok(username) => store.login_record(&username).await?,
        Err(_) => None,
    };
    let (account, hash) = record.unzip();
    let matches = password::verify_password(attempt.password, hash).await?;
    let audit = |action, actor, detail: Option<&str>| NewAuditEntry {
        client_address: address.map(|a| a.to_string()),
        detail: detail.map(str::to_owned),
        ..NewAuditEntry::new(now, action, actor)
    };
    let account = match account {
        Some(account) if matches => account,
        known => {
            throttle.record_failure(&attempt.username, address, now);
            // An unknown name is not recorded: it may be a password typed in the wrong field.
            let (actor, detail) = match &known {
                Some(account) => (actor_of(account), "wrong password"),
                None => (AuditActor::anonymous(), "unknown username"),
            };
            store
                .append(audit(AuditAction::LoginFailed, actor, Some(detail)))
                .await?;
            return Err(LoginError::InvalidCredentials);
        }
    };
    if account.is_disabled() {
        store
            .append(audit(
                AuditAction::LoginFailed,
                actor_of(&account),
                Some("account disabled"),
            ))
            .await?;
        return Err(LoginError::Disabled);
    }
    throttle.record_success(&attempt.username);
    let token = Token::generate(CredentialKind::Session)?;
    let expires_at = now.saturating_add(SESSION_LIFETIME_MILLIS);
    store
        .create_session(account.id, token.hash(), now, expires_at)
        .await?;
    store
        .append(audit(AuditAction::LoginSucceeded, actor_of(&account), None))
        .await?;
    Ok(LoginSuccess {
        token,
        expires_at,
        account,
    })
}

/// Ends the session behind `identity`. `false` when the identity is not a session (a device
/// token is revoked instead).
pub async fn log_out<A: AccountStore + AuditStore>(
    store: &A,
    identity: &Identity,
    client_address: Option<IpAddr>,
    now: UnixMillis,
) -> Result<bool, StorageError> {
    let Credential::Session(session) = identity.credential else {
        return Ok(false);
    };
    store.revoke_session(session, now).await?;
    store
        .append(NewAuditEntry {
            client_address: client_address.map(|a| a.to_string()),
            ..NewAuditEntry::new(now, AuditAction::Logout, AuditActor::of(identity))
        })
        .await?;
    Ok(true)
}

fn actor_of(account: &UserAccount) -> AuditActor {
    AuditActor {
        user_id: Some(account.id),
        username: Some(account.username.to_string()),
        device: None,
    }
}
