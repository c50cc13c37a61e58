//! Where the run state lives while the engine works, and how each chunk's
//! progress reaches it without a window for loss or duplication.
//!
//! Two stores:
//! - a **file** (`--state-file`): every change is written atomically by one
//!   writer thread, in the order the changes were made. A chunk records its
//!   end key as `pending_pk` *before* it commits and as `last_pk` after, so
//!   a crash between the two is visible: resume replaces that range.
//! - the **target database** (schema [`STATE_SCHEMA`]): the run document is
//!   saved at phase changes, and each chunk's progress row is written in the
//!   chunk's own transaction, so data and progress commit together.
//!
//! Either way one session holds an advisory lock on the migration for the
//! whole run, so two runs of the same migration cannot overlap.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mssql_pg_migrate_postgres::pg_error;
use mssql_pg_migrate_schema::ident::literal_pg;
use mssql_pg_migrate_state::{ChangeMark, RunState, StateError, WorkStatus, now_rfc3339, write_atomically};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::{Side, TransferError};
use crate::pool::PgPool;
use crate::retry::{Backoff, with_retries};

/// The schema of the target database that holds run states.
pub const STATE_SCHEMA: &str = "mssql_pg_migrate";

/// Where a run keeps its state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateLocation {
    /// The target database, in schema [`STATE_SCHEMA`] (the default: it
    /// suits pods without volumes).
    #[default]
    Target,
    /// A JSON file in the guide's format.
    File(PathBuf),
}

/// A snapshot to write, and where to say how it went (the error's text
/// names the file and the step, and goes to every waiter of the batch).
type SaveJob = (Vec<u8>, oneshot::Sender<Result<(), String>>);

/// Serializes file saves on one thread, in submission order, writing only
/// the newest of any snapshots that queued up meanwhile.
#[derive(Debug)]
struct FileWriter {
    jobs: std::sync::mpsc::Sender<SaveJob>,
}

impl FileWriter {
    fn start(path: PathBuf) -> FileWriter {
        let (jobs, queue) = std::sync::mpsc::channel::<SaveJob>();
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    batch.extend(queue.try_iter());
                    let Some((newest, _)) = batch.last() else { continue };
                    let result = write_atomically(&path, newest).map_err(|e| e.to_string());
                    for (_, done) in batch {
                        let _ = done.send(result.clone());
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the state writer thread"));
        FileWriter { jobs }
    }
}

#[derive(Debug)]
enum Store {
    File { path: PathBuf, writer: FileWriter },
    Target { control: PgPool, key: String },
}

/// The live run state and its store.
#[derive(Debug)]
pub(crate) struct Progress {
    state: Mutex<RunState>,
    store: Store,
    /// The state's run id, which never changes while the run lasts.
    run_id: String,
    /// A save to the target waits out its restart as a chunk does.
    backoff: Backoff,
    /// The target's control pool (a PostgreSQL target's) and the
    /// migration's key, for the marks kept in the target whatever the store.
    control: Option<PgPool>,
    key: String,
}

/// A save in flight: queued for the file writer, or a document for the target.
enum Save {
    File(oneshot::Receiver<Result<(), String>>),
    Target(String),
}

fn state_io(path: &Path) -> impl Fn(&str) -> TransferError + '_ {
    move |why| TransferError::Io(format!("cannot write state file {}: {why}", path.display()))
}

/// The state or marks asked of a target that cannot keep them.
fn no_state_in_target() -> TransferError {
    TransferError::Config(
        "this target keeps no run state or marks in its database; give the run a state file (--state-file FILE)".into(),
    )
}

fn target_error(context: &str, e: &tokio_postgres::Error) -> TransferError {
    pg_error(Side::Target, context, e)
}

const CREATE_STORE: &str = "CREATE SCHEMA IF NOT EXISTS mssql_pg_migrate;
CREATE TABLE IF NOT EXISTS mssql_pg_migrate.runs (
    migration text PRIMARY KEY,
    run_id text NOT NULL,
    state jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS mssql_pg_migrate.chunks (
    run_id text NOT NULL,
    table_name text NOT NULL,
    partition_id integer NOT NULL,
    last_pk text,
    rows_transferred bigint NOT NULL,
    completed boolean NOT NULL,
    PRIMARY KEY (run_id, table_name, partition_id)
);";

const CREATE_MARKS: &str = "CREATE SCHEMA IF NOT EXISTS mssql_pg_migrate;
CREATE TABLE IF NOT EXISTS mssql_pg_migrate.marks (
    migration text NOT NULL,
    table_name text NOT NULL,
    change_column text NOT NULL,
    mark text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, table_name)
);";

