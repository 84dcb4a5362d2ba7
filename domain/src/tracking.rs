//! Tracking codes (kode lacak): made offline on the officer's phone, read aloud to citizens,
//! typed into `/lacak`.

use std::fmt;

use rand::Rng;

use crate::region::{RegionCode, RegionLevel};

/// Crockford's base32 alphabet: digits and upper-case letters without I, L, O and U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const PREFIX: &str = "JPT";
/// Random symbols per code: 35 bits within one regency.
const RANDOM_LEN: usize = 7;
/// Symbols covered by the check: 4 region digits and the random part.
const PAYLOAD_LEN: usize = 4 + RANDOM_LEN;
/// Payload plus check symbol.
const BODY_LEN: usize = PAYLOAD_LEN + 1;

/// Why a string is not a tracking code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrackingCodeError {
    /// A character outside Crockford's base32 (after case folding and O→0, I/L→1), spaces and
    /// hyphens.
    #[error("tracking code contains a character that is not Crockford base32")]
    Character,
    /// Not 12 symbols, or 15 with the `JPT` prefix.
    #[error("tracking code has the wrong length")]
    Length,
    /// 15 symbols that do not start with `JPT`.
    #[error("tracking code does not start with JPT")]
    Prefix,
    /// The regency part is not four digits with non-zero province and regency parts.
    #[error("tracking code has no valid regency part")]
    Region,
    /// The check symbol does not match: a character was misread, mistyped or swapped.
    #[error("tracking code check symbol does not match")]
    Check,
}

/// [`TrackingCode::generate`] was given a province: a code needs a regency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a tracking code needs a region at regency level or below")]
pub struct RegionTooCoarse;

/// An application's tracking code, made on the device without a network:
/// `JPT-3471-7K4Q-9XM2`.
///
/// - `JPT`: fixed prefix (Jemput), so the code is recognisable on paper and in messages.
/// - `3471`: the regency (`PP.KK` without the dot) of the application's region, so codes from
///   different regencies can never collide and a supervisor sees where one comes from.
/// - `7K4Q9XM`: seven random Crockford base32 symbols drawn from the caller's RNG (35 bits).
/// - `2`: a check symbol over the eleven symbols before it (region digits included).
///
/// Grouped in fours for reading aloud. The **check symbol** is the Damm algorithm over GF(32):
/// with `s = 0`, each symbol `d` (its Crockford value) updates `s = α·s ⊕ d` in GF(2⁵)
/// (reduction polynomial x⁵ + x² + 1, α = x), and the check symbol is `α·s`, so a valid code
/// ends with `s = 0`. The operation `x∘y = α·x ⊕ y` is a totally anti-symmetric quasigroup, and
/// α has order 31 > 12 symbols, so every single-symbol substitution, every adjacent
/// transposition and every jump transposition (`abc` → `cba`) changes the result. The check
/// symbol is an ordinary base32 symbol (unlike Crockford's mod-37 scheme, which needs `*~$=U`).
///
/// [`parse`](TrackingCode::parse) folds case, reads O as 0 and I/L as 1, drops spaces and
/// hyphens, and accepts the code with or without its `JPT` prefix. Uniqueness within a regency
/// is not guaranteed: about one pair of equal codes is expected per 260,000 codes made in one
/// regency, and the server resolves collisions.
///
/// ```
/// use jemput_domain::{RegionCode, TrackingCode};
/// use rand::SeedableRng;
///
/// let village = RegionCode::parse("34.71.01.1001").unwrap();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
/// let code = TrackingCode::generate(&village, &mut rng).unwrap();
/// assert!(code.as_str().starts_with("JPT-3471-"));
/// let typed = code.as_str().to_lowercase().replace('-', " ");
/// assert_eq!(TrackingCode::parse(&typed), Ok(code));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrackingCode(String);

impl TrackingCode {
    /// Makes a new code for an application in `region` (a regency, district or village),
    /// drawing the random part from `rng`.
    pub fn generate(region: &RegionCode, rng: &mut impl Rng) -> Result<Self, RegionTooCoarse> {
        let regency = region
            .ancestor(RegionLevel::Regency)
            .ok_or(RegionTooCoarse)?;
        let mut payload = [0u8; PAYLOAD_LEN];
        for (slot, digit) in payload
            .iter_mut()
            .zip(regency.as_str().bytes().filter(|b| *b != b'.'))
        {
            *slot = digit - b'0';
        }
        Ok(Self::from_payload(payload, rng))
    }

    /// A new code in the same regency with a fresh random part, for when this one collides
    /// with an existing code.
    pub fn regenerate(&self, rng: &mut impl Rng) -> Self {
        let mut payload = [0u8; PAYLOAD_LEN];
        for (slot, digit) in payload.iter_mut().zip(self.regency_code().bytes()) {
            *slot = digit - b'0';
        }
        Self::from_payload(payload, rng)
    }

