//! The transfer engine of mssql-pg-migrate.
//!
//! The engine plans chunks by key range, reads them in parallel with keyset
//! paging, encodes PostgreSQL binary COPY straight into buffers, and streams
//! them through parallel writers within a memory budget ([`run`]). The
//! parts without I/O are kept apart so they are tested without servers:
//! [`copy`] (the binary COPY encoder), [`plan`] (partitioning) and
//! [`tuning`]. Sources implement [`source::Source`]; the engine is generic
//! over it, so the per-row path has no dynamic dispatch.
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
//!
//! The encoder on its own:
//!
//! ```
//! use mssql_pg_migrate_transfer::copy::CopyEncoder;
//!
//! let mut rows = CopyEncoder::new();
//! rows.begin_row(2);
//! rows.int4(42);
//! rows.text("forty-two")?;
//! rows.finish();
//! let bytes = rows.take();
//! assert!(bytes.starts_with(b"PGCOPY\n\xff\r\n\0"));
//! # Ok::<(), mssql_pg_migrate_transfer::copy::EncodeError>(())
//! ```

mod connect;
pub mod copy;
pub mod deep;
pub mod dry_run;
pub mod engine;
pub mod error;
pub mod events;
mod failpoint;
pub mod health;
pub mod metrics;
pub mod monitor;
pub mod pause;
pub mod plan;
pub mod planning;
pub mod pool;
pub mod progress;
pub mod report;
pub mod retry;
pub mod source;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod tuning;
pub mod validate;

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
