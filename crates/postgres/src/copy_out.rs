//! Walking a server's binary `COPY … TO STDOUT` output without decoding it.
//!
//! A binary COPY row is exactly what a PostgreSQL target's `COPY … FROM
//! STDIN (FORMAT binary)` takes, so a PostgreSQL source's rows can go to a
//! PostgreSQL target as the bytes the server sent. [`CopyOutScanner`] finds
//! where those bytes are in each message (between the stream's header and
//! its trailer), counts the rows and keeps the last row's integer key, for
//! the next page's bound. It reads only field counts and lengths: no value
//! is looked at but the key's, and nothing is allocated.
//!
//! It does not assume that a message holds whole rows (PostgreSQL sends one
//! row per message, but the protocol does not promise it), so every count,
//! length and the key may be split between messages.
//!
//! ```
//! use mssql_pg_migrate_postgres::copy_out::{CopyOutScanner, KeyField};
//!
//! let mut scanner = CopyOutScanner::new(2, Some(KeyField { index: 0, width: 4 }));
//! let mut stream = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
//! stream.extend_from_slice(&[0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff]); // (7, NULL)
//! let rows_start = stream.len() - 14;
//! stream.extend_from_slice(&[0xff, 0xff]);
//!
//! let scanned = scanner.scan(&stream).unwrap();
//! assert_eq!(scanned.rows, rows_start..stream.len() - 2);
//! assert_eq!((scanner.rows(), scanner.last_key()), (1, Some(&[0, 0, 0, 7][..])));
//! assert!(scanner.ended());
//! ```

use std::ops::Range;

/// What a binary COPY stream starts with: the signature, then the flags
/// word and the header extension's length.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
const HEADER_FIXED: usize = 19;
/// The flags bit saying each row carries an OID first (old servers' `WITH OIDS`).
const HAS_OIDS: u32 = 1 << 16;
/// The widest integer key: `int8`.
const MAX_KEY: usize = 8;

/// The field holding a row's integer key, and its width in bytes (2, 4 or 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyField {
    pub index: u16,
    pub width: usize,
}

/// Why a COPY stream cannot be passed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyOutError {
    #[error("the COPY output does not start with the binary COPY signature")]
    Signature,
    #[error("the COPY output has rows with OIDs, which were not asked for")]
    Oids,
    #[error("the COPY output has a row of {found} fields where {expected} were asked for")]
    FieldCount { expected: u16, found: i16 },
    #[error("the COPY output has a field of length {0}")]
    FieldLength(i32),
    #[error("the COPY output has a key of {found} bytes where the key's type has {expected}")]
    KeyWidth { expected: usize, found: i32 },
    #[error("the COPY output has a NULL key")]
    NullKey,
    #[error("the COPY output goes on after its trailer")]
    AfterTrailer,
}

/// Where a scanned message's row bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// A byte held back from the previous message, to be passed on before
    /// [`Scanned::rows`]: the first byte of a row's field count that ended
    /// that message could have begun the trailer instead.
    pub held: Option<u8>,
    /// The range of the message that holds row bytes.
    pub rows: Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    HeaderExtension { left: u32 },
    RowStart,
    FieldLength { field: u16 },
    FieldData { field: u16, left: u32 },
    Ended,
}

/// Follows one binary COPY stream, message by message.
#[derive(Debug, Clone)]
pub struct CopyOutScanner {
    fields: u16,
    key_field: Option<KeyField>,
    state: State,
    /// A header, count or length word split between messages, so far.
    partial: [u8; HEADER_FIXED],
    partial_len: usize,
    rows: u64,
    key: [u8; MAX_KEY],
    key_len: usize,
    last_key: [u8; MAX_KEY],
    last_key_len: Option<usize>,
    /// Bytes of the stream before the current message, and where the row
    /// being read began in it: for rows split between messages.
    stream_at: u64,
    row_began: u64,
    widest_row: usize,
}

impl CopyOutScanner {
    /// A scanner for rows of `fields` fields, keeping the integer key in
    /// `key_field` if there is one.
    pub fn new(fields: u16, key_field: Option<KeyField>) -> Self {
        CopyOutScanner {
            fields,
            key_field,
            state: State::Header,
            partial: [0; HEADER_FIXED],
            partial_len: 0,
            rows: 0,
            key: [0; MAX_KEY],
            key_len: 0,
            last_key: [0; MAX_KEY],
            last_key_len: None,
            stream_at: 0,
            row_began: 0,
            widest_row: 0,
        }
    }

