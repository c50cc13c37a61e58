//! The pure half of checksummed comparison: the SQL with which each server
//! hashes its own rows, so equal tables are proven equal without a row
//! crossing the network.
//!
//! Each side renders every value of a row as ASCII text in one canonical
//! form per type ([`FieldForm`]), joins the fields with `|` (a NULL is
//! `N`, which no form produces), and takes the first 8 bytes of the MD5 of
//! that text as a signed integer. A chunk's checksum is its row count and
//! the sum of its rows' hashes, so rows may be summed in any order and a
//! duplicated row counts twice. Both engines compute MD5 and read 8
//! big-endian bytes as a signed integer alike, and ASCII text is the same
//! bytes in every encoding, so equal rows give equal hashes.
//!
//! Strings and binary values enter the row text as the hash of their bytes
//! (UTF-8 for strings), rendered in decimal: SQL Server hashes an
//! `nvarchar` as UTF-16, so each dialect says how it gets UTF-8 bytes
//! ([`MssqlStrings`]), and a server with no way is not asked to hash strings.
//!
//! Between two PostgreSQL servers the row is hashed by the server's own
//! 64-bit hash functions instead ([`FieldForm::Native`]), at a fraction of
//! MD5's cost.
//!
//! A checksum is only ever a filter: chunks whose checksums agree are
//! equal; the rows of chunks that disagree are fetched and compared value
//! by value ([`super::compare`]), which alone reports differences. A form
//! that renders equal values differently on the two sides therefore costs
//! time, never a false difference; a form must never render different
//! values alike, except where the type mapping documents them as equal
//! (char padding, datetime2's 100 ns digit, datetime's 1/300 s ticks).
//!
//! ```
//! use mssql_pg_migrate_schema::ColumnType;
//! use mssql_pg_migrate_transfer::deep::checksum::{BucketKey, ChecksumDialect, HashedColumn, MssqlStrings, Scope, bucket_sql, form_of};
//! use mssql_pg_migrate_typemap::{MssqlType, PgType};
//!
//! // A datetime2 column copied to timestamp: microseconds on both sides.
//! let form = form_of(&ColumnType::Mssql(MssqlType::DateTime2 { scale: 7 }), PgType::Timestamp(None)).unwrap();
//! let column = [HashedColumn { name: "Created", form }];
//! let sql_server = ChecksumDialect::Mssql { strings: Some(MssqlStrings::Utf8Collation), interpreted: false };
//! let ours = bucket_sql(sql_server, "[dbo].[t]", Some((BucketKey::Integer("Id"), Scope::Whole)), &column).unwrap();
//! let theirs = bucket_sql(ChecksumDialect::Postgres { record_hash: true }, "\"dbo\".\"t\"", Some((BucketKey::Integer("Id"), Scope::Whole)), &column)
//!     .unwrap();
//! assert!(ours.contains("DATEDIFF_BIG(microsecond") && ours.contains("HASHBYTES('MD5'"));
//! assert!(theirs.contains("extract(epoch") && theirs.contains("md5("));
//! ```

pub use mssql_pg_migrate_dialect::checksum::{
    BucketSum, Buckets, ChecksumDialect, ChecksumSql, FieldForm, HashedColumn, KEY_HASH_MAX, MssqlStrings, NativeHash,
};
use mssql_pg_migrate_mssql::checksum::TsqlChecksum;
use mssql_pg_migrate_postgres::checksum::PgChecksum;
use mssql_pg_migrate_schema::ColumnType;
use mssql_pg_migrate_typemap::{MssqlType, PgType};

/// The form a column is hashed in, given its source type and the target
/// type a run wrote it as; `None` where no form renders both sides alike
/// (the table is then compared row by row).
pub fn form_of(source: &ColumnType, target: PgType) -> Option<FieldForm> {
    match source {
        ColumnType::Mssql(s) => mssql_form(s, target),
        // From PostgreSQL the target type is the source's own, so one
        // rendering serves both sides.
        ColumnType::Postgres(s) if *s == target => pg_form(target),
        _ => None,
    }
}

