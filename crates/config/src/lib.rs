//! Configuration for mssql-pg-migrate: load, expand, validate, redact, hash.
//!
//! A configuration has three sections, `source`, `target` and `migration`,
//! with the keys and defaults of the data engineer's guide. This crate reads
//! them from a YAML, JSON or TOML file, expands `${VAR}` / `${VAR:-default}`
//! in the file's strings, applies environment overrides
//! (`MSSQL_PG_MIGRATE__<SECTION>__<KEY>`), reads `password_file`s, and
//! validates everything in one pass: a [`ConfigError::Invalid`] lists
//! *every* problem, each with its key path, so a user fixes a file in one go.
//!
//! Passwords are held in [`Secret`], which prints as `********` in `Debug`,
//! `Display` and any serialisation. [`Config::fingerprint`] hashes the
//! settings that decide *what* is migrated (not secrets, not tuning knobs), so
//! a resumed run can tell whether its configuration changed.
//!
//! ```
//! use mssql_pg_migrate_config::{Loader, TargetMode};
//!
//! let yaml = r#"
//! source: { type: mssql, host: sql1, database: Shop, user: sa, password: "${SA_PASSWORD}" }
//! target: { type: postgres, host: pg1, database: shop, user: etl, password: x }
//! migration: { target_mode: truncate, workers: 2 }
//! "#;
//! let config = Loader::new()
//!     .with_env([("SA_PASSWORD", "s3cret!")])
//!     .load_str(yaml, "yaml")?;
//! assert_eq!(config.source.port, 1433);
//! assert_eq!(config.source.password.expose(), "s3cret!");
//! assert_eq!(format!("{:?}", config.source.password), "Secret(********)");
//! assert_eq!(config.migration.target_mode, TargetMode::Truncate);
//! # Ok::<(), mssql_pg_migrate_config::ConfigError>(())
//! ```

pub mod credentials;
mod error;
mod expand;
mod fingerprint;
mod glob;
mod load;
pub mod reference;
mod repeated;
mod secret;
mod validate;

use std::path::PathBuf;

use serde::{Serialize, Serializer};

pub use error::{ConfigError, Problem, Problems};
pub use fingerprint::Fingerprint;
pub use glob::TablePattern;
pub use load::{ENV_PREFIX, ENV_SEPARATOR, Loader};
pub use mssql_pg_migrate_typemap::{Override as TypeOverride, OverrideScope, PgType};
pub use secret::{REDACTED, Secret};

/// A complete, validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub source: SourceConfig,
    pub target: TargetConfig,
    pub migration: MigrationConfig,
}

/// Which kind of server the data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Microsoft SQL Server or Azure SQL (`mssql`, `sqlserver`).
    Mssql,
    /// PostgreSQL (`postgres`, `postgresql`): used for PostgreSQL-to-PostgreSQL
    /// copies and to run the whole pipeline in CI without SQL Server.
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceConfig {
    #[serde(rename = "type")]
    pub kind: SourceKind,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// A command whose first output line is the password (run once, when
    /// the config is loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_command: Option<String>,
    pub schema: String,
    pub encrypt: Encrypt,
    pub trust_server_cert: bool,
    /// A CA certificate (PEM) the SQL Server's certificate must chain to,
    /// instead of the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// A PostgreSQL source's TLS, as the target's (`None` for SQL Server).
    #[serde(flatten)]
    pub pg_tls: Option<PgTls>,
}

/// libpq's TLS settings of a PostgreSQL connection (the target, or a
/// PostgreSQL source); the files are resolved against the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PgTls {
    pub ssl_mode: SslMode,
    /// CA certificates (PEM) the server's certificate must chain to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_root_cert: Option<PathBuf>,
    /// A client certificate (PEM) and its private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_key: Option<PathBuf>,
}

impl PgTls {
    /// `mode` without any certificate files.
    pub fn with_mode(ssl_mode: SslMode) -> PgTls {
        PgTls { ssl_mode, ssl_root_cert: None, ssl_cert: None, ssl_key: None }
    }
}

/// `source.encrypt`: `false`, `true` (the default), or `strict` (TDS 8.0:
/// TLS before any TDS byte, as SQL Server 2022 and Azure SQL offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encrypt {
    Off,
    On,
    Strict,
}