    /// Rows seen whole so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The key of the last whole row, in its binary send format.
    pub fn last_key(&self) -> Option<&[u8]> {
        self.last_key_len.map(|len| &self.last_key[..len])
    }

    /// The length of the widest whole row so far, in bytes.
    pub fn widest_row(&self) -> usize {
        self.widest_row
    }

    /// Whether the trailer has been seen: the stream is complete.
    pub fn ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Scans the next message of the stream.
    ///
    /// # Errors
    /// A stream that is not binary COPY of the rows asked for.
    pub fn scan(&mut self, message: &[u8]) -> Result<Scanned, CopyOutError> {
        if message.is_empty() {
            return Ok(Scanned { held: None, rows: 0..0 });
        }
        let scanned = self.scan_message(message);
        self.stream_at += message.len() as u64;
        scanned
    }

    fn scan_message(&mut self, message: &[u8]) -> Result<Scanned, CopyOutError> {
        let mut at = 0;
        let mut rows_start = 0;
        let mut rows_end = message.len();
        // A count's first byte held from the previous message.
        let mut held = (self.state == State::RowStart && self.partial_len == 1).then_some(self.partial[0]);
        while at < message.len() {
            match self.state {
                State::Header => {
                    let Some(()) = self.fill(message, &mut at, HEADER_FIXED) else { break };
                    if &self.partial[..SIGNATURE.len()] != SIGNATURE {
                        return Err(CopyOutError::Signature);
                    }
                    let flags =
                        u32::from_be_bytes([self.partial[11], self.partial[12], self.partial[13], self.partial[14]]);
                    if flags & HAS_OIDS != 0 {
                        return Err(CopyOutError::Oids);
                    }
                    let extension =
                        u32::from_be_bytes([self.partial[15], self.partial[16], self.partial[17], self.partial[18]]);
                    self.partial_len = 0;
                    self.state = State::HeaderExtension { left: extension };
                    rows_start = at;
                }
                State::HeaderExtension { left } => {
                    let skipped = left.min(u32::try_from(message.len() - at).unwrap_or(u32::MAX));
                    at += skipped as usize;
                    self.state =
                        if skipped == left { State::RowStart } else { State::HeaderExtension { left: left - skipped } };
                    rows_start = at;
                }
                State::RowStart => {
                    if self.partial_len == 0
                        && let Some(length) = self.whole_row(&message[at..])?
                    {
                        at += length;
                        continue;
                    }
                    let count_at = at;
                    self.row_began = (self.stream_at + at as u64).saturating_sub(self.partial_len as u64);
                    let Some(word) = self.word(message, &mut at, 2) else {
                        // Only the count's first byte is here: hold it back.
                        rows_end = count_at;
                        break;
                    };
                    let count = i16::from_be_bytes([(word >> 8) as u8, word as u8]);
                    if count == -1 {
                        // The trailer: nothing of it is passed on, and nothing may follow.
                        if count_at == 0 {
                            held = None;
                        }
                        rows_end = count_at.min(rows_end);
                        self.state = State::Ended;
                        continue;
                    }
                    if count != i16::try_from(self.fields).unwrap_or(-2) {
                        return Err(CopyOutError::FieldCount { expected: self.fields, found: count });
                    }
                    self.key_len = 0;
                    self.state = self.next_field(0, at);
                }
                State::FieldLength { field } => {
                    let Some(word) = self.word(message, &mut at, 4) else { break };
                    let length = word as i32;
                    self.check_key(field, length)?;
                    self.state = match length {
                        -1 | 0 => self.next_field(field + 1, at),
                        n if n > 0 => State::FieldData { field, left: n as u32 },
                        n => return Err(CopyOutError::FieldLength(n)),
                    };
                }
                State::FieldData { field, left } => {
                    let here = left.min(u32::try_from(message.len() - at).unwrap_or(u32::MAX)) as usize;
                    if self.key_field.is_some_and(|k| k.index == field) {
                        self.key[self.key_len..self.key_len + here].copy_from_slice(&message[at..at + here]);
                        self.key_len += here;
                    }
                    at += here;
                    self.state = if here as u32 == left {
                        self.next_field(field + 1, at)
                    } else {
                        State::FieldData { field, left: left - here as u32 }
                    };
                }
                State::Ended => return Err(CopyOutError::AfterTrailer),
            }
        }
        if matches!(self.state, State::Header | State::HeaderExtension { .. }) {
            rows_start = rows_end;
        }
        let rows_start = rows_start.min(rows_end);
        Ok(Scanned { held, rows: rows_start..rows_end })
    }

