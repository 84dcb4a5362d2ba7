//! Kemendagri region codes (kode wilayah), checked against the embedded region table.
//!
//! The table is `data/wilayah.csv` (cahyadsn/wilayah, MIT, see `data/WILAYAH-LICENSE.txt`),
//! compiled into the library and parsed once, on first use. A [`RegionCode`] is an index into
//! that table, so it is `Copy`, four bytes, and its name and parent are a lookup away.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

/// The region table as shipped: `code,name,level`, sorted by code, RFC 4180 quoting.
const WILAYAH_CSV: &str = include_str!("../data/wilayah.csv");

/// The administrative level of a region code, read from the number of dotted parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegionLevel {
    /// `PP`: provinsi.
    Province,
    /// `PP.KK`: kabupaten (`01`-`69`) or kota (`71`-`99`).
    Regency,
    /// `PP.KK.CC`: kecamatan.
    District,
    /// `PP.KK.CC.VVVV`: kelurahan (`1xxx`), desa (`2xxx`) or desa adat (`3xxx`).
    Village,
}

impl RegionLevel {
    /// The level's name as written in `wilayah.csv`: `province`, `regency`, `district`, `village`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Province => "province",
            Self::Regency => "regency",
            Self::District => "district",
            Self::Village => "village",
        }
    }

    /// Length of a code at this level, dots included (`34`, `34.71`, `34.71.01`, `34.71.01.1001`).
    fn code_len(self) -> usize {
        match self {
            Self::Province => 2,
            Self::Regency => 5,
            Self::District => 8,
            Self::Village => 13,
        }
    }

    fn parent(self) -> Option<Self> {
        match self {
            Self::Province => None,
            Self::Regency => Some(Self::Province),
            Self::District => Some(Self::Regency),
            Self::Village => Some(Self::District),
        }
    }

    fn from_csv(s: &str) -> Option<Self> {
        [Self::Province, Self::Regency, Self::District, Self::Village]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

impl fmt::Display for RegionLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a region code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// Not of the form `PP`, `PP.KK`, `PP.KK.CC` or `PP.KK.CC.VVVV` (ASCII digits, dots).
    #[error("region code is not of the form PP, PP.KK, PP.KK.CC or PP.KK.CC.VVVV")]
    Malformed,
    /// Well formed but not in the region table. Regions are chosen from the table, so unlike a
    /// NIK's area this is an error.
    #[error("region code is not in the Kemendagri region table")]
    Unknown,
}

/// A Kemendagri region code that exists in the embedded region table.
///
/// Written with dots as Kemendagri does: `34` (DI Yogyakarta), `34.71` (Kota Yogyakarta),
/// `34.71.01` (Tegalrejo), `34.71.01.1001` (Kricak). Ordered as the codes sort as text, so a
/// province sorts before everything inside it.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct RegionCode(u32);

impl RegionCode {
    /// Parses a dotted region code and looks it up in the region table.
    pub fn parse(s: &str) -> Result<Self, RegionError> {
        level_of(s).ok_or(RegionError::Malformed)?;
        table().find(s).ok_or(RegionError::Unknown)
    }

    /// Every region in the table, in code order (91,599 in the shipped table).
    pub fn all() -> impl ExactSizeIterator<Item = RegionCode> {
        (0..table().rows.len()).map(Self::from_index)
    }