impl Encrypt {
    /// Whether the whole session is encrypted.
    pub fn is_on(self) -> bool {
        self != Encrypt::Off
    }
}

impl std::fmt::Display for Encrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encrypt::Off => "false",
            Encrypt::On => "true",
            Encrypt::Strict => "strict",
        })
    }
}

impl Serialize for Encrypt {
    /// As it is written in a config file: `false`, `true` or `strict`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Encrypt::Off => serializer.serialize_bool(false),
            Encrypt::On => serializer.serialize_bool(true),
            Encrypt::Strict => serializer.serialize_str("strict"),
        }
    }
}

/// The database a migration writes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Postgres,
    /// SQL Server (or Azure SQL): a copy between two SQL Servers, as the
    /// SQL Server → SQL Server DAG of an Airflow pipeline does.
    Mssql,
}

/// The TLS settings of a SQL Server target, as a SQL Server source has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MssqlTls {
    pub encrypt: Encrypt,
    pub trust_server_cert: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// libpq's `sslmode` for a PostgreSQL connection (see the transfer
/// crate's `tls` module for what each checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetConfig {
    #[serde(rename = "type")]
    pub kind: TargetKind,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// A command whose first output line is the password (run once, when
    /// the config is loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_command: Option<String>,
    pub schema: String,
    /// A PostgreSQL target's TLS (its defaults for a SQL Server target, which ignores them).
    #[serde(flatten)]
    pub tls: PgTls,
    /// A SQL Server target's TLS (`None` for PostgreSQL).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub mssql_tls: Option<MssqlTls>,
}

/// How the target tables are prepared before data moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetMode {
    DropRecreate,
    Truncate,
    Upsert,
}

impl TargetMode {
    /// The key's value as a config file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetMode::DropRecreate => "drop_recreate",
            TargetMode::Truncate => "truncate",
            TargetMode::Upsert => "upsert",
        }
    }
}

/// How source identifiers are spelled in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierCase {
    /// Exactly as in the source, quoted.
    Preserve,
    /// Lower-cased.
    Lower,
    /// `OrderLines` → `order_lines`.
    Snake,
}

/// The `migration` section. `None` in a tunable means "auto-tune", shown as
/// `auto` when the configuration is printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationConfig {
    pub target_mode: TargetMode,
    #[serde(serialize_with = "auto")]
    pub workers: Option<u32>,
    #[serde(serialize_with = "auto")]
    pub chunk_size: Option<u32>,
    #[serde(serialize_with = "auto")]
    pub parallel_readers: Option<u32>,
    #[serde(serialize_with = "auto")]
    pub write_ahead_writers: Option<u32>,
    pub memory_budget_percent: u8,
    #[serde(serialize_with = "auto")]
    pub read_ahead_buffers: Option<u32>,
    pub large_table_threshold: u64,
    pub max_partitions: u32,
    pub min_rows_per_partition: u64,
    #[serde(serialize_with = "auto")]
    pub max_mssql_connections: Option<u32>,
    #[serde(serialize_with = "auto")]
    pub max_pg_connections: Option<u32>,
    pub use_binary_copy: bool,
    pub use_unlogged_tables: bool,
    pub copy_buffer_rows: u32,
    /// Rows per upsert batch (read, staged, merged and committed together);
    /// `auto`: `chunk_size`.
    #[serde(serialize_with = "auto")]
    pub upsert_batch_size: Option<u32>,
    /// Batches merged at once; `auto`: `write_ahead_writers`.
    #[serde(serialize_with = "auto")]
    pub upsert_parallel_tasks: Option<u32>,
    pub include_tables: Vec<TablePattern>,
    pub exclude_tables: Vec<TablePattern>,
    pub create_indexes: bool,
    pub create_foreign_keys: bool,
    pub create_check_constraints: bool,
    /// `ANALYZE` each table once it is loaded, so the planner knows it at
    /// once rather than after autovacuum's next visit.
    pub analyze_after_load: bool,
    pub identifier_case: IdentifierCase,
    #[serde(serialize_with = "overrides")]
    pub type_overrides: Vec<TypeOverride>,
    pub continue_on_error: bool,
    pub max_retries: u32,
    /// Seconds a run waits for a server that went away (a restart, a
    /// failover) before it fails; 0 fails at once.
    pub reconnect_timeout: u32,
    /// Upsert: delete target rows whose key is gone from the source, in
    /// every table or in those listed.
    pub delete_missing: DeleteMissing,
    /// Upsert: per table, the column whose value rises with every change
    /// (a rowversion, a modified time, an ever-increasing key), so a sync
    /// reads only the rows changed since the last one.
    pub change_columns: Vec<ChangeColumn>,
    /// How far before the last sync's mark a sync reads again, for rows
    /// committed late with an earlier value: seconds for time columns,
    /// values for integer ones (rowversion needs none).
    pub change_lookback: u32,
    /// Upsert: per table without a primary key, the source's unique index
    /// (by name) whose columns serve as its key.
    pub upsert_keys: Vec<UpsertKey>,
}

