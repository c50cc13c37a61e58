//! `health-check`: can this configuration run? Connects to both servers and
//! reports their versions, round-trip latency and encryption, and whether
//! the logins hold every permission the run needs. Nothing is written to
//! either server.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mssql_pg_migrate_config::{Config, SourceConfig, TargetConfig, TargetKind, TargetMode};
use mssql_pg_migrate_mssql::MssqlSource;
use mssql_pg_migrate_mssql::target::CopyPermissions;
use mssql_pg_migrate_postgres::pg_error;
use mssql_pg_migrate_schema::ident::{quote_mssql, quote_pg};
use serde::Serialize;

use crate::connect::{SourceJob, mssql_target_endpoint, postgres_target, source_address, target_endpoint, with_source};
use crate::error::{ErrorKind, Side, TransferError};
use crate::planning::plan_targets;
use crate::pool::PgPool;
use crate::progress::{STATE_SCHEMA, StateLocation};
use crate::source::pg::{ping_pg, probe_pg};
use crate::source::{ServerProbe, Source, TableName};

/// Round trips timed for the latency figure (the median is reported).
const PINGS: usize = 5;

/// Per-check options that are not in the configuration file.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    pub source_schema: Option<String>,
    pub target_schema: Option<String>,
    /// Where the run would keep its state: a file must be writable; the
    /// target database needs room for the state schema.
    pub state: StateLocation,
}

/// One permission or precondition, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A stable name, for scripts.
    pub name: &'static str,
    pub ok: bool,
    /// What was found; on failure, what is missing and where.
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
        Check { name, ok, detail: detail.into() }
    }
}

/// What one server said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointHealth {
    /// `host:port/database` (never the password).
    pub address: String,
    pub reachable: bool,
    /// Why the server could not be reached or asked.
    pub error: Option<String>,
    pub server: Option<ServerProbe>,
    /// Median round trip of a few empty queries, in milliseconds.
    pub latency_ms: Option<f64>,
    pub checks: Vec<Check>,
}

impl EndpointHealth {
    fn reachable(address: String, server: ServerProbe, latency_ms: f64) -> EndpointHealth {
        EndpointHealth {
            address,
            reachable: true,
            error: None,
            server: Some(server),
            latency_ms: Some(latency_ms),
            checks: Vec::new(),
        }
    }

    fn unreachable(address: String, error: &TransferError) -> EndpointHealth {
        EndpointHealth {
            address,
            reachable: false,
            error: Some(error.to_string()),
            server: None,
            latency_ms: None,
            checks: Vec::new(),
        }
    }
}

/// The verdict, from worst to best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// A server could not be reached (retry later).
    Unreachable,
    /// Both answered, but a permission or precondition is missing (fix it).
    MissingPermissions,
    Healthy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    pub health: Health,
    pub source: EndpointHealth,
    pub target: EndpointHealth,
}

impl HealthReport {
    fn new(source: EndpointHealth, target: EndpointHealth) -> HealthReport {
        let health = if !source.reachable || !target.reachable {
            Health::Unreachable
        } else if source.checks.iter().chain(&target.checks).any(|c| !c.ok) {
            Health::MissingPermissions
        } else {
            Health::Healthy
        };
        HealthReport { health, source, target }
    }

    /// Every failed check, with its side.
    pub fn failures(&self) -> impl Iterator<Item = (Side, &Check)> {
        let source = self.source.checks.iter().map(|c| (Side::Source, c));
        let target = self.target.checks.iter().map(|c| (Side::Target, c));
        source.chain(target).filter(|(_, c)| !c.ok)
    }
}

