//! Population numbers: NIK (Nomor Induk Kependudukan) and KK (Nomor Kartu Keluarga).
//!
//! Structural validation only, following `NIK.md` rule by rule and in its order. Both numbers
//! are personal data (UU PDP 27/2022; a NIK is also a tax number): `Debug` and `Display` mask
//! them as `347101**********`, and the full number comes out only through the explicitly named
//! [`Nik::expose`] / [`Kk::expose`] (and serde, which writes documents and storage).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use time::{Date, Month};

use crate::region::RegionCode;

/// Why a string is not a structurally valid NIK or KK number. Each variant is a reason code
/// of `NIK.md` (`invalid:<reason>`), reported for the first rule that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum NikError {
    /// Rule 1: a character is not an ASCII digit (spaces, dots, full-width digits, letters).
    #[error("contains a character that is not an ASCII digit")]
    NonDigit,
    /// Rule 2: not exactly 16 digits.
    #[error("is not exactly 16 digits")]
    Length,
    /// Rule 3: the province, regency or district part is `00`.
    #[error("has an area part of 00")]
    Area,
    /// Rule 4: the month is not `01`-`12`.
    #[error("has a month outside 01-12")]
    Month,
    /// Rule 5: the day is not `01`-`31` (or `41`-`71` for a woman's NIK; never for a KK).
    #[error("has a day outside the allowed ranges")]
    Day,
    /// Rule 6: the day does not exist in that month of the resolved year (31 April, 29 February
    /// of a common year), or even the earlier century puts it after the reference date.
    #[error("has a date that does not exist")]
    Date,
    /// Rule 7: the serial is `0000`.
    #[error("has serial 0000")]
    Serial,
}

impl NikError {
    /// The reason code as `NIK.md` writes it after `invalid:` (`non_digit`, `length`, ...).
    pub fn reason_code(self) -> &'static str {
        match self {
            Self::NonDigit => "non_digit",
            Self::Length => "length",
            Self::Area => "area",
            Self::Month => "month",
            Self::Day => "day",
            Self::Date => "date",
            Self::Serial => "serial",
        }
    }
}

/// Something worth showing an officer about a valid number, never a reason to reject it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NikWarning {
    /// Rule 8: the district `PP.KK.CC` is not in the region table (a code from before a
    /// regional split, such as Merauke's `91.01.01`, or newer than the table).
    UnknownArea,
}

impl NikWarning {
    /// The reason code as `NIK.md` writes it after `warning:` (`unknown_area`).
    pub fn reason_code(self) -> &'static str {
        match self {
            Self::UnknownArea => "unknown_area",
        }
    }
}

/// Sex as a NIK encodes it and as Indonesian forms write it: `L` (laki-laki) or `P` (perempuan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Sex {
    /// `L`, laki-laki.
    Male,
    /// `P`, perempuan.
    Female,
}

/// The string is neither `L` nor `P`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sex is neither L nor P")]
pub struct SexError;

impl Sex {
    /// Parses `L` or `P` (upper case, as forms and the catalogue write them).
    pub fn parse(s: &str) -> Result<Self, SexError> {
        match s {
            "L" => Ok(Self::Male),
            "P" => Ok(Self::Female),
            _ => Err(SexError),
        }
    }

    /// `L` or `P`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Male => "L",
            Self::Female => "P",
        }
    }
}

