//! `validate --deep`: every value of every row compared between source
//! and target, proving the copy exact or naming each difference (the
//! row's key, the columns, both values).
//!
//! Tables with a key are compared in chunks of the source's key order: a
//! chunk's rows are read from the source through the same reader (and
//! value converter) a run uses, its keys are sent to a temporary table on
//! the target, and the target's rows with those keys come back through
//! `COPY … TO STDOUT (FORMAT binary)`. Both sides are then in PostgreSQL's
//! binary send form, compared per column after [`compare::canonical`]. Once
//! every chunk is done, target rows whose key no chunk had are the extra
//! ones. Matching by key set rather than by key range keeps SQL Server's
//! collations and uniqueidentifier order out of it. Keyless tables are
//! compared as multisets of row hashes (counts only: there is no key to
//! name a row by).
//!
//! Rows cross the network once from each side (values are compared in the
//! tool, where the type conversions live); a source being written to while
//! it is compared shows those writes as differences.

pub mod checksum;
pub mod compare;
mod narrow;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt, pin_mut};
use mssql_pg_migrate_config::Config;
use mssql_pg_migrate_postgres::{ddl, pg_error};
use mssql_pg_migrate_schema::ident::quote_pg;
use mssql_pg_migrate_schema::target::TargetTable;
use mssql_pg_migrate_typemap::PgType;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use self::compare::{RowFields, RowStream, differing_columns, key_of, row_digest, split_rows};
use crate::connect::{SourceJob, postgres_target, with_source};
use crate::copy::{CellEncoder as _, CopyEncoder};
use crate::error::{Side, TransferError};
use crate::pool::PgPool;
use crate::source::{PieceSink, ReadSpec, Source};
use crate::tuning::{Machine, Tuning};

/// Rows per chunk: both sides of a chunk are held in memory while compared.
const CHUNK_ROWS: u64 = 10_000;
/// Bytes per piece the source reader hands over.
const PIECE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct DeepOptions {
    pub source_schema: Option<String>,
    pub target_schema: Option<String>,
    /// Differing rows shown per table (all are counted).
    pub max_samples: usize,
    /// Re-copy the rows found missing or different (merged by key, as an
    /// upsert does), and delete the extra ones where the target mode says
    /// the target holds only what the source has (not in `upsert` without
    /// `delete_missing`). Keyless tables are not repaired.
    pub repair: bool,
    /// Compare only this share of each keyed table's chunks (spread over
    /// its key range; extra rows are then not looked for). Keyless tables
    /// are compared whole.
    pub sample_percent: Option<f64>,
    /// How tables are compared; `None` picks: by checksum where both
    /// servers can hash a table and hashing is native to the source (not
    /// Babelfish, whose T-SQL hashing costs more than reading the rows).
    pub method: Option<CompareMethod>,
}

impl Default for DeepOptions {
    fn default() -> Self {
        DeepOptions {
            source_schema: None,
            target_schema: None,
            max_samples: 10,
            repair: false,
            sample_percent: None,
            method: None,
        }
    }
}

/// One column in which a row differs, with both values as PostgreSQL
/// renders them in the target's type (`None` for NULL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnDifference {
    pub column: String,
    pub source: Option<String>,
    pub target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// In the source, not in the target.
    Missing,
    /// In the target, not in the source.
    Extra,
    /// In both, with other values.
    Different,
}

/// One differing row, named by its key (each key column as text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowDifference {
    pub kind: DifferenceKind,
    pub key: Vec<String>,
    pub columns: Vec<ColumnDifference>,
}

/// How a table's rows were compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareMethod {
    /// Every row read from both sides and compared value by value.
    #[default]
    Rows,
    /// Each server checksummed its rows by key range; only the rows of
    /// ranges whose checksums differ were read and compared.
    Checksum,
}

/// One table's comparison.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeepTable {
    /// `schema.table` in the source and in the target.
    pub source: String,
    pub target: String,
    /// Whether rows were matched by key (else as a multiset).
    pub keyed: bool,
    /// How the rows were compared.
    pub method: CompareMethod,
    pub rows_compared: u64,
    /// Rows read from the source and compared value by value: every row
    /// with [`CompareMethod::Rows`], only those of differing key ranges
    /// with [`CompareMethod::Checksum`].
    pub rows_fetched: u64,
    pub chunks: u64,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    /// The first differing rows (keyed tables only).
    pub samples: Vec<RowDifference>,
    /// With repair: rows re-copied (missing and different) and extra rows deleted.
    pub repaired: u64,
    pub deleted: u64,
    /// With repair: the differences a second comparison still found
    /// (extra rows a repair may not delete count here).
    pub remaining: Option<u64>,
    /// With `--sample`: the share of chunks compared.
    pub sampled_percent: Option<f64>,
    /// Why the table could not be compared (it is counted as differing).
    pub error: Option<String>,
}

