//! The contract between the transfer engine and each database dialect.
//!
//! The engine (`mssql-pg-migrate-transfer`) plans, reads in parallel,
//! retries and keeps state without knowing which server it talks to: it
//! speaks to the traits here, and each dialect's crate implements them
//! (`mssql-pg-migrate-mssql` over tiberius, `mssql-pg-migrate-postgres`
//! over tokio-postgres). What crosses the line:
//!
//! - [`source::Source`]: a server rows are read from, with what a table's
//!   reader needs to know ([`source::ReadSpec`]);
//! - [`sink::RowSink`] and [`sink::CellEncoder`]: where a reader puts each
//!   cell, generic so the per-cell path has no dynamic dispatch;
//! - [`TransferError`]: the one error every side reports in, with how it
//!   may pass and which exit code it earns;
//! - [`checksum`]: the bucket sums both sides of a comparison produce;
//! - [`store::StateStore`]: a target database that keeps the run state.
//!
//! ```
//! use mssql_pg_migrate_dialect::{ErrorKind, Side, TransferError, Transience};
//!
//! let deadlock = TransferError::Server {
//!     side: Side::Source,
//!     context: "reading dbo.orders".into(),
//!     message: "deadlock victim".into(),
//!     transience: Transience::Retry,
//! };
//! assert!(deadlock.is_transient());
//! assert_eq!(deadlock.kind(), ErrorKind::Transfer);
//! assert_eq!(deadlock.to_string(), "source server, reading dbo.orders: deadlock victim");
//! ```

pub mod checksum;
pub mod error;
pub mod sink;
pub mod source;
pub mod store;

pub use error::{ErrorKind, Side, TransferError, Transience};
