//! The service catalogue of the public service mall (Mal Pelayanan Publik): which services an
//! application can be for, what each costs and takes, and which fields its form has.
//!
//! The catalogue is `data/services.json`, compiled in and parsed once. Devices cache the same
//! bytes ([`Catalogue::json`], with [`Catalogue::etag`] for conditional requests).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use time::Date;

use crate::civil::parse_iso_date;
use crate::nik::{Nik, NikError};
use crate::region::{RegionCode, RegionError};

/// The catalogue as shipped: a JSON array of 29 services.
const SERVICES_JSON: &str = include_str!("../data/services.json");

/// Why a string is not a service code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ServiceCodeError {
    /// Empty, or a character other than `A`-`Z`, `0`-`9` and `-`.
    #[error("service code is not upper-case letters, digits and hyphens")]
    Malformed,
    /// Well formed but not in the catalogue.
    #[error("service code is not in the service catalogue")]
    Unknown,
}

/// The code of a service in the embedded catalogue, e.g. `DUKCAPIL-KTP-EL-BARU`.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceCode(u16);

impl ServiceCode {
    /// Parses a code and looks it up in the catalogue.
    pub fn parse(s: &str) -> Result<Self, ServiceCodeError> {
        if !is_code_shaped(s) {
            return Err(ServiceCodeError::Malformed);
        }
        catalogue()
            .services
            .iter()
            .position(|svc| svc.code_str == s)
            .map(Self::from_index)
            .ok_or(ServiceCodeError::Unknown)
    }

    /// The code, e.g. `DUKCAPIL-KTP-EL-BARU`.
    pub fn as_str(&self) -> &'static str {
        self.service().code_str
    }

    /// The catalogue entry.
    pub fn service(&self) -> &'static Service {
        &catalogue().services[usize::from(self.0)]
    }

    fn from_index(index: usize) -> Self {
        // The catalogue has at most u16::MAX entries (checked when it is loaded).
        Self(index as u16)
    }
}

impl AsRef<str> for ServiceCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for ServiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ServiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceCode({})", self.as_str())
    }
}

impl TryFrom<String> for ServiceCode {
    type Error = ServiceCodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ServiceCode> for String {
    fn from(code: ServiceCode) -> Self {
        code.as_str().to_owned()
    }
}

impl std::str::FromStr for ServiceCode {
    type Err = ServiceCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The string is not an agency name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("agency name is empty, longer than 80 bytes, padded or has control characters")]
pub struct AgencyError;

/// The agency (instansi) that delivers a service, e.g. `Disdukcapil`, `BPJS Kesehatan`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Agency(String);

impl Agency {
    /// Longest accepted name, in bytes.
    const MAX_LEN: usize = 80;

    /// Accepts a non-empty name of at most 80 bytes with no surrounding whitespace and no
    /// control characters.
    pub fn parse(s: &str) -> Result<Self, AgencyError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.trim() == s
            && !s.chars().any(char::is_control);
        ok.then(|| Self(s.to_owned())).ok_or(AgencyError)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Agency {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Agency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Agency {
    type Error = AgencyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Agency> for String {
    fn from(agency: Agency) -> Self {
        agency.0
    }
}

/// The type of a service-specific form field, and what its value must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    /// Free text.
    String,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A whole number.
    Integer,
    /// One of `options` (lower-case snake case, except sex `L`/`P` and blood types).
    Enum {
        /// The allowed values, in display order.
        options: Vec<String>,
    },
    /// Yes or no.
    Boolean,
    /// A NIK (personal data: mask it like [`Nik`]).
    Nik,
    /// A Kemendagri region code.
    RegionCode,
}

impl FieldKind {
    /// The type name as `services.json` writes it (`string`, `enum`, `region_code`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Date => "date",
            Self::Integer => "integer",
            Self::Enum { .. } => "enum",
            Self::Boolean => "boolean",
            Self::Nik => "nik",
            Self::RegionCode => "region_code",
        }
    }
}

/// One field of a service's application form.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldSpec {
    /// Key under the application's `fields` map (snake case).
    pub name: String,
    /// The value's type.
    pub kind: FieldKind,
    /// Whether a submitted application must have it.
    pub required: bool,
    /// The label shown to officers, in Bahasa Indonesia.
    pub label_id: String,
}