impl DeepTable {
    /// No difference, or none left after a repair.
    pub fn matches(&self) -> bool {
        self.error.is_none()
            && match self.remaining {
                Some(left) => left == 0,
                None => self.missing == 0 && self.extra == 0 && self.different == 0,
            }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeepReport {
    /// Always `true`: tells this report from the count-only one.
    pub deep: bool,
    pub tables: Vec<DeepTable>,
    pub matched: usize,
    pub mismatched: usize,
}

impl DeepReport {
    fn new(tables: Vec<DeepTable>) -> DeepReport {
        let matched = tables.iter().filter(|t| t.matches()).count();
        DeepReport { deep: true, mismatched: tables.len() - matched, matched, tables }
    }

    pub fn is_success(&self) -> bool {
        self.mismatched == 0
    }

    pub fn mismatches(&self) -> impl Iterator<Item = &DeepTable> {
        self.tables.iter().filter(|t| !t.matches())
    }
}

/// Compares every selected table value by value.
///
/// # Errors
/// A server that cannot be reached. A table that cannot be compared (a
/// missing target table, a failed query) is reported as differing.
pub async fn validate_deep(config: &Config, options: &DeepOptions) -> Result<DeepReport, TransferError> {
    // Tables are compared `workers` at a time, as a run copies them; each
    // holds a source connection and two target sessions.
    let workers = Tuning::resolve(&config.migration, Machine::for_run(config), None).workers.max(1);
    let target = PgPool::new(&postgres_target(&config.target, "validate --deep")?, Side::Target, 2 * workers)?;
    let job = |options| DeepJob { config, options, target: target.clone(), workers };
    let first = with_source(&config.source, workers + 1, job(options)).await?;
    if !options.repair {
        return Ok(first);
    }
    // The repaired tables compared again, as a proof rather than a promise.
    let check = DeepOptions { repair: false, ..options.clone() };
    let second = with_source(&config.source, workers + 1, job(&check)).await?;
    let mut tables = first.tables;
    for table in &mut tables {
        let again = second.tables.iter().find(|t| t.source == table.source);
        table.remaining = Some(again.map_or(0, |t| t.missing + t.extra + t.different));
        if let Some(e) = again.and_then(|t| t.error.clone()) {
            table.error.get_or_insert(e);
        }
    }
    Ok(DeepReport::new(tables))
}

struct DeepJob<'a> {
    config: &'a Config,
    options: &'a DeepOptions,
    target: PgPool,
    workers: usize,
}

impl SourceJob for DeepJob<'_> {
    type Output = DeepReport;

    async fn call<S: Source>(self, source: Arc<S>) -> Result<DeepReport, TransferError> {
        let m = &self.config.migration;
        let schemas = (self.options.source_schema.as_deref(), self.options.target_schema.as_deref());
        let plan = crate::validate::compared_tables(source.as_ref(), self.config, schemas).await?;
        let dialects = match self.options.method {
            Some(CompareMethod::Rows) => None,
            chosen => {
                let client = self.target.get(Side::Target).await?;
                narrow::checksum_dialects(source.as_ref(), &client, chosen.is_some()).await?
            }
        };
        let run = Comparing { options: self.options, migration: m, dialects };
        let (source, target_pool, run) = (&source, &self.target, &run);
        // Largest first, so no big table is left to run alone at the end;
        // reported in the plan's order.
        let mut order: Vec<usize> = (0..plan.tables.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(plan.tables[i].0.size_for_scheduling()));
        let compared = futures_util::stream::iter(order.into_iter().map(|i| (i, &plan.tables[i])).map(
            |(i, (table, target))| async move {
                let spec = ReadSpec::new(table, target);
                let mut report = DeepTable {
                    source: spec.label.clone(),
                    target: format!("{}.{}", target.schema, target.name),
                    keyed: !spec.key.is_empty(),
                    ..DeepTable::default()
                };
                match compare_table(source.as_ref(), target_pool, &spec, target, run, &mut report).await {
                    Ok(()) => {}
                    Err(e @ (TransferError::Connect { .. } | TransferError::Cancelled)) => return Err(e),
                    Err(e) => report.error = Some(e.to_string()),
                }
                tracing::info!(
                    table = %report.source,
                    rows = report.rows_compared,
                    missing = report.missing,
                    extra = report.extra,
                    different = report.different,
                    "compared"
                );
                Ok((i, report))
            },
        ))
        .buffer_unordered(self.workers)
        .collect::<Vec<_>>()
        .await;
        let mut reports = compared.into_iter().collect::<Result<Vec<_>, _>>()?;
        reports.sort_by_key(|(i, _)| *i);
        Ok(DeepReport::new(reports.into_iter().map(|(_, r)| r).collect()))
    }
}

