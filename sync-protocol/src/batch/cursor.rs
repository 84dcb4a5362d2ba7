//! The device's cursor into the server's change feed.
//!
//! To the device a [`Cursor`] is opaque: at most [`Cursor::MAX_LEN`] bytes that it stores once
//! it has applied the response carrying them and sends back unchanged. It never parses,
//! compares or orders cursors. To the server it is whatever it minted; [`ServerCursor`] is
//! the layout this crate offers (feed sequence, exchange counter, feed epoch).

/// An opaque cursor minted by the server, 1 to [`Cursor::MAX_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cursor(Vec<u8>);

/// Why bytes are not a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Zero bytes (a device with no cursor sends none at all).
    #[error("cursor is empty")]
    Empty,
    /// More than [`Cursor::MAX_LEN`] bytes.
    #[error("cursor is longer than {} bytes", Cursor::MAX_LEN)]
    TooLong,
}

impl Cursor {
    /// The longest cursor a server may mint and a device must store.
    pub const MAX_LEN: usize = 64;

    /// Checks the length of bytes minted by a server or read from the wire.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, CursorError> {
        match bytes.len() {
            0 => Err(CursorError::Empty),
            n if n > Self::MAX_LEN => Err(CursorError::TooLong),
            _ => Ok(Self(bytes)),
        }
    }

    /// The bytes, to store or send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cursor(")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, ")")
    }
}

/// A cursor as this crate's server side lays it out: `01 ‖ epoch (4 bytes, big-endian) ‖
/// LEB128 seq ‖ LEB128 exchange`, 7 to 25 bytes.
///
/// - `epoch` names the change feed (a random value drawn when the server's database is
///   created). A cursor from another feed (a restored backup, another deployment) does not
///   match and the server serves the device from the start of its feed.
/// - `seq` is the feed position: every change with a sequence number `≤ seq` in the
///   device's scope has been delivered (or the device already had it).
/// - `exchange` counts the device's exchanges, so that two responses never carry the same
///   cursor even when the feed did not move. The server uses that to tell whether the device
///   applied its last response (see [`super::knowledge::Settlement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerCursor {
    /// Identifies the change feed.
    pub epoch: u32,
    /// The feed position.
    pub seq: u64,
    /// The exchange that minted the cursor, per device.
    pub exchange: u64,
}

const LAYOUT_VERSION: u8 = 1;

impl ServerCursor {
    /// The opaque bytes for the device.
    pub fn to_cursor(&self) -> Cursor {
        let mut out = Vec::with_capacity(25);
        out.push(LAYOUT_VERSION);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        write_leb128(&mut out, self.seq);
        write_leb128(&mut out, self.exchange);
        // At most 1 + 4 + 10 + 10 bytes, well below `Cursor::MAX_LEN`.
        Cursor(out)
    }

    /// Reads a cursor this layout minted for feed `epoch`; `None` for anything else (another
    /// layout, another feed, trailing or truncated bytes).
    pub fn parse(cursor: &Cursor, epoch: u32) -> Option<Self> {
        let bytes = cursor.as_bytes();
        let (&version, rest) = bytes.split_first()?;
        if version != LAYOUT_VERSION {
            return None;
        }
        let epoch_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
        if u32::from_be_bytes(epoch_bytes) != epoch {
            return None;
        }
        let mut rest = rest.get(4..)?;
        let seq = read_leb128(&mut rest)?;
        let exchange = read_leb128(&mut rest)?;
        rest.is_empty().then_some(Self {
            epoch,
            seq,
            exchange,
        })
    }
}

fn write_leb128(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// Reads a minimal unsigned LEB128 of at most 10 bytes that fits in a `u64`.
fn read_leb128(input: &mut &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            // A trailing zero byte is a non-minimal encoding: refuse, so one value has one form.
            if i > 0 && byte == 0 {
                return None;
            }
            *input = input.get(i + 1..)?;
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_cursor_round_trips_and_checks_the_epoch() {
        for (seq, exchange) in [(0, 0), (1, 1), (127, 128), (u64::MAX, u64::MAX)] {
            let minted = ServerCursor {
                epoch: 0xdead_beef,
                seq,
                exchange,
            };
            let cursor = minted.to_cursor();
            assert!(cursor.as_bytes().len() <= Cursor::MAX_LEN);
            assert_eq!(ServerCursor::parse(&cursor, 0xdead_beef), Some(minted));
            assert_eq!(ServerCursor::parse(&cursor, 7), None);
        }
    }

    #[test]
    fn small_cursors_are_small() {
        let cursor = ServerCursor {
            epoch: 1,
            seq: 120_000,
            exchange: 300,
        }
        .to_cursor();
        assert_eq!(cursor.as_bytes().len(), 10);
    }

    #[test]
    fn malformed_cursors_are_not_parsed() {
        let good = ServerCursor {
            epoch: 9,
            seq: 300,
            exchange: 2,
        }
        .to_cursor()
        .as_bytes()
        .to_vec();
        let mut trailing = good.clone();
        trailing.push(0);
        let truncated = good.get(..good.len() - 1).unwrap_or_default().to_vec();
        let mut other_layout = good.clone();
        other_layout[0] = 2;
        let non_minimal = vec![1, 0, 0, 0, 9, 0x80, 0x00, 0x02];
        let overflow = vec![
            1, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0,
        ];
        for bad in [trailing, truncated, other_layout, non_minimal, overflow] {
            let cursor = Cursor::from_bytes(bad.clone()).expect("length is fine");
            assert_eq!(ServerCursor::parse(&cursor, 9), None, "{bad:02x?}");
        }
    }

    #[test]
    fn cursor_length_is_bounded() {
        assert_eq!(Cursor::from_bytes(Vec::new()), Err(CursorError::Empty));
        assert_eq!(
            Cursor::from_bytes(vec![0; Cursor::MAX_LEN + 1]),
            Err(CursorError::TooLong)
        );
        assert!(Cursor::from_bytes(vec![0; Cursor::MAX_LEN]).is_ok());
    }
}
