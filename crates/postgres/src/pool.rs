//! Connection pools: deadpool-postgres for PostgreSQL (source or target).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use mssql_pg_migrate_config::{Secret, SslMode};
use mssql_pg_migrate_dialect::{Side, TransferError, Transience};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::pg_transience;
use crate::socket::BufferedConnect;
use crate::tls::{self, TlsFiles};

/// Where and how to connect to a PostgreSQL server.
#[derive(Debug, Clone)]
pub struct PgEndpoint {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Secret,
    pub ssl_mode: SslMode,
    pub tls: TlsFiles,
}

impl PgEndpoint {
    /// A server on 127.0.0.1 reached without TLS: a throwaway cluster of
    /// the tests, the demo or the benchmarks.
    pub fn loopback(port: u16, database: &str, user: &str, password: Secret) -> PgEndpoint {
        PgEndpoint {
            host: "127.0.0.1".into(),
            port,
            database: database.into(),
            user: user.into(),
            password,
            ssl_mode: SslMode::Disable,
            tls: TlsFiles::default(),
        }
    }

    /// `host:port/database`, for messages (never the password).
    pub fn address(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }
}

/// What every target session runs first (see [`PgPool::new`]). Key and
/// index builds sort in memory up to `maintenance_work_mem`; below 256 MB
/// (the default is 64) the keys of a few million rows spill to disk, and
/// at 256 MB the SO2010 set's keys cost the server a quarter less CPU
/// (docs/BENCHMARKS.md). A server set higher keeps its setting.
const TARGET_SESSION_SETUP: &str = "SET synchronous_commit = on; \
     SELECT set_config('maintenance_work_mem', \
       (GREATEST(pg_size_bytes(current_setting('maintenance_work_mem')), 256 * 1024 * 1024) / 1024)::text || 'kB', false)";

/// A pool of PostgreSQL connections that reports failures with the server's address.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool,
    address: String,
    endpoint: PgEndpoint,
    side: Side,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool").field("address", &self.address).finish()
    }
}

impl PgPool {
    /// Builds a pool of at most `max_size` connections. Nothing connects yet.
    ///
    /// # Errors
    /// [`TransferError::Config`] for TLS files that cannot be used.
    pub fn new(endpoint: &PgEndpoint, side: Side, max_size: usize) -> Result<PgPool, TransferError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&endpoint.host)
            .port(endpoint.port)
            .dbname(&endpoint.database)
            .user(&endpoint.user)
            .password(endpoint.password.expose())
            .application_name("mssql-pg-migrate")
            .connect_timeout(Duration::from_secs(15))
            .keepalives_idle(Duration::from_secs(60));
        config.ssl_mode(match endpoint.ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        let tls =
            tls::client_config(endpoint.ssl_mode, &endpoint.tls, &side.to_string()).map_err(TransferError::Config)?;
        let manager = Manager::from_connect(
            config,
            BufferedConnect { tls: MakeRustlsConnect::new(tls) },
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let mut builder = Pool::builder(manager).max_size(max_size.max(1));
        if side == Side::Target {
            // A chunk counts as copied once its COMMIT returns. A server set
            // to synchronous_commit = off confirms commits that a crash can
            // still undo, and a run riding through that restart would go on
            // past rows that are gone; our sessions wait for the flush. Set
            // by a statement, not a startup option, which PgBouncer refuses.
            builder = builder.post_create(deadpool_postgres::Hook::async_fn(|client, _| {
                Box::pin(async move {
                    client.batch_execute(TARGET_SESSION_SETUP).await.map_err(deadpool_postgres::HookError::Backend)
                })
            }));
        }
        let pool = builder.build().map_err(|e| TransferError::Config(format!("{side} connection pool: {e}")))?;
        Ok(PgPool { pool, address: endpoint.address(), endpoint: endpoint.clone(), side })
    }

    /// Another pool to the same server, of at most `max_size` connections.
    ///
    /// # Errors
    /// As [`PgPool::new`].
    pub fn sibling(&self, max_size: usize) -> Result<PgPool, TransferError> {
        PgPool::new(&self.endpoint, self.side, max_size)
    }

    /// The database this pool connects to.
    pub fn database(&self) -> &str {
        &self.endpoint.database
    }

    /// A connection from the pool.
    ///
    /// # Errors
    /// [`TransferError::Connect`] naming the server when it cannot be reached.
    pub async fn get(&self, side: Side) -> Result<Object, TransferError> {
        self.pool.get().await.map_err(|e| {
            let transience = match &e {
                deadpool_postgres::PoolError::Backend(pg)
                | deadpool_postgres::PoolError::PostCreateHook(deadpool_postgres::HookError::Backend(pg)) => {
                    pg_transience(pg)
                }
                deadpool_postgres::PoolError::Timeout(_) => Transience::Outage,
                _ => Transience::Permanent,
            };
            let message = match &e {
                deadpool_postgres::PoolError::Backend(pg) => match pg.as_db_error() {
                    Some(db) => db.message().to_owned(),
                    None => {
                        let mut m = pg.to_string();
                        if let Some(source) = std::error::Error::source(pg) {
                            m = format!("{m}: {source}");
                        }
                        m
                    }
                },
                other => other.to_string(),
            };
            let message = tls::explain(&message, &self.endpoint.host, &self.side.to_string()).unwrap_or(message);
            TransferError::Connect { side, address: self.address.clone(), message, transience }
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// What this pool's connections promise about the server's certificate.
    pub fn verification(&self) -> tls::Verification {
        tls::verification(self.endpoint.ssl_mode, &self.endpoint.tls)
    }
}