    /// Parses a code as a person may type it: any case, with or without `JPT`, with spaces or
    /// hyphens anywhere, O for 0 and I or L for 1. The check symbol is verified.
    pub fn parse(s: &str) -> Result<Self, TrackingCodeError> {
        let mut symbols = Vec::with_capacity(BODY_LEN + PREFIX.len());
        for c in s.chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            symbols.push(decode_symbol(c).ok_or(TrackingCodeError::Character)?);
        }
        let body = match symbols.len() {
            BODY_LEN => &symbols[..],
            n if n == BODY_LEN + PREFIX.len() => {
                let (prefix, body) = symbols.split_at(PREFIX.len());
                if !prefix
                    .iter()
                    .map(|&v| ALPHABET[usize::from(v)])
                    .eq(PREFIX.bytes())
                {
                    return Err(TrackingCodeError::Prefix);
                }
                body
            }
            _ => return Err(TrackingCodeError::Length),
        };
        let region = &body[..4];
        if region.iter().any(|&v| v > 9) || region[..2] == [0, 0] || region[2..] == [0, 0] {
            return Err(TrackingCodeError::Region);
        }
        if damm(body) != 0 {
            return Err(TrackingCodeError::Check);
        }
        Ok(Self::from_body(body))
    }

    /// The canonical form, `JPT-3471-7K4Q-9XM2`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The regency part as written in the code (`3471`).
    pub fn regency_code(&self) -> &str {
        &self.0[PREFIX.len() + 1..PREFIX.len() + 5]
    }

    /// The regency the code was made in, if the region table (still) knows it.
    pub fn regency(&self) -> Option<RegionCode> {
        let r = self.regency_code();
        RegionCode::parse(&format!("{}.{}", &r[..2], &r[2..])).ok()
    }

    fn from_payload(mut payload: [u8; PAYLOAD_LEN], rng: &mut impl Rng) -> Self {
        for slot in &mut payload[4..] {
            *slot = rng.random_range(0..32);
        }
        let mut body = [0u8; BODY_LEN];
        body[..PAYLOAD_LEN].copy_from_slice(&payload);
        body[PAYLOAD_LEN] = times_alpha(damm(&payload));
        Self::from_body(&body)
    }

    /// Writes symbol values (already checked) in the canonical grouped form.
    fn from_body(body: &[u8]) -> Self {
        let mut s = String::with_capacity(PREFIX.len() + BODY_LEN + 3);
        s.push_str(PREFIX);
        for (i, &v) in body.iter().enumerate() {
            if i % 4 == 0 {
                s.push('-');
            }
            s.push(char::from(ALPHABET[usize::from(v)]));
        }
        Self(s)
    }
}

/// The Crockford value of a typed character, folding case and confusables.
fn decode_symbol(c: char) -> Option<u8> {
    let c = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        c => c,
    };
    let b = u8::try_from(c).ok()?;
    ALPHABET
        .iter()
        .position(|&a| a == b)
        .and_then(|i| u8::try_from(i).ok())
}

/// Multiplication by α = x in GF(2⁵) modulo x⁵ + x² + 1.
fn times_alpha(v: u8) -> u8 {
    let shifted = v << 1;
    if shifted & 0x20 != 0 {
        (shifted ^ 0x25) & 0x1f
    } else {
        shifted
    }
}

/// The Damm interim over symbol values: `s = α·s ⊕ d` for each symbol, from `s = 0`.
fn damm(symbols: &[u8]) -> u8 {
    symbols.iter().fold(0, |s, &d| times_alpha(s) ^ d)
}

impl AsRef<str> for TrackingCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for TrackingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrackingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrackingCode({})", self.0)
    }
}

impl TryFrom<String> for TrackingCode {
    type Error = TrackingCodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TrackingCode> for String {
    fn from(code: TrackingCode) -> Self {
        code.0
    }
}

impl std::str::FromStr for TrackingCode {
    type Err = TrackingCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn region(s: &str) -> RegionCode {
        RegionCode::parse(s).expect("real region")
    }

    fn generate(seed: u64, region_code: &str) -> TrackingCode {
        let mut rng = StdRng::seed_from_u64(seed);
        TrackingCode::generate(&region(region_code), &mut rng).expect("regency or below")
    }

    #[test]
    fn gf32_alpha_is_primitive() {
        let mut v = 1u8;
        for i in 1..=31 {
            v = times_alpha(v);
            assert_eq!(v == 1, i == 31, "α^{i} = {v}");
        }
    }