fn mssql_form(source: &MssqlType, target: PgType) -> Option<FieldForm> {
    use FieldForm as F;
    let timestamp = matches!(target, PgType::Timestamp(None | Some(6)));
    Some(match (source, target) {
        (
            MssqlType::TinyInt | MssqlType::SmallInt | MssqlType::Int | MssqlType::BigInt,
            PgType::SmallInt | PgType::Integer | PgType::BigInt,
        ) => F::Integer,
        (MssqlType::Bit, PgType::Boolean) => F::Boolean,
        (MssqlType::Decimal { scale, .. }, PgType::Numeric(shape)) => decimal(u16::from(*scale), shape)?,
        (MssqlType::Money | MssqlType::SmallMoney, PgType::Numeric(shape)) => decimal(4, shape)?,
        (MssqlType::Float, PgType::DoublePrecision) => F::Float8,
        (MssqlType::Real, PgType::Real) => F::Float4,
        (MssqlType::Date, PgType::Date) => F::Date,
        (MssqlType::Time { .. }, PgType::Time(None | Some(6))) => F::Time,
        (MssqlType::DateTime2 { .. } | MssqlType::SmallDateTime, _) if timestamp => F::Timestamp,
        (MssqlType::DateTime, _) if timestamp => F::DateTimeMillis,
        (MssqlType::DateTimeOffset { .. }, PgType::TimestampTz(None | Some(6))) => F::TimestampUtc,
        (MssqlType::UniqueIdentifier, PgType::Uuid) => F::Uuid,
        (
            MssqlType::Char(_)
            | MssqlType::NChar(_)
            | MssqlType::VarChar(_)
            | MssqlType::NVarChar(_)
            | MssqlType::Text
            | MssqlType::NText
            | MssqlType::Xml,
            PgType::Text | PgType::Varchar(_) | PgType::Char(_) | PgType::Xml,
        ) => F::Text { padded: matches!(target, PgType::Char(_)) },
        (MssqlType::Binary(_) | MssqlType::VarBinary(_) | MssqlType::Image | MssqlType::RowVersion, PgType::Bytea) => {
            F::Bytes
        }
        _ => return None,
    })
}

/// A decimal of `scale` fraction digits in a numeric column of `shape`,
/// which shows the same digits only when it keeps that scale.
fn decimal(scale: u16, shape: Option<(u16, u16)>) -> Option<FieldForm> {
    match shape {
        Some((_, s)) if s != scale => None,
        _ => Some(FieldForm::Decimal { scale }),
    }
}

fn pg_form(ty: PgType) -> Option<FieldForm> {
    Some(FieldForm::Native(match ty {
        PgType::SmallInt
        | PgType::Integer
        | PgType::BigInt
        | PgType::Boolean
        | PgType::Bytea
        | PgType::Date
        | PgType::Time(_)
        | PgType::Timestamp(_)
        | PgType::TimestampTz(_)
        | PgType::Uuid => NativeHash::Exact,
        PgType::Text | PgType::Varchar(_) | PgType::Char(_) => NativeHash::Collated,
        PgType::Numeric(_) | PgType::Real | PgType::DoublePrecision | PgType::Xml | PgType::Passthrough(_) => {
            NativeHash::ViaText
        }
    }))
}

/// The pieces of a checksum query as `dialect` writes them.
fn pieces(dialect: ChecksumDialect) -> Box<dyn ChecksumSql> {
    match dialect {
        ChecksumDialect::Mssql { strings, .. } => Box::new(TsqlChecksum { strings }),
        ChecksumDialect::Postgres { record_hash } => Box::new(PgChecksum { record_hash }),
    }
}

/// The expression of a row's hash (a signed 64-bit integer) in `dialect`;
/// `None` when a column's form cannot be rendered there.
pub fn row_hash_sql(dialect: ChecksumDialect, columns: &[HashedColumn<'_>]) -> Option<String> {
    pieces(dialect).row_hash(columns)
}

/// The expression of a key's hash in `dialect`: a `bigint` in
/// `[0, KEY_HASH_MAX]`, the same on both sides for the same key, by which
/// a table whose key is not one integer column is cut into buckets (its
/// key order is no use across engines: collations and uniqueidentifier
/// order differ). `None` when a key column's form cannot be rendered.
pub fn key_hash_sql(dialect: ChecksumDialect, key: &[HashedColumn<'_>]) -> Option<String> {
    pieces(dialect).key_hash(key)
}

/// A condition (the same SQL in both dialects) true for the rows whose
/// `key_hash` (from [`key_hash_sql`]) falls in one of `picked` of `buckets`.
pub fn bucket_filter_sql(key_hash: &str, buckets: Buckets, picked: &[i64]) -> String {
    // Numbers the tool computed, written as literals: the condition is
    // spliced into a page query whose parameters are numbered by its reader.
    let list = picked.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let list = if list.is_empty() { "NULL".to_owned() } else { list };
    format!("(({key_hash}) - ({})) / {} IN ({list})", buckets.lo, buckets.width)
}

/// What a keyed bucket query cuts the table by.
#[derive(Debug, Clone, Copy)]
pub enum BucketKey<'a> {
    /// A one-column integer key, by its value (its name on the side the
    /// SQL is for).
    Integer(&'a str),
    /// Any other key, by [`key_hash_sql`] of its columns; the buckets span
    /// `[0, KEY_HASH_MAX]`, so no row falls beyond them.
    Hashed(&'a [HashedColumn<'a>]),
}

/// Which rows a keyed bucket query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every row, in one scan: rows with keys outside `[p1, p2]` fall into
    /// bucket [`BEYOND`]. Written without a key condition, so the planner
    /// scans rather than walking the key's index (a table just loaded has
    /// no statistics, and a range condition would look selective).
    Whole,
    /// Only the rows whose key is in `[p1, p2]`, found through the key's index.
    Range,
}

