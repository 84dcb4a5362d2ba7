//! Passwords: argon2id hashes (PHC strings), checked off the async reactor with a bound on
//! how many run at once (each takes about 19 MiB and tens of milliseconds by design).

use std::fmt;
use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash as Phc;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

use super::token::{RandomError, random_bytes};
use crate::storage::PasswordHash;

/// Hashes computed at once; more wait. Bounds memory under a burst of logins.
static HASHING: Semaphore = Semaphore::const_new(4);

/// A password in clear, as typed. Never logged: `Debug` is redacted.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("a new password needs at least {MIN_NEW_LEN} characters")]
    TooShort,
    #[error("a password has at most {MAX_LEN} bytes")]
    TooLong,
    #[error("the stored password hash is not an argon2 PHC string")]
    BadStoredHash,
    #[error("hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Random(#[from] RandomError),
}

const MIN_NEW_LEN: usize = 10;
const MAX_LEN: usize = 1024;

impl Password {
    /// A password offered at login: anything up to the length limit (the policy for new
    /// passwords is not revealed by login answers).
    pub fn presented(s: String) -> Result<Self, PasswordError> {
        if s.len() > MAX_LEN {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(s))
    }

    /// A password being set: at least 10 characters.
    pub fn new_password(s: String) -> Result<Self, PasswordError> {
        if s.chars().count() < MIN_NEW_LEN {
            return Err(PasswordError::TooShort);
        }
        Self::presented(s)
    }

    /// 20 characters from an alphabet without look-alikes (no 0/O, 1/l/I), about 100 bits.
    pub fn generate() -> Result<Self, PasswordError> {
        const ALPHABET: &[u8] = b"23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
        let bytes: [u8; 64] = random_bytes()?;
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        let chars: String = bytes
            .iter()
            .filter(|&&b| usize::from(b) < limit)
            .take(20)
            .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
            .collect();
        if chars.len() < 20 {
            // 64 draws with a 12% rejection rate: practically never.
            return Self::generate();
        }
        Ok(Self(chars))
    }

    /// The password itself, to show once to the person it was made for.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The argon2id hash of `password`, with a fresh salt.
pub async fn hash_password(password: Password) -> Result<PasswordHash, PasswordError> {
    let _permit = HASHING.acquire().await;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.0.as_bytes())
            .map(|hash| PasswordHash(hash.to_string()))
            .map_err(|e| PasswordError::Hashing(e.to_string()))
    })
    .await
    .map_err(|e| PasswordError::Hashing(e.to_string()))?
}

/// Whether `password` matches `hash`. With `None` (no such account) a hash is still checked,
/// so an unknown username takes as long to refuse as a wrong password.
pub async fn verify_password(
    password: Password,
    hash: Option<PasswordHash>,
) -> Result<bool, PasswordError> {
    let known = hash.is_some();
    let hash = match hash {
        Some(hash) => hash.0,
        None => dummy_hash().to_owned(),
    };
    let _permit = HASHING.acquire().await;
    let matches = tokio::task::spawn_blocking(move || {
        let parsed = Phc::new(&hash).map_err(|_| PasswordError::BadStoredHash)?;
        Ok::<_, PasswordError>(
            Argon2::default()
                .verify_password(password.0.as_bytes(), &parsed)
                .is_ok(),
        )
    })
    .await
    .map_err(|e| PasswordError::Hashing(e.to_string()))??;
    Ok(known && matches)
}

/// A hash nobody knows the password of (a fixed salt is fine: it never guards an account).
fn dummy_hash() -> &'static str {
    static DUMMY: LazyLock<String> = LazyLock::new(|| {
        let salt = b"jemput-dummy-salt";
        Argon2::default()
            .hash_password_with_salt(b"no account has this password", salt)
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    });
    &DUMMY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_accepts_its_password_only() {
        let password = Password::new_password("kopi-tubruk-2026".into()).expect("long enough");
        let hash = hash_password(password.clone()).await.expect("hash");
        assert!(hash.0.starts_with("$argon2id$"));
        assert!(!hash.0.contains("kopi"));
        assert!(
            verify_password(password, Some(hash.clone()))
                .await
                .expect("verify")
        );
        let wrong = Password::presented("kopi-tubruk-2025".into()).expect("ok");
        assert!(
            !verify_password(wrong.clone(), Some(hash))
                .await
                .expect("verify")
        );
        assert!(!verify_password(wrong, None).await.expect("verify"));
    }

    #[test]
    fn policy_and_generation() {
        assert!(matches!(
            Password::new_password("short".into()),
            Err(PasswordError::TooShort)
        ));
        assert!(matches!(
            Password::presented("x".repeat(MAX_LEN + 1)),
            Err(PasswordError::TooLong)
        ));
        let a = Password::generate().expect("random");
        let b = Password::generate().expect("random");
        assert_eq!(a.expose().len(), 20);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(format!("{a:?}"), "Password(***)");
    }
}