    /// The length of the row `bytes` start with, when all of it is there
    /// (the common case: a server sends a row per message), read without
    /// going through the states; `None` for a row that goes on in the next
    /// message, or the trailer, which the states handle.
    #[inline]
    fn whole_row(&mut self, bytes: &[u8]) -> Result<Option<usize>, CopyOutError> {
        let word = |at: usize| bytes.get(at..at + 4).map(|w| i32::from_be_bytes([w[0], w[1], w[2], w[3]]));
        let Some(&[high, low]) = bytes.get(..2) else { return Ok(None) };
        let count = i16::from_be_bytes([high, low]);
        if count == -1 {
            return Ok(None);
        }
        if count != i16::try_from(self.fields).unwrap_or(-2) {
            return Err(CopyOutError::FieldCount { expected: self.fields, found: count });
        }
        let mut at = 2;
        let mut key = None;
        for field in 0..self.fields {
            let Some(length) = word(at) else { return Ok(None) };
            at += 4;
            if self.check_key(field, length)? {
                key = Some(at);
            }
            match length {
                n if n >= 0 => at += n as usize,
                -1 => {}
                n => return Err(CopyOutError::FieldLength(n)),
            }
        }
        if at > bytes.len() {
            return Ok(None);
        }
        self.rows += 1;
        self.widest_row = self.widest_row.max(at);
        if let (Some(start), Some(k)) = (key, self.key_field) {
            self.last_key[..k.width].copy_from_slice(&bytes[start..start + k.width]);
            self.last_key_len = Some(k.width);
        }
        Ok(Some(at))
    }

    /// Whether `field` is the key; an error when a key field's `length`
    /// is NULL or not its type's width.
    #[inline]
    fn check_key(&self, field: u16, length: i32) -> Result<bool, CopyOutError> {
        let Some(key) = self.key_field.filter(|k| k.index == field) else { return Ok(false) };
        if length == -1 {
            return Err(CopyOutError::NullKey);
        }
        if usize::try_from(length).ok() != Some(key.width) || key.width > MAX_KEY {
            return Err(CopyOutError::KeyWidth { expected: key.width, found: length });
        }
        Ok(true)
    }

    /// The state after a field, ending the row after the last one at
    /// `at` in the message.
    fn next_field(&mut self, field: u16, at: usize) -> State {
        if field < self.fields {
            return State::FieldLength { field };
        }
        self.rows += 1;
        let length = (self.stream_at + at as u64 - self.row_began) as usize;
        self.widest_row = self.widest_row.max(length);
        if self.key_field.is_some() {
            self.last_key = self.key;
            self.last_key_len = Some(self.key_len);
        }
        State::RowStart
    }

