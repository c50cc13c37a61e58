//! The PostgreSQL target: chunks through binary COPY (into the table, or a
//! stage to replace or merge from), the run state and the migration lock
//! in the target database, keys and indexes after the data.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, pin_mut};
use mssql_pg_migrate_config::{Config, TargetMode};
use mssql_pg_migrate_dialect::store::{MIGRATION_LOCK_GRACE, StateStore};
use mssql_pg_migrate_postgres::store::{PgStateStore, record_chunk, relation_exists};
use mssql_pg_migrate_postgres::{ddl, pg_error};
use mssql_pg_migrate_schema::ident::literal_pg;
use mssql_pg_migrate_schema::target::{Note, NoteKind, TargetColumn, TargetTable};
use mssql_pg_migrate_schema::{ColumnType, Table};
use mssql_pg_migrate_typemap::Verdict;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{ChunkWrite, Prepared, ReadEnd, RunLock, Target, WriteMode, Written};
use crate::error::{Side, TransferError};
use crate::failpoint;
use crate::planning::{Step, analyze_step, closing_steps, foreign_key_steps, post_load_steps};
use crate::pool::PgPool;
use crate::progress::{self, ChunkEnd, Progress};
use crate::retry::{Backoff, with_retries};
use crate::source::{PieceSink, ReadSpec, WriterGone};

/// A PostgreSQL target: the writers' pool, and a small one beside it for
/// the lock and the run state.
#[derive(Clone)]
pub(crate) struct PgTarget {
    pub pool: PgPool,
    /// One session holds the lock; another saves the run document; a third
    /// takes the lock again after a restart while the dead session is let go.
    control: PgPool,
    store: Arc<PgStateStore>,
}

impl PgTarget {
    pub(crate) fn new(pool: PgPool) -> Result<PgTarget, TransferError> {
        let control = pool.sibling(3)?;
        let store = Arc::new(PgStateStore::new(control.clone()));
        Ok(PgTarget { pool, control, store })
    }
}

impl RunLock for LockKeeper {
    fn lost(&self) -> Option<String> {
        LockKeeper::lost(self)
    }
}

impl Target for PgTarget {
    type Piece = Bytes;
    type Sink = PieceSink;
    type Lock = LockKeeper;

    fn address(&self) -> String {
        self.control.address().to_owned()
    }

    fn state_store(&self) -> Option<Arc<dyn StateStore>> {
        Some(self.store.clone())
    }

    async fn lock(&self, key: &str, backoff: Backoff, abort: CancellationToken) -> Result<LockKeeper, TransferError> {
        let lock = MigrationLock::acquire(&self.control, key).await?;
        Ok(lock.keep(self.control.clone(), key.to_owned(), backoff, abort))
    }

    async fn prepare(
        &self,
        planned: &[(Table, TargetTable)],
        config: &Config,
        target_schema: &str,
        progress: &Progress,
    ) -> Result<Vec<Prepared>, TransferError> {
        prepare_tables(&self.pool, planned, config, target_schema, progress).await
    }

    async fn emptied_by_restart(&self, table: &TargetTable, label: &str) -> Result<bool, TransferError> {
        let client = self.pool.get(Side::Target).await?;
        let sql = format!(
            "SELECT c.relpersistence = 'u' AND NOT EXISTS (SELECT 1 FROM {}) FROM pg_class c WHERE c.oid = {}::regclass",
            ddl::table_name(table),
            mssql_pg_migrate_schema::ident::literal_pg(&ddl::table_name(table))
        );
        Ok(client
            .query_opt(&sql, &[])
            .await
            .map_err(|e| pg_error(Side::Target, format!("checking {label} before resuming"), &e))?
            .and_then(|r| r.try_get::<_, Option<bool>>(0).ok().flatten())
            .unwrap_or(false))
    }

    fn sink(&self, _spec: &ReadSpec, _source: &Table, pieces: mpsc::Sender<Bytes>, piece_bytes: usize) -> PieceSink {
        PieceSink::new(pieces, piece_bytes)
    }

    async fn finish_sink(sink: PieceSink) -> Result<u64, WriterGone> {
        sink.finish().await
    }

