//! `run --dry-run`: the plan of a run, without moving data or writing to
//! the target. Per table: the DDL, the chunk plan, row and byte estimates,
//! and what will not land exactly; overall: an ETA.
//!
//! The source is only read: its catalog, and the smallest and largest key
//! of tables split by integer key (an index seek each). Tables with other
//! keys are split by a scan of their key at run time, which the plan does
//! not pay for; it gives their partition count only. An upsert with change
//! columns also reads the marks the target keeps, and counts the rows at
//! or after each table's mark, as the sync will.

use std::collections::BTreeMap;
use std::sync::Arc;

use mssql_pg_migrate_config::{Config, TargetKind, TargetMode};
use mssql_pg_migrate_postgres::ddl;
use mssql_pg_migrate_schema::ident::qualified_mssql;
use mssql_pg_migrate_schema::target::{Note, TargetTable};
use mssql_pg_migrate_schema::{ColumnType, Table};
use mssql_pg_migrate_state::ChangeMark;
use mssql_pg_migrate_typemap::Verdict;
use serde::Serialize;

use crate::connect::{SourceJob, mssql_target_endpoint, target_endpoint, with_source};
use crate::engine::{integer_split, read_selected_tables, read_size, run_bytes};
use crate::error::{Side, TransferError};
use crate::plan::{PlanSettings, partition_count};
use crate::planning::{
    Step, apply_upsert_keys, change_column, closing_steps, foreign_key_steps, plan_targets, post_load_steps,
    require_upsert_keys,
};
use crate::source::{ChangedSince, ReadSpec, Source};
use crate::target::Target as _;
use crate::tuning::{Machine, Tuning};

/// Rows one reader moves per second, and COPY bytes one writer moves per
/// second, on the 2-core machine of docs/BENCHMARKS.md (PostgreSQL →
/// PostgreSQL, 1M rows: 2 readers, ~330k rows/s and ~100 MB/s). The ETA is
/// an order of magnitude, not a promise: a SQL Server source, a network
/// hop or wide text columns change it.
pub const ROWS_PER_READER_SECOND: f64 = 150_000.0;
pub const BYTES_PER_WRITER_SECOND: f64 = 60e6;

#[derive(Debug, Clone, Default)]
pub struct DryRunOptions {
    pub source_schema: Option<String>,
    pub target_schema: Option<String>,
    pub workers: Option<u32>,
}

/// One column: where it lands and how faithfully.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnPlan {
    pub source: String,
    pub target: String,
    pub source_type: String,
    pub target_type: String,
    pub verdict: Verdict,
    /// Why the verdict is not `exact`.
    pub reason: Option<String>,
    /// Computed by PostgreSQL (`GENERATED ALWAYS AS`), so not copied.
    pub generated: bool,
}

/// How a table's rows are split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Chunking {
    /// No usable primary key: one stream, restarted whole after an interruption.
    Whole,
    /// Split by value ranges of one integer key; `bounds` are the partitions'
    /// inclusive upper keys (the last partition is open).
    IntegerRanges { key: String, bounds: Vec<i64> },
    /// Split by every n-th key, which a scan of the key finds at run time.
    KeyScan { key: Vec<String>, partitions: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TablePlan {
    /// `schema.table` in the source and in the target.
    pub source: String,
    pub target: String,
    /// The catalog's estimates (statistics, not counts).
    pub estimated_rows: u64,
    pub estimated_bytes: u64,
    pub chunking: Chunking,
    pub partitions: usize,
    /// Chunks of at most `chunk_size` rows, from the row estimate.
    pub estimated_chunks: u64,
    pub create_table: String,
    /// Keys, indexes, checks (and SET LOGGED), after the data; for
    /// PostgreSQL the last, autovacuum back on, once every table is complete.
    pub after_load: Vec<Step>,
    /// Foreign keys, after every table's data.
    pub foreign_keys: Vec<Step>,
    pub columns: Vec<ColumnPlan>,
    /// Conversions that are not exact, and objects not carried over.
    pub notes: Vec<Note>,
    /// `target_mode: upsert`: how each batch is merged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergePlan>,
}

/// How an upsert merges a table's batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergePlan {
    /// The target columns `ON CONFLICT` matches on.
    pub key: Vec<String>,
    /// Whether only changed rows are read (a change column); without one
    /// every row is read and compared by the merge.
    pub incremental: bool,
    /// The change column, when there is one: rows at or after the mark the
    /// last sync left in the run state (or NULL) are read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_column: Option<String>,
    /// The mark the next sync reads from, as the target keeps it; absent
    /// before the first sync (which reads the table whole) or when the
    /// target could not be read (the plan's warnings say why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<String>,
    /// The rows at or after `mark` now, counted by the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_rows: Option<u64>,
    /// `delete_missing`: how the rows gone from the source are found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletes: Option<DeletesPlan>,
    /// Per batch, after its COPY into the session's staging table.
    pub statement: String,
}