/// Checks both servers of `config`.
///
/// # Errors
/// Only a configuration this build cannot use (an unsupported SSL mode).
/// Unreachable servers and missing permissions are in the report.
pub async fn health_check(config: &Config, options: &HealthOptions) -> Result<HealthReport, TransferError> {
    let source_schema = options.source_schema.clone().unwrap_or_else(|| config.source.schema.clone());
    let target_schema = options.target_schema.clone().unwrap_or_else(|| config.target.schema.clone());
    if config.target.kind == TargetKind::Mssql {
        return sql_server_health(config, options, &source_schema, &target_schema).await;
    }
    let target = PgPool::new(&target_endpoint(&config.target), Side::Target, 2)?;

    let job = SourceHealth { config, schema: &source_schema, target_schema: &target_schema };
    let (source, planned_names) = match with_source(&config.source, 2, job).await {
        Ok(found) => found,
        Err(e) if e.kind() == ErrorKind::Config => return Err(e),
        Err(e) => (EndpointHealth::unreachable(source_address(&config.source), &e), None),
    };

    let mut target_health = match probe_and_time(&target, Side::Target).await {
        Ok((server, latency_ms)) => EndpointHealth::reachable(target.address().to_owned(), server, latency_ms),
        Err(e) => EndpointHealth::unreachable(target.address().to_owned(), &e),
    };
    if target_health.reachable {
        let checks = target_checks(&target, config, &target_schema, planned_names.as_deref(), &options.state).await;
        match checks {
            Ok(checks) => target_health.checks = checks,
            Err(e) => target_health.checks.push(Check::new("target_privileges", false, e.to_string())),
        }
    }
    if let StateLocation::File(path) = &options.state {
        target_health.checks.push(state_file_check(path));
    }
    Ok(HealthReport::new(source, target_health))
}

/// [`health_check`] for a SQL Server target: reached as a SQL Server source
/// is (version, login, TLS, latency), then whether the login may create
/// the copy's tables and schema, and where the run state can live.
async fn sql_server_health(
    config: &Config,
    options: &HealthOptions,
    source_schema: &str,
    target_schema: &str,
) -> Result<HealthReport, TransferError> {
    let job = SourceHealth { config, schema: source_schema, target_schema };
    let (source, _) = match with_source(&config.source, 2, job).await {
        Ok(found) => found,
        Err(e) if e.kind() == ErrorKind::Config => return Err(e),
        Err(e) => (EndpointHealth::unreachable(source_address(&config.source), &e), None),
    };
    let endpoint = mssql_target_endpoint(&config.target);
    let address = endpoint.address();
    let probed = async {
        let server = MssqlSource::connect(endpoint, 2).await?;
        let probe = server.probe().await?;
        let latency = median_latency_ms(|| server.ping()).await?;
        let mut session = server.session().await?;
        let permissions = mssql_pg_migrate_mssql::target::copy_permissions(&mut session, target_schema).await?;
        let state = match options.state {
            StateLocation::Target => {
                Some(mssql_pg_migrate_mssql::target::copy_permissions(&mut session, STATE_SCHEMA).await?)
            }
            StateLocation::File(_) => None,
        };
        Ok::<_, TransferError>((probe, latency, permissions, state))
    };
    let mut target = match probed.await {
        Ok((probe, latency, permissions, state)) => {
            let mut health = EndpointHealth::reachable(address, probe, latency);
            health.checks = sql_server_checks(&permissions, target_schema);
            if let Some(state) = state {
                health.checks.push(sql_server_schema_check("state_schema", &state, STATE_SCHEMA));
            }
            health
        }
        Err(e) => EndpointHealth::unreachable(address, &e),
    };
    if let StateLocation::File(path) = &options.state {
        target.checks.push(state_file_check(path));
    }
    Ok(HealthReport::new(source, target))
}

/// The verdicts on what the login may do in a SQL Server target. A failure
/// spells out the GRANT that fixes it.
fn sql_server_checks(p: &CopyPermissions, schema: &str) -> Vec<Check> {
    let login = quote_mssql(&p.login);
    let create_table = if p.create_table {
        Check::new("create_table_in_database", true, format!("CREATE TABLE in database {}", p.database))
    } else {
        Check::new(
            "create_table_in_database",
            false,
            format!("CREATE TABLE missing in database {}: GRANT CREATE TABLE TO {login}", p.database),
        )
    };
    vec![create_table, sql_server_schema_check("create_on_target_schema", p, schema)]
}

/// Check `name`: whether the login may create tables in `schema` (ALTER on
/// it), or create the schema when it does not exist yet.
fn sql_server_schema_check(name: &'static str, p: &CopyPermissions, schema: &str) -> Check {
    let login = quote_mssql(&p.login);
    match p.alter_schema {
        Some(true) => Check::new(name, true, format!("ALTER on schema {schema}")),
        Some(false) => Check::new(
            name,
            false,
            format!("ALTER missing on schema {schema}: GRANT ALTER ON SCHEMA::{} TO {login}", quote_mssql(schema)),
        ),
        None if p.create_schema => {
            Check::new(name, true, format!("schema {schema} does not exist yet; the login may create it"))
        }
        None => Check::new(
            name,
            false,
            format!("schema {schema} does not exist and the login may not create it: GRANT CREATE SCHEMA TO {login}"),
        ),
    }
}

