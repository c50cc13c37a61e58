//! mssql-pg-migrate as a library: one dependency for programs that embed it.
//!
//! This facade re-exports the workspace's library crates under short names,
//! so an embedding program depends on `mssql-pg-migrate` alone and sees the
//! same types the command-line tool uses:
//!
//! - [`config`]: load, validate and redact a configuration;
//! - [`typemap`]: SQL Server → PostgreSQL type mapping with fidelity verdicts;
//! - [`schema`]: the schema model and identifier quoting;
//! - [`dialect`]: the contract between the engine and each database (the
//!   `Source` trait, the row sink, the shared error);
//! - [`mssql`] and [`postgres`]: everything about each database: catalog
//!   readers, row readers, and for PostgreSQL the COPY encoder, DDL and pool;
//! - [`state`]: the resumable run state;
//! - [`transfer`]: run, resume, dry run, validate and health-check, with
//!   typed events and cancellation.
//!
//! `examples/embed.rs` runs a migration from code: it watches the events,
//! cancels after a few chunks, and resumes to the end (`cargo test` runs it
//! against throwaway PostgreSQL databases).
//!
//! ```
//! use mssql_pg_migrate::config::Loader;
//!
//! let yaml = "source: {type: mssql, host: sql1, database: Shop, user: sa, password: pw}\n\
//!             target: {type: postgres, host: pg1, database: shop, user: etl, password: pw}\n";
//! let config = Loader::new().load_str(yaml, "yaml")?;
//! assert_eq!(config.target.schema, "public");
//! # Ok::<(), mssql_pg_migrate::config::ConfigError>(())
//! ```

#![deny(missing_docs)]

pub use mssql_pg_migrate_config as config;
pub use mssql_pg_migrate_dialect as dialect;
pub use mssql_pg_migrate_mssql as mssql;
pub use mssql_pg_migrate_postgres as postgres;
pub use mssql_pg_migrate_schema as schema;
pub use mssql_pg_migrate_state as state;
pub use mssql_pg_migrate_transfer as transfer;
pub use mssql_pg_migrate_typemap as typemap;