/// A value of an application's service-specific `fields` map, as read from a document.
///
/// `Debug` hides text (it may be a NIK or a name) and shows only its length.
#[derive(Clone, PartialEq)]
pub enum FieldValue {
    /// A string: free text, a date, an enumeration option, a NIK or a region code.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// A number with a fraction (JS numbers that are not integers).
    Float(f64),
    /// Yes or no.
    Boolean(bool),
    /// A value of a shape no field of this schema version has (a list, a map, bytes): kept so
    /// a newer device's document still reads.
    Other,
}

impl fmt::Debug for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(t) => write!(f, "Text(<{} chars>)", t.chars().count()),
            Self::Integer(i) => write!(f, "Integer({i})"),
            Self::Float(x) => write!(f, "Float({x})"),
            Self::Boolean(b) => write!(f, "Boolean({b})"),
            Self::Other => f.write_str("Other"),
        }
    }
}

/// What is wrong with one field of an application, against its service's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    /// A required field is absent.
    #[error("required field is missing")]
    Missing,
    /// The value has the wrong type for the field.
    #[error("value has the wrong type")]
    WrongType,
    /// Not one of the enumeration's options.
    #[error("value is not one of the options")]
    NotAnOption,
    /// Not a `YYYY-MM-DD` date.
    #[error("value is not a YYYY-MM-DD date")]
    Date,
    /// Not a valid NIK.
    #[error("value is not a valid NIK: {0}")]
    Nik(NikError),
    /// Not a region code in the table.
    #[error("value is not a known region code: {0}")]
    Region(RegionError),
}

/// A [`FieldProblem`] and the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {problem}")]
pub struct FieldIssue {
    /// The field's name.
    pub field: String,
    /// What is wrong.
    pub problem: FieldProblem,
}

impl FieldSpec {
    /// Checks one value against this field's type. NIKs are checked against `today`.
    pub fn check(&self, value: &FieldValue, today: Date) -> Result<(), FieldProblem> {
        let text = match (value, &self.kind) {
            (FieldValue::Boolean(_), FieldKind::Boolean) => return Ok(()),
            (FieldValue::Integer(_), FieldKind::Integer) => return Ok(()),
            (FieldValue::Float(x), FieldKind::Integer) if x.fract() == 0.0 => return Ok(()),
            (FieldValue::Text(t), _) => t,
            _ => return Err(FieldProblem::WrongType),
        };
        match &self.kind {
            FieldKind::String => Ok(()),
            FieldKind::Date => parse_iso_date(text).map(|_| ()).ok_or(FieldProblem::Date),
            FieldKind::Enum { options } => {
                if options.iter().any(|o| o == text) {
                    Ok(())
                } else {
                    Err(FieldProblem::NotAnOption)
                }
            }
            FieldKind::Nik => Nik::parse(text, today)
                .map(|_| ())
                .map_err(FieldProblem::Nik),
            FieldKind::RegionCode => RegionCode::parse(text)
                .map(|_| ())
                .map_err(FieldProblem::Region),
            FieldKind::Integer | FieldKind::Boolean => Err(FieldProblem::WrongType),
        }
    }
}

/// One service of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Service {
    /// Its code.
    pub code: ServiceCode,
    /// The delivering agency.
    pub agency: Agency,
    /// Name in Bahasa Indonesia.
    pub name_id: String,
    /// Name in English.
    pub name_en: String,
    /// Documents the citizen must bring or have photographed, in Bahasa Indonesia.
    pub required_documents: Vec<String>,
    /// Service-level agreement, in working days.
    pub sla_working_days: u32,
    /// Fixed fee in rupiah; 0 when there is no fixed fee (see `notes` for variable costs).
    pub fee_idr: u64,
    /// Whether officers may take the application in the field (jemput bola).
    pub outreach_eligible: bool,
    /// The service-specific form.
    pub fields: Vec<FieldSpec>,
    /// Where fee, SLA and documents come from (regulation or "typical, unverified").
    pub source: String,
    /// Caveats and variable costs, in English.
    pub notes: Option<String>,
    code_str: &'static str,
}

