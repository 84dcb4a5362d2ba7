//! The hash chain: each entry's hash covers its own fields and the previous entry's hash, so
//! changing, removing or reordering any entry breaks every link after it.
//!
//! `entry_hash = SHA-256(canonical encoding)`. The encoding is a fixed sequence of fields, each
//! written unambiguously: integers as 8 big-endian bytes, absent values as one `0` byte,
//! present ones as a `1` byte, a 4-byte big-endian length and the bytes. It starts with a
//! version tag, so a future format can live beside this one.
//!
//! What the chain cannot show on its own: entries cut off the end of the log (the newest
//! entry then looks like the last one). Copying the head hash elsewhere now and then (a
//! printout, another system's log) closes that gap.

use sha2::{Digest, Sha256};

use crate::storage::{AuditEntry, AuditStore, StorageError};

/// The `prev_hash` of entry 1.
pub const GENESIS: [u8; 32] = [0; 32];

const VERSION_TAG: &[u8] = b"jemput.audit.v1\0";

/// Every hashed field of an entry, as stored.
#[derive(Debug, Clone, Copy)]
pub struct EntryFields<'a> {
    pub seq: i64,
    pub at: i64,
    pub action: &'a str,
    pub actor_user_id: Option<i64>,
    pub actor_username: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub client_address: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub citizen_key: Option<&'a [u8]>,
    pub detail: Option<&'a str>,
    pub prev_hash: &'a [u8],
}

/// The canonical encoding that is hashed.
pub fn encode(fields: &EntryFields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(VERSION_TAG);
    out.extend_from_slice(&fields.seq.to_be_bytes());
    out.extend_from_slice(&fields.at.to_be_bytes());
    put_bytes(&mut out, Some(fields.action.as_bytes()));
    match fields.actor_user_id {
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&id.to_be_bytes());
        }
        None => out.push(0),
    }
    put_bytes(&mut out, fields.actor_username.map(str::as_bytes));
    put_bytes(&mut out, fields.device_id.map(str::as_bytes));
    put_bytes(&mut out, fields.client_address.map(str::as_bytes));
    put_bytes(&mut out, fields.subject.map(str::as_bytes));
    put_bytes(&mut out, fields.citizen_key);
    put_bytes(&mut out, fields.detail.map(str::as_bytes));
    put_bytes(&mut out, Some(fields.prev_hash));
    out
}

fn put_bytes(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            // Fields are far below 4 GiB (the database would refuse them first).
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// SHA-256 of the canonical encoding.
pub fn entry_hash(fields: &EntryFields<'_>) -> [u8; 32] {
    Sha256::digest(encode(fields)).into()
}

/// Where and how the chain is broken. `seq` is the entry number an administrator looks at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokenLink {
    #[error("entry {seq}: missing (the log jumps from entry {previous} to entry {found})")]
    Missing { seq: i64, previous: i64, found: i64 },
    #[error("entry {seq}: its contents do not match its hash (the entry was changed)")]
    Altered { seq: i64 },
    #[error(
        "entry {seq}: it does not follow from entry {previous} (an entry was changed, removed or inserted)"
    )]
    Unlinked { seq: i64, previous: i64 },
}

impl BrokenLink {
    /// The first entry that fails verification.
    pub fn seq(&self) -> i64 {
        match self {
            BrokenLink::Missing { seq, .. }
            | BrokenLink::Altered { seq }
            | BrokenLink::Unlinked { seq, .. } => *seq,
        }
    }
}

/// Checks entries one at a time, in order, from entry 1.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    previous_seq: i64,
    previous_hash: [u8; 32],
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            previous_seq: 0,
            previous_hash: GENESIS,
        }
    }
}