/// Connects to a source and lists what its login can see, for a wizard
/// that lets the user pick schemas and tables.
///
/// # Errors
/// When the server cannot be reached or its catalog read.
pub async fn list_source_tables(source: &SourceConfig) -> Result<(ServerProbe, Vec<TableName>), TransferError> {
    struct Listing;
    impl SourceJob for Listing {
        type Output = (ServerProbe, Vec<TableName>);
        async fn call<S: Source>(self, source: Arc<S>) -> Result<Self::Output, TransferError> {
            Ok((source.probe().await?, source.list_tables().await?))
        }
    }
    with_source(source, 1, Listing).await
}

/// Connects to a target: its version, the login and whether TLS is in use.
///
/// # Errors
/// When the server cannot be reached, or the SSL mode is not supported.
pub async fn probe_target(target: &TargetConfig) -> Result<ServerProbe, TransferError> {
    let pool = PgPool::new(&postgres_target(target, "probing the target")?, Side::Target, 1)?;
    probe_pg(&pool, Side::Target).await
}

async fn probe_and_time(target: &PgPool, side: Side) -> Result<(ServerProbe, f64), TransferError> {
    let server = probe_pg(target, side).await?;
    let latency = median_latency_ms(|| ping_pg(target, side)).await?;
    Ok((server, latency))
}

async fn median_latency_ms<F, Fut>(mut ping: F) -> Result<f64, TransferError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), TransferError>>,
{
    let mut times = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let started = Instant::now();
        ping().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&mut times))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

struct SourceHealth<'a> {
    config: &'a Config,
    schema: &'a str,
    target_schema: &'a str,
}

impl SourceJob for SourceHealth<'_> {
    /// The source's health, and the target names of the planned tables
    /// (when the catalog could be read and planned).
    type Output = (EndpointHealth, Option<Vec<String>>);

    async fn call<S: Source>(self, source: Arc<S>) -> Result<Self::Output, TransferError> {
        let address = source_address(&self.config.source);
        let (server, latency_ms) = match source.probe().await {
            Ok(server) => match median_latency_ms(|| source.ping()).await {
                Ok(latency) => (server, latency),
                Err(e) => return Ok((EndpointHealth::unreachable(address, &e), None)),
            },
            Err(e) => return Ok((EndpointHealth::unreachable(address, &e), None)),
        };
        let mut health = EndpointHealth::reachable(address, server, latency_ms);
        let m = &self.config.migration;
        let select = |schema: &str, table: &str| m.selects_table(schema, table);
        let tables = match source.read_schema(self.schema, &select).await {
            Ok(tables) => tables,
            Err(e) => {
                health.checks.push(Check::new("catalog", false, format!("cannot read the catalog: {e}")));
                return Ok((health, None));
            }
        };
        if tables.is_empty() {
            health.checks.push(Check::new(
                "tables_selected",
                false,
                format!(
                    "schema {} has no tables that migration.include_tables / exclude_tables select \
                     (or the login can see none of them)",
                    self.schema
                ),
            ));
            return Ok((health, None));
        }
        health.checks.push(Check::new(
            "tables_selected",
            true,
            format!("{} table(s) in schema {}", tables.len(), self.schema),
        ));
        match source.table_access(self.schema, &tables).await {
            Ok(access) => {
                let lacking = |f: fn(&crate::source::TableAccess) -> bool| -> Vec<String> {
                    access.iter().filter(|a| !f(a)).map(|a| a.table.clone()).collect()
                };
                health.checks.push(verdict("select", "SELECT", tables.len(), lacking(|a| a.select)));
                health.checks.push(verdict(
                    "view_definition",
                    "VIEW DEFINITION",
                    tables.len(),
                    lacking(|a| a.view_definition),
                ));
            }
            Err(e) => health.checks.push(Check::new("select", false, format!("cannot check permissions: {e}"))),
        }
        let names = match plan_targets(tables, m, self.target_schema, source.dialect()) {
            Ok(plan) => Some(plan.tables.into_iter().map(|(_, t)| t.name).collect()),
            Err(e) => {
                health.checks.push(Check::new("plan", false, e.to_string()));
                None
            }
        };
        Ok((health, names))
    }
}

