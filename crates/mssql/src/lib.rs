//! Everything mssql-pg-migrate knows about SQL Server, over tiberius.
//!
//! - [`catalog`]: reads the `sys.*` views into the schema model, each view
//!   on its own and joined here ([`catalog::facts`]), so the joins are
//!   tested without a server;
//! - [`reader`]: [`MssqlSource`], the engine's
//!   [`Source`](mssql_pg_migrate_dialect::source::Source) for a SQL Server:
//!   keyset pages over a bb8 pool, each cell decoded from tiberius'
//!   `ColumnData` straight into the engine's
//!   [`CellEncoder`](mssql_pg_migrate_dialect::sink::CellEncoder), large
//!   values streamed in slices;
//! - [`prelogin`]: asks the server whether it offers TLS before tiberius
//!   connects, so `encrypt` is honoured exactly;
//! - [`ddl`]: the T-SQL of a SQL Server target (tables, then keys,
//!   indexes, checks, identities and foreign keys after the data), pure;
//! - [`writer`]: rows into a SQL Server table through the TDS bulk load,
//!   identities and NULLs kept, values above 64 KB written by key after it;
//! - [`checksum`]: how this server hashes UTF-8 for a checksummed comparison;
//! - [`store`]: the run state kept in a SQL Server target database;
//! - [`error`]: failures classified by error number.
//!
//! Errors are the engine's
//! [`TransferError`](mssql_pg_migrate_dialect::TransferError), with SQL
//! Server's error numbers classified by how they may pass:
//!
//! ```
//! use mssql_pg_migrate_dialect::Transience;
//! use mssql_pg_migrate_mssql::error::error_number_transience;
//!
//! assert_eq!(error_number_transience(1205), Transience::Retry); // deadlock victim
//! assert_eq!(error_number_transience(40613), Transience::Outage); // Azure SQL database unavailable
//! assert_eq!(error_number_transience(208), Transience::Permanent); // invalid object name
//! ```

pub mod catalog;
pub mod checksum;
pub mod ddl;
pub mod error;
pub mod prelogin;
pub mod reader;
pub mod sink;
pub mod store;
pub mod target;
pub mod writer;

pub use reader::{MssqlEndpoint, MssqlSource};
