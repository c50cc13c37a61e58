//! Targets: what the engine needs from the server it writes into. The
//! engine is generic over [`Target`], as it is over
//! [`Source`](crate::source::Source), so the per-row path has no dynamic
//! dispatch: a reader fills the target's own [`RowSink`] and the target's
//! writer streams what it sends into one transaction per chunk.
//!
//! - [`postgres`]: binary COPY, merges for upsert, state and lock in the
//!   target database;
//! - [`mssql`]: the TDS bulk load, SQL Server → SQL Server; the state in a
//!   file, the lock an application lock.
//!
//! The SQL and the driver calls are the dialect crates'; what is here ties
//! them to the engine's chunks, state and retries.

use std::future::Future;
use std::sync::Arc;

use mssql_pg_migrate_config::Config;
use mssql_pg_migrate_dialect::store::StateStore;
use mssql_pg_migrate_schema::Table;
use mssql_pg_migrate_schema::target::{Note, TargetColumn, TargetTable};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::TransferError;
use crate::planning::Step;
use crate::progress::Progress;
use crate::retry::Backoff;
use crate::source::{ReadSpec, RowSink, WriterGone};
use tokio_util::sync::CancellationToken;

pub mod mssql;
pub mod postgres;

/// How a chunk's rows reach the target table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// Straight into the table.
    Append,
    /// Through a stage, then replacing the rows with the same keys: for a
    /// chunk whose earlier commit may or may not have happened.
    Replace,
    /// Empty the table first, in the same transaction: a keyless table is
    /// one chunk, and is copied whole again whenever it is redone.
    TruncateFirst,
    /// Into the session's stage, then merged on the key (upsert mode).
    /// Merging is idempotent, so a chunk whose commit is in doubt (`redo`)
    /// is simply merged again. `record_keys`: the batch's keys are added
    /// to the table's seen keys (`delete_missing`).
    Merge { redo: bool, record_keys: bool },
}

/// What the reader tells the writer once its page is complete.
#[derive(Debug)]
pub(crate) struct ReadEnd {
    pub rows: u64,
    pub last_key: Option<String>,
    pub completes: bool,
}

/// What preparing the target did with one table.
pub(crate) struct Prepared {
    /// Created by this run (rather than found).
    pub created: bool,
    /// Why the table cannot be loaded, when `continue_on_error` lets the
    /// others go on.
    pub failed: Option<TransferError>,
    /// How the table was changed to follow the source (upsert).
    pub notes: Vec<Note>,
}

/// One chunk for a writer: the table, where its rows go, and what to
/// record with its commit.
pub(crate) struct ChunkWrite<'a> {
    pub target: &'a TargetTable,
    pub source: &'a Table,
    pub label: &'a str,
    /// Target names of the key columns.
    pub key_columns: &'a [String],
    pub partition: usize,
    pub mode: WriteMode,
    /// The partition's committed rows before this chunk.
    pub rows_before: u64,
    pub progress: &'a Progress,
    /// Limits the writers holding a connection at once.
    pub writers: &'a Semaphore,
    /// Set to the chunk's end key while its commit is in doubt.
    pub uncertain: &'a std::sync::Mutex<Option<String>>,
}

/// What a written chunk did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Written {
    pub rows: u64,
    /// Upsert: rows the merge inserted and updated.
    pub inserted: u64,
    pub updated: u64,
}

/// A held migration lock.
pub(crate) trait RunLock: Send + Sync {
    /// Why the lock was lost to another run, if it was.
    fn lost(&self) -> Option<String>;
}

