//! The full-load pipeline: catalog → target tables → chunked parallel copy
//! → finalization → report.
//!
//! Each chunk is one page of at most `chunk_size` rows, read by keyset
//! (`(key) > last ORDER BY key`) within its partition, and written in one
//! target transaction: a reader encodes rows into pieces that a writer
//! streams through `COPY ... FROM STDIN (FORMAT binary)` as they arrive.
//! The writer commits only when the reader reports that the page is
//! complete, so a failed read never leaves a partial chunk behind.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, pin_mut};
use mssql_pg_migrate_config::{Config, SourceKind, TargetMode};
use mssql_pg_migrate_schema::target::{
    TargetForeignKey, TargetOptions, TargetTable, assign_relation_names, plan_table, reject_collisions,
};
use mssql_pg_migrate_schema::{ColumnType, Table, catalog, ddl};
use tokio::sync::{Mutex, Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::{Side, TransferError};
use crate::plan::{Partition, PlanSettings, integer_bounds, partition_count, partitions_from_bounds};
use crate::pool::{PgEndpoint, PgPool};
use crate::report::{RunReport, TableReport, TableStatus, rate};
use crate::source::mssql::{MssqlEndpoint, MssqlSource};
use crate::source::pg::PgSource;
use crate::source::{PieceSink, ReadSpec, Source};
use crate::tuning::{Machine, Tuning};

/// Per-run choices that are not in the configuration file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub source_schema: Option<String>,
    pub target_schema: Option<String>,
    pub workers: Option<u32>,
    /// Cancelled by the caller (a signal handler, the TUI) to stop issuing chunks.
    pub cancel: CancellationToken,
}

fn pg_endpoint_of_target(config: &Config) -> PgEndpoint {
    let t = &config.target;
    PgEndpoint {
        host: t.host.clone(),
        port: t.port,
        database: t.database.clone(),
        user: t.user.clone(),
        password: t.password.clone(),
        ssl_mode: t.ssl_mode,
    }
}

/// Runs a full load (`drop_recreate` or `truncate`) as `config` describes.
///
/// # Errors
/// The first error that stops the run. Errors confined to one table are in
/// the report instead when `continue_on_error` is set.
pub async fn run(config: &Config, options: &RunOptions) -> Result<RunReport, TransferError> {
    if config.migration.target_mode == TargetMode::Upsert {
        return Err(TransferError::Config(
            "migration.target_mode: upsert is not supported by this version; use drop_recreate or truncate".into(),
        ));
    }
    let tuning = Tuning::resolve(&config.migration, Machine::detect(), options.workers);
    tracing::info!(?tuning, "tuning");
    let target = PgPool::new(&pg_endpoint_of_target(config), Side::Target, tuning.max_target_connections)?;
    let s = &config.source;
    match s.kind {
        SourceKind::Postgres => {
            let endpoint = PgEndpoint {
                host: s.host.clone(),
                port: s.port,
                database: s.database.clone(),
                user: s.user.clone(),
                password: s.password.clone(),
                ssl_mode: mssql_pg_migrate_config::SslMode::Prefer,
            };
            let source = PgSource::new(PgPool::new(&endpoint, Side::Source, tuning.max_source_connections)?);
            run_with(Arc::new(source), target, config, tuning, options).await
        }
        SourceKind::Mssql => {
            let endpoint = MssqlEndpoint {
                host: s.host.clone(),
                port: s.port,
                database: s.database.clone(),
                user: s.user.clone(),
                password: s.password.clone(),
                encrypt: s.encrypt,
                trust_server_cert: s.trust_server_cert,
            };
            let max = u32::try_from(tuning.max_source_connections).unwrap_or(u32::MAX);
            let source = MssqlSource::connect(endpoint, max).await?;
            run_with(Arc::new(source), target, config, tuning, options).await
        }
    }
}