/// What every table of one comparison shares.
struct Comparing<'a> {
    options: &'a DeepOptions,
    migration: &'a mssql_pg_migrate_config::MigrationConfig,
    /// How the source and the target write checksums, asked once; `None`
    /// when tables are compared row by row.
    dialects: Option<(checksum::ChecksumDialect, checksum::ChecksumDialect)>,
}

/// One table, on sessions of its own.
async fn compare_table<S: Source>(
    source: &S,
    target_pool: &PgPool,
    spec: &ReadSpec,
    target: &TargetTable,
    run: &Comparing<'_>,
    report: &mut DeepTable,
) -> Result<(), TransferError> {
    let (options, m) = (run.options, run.migration);
    let mut client = target_pool.get(Side::Target).await?;
    let table = ddl::table_name(target);
    if !mssql_pg_migrate_postgres::store::relation_exists(&client, &table, "comparing").await? {
        return Err(TransferError::Config(format!(
            "the target has no table {table} (run the migration first, or check target.schema)"
        )));
    }
    let hashing = run.dialects.and_then(|dialects| narrow::hashing_for(dialects, spec, target));
    if !report.keyed {
        if let Some(hashing) = &hashing
            && let Some(rows) =
                (narrow::Sides { source, client: &client, spec, target, hashing }).same_multiset().await?
        {
            report.method = CompareMethod::Checksum;
            report.rows_compared = rows;
            report.chunks = 1;
            return Ok(());
        }
        return compare_multiset(source, &client, spec, target, report).await;
    }
    // The report's values are rendered on a second session, beside the
    // first one's transactions.
    let render_client = target_pool.get(Side::Target).await?;
    let mut renderer = Renderer::new(&render_client, target).await?;
    let deletes = options.repair && deletes_extra_rows(m, &spec.schema, &spec.table);
    let context = Keyed { options, deletes, renderer: &mut renderer, hashing: hashing.as_ref() };
    compare_keyed(source, &mut client, spec, target, context, report).await
}

/// What a keyed comparison is told besides the table.
struct Keyed<'o, 'r> {
    options: &'o DeepOptions,
    /// Repair deletes the target's extra rows.
    deletes: bool,
    renderer: &'o mut Renderer<'r>,
    /// The checksum queries, when both sides can hash the table.
    hashing: Option<&'o narrow::Hashing>,
}

/// The target rows looked at for extra ones.
enum Coverage {
    /// Every row.
    All,
    /// None: a sample, or checksums that agreed everywhere.
    Nothing,
    /// Those with keys in these ranges (inclusive, disjoint).
    Ranges(Vec<(i64, i64)>),
    /// Those meeting this condition on the target's columns.
    Filtered(String),
}

/// Whether the target of `schema.table` should hold only the source's rows, so
/// a repair deletes what the source lacks.
fn deletes_extra_rows(m: &mssql_pg_migrate_config::MigrationConfig, schema: &str, table: &str) -> bool {
    m.target_mode != mssql_pg_migrate_config::TargetMode::Upsert || m.delete_missing.covers(schema, table)
}

/// The copied columns' target names and types, in COPY order.
fn columns_of(target: &TargetTable) -> (Vec<String>, Vec<PgType>) {
    target.copied_columns().map(|c| (c.name.clone(), c.pg_type)).unzip()
}