/// How an upsert with `delete_missing` finds the rows gone from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletesPlan {
    /// Every row is read, and each merged batch records its keys.
    KeysMerged,
    /// Only changed rows are read, so every key is read again, keys only,
    /// once the table's batches are all in.
    EveryKeyRead,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedTable {
    pub source: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRunPlan {
    pub source_schema: String,
    pub target_schema: String,
    pub target_mode: TargetMode,
    pub tuning: Tuning,
    /// What runs before any data moves (schema, then drop or truncate).
    pub prepare: Vec<String>,
    pub tables: Vec<TablePlan>,
    /// Tables the run would skip (`continue_on_error`), and why.
    pub skipped: Vec<SkippedTable>,
    pub estimated_rows: u64,
    pub estimated_bytes: u64,
    pub eta_seconds: f64,
    /// The throughput the ETA assumes.
    pub eta_basis: String,
    /// What makes the estimates unreliable.
    pub warnings: Vec<String>,
}

/// Plans the run `config` describes without running it.
///
/// # Errors
/// As `run` would fail while planning: an unreachable source, no selected
/// tables, a table that cannot be planned (without `continue_on_error`).
pub async fn dry_run(config: &Config, options: &DryRunOptions) -> Result<DryRunPlan, TransferError> {
    let tuning = Tuning::resolve(&config.migration, Machine::for_run(config), options.workers);
    let marks = kept_marks(config).await;
    let job = DryRunJob { config, options, tuning, marks };
    with_source(&config.source, tuning.parallel_readers.min(4), job).await
}

/// The marks the next sync starts from, as the target keeps them (in
/// `mssql_pg_migrate.marks`, whatever the run state's location); none
/// without change columns.
async fn kept_marks(config: &Config) -> Result<BTreeMap<String, ChangeMark>, TransferError> {
    let m = &config.migration;
    if m.target_mode != TargetMode::Upsert || m.change_columns.is_empty() {
        return Ok(BTreeMap::new());
    }
    // The run's key for its state and marks.
    let key = &config.target.schema;
    match config.target.kind {
        TargetKind::Postgres => {
            let pool = crate::pool::PgPool::new(&target_endpoint(&config.target), Side::Target, 1)?;
            let store = mssql_pg_migrate_postgres::store::PgStateStore::new(pool);
            crate::progress::load_marks(&store, key).await
        }
        TargetKind::Mssql => {
            let target = crate::target::mssql::MssqlTarget::connect(mssql_target_endpoint(&config.target), 1).await?;
            match target.state_store() {
                Some(store) => crate::progress::load_marks(store.as_ref(), key).await,
                None => Ok(BTreeMap::new()),
            }
        }
    }
}

struct DryRunJob<'a> {
    config: &'a Config,
    options: &'a DryRunOptions,
    tuning: Tuning,
    /// `Err`: the target could not be read; the plan shows no marks and says why.
    marks: Result<BTreeMap<String, ChangeMark>, TransferError>,
}

