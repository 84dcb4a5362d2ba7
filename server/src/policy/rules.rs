//! The field and workflow rules, as a pure function of two versions of a document and the
//! writer's role.

use automerge::{Automerge, ROOT, ScalarValue};
use jemput_domain::schema::RegionRef;
use jemput_domain::{ApplicationStatus, DocumentKind, RegionCode, Role};

use super::plain::{Plain, read_key, root_keys, root_str};

/// A rule a change broke; the reason code reported to the device and written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `schema` is fixed when a document is created.
    SchemaChanged,
    /// `trackingCode` is fixed once the server has the document (only the server reassigns it).
    TrackingCodeChanged,
    /// This role may not move the status this way (decisions go through the review API).
    StatusTransition {
        from: Option<ApplicationStatus>,
        to: String,
    },
    /// The key is not this role's to write (e.g. a supervisor editing applicant data).
    NotWritableByRole { key: String, role: Role },
    /// Applicant data and fields are frozen once an application is decided.
    LockedAfterDecision { key: String },
    /// The document was moved to a region outside the writer's own.
    RegionOutOfScope,
}

impl Rule {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Rule::SchemaChanged => "schema_changed",
            Rule::TrackingCodeChanged => "tracking_code_changed",
            Rule::StatusTransition { .. } => "status_transition",
            Rule::NotWritableByRole { .. } => "not_writable_by_role",
            Rule::LockedAfterDecision { .. } => "locked_after_decision",
            Rule::RegionOutOfScope => "region_out_of_scope",
        }
    }
}

/// What to put back.
#[derive(Debug, Clone, PartialEq)]
pub enum Restore {
    /// Make a top-level key what it was before the change (or absent).
    Key {
        key: String,
        previous: Option<Plain>,
    },
    /// A new application may only start as draft or submitted.
    Status(ApplicationStatus),
}

/// Why a new document is not accepted at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No known `schema`: not an application or visit.
    UnknownSchema,
    /// No readable region.
    NoRegion,
    /// The region is not the writer's.
    OutOfScope,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownSchema => "unknown_schema",
            Refusal::NoRegion => "no_region",
            Refusal::OutOfScope => "out_of_scope",
        }
    }
}

/// The verdict on one writer's changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Judgement {
    pub broken: Vec<Rule>,
    pub restore: Vec<Restore>,
}

impl Judgement {
    pub fn is_clean(&self) -> bool {
        self.broken.is_empty()
    }

    fn restore_key(&mut self, before: &Automerge, key: &str, rule: Rule) {
        self.broken.push(rule);
        self.restore.push(Restore::Key {
            key: key.to_owned(),
            previous: read_key(before, &ROOT, key),
        });
    }
}

/// The kind of a document, from its `schema` key.
pub fn kind_of(doc: &Automerge) -> Option<DocumentKind> {
    DocumentKind::from_schema(&root_str(doc, "schema")?)
}

/// The document's region (most precise code), if readable.
pub fn region_of(doc: &Automerge) -> Option<RegionCode> {
    let Some(Plain::Map(region)) = read_key(doc, &ROOT, "region") else {
        return None;
    };
    let code = |key: &str| match region.get(key) {
        Some(Plain::Scalar(ScalarValue::Str(s))) => RegionCode::parse(s).ok(),
        _ => None,
    };
    let district = code("district")?;
    Some(
        RegionRef {
            district,
            village: code("village"),
        }
        .most_precise(),
    )
}

fn status_of(doc: &Automerge) -> Option<ApplicationStatus> {
    ApplicationStatus::parse(&root_str(doc, "status")?).ok()
}

/// Whether a new document may be stored at all for a writer whose regions `in_scope` accepts.
pub fn admit(
    doc: &Automerge,
    in_scope: impl Fn(&RegionCode) -> bool,
) -> Result<DocumentKind, Refusal> {
    let kind = kind_of(doc).ok_or(Refusal::UnknownSchema)?;
    let region = region_of(doc).ok_or(Refusal::NoRegion)?;
    if !in_scope(&region) {
        return Err(Refusal::OutOfScope);
    }
    Ok(kind)
}

const APPLICANT_DATA: [&str; 7] = [
    "applicant",
    "fields",
    "attachments",
    "consent",
    "service",
    "region",
    "capture",
];

