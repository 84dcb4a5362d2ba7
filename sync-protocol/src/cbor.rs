//! The CBOR subset automerge-repo messages use: a reader that is lenient about how cbor-x
//! writes it, and a writer that is exact.
//!
//! Hand-written rather than a general CBOR crate so that every limit is visible here:
//!
//! - the reader borrows from the input and never allocates, so a header that claims 2^60
//!   bytes or entries is caught by the bounds check when the bytes run out;
//! - nesting deeper than [`MAX_DEPTH`] is refused (unknown values are skipped recursively);
//! - it accepts non-minimal length headers (cbor-x writes every map as `b9 00 nn`), whole
//!   numbers sent as floats, `undefined` and `null`;
//! - it refuses indefinite lengths, which cbor-x does not write with automerge-repo's
//!   options, and the reserved additional-information values 28–30.
//!
//! The writer emits definite lengths in their shortest form (RFC 8949 §4.2.1 preferred
//! serialisation), so the same message always encodes to the same bytes.

/// Nesting allowed below the top-level map. automerge-repo needs 3 (`newHeads` → storage →
/// `heads` array); unknown keys may hold a little more.
pub(crate) const MAX_DEPTH: usize = 16;

const MAJOR_UINT: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;

const SIMPLE_FALSE: u64 = 20;
const SIMPLE_TRUE: u64 = 21;
const NULL: u8 = 0xf6;
const UNDEFINED: u8 = 0xf7;
/// RFC 8746: a byte string holding a `Uint8Array`. cbor-x writes it unless
/// `tagUint8Array: false`, which automerge-repo sets; accepted anyway.
const TAG_UINT8_ARRAY: u64 = 64;

/// What is wrong with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CborError {
    #[error("unexpected end of input")]
    Truncated,
    #[error("reserved additional information {0}")]
    Reserved(u8),
    #[error("indefinite-length items are not supported")]
    Indefinite,
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("text string is not valid UTF-8")]
    InvalidUtf8,
    /// Well-formed, but not the type the caller asked for.
    #[error("expected {0}")]
    WrongType(&'static str),
}

/// One decoded item header: major type, additional information and its argument.
#[derive(Debug, Clone, Copy)]
struct Head {
    major: u8,
    info: u8,
    /// The length, the integer, the tag number, the simple value or the float's bits.
    arg: u64,
}

