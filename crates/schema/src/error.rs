//! The schema crate's one error type.

use mssql_pg_migrate_typemap::TypeError;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A column whose type this tool cannot read or map.
    #[error("table {table}, column {column}: {source}")]
    ColumnType {
        table: String,
        column: String,
        #[source]
        source: TypeError,
    },
    #[error(
        "in {scope}, '{first}' and '{second}' would both be named '{target}' in the target; \
             choose another identifier_case or rename one of them"
    )]
    NameCollision { scope: String, first: String, second: String, target: String },
    /// A catalog query failed on the source or target server. `transient`:
    /// the failure may pass (a dropped connection, a deadlock), so reading
    /// the catalog again may succeed.
    #[error("reading the {server} catalog ({what}) failed: {message}")]
    Catalog { server: &'static str, what: &'static str, message: String, transient: bool },
    /// The catalog holds something this tool cannot represent.
    #[error("table {table}: {message}")]
    Unsupported { table: String, message: String },
}
