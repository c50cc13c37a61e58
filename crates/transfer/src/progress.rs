//! Where the run state lives while the engine works, and how each chunk's
//! progress reaches it without a window for loss or duplication.
//!
//! Two stores:
//! - a **file** (`--state-file`): every change is written atomically by one
//!   writer thread, in the order the changes were made. A chunk records its
//!   end key as `pending_pk` *before* it commits and as `last_pk` after, so
//!   a crash between the two is visible: resume replaces that range.
//! - the **target database** (schema [`STATE_SCHEMA`], through the
//!   target's [`StateStore`]): the run document is saved at phase changes,
//!   and each chunk's progress row ([`ChunkRecord`], from
//!   `Progress::before_commit`) is written by the target in the chunk's
//!   own transaction, so data and progress commit together.
//!
//! Either way the target holds a lock on the migration for the whole run
//! (`Target::lock`), so two runs of the same migration cannot overlap.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mssql_pg_migrate_dialect::store::{ChunkRecord, KeptMark, StateStore};
use mssql_pg_migrate_state::{ChangeMark, RunState, StateError, TableState, WorkStatus, now_rfc3339, write_atomically};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::TransferError;
use crate::retry::{Backoff, with_retries};

pub use mssql_pg_migrate_dialect::store::STATE_SCHEMA;

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
    Target { store: Arc<dyn StateStore>, key: String },
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
    /// The target's state store, if it keeps one, and the migration's
    /// key, for the marks kept in the target whatever the store.
    control: Option<Arc<dyn StateStore>>,
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

/// The incremental marks of a migration kept in the target (see
/// [`Progress::keep_mark`]): they outlive any run state, so that syncs
/// whose state files are per run (the guide's Airflow DAG) still read only
/// what changed.
///
/// # Errors
/// Server errors of the target.
pub(crate) async fn load_marks(
    store: &dyn StateStore,
    key: &str,
) -> Result<std::collections::BTreeMap<String, ChangeMark>, TransferError> {
    Ok(store
        .load_marks(key)
        .await?
        .into_iter()
        .map(|m| (m.table, ChangeMark { column: m.change_column, mark: m.mark, next: None }))
        .collect())
}

/// Loads the saved state of a migration, if there is one.
///
/// # Errors
/// [`TransferError::State`] for a damaged state, [`TransferError::Io`] for
/// an unreadable file, and server errors of the target.
pub(crate) async fn load(
    location: &StateLocation,
    store: Option<&dyn StateStore>,
    key: &str,
) -> Result<Option<RunState>, TransferError> {
    match location {
        StateLocation::File(path) => match RunState::load(path) {
            Ok(state) => Ok(Some(state)),
            Err(StateError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        },
        StateLocation::Target => {
            let store = store.ok_or_else(no_state_in_target)?;
            let Some(saved) = store.load(key).await? else { return Ok(None) };
            let origin = PathBuf::from(format!("{STATE_SCHEMA}.runs[{key}] in {}", store.address()));
            let mut state = RunState::from_json(saved.document.as_bytes(), &origin)?;
            // The chunk rows committed with the data; they are the truth.
            for chunk in saved.chunks {
                let slot = state
                    .tables
                    .get_mut(&chunk.table)
                    .and_then(|t| t.partitions.get_mut(usize::try_from(chunk.partition).unwrap_or(usize::MAX)));
                let Some(p) = slot else {
                    return Err(TransferError::State(format!(
                        "{}: chunk progress names partition {} of table {}, which the run state does not have",
                        origin.display(),
                        chunk.partition,
                        chunk.table
                    )));
                };
                p.last_pk = chunk.last_pk;
                p.rows_transferred = u64::try_from(chunk.rows_transferred).unwrap_or_default();
                p.status = if chunk.completed { WorkStatus::Completed } else { WorkStatus::InProgress };
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
        control: Option<Arc<dyn StateStore>>,
        key: &str,
        state: RunState,
        backoff: Backoff,
    ) -> Result<Progress, TransferError> {
        let store = match location {
            StateLocation::File(path) => Store::File { path: path.clone(), writer: FileWriter::start(path.clone()) },
            StateLocation::Target => {
                let store = control.clone().ok_or_else(no_state_in_target)?;
                // Progress rows of earlier runs of this migration are dead weight.
                store.open(key, &state.run_id).await?;
                Store::Target { store, key: key.to_owned() }
            }
        };
        let run_id = state.run_id.clone();
        Ok(Progress { state: Mutex::new(state), store, run_id, backoff, control, key: key.to_owned() })
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
            (Save::Target(text), Store::Target { store, key }) => {
                // Never cancelled: the state of a stopping run must still be saved.
                let saving = CancellationToken::new();
                with_retries(&self.backoff, "saving the run state", &saving, |_| async {
                    store.save(key, &self.run_id, &text).await
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
        let mark =
            KeptMark { table: table.to_owned(), change_column: column.to_owned(), mark: mark.map(str::to_owned) };
        with_retries(&self.backoff, "keeping the incremental mark", &never, |_| async {
            control.keep_mark(&self.key, &mark).await
        })
        .await
    }

    /// Saves the state as it is.
    /// Starts `table`'s progress over (it is copied again): `reset` gives
    /// it new partitions, and a state in the target first drops the chunk
    /// rows of the old ones, which a later load would otherwise take for
    /// the new ones' and skip rows never copied.
    pub(crate) async fn start_table_over(
        &self,
        table: &str,
        reset: impl FnOnce(&mut TableState),
    ) -> Result<(), TransferError> {
        if let Store::Target { store, .. } = &self.store {
            store.forget_chunks(&self.run_id, table).await?;
        }
        self.save_with(|s| {
            if let Some(t) = s.tables.get_mut(table) {
                reset(t);
                t.transferred_rows = t.committed_rows();
            }
        })
        .await
    }

    pub(crate) async fn save(&self) -> Result<(), TransferError> {
        self.save_with(|_| {}).await
    }

    /// Whether chunk progress is written in the chunk's transaction.
    pub(crate) fn in_target(&self) -> bool {
        matches!(self.store, Store::Target { .. })
    }

    /// The run's id, which a target writes into its chunk rows.
    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Called with the chunk's transaction open and its rows copied, just
    /// before the commit. `rows_total` is the partition's total once this
    /// chunk commits.
    ///
    /// A state file records the chunk's end key as pending now; a state in
    /// the target gets the row the target must write in the chunk's
    /// transaction (with [`Progress::run_id`]), so that rows and progress
    /// commit together.
    pub(crate) async fn before_commit(&self, chunk: &ChunkEnd<'_>) -> Result<Option<ChunkRecord>, TransferError> {
        match &self.store {
            Store::File { .. } => {
                let Some(key) = chunk.last_key else { return Ok(None) };
                self.save_with(|s| {
                    if let Some(p) = partition_mut(s, chunk.table, chunk.partition) {
                        p.pending_pk = Some(key.to_owned());
                        p.status = WorkStatus::InProgress;
                    }
                })
                .await?;
                Ok(None)
            }
            Store::Target { .. } => {
                let last_pk = chunk.last_key.map(str::to_owned).or_else(|| {
                    self.with(|s| {
                        s.tables.get(chunk.table).and_then(|t| t.partitions.get(chunk.partition)?.last_pk.clone())
                    })
                });
                Ok(Some(ChunkRecord {
                    table: chunk.table.to_owned(),
                    partition: i32::try_from(chunk.partition).unwrap_or(i32::MAX),
                    last_pk,
                    rows_transferred: i64::try_from(chunk.rows_total).unwrap_or(i64::MAX),
                    completed: chunk.completes,
                }))
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