/// A source page as binary COPY pieces: the read, to be run beside
/// whatever takes the pieces from the receiver.
fn source_pieces<'a, S: Source>(
    source: &'a S,
    spec: &'a ReadSpec,
    after: Option<&'a S::Key>,
    upto: Option<&'a S::Key>,
    limit: Option<u64>,
) -> (impl std::future::Future<Output = Result<crate::source::Page<S::Key>, TransferError>> + 'a, mpsc::Receiver<Bytes>)
{
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let read = async move {
        let mut sink = PieceSink::new(tx, PIECE_BYTES);
        let page = source.read_page(spec, after, upto, limit, &mut sink).await?;
        sink.finish().await.map_err(|_| TransferError::Cancelled)?;
        Ok(page)
    };
    (read, rx)
}

/// Reads one page of the source into memory, as binary COPY bytes.
async fn read_source_page<S: Source>(
    source: &S,
    spec: &ReadSpec,
    after: Option<&S::Key>,
    upto: Option<&S::Key>,
    limit: Option<u64>,
) -> Result<(Vec<u8>, crate::source::Page<S::Key>), TransferError> {
    let (read, mut rx) = source_pieces(source, spec, after, upto, limit);
    let collect = async {
        let mut data = Vec::new();
        while let Some(piece) = rx.recv().await {
            data.extend_from_slice(&piece);
        }
        data
    };
    let (page, data) = tokio::join!(read, collect);
    Ok((data, page?))
}

fn target_error(what: &str, target: &TargetTable) -> impl Fn(tokio_postgres::Error) -> TransferError {
    let context = format!("{what} {}", ddl::table_name(target));
    move |e| pg_error(Side::Target, context.as_str(), &e)
}

/// Bytes read to the end of a `COPY … TO STDOUT`.
async fn copy_out(client: &tokio_postgres::Transaction<'_>, sql: &str) -> Result<Vec<u8>, tokio_postgres::Error> {
    let stream = client.copy_out(sql).await?;
    pin_mut!(stream);
    let mut data = Vec::new();
    while let Some(piece) = stream.next().await {
        data.extend_from_slice(&piece?);
    }
    Ok(data)
}

const KEYS_TABLE: &str = "mssql_pg_migrate_deep_keys";
const SEEN_TABLE: &str = "mssql_pg_migrate_deep_seen";
const RANGES_TABLE: &str = "mssql_pg_migrate_deep_ranges";

async fn compare_keyed<S: Source>(
    source: &S,
    client: &mut deadpool_postgres::Object,
    spec: &ReadSpec,
    target: &TargetTable,
    context: Keyed<'_, '_>,
    report: &mut DeepTable,
) -> Result<(), TransferError> {
    let Keyed { options, deletes, renderer, hashing } = context;
    let (names, types) = columns_of(target);
    let key_names: Vec<String> = spec.key.iter().filter_map(|&k| names.get(k).cloned()).collect();
    let key_list = key_names.iter().map(|n| quote_pg(n)).collect::<Vec<_>>().join(", ");
    let column_list = names.iter().map(|n| format!("t.{}", quote_pg(n))).collect::<Vec<_>>().join(", ");
    let table = ddl::table_name(target);
    // Per session and dropped first, so an earlier table's keys never mix in.
    let setup = format!(
        "SET client_min_messages = warning;
         DROP TABLE IF EXISTS pg_temp.{KEYS_TABLE}, pg_temp.{SEEN_TABLE}, pg_temp.{RANGES_TABLE};
         CREATE TEMP TABLE {KEYS_TABLE} AS SELECT {key_list} FROM {table} WITH NO DATA;
         CREATE TEMP TABLE {SEEN_TABLE} AS SELECT {key_list} FROM {table} WITH NO DATA;
         RESET client_min_messages;"
    );
    client.batch_execute(&setup).await.map_err(target_error("preparing to compare", target))?;
    let fetch = format!(
        "COPY (SELECT {column_list} FROM {table} t JOIN {KEYS_TABLE} USING ({key_list})) TO STDOUT (FORMAT binary)"
    );
    let mut chunk =
        Chunk { spec, target, types: &types, names: &names, key_names: &key_names, fetch: &fetch, options, renderer };
    let sample = options.sample_percent.filter(|p| *p < 100.0);
    let narrowed = match (sample, hashing) {
        (None, Some(hashing)) => (narrow::Sides { source, client, spec, target, hashing }).narrow().await?,
        _ => narrow::Narrowed::Everything,
    };
    let coverage = match (sample, narrowed) {
        (_, narrow::Narrowed::Ranges { leaves, beyond, rows, buckets, keys: (lo, _) }) => {
            report.method = CompareMethod::Checksum;
            report.rows_compared = rows;
            report.chunks = buckets;
            for &(from, to) in &leaves {
                // A leaf starting at the source's smallest key is left open
                // below: the key's type may not hold the value before it.
                let after = (from > lo).then(|| source.integer_key(spec, from - 1));
                let upto = source.integer_key(spec, to);
                let (data, _) = read_source_page(source, spec, after.as_ref(), Some(&upto), None).await?;
                report.rows_fetched += chunk.compare(client, &data, report).await?;
            }
            Coverage::Ranges(leaves.into_iter().chain(beyond).collect())
        }
        (_, narrow::Narrowed::Hashed { buckets, differing, source_hash, target_hash, rows }) => {
            report.method = CompareMethod::Checksum;
            report.rows_compared = rows;
            report.chunks = u64::try_from(buckets.hi / buckets.width + 1).unwrap_or(0);
            for group in differing.chunks(narrow::HASHED_READ_BUCKETS) {
                let within = checksum::bucket_filter_sql(&source_hash, buckets, group);
                let filtered = ReadSpec { within_buckets: Some(within), ..spec.clone() };
                let (data, _) = read_source_page(source, &filtered, None, None, None).await?;
                report.rows_fetched += chunk.compare(client, &data, report).await?;
            }
            if differing.is_empty() {
                // Every bucket agreed: no target row can be extra.
                Coverage::Nothing
            } else {
                Coverage::Filtered(checksum::bucket_filter_sql(&target_hash, buckets, &differing))
            }
        }
        (None, narrow::Narrowed::Everything) => {
            // The next chunk is read from the source while this one is
            // compared on the target.
            let mut current = read_source_page(source, spec, None, None, Some(CHUNK_ROWS)).await?;
            loop {
                let (data, page) = current;
                let after = page.last_key.filter(|_| page.rows >= CHUNK_ROWS);
                let read_next = async {
                    match &after {
                        Some(key) => Some(read_source_page(source, spec, Some(key), None, Some(CHUNK_ROWS)).await),
                        None => None,
                    }
                };
                let (compared, next) = tokio::join!(chunk.compare(client, &data, report), read_next);
                let rows = compared?;
                if rows == 0 {
                    break;
                }
                report.chunks += 1;
                report.rows_compared += rows;
                report.rows_fetched += rows;
                match next {
                    Some(next) => current = next?,
                    None => break,
                }
            }
            Coverage::All
        }
        (Some(percent), narrow::Narrowed::Everything) => {
            // Chunks spread over the whole key range, each a range between
            // two of the server's boundaries; extra rows are not looked for.
            report.sampled_percent = Some(percent);
            let bounds = source.boundaries(spec, CHUNK_ROWS).await?;
            for i in sampled_chunks(bounds.len() + 1, percent) {
                let after = i.checked_sub(1).and_then(|b| bounds.get(b));
                let upto = bounds.get(i);
                let (data, _) = read_source_page(source, spec, after, upto, None).await?;
                let rows = chunk.compare(client, &data, report).await?;
                report.chunks += u64::from(rows > 0);
                report.rows_compared += rows;
                report.rows_fetched += rows;
            }
            Coverage::Nothing
        }
    };

    // What the target has beyond the source's keys.
    let matches = key_names.iter().map(|n| format!("s.{q} = t.{q}", q = quote_pg(n))).collect::<Vec<_>>().join(" AND ");
    let not_seen_in = |from: &str| format!("{from} WHERE NOT EXISTS (SELECT 1 FROM {SEEN_TABLE} s WHERE {matches})");
    let (not_seen, delete) = match &coverage {
        Coverage::Nothing => return drop_temporaries(client, target).await,
        Coverage::Ranges(ranges) if ranges.is_empty() => return drop_temporaries(client, target).await,
        Coverage::All => (
            not_seen_in(&format!("FROM {table} t")),
            format!("DELETE FROM {table} AS t WHERE NOT EXISTS (SELECT 1 FROM {SEEN_TABLE} s WHERE {matches})"),
        ),
        Coverage::Filtered(condition) => (
            not_seen_in(&format!("FROM (SELECT * FROM {table} WHERE {condition}) t")),
            format!(
                "DELETE FROM {table} AS t WHERE ({condition}) \
                 AND NOT EXISTS (SELECT 1 FROM {SEEN_TABLE} s WHERE {matches})"
            ),
        ),
        Coverage::Ranges(ranges) => {
            let (from, to): (Vec<i64>, Vec<i64>) = ranges.iter().copied().unzip();
            let create = format!("CREATE TEMP TABLE {RANGES_TABLE} (lo int8, hi int8)");
            client.batch_execute(&create).await.map_err(target_error("comparing", target))?;
            let fill = format!("INSERT INTO {RANGES_TABLE} SELECT * FROM unnest($1::int8[], $2::int8[])");
            client.execute(&fill, &[&from, &to]).await.map_err(target_error("comparing", target))?;
            let k = quote_pg(key_names.first().map_or("", String::as_str));
            let within = format!("t.{k} >= r.lo AND t.{k} <= r.hi");
            (
                not_seen_in(&format!("FROM {RANGES_TABLE} r JOIN {table} t ON {within}")),
                format!(
                    "DELETE FROM {table} AS t USING {RANGES_TABLE} r WHERE {within} \
                     AND NOT EXISTS (SELECT 1 FROM {SEEN_TABLE} s WHERE {matches})"
                ),
            )
        }
    };
    let extra = client
        .query_one(&format!("SELECT count(*) {not_seen}"), &[])
        .await
        .map_err(target_error("looking for extra rows in", target))?;
    report.extra = u64::try_from(extra.try_get::<_, i64>(0).map_err(target_error("counting", target))?).unwrap_or(0);
    let room = options.max_samples.saturating_sub(report.samples.len());
    if report.extra > 0 && room > 0 {
        let rendered = key_names.iter().map(|n| format!("t.{}::text", quote_pg(n))).collect::<Vec<_>>().join(", ");
        let order = key_names.iter().map(|n| format!("t.{}", quote_pg(n))).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {rendered} {not_seen} ORDER BY {order} LIMIT {room}");
        for row in client.query(&sql, &[]).await.map_err(target_error("looking for extra rows in", target))? {
            let key = (0..key_names.len()).map(|i| row.try_get::<_, String>(i).unwrap_or_default()).collect();
            report.samples.push(RowDifference { kind: DifferenceKind::Extra, key, columns: Vec::new() });
        }
    }
    if deletes && report.extra > 0 {
        report.deleted =
            client.execute(&delete, &[]).await.map_err(target_error("deleting the extra rows of", target))?;
    }
    drop_temporaries(client, target).await
}

async fn drop_temporaries(client: &deadpool_postgres::Object, target: &TargetTable) -> Result<(), TransferError> {
    client
        .batch_execute(&format!(
            "SET client_min_messages = warning; \
             DROP TABLE IF EXISTS pg_temp.{KEYS_TABLE}, pg_temp.{SEEN_TABLE}, pg_temp.{RANGES_TABLE}; \
             RESET client_min_messages"
        ))
        .await
        .map_err(target_error("cleaning up after comparing", target))
}

/// One table's keyed comparison, chunk by chunk.
struct Chunk<'a, 'r> {
    spec: &'a ReadSpec,
    target: &'a TargetTable,
    types: &'a [PgType],
    names: &'a [String],
    key_names: &'a [String],
    /// The target's rows whose keys are in the keys table.
    fetch: &'a str,
    options: &'a DeepOptions,
    renderer: &'a mut Renderer<'r>,
}

impl Chunk<'_, '_> {
    /// Compares the source rows in `data` (a binary COPY stream) with the
    /// target's rows of the same keys, repairing when asked. Returns the
    /// rows compared (0 when `data` holds none).
    async fn compare(
        &mut self,
        client: &mut deadpool_postgres::Object,
        data: &[u8],
        report: &mut DeepTable,
    ) -> Result<u64, TransferError> {
        let Chunk { spec, target, types, names, key_names, fetch, options, .. } = *self;
        let rows = split_rows(data).map_err(|e| TransferError::Config(format!("{}: {e}", spec.label)))?;
        if rows.is_empty() {
            return Ok(0);
        }

        // The chunk's keys, already in the target's send form, go in by binary COPY.
        let mut keys = CopyEncoder::with_capacity(rows.len() * 16);
        for row in &rows {
            keys.begin_row(u16::try_from(spec.key.len()).unwrap_or(u16::MAX));
            for &k in &spec.key {
                match row.get(k).cloned().flatten() {
                    Some(range) => keys.raw(&data[range]).map_err(|e| TransferError::Config(e.to_string()))?,
                    None => keys.null(),
                }
            }
        }
        keys.finish();
        let tx = client.transaction().await.map_err(target_error("comparing", target))?;
        tx.batch_execute(&format!("TRUNCATE {KEYS_TABLE}")).await.map_err(target_error("comparing", target))?;
        let sink = tx
            .copy_in(&format!("COPY {KEYS_TABLE} FROM STDIN (FORMAT binary)"))
            .await
            .map_err(target_error("comparing", target))?;
        pin_mut!(sink);
        sink.send(Bytes::from(keys.into_bytes())).await.map_err(target_error("comparing", target))?;
        sink.as_mut().finish().await.map_err(target_error("comparing", target))?;
        // Counted, so the planner looks the keys up by the target's index
        // rather than scanning the table for each chunk.
        tx.batch_execute(&format!("ANALYZE {KEYS_TABLE}; INSERT INTO {SEEN_TABLE} SELECT * FROM {KEYS_TABLE}"))
            .await
            .map_err(target_error("comparing", target))?;
        let target_data = copy_out(&tx, fetch).await.map_err(target_error("reading", target))?;
        tx.commit().await.map_err(target_error("comparing", target))?;
        let target_rows =
            split_rows(&target_data).map_err(|e| TransferError::Config(format!("{}: {e}", report.target)))?;
        let by_key: HashMap<Vec<u8>, &RowFields> =
            target_rows.iter().map(|r| (key_of(&target_data, r, &spec.key, types), r)).collect();

        let mut repairs = CopyEncoder::new();
        for row in &rows {
            let key = key_of(data, row, &spec.key, types);
            let (kind, columns) = match by_key.get(&key) {
                None => (DifferenceKind::Missing, Vec::new()),
                Some(theirs) => {
                    let columns = differing_columns((data, row), (&target_data, theirs), types);
                    if columns.is_empty() {
                        continue;
                    }
                    (DifferenceKind::Different, columns.into_iter().map(|c| (c, Some(*theirs))).collect())
                }
            };
            match kind {
                DifferenceKind::Missing => report.missing += 1,
                _ => report.different += 1,
            }
            if options.repair {
                repairs.begin_row(u16::try_from(row.len()).unwrap_or(u16::MAX));
                for f in row {
                    match f {
                        Some(range) => {
                            repairs.raw(&data[range.clone()]).map_err(|e| TransferError::Config(e.to_string()))?;
                        }
                        None => repairs.null(),
                    }
                }
            }
            if report.samples.len() < options.max_samples {
                let mut rendered_key = Vec::with_capacity(spec.key.len());
                for &k in &spec.key {
                    rendered_key.push(self.renderer.render(k, field(data, row, k)).await?.unwrap_or_default());
                }
                let mut differences = Vec::with_capacity(columns.len());
                for (c, theirs) in columns {
                    differences.push(ColumnDifference {
                        column: names.get(c).cloned().unwrap_or_default(),
                        source: self.renderer.render(c, field(data, row, c)).await?,
                        target: self.renderer.render(c, theirs.and_then(|t| field(&target_data, t, c))).await?,
                    });
                }
                report.samples.push(RowDifference { kind, key: rendered_key, columns: differences });
            }
        }
        if repairs.rows() > 0 {
            report.repaired += repairs.rows();
            repairs.finish();
            merge_rows(client, target, key_names, repairs.into_bytes()).await?;
        }

        Ok(rows.len() as u64)
    }
}

/// Which of `chunks` chunks a `percent` sample compares: evenly spread,
/// the first and last included, at least one.
fn sampled_chunks(chunks: usize, percent: f64) -> Vec<usize> {
    let wanted = ((chunks as f64 * percent / 100.0).ceil() as usize).clamp(1, chunks.max(1));
    if wanted >= chunks {
        return (0..chunks).collect();
    }
    let step = (chunks - 1) as f64 / (wanted - 1).max(1) as f64;
    let mut picked: Vec<usize> = (0..wanted).map(|i| (i as f64 * step).round() as usize).collect();
    picked.dedup();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_spreads_over_the_key_range_and_takes_at_least_one_chunk() {
        assert_eq!(sampled_chunks(100, 10.0).len(), 10);
        assert_eq!(sampled_chunks(100, 10.0).first(), Some(&0));
        assert_eq!(sampled_chunks(100, 10.0).last(), Some(&99));
        assert_eq!(sampled_chunks(3, 1.0), [0], "at least one");
        assert_eq!(sampled_chunks(4, 100.0), [0, 1, 2, 3]);
        assert_eq!(sampled_chunks(1, 50.0), [0]);
        let spread = sampled_chunks(1000, 5.0);
        assert!(spread.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= 21), "evenly spread");
    }

    #[test]
    fn a_repair_deletes_extra_rows_unless_an_upsert_keeps_them() {
        let mode = |migration: &str| crate::testing::config("mssql", migration).migration;
        assert!(deletes_extra_rows(&mode("target_mode: drop_recreate"), "dbo", "t"));
        assert!(deletes_extra_rows(&mode("target_mode: truncate"), "dbo", "t"));
        assert!(!deletes_extra_rows(&mode("target_mode: upsert"), "dbo", "t"));
        assert!(deletes_extra_rows(&mode("target_mode: upsert, delete_missing: true"), "dbo", "t"));
        let some = mode("target_mode: upsert, delete_missing: [orders]");
        assert!(deletes_extra_rows(&some, "dbo", "orders") && !deletes_extra_rows(&some, "dbo", "t"));
    }
}

