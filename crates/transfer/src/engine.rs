//! The full-load pipeline: catalog → target tables → chunked parallel copy
//! → finalization → report, recorded in a run state so that an
//! interrupted run resumes where it stopped.
//!
//! Each chunk is one page of at most `chunk_size` rows, read by keyset
//! (`(key) > last ORDER BY key`) within its partition, and written in one
//! target transaction: a reader fills the target's row sink, whose pieces
//! a writer streams as they arrive (`COPY ... FROM STDIN (FORMAT binary)`
//! into PostgreSQL, the TDS bulk load into SQL Server; see the `target` module).
//! The writer commits only when the reader reports that the page is
//! complete, so a failed read never leaves a partial chunk behind. How the
//! chunk's progress reaches the state around that commit is in
//! [`crate::progress`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use futures_util::StreamExt;
use mssql_pg_migrate_config::{Config, DeleteMissing, Fingerprint, MigrationConfig, TargetKind, TargetMode};
use mssql_pg_migrate_schema::Table;
use mssql_pg_migrate_schema::target::TargetTable;
use mssql_pg_migrate_state::{ChangeMark, PartitionState, RunState, RunStatus, TableState, WorkStatus, now_rfc3339};
use tokio::sync::{Mutex, Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::connect::{SourceJob, mssql_target_endpoint, target_endpoint, with_source};
use crate::error::{Side, TransferError};
use crate::events::{Event, EventSink, PlannedTable, emit};
use crate::failpoint;
use crate::pause::PauseSwitch;
use crate::plan::{
    Partition, PlanSettings, TableSize, filler_count, integer_bounds, partition_count, partitions_from_bounds,
    read_weight,
};
use crate::planning::{
    Step, apply_upsert_keys, change_column, plan_targets, require_change_columns, require_upsert_keys,
};
use crate::pool::PgPool;
use crate::progress::{self, Progress, StateLocation};
use crate::report::{MergeCounts, RunReport, TableReport, TableStatus, rate};
use crate::retry::{Backoff, with_retries};
use crate::source::{ChangedSince, ReadSpec, Source};
use crate::target::mssql::MssqlTarget;
use crate::target::postgres::PgTarget;
use crate::target::{ChunkWrite, ReadEnd, RunLock, Target, WriteMode};
use crate::tuning::{Machine, Tuning};

/// Per-run choices that are not in the configuration file.
#[derive(Clone, Default)]
pub struct RunOptions {
    pub source_schema: Option<String>,
    pub target_schema: Option<String>,
    pub workers: Option<u32>,
    /// Cancelled by the caller (a signal handler, the TUI) to stop issuing
    /// chunks; chunks in flight finish.
    pub cancel: CancellationToken,
    /// Cancelled to abandon chunks in flight at once (a second signal, or
    /// the shutdown timeout); their transactions roll back.
    pub abort: CancellationToken,
    /// Where the run state lives.
    pub state: StateLocation,
    /// Continue the saved run instead of starting a new one.
    pub resume: bool,
    /// Receives the run's events.
    pub events: Option<EventSink>,
    /// Holds new chunks back while paused (chunks in flight finish).
    pub pause: PauseSwitch,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("source_schema", &self.source_schema)
            .field("target_schema", &self.target_schema)
            .field("workers", &self.workers)
            .field("state", &self.state)
            .field("resume", &self.resume)
            .field("events", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    fn emit(&self, event: Event) {
        emit(self.events.as_ref(), event);
    }
}

/// Runs a full load (`drop_recreate` or `truncate`) as `config` describes,
/// or resumes the saved one (`options.resume`).
///
/// # Errors
/// The first error that stops the run. Errors confined to one table are in
/// the report instead when `continue_on_error` is set.
pub async fn run(config: &Config, options: &RunOptions) -> Result<RunReport, TransferError> {
    let tuning = Tuning::resolve(&config.migration, Machine::for_run(config), options.workers);
    tracing::debug!(?tuning, "tuning");
    let max_target = tuning.max_target_connections;
    match config.target.kind {
        TargetKind::Postgres => {
            let pool = PgPool::new(&target_endpoint(&config.target), Side::Target, max_target)?;
            let target = PgTarget::new(pool)?;
            with_source(&config.source, tuning.max_source_connections, RunJob { target, config, tuning, options }).await
        }
        TargetKind::Mssql => {
            let target = MssqlTarget::connect(mssql_target_endpoint(&config.target), max_target).await?;
            with_source(&config.source, tuning.max_source_connections, RunJob { target, config, tuning, options }).await
        }
    }
}

struct RunJob<'a, T> {
    target: T,
    config: &'a Config,
    tuning: Tuning,
    options: &'a RunOptions,
}

impl<T: Target> SourceJob for RunJob<'_, T> {
    type Output = RunReport;

    async fn call<S: Source>(self, source: Arc<S>) -> Result<RunReport, TransferError> {
        run_with(source, self.target, self.config, self.tuning, self.options).await
    }
}

/// The fingerprint of `config` with the schema overrides applied, which is
/// what a resume must match.
fn fingerprint_with(config: &Config, source_schema: Option<&str>, target_schema: Option<&str>) -> Fingerprint {
    let mut effective = config.clone();
    if let Some(s) = source_schema {
        effective.source.schema = s.to_owned();
    }
    if let Some(t) = target_schema {
        effective.target.schema = t.to_owned();
    }
    effective.fingerprint()
}

/// The state this run works on: a new one, or the saved one to resume,
/// which must have been made under the same configuration.
fn begin_state(
    config: &Config,
    options: &RunOptions,
    saved: Option<RunState>,
    where_: &str,
) -> Result<RunState, TransferError> {
    if options.resume {
        let Some(mut state) = saved else {
            return Err(TransferError::State(format!(
                "nothing to resume: no saved run state in {where_}; start the migration with `run`"
            )));
        };
        let current = fingerprint_with(config, state.source_schema.as_deref(), state.target_schema.as_deref());
        if current.hash != state.config_hash {
            let changed = match &state.config {
                Some(canonical) => Fingerprint::from_canonical(canonical.clone()).changed_keys(&current),
                None => Vec::new(),
            };
            let what = if changed.is_empty() {
                "the configuration changed".to_owned()
            } else {
                format!("changed: {}", changed.join(", "))
            };
            return Err(TransferError::State(format!(
                "Config hash mismatch - cannot resume with different configuration (run {}, {what}); \
                 restore the original configuration, or start a new migration with `run`",
                state.run_id
            )));
        }
        tracing::info!(run_id = %state.run_id, "resuming");
        state.status = RunStatus::Running;
        return Ok(state);
    }
    if let Some(old) = &saved
        && old.status != RunStatus::Completed
    {
        tracing::warn!(run_id = %old.run_id, status = ?old.status, "an unfinished run's state is replaced by a new run");
    }
    let source_schema = options.source_schema.as_deref();
    let target_schema = options.target_schema.as_deref();
    let fingerprint = fingerprint_with(config, source_schema, target_schema);
    let mut state = RunState::new(uuid::Uuid::new_v4().to_string(), fingerprint.hash, now_rfc3339());
    state.config = Some(fingerprint.canonical);
    state.source_schema = options.source_schema.clone();
    state.target_schema = options.target_schema.clone();
    // Foreign keys an unfinished truncate-mode run dropped are no longer in
    // the target's catalog; only its state remembers them.
    if let Some(old) = saved {
        // Where each table's incremental reads stand, whatever became of the last run.
        state.marks = old.marks;
        if old.status != RunStatus::Completed {
            state.restore = old.restore;
        }
    }
    Ok(state)
}

