//! What both sides of a checksummed comparison share: how a column's
//! values are rendered ([`FieldForm`]), how a dialect writes the pieces of
//! a checksum query ([`ChecksumSql`], implemented by each dialect's crate),
//! and the bucket sums the queries return. The engine's `deep::checksum`
//! puts the pieces together and says why the forms are what they are.

/// How both sides render one column's values for the row text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldForm {
    /// Decimal digits.
    Integer,
    /// `0` or `1`.
    Boolean,
    /// Decimal digits with exactly `scale` fraction digits.
    Decimal { scale: u16 },
    /// The IEEE 754 bits of a double, as a signed integer (every bit counts).
    Float8,
    /// The IEEE 754 bits of a single, as a signed integer.
    Float4,
    /// Days since 0001-01-01. Numbers rather than text for every date and
    /// time form: Babelfish drops trailing zeros of fractional seconds
    /// where SQL Server keeps them, and its style conversions cost 30 µs a
    /// value.
    Date,
    /// Microseconds since midnight.
    Time,
    /// Microseconds since 0001-01-01 00:00; on SQL Server the 100 ns
    /// digit is cut, as a run cuts it.
    Timestamp,
    /// The same from SQL Server's `datetime`, whose 1/300 s ticks a run
    /// rounds to the millisecond SQL Server shows, as `datetime2(3)` does.
    DateTimeMillis,
    /// The instant in UTC, as [`FieldForm::Timestamp`].
    TimestampUtc,
    /// Upper-case hexadecimal with hyphens.
    Uuid,
    /// The MD5 of the string's UTF-8 bytes; `padded` strips trailing
    /// spaces, which a `char(n)` column does not keep as value.
    Text { padded: bool },
    /// The MD5 of the bytes.
    Bytes,
    /// PostgreSQL to PostgreSQL, the same type on both sides; a row of
    /// them is hashed whole (see [`ChecksumSql::row_hash`]).
    Native(NativeHash),
}

/// How a column enters PostgreSQL's hash of a whole row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeHash {
    /// The type's own hash, which tells every two distinct values apart.
    Exact,
    /// Text: its own hash under the byte-wise collation `C`, as a
    /// case-insensitive collation's hash would make `a` and `A` alike.
    Collated,
    /// Its text output: the type's hash would make distinct values alike
    /// (`1.0` and `1.00`, `-0` and `0`, `1 day` and `24 hours`).
    ViaText,
}

/// One column of the row text: its name on the side the SQL is for.
#[derive(Debug, Clone, Copy)]
pub struct HashedColumn<'a> {
    pub name: &'a str,
    pub form: FieldForm,
}

/// The largest value of a key's hash ([`ChecksumSql::key_hash`]): the low
/// 31 bits, so bucket arithmetic never overflows on either side.
pub const KEY_HASH_MAX: i64 = i32::MAX as i64;

/// How one dialect writes the pieces of a checksum query. Each dialect's
/// crate implements it; the engine assembles the query from the pieces, so
/// the query's shape is written once and each dialect's SQL lives with it.
pub trait ChecksumSql {
    /// The expression of a row's hash, a signed 64-bit integer; `None`
    /// when a column's form cannot be rendered in this dialect.
    fn row_hash(&self, columns: &[HashedColumn<'_>]) -> Option<String>;

    /// The expression of a key's hash: a 64-bit integer in
    /// `[0, KEY_HASH_MAX]`, the same on both sides for the same key.
    fn key_hash(&self, key: &[HashedColumn<'_>]) -> Option<String>;

    /// A quoted identifier.
    fn quote(&self, name: &str) -> String;

    /// `expr` as a 64-bit integer.
    fn int8(&self, expr: &str) -> String;

    /// The three bound parameters of a keyed query (lower bound, upper
    /// bound, bucket width), as 64-bit integers.
    fn parameters(&self) -> [&'static str; 3];

    /// One bucket (0) holding the whole of `table`: bucket, row count, sum
    /// of `hash` as decimal text.
    fn whole_table(&self, table: &str, hash: &str) -> String;

    /// Rows of `table` (with `filter`, empty or ` WHERE …`) grouped by the
    /// `bucket` expression: bucket, row count, sum of `hash` as decimal text.
    fn grouped(&self, table: &str, bucket: &str, hash: &str, filter: &str) -> String;
}

/// How a SQL Server hashes a string's UTF-8 bytes, found by asking the
/// server (the probes in the SQL Server crate) rather than by its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MssqlStrings {
    /// A UTF-8 collation (SQL Server 2019 and later) turns the text into
    /// UTF-8 `varchar`, whose bytes `HASHBYTES` takes.
    Utf8Collation,
    /// `HASHBYTES` of an `nvarchar` already takes UTF-8 bytes (Babelfish,
    /// which stores text as UTF-8).
    NvarcharBytes,
}

/// The dialect a checksum query is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumDialect {
    /// SQL Server; `strings` is `None` on a server with no way to hash
    /// UTF-8 (before 2019), which then hashes no text. `interpreted` for
    /// Babelfish, whose T-SQL functions run through a translation layer:
    /// hashing a row there costs several times reading it (measured in
    /// docs/BENCHMARKS.md), so checksums are used only when asked for.
    Mssql { strings: Option<MssqlStrings>, interpreted: bool },
    /// PostgreSQL 11 or later with a UTF-8 database (`md5(text)` hashes
    /// the database's bytes; `hashtextextended` arrived in 11);
    /// `record_hash` when both sides have `hash_record_extended` (14).
    Postgres { record_hash: bool },
}

/// One bucket's row count and hash sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSum {
    pub bucket: i64,
    pub rows: i64,
    /// The sum in decimal; `None` only for an empty table.
    pub sum: Option<String>,
}

/// Key values `[lo, hi]` split into buckets of `width` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub lo: i64,
    pub hi: i64,
    pub width: i64,
}

impl Buckets {
    /// `[lo, hi]` in about `parts` buckets; `None` when the span does not
    /// fit in 64 bits (such a key is compared row by row).
    pub fn split(lo: i64, hi: i64, parts: i64) -> Option<Buckets> {
        let span = hi.checked_sub(lo)?.checked_add(1)?;
        if span <= 0 {
            return None;
        }
        let parts = parts.clamp(1, span);
        Some(Buckets { lo, hi, width: span / parts + i64::from(span % parts != 0) })
    }

    /// The key values of bucket `b`.
    pub fn range(&self, b: i64) -> (i64, i64) {
        let from = self.lo.saturating_add(b.saturating_mul(self.width));
        let to = from.saturating_add(self.width - 1).min(self.hi);
        (from, to)
    }
}