/// The incremental marks of a migration kept in the target (see
/// [`Progress::keep_mark`]): they outlive any run state, so that syncs
/// whose state files are per run (the guide's Airflow DAG) still read only
/// what changed.
///
/// # Errors
/// Server errors of the target.
pub(crate) async fn load_marks(
    control: &PgPool,
    key: &str,
) -> Result<std::collections::BTreeMap<String, ChangeMark>, TransferError> {
    let client = control.get(Side::Target).await?;
    let context = "reading the incremental marks";
    let mut marks = std::collections::BTreeMap::new();
    if !relation_exists(&client, "mssql_pg_migrate.marks", context).await? {
        return Ok(marks);
    }
    let rows = client
        .query("SELECT table_name, change_column, mark FROM mssql_pg_migrate.marks WHERE migration = $1", &[&key])
        .await
        .map_err(|e| target_error(context, &e))?;
    for row in rows {
        let table: String = row.try_get(0).map_err(|e| target_error(context, &e))?;
        let column: String = row.try_get(1).map_err(|e| target_error(context, &e))?;
        let mark: Option<String> = row.try_get(2).map_err(|e| target_error(context, &e))?;
        marks.insert(table, ChangeMark { column, mark, next: None });
    }
    Ok(marks)
}

/// Whether the target has the relation `qualified` (a quoted `schema.name`).
pub(crate) async fn relation_exists(
    client: &tokio_postgres::Client,
    qualified: &str,
    context: &str,
) -> Result<bool, TransferError> {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| target_error(context, &e))
}