/// Runs the pipeline against any source.
///
/// # Errors
/// See [`run`].
pub(crate) async fn run_with<S: Source, T: Target>(
    source: Arc<S>,
    target: T,
    config: &Config,
    tuning: Tuning,
    options: &RunOptions,
) -> Result<RunReport, TransferError> {
    let control = target.state_store();
    let key = config.target.schema.clone();
    let where_ = match (&options.state, &control) {
        (StateLocation::File(path), _) => format!("state file {}", path.display()),
        (StateLocation::Target, Some(control)) => {
            format!("schema {} of the target database {}", progress::STATE_SCHEMA, control.address())
        }
        (StateLocation::Target, None) => {
            return Err(TransferError::Config(format!(
                "the target {} keeps no run state; give the run a state file (--state-file FILE)",
                target.address()
            )));
        }
    };
    // Losing the lock to another run (while the target was restarting)
    // abandons the chunks in flight, as a second signal would.
    let options = &RunOptions { abort: options.abort.child_token(), ..options.clone() };
    let backoff = Backoff { events: options.events.clone(), ..Backoff::for_migration(&config.migration) };
    let setup = async {
        let lock = target.lock(&key, backoff.clone(), options.abort.clone()).await?;
        let saved = progress::load(&options.state, control.as_deref(), &key).await?;
        Ok::<_, TransferError>((lock, saved))
    };
    // A new run knows its source schema before any state: its catalog is
    // read while the target is set up (a large catalog takes seconds). A
    // resume takes the schema from the saved state, so it reads later.
    let catalog = async {
        if options.resume {
            return None;
        }
        let schema = options.source_schema.as_deref().unwrap_or(&config.source.schema);
        Some(read_selected_tables(source.as_ref(), schema, &config.migration).await)
    };
    let (setup, catalog) = futures_util::future::join(setup, catalog).await;
    let (lock, saved) = setup?;
    // Marks kept in the target win over a state's: a state file may be per run.
    let kept_marks = match &control {
        Some(control) if !options.resume && !config.migration.change_columns.is_empty() => {
            progress::load_marks(control.as_ref(), &key).await?
        }
        _ => Default::default(),
    };
    // Upsert refuses keyless tables before any state or table is written
    // (a resume checks its tables when it plans them).
    if let Some(Ok(tables)) = &catalog
        && config.migration.target_mode == TargetMode::Upsert
    {
        let target_schema = options.target_schema.as_deref().unwrap_or(&config.target.schema);
        let mut tables = tables.clone();
        apply_upsert_keys(&mut tables, &config.migration)?;
        let plan = plan_targets(tables, &config.migration, target_schema, source.dialect())?;
        require_upsert_keys(&plan.tables, &config.migration)?;
        require_change_columns(&plan.tables, &config.migration)?;
    }
    let mut state = begin_state(config, options, saved, &where_)?;
    state.marks.extend(kept_marks);
    let run_id = state.run_id.clone();
    let progress = Arc::new(Progress::open(&options.state, control, &key, state, backoff).await?);
    progress.save().await?;
    options.emit(Event::Started { run_id: run_id.clone(), resumed: options.resume });

    // Every record of the run carries its run_id (`--log-format json`: in
    // "span"), also those of the tasks it spawns (`in_current_span`).
    let span = tracing::info_span!("run", run_id = %run_id);
    let result =
        tracing::Instrument::instrument(migrate(&source, &target, config, tuning, options, &progress, catalog), span)
            .await;
    if let Some(lost) = lock.lost() {
        // The state is the other run's now.
        return Err(TransferError::State(lost));
    }
    let status = match &result {
        Ok(report) if report.is_success() => RunStatus::Completed,
        Err(TransferError::Cancelled) => RunStatus::Cancelled,
        _ => RunStatus::Failed,
    };
    let saved = progress.save_with(|s| s.status = status).await;
    let mut report = result?;
    saved?;
    report.run_id = run_id;
    Ok(report)
}

/// One table's work, shared by the tasks that copy its partitions.
struct TableWork<K> {
    target: TargetTable,
    /// The source table as its catalog describes it (a SQL Server target
    /// declares its copy from it).
    source: Table,
    spec: ReadSpec,
    estimated_rows: u64,
    /// [`read_weight`]: heavier reads start first.
    scheduling_size: u64,
    /// The partitions' key bounds, as planned (or as the resumed state has them).
    partitions: Vec<Partition<K>>,
    /// Whether the target table was created by this migration (so
    /// finalization builds its keys and indexes).
    created: bool,
    /// Target names of the key columns, for replacing a staged chunk.
    key_columns: Vec<String>,
    rows: AtomicU64,
    bytes: AtomicU64,
    /// Upsert mode: rows the merges inserted and updated, and rows deleted
    /// for being gone from the source.
    inserted: AtomicU64,
    updated: AtomicU64,
    deleted: AtomicU64,
    remaining: AtomicU64,
    failed: std::sync::Mutex<Option<String>>,
    /// Stopped by cancellation: neither done nor failed.
    cancelled: AtomicBool,
    started: std::sync::Mutex<Option<Instant>>,
    finished: std::sync::Mutex<Option<Instant>>,
    /// Whether its keys, indexes and checks are built (or being built).
    finalized: AtomicBool,
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

    fn label(&self) -> &str {
        &self.spec.label
    }
}

fn skipped_report(source: String, error: String) -> TableReport {
    TableReport {
        source,
        target: String::new(),
        status: TableStatus::Skipped,
        rows: 0,
        bytes: 0,
        partitions: 0,
        seconds: 0.0,
        rows_per_second: 0.0,
        mb_per_second: 0.0,
        error: Some(error),
        notes: Vec::new(),
        merged: None,
    }
}

