#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.
//! `PgSource`'s reads by storage blocks against a real server: a table's
//! block ranges, read chunk by chunk under the snapshot held for the run,
//! give every row once as of that snapshot, wherever updates moved rows
//! and whatever commits after it; a later snapshot takes up the ranges only
//! while the table is unchanged (a resume, or the holding connection lost).

mod common;

use bytes::Bytes;
use futures_util::SinkExt;
use mssql_pg_migrate_config::Secret;
use mssql_pg_migrate_dialect::source::{ReadColumn, ReadSpec, Source};
use mssql_pg_migrate_dialect::{Side, TransferError};
use mssql_pg_migrate_postgres::pool::{PgEndpoint, PgPool};
use mssql_pg_migrate_postgres::reader::{PgSource, RawValue};
use mssql_pg_migrate_schema::ColumnType;
use mssql_pg_migrate_testkit::{PgCluster, SUPERUSER};
use mssql_pg_migrate_typemap::PgType;

fn spec() -> ReadSpec {
    let column = |name: &str, ty: PgType| ReadColumn {
        source_name: name.into(),
        source_type: ColumnType::Postgres(ty),
        target: ty,
    };
    ReadSpec {
        schema: "s".into(),
        table: "t".into(),
        columns: vec![column("id", PgType::Integer), column("v", PgType::Text)],
        key: vec![0],
        label: "s.t".into(),
        widest_row: Default::default(),
        changed_since: None,
        within_buckets: None,
        min_chunk_bytes: 0,
    }
}

/// 3,000 rows, every seventh updated after the load, so that the heap is
/// not in key order; and `s.expected`, a copy of them.
const TABLE: &str = "CREATE SCHEMA s;
    CREATE TABLE s.t (id int PRIMARY KEY, v text);
    INSERT INTO s.t SELECT i, repeat('x', i % 50) || i FROM generate_series(1, 3000) AS i;
    UPDATE s.t SET v = 'moved ' || id WHERE id % 7 = 0;
    ANALYZE s.t;
    CREATE TABLE s.expected AS TABLE s.t;
    CREATE TABLE s.got (LIKE s.t);";

async fn source() -> (PgCluster, PgPool) {
    let cluster = PgCluster::start().unwrap();
    let endpoint = PgEndpoint::loopback(cluster.port(), "postgres", SUPERUSER, Secret::new(cluster.password()));
    let pool = PgPool::new(&endpoint, Side::Source, 4).unwrap();
    pool.get(Side::Source).await.unwrap().batch_execute(TABLE).await.unwrap();
    (cluster, pool)
}

async fn execute(pool: &PgPool, sql: &str) {
    pool.get(Side::Source).await.unwrap().batch_execute(sql).await.unwrap();
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    pool.get(Side::Source).await.unwrap().query_one(sql, &[]).await.unwrap().get(0)
}

/// One chunk's read of `spec`, its COPY stream loaded into `s.got`: (rows, last block
/// as the state writes it, whether the partition is complete).
async fn read_chunk(
    spec: &ReadSpec,
    reader: &PgSource,
    pool: &PgPool,
    after: Option<&Vec<RawValue>>,
    upto: Option<&Vec<RawValue>>,
    limit: u64,
) -> Result<(u64, Vec<RawValue>, bool), TransferError> {
    let (mut sink, collect) = common::gathering_sink();
    let page = reader.read_page(spec, after, upto, Some(limit), &mut sink).await;
    sink.finish().await.unwrap();
    let bytes = collect.await.unwrap();
    let page = page?;
    let client = pool.get(Side::Source).await.unwrap();
    let copy = client.copy_in::<_, Bytes>("COPY s.got FROM STDIN (FORMAT binary)").await.unwrap();
    futures_util::pin_mut!(copy);
    copy.send(Bytes::from(bytes)).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), page.rows, "the chunk's stream holds its rows");
    Ok((page.rows, page.last_key.expect("a block chunk names its last block"), page.complete.expect("known")))
}

/// Reads partition (`after`, `upto`] to its end in chunks of `limit` rows;
/// returns the chunks' rows.
async fn read_partition(
    reader: &PgSource,
    pool: &PgPool,
    after: Option<Vec<RawValue>>,
    upto: Option<&Vec<RawValue>>,
    limit: u64,
) -> Vec<u64> {
    let mut after = after;
    let mut chunks = Vec::new();
    loop {
        let (rows, last, complete) = read_chunk(&spec(), reader, pool, after.as_ref(), upto, limit).await.unwrap();
        chunks.push(rows);
        if complete {
            return chunks;
        }
        after = Some(last);
    }
}

