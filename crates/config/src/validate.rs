//! Builds a [`Config`] from the merged value tree, collecting every problem.

use std::ops::RangeInclusive;
use std::path::Path;

use figment::value::{Dict, Value};
use mssql_pg_migrate_typemap::{MssqlType, Override, OverrideScope, PgType, conversion};

use crate::credentials::{self, PgLogin};
use crate::error::{Problem, Problems};
use crate::glob::TablePattern;
use crate::load::Origins;
use crate::{
    ChangeColumn, Config, DeleteMissing, Encrypt, IdentifierCase, MigrationConfig, MssqlTls, PgTls, Secret,
    SourceConfig, SourceKind, SslMode, TargetConfig, TargetKind, TargetMode, UpsertKey,
};

const TOP_KEYS: &[&str] = &["source", "target", "migration"];
pub(crate) const SOURCE_KEYS: &[&str] = &[
    "type",
    "host",
    "port",
    "database",
    "user",
    "password",
    "password_file",
    "password_command",
    "schema",
    "encrypt",
    "trust_server_cert",
    "ca_cert",
    "ssl_mode",
    "ssl_root_cert",
    "ssl_cert",
    "ssl_key",
];
pub(crate) const TARGET_KEYS: &[&str] = &[
    "type",
    "host",
    "port",
    "database",
    "user",
    "password",
    "password_file",
    "password_command",
    "schema",
    "ssl_mode",
    "ssl_root_cert",
    "ssl_cert",
    "ssl_key",
    "encrypt",
    "trust_server_cert",
    "ca_cert",
];
pub(crate) const MIGRATION_KEYS: &[&str] = &[
    "target_mode",
    "workers",
    "chunk_size",
    "parallel_readers",
    "write_ahead_writers",
    "memory_budget_percent",
    "read_ahead_buffers",
    "large_table_threshold",
    "max_partitions",
    "min_rows_per_partition",
    "max_mssql_connections",
    "max_pg_connections",
    "use_binary_copy",
    "use_unlogged_tables",
    "copy_buffer_rows",
    "upsert_batch_size",
    "upsert_parallel_tasks",
    "include_tables",
    "exclude_tables",
    "create_indexes",
    "create_foreign_keys",
    "create_check_constraints",
    "analyze_after_load",
    "identifier_case",
    "type_overrides",
    "continue_on_error",
    "max_retries",
    "reconnect_timeout",
    "delete_missing",
    "change_columns",
    "change_lookback",
    "upsert_keys",
];
const OVERRIDE_KEYS: &[&str] = &["source_type", "schema", "table", "column", "target_type"];

const PARALLELISM: RangeInclusive<u64> = 1..=256;
const POOL_SIZE: RangeInclusive<u64> = 1..=1000;

/// `env` is the loader's environment, for libpq's `PGPASSWORD`,
/// `PGPASSFILE` and `HOME`.
pub(crate) fn build(
    root: &Dict,
    origins: &Origins,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Problems> {
    let mut v = Walker { problems: Vec::new(), origins, env };
    v.unknown_keys(root, "", TOP_KEYS);
    let empty = Dict::new();
    let source = v.section(root, "source", SOURCE_KEYS, true).unwrap_or(&empty);
    let target = v.section(root, "target", TARGET_KEYS, true).unwrap_or(&empty);
    let migration = v.section(root, "migration", MIGRATION_KEYS, false).unwrap_or(&empty);

    let source = v.source(source, base);
    let target = v.target(target, base);
    let migration = v.migration(migration);
    let config = Config { source, target, migration };
    v.cross_checks(&config);

    if v.problems.is_empty() {
        Ok(config)
    } else {
        v.problems.sort_by(|a, b| a.key.cmp(&b.key));
        Err(Problems(v.problems))
    }
}

/// A password and where it was read from.
struct Credentials {
    password: Secret,
    file: Option<std::path::PathBuf>,
    command: Option<String>,
}

struct Walker<'a> {
    problems: Vec<Problem>,
    origins: &'a Origins,
    env: &'a dyn Fn(&str) -> Option<String>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::String(..) | Value::Char(..) => "a string",
        Value::Bool(..) => "a boolean",
        Value::Num(..) => "a number",
        Value::Empty(..) => "empty",
        Value::Dict(..) => "a mapping",
        Value::Array(..) => "a list",
    }
}