impl Service {
    /// The form field called `name`.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Checks an application's `fields` against this service's form: every required field
    /// present, every known field of the right type and value. Fields the form does not name
    /// are ignored (a newer device may send them). Empty when all is well.
    pub fn check_fields(
        &self,
        values: &BTreeMap<String, FieldValue>,
        today: Date,
    ) -> Vec<FieldIssue> {
        let mut issues = Vec::new();
        for spec in &self.fields {
            let problem = match values.get(&spec.name) {
                None if spec.required => Some(FieldProblem::Missing),
                None => None,
                Some(value) => spec.check(value, today).err(),
            };
            if let Some(problem) = problem {
                issues.push(FieldIssue {
                    field: spec.name.clone(),
                    problem,
                });
            }
        }
        issues
    }
}

/// The service catalogue: every service, and the exact bytes it was read from.
#[derive(Debug)]
pub struct Catalogue {
    services: Vec<Service>,
    hash: [u8; 32],
    etag: String,
}

impl Catalogue {
    /// Every service, in catalogue order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The service with this code.
    pub fn get(&self, code: ServiceCode) -> &Service {
        &self.services[usize::from(code.0)]
    }

    /// The service whose code is `code`, if any.
    pub fn find(&self, code: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.code_str == code)
    }

    /// The catalogue's JSON exactly as shipped, to serve at `GET /v1/services`
    /// (`application/json; charset=utf-8`).
    pub fn json(&self) -> &'static [u8] {
        SERVICES_JSON.as_bytes()
    }

    /// SHA-256 of [`json`](Self::json).
    pub fn content_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// A strong HTTP entity tag for [`json`](Self::json), quotes included:
    /// `"sha256-<first 32 hex digits of the content hash>"`. It changes exactly when the bytes
    /// do, so devices can revalidate with `If-None-Match`.
    pub fn etag(&self) -> &str {
        &self.etag
    }
}

/// The embedded catalogue, parsed on first use.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| match load(SERVICES_JSON) {
        Ok(catalogue) => catalogue,
        // Compiled in and parsed whole by `tests::catalogue_is_complete`: a build defect.
        Err(e) => panic!("embedded services.json is malformed: {e}"),
    })
}

fn is_code_shaped(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

/// Why the embedded catalogue failed to load (only ever seen by this crate's tests).
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("service {0}: {1}")]
    Service(usize, &'static str),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService<'a> {
    code: &'a str,
    agency: String,
    name_id: String,
    name_en: String,
    required_documents: Vec<String>,
    sla_working_days: u32,
    fee_idr: u64,
    outreach_eligible: bool,
    fields: Vec<RawField>,
    source: String,
    #[serde(default)]
    notes: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    required: bool,
    label_id: String,
    #[serde(default)]
    options: Option<Vec<String>>,
}

fn load(json: &'static str) -> Result<Catalogue, LoadError> {
    // Borrow the codes from the embedded text so `ServiceCode::as_str` is `&'static`.
    let raw: Vec<RawService<'static>> = serde_json::from_str(json)?;
    if raw.len() > usize::from(u16::MAX) {
        return Err(LoadError::Service(raw.len(), "too many services"));
    }
    let mut services: Vec<Service> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let err = |what| LoadError::Service(i, what);
        if !is_code_shaped(r.code) {
            return Err(err("malformed code"));
        }
        if services.iter().any(|s| s.code_str == r.code) {
            return Err(err("duplicate code"));
        }
        let agency = Agency::parse(&r.agency).map_err(|_| err("bad agency"))?;
        let mut fields: Vec<FieldSpec> = Vec::with_capacity(r.fields.len());
        for f in r.fields {
            if fields.iter().any(|g| g.name == f.name) {
                return Err(err("duplicate field name"));
            }
            fields.push(field_spec(f).ok_or(err("bad field"))?);
        }
        services.push(Service {
            code: ServiceCode::from_index(i),
            code_str: r.code,
            agency,
            name_id: r.name_id,
            name_en: r.name_en,
            required_documents: r.required_documents,
            sla_working_days: r.sla_working_days,
            fee_idr: r.fee_idr,
            outreach_eligible: r.outreach_eligible,
            fields,
            source: r.source,
            notes: r.notes,
        });
    }
    let hash: [u8; 32] = Sha256::digest(json.as_bytes()).into();
    let etag = format!("\"sha256-{}\"", hex::encode(&hash[..16]));
    Ok(Catalogue {
        services,
        hash,
        etag,
    })
}

