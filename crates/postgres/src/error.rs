//! PostgreSQL failures as [`TransferError`]s, classified by SQLSTATE.

use mssql_pg_migrate_dialect::{Side, TransferError, Transience};

/// A PostgreSQL failure as the engine reports it: the server's message and
/// detail, what the tool was doing, and how the failure may pass.
pub fn pg_error(side: Side, context: impl Into<String>, e: &tokio_postgres::Error) -> TransferError {
    let message = match e.as_db_error() {
        Some(db) => {
            let mut m = db.message().to_owned();
            if let Some(detail) = db.detail() {
                m.push_str(" (");
                m.push_str(detail);
                m.push(')');
            }
            m
        }
        None => e.to_string(),
    };
    TransferError::Server { side, context: context.into(), message, transience: pg_transience(e) }
}

/// How a PostgreSQL failure may pass: class 08 connection exceptions,
/// 57P01-57P03 shutdown and startup, 53300 too many connections, a closed
/// or reset socket are outages; 40001 serialization failure and 40P01
/// deadlock are retried; anything else (a refused password, a missing
/// database, a TLS failure) is permanent.
pub fn pg_transience(e: &tokio_postgres::Error) -> Transience {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300") {
            Transience::Outage
        } else if matches!(code, "40001" | "40P01") {
            Transience::Retry
        } else {
            Transience::Permanent
        };
    }
    let text = e.to_string();
    // A handshake refused over a certificate fails the same way next time.
    if text.contains("TLS") {
        return Transience::Permanent;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            let tls = io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
                || io.kind() == std::io::ErrorKind::InvalidData;
            return if tls { Transience::Permanent } else { Transience::Outage };
        }
        cause = c.source();
    }
    // tokio-postgres says "connection closed" for a socket the server shut,
    // and "timeout waiting for server" for a connect_timeout.
    if e.is_closed() || text.contains("connection closed") || text.contains("timeout") {
        Transience::Outage
    } else {
        Transience::Permanent
    }
}
