//! The interactive loop: the terminal (crossterm), the run, and the app
//! state between them. Log records are captured into a [`LogBuffer`]
//! instead of stderr, which the screen owns while the TUI is up.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event as TermEvent, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use mssql_pg_migrate_config::Config;
use mssql_pg_migrate_transfer::monitor::Monitor;
use mssql_pg_migrate_transfer::{Event, RunOptions, RunReport, TransferError};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::app::{App, Command};
use crate::view::draw;

/// How often the screen is redrawn and keys are read.
const TICK: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Log lines written by `tracing` while the TUI owns the screen.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl LogBuffer {
    /// Takes the lines written since the last call.
    pub fn drain(&self) -> Vec<String> {
        self.lines.lock().map(|mut l| l.drain(..).collect()).unwrap_or_default()
    }
}

/// One log record being written.
#[derive(Debug)]
pub struct LogWriter {
    lines: Arc<Mutex<VecDeque<String>>>,
    pending: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.pending);
        if let Ok(mut lines) = self.lines.lock() {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                // Bounded: a run that logs a lot while nobody draws keeps the newest.
                if lines.len() >= 1000 {
                    lines.pop_front();
                }
                lines.push_back(line.to_owned());
            }
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter { lines: Arc::clone(&self.lines), pending: Vec::new() }
    }
}

/// Puts the terminal back however the TUI ends (error, panic, return).
struct Screen;

impl Screen {
    fn enter() -> Result<Screen, TuiError> {
        enable_raw_mode()?;
        let screen = Screen;
        execute!(std::io::stderr(), EnterAlternateScreen)?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(std::io::stderr(), LeaveAlternateScreen);
        let _ = disable_raw_mode();
    }
}

/// Runs (or, with `options.resume`, resumes) the migration under the TUI
/// until the user quits. Returns what the run returned; `Ok(None)` when
/// the user left before it ended (it was cancelled and had stopped).
///
/// # Errors
/// Only terminal failures; the run's own outcome is the inner result.
pub async fn run_interactive(
    config: &Config,
    mut options: RunOptions,
    title: String,
    logs: LogBuffer,
) -> Result<Result<RunReport, TransferError>, TuiError> {
    let app = Arc::new(Mutex::new(App::new(title)));
    let monitor = Arc::new(Mutex::new(Monitor::new(Instant::now())));
    let chained = options.events.clone();
    options.events = Some({
        let (app, monitor) = (Arc::clone(&app), Arc::clone(&monitor));
        Arc::new(move |event: &Event| {
            if let Ok(mut m) = monitor.lock() {
                m.apply(event, Instant::now());
            }
            if let Ok(mut a) = app.lock() {
                a.on_event(event);
            }
            if let Some(next) = &chained {
                next(event);
            }
        })
    });
    let (cancel, abort, pause) = (options.cancel.clone(), options.abort.clone(), options.pause.clone());

    let screen = Screen::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stderr()))?;
    terminal.clear()?;
    let run = mssql_pg_migrate_transfer::run(config, &options);
    tokio::pin!(run);
    let mut outcome: Option<Result<RunReport, TransferError>> = None;
    let mut ticks = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            result = &mut run, if outcome.is_none() => {
                let (success, summary) = summary(&result);
                if let Ok(mut a) = app.lock() {
                    a.finish(success, summary);
                }
                outcome = Some(result);
            }
            _ = ticks.tick() => {}
        }
        let mut quit = false;
        {
            let Ok(mut a) = app.lock() else { break };
            if let Ok(m) = monitor.lock() {
                a.on_tick(m.snapshot(Instant::now()), Instant::now());
            }
            for line in logs.drain() {
                a.on_log(line);
            }
            while event::poll(Duration::ZERO)? {
                match event::read()? {
                    TermEvent::Key(key) if key.kind != KeyEventKind::Release => match a.on_key(key) {
                        Some(Command::Pause) => pause.pause(),
                        Some(Command::Resume) => pause.resume(),
                        Some(Command::Cancel) => cancel.cancel(),
                        Some(Command::Abort) => {
                            cancel.cancel();
                            abort.cancel();
                        }
                        Some(Command::Quit) => quit = true,
                        None => {}
                    },
                    // Drawn at once at the new size; ratatui resizes its buffers on draw.
                    TermEvent::Resize(..) => terminal.autoresize()?,
                    _ => {}
                }
            }
            if a.is_finished() && a.quit_when_stopped {
                quit = true;
            }
            terminal.draw(|f| draw(f, &a))?;
        }
        if quit {
            break;
        }
    }
    drop(terminal);
    drop(screen);
    match outcome {
        Some(result) => Ok(result),
        // Unreachable in practice: quitting before the end cancels and waits.
        None => Ok(run.await),
    }
}

fn summary(result: &Result<RunReport, TransferError>) -> (bool, String) {
    match result {
        Ok(report) if report.is_success() => (
            true,
            format!("done: {} rows in {:.1} s ({:.0} rows/s)", report.rows, report.seconds, report.rows_per_second),
        ),
        Ok(report) => {
            let failed = report.tables.iter().filter(|t| t.error.is_some()).count();
            (false, format!("{failed} table(s) failed, {} finalization error(s)", report.finalization_errors.len()))
        }
        Err(TransferError::Cancelled) => (false, "cancelled; the state is saved, `resume` continues".to_owned()),
        Err(e) => (false, format!("failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::fmt::MakeWriter as _;

    use super::*;

    #[test]
    fn log_records_become_lines_in_order_and_the_buffer_stays_bounded() {
        let logs = LogBuffer::default();
        for i in 0..1005 {
            let mut w = logs.make_writer();
            write!(w, "line {i}\n\n").unwrap();
        }
        let lines = logs.drain();
        assert_eq!(lines.len(), 1000);
        assert_eq!((lines[0].as_str(), lines[999].as_str()), ("line 5", "line 1004"));
        assert!(logs.drain().is_empty(), "drained");
    }

    #[test]
    fn the_summary_says_how_the_run_ended() {
        let (ok, text) = summary(&Err(TransferError::Cancelled));
        assert!(!ok && text.contains("`resume` continues"), "{text}");
        let (ok, text) = summary(&Err(TransferError::Config("bad".into())));
        assert!(!ok && text == "failed: bad", "{text}");
    }
}
