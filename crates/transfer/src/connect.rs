//! Connecting to the servers a configuration names. The engine is generic
//! over [`Source`], so work that needs a source is a [`SourceJob`], called
//! with whichever dialect `source.type` selects.

use std::future::Future;
use std::sync::Arc;

use mssql_pg_migrate_config::{Encrypt, MssqlTls, Secret, SourceConfig, SourceKind, SslMode, TargetConfig, TargetKind};

use crate::error::{Side, TransferError};
use crate::pool::{PgEndpoint, PgPool};
use crate::source::Source;
use crate::source::mssql::{MssqlEndpoint, MssqlSource};
use crate::source::pg::PgSource;
use crate::tls::TlsFiles;

/// Work that needs a connected source of either dialect.
pub trait SourceJob {
    type Output;

    fn call<S: Source>(self, source: Arc<S>) -> impl Future<Output = Result<Self::Output, TransferError>>;
}

/// Connects to the configured source with a pool of at most
/// `max_connections`, and hands it to `job`.
///
/// # Errors
/// [`TransferError::Connect`] when a SQL Server source cannot be reached
/// (a PostgreSQL pool connects lazily, on first use), or the job's error.
pub async fn with_source<J: SourceJob>(
    s: &SourceConfig,
    max_connections: usize,
    job: J,
) -> Result<J::Output, TransferError> {
    match s.kind {
        SourceKind::Postgres => {
            let endpoint = PgEndpoint {
                host: s.host.clone(),
                port: s.port,
                database: s.database.clone(),
                user: s.user.clone(),
                password: s.password.clone(),
                ssl_mode: s.pg_tls.as_ref().map_or(SslMode::Prefer, |t| t.ssl_mode),
                tls: s.pg_tls.as_ref().map(TlsFiles::from).unwrap_or_default(),
            };
            let source = PgSource::new(PgPool::new(&endpoint, Side::Source, max_connections)?);
            job.call(Arc::new(source)).await
        }
        SourceKind::Mssql => {
            let tls =
                MssqlTls { encrypt: s.encrypt, trust_server_cert: s.trust_server_cert, ca_cert: s.ca_cert.clone() };
            let endpoint = mssql_endpoint((&s.host, s.port, &s.database, &s.user), &s.password, &tls, Side::Source);
            let max = u32::try_from(max_connections).unwrap_or(u32::MAX);
            let source = MssqlSource::connect(endpoint, max).await?;
            job.call(Arc::new(source)).await
        }
    }
}

/// The target server of a configuration.
pub fn target_endpoint(t: &TargetConfig) -> PgEndpoint {
    PgEndpoint {
        host: t.host.clone(),
        port: t.port,
        database: t.database.clone(),
        user: t.user.clone(),
        password: t.password.clone(),
        ssl_mode: t.tls.ssl_mode,
        tls: TlsFiles::from(&t.tls),
    }
}

/// The PostgreSQL target of a configuration, for work that only a
/// PostgreSQL target supports yet (`what` names it).
///
/// # Errors
/// [`TransferError::Config`] for a SQL Server target.
pub(crate) fn postgres_target(t: &TargetConfig, what: &str) -> Result<PgEndpoint, TransferError> {
    match t.kind {
        TargetKind::Postgres => Ok(target_endpoint(t)),
        TargetKind::Mssql => Err(TransferError::Config(format!(
            "{what} is not available for a SQL Server target in this version (run, resume, validate \
             and health-check are); compare the databases with SQL Server's own tools meanwhile"
        ))),
    }
}

/// How to reach a SQL Server (the source, or a SQL Server target).
fn mssql_endpoint(
    (host, port, database, user): (&str, u16, &str, &str),
    password: &Secret,
    tls: &MssqlTls,
    side: Side,
) -> MssqlEndpoint {
    if tls.trust_server_cert {
        tracing::warn!(
            "{side}.trust_server_cert is true: the SQL Server's certificate is not verified, so the \
             connection is encrypted but its peer is not proven (set ca_cert instead to verify a private CA)"
        );
    }
    MssqlEndpoint {
        host: host.to_owned(),
        port,
        database: database.to_owned(),
        user: user.to_owned(),
        password: password.clone(),
        encrypt: tls.encrypt.is_on(),
        strict: tls.encrypt == Encrypt::Strict,
        trust_server_cert: tls.trust_server_cert,
        ca_cert: tls.ca_cert.clone(),
        side,
    }
}

/// The SQL Server target of a configuration.
pub(crate) fn mssql_target_endpoint(t: &TargetConfig) -> MssqlEndpoint {
    let default = MssqlTls { encrypt: Encrypt::On, trust_server_cert: false, ca_cert: None };
    let tls = t.mssql_tls.as_ref().unwrap_or(&default);
    mssql_endpoint((&t.host, t.port, &t.database, &t.user), &t.password, tls, Side::Target)
}

/// `host:port/database` of the configured source, for messages.
pub fn source_address(s: &SourceConfig) -> String {
    format!("{}:{}/{}", s.host, s.port, s.database)
}
