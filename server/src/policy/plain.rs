//! Reading Automerge values as plain data, for comparing two versions of a document and for
//! copying a value back from an earlier version.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ReadDoc, ScalarValue, Value};

/// A document value with object identity removed: two versions compare equal when their
/// content is equal. Text objects read as strings (JS Automerge 3 writes strings as Text).
#[derive(Debug, Clone, PartialEq)]
pub enum Plain {
    Scalar(ScalarValue),
    Map(BTreeMap<String, Plain>),
    List(Vec<Plain>),
}

/// The value at `key` of the object `obj`, if any.
pub fn read_key(doc: &impl ReadDoc, obj: &ObjId, key: &str) -> Option<Plain> {
    match doc.get(obj, key) {
        Ok(Some((value, id))) => Some(read_value(doc, value, &id)),
        _ => None,
    }
}

/// The top-level keys of the document.
pub fn root_keys(doc: &Automerge) -> Vec<String> {
    doc.keys(automerge::ROOT).collect()
}

fn read_value(doc: &impl ReadDoc, value: Value<'_>, id: &ObjId) -> Plain {
    match value {
        Value::Scalar(scalar) => Plain::Scalar(scalar.into_owned()),
        Value::Object(ObjType::Text) => {
            Plain::Scalar(ScalarValue::Str(doc.text(id).unwrap_or_default().into()))
        }
        Value::Object(ObjType::Map | ObjType::Table) => Plain::Map(
            doc.keys(id)
                .filter_map(|key| read_key(doc, id, &key).map(|v| (key, v)))
                .collect(),
        ),
        Value::Object(ObjType::List) => Plain::List(
            (0..doc.length(id))
                .filter_map(|index| match doc.get(id, index) {
                    Ok(Some((value, child))) => Some(read_value(doc, value, &child)),
                    _ => None,
                })
                .collect(),
        ),
    }
}

/// Makes `key` of the map `obj` hold `value`, touching only what differs: scalars that
/// changed are put back, extra keys are deleted, nested maps are mended in place (so
/// concurrent edits elsewhere in them survive); lists are replaced whole.
pub fn write_key(
    tx: &mut impl Transactable,
    obj: &ObjId,
    key: &str,
    value: &Plain,
) -> Result<(), automerge::AutomergeError> {
    if read_key(tx, obj, key).as_ref() == Some(value) {
        return Ok(());
    }
    let current = tx.get(obj, key)?;
    match value {
        Plain::Scalar(scalar) => {
            tx.put(obj, key, scalar.clone())?;
        }
        Plain::Map(entries) => {
            let target = match current {
                Some((Value::Object(ObjType::Map), id)) => id,
                _ => tx.put_object(obj, key, ObjType::Map)?,
            };
            let existing: Vec<String> = tx.keys(&target).collect();
            for stale in existing.iter().filter(|k| !entries.contains_key(*k)) {
                tx.delete(&target, stale.as_str())?;
            }
            for (child, child_value) in entries {
                write_key(tx, &target, child, child_value)?;
            }
        }
        Plain::List(items) => {
            let list = tx.put_object(obj, key, ObjType::List)?;
            for (index, item) in items.iter().enumerate() {
                insert_item(tx, &list, index, item)?;
            }
        }
    }
    Ok(())
}

fn insert_item(
    tx: &mut impl Transactable,
    list: &ObjId,
    index: usize,
    value: &Plain,
) -> Result<(), automerge::AutomergeError> {
    match value {
        Plain::Scalar(scalar) => tx.insert(list, index, scalar.clone()),
        Plain::Map(entries) => {
            let map = tx.insert_object(list, index, ObjType::Map)?;
            for (key, child) in entries {
                write_key(tx, &map, key, child)?;
            }
            Ok(())
        }
        Plain::List(items) => {
            let inner = tx.insert_object(list, index, ObjType::List)?;
            for (i, item) in items.iter().enumerate() {
                insert_item(tx, &inner, i, item)?;
            }
            Ok(())
        }
    }
}

/// A string at `key` of the root, scalar or Text.
pub fn root_str(doc: &Automerge, key: &str) -> Option<String> {
    match read_key(doc, &automerge::ROOT, key)? {
        Plain::Scalar(ScalarValue::Str(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// Whether concurrent writes left more than one value at `key` of `obj` (Automerge keeps a
/// deterministic winner; the losers are still there to show a supervisor).
pub fn has_conflict(doc: &Automerge, obj: &ObjId, key: &str) -> bool {
    doc.get_all(obj, key)
        .map(|values| values.len() > 1)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::ROOT;

    fn doc_with_applicant() -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let applicant = tx.put_object(ROOT, "applicant", ObjType::Map).expect("map");
        tx.put(&applicant, "nik", "3471011503850012").expect("put");
        let name = tx
            .put_object(&applicant, "name", ObjType::Text)
            .expect("text");
        tx.splice_text(&name, 0, 0, "Siti").expect("text");
        tx.commit();
        doc
    }

    #[test]
    fn text_reads_as_a_string_and_maps_compare_by_content() {
        let doc = doc_with_applicant();
        let Some(Plain::Map(applicant)) = read_key(&doc, &ROOT, "applicant") else {
            panic!("map")
        };
        assert_eq!(
            applicant.get("name"),
            Some(&Plain::Scalar(ScalarValue::Str("Siti".into())))
        );
        let mut copy = doc.fork();
        assert_eq!(
            read_key(&doc, &ROOT, "applicant"),
            read_key(&copy, &ROOT, "applicant")
        );
        let mut tx = copy.transaction();
        let (_, applicant_id) = tx.get(ROOT, "applicant").expect("get").expect("present");
        tx.put(&applicant_id, "nik", "9999999999999999")
            .expect("put");
        tx.commit();
        assert_ne!(
            read_key(&doc, &ROOT, "applicant"),
            read_key(&copy, &ROOT, "applicant")
        );
    }

    #[test]
    fn write_key_restores_an_earlier_version_in_place() {
        let before = doc_with_applicant();
        let mut after = before.fork();
        let mut tx = after.transaction();
        let (_, applicant) = tx.get(ROOT, "applicant").expect("get").expect("present");
        tx.put(&applicant, "nik", "9999999999999999").expect("put");
        tx.put(&applicant, "extra", "x").expect("put");
        tx.commit();

        let old = read_key(&before, &ROOT, "applicant").expect("old value");
        let mut tx = after.transaction();
        write_key(&mut tx, &ROOT, "applicant", &old).expect("restore");
        tx.commit();
        assert_eq!(read_key(&after, &ROOT, "applicant"), Some(old));
        // The map object itself was kept, not replaced.
        assert_eq!(
            before
                .get(ROOT, "applicant")
                .expect("get")
                .map(|(_, id)| id),
            after.get(ROOT, "applicant").expect("get").map(|(_, id)| id)
        );
    }
}
