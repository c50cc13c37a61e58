//! Run counters in Prometheus' text exposition format, folded from the
//! engine's [`Event`]s. Pure: the binary serves [`Metrics::render`] over
//! HTTP (`--metrics-addr`); an embedding program can serve it however it
//! likes.
//!
//! ```
//! use mssql_pg_migrate_transfer::events::Event;
//! use mssql_pg_migrate_transfer::metrics::Metrics;
//!
//! let mut metrics = Metrics::default();
//! metrics.apply(&Event::ChunkCommitted { table: "dbo.orders".into(), partition: 0, rows: 100, bytes: 4096 });
//! assert!(metrics.render().contains("mssql_pg_migrate_rows_total{table=\"dbo.orders\"} 100\n"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::events::Event;
use crate::report::TableStatus;

/// The counters of one table (or, for retries, of one step).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounters {
    pub rows: u64,
    pub bytes: u64,
    pub chunks: u64,
    pub retries: u64,
    pub outages: u64,
    pub errors: u64,
    pub estimated_rows: u64,
    /// 0 waiting or copying, 1 completed, 2 failed, 3 skipped.
    pub status: u8,
}

/// Everything the exposition shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub run_id: Option<String>,
    pub resumed: bool,
    pub tables: BTreeMap<String, TableCounters>,
    pub finalizing_steps: u64,
}

impl Metrics {
    /// Takes one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Started { run_id, resumed } => {
                self.run_id = Some(run_id.clone());
                self.resumed = *resumed;
            }
            Event::Planned { run_id, resumed, tables } => {
                self.run_id = Some(run_id.clone());
                self.resumed = *resumed;
                for t in tables {
                    let counters = self.tables.entry(t.source.clone()).or_default();
                    counters.estimated_rows = t.estimated_rows;
                    // A resumed run starts from what the interrupted one committed.
                    counters.rows = counters.rows.max(t.rows_done);
                }
            }
            Event::ChunkCommitted { table, rows, bytes, .. } => {
                let counters = self.tables.entry(table.clone()).or_default();
                counters.rows += rows;
                counters.bytes += bytes;
                counters.chunks += 1;
            }
            Event::TableFinished { table, status, .. } => {
                let counters = self.tables.entry(table.clone()).or_default();
                counters.status = match status {
                    TableStatus::Completed => 1,
                    TableStatus::Failed => 2,
                    TableStatus::Skipped => 3,
                };
                if *status == TableStatus::Failed {
                    counters.errors += 1;
                }
            }
            Event::Retrying { what, outage, .. } => {
                let counters = self.tables.entry(what.clone()).or_default();
                if *outage {
                    counters.outages += 1;
                } else {
                    counters.retries += 1;
                }
            }
            Event::Finalizing { .. } => self.finalizing_steps += 1,
            Event::Notes { .. } | Event::ChunkStarted { .. } => {}
        }
    }

    /// The text exposition (version 0.0.4), one family per counter, a
    /// series per table. Retries of a step that is not a table carry the
    /// step's name in `table`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(256 + self.tables.len() * 400);
        if let Some(run_id) = &self.run_id {
            family(&mut out, "run_info", "gauge", "The run being served (always 1).");
            let _ = writeln!(
                out,
                "mssql_pg_migrate_run_info{{run_id=\"{}\",resumed=\"{}\"}} 1",
                escape(run_id),
                self.resumed
            );
        }
        let series: [Family; 8] = [
            ("rows_total", "counter", "Rows committed to the target.", |c| c.rows),
            ("bytes_total", "counter", "Bytes of COPY data committed to the target.", |c| c.bytes),
            ("chunks_total", "counter", "Chunks committed to the target.", |c| c.chunks),
            ("retries_total", "counter", "Retries after a deadlock or throttling.", |c| c.retries),
            ("reconnects_total", "counter", "Reconnection attempts after a server went away.", |c| c.outages),
            ("errors_total", "counter", "Tables that failed.", |c| c.errors),
            ("estimated_rows", "gauge", "Rows the plan expects (the catalog's estimate).", |c| c.estimated_rows),
            ("table_status", "gauge", "0 waiting or copying, 1 completed, 2 failed, 3 skipped.", |c| {
                u64::from(c.status)
            }),
        ];
        for (name, kind, help, value) in series {
            family(&mut out, name, kind, help);
            for (table, counters) in &self.tables {
                let _ = writeln!(out, "mssql_pg_migrate_{name}{{table=\"{}\"}} {}", escape(table), value(counters));
            }
        }
        family(&mut out, "finalizing_steps_total", "counter", "Keys, indexes and constraints started.");
        let _ = writeln!(out, "mssql_pg_migrate_finalizing_steps_total {}", self.finalizing_steps);
        out
    }
}

