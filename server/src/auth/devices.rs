//! Device enrolment and revocation. An enrolled phone gets a device token (shown once) and a
//! few Automerge actor ids bound to it, for the SDK to write with.

use std::net::IpAddr;

use automerge::ActorId;

use super::policy::{Action, Denied, permits};
use super::token::{RandomError, Token, random_bytes};
use crate::audit::{AuditAction, AuditActor, NewAuditEntry};
use crate::storage::{
    AccountStore, AuditStore, CredentialKind, DeviceId, DeviceRecord, Identity, NewDevice,
    StorageError, UnixMillis,
};

/// Actor ids registered to a device at enrolment.
pub const REGISTERED_ACTORS: usize = 4;
/// Longest device label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

/// A new device; `token` is shown to the phone once.
#[derive(Debug)]
pub struct Enrolment {
    pub device: DeviceRecord,
    pub token: Token,
    pub actors: Vec<ActorId>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("no such device")]
    NotFound,
    #[error("label longer than {MAX_LABEL_CHARS} characters")]
    LabelTooLong,
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Enrols a phone for the officer behind `identity` (a password session).
pub async fn enrol<A: AccountStore + AuditStore>(
    store: &A,
    identity: &Identity,
    label: Option<String>,
    client_address: Option<IpAddr>,
    now: UnixMillis,
) -> Result<Enrolment, DeviceError> {
    permits(identity, Action::EnrolDevice)?;
    let label = label.unwrap_or_default().trim().to_owned();
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(DeviceError::LabelTooLong);
    }
    let id = DeviceId::from_random(random_bytes()?);
    let token = Token::generate(CredentialKind::Device)?;
    let actors = (0..REGISTERED_ACTORS)
        .map(|_| random_bytes::<16>().map(|bytes| ActorId::from(bytes.as_slice())))
        .collect::<Result<Vec<_>, _>>()?;
    let device = store
        .enrol_device(NewDevice {
            id: id.clone(),
            owner: identity.user_id,
            label,
            token_hash: token.hash(),
            actors: actors.clone(),
            enrolled_at: now,
        })
        .await?;
    store
        .append(NewAuditEntry {
            client_address: client_address.map(|a| a.to_string()),
            subject: Some(id.to_string()),
            ..NewAuditEntry::new(now, AuditAction::DeviceEnrolled, AuditActor::of(identity))
        })
        .await?;
    Ok(Enrolment {
        device,
        token,
        actors,
    })
}

/// Revokes a device on behalf of `identity`, if policy allows (administrators, the officer's
/// supervisor, the officer).
pub async fn revoke_as<A: AccountStore + AuditStore>(
    store: &A,
    identity: &Identity,
    id: &DeviceId,
    client_address: Option<IpAddr>,
    now: UnixMillis,
) -> Result<DeviceRecord, DeviceError> {
    let device = store.device(id).await?.ok_or(DeviceError::NotFound)?;
    let owner = store
        .user_by_id(device.owner)
        .await?
        .ok_or(DeviceError::NotFound)?;
    permits(identity, Action::RevokeDevice { owner: &owner })?;
    revoke(store, id, AuditActor::of(identity), client_address, now).await
}

/// Revokes a device with no policy check (the admin CLI). Idempotent; audited every time.
pub async fn revoke<A: AccountStore + AuditStore>(
    store: &A,
    id: &DeviceId,
    by: AuditActor,
    client_address: Option<IpAddr>,
    now: UnixMillis,
) -> Result<DeviceRecord, DeviceError> {
    let device = store
        .revoke_device(id, now)
        .await?
        .ok_or(DeviceError::NotFound)?;
    store
        .append(NewAuditEntry {
            client_address: client_address.map(|a| a.to_string()),
            subject: Some(id.to_string()),
            detail: Some(format!("owner {}", device.owner_username)),
            ..NewAuditEntry::new(now, AuditAction::DeviceRevoked, by)
        })
        .await?;
    Ok(device)
}