/// Judges what a writer with `role` changed from `before` (`None` for a new document) to
/// `after`. `in_scope` says whether a region is the writer's.
pub fn judge(
    before: Option<&Automerge>,
    after: &Automerge,
    role: Role,
    in_scope: impl Fn(&RegionCode) -> bool,
) -> Judgement {
    let mut judgement = Judgement::default();
    let Some(kind) = kind_of(after) else {
        return judgement;
    };
    let empty = Automerge::new();
    let previous = before.unwrap_or(&empty);
    let changed: Vec<String> = {
        let mut keys = root_keys(previous);
        keys.extend(root_keys(after));
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|key| read_key(previous, &ROOT, key) != read_key(after, &ROOT, key))
            .collect()
    };
    let is_new = before.is_none();
    let decided = matches!(
        status_of(previous),
        Some(
            ApplicationStatus::Approved
                | ApplicationStatus::Rejected
                | ApplicationStatus::Completed
        )
    );

    for key in &changed {
        match key.as_str() {
            "schema" if !is_new => judgement.restore_key(previous, key, Rule::SchemaChanged),
            "trackingCode" if !is_new => {
                judgement.restore_key(previous, key, Rule::TrackingCodeChanged)
            }
            "status" | "history" | "schema" | "trackingCode" => {}
            "region"
                if role == Role::Officer && !region_of(after).is_some_and(|r| in_scope(&r)) =>
            {
                judgement.restore_key(previous, key, Rule::RegionOutOfScope)
            }
            key if kind == DocumentKind::Application && APPLICANT_DATA.contains(&key) => {
                if role != Role::Officer {
                    let rule = Rule::NotWritableByRole {
                        key: key.to_owned(),
                        role,
                    };
                    judgement.restore_key(previous, key, rule);
                } else if decided {
                    let rule = Rule::LockedAfterDecision {
                        key: key.to_owned(),
                    };
                    judgement.restore_key(previous, key, rule);
                }
            }
            key if kind == DocumentKind::Visit && role != Role::Officer && !is_new => {
                let rule = Rule::NotWritableByRole {
                    key: key.to_owned(),
                    role,
                };
                judgement.restore_key(previous, key, rule);
            }
            _ => {}
        }
    }

    if kind == DocumentKind::Application && changed.iter().any(|k| k == "status") {
        judge_status(previous, after, role, is_new, &mut judgement);
    }
    judgement
}

fn judge_status(
    previous: &Automerge,
    after: &Automerge,
    role: Role,
    is_new: bool,
    judgement: &mut Judgement,
) {
    let to_text = root_str(after, "status").unwrap_or_default();
    let to = status_of(after);
    if is_new {
        let allowed = role == Role::Officer
            && matches!(
                to,
                Some(ApplicationStatus::Draft | ApplicationStatus::Submitted)
            );
        if !allowed {
            judgement.broken.push(Rule::StatusTransition {
                from: None,
                to: to_text,
            });
            judgement
                .restore
                .push(Restore::Status(ApplicationStatus::Draft));
        }
        return;
    }
    let from = status_of(previous);
    let allowed = match (from, to) {
        (Some(from), Some(to)) => synced_transition_allowed(from, to, role),
        _ => false,
    };
    if !allowed {
        judgement.restore_key(
            previous,
            "status",
            Rule::StatusTransition { from, to: to_text },
        );
    }
}