/// A keyless table's merge key (`migration.upsert_keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpsertKey {
    pub table: TablePattern,
    pub index: String,
}

/// Which tables an upsert deletes missing rows from (`delete_missing`:
/// `true`, `false`, or a list of table patterns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum DeleteMissing {
    All(bool),
    Tables(Vec<TablePattern>),
}

impl DeleteMissing {
    /// Whether `schema.table` has its missing rows deleted.
    pub fn covers(&self, schema: &str, table: &str) -> bool {
        match self {
            DeleteMissing::All(all) => *all,
            DeleteMissing::Tables(patterns) => patterns.iter().any(|p| p.matches(schema, table)),
        }
    }

    /// Whether any table can have rows deleted.
    pub fn any(&self) -> bool {
        match self {
            DeleteMissing::All(all) => *all,
            DeleteMissing::Tables(patterns) => !patterns.is_empty(),
        }
    }
}

/// A table's change column (`migration.change_columns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeColumn {
    pub table: TablePattern,
    pub column: String,
}

impl MigrationConfig {
    /// The change column configured for `schema.table`, if any (the first
    /// pattern that matches).
    pub fn change_column(&self, schema: &str, table: &str) -> Option<&str> {
        self.change_columns.iter().find(|c| c.table.matches(schema, table)).map(|c| c.column.as_str())
    }

    /// The unique index named as the upsert key of `schema.table`, if any.
    pub fn upsert_key(&self, schema: &str, table: &str) -> Option<&str> {
        self.upsert_keys.iter().find(|k| k.table.matches(schema, table)).map(|k| k.index.as_str())
    }

    /// Whether the include/exclude patterns select `schema.table`.
    pub fn selects_table(&self, schema: &str, table: &str) -> bool {
        (self.include_tables.is_empty() || self.include_tables.iter().any(|p| p.matches(schema, table)))
            && !self.exclude_tables.iter().any(|p| p.matches(schema, table))
    }
}

fn auto<S: Serializer>(value: &Option<u32>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => serializer.serialize_u32(*v),
        None => serializer.serialize_str("auto"),
    }
}

fn overrides<S: Serializer>(list: &[TypeOverride], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::{SerializeMap, SerializeSeq};
    struct Entry<'a>(&'a TypeOverride);
    impl Serialize for Entry<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(None)?;
            match &self.0.scope {
                OverrideScope::SourceType(t) => map.serialize_entry("source_type", t)?,
                OverrideScope::Column { schema, table, column } => {
                    if let Some(schema) = schema {
                        map.serialize_entry("schema", schema)?;
                    }
                    map.serialize_entry("table", table)?;
                    map.serialize_entry("column", column)?;
                }
            }
            map.serialize_entry("target_type", &self.0.target.to_string())?;
            map.end()
        }
    }
    let mut seq = serializer.serialize_seq(Some(list.len()))?;
    for o in list {
        seq.serialize_element(&Entry(o))?;
    }
    seq.end()
}

impl Config {
    /// The hash a resumed run compares against; see [`Fingerprint`].
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self)
    }

    /// The configuration as JSON, secrets redacted.
    pub fn to_redacted_json(&self) -> serde_json::Value {
        // Serialising plain data into a Value cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_mode_names_are_the_config_values() {
        for mode in [TargetMode::DropRecreate, TargetMode::Truncate, TargetMode::Upsert] {
            assert_eq!(serde_json::to_value(mode).ok(), Some(serde_json::Value::from(mode.as_str())));
        }
    }
}
