//! Progress while a run goes, from the library's events (never from log
//! text): JSON lines with `--progress`, a redrawn multi-line display when
//! stderr is a terminal, and otherwise a log line every few seconds.
//! Everything goes to stderr; stdout keeps the one JSON document.

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mssql_pg_migrate::transfer::monitor::{Monitor, Phase, Snapshot, TableProgress, count_text, eta_text};
use mssql_pg_migrate::transfer::{Event, EventSink};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--progress`: JSON lines on stderr.
    JsonLines,
    /// A live display on a terminal.
    Terminal,
    /// A log line now and then, for files and pipes.
    LogLines,
}

impl Mode {
    pub fn choose(progress_flag: bool) -> Mode {
        if progress_flag {
            Mode::JsonLines
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::LogLines
        }
    }

    fn period(self) -> Duration {
        match self {
            Mode::JsonLines => Duration::from_secs(1),
            Mode::Terminal => Duration::from_millis(250),
            Mode::LogLines => Duration::from_secs(10),
        }
    }
}

/// The shared fold of the run's events.
#[derive(Clone)]
pub struct Live {
    monitor: Arc<Mutex<Monitor>>,
}

impl Live {
    pub fn new() -> Live {
        Live { monitor: Arc::new(Mutex::new(Monitor::new(Instant::now()))) }
    }

    /// The sink the engine sends its events to.
    pub fn sink(&self) -> EventSink {
        let monitor = Arc::clone(&self.monitor);
        Arc::new(move |event: &Event| {
            if let Ok(mut m) = monitor.lock() {
                m.apply(event, Instant::now());
            }
        })
    }

    pub fn snapshot(&self) -> Option<Snapshot> {
        self.monitor.lock().ok().map(|m| m.snapshot(Instant::now()))
    }

    /// Shows progress every period until the returned guard is finished.
    pub fn start(&self, mode: Mode) -> Reporter {
        let live = self.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut drawn = 0;
            let mut ticks = tokio::time::interval(mode.period());
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = stopped.cancelled() => break,
                }
                if let Some(s) = live.snapshot()
                    && !s.tables.is_empty()
                {
                    drawn = show(mode, &s, drawn);
                }
            }
            // The last state, so the final numbers are on screen or in the stream.
            if let Some(s) = live.snapshot()
                && !s.tables.is_empty()
            {
                show(mode, &s, drawn);
            }
        });
        Reporter { stop, task }
    }
}

/// The running display; [`Reporter::finish`] draws the last frame.
pub struct Reporter {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Reporter {
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Shows one snapshot; returns the lines now on screen (terminal mode).
fn show(mode: Mode, s: &Snapshot, drawn: usize) -> usize {
    let mut err = std::io::stderr().lock();
    match mode {
        Mode::JsonLines => {
            for line in json_lines(s) {
                let _ = writeln!(err, "{line}");
            }
            0
        }
        Mode::Terminal => {
            let width = terminal_width();
            let frame = terminal_frame(s, width);
            // Back to the first line of the previous frame, then clear below.
            if drawn > 0 {
                let _ = write!(err, "\x1b[{drawn}F\x1b[J");
            }
            for line in &frame {
                let _ = writeln!(err, "{line}");
            }
            frame.len()
        }
        Mode::LogLines => {
            // In the engine's `run` span, so JSON records carry the run_id as
            // the engine's do (text records leave the span out).
            let span = tracing::info_span!("run", run_id = s.run_id.as_deref().unwrap_or(""));
            span.in_scope(|| tracing::info!("{}", overall_line(s)));
            0
        }
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&w| w >= 40).unwrap_or(100)
}

/// `--progress` lines: one per table being copied, then one for the run.
pub fn json_lines(s: &Snapshot) -> Vec<String> {
    let mut lines: Vec<String> = s
        .tables
        .iter()
        .filter(|t| t.phase == Phase::Copying)
        .map(|t| {
            serde_json::json!({
                "type": "table",
                "table": t.table,
                "rows_done": t.rows_done,
                // The data engineer's guide's name for it (its jq example).
                "rows_transferred": t.rows_done,
                "rows_total": t.rows_total,
                "bytes": t.bytes,
                "rows_per_second": round1(t.rows_per_second),
                "eta_seconds": t.eta_seconds.map(round1),
            })
            .to_string()
        })
        .collect();
    lines.push(
        serde_json::json!({
            "type": "run",
            "run_id": s.run_id,
            "elapsed_seconds": round1(s.elapsed_seconds),
            "rows_done": s.rows_done,
            "rows_transferred": s.rows_done,
            "rows_total": s.rows_total,
            "bytes": s.bytes,
            "rows_per_second": round1(s.rows_per_second),
            "eta_seconds": s.eta_seconds.map(round1),
            "tables_done": s.tables_done,
            "tables_total": s.tables_total,
            "finalizing": s.finalizing,
            "reconnecting": s.reconnecting,
        })
        .to_string(),
    );
    lines
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Most table rows the terminal display shows; the rest are summed up.
const SHOWN_TABLES: usize = 8;

/// The terminal display: a bar per table being copied, then the run.
pub fn terminal_frame(s: &Snapshot, width: usize) -> Vec<String> {
    let active: Vec<&TableProgress> = s.tables.iter().filter(|t| t.phase == Phase::Copying).collect();
    let mut lines: Vec<String> = active.iter().take(SHOWN_TABLES).map(|t| table_line(t, width)).collect();
    if active.len() > SHOWN_TABLES {
        lines.push(format!("  … and {} more table(s) in flight", active.len() - SHOWN_TABLES));
    }
    let failed = s.tables.iter().filter(|t| t.phase == Phase::Failed).count();
    let mut overall = overall_line(s);
    if failed > 0 {
        overall.push_str(&format!(", {failed} FAILED"));
    }
    lines.push(fit(&overall, width));
    lines
}

fn table_line(t: &TableProgress, width: usize) -> String {
    let fraction = if t.rows_total == 0 { 0.0 } else { t.rows_done as f64 / t.rows_total as f64 };
    let bar_width = 20;
    let filled = ((fraction * bar_width as f64).round() as usize).min(bar_width);
    let bar = format!("{}{}", "#".repeat(filled), "-".repeat(bar_width - filled));
    let tail = format!(
        " [{bar}] {:>3.0}% {}/{} rows {}/s ETA {}",
        fraction * 100.0,
        count_text(t.rows_done),
        count_text(t.rows_total),
        count_text(t.rows_per_second as u64),
        eta_text(t.eta_seconds)
    );
    let room = width.saturating_sub(tail.chars().count()).max(10);
    let name: String = if t.table.chars().count() > room {
        let kept: String = t.table.chars().take(room.saturating_sub(1)).collect();
        format!("{kept}…")
    } else {
        format!("{:<room$}", t.table)
    };
    fit(&format!("{name}{tail}"), width)
}

/// One line for the whole run, as the log lines and the display's footer say it.
pub fn overall_line(s: &Snapshot) -> String {
    let mut line = format!(
        "progress: {}/{} tables, {}/{} rows, {:.1} MB, {}/s, ETA {}",
        s.tables_done,
        s.tables_total,
        count_text(s.rows_done),
        count_text(s.rows_total),
        s.bytes as f64 / 1e6,
        count_text(s.rows_per_second as u64),
        eta_text(s.eta_seconds)
    );
    if let Some(step) = &s.finalizing {
        line.push_str(&format!("; finalizing: {step}"));
    }
    if let Some(what) = &s.reconnecting {
        line.push_str(&format!("; reconnecting: {what}"));
    }
    line
}

fn fit(line: &str, width: usize) -> String {
    if line.chars().count() <= width { line.to_owned() } else { line.chars().take(width).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, phase: Phase, done: u64, total: u64) -> TableProgress {
        TableProgress {
            table: name.into(),
            target: format!("t.{name}"),
            phase,
            rows_done: done,
            rows_total: total,
            bytes: done * 100,
            rows_per_second: 2500.0,
            eta_seconds: Some(((total - done) / 2500) as f64),
            error: None,
        }
    }

    fn snapshot(tables: Vec<TableProgress>) -> Snapshot {
        Snapshot {
            run_id: Some("run-7".into()),
            elapsed_seconds: 12.34,
            rows_done: tables.iter().map(|t| t.rows_done).sum(),
            rows_total: tables.iter().map(|t| t.rows_total).sum(),
            bytes: tables.iter().map(|t| t.bytes).sum(),
            rows_per_second: 5000.0,
            eta_seconds: Some(125.0),
            tables_done: tables.iter().filter(|t| t.phase == Phase::Completed).count(),
            tables_total: tables.len(),
            finalizing: None,
            reconnecting: None,
            tables,
        }
    }

    #[test]
    fn progress_lines_name_each_active_table_then_the_run() {
        let s = snapshot(vec![
            table("dbo.Users", Phase::Copying, 5000, 20000),
            table("dbo.Posts", Phase::Completed, 100, 100),
            table("dbo.Votes", Phase::Waiting, 0, 50),
        ]);
        let lines: Vec<serde_json::Value> = json_lines(&s).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["type"], "table");
        assert_eq!(lines[0]["table"], "dbo.Users");
        assert_eq!((lines[0]["rows_done"].as_u64(), lines[0]["rows_total"].as_u64()), (Some(5000), Some(20000)));
        assert_eq!(lines[0]["bytes"], 500_000);
        assert_eq!(lines[0]["rows_per_second"], 2500.0);
        assert_eq!(lines[0]["eta_seconds"], 6.0);
        assert_eq!(lines[1]["type"], "run");
        assert_eq!(lines[1]["run_id"], "run-7");
        assert_eq!((lines[1]["rows_done"].as_u64(), lines[1]["rows_total"].as_u64()), (Some(5100), Some(20150)));
        assert_eq!((lines[1]["tables_done"].as_u64(), lines[1]["tables_total"].as_u64()), (Some(1), Some(3)));
        assert_eq!(lines[1]["elapsed_seconds"], 12.3);
    }

    #[test]
    fn the_terminal_frame_has_a_bar_per_active_table_within_the_width() {
        let s = snapshot(vec![
            table("dbo.Users", Phase::Copying, 5000, 20000),
            table("dbo.AVeryLongTableNameThatWillNotFitIntoTheNameColumnAtAll", Phase::Copying, 10, 20),
            table("dbo.Posts", Phase::Failed, 0, 10),
        ]);
        let frame = terminal_frame(&s, 80);
        assert_eq!(frame.len(), 3, "{frame:#?}");
        assert!(frame[0].starts_with("dbo.Users "), "{}", frame[0]);
        assert!(frame[0].contains("[#####---------------]  25% 5.0k/20.0k rows 2.5k/s ETA 6s"), "{}", frame[0]);
        assert!(frame[1].contains('…') && frame[1].contains(" 50% "), "{}", frame[1]);
        assert_eq!(frame[2], "progress: 0/3 tables, 5.0k/20.0k rows, 0.5 MB, 5.0k/s, ETA 2m05s, 1 FAILED");
        assert!(frame.iter().all(|l| l.chars().count() <= 80), "{frame:#?}");
    }
}