/// Merges rows (a binary COPY stream of the copied columns) into the
/// target by key, as an upsert does: inserted where missing, updated where
/// different. The run's merge statement, so generated columns and
/// identities are left to the target.
async fn merge_rows(
    client: &mut deadpool_postgres::Object,
    target: &TargetTable,
    key_names: &[String],
    rows: Vec<u8>,
) -> Result<(), TransferError> {
    let failed = |what| target_error(what, target);
    let keys: Vec<&str> = key_names.iter().map(String::as_str).collect();
    let tx = client.transaction().await.map_err(failed("repairing"))?;
    let stage = format!("SET LOCAL client_min_messages = warning; {}", ddl::create_merge_stage(target));
    tx.batch_execute(&stage).await.map_err(failed("repairing"))?;
    let sink = tx.copy_in(&ddl::copy_into_merge_stage(target)).await.map_err(failed("repairing"))?;
    pin_mut!(sink);
    sink.send(Bytes::from(rows)).await.map_err(failed("repairing"))?;
    sink.as_mut().finish().await.map_err(failed("repairing"))?;
    tx.query_one(&ddl::merge_from_stage(target, &keys), &[]).await.map_err(failed("repairing"))?;
    tx.commit().await.map_err(failed("repairing"))
}

fn field<'a>(data: &'a [u8], row: &RowFields, column: usize) -> Option<&'a [u8]> {
    row.get(column).cloned().flatten().map(|range| &data[range])
}