async fn migrate<S: Source, T: Target>(
    source: &Arc<S>,
    target: &T,
    config: &Config,
    tuning: Tuning,
    options: &RunOptions,
    progress: &Arc<Progress>,
    catalog: Option<Result<Vec<Table>, TransferError>>,
) -> Result<RunReport, TransferError> {
    let started = Instant::now();
    let m = &config.migration;
    let backoff = progress.backoff().clone();
    let (source_schema, target_schema, resuming) = progress.with(|s| {
        (
            s.source_schema.clone().unwrap_or_else(|| config.source.schema.clone()),
            s.target_schema.clone().unwrap_or_else(|| config.target.schema.clone()),
            s.is_planned(),
        )
    });

    let mut tables = match catalog {
        Some(read) => read?,
        None => read_selected_tables(source.as_ref(), &source_schema, m).await?,
    };
    apply_upsert_keys(&mut tables, m)?;
    failpoint::reached("catalog-read").await;

    let mut plan = plan_targets(tables, m, &target_schema, source.dialect())?;
    target.adjust_plan(&mut plan.tables);
    // Before anything is written.
    require_upsert_keys(&plan.tables, m)?;
    require_change_columns(&plan.tables, m)?;
    let mut reports: Vec<TableReport> = plan.skipped.into_iter().map(|(t, e)| skipped_report(t, e)).collect();
    let planned = plan.tables;

    let settings = PlanSettings::new(m, &tuning);
    let run_bytes = run_bytes(planned.iter().map(|(t, _)| t));
    let mut work = Vec::with_capacity(planned.len());
    if resuming {
        check_resumable(progress, &planned, &reports)?;
        for (table, target_table) in planned {
            work.push(
                resume_table(source.as_ref(), target, progress, (table, target_table), (settings, run_bytes), m)
                    .await?,
            );
        }
    } else {
        let prepared = target.prepare(&planned, config, &target_schema, progress).await?;
        failpoint::reached("target-prepared").await;
        let mut states = std::collections::BTreeMap::new();
        let mut marks = std::collections::BTreeMap::new();
        for ((table, mut target_table), prepared) in planned.into_iter().zip(prepared) {
            let is_new = prepared.created;
            target_table.notes.extend(prepared.notes);
            let mut spec = ReadSpec::new(&table, &target_table);
            spec.min_chunk_bytes = tuning.min_chunk_bytes;
            if prepared.failed.is_none()
                && let Some((column, kind)) = change_column(&table, m)?
            {
                // Taken before any row is read: what commits from now on is
                // read by this sync or the next.
                let next = with_retries(&backoff, &spec.label, &options.cancel, |_| {
                    source.change_mark(&spec, &column.name, kind, m.change_lookback)
                })
                .await?;
                let previous = progress.with(|s| {
                    s.marks.get(&spec.label).filter(|mk| mk.column == column.name).and_then(|mk| mk.mark.clone())
                });
                tracing::info!(table = %spec.label, column = %column.name, from = ?previous, next = ?next, "incremental read");
                marks.insert(
                    spec.label.clone(),
                    ChangeMark { column: column.name.clone(), mark: previous.clone(), next },
                );
                spec.changed_since = previous.filter(|_| !is_new).map(|mark| ChangedSince::new(column, kind, mark));
            }
            let planned = match prepared.failed {
                Some(e) => Err(e),
                None => {
                    with_retries(&backoff, &spec.label, &options.cancel, |_| {
                        plan_read(source.as_ref(), &spec, &table, (settings, run_bytes), appends(m, is_new))
                    })
                    .await
                }
            };
            let (partitions, weight, basis) = match planned {
                Ok(read) => (read.partitions, weight_of(&table, run_bytes, read.rows, m, is_new), read.basis),
                Err(e) if m.continue_on_error => {
                    tracing::error!(table = %spec.label, error = %e, "cannot load the table");
                    let state = TableState {
                        status: WorkStatus::Failed,
                        ..TableState::new(ddl_label(&target_table), is_new, table.estimated_rows, Vec::new())
                    };
                    states.insert(spec.label.clone(), state);
                    let w = new_work(spec, target_table, &table, Vec::new(), is_new, 0);
                    w.fail(e.to_string());
                    work.push(w);
                    continue;
                }
                Err(e) => return Err(e),
            };
            tracing::info!(table = %spec.label, partitions = partitions.len(), key = spec.key.len(), "planned");
            let partition_states = partition_states::<S>(&partitions);
            states.insert(
                spec.label.clone(),
                TableState {
                    read_basis: basis,
                    ..TableState::new(ddl_label(&target_table), is_new, table.estimated_rows, partition_states)
                },
            );
            work.push(new_work(spec, target_table, &table, partitions, is_new, weight));
        }
        for r in &reports {
            states.insert(
                r.source.clone(),
                TableState { status: WorkStatus::Skipped, ..TableState::new("", false, 0, Vec::new()) },
            );
        }
        progress
            .save_with(|s| {
                s.tables = states;
                s.marks.extend(marks);
            })
            .await?;
        failpoint::reached("planned").await;
    }
    let run_id = progress.with(|s| s.run_id.clone());
    options.emit(Event::Planned {
        run_id,
        resumed: resuming,
        tables: work
            .iter()
            .map(|w| PlannedTable {
                source: w.spec.label.clone(),
                target: ddl_label(&w.target),
                estimated_rows: w.estimated_rows,
                partitions: w.partitions.len(),
                rows_done: w.rows.load(Ordering::Relaxed),
            })
            .collect(),
    });
    for w in work.iter().filter(|w| !w.target.notes.is_empty()) {
        options.emit(Event::Notes { table: w.spec.label.clone(), notes: w.target.notes.clone() });
    }
    let work: Vec<Arc<TableWork<S::Key>>> = work.into_iter().map(Arc::new).collect();

    // Copy.
    let parallel = finalization_width(&tuning);
    let context = CopyContext {
        progress: Arc::clone(progress),
        upsert: (m.target_mode == TargetMode::Upsert).then(|| m.delete_missing.clone()),
        tuning,
        backoff: backoff.clone(),
        events: options.events.clone(),
        pause: options.pause.clone(),
        finalizing: EarlyFinalizer::new(target.clone(), config.clone(), backoff.clone(), options, parallel),
    };
    let fatal =
        transfer_all(source, target, &work, &context, m.continue_on_error, &options.cancel, &options.abort).await;
    // The writers' connections are free now: the builds still waiting
    // run side by side rather than one after another.
    context.finalizing.grow(parallel);
    let early_errors = context.finalizing.finish(&options.abort).await;
    if let Some(e) = fatal {
        // The tables finalized before the stop are given what a finished
        // run gives them; the rest get it when the run is resumed.
        if !options.abort.is_cancelled() {
            let finalized = work.iter().filter(|w| w.finalized.load(Ordering::Acquire) && w.failure().is_none());
            for error in close_tables(target, finalized, parallel, &backoff, options, &options.abort).await {
                tracing::warn!(%error, "a closing step failed as the run stopped");
            }
        }
        return Err(e);
    }

    // Finalize the tables whose data is complete (those not finalized
    // while others loaded), then the foreign keys.
    let restore = progress.with(|s| s.restore.clone());
    let mut finalization_errors = early_errors;
    finalization_errors.extend(finalize(target, &work, &restore, config, parallel, &backoff, options).await);

    for w in &work {
        let rows = w.rows.load(Ordering::Relaxed);
        let bytes = w.bytes.load(Ordering::Relaxed);
        let seconds = match (w.started.lock().ok().and_then(|s| *s), w.finished.lock().ok().and_then(|f| *f)) {
            (Some(s), Some(f)) => f.duration_since(s).as_secs_f64(),
            _ => 0.0,
        };
        let error = w.failure();
        reports.push(TableReport {
            source: w.spec.label.clone(),
            target: ddl_label(&w.target),
            status: if error.is_some() { TableStatus::Failed } else { TableStatus::Completed },
            rows,
            bytes,
            partitions: w.partitions.len(),
            seconds,
            rows_per_second: rate(rows, seconds),
            mb_per_second: rate(bytes, seconds) / 1e6,
            error,
            notes: w.target.notes.clone(),
            merged: (m.target_mode == TargetMode::Upsert).then(|| {
                // A table the run created was loaded, not merged: all its rows are new.
                let inserted = if w.created { rows } else { w.inserted.load(Ordering::Relaxed) };
                let updated = w.updated.load(Ordering::Relaxed);
                MergeCounts {
                    inserted,
                    updated,
                    unchanged: rows.saturating_sub(inserted + updated),
                    deleted: w.deleted.load(Ordering::Relaxed),
                    read_since: w.spec.changed_since.as_ref().map(|c| c.mark.clone()),
                }
            }),
        });
    }
    reports.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(RunReport::new(reports, started.elapsed().as_secs_f64(), finalization_errors))
}

/// The tables of `schema` the configuration selects.
///
/// # Errors
/// When the catalog cannot be read, or selects no table.
pub(crate) async fn read_selected_tables<S: Source>(
    source: &S,
    schema: &str,
    m: &MigrationConfig,
) -> Result<Vec<Table>, TransferError> {
    // Which include patterns matched a table, so that a name given without
    // wildcards that matches nothing (a typo, or a table the login cannot
    // see) stops the run instead of silently leaving the table out.
    let included = std::sync::Mutex::new(vec![false; m.include_tables.len()]);
    let select = |schema: &str, table: &str| {
        if let Ok(mut seen) = included.lock() {
            for (i, p) in m.include_tables.iter().enumerate() {
                seen[i] |= p.matches(schema, table);
            }
        }
        m.selects_table(schema, table)
    };
    // A catalog read that fails in a way that may pass (a dropped session, a
    // deadlock, a failover) is read again, as a chunk would be.
    let backoff = Backoff::for_migration(m);
    let never = CancellationToken::new();
    let tables =
        with_retries(&backoff, "reading the source catalog", &never, |_| source.read_schema(schema, &select)).await?;
    let seen = included.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let missing: Vec<&str> = m
        .include_tables
        .iter()
        .zip(&seen)
        .filter(|(p, matched)| !**matched && !p.as_str().contains(['*', '?']))
        .map(|(p, _)| p.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(TransferError::Config(format!(
            "migration.include_tables names {} that schema '{schema}' of the source does not have, \
             or that the login cannot see: {}",
            if missing.len() == 1 { "a table" } else { "tables" },
            missing.join(", ")
        )));
    }
    if tables.is_empty() {
        return Err(TransferError::Config(format!(
            "no tables to migrate: schema '{schema}' of the source has no tables that \
             migration.include_tables / exclude_tables select"
        )));
    }
    tracing::info!(tables = tables.len(), schema = %schema, "catalog read");
    Ok(tables)
}

/// The state of freshly planned partitions: their bounds, nothing copied.
fn partition_states<S: Source>(partitions: &[Partition<S::Key>]) -> Vec<PartitionState> {
    partitions
        .iter()
        .map(|p| PartitionState::new(p.id, p.after.as_ref().map(S::key_to_state), p.upto.as_ref().map(S::key_to_state)))
        .collect()
}

fn ddl_label(t: &TargetTable) -> String {
    format!("{}.{}", t.schema, t.name)
}

