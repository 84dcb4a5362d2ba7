//! Account administration (`jemput admin user ...`): creating accounts, assigning regions and
//! agencies, disabling, resetting passwords. Every change is audited.

use jemput_domain::{Agency, RegionCode, RegionLevel, Role, catalogue};

use super::password::{self, Password, PasswordError};
use crate::audit::{AuditAction, AuditActor, NewAuditEntry};
use crate::storage::{
    AccountStore, AuditStore, NewUser, StorageError, UnixMillis, UserAccount, Username,
};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("username {0} is taken")]
    UsernameTaken(Username),
    #[error("no user named {0}")]
    NotFound(Username),
    #[error(transparent)]
    Assignment(#[from] AssignmentError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Storage(StorageError),
}

impl From<StorageError> for UserError {
    fn from(error: StorageError) -> Self {
        UserError::Storage(error)
    }
}

/// Why regions or agencies do not fit an account's role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("an officer works in districts or villages, not in {0} (a {1})")]
    OfficerRegionTooWide(RegionCode, RegionLevel),
    #[error("an officer needs at least one district or village")]
    OfficerWithoutRegion,
    #[error("a supervisor needs at least one region")]
    SupervisorWithoutRegion,
    #[error("an administrator is not assigned regions")]
    AdminWithRegion,
    #[error("only supervisors are limited to agencies")]
    AgenciesNotForRole,
    #[error("{0} is not an agency of the service catalogue")]
    UnknownAgency(String),
}

/// Whether `regions` and `agencies` suit `role`: officers work in districts or villages,
/// supervisors over a prefix (province, regency or district) and optionally for some agencies,
/// administrators are not tied to a region.
pub fn check_assignment(
    role: Role,
    regions: &[RegionCode],
    agencies: &[Agency],
) -> Result<(), AssignmentError> {
    if !agencies.is_empty() && role != Role::Supervisor {
        return Err(AssignmentError::AgenciesNotForRole);
    }
    if let Some(unknown) = agencies.iter().find(|a| !known_agency(a)) {
        return Err(AssignmentError::UnknownAgency(unknown.to_string()));
    }
    match role {
        Role::Officer => {
            if regions.is_empty() {
                return Err(AssignmentError::OfficerWithoutRegion);
            }
            match regions
                .iter()
                .find(|r| !matches!(r.level(), RegionLevel::District | RegionLevel::Village))
            {
                Some(wide) => Err(AssignmentError::OfficerRegionTooWide(*wide, wide.level())),
                None => Ok(()),
            }
        }
        Role::Supervisor if regions.is_empty() => Err(AssignmentError::SupervisorWithoutRegion),
        Role::Supervisor => Ok(()),
        Role::Admin if !regions.is_empty() => Err(AssignmentError::AdminWithRegion),
        Role::Admin => Ok(()),
    }
}

fn known_agency(agency: &Agency) -> bool {
    catalogue().services().iter().any(|s| &s.agency == agency)
}

/// Every agency of the service catalogue, sorted, without repeats.
pub fn catalogue_agencies() -> Vec<Agency> {
    let mut agencies: Vec<Agency> = catalogue()
        .services()
        .iter()
        .map(|s| s.agency.clone())
        .collect();
    agencies.sort();
    agencies.dedup();
    agencies
}

/// What `jemput admin user add` asks for.
#[derive(Debug)]
pub struct NewAccount {
    pub username: Username,
    pub role: Role,
    pub regions: Vec<RegionCode>,
    pub agencies: Vec<Agency>,
    pub password: Password,
}

pub async fn create<A: AccountStore + AuditStore>(
    store: &A,
    account: NewAccount,
    by: AuditActor,
    now: UnixMillis,
) -> Result<UserAccount, UserError> {
    check_assignment(account.role, &account.regions, &account.agencies)?;
    let password_hash = password::hash_password(account.password).await?;
    let username = account.username.clone();
    let created = store
        .create_user(NewUser {
            username: account.username,
            role: account.role,
            password_hash,
            regions: account.regions,
            agencies: account.agencies,
            created_at: now,
        })
        .await
        .map_err(|error| match error {
            StorageError::Conflict(_) => UserError::UsernameTaken(username),
            other => UserError::Storage(other),
        })?;
    audit(
        store,
        AuditAction::UserCreated,
        by,
        &created,
        now,
        Some(describe(&created)),
    )
    .await?;
    Ok(created)
}

pub async fn disable<A: AccountStore + AuditStore>(
    store: &A,
    username: &Username,
    by: AuditActor,
    now: UnixMillis,
) -> Result<UserAccount, UserError> {
    let account = store
        .disable_user(username, now)
        .await?
        .ok_or_else(|| UserError::NotFound(username.clone()))?;
    audit(store, AuditAction::UserDisabled, by, &account, now, None).await?;
    Ok(account)
}