impl SourceJob for DryRunJob<'_> {
    type Output = DryRunPlan;

    async fn call<S: Source>(self, source: Arc<S>) -> Result<DryRunPlan, TransferError> {
        let m = &self.config.migration;
        let source_schema = self.options.source_schema.clone().unwrap_or_else(|| self.config.source.schema.clone());
        let target_schema = self.options.target_schema.clone().unwrap_or_else(|| self.config.target.schema.clone());
        let mut tables = read_selected_tables(source.as_ref(), &source_schema, m).await?;
        apply_upsert_keys(&mut tables, m)?;
        let plan = plan_targets(tables, m, &target_schema, source.dialect())?;
        require_upsert_keys(&plan.tables, m)?;
        let settings = PlanSettings::new(m, &self.tuning);
        let run_bytes = run_bytes(plan.tables.iter().map(|(t, _)| t));
        let mut planned = Vec::with_capacity(plan.tables.len());
        let no_marks = BTreeMap::new();
        let marks = self.marks.as_ref().unwrap_or(&no_marks);
        for (table, target) in &plan.tables {
            let mut spec = ReadSpec::new(table, target);
            let change = match change_column(table, m)? {
                Some((column, kind)) if m.target_mode == TargetMode::Upsert => {
                    let mark =
                        marks.get(&spec.label).filter(|mk| mk.column == column.name).and_then(|mk| mk.mark.clone());
                    spec.changed_since = mark.map(|mark| ChangedSince::new(column, kind, mark));
                    Some(column.name.clone())
                }
                _ => None,
            };
            let (size, changed_rows) = read_size(source.as_ref(), &spec, table, run_bytes).await?;
            let parts = partition_count(size, settings);
            let chunking = if spec.key.is_empty() {
                Chunking::Whole
            } else if let Some(key) = spec.integer_key() {
                let key = key.source_name.clone();
                let bounds = integer_split(source.as_ref(), &spec, parts).await?;
                Chunking::IntegerRanges { key, bounds }
            } else {
                let key = spec.key.iter().map(|&k| spec.columns[k].source_name.clone()).collect();
                Chunking::KeyScan { key, partitions: parts }
            };
            let mut table_plan =
                table_plan(target, table.estimated_rows, table.estimated_bytes, chunking, &self.tuning, self.config);
            if self.config.target.kind == TargetKind::Mssql {
                sql_server_statements(&mut table_plan, table, &target_schema, self.config)?;
            }
            if m.target_mode == TargetMode::Upsert {
                let key = spec.key_target_names(target);
                let key_refs: Vec<&str> = key.iter().map(String::as_str).collect();
                let mark = spec.changed_since.as_ref().map(|c| c.mark.clone());
                let statement = if self.config.target.kind == TargetKind::Mssql {
                    use mssql_pg_migrate_mssql::writer::{LoadMode, TableLoad};
                    TableLoad::plan(&target_schema, table, false, LoadMode::Merge)?.unstage_sql()
                } else {
                    ddl::merge_from_stage(target, &key_refs)
                };
                let deletes = m.delete_missing.covers(&table.schema, &table.name).then_some(if change.is_some() {
                    DeletesPlan::EveryKeyRead
                } else {
                    DeletesPlan::KeysMerged
                });
                table_plan.merge = Some(MergePlan {
                    statement,
                    key,
                    incremental: change.is_some(),
                    change_column: change,
                    mark,
                    changed_rows,
                    deletes,
                });
            }
            planned.push(table_plan);
        }
        let skipped = plan.skipped.into_iter().map(|(source, error)| SkippedTable { source, error }).collect();
        let targets: Vec<&TargetTable> = plan.tables.iter().map(|(_, t)| t).collect();
        let mut whole = assemble(source_schema, target_schema, self.config, self.tuning, &targets, planned, skipped);
        if let Err(e) = &self.marks {
            whole.warnings.push(format!(
                "the marks the last sync left in the target could not be read ({e}); \
                 tables with a change column are shown without them"
            ));
        }
        if self.config.target.kind == TargetKind::Mssql {
            whole.prepare = vec![mssql_pg_migrate_mssql::target::create_schema(&whole.target_schema)];
            let schema = &whole.target_schema;
            whole.prepare.extend(plan.tables.iter().map(|(t, _)| match self.config.migration.target_mode {
                TargetMode::Truncate => format!("TRUNCATE TABLE {}", qualified_mssql(schema, &t.name)),
                _ => mssql_pg_migrate_mssql::ddl::drop_table(schema, &t.name),
            }));
        }
        Ok(whole)
    }
}

