//! Compensating changes and the report a device receives about them.

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use serde::Serialize;

use super::plain::write_key;
use super::rules::{Restore, Rule};

/// Writes the compensating change for `restores` with the document's current actor (the
/// server's). Returns false if there was nothing to write.
pub fn compensate(
    doc: &mut Automerge,
    restores: &[Restore],
) -> Result<bool, automerge::AutomergeError> {
    if restores.is_empty() {
        return Ok(false);
    }
    let heads = doc.get_heads();
    let mut tx = doc.transaction();
    for restore in restores {
        match restore {
            Restore::Key {
                key,
                previous: Some(value),
            } => write_key(&mut tx, &ROOT, key, value)?,
            Restore::Key {
                key,
                previous: None,
            } => tx.delete(ROOT, key.as_str())?,
            Restore::Status(status) => tx.put(ROOT, "status", status.as_str())?,
        }
    }
    tx.commit();
    Ok(doc.get_heads() != heads)
}

/// What the server tells the sending peer (as an automerge-repo `ephemeral` message on the
/// document, CBOR, so JS clients receive it as an `ephemeral-message` event).
#[derive(Debug, Serialize)]
pub struct PolicyReport<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `compensated`, `tracking-code-reassigned`.
    pub event: &'static str,
    pub rules: Vec<&'static str>,
    #[serde(rename = "trackingCode", skip_serializing_if = "Option::is_none")]
    pub tracking_code: Option<&'a str>,
}

impl PolicyReport<'_> {
    pub fn compensated(rules: &[Rule]) -> PolicyReport<'static> {
        PolicyReport {
            kind: "jemput/policy",
            event: "compensated",
            rules: rules.iter().map(Rule::code).collect(),
            tracking_code: None,
        }
    }

    pub fn tracking_code_reassigned(code: &str) -> PolicyReport<'_> {
        PolicyReport {
            kind: "jemput/policy",
            event: "tracking-code-reassigned",
            rules: Vec::new(),
            tracking_code: Some(code),
        }
    }

    pub fn to_cbor(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        // Serialising plain strings into a Vec cannot fail.
        if let Err(error) = ciborium::into_writer(self, &mut bytes) {
            tracing::error!(%error, "encoding a policy report");
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::plain::root_str;
    use jemput_domain::ApplicationStatus;

    #[test]
    fn compensation_writes_the_previous_status_back() {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "status", "approved").expect("put");
        tx.commit();
        let wrote = compensate(&mut doc, &[Restore::Status(ApplicationStatus::Draft)]).expect("ok");
        assert!(wrote);
        assert_eq!(root_str(&doc, "status").as_deref(), Some("draft"));
        assert!(!compensate(&mut doc, &[]).expect("ok"));
    }

    #[test]
    fn report_is_cbor_with_stable_keys() {
        let bytes = PolicyReport::compensated(&[Rule::SchemaChanged]).to_cbor();
        let value: ciborium::Value = ciborium::from_reader(bytes.as_slice()).expect("cbor");
        let text = format!("{value:?}");
        assert!(
            text.contains("jemput/policy") && text.contains("schema_changed"),
            "{text}"
        );
    }
}
