//! The transfer engine of mssql-pg-migrate.
//!
//! The engine plans chunks by key range, reads them in parallel with keyset
//! paging, encodes PostgreSQL binary COPY straight into buffers, and streams
//! them through parallel writers within a memory budget. The parts without
//! I/O are kept apart so they are tested without servers; so far that is
//! [`copy`], the binary COPY encoder.
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

pub mod copy;
pub mod engine;
pub mod error;
pub mod plan;
pub mod pool;
pub mod report;
pub mod source;
pub mod tuning;

pub use engine::{RunOptions, run};
pub use error::{ErrorKind, Side, TransferError};
pub use report::{RunReport, TableReport, TableStatus};
