//! [`TdsSink`]: the row sink of a SQL Server target. A reader's cells
//! become tiberius [`ColumnData`] of the type each target column has, rows
//! gather into batches, and each batch goes to the writer (which feeds the
//! bulk load, [`crate::writer`]) through a bounded channel, so memory stays
//! bounded however large a chunk is.
//!
//! The encoder keeps what a SQL Server source has and PostgreSQL would
//! lose: 100 ns digits of `time(7)` and `datetime2(7)`, and the offset of a
//! `datetimeoffset` ([`CellEncoder::time_fraction`] and its siblings).
//!
//! ```
//! use mssql_pg_migrate_dialect::sink::CellEncoder;
//! use mssql_pg_migrate_mssql::sink::{LoadType, Slot, TdsEncoder};
//! use tiberius::ColumnData;
//!
//! // A tinyint column, a rowversion the server makes itself, and a datetime2(7).
//! let mut enc = TdsEncoder::new(vec![Slot::Load(LoadType::TinyInt), Slot::Skip, Slot::Load(LoadType::DateTime2)].into());
//! enc.begin_row(3);
//! enc.int2(255);
//! enc.bytea(&[0, 0, 0, 0, 0, 0, 7, 209])?;
//! enc.timestamp_fraction(0, 1, 7); // 2000-01-01 00:00:00.0000001
//! let row = enc.take_row();
//! assert_eq!(row[0], ColumnData::U8(Some(255)));
//! let ColumnData::DateTime2(Some(at)) = &row[1] else { panic!() };
//! assert_eq!((at.time().increments(), at.time().scale()), (1, 7));
//! # Ok::<(), mssql_pg_migrate_dialect::sink::EncodeError>(())
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use mssql_pg_migrate_dialect::sink::{CellEncoder, EncodeError, FieldError, RowSink, WriterGone};
use mssql_pg_migrate_typemap::MssqlType;
use tiberius::ColumnData;
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::xml::XmlData;
use tokio::sync::mpsc;

/// Days from 0001-01-01 (SQL Server `date`, `datetime2`) to 2000-01-01.
const DAYS_0001_TO_2000: i64 = 730_119;
/// Days from 1900-01-01 (SQL Server `datetime`, `smalldatetime`) to 2000-01-01.
const DAYS_1900_TO_2000: i64 = 36_524;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Rows on their way to one bulk load.
pub type Batch = Vec<Vec<ColumnData<'static>>>;

/// The tiberius value a target column takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Real,
    Float,
    /// decimal, numeric, money and smallmoney: a decimal goes into money exactly.
    Decimal,
    Guid,
    Date,
    Time,
    DateTime,
    SmallDateTime,
    DateTime2,
    DateTimeOffset,
    Text,
    Xml,
    Binary,
}

impl LoadType {
    /// How a column of `ty` is loaded, or `None` for a type the bulk load
    /// cannot write (CLR types and `sql_variant`) or that the server fills
    /// itself (`rowversion`).
    pub fn of(ty: &MssqlType) -> Option<LoadType> {
        use MssqlType as M;
        Some(match ty {
            M::Bit => LoadType::Bit,
            M::TinyInt => LoadType::TinyInt,
            M::SmallInt => LoadType::SmallInt,
            M::Int => LoadType::Int,
            M::BigInt => LoadType::BigInt,
            M::Real => LoadType::Real,
            M::Float => LoadType::Float,
            M::Decimal { .. } | M::Money | M::SmallMoney => LoadType::Decimal,
            M::UniqueIdentifier => LoadType::Guid,
            M::Date => LoadType::Date,
            M::Time { .. } => LoadType::Time,
            M::DateTime => LoadType::DateTime,
            M::SmallDateTime => LoadType::SmallDateTime,
            M::DateTime2 { .. } => LoadType::DateTime2,
            M::DateTimeOffset { .. } => LoadType::DateTimeOffset,
            M::Char(_) | M::VarChar(_) | M::NChar(_) | M::NVarChar(_) | M::Text | M::NText => LoadType::Text,
            M::Xml => LoadType::Xml,
            M::Binary(_) | M::VarBinary(_) | M::Image => LoadType::Binary,
            M::RowVersion | M::HierarchyId | M::Geography | M::Geometry | M::SqlVariant | M::Clr { .. } => return None,
        })
    }