    /// Collects `n` bytes into `partial`, across messages; `None` while
    /// the message ends first.
    fn fill(&mut self, message: &[u8], at: &mut usize, n: usize) -> Option<()> {
        let take = (n - self.partial_len).min(message.len() - *at);
        self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&message[*at..*at + take]);
        self.partial_len += take;
        *at += take;
        (self.partial_len == n).then_some(())
    }

    /// A big-endian word of `n` (2 or 4) bytes.
    #[inline]
    fn word(&mut self, message: &[u8], at: &mut usize, n: usize) -> Option<u32> {
        if self.partial_len == 0
            && let Some(bytes) = message.get(*at..*at + n)
        {
            *at += n;
            return Some(bytes.iter().fold(0u32, |w, &b| (w << 8) | u32::from(b)));
        }
        self.fill(message, at, n)?;
        self.partial_len = 0;
        Some(self.partial[..n].iter().fold(0u32, |w, &b| (w << 8) | u32::from(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::CopyEncoder;
    use mssql_pg_migrate_dialect::sink::CellEncoder as _;

    const INT4_KEY: KeyField = KeyField { index: 0, width: 4 };

    /// A stream of `n` rows (int4 key i, text, NULL), as the encoder writes it.
    fn stream(n: i32) -> (Vec<u8>, Vec<u8>) {
        let mut encoder = CopyEncoder::new();
        for i in 1..=n {
            encoder.begin_row(3);
            encoder.int4(i * 10);
            encoder.text(&"x".repeat(i as usize)).unwrap();
            encoder.null();
        }
        let with_header = encoder.into_bytes();
        let rows = with_header[HEADER_FIXED..].to_vec();
        let mut whole = with_header;
        whole.extend_from_slice(&[0xff, 0xff]);
        (whole, rows)
    }

    /// Scans `whole` cut at `cuts`, and returns the bytes passed on.
    fn scan_cut(scanner: &mut CopyOutScanner, whole: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut passed = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&whole.len())) {
            let message = &whole[start..end];
            let scanned = scanner.scan(message).unwrap();
            passed.extend(scanned.held);
            passed.extend_from_slice(&message[scanned.rows]);
            start = end;
        }
        passed
    }

    #[test]
    fn every_cut_of_the_stream_passes_on_exactly_the_rows_and_keeps_the_last_key() {
        let (whole, rows) = stream(5);
        for first in 0..=whole.len() {
            for second in first..=whole.len() {
                let mut scanner = CopyOutScanner::new(3, Some(INT4_KEY));
                let passed = scan_cut(&mut scanner, &whole, &[first, second]);
                assert_eq!(passed, rows, "cut at {first} and {second}");
                assert_eq!(scanner.rows(), 5);
                assert_eq!(scanner.last_key(), Some(&50i32.to_be_bytes()[..]));
                assert_eq!(scanner.widest_row(), 18 + 5, "the last row's count, lengths and bytes");
                assert!(scanner.ended());
            }
        }
    }

    #[test]
    fn a_message_per_row_as_the_server_sends_them() {
        let (whole, rows) = stream(3);
        // The header with the first row, then a row per message, then the
        // trailer alone; row i takes 18 + i bytes.
        let (first, second, third) = (HEADER_FIXED + 19, HEADER_FIXED + 39, HEADER_FIXED + 60);
        let mut scanner = CopyOutScanner::new(3, Some(INT4_KEY));
        assert_eq!(scan_cut(&mut scanner, &whole, &[first, second, third]), rows);
        assert_eq!((scanner.rows(), scanner.last_key()), (3, Some(&30i32.to_be_bytes()[..])));
    }

    #[test]
    fn an_empty_result_is_a_header_and_a_trailer() {
        let mut scanner = CopyOutScanner::new(3, Some(INT4_KEY));
        let mut whole = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\x02".to_vec();
        whole.extend_from_slice(b"ex\xff\xff");
        assert_eq!(scan_cut(&mut scanner, &whole, &[20]), Vec::<u8>::new());
        assert_eq!((scanner.rows(), scanner.last_key()), (0, None));
        assert!(scanner.ended());
    }

    #[test]
    fn what_is_not_the_rows_asked_for_is_refused_by_cause() {
        let (whole, _) = stream(2);
        // Each failure is found alike in one message and in one-byte messages.
        let fail = |fields, key, bytes: &[u8]| {
            let whole = CopyOutScanner::new(fields, key).scan(bytes).unwrap_err();
            let mut scanner = CopyOutScanner::new(fields, key);
            let bytewise = bytes.chunks(1).find_map(|b| scanner.scan(b).err());
            assert_eq!(bytewise.as_ref(), Some(&whole));
            whole
        };
        assert_eq!(fail(4, Some(INT4_KEY), &whole), CopyOutError::FieldCount { expected: 4, found: 3 });
        let int8_key = KeyField { index: 0, width: 8 };
        assert_eq!(fail(3, Some(int8_key), &whole), CopyOutError::KeyWidth { expected: 8, found: 4 });
        let null_key = KeyField { index: 2, width: 4 };
        assert_eq!(fail(3, Some(null_key), &whole), CopyOutError::NullKey);
        assert_eq!(fail(3, None, b"PGCOPY\n\xff\r\n\x01\0\0\0\0\0\0\0\0"), CopyOutError::Signature);
        assert_eq!(fail(3, None, b"PGCOPY\n\xff\r\n\0\0\x01\0\0\0\0\0\0"), CopyOutError::Oids);
        let mut negative = whole[..HEADER_FIXED + 2].to_vec();
        negative.extend_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(fail(3, None, &negative), CopyOutError::FieldLength(-5));
        let mut after = whole.clone();
        after.push(0);
        assert_eq!(fail(3, None, &after), CopyOutError::AfterTrailer);
    }
}
