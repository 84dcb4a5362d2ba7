//! Session and device tokens: 32 bytes from the OS random generator, base64url, behind a
//! prefix that says which kind it is (`jms_` session, `jmd_` device) so a lookup goes straight
//! to the right table and a leaked token is easy to recognise. Only their SHA-256 is stored.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use super::AuthError;
use crate::storage::{CredentialKind, TokenHash};

const SESSION_PREFIX: &str = "jms_";
const DEVICE_PREFIX: &str = "jmd_";
const RANDOM_BYTES: usize = 32;
/// Prefix plus 43 base64url characters.
const TOKEN_LEN: usize = 4 + 43;

/// A freshly made token: shown to its owner once, never stored or logged.
#[derive(Clone)]
pub struct Token(String);

/// The OS random generator failed; no token (or secret) can be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random generator failed: {0}")]
pub struct RandomError(String);

impl Token {
    pub fn generate(kind: CredentialKind) -> Result<Self, RandomError> {
        let bytes: [u8; RANDOM_BYTES] = random_bytes()?;
        let prefix = match kind {
            CredentialKind::Session => SESSION_PREFIX,
            CredentialKind::Device => DEVICE_PREFIX,
        };
        Ok(Self(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))))
    }

    /// What is stored in place of the token.
    pub fn hash(&self) -> TokenHash {
        hash(&self.0)
    }

    /// The token itself, to hand to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// `N` bytes from the OS random generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| RandomError(e.to_string()))?;
    Ok(bytes)
}

fn hash(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// The kind and hash of a token a client presented, if it is shaped like one of ours.
pub fn parse_presented(token: &str) -> Result<(CredentialKind, TokenHash), AuthError> {
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    let kind = if token.starts_with(SESSION_PREFIX) {
        CredentialKind::Session
    } else if token.starts_with(DEVICE_PREFIX) {
        CredentialKind::Device
    } else {
        return Err(AuthError::Malformed);
    };
    let well_formed = token.len() == TOKEN_LEN
        && token[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(AuthError::Malformed);
    }
    Ok((kind, hash(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_to_their_kind_and_hash() {
        for kind in [CredentialKind::Session, CredentialKind::Device] {
            let token = Token::generate(kind).expect("random");
            assert_eq!(token.expose().len(), TOKEN_LEN);
            let (parsed_kind, hash) = parse_presented(token.expose()).expect("parses");
            assert_eq!(parsed_kind, kind);
            assert_eq!(hash, token.hash());
            assert_eq!(format!("{token:?}"), "Token(***)");
        }
        let a = Token::generate(CredentialKind::Session).expect("random");
        let b = Token::generate(CredentialKind::Session).expect("random");
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn foreign_shapes_are_refused_before_any_lookup() {
        let good = Token::generate(CredentialKind::Device).expect("random");
        for bad in [
            "jmx_".to_owned() + &good.expose()[4..],
            good.expose()[..TOKEN_LEN - 1].to_owned(),
            good.expose().to_owned() + "A",
            good.expose().replace(|c: char| c.is_ascii_digit(), "+"),
            "Bearer ".to_owned() + good.expose(),
        ] {
            if bad == good.expose() {
                continue;
            }
            assert!(
                matches!(parse_presented(&bad), Err(AuthError::Malformed)),
                "{bad}"
            );
        }
        assert!(matches!(parse_presented(""), Err(AuthError::Missing)));
    }
}