/// Reads items from a borrowed buffer, front to back.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// True once every byte has been read.
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Takes `n` bytes, checking the length before it can be used for anything.
    fn take(&mut self, n: u64) -> Result<&'a [u8], CborError> {
        let n = usize::try_from(n).map_err(|_| CborError::Truncated)?;
        if n > self.remaining() {
            return Err(CborError::Truncated);
        }
        let start = self.pos;
        self.pos += n;
        self.buf.get(start..self.pos).ok_or(CborError::Truncated)
    }

    fn head(&mut self) -> Result<Head, CborError> {
        let initial = *self.take(1)?.first().ok_or(CborError::Truncated)?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.be::<1>()?[0]),
            25 => u64::from(u16::from_be_bytes(self.be::<2>()?)),
            26 => u64::from(u32::from_be_bytes(self.be::<4>()?)),
            27 => u64::from_be_bytes(self.be::<8>()?),
            31 => return Err(CborError::Indefinite),
            _ => return Err(CborError::Reserved(info)),
        };
        Ok(Head { major, info, arg })
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let bytes = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn expect_major(&mut self, major: u8, what: &'static str) -> Result<u64, CborError> {
        let head = self.head()?;
        if head.major != major {
            return Err(CborError::WrongType(what));
        }
        Ok(head.arg)
    }

    /// Consumes a `null` or `undefined` and returns true; otherwise reads nothing.
    pub(crate) fn absent(&mut self) -> bool {
        match self.buf.get(self.pos) {
            Some(&NULL | &UNDEFINED) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    /// A map header; returns the number of entries it claims (not yet checked against the
    /// input: each entry is at least two bytes, so reading them runs out first).
    pub(crate) fn map_len(&mut self) -> Result<u64, CborError> {
        self.expect_major(MAJOR_MAP, "a map")
    }

    /// An array header; see [`Reader::map_len`] about the count.
    pub(crate) fn array_len(&mut self) -> Result<u64, CborError> {
        self.expect_major(MAJOR_ARRAY, "an array")
    }

    pub(crate) fn text(&mut self) -> Result<&'a str, CborError> {
        let len = self.expect_major(MAJOR_TEXT, "a text string")?;
        std::str::from_utf8(self.take(len)?).map_err(|_| CborError::InvalidUtf8)
    }

    /// A byte string, bare or under tag 64 (`Uint8Array`).
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let head = self.head()?;
        let len = match head {
            Head {
                major: MAJOR_BYTES,
                arg,
                ..
            } => arg,
            Head {
                major: MAJOR_TAG,
                arg: TAG_UINT8_ARRAY,
                ..
            } => self.expect_major(MAJOR_BYTES, "a byte string")?,
            _ => return Err(CborError::WrongType("a byte string")),
        };
        self.take(len)
    }

    pub(crate) fn bool(&mut self) -> Result<bool, CborError> {
        match self.expect_major(MAJOR_SIMPLE, "a boolean")? {
            SIMPLE_FALSE => Ok(false),
            SIMPLE_TRUE => Ok(true),
            _ => Err(CborError::WrongType("a boolean")),
        }
    }

    /// An unsigned integer, or a float holding a whole non-negative number below 2^64
    /// (cbor-x writes JS numbers ≥ 2^32 as float64).
    pub(crate) fn uint(&mut self) -> Result<u64, CborError> {
        const WHAT: &str = "a non-negative whole number";
        let head = self.head()?;
        let value = match (head.major, head.info) {
            (MAJOR_UINT, _) => return Ok(head.arg),
            (MAJOR_SIMPLE, 25) => f16_to_f64(head.arg as u16),
            (MAJOR_SIMPLE, 26) => f64::from(f32::from_bits(head.arg as u32)),
            (MAJOR_SIMPLE, 27) => f64::from_bits(head.arg),
            _ => return Err(CborError::WrongType(WHAT)),
        };
        // 2^64 is exactly representable and every whole float below it fits in a u64;
        // NaN is in no range.
        let in_range = (0.0..18_446_744_073_709_551_616.0).contains(&value);
        if in_range && value.fract() == 0.0 {
            Ok(value as u64)
        } else {
            Err(CborError::WrongType(WHAT))
        }
    }

    /// Skips one item of any type and returns its bytes.
    pub(crate) fn item(&mut self, depth: usize) -> Result<&'a [u8], CborError> {
        let start = self.pos;
        self.skip(depth)?;
        self.buf.get(start..self.pos).ok_or(CborError::Truncated)
    }

    /// Skips one item of any type, `depth` levels below the top-level map.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<(), CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let head = self.head()?;
        match head.major {
            MAJOR_BYTES | MAJOR_TEXT => {
                self.take(head.arg)?;
            }
            // Each element consumes at least one byte, so a huge count ends in `Truncated`
            // after at most `remaining()` iterations.
            MAJOR_ARRAY => {
                for _ in 0..head.arg {
                    self.skip(depth + 1)?;
                }
            }
            MAJOR_MAP => {
                for _ in 0..head.arg {
                    self.skip(depth + 1)?;
                    self.skip(depth + 1)?;
                }
            }
            MAJOR_TAG => self.skip(depth + 1)?,
            // Integers, simple values and floats are complete once their head is read.
            MAJOR_UINT | MAJOR_NEGATIVE | MAJOR_SIMPLE => {}
            _ => return Err(CborError::Reserved(head.info)),
        }
        Ok(())
    }
}

/// IEEE 754 half precision to f64 (CBOR major 7, additional information 25).
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x03ff);
    match exponent {
        0 => sign * mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + mantissa / 1024.0) * 2f64.powi(exponent - 15),
    }
}

