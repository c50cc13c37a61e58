//! The pure half of `validate --deep`: binary COPY streams split into
//! rows, each field put in a canonical form, and rows compared by key.
//!
//! The canonical form of a value is the bytes PostgreSQL's binary send
//! function gives for it in the target column's type. The source side gets
//! there through the same converter a run uses (so the documented
//! conversions, such as datetime2(7) truncated to microseconds or
//! datetimeoffset in UTC, count as equal, and nothing else does); the
//! target side is PostgreSQL's own `COPY … TO STDOUT (FORMAT binary)`. Where
//! one value has several send forms, [`canonical`] picks one.

use std::borrow::Cow;
use std::ops::Range;

use mssql_pg_migrate_typemap::PgType;

/// The 11-byte signature, flags and header-extension length of a binary COPY stream.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Where a binary COPY stream is not what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed binary COPY data at byte {at}: {what}")]
pub struct CopyFormatError {
    pub at: usize,
    pub what: &'static str,
}

/// One row: each field's bytes in the stream, `None` for NULL.
pub type RowFields = Vec<Option<Range<usize>>>;

/// Splits a whole binary COPY stream (header, tuples, trailer) into rows.
///
/// # Errors
/// A stream that is cut short or not binary COPY.
pub fn split_rows(data: &[u8]) -> Result<Vec<RowFields>, CopyFormatError> {
    let mut splitter = RowSplitter::default();
    let mut rows = Vec::new();
    let mut at = splitter.header(data)?;
    while let Some((row, next)) = splitter.row(data, at)? {
        rows.push(row);
        at = next;
    }
    Ok(rows)
}

/// Reads rows one at a time out of a buffer that may end mid-row.
#[derive(Debug, Default)]
pub struct RowSplitter {
    ended: bool,
}

fn be_i16(data: &[u8], at: usize) -> Option<i16> {
    data.get(at..at + 2).map(|b| i16::from_be_bytes([b[0], b[1]]))
}

fn be_i32(data: &[u8], at: usize) -> Option<i32> {
    data.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl RowSplitter {
    /// The offset of the first tuple.
    ///
    /// # Errors
    /// `data` does not start with a binary COPY header.
    pub fn header(&mut self, data: &[u8]) -> Result<usize, CopyFormatError> {
        if !data.starts_with(SIGNATURE) {
            return Err(CopyFormatError { at: 0, what: "no PGCOPY signature" });
        }
        let extension = be_i32(data, SIGNATURE.len() + 4).ok_or(CopyFormatError { at: 11, what: "short header" })?;
        let extension =
            usize::try_from(extension).map_err(|_| CopyFormatError { at: 15, what: "negative extension" })?;
        Ok(SIGNATURE.len() + 8 + extension)
    }

    /// The row starting at `at` and where the next begins; `None` at the
    /// trailer or where `data` ends before the row does (call again with
    /// more data from the same offset).
    ///
    /// # Errors
    /// A field count or length that cannot be.
    pub fn row(&mut self, data: &[u8], at: usize) -> Result<Option<(RowFields, usize)>, CopyFormatError> {
        if self.ended {
            return Ok(None);
        }
        let Some(count) = be_i16(data, at) else { return Ok(None) };
        if count == -1 {
            self.ended = true;
            return Ok(None);
        }
        let count = usize::try_from(count).map_err(|_| CopyFormatError { at, what: "negative field count" })?;
        let mut fields = Vec::with_capacity(count);
        let mut pos = at + 2;
        for _ in 0..count {
            let Some(len) = be_i32(data, pos) else { return Ok(None) };
            pos += 4;
            if len == -1 {
                fields.push(None);
                continue;
            }
            let len = usize::try_from(len).map_err(|_| CopyFormatError { at: pos - 4, what: "negative length" })?;
            if data.len() < pos + len {
                return Ok(None);
            }
            fields.push(Some(pos..pos + len));
            pos += len;
        }
        Ok(Some((fields, pos)))
    }

    /// Whether the trailer was read.
    pub fn ended(&self) -> bool {
        self.ended
    }
}

/// Rows out of a binary COPY stream that arrives in pieces of any size,
/// holding only the part of a row not yet complete.
#[derive(Debug, Default)]
pub struct RowStream {
    buffer: Vec<u8>,
    splitter: RowSplitter,
    started: bool,
}

impl RowStream {
    /// Takes the next piece and hands every row it completes to `row`.
    /// Returns how many.
    ///
    /// # Errors
    /// The stream is not binary COPY.
    pub fn feed(&mut self, piece: &[u8], mut row: impl FnMut(&[u8], &RowFields)) -> Result<u64, CopyFormatError> {
        self.buffer.extend_from_slice(piece);
        let mut at = 0;
        if !self.started {
            // The fixed part of the header: signature, flags, extension length.
            if self.buffer.len() < SIGNATURE.len() + 8 {
                return Ok(0);
            }
            at = self.splitter.header(&self.buffer)?;
            if self.buffer.len() < at {
                return Ok(0);
            }
            self.started = true;
        }
        let mut rows = 0;
        while let Some((fields, next)) = self.splitter.row(&self.buffer, at)? {
            row(&self.buffer, &fields);
            at = next;
            rows += 1;
        }
        self.buffer.drain(..at);
        Ok(rows)
    }
}

/// `value` (the send form of a `ty` value) in the one form equal values share.
///
/// Two types have several: numeric, whose digit groups may carry leading
/// or trailing zero groups (a sender is free to write them; PostgreSQL
/// strips them), and `char(n)`, whose trailing spaces are padding, not
/// value (SQL Server pads `nchar(n)` to n UTF-16 units, PostgreSQL to n
/// characters, so the two differ in spaces after a character outside the
/// BMP). Everything else is already unique: integers, floats (by their
/// IEEE bits, so -0 and 0 differ, as the documented conversion keeps them),
/// text as UTF-8 (trailing spaces of `varchar` and `text` count),
/// timestamps as microseconds, uuids as their 16 bytes.
pub fn canonical(ty: PgType, value: &[u8]) -> Cow<'_, [u8]> {
    match ty {
        PgType::Numeric(_) => canonical_numeric(value).map_or(Cow::Borrowed(value), Cow::Owned),
        PgType::Char(_) => {
            let end = value.iter().rposition(|b| *b != b' ').map_or(0, |i| i + 1);
            Cow::Borrowed(&value[..end])
        }
        _ => Cow::Borrowed(value),
    }
}

