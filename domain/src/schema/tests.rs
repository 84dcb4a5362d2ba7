//! Views read from real Automerge documents, written both as our SDK writes strings (scalars)
//! and as unchanged JS Automerge 3 clients do (Text objects).

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ScalarValue};
use jemput_sync_protocol::DocumentId;
use serde_json::{Value, json};
use time::{Date, Month, OffsetDateTime};

use super::*;
use crate::{ApplicationStatus, FieldValue, Role, Sex, TrackingCode};

/// How a test document writes its strings.
#[derive(Clone, Copy)]
enum Strings {
    /// `ScalarValue::Str`, as the Jemput SDK writes them.
    Scalar,
    /// Text objects, as JS Automerge 3 writes a plain `d.x = "..."`.
    Text,
}

/// Builds a document from JSON; `{"$ts": ms}` becomes an Automerge timestamp.
fn doc(value: &Value, strings: Strings) -> Automerge {
    let mut d = AutoCommit::new();
    let Value::Object(map) = value else {
        panic!("root must be an object")
    };
    for (k, v) in map {
        write(&mut d, &automerge::ROOT, Key::Map(k), v, strings);
    }
    let bytes = d.save();
    Automerge::load(&bytes).expect("reloads")
}

enum Key<'a> {
    Map(&'a str),
    Index(usize),
}

fn write(d: &mut AutoCommit, obj: &ObjId, key: Key<'_>, v: &Value, strings: Strings) {
    let scalar: Option<ScalarValue> = match v {
        Value::Null => Some(ScalarValue::Null),
        Value::Bool(b) => Some((*b).into()),
        Value::Number(n) => Some(match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => ScalarValue::Int(i),
            (None, Some(f)) => ScalarValue::F64(f),
            _ => panic!("number"),
        }),
        Value::String(s) if matches!(strings, Strings::Scalar) => Some(s.as_str().into()),
        Value::Object(m) if m.contains_key("$ts") => {
            Some(ScalarValue::Timestamp(m["$ts"].as_i64().expect("ms")))
        }
        _ => None,
    };
    if let Some(s) = scalar {
        match key {
            Key::Map(k) => d.put(obj, k, s),
            Key::Index(i) => d.insert(obj, i, s),
        }
        .expect("put");
        return;
    }
    let kind = match v {
        Value::String(_) => ObjType::Text,
        Value::Array(_) => ObjType::List,
        _ => ObjType::Map,
    };
    let child = match key {
        Key::Map(k) => d.put_object(obj, k, kind),
        Key::Index(i) => d.insert_object(obj, i, kind),
    }
    .expect("put object");
    match v {
        Value::String(s) => d.splice_text(&child, 0, 0, s).expect("splice"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                write(d, &child, Key::Index(i), item, strings);
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                write(d, &child, Key::Map(k), item, strings);
            }
        }
        _ => unreachable!(),
    }
}

fn visit_id() -> DocumentId {
    DocumentId::from_bytes([7; 16])
}

fn tracking() -> String {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let region = RegionCode::parse("34.71").expect("known");
    TrackingCode::generate(&region, &mut rng)
        .expect("regency")
        .to_string()
}

fn full_application() -> Value {
    json!({
        "schema": "jemput/application@1",
        "trackingCode": tracking(),
        "service": "DUKCAPIL-KTP-EL-BARU",
        "region": { "district": "34.71.01", "village": "34.71.01.1001" },
        "applicant": {
            "nik": "3471011503850012",
            "kk": "3471012003150004",
            "name": "Budi Santoso",
            "birthDate": "1985-03-15",
            "sex": "L",
            "phone": "+6281234567890",
            "address": "Jl. Veteran No. 56",
        },
        "fields": {
            "recording_status": "belum_rekam",
            "marital_status": "kawin",
            "home_recording_needed": true,
            "children": 2,
            "ratio": 0.5,
        },
        "attachments": [
            { "sha256": "ab".repeat(32), "kind": "kk", "mime": "image/jpeg", "size": 48213 },
        ],
        "consent": { "basis": "consent", "at": { "$ts": 1_751_216_400_000_i64 }, "by": "applicant" },
        "capture": {
            "officer": "officer-1",
            "device": "device-1",
            "at": 1_751_216_400_000_i64,
            "visit": visit_id().to_string(),
        },
        "status": "in_review",
        "history": [
            { "at": "2025-06-30T10:00:00+07:00", "by": "officer-1", "role": "officer",
              "from": "draft", "to": "submitted" },
            { "at": { "$ts": 1_751_300_000_000_i64 }, "by": "sup-1", "role": "supervisor",
              "from": "submitted", "to": "in_review", "note": "Dicek oleh Budi" },
        ],
        "somethingNewer": { "from": "a newer device" },
    })
}

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("in range")
}