fn new_work<K>(
    spec: ReadSpec,
    target: TargetTable,
    table: &Table,
    partitions: Vec<Partition<K>>,
    created: bool,
    weight: u64,
) -> TableWork<K> {
    let key_columns = spec.key_target_names(&target);
    TableWork {
        remaining: AtomicU64::new(partitions.len() as u64),
        partitions,
        target,
        source: table.clone(),
        spec,
        estimated_rows: table.estimated_rows,
        scheduling_size: weight,
        created,
        key_columns,
        rows: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        inserted: AtomicU64::new(0),
        updated: AtomicU64::new(0),
        deleted: AtomicU64::new(0),
        failed: std::sync::Mutex::new(None),
        cancelled: AtomicBool::new(false),
        started: std::sync::Mutex::new(None),
        finished: std::sync::Mutex::new(None),
        finalized: AtomicBool::new(false),
    }
}

/// The saved state must describe the same tables the source has now.
fn check_resumable(
    progress: &Progress,
    planned: &[(Table, TargetTable)],
    skipped: &[TableReport],
) -> Result<(), TransferError> {
    progress.with(|s| {
        for (_, t) in planned {
            let label = t.source_label();
            if !s.tables.contains_key(&label) {
                return Err(TransferError::State(format!(
                    "cannot resume run {}: table {label} is in the source but not in the saved run state; \
                     start a new migration with `run`",
                    s.run_id
                )));
            }
        }
        for (label, table) in &s.tables {
            let present =
                planned.iter().any(|(_, t)| &t.source_label() == label) || skipped.iter().any(|r| &r.source == label);
            if !present && table.status != WorkStatus::Skipped {
                return Err(TransferError::State(format!(
                    "cannot resume run {}: table {label} of the saved run state is no longer in the source \
                     (dropped, renamed or no longer selected)",
                    s.run_id
                )));
            }
        }
        Ok(())
    })
}

/// Rebuilds one table's work from the saved state.
async fn resume_table<S: Source, T: Target>(
    source: &S,
    target: &T,
    progress: &Progress,
    (table, target_table): (Table, TargetTable),
    (settings, run_bytes): (PlanSettings, u64),
    m: &MigrationConfig,
) -> Result<TableWork<S::Key>, TransferError> {
    let unlogged = m.use_unlogged_tables;
    let mut spec = ReadSpec::new(&table, &target_table);
    spec.min_chunk_bytes = settings.min_chunk_bytes;
    let label = spec.label.clone();
    let saved = progress
        .with(|s| s.tables.get(&label).cloned())
        .ok_or_else(|| TransferError::State(format!("table {label} is not in the saved run state")))?;
    // The interrupted run's incremental read goes on from the same mark.
    if !saved.created
        && let Some((column, kind)) = change_column(&table, m)?
        && let Some(mark) =
            progress.with(|s| s.marks.get(&label).filter(|mk| mk.column == column.name).and_then(|mk| mk.mark.clone()))
    {
        spec.changed_since = Some(ChangedSince::new(column, kind, mark));
    }
    let damaged = |why: String| TransferError::State(format!("saved run state, table {label}: {why}"));
    let mut partitions = Vec::with_capacity(saved.partitions.len());
    for p in &saved.partitions {
        let after = p.start_pk.as_deref().map(|k| source.key_from_state(&spec, k)).transpose().map_err(damaged)?;
        let upto = p.end_pk.as_deref().map(|k| source.key_from_state(&spec, k)).transpose().map_err(damaged)?;
        for k in [&p.last_pk, &p.pending_pk].into_iter().flatten() {
            source.key_from_state(&spec, k).map_err(damaged)?;
        }
        partitions.push(Partition { id: p.partition_id, after, upto });
    }
    let appends = appends(m, saved.created);
    // Ranges of storage blocks read under the interrupted run's snapshot
    // join ranges read under this one's only if the table did not change
    // in between; if it may have, the table is copied again, whole.
    let mut replan = partitions.is_empty();
    if !replan
        && saved.status != WorkStatus::Completed
        && let Some(basis) = &saved.read_basis
        && !source.resume_block_read(&spec, basis).await?
    {
        tracing::warn!(
            table = %label,
            "the source table may have changed since the interrupted run read part of it by storage blocks; \
             copying it again"
        );
        target.empty_table(&target_table).await?;
        replan = true;
    }
    if replan {
        // Planning failed for this table last time, or it starts over.
        let read = plan_read(source, &spec, &table, (settings, run_bytes), appends).await?;
        partitions = read.partitions;
        let states = partition_states::<S>(&partitions);
        progress
            .start_table_over(&label, |t| {
                t.partitions = states;
                t.read_basis = read.basis;
                t.status = WorkStatus::Pending;
            })
            .await?;
    } else if unlogged && saved.created && saved.committed_rows() > 0 {
        // A crash of the target server empties UNLOGGED tables; their
        // recorded progress is then void and the table starts over.
        let emptied = target.emptied_by_restart(&target_table, &label).await?;
        if emptied {
            tracing::warn!(table = %label, "UNLOGGED target table was emptied by a server restart; copying it again");
            progress
                .start_table_over(&label, |t| {
                    for p in &mut t.partitions {
                        *p = PartitionState::new(p.partition_id, p.start_pk.take(), p.end_pk.take());
                    }
                })
                .await?;
        }
    }
    // A resumed incremental read is not counted again: it weighs as much as
    // the whole table would, which only moves it ahead in the order.
    let weight = weight_of(&table, run_bytes, table.estimated_rows, m, saved.created);
    let work = new_work(spec, target_table, &table, partitions, saved.created, weight);
    work.rows.store(
        progress.with(|s| s.tables.get(&label).map(TableState::committed_rows).unwrap_or_default()),
        Ordering::Relaxed,
    );
    Ok(work)
}

/// The total size the planner balances readers over.
pub(crate) fn run_bytes<'a>(tables: impl Iterator<Item = &'a Table>) -> u64 {
    tables.map(Table::size_for_scheduling).fold(0, u64::saturating_add)
}

pub(crate) fn table_size(table: &Table, run_bytes: u64) -> TableSize {
    TableSize { rows: table.estimated_rows, bytes: table.size_for_scheduling(), run_bytes }
}

/// What a read of `spec` weighs for planning, with the rows it is expected
/// to return (`size.rows`), and for an incremental read whose rows were
/// counted, that count.
///
/// A full read weighs its table. An incremental read weighs the rows
/// changed since its mark, not the table: counted by the source where the
/// change column leads an index (an index range, milliseconds), so that
/// the row rule splits the change and its bounds are taken among the
/// changed keys (`Source::integer_range` and `Source::boundaries` read
/// under the read's condition). A change sits anywhere in the key, often
/// all at its end where new rows go; split by the table instead, it is
/// mostly ranges that hold nothing, each a query. Without such an index a
/// count would be one more scan of the table, so the table's rows are
/// weighed and its key ranges share the one pass the read makes. Neither
/// is split for balance (no bytes): an incremental read is small next to
/// the table's bytes.
pub(crate) async fn read_size<S: Source>(
    source: &S,
    spec: &ReadSpec,
    table: &Table,
    run_bytes: u64,
) -> Result<(TableSize, Option<u64>), TransferError> {
    let Some(changed) = &spec.changed_since else {
        return Ok((table_size(table, run_bytes), None));
    };
    if spec.key.is_empty() || !table.leads_an_index(&changed.column) {
        return Ok((TableSize { bytes: 0, ..table_size(table, run_bytes) }, None));
    }
    let rows = source.count_rows(spec).await?;
    tracing::debug!(table = %spec.label, changed = rows, "change counted");
    Ok((TableSize { rows, bytes: 0, run_bytes }, Some(rows)))
}

/// [`read_weight`] of reading `rows_read` rows of `table`: merged in upsert
/// mode unless the run created the table.
fn weight_of(table: &Table, run_bytes: u64, rows_read: u64, m: &MigrationConfig, created: bool) -> u64 {
    read_weight(table_size(table, run_bytes), rows_read, m.target_mode == TargetMode::Upsert && !created)
}