    async fn write_chunk(
        &self,
        chunk: ChunkWrite<'_>,
        pieces: mpsc::Receiver<Bytes>,
        end: oneshot::Receiver<ReadEnd>,
    ) -> Result<Written, TransferError> {
        write_copy(&self.pool, chunk, pieces, end).await
    }

    fn table_steps(&self, target: &TargetTable, _source: &Table, created: bool, config: &Config) -> Vec<Step> {
        let m = &config.migration;
        match (created, m.target_mode) {
            (true, _) => post_load_steps(target, m),
            // Reloaded in place: its keys and indexes are the table's own.
            (false, TargetMode::Truncate) => analyze_step(target, m).into_iter().collect(),
            (false, _) => Vec::new(),
        }
    }

    fn foreign_key_steps(&self, target: &TargetTable, _source: &Table, config: &Config) -> Vec<Step> {
        foreign_key_steps(target, &config.migration)
    }

    fn closing_steps(&self, target: &TargetTable, created: bool) -> Vec<Step> {
        // Only a table the run created had autovacuum switched off.
        if created { closing_steps(target) } else { Vec::new() }
    }

    async fn empty_table(&self, table: &TargetTable) -> Result<(), TransferError> {
        let sql = ddl::truncate_tables(&[table]).unwrap_or_default();
        self.run_step(&sql, &format!("emptying {}.{}", table.schema, table.name)).await
    }

    async fn run_step(&self, sql: &str, what: &str) -> Result<(), TransferError> {
        let client = self.pool.get(Side::Target).await?;
        execute_once(&client, sql, what).await
    }

    async fn align_identity(
        &self,
        target: &TargetTable,
        _source: &Table,
        column: &TargetColumn,
        what: &str,
    ) -> Result<(), TransferError> {
        let client = self.pool.get(Side::Target).await?;
        restart_identity(&client, target, column, what).await
    }

    async fn keys_pending(&self, target: &TargetTable, what: &str) -> Result<bool, TransferError> {
        let client = self.pool.get(Side::Target).await?;
        seen_keys_exist(&client, target, what).await
    }

    async fn collect_keys(
        &self,
        target: &TargetTable,
        _source: &Table,
        keys: &[&str],
        mut pieces: mpsc::Receiver<Bytes>,
        end: oneshot::Receiver<u64>,
        what: &str,
    ) -> Result<u64, TransferError> {
        let failed = |e: tokio_postgres::Error| pg_error(Side::Target, what, &e);
        let mut client = self.pool.get(Side::Target).await?;
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(&ddl::empty_seen_keys(target, progress::STATE_SCHEMA)).await.map_err(failed)?;
        let sink = tx.copy_in(&ddl::copy_into_seen_keys(target, keys, progress::STATE_SCHEMA)).await.map_err(failed)?;
        pin_mut!(sink);
        while let Some(piece) = pieces.recv().await {
            for part in parts(piece) {
                sink.feed(part).await.map_err(failed)?;
            }
        }
        let Ok(read) = end.await else {
            // The read failed: dropping the sink aborts the COPY, and the transaction rolls back.
            return Err(TransferError::Cancelled);
        };
        let rows = sink.as_mut().finish().await.map_err(failed)?;
        super::keys_all_there(read, rows, what)?;
        tx.commit().await.map_err(failed)?;
        Ok(rows)
    }

    async fn delete_missing_rows(&self, target: &TargetTable, keys: &[&str], what: &str) -> Result<u64, TransferError> {
        delete_unseen_rows(&self.pool, target, keys, what).await
    }
}

async fn execute(client: &tokio_postgres::Client, sql: &str, context: &str) -> Result<(), TransferError> {
    tracing::debug!(sql, "target");
    client.batch_execute(sql).await.map_err(|e| pg_error(Side::Target, context, &e))
}