/// Replaces the account's regions, and its agencies when `agencies` is `Some`.
pub async fn assign_regions<A: AccountStore + AuditStore>(
    store: &A,
    username: &Username,
    regions: Vec<RegionCode>,
    agencies: Option<Vec<Agency>>,
    by: AuditActor,
    now: UnixMillis,
) -> Result<UserAccount, UserError> {
    let current = store
        .user(username)
        .await?
        .ok_or_else(|| UserError::NotFound(username.clone()))?;
    check_assignment(
        current.role,
        &regions,
        agencies.as_deref().unwrap_or(&current.agencies),
    )?;
    let account = store
        .assign_regions(username, regions, agencies)
        .await?
        .ok_or_else(|| UserError::NotFound(username.clone()))?;
    audit(
        store,
        AuditAction::RegionsAssigned,
        by,
        &account,
        now,
        Some(describe(&account)),
    )
    .await?;
    Ok(account)
}

/// Sets a new password and ends every session of the account.
pub async fn reset_password<A: AccountStore + AuditStore>(
    store: &A,
    username: &Username,
    password: Password,
    by: AuditActor,
    now: UnixMillis,
) -> Result<UserAccount, UserError> {
    if store.user(username).await?.is_none() {
        return Err(UserError::NotFound(username.clone()));
    }
    let hash = password::hash_password(password).await?;
    let account = store
        .set_password(username, hash, now)
        .await?
        .ok_or_else(|| UserError::NotFound(username.clone()))?;
    audit(store, AuditAction::PasswordReset, by, &account, now, None).await?;
    Ok(account)
}

async fn audit<A: AuditStore>(
    store: &A,
    action: AuditAction,
    by: AuditActor,
    account: &UserAccount,
    now: UnixMillis,
    detail: Option<String>,
) -> Result<(), StorageError> {
    store
        .append(NewAuditEntry {
            subject: Some(account.username.to_string()),
            detail,
            ..NewAuditEntry::new(now, action, by)
        })
        .await
        .map(|_| ())
}

/// `role=supervisor regions=34.71 agencies=Disdukcapil`, for the audit detail.
fn describe(account: &UserAccount) -> String {
    let join = |items: Vec<&str>| items.join(",");
    format!(
        "role={} regions={} agencies={}",
        account.role,
        join(account.regions.iter().map(|r| r.as_str()).collect()),
        join(account.agencies.iter().map(|a| a.as_str()).collect()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(codes: &[&str]) -> Vec<RegionCode> {
        codes
            .iter()
            .map(|c| RegionCode::parse(c).expect("region in the table"))
            .collect()
    }

    fn agency(name: &str) -> Agency {
        Agency::parse(name).expect("agency name")
    }

    #[test]
    fn assignments_must_suit_the_role() {
        use AssignmentError as E;
        let check = |role, r: &[&str], a: &[&str]| {
            check_assignment(
                role,
                &regions(r),
                &a.iter().map(|n| agency(n)).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            check(Role::Officer, &["34.71.01", "34.71.02.1001"], &[]),
            Ok(())
        );
        assert!(matches!(
            check(Role::Officer, &["34.71"], &[]),
            Err(E::OfficerRegionTooWide(..))
        ));
        assert_eq!(check(Role::Officer, &[], &[]), Err(E::OfficerWithoutRegion));
        assert_eq!(
            check(Role::Officer, &["34.71.01"], &["Disdukcapil"]),
            Err(E::AgenciesNotForRole)
        );
        assert_eq!(check(Role::Supervisor, &["34"], &[]), Ok(()));
        assert_eq!(
            check(
                Role::Supervisor,
                &["34.71"],
                &["Disdukcapil", "BPJS Kesehatan"]
            ),
            Ok(())
        );
        assert_eq!(
            check(Role::Supervisor, &["34.71"], &["Dinas Rahasia"]),
            Err(E::UnknownAgency("Dinas Rahasia".into()))
        );
        assert_eq!(
            check(Role::Supervisor, &[], &[]),
            Err(E::SupervisorWithoutRegion)
        );
        assert_eq!(check(Role::Admin, &[], &[]), Ok(()));
        assert_eq!(check(Role::Admin, &["34"], &[]), Err(E::AdminWithRegion));
    }

    #[test]
    fn the_catalogue_has_agencies() {
        let agencies = catalogue_agencies();
        assert!(agencies.iter().any(|a| a.as_str() == "Disdukcapil"));
        assert!(agencies.windows(2).all(|w| w[0] < w[1]));
    }
}