    /// The dotted code, e.g. `34.71.01`.
    pub fn as_str(&self) -> &'static str {
        self.row().code
    }

    /// The region's official name, e.g. `Tegalrejo`.
    pub fn name(&self) -> &'static str {
        &table().rows[self.index()].name
    }

    /// Province, regency, district or village.
    pub fn level(&self) -> RegionLevel {
        self.row().level
    }

    /// The region one level up (`34.71.01` → `34.71`); `None` for a province.
    pub fn parent(&self) -> Option<RegionCode> {
        self.level().parent().and_then(|l| self.ancestor(l))
    }

    /// This region or the one containing it at `level`; `None` when `level` is below this
    /// region's own level.
    pub fn ancestor(&self, level: RegionLevel) -> Option<RegionCode> {
        if level > self.level() {
            return None;
        }
        table().find(&self.as_str()[..level.code_len()])
    }

    /// The province this region lies in (itself for a province).
    pub fn province(&self) -> RegionCode {
        self.ancestor(RegionLevel::Province).unwrap_or(*self)
    }

    /// The regency or city this region lies in; `None` for a province.
    pub fn regency(&self) -> Option<RegionCode> {
        self.ancestor(RegionLevel::Regency)
    }

    /// The district (kecamatan) this region lies in; `None` above district level.
    pub fn district(&self) -> Option<RegionCode> {
        self.ancestor(RegionLevel::District)
    }

    /// Whether this region is `prefix` or lies inside it, as a supervisor's region scope is
    /// checked: `34.71.01.1001` is within `34.71`, `34.71` is within `34.71`, `34.710` is
    /// never a code so prefixes cannot match across a part boundary.
    pub fn is_within(&self, prefix: &RegionCode) -> bool {
        let (code, prefix) = (self.as_str(), prefix.as_str());
        code == prefix
            || (code.len() > prefix.len()
                && code.starts_with(prefix)
                && code.as_bytes()[prefix.len()] == b'.')
    }

    /// The regions one level below this one, in code order (empty for a village).
    pub fn children(&self) -> impl Iterator<Item = RegionCode> + 'static {
        let me = *self;
        let child_level = match self.level() {
            RegionLevel::Province => Some(RegionLevel::Regency),
            RegionLevel::Regency => Some(RegionLevel::District),
            RegionLevel::District => Some(RegionLevel::Village),
            RegionLevel::Village => None,
        };
        // Codes sort as text, so everything inside a region follows it contiguously.
        (self.index() + 1..table().rows.len())
            .map(Self::from_index)
            .take_while(move |c| c.is_within(&me))
            .filter(move |c| Some(c.level()) == child_level)
    }

    /// Looks up the district written without dots as in a NIK (`347101` → `34.71.01`).
    pub(crate) fn from_compact_district(digits: &[u8; 6]) -> Option<RegionCode> {
        let mut dotted = [b'.'; 8];
        dotted[0..2].copy_from_slice(&digits[0..2]);
        dotted[3..5].copy_from_slice(&digits[2..4]);
        dotted[6..8].copy_from_slice(&digits[4..6]);
        std::str::from_utf8(&dotted)
            .ok()
            .and_then(|s| table().find(s))
    }

    fn from_index(index: usize) -> Self {
        // The table has fewer than 2^32 rows (checked when it is loaded).
        Self(index as u32)
    }

    fn index(&self) -> usize {
        self.0 as usize
    }

    fn row(&self) -> &'static Region {
        &table().rows[self.index()]
    }
}

impl AsRef<str> for RegionCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegionCode({})", self.as_str())
    }
}

