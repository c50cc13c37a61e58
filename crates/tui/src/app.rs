//! The TUI's state and its key handling. Pure: the driver feeds it
//! snapshots, events, log lines and keys; the view draws it.

use std::collections::VecDeque;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mssql_pg_migrate_transfer::Event;
use mssql_pg_migrate_transfer::monitor::Snapshot;
use mssql_pg_migrate_transfer::report::TableStatus;

/// Throughput samples kept for the sparkline (one per tick).
const HISTORY: usize = 240;
/// Log lines kept for the log pane.
const LOG_LINES: usize = 500;

/// Where the run is, as the header shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPhase {
    Running,
    Paused,
    /// Cancel requested: no new chunks; chunks in flight finish.
    Stopping,
    Finished {
        success: bool,
        summary: String,
    },
}

/// What a key asks the driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    /// Stop gracefully (as SIGINT does).
    Cancel,
    /// Abandon chunks in flight (a second quit while stopping).
    Abort,
    /// Leave the TUI.
    Quit,
}

/// One line of the errors and fidelity pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub error: bool,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct App {
    /// `source → target`, for the header.
    pub title: String,
    pub phase: RunPhase,
    pub snapshot: Option<Snapshot>,
    /// Rows per second, one sample per tick, oldest first.
    pub throughput: VecDeque<u64>,
    pub logs: VecDeque<String>,
    pub problems: Vec<Problem>,
    /// First table row shown (the list scrolls with the arrow keys).
    pub scroll: usize,
    /// Quit once the run has stopped.
    pub quit_when_stopped: bool,
    last_sample: Option<(Instant, u64)>,
}

impl App {
    pub fn new(title: impl Into<String>) -> App {
        App {
            title: title.into(),
            phase: RunPhase::Running,
            snapshot: None,
            throughput: VecDeque::with_capacity(HISTORY),
            logs: VecDeque::with_capacity(LOG_LINES),
            problems: Vec::new(),
            scroll: 0,
            quit_when_stopped: false,
            last_sample: None,
        }
    }

    /// Takes the latest snapshot, sampling the rate since the last one.
    pub fn on_tick(&mut self, snapshot: Snapshot, now: Instant) {
        if let Some((at, rows)) = self.last_sample {
            let seconds = now.saturating_duration_since(at).as_secs_f64();
            if seconds > 0.0 {
                let rate = snapshot.rows_done.saturating_sub(rows) as f64 / seconds;
                if self.throughput.len() == HISTORY {
                    self.throughput.pop_front();
                }
                self.throughput.push_back(rate as u64);
            }
        }
        self.last_sample = Some((now, snapshot.rows_done));
        self.snapshot = Some(snapshot);
    }