/// The database a migration writes into.
pub(crate) trait Target: Clone + Send + Sync + 'static {
    /// What the reader's sink hands to the writer.
    type Piece: Send + 'static;
    type Sink: RowSink + 'static;
    type Lock: RunLock + 'static;

    /// `host:port/database`, for messages.
    fn address(&self) -> String;

    /// Where the run state can live in the target database (`None`: the
    /// state must be a file).
    fn state_store(&self) -> Option<Arc<dyn StateStore>>;

    /// Takes the lock on migration `key` for the run, or says who holds
    /// it; `abort` is cancelled should the lock be lost to another run.
    fn lock(
        &self,
        key: &str,
        backoff: Backoff,
        abort: CancellationToken,
    ) -> impl Future<Output = Result<Self::Lock, TransferError>> + Send;

    /// Adjusts the plan to the target's naming (a SQL Server copy keeps the
    /// source's names as they are).
    fn adjust_plan(&self, _planned: &mut [(Table, TargetTable)]) {}

    /// Drops and creates the target tables (drop_recreate), or checks the
    /// existing ones and creates the missing (truncate empties the
    /// existing; upsert keeps their rows).
    fn prepare(
        &self,
        planned: &[(Table, TargetTable)],
        config: &Config,
        target_schema: &str,
        progress: &Progress,
    ) -> impl Future<Output = Result<Vec<Prepared>, TransferError>> + Send;

    /// Whether a table the run created lost its rows to a server restart
    /// (PostgreSQL's UNLOGGED tables), so its recorded progress is void.
    fn emptied_by_restart(
        &self,
        _table: &TargetTable,
        _label: &str,
    ) -> impl Future<Output = Result<bool, TransferError>> + Send {
        async { Ok(false) }
    }

    /// Empties a table the run is loading, to copy it again from the start.
    fn empty_table(&self, table: &TargetTable) -> impl Future<Output = Result<(), TransferError>> + Send;

    /// The sink a reader fills for one chunk of `spec`.
    fn sink(
        &self,
        spec: &ReadSpec,
        source: &Table,
        pieces: mpsc::Sender<Self::Piece>,
        piece_bytes: usize,
    ) -> Self::Sink;

    /// Sends what is left in `sink`; returns the bytes it sent in all.
    fn finish_sink(sink: Self::Sink) -> impl Future<Output = Result<u64, WriterGone>> + Send;

    /// Writes one chunk's pieces as they arrive, in one transaction
    /// committed (with the chunk's progress) only once `end` confirms the
    /// page is complete. Returns what the server took.
    fn write_chunk(
        &self,
        chunk: ChunkWrite<'_>,
        pieces: mpsc::Receiver<Self::Piece>,
        end: oneshot::Receiver<ReadEnd>,
    ) -> impl Future<Output = Result<Written, TransferError>> + Send;

    /// The statements that complete a loaded table (keys, indexes, checks),
    /// in order: every one tolerates finding its object built already.
    fn table_steps(&self, target: &TargetTable, source: &Table, created: bool, config: &Config) -> Vec<Step>;

    /// The foreign keys of a table the run created, built after every table's data.
    fn foreign_key_steps(&self, target: &TargetTable, source: &Table, config: &Config) -> Vec<Step>;

    /// Statements for a complete table, run once the whole run is complete
    /// (after the foreign keys), or when it stops early for the tables
    /// already finalized; none unless the dialect needs them.
    fn closing_steps(&self, target: &TargetTable, created: bool) -> Vec<Step> {
        let _ = (target, created);
        Vec::new()
    }

    /// Runs one finalization statement once; an object that already
    /// exists counts as done.
    fn run_step(&self, sql: &str, what: &str) -> impl Future<Output = Result<(), TransferError>> + Send;

    /// Makes the identity `column` continue past what was loaded.
    fn align_identity(
        &self,
        target: &TargetTable,
        source: &Table,
        column: &TargetColumn,
        what: &str,
    ) -> impl Future<Output = Result<(), TransferError>> + Send;

    /// Upsert with `delete_missing`: whether the keys the deletes compare
    /// with are still kept (`false`: the deletes are done already).
    fn keys_pending(
        &self,
        target: &TargetTable,
        what: &str,
    ) -> impl Future<Output = Result<bool, TransferError>> + Send;

    /// Upsert with `delete_missing` on a table read incrementally: replaces
    /// the keys kept for the deletes with every key the source has, which
    /// a key-only read ([`ReadSpec::keys_only`]) streams into `pieces`, in
    /// one transaction, committed only once `end` brings the count of keys
    /// read and it matches (a read that failed halfway must not leave a
    /// partial set, which would delete rows still in the source). Returns
    /// the keys written.
    fn collect_keys(
        &self,
        target: &TargetTable,
        source: &Table,
        keys: &[&str],
        pieces: mpsc::Receiver<Self::Piece>,
        end: oneshot::Receiver<u64>,
        what: &str,
    ) -> impl Future<Output = Result<u64, TransferError>> + Send;

    /// Upsert with `delete_missing`: deletes the rows the sync did not read.
    fn delete_missing_rows(
        &self,
        target: &TargetTable,
        keys: &[&str],
        what: &str,
    ) -> impl Future<Output = Result<u64, TransferError>> + Send;
}

/// An existing table merged into must have a primary key or a unique index
/// (not partial) on exactly the merge key's columns: `ON CONFLICT` needs it.
pub(crate) fn check_merge_key(planned: &TargetTable, existing: &Table, key: &[String]) -> Result<(), TransferError> {
    let same = |columns: &mut dyn Iterator<Item = &String>| {
        let mut got: Vec<&String> = columns.collect();
        let mut want: Vec<&String> = key.iter().collect();
        got.sort();
        want.sort();
        got == want
    };
    let has = existing.primary_key.iter().any(|pk| same(&mut pk.columns.iter()))
        || existing.unique_constraints.iter().any(|u| same(&mut u.columns.iter()))
        || existing
            .indexes
            .iter()
            .any(|i| i.unique && i.filter.is_none() && same(&mut i.columns.iter().map(|c| &c.name)));
    if has {
        return Ok(());
    }
    Err(TransferError::Incompatible {
        table: format!("{}.{}", planned.schema, planned.name),
        message: format!(
            "upsert merges on ({}), but the table has no primary key or unique index on exactly those columns; \
             add one (ALTER TABLE ... ADD PRIMARY KEY ({}))",
            key.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", "),
            key.join(", ")
        ),
    })
}

/// A key pass may commit only the keys of a read that ended, all of them.
pub(crate) fn keys_all_there(read: u64, written: u64, what: &str) -> Result<(), TransferError> {
    if read == written {
        return Ok(());
    }
    Err(TransferError::State(format!("{what}: {read} keys read but {written} written; nothing is deleted")))
}