impl Walker<'_> {
    fn report(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let origin = self.origins.of(&key);
        self.problems.push(Problem { key, message: message.into(), origin });
    }

    fn unknown_keys(&mut self, dict: &Dict, path: &str, known: &[&str]) {
        for key in dict.keys() {
            if known.contains(&key.as_str()) {
                continue;
            }
            let hint = suggestion(key, path, known).map(|s| format!("; did you mean {s}?")).unwrap_or_default();
            self.report(join(path, key), format!("unknown key{hint}"));
        }
    }

    fn section<'d>(&mut self, root: &'d Dict, name: &str, known: &[&str], required: bool) -> Option<&'d Dict> {
        match root.get(name) {
            Some(Value::Dict(_, d)) => {
                self.unknown_keys(d, name, known);
                Some(d)
            }
            Some(other) => {
                self.report(name, format!("must be a mapping of keys, not {}", describe(other)));
                None
            }
            None if required => {
                self.report(name, "required section is missing");
                None
            }
            None => None,
        }
    }

    fn string(&mut self, d: &Dict, path: &str, key: &str) -> Option<String> {
        let full = join(path, key);
        match d.get(key)? {
            Value::String(_, s) => Some(s.clone()),
            Value::Char(_, c) => Some(c.to_string()),
            // Unquoted YAML scalars such as `database: 2024` are meant as text.
            Value::Num(_, n) => n
                .to_f64()
                .map(|f| if f.fract() == 0.0 && f.abs() < 1e15 { format!("{}", f as i64) } else { f.to_string() }),
            Value::Bool(_, b) => Some(b.to_string()),
            other => {
                self.report(full, format!("must be a string, not {}", describe(other)));
                None
            }
        }
    }

    fn required_string(&mut self, d: &Dict, path: &str, key: &str) -> String {
        match self.string(d, path, key) {
            Some(s) if !s.trim().is_empty() => s,
            Some(_) => {
                self.report(join(path, key), "must not be empty");
                String::new()
            }
            None => {
                if !d.contains_key(key) {
                    self.report(join(path, key), "required key is missing");
                }
                String::new()
            }
        }
    }

    fn uint(&mut self, d: &Dict, path: &str, key: &str, range: RangeInclusive<u64>) -> Option<u64> {
        let full = join(path, key);
        let value = d.get(key)?;
        let parsed: Option<i128> = match value {
            Value::Num(_, n) => match n.to_i128().or_else(|| n.to_u128().and_then(|u| i128::try_from(u).ok())) {
                Some(i) => Some(i),
                None => {
                    self.report(full, format!("must be a whole number, not {}", n.to_f64().unwrap_or(f64::NAN)));
                    return None;
                }
            },
            Value::String(_, s) => match s.trim().parse::<i128>() {
                Ok(i) => Some(i),
                Err(_) => {
                    self.report(full, format!("must be a whole number, not {s:?}"));
                    return None;
                }
            },
            other => {
                self.report(full, format!("must be a whole number, not {}", describe(other)));
                return None;
            }
        };
        let n = parsed?;
        if n < i128::from(*range.start()) || n > i128::from(*range.end()) {
            self.report(full, format!("{n} is out of range: allowed {}..={}", range.start(), range.end()));
            return None;
        }
        u64::try_from(n).ok()
    }

    /// A tunable: a number in `range`, or `auto` (the default) to let the
    /// engine choose.
    fn tunable(&mut self, d: &Dict, path: &str, key: &str, range: RangeInclusive<u64>) -> Option<u32> {
        if let Some(Value::String(_, s)) = d.get(key)
            && s.trim().eq_ignore_ascii_case("auto")
        {
            return None;
        }
        self.uint(d, path, key, range).and_then(|n| u32::try_from(n).ok())
    }

    fn boolean(&mut self, d: &Dict, path: &str, key: &str, default: bool) -> bool {
        let full = join(path, key);
        match d.get(key) {
            None => default,
            Some(Value::Bool(_, b)) => *b,
            Some(Value::String(_, s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => true,
                "false" | "no" | "off" | "0" => false,
                _ => {
                    self.report(full, format!("must be true or false, not {s:?}"));
                    default
                }
            },
            Some(other) => {
                self.report(full, format!("must be true or false, not {}", describe(other)));
                default
            }
        }
    }

    fn choice<T: Copy>(&mut self, d: &Dict, path: &str, key: &str, choices: &[(&str, T)], default: T) -> T {
        let Some(text) = self.string(d, path, key) else {
            return default;
        };
        let wanted = text.trim().to_ascii_lowercase();
        if let Some((_, t)) = choices.iter().find(|(name, _)| *name == wanted) {
            return *t;
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let hint = closest(&wanted, &names).map(|s| format!(" (did you mean {s}?)")).unwrap_or_default();
        self.report(join(path, key), format!("{text:?} is not one of: {}{hint}", names.join(", ")));
        default
    }

    fn list<'d>(&mut self, d: &'d Dict, path: &str, key: &str) -> Vec<std::borrow::Cow<'d, Value>> {
        use std::borrow::Cow;
        let full = join(path, key);
        match d.get(key) {
            None | Some(Value::Empty(..)) => Vec::new(),
            Some(Value::Array(_, items)) => items.iter().map(Cow::Borrowed).collect(),
            // From the environment: a JSON list, or comma-separated strings.
            Some(Value::String(tag, s)) => {
                let s = s.trim();
                if s.starts_with('[') {
                    match serde_json::from_str::<serde_json::Value>(s)
                        .map_err(|e| e.to_string())
                        .and_then(|json| Value::serialize(json).map_err(|e| e.to_string()))
                    {
                        Ok(Value::Array(_, items)) => items.into_iter().map(Cow::Owned).collect(),
                        Ok(_) | Err(_) => {
                            self.report(full, "must be a list; this looks like JSON but does not parse as a list");
                            Vec::new()
                        }
                    }
                } else if s.is_empty() {
                    Vec::new()
                } else {
                    s.split(',').map(|part| Cow::Owned(Value::String(*tag, part.trim().to_owned()))).collect()
                }
            }
            Some(other) => {
                self.report(full, format!("must be a list, not {}", describe(other)));
                Vec::new()
            }
        }
    }

    fn patterns(&mut self, d: &Dict, path: &str, key: &str) -> Vec<TablePattern> {
        let items = self.list(d, path, key);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let full = format!("{}[{i}]", join(path, key));
            match item.as_ref() {
                Value::String(_, s) => match TablePattern::new(s) {
                    Ok(p) => out.push(p),
                    Err(e) => self.report(full, e),
                },
                other => self.report(full, format!("must be a table pattern string, not {}", describe(other))),
            }
        }
        out
    }

    /// The password from exactly one of `password`, `password_file` and
    /// `password_command`; for a PostgreSQL server (`libpq` given) with none
    /// of them, from `PGPASSWORD` or the password file, as libpq would.
    fn password(&mut self, d: &Dict, path: &str, base: &Path, libpq: Option<PgLogin<'_>>) -> Credentials {
        let inline = match d.get("password") {
            None => None,
            Some(Value::String(_, s)) => Some(s.clone()),
            Some(other) => {
                // YAML turns `password: 0123` into the number 123: refuse to guess.
                self.report(
                    join(path, "password"),
                    format!("must be a quoted string, not {} (quote it so YAML keeps it exactly)", describe(other)),
                );
                Some(String::new())
            }
        };
        let file = self.string(d, path, "password_file").map(std::path::PathBuf::from);
        let command = self.string(d, path, "password_command");
        let mut out = Credentials { password: Secret::default(), file: file.clone(), command: command.clone() };
        let given: Vec<&str> = [("password", inline.is_some()), ("password_file", file.is_some())]
            .into_iter()
            .chain([("password_command", command.is_some())])
            .filter_map(|(key, set)| set.then_some(key))
            .collect();
        if given.len() > 1 {
            let last = given[given.len() - 1];
            self.report(join(path, last), format!("set only one of {}", given.join(", ")));
            return out;
        }
        if let Some(p) = inline {
            out.password = Secret::new(p);
        } else if let Some(file) = file {
            let resolved = if file.is_absolute() { file.clone() } else { base.join(&file) };
            match std::fs::read_to_string(&resolved) {
                Ok(text) => {
                    // Secret files usually end with a newline that is not part of the password.
                    let secret = text.trim_end_matches(['\n', '\r']);
                    if secret.is_empty() {
                        self.report(join(path, "password_file"), format!("{} is empty", resolved.display()));
                    }
                    out.password = Secret::new(secret);
                }
                Err(e) => {
                    self.report(join(path, "password_file"), format!("cannot read {}: {e}", resolved.display()));
                }
            }
        } else if let Some(command) = command {
            match credentials::run_password_command(&command) {
                Ok(secret) => out.password = Secret::new(secret),
                Err(why) => self.report(join(path, "password_command"), why),
            }
        } else {
            let from_libpq = match libpq.map(|login| credentials::libpq_password(login, self.env)) {
                Some(Ok(found)) => found,
                Some(Err(why)) => {
                    self.report(join(path, "password"), format!("required key is missing, and {why}"));
                    return out;
                }
                None => None,
            };
            match from_libpq {
                Some(secret) => out.password = Secret::new(secret),
                None => {
                    let libpq_places = if libpq.is_some() { ", PGPASSWORD or a ~/.pgpass line" } else { "" };
                    self.report(
                        join(path, "password"),
                        format!(
                            "required key is missing (or set {path}.password_file or {path}.password_command{libpq_places})"
                        ),
                    );
                }
            }
        }
        out
    }

    /// libpq's TLS settings of a PostgreSQL server's section; the files
    /// relative to the config file.
    fn pg_tls(&mut self, d: &Dict, p: &str, base: &Path) -> PgTls {
        let ssl_mode = self.choice(
            d,
            p,
            "ssl_mode",
            &[
                ("disable", SslMode::Disable),
                ("allow", SslMode::Allow),
                ("prefer", SslMode::Prefer),
                ("require", SslMode::Require),
                ("verify-ca", SslMode::VerifyCa),
                ("verify-full", SslMode::VerifyFull),
            ],
            SslMode::Prefer,
        );
        let mut tls_file = |key: &str| {
            let file = self.string(d, p, key).map(std::path::PathBuf::from)?;
            let resolved = if file.is_absolute() { file } else { base.join(file) };
            if !resolved.is_file() {
                self.report(join(p, key), format!("{} is not a readable file", resolved.display()));
            }
            Some(resolved)
        };
        let (ssl_root_cert, ssl_cert, ssl_key) = (tls_file("ssl_root_cert"), tls_file("ssl_cert"), tls_file("ssl_key"));
        if ssl_cert.is_some() != ssl_key.is_some() {
            let given = if ssl_cert.is_some() { "ssl_cert" } else { "ssl_key" };
            self.report(join(p, given), "set both ssl_cert and ssl_key (a client certificate and its key), or neither");
        }
        PgTls { ssl_mode, ssl_root_cert, ssl_cert, ssl_key }
    }

    fn port(&mut self, d: &Dict, path: &str, default: u16) -> u16 {
        self.uint(d, path, "port", 1..=65535).and_then(|p| u16::try_from(p).ok()).unwrap_or(default)
    }

    /// Each kind of server has its own TLS keys; the other kind's, in section
    /// `p`, are a mistake worth naming.
    fn refuse_other_tls_keys(&mut self, d: &Dict, p: &str, sql_server: bool) {
        let (mssql_keys, pg_keys) =
            (["encrypt", "trust_server_cert", "ca_cert"], ["ssl_mode", "ssl_root_cert", "ssl_cert", "ssl_key"]);
        let (foreign, own): (&[&str], &str) = if sql_server {
            (&pg_keys, "encrypt, trust_server_cert and ca_cert")
        } else {
            (&mssql_keys, "ssl_mode, ssl_root_cert, ssl_cert and ssl_key")
        };
        for key in foreign.iter().filter(|k| d.contains_key(**k)) {
            self.report(join(p, key), format!("is not a setting of this {p} type; its TLS settings are {own}"));
        }
    }

    /// The TLS keys of a SQL Server connection (the source, or a SQL Server target).
    fn mssql_tls(&mut self, d: &Dict, p: &str, base: &Path) -> MssqlTls {
        let encrypt = match d.get("encrypt") {
            Some(Value::String(_, s)) if s.trim().eq_ignore_ascii_case("strict") => Encrypt::Strict,
            _ if self.boolean(d, p, "encrypt", true) => Encrypt::On,
            _ => Encrypt::Off,
        };
        let trust_server_cert = self.boolean(d, p, "trust_server_cert", false);
        let ca_cert = self.string(d, p, "ca_cert").map(|file| {
            let file = std::path::PathBuf::from(file);
            let resolved = if file.is_absolute() { file } else { base.join(file) };
            if !resolved.is_file() {
                self.report(join(p, "ca_cert"), format!("{} is not a readable file", resolved.display()));
            }
            resolved
        });
        if ca_cert.is_some() && trust_server_cert {
            self.report(
                join(p, "ca_cert"),
                "set either ca_cert (verify against this CA) or trust_server_cert: true (verify nothing), not both",
            );
        }
        MssqlTls { encrypt, trust_server_cert, ca_cert }
    }

    fn source(&mut self, d: &Dict, base: &Path) -> SourceConfig {
        let p = "source";
        let kind = if d.contains_key("type") {
            self.choice(
                d,
                p,
                "type",
                &[
                    ("mssql", SourceKind::Mssql),
                    ("sqlserver", SourceKind::Mssql),
                    ("postgres", SourceKind::Postgres),
                    ("postgresql", SourceKind::Postgres),
                ],
                SourceKind::Mssql,
            )
        } else {
            self.report("source.type", "required key is missing (mssql, sqlserver, postgres or postgresql)");
            SourceKind::Mssql
        };
        let (default_port, default_schema) = match kind {
            SourceKind::Mssql => (1433, "dbo"),
            SourceKind::Postgres => (5432, "public"),
        };
        let host = self.required_string(d, p, "host");
        let port = self.port(d, p, default_port);
        let database = self.required_string(d, p, "database");
        let user = self.required_string(d, p, "user");
        let libpq =
            (kind == SourceKind::Postgres).then_some(PgLogin { host: &host, port, database: &database, user: &user });
        let credentials = self.password(d, p, base, libpq);
        let schema = self.string(d, p, "schema").unwrap_or_else(|| default_schema.to_owned());
        if schema.trim().is_empty() {
            self.report("source.schema", "must not be empty");
        }
        self.refuse_other_tls_keys(d, p, kind == SourceKind::Mssql);
        let tls = (kind == SourceKind::Postgres).then(|| self.pg_tls(d, p, base));
        let MssqlTls { encrypt, trust_server_cert, ca_cert } = self.mssql_tls(d, p, base);
        SourceConfig {
            kind,
            host,
            port,
            database,
            user,
            password: credentials.password,
            password_file: credentials.file,
            password_command: credentials.command,
            schema,
            encrypt,
            trust_server_cert,
            ca_cert,
            pg_tls: tls,
        }
    }

    fn target(&mut self, d: &Dict, base: &Path) -> TargetConfig {
        let p = "target";
        let kind = if d.contains_key("type") {
            self.choice(
                d,
                p,
                "type",
                &[
                    ("postgres", TargetKind::Postgres),
                    ("postgresql", TargetKind::Postgres),
                    ("mssql", TargetKind::Mssql),
                    ("sqlserver", TargetKind::Mssql),
                ],
                TargetKind::Postgres,
            )
        } else {
            self.report("target.type", "required key is missing (postgres, postgresql, mssql or sqlserver)");
            TargetKind::Postgres
        };
        let (default_port, default_schema) = match kind {
            TargetKind::Postgres => (5432, "public"),
            TargetKind::Mssql => (1433, "dbo"),
        };
        let host = self.required_string(d, p, "host");
        let port = self.port(d, p, default_port);
        let database = self.required_string(d, p, "database");
        let user = self.required_string(d, p, "user");
        let libpq =
            (kind == TargetKind::Postgres).then_some(PgLogin { host: &host, port, database: &database, user: &user });
        let credentials = self.password(d, p, base, libpq);
        let schema = self.string(d, p, "schema").unwrap_or_else(|| default_schema.to_owned());
        if schema.trim().is_empty() {
            self.report("target.schema", "must not be empty");
        }
        self.refuse_other_tls_keys(d, p, kind == TargetKind::Mssql);
        let (tls, mssql_tls) = match kind {
            TargetKind::Postgres => (self.pg_tls(d, p, base), None),
            TargetKind::Mssql => (PgTls::with_mode(SslMode::Prefer), Some(self.mssql_tls(d, p, base))),
        };
        TargetConfig {
            kind,
            host,
            port,
            database,
            user,
            password: credentials.password,
            password_file: credentials.file,
            password_command: credentials.command,
            schema,
            tls,
            mssql_tls,
        }
    }

    fn migration(&mut self, d: &Dict) -> MigrationConfig {
        let p = "migration";
        let u32_of = |n: Option<u64>, default: u32| n.and_then(|n| u32::try_from(n).ok()).unwrap_or(default);
        let target_mode = self.choice(
            d,
            p,
            "target_mode",
            &[
                ("drop_recreate", TargetMode::DropRecreate),
                ("truncate", TargetMode::Truncate),
                ("upsert", TargetMode::Upsert),
            ],
            TargetMode::DropRecreate,
        );
        let workers = self.tunable(d, p, "workers", PARALLELISM);
        let chunk_size = self.tunable(d, p, "chunk_size", 100..=10_000_000);
        let parallel_readers = self.tunable(d, p, "parallel_readers", PARALLELISM);
        let write_ahead_writers = self.tunable(d, p, "write_ahead_writers", PARALLELISM);
        let memory_budget_percent = self.uint(d, p, "memory_budget_percent", 1..=95).map_or(70, |n| n as u8);
        let read_ahead_buffers = self.tunable(d, p, "read_ahead_buffers", 1..=1024);
        let large_table_threshold = self.uint(d, p, "large_table_threshold", 1..=u64::MAX >> 1).unwrap_or(5_000_000);
        let max_partitions = u32_of(self.uint(d, p, "max_partitions", 1..=1024), 12);
        let min_rows_per_partition = self.uint(d, p, "min_rows_per_partition", 1..=u64::MAX >> 1).unwrap_or(200_000);
        let max_mssql_connections = self.tunable(d, p, "max_mssql_connections", POOL_SIZE);
        let max_pg_connections = self.tunable(d, p, "max_pg_connections", POOL_SIZE);
        let use_binary_copy = self.boolean(d, p, "use_binary_copy", true);
        let use_unlogged_tables = self.boolean(d, p, "use_unlogged_tables", false);
        let copy_buffer_rows = u32_of(self.uint(d, p, "copy_buffer_rows", 1..=10_000_000), 10_000);
        let upsert_batch_size = self.tunable(d, p, "upsert_batch_size", 1..=10_000_000);
        let upsert_parallel_tasks = self.tunable(d, p, "upsert_parallel_tasks", PARALLELISM);
        let include_tables = self.patterns(d, p, "include_tables");
        let exclude_tables = self.patterns(d, p, "exclude_tables");
        let identifier_case = self.choice(
            d,
            p,
            "identifier_case",
            &[
                ("preserve", IdentifierCase::Preserve),
                ("lower", IdentifierCase::Lower),
                ("snake", IdentifierCase::Snake),
            ],
            IdentifierCase::Preserve,
        );
        let type_overrides = self.type_overrides(d);
        MigrationConfig {
            target_mode,
            workers,
            chunk_size,
            parallel_readers,
            write_ahead_writers,
            memory_budget_percent,
            read_ahead_buffers,
            large_table_threshold,
            max_partitions,
            min_rows_per_partition,
            max_mssql_connections,
            max_pg_connections,
            use_binary_copy,
            use_unlogged_tables,
            copy_buffer_rows,
            upsert_batch_size,
            upsert_parallel_tasks,
            include_tables,
            exclude_tables,
            create_indexes: self.boolean(d, p, "create_indexes", true),
            create_foreign_keys: self.boolean(d, p, "create_foreign_keys", true),
            create_check_constraints: self.boolean(d, p, "create_check_constraints", true),
            analyze_after_load: self.boolean(d, p, "analyze_after_load", true),
            identifier_case,
            type_overrides,
            continue_on_error: self.boolean(d, p, "continue_on_error", false),
            max_retries: u32_of(self.uint(d, p, "max_retries", 0..=100), 3),
            reconnect_timeout: u32_of(self.uint(d, p, "reconnect_timeout", 0..=86_400), 120),
            delete_missing: match d.get("delete_missing") {
                Some(Value::Array(..)) => DeleteMissing::Tables(self.patterns(d, p, "delete_missing")),
                _ => DeleteMissing::All(self.boolean(d, p, "delete_missing", false)),
            },
            change_columns: self
                .table_settings(d, p, "change_columns", "Orders: RowVer")
                .into_iter()
                .map(|(table, column)| ChangeColumn { table, column })
                .collect(),
            upsert_keys: self
                .table_settings(d, p, "upsert_keys", "Logs: UX_Logs_Id")
                .into_iter()
                .map(|(table, index)| UpsertKey { table, index })
                .collect(),
            change_lookback: u32_of(self.uint(d, p, "change_lookback", 0..=31_536_000), 300),
        }
    }

    /// A mapping of table patterns to a name per table (`change_columns`,
    /// `upsert_keys`); `example` shows the shape in the error.
    fn table_settings(&mut self, d: &Dict, p: &str, key: &str, example: &str) -> Vec<(TablePattern, String)> {
        let full = join(p, key);
        let entries = match d.get(key) {
            None => return Vec::new(),
            Some(Value::Dict(_, entries)) => entries,
            Some(other) => {
                self.report(full, format!("must be a mapping of table to name ({example}), not {}", describe(other)));
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(entries.len());
        for (table, _) in entries.iter() {
            let Some(name) = self.string(entries, &full, table) else { continue };
            match TablePattern::new(table) {
                Ok(table) => out.push((table, name)),
                Err(e) => self.report(join(&full, table), e),
            }
        }
        out
    }

    fn type_overrides(&mut self, d: &Dict) -> Vec<Override> {
        let items = self.list(d, "migration", "type_overrides");
        let mut out: Vec<Override> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("migration.type_overrides[{i}]");
            let Value::Dict(_, entry) = item.as_ref() else {
                self.report(
                    path,
                    format!(
                        "must be a mapping with target_type and source_type or table+column, not {}",
                        describe(item)
                    ),
                );
                continue;
            };
            self.unknown_keys(entry, &path, OVERRIDE_KEYS);
            let target = match self.string(entry, &path, "target_type") {
                None => {
                    if !entry.contains_key("target_type") {
                        self.report(format!("{path}.target_type"), "required key is missing");
                    }
                    None
                }
                Some(text) => match text.parse::<PgType>() {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.report(format!("{path}.target_type"), e.to_string());
                        None
                    }
                },
            };
            let source_type = self.string(entry, &path, "source_type");
            let schema = self.string(entry, &path, "schema");
            let table = self.string(entry, &path, "table");
            let column = self.string(entry, &path, "column");
            let scope = match (source_type, table, column) {
                (Some(t), None, None) if schema.is_none() => {
                    let t = t.trim().to_owned();
                    if !MssqlType::BASE_NAMES.iter().any(|n| n.eq_ignore_ascii_case(&t))
                        && let Some(near) = closest(&t.to_ascii_lowercase(), MssqlType::BASE_NAMES)
                    {
                        self.report(
                            format!("{path}.source_type"),
                            format!("'{t}' is not a SQL Server type; did you mean {near}?"),
                        );
                        continue;
                    }
                    // Otherwise it names an alias (user-defined) type, checked against the schema later.
                    if let (Some(target), Some(representative)) = (target, representative(&t))
                        && let Err(e) = conversion(&representative, target)
                    {
                        self.report(format!("{path}.target_type"), e.to_string());
                        continue;
                    }
                    OverrideScope::SourceType(t)
                }
                (None, Some(table), Some(column)) => OverrideScope::Column { schema, table, column },
                _ => {
                    self.report(
                        path,
                        "give either source_type (every column of that type) or table and column (one column), not both and not neither",
                    );
                    continue;
                }
            };
            let Some(target) = target else { continue };
            if let Some(j) = out.iter().position(|o| o.scope == scope) {
                self.report(path, format!("repeats the scope of migration.type_overrides[{j}]"));
                continue;
            }
            out.push(Override { scope, target });
        }
        out
    }

    fn cross_checks(&mut self, c: &Config) {
        let m = &c.migration;
        let same_kind = matches!(
            (c.source.kind, c.target.kind),
            (SourceKind::Postgres, TargetKind::Postgres) | (SourceKind::Mssql, TargetKind::Mssql)
        );
        if same_kind
            && c.source.host.eq_ignore_ascii_case(&c.target.host)
            && c.source.port == c.target.port
            && c.source.database == c.target.database
            && c.source.schema == c.target.schema
        {
            self.report(
                "target.schema",
                format!(
                    "source and target are the same schema ({}.{} on {}:{}); the load would overwrite its own source",
                    c.target.database, c.target.schema, c.target.host, c.target.port
                ),
            );
        }
        if c.target.kind == TargetKind::Mssql {
            if c.source.kind == SourceKind::Postgres {
                self.report(
                    "target.type",
                    "a PostgreSQL source cannot be copied into a SQL Server target in this version \
                     (there is no PostgreSQL → SQL Server type map yet); the target of a PostgreSQL source must be \
                     PostgreSQL (postgres)",
                );
            }
            if m.use_unlogged_tables {
                self.report(
                    "migration.use_unlogged_tables",
                    "is a PostgreSQL setting; a SQL Server target has no UNLOGGED tables",
                );
            }
        }
        if m.use_unlogged_tables && m.target_mode == TargetMode::Upsert {
            self.report(
                "migration.use_unlogged_tables",
                "cannot be combined with target_mode: upsert, which keeps existing rows that a crash would lose in an UNLOGGED table",
            );
        }
        if !m.upsert_keys.is_empty() && m.target_mode != TargetMode::Upsert {
            self.report("migration.upsert_keys", "applies to target_mode: upsert only");
        }
        if !m.change_columns.is_empty() && m.target_mode != TargetMode::Upsert {
            self.report(
                "migration.change_columns",
                "applies to target_mode: upsert only (the other modes read every row anyway)",
            );
        }
        if m.delete_missing.any() && m.target_mode != TargetMode::Upsert {
            self.report(
                "migration.delete_missing",
                "applies to target_mode: upsert only (the other modes replace every row anyway)",
            );
        }
        if !m.use_binary_copy {
            self.report(
                "migration.use_binary_copy",
                "false is not supported: the tool always writes binary COPY, which is exact and about twice as fast as text",
            );
        }
        if let (Some(readers), Some(pool)) = (m.parallel_readers, m.max_mssql_connections)
            && readers > pool
        {
            self.report(
                    "migration.max_mssql_connections",
                    format!("{pool} source connections cannot serve parallel_readers: {readers}; raise it or lower parallel_readers"),
                );
        }
        if let (Some(writers), Some(pool)) = (m.write_ahead_writers, m.max_pg_connections)
            && writers > pool
        {
            self.report(
                    "migration.max_pg_connections",
                    format!("{pool} target connections cannot serve write_ahead_writers: {writers}; raise it or lower write_ahead_writers"),
                );
        }
        for (i, ex) in m.exclude_tables.iter().enumerate() {
            if m.include_tables.iter().any(|inc| inc.as_str() == ex.as_str()) {
                self.report(
                    format!("migration.exclude_tables[{i}]"),
                    format!("'{}' is also in include_tables, so it would select nothing", ex.as_str()),
                );
            }
        }
    }
}

