//! The terminal UI of mssql-pg-migrate (ratatui + crossterm).
//!
//! It runs or resumes a migration and shows, from the engine's typed events
//! (folded by `transfer::monitor`): per-table progress with rates and ETAs,
//! an overall throughput sparkline, a log pane, and an errors and fidelity
//! pane. Keys pause (no new chunks start), cancel gracefully, and quit.
//!
//! [`app`] (state and keys) and [`view`] (drawing) are pure, so they are
//! tested with ratatui's `TestBackend`; [`driver`] owns the terminal.
//!
//! ```
//! use mssql_pg_migrate_tui::app::{App, RunPhase};
//! use ratatui::{Terminal, backend::TestBackend};
//!
//! let app = App::new("sql1/Shop → pg1/shop");
//! let mut terminal = Terminal::new(TestBackend::new(80, 24))?;
//! terminal.draw(|frame| mssql_pg_migrate_tui::view::draw(frame, &app))?;
//! assert_eq!(app.phase, RunPhase::Running);
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod app;
pub mod driver;
pub mod view;

pub use driver::{LogBuffer, TuiError, run_interactive};