    /// Collects what the errors and fidelity pane shows.
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::Notes { notes, .. } => {
                for n in notes {
                    let column = n.column.as_deref().map(|c| format!(".{c}")).unwrap_or_default();
                    self.problems.push(Problem {
                        error: false,
                        text: format!("{:?} {}{column}: {}", n.verdict, n.table, n.message).to_lowercase_first(),
                    });
                }
            }
            Event::TableFinished { table, status: TableStatus::Failed, error } => {
                let why = error.as_deref().unwrap_or("failed");
                // Errors go before the notes: they are what needs action.
                let at = self.problems.iter().take_while(|p| p.error).count();
                self.problems.insert(at, Problem { error: true, text: format!("{table}: {why}") });
            }
            _ => {}
        }
    }

    pub fn on_log(&mut self, line: String) {
        if self.logs.len() == LOG_LINES {
            self.logs.pop_front();
        }
        self.logs.push_back(line);
    }

    /// The run ended (`summary` says how).
    pub fn finish(&mut self, success: bool, summary: impl Into<String>) {
        self.phase = RunPhase::Finished { success, summary: summary.into() };
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, RunPhase::Finished { .. })
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        let quit = matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL));
        if quit {
            return match self.phase {
                RunPhase::Finished { .. } => Some(Command::Quit),
                RunPhase::Stopping if self.quit_when_stopped => Some(Command::Abort),
                RunPhase::Stopping => {
                    self.quit_when_stopped = true;
                    None
                }
                RunPhase::Running | RunPhase::Paused => {
                    self.quit_when_stopped = true;
                    self.phase = RunPhase::Stopping;
                    Some(Command::Cancel)
                }
            };
        }
        match key.code {
            KeyCode::Char('p' | ' ') => match self.phase {
                RunPhase::Running => {
                    self.phase = RunPhase::Paused;
                    Some(Command::Pause)
                }
                RunPhase::Paused => {
                    self.phase = RunPhase::Running;
                    Some(Command::Resume)
                }
                _ => None,
            },
            KeyCode::Char('c') => match self.phase {
                RunPhase::Running | RunPhase::Paused => {
                    self.phase = RunPhase::Stopping;
                    Some(Command::Cancel)
                }
                _ => None,
            },
            KeyCode::Down | KeyCode::Char('j') => {
                let tables = self.snapshot.as_ref().map_or(0, |s| s.tables.len());
                self.scroll = (self.scroll + 1).min(tables.saturating_sub(1));
                None
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.scroll = self.scroll.saturating_sub(1);
                None
            }
            _ => None,
        }
    }
}

trait LowercaseFirst {
    fn to_lowercase_first(self) -> String;
}

impl LowercaseFirst for String {
    /// `Widened dbo.t...` → `widened dbo.t...`: verdicts read as words.
    fn to_lowercase_first(self) -> String {
        let mut chars = self.chars();
        match chars.next() {
            Some(first) => first.to_lowercase().chain(chars).collect(),
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyEventKind;

    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: crossterm::event::KeyEventState::NONE,
        }
    }

    #[test]
    fn keys_pause_resume_cancel_and_quit_in_order() {
        let mut app = App::new("a → b");
        assert_eq!(app.on_key(key(KeyCode::Char('p'))), Some(Command::Pause));
        assert_eq!(app.phase, RunPhase::Paused);
        assert_eq!(app.on_key(key(KeyCode::Char(' '))), Some(Command::Resume));
        assert_eq!(app.on_key(key(KeyCode::Char('c'))), Some(Command::Cancel));
        assert_eq!(app.phase, RunPhase::Stopping);
        assert_eq!(app.on_key(key(KeyCode::Char('p'))), None, "a stopping run cannot be paused");
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), None, "the first quit waits for the stop");
        assert!(app.quit_when_stopped);
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Some(Command::Abort), "the second does not wait");
        app.finish(false, "cancelled");
        assert_eq!(app.on_key(key(KeyCode::Esc)), Some(Command::Quit));
    }

    #[test]
    fn quitting_a_running_run_cancels_it_first() {
        let mut app = App::new("a → b");
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Some(Command::Cancel));
        assert_eq!(app.phase, RunPhase::Stopping);
        assert!(app.quit_when_stopped);
    }

    #[test]
    fn failures_come_before_fidelity_notes() {
        use mssql_pg_migrate_transfer::Event;
        let mut app = App::new("a → b");
        let note = mssql_pg_migrate_schema::target::Note {
            kind: mssql_pg_migrate_schema::target::NoteKind::Fidelity,
            table: "dbo.t".into(),
            column: Some("c".into()),
            verdict: mssql_pg_migrate_typemap::Verdict::Lossy,
            message: "datetimeoffset loses its offset".into(),
        };
        app.on_event(&Event::Notes { table: "dbo.t".into(), notes: vec![note] });
        app.on_event(&Event::TableFinished {
            table: "dbo.u".into(),
            status: TableStatus::Failed,
            error: Some("permission denied".into()),
        });
        assert_eq!(app.problems[0], Problem { error: true, text: "dbo.u: permission denied".into() });
        assert!(!app.problems[1].error);
        assert!(app.problems[1].text.starts_with("lossy dbo.t.c: "), "{}", app.problems[1].text);
    }
}
