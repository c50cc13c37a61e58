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

/// How long a run asks for its migration's lock while another session
/// holds it, before it is refused: a run that has just ended (a `resume`
/// started the moment the last attempt exited) may hold it until the
/// server has seen its session close. Both targets' locks wait this long.
pub const MIGRATION_LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

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

    /// Drops the chunk rows of `table` in run `run_id`: its progress starts
    /// over (it is copied again), and rows of its old partitions must not
    /// be taken for the new ones' on a later load.
    fn forget_chunks<'a>(&'a self, run_id: &'a str, table: &'a str) -> StoreFuture<'a, ()>;

    /// Saves the run document of `migration`.
    fn save<'a>(&'a self, migration: &'a str, run_id: &'a str, document: &'a str) -> StoreFuture<'a, ()>;

    /// The marks kept for `migration`.
    fn load_marks<'a>(&'a self, migration: &'a str) -> StoreFuture<'a, Vec<KeptMark>>;

    /// Keeps a table's mark for the next run.
    fn keep_mark<'a>(&'a self, migration: &'a str, mark: &'a KeptMark) -> StoreFuture<'a, ()>;
}

/// A tag for table `schema.name` that stays the same across runs and
/// builds (FNV-1a: std's hasher is seeded per process), for the names of
/// the helper tables a target keeps per table.
pub fn table_tag(schema: &str, name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema.bytes().chain([0]).chain(name.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The table, in [`STATE_SCHEMA`], that collects the keys an upsert with
/// `delete_missing` read from the source for target table `schema.name`:
/// filled in each chunk's transaction (it must survive a crash as the
/// merged rows do), and dropped once the rows it lacks are deleted.
pub fn seen_keys_table(schema: &str, name: &str) -> String {
    format!("mssql_pg_migrate_seen_{}", table_tag(schema, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tables_tag_is_stable_and_tells_schema_from_name() {
        // Fixed, since stores of earlier runs are found by these names.
        assert_eq!(seen_keys_table("public", "orders"), "mssql_pg_migrate_seen_9890a9a460f15b91");
        assert_ne!(table_tag("ab", "c"), table_tag("a", "bc"));
        assert_eq!(table_tag("", "").len(), 16);
    }
}
