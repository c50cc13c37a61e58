//! The run report: what moved, how fast, and everything that was not exact.

use mssql_pg_migrate_schema::target::Note;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    Completed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableReport {
    /// `schema.table` in the source.
    pub source: String,
    /// `schema.table` in the target.
    pub target: String,
    pub status: TableStatus,
    pub rows: u64,
    /// Bytes of binary COPY data written.
    pub bytes: u64,
    pub partitions: usize,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub mb_per_second: f64,
    pub error: Option<String>,
    pub notes: Vec<Note>,
    /// What the merges of an upsert run did with the rows read (absent in
    /// the other modes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged: Option<MergeCounts>,
}

/// Rows of an upsert run by what the merge did with them. A batch merged
/// again (a retry, or a resume redoing the batch in flight) is counted again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MergeCounts {
    /// New keys.
    pub inserted: u64,
    /// Existing keys with at least one column changed.
    pub updated: u64,
    /// Existing keys equal in every column: not written.
    pub unchanged: u64,
    /// Target rows whose key is gone from the source, deleted
    /// (`delete_missing`; 0 without it).
    pub deleted: u64,
    /// The change column's mark the rows were read from (an incremental
    /// read); absent when every row was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_since: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The run's id, as in its state.
    pub run_id: String,
    pub tables: Vec<TableReport>,
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub mb_per_second: f64,
    /// Finalization steps that failed (the data is in place; the object is not).
    pub finalization_errors: Vec<String>,
}

pub(crate) fn rate(amount: u64, seconds: f64) -> f64 {
    if seconds > 0.0 { amount as f64 / seconds } else { 0.0 }
}

impl RunReport {
    pub(crate) fn new(tables: Vec<TableReport>, seconds: f64, finalization_errors: Vec<String>) -> RunReport {
        let rows = tables.iter().map(|t| t.rows).sum();
        let bytes = tables.iter().map(|t| t.bytes).sum();
        RunReport {
            run_id: String::new(),
            tables,
            rows,
            bytes,
            seconds,
            rows_per_second: rate(rows, seconds),
            mb_per_second: rate(bytes, seconds) / 1e6,
            finalization_errors,
        }
    }

    /// Whether every table completed and every finalization step succeeded.
    pub fn is_success(&self) -> bool {
        self.finalization_errors.is_empty() && self.tables.iter().all(|t| t.status == TableStatus::Completed)
    }

    /// All notes of all tables.
    pub fn notes(&self) -> impl Iterator<Item = &Note> {
        self.tables.iter().flat_map(|t| t.notes.iter())
    }
}
