//! The PostgreSQL side of a checksummed comparison: whether a session can
//! take part, the SQL of each value form, row and key hash ([`PgChecksum`]),
//! and running the bucket queries the engine assembles. The engine's
//! `deep::checksum` says why the forms are what they are.

use mssql_pg_migrate_dialect::checksum::{
    BucketSum, Buckets, ChecksumDialect, ChecksumSql, FieldForm, HashedColumn, KEY_HASH_MAX, NativeHash,
};
use mssql_pg_migrate_schema::ident::quote_pg;
use tokio_postgres::types::Type;

/// Whether a PostgreSQL session can checksum (the engine's `deep::checksum`): only a UTF-8
/// database hashes text as the UTF-8 bytes SQL Server is asked for, and
/// `hashtextextended` needs PostgreSQL 11 (`hash_record_extended`, 14).
pub async fn session_checksum_dialect(
    client: &tokio_postgres::Client,
) -> Result<Option<ChecksumDialect>, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT current_setting('server_encoding'), current_setting('server_version_num')::int4", &[])
        .await?;
    let encoding: String = row.try_get(0)?;
    let version: i32 = row.try_get(1)?;
    let record_hash = version >= 140_000;
    Ok((encoding == "UTF8" && version >= 110_000).then_some(ChecksumDialect::Postgres { record_hash }))
}

/// Runs a PostgreSQL query from the engine's `deep::checksum::bucket_sql`.
pub async fn bucket_sums(
    client: &tokio_postgres::Client,
    sql: &str,
    buckets: Option<Buckets>,
) -> Result<Vec<BucketSum>, tokio_postgres::Error> {
    // The planner takes every key for its own group (it cannot know the
    // buckets are few) and would sort the whole table, spilling to disk;
    // hashing the few groups stays in memory.
    client.batch_execute("BEGIN; SET LOCAL enable_sort = off").await?;
    let query = async {
        let Some(b) = buckets else { return client.query(sql, &[]).await };
        // Typed, as a query over a key's hash has no use for the upper bound.
        let statement = client.prepare_typed(sql, &[Type::INT8, Type::INT8, Type::INT8]).await?;
        client.query(&statement, &[&b.lo, &b.hi, &b.width]).await
    };
    let rows = query.await;
    let end = client.batch_execute(if rows.is_ok() { "COMMIT" } else { "ROLLBACK" }).await;
    let rows = rows?;
    end?;
    rows.iter().map(|r| Ok(BucketSum { bucket: r.try_get(0)?, rows: r.try_get(1)?, sum: r.try_get(2)? })).collect()
}

/// The first 8 bytes of an `md5()` result (hex) as text.
fn hash_text(md5: &str) -> String {
    format!("('x' || left({md5}, 16))::bit(64)::int8::text")
}

/// The row text's field for one column on PostgreSQL.
fn field(column: &HashedColumn<'_>) -> String {
    use FieldForm as F;
    let c = quote_pg(column.name);
    // Infinite values (never from SQL Server) keep their text, which no
    // number or date of the other forms looks like.
    let finite = |rendered: String| format!("CASE WHEN isfinite({c}) THEN {rendered} ELSE {c}::text END");
    let micros = |value: &str| {
        format!(
            "(({value})::date - DATE '0001-01-01')::int8 * 86400000000 \
             + (extract(epoch FROM ({value})::time) * 1000000)::int8"
        )
    };
    match column.form {
        F::Integer | F::Decimal { .. } => format!("{c}::text"),
        F::Boolean => format!("{c}::int4::text"),
        F::Float8 => format!("('x' || encode(float8send({c}), 'hex'))::bit(64)::int8::text"),
        F::Float4 => format!("('x' || encode(float4send({c}), 'hex'))::bit(32)::int4::text"),
        F::Date => finite(format!("({c} - DATE '0001-01-01')::text")),
        F::Time => format!("(extract(epoch FROM {c}) * 1000000)::int8::text"),
        F::Timestamp | F::DateTimeMillis => finite(format!("({})::text", micros(&c))),
        F::TimestampUtc => finite(format!("({})::text", micros(&format!("{c} AT TIME ZONE 'UTC'")))),
        F::Uuid => format!("upper({c}::text)"),
        // bpchar's text drops the padding.
        F::Text { .. } => hash_text(&format!("md5({c}::text)")),
        F::Bytes => hash_text(&format!("md5({c})")),
        // Only a row of native columns is hashed, as one record.
        F::Native(_) => format!("quote_nullable({c}::text)"),
    }
}