/// Drops and creates the target tables (drop_recreate), or checks the
/// existing ones and creates the missing (truncate empties the existing;
/// upsert keeps their rows, needs their key, and adds the columns the
/// source gained).
async fn prepare_tables(
    target: &PgPool,
    planned: &[(Table, TargetTable)],
    config: &Config,
    target_schema: &str,
    progress: &Progress,
) -> Result<Vec<Prepared>, TransferError> {
    let m = &config.migration;
    let client = target.get(Side::Target).await?;
    execute(&client, &ddl::create_schema(target_schema), "creating the target schema").await?;
    let targets: Vec<&TargetTable> = planned.iter().map(|(_, t)| t).collect();
    let mut prepared: Vec<Prepared> =
        targets.iter().map(|_| Prepared { created: true, failed: None, notes: Vec::new() }).collect();
    let upsert = m.target_mode == TargetMode::Upsert;
    match m.target_mode {
        TargetMode::DropRecreate => {
            if let Some(sql) = ddl::drop_tables(&targets) {
                execute(&client, &sql, "dropping the target tables").await?;
            }
        }
        TargetMode::Truncate | TargetMode::Upsert => {
            let all = |_: &str, _: &str| true;
            let existing = mssql_pg_migrate_postgres::catalog::read_schema(&client, target_schema, &all)
                .await
                .map_err(TransferError::from)?;
            let mut to_truncate = Vec::new();
            let mut restore = Vec::new();
            let mut drops = Vec::new();
            for (i, (source, t)) in planned.iter().enumerate() {
                if let Some(current) = existing.iter().find(|e| e.name == t.name) {
                    prepared[i].created = false;
                    match check_compatible(t, current, upsert) {
                        Ok(()) => {}
                        Err(e) if m.continue_on_error => {
                            tracing::error!(table = %t.source_label(), error = %e, "table skipped");
                            prepared[i].failed = Some(e);
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                    if upsert {
                        prepared[i].notes = follow_source_columns(&client, t, current).await?;
                        let key = ReadSpec::new(source, t).key_target_names(t);
                        super::check_merge_key(t, current, &key)?;
                        if m.delete_missing.covers(&source.schema, &source.name) {
                            let key: Vec<&str> = key.iter().map(String::as_str).collect();
                            let sql = format!(
                                "CREATE SCHEMA IF NOT EXISTS {}; {}",
                                mssql_pg_migrate_schema::ident::quote_pg(progress::STATE_SCHEMA),
                                ddl::create_seen_keys(t, &key, progress::STATE_SCHEMA)
                            );
                            execute(&client, &sql, &format!("preparing the deletes of {}", t.name)).await?;
                        }
                    } else {
                        to_truncate.push(t);
                    }
                    // Foreign keys are dropped for the load (chunks land in any
                    // order) and put back afterwards exactly as they were.
                    for fk in &current.foreign_keys {
                        let saved = mssql_pg_migrate_schema::target::TargetForeignKey {
                            name: fk.name.clone(),
                            columns: fk.columns.clone(),
                            referenced_table: fk.referenced_table.clone(),
                            referenced_columns: fk.referenced_columns.clone(),
                            on_delete: fk.on_delete,
                            on_update: fk.on_update,
                        };
                        restore.push(ddl::add_foreign_key(t, &saved));
                        drops.push(format!(
                            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                            ddl::table_name(t),
                            mssql_pg_migrate_schema::ident::quote_pg(&fk.name)
                        ));
                    }
                }
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
            for sql in drops {
                execute(&client, &sql, "dropping foreign keys for the load").await?;
            }
            if let Some(sql) = ddl::truncate_tables(&to_truncate) {
                execute(&client, &sql, "truncating the target tables").await?;
            }
        }
    }
    for (t, p) in targets.iter().zip(&prepared) {
        if p.created {
            execute(&client, &ddl::create_table(t, m.use_unlogged_tables), &format!("creating {}", ddl::table_name(t)))
                .await?;
        }
    }
    Ok(prepared)
}

/// Adds to an existing table the columns the source gained since it was
/// made, and says which columns the source no longer has (they stay, with
/// their values). Returns what changed, as notes for the report.
async fn follow_source_columns(
    client: &tokio_postgres::Client,
    planned: &TargetTable,
    existing: &Table,
) -> Result<Vec<Note>, TransferError> {
    let note = |column: &str, message: String| Note {
        kind: NoteKind::Drift,
        table: planned.source_label(),
        column: Some(column.to_owned()),
        verdict: Verdict::Exact,
        message,
    };
    let mut notes = Vec::new();
    for column in planned.copied_columns().filter(|c| existing.column(&c.name).is_none()) {
        let sql = ddl::add_column(planned, column);
        execute(client, &sql, &format!("adding column {} to {}", column.name, planned.name)).await?;
        tracing::warn!(table = %planned.source_label(), column = %column.name, "column added at the source; added to the target");
        notes.push(note(
            &column.source_name,
            format!(
                "added at the source: added to the target as {} (nullable) and filled by this sync",
                column.pg_type
            ),
        ));
    }
    for column in existing.columns.iter().filter(|c| planned.columns.iter().all(|p| p.name != c.name)) {
        tracing::warn!(table = %planned.source_label(), column = %column.name, "column no longer in the source; kept");
        notes.push(note(
            &column.name,
            "no longer in the source: kept in the target with its values; rows inserted from now on get its default"
                .to_owned(),
        ));
    }
    Ok(notes)
}

/// Checks that an existing target table can take the planned columns;
/// with `adds_missing` (upsert), a column it lacks is one to add.
fn check_compatible(planned: &TargetTable, existing: &Table, adds_missing: bool) -> Result<(), TransferError> {
    let label = format!("{}.{}", planned.schema, planned.name);
    for column in planned.copied_columns() {
        let Some(current) = existing.column(&column.name) else {
            if adds_missing {
                continue;
            }
            return Err(TransferError::Incompatible {
                table: label,
                message: format!("it has no column \"{}\" (source column {})", column.name, column.source_name),
            });
        };
        if current.data_type != ColumnType::Postgres(column.pg_type) {
            let shown = &current.data_type;
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

/// Streams one chunk's pieces into a COPY and commits it, with its
/// progress, once the reader has confirmed the page is complete. Returns
/// the rows the server copied.
async fn write_copy(
    pool: &PgPool,
    chunk: ChunkWrite<'_>,
    mut pieces: mpsc::Receiver<Bytes>,
    end: oneshot::Receiver<ReadEnd>,
) -> Result<Written, TransferError> {
    let ChunkWrite { target, label, key_columns, partition, mode, rows_before, progress, writers, uncertain, .. } =
        chunk;
    let Some(first) = pieces.recv().await else {
        // Every page sends at least the COPY header, so the reader failed
        // before producing anything; it reports why.
        return Ok(Written::default());
    };
    let failed = |what: &str| {
        let context = format!("{what} {label}");
        move |e: tokio_postgres::Error| pg_error(Side::Target, context, &e)
    };
    let _permit = writers.acquire().await.map_err(|_| TransferError::Cancelled)?;
    let mut client = pool.get(Side::Target).await?;
    let tx = client.transaction().await.map_err(failed("starting a chunk of"))?;
    let copy_sql = match mode {
        WriteMode::Append => ddl::copy_in(target),
        WriteMode::TruncateFirst => {
            let sql = ddl::truncate_tables(&[target]).unwrap_or_default();
            tx.batch_execute(&sql).await.map_err(failed("emptying"))?;
            ddl::copy_in(target)
        }
        WriteMode::Replace => {
            tx.batch_execute(&ddl::create_stage(target)).await.map_err(failed("staging a chunk of"))?;
            ddl::copy_into_stage(target)
        }
        WriteMode::Merge { .. } => {
            // The session's stage exists after its first chunk; saying so each time is noise.
            let sql = format!("SET LOCAL client_min_messages = warning; {}", ddl::create_merge_stage(target));
            tx.batch_execute(&sql).await.map_err(failed("staging a chunk of"))?;
            ddl::copy_into_merge_stage(target)
        }
    };
    let sink = tx.copy_in(&copy_sql).await.map_err(failed("copying into"))?;
    pin_mut!(sink);
    for part in parts(first) {
        sink.feed(part).await.map_err(failed("copying into"))?;
    }
    failpoint::reached("mid-copy").await;
    while let Some(piece) = pieces.recv().await {
        for part in parts(piece) {
            sink.feed(part).await.map_err(failed("copying into"))?;
        }
    }
    let Ok(end) = end.await else {
        // Dropping the sink aborts the COPY, and dropping the transaction rolls it back.
        return Ok(Written::default());
    };
    let rows = sink.as_mut().finish().await.map_err(failed("copying into"))?;
    let keys: Vec<&str> = key_columns.iter().map(String::as_str).collect();
    let mut merged = (0, 0);
    match mode {
        WriteMode::Replace => {
            tx.batch_execute(&ddl::replace_from_stage(target, &keys)).await.map_err(failed("replacing a chunk of"))?;
        }
        WriteMode::Merge { record_keys, .. } => {
            let counts = tx.query_one(&ddl::merge_from_stage(target, &keys), &[]).await;
            let counts = counts.map_err(failed("merging a chunk into"))?;
            let count = |i: usize| counts.try_get::<_, i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
            merged =
                (count(0).map_err(failed("merging a chunk into"))?, count(1).map_err(failed("merging a chunk into"))?);
            if record_keys {
                tx.batch_execute(&ddl::record_seen_keys(target, &keys, progress::STATE_SCHEMA))
                    .await
                    .map_err(failed("recording the keys read of"))?;
            }
        }
        WriteMode::Append | WriteMode::TruncateFirst => {}
    }
    let chunk = ChunkEnd {
        table: label,
        partition,
        last_key: end.last_key.as_deref(),
        rows_total: rows_before + end.rows,
        completes: end.completes,
    };
    if let Some(record) = progress.before_commit(&chunk).await? {
        record_chunk(&tx, progress.run_id(), &record).await?;
    }
    failpoint::reached("before-commit").await;
    if let Ok(mut u) = uncertain.lock()
        && let Some(key) = &end.last_key
    {
        *u = Some(key.clone());
    }
    tx.commit().await.map_err(failed("committing a chunk of"))?;
    failpoint::reached("after-commit").await;
    progress.after_commit(&chunk).await?;
    if let Ok(mut u) = uncertain.lock() {
        *u = None;
    }
    Ok(Written { rows, inserted: merged.0, updated: merged.1 })
}

/// Largest COPY message sent to the target: a piece (about 1 MiB; a row of
/// several large fields can overrun one) goes out in slices of this size,
/// which share the piece's memory; the driver copies each into its write
/// buffer. The server
/// copies each whole message into a buffer of its own before its COPY
/// reads it 64 KiB at a time (`RAW_BUF_SIZE`); a 1 MiB message no longer
/// fits a core's L2 cache by then, and the second copy read it from
/// memory: at 0.25 the target's `memmove` took 3,500 to 4,200 samples a run
/// with 1 MiB messages against 2,500 to 3,100 with 64 KiB, as many as `psql`'s
/// 8 KiB messages cost it (docs/BENCHMARKS.md, issue 18).
const MAX_COPY_MESSAGE: usize = 64 << 10;

fn parts(piece: Bytes) -> impl Iterator<Item = Bytes> {
    let len = piece.len();
    (0..len.max(1)).step_by(MAX_COPY_MESSAGE).map(move |start| piece.slice(start..(start + MAX_COPY_MESSAGE).min(len)))
}

/// Whether `table`'s keys table for the deletes is there (gone: the deletes are done).
async fn seen_keys_exist(
    client: &tokio_postgres::Client,
    table: &TargetTable,
    what: &str,
) -> Result<bool, TransferError> {
    let seen = mssql_pg_migrate_schema::ident::qualified_pg(progress::STATE_SCHEMA, &ddl::seen_keys_name(table));
    relation_exists(client, &seen, what).await
}

/// Deletes the rows of `table` the sync did not read from the source and
/// drops the keys it read, in one transaction; returns the rows deleted.
/// Without the keys' table (a redo after that commit) there is nothing left to do.
async fn delete_unseen_rows(
    target: &PgPool,
    table: &TargetTable,
    keys: &[&str],
    what: &str,
) -> Result<u64, TransferError> {
    let failed = |e: tokio_postgres::Error| pg_error(Side::Target, what, &e);
    let mut client = target.get(Side::Target).await?;
    if !seen_keys_exist(&client, table, what).await? {
        tracing::info!(table = %table.name, "deletes already done");
        return Ok(0);
    }
    let tx = client.transaction().await.map_err(failed)?;
    let row = tx.query_one(&ddl::delete_unseen(table, keys, progress::STATE_SCHEMA), &[]).await.map_err(failed)?;
    let deleted: i64 = row.try_get(0).map_err(failed)?;
    tx.batch_execute(&ddl::drop_seen_keys(table, progress::STATE_SCHEMA)).await.map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(u64::try_from(deleted).unwrap_or(0))
}

/// Runs a finalization statement; an object that already exists (built by
/// the interrupted run this one resumes) counts as done.
async fn execute_once(client: &tokio_postgres::Client, sql: &str, what: &str) -> Result<(), TransferError> {
    tracing::debug!(sql, "target");
    match client.batch_execute(sql).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
            // 42P07: the index's relation exists; 42710: the constraint
            // exists; 42P16: the table has its primary key already.
            let exists = matches!(code.as_str(), "42P07" | "42710") || (code == "42P16" && sql.contains("PRIMARY KEY"));
            if exists {
                tracing::info!(step = %what, "already in place");
                Ok(())
            } else {
                Err(pg_error(Side::Target, what, &e))
            }
        }
    }
}

async fn restart_identity(
    client: &tokio_postgres::Client,
    table: &TargetTable,
    column: &TargetColumn,
    what: &str,
) -> Result<(), TransferError> {
    let Some(identity) = column.identity else { return Ok(()) };
    let row = client
        .query_one(&ddl::identity_extreme(table, column), &[])
        .await
        .map_err(|e| pg_error(Side::Target, what, &e))?;
    let extreme: Option<String> = row.try_get(0).map_err(|e| pg_error(Side::Target, what, &e))?;
    let loaded = extreme.and_then(|s| s.parse::<i128>().ok());
    let Some(next) = ddl::identity_next(identity.seed, identity.increment, identity.current, loaded, column.pg_type)
    else {
        tracing::warn!(table = %table.name, column = %column.name, "identity is exhausted; not restarted");
        return Ok(());
    };
    execute(client, &ddl::restart_identity(table, column, next), what).await
}

/// An advisory lock on one migration, held by its own session for the run.
///
/// A restart of the target ends that session and with it the lock, so a
/// keeper task ([`MigrationLock::keep`]) watches the session and takes the
/// lock again once the server is back. Should another run have taken it
/// meanwhile, the keeper aborts this run, which then must not touch the
/// migration's state again.
#[derive(Debug)]
pub(crate) struct MigrationLock {
    session: deadpool_postgres::Object,
}

/// How often the keeper looks at the lock's session.
const LOCK_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// How often a run asks again for a lock held elsewhere, within [`MIGRATION_LOCK_GRACE`].
const LOCK_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

impl MigrationLock {
    /// Takes the lock, asking again for [`MIGRATION_LOCK_GRACE`] while
    /// another session holds it, or says which session holds it.
    pub(crate) async fn acquire(control: &PgPool, key: &str) -> Result<MigrationLock, TransferError> {
        let session = control.get(Side::Target).await?;
        let deadline = tokio::time::Instant::now() + MIGRATION_LOCK_GRACE;
        loop {
            if take(&session, key).await? {
                return Ok(MigrationLock { session });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(held_elsewhere(&session, control, key).await);
            }
            tokio::time::sleep(LOCK_RETRY_INTERVAL).await;
        }
    }

    /// Keeps the lock for as long as the returned keeper lives: takes it
    /// again after the target drops its session, waiting for the server as
    /// `backoff` allows, and cancels `abort` if another run holds it by then.
    pub(crate) fn keep(self, control: PgPool, key: String, backoff: Backoff, abort: CancellationToken) -> LockKeeper {
        let lost = Arc::new(Mutex::new(None));
        let lost_to = Arc::clone(&lost);
        let task = tokio::spawn(async move {
            let mut session = self.session;
            let never = CancellationToken::new();
            loop {
                tokio::time::sleep(LOCK_CHECK_INTERVAL).await;
                if !session.is_closed() {
                    continue;
                }
                tracing::warn!("the target closed the session holding the migration lock; taking the lock again");
                let taken = with_retries(&backoff, "taking the migration lock again", &never, |_| async {
                    let fresh = control.get(Side::Target).await?;
                    let got = take(&fresh, &key).await?;
                    Ok((fresh, got))
                })
                .await;
                match taken {
                    Ok((fresh, true)) => {
                        tracing::info!("migration lock taken again");
                        session = fresh;
                    }
                    Ok((fresh, false)) => {
                        let e = held_elsewhere(&fresh, &control, &key).await;
                        tracing::error!(error = %e, "lost the migration lock while the target was away; stopping");
                        if let Ok(mut slot) = lost_to.lock() {
                            *slot = Some(format!("{e} (it was taken while this run waited for the target)"));
                        }
                        abort.cancel();
                        return;
                    }
                    // The chunks waiting for the same server fail with the same cause.
                    Err(e) => {
                        tracing::error!(error = %e, "cannot take the migration lock again");
                        return;
                    }
                }
            }
        });
        LockKeeper { task, lost }
    }
}

/// The lock's keeper task; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct LockKeeper {
    task: tokio::task::JoinHandle<()>,
    lost: Arc<Mutex<Option<String>>>,
}

impl LockKeeper {
    /// Why the lock was lost to another run, if it was.
    pub(crate) fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }
}

impl Drop for LockKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock_key(key: &str) -> String {
    format!("mssql-pg-migrate {key}")
}

async fn take(session: &tokio_postgres::Client, key: &str) -> Result<bool, TransferError> {
    session
        .query_one("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", &[&lock_key(key)])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg_error(Side::Target, "taking the migration lock", &e))
}

/// The error for a lock another session holds, naming that session.
async fn held_elsewhere(session: &tokio_postgres::Client, control: &PgPool, key: &str) -> TransferError {
    let holder: Option<String> = session
        .query_opt(
            "SELECT format('backend pid %s (%s, connected since %s)', a.pid, \
             coalesce(nullif(a.client_addr::text, ''), 'local'), a.backend_start) \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
             AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($1, 0)",
            &[&lock_key(key)],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get(0).ok());
    TransferError::State(format!(
        "another run of this migration (target schema {}) is in progress on {}, held by {}; \
         wait for it to finish or stop it",
        literal_pg(key),
        control.address(),
        holder.unwrap_or_else(|| "another session".into())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mssql_pg_migrate_config::Secret;
    use mssql_pg_migrate_postgres::pool::PgEndpoint;
    use mssql_pg_migrate_testkit::{PgCluster, SUPERUSER};

    fn pool(cluster: &PgCluster) -> PgPool {
        let endpoint = PgEndpoint::loopback(cluster.port(), "postgres", SUPERUSER, Secret::new(cluster.password()));
        PgPool::new(&endpoint, Side::Target, 2).unwrap()
    }

    #[test]
    fn pieces_go_out_in_messages_of_at_most_64_kib_that_rejoin_to_the_piece() {
        let piece: Vec<u8> = (0..3 * MAX_COPY_MESSAGE + 5).map(|i| (i % 251) as u8).collect();
        let sent: Vec<Bytes> = parts(Bytes::from(piece.clone())).collect();
        let sizes: Vec<usize> = sent.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [65_536, 65_536, 65_536, 5]);
        assert_eq!(sent.concat(), piece);
        let whole: Vec<usize> = parts(Bytes::from(vec![7u8; 100])).map(|b| b.len()).collect();
        assert_eq!(whole, [100], "a small piece is one message");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lock_let_go_within_the_grace_is_taken_and_one_kept_is_refused_naming_its_holder() {
        let cluster = PgCluster::start().unwrap();
        let holder = cluster.connect("postgres").await.unwrap();
        let key = "\"so\"";
        holder.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&lock_key(key)]).await.unwrap();
        let pid: i32 = holder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);

        // Kept: refused once the grace is over, naming the session.
        let started = tokio::time::Instant::now();
        let Err(refused) = MigrationLock::acquire(&pool(&cluster), key).await else {
            panic!("the lock was taken twice")
        };
        assert!(started.elapsed() >= MIGRATION_LOCK_GRACE, "refused after {:?}", started.elapsed());
        let message = refused.to_string();
        assert!(
            message.contains("another run of this migration") && message.contains(&format!("pid {pid}")),
            "{message}"
        );

        // Let go a moment after the attempt began (a run that just ended): taken.
        let waiting = tokio::spawn({
            let pool = pool(&cluster);
            async move { MigrationLock::acquire(&pool, key).await.map(|_| ()) }
        });
        tokio::time::sleep(MIGRATION_LOCK_GRACE / 6).await;
        drop(holder);
        waiting.await.unwrap().expect("the lock, once let go, is taken");
    }
}