/// Splits a table's read into partitions by [`read_size`].
///
/// A read whose chunks are appended to the target (`appends`) is planned
/// as ranges of the source's storage where the source can
/// ([`Source::block_plan`]); otherwise by key.
async fn plan_read<S: Source>(
    source: &S,
    spec: &ReadSpec,
    table: &Table,
    (settings, run_bytes): (PlanSettings, u64),
    appends: bool,
) -> Result<PlannedRead<S::Key>, TransferError> {
    let (size, _) = read_size(source, spec, table, run_bytes).await?;
    let parts = partition_count(size, settings);
    if appends && let Some(plan) = source.block_plan(spec, parts).await? {
        tracing::debug!(table = %spec.label, partitions = plan.bounds.len() + 1, "read by storage blocks");
        return Ok(PlannedRead {
            partitions: partitions_from_bounds(plan.bounds),
            rows: size.rows,
            basis: Some(plan.basis),
        });
    }
    let partitions = plan_partitions(source, spec, parts, size.rows).await?;
    Ok(PlannedRead { partitions, rows: size.rows, basis: None })
}

/// [`plan_read`]'s plan.
struct PlannedRead<K> {
    partitions: Vec<Partition<K>>,
    /// The rows the read is expected to return (see [`read_size`]).
    rows: u64,
    /// For a read by storage blocks, what a resume checks ([`BlockPlan::basis`](crate::source::BlockPlan)).
    basis: Option<String>,
}

/// Whether the chunks of a table are appended to it (a full load, or an
/// upsert into a table the run created), so that it may be read by
/// storage blocks: a merge needs no order, but its batches must be key
/// ranges to be merged again exactly after a doubt.
fn appends(m: &MigrationConfig, created: bool) -> bool {
    m.target_mode != TargetMode::Upsert || created
}

/// The inclusive upper bounds that split a table with a one-column integer
/// key into `parts` equal value ranges; empty when it stays whole.
pub(crate) async fn integer_split<S: Source>(
    source: &S,
    spec: &ReadSpec,
    parts: u32,
) -> Result<Vec<i64>, TransferError> {
    if parts <= 1 {
        return Ok(Vec::new());
    }
    Ok(match source.integer_range(spec).await? {
        Some((min, max)) => integer_bounds(min, max, parts),
        None => Vec::new(),
    })
}

async fn plan_partitions<S: Source>(
    source: &S,
    spec: &ReadSpec,
    parts: u32,
    estimated_rows: u64,
) -> Result<Vec<Partition<S::Key>>, TransferError> {
    if spec.key.is_empty() || parts <= 1 {
        return Ok(partitions_from_bounds(Vec::new()));
    }
    if spec.integer_key().is_some() {
        let bounds = integer_split(source, spec, parts).await?;
        return Ok(partitions_from_bounds(bounds.into_iter().map(|b| source.integer_key(spec, b)).collect()));
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
    /// One of the lightest tables, kept for the end ([`filler_count`]).
    filler: bool,
}

/// What a reader task should do next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Copy(Job),
    /// Partitions remain, but only of tables that would exceed `workers`.
    Wait,
    Finished,
}

/// Hands out partitions, heaviest reads first ([`read_weight`]), so that at most `workers`
/// tables are in flight, and a reader takes a table no other reader is
/// loading while one is left: two writers loading one table cost the
/// target about 15% more CPU than one (concurrent extension of the same
/// heap; docs/BENCHMARKS.md, issue 18). Readers meet in one table only when
/// nothing else is left but the fillers (the lightest tables, copied last
/// beside the larger tables' key builds, see [`filler_count`]) or the
/// `workers` limit leaves no other choice.
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
        let room = self.active.len() < self.workers;
        let untouched = |j: &Job| room && !self.active.contains_key(&j.table);
        let shared = |j: &Job| self.active.contains_key(&j.table);
        let position = self
            .jobs
            .iter()
            .position(|j| !j.filler && untouched(j))
            .or_else(|| self.jobs.iter().position(shared))
            .or_else(|| self.jobs.iter().position(untouched));
        let Some(job) = position.and_then(|pos| self.jobs.remove(pos)) else {
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

/// What every copy task shares.
#[derive(Clone)]
struct CopyContext<T> {
    progress: Arc<Progress>,
    /// Upsert mode (chunks of tables that existed are merged into their
    /// rows), with the tables whose merged batches record their keys
    /// (`delete_missing`); `None` in the other modes.
    upsert: Option<DeleteMissing>,
    tuning: Tuning,
    backoff: Backoff,
    events: Option<EventSink>,
    pause: PauseSwitch,
    finalizing: EarlyFinalizer<T>,
}

impl<T> CopyContext<T> {
    fn emit(&self, event: Event) {
        emit(self.events.as_ref(), event);
    }
}

#[allow(clippy::too_many_arguments)]
async fn transfer_all<S: Source, T: Target>(
    source: &Arc<S>,
    target: &T,
    work: &[Arc<TableWork<S::Key>>],
    context: &CopyContext<T>,
    continue_on_error: bool,
    cancel: &CancellationToken,
    abort: &CancellationToken,
) -> Option<TransferError> {
    let tuning = context.tuning;
    // Tables whose planning failed have nothing to copy.
    for w in work.iter().filter(|w| w.partitions.is_empty()) {
        finish_table(w, context).await;
    }
    let mut order: Vec<usize> = (0..work.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(work[i].scheduling_size));
    let weights: Vec<u64> = order.iter().map(|&i| work[i].scheduling_size).collect();
    let first_filler = order.len() - filler_count(&weights, u32::try_from(tuning.parallel_readers).unwrap_or(u32::MAX));
    let jobs = order
        .into_iter()
        .enumerate()
        .flat_map(|(rank, t)| {
            (0..work[t].partitions.len()).map(move |p| Job { table: t, partition: p, filler: rank >= first_filler })
        })
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
        let context = context.clone();
        tasks.spawn(tracing::Instrument::in_current_span(async move {
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
                    Next::Finished => {
                        // No copy is left for this reader: its writer's
                        // connection can build keys instead.
                        context.finalizing.grow(1);
                        return;
                    }
                };
                let table = &work[job.table];
                if table.failure().is_none() {
                    if let Ok(mut s) = table.started.lock() {
                        s.get_or_insert_with(Instant::now);
                    }
                    let result =
                        copy_partition(source.as_ref(), &target, table, job.partition, &context, &writers, &stop).await;
                    if let Err(e) = result {
                        tracing::error!(table = %table.label(), partition = job.partition, error = %e, "partition failed");
                        if matches!(e, TransferError::Cancelled) {
                            table.cancelled.store(true, Ordering::Relaxed);
                        }
                        table.fail(e.to_string());
                        let fatal_kind = matches!(e, TransferError::Cancelled | TransferError::Io(_) | TransferError::State(_));
                        if !continue_on_error || fatal_kind {
                            if let Ok(mut slot) = fatal.lock()
                                && slot.is_none()
                            {
                                *slot = Some(e);
                            }
                            stop.cancel();
                        }
                    }
                }
                if table.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    if table.failure().is_none()
                        && !stop.is_cancelled()
                        && let Err(e) = collect_keys_for_deletes(source.as_ref(), &target, table, &context, &stop).await
                    {
                        tracing::error!(table = %table.label(), error = %e, "cannot collect the source's keys");
                        table.fail(e.to_string());
                    }
                    finish_table(table, &context).await;
                    if table.failure().is_none() && !table.cancelled.load(Ordering::Relaxed) && !stop.is_cancelled() {
                        context.finalizing.start(Arc::clone(table));
                    }
                }
                scheduler.lock().await.done(job.table);
                table_done.notify_waiters();
            }
        }));
    }
    let aborted = tokio::select! {
        () = async { while tasks.join_next().await.is_some() {} } => false,
        () = abort.cancelled() => true,
    };
    if aborted {
        tracing::warn!("abandoning the chunks in flight; their transactions roll back");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        return Some(TransferError::Cancelled);
    }
    let error = fatal.lock().ok().and_then(|mut f| f.take());
    match error {
        Some(e) => Some(e),
        None if cancel.is_cancelled() => Some(TransferError::Cancelled),
        None => None,
    }
}