/// A stand-in source type for checking a type override before the schema is
/// known; `None` for types whose parameters decide the answer.
fn representative(name: &str) -> Option<MssqlType> {
    let t = match name.to_ascii_lowercase().as_str() {
        "bit" => MssqlType::Bit,
        "tinyint" => MssqlType::TinyInt,
        "smallint" => MssqlType::SmallInt,
        "int" => MssqlType::Int,
        "bigint" => MssqlType::BigInt,
        "money" => MssqlType::Money,
        "smallmoney" => MssqlType::SmallMoney,
        "float" => MssqlType::Float,
        "real" => MssqlType::Real,
        "date" => MssqlType::Date,
        "datetime" => MssqlType::DateTime,
        "smalldatetime" => MssqlType::SmallDateTime,
        "text" => MssqlType::Text,
        "ntext" => MssqlType::NText,
        "image" => MssqlType::Image,
        "uniqueidentifier" => MssqlType::UniqueIdentifier,
        "xml" => MssqlType::Xml,
        "sql_variant" => MssqlType::SqlVariant,
        "hierarchyid" => MssqlType::HierarchyId,
        "geography" => MssqlType::Geography,
        "geometry" => MssqlType::Geometry,
        "rowversion" | "timestamp" => MssqlType::RowVersion,
        _ => return None,
    };
    Some(t)
}

