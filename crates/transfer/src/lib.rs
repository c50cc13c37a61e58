//! The transfer engine of mssql-pg-migrate.
//!
//! The engine plans chunks by key range, reads them in parallel with keyset
//! paging, and streams the encoded rows through parallel writers within a
//! memory budget ([`run`]); it keeps the run state, retries and reconnects,
//! reports events, validates and repairs. It reads through the dialect
//! contract ([`source::Source`], from `mssql-pg-migrate-dialect`), which
//! `mssql-pg-migrate-mssql` and `mssql-pg-migrate-postgres` implement; the
//! engine is generic over it, so the per-row path has no dynamic dispatch.
//! One private module (`connect`) picks a dialect from the configuration.
//! The parts without I/O are kept apart
//! so they are tested without servers: [`plan`] (partitioning),
//! [`planning`] (the steps of a table), [`tuning`] and
//! [`deep::checksum`] (the checksum queries).
//!
//! Embedding a full load:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use mssql_pg_migrate_config::Loader;
//! use mssql_pg_migrate_transfer::{RunOptions, run};
//!
//! let config = Loader::from_process_env().load_file("config.yaml".as_ref())?;
//! let report = run(&config, &RunOptions::default()).await?;
//! println!("{} rows at {:.0} rows/s", report.rows, report.rows_per_second);
//! # Ok(()) }
//! ```

mod connect;
pub mod deep;
pub mod dry_run;
pub mod engine;
pub mod events;
mod failpoint;
pub mod health;
pub mod metrics;
pub mod monitor;
pub mod pause;
pub mod plan;
pub mod planning;
pub mod progress;
pub mod report;
pub mod retry;
pub(crate) mod target;
#[cfg(test)]
mod testing;
pub mod tuning;
pub mod validate;

/// The error every dialect and the engine report in (from the dialect contract).
pub use mssql_pg_migrate_dialect::error;
/// The PostgreSQL pieces the engine writes with, under their long-standing paths.
pub use mssql_pg_migrate_postgres::{copy, pool, tls};

/// Sources: the contract the engine reads through, and both dialects'
/// implementations of it, under their long-standing paths.
pub mod source {
    pub use mssql_pg_migrate_dialect::sink::{CellEncoder, EncodeError, FieldError, RowSink, WriterGone};
    pub use mssql_pg_migrate_dialect::source::*;
    pub use mssql_pg_migrate_mssql::{prelogin, reader as mssql};
    pub use mssql_pg_migrate_postgres::reader as pg;
    pub use mssql_pg_migrate_postgres::sink::PieceSink;
}

pub use connect::target_endpoint;
pub use deep::{DeepOptions, DeepReport, validate_deep};
pub use dry_run::{DryRunOptions, DryRunPlan, dry_run};
pub use engine::{RunOptions, run};
pub use error::{ErrorKind, Side, TransferError, Transience};
pub use events::{Event, EventSink, PlannedTable};
pub use failpoint::FAILPOINT_VAR;
pub use health::{Health, HealthOptions, HealthReport, health_check};
pub use pause::PauseSwitch;
pub use progress::{STATE_SCHEMA, StateLocation};
pub use report::{MergeCounts, RunReport, TableReport, TableStatus};
pub use validate::{ValidateOptions, ValidationReport, validate};
