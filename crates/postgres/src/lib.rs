//! Everything mssql-pg-migrate knows about PostgreSQL, over tokio-postgres.
//!
//! - [`catalog`]: reads a PostgreSQL catalog into the schema model;
//! - [`reader`]: [`PgSource`], the engine's [`Source`](mssql_pg_migrate_dialect::source::Source)
//!   for a PostgreSQL server: keyset pages fetched in binary, each field's
//!   bytes passed on as they are, or a full load's pages as ranges of
//!   storage blocks under one held snapshot ([`blocks`]);
//! - [`copy`]: the binary COPY encoder, pure and tested byte for byte
//!   against a server, and [`sink::PieceSink`], which streams its buffers
//!   to a writer;
//! - [`ddl`]: the target's DDL, generated from a target plan;
//! - [`pool`] and [`tls`]: pooled sessions over rustls, on a socket
//!   ([`socket`]) that reads in large buffers and joins COPY OUT rows into
//!   fewer messages ([`copy_join`]);
//! - [`checksum`]: the PostgreSQL side of a checksummed comparison;
//! - [`store`]: the run state kept in the target database;
//! - [`error`]: failures classified by SQLSTATE into the engine's
//!   [`TransferError`](mssql_pg_migrate_dialect::TransferError).
//!
//! The encoder on its own:
//!
//! ```
//! use mssql_pg_migrate_postgres::copy::{CellEncoder as _, CopyEncoder};
//!
//! let mut rows = CopyEncoder::new();
//! rows.begin_row(2);
//! rows.int4(42);
//! rows.text("forty-two")?;
//! rows.finish();
//! let bytes = rows.take();
//! assert!(bytes.starts_with(b"PGCOPY\n\xff\r\n\0"));
//! # Ok::<(), mssql_pg_migrate_postgres::copy::EncodeError>(())
//! ```

pub mod blocks;
pub mod catalog;
pub mod checksum;
pub mod copy;
pub mod copy_join;
pub mod copy_out;
pub mod ddl;
pub mod error;
pub mod pool;
pub mod reader;
pub mod sink;
pub mod socket;
pub mod store;
pub mod tls;

pub use copy::CopyEncoder;
pub use error::{pg_error, pg_transience};
pub use pool::{PgEndpoint, PgPool};
pub use reader::PgSource;
pub use sink::PieceSink;