/// Transitions a device or console may make by editing the document itself. Decisions
/// (approve, reject, send back, complete) need a note and an audit record, so they go through
/// `POST /v1/applications/{id}/review`, where the server writes them.
pub fn synced_transition_allowed(
    from: ApplicationStatus,
    to: ApplicationStatus,
    role: Role,
) -> bool {
    use ApplicationStatus::*;
    match role {
        Role::Officer => ApplicationStatus::transition_allowed(from, to, role),
        Role::Supervisor | Role::Admin => matches!((from, to), (Submitted, InReview)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ReadDoc};

    const OWN: &str = "34.71.01";

    fn in_own(region: &RegionCode) -> bool {
        RegionCode::parse(OWN).is_ok_and(|own| region.is_within(&own))
    }

    fn application(status: &str) -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "schema", "jemput/application@1").expect("put");
        tx.put(ROOT, "trackingCode", "JPT-3471-7K4Q-9XM2")
            .expect("put");
        tx.put(ROOT, "service", "DUKCAPIL-KTP-EL-BARU")
            .expect("put");
        let region = tx.put_object(ROOT, "region", ObjType::Map).expect("map");
        tx.put(&region, "district", OWN).expect("put");
        tx.put(&region, "village", "34.71.01.1001").expect("put");
        let applicant = tx.put_object(ROOT, "applicant", ObjType::Map).expect("map");
        tx.put(&applicant, "nik", "3471011503850012").expect("put");
        tx.put(ROOT, "status", status).expect("put");
        tx.commit();
        doc
    }

    fn edit(
        doc: &Automerge,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
    ) -> Automerge {
        let mut after = doc.fork();
        let mut tx = after.transaction();
        f(&mut tx);
        tx.commit();
        after
    }

    fn set_status(doc: &Automerge, to: &str) -> Automerge {
        edit(doc, |tx| {
            tx.put(ROOT, "status", to).expect("put");
        })
    }

    fn set_nik(doc: &Automerge) -> Automerge {
        edit(doc, |tx| {
            let (_, applicant) = tx.get(ROOT, "applicant").expect("get").expect("map");
            tx.put(&applicant, "nik", "3471014708920031").expect("put");
        })
    }

    fn check(before: &str, to: &str, role: Role, allowed: bool) {
        let doc = application(before);
        let judgement = judge(Some(&doc), &set_status(&doc, to), role, in_own);
        assert_eq!(
            judgement.is_clean(),
            allowed,
            "{before} -> {to} by {role:?}: {judgement:?}"
        );
    }

    #[test]
    fn status_moves_through_sync() {
        check("draft", "submitted", Role::Officer, true);
        check("needs_revision", "submitted", Role::Officer, true);
        check("draft", "approved", Role::Officer, false);
        check("submitted", "draft", Role::Officer, false);
        check("submitted", "in_review", Role::Supervisor, true);
        check("in_review", "approved", Role::Supervisor, false);
        check("draft", "bogus", Role::Officer, false);
    }

    #[test]
    fn an_officer_approving_is_restored_to_the_previous_status() {
        let doc = application("submitted");
        let judgement = judge(
            Some(&doc),
            &set_status(&doc, "approved"),
            Role::Officer,
            in_own,
        );
        assert_eq!(
            judgement.restore,
            vec![Restore::Key {
                key: "status".into(),
                previous: Some(Plain::Scalar(ScalarValue::Str("submitted".into())))
            }]
        );
    }

    #[test]
    fn a_supervisor_may_not_edit_a_nik() {
        let doc = application("in_review");
        let judgement = judge(Some(&doc), &set_nik(&doc), Role::Supervisor, in_own);
        assert_eq!(judgement.broken[0].code(), "not_writable_by_role");
    }

    #[test]
    fn applicant_data_is_frozen_after_approval() {
        let doc = application("approved");
        let judgement = judge(Some(&doc), &set_nik(&doc), Role::Officer, in_own);
        assert_eq!(judgement.broken[0].code(), "locked_after_decision");
        let draft = application("draft");
        assert!(judge(Some(&draft), &set_nik(&draft), Role::Officer, in_own).is_clean());
    }

    #[test]
    fn new_applications_start_as_draft_or_submitted() {
        assert!(judge(None, &application("submitted"), Role::Officer, in_own).is_clean());
        let judgement = judge(None, &application("approved"), Role::Officer, in_own);
        assert_eq!(
            judgement.restore,
            vec![Restore::Status(ApplicationStatus::Draft)]
        );
    }

    #[test]
    fn tracking_code_and_schema_are_fixed() {
        let doc = application("draft");
        let after = edit(&doc, |tx| {
            tx.put(ROOT, "trackingCode", "JPT-3471-0000-0000")
                .expect("put");
        });
        assert_eq!(
            judge(Some(&doc), &after, Role::Officer, in_own).broken,
            vec![Rule::TrackingCodeChanged]
        );
    }

    #[test]
    fn moving_a_document_out_of_ones_region_is_undone() {
        let doc = application("draft");
        let after = edit(&doc, |tx| {
            let (_, region) = tx.get(ROOT, "region").expect("get").expect("map");
            tx.put(&region, "district", "35.78.01").expect("put");
            tx.put(&region, "village", "35.78.01.1001").expect("put");
        });
        let judgement = judge(Some(&doc), &after, Role::Officer, in_own);
        assert_eq!(judgement.broken, vec![Rule::RegionOutOfScope]);
    }

    #[test]
    fn new_documents_are_admitted_by_schema_and_region() {
        assert_eq!(
            admit(&application("draft"), in_own),
            Ok(DocumentKind::Application)
        );
        assert_eq!(
            admit(&application("draft"), |_| false),
            Err(Refusal::OutOfScope)
        );
        assert_eq!(
            admit(&Automerge::new(), in_own),
            Err(Refusal::UnknownSchema)
        );
        let text_doc = edit(&Automerge::new(), |tx| {
            tx.put(ROOT, "schema", "jemput/visit@1").expect("put");
        });
        assert_eq!(admit(&text_doc, in_own), Err(Refusal::NoRegion));
        let _ = text_doc.get(ROOT, "schema");
    }
}