    fn null(self) -> ColumnData<'static> {
        match self {
            LoadType::Bit => ColumnData::Bit(None),
            LoadType::TinyInt => ColumnData::U8(None),
            LoadType::SmallInt => ColumnData::I16(None),
            LoadType::Int => ColumnData::I32(None),
            LoadType::BigInt => ColumnData::I64(None),
            LoadType::Real => ColumnData::F32(None),
            LoadType::Float => ColumnData::F64(None),
            LoadType::Decimal => ColumnData::Numeric(None),
            LoadType::Guid => ColumnData::Guid(None),
            LoadType::Date => ColumnData::Date(None),
            LoadType::Time => ColumnData::Time(None),
            LoadType::DateTime => ColumnData::DateTime(None),
            LoadType::SmallDateTime => ColumnData::SmallDateTime(None),
            LoadType::DateTime2 => ColumnData::DateTime2(None),
            LoadType::DateTimeOffset => ColumnData::DateTimeOffset(None),
            LoadType::Text => ColumnData::String(None),
            LoadType::Xml => ColumnData::Xml(None),
            LoadType::Binary => ColumnData::Binary(None),
        }
    }
}

/// What happens to each cell a reader hands over, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Into the load, as this type.
    Load(LoadType),
    /// Left out: the target server makes the value (a rowversion).
    Skip,
}

/// Splits microseconds since 2000-01-01 into days and microseconds of the day.
fn day_and_micros(micros_since_2000: i64) -> (i64, i64) {
    (micros_since_2000.div_euclid(MICROS_PER_DAY), micros_since_2000.rem_euclid(MICROS_PER_DAY))
}

fn date_of(days_since_2000: i64) -> Date {
    Date::new(u32::try_from(days_since_2000 + DAYS_0001_TO_2000).unwrap_or(0))
}

/// A legacy `datetime` from microseconds: 1/300 s ticks, which the
/// millisecond a SQL Server `datetime` shows (.000/.003/.007) maps back to
/// exactly.
fn legacy_datetime(days_since_2000: i64, micros_of_day: i64) -> DateTime {
    let millis = micros_of_day / 1_000;
    let ticks = (millis * 3 + 5) / 10;
    DateTime::new(i32::try_from(days_since_2000 + DAYS_1900_TO_2000).unwrap_or(0), u32::try_from(ticks).unwrap_or(0))
}

/// A value being handed over in parts ([`RowSink::begin_field`]).
#[derive(Debug)]
struct Partial {
    bytes: Vec<u8>,
    expected: usize,
}

/// Builds one row of tiberius values from a reader's cells.
#[derive(Debug)]
pub struct TdsEncoder {
    slots: Arc<[Slot]>,
    /// The slot the next cell fills.
    at: usize,
    row: Vec<ColumnData<'static>>,
    /// Bytes the row holds, roughly, for sizing batches.
    row_bytes: usize,
    partial: Option<Partial>,
}

impl TdsEncoder {
    pub fn new(slots: Arc<[Slot]>) -> TdsEncoder {
        let width = slots.iter().filter(|s| matches!(s, Slot::Load(_))).count();
        TdsEncoder { slots, at: 0, row: Vec::with_capacity(width), row_bytes: 0, partial: None }
    }

    /// The row built so far; the encoder starts an empty one.
    pub fn take_row(&mut self) -> Vec<ColumnData<'static>> {
        let width = self.row.capacity();
        std::mem::replace(&mut self.row, Vec::with_capacity(width))
    }

    /// The type of the cell about to be given, moving past it; `None` for
    /// a cell left out.
    #[inline]
    fn next(&mut self) -> Option<LoadType> {
        let slot = self.slots.get(self.at).copied();
        self.at += 1;
        match slot {
            Some(Slot::Load(ty)) => Some(ty),
            _ => None,
        }
    }

    #[inline]
    fn push(&mut self, value: ColumnData<'static>, bytes: usize) {
        self.row_bytes += bytes;
        self.row.push(value);
    }

    fn integer(&mut self, v: i64) {
        let Some(ty) = self.next() else { return };
        let value = match ty {
            LoadType::Bit => ColumnData::Bit(Some(v != 0)),
            LoadType::TinyInt => u8::try_from(v).map_or(ColumnData::I64(Some(v)), |v| ColumnData::U8(Some(v))),
            LoadType::SmallInt => i16::try_from(v).map_or(ColumnData::I64(Some(v)), |v| ColumnData::I16(Some(v))),
            LoadType::Int => i32::try_from(v).map_or(ColumnData::I64(Some(v)), |v| ColumnData::I32(Some(v))),
            LoadType::Decimal => ColumnData::Numeric(Some(Numeric::new_with_scale(i128::from(v), 0))),
            // Anything else is not a pairing the planner makes; the server names it.
            _ => ColumnData::I64(Some(v)),
        };
        self.push(value, 8);
    }

    fn string(&mut self, ty: LoadType, s: String) {
        let len = s.len();
        let value = match ty {
            LoadType::Xml => ColumnData::Xml(Some(Cow::Owned(XmlData::new(s)))),
            _ => ColumnData::String(Some(Cow::Owned(s))),
        };
        self.push(value, len);
    }
}