impl TryFrom<String> for RegionCode {
    type Error = RegionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl TryFrom<&str> for RegionCode {
    type Error = RegionError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<RegionCode> for String {
    fn from(code: RegionCode) -> Self {
        code.as_str().to_owned()
    }
}

impl std::str::FromStr for RegionCode {
    type Err = RegionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The level a well-formed code has, from its shape alone: parts of 2, 2, 2 and 4 ASCII digits
/// separated by dots.
fn level_of(s: &str) -> Option<RegionLevel> {
    const WIDTHS: [usize; 4] = [2, 2, 2, 4];
    const LEVELS: [RegionLevel; 4] = [
        RegionLevel::Province,
        RegionLevel::Regency,
        RegionLevel::District,
        RegionLevel::Village,
    ];
    let mut parts = 0;
    for (i, part) in s.split('.').enumerate() {
        let width = *WIDTHS.get(i)?;
        if part.len() != width || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts = i + 1;
    }
    parts.checked_sub(1).map(|i| LEVELS[i])
}

/// One row of the region table.
struct Region {
    code: &'static str,
    name: Cow<'static, str>,
    level: RegionLevel,
}

/// The parsed region table, sorted by code.
struct RegionTable {
    rows: Vec<Region>,
}

impl RegionTable {
    fn find(&self, code: &str) -> Option<RegionCode> {
        self.rows
            .binary_search_by(|r| r.code.cmp(code))
            .ok()
            .map(RegionCode::from_index)
    }
}

fn table() -> &'static RegionTable {
    static TABLE: OnceLock<RegionTable> = OnceLock::new();
    TABLE.get_or_init(|| match load(WILAYAH_CSV) {
        Ok(table) => table,
        // The file is compiled in and `tests::table_is_complete` parses all of it, so this is
        // a build defect, not an input error.
        Err(e) => panic!("embedded wilayah.csv is malformed: {e}"),
    })
}

/// Why the embedded table failed to load (only ever seen by this crate's tests).
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {what}")]
struct LoadError {
    line: usize,
    what: &'static str,
}

fn load(csv: &'static str) -> Result<RegionTable, LoadError> {
    let mut lines = csv.lines().enumerate();
    match lines.next() {
        Some((_, "code,name,level")) => {}
        _ => {
            return Err(LoadError {
                line: 1,
                what: "header is not code,name,level",
            });
        }
    }
    let mut rows: Vec<Region> = Vec::with_capacity(92_000);
    for (i, line) in lines {
        let err = |what| LoadError { line: i + 1, what };
        let [code, name, level] = split_record(line).ok_or(err("not three CSV fields"))?;
        let Cow::Borrowed(code) = code else {
            return Err(err("quoted code"));
        };
        let level = RegionLevel::from_csv(&level).ok_or(err("unknown level"))?;
        if level_of(code) != Some(level) {
            return Err(err("code does not match its level"));
        }
        if rows.last().is_some_and(|prev| prev.code >= code) {
            return Err(err("codes not strictly sorted"));
        }
        rows.push(Region { code, name, level });
    }
    if u32::try_from(rows.len()).is_err() {
        return Err(LoadError {
            line: rows.len(),
            what: "too many rows",
        });
    }
    Ok(RegionTable { rows })
}

/// Splits one RFC 4180 record of exactly three fields. Fields are borrowed from the embedded
/// text unless they contain an escaped quote (`""`).
fn split_record(line: &'static str) -> Option<[Cow<'static, str>; 3]> {
    let mut fields = Vec::with_capacity(3);
    let mut rest = line;
    loop {
        let (field, after) = if let Some(quoted) = rest.strip_prefix('"') {
            take_quoted(quoted)?
        } else {
            match rest.find(',') {
                Some(at) => (Cow::Borrowed(&rest[..at]), &rest[at..]),
                None => (Cow::Borrowed(rest), ""),
            }
        };
        fields.push(field);
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None if after.is_empty() => break,
            None => return None,
        }
    }
    fields.try_into().ok()
}

/// Reads a quoted field whose opening quote is already consumed; returns it and what follows
/// the closing quote.
fn take_quoted(s: &'static str) -> Option<(Cow<'static, str>, &'static str)> {
    let mut owned: Option<String> = None;
    let mut start = 0;
    let mut search = 0;
    loop {
        let at = search + s[search..].find('"')?;
        if s[at + 1..].starts_with('"') {
            owned
                .get_or_insert_with(String::new)
                .push_str(&s[start..=at]);
            start = at + 2;
            search = at + 2;
            continue;
        }
        let field = match owned {
            Some(mut o) => {
                o.push_str(&s[start..at]);
                Cow::Owned(o)
            }
            None => Cow::Borrowed(&s[..at]),
        };
        return Some((field, &s[at + 1..]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn table_is_complete() {
        let table = load(WILAYAH_CSV).expect("embedded table loads");
        assert_eq!(table.rows.len(), 91_599);
        let count = |level| table.rows.iter().filter(|r| r.level == level).count();
        assert_eq!(count(RegionLevel::Province), 38);
        assert_eq!(count(RegionLevel::Regency), 514);
        assert_eq!(count(RegionLevel::District), 7_285);
        assert_eq!(count(RegionLevel::Village), 83_762);
        assert_eq!(RegionCode::all().len(), 91_599);
    }

    #[test]
    fn every_code_parses_and_its_parent_exists() {
        for region in RegionCode::all() {
            assert_eq!(code(region.as_str()), region);
            assert!(!region.name().is_empty(), "{region:?} has no name");
            match region.parent() {
                None => assert_eq!(region.level(), RegionLevel::Province),
                Some(parent) => {
                    assert!(parent.level() < region.level());
                    assert!(region.is_within(&parent));
                    assert!(!parent.is_within(&region));
                }
            }
        }
    }

    #[test]
    fn every_district_has_a_village() {
        for district in RegionCode::all().filter(|r| r.level() == RegionLevel::District) {
            assert!(district.children().next().is_some(), "{district:?}");
        }
    }

    #[test]
    fn names_and_levels() {
        assert_eq!(code("34").name(), "Daerah Istimewa Yogyakarta");
        assert_eq!(code("34.71").name(), "Kota Yogyakarta");
        assert_eq!(code("34.71.01").name(), "Tegalrejo");
        assert_eq!(code("34.71.01").level(), RegionLevel::District);
        // The two quoted names in the file, with commas inside.
        assert_eq!(code("12.07.28.1007").name(), "Lubuk Pakam I,II");
        assert_eq!(code("14.02.09.2010").name(), "Lambang Sari I, II, III");
        // A name that was trimmed during conversion.
        assert_eq!(code("31.72").name(), "Kota Administrasi Jakarta Utara");
    }

    #[test]
    fn hierarchy() {
        let village = code("34.71.01.1001");
        assert_eq!(village.district(), Some(code("34.71.01")));
        assert_eq!(village.regency(), Some(code("34.71")));
        assert_eq!(village.province(), code("34"));
        assert_eq!(code("34").regency(), None);
        assert_eq!(code("34.71").district(), None);
        assert_eq!(code("34.71").province(), code("34"));
        assert!(village.is_within(&code("34")));
        assert!(village.is_within(&code("34.71")));
        assert!(village.is_within(&village));
        assert!(!village.is_within(&code("34.04")));
        assert!(!code("34.71").is_within(&code("34.71.01")));
        // Textual prefixes across a part boundary never match: 11.01 is not within 11.0x
        // because no such code exists, and 34.71 is not within 3 (not a code either).
        assert!(!code("11.10").is_within(&code("11.01")));
        let regencies: Vec<_> = code("34").children().map(|c| c.as_str()).collect();
        assert_eq!(regencies, ["34.01", "34.02", "34.03", "34.04", "34.71"]);
        assert_eq!(code("34.71.01.1001").children().count(), 0);
    }

    #[test]
    fn rejects_malformed_and_unknown() {
        for bad in [
            "",
            "3",
            "347",
            "34.7",
            "34.71.1",
            "34.71.01.101",
            "34.71.01.10011",
            "34.71.01.1001.01",
            "34..71",
            "34.71.",
            ".34",
            "3471",
            "34-71",
            "34.7a",
            "３４",
        ] {
            assert_eq!(
                RegionCode::parse(bad),
                Err(RegionError::Malformed),
                "{bad:?}"
            );
        }
        for unknown in ["00", "34.00", "91.01.01", "34.71.15", "34.71.01.9999"] {
            assert_eq!(
                RegionCode::parse(unknown),
                Err(RegionError::Unknown),
                "{unknown:?}"
            );
        }
    }

    #[test]
    fn serde_round_trip_and_rejection() {
        let c = code("34.71.01.1001");
        let json = serde_json::to_string(&c).expect("serialises");
        assert_eq!(json, "\"34.71.01.1001\"");
        assert_eq!(
            serde_json::from_str::<RegionCode>(&json).expect("parses"),
            c
        );
        assert!(serde_json::from_str::<RegionCode>("\"34.71.15\"").is_err());
        assert!(serde_json::from_str::<RegionCode>("3471").is_err());
    }

    #[test]
    fn compact_district_lookup() {
        assert_eq!(
            RegionCode::from_compact_district(b"347101"),
            Some(code("34.71.01"))
        );
        assert_eq!(RegionCode::from_compact_district(b"910101"), None);
    }

    #[test]
    fn csv_quoting() {
        let r = split_record("1,\"a \"\"b\"\", c\",village").expect("splits");
        assert_eq!(r[1], "a \"b\", c");
        assert!(split_record("1,\"open,village").is_none());
        assert!(split_record("1,2").is_none());
        assert!(split_record("1,2,3,4").is_none());
        assert!(split_record("1,\"x\"y,3").is_none());
    }
}
