//! The SQL Server target, for a SQL Server source: each chunk goes through
//! the TDS bulk load in one transaction ([`mssql::writer::TableLoad`]),
//! every type as the source declared it ([`mssql::ddl`]); keys, indexes
//! and checks after the data, foreign keys last, identities reseeded to
//! the source's. The run state is a file or lives in the target database
//! (its chunk rows written in each chunk's transaction); the migration
//! lock is an application lock (`sp_getapplock`) held by a session of its
//! own.
//!
//! A chunk's session is its own until the chunk commits: a session a
//! failed or abandoned chunk used may be in the middle of the bulk-load
//! protocol or of a transaction, so it is closed rather than reused.

use std::sync::Arc;

use mssql_pg_migrate_config::{Config, TargetMode};
use mssql_pg_migrate_dialect::store::{STATE_SCHEMA, StateStore};
use mssql_pg_migrate_mssql as mssql;
use mssql_pg_migrate_mssql::reader::MssqlClient;
use mssql_pg_migrate_mssql::sink::{Batch, LoadType, Slot, TdsSink};
use mssql_pg_migrate_mssql::store::MssqlStateStore;
use mssql_pg_migrate_mssql::target::execute;
use mssql_pg_migrate_mssql::writer::{LoadMode, TableLoad};
use mssql_pg_migrate_mssql::{MssqlEndpoint, MssqlSource};
use mssql_pg_migrate_schema::ident::{literal_mssql, qualified_mssql, quote_mssql};
use mssql_pg_migrate_schema::target::{Note, NoteKind, TargetColumn, TargetTable};
use mssql_pg_migrate_schema::{Column, ColumnType, Table};
use mssql_pg_migrate_typemap::Verdict;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{ChunkWrite, Prepared, ReadEnd, RunLock, Target, WriteMode, Written};
use crate::error::TransferError;
use crate::failpoint;
use crate::planning::Step;
use crate::progress::{ChunkEnd, Progress};
use crate::retry::Backoff;
use crate::source::{ReadSpec, WriterGone};

/// A SQL Server target: a pool for statements, and the clean sessions
/// chunks have committed on, for the next chunks.
#[derive(Clone)]
pub(crate) struct MssqlTarget {
    server: MssqlSource,
    idle: Arc<std::sync::Mutex<Vec<MssqlClient>>>,
    store: Arc<MssqlStateStore>,
}

impl MssqlTarget {
    pub(crate) async fn connect(endpoint: MssqlEndpoint, max_connections: usize) -> Result<MssqlTarget, TransferError> {
        let max = u32::try_from(max_connections).unwrap_or(u32::MAX);
        let server = MssqlSource::connect(endpoint, max).await?;
        let store = Arc::new(MssqlStateStore::new(server.clone()));
        Ok(MssqlTarget { server, idle: Arc::default(), store })
    }

    /// A session for one chunk: an idle one, or a new one.
    async fn chunk_session(&self) -> Result<MssqlClient, TransferError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(session) => Ok(session),
            None => self.server.endpoint().connect().await,
        }
    }

    async fn statement(&self, sql: &str, context: &str) -> Result<(), TransferError> {
        let mut session = self.server.session().await?;
        mssql::target::execute(&mut session, sql, context).await
    }
}

/// The lock's session; closing it (dropping this) releases the lock.
pub(crate) struct MssqlLock {
    _session: tokio::sync::Mutex<MssqlClient>,
}

impl RunLock for MssqlLock {
    fn lost(&self) -> Option<String> {
        // The lock ends with its session; a chunk on a server that went
        // away fails on its own, and a resume takes the lock again.
        None
    }
}

/// The slot of each cell a reader hands over for `spec`: its type in the
/// load, or left out (a rowversion or computed column the server makes).
fn slots(spec: &ReadSpec, source: &Table) -> Arc<[Slot]> {
    let loaded: Vec<&str> = mssql::ddl::loaded_columns(source).map(|c| c.name.as_str()).collect();
    spec.columns
        .iter()
        .map(|read| {
            let column = source.column(&read.source_name).filter(|c| loaded.contains(&c.name.as_str()));
            match column.map(|c| &c.data_type) {
                Some(ColumnType::Mssql(ty)) => LoadType::of(&mssql::ddl::copy_type(ty)).map_or(Slot::Skip, Slot::Load),
                _ => Slot::Skip,
            }
        })
        .collect()
}

