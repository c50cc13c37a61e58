//! Typed events the engine emits as a run goes, for progress displays and
//! embedding programs. They are per table and per chunk, never per row.

use std::sync::Arc;

use mssql_pg_migrate_schema::target::Note;

use crate::report::TableStatus;

/// One table as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTable {
    /// `schema.table` in the source.
    pub source: String,
    /// `schema.table` in the target.
    pub target: String,
    pub estimated_rows: u64,
    pub partitions: usize,
    /// Rows already committed by an interrupted run this one resumes.
    pub rows_done: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The run's state is saved under `run_id` (new, or the resumed one);
    /// from here on an interrupted run can be resumed.
    Started { run_id: String, resumed: bool },
    /// The run has a state (`run_id`) and knows which tables it copies.
    Planned { run_id: String, resumed: bool, tables: Vec<PlannedTable> },
    /// Conversions of one table that are not exact, and objects not carried
    /// over; sent once per table after planning, before any data moves.
    Notes { table: String, notes: Vec<Note> },
    /// A chunk's read and COPY are starting.
    ChunkStarted { table: String, partition: usize },
    /// A chunk is in the target.
    ChunkCommitted { table: String, partition: usize, rows: u64, bytes: u64 },
    /// A table's data is complete, or it failed.
    TableFinished { table: String, status: TableStatus, error: Option<String> },
    /// A finalization step (key, index, constraint) is starting.
    Finalizing { step: String },
    /// Work failed in a way that may pass and is tried again: `what` is
    /// the table (`schema.table` in the source) or the step it was doing;
    /// `outage` when a server went away (waited out up to
    /// `reconnect_timeout`), else a deadlock or throttling (up to
    /// `max_retries`). `attempt` counts from 1.
    Retrying { what: String, attempt: u32, outage: bool, error: String },
}

/// Receives events; called on the engine's tasks, so it must be quick.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// Hands `event` to `sink`, if there is one.
pub(crate) fn emit(sink: Option<&EventSink>, event: Event) {
    if let Some(sink) = sink {
        sink(&event);
    }
}
