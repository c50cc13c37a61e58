#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.
//! `PgSource::read_page` into a PostgreSQL target's sink, against a real
//! server: a page passed on as the server's own COPY rows and a page read
//! through the portal give the target the same bytes, which are exactly
//! what the server's `COPY (…) TO STDOUT (FORMAT binary)` of that page
//! sends; each page ends at its last key, a table's first page reads its
//! first rows through the portal and the rest as COPY, and wide rows keep
//! to the portal.

mod common;

use bytes::Bytes;
use futures_util::StreamExt;
use mssql_pg_migrate_config::Secret;
use mssql_pg_migrate_dialect::Side;
use mssql_pg_migrate_dialect::source::{ReadColumn, ReadSpec, Source};
use mssql_pg_migrate_postgres::pool::{PgEndpoint, PgPool};
use mssql_pg_migrate_postgres::reader::{PgSource, RawValue};
use mssql_pg_migrate_schema::ColumnType;
use mssql_pg_migrate_testkit::{PgCluster, SUPERUSER};
use mssql_pg_migrate_typemap::PgType;
use std::sync::atomic::Ordering;

const PAGE_ROWS: u64 = 700;

fn spec(columns: &[(&str, PgType)]) -> ReadSpec {
    ReadSpec {
        schema: "s".into(),
        table: "t".into(),
        columns: columns
            .iter()
            .map(|(name, ty)| ReadColumn {
                source_name: (*name).into(),
                source_type: ColumnType::Postgres(*ty),
                target: *ty,
            })
            .collect(),
        key: vec![0],
        label: "s.t".into(),
        widest_row: Default::default(),
        changed_since: None,
        within_buckets: None,
        min_chunk_bytes: 0,
    }
}

async fn source(sql: &str) -> (PgCluster, PgPool) {
    let cluster = PgCluster::start().unwrap();
    let endpoint = PgEndpoint::loopback(cluster.port(), "postgres", SUPERUSER, Secret::new(cluster.password()));
    let pool = PgPool::new(&endpoint, Side::Source, 2).unwrap();
    pool.get(Side::Source).await.unwrap().batch_execute(sql).await.unwrap();
    (cluster, pool)
}

/// One page through a target's sink: the bytes the writer would get, the
/// rows and the last key.
async fn read_page(
    reader: &PgSource,
    spec: &ReadSpec,
    after: Option<&Vec<RawValue>>,
) -> (Vec<u8>, u64, Option<Vec<RawValue>>) {
    read_page_of(reader, spec, after, PAGE_ROWS).await
}

async fn read_page_of(
    reader: &PgSource,
    spec: &ReadSpec,
    after: Option<&Vec<RawValue>>,
    limit: u64,
) -> (Vec<u8>, u64, Option<Vec<RawValue>>) {
    let (mut sink, collect) = common::gathering_sink();
    let page = reader.read_page(spec, after, None, Some(limit), &mut sink).await.unwrap();
    sink.finish().await.unwrap();
    (collect.await.unwrap(), page.rows, page.last_key)
}

/// What the server itself sends for the page after `after`.
async fn server_copy(pool: &PgPool, columns: &str, after: i64) -> Vec<u8> {
    server_copy_of(pool, columns, after, PAGE_ROWS).await
}

async fn server_copy_of(pool: &PgPool, columns: &str, after: i64, limit: u64) -> Vec<u8> {
    let client = pool.get(Side::Source).await.unwrap();
    let sql = format!(
        "COPY (SELECT {columns} FROM s.t WHERE id > {after} ORDER BY id LIMIT {limit}) TO STDOUT (FORMAT binary)"
    );
    let stream = client.copy_out(sql.as_str()).await.unwrap();
    let parts: Vec<Bytes> = stream.map(|part| part.unwrap()).collect().await;
    parts.concat()
}