/// numeric's send form: ndigits, weight, sign, dscale (i16 each), then
/// ndigits base-10000 digits. `None` when it is already canonical or is
/// not a numeric (left as it is, and so compared byte for byte).
fn canonical_numeric(value: &[u8]) -> Option<Vec<u8>> {
    let ndigits = usize::try_from(be_i16(value, 0)?).ok()?;
    let mut weight = be_i16(value, 2)?;
    let sign = u16::from_be_bytes([*value.get(4)?, *value.get(5)?]);
    let dscale = value.get(6..8)?;
    if value.len() != 8 + 2 * ndigits {
        return None;
    }
    let digits: Vec<i16> = (0..ndigits).filter_map(|i| be_i16(value, 8 + 2 * i)).collect();
    let leading = digits.iter().take_while(|d| **d == 0).count();
    let trailing = digits[leading..].iter().rev().take_while(|d| **d == 0).count();
    let kept = &digits[leading..digits.len() - trailing];
    // NaN and infinities (sign 0xC000 and up) have no digits to trim.
    let zero = kept.is_empty() && sign < 0xC000;
    if leading == 0 && trailing == 0 && !(zero && (weight != 0 || sign != 0)) {
        return None;
    }
    weight = if zero { 0 } else { weight - i16::try_from(leading).ok()? };
    let sign = if zero { 0 } else { sign };
    let mut out = Vec::with_capacity(8 + 2 * kept.len());
    out.extend_from_slice(&i16::try_from(kept.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(dscale);
    for d in kept {
        out.extend_from_slice(&d.to_be_bytes());
    }
    Some(out)
}

/// Hands `sink` the canonical bytes of `row`'s fields at `columns`, each
/// length-prefixed (NULL as length -1) so no two rows run together alike.
fn canonical_fields(
    data: &[u8],
    row: &RowFields,
    columns: impl Iterator<Item = usize>,
    types: &[PgType],
    mut sink: impl FnMut(&[u8]),
) {
    for k in columns {
        match row.get(k).cloned().flatten() {
            None => sink(&(-1i32).to_be_bytes()),
            Some(range) => {
                let value = canonical(types.get(k).copied().unwrap_or(PgType::Bytea), &data[range]);
                sink(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
                sink(&value);
            }
        }
    }
}

/// A row's identity for matching: its key fields' canonical bytes.
pub fn key_of(data: &[u8], row: &RowFields, key: &[usize], types: &[PgType]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() * 12);
    canonical_fields(data, row, key.iter().copied(), types, |bytes| out.extend_from_slice(bytes));
    out
}

/// A whole row's canonical form, hashed (128 bits of SHA-256) without
/// building it, for matching keyless rows as a multiset.
pub fn row_digest(data: &[u8], row: &RowFields, types: &[PgType]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    canonical_fields(data, row, 0..row.len(), types, |bytes| hasher.update(bytes));
    let mut out = [0u8; 16];
    out.copy_from_slice(&hasher.finalize()[..16]);
    out
}

/// The columns (positions) in which two rows differ, comparing canonical forms.
pub fn differing_columns(left: (&[u8], &RowFields), right: (&[u8], &RowFields), types: &[PgType]) -> Vec<usize> {
    let (ld, lr) = left;
    let (rd, rr) = right;
    (0..lr.len().max(rr.len()))
        .filter(|&i| {
            let ty = types.get(i).copied().unwrap_or(PgType::Bytea);
            let l = lr.get(i).cloned().flatten().map(|r| canonical(ty, &ld[r]));
            let r = rr.get(i).cloned().flatten().map(|r| canonical(ty, &rd[r]));
            l != r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::{CellEncoder as _, CopyEncoder};

    fn stream(rows: &[&[Option<&[u8]>]]) -> Vec<u8> {
        let mut e = CopyEncoder::new();
        for row in rows {
            e.begin_row(u16::try_from(row.len()).unwrap());
            for field in *row {
                match field {
                    None => e.null(),
                    Some(bytes) => e.raw(bytes).unwrap(),
                }
            }
        }
        e.finish();
        e.into_bytes()
    }

    #[test]
    fn a_stream_splits_into_rows_with_nulls_and_empty_values_apart() {
        let data =
            stream(&[&[Some(b"\x00\x00\x00\x01"), None, Some(b"")], &[Some(b"\x00\x00\x00\x02"), Some(b"x"), None]]);
        let rows = split_rows(&data).unwrap();
        assert_eq!(rows.len(), 2);
        let field = |r: usize, f: usize| rows[r][f].clone().map(|range| data[range].to_vec());
        assert_eq!(field(0, 1), None, "NULL");
        assert_eq!(field(0, 2), Some(Vec::new()), "empty, not NULL");
        assert_eq!(field(1, 1), Some(b"x".to_vec()));
        assert!(split_rows(b"not copy").is_err());
    }

    #[test]
    fn a_row_cut_short_waits_for_more_data() {
        let data = stream(&[&[Some(b"abcdef")]]);
        let mut splitter = RowSplitter::default();
        let start = splitter.header(&data).unwrap();
        assert_eq!(splitter.row(&data[..start + 8], start).unwrap(), None, "half a field");
        let (row, next) = splitter.row(&data, start).unwrap().unwrap();
        assert_eq!(row, vec![Some(start + 6..start + 12)]);
        assert_eq!(splitter.row(&data, next).unwrap(), None);
        assert!(splitter.ended(), "the trailer was read");
    }

    #[test]
    fn a_stream_in_pieces_of_any_size_gives_every_row_once() {
        let rows: Vec<Vec<u8>> = (0u8..50).map(|i| vec![i; usize::from(i)]).collect();
        let fields: Vec<[Option<&[u8]>; 2]> = rows.iter().map(|r| [Some(&r[..]), None]).collect();
        let refs: Vec<&[Option<&[u8]>]> = fields.iter().map(|f| &f[..]).collect();
        let data = stream(&refs);
        for size in [1, 3, 7, 64, data.len()] {
            let mut stream = RowStream::default();
            let mut seen = Vec::new();
            for piece in data.chunks(size) {
                stream
                    .feed(piece, |d, row| seen.push(row[0].clone().map(|r| d[r].to_vec()).unwrap_or_default()))
                    .unwrap();
            }
            assert_eq!(seen, rows, "pieces of {size} bytes");
        }
        assert!(RowStream::default().feed(b"not a copy stream at all", |_, _| {}).is_err());
    }

    fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [ndigits.to_be_bytes(), weight.to_be_bytes(), sign.to_be_bytes(), dscale.to_be_bytes()] {
            v.extend_from_slice(&x);
        }
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn equal_numerics_written_with_extra_zero_groups_are_equal() {
        let ty = PgType::Numeric(Some((18, 4)));
        let plain = numeric(2, 0, 0, 4, &[12, 3400]); // 12.3400
        let padded = numeric(4, 1, 0, 4, &[0, 12, 3400, 0]);
        assert_eq!(canonical(ty, &padded), canonical(ty, &plain));
        assert_eq!(canonical(ty, &plain), Cow::Borrowed(&plain[..]), "already canonical");
        let zero = numeric(0, 0, 0, 2, &[]);
        assert_eq!(
            canonical(ty, &numeric(1, 3, 0x4000, 2, &[0])),
            Cow::<[u8]>::Owned(zero),
            "-0 with a zero digit is 0"
        );
        let other = numeric(2, 0, 0, 4, &[12, 3401]);
        assert_ne!(canonical(ty, &other), canonical(ty, &plain));
        let scaled = numeric(2, 0, 0, 5, &[12, 3400]);
        assert_ne!(canonical(ty, &scaled), canonical(ty, &plain), "the scale is part of the value");
        // Not numeric: compared as bytes.
        assert_eq!(canonical(PgType::Integer, &padded), Cow::Borrowed(&padded[..]));
        assert_eq!(canonical(ty, b"\x01"), Cow::Borrowed(&b"\x01"[..]));
    }

    #[test]
    fn char_padding_is_not_value_but_varchar_spaces_are() {
        let padded = "é😀   ".as_bytes();
        let fewer = "é😀  ".as_bytes();
        assert_eq!(canonical(PgType::Char(5), padded), canonical(PgType::Char(5), fewer));
        assert_eq!(canonical(PgType::Char(5), b"     "), Cow::Borrowed(&b""[..]));
        assert_ne!(canonical(PgType::Varchar(Some(5)), padded), canonical(PgType::Varchar(Some(5)), fewer));
        assert_ne!(canonical(PgType::Char(5), b" a"), canonical(PgType::Char(5), b"a"), "leading spaces count");
    }

    #[test]
    fn rows_differ_by_column_and_keys_match_by_canonical_bytes() {
        let types = [PgType::Numeric(None), PgType::Text, PgType::DoublePrecision];
        let a = stream(&[&[Some(&numeric(1, 0, 0, 0, &[7])), Some(b"x "), Some(&0f64.to_be_bytes())]]);
        let b = stream(&[&[Some(&numeric(2, 1, 0, 0, &[0, 7])), Some(b"x"), Some(&(-0f64).to_be_bytes())]]);
        let (ra, rb) = (split_rows(&a).unwrap(), split_rows(&b).unwrap());
        assert_eq!(key_of(&a, &ra[0], &[0], &types), key_of(&b, &rb[0], &[0], &types));
        assert_eq!(
            differing_columns((&a, &ra[0]), (&b, &rb[0]), &types),
            [1, 2],
            "a trailing space and -0 against 0 are differences"
        );
        assert_ne!(row_digest(&a, &ra[0], &types), row_digest(&b, &rb[0], &types));
        let same = stream(&[&[Some(&numeric(3, 2, 0, 0, &[0, 0, 7])), Some(b"x "), Some(&0f64.to_be_bytes())]]);
        let rs = split_rows(&same).unwrap();
        assert_eq!(row_digest(&a, &ra[0], &types), row_digest(&same, &rs[0], &types), "by canonical form");
        let null = stream(&[&[None, Some(b""), None]]);
        let empty = stream(&[&[None, None, None]]);
        let (rn, re) = (split_rows(&null).unwrap(), split_rows(&empty).unwrap());
        assert_eq!(differing_columns((&null, &rn[0]), (&empty, &re[0]), &types), [1], "NULL against empty text");
    }
}
