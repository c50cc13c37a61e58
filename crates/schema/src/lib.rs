//! The schema model shared by every source, and safe SQL identifiers.
//!
//! A migration first reads the source's catalog into this model (tables,
//! columns, keys, indexes, foreign keys, checks), whatever the source
//! server is; target planning ([`target`]) and chunk planning work only on
//! the model. Each dialect's crate (`mssql-pg-migrate-mssql`,
//! `mssql-pg-migrate-postgres`) reads its catalog into the flat rows of
//! [`catalog`], from which [`catalog::assemble`] builds the model the same
//! way for both. This crate does no I/O.
//!
//! Every identifier that reaches SQL goes through [`ident::quote_pg`] or
//! [`ident::quote_mssql`]: the one place each dialect's quoting lives.
//!
//! ```
//! use mssql_pg_migrate_schema::ident::{quote_mssql, quote_pg, target_name};
//! use mssql_pg_migrate_config::IdentifierCase;
//!
//! assert_eq!(quote_pg(r#"Order "Lines""#), r#""Order ""Lines""""#);
//! assert_eq!(quote_mssql("odd]name"), "[odd]]name]");
//! assert_eq!(target_name("OrderLines", IdentifierCase::Snake), "order_lines");
//! ```

pub mod catalog;
mod error;
pub mod expr;
pub mod ident;
mod model;
pub mod target;

pub use error::SchemaError;

pub use model::{
    CheckConstraint, Column, ColumnType, Computed, ForeignKey, Identity, Index, IndexColumn, Key, ReferentialAction,
    Table,
};