/// A check over many tables: which of them lack `permission`.
fn verdict(name: &'static str, permission: &str, tables: usize, lacking: Vec<String>) -> Check {
    if lacking.is_empty() {
        Check::new(name, true, format!("{permission} on all {tables} table(s)"))
    } else {
        Check::new(name, false, format!("{permission} missing on {}: {}", lacking.len(), lacking.join(", ")))
    }
}

/// Whether the schema exists, whether the login may create in it, whether
/// it may create schemas in the database, and the database's name.
const SCHEMA_PRIVILEGES: &str = "\
SELECT n.oid IS NOT NULL,
       COALESCE(has_schema_privilege(n.oid, 'CREATE') AND has_schema_privilege(n.oid, 'USAGE'), false),
       has_database_privilege(current_database(), 'CREATE'),
       current_database()::text, current_user::text
FROM (SELECT $1::text AS name) wanted LEFT JOIN pg_namespace n ON n.nspname = wanted.name";

/// Which of the named tables exist, and whether the login owns them
/// (dropping, truncating with dropped foreign keys, and SET LOGGED need it).
const OWNERSHIP: &str = "\
SELECT c.relname::text, pg_has_role(c.relowner, 'USAGE')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p')
ORDER BY c.relname";

async fn target_checks(
    target: &PgPool,
    config: &Config,
    schema: &str,
    planned: Option<&[String]>,
    state: &StateLocation,
) -> Result<Vec<Check>, TransferError> {
    let client = target.get(Side::Target).await?;
    let context = "checking privileges";
    let mut checks = Vec::new();
    let mut schemas = vec![("create_on_target_schema", schema)];
    if *state == StateLocation::Target {
        schemas.push(("state_schema", STATE_SCHEMA));
    }
    for (name, schema) in schemas {
        let row =
            client.query_one(SCHEMA_PRIVILEGES, &[&schema]).await.map_err(|e| pg_error(Side::Target, context, &e))?;
        let get = |i| row.try_get::<_, bool>(i).map_err(|e| pg_error(Side::Target, context, &e));
        let (exists, create_in_schema, create_in_database) = (get(0)?, get(1)?, get(2)?);
        let database: String = row.try_get(3).map_err(|e| pg_error(Side::Target, context, &e))?;
        let login: String = row.try_get(4).map_err(|e| pg_error(Side::Target, context, &e))?;
        let place = Place { schema, database: &database, login: &login };
        checks.push(schema_check(name, &place, exists, create_in_schema, create_in_database));
    }
    if let Some(names) = planned {
        let rows =
            client.query(OWNERSHIP, &[&schema, &names]).await.map_err(|e| pg_error(Side::Target, context, &e))?;
        let mut existing = 0;
        let mut not_owned = Vec::new();
        for row in rows {
            let name: String = row.try_get(0).map_err(|e| pg_error(Side::Target, context, &e))?;
            let owned: bool = row.try_get(1).map_err(|e| pg_error(Side::Target, context, &e))?;
            existing += 1;
            if !owned {
                not_owned.push(format!("{schema}.{name}"));
            }
        }
        let action = match config.migration.target_mode {
            TargetMode::Truncate => "truncate and alter",
            TargetMode::DropRecreate | TargetMode::Upsert => "drop",
        };
        checks.push(if not_owned.is_empty() {
            Check::new(
                "owns_existing_tables",
                true,
                format!("{existing} existing target table(s), all owned by the login"),
            )
        } else {
            Check::new(
                "owns_existing_tables",
                false,
                format!("the run must {action} tables the login does not own: {}", not_owned.join(", ")),
            )
        });
    }
    Ok(checks)
}

/// Where the run creates objects, and as whom.
struct Place<'a> {
    schema: &'a str,
    database: &'a str,
    login: &'a str,
}