impl CellEncoder for TdsEncoder {
    #[inline]
    fn begin_row(&mut self, _fields: u16) {
        self.at = 0;
    }

    fn null(&mut self) {
        if let Some(ty) = self.next() {
            self.push(ty.null(), 1);
        }
    }

    fn bool(&mut self, v: bool) {
        if self.next().is_some() {
            self.push(ColumnData::Bit(Some(v)), 1);
        }
    }

    fn int2(&mut self, v: i16) {
        self.integer(i64::from(v));
    }

    fn int4(&mut self, v: i32) {
        self.integer(i64::from(v));
    }

    fn int8(&mut self, v: i64) {
        self.integer(v);
    }

    fn float4(&mut self, v: f32) {
        if self.next().is_some() {
            self.push(ColumnData::F32(Some(v)), 4);
        }
    }

    fn float8(&mut self, v: f64) {
        if self.next().is_some() {
            self.push(ColumnData::F64(Some(v)), 8);
        }
    }

    fn uuid(&mut self, bytes: [u8; 16]) {
        if self.next().is_some() {
            self.push(ColumnData::Guid(Some(tiberius::Uuid::from_bytes(bytes))), 16);
        }
    }

    fn date(&mut self, days_since_2000: i32) {
        if self.next().is_some() {
            self.push(ColumnData::Date(Some(date_of(i64::from(days_since_2000)))), 3);
        }
    }

    fn time(&mut self, micros: i64) {
        self.time_fraction(u64::try_from(micros).unwrap_or(0), 6);
    }

    fn time_fraction(&mut self, increments: u64, scale: u8) {
        if self.next().is_some() {
            self.push(ColumnData::Time(Some(Time::new(increments, scale))), 5);
        }
    }

    fn timestamp(&mut self, micros_since_2000: i64) {
        let (days, micros) = day_and_micros(micros_since_2000);
        let Some(ty) = self.next() else { return };
        let value = match ty {
            LoadType::DateTime => ColumnData::DateTime(Some(legacy_datetime(days, micros))),
            LoadType::SmallDateTime => ColumnData::SmallDateTime(Some(SmallDateTime::new(
                u16::try_from(days + DAYS_1900_TO_2000).unwrap_or(0),
                u16::try_from(micros / 60_000_000).unwrap_or(0),
            ))),
            LoadType::Date => ColumnData::Date(Some(date_of(days))),
            _ => ColumnData::DateTime2(Some(DateTime2::new(
                date_of(days),
                Time::new(u64::try_from(micros).unwrap_or(0), 6),
            ))),
        };
        self.push(value, 8);
    }

    fn timestamp_fraction(&mut self, days_since_2000: i64, increments: u64, scale: u8) {
        let Some(ty) = self.next() else { return };
        let at = DateTime2::new(date_of(days_since_2000), Time::new(increments, scale));
        let value = match ty {
            LoadType::DateTimeOffset => ColumnData::DateTimeOffset(Some(DateTimeOffset::new(at, 0))),
            _ => ColumnData::DateTime2(Some(at)),
        };
        self.push(value, 8);
    }

    fn timestamp_offset(&mut self, utc_days_since_2000: i64, increments: u64, scale: u8, offset_minutes: i16) {
        if self.next().is_none() {
            return;
        }
        let at = DateTime2::new(date_of(utc_days_since_2000), Time::new(increments, scale));
        self.push(ColumnData::DateTimeOffset(Some(DateTimeOffset::new(at, offset_minutes))), 10);
    }

    fn numeric(&mut self, mantissa: i128, scale: u8) -> Result<(), EncodeError> {
        if scale > 38 {
            return Err(EncodeError::NumericScale(scale));
        }
        if self.next().is_some() {
            self.push(ColumnData::Numeric(Some(Numeric::new_with_scale(mantissa, scale))), 17);
        }
        Ok(())
    }