fn int_of(key: &[RawValue]) -> i64 {
    let [value] = key else { panic!("one key part: {key:?}") };
    assert_eq!(value.ty, tokio_postgres::types::Type::INT4, "the key column's type");
    i64::from(i32::from_be_bytes(value.bytes[..].try_into().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_pages_and_portal_pages_give_the_target_the_servers_own_rows() {
    // Ids with gaps; text with multi-byte characters; NULLs; a numeric and
    // a timestamp, whose binary forms are not their text.
    let (_cluster, pool) = source(
        "CREATE SCHEMA s;
         CREATE TABLE s.t (id int PRIMARY KEY, name text, amount numeric(12, 3), at timestamptz, flag boolean);
         INSERT INTO s.t SELECT i * 3, CASE WHEN i % 7 = 0 THEN NULL ELSE repeat('é€x', i % 40) END,
                i * 1.25 - 400, timestamptz '2020-01-01 00:00:00+00' + i * interval '1 minute', i % 2 = 0
         FROM generate_series(1, 2000) AS i;",
    )
    .await;
    let reader = PgSource::new(pool.clone());
    let spec = spec(&[
        ("id", PgType::Integer),
        ("name", PgType::Text),
        ("amount", PgType::Numeric(Some((12, 3)))),
        ("at", PgType::TimestampTz(None)),
        ("flag", PgType::Boolean),
    ]);
    let columns = "id, name, amount, at, flag";

    let mut after: Option<Vec<RawValue>> = None;
    let mut pages = Vec::new();
    loop {
        let from = after.as_deref().map_or(0, int_of);
        let (bytes, rows, last) = read_page(&reader, &spec, after.as_ref()).await;
        assert_eq!(bytes, server_copy(&pool, columns, from).await, "the page after id {from}");
        pages.push((rows, last.as_deref().map(int_of), spec.widest_row.load(Ordering::Relaxed)));
        if rows < PAGE_ROWS {
            break;
        }
        after = last;
    }
    let rows_and_ends: Vec<(u64, Option<i64>)> = pages.iter().map(|&(rows, end, _)| (rows, end)).collect();
    assert_eq!(rows_and_ends, [(700, Some(2100)), (700, Some(4200)), (600, Some(6000))]);
    // The portal measures a row by its fields' bytes; a COPY row also
    // counts its field count and lengths (2 + 5 × 4 bytes). So the second
    // page went as COPY, once the first had shown the rows to be narrow.
    let client = pool.get(Side::Source).await.unwrap();
    let widest = client
        .query_one(
            "SELECT max(fields) FILTER (WHERE id <= 2100), max(fields) FILTER (WHERE id > 2100 AND id <= 4200)
             FROM (SELECT id, octet_length(int4send(id)) + coalesce(octet_length(textsend(name)), 0)
                       + octet_length(numeric_send(amount)) + octet_length(timestamptz_send(at))
                       + octet_length(boolsend(flag)) AS fields FROM s.t) AS r",
            &[],
        )
        .await
        .unwrap();
    let (first, second) = (widest.get::<_, i32>(0) as usize, widest.get::<_, i32>(1) as usize);
    assert_eq!(pages[0].2, first, "the first page, through the portal");
    assert_eq!(pages[1].2, first.max(second + 2 + 5 * 4), "the second page, as COPY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_page_learns_the_row_width_from_its_first_rows_then_reads_the_rest_as_copy() {
    // Row i's text is i % 50 + 1 characters long, so the widest of the
    // first 1,024 rows (51 characters) is narrower than the widest after
    // them, when that is measured as a COPY row.
    let (_cluster, pool) = source(
        "CREATE SCHEMA s;
         CREATE TABLE s.t (id int PRIMARY KEY, name text);
         INSERT INTO s.t SELECT i * 2, repeat('y', i % 50 + 1) || CASE WHEN i > 1024 THEN 'zz' ELSE '' END
         FROM generate_series(1, 5000) AS i;",
    )
    .await;
    let reader = PgSource::new(pool.clone());
    let spec = spec(&[("id", PgType::Integer), ("name", PgType::Text)]);
    let (bytes, rows, last) = read_page_of(&reader, &spec, None, 3000).await;
    assert_eq!(bytes, server_copy_of(&pool, "id, name", 0, 3000).await, "the first page");
    assert_eq!((rows, last.as_deref().map(int_of)), (3000, Some(6000)));
    // The portal measures 4 + 50 bytes for the widest of the first rows; a
    // COPY row adds its field count and lengths (2 + 2 × 4 bytes).
    assert_eq!(spec.widest_row.load(Ordering::Relaxed), 2 + 2 * 4 + 4 + 52, "the rest went as COPY");
    let (bytes, rows, last) = read_page_of(&reader, &spec, last.as_ref(), 3000).await;
    assert_eq!(bytes, server_copy_of(&pool, "id, name", 6000, 3000).await, "the second page");
    assert_eq!((rows, last.as_deref().map(int_of)), (2000, Some(10000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_a_mebibyte_and_more_keep_to_the_portal() {
    let (_cluster, pool) = source(
        "CREATE SCHEMA s;
         CREATE TABLE s.t (id int PRIMARY KEY, body text);
         INSERT INTO s.t SELECT i, repeat(chr(64 + i), 1100000) FROM generate_series(1, 2) AS i;",
    )
    .await;
    let reader = PgSource::new(pool.clone());
    let spec = spec(&[("id", PgType::Integer), ("body", PgType::Text)]);
    for after in
        [None, Some(vec![RawValue { ty: tokio_postgres::types::Type::INT4, bytes: Bytes::from_static(&[0, 0, 0, 1]) }])]
    {
        let from = after.as_deref().map_or(0, int_of);
        let (bytes, rows, last) = read_page(&reader, &spec, after.as_ref()).await;
        assert_eq!(bytes, server_copy(&pool, "id, body", from).await);
        assert_eq!((rows, last.as_deref().map(int_of)), (2 - from as u64, Some(2)));
        assert_eq!(spec.widest_row.load(Ordering::Relaxed), 4 + 1_100_000, "measured by the portal only");
    }
}