/// A table's statements as a SQL Server target runs them: every column as
/// the source declares it, so the PostgreSQL mapping's types and notes give
/// way to the source's.
fn sql_server_statements(
    plan: &mut TablePlan,
    table: &Table,
    schema: &str,
    config: &Config,
) -> Result<(), TransferError> {
    plan.target = format!("{schema}.{}", table.name);
    plan.create_table = mssql_pg_migrate_mssql::ddl::create_table(schema, table)?;
    plan.after_load = crate::target::mssql::after_load_steps(schema, table, config);
    plan.foreign_keys = crate::target::mssql::foreign_key_steps(schema, table, config);
    for column in &mut plan.columns {
        if let Some(ColumnType::Mssql(ty)) = table.column(&column.source).map(|c| &c.data_type) {
            column.target = column.source.clone();
            column.target_type = mssql_pg_migrate_mssql::ddl::copy_type(ty).to_string();
            column.verdict = Verdict::Exact;
            column.reason = None;
        }
    }
    plan.notes.clear();
    Ok(())
}

fn table_plan(
    target: &TargetTable,
    estimated_rows: u64,
    estimated_bytes: u64,
    chunking: Chunking,
    tuning: &Tuning,
    config: &Config,
) -> TablePlan {
    let m = &config.migration;
    let partitions = match &chunking {
        Chunking::Whole => 1,
        Chunking::IntegerRanges { bounds, .. } => bounds.len() + 1,
        Chunking::KeyScan { partitions, .. } => *partitions as usize,
    };
    // Each partition ends in a short chunk of its own.
    let per_partition = estimated_rows.div_ceil(partitions as u64);
    let estimated_chunks = per_partition.div_ceil(tuning.chunk_size).max(1) * partitions as u64;
    TablePlan {
        source: target.source_label(),
        target: format!("{}.{}", target.schema, target.name),
        estimated_rows,
        estimated_bytes,
        chunking,
        partitions,
        estimated_chunks,
        create_table: ddl::create_table(target, m.use_unlogged_tables),
        after_load: post_load_steps(target, m).into_iter().chain(closing_steps(target)).collect(),
        foreign_keys: foreign_key_steps(target, m),
        columns: target
            .columns
            .iter()
            .map(|c| ColumnPlan {
                source: c.source_name.clone(),
                target: c.name.clone(),
                source_type: c.source_type.to_string(),
                target_type: c.pg_type.to_string(),
                verdict: c.fidelity.verdict(),
                reason: c.fidelity.reason().map(str::to_owned),
                generated: c.generated.is_some(),
            })
            .collect(),
        notes: target.notes.clone(),
        merge: None,
    }
}