impl fmt::Display for Sex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Sex {
    type Error = SexError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Sex> for String {
    fn from(sex: Sex) -> Self {
        sex.as_str().to_owned()
    }
}

/// A structurally valid NIK, the 16-digit national identity number.
///
/// `PP KK CC DDMMYY SSSS`: the district of first registration, the birth date (day + 40 for
/// women) and a serial. Parse with [`Nik::parse`]; an unknown district is a
/// [`warning`](Nik::warning), not an error, because old codes live on in NIKs.
///
/// **Personal data.** `Debug` and `Display` print the masked form `347101**********`; only
/// [`Nik::expose`] and serialisation give the full number. Never log those.
///
/// ```
/// use jemput_domain::{Nik, NikError, NikWarning, Sex, jakarta_today};
///
/// let today = jakarta_today(1_751_216_400); // 2025-06-30 in Jakarta; a binary reads its clock
/// let nik = Nik::parse("3674017101900003", today).unwrap();
/// assert_eq!(nik.sex(), Sex::Female);
/// assert_eq!(nik.birth_date(today).to_string(), "1990-01-31");
/// assert_eq!(nik.to_string(), "367401**********");
/// assert_eq!(nik.warning(), None);
/// assert_eq!(Nik::parse("3471011503850000", today), Err(NikError::Serial));
/// let legacy = Nik::parse("9101012206750004", today).unwrap();
/// assert_eq!(legacy.warning(), Some(NikWarning::UnknownArea));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nik(Digits);

impl Nik {
    /// Checks `s` against NIK rules 1-7 in order, resolving the two-digit year with the
    /// century rule against `today` (the reference date: today in Asia/Jakarta, see
    /// [`jakarta_today`](crate::jakarta_today)). Input is not trimmed or cleaned: strip spaces
    /// in the UI, not here.
    pub fn parse(s: &str, today: Date) -> Result<Self, NikError> {
        Digits::check(s, today, Kind::Nik).map(Self)
    }

    /// Rule 8: `Some(UnknownArea)` when the district is not in the region table.
    pub fn warning(&self) -> Option<NikWarning> {
        (!self.area_known()).then_some(NikWarning::UnknownArea)
    }

    /// Whether the district of first registration is in the region table.
    pub fn area_known(&self) -> bool {
        self.district().is_some()
    }

    /// The district of first registration, dotted (`34.71.01`), whether or not it is known.
    pub fn district_code(&self) -> String {
        self.0.district_code()
    }

    /// The district of first registration, if the region table knows it. It need not be where
    /// the person lives now.
    pub fn district(&self) -> Option<RegionCode> {
        self.0.district()
    }

    /// `Female` when the day is written `41`-`71`, `Male` otherwise.
    pub fn sex(&self) -> Sex {
        if self.0.raw_day() > 40 {
            Sex::Female
        } else {
            Sex::Male
        }
    }

    /// The birth date, its two-digit year resolved with the century rule against `today`:
    /// `2000 + YY` unless that is after `today`, then `1900 + YY`. Pass the reference date
    /// you parsed with; the same NIK read in 2031 puts a `YY` of `30` in 2030, not 1930.
    pub fn birth_date(&self, today: Date) -> Date {
        self.0.resolved_date(today, Kind::Nik)
    }

    /// The masked form `347101**********`: safe for logs, screens and error messages.
    pub fn masked(&self) -> String {
        self.0.masked()
    }

    /// The full 16 digits. **Personal data** (UU PDP 27/2022): for storage, documents and the
    /// officer's screen only; never for logs, metrics, URLs or error messages.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// A one-way keyed digest (HMAC-SHA256 of `nik:` and the 16 digits) for finding one
    /// citizen's audit trail without storing the NIK in clear. `secret` must be a server
    /// secret of at least 32 random bytes kept outside the database: NIKs have little entropy,
    /// so anyone with the key can recover a NIK from its digest by trying them all.
    pub fn audit_key(&self, secret: &[u8]) -> [u8; 32] {
        audit_digest(secret, b"nik:", &self.0)
    }
}

impl fmt::Debug for Nik {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nik({})", self.masked())
    }
}

impl fmt::Display for Nik {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Checks a NIK arriving through serde. There is no reference date here, so the check is the
/// one [`Nik::parse`] makes on any date from 2000-03-01 on: the century only decides validity
/// for `29 02 00` (2000 is a leap year, 1900 is not).
impl TryFrom<String> for Nik {
    type Error = NikError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s, Date::MAX)
    }
}

/// The full number, for serialisation. **Personal data**; see [`Nik::expose`].
impl From<Nik> for String {
    fn from(nik: Nik) -> Self {
        nik.expose().to_owned()
    }
}

/// A structurally valid KK number, the 16-digit family card number.
///
/// `PP KK CC DDMMYY SSSS`: the issuing district, the issue date (no +40) and a serial. The
/// issue date is resolved with the same century rule as a NIK's birth date, so it is never
/// after the reference date.
///
/// **Personal data**: masked in `Debug` and `Display` like a [`Nik`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Kk(Digits);

