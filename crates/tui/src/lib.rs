//! The terminal UI of mssql-pg-migrate (ratatui + crossterm).
//!
//! It will render the engine's event stream: per-table progress, an overall
//! throughput sparkline, logs, and the errors and fidelity notes of a run,
//! with keys to pause, cancel and quit. The event stream it consumes is
//! built together with the transfer engine; until then this crate exports
//! nothing, and the CLI has no `tui` command, rather than offering one that
//! does not work.
