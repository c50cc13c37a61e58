//! Live progress from the event stream: [`Monitor`] folds [`Event`]s into
//! per-table counts, and [`Monitor::snapshot`] turns them into rates and
//! ETAs at a given instant. Pure (time is passed in), so the CLI's progress
//! lines, its terminal display and the TUI read the same numbers, and tests
//! need no clock.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use mssql_pg_migrate_transfer::monitor::Monitor;
//! use mssql_pg_migrate_transfer::{Event, PlannedTable};
//!
//! let start = Instant::now();
//! let mut monitor = Monitor::new(start);
//! monitor.apply(&Event::Planned {
//!     run_id: "r".into(),
//!     resumed: false,
//!     tables: vec![PlannedTable {
//!         source: "dbo.Users".into(),
//!         target: "public.users".into(),
//!         estimated_rows: 1000,
//!         partitions: 1,
//!         rows_done: 0,
//!     }],
//! }, start);
//! monitor.apply(&Event::ChunkCommitted { table: "dbo.Users".into(), partition: 0, rows: 250, bytes: 9000 }, start);
//! let now = start + Duration::from_secs(5);
//! let snapshot = monitor.snapshot(now);
//! assert_eq!(snapshot.rows_done, 250);
//! assert_eq!(snapshot.rows_per_second, 50.0);
//! assert_eq!(snapshot.eta_seconds, Some(15.0));
//! ```

use std::time::Instant;

use serde::Serialize;

use crate::events::Event;
use crate::report::TableStatus;

/// Where a table stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Waiting,
    Copying,
    Completed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone)]
struct Table {
    source: String,
    target: String,
    rows_total: u64,
    rows_done: u64,
    /// Rows committed by an earlier run this one resumes (not part of this run's rate).
    rows_before: u64,
    bytes: u64,
    phase: Phase,
    started: Option<Instant>,
    finished: Option<Instant>,
    error: Option<String>,
}

/// One table at an instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableProgress {
    pub table: String,
    pub target: String,
    pub phase: Phase,
    pub rows_done: u64,
    /// The planner's estimate, raised to the rows done once they exceed it.
    pub rows_total: u64,
    pub bytes: u64,
    pub rows_per_second: f64,
    pub eta_seconds: Option<f64>,
    pub error: Option<String>,
}

/// The whole run at an instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub run_id: Option<String>,
    pub elapsed_seconds: f64,
    pub rows_done: u64,
    pub rows_total: u64,
    pub bytes: u64,
    pub rows_per_second: f64,
    pub eta_seconds: Option<f64>,
    pub tables_done: usize,
    pub tables_total: usize,
    /// The finalization step under way, once copying is over.
    pub finalizing: Option<String>,
    /// A server went away and is being reconnected to: what waits for it
    /// and the attempt, until work goes on.
    pub reconnecting: Option<String>,
    pub tables: Vec<TableProgress>,
}

/// Folds a run's events; see the module docs.
#[derive(Debug, Clone)]
pub struct Monitor {
    started: Instant,
    run_id: Option<String>,
    tables: Vec<Table>,
    finalizing: Option<String>,
    reconnecting: Option<String>,
}

impl Monitor {
    pub fn new(started: Instant) -> Monitor {
        Monitor { started, run_id: None, tables: Vec::new(), finalizing: None, reconnecting: None }
    }

    /// Takes one event that happened at `at`.
    pub fn apply(&mut self, event: &Event, at: Instant) {
        match event {
            Event::Started { run_id, .. } => self.run_id = Some(run_id.clone()),
            Event::Planned { run_id, tables, .. } => {
                self.run_id = Some(run_id.clone());
                self.tables = tables
                    .iter()
                    .map(|t| Table {
                        source: t.source.clone(),
                        target: t.target.clone(),
                        rows_total: t.estimated_rows.max(t.rows_done),
                        rows_done: t.rows_done,
                        rows_before: t.rows_done,
                        bytes: 0,
                        phase: Phase::Waiting,
                        started: None,
                        finished: None,
                        error: None,
                    })
                    .collect();
            }
            Event::ChunkStarted { table, .. } => {
                if let Some(t) = self.table(table)
                    && t.phase == Phase::Waiting
                {
                    t.phase = Phase::Copying;
                    t.started = Some(at);
                }
            }
            Event::ChunkCommitted { table, rows, bytes, .. } => {
                self.reconnecting = None;
                if let Some(t) = self.table(table) {
                    t.rows_done += rows;
                    t.bytes += bytes;
                    t.rows_total = t.rows_total.max(t.rows_done);
                    t.started.get_or_insert(at);
                    if t.phase == Phase::Waiting {
                        t.phase = Phase::Copying;
                    }
                }
            }
            Event::TableFinished { table, status, error } => {
                if let Some(t) = self.table(table) {
                    t.phase = match status {
                        TableStatus::Completed => Phase::Completed,
                        TableStatus::Failed => Phase::Failed,
                        TableStatus::Skipped => Phase::Skipped,
                    };
                    if t.phase == Phase::Completed {
                        // The estimate is only an estimate; the count is now known.
                        t.rows_total = t.rows_done;
                    }
                    t.finished = Some(at);
                    t.error.clone_from(error);
                }
            }
            Event::Finalizing { step } => {
                self.reconnecting = None;
                self.finalizing = Some(step.clone());
            }
            Event::Retrying { what, attempt, outage: true, .. } => {
                self.reconnecting = Some(format!("{what} (attempt {attempt})"));
            }
            // Other retries are counted by `metrics`; the log has their warning.
            Event::Notes { .. } | Event::Retrying { .. } => {}
        }
    }