/// The candidates closest to a mistyped word, if close enough to be a typo;
/// ties are all named ("datetime or datetime2").
fn closest(word: &str, candidates: &[&str]) -> Option<String> {
    let scored: Vec<(&str, usize)> = candidates
        .iter()
        .map(|c| (*c, strsim::damerau_levenshtein(word, c), strsim::jaro_winkler(word, c)))
        .filter(|(c, distance, similarity)| *distance <= 2.max(c.len() / 4) || *similarity >= 0.88)
        .map(|(c, distance, _)| (c, distance))
        .collect();
    let best = scored.iter().map(|(_, d)| *d).min()?;
    let names: Vec<&str> = scored.iter().filter(|(_, d)| *d == best).map(|(c, _)| *c).collect();
    Some(names.join(" or "))
}

/// "did you mean" for an unknown key: a close key in the same section, or the
/// same key in the section where it belongs.
fn suggestion(key: &str, path: &str, known: &[&str]) -> Option<String> {
    let key_lower = key.to_ascii_lowercase();
    if let Some(near) = closest(&key_lower, known) {
        return Some(near.split(" or ").map(|k| join(path, k)).collect::<Vec<_>>().join(" or "));
    }
    let sections: [(&str, &[&str]); 3] =
        [("source", SOURCE_KEYS), ("target", TARGET_KEYS), ("migration", MIGRATION_KEYS)];
    sections
        .iter()
        .filter(|(name, _)| *name != path)
        .find(|(_, keys)| keys.contains(&key_lower.as_str()))
        .map(|(name, _)| format!("{name}.{key_lower} (it belongs in the {name} section)"))
}