/// The verdict on creating tables in a schema: in it when it exists, or
/// the schema itself in the database when it does not. A failure spells
/// out the GRANT that fixes it.
fn schema_check(
    name: &'static str,
    place: &Place<'_>,
    exists: bool,
    create_in_schema: bool,
    create_in_database: bool,
) -> Check {
    let Place { schema, database, login } = place;
    match (exists, create_in_schema, create_in_database) {
        (true, true, _) => Check::new(name, true, format!("CREATE and USAGE on schema {schema}")),
        (true, false, _) => Check::new(
            name,
            false,
            format!(
                "CREATE or USAGE missing on schema {schema}: GRANT CREATE, USAGE ON SCHEMA {} TO {}",
                quote_pg(schema),
                quote_pg(login)
            ),
        ),
        (false, _, true) => Check::new(
            name,
            true,
            format!("schema {schema} does not exist; CREATE on database {database} lets the run make it"),
        ),
        (false, _, false) => Check::new(
            name,
            false,
            format!(
                "schema {schema} does not exist and {login} may not create it: create it, or \
                 GRANT CREATE ON DATABASE {} TO {}",
                quote_pg(database),
                quote_pg(login)
            ),
        ),
    }
}

/// Whether the state file's directory takes a new file (probed with a
/// file that is removed at once; the state file itself is not touched).
fn state_file_check(path: &Path) -> Check {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let probe = dir.join(format!(".mssql-pg-migrate-health-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Check::new("state_file_writable", true, format!("{} is writable", dir.display()))
        }
        Err(e) => Check::new(
            "state_file_writable",
            false,
            format!("cannot create files in {} for the state file {}: {e}", dir.display(), path.display()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(reachable: bool, checks: Vec<Check>) -> EndpointHealth {
        EndpointHealth { address: "h:1/d".into(), reachable, error: None, server: None, latency_ms: None, checks }
    }

    #[test]
    fn the_verdict_puts_reachability_before_permissions() {
        let ok = || Check::new("select", true, "");
        let missing = || Check::new("select", false, "SELECT missing on 1: s.t");
        assert_eq!(HealthReport::new(endpoint(true, vec![ok()]), endpoint(true, vec![])).health, Health::Healthy);
        let report = HealthReport::new(endpoint(true, vec![missing()]), endpoint(true, vec![ok()]));
        assert_eq!(report.health, Health::MissingPermissions);
        assert_eq!(
            report.failures().map(|(side, c)| (side, c.name)).collect::<Vec<_>>(),
            vec![(Side::Source, "select")]
        );
        assert_eq!(
            HealthReport::new(endpoint(true, vec![missing()]), endpoint(false, vec![])).health,
            Health::Unreachable
        );
    }

    #[test]
    fn schema_verdicts_say_what_to_grant_with_quoted_names() {
        let place = Place { schema: "app", database: "Sales DB", login: "etl" };
        assert!(schema_check("s", &place, true, true, false).ok);
        let c = schema_check("s", &place, true, false, true);
        assert!(!c.ok && c.detail.ends_with("GRANT CREATE, USAGE ON SCHEMA \"app\" TO \"etl\""), "{}", c.detail);
        assert!(schema_check("s", &place, false, false, true).ok);
        let c = schema_check("s", &place, false, false, false);
        assert!(!c.ok && c.detail.ends_with("GRANT CREATE ON DATABASE \"Sales DB\" TO \"etl\""), "{}", c.detail);
    }

    #[test]
    fn many_tables_are_summed_up_and_the_lacking_named() {
        let c = verdict("select", "SELECT", 3, vec![]);
        assert_eq!((c.ok, c.detail.as_str()), (true, "SELECT on all 3 table(s)"));
        let c = verdict("select", "SELECT", 3, vec!["s.a".into(), "s.b".into()]);
        assert_eq!((c.ok, c.detail.as_str()), (false, "SELECT missing on 2: s.a, s.b"));
    }

    #[test]
    fn the_median_ignores_one_slow_outlier() {
        assert_eq!(median(&mut [0.4, 90.0, 0.3, 0.5, 0.35]), 0.4);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn a_state_file_in_a_missing_directory_is_reported() {
        let c = state_file_check(Path::new("/nonexistent-dir-for-health/state.json"));
        assert!(!c.ok && c.detail.contains("/nonexistent-dir-for-health"), "{}", c.detail);
        let dir = std::env::temp_dir();
        let c = state_file_check(&dir.join("state.json"));
        assert!(c.ok, "{}", c.detail);
    }
}
