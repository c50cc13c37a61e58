//! Where a reader puts the rows it reads.
//!
//! A reader decodes each cell from its server's wire format and hands it to
//! a [`CellEncoder`] in one vocabulary: PostgreSQL's binary forms (dates as
//! days since 2000-01-01, timestamps as microseconds since then, numerics as
//! a mantissa and a scale, text as UTF-8). A [`RowSink`] owns the encoder
//! and passes full buffers on to the writer, so memory stays bounded however
//! large a chunk is. Both are traits the reader is generic over: the
//! per-cell path is monomorphised, with no dynamic dispatch.

use std::future::Future;

/// A value the target would refuse, named so the caller can report the cell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("text contains a NUL character (U+0000), which PostgreSQL text cannot store")]
    NulInText,
    #[error("text is not valid UTF-16: unpaired surrogate 0x{0:04X}")]
    UnpairedSurrogate(u16),
    #[error("a field of {0} bytes exceeds PostgreSQL's 1 GB field limit")]
    FieldTooLarge(usize),
    #[error("numeric scale {0} is above 38")]
    NumericScale(u8),
    #[error("{0} cannot be written to this target")]
    Unsupported(&'static str),
}

/// Microseconds a day has.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Microseconds in `increments` of 10^-`scale` s; digits below a
/// microsecond (scale 7) are cut, as the type mapping documents.
pub fn micros_of(increments: u64, scale: u8) -> i64 {
    let increments = i64::try_from(increments).unwrap_or(i64::MAX);
    if scale <= 6 {
        increments.saturating_mul(10i64.pow(6 - u32::from(scale)))
    } else {
        increments / 10i64.pow(u32::from(scale.min(18)) - 6)
    }
}

/// Encodes one row's cells, in the target's column order.
pub trait CellEncoder {
    /// Starts a row of `fields` cells.
    fn begin_row(&mut self, fields: u16);
    fn null(&mut self);
    fn bool(&mut self, v: bool);
    fn int2(&mut self, v: i16);
    fn int4(&mut self, v: i32);
    fn int8(&mut self, v: i64);
    fn float4(&mut self, v: f32);
    fn float8(&mut self, v: f64);
    /// A uuid in RFC 4122 byte order.
    fn uuid(&mut self, bytes: [u8; 16]);
    fn date(&mut self, days_since_2000: i32);
    /// A time of day in microseconds.
    fn time(&mut self, micros: i64);
    /// A timestamp in microseconds since 2000-01-01 00:00 (UTC for a
    /// `timestamptz`).
    fn timestamp(&mut self, micros_since_2000: i64);
    /// A time of day at the source's own precision: `increments` of
    /// 10^-`scale` s (SQL Server's `time(0)`…`time(7)`). A target with
    /// microseconds (PostgreSQL) takes [`CellEncoder::time`], cutting 100 ns digits.
    fn time_fraction(&mut self, increments: u64, scale: u8) {
        self.time(micros_of(increments, scale));
    }
    /// A date and time at the source's own precision: the days since
    /// 2000-01-01 and the time of day as in [`CellEncoder::time_fraction`].
    fn timestamp_fraction(&mut self, days_since_2000: i64, increments: u64, scale: u8) {
        self.timestamp(days_since_2000 * MICROS_PER_DAY + micros_of(increments, scale));
    }
    /// An instant with the offset it was written at (SQL Server's
    /// `datetimeoffset`): the UTC date and time as in
    /// [`CellEncoder::timestamp_fraction`], and minutes east of UTC. A
    /// target without offsets (PostgreSQL's `timestamptz`) keeps the instant.
    fn timestamp_offset(&mut self, utc_days_since_2000: i64, increments: u64, scale: u8, offset_minutes: i16) {
        let _ = offset_minutes;
        self.timestamp_fraction(utc_days_since_2000, increments, scale);
    }
    /// `mantissa × 10^-scale`.
    ///
    /// # Errors
    /// [`EncodeError::NumericScale`] for a scale above 38.
    fn numeric(&mut self, mantissa: i128, scale: u8) -> Result<(), EncodeError>;
    /// # Errors
    /// [`EncodeError::NulInText`] or [`EncodeError::FieldTooLarge`].
    fn text(&mut self, s: &str) -> Result<(), EncodeError>;
    /// Text given as UTF-16 code units (SQL Server's `nvarchar`), converted
    /// on the way in.
    ///
    /// # Errors
    /// As [`CellEncoder::text`], and [`EncodeError::UnpairedSurrogate`].
    fn text_utf16(&mut self, units: &[u16]) -> Result<(), EncodeError>;
    /// # Errors
    /// [`EncodeError::FieldTooLarge`].
    fn bytea(&mut self, bytes: &[u8]) -> Result<(), EncodeError>;
}

/// The writer went away (it failed, and reports why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterGone;

/// Why a field could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldError {
    Encode(EncodeError),
    WriterGone,
}

/// Where a reader puts encoded rows, and how they reach the writer.
pub trait RowSink: Send {
    type Encoder: CellEncoder + Send;

    /// The encoder of the row being built.
    fn encoder(&mut self) -> &mut Self::Encoder;

    /// Call after each row: passes the buffer on once it is full.
    fn row_done(&mut self) -> impl Future<Output = Result<(), WriterGone>> + Send;

    /// Adds a field already in PostgreSQL's binary send format (a
    /// PostgreSQL source's own bytes). One larger than a buffer is passed on
    /// in parts, so no buffer grows to the value's size.
    fn field(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), FieldError>> + Send;

    /// Starts a field of `len` bytes in binary send format whose content
    /// follows through [`RowSink::field_part`], for a value the source hands
    /// over in parts (a large text or binary value).
    ///
    /// # Errors
    /// [`FieldError::Encode`] for a field above the target's limit.
    fn begin_field(&mut self, len: usize) -> Result<(), FieldError>;

    /// Adds bytes of the field begun by [`RowSink::begin_field`].
    ///
    /// # Errors
    /// [`FieldError::WriterGone`].
    fn field_part(&mut self, part: &[u8]) -> impl Future<Output = Result<(), FieldError>> + Send;

    /// Whether [`RowSink::copy_rows`] takes rows: the target's rows are
    /// PostgreSQL binary COPY rows, byte for byte.
    fn takes_copy_rows(&self) -> bool {
        false
    }

    /// Adds bytes of rows already in PostgreSQL's binary COPY row form (a
    /// PostgreSQL source's own `COPY … TO STDOUT (FORMAT binary)` output,
    /// without its header and trailer). A row may begin in one call and end
    /// in the next; the calls' bytes together are whole rows.
    ///
    /// # Errors
    /// [`FieldError::WriterGone`]; a sink that does not take such rows
    /// ([`RowSink::takes_copy_rows`] is false) refuses them.
    fn copy_rows(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), FieldError>> + Send {
        let _ = bytes;
        async { Err(FieldError::Encode(EncodeError::Unsupported("rows in PostgreSQL's binary COPY form"))) }
    }
}