/// Keyless: the multiset of row hashes on each side.
async fn compare_multiset<S: Source>(
    source: &S,
    client: &tokio_postgres::Client,
    spec: &ReadSpec,
    target: &TargetTable,
    report: &mut DeepTable,
) -> Result<(), TransferError> {
    let (names, types) = columns_of(target);
    let mut counts: HashMap<[u8; 16], i64> = HashMap::new();
    let hash = |data: &[u8], row: &RowFields| row_digest(data, row, &types);
    // The source streams through; only hashes are kept.
    let (read, mut rx) = source_pieces(source, spec, None, None, None);
    let fold = async {
        let mut rows = RowStream::default();
        let mut count = 0;
        while let Some(piece) = rx.recv().await {
            count += rows.feed(&piece, |data, row| *counts.entry(hash(data, row)).or_insert(0) += 1)?;
        }
        Ok::<_, compare::CopyFormatError>(count)
    };
    let (page, rows) = tokio::join!(read, fold);
    page?;
    report.rows_compared = rows.map_err(|e| TransferError::Config(format!("{}: {e}", spec.label)))?;
    report.rows_fetched = report.rows_compared;
    report.chunks = 1;

    let column_list = names.iter().map(|n| quote_pg(n)).collect::<Vec<_>>().join(", ");
    let sql = format!("COPY (SELECT {column_list} FROM {}) TO STDOUT (FORMAT binary)", ddl::table_name(target));
    let stream = client.copy_out(&sql).await.map_err(target_error("reading", target))?;
    pin_mut!(stream);
    let mut rows = RowStream::default();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(target_error("reading", target))?;
        rows.feed(&piece, |data, row| *counts.entry(hash(data, row)).or_insert(0) -= 1)
            .map_err(|e| TransferError::Config(format!("{}: {e}", report.target)))?;
    }
    for n in counts.values() {
        match n.signum() {
            1 => report.missing += n.unsigned_abs(),
            -1 => report.extra += n.unsigned_abs(),
            _ => {}
        }
    }
    Ok(())
}

