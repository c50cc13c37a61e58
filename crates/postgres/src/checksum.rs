//! The PostgreSQL side of a checksummed comparison: whether a session can
//! take part, and running the bucket queries the engine writes.

use mssql_pg_migrate_dialect::checksum::{BucketSum, Buckets, ChecksumDialect};
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