/// A metric family: name, type, help, and the value of one table's series.
type Family = (&'static str, &'static str, &'static str, fn(&TableCounters) -> u64);

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP mssql_pg_migrate_{name} {help}");
    let _ = writeln!(out, "# TYPE mssql_pg_migrate_{name} {kind}");
}

/// A label value as the exposition format wants it: backslash, double
/// quote and line feed escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::PlannedTable;

    fn planned(source: &str, estimated_rows: u64, rows_done: u64) -> PlannedTable {
        PlannedTable { source: source.into(), target: source.into(), estimated_rows, partitions: 1, rows_done }
    }

    #[test]
    fn events_fold_into_per_table_series() {
        let mut m = Metrics::default();
        m.apply(&Event::Planned {
            run_id: "r-1".into(),
            resumed: true,
            tables: vec![planned("dbo.a", 10, 4), planned("dbo.b", 7, 0)],
        });
        m.apply(&Event::ChunkCommitted { table: "dbo.a".into(), partition: 0, rows: 6, bytes: 60 });
        m.apply(&Event::ChunkCommitted { table: "dbo.b".into(), partition: 0, rows: 3, bytes: 30 });
        m.apply(&Event::ChunkCommitted { table: "dbo.b".into(), partition: 1, rows: 4, bytes: 40 });
        let retry = |outage| Event::Retrying { what: "dbo.b".into(), attempt: 1, outage, error: "x".into() };
        m.apply(&retry(false));
        m.apply(&retry(true));
        m.apply(&retry(true));
        m.apply(&Event::TableFinished { table: "dbo.a".into(), status: TableStatus::Completed, error: None });
        m.apply(&Event::TableFinished { table: "dbo.b".into(), status: TableStatus::Failed, error: Some("e".into()) });
        m.apply(&Event::Finalizing { step: "primary key".into() });
        let text = m.render();
        for line in [
            "mssql_pg_migrate_run_info{run_id=\"r-1\",resumed=\"true\"} 1",
            "mssql_pg_migrate_rows_total{table=\"dbo.a\"} 10",
            "mssql_pg_migrate_rows_total{table=\"dbo.b\"} 7",
            "mssql_pg_migrate_bytes_total{table=\"dbo.b\"} 70",
            "mssql_pg_migrate_chunks_total{table=\"dbo.a\"} 1",
            "mssql_pg_migrate_chunks_total{table=\"dbo.b\"} 2",
            "mssql_pg_migrate_retries_total{table=\"dbo.b\"} 1",
            "mssql_pg_migrate_reconnects_total{table=\"dbo.b\"} 2",
            "mssql_pg_migrate_errors_total{table=\"dbo.a\"} 0",
            "mssql_pg_migrate_errors_total{table=\"dbo.b\"} 1",
            "mssql_pg_migrate_estimated_rows{table=\"dbo.a\"} 10",
            "mssql_pg_migrate_table_status{table=\"dbo.a\"} 1",
            "mssql_pg_migrate_table_status{table=\"dbo.b\"} 2",
            "mssql_pg_migrate_finalizing_steps_total 1",
            "# TYPE mssql_pg_migrate_rows_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<u64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut m = Metrics::default();
        m.apply(&Event::ChunkCommitted { table: "dbo.\"odd\\name\nx".into(), partition: 0, rows: 1, bytes: 1 });
        assert!(m.render().contains("mssql_pg_migrate_rows_total{table=\"dbo.\\\"odd\\\\name\\nx\"} 1\n"));
    }
}
