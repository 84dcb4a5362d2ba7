//! Who may do what through the API: one pure function over the caller's identity and the
//! action, so the whole role × action matrix is tested without a server.
//!
//! Document scope, actor binding and workflow rules (DESIGN.md §4) are decided where documents
//! are handled; this covers accounts, devices and the audit log.

use jemput_domain::Role;

use crate::storage::{Credential, Identity, UserAccount};

/// Something a caller asks to do.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Read the service catalogue.
    ReadServices,
    /// See one's own account.
    ReadOwnAccount,
    /// End one's own login session.
    Logout,
    /// Enrol a phone as one's own device.
    EnrolDevice,
    /// List the devices of `owner`.
    ListDevices { owner: &'a UserAccount },
    /// Revoke a device owned by `owner`.
    RevokeDevice { owner: &'a UserAccount },
    /// Read the audit log.
    ReadAuditLog,
    /// Read one citizen's trail in the audit log.
    ReadCitizenTrail,
}

/// Why an action is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("the caller's role may not do this")]
    Role,
    #[error("the account concerned is outside the caller's regions")]
    OutOfScope,
    #[error("this needs a password login, not a device token")]
    NeedsSession,
}

/// Whether `identity` may perform `action`.
pub fn permits(identity: &Identity, action: Action<'_>) -> Result<(), Denied> {
    let role = identity.role;
    let session = matches!(identity.credential, Credential::Session(_));
    match action {
        Action::ReadServices | Action::ReadOwnAccount => Ok(()),
        Action::Logout => require(session, Denied::NeedsSession),
        Action::EnrolDevice => {
            require(role == Role::Officer, Denied::Role)?;
            require(session, Denied::NeedsSession)
        }
        Action::ListDevices { owner } | Action::RevokeDevice { owner } => match role {
            Role::Admin => Ok(()),
            Role::Supervisor => require(supervises(identity, owner), Denied::OutOfScope),
            Role::Officer => require(owner.id == identity.user_id, Denied::OutOfScope),
        },
        Action::ReadAuditLog | Action::ReadCitizenTrail => {
            require(role == Role::Admin, Denied::Role)?;
            require(session, Denied::NeedsSession)
        }
    }
}

fn require(condition: bool, otherwise: Denied) -> Result<(), Denied> {
    if condition { Ok(()) } else { Err(otherwise) }
}

/// A supervisor supervises an officer whose every region lies within the supervisor's
/// regions. An officer without regions is nobody's (only an administrator can act on them).
pub fn supervises(supervisor: &Identity, officer: &UserAccount) -> bool {
    supervisor.role == Role::Supervisor
        && officer.role == Role::Officer
        && !officer.regions.is_empty()
        && officer.regions.iter().all(|region| {
            supervisor
                .regions
                .iter()
                .any(|prefix| region.is_within(prefix))
        })
}

#[cfg(test)]
mod tests {
    use jemput_domain::RegionCode;

    use super::*;
    use crate::storage::{DeviceId, SessionId, UserId, Username};

    fn region(code: &str) -> RegionCode {
        RegionCode::parse(code).expect("region in the table")
    }

    fn account(id: i64, role: Role, regions: &[&str]) -> UserAccount {
        UserAccount {
            id: UserId(id),
            username: Username::parse(&format!("user{id}")).expect("name"),
            role,
            regions: regions.iter().map(|r| region(r)).collect(),
            agencies: Vec::new(),
            created_at: 0,
            disabled_at: None,
        }
    }

    fn identity(account: &UserAccount, device: bool) -> Identity {
        Identity {
            user_id: account.id,
            username: account.username.clone(),
            role: account.role,
            regions: account.regions.clone(),
            agencies: Vec::new(),
            credential: if device {
                Credential::Device(DeviceId::from_random([1; 16]))
            } else {
                Credential::Session(SessionId(1))
            },
            expires_at: None,
        }
    }

    /// The matrix: every role (and credential kind) against every action. `.` allowed,
    /// `R` wrong role, `S` out of scope, `N` needs a session.
    #[test]
    fn role_action_matrix() {
        // Kota Yogyakarta (34.71) and one of its districts, and a district elsewhere.
        let officer = account(1, Role::Officer, &["34.71.01"]);
        let other_officer = account(2, Role::Officer, &["32.73.01"]);
        let supervisor = account(3, Role::Supervisor, &["34.71"]);
        let admin = account(4, Role::Admin, &[]);

        let callers = [
            ("officer/session", identity(&officer, false)),
            ("officer/device", identity(&officer, true)),
            ("supervisor", identity(&supervisor, false)),
            ("admin", identity(&admin, false)),
        ];
        let actions: [(&str, Action<'_>); 10] = [
            ("read services", Action::ReadServices),
            ("read own account", Action::ReadOwnAccount),
            ("logout", Action::Logout),
            ("enrol device", Action::EnrolDevice),
            (
                "list own-region officer's devices",
                Action::ListDevices { owner: &officer },
            ),
            (
                "revoke own-region officer's device",
                Action::RevokeDevice { owner: &officer },
            ),
            (
                "revoke other-region officer's device",
                Action::RevokeDevice {
                    owner: &other_officer,
                },
            ),
            (
                "revoke a supervisor's device",
                Action::RevokeDevice { owner: &supervisor },
            ),
            ("read audit log", Action::ReadAuditLog),
            ("read citizen trail", Action::ReadCitizenTrail),
        ];
        #[rustfmt::skip]
        let expected = [
            // officer/session  officer/device  supervisor  admin
            [".", ".", ".", "."], // read services
            [".", ".", ".", "."], // read own account
            [".", "N", ".", "."], // logout
            [".", "N", "R", "R"], // enrol device
            [".", ".", ".", "."], // list own-region officer's devices
            [".", ".", ".", "."], // revoke own-region officer's device
            ["S", "S", "S", "."], // revoke other-region officer's device
            ["S", "S", "S", "."], // revoke a supervisor's device
            ["R", "R", "R", "."], // read audit log
            ["R", "R", "R", "."], // read citizen trail
        ];
        let mut failures = Vec::new();
        for (row, (action_name, action)) in actions.iter().enumerate() {
            for (column, (caller_name, caller)) in callers.iter().enumerate() {
                let got = match permits(caller, *action) {
                    Ok(()) => ".",
                    Err(Denied::Role) => "R",
                    Err(Denied::OutOfScope) => "S",
                    Err(Denied::NeedsSession) => "N",
                };
                if got != expected[row][column] {
                    failures.push(format!(
                        "{caller_name} × {action_name}: got {got}, expected {}",
                        expected[row][column]
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn a_supervisor_covers_an_officer_only_wholly_inside_their_regions() {
        let supervisor = identity(&account(3, Role::Supervisor, &["34.71"]), false);
        let inside = account(1, Role::Officer, &["34.71.01", "34.71.02.1001"]);
        let straddling = account(2, Role::Officer, &["34.71.01", "34.02.01"]);
        let nowhere = account(5, Role::Officer, &[]);
        assert!(supervises(&supervisor, &inside));
        assert!(!supervises(&supervisor, &straddling));
        assert!(!supervises(&supervisor, &nowhere));
    }
}