/// The row text of `columns` on PostgreSQL.
fn row_text(columns: &[HashedColumn<'_>]) -> String {
    let fields: Vec<String> = columns.iter().map(|c| format!("coalesce({}, 'N')", field(c))).collect();
    if fields.is_empty() { "''".to_owned() } else { fields.join(" || '|' || ") }
}

/// PostgreSQL on both sides: `columns` hashed by the server's own 64-bit
/// hashes (an `int8`), which hash partitioning keeps stable across
/// versions. Field by field with each type's hash where it is exact (40%
/// cheaper than rendering text); before 14, the row's text output (quoted
/// where a value needs it, so fields cannot run together), at a third of
/// MD5's cost.
fn native_hash(columns: &[HashedColumn<'_>], record_hash: bool) -> String {
    if record_hash {
        let fields: Vec<String> = columns
            .iter()
            .map(|c| {
                let q = quote_pg(c.name);
                match c.form {
                    FieldForm::Native(NativeHash::Collated) => format!("{q} COLLATE \"C\""),
                    FieldForm::Native(NativeHash::ViaText) => format!("{q}::text"),
                    _ => q,
                }
            })
            .collect();
        format!("hash_record_extended(ROW({}), 0)", fields.join(", "))
    } else {
        let names: Vec<String> = columns.iter().map(|c| quote_pg(c.name)).collect();
        format!("hashtextextended(ROW({})::text, 0)", names.join(", "))
    }
}

/// The PostgreSQL of a checksum query's pieces; `record_hash` when both
/// sides have `hash_record_extended` (14).
#[derive(Debug, Clone, Copy)]
pub struct PgChecksum {
    pub record_hash: bool,
}

impl ChecksumSql for PgChecksum {
    fn row_hash(&self, columns: &[HashedColumn<'_>]) -> Option<String> {
        Some(if all_native(columns) {
            native_hash(columns, self.record_hash)
        } else {
            format!("('x' || left(md5({}), 16))::bit(64)::int8", row_text(columns))
        })
    }

    fn key_hash(&self, key: &[HashedColumn<'_>]) -> Option<String> {
        Some(if all_native(key) {
            format!("({} & {KEY_HASH_MAX})", native_hash(key, self.record_hash))
        } else {
            format!("(('x' || left(md5({}), 8))::bit(32)::int4 & {KEY_HASH_MAX})::int8", row_text(key))
        })
    }

    fn quote(&self, name: &str) -> String {
        quote_pg(name)
    }

    fn int8(&self, expr: &str) -> String {
        format!("{expr}::int8")
    }

    fn parameters(&self) -> [&'static str; 3] {
        ["$1::int8", "$2::int8", "$3::int8"]
    }

    fn whole_table(&self, table: &str, hash: &str) -> String {
        format!("SELECT 0::int8, count(*), sum({hash})::text FROM {table}")
    }

    fn grouped(&self, table: &str, bucket: &str, hash: &str, filter: &str) -> String {
        format!(
            "SELECT mpm_b, count(*), sum(mpm_h)::text \
             FROM (SELECT {bucket} AS mpm_b, {hash} AS mpm_h FROM {table}{filter}) s GROUP BY mpm_b"
        )
    }
}

/// Whether every column of `columns` is hashed by the server's own hash.
fn all_native(columns: &[HashedColumn<'_>]) -> bool {
    columns.iter().all(|c| matches!(c.form, FieldForm::Native(_)))
}