/// One table's work, shared by the tasks that copy its partitions.
struct TableWork<K> {
    source: Table,
    target: TargetTable,
    spec: ReadSpec,
    copy_sql: String,
    partitions: Vec<Partition<K>>,
    /// Whether the target table was created by this run (so finalization builds its keys and indexes).
    created: bool,
    rows: AtomicU64,
    bytes: AtomicU64,
    remaining: AtomicU64,
    failed: std::sync::Mutex<Option<String>>,
    started: std::sync::Mutex<Option<Instant>>,
    finished: std::sync::Mutex<Option<Instant>>,
}

impl<K> TableWork<K> {
    fn fail(&self, message: String) {
        if let Ok(mut slot) = self.failed.lock()
            && slot.is_none()
        {
            *slot = Some(message);
        }
    }

    fn failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }
}

async fn execute(client: &tokio_postgres::Client, sql: &str, context: &str) -> Result<(), TransferError> {
    tracing::debug!(sql, "target");
    client.batch_execute(sql).await.map_err(|e| TransferError::pg(Side::Target, context, &e))
}

/// Runs the pipeline against any source.
///
/// # Errors
/// See [`run`].
pub async fn run_with<S: Source>(
    source: Arc<S>,
    target: PgPool,
    config: &Config,
    tuning: Tuning,
    options: &RunOptions,
) -> Result<RunReport, TransferError> {
    let started = Instant::now();
    let m = &config.migration;
    let source_schema = options.source_schema.clone().unwrap_or_else(|| config.source.schema.clone());
    let target_schema = options.target_schema.clone().unwrap_or_else(|| config.target.schema.clone());

    let select = |schema: &str, table: &str| m.selects_table(schema, table);
    let tables = source.read_schema(&source_schema, &select).await?;
    if tables.is_empty() {
        return Err(TransferError::Config(format!(
            "no tables to migrate: schema '{source_schema}' of the source has no tables that \
             migration.include_tables / exclude_tables select"
        )));
    }
    tracing::info!(tables = tables.len(), schema = %source_schema, "catalog read");

    // Plan the target side of every table.
    let migrated: BTreeSet<(String, String)> = tables.iter().map(|t| (t.schema.clone(), t.name.clone())).collect();
    let is_migrated = |s: &str, t: &str| migrated.contains(&(s.to_owned(), t.to_owned()));
    let opts = TargetOptions {
        schema: &target_schema,
        case: m.identifier_case,
        overrides: &m.type_overrides,
        dialect: source.dialect(),
    };
    let mut reports = Vec::new();
    let mut planned: Vec<(Table, TargetTable)> = Vec::new();
    for table in tables {
        match plan_table(&table, &is_migrated, &opts) {
            Ok(t) => planned.push((table, t)),
            Err(e) if m.continue_on_error => {
                tracing::error!(table = %format!("{}.{}", table.schema, table.name), error = %e, "table skipped");
                reports.push(TableReport {
                    source: format!("{}.{}", table.schema, table.name),
                    target: String::new(),
                    status: TableStatus::Skipped,
                    rows: 0,
                    bytes: 0,
                    partitions: 0,
                    seconds: 0.0,
                    rows_per_second: 0.0,
                    mb_per_second: 0.0,
                    error: Some(e.to_string()),
                    notes: Vec::new(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    reject_collisions(
        &format!("target schema {target_schema}"),
        planned.iter().map(|(_, t)| (&t.source_name, &t.name)),
    )?;
    let mut targets: Vec<TargetTable> = planned.iter().map(|(_, t)| t.clone()).collect();
    assign_relation_names(&mut targets);

    // Prepare the target.
    let client = target.get(Side::Target).await?;
    execute(&client, &ddl::create_schema(&target_schema), "creating the target schema").await?;
    let mut created = vec![true; targets.len()];
    let mut saved_foreign_keys: Vec<(TargetTable, TargetForeignKey)> = Vec::new();
    match m.target_mode {
        TargetMode::DropRecreate | TargetMode::Upsert => {
            let all: Vec<&TargetTable> = targets.iter().collect();
            if let Some(sql) = ddl::drop_tables(&all) {
                execute(&client, &sql, "dropping the target tables").await?;
            }
        }
        TargetMode::Truncate => {
            let all = |_: &str, _: &str| true;
            let existing =
                catalog::pg::read_schema(&client, &target_schema, &all).await.map_err(TransferError::from)?;
            let mut to_truncate = Vec::new();
            for (i, t) in targets.iter().enumerate() {
                if let Some(current) = existing.iter().find(|e| e.name == t.name) {
                    check_compatible(t, current)?;
                    created[i] = false;
                    to_truncate.push(t);
                    // Foreign keys are dropped for the load (chunks land in any
                    // order) and put back afterwards exactly as they were.
                    for fk in &current.foreign_keys {
                        let owner = t.clone();
                        let saved = TargetForeignKey {
                            name: fk.name.clone(),
                            columns: fk.columns.clone(),
                            referenced_table: fk.referenced_table.clone(),
                            referenced_columns: fk.referenced_columns.clone(),
                            on_delete: fk.on_delete,
                            on_update: fk.on_update,
                        };
                        saved_foreign_keys.push((owner, saved));
                    }
                }
            }
            for (owner, fk) in &saved_foreign_keys {
                let sql = format!(
                    "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                    ddl::table_name(owner),
                    mssql_pg_migrate_schema::ident::quote_pg(&fk.name)
                );
                execute(&client, &sql, "dropping foreign keys for the load").await?;
            }
            if let Some(sql) = ddl::truncate_tables(&to_truncate) {
                execute(&client, &sql, "truncating the target tables").await?;
            }
        }
    }
    for (t, &is_new) in targets.iter().zip(&created) {
        if is_new {
            execute(&client, &ddl::create_table(t, m.use_unlogged_tables), &format!("creating {}", ddl::table_name(t)))
                .await?;
        }
    }
    drop(client);

    // Plan chunks.
    let settings = PlanSettings {
        large_table_threshold: m.large_table_threshold,
        max_partitions: m.max_partitions,
        min_rows_per_partition: m.min_rows_per_partition,
    };
    let mut work = Vec::with_capacity(planned.len());
    for (((table, _), target_table), is_new) in planned.into_iter().zip(targets).zip(created) {
        let spec = ReadSpec::new(&table, &target_table);
        let partitions = plan_partitions(source.as_ref(), &spec, table.estimated_rows, settings).await?;
        tracing::info!(table = %spec.label, partitions = partitions.len(), key = spec.key.len(), "planned");
        work.push(Arc::new(TableWork {
            copy_sql: ddl::copy_in(&target_table),
            remaining: AtomicU64::new(partitions.len() as u64),
            partitions,
            source: table,
            target: target_table,
            spec,
            created: is_new,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failed: std::sync::Mutex::new(None),
            started: std::sync::Mutex::new(None),
            finished: std::sync::Mutex::new(None),
        }));
    }

    // Copy.
    let fatal = transfer_all(&source, &target, &work, tuning, m.continue_on_error, &options.cancel).await;
    if let Some(e) = fatal {
        return Err(e);
    }

    // Finalize the tables whose data is complete.
    let finalization_errors =
        finalize(&target, &work, &saved_foreign_keys, config, tuning.max_target_connections.saturating_sub(1).max(1))
            .await;

    for w in &work {
        let rows = w.rows.load(Ordering::Relaxed);
        let bytes = w.bytes.load(Ordering::Relaxed);
        let seconds = match (w.started.lock().ok().and_then(|s| *s), w.finished.lock().ok().and_then(|f| *f)) {
            (Some(s), Some(f)) => f.duration_since(s).as_secs_f64(),
            _ => 0.0,
        };
        let error = w.failure();
        reports.push(TableReport {
            source: w.target.source_label(),
            target: format!("{}.{}", w.target.schema, w.target.name),
            status: if error.is_some() { TableStatus::Failed } else { TableStatus::Completed },
            rows,
            bytes,
            partitions: w.partitions.len(),
            seconds,
            rows_per_second: rate(rows, seconds),
            mb_per_second: rate(bytes, seconds) / 1e6,
            error,
            notes: w.target.notes.clone(),
        });
    }
    reports.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(RunReport::new(reports, started.elapsed().as_secs_f64(), finalization_errors))
}

/// Checks that an existing target table can take the planned columns.
fn check_compatible(planned: &TargetTable, existing: &Table) -> Result<(), TransferError> {
    let label = format!("{}.{}", planned.schema, planned.name);
    for column in planned.copied_columns() {
        let Some(current) = existing.column(&column.name) else {
            return Err(TransferError::Incompatible {
                table: label,
                message: format!("it has no column \"{}\" (source column {})", column.name, column.source_name),
            });
        };
        if current.data_type != ColumnType::Postgres(column.pg_type) {
            let shown = match &current.data_type {
                ColumnType::Postgres(t) => t.to_string(),
                ColumnType::Unsupported { type_name, .. } => type_name.clone(),
                ColumnType::Mssql(t) => t.to_string(),
            };
            return Err(TransferError::Incompatible {
                table: label,
                message: format!(
                    "column \"{}\" is {shown}, but the source column {} needs {}",
                    column.name, column.source_name, column.pg_type
                ),
            });
        }
        if !current.nullable && column.nullable {
            tracing::warn!(table = %label, column = %column.name, "target column is NOT NULL; source allows NULL");
        }
    }
    if let Some(extra) = existing.columns.iter().find(|c| {
        !c.nullable && c.default.is_none() && c.identity.is_none() && planned.columns.iter().all(|p| p.name != c.name)
    }) {
        return Err(TransferError::Incompatible {
            table: label,
            message: format!(
                "column \"{}\" is NOT NULL without a default, and the source has no such column",
                extra.name
            ),
        });
    }
    Ok(())
}

async fn plan_partitions<S: Source>(
    source: &S,
    spec: &ReadSpec,
    estimated_rows: u64,
    settings: PlanSettings,
) -> Result<Vec<Partition<S::Key>>, TransferError> {
    if spec.key.is_empty() {
        return Ok(partitions_from_bounds(Vec::new()));
    }
    let parts = partition_count(estimated_rows, settings);
    if parts <= 1 {
        return Ok(partitions_from_bounds(Vec::new()));
    }
    if spec.integer_key().is_some() {
        let Some((min, max)) = source.integer_range(spec).await? else {
            return Ok(partitions_from_bounds(Vec::new()));
        };
        let bounds = integer_bounds(min, max, parts).into_iter().map(|b| source.integer_key(spec, b)).collect();
        return Ok(partitions_from_bounds(bounds));
    }
    let every = (estimated_rows / u64::from(parts)).max(1);
    let mut bounds = source.boundaries(spec, every).await?;
    // The last boundary would leave an empty or tiny final partition.
    bounds.truncate(parts as usize - 1);
    Ok(partitions_from_bounds(bounds))
}

#[derive(Debug, PartialEq, Eq)]
struct Job {
    table: usize,
    partition: usize,
}

/// What a reader task should do next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Copy(Job),
    /// Partitions remain, but only of tables that would exceed `workers`.
    Wait,
    Finished,
}

/// Hands out partitions so that at most `workers` tables are in flight.
#[derive(Debug)]
struct Scheduler {
    jobs: VecDeque<Job>,
    active: HashMap<usize, usize>,
    workers: usize,
}

impl Scheduler {
    fn next(&mut self) -> Next {
        if self.jobs.is_empty() {
            return Next::Finished;
        }
        let eligible = |j: &Job| self.active.contains_key(&j.table) || self.active.len() < self.workers;
        let Some(job) = self.jobs.iter().position(eligible).and_then(|pos| self.jobs.remove(pos)) else {
            return Next::Wait;
        };
        *self.active.entry(job.table).or_insert(0) += 1;
        Next::Copy(job)
    }

    fn done(&mut self, table: usize) {
        if let Some(n) = self.active.get_mut(&table) {
            *n -= 1;
            if *n == 0 {
                self.active.remove(&table);
            }
        }
    }
}

async fn transfer_all<S: Source>(
    source: &Arc<S>,
    target: &PgPool,
    work: &[Arc<TableWork<S::Key>>],
    tuning: Tuning,
    continue_on_error: bool,
    cancel: &CancellationToken,
) -> Option<TransferError> {
    let mut order: Vec<usize> = (0..work.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(work[i].source.estimated_rows));
    let jobs = order
        .into_iter()
        .flat_map(|t| (0..work[t].partitions.len()).map(move |p| Job { table: t, partition: p }))
        .collect();
    let scheduler = Arc::new(Mutex::new(Scheduler { jobs, active: HashMap::new(), workers: tuning.workers }));
    // Wakes readers waiting for a table to finish (see `Next::Wait`).
    let table_done = Arc::new(Notify::new());
    let work: Arc<[Arc<TableWork<S::Key>>]> = work.into();
    let writers = Arc::new(Semaphore::new(tuning.write_ahead_writers));
    let fatal: Arc<std::sync::Mutex<Option<TransferError>>> = Arc::new(std::sync::Mutex::new(None));
    let stop = cancel.child_token();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..tuning.parallel_readers {
        let source = Arc::clone(source);
        let target = target.clone();
        let work = Arc::clone(&work);
        let scheduler = Arc::clone(&scheduler);
        let table_done = Arc::clone(&table_done);
        let writers = Arc::clone(&writers);
        let fatal = Arc::clone(&fatal);
        let stop = stop.clone();
        tasks.spawn(async move {
            loop {
                if stop.is_cancelled() {
                    return;
                }
                // Registered before looking, so a table finishing in between still wakes us.
                let woken = table_done.notified();
                let next = scheduler.lock().await.next();
                let job = match next {
                    Next::Copy(job) => job,
                    Next::Wait => {
                        tokio::select! {
                            () = woken => {}
                            () = stop.cancelled() => return,
                        }
                        continue;
                    }
                    Next::Finished => return,
                };
                let table = &work[job.table];
                if table.failure().is_none() {
                    if let Ok(mut s) = table.started.lock() {
                        s.get_or_insert_with(Instant::now);
                    }
                    let result =
                        copy_partition(source.as_ref(), &target, table, job.partition, tuning, &writers, &stop).await;
                    if let Err(e) = result {
                        tracing::error!(table = %table.spec.label, partition = job.partition, error = %e, "partition failed");
                        table.fail(e.to_string());
                        if !continue_on_error || matches!(e, TransferError::Cancelled) {
                            if let Ok(mut slot) = fatal.lock()
                                && slot.is_none()
                            {
                                *slot = Some(e);
                            }
                            stop.cancel();
                        }
                    }
                }
                if table.remaining.fetch_sub(1, Ordering::AcqRel) == 1
                    && let Ok(mut f) = table.finished.lock()
                {
                    *f = Some(Instant::now());
                }
                scheduler.lock().await.done(job.table);
                table_done.notify_waiters();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let error = fatal.lock().ok().and_then(|mut f| f.take());
    match error {
        Some(e) => Some(e),
        None if cancel.is_cancelled() => Some(TransferError::Cancelled),
        None => None,
    }
}

async fn copy_partition<S: Source>(
    source: &S,
    target: &PgPool,
    table: &TableWork<S::Key>,
    partition: usize,
    tuning: Tuning,
    writers: &Semaphore,
    stop: &CancellationToken,
) -> Result<(), TransferError> {
    let part = &table.partitions[partition];
    let limit = if table.spec.key.is_empty() { None } else { Some(tuning.chunk_size) };
    let mut after = part.after.clone();
    loop {
        if stop.is_cancelled() {
            return Err(TransferError::Cancelled);
        }
        let (pieces_tx, pieces_rx) = mpsc::channel::<Bytes>(tuning.read_ahead_buffers);
        let (verdict_tx, verdict_rx) = oneshot::channel::<()>();
        let read = async {
            let mut sink = PieceSink::new(pieces_tx, tuning.piece_bytes);
            let page = source.read_page(&table.spec, after.as_ref(), part.upto.as_ref(), limit, &mut sink).await?;
            let bytes = sink.finish().await.map_err(|_| TransferError::Cancelled)?;
            let _ = verdict_tx.send(());
            Ok::<_, TransferError>((page, bytes))
        };
        let write = write_chunk(target, writers, &table.copy_sql, pieces_rx, verdict_rx, &table.spec.label);
        let (read, write) = tokio::join!(read, write);
        // The writer's error is the cause when both failed: the reader then
        // only saw its channel close.
        let written = write?;
        let (page, bytes) = read?;
        debug_assert_eq!(written, page.rows);
        table.rows.fetch_add(page.rows, Ordering::Relaxed);
        table.bytes.fetch_add(bytes, Ordering::Relaxed);
        tracing::debug!(table = %table.spec.label, partition, rows = page.rows, "chunk committed");
        let full = limit.is_some_and(|l| page.rows >= l);
        match page.last_key {
            Some(key) if full => after = Some(key),
            _ => return Ok(()),
        }
    }
}

/// Streams one chunk's pieces into a COPY and commits it once the reader
/// has confirmed the page is complete. Returns the rows the server copied.
async fn write_chunk(
    target: &PgPool,
    writers: &Semaphore,
    copy_sql: &str,
    mut pieces: mpsc::Receiver<Bytes>,
    verdict: oneshot::Receiver<()>,
    label: &str,
) -> Result<u64, TransferError> {
    let Some(first) = pieces.recv().await else {
        // Every page sends at least the COPY header, so the reader failed
        // before producing anything; it reports why.
        return Ok(0);
    };
    let context = |what: &str| format!("{what} {label}");
    let _permit = writers.acquire().await.map_err(|_| TransferError::Cancelled)?;
    let mut client = target.get(Side::Target).await?;
    let tx =
        client.transaction().await.map_err(|e| TransferError::pg(Side::Target, context("starting a chunk of"), &e))?;
    let sink = tx.copy_in(copy_sql).await.map_err(|e| TransferError::pg(Side::Target, context("copying into"), &e))?;
    pin_mut!(sink);
    sink.feed(first).await.map_err(|e| TransferError::pg(Side::Target, context("copying into"), &e))?;
    while let Some(piece) = pieces.recv().await {
        sink.feed(piece).await.map_err(|e| TransferError::pg(Side::Target, context("copying into"), &e))?;
    }
    if verdict.await.is_err() {
        // Dropping the sink aborts the COPY, and dropping the transaction rolls it back.
        return Ok(0);
    }
    let rows =
        sink.as_mut().finish().await.map_err(|e| TransferError::pg(Side::Target, context("copying into"), &e))?;
    tx.commit().await.map_err(|e| TransferError::pg(Side::Target, context("committing a chunk of"), &e))?;
    Ok(rows)
}

/// Builds keys, indexes, constraints and identities after the data, in
/// parallel across tables, then the foreign keys. Returns what failed.
async fn finalize<K: Send + Sync + 'static>(
    target: &PgPool,
    work: &[Arc<TableWork<K>>],
    saved_foreign_keys: &[(TargetTable, TargetForeignKey)],
    config: &Config,
    parallel: usize,
) -> Vec<String> {
    let m = &config.migration;
    let complete: Vec<&Arc<TableWork<K>>> = work.iter().filter(|w| w.failure().is_none()).collect();
    let per_table = futures_util::stream::iter(complete.iter().map(|w| {
        let mut steps: Vec<(String, String)> = Vec::new();
        let t = &w.target;
        if w.created {
            if let Some(pk) = &t.primary_key {
                steps.push((ddl::add_primary_key(t, pk), format!("primary key {} on {}", pk.name, t.name)));
            }
            for key in &t.unique_constraints {
                steps.push((ddl::add_unique(t, key), format!("unique constraint {} on {}", key.name, t.name)));
            }
            if m.create_indexes {
                for index in &t.indexes {
                    steps.push((ddl::create_index(t, index), format!("index {} on {}", index.name, t.name)));
                }
            }
            if m.create_check_constraints {
                for check in &t.checks {
                    steps.push((
                        ddl::add_check(t, &check.name, &check.expression),
                        format!("check {} on {}", check.name, t.name),
                    ));
                }
            }
            if m.use_unlogged_tables {
                steps.push((ddl::set_logged(t), format!("SET LOGGED on {}", t.name)));
            }
        }
        async move {
            let mut errors = Vec::new();
            let client = match target.get(Side::Target).await {
                Ok(c) => c,
                Err(e) => return vec![e.to_string()],
            };
            for (sql, what) in steps {
                if let Err(e) = execute(&client, &sql, &what).await {
                    errors.push(e.to_string());
                }
            }
            for column in t.columns.iter().filter(|c| c.identity.is_some()) {
                if let Err(e) = align_identity(&client, t, column).await {
                    errors.push(e.to_string());
                }
            }
            errors
        }
    }))
    .buffer_unordered(parallel)
    .collect::<Vec<_>>()
    .await;
    let mut errors: Vec<String> = per_table.into_iter().flatten().collect();

    let mut fk_steps: Vec<(String, String)> = Vec::new();
    if m.create_foreign_keys {
        for w in complete.iter().filter(|w| w.created) {
            for fk in &w.target.foreign_keys {
                fk_steps.push((
                    ddl::add_foreign_key(&w.target, fk),
                    format!("foreign key {} on {}", fk.name, w.target.name),
                ));
            }
        }
    }
    for (owner, fk) in saved_foreign_keys {
        fk_steps
            .push((ddl::add_foreign_key(owner, fk), format!("foreign key {} on {} (put back)", fk.name, owner.name)));
    }
    // Foreign keys lock both tables they join, so circular ones built in
    // parallel can deadlock; the server picks a victim, which is retried.
    let fk_errors = futures_util::stream::iter(fk_steps.into_iter().map(|(sql, what)| async move {
        let client = target.get(Side::Target).await.map_err(|e| e.to_string())?;
        let mut attempt = 0;
        loop {
            match execute(&client, &sql, &what).await {
                Err(e) if e.is_transient() && attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                other => return other.map_err(|e| e.to_string()),
            }
        }
    }))
    .buffer_unordered(parallel)
    .filter_map(|r| async move { r.err() })
    .collect::<Vec<_>>()
    .await;
    errors.extend(fk_errors);
    errors
}

async fn align_identity(
    client: &tokio_postgres::Client,
    table: &TargetTable,
    column: &mssql_pg_migrate_schema::target::TargetColumn,
) -> Result<(), TransferError> {
    let Some(identity) = column.identity else { return Ok(()) };
    let what = format!("aligning the identity of {}.{}", table.name, column.name);
    let row = client
        .query_one(&ddl::identity_extreme(table, column), &[])
        .await
        .map_err(|e| TransferError::pg(Side::Target, &what, &e))?;
    let extreme: Option<String> = row.try_get(0).map_err(|e| TransferError::pg(Side::Target, &what, &e))?;
    let loaded = extreme.and_then(|s| s.parse::<i128>().ok());
    let Some(next) = ddl::identity_next(identity.seed, identity.increment, identity.current, loaded, column.pg_type)
    else {
        tracing::warn!(table = %table.name, column = %column.name, "identity is exhausted; not restarted");
        return Ok(());
    };
    execute(client, &ddl::restart_identity(table, column, next), &what).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(jobs: &[(usize, usize)], workers: usize) -> Scheduler {
        let jobs = jobs.iter().map(|&(table, partition)| Job { table, partition }).collect();
        Scheduler { jobs, active: HashMap::new(), workers }
    }

    #[test]
    fn no_more_tables_than_workers_are_in_flight() {
        let mut s = scheduler(&[(0, 0), (1, 0), (0, 1), (2, 0)], 2);
        assert_eq!(s.next(), Next::Copy(Job { table: 0, partition: 0 }));
        assert_eq!(s.next(), Next::Copy(Job { table: 1, partition: 0 }));
        // Table 2 would be a third table; table 0's second partition may go.
        assert_eq!(s.next(), Next::Copy(Job { table: 0, partition: 1 }));
        assert_eq!(s.next(), Next::Wait);
        s.done(0);
        assert_eq!(s.next(), Next::Wait, "table 0 still has a partition in flight");
        s.done(0);
        assert_eq!(s.next(), Next::Copy(Job { table: 2, partition: 0 }));
        assert_eq!(s.next(), Next::Finished);
    }
}