impl Kk {
    /// Checks `s` against the KK rules (NIK rules 1-7, with day `01`-`31` only) against the
    /// reference date `today`.
    pub fn parse(s: &str, today: Date) -> Result<Self, NikError> {
        Digits::check(s, today, Kind::Kk).map(Self)
    }

    /// Rule 8: `Some(UnknownArea)` when the issuing district is not in the region table.
    pub fn warning(&self) -> Option<NikWarning> {
        (!self.area_known()).then_some(NikWarning::UnknownArea)
    }

    /// Whether the issuing district is in the region table.
    pub fn area_known(&self) -> bool {
        self.district().is_some()
    }

    /// The issuing district, dotted (`34.71.01`), whether or not it is known.
    pub fn district_code(&self) -> String {
        self.0.district_code()
    }

    /// The issuing district, if the region table knows it.
    pub fn district(&self) -> Option<RegionCode> {
        self.0.district()
    }

    /// The issue date, resolved with the century rule against `today`; never after `today`
    /// when `today` is the date the number was parsed with (or later).
    pub fn issue_date(&self, today: Date) -> Date {
        self.0.resolved_date(today, Kind::Kk)
    }

    /// The masked form `347101**********`.
    pub fn masked(&self) -> String {
        self.0.masked()
    }

    /// The full 16 digits. **Personal data**: never for logs, metrics, URLs or errors.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// A one-way keyed digest (HMAC-SHA256 of `kk:` and the 16 digits); see [`Nik::audit_key`].
    pub fn audit_key(&self, secret: &[u8]) -> [u8; 32] {
        audit_digest(secret, b"kk:", &self.0)
    }
}

impl fmt::Debug for Kk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kk({})", self.masked())
    }
}

impl fmt::Display for Kk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Checks a KK arriving through serde, as for [`Nik`]'s `TryFrom<String>`.
impl TryFrom<String> for Kk {
    type Error = NikError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s, Date::MAX)
    }
}