    fn table(&mut self, source: &str) -> Option<&mut Table> {
        self.tables.iter_mut().find(|t| t.source == source)
    }

    /// Rates and ETAs as of `now`. Rates count only this run's rows, so a
    /// resumed run does not look faster than it is.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let elapsed = now.saturating_duration_since(self.started).as_secs_f64();
        let tables: Vec<TableProgress> = self
            .tables
            .iter()
            .map(|t| {
                let seconds = match t.started {
                    Some(s) => t.finished.unwrap_or(now).saturating_duration_since(s).as_secs_f64(),
                    None => 0.0,
                };
                let rate = per_second(t.rows_done - t.rows_before, seconds);
                let eta = match t.phase {
                    Phase::Copying => eta(t.rows_total.saturating_sub(t.rows_done), rate),
                    Phase::Waiting => None,
                    Phase::Completed | Phase::Failed | Phase::Skipped => Some(0.0),
                };
                TableProgress {
                    table: t.source.clone(),
                    target: t.target.clone(),
                    phase: t.phase,
                    rows_done: t.rows_done,
                    rows_total: t.rows_total,
                    bytes: t.bytes,
                    rows_per_second: rate,
                    eta_seconds: eta,
                    error: t.error.clone(),
                }
            })
            .collect();
        let rows_done: u64 = tables.iter().map(|t| t.rows_done).sum();
        let rows_before: u64 = self.tables.iter().map(|t| t.rows_before).sum();
        let rows_total: u64 = tables.iter().map(|t| t.rows_total).sum();
        let rate = per_second(rows_done - rows_before, elapsed);
        let tables_done = tables.iter().filter(|t| t.phase != Phase::Waiting && t.phase != Phase::Copying).count();
        Snapshot {
            run_id: self.run_id.clone(),
            elapsed_seconds: elapsed,
            rows_done,
            rows_total,
            bytes: tables.iter().map(|t| t.bytes).sum(),
            rows_per_second: rate,
            eta_seconds: if tables_done == tables.len() && !tables.is_empty() {
                Some(0.0)
            } else {
                eta(rows_total.saturating_sub(rows_done), rate)
            },
            tables_done,
            tables_total: tables.len(),
            finalizing: self.finalizing.clone(),
            reconnecting: self.reconnecting.clone(),
            tables,
        }
    }
}

/// A count at a glance: 1234 → "1.2k", 5_600_000 → "5.6M".
pub fn count_text(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// A duration at a glance: "7s", "2m05s", "1h02m"; "?" when unknown.
pub fn eta_text(seconds: Option<f64>) -> String {
    match seconds {
        None => "?".to_owned(),
        Some(s) if s < 60.0 => format!("{s:.0}s"),
        Some(s) if s < 3600.0 => format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64),
        Some(s) => format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64),
    }
}

fn per_second(amount: u64, seconds: f64) -> f64 {
    if seconds > 0.0 { amount as f64 / seconds } else { 0.0 }
}