/// The whole plan from its tables: the preparation statements, totals,
/// ETA and warnings.
fn assemble(
    source_schema: String,
    target_schema: String,
    config: &Config,
    tuning: Tuning,
    targets: &[&TargetTable],
    tables: Vec<TablePlan>,
    skipped: Vec<SkippedTable>,
) -> DryRunPlan {
    let mode = config.migration.target_mode;
    let mut prepare = vec![ddl::create_schema(&target_schema)];
    let clear = match mode {
        TargetMode::Truncate => ddl::truncate_tables(targets),
        TargetMode::DropRecreate => ddl::drop_tables(targets),
        TargetMode::Upsert => None,
    };
    prepare.extend(clear);
    let estimated_rows = tables.iter().map(|t| t.estimated_rows).sum();
    let estimated_bytes = tables.iter().map(|t| t.estimated_bytes).sum();
    let mut warnings = Vec::new();
    let unanalyzed: Vec<&str> =
        tables.iter().filter(|t| t.estimated_rows == 0 && t.estimated_bytes > 0).map(|t| t.source.as_str()).collect();
    if !unanalyzed.is_empty() {
        warnings.push(format!(
            "{} table(s) hold data but have no row estimate (statistics never gathered): {}; \
             run ANALYZE (PostgreSQL) or UPDATE STATISTICS (SQL Server) for a better plan and ETA",
            unanalyzed.len(),
            unanalyzed.join(", ")
        ));
    }
    if mode == TargetMode::Upsert {
        warnings.push(
            "target_mode upsert: existing target tables keep their rows and are never dropped or truncated; \
             missing ones are created and loaded as in drop_recreate (the plan shows CREATE TABLE for all); \
             rows gone from the source stay in the target"
                .to_owned(),
        );
    }
    if mode == TargetMode::Truncate {
        warnings.push(
            "target_mode truncate: target tables that do not exist yet are created; the plan shows TRUNCATE for all"
                .to_owned(),
        );
    }
    DryRunPlan {
        source_schema,
        target_schema,
        target_mode: mode,
        eta_seconds: eta_seconds(estimated_rows, estimated_bytes, &tuning),
        eta_basis: format!(
            "{:.0}k rows/s per reader x {} readers, {:.0} MB/s per writer x {} writers, whichever is slower; \
             from catalog estimates",
            ROWS_PER_READER_SECOND / 1e3,
            tuning.parallel_readers,
            BYTES_PER_WRITER_SECOND / 1e6,
            tuning.write_ahead_writers
        ),
        tuning,
        prepare,
        tables,
        skipped,
        estimated_rows,
        estimated_bytes,
        warnings,
    }
}

/// The slower of reading the rows and writing the bytes at the rates above.
pub fn eta_seconds(rows: u64, bytes: u64, tuning: &Tuning) -> f64 {
    let reading = rows as f64 / (ROWS_PER_READER_SECOND * tuning.parallel_readers.max(1) as f64);
    let writing = bytes as f64 / (BYTES_PER_WRITER_SECOND * tuning.write_ahead_writers.max(1) as f64);
    reading.max(writing)
}

#[cfg(test)]
mod tests {
    use mssql_pg_migrate_schema::target::Dialect;
    use mssql_pg_migrate_schema::{ColumnType, Key, Table};
    use mssql_pg_migrate_typemap::MssqlType;

    use super::*;

    fn config(extra: &str) -> Config {
        crate::testing::config("mssql", &format!("identifier_case: snake, chunk_size: 1000, {extra}"))
    }

    fn column(name: &str, ty: MssqlType) -> mssql_pg_migrate_schema::Column {
        crate::testing::column(name, ColumnType::Mssql(ty))
    }

    fn orders() -> Table {
        Table {
            schema: "s".into(),
            name: "Orders".into(),
            columns: vec![column("OrderId", MssqlType::Int), column("PlacedAt", MssqlType::DateTime)],
            primary_key: Some(Key { name: "PK_Orders".into(), columns: vec!["OrderId".into()] }),
            unique_constraints: vec![],
            indexes: vec![],
            foreign_keys: vec![],
            checks: vec![],
            estimated_rows: 10_500,
            estimated_bytes: 1 << 20,
            unsupported: vec!["trigger TR_Orders_Audit".into()],
        }
    }