    fn text(&mut self, s: &str) -> Result<(), EncodeError> {
        if let Some(ty) = self.next() {
            self.string(ty, s.to_owned());
        }
        Ok(())
    }

    fn text_utf16(&mut self, units: &[u16]) -> Result<(), EncodeError> {
        let Some(ty) = self.next() else { return Ok(()) };
        let s = String::from_utf16(units).map_err(|_| {
            // Only a failed conversion looks for which unit was unpaired.
            let unpaired = char::decode_utf16(units.iter().copied()).find_map(Result::err);
            EncodeError::UnpairedSurrogate(unpaired.map_or(0, |e| e.unpaired_surrogate()))
        })?;
        self.string(ty, s);
        Ok(())
    }

    fn bytea(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        if self.next().is_some() {
            self.push(ColumnData::Binary(Some(Cow::Owned(bytes.to_vec()))), bytes.len());
        }
        Ok(())
    }
}

/// Gathers a reader's rows into batches for the bulk load.
#[derive(Debug)]
pub struct TdsSink {
    encoder: TdsEncoder,
    batch: Batch,
    batch_bytes: usize,
    sent_bytes: u64,
    limit_bytes: usize,
    batches: mpsc::Sender<Batch>,
}

impl TdsSink {
    /// A sink whose batches hold about `batch_bytes` each.
    pub fn new(slots: Arc<[Slot]>, batches: mpsc::Sender<Batch>, batch_bytes: usize) -> TdsSink {
        TdsSink {
            encoder: TdsEncoder::new(slots),
            batch: Vec::new(),
            batch_bytes: 0,
            sent_bytes: 0,
            limit_bytes: batch_bytes.max(1),
            batches,
        }
    }

    async fn flush(&mut self) -> Result<(), WriterGone> {
        let batch = std::mem::take(&mut self.batch);
        self.sent_bytes += self.batch_bytes as u64;
        self.batch_bytes = 0;
        self.batches.send(batch).await.map_err(|_| WriterGone)
    }

    /// Sends the last batch (always one, if empty, so the writer knows the
    /// reader began). Returns the bytes sent in all.
    pub async fn finish(mut self) -> Result<u64, WriterGone> {
        self.flush().await?;
        Ok(self.sent_bytes)
    }
}

impl RowSink for TdsSink {
    type Encoder = TdsEncoder;

    #[inline]
    fn encoder(&mut self) -> &mut TdsEncoder {
        &mut self.encoder
    }

    async fn row_done(&mut self) -> Result<(), WriterGone> {
        let row = self.encoder.take_row();
        self.batch_bytes += std::mem::take(&mut self.encoder.row_bytes);
        self.batch.push(row);
        if self.batch_bytes >= self.limit_bytes { self.flush().await } else { Ok(()) }
    }

    async fn field(&mut self, _bytes: &[u8]) -> Result<(), FieldError> {
        Err(FieldError::Encode(EncodeError::Unsupported("a value in PostgreSQL's binary form")))
    }

    fn begin_field(&mut self, len: usize) -> Result<(), FieldError> {
        self.encoder.partial = Some(Partial { bytes: Vec::with_capacity(len), expected: len });
        if len == 0 { self.finish_partial() } else { Ok(()) }
    }

    async fn field_part(&mut self, part: &[u8]) -> Result<(), FieldError> {
        let Some(partial) = self.encoder.partial.as_mut() else {
            return Err(FieldError::Encode(EncodeError::Unsupported("a field part without its field")));
        };
        partial.bytes.extend_from_slice(part);
        if partial.bytes.len() >= partial.expected { self.finish_partial() } else { Ok(()) }
    }
}