fn eta(remaining: u64, rate: f64) -> Option<f64> {
    if remaining == 0 {
        Some(0.0)
    } else if rate > 0.0 {
        Some(remaining as f64 / rate)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::events::PlannedTable;

    fn planned(tables: &[(&str, u64, u64)]) -> Event {
        Event::Planned {
            run_id: "run-1".into(),
            resumed: false,
            tables: tables
                .iter()
                .map(|&(name, estimated_rows, rows_done)| PlannedTable {
                    source: name.into(),
                    target: format!("t.{name}"),
                    estimated_rows,
                    partitions: 1,
                    rows_done,
                })
                .collect(),
        }
    }

    fn committed(table: &str, rows: u64) -> Event {
        Event::ChunkCommitted { table: table.into(), partition: 0, rows, bytes: rows * 10 }
    }

    #[test]
    fn counts_and_durations_read_at_a_glance() {
        assert_eq!(count_text(999), "999");
        assert_eq!(count_text(1234), "1.2k");
        assert_eq!(count_text(5_600_000), "5.6M");
        assert_eq!(eta_text(None), "?");
        assert_eq!(eta_text(Some(7.2)), "7s");
        assert_eq!(eta_text(Some(125.0)), "2m05s");
        assert_eq!(eta_text(Some(3725.0)), "1h02m");
    }

    #[test]
    fn rates_and_etas_follow_the_committed_rows() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut m = Monitor::new(t0);
        m.apply(&planned(&[("a", 1000, 0), ("b", 500, 0)]), t0);
        m.apply(&Event::ChunkStarted { table: "a".into(), partition: 0 }, at(0));
        m.apply(&committed("a", 400), at(2));
        let s = m.snapshot(at(4));
        let a = &s.tables[0];
        assert_eq!((a.phase, a.rows_done, a.rows_total, a.bytes), (Phase::Copying, 400, 1000, 4000));
        assert_eq!(a.rows_per_second, 100.0);
        assert_eq!(a.eta_seconds, Some(6.0));
        assert_eq!((s.tables[1].phase, s.tables[1].eta_seconds), (Phase::Waiting, None));
        assert_eq!((s.rows_done, s.rows_total, s.tables_done, s.tables_total), (400, 1500, 0, 2));
        assert_eq!(s.rows_per_second, 100.0);
        assert_eq!(s.eta_seconds, Some(11.0));
        assert_eq!(s.run_id.as_deref(), Some("run-1"));
    }

    #[test]
    fn a_finished_table_has_its_true_count_and_an_unknown_table_is_ignored() {
        let t0 = Instant::now();
        let mut m = Monitor::new(t0);
        m.apply(&planned(&[("a", 1000, 0)]), t0);
        m.apply(&Event::ChunkStarted { table: "a".into(), partition: 0 }, t0);
        m.apply(&committed("a", 1200), t0 + Duration::from_secs(1));
        assert_eq!(m.snapshot(t0 + Duration::from_secs(1)).tables[0].rows_total, 1200, "estimate was low");
        m.apply(&committed("nobody", 5), t0);
        m.apply(
            &Event::TableFinished { table: "a".into(), status: TableStatus::Completed, error: None },
            t0 + Duration::from_secs(2),
        );
        let s = m.snapshot(t0 + Duration::from_secs(10));
        assert_eq!((s.tables[0].phase, s.tables[0].rows_total), (Phase::Completed, 1200));
        assert_eq!(s.tables[0].rows_per_second, 1200.0 / 2.0, "the rate stops with the table");
        assert_eq!((s.tables_done, s.eta_seconds), (1, Some(0.0)));
    }

    #[test]
    fn an_outage_shows_until_a_chunk_commits_and_plain_retries_do_not() {
        let t0 = Instant::now();
        let mut m = Monitor::new(t0);
        m.apply(&planned(&[("a", 1000, 0)]), t0);
        let retry = |attempt, outage| Event::Retrying { what: "a".into(), attempt, outage, error: "e".into() };
        m.apply(&retry(1, false), t0);
        assert_eq!(m.snapshot(t0).reconnecting, None, "a deadlock retried is no outage");
        m.apply(&retry(2, true), t0);
        assert_eq!(m.snapshot(t0).reconnecting.as_deref(), Some("a (attempt 2)"));
        m.apply(&committed("a", 10), t0 + Duration::from_secs(1));
        assert_eq!(m.snapshot(t0).reconnecting, None);
    }

    #[test]
    fn rows_of_the_resumed_run_do_not_inflate_the_rate() {
        let t0 = Instant::now();
        let mut m = Monitor::new(t0);
        m.apply(&planned(&[("a", 1000, 900)]), t0);
        m.apply(&committed("a", 50), t0 + Duration::from_secs(1));
        let s = m.snapshot(t0 + Duration::from_secs(5));
        assert_eq!(s.rows_done, 950);
        assert_eq!(s.rows_per_second, 10.0);
        assert_eq!(s.eta_seconds, Some(5.0));
        let failed =
            Event::TableFinished { table: "a".into(), status: TableStatus::Failed, error: Some("boom".into()) };
        m.apply(&failed, t0 + Duration::from_secs(6));
        let s = m.snapshot(t0 + Duration::from_secs(6));
        assert_eq!((s.tables[0].phase, s.tables[0].error.as_deref()), (Phase::Failed, Some("boom")));
    }
}
