//! Run state kept in the target database, for runs without a state file
//! (pods without volumes): what the engine asks of a target that can keep
//! it, whatever its dialect.
//!
//! The store holds, in schema [`STATE_SCHEMA`]:
//! - `runs`: one run document per migration (the JSON of
//!   [`RunState`](mssql_pg_migrate_state::RunState)), saved at phase changes;
//! - `chunks`: one row per partition of the run, written by the target
//!   *in each chunk's own transaction*, so a chunk's rows and its progress
//!   commit together or not at all ([`ChunkRecord`]);
//! - `marks`: the incremental marks of a migration, which outlive runs.
//!
//! Loading reads the document, then lays the chunk rows over it: they
//! committed with the data, so they are the truth.

use std::future::Future;
use std::pin::Pin;

use crate::TransferError;

/// The schema of the target database that holds run states.
pub const STATE_SCHEMA: &str = "mssql_pg_migrate";

/// A store's answer, boxed so that stores of every dialect fit behind one
/// `dyn` (a store is called per run phase, never per row).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, TransferError>> + Send + 'a>>;

/// One partition's progress as its chunk commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    /// `schema.table` in the source (the run state's table key).
    pub table: String,
    pub partition: i32,
    /// The key the partition has been read up to, as the state spells it.
    pub last_pk: Option<String>,
    /// The partition's rows once this chunk commits.
    pub rows_transferred: i64,
    /// Whether the partition is complete with this chunk.
    pub completed: bool,
}

/// A run document and the chunk rows committed under its run id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRun {
    /// The document as saved (JSON text).
    pub document: String,
    pub chunks: Vec<ChunkRecord>,
}

/// A table's incremental mark kept in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptMark {
    pub table: String,
    pub change_column: String,
    pub mark: Option<String>,
}

/// A target database that keeps run states in schema [`STATE_SCHEMA`].
/// `migration` is the migration's key (its target schema).
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// `host:port/database`, for messages.
    fn address(&self) -> String;

    /// The saved run of `migration`, if there is one.
    fn load<'a>(&'a self, migration: &'a str) -> StoreFuture<'a, Option<SavedRun>>;

    /// Creates the store if needed and drops the chunk rows of earlier runs
    /// of `migration` than `run_id`.
    fn open<'a>(&'a self, migration: &'a str, run_id: &'a str) -> StoreFuture<'a, ()>;

    /// Saves the run document of `migration`.
    fn save<'a>(&'a self, migration: &'a str, run_id: &'a str, document: &'a str) -> StoreFuture<'a, ()>;

    /// The marks kept for `migration`.
    fn load_marks<'a>(&'a self, migration: &'a str) -> StoreFuture<'a, Vec<KeptMark>>;

    /// Keeps a table's mark for the next run.
    fn keep_mark<'a>(&'a self, migration: &'a str, mark: &'a KeptMark) -> StoreFuture<'a, ()>;
}