/// A value in its send form, handed to the server as a parameter of the
/// column's type so its receive function reads it.
#[derive(Debug)]
struct SendForm<'a>(&'a [u8]);

impl ToSql for SendForm<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Renders send-form values as PostgreSQL's text for the report, one
/// prepared `SELECT $1::text` per column type.
struct Renderer<'c> {
    client: &'c deadpool_postgres::Object,
    types: Vec<Option<Type>>,
    statements: HashMap<u32, tokio_postgres::Statement>,
}

impl<'c> Renderer<'c> {
    async fn new(client: &'c deadpool_postgres::Object, target: &TargetTable) -> Result<Renderer<'c>, TransferError> {
        let sql = "SELECT a.attname::text, a.atttypid FROM pg_attribute a \
                   WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped";
        let rows = client.query(sql, &[&ddl::table_name(target)]).await.map_err(target_error("reading", target))?;
        let by_name: HashMap<String, u32> =
            rows.iter().filter_map(|r| Some((r.try_get::<_, String>(0).ok()?, r.try_get::<_, u32>(1).ok()?))).collect();
        let types = target.copied_columns().map(|c| by_name.get(&c.name).copied().and_then(Type::from_oid)).collect();
        Ok(Renderer { client, types, statements: HashMap::new() })
    }

    async fn render(&mut self, column: usize, value: Option<&[u8]>) -> Result<Option<String>, TransferError> {
        let Some(value) = value else { return Ok(None) };
        let Some(ty) = self.types.get(column).cloned().flatten() else {
            return Ok(Some(format!("\\x{}", crate::source::hex(value))));
        };
        let statement = match self.statements.get(&ty.oid()) {
            Some(s) => s.clone(),
            None => {
                let s = self
                    .client
                    .prepare_typed("SELECT $1::text", std::slice::from_ref(&ty))
                    .await
                    .map_err(|e| pg_error(Side::Target, "preparing to show a value", &e))?;
                self.statements.insert(ty.oid(), s.clone());
                s
            }
        };
        match self.client.query_one(&statement, &[&SendForm(value)]).await {
            Ok(row) => Ok(row.try_get::<_, Option<String>>(0).ok().flatten()),
            // A value the type's receive function refuses is shown as bytes.
            Err(_) => Ok(Some(format!("\\x{}", crate::source::hex(value)))),
        }
    }
}