    fn tuning(readers: usize, writers: usize) -> Tuning {
        let mut t =
            Tuning::resolve(&config("").migration, Machine { cores: 2, memory_bytes: 1 << 34, local_servers: 0 }, None);
        t.parallel_readers = readers;
        t.write_ahead_writers = writers;
        t
    }

    #[test]
    fn a_table_plan_has_its_ddl_chunks_and_fidelity() {
        let config = config("");
        let plan = plan_targets(vec![orders()], &config.migration, "t", Dialect::Mssql).unwrap();
        let target = &plan.tables[0].1;
        let chunking = Chunking::IntegerRanges { key: "OrderId".into(), bounds: vec![5000] };
        let t = table_plan(target, 10_500, 1 << 20, chunking, &tuning(2, 2), &config);
        assert_eq!(t.source, "s.Orders");
        assert_eq!(t.target, "t.orders");
        assert!(t.create_table.starts_with("CREATE TABLE \"t\".\"orders\""), "{}", t.create_table);
        assert_eq!(t.partitions, 2);
        // 5250 rows per partition in chunks of 1000: 6 each.
        assert_eq!(t.estimated_chunks, 12);
        assert_eq!(t.after_load.len(), 3);
        assert_eq!(t.after_load[0].sql, "ANALYZE \"t\".\"orders\"");
        assert!(t.after_load[1].sql.contains("PRIMARY KEY (\"order_id\")"), "{}", t.after_load[1].sql);
        assert_eq!(t.after_load[2].what, "autovacuum on orders");
        let placed = t.columns.iter().find(|c| c.source == "PlacedAt").unwrap();
        assert_eq!((placed.target.as_str(), placed.source_type.as_str()), ("placed_at", "datetime"));
        assert_eq!(placed.target_type, "timestamp");
        assert_eq!(placed.verdict, Verdict::Widened);
        assert!(placed.reason.is_some());
        let id = t.columns.iter().find(|c| c.source == "OrderId").unwrap();
        assert_eq!((id.verdict, id.target_type.as_str()), (Verdict::Exact, "integer"));
        assert!(t.notes.iter().any(|n| n.message.contains("TR_Orders_Audit")), "{:?}", t.notes);
    }

    #[test]
    fn the_plan_totals_prepares_and_warns_about_missing_statistics() {
        let config = config("");
        let plan = plan_targets(vec![orders()], &config.migration, "t", Dialect::Mssql).unwrap();
        let target = &plan.tables[0].1;
        let t = table_plan(target, 0, 8192, Chunking::Whole, &tuning(2, 2), &config);
        assert_eq!((t.partitions, t.estimated_chunks), (1, 1));
        let whole = assemble("s".into(), "t".into(), &config, tuning(2, 2), &[target], vec![t], vec![]);
        assert_eq!(
            whole.prepare,
            vec!["CREATE SCHEMA IF NOT EXISTS \"t\"".to_owned(), "DROP TABLE IF EXISTS \"t\".\"orders\"".to_owned()]
        );
        assert_eq!((whole.estimated_rows, whole.estimated_bytes), (0, 8192));
        assert_eq!(whole.warnings.len(), 1);
        assert!(
            whole.warnings[0].contains("s.Orders") && whole.warnings[0].contains("ANALYZE"),
            "{:?}",
            whole.warnings
        );
    }

    #[test]
    fn the_eta_is_the_slower_of_reading_and_writing() {
        // 3M rows on 2 readers at 150k/s: 10 s; 60 MB on 2 writers: 0.5 s.
        assert!((eta_seconds(3_000_000, 60_000_000, &tuning(2, 2)) - 10.0).abs() < 1e-9);
        // Wide rows: 1.2 GB on 2 writers at 60 MB/s is 10 s; 1000 rows are nothing.
        assert!((eta_seconds(1000, 1_200_000_000, &tuning(2, 2)) - 10.0).abs() < 1e-9);
        assert_eq!(eta_seconds(0, 0, &tuning(2, 2)), 0.0);
    }
}