fn field_spec(f: RawField) -> Option<FieldSpec> {
    let kind = match (f.kind.as_str(), f.options) {
        ("string", None) => FieldKind::String,
        ("date", None) => FieldKind::Date,
        ("integer", None) => FieldKind::Integer,
        ("boolean", None) => FieldKind::Boolean,
        ("nik", None) => FieldKind::Nik,
        ("region_code", None) => FieldKind::RegionCode,
        ("enum", Some(options)) if !options.is_empty() => FieldKind::Enum { options },
        _ => return None,
    };
    if f.name.is_empty() {
        return None;
    }
    Some(FieldSpec {
        name: f.name,
        kind,
        required: f.required,
        label_id: f.label_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_complete() {
        let c = load(SERVICES_JSON).expect("embedded catalogue loads");
        assert_eq!(c.services().len(), 29);
        assert_eq!(
            c.services().iter().filter(|s| s.outreach_eligible).count(),
            17
        );
        let fields: usize = c.services().iter().map(|s| s.fields.len()).sum();
        assert_eq!(fields, 150);
        for (i, s) in catalogue().services().iter().enumerate() {
            let code = ServiceCode::parse(s.code.as_str()).expect("own code parses");
            assert_eq!(code, s.code);
            assert_eq!(usize::from(code.0), i);
            assert_eq!(catalogue().get(code).code_str, s.code_str);
        }
    }

    #[test]
    fn one_service_in_detail() {
        let code = ServiceCode::parse("DUKCAPIL-KTP-EL-BARU").expect("known");
        let s = code.service();
        assert_eq!(s.agency.as_str(), "Disdukcapil");
        assert_eq!(s.sla_working_days, 14);
        assert_eq!(s.fee_idr, 0);
        assert!(s.outreach_eligible);
        assert!(s.notes.is_some());
        let marital = s.field("marital_status").expect("has field");
        assert!(marital.required);
        assert_eq!(
            marital.kind,
            FieldKind::Enum {
                options: vec![
                    "belum_kawin".into(),
                    "kawin".into(),
                    "cerai_hidup".into(),
                    "cerai_mati".into()
                ]
            }
        );
        assert_eq!(
            s.field("collection_village").map(|f| &f.kind),
            Some(&FieldKind::RegionCode)
        );
        let passport = catalogue()
            .find("IMIGRASI-PASPOR-ELEKTRONIK-10TH")
            .expect("known");
        assert_eq!(passport.fee_idr, 950_000);
        assert!(!passport.outreach_eligible);
    }

    #[test]
    fn codes_are_checked() {
        assert_eq!(ServiceCode::parse(""), Err(ServiceCodeError::Malformed));
        assert_eq!(
            ServiceCode::parse("dukcapil-kia"),
            Err(ServiceCodeError::Malformed)
        );
        assert_eq!(
            ServiceCode::parse("DUKCAPIL KIA"),
            Err(ServiceCodeError::Malformed)
        );
        assert_eq!(
            ServiceCode::parse("DUKCAPIL-KIA-2"),
            Err(ServiceCodeError::Unknown)
        );
        let kia = ServiceCode::parse("DUKCAPIL-KIA").expect("known");
        assert_eq!(
            serde_json::to_string(&kia).expect("json"),
            "\"DUKCAPIL-KIA\""
        );
        assert_eq!(
            serde_json::from_str::<ServiceCode>("\"DUKCAPIL-KIA\"").ok(),
            Some(kia)
        );
        assert!(serde_json::from_str::<ServiceCode>("\"NOPE\"").is_err());
        assert_eq!(format!("{kia:?}"), "ServiceCode(DUKCAPIL-KIA)");
    }

    #[test]
    fn field_checks() {
        let today = Date::from_calendar_date(2025, time::Month::June, 30).expect("date");
        let s = catalogue().find("DUKCAPIL-KTP-EL-BARU").expect("known");
        let text = |t: &str| FieldValue::Text(t.to_owned());
        let mut values = BTreeMap::new();
        values.insert("recording_status".to_owned(), text("belum_rekam"));
        values.insert("marital_status".to_owned(), text("kawin"));
        values.insert(
            "home_recording_needed".to_owned(),
            FieldValue::Boolean(true),
        );
        values.insert("collection_village".to_owned(), text("34.71.01.1001"));
        values.insert("from_a_newer_device".to_owned(), FieldValue::Other);
        assert_eq!(s.check_fields(&values, today), []);

        values.insert("marital_status".to_owned(), text("menikah"));
        values.insert("home_recording_needed".to_owned(), text("true"));
        values.insert("collection_village".to_owned(), text("34.71.15"));
        values.remove("recording_status");
        let problems: Vec<_> = s
            .check_fields(&values, today)
            .into_iter()
            .map(|i| (i.field, i.problem))
            .collect();
        assert_eq!(
            problems,
            [
                ("recording_status".to_owned(), FieldProblem::Missing),
                ("marital_status".to_owned(), FieldProblem::NotAnOption),
                ("home_recording_needed".to_owned(), FieldProblem::WrongType),
                (
                    "collection_village".to_owned(),
                    FieldProblem::Region(RegionError::Unknown)
                ),
            ]
        );

        let nik = FieldSpec {
            name: "x".into(),
            kind: FieldKind::Nik,
            required: true,
            label_id: "x".into(),
        };
        assert_eq!(nik.check(&text("3471011503850012"), today), Ok(()));
        assert_eq!(
            nik.check(&text("3471011503850000"), today),
            Err(FieldProblem::Nik(NikError::Serial))
        );
        let int = FieldSpec {
            kind: FieldKind::Integer,
            ..nik.clone()
        };
        assert_eq!(int.check(&FieldValue::Float(3.0), today), Ok(()));
        assert_eq!(
            int.check(&FieldValue::Float(3.5), today),
            Err(FieldProblem::WrongType)
        );
        let date = FieldSpec {
            kind: FieldKind::Date,
            ..nik
        };
        assert_eq!(
            date.check(&text("2025-02-29"), today),
            Err(FieldProblem::Date)
        );
        assert_eq!(
            format!("{:?}", text("3471011503850012")),
            "Text(<16 chars>)"
        );
    }

    #[test]
    fn agencies() {
        assert!(Agency::parse("BPJS Kesehatan").is_ok());
        for bad in ["", " Polri", "Polri ", "Po\nlri", &"x".repeat(81)] {
            assert_eq!(Agency::parse(bad), Err(AgencyError), "{bad:?}");
        }
    }

    #[test]
    fn raw_bytes_and_etag() {
        let c = catalogue();
        assert_eq!(c.json(), include_bytes!("../data/services.json"));
        let parsed: serde_json::Value = serde_json::from_slice(c.json()).expect("json");
        assert_eq!(parsed.as_array().map(Vec::len), Some(29));
        let hash: [u8; 32] = Sha256::digest(c.json()).into();
        assert_eq!(c.content_hash(), hash);
        assert_eq!(c.etag().len(), 2 + 7 + 32);
        assert!(c.etag().starts_with("\"sha256-") && c.etag().ends_with('"'));
    }

    #[test]
    fn loader_rejects_bad_catalogues() {
        let one = |fields: &str| {
            format!(
                r#"[{{"code":"X","agency":"A","name_id":"n","name_en":"n","required_documents":[],
                "sla_working_days":1,"fee_idr":0,"outreach_eligible":true,"fields":[{fields}],
                "source":"s"}}]"#
            )
        };
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        assert!(load(leak(one(""))).is_ok());
        for bad in [
            r#"{"name":"a","type":"enum","required":true,"label_id":"l"}"#,
            r#"{"name":"a","type":"enum","required":true,"label_id":"l","options":[]}"#,
            r#"{"name":"a","type":"string","required":true,"label_id":"l","options":["x"]}"#,
            r#"{"name":"a","type":"float","required":true,"label_id":"l"}"#,
            r#"{"name":"a","type":"date","required":true,"label_id":"l","extra":1}"#,
        ] {
            assert!(load(leak(one(bad))).is_err(), "{bad}");
        }
        assert!(load("[]x").is_err());
    }
}