/// The bucket of the rows outside a [`Scope::Whole`] query's key range.
pub const BEYOND: i64 = -1;

/// A query for per-bucket row counts and hash sums of `table`
/// (already quoted): with a `key`, bucketed by `(key - p1) / p3` over the
/// `scope`; without one, the whole table as bucket 0. Rows: bucket (int8),
/// count (int8), sum (decimal text, NULL for no rows). `None` when a
/// column's form cannot be rendered in `dialect`.
pub fn bucket_sql(
    dialect: ChecksumDialect,
    table: &str,
    key: Option<(BucketKey<'_>, Scope)>,
    columns: &[HashedColumn<'_>],
) -> Option<String> {
    let sql = pieces(dialect);
    let hash = sql.row_hash(columns)?;
    let [p1, p2, p3] = sql.parameters();
    let Some((key, scope)) = key else { return Some(sql.whole_table(table, &hash)) };
    // The integer key's column (compared as it is, so its index serves a
    // range) and the key as a bigint.
    let (column, k) = match key {
        BucketKey::Integer(name) => {
            let q = sql.quote(name);
            let k = sql.int8(&q);
            (Some(q), k)
        }
        BucketKey::Hashed(key) => (None, sql.key_hash(key)?),
    };
    let bucket = format!("({k} - {p1}) / {p3}");
    let (bucket, filter) = match (scope, &column) {
        (Scope::Whole, Some(q)) => {
            (format!("CASE WHEN {q} < {p1} OR {q} > {p2} THEN {BEYOND} ELSE {bucket} END"), String::new())
        }
        // Every hash is inside the buckets, and the hash is worked out
        // once per row rather than once more for a range test.
        (Scope::Whole, None) => (bucket, String::new()),
        (Scope::Range, column) => {
            let q = column.as_deref().unwrap_or(&k);
            (bucket, format!(" WHERE {q} >= {p1} AND {q} <= {p2}"))
        }
    };
    Some(sql.grouped(table, &bucket, &hash, &filter))
}

/// The buckets whose count or sum differ between the sides, or that one
/// side lacks, in order.
pub fn differing_buckets(source: &[BucketSum], target: &[BucketSum]) -> Vec<i64> {
    use std::collections::BTreeMap;
    let mut both: BTreeMap<i64, (Option<&BucketSum>, Option<&BucketSum>)> = BTreeMap::new();
    for s in source {
        both.entry(s.bucket).or_default().0 = Some(s);
    }
    for t in target {
        both.entry(t.bucket).or_default().1 = Some(t);
    }
    both.into_iter()
        .filter(|(_, (s, t))| match (s, t) {
            (Some(s), Some(t)) => s.rows != t.rows || normalized(&s.sum) != normalized(&t.sum),
            (Some(one), None) | (None, Some(one)) => one.rows != 0,
            (None, None) => false,
        })
        .map(|(b, _)| b)
        .collect()
}

/// A decimal sum as digits: SQL Server may show `123.` or `-0`.
fn normalized(sum: &Option<String>) -> Option<String> {
    sum.as_ref().map(|s| {
        let s = s.trim().trim_end_matches('.');
        if s == "-0" { "0".to_owned() } else { s.to_owned() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mssql_pg_migrate_typemap::Length;

    fn ms(t: MssqlType) -> ColumnType {
        ColumnType::Mssql(t)
    }

    #[test]
    fn each_source_type_has_the_form_its_run_conversion_keeps() {
        use FieldForm as F;
        let cases = [
            (ms(MssqlType::TinyInt), PgType::SmallInt, Some(F::Integer)),
            (ms(MssqlType::Bit), PgType::Boolean, Some(F::Boolean)),
            (
                ms(MssqlType::Decimal { precision: 18, scale: 4 }),
                PgType::Numeric(Some((18, 4))),
                Some(F::Decimal { scale: 4 }),
            ),
            // Another scale shows other digits: compared row by row.
            (ms(MssqlType::Decimal { precision: 18, scale: 4 }), PgType::Numeric(Some((20, 6))), None),
            (ms(MssqlType::Money), PgType::Numeric(Some((19, 4))), Some(F::Decimal { scale: 4 })),
            (ms(MssqlType::Float), PgType::DoublePrecision, Some(F::Float8)),
            (ms(MssqlType::Float), PgType::Real, None),
            (ms(MssqlType::DateTime2 { scale: 7 }), PgType::Timestamp(None), Some(F::Timestamp)),
            (ms(MssqlType::DateTime2 { scale: 7 }), PgType::Timestamp(Some(3)), None),
            (ms(MssqlType::DateTime), PgType::Timestamp(None), Some(F::DateTimeMillis)),
            (ms(MssqlType::DateTimeOffset { scale: 7 }), PgType::TimestampTz(None), Some(F::TimestampUtc)),
            (ms(MssqlType::DateTimeOffset { scale: 7 }), PgType::Timestamp(None), None),
            (ms(MssqlType::NChar(Length::Bounded(10))), PgType::Char(10), Some(F::Text { padded: true })),
            (ms(MssqlType::NVarChar(Length::Max)), PgType::Text, Some(F::Text { padded: false })),
            (ms(MssqlType::RowVersion), PgType::Bytea, Some(F::Bytes)),
            (ms(MssqlType::UniqueIdentifier), PgType::Uuid, Some(F::Uuid)),
            (ms(MssqlType::UniqueIdentifier), PgType::Text, None),
            (ms(MssqlType::SqlVariant), PgType::Text, None),
            (ms(MssqlType::Geography), PgType::Text, None),
            (ColumnType::Postgres(PgType::Numeric(None)), PgType::Numeric(None), Some(F::Native(NativeHash::ViaText))),
            (ColumnType::Postgres(PgType::Integer), PgType::BigInt, None),
        ];
        for (source, target, form) in cases {
            assert_eq!(form_of(&source, target), form, "{source} -> {target}");
        }
    }

    #[test]
    fn a_server_without_utf8_strings_hashes_no_text_but_hashes_other_tables() {
        let text = [HashedColumn { name: "Name", form: FieldForm::Text { padded: false } }];
        let number = [HashedColumn { name: "Id", form: FieldForm::Integer }];
        let old = ChecksumDialect::Mssql { strings: None, interpreted: false };
        assert_eq!(row_hash_sql(old, &text), None);
        assert!(row_hash_sql(old, &number).is_some());
        let new = ChecksumDialect::Mssql { strings: Some(MssqlStrings::Utf8Collation), interpreted: false };
        assert!(row_hash_sql(new, &text).unwrap().contains("_UTF8"));
    }

    #[test]
    fn postgres_to_postgres_hashes_the_row_with_the_servers_own_hashes() {
        let columns = [
            HashedColumn { name: "Id", form: FieldForm::Native(NativeHash::Exact) },
            HashedColumn { name: "Body", form: FieldForm::Native(NativeHash::Collated) },
            HashedColumn { name: "Price", form: FieldForm::Native(NativeHash::ViaText) },
        ];
        let sql = row_hash_sql(ChecksumDialect::Postgres { record_hash: false }, &columns).unwrap();
        assert_eq!(sql, "hashtextextended(ROW(\"Id\", \"Body\", \"Price\")::text, 0)");
        let sql = row_hash_sql(ChecksumDialect::Postgres { record_hash: true }, &columns).unwrap();
        assert_eq!(sql, "hash_record_extended(ROW(\"Id\", \"Body\" COLLATE \"C\", \"Price\"::text), 0)");
        assert_eq!(row_hash_sql(ChecksumDialect::Mssql { strings: None, interpreted: false }, &columns), None);
    }

    #[test]
    fn names_are_quoted_on_both_sides() {
        let columns = [HashedColumn { name: "we]ird\"name", form: FieldForm::Integer }];
        let ms = bucket_sql(
            ChecksumDialect::Mssql { strings: None, interpreted: false },
            "[dbo].[t]",
            Some((BucketKey::Integer("k]ey"), Scope::Range)),
            &columns,
        )
        .unwrap();
        assert!(ms.contains("[we]]ird\"name]") && ms.contains("[k]]ey]"), "{ms}");
        let whole = Some((BucketKey::Integer("k\"ey"), Scope::Whole));
        let pg =
            bucket_sql(ChecksumDialect::Postgres { record_hash: true }, "\"public\".\"t\"", whole, &columns).unwrap();
        assert!(pg.contains("\"we]ird\"\"name\"") && pg.contains("\"k\"\"ey\""), "{pg}");
        assert!(!pg.contains("WHERE"), "a whole-table scan has no key condition for the planner to use: {pg}");
    }

    #[test]
    fn a_key_that_is_not_one_integer_is_bucketed_by_a_31_bit_hash_worked_out_once_per_row() {
        let key = [
            HashedColumn { name: "Region", form: FieldForm::Text { padded: true } },
            HashedColumn { name: "Id", form: FieldForm::Uuid },
        ];
        let columns = [key[0], key[1], HashedColumn { name: "Total", form: FieldForm::Decimal { scale: 2 } }];
        let ms = ChecksumDialect::Mssql { strings: Some(MssqlStrings::Utf8Collation), interpreted: false };
        let pg = ChecksumDialect::Postgres { record_hash: true };
        let ms_key = key_hash_sql(ms, &key).unwrap();
        assert!(ms_key.starts_with("CAST(CAST(SUBSTRING(HASHBYTES('MD5', ") && ms_key.contains("AS int) & 2147483647"));
        assert!(ms_key.contains("RTRIM(") && ms_key.contains("CONVERT(varchar(36), [Id])"), "{ms_key}");
        let pg_key = key_hash_sql(pg, &key).unwrap();
        assert!(pg_key.contains("left(md5(") && pg_key.contains("::bit(32)::int4 & 2147483647)::int8"), "{pg_key}");
        assert!(pg_key.contains("upper(\"Id\"::text)"), "{pg_key}");
        for (dialect, hash) in [(ms, &ms_key), (pg, &pg_key)] {
            let sql = bucket_sql(dialect, "t", Some((BucketKey::Hashed(&key), Scope::Whole)), &columns).unwrap();
            assert_eq!(sql.matches(hash.as_str()).count(), 1, "the key's hash once per row: {sql}");
            assert!(!sql.contains("CASE WHEN") && !sql.contains("WHERE"), "no row is beyond: {sql}");
        }
        let native = [HashedColumn { name: "Code", form: FieldForm::Native(NativeHash::Collated) }];
        assert_eq!(
            key_hash_sql(pg, &native).unwrap(),
            "(hash_record_extended(ROW(\"Code\" COLLATE \"C\"), 0) & 2147483647)"
        );
        let old = ChecksumDialect::Mssql { strings: None, interpreted: false };
        assert_eq!(key_hash_sql(old, &key), None, "a server that cannot hash text cannot hash a text key");
    }

    #[test]
    fn a_bucket_filter_picks_buckets_of_the_hash() {
        let buckets = Buckets::split(0, KEY_HASH_MAX, 1 << 12).unwrap();
        assert_eq!(buckets.width, 1 << 19);
        assert_eq!(bucket_filter_sql("h", buckets, &[3, 17]), "((h) - (0)) / 524288 IN (3, 17)");
        assert_eq!(bucket_filter_sql("h", buckets, &[]), "((h) - (0)) / 524288 IN (NULL)", "picks nothing");
        let negative = Buckets { lo: -5, hi: 5, width: 2 };
        assert_eq!(bucket_filter_sql("h", negative, &[0]), "((h) - (-5)) / 2 IN (0)");
    }

    #[test]
    fn buckets_cover_the_span_without_overflow() {
        let b = Buckets::split(1, 100, 8).unwrap();
        assert_eq!(b.width, 13);
        assert_eq!(b.range(0), (1, 13));
        assert_eq!(b.range(7), (92, 100));
        let whole = Buckets::split(i64::MIN, i64::MAX, 4);
        assert_eq!(whole, None, "a span wider than 64 bits");
        let edge = Buckets::split(i64::MAX - 9, i64::MAX, 3).unwrap();
        assert_eq!(edge.range(2), (i64::MAX - 1, i64::MAX));
        assert_eq!(Buckets::split(5, 5, 100).unwrap().range(0), (5, 5));
    }

    #[test]
    fn buckets_differ_by_count_sum_or_absence() {
        let b = |bucket, rows, sum: &str| BucketSum { bucket, rows, sum: Some(sum.to_owned()) };
        let source = [b(0, 10, "123"), b(1, 10, "5"), b(2, 10, "-7"), b(4, 1, "0")];
        let target = [b(0, 10, "123."), b(1, 9, "5"), b(2, 10, "-8"), b(3, 1, "9"), b(4, 1, "-0")];
        assert_eq!(differing_buckets(&source, &target), vec![1, 2, 3]);
    }
}