/// Appends items in preferred (shortest) serialisation.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    out: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    fn head(&mut self, major: u8, arg: u64) {
        let major = major << 5;
        if let Ok(small) = u8::try_from(arg) {
            if small < 24 {
                self.out.push(major | small);
            } else {
                self.out.extend_from_slice(&[major | 24, small]);
            }
        } else if let Ok(short) = u16::try_from(arg) {
            self.out.push(major | 25);
            self.out.extend_from_slice(&short.to_be_bytes());
        } else if let Ok(word) = u32::try_from(arg) {
            self.out.push(major | 26);
            self.out.extend_from_slice(&word.to_be_bytes());
        } else {
            self.out.push(major | 27);
            self.out.extend_from_slice(&arg.to_be_bytes());
        }
    }

    pub(crate) fn map(&mut self, entries: usize) {
        self.head(MAJOR_MAP, entries as u64);
    }

    pub(crate) fn array(&mut self, len: usize) {
        self.head(MAJOR_ARRAY, len as u64);
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.head(MAJOR_TEXT, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.head(MAJOR_BYTES, b.len() as u64);
        self.out.extend_from_slice(b);
    }

    pub(crate) fn uint(&mut self, n: u64) {
        self.head(MAJOR_UINT, n);
    }

    pub(crate) fn bool(&mut self, b: bool) {
        self.head(MAJOR_SIMPLE, if b { SIMPLE_TRUE } else { SIMPLE_FALSE });
    }

    /// A text key and a text value, the commonest entry.
    pub(crate) fn entry_text(&mut self, key: &str, value: &str) {
        self.text(key);
        self.text(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        f(&mut w);
        w.into_bytes()
    }

    #[test]
    fn writer_uses_shortest_heads() {
        let cases: [(u64, &[u8]); 9] = [
            (0, &[0x00]),
            (23, &[0x17]),
            (24, &[0x18, 24]),
            (255, &[0x18, 0xff]),
            (256, &[0x19, 0x01, 0x00]),
            (65_535, &[0x19, 0xff, 0xff]),
            (65_536, &[0x1a, 0, 1, 0, 0]),
            (u64::from(u32::MAX) + 1, &[0x1b, 0, 0, 0, 1, 0, 0, 0, 0]),
            (
                u64::MAX,
                &[0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
        ];
        for (n, expected) in cases {
            assert_eq!(written(|w| w.uint(n)), expected, "{n}");
            assert_eq!(Reader::new(expected).uint(), Ok(n));
        }
        assert_eq!(written(|w| w.map(4)), [0xa4]);
        assert_eq!(written(|w| w.bool(true)), [0xf5]);
    }

    #[test]
    fn reader_accepts_non_minimal_heads() {
        assert_eq!(Reader::new(&[0xb9, 0x00, 0x04]).map_len(), Ok(4));
        assert_eq!(Reader::new(&[0x9a, 0, 0, 0, 1]).array_len(), Ok(1));
        assert_eq!(
            Reader::new(&[0x7b, 0, 0, 0, 0, 0, 0, 0, 1, b'a']).text(),
            Ok("a")
        );
        assert_eq!(Reader::new(&[0x18, 0x05]).uint(), Ok(5));
    }

    #[test]
    fn uint_accepts_whole_floats_only() {
        let f64_of = |v: f64| {
            let mut b = vec![0xfb];
            b.extend_from_slice(&v.to_bits().to_be_bytes());
            b
        };
        let ok = |b: &[u8]| Reader::new(b).uint();
        assert_eq!(ok(&f64_of(1_700_000_000_000.0)), Ok(1_700_000_000_000));
        assert_eq!(ok(&f64_of(4_294_967_296.0)), Ok(4_294_967_296));
        assert_eq!(ok(&f64_of(-0.0)), Ok(0));
        assert_eq!(ok(&[0xfa, 0x47, 0x80, 0x00, 0x00]), Ok(65_536)); // f32
        assert_eq!(ok(&[0xf9, 0x3c, 0x00]), Ok(1)); // f16
        assert_eq!(ok(&[0xf9, 0x7b, 0xff]), Ok(65_504)); // largest f16
        for bad in [
            f64::NAN,
            f64::INFINITY,
            -1.0,
            1.5,
            18_446_744_073_709_551_616.0,
        ] {
            assert!(ok(&f64_of(bad)).is_err(), "{bad}");
        }
        assert!(ok(&[0xf9, 0x7c, 0x00]).is_err()); // f16 infinity
        assert!(ok(&[0x20]).is_err()); // -1
    }

    #[test]
    fn huge_claimed_lengths_fail_without_allocating() {
        let claims_2_pow_60 = [0x5b, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x01];
        assert_eq!(
            Reader::new(&claims_2_pow_60).bytes(),
            Err(CborError::Truncated)
        );
        let array = [0x9b, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x01];
        assert_eq!(Reader::new(&array).skip(0), Err(CborError::Truncated));
        let max = [0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(Reader::new(&max).text(), Err(CborError::Truncated));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = vec![0x81; 10_000];
        assert_eq!(Reader::new(&deep).skip(0), Err(CborError::TooDeep));
    }

    #[test]
    fn bytes_accept_tag_64() {
        assert_eq!(
            Reader::new(&[0xd8, 0x40, 0x42, 1, 2]).bytes(),
            Ok(&[1u8, 2][..])
        );
        assert!(Reader::new(&[0xd8, 0x41, 0x42, 1, 2]).bytes().is_err());
    }

    #[test]
    fn indefinite_and_reserved_are_refused() {
        assert_eq!(Reader::new(&[0xbf]).skip(0), Err(CborError::Indefinite));
        assert_eq!(Reader::new(&[0x1c]).skip(0), Err(CborError::Reserved(28)));
        assert_eq!(Reader::new(&[0xff]).skip(0), Err(CborError::Indefinite));
    }
}