#[test]
fn reads_a_full_application_with_scalar_strings() {
    let view = ApplicationView::from_doc(&doc(&full_application(), Strings::Scalar))
        .expect("valid application");
    assert_eq!(view.tracking_code.to_string(), tracking());
    assert_eq!(view.service.as_str(), "DUKCAPIL-KTP-EL-BARU");
    assert_eq!(view.region.district.as_str(), "34.71.01");
    assert_eq!(view.region.most_precise().as_str(), "34.71.01.1001");
    let a = &view.applicant;
    assert_eq!(
        a.nik.map(|n| n.expose().to_owned()).as_deref(),
        Some("3471011503850012")
    );
    assert_eq!(
        a.kk.map(|k| k.masked()).as_deref(),
        Some("347101**********")
    );
    assert_eq!(a.name.as_deref(), Some("Budi Santoso"));
    assert_eq!(
        a.birth_date,
        Date::from_calendar_date(1985, Month::March, 15).ok()
    );
    assert_eq!(a.sex, Some(Sex::Male));
    assert_eq!(
        view.fields["home_recording_needed"],
        FieldValue::Boolean(true)
    );
    assert_eq!(view.fields["children"], FieldValue::Integer(2));
    assert_eq!(view.fields["ratio"], FieldValue::Float(0.5));
    assert_eq!(
        view.fields["marital_status"],
        FieldValue::Text("kawin".into())
    );
    assert_eq!(
        view.service.service().check_fields(&view.fields, Date::MAX),
        []
    );
    assert_eq!(view.attachments.len(), 1);
    assert_eq!(view.attachments[0].sha256, [0xab; 32]);
    assert_eq!(view.attachments[0].size, Some(48213));
    let consent = view.consent.as_ref().expect("consent");
    assert_eq!(consent.at, Some(at(1_751_216_400_000)));
    let capture = view.capture.as_ref().expect("capture");
    assert_eq!(capture.at, Some(at(1_751_216_400_000)));
    assert_eq!(capture.visit, Some(visit_id()));
    assert_eq!(view.status, ApplicationStatus::InReview);
    assert_eq!(view.history.len(), 2);
    assert_eq!(view.history[0].at, at(1_751_252_400_000));
    assert_eq!(view.history[0].from, Some(ApplicationStatus::Draft));
    assert_eq!(view.history[1].role, Some(Role::Supervisor));
    assert_eq!(view.history[1].note.as_deref(), Some("Dicek oleh Budi"));
}

#[test]
fn text_objects_read_like_scalars() {
    let scalar = ApplicationView::from_doc(&doc(&full_application(), Strings::Scalar));
    let text = ApplicationView::from_doc(&doc(&full_application(), Strings::Text));
    assert_eq!(
        text.expect("JS-style document reads"),
        scalar.expect("SDK document reads")
    );
}