/// Why a table cannot be loaded into SQL Server, if it cannot: a column
/// whose type the bulk load cannot write.
fn unloadable(source: &Table) -> Option<TransferError> {
    let column = mssql::ddl::loaded_columns(source).find(|c| match &c.data_type {
        ColumnType::Mssql(ty) => LoadType::of(&mssql::ddl::copy_type(ty)).is_none(),
        _ => true,
    })?;
    Some(TransferError::Incompatible {
        table: format!("{}.{}", source.schema, source.name),
        message: format!(
            "column {} is {}, which the TDS bulk load cannot write (CLR types and sql_variant); \
             exclude the table, or copy it into PostgreSQL",
            column.name, column.data_type
        ),
    })
}

/// Checks that an existing table can take the load: every column the load
/// writes, of the same type. Returns the columns it lacks, which an upsert
/// adds (`adds_missing`); any other mode stops naming the first.
fn check_compatible<'t>(
    source: &'t Table,
    existing: &Table,
    adds_missing: bool,
) -> Result<Vec<&'t Column>, TransferError> {
    let mut missing = Vec::new();
    for column in mssql::ddl::loaded_columns(source) {
        let Some(current) = existing.column(&column.name) else {
            if adds_missing {
                missing.push(column);
                continue;
            }
            return Err(TransferError::Incompatible {
                table: format!("{}.{}", existing.schema, existing.name),
                message: format!("it has no column {} (source column {})", column.name, column.name),
            });
        };
        let same = match (&current.data_type, &column.data_type) {
            (ColumnType::Mssql(have), ColumnType::Mssql(want)) => {
                mssql::ddl::copy_type(have) == mssql::ddl::copy_type(want)
            }
            _ => false,
        };
        if !same {
            return Err(TransferError::Incompatible {
                table: format!("{}.{}", existing.schema, existing.name),
                message: format!(
                    "column {} is {}, but the source column is {}",
                    column.name, current.data_type, column.data_type
                ),
            });
        }
    }
    let fills_itself = |c: &Column| {
        c.nullable
            || c.default.is_some()
            || c.identity.is_some()
            || c.computed.is_some()
            || matches!(c.data_type, ColumnType::Mssql(mssql_pg_migrate_typemap::MssqlType::RowVersion))
    };
    if let Some(extra) = existing.columns.iter().find(|c| source.column(&c.name).is_none() && !fills_itself(c)) {
        return Err(TransferError::Incompatible {
            table: format!("{}.{}", existing.schema, existing.name),
            message: format!("column {} is NOT NULL without a default, and the source has no such column", extra.name),
        });
    }
    Ok(missing)
}

/// A note on how an upsert followed the source's columns.
fn drift_note(source: &Table, column: &str, message: &str) -> Note {
    Note {
        kind: NoteKind::Drift,
        table: format!("{}.{}", source.schema, source.name),
        column: Some(column.to_owned()),
        verdict: Verdict::Exact,
        message: message.to_owned(),
    }
}

/// The steps that complete a table created in `schema` (also what a dry run shows).
pub(crate) fn after_load_steps(schema: &str, source: &Table, config: &Config) -> Vec<Step> {
    let m = &config.migration;
    mssql::ddl::after_load(schema, source, m.create_indexes, m.create_check_constraints)
        .into_iter()
        .map(|(what, sql)| Step { sql, what })
        .collect()
}

/// The foreign keys of a table created in `schema`, built after every table's data.
pub(crate) fn foreign_key_steps(schema: &str, source: &Table, config: &Config) -> Vec<Step> {
    if !config.migration.create_foreign_keys {
        return Vec::new();
    }
    mssql::ddl::named_foreign_keys(schema, source).into_iter().map(|(what, sql)| Step { sql, what }).collect()
}

impl Target for MssqlTarget {
    type Piece = Batch;
    type Sink = TdsSink;
    type Lock = MssqlLock;

    fn address(&self) -> String {
        self.server.endpoint().address()
    }

    fn state_store(&self) -> Option<Arc<dyn StateStore>> {
        Some(self.store.clone())
    }

    async fn lock(&self, key: &str, _backoff: Backoff, _abort: CancellationToken) -> Result<MssqlLock, TransferError> {
        let mut session = self.server.endpoint().connect().await?;
        // Application locks are per database on SQL Server; naming the
        // database keeps them so on servers where they are not (Babelfish).
        let resource = format!("mssql-pg-migrate {}.{key}", self.server.endpoint().database);
        if !mssql::target::take_app_lock(&mut session, &resource).await? {
            return Err(TransferError::State(format!(
                "another run of this migration (target schema {}) is in progress on {} (it holds the \
                 application lock {}); wait for it to finish or stop it",
                literal_mssql(key),
                self.address(),
                literal_mssql(&resource)
            )));
        }
        Ok(MssqlLock { _session: tokio::sync::Mutex::new(session) })
    }

