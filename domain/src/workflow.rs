//! Who may move an application between which statuses: roles, document kinds and the
//! application workflow of DESIGN.md §4.

use std::fmt;

/// A string that is not one of an enumeration's values. It names the enumeration, never the
/// input (which might be anything a device sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a known {what}")]
pub struct UnknownValue {
    what: &'static str,
}

impl UnknownValue {
    /// The enumeration that was expected (`role`, `document kind`, `application status`).
    pub fn what(&self) -> &'static str {
        self.what
    }
}

/// Implements `parse`, `as_str`, `ALL`, `Display`, `FromStr` and string serde for a
/// fieldless enum, from one table of variant and wire name.
macro_rules! string_enum {
    ($name:ident, $what:literal, { $($variant:ident => $wire:literal),+ $(,)? }) => {
        impl $name {
            /// Every value, in workflow order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Parses the wire name (lower-case snake case, exactly).
            pub fn parse(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownValue { what: $what }),
                }
            }

            /// The wire name, as written in documents, JSON and SQL.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> Self {
                v.as_str().to_owned()
            }
        }
    };
}

/// What a user account may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum Role {
    /// Outreach officer (petugas jemput bola): captures applications in the field.
    Officer,
    /// Supervisor (verifikator): reviews submissions for a region.
    Supervisor,
    /// Administrator: manages users, regions and completion.
    Admin,
}

string_enum!(Role, "role", {
    Officer => "officer",
    Supervisor => "supervisor",
    Admin => "admin",
});

/// What an Automerge document holds; each kind has its own schema.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum DocumentKind {
    /// One citizen's application for one service.
    Application,
    /// One field visit (kunjungan) by an officer.
    Visit,
}

string_enum!(DocumentKind, "document kind", {
    Application => "application",
    Visit => "visit",
});

impl DocumentKind {
    /// The current schema string documents of this kind carry in their `schema` field.
    pub fn schema(self) -> &'static str {
        match self {
            Self::Application => crate::schema::APPLICATION,
            Self::Visit => crate::schema::VISIT,
        }
    }

    /// The kind a schema string belongs to, if this crate reads that schema version.
    pub fn from_schema(schema: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.schema() == schema)
    }
}

/// Where an application stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum ApplicationStatus {
    /// Being captured on the device.
    Draft,
    /// Handed in by the officer, waiting for a supervisor.
    Submitted,
    /// A supervisor has taken it up.
    InReview,
    /// Sent back to the officer with a note.
    NeedsRevision,
    /// Accepted; the service is being delivered.
    Approved,
    /// Refused, with a note saying why. Final.
    Rejected,
    /// Delivered. Final.
    Completed,
}

string_enum!(ApplicationStatus, "application status", {
    Draft => "draft",
    Submitted => "submitted",
    InReview => "in_review",
    NeedsRevision => "needs_revision",
    Approved => "approved",
    Rejected => "rejected",
    Completed => "completed",
});

impl ApplicationStatus {
    /// Whether `role` may move an application from `from` to `to`. The complete list:
    ///
    /// | from | to | who |
    /// |---|---|---|
    /// | draft, needs_revision | submitted | officer |
    /// | submitted | in_review | supervisor |
    /// | in_review | approved, rejected, needs_revision | supervisor (with a note) |
    /// | approved | completed | supervisor, admin |
    ///
    /// Anything else, staying in the same status included, is not a transition.
    pub fn transition_allowed(from: Self, to: Self, role: Role) -> bool {
        use ApplicationStatus::*;
        match (from, to) {
            (Draft | NeedsRevision, Submitted) => role == Role::Officer,
            (Submitted, InReview) => role == Role::Supervisor,
            (InReview, Approved | Rejected | NeedsRevision) => role == Role::Supervisor,
            (Approved, Completed) => matches!(role, Role::Supervisor | Role::Admin),
            _ => false,
        }
    }

    /// Whether the move from `from` to `to` must carry a note for the citizen and officer:
    /// every review decision (`in_review` → `approved`, `rejected` or `needs_revision`).
    pub fn note_required(from: Self, to: Self) -> bool {
        use ApplicationStatus::*;
        matches!((from, to), (InReview, Approved | Rejected | NeedsRevision))
    }

    /// The statuses `role` may move an application in this status to (for the buttons a
    /// screen shows).
    pub fn next_for(self, role: Role) -> impl Iterator<Item = Self> {
        Self::ALL
            .iter()
            .copied()
            .filter(move |&to| Self::transition_allowed(self, to, role))
    }

    /// Whether no transition leaves this status (`rejected`, `completed`).
    pub fn is_final(self) -> bool {
        Role::ALL.iter().all(|&r| self.next_for(r).next().is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ApplicationStatus::*;

    #[test]
    fn transition_matrix_is_exactly_the_design() {
        // (from, to, roles allowed)
        let allowed: &[(ApplicationStatus, ApplicationStatus, &[Role])] = &[
            (Draft, Submitted, &[Role::Officer]),
            (NeedsRevision, Submitted, &[Role::Officer]),
            (Submitted, InReview, &[Role::Supervisor]),
            (InReview, Approved, &[Role::Supervisor]),
            (InReview, Rejected, &[Role::Supervisor]),
            (InReview, NeedsRevision, &[Role::Supervisor]),
            (Approved, Completed, &[Role::Supervisor, Role::Admin]),
        ];
        let mut checked = 0;
        for &from in ApplicationStatus::ALL {
            for &to in ApplicationStatus::ALL {
                for &role in Role::ALL {
                    let expected = allowed
                        .iter()
                        .any(|(f, t, roles)| *f == from && *t == to && roles.contains(&role));
                    assert_eq!(
                        ApplicationStatus::transition_allowed(from, to, role),
                        expected,
                        "{from} -> {to} as {role}"
                    );
                    checked += 1;
                }
                let note = matches!((from, to), (InReview, Approved | Rejected | NeedsRevision));
                assert_eq!(
                    ApplicationStatus::note_required(from, to),
                    note,
                    "{from} -> {to}"
                );
            }
        }
        assert_eq!(checked, 7 * 7 * 3);
    }

    #[test]
    fn finals_and_next() {
        let finals: Vec<_> = ApplicationStatus::ALL
            .iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(finals, [&Rejected, &Completed]);
        let buttons: Vec<_> = InReview.next_for(Role::Supervisor).collect();
        assert_eq!(buttons, [NeedsRevision, Approved, Rejected]);
        assert_eq!(InReview.next_for(Role::Officer).count(), 0);
    }

    #[test]
    fn names_round_trip() {
        for &s in ApplicationStatus::ALL {
            assert_eq!(ApplicationStatus::parse(s.as_str()), Ok(s));
            let json = serde_json::to_string(&s).expect("serialises");
            assert_eq!(
                serde_json::from_str::<ApplicationStatus>(&json).expect("parses"),
                s
            );
        }
        for &r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert_eq!(InReview.as_str(), "in_review");
        let err = ApplicationStatus::parse("In_Review").expect_err("case matters");
        assert_eq!(err.what(), "application status");
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
        assert_eq!(
            DocumentKind::from_schema("jemput/visit@1"),
            Some(DocumentKind::Visit)
        );
        assert_eq!(DocumentKind::from_schema("jemput/visit@2"), None);
        assert_eq!(DocumentKind::Application.schema(), "jemput/application@1");
    }
}