impl TdsSink {
    /// Puts a value handed over in parts into the row: the text a reader
    /// spooled (UTF-8) or the bytes it sliced.
    fn finish_partial(&mut self) -> Result<(), FieldError> {
        let Some(Partial { bytes, .. }) = self.encoder.partial.take() else { return Ok(()) };
        let Some(ty) = self.encoder.next() else { return Ok(()) };
        let len = bytes.len();
        match ty {
            LoadType::Binary => self.encoder.push(ColumnData::Binary(Some(Cow::Owned(bytes))), len),
            _ => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| FieldError::Encode(EncodeError::Unsupported("text that is not UTF-8")))?;
                self.encoder.string(ty, text);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(types: &[LoadType]) -> TdsEncoder {
        TdsEncoder::new(types.iter().map(|t| Slot::Load(*t)).collect::<Vec<_>>().into())
    }

    #[test]
    fn legacy_datetimes_and_smalldatetimes_come_back_to_their_ticks() {
        let mut enc = encoder(&[LoadType::DateTime, LoadType::DateTime, LoadType::SmallDateTime]);
        enc.begin_row(3);
        // 1753-01-01 00:00:00.003 and 9999-12-31 23:59:59.997, as the reader gives them.
        let days_1753 = -(DAYS_1900_TO_2000 + 53_690);
        enc.timestamp(days_1753 * MICROS_PER_DAY + 3_000);
        enc.timestamp(2_914_635 * MICROS_PER_DAY + 86_399_997_000);
        enc.timestamp(-MICROS_PER_DAY + 60_000_000 * 1439);
        let row = enc.take_row();
        assert_eq!(row[0], ColumnData::DateTime(Some(DateTime::new(-53_690, 1))));
        assert_eq!(row[1], ColumnData::DateTime(Some(DateTime::new(2_914_635 + 36_524, 25_919_999))));
        assert_eq!(row[2], ColumnData::SmallDateTime(Some(SmallDateTime::new(36_523, 1439))));
    }

    #[test]
    fn offsets_and_100_ns_digits_are_kept() {
        let mut enc = encoder(&[LoadType::DateTimeOffset, LoadType::Time, LoadType::Text]);
        enc.begin_row(3);
        enc.timestamp_offset(-1, 863_999_999_999, 7, -840);
        enc.time_fraction(1, 7);
        enc.text_utf16(&[0xD83D, 0xDE00, 0]).unwrap();
        let row = enc.take_row();
        let ColumnData::DateTimeOffset(Some(o)) = &row[0] else { panic!("{row:?}") };
        assert_eq!(
            (o.datetime2().date().days(), o.datetime2().time().increments(), o.offset()),
            (730_118, 863_999_999_999, -840)
        );
        assert_eq!(row[1], ColumnData::Time(Some(Time::new(1, 7))));
        assert_eq!(row[2], ColumnData::String(Some(Cow::Owned("😀\0".to_owned()))), "NUL is text to SQL Server");
        enc.begin_row(3);
        assert_eq!(enc.text_utf16(&[0xD800]).unwrap_err(), EncodeError::UnpairedSurrogate(0xD800),);
    }

    #[test]
    fn nulls_take_their_columns_type_and_skipped_cells_vanish() {
        let slots: Arc<[Slot]> = vec![Slot::Load(LoadType::Decimal), Slot::Skip, Slot::Load(LoadType::Xml)].into();
        let mut enc = TdsEncoder::new(slots);
        enc.begin_row(3);
        enc.null();
        enc.bytea(&[1; 8]).unwrap();
        enc.text("<a/>").unwrap();
        let row = enc.take_row();
        assert_eq!(row.len(), 2);
        assert_eq!(row[0], ColumnData::Numeric(None));
        assert_eq!(row[1], ColumnData::Xml(Some(Cow::Owned(XmlData::new("<a/>")))));
    }

    #[tokio::test]
    async fn a_value_handed_over_in_parts_lands_whole_and_batches_are_sized_by_bytes() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut sink = TdsSink::new(vec![Slot::Load(LoadType::Text), Slot::Load(LoadType::Binary)].into(), tx, 10);
        sink.encoder().begin_row(2);
        sink.begin_field(6).unwrap();
        sink.field_part("hé".as_bytes()).await.unwrap();
        sink.field_part("llo".as_bytes()).await.unwrap();
        sink.begin_field(0).unwrap();
        sink.row_done().await.unwrap();
        assert!(rx.try_recv().is_err(), "6 bytes do not fill a batch of 10");
        sink.encoder().begin_row(2);
        sink.encoder().text("abcde").unwrap();
        sink.encoder().null();
        sink.row_done().await.unwrap();
        let first = rx.try_recv().unwrap();
        assert_eq!(
            first[0],
            vec![
                ColumnData::String(Some(Cow::Owned("héllo".to_owned()))),
                ColumnData::Binary(Some(Cow::Owned(Vec::new())))
            ]
        );
        assert_eq!(first[1], vec![ColumnData::String(Some(Cow::Owned("abcde".to_owned()))), ColumnData::Binary(None)]);
        assert_eq!(sink.finish().await.unwrap(), 12);
        assert_eq!(rx.recv().await.unwrap(), Vec::<Vec<ColumnData<'static>>>::new(), "the last batch is always sent");
    }
}
