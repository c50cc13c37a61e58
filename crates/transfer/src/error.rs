//! The transfer crate's one error type.

use std::fmt;

use mssql_pg_migrate_schema::SchemaError;

/// Which server an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// What kind of failure, for the binary's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration or the target's shape must be fixed; retrying will not help.
    Config,
    /// A server could not be reached.
    Connection,
    /// Moving data failed.
    Transfer,
    /// The run was cancelled.
    Cancelled,
    /// The run state is missing, damaged, locked, or from another configuration.
    State,
    /// A local file (the state file) could not be written.
    Io,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("cannot connect to the {side} server at {address}: {message}")]
    Connect { side: Side, address: String, message: String },
    #[error("{side} server, {context}: {message}")]
    Server { side: Side, context: String, message: String, transient: bool },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A value that cannot be written, with the cell that holds it.
    #[error("table {table}, column {column}, row with key {key}: {message}")]
    Value { table: String, column: String, key: String, message: String },
    #[error("{0}")]
    Config(String),
    /// An existing target table that cannot take the source's rows (truncate mode).
    #[error("target table {table} is not compatible with the source: {message}")]
    Incompatible { table: String, message: String },
    #[error("the run was cancelled")]
    Cancelled,
    /// The run state cannot be used: missing, damaged, locked by another
    /// run, or saved under a different configuration.
    #[error("{0}")]
    State(String),
    #[error("{0}")]
    Io(String),
}

impl TransferError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TransferError::Connect { .. } => ErrorKind::Connection,
            TransferError::Config(_) | TransferError::Incompatible { .. } => ErrorKind::Config,
            TransferError::Cancelled => ErrorKind::Cancelled,
            TransferError::State(_) => ErrorKind::State,
            TransferError::Io(_) => ErrorKind::Io,
            TransferError::Server { .. } | TransferError::Schema(_) | TransferError::Value { .. } => {
                ErrorKind::Transfer
            }
        }
    }

    /// Whether retrying the same work may succeed (connection resets, deadlocks...).
    pub fn is_transient(&self) -> bool {
        matches!(self, TransferError::Server { transient: true, .. })
    }

    pub(crate) fn pg(side: Side, context: impl Into<String>, e: &tokio_postgres::Error) -> Self {
        let (message, transient) = match e.as_db_error() {
            Some(db) => {
                let code = db.code().code();
                // Class 08 connection exceptions, 40001 serialization failure,
                // 40P01 deadlock, 57P01 admin shutdown.
                let transient =
                    code.starts_with("08") || matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03");
                let mut m = db.message().to_owned();
                if let Some(detail) = db.detail() {
                    m.push_str(" (");
                    m.push_str(detail);
                    m.push(')');
                }
                (m, transient)
            }
            None => (e.to_string(), e.is_closed() || e.to_string().contains("connection")),
        };
        TransferError::Server { side, context: context.into(), message, transient }
    }
}