/// Rows in one of `s.got` and `s.expected` and not the other, counting duplicates.
async fn differences(pool: &PgPool) -> i64 {
    scalar(
        pool,
        "SELECT count(*) FROM ((TABLE s.got EXCEPT ALL TABLE s.expected) \
         UNION ALL (TABLE s.expected EXCEPT ALL TABLE s.got)) d",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_ranges_give_every_row_once_as_of_the_snapshot_wherever_rows_moved() {
    let (_cluster, pool) = source().await;
    let reader = PgSource::new(pool.clone());
    let plan = reader.block_plan(&spec(), 3).await.unwrap().expect("PostgreSQL 14 or later reads by blocks");
    assert_eq!(plan.bounds.len(), 2, "three partitions");
    assert!(plan.basis.starts_with("snapshot xmin "), "{}", plan.basis);
    // Committed after the snapshot: none of it may show.
    execute(
        &pool,
        "UPDATE s.t SET v = 'changed' WHERE id % 5 = 0; DELETE FROM s.t WHERE id % 11 = 0;
         INSERT INTO s.t SELECT i, 'new' FROM generate_series(5001, 5500) AS i;",
    )
    .await;

    let mut chunks = Vec::new();
    let mut after = None;
    for upto in plan.bounds.iter().map(Some).chain([None]) {
        chunks.push(read_partition(&reader, &pool, after.clone(), upto, 400).await);
        after = upto.cloned();
    }
    assert_eq!(differences(&pool).await, 0, "exactly the rows as of the snapshot");
    assert_eq!(scalar(&pool, "SELECT count(*) FROM s.got").await, 3000);
    let total: u64 = chunks.iter().flatten().sum();
    assert_eq!(total, 3000);
    assert!(chunks.iter().all(|partition| partition.len() >= 2), "partitions read in several chunks: {chunks:?}");
    // Sized by the rows a block holds (from the catalog, then as met): near 400.
    assert!(chunks.iter().flatten().all(|&rows| rows <= 800), "{chunks:?}");
    assert!(
        PgSource::key_to_state(&plan.bounds[0]).starts_with("block "),
        "{}",
        PgSource::key_to_state(&plan.bounds[0])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_snapshot_takes_up_the_ranges_only_of_an_unchanged_table() {
    let (_cluster, pool) = source().await;
    let first = PgSource::new(pool.clone());
    let plan = first.block_plan(&spec(), 2).await.unwrap().unwrap();
    let (rows, last, complete) = read_chunk(&spec(), &first, &pool, None, Some(&plan.bounds[0]), 500).await.unwrap();
    assert!(rows > 0 && !complete);
    drop(first); // its snapshot goes with it, as with a killed run

    // A resume: nothing changed, so the ranges go on under a new snapshot.
    let resumed = PgSource::new(pool.clone());
    assert!(resumed.resume_block_read(&spec(), &plan.basis).await.unwrap(), "unchanged");
    read_partition(&resumed, &pool, Some(last), Some(&plan.bounds[0]), 500).await;
    read_partition(&resumed, &pool, Some(plan.bounds[0].clone()), None, 500).await;
    assert_eq!(differences(&pool).await, 0);

    // One row updated, even to the same value: its new version may lie in
    // a range not read yet while the old one was read.
    execute(&pool, "UPDATE s.t SET v = v WHERE id = 1500").await;
    let after_update = PgSource::new(pool.clone());
    assert!(!after_update.resume_block_read(&spec(), &plan.basis).await.unwrap(), "an update is a change");

    // Rewritten (VACUUM FULL keeps the row versions but moves them).
    let (_cluster2, pool2) = source().await;
    let before = PgSource::new(pool2.clone());
    let basis = before.block_plan(&spec(), 2).await.unwrap().unwrap().basis;
    execute(&pool2, "VACUUM FULL s.t").await;
    let rewritten = PgSource::new(pool2.clone());
    assert!(!rewritten.resume_block_read(&spec(), &basis).await.unwrap(), "a rewrite is a change");

    let err = rewritten.resume_block_read(&spec(), "snapshot xmin ten").await.unwrap_err();
    assert!(matches!(&err, TransferError::State(m) if m.contains("s.t") && m.contains("is not")), "{err}");
}

/// Ends the session holding the run's snapshot, as a restart or a network
/// cut would, and waits until the client has seen it go.
async fn end_the_holding_session(pool: &PgPool) {
    let ended = scalar(
        pool,
        "SELECT count(pg_terminate_backend(pid))::int8 FROM pg_stat_activity \
         WHERE state = 'idle in transaction' AND query LIKE '%pg_export_snapshot%'",
    )
    .await;
    assert_eq!(ended, 1, "one session holds the snapshot");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_snapshot_is_replaced_while_the_table_is_unchanged_and_a_change_stops_the_read() {
    let (_cluster, pool) = source().await;
    let reader = PgSource::new(pool.clone());
    let plan = reader.block_plan(&spec(), 1).await.unwrap().unwrap();
    assert!(plan.bounds.is_empty());
    let (_, mut after, _) = read_chunk(&spec(), &reader, &pool, None, None, 300).await.unwrap();

    end_the_holding_session(&pool).await;
    let (_, last, complete) = read_chunk(&spec(), &reader, &pool, Some(&after), None, 300).await.unwrap();
    assert!(!complete);
    after = last;

    end_the_holding_session(&pool).await;
    execute(&pool, "INSERT INTO s.t VALUES (9001, 'late')").await;
    let err = read_chunk(&spec(), &reader, &pool, Some(&after), None, 300).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("s.t") && message.contains("`resume` copies the table again"), "{message}");

    // Without the change the read would have gone on to the exact rows.
    execute(&pool, "DELETE FROM s.t WHERE id = 9001; TRUNCATE s.got").await;
    let again = PgSource::new(pool.clone());
    let plan = again.block_plan(&spec(), 1).await.unwrap().unwrap();
    assert!(plan.bounds.is_empty());
    read_partition(&again, &pool, None, None, 300).await;
    assert_eq!(differences(&pool).await, 0);
}

/// The block a chunk ended at, from its key as the state writes it.
fn last_block(key: &[RawValue]) -> i64 {
    let text = PgSource::key_to_state(&key.to_vec());
    text.strip_prefix("block ").and_then(|b| b.parse().ok()).unwrap_or_else(|| panic!("{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_of_narrow_rows_cover_at_least_the_minimum_storage() {
    let (_cluster, pool) = source().await;
    let block_bytes = scalar(&pool, "SELECT current_setting('block_size')::int8").await;
    let blocks = scalar(&pool, "SELECT pg_relation_size('s.t') / current_setting('block_size')::int8").await;
    assert!(blocks > 12, "the table spans {blocks} blocks, enough for a few chunks of 4");
    let reader = PgSource::new(pool.clone());
    reader.block_plan(&spec(), 1).await.unwrap().expect("PostgreSQL 14 or later reads by blocks");
    let floor = ReadSpec { min_chunk_bytes: u64::try_from(4 * block_bytes).unwrap(), ..spec() };
    // 20 rows are a fraction of a block: the floor decides, after the
    // first chunk, which probes the rows' width with the row limit alone.
    let mut after: Option<Vec<RawValue>> = None;
    let mut spans = Vec::new();
    loop {
        let (rows, last, complete) = read_chunk(&floor, &reader, &pool, after.as_ref(), None, 20).await.unwrap();
        assert!(rows > 0);
        if complete {
            break;
        }
        let first = after.as_deref().map_or(0, |a| last_block(a) + 1);
        spans.push(last_block(&last) - first + 1);
        after = Some(last);
    }
    assert_eq!(spans.first(), Some(&1), "the probe reads the first block alone: {spans:?}");
    assert!(spans.iter().skip(1).all(|&s| s == 4), "four blocks a chunk after the probe: {spans:?}");
    assert!(spans.len() >= 3, "{spans:?}");
    assert_eq!(differences(&pool).await, 0, "every row once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_redone_to_the_end_leaves_nothing_after_it() {
    let (_cluster, pool) = source().await;
    let reader = PgSource::new(pool.clone());
    reader.block_plan(&spec(), 1).await.unwrap().expect("PostgreSQL 14 or later reads by blocks");
    // The table to its end (a probe chunk, then the rest), then the read
    // the engine makes after redoing the last chunk (its commit in doubt),
    // which never closes the partition itself.
    let (mut after, mut total) = (None, 0);
    let last = loop {
        let (rows, last, complete) =
            read_chunk(&spec(), &reader, &pool, after.as_ref(), None, 1_000_000).await.unwrap();
        total += rows;
        if complete {
            break last;
        }
        after = Some(last);
    };
    assert_eq!(total, 3000);
    let (rows, after_last, complete) = read_chunk(&spec(), &reader, &pool, Some(&last), None, 1_000_000).await.unwrap();
    assert_eq!((rows, complete), (0, true), "nothing after the table's end, and the partition is done");
    assert_eq!(after_last, last);
    assert_eq!(differences(&pool).await, 0, "every row once");
}