#[test]
fn debug_never_shows_personal_data() {
    let view = ApplicationView::from_doc(&doc(&full_application(), Strings::Text)).expect("ok");
    let debug = format!("{view:?}");
    for secret in [
        "3471011503850012",
        "3471012003150004",
        "Budi",
        "6281234",
        "Veteran",
        "1985",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(debug.contains("347101**********"));
}

#[test]
fn a_minimal_application_reads() {
    let minimal = json!({
        "schema": "jemput/application@1",
        "trackingCode": tracking(),
        "service": "DUKCAPIL-KIA",
        "region": { "district": "34.71.01" },
        "status": "draft",
        "applicant": { "nik": null, "phone": null },
    });
    for strings in [Strings::Scalar, Strings::Text] {
        let view = ApplicationView::from_doc(&doc(&minimal, strings)).expect("minimal reads");
        assert_eq!(view.applicant, ApplicantView::default());
        assert!(view.fields.is_empty() && view.attachments.is_empty() && view.history.is_empty());
        assert_eq!(
            (view.consent, view.capture, view.region.village),
            (None, None, None)
        );
    }
}

/// Reads `value` after `edit` and returns the error (scalar strings).
fn error_after(edit: impl FnOnce(&mut Value)) -> SchemaError {
    let mut value = full_application();
    edit(&mut value);
    let result = ApplicationView::from_doc(&doc(&value, Strings::Scalar));
    let text_result = ApplicationView::from_doc(&doc(&value, Strings::Text));
    let e = result.expect_err("document should be rejected");
    assert_eq!(
        e.to_string(),
        text_result.expect_err("rejected as Text too").to_string()
    );
    e
}

fn path_of(e: &SchemaError) -> &str {
    match e {
        SchemaError::Missing { path }
        | SchemaError::WrongType { path, .. }
        | SchemaError::Invalid { path, .. } => path,
        other => panic!("no path in {other:?}"),
    }
}

#[test]
fn schema_string_is_strict() {
    for schema in [
        json!("jemput/application@2"),
        json!("jemput/visit@1"),
        json!(null),
    ] {
        let e = error_after(|v| v["schema"] = schema.clone());
        assert!(
            matches!(
                e,
                SchemaError::Schema {
                    expected: APPLICATION
                }
            ),
            "{e:?}"
        );
    }
    let e = error_after(|v| v["schema"] = json!(1));
    assert!(
        matches!(
            e,
            SchemaError::WrongType {
                expected: "string",
                ..
            }
        ),
        "{e:?}"
    );
}

/// Checks that the application with `edit` applied is rejected at `path`, without the
/// message repeating a NIK.
fn rejects(path: &str, edit: impl FnOnce(&mut Value)) {
    let e = error_after(edit);
    assert_eq!(path_of(&e), path, "{e}");
    assert!(!e.to_string().contains("34710115"), "{e}");
}

#[test]
fn required_fields_and_types_are_strict() {
    rejects("status", |v| v["status"] = json!(3));
    rejects("status", |v| v["status"] = json!("approved_by_me"));
    rejects("status", |v| v["status"] = json!(null));
    rejects("trackingCode", |v| {
        v["trackingCode"] = json!("JPT-3471-0000-0001")
    });
    rejects("service", |v| v["service"] = json!("NOPE"));
    rejects("region", |v| v["region"] = json!("34.71.01"));
    rejects("region.district", |v| {
        v["region"]["district"] = json!("34.71")
    });
    rejects("region.village", |v| {
        v["region"]["village"] = json!("34.04.01.2001")
    });
    rejects("applicant", |v| v["applicant"] = json!([]));
    rejects("applicant.nik", |v| {
        v["applicant"]["nik"] = json!("3471011503850000")
    });
    rejects("applicant.nik", |v| {
        v["applicant"]["nik"] = json!(3471011503850012_i64)
    });
    rejects("applicant.birthDate", |v| {
        v["applicant"]["birthDate"] = json!("15-03-1985")
    });
    rejects("applicant.sex", |v| v["applicant"]["sex"] = json!("M"));
    rejects("fields", |v| v["fields"] = json!(["a"]));
    rejects("attachments[0].sha256", |v| {
        v["attachments"][0]["sha256"] = json!("xyz")
    });
    rejects("attachments[0].size", |v| {
        v["attachments"][0]["size"] = json!(-1)
    });
    rejects("attachments[0]", |v| v["attachments"] = json!(["ab"]));
    rejects("capture.visit", |v| {
        v["capture"]["visit"] = json!("not-an-id")
    });
    rejects("capture.at", |v| v["capture"]["at"] = json!("yesterday"));
    rejects("history[1].to", |v| v["history"][1]["to"] = json!("done"));
    rejects("history[1].at", |v| v["history"][1]["at"] = json!(null));
    rejects("history[0].role", |v| {
        v["history"][0]["role"] = json!("root")
    });
}

#[test]
fn reads_a_visit() {
    let apps = [
        DocumentId::from_bytes([1; 16]),
        DocumentId::from_bytes([2; 16]),
    ];
    let value = json!({
        "schema": "jemput/visit@1",
        "region": { "district": "34.71.01", "village": "34.71.01.1001" },
        "officer": "officer-1",
        "device": "device-1",
        "at": { "$ts": 1_751_216_400_000_i64 },
        "purpose": "home_visit",
        "notes": "Ibu Sari, lansia",
        "applications": [apps[0].to_string(), apps[1].to_string()],
        "weather": "newer field",
    });
    let scalar = VisitView::from_doc(&doc(&value, Strings::Scalar)).expect("visit reads");
    let text = VisitView::from_doc(&doc(&value, Strings::Text)).expect("JS visit reads");
    assert_eq!(scalar, text);
    assert_eq!(scalar.applications, apps);
    assert_eq!(scalar.at, Some(at(1_751_216_400_000)));
    assert_eq!(scalar.purpose.as_deref(), Some("home_visit"));
    assert!(!format!("{scalar:?}").contains("Sari"));

    let mut bad = value.clone();
    bad["applications"][1] = json!("nope");
    let e = VisitView::from_doc(&doc(&bad, Strings::Text)).expect_err("bad id");
    assert_eq!(path_of(&e), "applications[1]");
    let minimal = json!({ "schema": "jemput/visit@1", "region": { "district": "34.71.01" } });
    let v = VisitView::from_doc(&doc(&minimal, Strings::Scalar)).expect("minimal visit");
    assert!(v.applications.is_empty() && v.officer.is_none());
}

#[test]
fn document_view_dispatches_on_schema() {
    let app = doc(&full_application(), Strings::Text);
    assert_eq!(
        DocumentView::from_doc(&app).expect("reads").kind(),
        DocumentKind::Application
    );
    let visit = doc(
        &json!({ "schema": "jemput/visit@1", "region": { "district": "34.71.01" } }),
        Strings::Text,
    );
    assert_eq!(
        DocumentView::from_doc(&visit).expect("reads").kind(),
        DocumentKind::Visit
    );
    let other = doc(&json!({ "schema": "something/else@1" }), Strings::Scalar);
    assert!(matches!(
        DocumentView::from_doc(&other),
        Err(SchemaError::Schema { .. })
    ));
    assert!(matches!(
        DocumentView::from_doc(&Automerge::new()),
        Err(SchemaError::Schema { .. })
    ));
}