impl ChainVerifier {
    /// Checks the next entry. After an error the verifier must not be used further.
    pub fn check(&mut self, entry: &AuditEntry) -> Result<(), BrokenLink> {
        let expected = self.previous_seq + 1;
        if entry.seq != expected {
            return Err(BrokenLink::Missing {
                seq: expected,
                previous: self.previous_seq,
                found: entry.seq,
            });
        }
        if entry.prev_hash.as_slice() != self.previous_hash.as_slice() {
            return Err(BrokenLink::Unlinked {
                seq: entry.seq,
                previous: self.previous_seq,
            });
        }
        let hash = entry_hash(&entry.fields());
        if entry.entry_hash.as_slice() != hash.as_slice() {
            return Err(BrokenLink::Altered { seq: entry.seq });
        }
        self.previous_seq = entry.seq;
        self.previous_hash = hash;
        Ok(())
    }
}

/// What `verify_chain` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Entries that verified, from entry 1.
    pub verified: u64,
    /// The hash of the last verified entry (the head, when nothing is broken).
    pub head: [u8; 32],
    pub broken: Option<BrokenLink>,
}

/// Entries read per round trip while walking the chain.
const PAGE: u32 = 1000;

/// Walks the whole log from entry 1 and stops at the first broken link.
pub async fn verify_chain<S: AuditStore>(store: &S) -> Result<ChainReport, StorageError> {
    let mut verifier = ChainVerifier::default();
    let mut verified = 0;
    loop {
        let page = store.audit_chain(verifier.previous_seq, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for entry in &page {
            if let Err(broken) = verifier.check(entry) {
                return Ok(ChainReport {
                    verified,
                    head: verifier.previous_hash,
                    broken: Some(broken),
                });
            }
            verified += 1;
        }
    }
    Ok(ChainReport {
        verified,
        head: verifier.previous_hash,
        broken: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, prev: [u8; 32], subject: &str) -> AuditEntry {
        let mut entry = AuditEntry {
            seq,
            at: 1_790_000_000_000 + seq,
            action: "login.succeeded".into(),
            actor_user_id: Some(7),
            actor_username: Some("budi".into()),
            device_id: None,
            client_address: Some("127.0.0.1".into()),
            subject: Some(subject.into()),
            citizen_key: None,
            detail: None,
            prev_hash: prev.to_vec(),
            entry_hash: Vec::new(),
        };
        entry.entry_hash = entry_hash(&entry.fields()).to_vec();
        entry
    }

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for seq in 1..=n {
            let prev = out
                .last()
                .map(|e| <[u8; 32]>::try_from(e.entry_hash.as_slice()).expect("32 bytes"))
                .unwrap_or(GENESIS);
            out.push(entry(seq, prev, &format!("s{seq}")));
        }
        out
    }

    fn first_broken(entries: &[AuditEntry]) -> Option<BrokenLink> {
        let mut verifier = ChainVerifier::default();
        entries.iter().find_map(|e| verifier.check(e).err())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(first_broken(&chain(5)), None);
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_entry() {
        let mut altered = chain(5);
        altered[2].subject = Some("someone else".into());
        assert_eq!(first_broken(&altered), Some(BrokenLink::Altered { seq: 3 }));

        // Changed and re-hashed: the next entry no longer follows from it.
        let mut rehashed = chain(5);
        rehashed[2].detail = Some("x".into());
        rehashed[2].entry_hash = entry_hash(&rehashed[2].fields()).to_vec();
        assert_eq!(
            first_broken(&rehashed),
            Some(BrokenLink::Unlinked {
                seq: 4,
                previous: 3
            })
        );

        let mut removed = chain(5);
        removed.remove(1);
        assert_eq!(
            first_broken(&removed),
            Some(BrokenLink::Missing {
                seq: 2,
                previous: 1,
                found: 3
            })
        );
    }

    #[test]
    fn absent_and_empty_fields_hash_differently() {
        let mut a = entry(1, GENESIS, "x");
        a.detail = None;
        let mut b = a.clone();
        b.detail = Some(String::new());
        assert_ne!(entry_hash(&a.fields()), entry_hash(&b.fields()));
        // Moving bytes between adjacent fields changes the hash too.
        let mut c = a.clone();
        c.actor_username = Some("bud".into());
        c.device_id = Some("i".into());
        assert_ne!(entry_hash(&a.fields()), entry_hash(&c.fields()));
    }
}
