//! SQL Server failures as [`TransferError`]s, classified by error number.

use mssql_pg_migrate_dialect::{Side, TransferError, Transience};

/// A SQL Server failure as the engine reports it, with the server's error
/// number, what the tool was doing, and how the failure may pass.
pub fn server_error(context: &str, e: &tiberius::error::Error) -> TransferError {
    server_error_on(Side::Source, context, e)
}

/// As [`server_error`], for a SQL Server target.
pub fn target_error(context: &str, e: &tiberius::error::Error) -> TransferError {
    server_error_on(Side::Target, context, e)
}

fn server_error_on(side: Side, context: &str, e: &tiberius::error::Error) -> TransferError {
    let message = match e {
        tiberius::error::Error::Server(token) => format!("error {}: {}", token.code(), token.message()),
        other => other.to_string(),
    };
    TransferError::Server { side, context: context.to_owned(), message, transience: tiberius_transience(e) }
}

/// How a SQL Server failure may pass. Outages: a broken socket; 4060
/// (database not available yet), 40613/40197/40501 (Azure SQL failover and
/// busy), 10928/10929 (resource limits), 49918-49920 (too many operations),
/// 233/64/10053/10054/10060 (the session or network dropped). 1205 (deadlock
/// victim) is retried. Anything else, a refused login or TLS among them,
/// is permanent.
///
/// Babelfish sends PostgreSQL errors it has no T-SQL number for as
/// [`BABELFISH_UNMAPPED_ERROR`]; of those only PostgreSQL's "the database
/// system is starting up / not yet accepting connections / shutting down /
/// in recovery mode" (SQLSTATE 57P03, which a restarted server answers
/// until recovery ends) is an outage.
pub fn tiberius_transience(e: &tiberius::error::Error) -> Transience {
    match e {
        tiberius::error::Error::Server(token) => server_message_transience(token.code(), token.message()),
        tiberius::error::Error::Io { .. } => Transience::Outage,
        _ => Transience::Permanent,
    }
}

/// The error number Babelfish gives every PostgreSQL error that has no
/// SQL Server equivalent; SQL Server's own numbers stay below 2^25.
pub const BABELFISH_UNMAPPED_ERROR: u32 = 33_557_097;

/// How a server error may pass, by number and, for Babelfish's unmapped
/// errors only, by message (see [`tiberius_transience`]).
pub fn server_message_transience(number: u32, message: &str) -> Transience {
    if number == BABELFISH_UNMAPPED_ERROR && message.starts_with("the database system is ") {
        return Transience::Outage;
    }
    error_number_transience(number)
}

/// How a SQL Server error number may pass (see [`tiberius_transience`]).
pub fn error_number_transience(number: u32) -> Transience {
    match number {
        1205 => Transience::Retry,
        4060 | 40613 | 40197 | 40501 | 10928 | 10929 | 49918 | 49919 | 49920 | 233 | 64 | 10053 | 10054 | 10060 => {
            Transience::Outage
        }
        _ => Transience::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failovers_and_dropped_sessions_are_outages_deadlocks_retries_and_logins_permanent() {
        for number in [4060, 40613, 40197, 40501, 10928, 10929, 233, 64, 10054] {
            assert_eq!(error_number_transience(number), Transience::Outage, "{number}");
        }
        assert_eq!(error_number_transience(1205), Transience::Retry);
        // 18456 login failed, 208 invalid object, 8152 truncation: the same again.
        for number in [18456, 208, 8152] {
            assert_eq!(error_number_transience(number), Transience::Permanent, "{number}");
        }
        let reset = tiberius::error::Error::Io {
            kind: std::io::ErrorKind::ConnectionReset,
            message: "connection reset by peer".into(),
        };
        assert_eq!(tiberius_transience(&reset), Transience::Outage);
        let starting = "the database system is not yet accepting connections";
        assert_eq!(server_message_transience(BABELFISH_UNMAPPED_ERROR, starting), Transience::Outage);
        assert_eq!(
            server_message_transience(
                BABELFISH_UNMAPPED_ERROR,
                "duplicate key value violates unique constraint \"pk\""
            ),
            Transience::Permanent,
            "only a server that is starting or stopping is waited for"
        );
        assert_eq!(server_message_transience(18456, starting), Transience::Permanent, "the text alone proves nothing");
        let tls = tiberius::error::Error::Tls("invalid peer certificate: UnknownIssuer".into());
        assert_eq!(tiberius_transience(&tls), Transience::Permanent);
    }
}