    #[test]
    fn format() {
        let code = generate(1, "34.71.01.1001");
        let s = code.as_str();
        assert_eq!(s.len(), 18);
        assert!(s.starts_with("JPT-3471-"), "{s}");
        assert_eq!(s.as_bytes()[13], b'-');
        assert_eq!(code.regency_code(), "3471");
        assert_eq!(code.regency(), Some(region("34.71")));
        assert_eq!(
            generate(1, "34.71"),
            code,
            "same seed, same regency, same code"
        );
        assert_eq!(
            TrackingCode::generate(&region("34"), &mut StdRng::seed_from_u64(1)),
            Err(RegionTooCoarse)
        );
        let other = code.regenerate(&mut StdRng::seed_from_u64(2));
        assert_eq!(other.regency_code(), "3471");
        assert_ne!(other, code);
    }

    #[test]
    fn parse_normalises_what_people_type() {
        let code = generate(7, "11.01");
        let canonical = code.as_str().to_owned();
        let compact: String = canonical.chars().filter(|c| *c != '-').collect();
        let lower = canonical.to_lowercase();
        let spaced = canonical.replace('-', " ");
        let bare = &compact[3..];
        for typed in [
            &canonical,
            &compact,
            &lower,
            &spaced,
            bare,
            &format!("  {lower}\t"),
        ] {
            assert_eq!(TrackingCode::parse(typed).as_ref(), Ok(&code), "{typed:?}");
        }
        // Confusables read as the digit they look like.
        let digits_as_letters = canonical.replace('0', "O").replace('1', "l");
        assert_eq!(TrackingCode::parse(&digits_as_letters), Ok(code));
    }

    #[test]
    fn parse_reports_why() {
        assert_eq!(TrackingCode::parse(""), Err(TrackingCodeError::Length));
        assert_eq!(
            TrackingCode::parse("JPT-3471-7K4Q"),
            Err(TrackingCodeError::Length)
        );
        assert_eq!(
            TrackingCode::parse("JPT-3471-7K4Q-9XU2"),
            Err(TrackingCodeError::Character)
        );
        assert_eq!(
            TrackingCode::parse("JPT-3471-7K4Q-9X*2"),
            Err(TrackingCodeError::Character)
        );
        assert_eq!(
            TrackingCode::parse("JPX-3471-7K4Q-9XM2"),
            Err(TrackingCodeError::Prefix)
        );
        assert_eq!(
            TrackingCode::parse("JPT-34A1-7K4Q-9XM2"),
            Err(TrackingCodeError::Region)
        );
        assert_eq!(
            TrackingCode::parse("JPT-0071-7K4Q-9XM2"),
            Err(TrackingCodeError::Region)
        );
        let code = generate(3, "34.71");
        let s = code.as_str();
        let last = s.chars().last().expect("non-empty");
        let wrong = if last == '0' { '2' } else { '0' };
        let broken = format!("{}{wrong}", &s[..s.len() - 1]);
        assert_eq!(TrackingCode::parse(&broken), Err(TrackingCodeError::Check));
    }

    #[test]
    fn serde_round_trip() {
        let code = generate(9, "96.71.01");
        let json = serde_json::to_string(&code).expect("serialises");
        assert_eq!(json, format!("\"{code}\""));
        assert_eq!(
            serde_json::from_str::<TrackingCode>(&json).expect("parses"),
            code
        );
        assert!(serde_json::from_str::<TrackingCode>("\"JPT-3471-0000-0001\"").is_err());
    }

    /// Every way of changing one symbol of the compact code, of swapping two neighbours, and
    /// of swapping the two symbols around a third (a jump transposition).
    fn single_errors(compact: &str) -> Vec<String> {
        let chars: Vec<char> = compact.chars().collect();
        let mut out = Vec::new();
        for i in 0..chars.len() {
            for &a in ALPHABET {
                let a = char::from(a);
                if a != chars[i] {
                    let mut c = chars.clone();
                    c[i] = a;
                    out.push(c.into_iter().collect());
                }
            }
            for gap in [1, 2] {
                if i + gap < chars.len() && chars[i] != chars[i + gap] {
                    let mut c = chars.clone();
                    c.swap(i, i + gap);
                    out.push(c.into_iter().collect());
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn generated_codes_round_trip_and_catch_single_errors(
            seed in any::<u64>(),
            index in 0usize..91_599,
        ) {
            let Some(region) = RegionCode::all().nth(index) else { unreachable!() };
            let mut rng = StdRng::seed_from_u64(seed);
            let Ok(code) = TrackingCode::generate(&region, &mut rng) else {
                prop_assert_eq!(region.level(), RegionLevel::Province);
                return Ok(());
            };
            prop_assert_eq!(TrackingCode::parse(code.as_str()), Ok(code.clone()));
            let json = serde_json::to_string(&code).expect("serialises");
            prop_assert_eq!(serde_json::from_str::<TrackingCode>(&json).ok(), Some(code.clone()));
            let compact: String = code.as_str().chars().filter(|c| *c != '-').collect();
            for typo in single_errors(&compact) {
                prop_assert!(TrackingCode::parse(&typo).is_err(), "{} accepted for {}", typo, code);
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            let _ = TrackingCode::parse(&s);
        }
    }
}
