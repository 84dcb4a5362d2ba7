//! NIK/KK validation against the reference tables of `../shared/data` (copied into
//! `tests/data/` so the crate's tests run from any checkout): the edge-case table of `NIK.md`
//! and the synthetic people of `people-sample.csv`.

use jemput_domain::{Kk, Nik, RegionCode, RegionLevel, Sex};
use time::{Date, Month};

const EDGE_CASES: &str = include_str!("data/nik-edge-cases.csv");
const PEOPLE: &str = include_str!("data/people-sample.csv");

/// `gen_people.py`'s fixed reference date.
fn reference_date() -> Date {
    Date::from_calendar_date(2025, Month::June, 30).expect("valid date")
}

/// Splits an RFC 4180 CSV text into records of fields (quotes, `""` escapes, commas inside).
fn csv(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            let mut fields = vec![String::new()];
            let mut quoted = false;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match (c, quoted) {
                    ('"', true) if chars.peek() == Some(&'"') => {
                        chars.next();
                        fields.last_mut().expect("one field").push('"');
                    }
                    ('"', _) => quoted = !quoted,
                    (',', false) => fields.push(String::new()),
                    _ => fields.last_mut().expect("one field").push(c),
                }
            }
            fields
        })
        .collect()
}

/// Checks one value of `kind` (`nik` or `kk`) against `NIK.md`'s expectation: `valid`,
/// `invalid:<reason>` or `warning:<reason>`.
fn check(kind: &str, input: &str, expected: &str) {
    let today = reference_date();
    let outcome = match kind {
        "nik" => Nik::parse(input, today).map(|n| n.warning()),
        "kk" => Kk::parse(input, today).map(|k| k.warning()),
        other => panic!("unknown kind {other}"),
    };
    let actual = match outcome {
        Ok(None) => "valid".to_owned(),
        Ok(Some(w)) => format!("warning:{}", w.reason_code()),
        Err(e) => format!("invalid:{}", e.reason_code()),
    };
    assert_eq!(actual, expected, "{kind} {input:?}");
}

#[test]
fn nik_md_edge_case_table() {
    let rows = csv(EDGE_CASES);
    assert_eq!(
        rows[0],
        [
            "id",
            "kind",
            "value",
            "address_village_code",
            "expect",
            "description"
        ]
    );
    let cases = &rows[1..];
    assert_eq!(cases.len(), 30, "NIK.md lists 24 NIK and 6 KK cases");
    for row in cases {
        check(&row[1], &row[2], &row[4]);
        RegionCode::parse(&row[3]).expect("address villages are real");
    }
}

#[test]
fn edge_cases_spelled_out() {
    // The failure order matters: full-width digits are 16 characters but not ASCII.
    check(
        "nik",
        "３４７１０１１５０３８５００１２",
        "invalid:non_digit",
    );
    check("nik", "", "invalid:length");
    check("nik", "0071011503850012", "invalid:area");
    check("nik", "3471001503850012", "invalid:area");
    check("nik", "3400001399850000", "invalid:area");
    check("nik", "3471019913850000", "invalid:month");
    check("nik", "3471019902850000", "invalid:day");
    check("nik", "3471013102850000", "invalid:date");
    check("kk", "3471014102850001", "invalid:day");
}

#[test]
fn every_sample_person_parses() {
    let rows = csv(PEOPLE);
    let header = &rows[0];
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .expect("column exists")
    };
    let (nik_col, kk_col, sex_col, birth_col, village_col) = (
        col("nik"),
        col("kk"),
        col("sex"),
        col("birth_date"),
        col("village_code"),
    );
    let today = reference_date();
    assert_eq!(rows.len() - 1, 200);
    for row in &rows[1..] {
        let nik = Nik::parse(&row[nik_col], today).expect("sample NIK is valid");
        let kk = Kk::parse(&row[kk_col], today).expect("sample KK is valid");
        assert_eq!(nik.warning(), None, "{nik:?}");
        assert_eq!(kk.warning(), None, "{kk:?}");
        assert_eq!(Sex::parse(&row[sex_col]), Ok(nik.sex()));
        assert_eq!(nik.birth_date(today).to_string(), row[birth_col]);
        let village = RegionCode::parse(&row[village_col]).expect("sample village is real");
        assert_eq!(village.level(), RegionLevel::Village);
        // The KK and the address are in the same district (NIK.md, gen_people.py).
        assert_eq!(
            Some(kk.district_code().as_str()),
            village.district().map(|d| d.as_str())
        );
    }
}