/// Loads the saved state of a migration, if there is one.
///
/// # Errors
/// [`TransferError::State`] for a damaged state, [`TransferError::Io`] for
/// an unreadable file, and server errors of the target.
pub(crate) async fn load(
    location: &StateLocation,
    control: Option<&PgPool>,
    key: &str,
) -> Result<Option<RunState>, TransferError> {
    match location {
        StateLocation::File(path) => match RunState::load(path) {
            Ok(state) => Ok(Some(state)),
            Err(StateError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        },
        StateLocation::Target => {
            let control = control.ok_or_else(no_state_in_target)?;
            let client = control.get(Side::Target).await?;
            let context = "reading the saved run state";
            if !relation_exists(&client, "mssql_pg_migrate.runs", context).await? {
                return Ok(None);
            }
            let Some(row) = client
                .query_opt("SELECT state::text FROM mssql_pg_migrate.runs WHERE migration = $1", &[&key])
                .await
                .map_err(|e| target_error(context, &e))?
            else {
                return Ok(None);
            };
            let text: String = row.try_get(0).map_err(|e| target_error(context, &e))?;
            let origin = PathBuf::from(format!("{STATE_SCHEMA}.runs[{key}] in {}", control.address()));
            let mut state = RunState::from_json(text.as_bytes(), &origin)?;
            // The chunk rows committed with the data; they are the truth.
            let rows = client
                .query(
                    "SELECT table_name, partition_id, last_pk, rows_transferred, completed \
                     FROM mssql_pg_migrate.chunks WHERE run_id = $1",
                    &[&state.run_id],
                )
                .await
                .map_err(|e| target_error(context, &e))?;
            for row in rows {
                let table: String = row.try_get(0).map_err(|e| target_error(context, &e))?;
                let partition: i32 = row.try_get(1).map_err(|e| target_error(context, &e))?;
                let last_pk: Option<String> = row.try_get(2).map_err(|e| target_error(context, &e))?;
                let rows_transferred: i64 = row.try_get(3).map_err(|e| target_error(context, &e))?;
                let completed: bool = row.try_get(4).map_err(|e| target_error(context, &e))?;
                let slot = state
                    .tables
                    .get_mut(&table)
                    .and_then(|t| t.partitions.get_mut(usize::try_from(partition).unwrap_or(usize::MAX)));
                let Some(p) = slot else {
                    return Err(TransferError::State(format!(
                        "{}: chunk progress names partition {partition} of table {table}, which the run state does not have",
                        origin.display()
                    )));
                };
                p.last_pk = last_pk;
                p.rows_transferred = u64::try_from(rows_transferred).unwrap_or_default();
                p.status = if completed { WorkStatus::Completed } else { WorkStatus::InProgress };
            }
            for table in state.tables.values_mut() {
                table.transferred_rows = table.committed_rows();
            }
            Ok(Some(state))
        }
    }
}

impl Progress {
    /// The run's retry policy (told to the run's event sink).
    pub(crate) fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Opens the store for `state` (creating the state schema if needed).
    pub(crate) async fn open(
        location: &StateLocation,
        control: Option<&PgPool>,
        key: &str,
        state: RunState,
        backoff: Backoff,
    ) -> Result<Progress, TransferError> {
        let store = match location {
            StateLocation::File(path) => Store::File { path: path.clone(), writer: FileWriter::start(path.clone()) },
            StateLocation::Target => {
                let control = control.ok_or_else(no_state_in_target)?;
                let client = control.get(Side::Target).await?;
                client.batch_execute(CREATE_STORE).await.map_err(|e| target_error("creating the state schema", &e))?;
                // Progress rows of earlier runs of this migration are dead weight.
                client
                    .execute(
                        "DELETE FROM mssql_pg_migrate.chunks c USING mssql_pg_migrate.runs r \
                         WHERE r.migration = $1 AND c.run_id = r.run_id AND r.run_id <> $2",
                        &[&key, &state.run_id],
                    )
                    .await
                    .map_err(|e| target_error("clearing the progress of an earlier run", &e))?;
                Store::Target { control: control.clone(), key: key.to_owned() }
            }
        };
        let run_id = state.run_id.clone();
        Ok(Progress {
            state: Mutex::new(state),
            store,
            run_id,
            backoff,
            control: control.cloned(),
            key: key.to_owned(),
        })
    }

    /// Reads the live state.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&RunState) -> T) -> T {
        match self.state.lock() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Changes the live state (not saved yet).
    pub(crate) fn update(&self, f: impl FnOnce(&mut RunState)) {
        let mut guard = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard);
        guard.updated_at = now_rfc3339();
    }

    /// Changes the state and saves it.
    pub(crate) async fn save_with(&self, f: impl FnOnce(&mut RunState)) -> Result<(), TransferError> {
        let save = {
            let mut guard = match self.state.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            f(&mut guard);
            guard.updated_at = now_rfc3339();
            match &self.store {
                // Queued under the lock, so saves reach the writer in the order of the changes.
                Store::File { path, writer } => {
                    let (done, wait) = oneshot::channel();
                    writer.jobs.send((guard.to_json(), done)).map_err(|_| state_io(path)("the writer stopped"))?;
                    Save::File(wait)
                }
                Store::Target { .. } => Save::Target(String::from_utf8_lossy(&guard.to_json()).into_owned()),
            }
        };
        match (save, &self.store) {
            (Save::File(wait), Store::File { path, .. }) => match wait.await {
                Ok(result) => result.map_err(TransferError::Io),
                Err(_) => Err(state_io(path)("the writer stopped")),
            },
            (Save::Target(text), Store::Target { control, key }) => {
                // Never cancelled: the state of a stopping run must still be saved.
                let saving = CancellationToken::new();
                with_retries(&self.backoff, "saving the run state", &saving, |_| async {
                    let client = control.get(Side::Target).await?;
                    client
                        .execute(
                            "INSERT INTO mssql_pg_migrate.runs (migration, run_id, state, updated_at) \
                             VALUES ($1, $2, $3::text::jsonb, now()) ON CONFLICT (migration) DO UPDATE \
                             SET run_id = EXCLUDED.run_id, state = EXCLUDED.state, updated_at = now()",
                            &[key, &self.run_id, &text],
                        )
                        .await
                        .map_err(|e| target_error("saving the run state", &e))?;
                    Ok(())
                })
                .await
            }
            // Each store makes only its own kind of save.
            _ => Ok(()),
        }
    }

    /// Keeps a table's new mark in the target, where the next run finds it
    /// whatever its state location.
    pub(crate) async fn keep_mark(&self, table: &str, column: &str, mark: Option<&str>) -> Result<(), TransferError> {
        let never = CancellationToken::new();
        let control = self.control.as_ref().ok_or_else(no_state_in_target)?;
        with_retries(&self.backoff, "keeping the incremental mark", &never, |_| async {
            let client = control.get(Side::Target).await?;
            let context = "keeping the incremental mark";
            client.batch_execute(CREATE_MARKS).await.map_err(|e| target_error(context, &e))?;
            client
                .execute(
                    "INSERT INTO mssql_pg_migrate.marks (migration, table_name, change_column, mark) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (migration, table_name) DO UPDATE \
                     SET change_column = EXCLUDED.change_column, mark = EXCLUDED.mark, updated_at = now()",
                    &[&self.key, &table, &column, &mark],
                )
                .await
                .map_err(|e| target_error(context, &e))?;
            Ok(())
        })
        .await
    }

    /// Saves the state as it is.
    pub(crate) async fn save(&self) -> Result<(), TransferError> {
        self.save_with(|_| {}).await
    }

    /// Whether chunk progress is written in the chunk's transaction.
    pub(crate) fn in_target(&self) -> bool {
        matches!(self.store, Store::Target { .. })
    }

    /// Called with the chunk's transaction open and its rows copied, just
    /// before the commit. `rows_total` is the partition's total once this
    /// chunk commits.
    /// `tx` is the chunk's transaction on a PostgreSQL target, which
    /// records the progress of a state kept there; a target without it
    /// keeps its state in a file.
    pub(crate) async fn before_commit(
        &self,
        tx: Option<&tokio_postgres::Transaction<'_>>,
        chunk: &ChunkEnd<'_>,
    ) -> Result<(), TransferError> {
        match &self.store {
            Store::File { .. } => {
                let Some(key) = chunk.last_key else { return Ok(()) };
                self.save_with(|s| {
                    if let Some(p) = partition_mut(s, chunk.table, chunk.partition) {
                        p.pending_pk = Some(key.to_owned());
                        p.status = WorkStatus::InProgress;
                    }
                })
                .await
            }
            Store::Target { .. } => {
                let tx = tx.ok_or_else(no_state_in_target)?;
                let partition = i32::try_from(chunk.partition).unwrap_or(i32::MAX);
                let rows = i64::try_from(chunk.rows_total).unwrap_or(i64::MAX);
                let last_pk = chunk.last_key.map(str::to_owned).or_else(|| {
                    self.with(|s| {
                        s.tables.get(chunk.table).and_then(|t| t.partitions.get(chunk.partition)?.last_pk.clone())
                    })
                });
                tx.execute(
                    "INSERT INTO mssql_pg_migrate.chunks \
                     (run_id, table_name, partition_id, last_pk, rows_transferred, completed) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, table_name, partition_id) DO UPDATE \
                     SET last_pk = EXCLUDED.last_pk, rows_transferred = EXCLUDED.rows_transferred, \
                     completed = EXCLUDED.completed",
                    &[&self.run_id, &chunk.table, &partition, &last_pk, &rows, &chunk.completes],
                )
                .await
                .map_err(|e| target_error(&format!("recording the progress of {}", chunk.table), &e))?;
                Ok(())
            }
        }
    }

    /// Called once the chunk's transaction committed.
    pub(crate) async fn after_commit(&self, chunk: &ChunkEnd<'_>) -> Result<(), TransferError> {
        let apply = |s: &mut RunState| {
            if let Some(t) = s.tables.get_mut(chunk.table) {
                if let Some(p) = t.partitions.get_mut(chunk.partition) {
                    if let Some(key) = chunk.last_key {
                        p.last_pk = Some(key.to_owned());
                    }
                    p.pending_pk = None;
                    p.rows_transferred = chunk.rows_total;
                    p.status = if chunk.completes { WorkStatus::Completed } else { WorkStatus::InProgress };
                }
                t.transferred_rows = t.committed_rows();
                if t.status == WorkStatus::Pending {
                    t.status = WorkStatus::InProgress;
                }
            }
        };
        if self.in_target() {
            self.update(apply);
            Ok(())
        } else {
            self.save_with(apply).await
        }
    }
}

fn partition_mut<'a>(
    s: &'a mut RunState,
    table: &str,
    partition: usize,
) -> Option<&'a mut mssql_pg_migrate_state::PartitionState> {
    s.tables.get_mut(table)?.partitions.get_mut(partition)
}

/// One chunk about to commit (or just committed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkEnd<'a> {
    pub table: &'a str,
    pub partition: usize,
    /// The chunk's last key in state form; `None` for an empty chunk or a keyless table.
    pub last_key: Option<&'a str>,
    /// The partition's committed rows once this chunk is in.
    pub rows_total: u64,
    /// Whether this chunk finishes its partition.
    pub completes: bool,
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

impl MigrationLock {
    /// Takes the lock, or says which session holds it.
    pub(crate) async fn acquire(control: &PgPool, key: &str) -> Result<MigrationLock, TransferError> {
        let session = control.get(Side::Target).await?;
        if take(&session, key).await? {
            return Ok(MigrationLock { session });
        }
        Err(held_elsewhere(&session, control, key).await)
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
        .map_err(|e| target_error("taking the migration lock", &e))
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