/// Records that a table has no partition left to copy.
async fn finish_table<K, T>(table: &TableWork<K>, context: &CopyContext<T>) {
    if let Ok(mut f) = table.finished.lock() {
        *f = Some(Instant::now());
    }
    if table.cancelled.load(Ordering::Relaxed) {
        return;
    }
    let error = table.failure();
    let status = if error.is_some() { WorkStatus::Failed } else { WorkStatus::Completed };
    let label = table.label().to_owned();
    let mut advanced = None;
    let saved = context
        .progress
        .save_with(|s| {
            if let Some(t) = s.tables.get_mut(&label) {
                t.status = status;
                t.transferred_rows = t.committed_rows();
            }
            // Every row the sync read is merged: the next one starts at its mark.
            if status == WorkStatus::Completed
                && let Some(mark) = s.marks.get_mut(&label)
                && mark.next.is_some()
            {
                mark.mark = mark.next.take();
                advanced = Some((mark.column.clone(), mark.mark.clone()));
            }
        })
        .await;
    if let Some((column, mark)) = advanced
        && let Err(e) = context.progress.keep_mark(&label, &column, mark.as_deref()).await
    {
        tracing::error!(table = %label, error = %e, "cannot keep the incremental mark; the next sync reads from the last one kept");
    }
    if let Err(e) = saved {
        tracing::error!(table = %label, error = %e, "cannot save the table's status");
    }
    context.emit(Event::TableFinished {
        table: label,
        status: if error.is_some() { TableStatus::Failed } else { TableStatus::Completed },
        error,
    });
}

/// An incremental sync with `delete_missing` read only the changed rows,
/// so before its deletes it collects every key the source has, keys only,
/// into the table the deletes compare with (one transaction, redone whole
/// after a kill; skipped once the deletes are done). Runs when the table's
/// partitions are all committed, before its mark moves.
async fn collect_keys_for_deletes<S: Source, T: Target>(
    source: &S,
    target: &T,
    table: &TableWork<S::Key>,
    context: &CopyContext<T>,
    stop: &CancellationToken,
) -> Result<(), TransferError> {
    let incremental = table.spec.changed_since.is_some();
    let deletes = context.upsert.as_ref().is_some_and(|d| d.covers(&table.spec.schema, &table.spec.table));
    if !incremental || !deletes || table.created {
        return Ok(());
    }
    let what = format!("collecting the keys of {} for its deletes", table.label());
    let keys: Vec<&str> = table.key_columns.iter().map(String::as_str).collect();
    let spec = table.spec.keys_only();
    let tuning = context.tuning;
    with_retries(&context.backoff, &what, stop, |_| async {
        if !target.keys_pending(&table.target, &what).await? {
            return Ok(());
        }
        let (pieces_tx, pieces_rx) = mpsc::channel::<T::Piece>(tuning.read_ahead_buffers);
        let (end_tx, end_rx) = oneshot::channel::<u64>();
        let reader = async {
            let mut sink = target.sink(&spec, &table.source, pieces_tx, tuning.piece_bytes);
            let page = source.read_page(&spec, None, None, None, &mut sink).await?;
            T::finish_sink(sink).await.map_err(|_| TransferError::Cancelled)?;
            failpoint::reached("collecting-keys").await;
            let _ = end_tx.send(page.rows);
            Ok::<_, TransferError>(page.rows)
        };
        let writer = target.collect_keys(&table.target, &table.source, &keys, pieces_rx, end_rx, &what);
        // The writer gives up (Cancelled) when the read fails: the read's error is the cause then.
        let written = match tokio::join!(reader, writer) {
            (_, Err(e)) if !matches!(e, TransferError::Cancelled) => return Err(e),
            (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
            (Ok(_), Ok(written)) => written,
        };
        tracing::info!(table = %table.label(), keys = written, "every source key collected for the deletes");
        Ok(())
    })
    .await
}

/// One chunk's read: keys in `(after, upto]`, at most `limit` rows.
struct ChunkRead<'a, K> {
    after: Option<&'a K>,
    upto: Option<&'a K>,
    limit: Option<u64>,
    mode: WriteMode,
    /// The partition's committed rows before this chunk.
    rows_before: u64,
}

struct ChunkDone<K> {
    rows: u64,
    last_key: Option<K>,
    completes: bool,
}