/// The full number, for serialisation. **Personal data**; see [`Kk::expose`].
impl From<Kk> for String {
    fn from(kk: Kk) -> Self {
        kk.expose().to_owned()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nik,
    Kk,
}

/// Sixteen ASCII digits that passed rules 1-7.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Digits([u8; 16]);

impl Digits {
    fn check(s: &str, today: Date, kind: Kind) -> Result<Self, NikError> {
        // Rule 1 before rule 2: a 16-character string of full-width digits is `non_digit`.
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NikError::NonDigit);
        }
        let digits: [u8; 16] = s.as_bytes().try_into().map_err(|_| NikError::Length)?;
        let number = Self(digits);
        if [0, 2, 4].into_iter().any(|at| number.pair(at) == 0) {
            return Err(NikError::Area);
        }
        let month = number.pair(8);
        let month = u8::try_from(month)
            .ok()
            .and_then(|m| Month::try_from(m).ok())
            .ok_or(NikError::Month)?;
        let day = number.raw_day();
        let day_ok = match kind {
            Kind::Nik => (1..=31).contains(&day) || (41..=71).contains(&day),
            Kind::Kk => (1..=31).contains(&day),
        };
        if !day_ok {
            return Err(NikError::Day);
        }
        let date =
            resolve(number.pair(10), month, number.day(kind), today).ok_or(NikError::Date)?;
        if date > today {
            return Err(NikError::Date);
        }
        if number.pair(12) == 0 && number.pair(14) == 0 {
            return Err(NikError::Serial);
        }
        Ok(number)
    }

    /// The two-digit number starting at byte `at`.
    fn pair(&self, at: usize) -> u32 {
        u32::from(self.0[at] - b'0') * 10 + u32::from(self.0[at + 1] - b'0')
    }

    fn raw_day(&self) -> u32 {
        self.pair(6)
    }

    /// The day of the month: the written day, less 40 for a woman's NIK.
    fn day(&self, kind: Kind) -> u32 {
        let raw = self.raw_day();
        if kind == Kind::Nik && raw > 40 {
            raw - 40
        } else {
            raw
        }
    }

    fn resolved_date(&self, today: Date, kind: Kind) -> Date {
        let month = u8::try_from(self.pair(8))
            .ok()
            .and_then(|m| Month::try_from(m).ok())
            .unwrap_or(Month::January);
        // `check` proved the date exists in the resolved year for its reference date. For a
        // `today` before 29 Feb 2000 the earlier century may not have that day; keep 2000.
        resolve(self.pair(10), month, self.day(kind), today)
            .or_else(|| resolve(self.pair(10), month, self.day(kind), Date::MAX))
            .unwrap_or(Date::MIN)
    }

    fn district_code(&self) -> String {
        let d = self.as_str();
        format!("{}.{}.{}", &d[0..2], &d[2..4], &d[4..6])
    }

    fn district(&self) -> Option<RegionCode> {
        let mut area = [0u8; 6];
        area.copy_from_slice(&self.0[..6]);
        RegionCode::from_compact_district(&area)
    }

    fn masked(&self) -> String {
        format!("{}**********", &self.as_str()[..6])
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits get in (`check`), so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The century rule of `NIK.md`: the date in `2000 + yy`, or in `1900 + yy` when that would
/// be after `today`. `None` when the day does not exist in the resolved year's month.
fn resolve(yy: u32, month: Month, day: u32, today: Date) -> Option<Date> {
    let day = u8::try_from(day).ok()?;
    let yy = i32::try_from(yy).ok()?;
    let recent = (2000 + yy, month as u8, day);
    let year = if recent > (today.year(), today.month() as u8, today.day()) {
        1900 + yy
    } else {
        2000 + yy
    };
    Date::from_calendar_date(year, month, day).ok()
}

fn audit_digest(secret: &[u8], label: &[u8], number: &Digits) -> [u8; 32] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(label);
    mac.update(&number.0);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The fixed reference date of `gen_people.py` (2025-06-30).
    fn today() -> Date {
        Date::from_calendar_date(2025, Month::June, 30).expect("valid date")
    }

    fn date(y: i32, m: Month, d: u8) -> Date {
        Date::from_calendar_date(y, m, d).expect("valid date")
    }

    fn nik(s: &str) -> Nik {
        Nik::parse(s, today()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn accessors() {
        let man = nik("3471011503850012");
        assert_eq!(man.sex(), Sex::Male);
        assert_eq!(man.birth_date(today()), date(1985, Month::March, 15));
        assert_eq!(man.district_code(), "34.71.01");
        assert_eq!(man.district().map(|d| d.name()), Some("Tegalrejo"));
        assert_eq!(man.warning(), None);

        let woman = nik("3674017101900003");
        assert_eq!(woman.sex(), Sex::Female);
        assert_eq!(woman.birth_date(today()), date(1990, Month::January, 31));

        let legacy = nik("9101012206750004");
        assert_eq!(legacy.warning(), Some(NikWarning::UnknownArea));
        assert_eq!(legacy.district_code(), "91.01.01");
        assert_eq!(legacy.district(), None);
    }

    #[test]
    fn century_rule() {
        // 00 is 2000, a leap year.
        assert_eq!(
            nik("1671012902000007").birth_date(today()),
            date(2000, Month::February, 29)
        );
        // 30 is 1930 until 2030.
        assert_eq!(
            nik("3578011207300009").birth_date(today()),
            date(1930, Month::July, 12)
        );
        let later = date(2031, Month::January, 1);
        assert_eq!(
            nik("3578011207300009").birth_date(later),
            date(2030, Month::July, 12)
        );
        // Born today is fine; tomorrow in 2025 means 1925.
        assert_eq!(
            nik("3471013006250001").birth_date(today()),
            date(2025, Month::June, 30)
        );
        assert_eq!(
            nik("3471010107250001").birth_date(today()),
            date(1925, Month::July, 1)
        );
        // 29 Feb 2028 is in the future, 1928 was a leap year too.
        assert_eq!(
            nik("3471012902280001").birth_date(today()),
            date(1928, Month::February, 29)
        );
        // Read before 29 Feb 2000, a `00` year is 1900, which had no 29 February.
        let old = date(1999, Month::December, 31);
        assert_eq!(Nik::parse("1671012902000007", old), Err(NikError::Date));
    }

    #[test]
    fn kk_has_no_plus_forty_and_no_future() {
        let kk = Kk::parse("3471012003150004", today()).expect("valid");
        assert_eq!(kk.issue_date(today()), date(2015, Month::March, 20));
        assert_eq!(Kk::parse("3471016003150004", today()), Err(NikError::Day));
        // Tomorrow's date resolves to the previous century, never the future.
        let kk = Kk::parse("3471010107250001", today()).expect("valid");
        assert_eq!(kk.issue_date(today()), date(1925, Month::July, 1));
        assert!(kk.issue_date(today()) <= today());
    }

    #[test]
    fn masks_everywhere_but_expose() {
        let n = nik("3471011503850012");
        assert_eq!(format!("{n}"), "347101**********");
        assert_eq!(format!("{n:?}"), "Nik(347101**********)");
        assert_eq!(format!("{:?}", Some(n)), "Some(Nik(347101**********))");
        assert_eq!(n.expose(), "3471011503850012");
        let kk = Kk::parse("3471012003150004", today()).expect("valid");
        assert_eq!(
            format!("{kk} {kk:?}"),
            "347101********** Kk(347101**********)"
        );
        // Errors never carry the number.
        let e = Nik::parse("3471011503850000", today()).expect_err("serial 0000");
        assert!(!format!("{e} {e:?}").contains("3471"));
    }

    #[test]
    fn audit_key_is_keyed_and_separates_nik_from_kk() {
        let n = nik("3471012003150004");
        let k = Kk::parse("3471012003150004", today()).expect("valid");
        let secret = [7u8; 32];
        assert_eq!(
            n.audit_key(&secret),
            nik("3471012003150004").audit_key(&secret)
        );
        assert_ne!(n.audit_key(&secret), n.audit_key(&[8u8; 32]));
        assert_ne!(n.audit_key(&secret), k.audit_key(&secret));
        // RFC 2104 HMAC-SHA256 of "nik:3471012003150004" under key "key", computed with
        // Python's hmac module.
        assert_eq!(
            hex::encode(n.audit_key(b"key")),
            "4ccbde13f49f0d00c5f44a8c5ebabaf936687bc1cfd16e3a2de1a97a2150f7cf"
        );
    }

    #[test]
    fn sex_parses_l_and_p_only() {
        assert_eq!(Sex::parse("L"), Ok(Sex::Male));
        assert_eq!(Sex::parse("P"), Ok(Sex::Female));
        assert_eq!(Sex::parse("l"), Err(SexError));
        assert_eq!(serde_json::to_string(&Sex::Female).expect("json"), "\"P\"");
    }

    proptest! {
        #[test]
        fn any_sixteen_digits_never_panic(s in "[0-9]{16}") {
            let today = today();
            if let Ok(n) = Nik::parse(&s, today) {
                prop_assert!(n.birth_date(today) <= today);
                prop_assert_eq!(n.expose(), s.as_str());
            }
            if let Ok(k) = Kk::parse(&s, today) {
                prop_assert!(k.issue_date(today) <= today);
            }
        }

        #[test]
        fn any_string_never_panics(s in "\\PC{0,20}") {
            let _ = Nik::parse(&s, today());
            let _ = Kk::parse(&s, today());
        }

        #[test]
        fn valid_niks_round_trip_through_serde(
            area in "[1-9][0-9][0-9][1-9][1-9][0-9]",
            day in 1u32..=28,
            female in any::<bool>(),
            month in 1u32..=12,
            yy in 0u32..=99,
            serial in 1u32..=9999,
        ) {
            let dd = if female { day + 40 } else { day };
            let s = format!("{area}{dd:02}{month:02}{yy:02}{serial:04}");
            let n = Nik::parse(&s, today()).expect("constructed valid");
            let json = serde_json::to_string(&n).expect("serialises");
            prop_assert_eq!(&json, &format!("\"{s}\""));
            let back: Nik = serde_json::from_str(&json).expect("parses");
            prop_assert_eq!(back, n);
            prop_assert_eq!(n.sex(), if female { Sex::Female } else { Sex::Male });
        }
    }

    #[test]
    fn serde_rejects_invalid() {
        assert!(serde_json::from_str::<Nik>("\"3471011503850000\"").is_err());
        assert!(serde_json::from_str::<Nik>("3471011503850012").is_err());
        assert!(serde_json::from_str::<Kk>("\"3471016003150004\"").is_err());
    }
}
