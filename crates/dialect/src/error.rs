//! The error every dialect and the engine report in, so the engine can
//! tell from any failure how it may pass ([`Transience`]) and which exit
//! code it earns ([`ErrorKind`]).

use std::fmt;

use mssql_pg_migrate_schema::SchemaError;
use mssql_pg_migrate_state::StateError;

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

/// Whether a failure may go away by itself, and how long it is worth waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transience {
    /// Doing the same again fails the same way.
    Permanent,
    /// A deadlock, a serialization failure, throttling: retried
    /// `max_retries` times.
    Retry,
    /// The server went away or refuses sessions for now (a restart, a
    /// failover): reconnected for up to `reconnect_timeout`.
    Outage,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("cannot connect to the {side} server at {address}: {message}")]
    Connect { side: Side, address: String, message: String, transience: Transience },
    #[error("{side} server, {context}: {message}")]
    Server { side: Side, context: String, message: String, transience: Transience },
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
            TransferError::Connect { .. } | TransferError::Server { transience: Transience::Outage, .. } => {
                ErrorKind::Connection
            }
            TransferError::Config(_) | TransferError::Incompatible { .. } => ErrorKind::Config,
            TransferError::Cancelled => ErrorKind::Cancelled,
            TransferError::State(_) => ErrorKind::State,
            TransferError::Io(_) => ErrorKind::Io,
            TransferError::Server { .. } | TransferError::Schema(_) | TransferError::Value { .. } => {
                ErrorKind::Transfer
            }
        }
    }

    /// Whether and how long retrying the same work may succeed.
    pub fn transience(&self) -> Transience {
        match self {
            TransferError::Connect { transience, .. } | TransferError::Server { transience, .. } => *transience,
            TransferError::Schema(SchemaError::Catalog { transient: true, .. }) => Transience::Retry,
            _ => Transience::Permanent,
        }
    }

    /// The server the error came from, when it came from one.
    pub fn side(&self) -> Option<Side> {
        match self {
            TransferError::Connect { side, .. } | TransferError::Server { side, .. } => Some(*side),
            _ => None,
        }
    }

    /// Whether retrying the same work may succeed (connection resets, deadlocks...).
    pub fn is_transient(&self) -> bool {
        self.transience() != Transience::Permanent
    }

    /// The error with a note that reconnecting went on for `waited` and
    /// which setting waits longer.
    pub fn after_outage(self, waited: std::time::Duration) -> Self {
        let note = |message: String| {
            format!(
                "{message} (still unavailable after reconnecting for {} s; \
                 migration.reconnect_timeout sets how long a run waits)",
                waited.as_secs()
            )
        };
        match self {
            TransferError::Connect { side, address, message, transience } => {
                TransferError::Connect { side, address, message: note(message), transience }
            }
            TransferError::Server { side, context, message, transience } => {
                TransferError::Server { side, context, message: note(message), transience }
            }
            other => other,
        }
    }
}

impl From<StateError> for TransferError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::Io { .. } => TransferError::Io(error.to_string()),
            StateError::NotFound { .. } | StateError::Corrupt { .. } => TransferError::State(error.to_string()),
        }
    }
}