async fn copy_partition<S: Source, T: Target>(
    source: &S,
    target: &T,
    table: &TableWork<S::Key>,
    partition: usize,
    context: &CopyContext<T>,
    writers: &Semaphore,
    stop: &CancellationToken,
) -> Result<(), TransferError> {
    let label = table.label();
    let part = &table.partitions[partition];
    let saved = context.progress.with(|s| s.tables.get(label).and_then(|t| t.partitions.get(partition).cloned()));
    let saved = saved
        .ok_or_else(|| TransferError::State(format!("partition {partition} of {label} is not in the run state")))?;
    if saved.status == WorkStatus::Completed {
        return Ok(());
    }
    let decode = |text: &str| {
        source
            .key_from_state(&table.spec, text)
            .map_err(|why| TransferError::State(format!("saved run state, table {label}: {why}")))
    };
    // Set by a chunk whose commit was attempted but not confirmed: its end key.
    let uncertain: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(saved.pending_pk.clone());
    let mut rows_total = saved.rows_transferred;

    if table.spec.key.is_empty() {
        let read = ChunkRead { after: None, upto: None, limit: None, mode: WriteMode::TruncateFirst, rows_before: 0 };
        with_retries(&context.backoff, label, stop, |_| {
            copy_chunk(source, target, table, partition, &read, context, writers, &uncertain)
        })
        .await?;
        return Ok(());
    }

    let limit = Some(context.tuning.chunk_size);
    // A table this run created starts empty: upsert fills it as a full load
    // does (COPY, keys after), which is the fastest way and as safe.
    let merge = context.upsert.is_some() && !table.created;
    // An incremental read's keys are collected whole before the deletes instead.
    let record_keys = context.upsert.as_ref().is_some_and(|d| d.covers(&table.spec.schema, &table.spec.table))
        && table.spec.changed_since.is_none();
    let uncertain = &uncertain;
    let decode = &decode;
    let mut after = match saved.last_pk.as_deref() {
        Some(k) => Some(decode(k)?),
        None => part.after.clone(),
    };
    loop {
        context.pause.wait_while_paused(stop).await;
        if stop.is_cancelled() {
            return Err(TransferError::Cancelled);
        }
        let done = with_retries(&context.backoff, label, stop, |_| {
            let pending = uncertain.lock().ok().and_then(|u| u.clone());
            let after = after.clone();
            let rows_before = rows_total;
            async move {
                match pending {
                    // Replace exactly the range whose commit is in doubt.
                    Some(end) => {
                        let end_key = decode(&end)?;
                        let read = ChunkRead {
                            after: after.as_ref(),
                            upto: Some(&end_key),
                            limit: None,
                            mode: if merge { WriteMode::Merge { redo: true, record_keys } } else { WriteMode::Replace },
                            rows_before,
                        };
                        copy_chunk(source, target, table, partition, &read, context, writers, uncertain).await
                    }
                    None => {
                        let read = ChunkRead {
                            after: after.as_ref(),
                            upto: part.upto.as_ref(),
                            limit,
                            mode: if merge { WriteMode::Merge { redo: false, record_keys } } else { WriteMode::Append },
                            rows_before,
                        };
                        copy_chunk(source, target, table, partition, &read, context, writers, uncertain).await
                    }
                }
            }
        })
        .await?;
        rows_total += done.rows;
        if let Some(key) = done.last_key {
            after = Some(key);
        }
        if done.completes {
            return Ok(());
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn copy_chunk<S: Source, T: Target>(
    source: &S,
    target: &T,
    table: &TableWork<S::Key>,
    partition: usize,
    read: &ChunkRead<'_, S::Key>,
    context: &CopyContext<T>,
    writers: &Semaphore,
    uncertain: &std::sync::Mutex<Option<String>>,
) -> Result<ChunkDone<S::Key>, TransferError> {
    context.emit(Event::ChunkStarted { table: table.label().to_owned(), partition });
    let tuning = context.tuning;
    let (pieces_tx, pieces_rx) = mpsc::channel::<T::Piece>(tuning.read_ahead_buffers);
    let (end_tx, end_rx) = oneshot::channel::<ReadEnd>();
    let reader = async {
        let mut sink = target.sink(&table.spec, &table.source, pieces_tx, tuning.piece_bytes);
        let page = source.read_page(&table.spec, read.after, read.upto, read.limit, &mut sink).await?;
        let bytes = T::finish_sink(sink).await.map_err(|_| TransferError::Cancelled)?;
        let completes = match (read.mode, page.complete, read.limit) {
            (WriteMode::Replace | WriteMode::Merge { redo: true, .. }, ..) => false,
            (_, Some(complete), _) => complete,
            (_, None, Some(limit)) => page.rows < limit,
            (_, None, None) => true,
        };
        let _ =
            end_tx.send(ReadEnd { rows: page.rows, last_key: page.last_key.as_ref().map(S::key_to_state), completes });
        Ok::<_, TransferError>((page, bytes, completes))
    };
    let chunk = ChunkWrite {
        target: &table.target,
        source: &table.source,
        label: table.label(),
        key_columns: &table.key_columns,
        partition,
        mode: read.mode,
        rows_before: read.rows_before,
        progress: &context.progress,
        writers,
        uncertain,
    };
    let writer = target.write_chunk(chunk, pieces_rx, end_rx);
    let (read_result, write_result) = tokio::join!(reader, writer);
    // The writer's error is the cause when both failed: the reader then
    // only saw its channel close.
    let written = write_result?;
    let (page, bytes, completes) = read_result?;
    debug_assert_eq!(written.rows, page.rows);
    table.inserted.fetch_add(written.inserted, Ordering::Relaxed);
    table.updated.fetch_add(written.updated, Ordering::Relaxed);
    table.rows.fetch_add(page.rows, Ordering::Relaxed);
    table.bytes.fetch_add(bytes, Ordering::Relaxed);
    context.emit(Event::ChunkCommitted { table: table.label().to_owned(), partition, rows: page.rows, bytes });
    tracing::debug!(table = %table.label(), partition, rows = page.rows, "chunk committed");
    failpoint::reached("chunk-saved").await;
    Ok(ChunkDone { rows: page.rows, last_key: page.last_key, completes })
}

/// Builds keys, indexes, constraints and identities after the data, in
/// parallel across tables, then the foreign keys, then runs the tables'
/// closing steps ([`Target::closing_steps`]). Every step tolerates
/// finding its object already there, so a resumed run can redo them all.
/// Returns what failed.
async fn finalize<K: Send + Sync + 'static, T: Target>(
    target: &T,
    work: &[Arc<TableWork<K>>],
    restore: &[String],
    config: &Config,
    parallel: usize,
    backoff: &Backoff,
    options: &RunOptions,
) -> Vec<String> {
    let complete: Vec<&Arc<TableWork<K>>> = work.iter().filter(|w| w.failure().is_none()).collect();
    let per_table = futures_util::stream::iter(
        complete
            .iter()
            .filter(|w| !w.finalized.swap(true, Ordering::AcqRel))
            .map(|w| finalize_table(target, w, config, backoff, options.events.as_ref(), &options.cancel)),
    )
    .buffer_unordered(parallel)
    .collect::<Vec<_>>()
    .await;
    let mut errors: Vec<String> = per_table.into_iter().flatten().collect();

    let mut fk_steps: Vec<Step> = complete
        .iter()
        .filter(|w| w.created)
        .flat_map(|w| target.foreign_key_steps(&w.target, &w.source, config))
        .collect();
    for sql in restore {
        fk_steps.push(Step { sql: sql.clone(), what: "putting back a foreign key dropped for the load".to_owned() });
    }
    // Foreign keys lock both tables they join, so circular ones built in
    // parallel can deadlock; the server picks a victim, which is retried.
    let quick = &Backoff { first_delay: std::time::Duration::from_millis(50), ..backoff.clone() };
    errors.extend(run_steps(target, fk_steps, parallel, quick, options, &options.cancel).await);
    errors.extend(close_tables(target, complete.into_iter(), parallel, backoff, options, &options.cancel).await);
    errors
}

/// Runs the closing steps ([`Target::closing_steps`]) of `tables`; returns
/// what failed.
async fn close_tables<'a, K: 'a, T: Target>(
    target: &T,
    tables: impl Iterator<Item = &'a Arc<TableWork<K>>>,
    parallel: usize,
    backoff: &Backoff,
    options: &RunOptions,
    stop: &CancellationToken,
) -> Vec<String> {
    let steps: Vec<Step> = tables.flat_map(|w| target.closing_steps(&w.target, w.created)).collect();
    run_steps(target, steps, parallel, backoff, options, stop).await
}

/// Runs independent steps, `parallel` at a time; returns what failed.
async fn run_steps<T: Target>(
    target: &T,
    steps: Vec<Step>,
    parallel: usize,
    backoff: &Backoff,
    options: &RunOptions,
    stop: &CancellationToken,
) -> Vec<String> {
    futures_util::stream::iter(steps.into_iter().map(|Step { sql, what }| async move {
        options.emit(Event::Finalizing { step: what.clone() });
        failpoint::reached("finalize-step").await;
        run_step(target, &sql, &what, backoff, stop).await.map_err(|e| e.to_string())
    }))
    .buffer_unordered(parallel)
    .filter_map(|r| async move { r.err() })
    .collect::<Vec<_>>()
    .await
}

/// Builds one table's keys, indexes and checks (when the run created it)
/// and aligns its identities; returns what failed.
async fn finalize_table<K, T: Target>(
    target: &T,
    w: &TableWork<K>,
    config: &Config,
    backoff: &Backoff,
    events: Option<&EventSink>,
    stop: &CancellationToken,
) -> Vec<String> {
    let m = &config.migration;
    let t = &w.target;
    let steps = target.table_steps(t, &w.source, w.created, config);
    let mut errors = Vec::new();
    for Step { sql, what } in steps {
        emit(events, Event::Finalizing { step: what.clone() });
        failpoint::reached("finalize-step").await;
        if let Err(e) = run_step(target, &sql, &what, backoff, stop).await {
            errors.push(e.to_string());
        }
    }
    if m.target_mode == TargetMode::Upsert && m.delete_missing.covers(&w.spec.schema, &w.spec.table) && !w.created {
        let what = format!("deleting the rows of {} gone from the source", t.name);
        emit(events, Event::Finalizing { step: what.clone() });
        failpoint::reached("finalize-step").await;
        let keys: Vec<&str> = w.key_columns.iter().map(String::as_str).collect();
        let deleted = with_retries(backoff, &what, stop, |_| target.delete_missing_rows(t, &keys, &what)).await;
        match deleted {
            Ok(n) => {
                w.deleted.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    for column in t.columns.iter().filter(|c| c.identity.is_some()) {
        let what = format!("aligning the identity of {}.{}", t.name, column.name);
        let aligned = with_retries(backoff, &what, stop, |_| target.align_identity(t, &w.source, column, &what)).await;
        if let Err(e) = aligned {
            errors.push(e.to_string());
        }
    }
    errors
}

/// Runs one finalization statement with the run's retry policy, on a
/// connection taken per attempt: a step cut off by a server restart is
/// redone on a new session ([`execute_once`] accepts what it finds built).
async fn run_step<T: Target>(
    target: &T,
    sql: &str,
    what: &str,
    backoff: &Backoff,
    stop: &CancellationToken,
) -> Result<(), TransferError> {
    with_retries(backoff, what, stop, |_| target.run_step(sql, what)).await
}

/// Statements the finalization runs at once: every target connection but
/// the state's.
fn finalization_width(tuning: &Tuning) -> usize {
    tuning.max_target_connections.saturating_sub(1).max(1)
}

/// A table's finalization, waiting for a slot.
type Finalization = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send>>;

/// Work waiting for a slot, taken heaviest first, and in arrival order
/// among equals: the heap orders `(weight, earliest arrival)`, and the
/// arrival is the work's place in `works`.
struct HeaviestFirst<W> {
    waiting: std::sync::Mutex<HeaviestFirstQueue<W>>,
}

struct HeaviestFirstQueue<W> {
    order: std::collections::BinaryHeap<(u64, std::cmp::Reverse<usize>)>,
    works: Vec<Option<W>>,
}

impl<W> HeaviestFirst<W> {
    fn new() -> Self {
        let queue = HeaviestFirstQueue { order: std::collections::BinaryHeap::new(), works: Vec::new() };
        HeaviestFirst { waiting: std::sync::Mutex::new(queue) }
    }

    fn push(&self, weight: u64, work: W) {
        if let Ok(mut queue) = self.waiting.lock() {
            let arrival = queue.works.len();
            queue.works.push(Some(work));
            queue.order.push((weight, std::cmp::Reverse(arrival)));
        }
    }

    fn pop(&self) -> Option<W> {
        let mut queue = self.waiting.lock().ok()?;
        let (_, std::cmp::Reverse(arrival)) = queue.order.pop()?;
        queue.works.get_mut(arrival)?.take()
    }
}

/// Finalizes each table as soon as its data is complete, one table at a
/// time, while the others still load: index builds then use the target's
/// CPU while the run's last tables would leave it idle, instead of all
/// waiting for the last row. One at a time while every reader copies, so
/// that the writers keep their connections (the pool has room for one more
/// beside the state's); one more for each reader left without a copy, and
/// as many as the pool serves once all are done ([`EarlyFinalizer::grow`]).
/// A free slot takes the heaviest table waiting: its builds take longest,
/// and started last they would end the run alone (the largest table is
/// usually the last one copied).
#[derive(Clone)]
struct EarlyFinalizer<T> {
    target: T,
    config: Arc<Config>,
    backoff: Backoff,
    events: Option<EventSink>,
    stop: CancellationToken,
    slots: Arc<Semaphore>,
    waiting: Arc<HeaviestFirst<Finalization>>,
    /// Slots given so far, and the most there may be.
    granted: Arc<AtomicUsize>,
    widest: usize,
    tasks: Arc<std::sync::Mutex<tokio::task::JoinSet<Vec<String>>>>,
}

impl<T: Target> EarlyFinalizer<T> {
    fn new(target: T, config: Config, backoff: Backoff, options: &RunOptions, widest: usize) -> Self {
        EarlyFinalizer {
            target,
            config: Arc::new(config),
            backoff,
            events: options.events.clone(),
            stop: options.cancel.clone(),
            slots: Arc::new(Semaphore::new(1)),
            waiting: Arc::new(HeaviestFirst::new()),
            granted: Arc::new(AtomicUsize::new(1)),
            widest: widest.max(1),
            tasks: Arc::default(),
        }
    }

    /// Starts finalizing `table` unless that has begun already.
    fn start<K: Send + Sync + 'static>(&self, table: Arc<TableWork<K>>) {
        if table.finalized.swap(true, Ordering::AcqRel) {
            return;
        }
        let weight = table.scheduling_size;
        let this = self.clone();
        let work: Finalization = Box::pin(async move {
            finalize_table(&this.target, &table, &this.config, &this.backoff, this.events.as_ref(), &this.stop).await
        });
        self.waiting.push(weight, work);
        // One taker per table queued, so every table is taken; not
        // necessarily the one it was queued with.
        let this = self.clone();
        let task = async move {
            let Ok(_slot) = this.slots.acquire().await else { return Vec::new() };
            match this.waiting.pop() {
                Some(work) => work.await,
                None => Vec::new(),
            }
        };
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.spawn(tracing::Instrument::in_current_span(task));
        }
    }

    /// Lets `more` finalizations more run at once from now on, up to the
    /// width the pool serves.
    fn grow(&self, more: usize) {
        let widest = self.widest;
        let previous = self
            .granted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| Some((g + more).min(widest)))
            .unwrap_or(widest);
        self.slots.add_permits((previous + more).min(widest).saturating_sub(previous));
    }

    /// Waits for the finalizations started, or abandons them when `abort`
    /// fires (their statements roll back; a resume builds them again).
    async fn finish(&self, abort: &CancellationToken) -> Vec<String> {
        let mut tasks = match self.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(_) => return vec!["the early finalization's task list is poisoned".to_owned()],
        };
        let mut errors = Vec::new();
        loop {
            tokio::select! {
                next = tasks.join_next() => match next {
                    Some(Ok(failed)) => errors.extend(failed),
                    Some(Err(e)) => errors.push(format!("a finalization task failed: {e}")),
                    None => return errors,
                },
                () = abort.cancelled() => {
                    tasks.abort_all();
                    return errors;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(jobs: &[(usize, usize)], workers: usize) -> Scheduler {
        let jobs = jobs.iter().map(|&(table, partition)| Job { table, partition, filler: false }).collect();
        Scheduler { jobs, active: HashMap::new(), workers }
    }

    fn job(table: usize, partition: usize) -> Next {
        Next::Copy(Job { table, partition, filler: false })
    }

    #[tokio::test]
    async fn finalization_widens_a_slot_per_idle_reader_up_to_what_the_pool_serves() {
        let config = crate::testing::config("postgres", "");
        let pool = PgPool::new(&target_endpoint(&config.target), Side::Target, 4).unwrap();
        let backoff = Backoff::for_migration(&config.migration);
        let finalizer = EarlyFinalizer::new(PgTarget::new(pool).unwrap(), config, backoff, &RunOptions::default(), 3);
        assert_eq!(finalizer.slots.available_permits(), 1, "one at a time while every reader copies");
        finalizer.grow(1);
        assert_eq!(finalizer.slots.available_permits(), 2, "a reader left without a copy gives its slot");
        finalizer.grow(3);
        assert_eq!(finalizer.slots.available_permits(), 3, "never wider than the pool serves");
        finalizer.grow(3);
        assert_eq!(finalizer.slots.available_permits(), 3);
    }

    #[test]
    fn a_free_slot_takes_the_heaviest_table_waiting_and_equals_in_turn() {
        let waiting = HeaviestFirst::new();
        for (weight, name) in [(10, "light"), (30, "heavy"), (20, "middle"), (30, "heavy too"), (10, "light too")] {
            waiting.push(weight, name);
        }
        let order: Vec<_> = std::iter::from_fn(|| waiting.pop()).collect();
        assert_eq!(order, ["heavy", "heavy too", "middle", "light", "light too"]);
    }

    #[test]
    fn readers_keep_to_tables_of_their_own_while_one_is_left() {
        let mut s = scheduler(&[(0, 0), (0, 1), (0, 2), (1, 0), (2, 0)], 3);
        assert_eq!(s.next(), job(0, 0));
        assert_eq!(s.next(), job(1, 0), "not a second writer in table 0");
        s.done(0);
        assert_eq!(s.next(), job(0, 1), "table 0 is free again, and largest");
        assert_eq!(s.next(), job(2, 0));
        assert_eq!(s.next(), job(0, 2), "nothing else left: readers meet");
        assert_eq!(s.next(), Next::Finished);
    }

    #[test]
    fn readers_meet_in_a_large_table_before_they_take_the_fillers() {
        let mut s = scheduler(&[(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (3, 0)], 3);
        for j in s.jobs.iter_mut().filter(|j| j.table >= 2) {
            j.filler = true;
        }
        let filler = |table| Next::Copy(Job { table, partition: 0, filler: true });
        assert_eq!(s.next(), job(0, 0));
        assert_eq!(s.next(), job(1, 0));
        assert_eq!(s.next(), job(0, 1), "a second writer in table 0 rather than a filler");
        s.done(1);
        assert_eq!(s.next(), job(0, 2));
        s.done(0);
        assert_eq!(s.next(), filler(2), "table 0 is all taken: the fillers end the run");
        assert_eq!(s.next(), filler(3));
        assert_eq!(s.next(), Next::Finished);
    }

    #[test]
    fn no_more_tables_than_workers_are_in_flight() {
        let mut s = scheduler(&[(0, 0), (1, 0), (0, 1), (2, 0)], 2);
        assert_eq!(s.next(), job(0, 0));
        assert_eq!(s.next(), job(1, 0));
        // Table 2 would be a third table; table 0's second partition may go.
        assert_eq!(s.next(), job(0, 1));
        assert_eq!(s.next(), Next::Wait);
        s.done(0);
        assert_eq!(s.next(), Next::Wait, "table 0 still has a partition in flight");
        s.done(0);
        assert_eq!(s.next(), job(2, 0));
        assert_eq!(s.next(), Next::Finished);
    }
}