    fn adjust_plan(&self, planned: &mut [(Table, TargetTable)]) {
        // A copy between SQL Servers keeps every name as the source spells
        // it, and every type and collation: the PostgreSQL type mapping's
        // notes do not apply.
        for (source, target) in planned {
            target.name = source.name.clone();
            target.notes.clear();
        }
    }

    async fn prepare(
        &self,
        planned: &[(Table, TargetTable)],
        config: &Config,
        target_schema: &str,
        progress: &Progress,
    ) -> Result<Vec<Prepared>, TransferError> {
        let m = &config.migration;
        let mut session = self.server.session().await?;
        execute(&mut session, &mssql::target::create_schema(target_schema), "creating the target schema").await?;
        let mut prepared = Vec::with_capacity(planned.len());
        let existing = if m.target_mode != TargetMode::DropRecreate {
            let wanted = |_: &str, name: &str| planned.iter().any(|(s, _)| s.name == name);
            mssql::catalog::read_schema(&mut session, None, target_schema, self.server.is_babelfish(), &wanted)
                .await
                .map_err(TransferError::from)?
        } else {
            Vec::new()
        };
        let mut restore = Vec::new();
        let mut drops = Vec::new();
        let mut empty = Vec::new();
        for (source, planned_target) in planned {
            let mut p = Prepared { created: true, failed: None, notes: Vec::new() };
            // The copy's rows are found again (merged, deleted) by the source's primary key.
            let key: Vec<String> = source.primary_key.as_ref().map(|k| k.columns.clone()).unwrap_or_default();
            let mut problem = unloadable(source);
            let found = existing.iter().find(|e| e.name == source.name).filter(|_| problem.is_none());
            if found.is_some() {
                p.created = false;
            }
            problem = problem.or(match found {
                Some(current) => {
                    let upsert = m.target_mode == TargetMode::Upsert;
                    match check_compatible(source, current, upsert) {
                        Ok(missing) => {
                            // Columns the source gained are added and filled by this sync.
                            for column in missing {
                                let sql = mssql::ddl::add_column(target_schema, source, column)?;
                                let what = format!("adding column {} to {}", column.name, source.name);
                                execute(&mut session, &sql, &what).await?;
                                tracing::warn!(table = %source.name, column = %column.name, "column added at the source; added to the target");
                                p.notes.push(drift_note(
                                    source,
                                    &column.name,
                                    "added at the source: added to the target (nullable) and filled by this sync",
                                ));
                            }
                            let gone = current.columns.iter().filter(|c| source.column(&c.name).is_none());
                            for column in gone {
                                p.notes.push(drift_note(
                                    source,
                                    &column.name,
                                    "no longer in the source: kept in the target with its values",
                                ));
                            }
                            if upsert { super::check_merge_key(planned_target, current, &key).err() } else { None }
                        }
                        Err(e) => Some(e),
                    }
                }
                None => None,
            });
            if let Some(e) = problem {
                if !m.continue_on_error {
                    return Err(e);
                }
                tracing::error!(table = %format!("{}.{}", source.schema, source.name), error = %e, "table skipped");
                p.failed = Some(e);
                prepared.push(p);
                continue;
            }
            let name = qualified_mssql(target_schema, &source.name);
            match m.target_mode {
                TargetMode::DropRecreate => {
                    drops.extend(mssql::target::drop_referencing_keys(&mut session, &name).await?);
                    empty.push(mssql::ddl::drop_table(target_schema, &source.name));
                }
                TargetMode::Upsert if !p.created && m.delete_missing.covers(&source.schema, &source.name) => {
                    let key: Vec<&str> = key.iter().map(String::as_str).collect();
                    let sql = mssql::ddl::create_seen_keys(target_schema, source, &key)?;
                    execute(&mut session, &sql, &format!("preparing the deletes of {}", source.name)).await?;
                }
                TargetMode::Truncate if !p.created => {
                    // Dropped for the load and put back afterwards exactly as they were.
                    if let Some(current) = found {
                        // Guarded, so a resumed run puts back only what is missing.
                        restore.extend(
                            mssql::ddl::named_foreign_keys(target_schema, current).into_iter().map(|(_, sql)| sql),
                        );
                        let own = current
                            .foreign_keys
                            .iter()
                            .map(|fk| format!("ALTER TABLE {name} DROP CONSTRAINT {}", quote_mssql(&fk.name)));
                        drops.extend(own);
                    }
                    empty.push(format!("TRUNCATE TABLE {name}"));
                }
                _ => {}
            }
            prepared.push(p);
        }
        // Recorded before anything is dropped: a crash in between must not lose them.
        progress
            .save_with(|s| {
                for statement in restore {
                    if !s.restore.contains(&statement) {
                        s.restore.push(statement);
                    }
                }
            })
            .await?;
        drops.sort();
        drops.dedup();
        for sql in drops.iter().chain(&empty) {
            execute(&mut session, sql, "preparing the target tables").await?;
        }
        for ((source, _), p) in planned.iter().zip(&prepared) {
            if p.created && p.failed.is_none() {
                let sql = mssql::ddl::create_table(target_schema, source)?;
                execute(&mut session, &sql, &format!("creating {}", qualified_mssql(target_schema, &source.name)))
                    .await?;
            }
        }
        Ok(prepared)
    }

    fn sink(&self, spec: &ReadSpec, source: &Table, pieces: mpsc::Sender<Batch>, piece_bytes: usize) -> TdsSink {
        TdsSink::new(slots(spec, source), pieces, piece_bytes)
    }

    async fn finish_sink(sink: TdsSink) -> Result<u64, WriterGone> {
        sink.finish().await
    }

    async fn write_chunk(
        &self,
        chunk: ChunkWrite<'_>,
        mut pieces: mpsc::Receiver<Batch>,
        end: oneshot::Receiver<ReadEnd>,
    ) -> Result<Written, TransferError> {
        let ChunkWrite { target, source, label, partition, mode, rows_before, progress, writers, uncertain, .. } =
            chunk;
        let Some(first) = pieces.recv().await else {
            // Every page sends at least one batch, so the reader failed
            // before producing anything; it reports why.
            return Ok(Written::default());
        };
        let _permit = writers.acquire().await.map_err(|_| TransferError::Cancelled)?;
        let context = format!("writing a chunk of {label}");
        let mut session = self.chunk_session().await?;
        // A session is only reused after a commit, so no transaction is
        // open; XACT_ABORT makes any error end the transaction whole.
        if let Err(e) = execute(&mut session, "SET XACT_ABORT ON; BEGIN TRANSACTION", &context).await {
            // The server dropped this session, so likely the idle ones too
            // (a restart): the retry starts on a new one.
            if let Ok(mut idle) = self.idle.lock() {
                idle.clear();
            }
            return Err(e);
        }
        let name = qualified_mssql(&target.schema, &source.name);
        let load_mode = match mode {
            WriteMode::Append => LoadMode::Insert,
            WriteMode::Replace => LoadMode::Replace,
            WriteMode::TruncateFirst => {
                execute(&mut session, &format!("TRUNCATE TABLE {name}"), &context).await?;
                LoadMode::Insert
            }
            // Merging again what may have been merged is harmless, so a
            // chunk in doubt is simply merged again.
            WriteMode::Merge { .. } => LoadMode::Merge,
        };
        let babelfish = self.server.is_babelfish();
        let mut load = TableLoad::prepare(&mut session, &target.schema, source, babelfish, load_mode).await?;
        if let WriteMode::Merge { record_keys: true, .. } = mode {
            load.record_keys_into(mssql::ddl::seen_keys(&target.schema, &source.name));
        }
        let (into, columns) = load.destination();
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        let done = {
            let mut bulk = TableLoad::begin(&mut session, &into, &names).await?;
            for row in first {
                load.send(&mut bulk, row).await?;
            }
            failpoint::reached("mid-copy").await;
            while let Some(batch) = pieces.recv().await {
                for row in batch {
                    load.send(&mut bulk, row).await?;
                }
            }
            let Ok(end) = end.await else {
                // The reader failed: the session is dropped mid-load, and
                // the server rolls its transaction back.
                return Ok(Written::default());
            };
            let rows = bulk.finalize().await.map_err(|e| mssql::error::target_error(load.context(), &e))?.total();
            (end, rows)
        };
        let (end, rows) = done;
        let (inserted, updated) = load.complete(&mut session).await?;
        let chunk = ChunkEnd {
            table: label,
            partition,
            last_key: end.last_key.as_deref(),
            rows_total: rows_before + end.rows,
            completes: end.completes,
        };
        if let Some(record) = progress.before_commit(&chunk).await? {
            mssql::store::record_chunk(&mut session, progress.run_id(), &record).await?;
        }
        failpoint::reached("before-commit").await;
        if let Ok(mut u) = uncertain.lock()
            && let Some(key) = &end.last_key
        {
            *u = Some(key.clone());
        }
        execute(&mut session, "COMMIT TRANSACTION", &format!("committing a chunk of {label}")).await?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(session);
        }
        failpoint::reached("after-commit").await;
        progress.after_commit(&chunk).await?;
        if let Ok(mut u) = uncertain.lock() {
            *u = None;
        }
        Ok(Written { rows, inserted, updated })
    }

    fn table_steps(&self, target: &TargetTable, source: &Table, created: bool, config: &Config) -> Vec<Step> {
        if !created {
            // Reloaded in place: its keys and indexes are the table's own.
            return Vec::new();
        }
        after_load_steps(&target.schema, source, config)
    }

    fn foreign_key_steps(&self, target: &TargetTable, source: &Table, config: &Config) -> Vec<Step> {
        foreign_key_steps(&target.schema, source, config)
    }

    async fn empty_table(&self, table: &TargetTable) -> Result<(), TransferError> {
        let name = qualified_mssql(&table.schema, &table.name);
        self.statement(&format!("TRUNCATE TABLE {name}"), &format!("emptying {name}")).await
    }

    async fn run_step(&self, sql: &str, what: &str) -> Result<(), TransferError> {
        let mut session = self.server.session().await?;
        mssql::target::execute_once(&mut session, sql, what).await
    }

    async fn align_identity(
        &self,
        target: &TargetTable,
        source: &Table,
        _column: &TargetColumn,
        what: &str,
    ) -> Result<(), TransferError> {
        match mssql::ddl::reseed_identity(&target.schema, source) {
            Some(sql) => self.statement(&sql, what).await,
            None => Ok(()),
        }
    }

    async fn keys_pending(&self, target: &TargetTable, what: &str) -> Result<bool, TransferError> {
        let mut session = self.server.session().await?;
        mssql::target::table_exists(&mut session, &mssql::ddl::seen_keys(&target.schema, &target.name), what).await
    }

    async fn collect_keys(
        &self,
        target: &TargetTable,
        source: &Table,
        keys: &[&str],
        mut pieces: mpsc::Receiver<Batch>,
        end: oneshot::Receiver<u64>,
        what: &str,
    ) -> Result<u64, TransferError> {
        let seen = mssql::ddl::seen_keys_model(&target.schema, source, keys)?;
        // A session of its own: one a failed load used is closed, not reused.
        let mut session = self.server.endpoint().connect().await?;
        let empty = format!(
            "SET XACT_ABORT ON; BEGIN TRANSACTION; TRUNCATE TABLE {}",
            mssql::ddl::seen_keys(&target.schema, &target.name)
        );
        execute(&mut session, &empty, what).await?;
        let babelfish = self.server.is_babelfish();
        let mut load = TableLoad::prepare(&mut session, STATE_SCHEMA, &seen, babelfish, LoadMode::Insert).await?;
        let (into, columns) = load.destination();
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        let rows = {
            let mut bulk = TableLoad::begin(&mut session, &into, &names).await?;
            while let Some(batch) = pieces.recv().await {
                for row in batch {
                    load.send(&mut bulk, row).await?;
                }
            }
            let Ok(read) = end.await else {
                // The read failed: the session is dropped mid-load, and the server rolls back.
                return Err(TransferError::Cancelled);
            };
            let rows = bulk.finalize().await.map_err(|e| mssql::error::target_error(load.context(), &e))?.total();
            super::keys_all_there(read, rows, what)?;
            rows
        };
        load.complete(&mut session).await?;
        execute(&mut session, "COMMIT TRANSACTION", what).await?;
        Ok(rows)
    }

    async fn delete_missing_rows(&self, target: &TargetTable, keys: &[&str], what: &str) -> Result<u64, TransferError> {
        // Without the keys' table (a redo after that commit) there is nothing left to do.
        if !self.keys_pending(target, what).await? {
            tracing::info!(table = %target.name, "deletes already done");
            return Ok(0);
        }
        let mut session = self.server.session().await?;
        let sql = format!(
            "SET XACT_ABORT ON; BEGIN TRANSACTION; {}; COMMIT TRANSACTION",
            mssql::ddl::delete_unseen(&target.schema, &target.name, keys)
        );
        let deleted = mssql::target::single_count(&mut session, &sql, what).await?;
        Ok(deleted)
    }
}
