//! Every configuration key, documented: what it takes, its default, and
//! what it does. docs/CONFIG.md is generated from [`KEYS`] (`cargo xtask
//! docs`), and tests keep it complete: every key the loader accepts is
//! here, and every default here is the one the loader applies.

/// One key of the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// Dotted path, as in error messages: `migration.workers`.
    pub key: &'static str,
    /// What the value is.
    pub takes: &'static str,
    /// The default, as `config` prints it; empty when the key is required
    /// or has no value unless set.
    pub default: &'static str,
    pub about: &'static str,
}

const fn key(key: &'static str, takes: &'static str, default: &'static str, about: &'static str) -> KeyDoc {
    KeyDoc { key, takes, default, about }
}

const TEXT: &str = "text";
const PATH: &str = "file path (relative to the config file)";
const COUNT: &str = "whole number or auto";

/// Every key, in the order of the guide's complete example.
pub const KEYS: &[KeyDoc] = &[
    key("source.type", "mssql (also sqlserver) or postgres (also postgresql)", "mssql", "The source database's kind."),
    key("source.host", TEXT, "", "The source server's host name or address (required)."),
    key("source.port", "1-65535", "1433", "The source server's port (5432 for postgres)."),
    key("source.database", TEXT, "", "The source database (required)."),
    key("source.user", TEXT, "", "The login (required)."),
    key(
        "source.password",
        TEXT,
        "",
        "The password; `${VAR}` reads it from the environment. One of password, password_file, password_command is required (for postgres, PGPASSWORD or ~/.pgpass may serve).",
    ),
    key("source.password_file", PATH, "", "A file whose first line is the password (a Kubernetes Secret mount, say)."),
    key(
        "source.password_command",
        "shell command",
        "",
        "A program whose first line of output is the password (vaults, cloud token helpers); run once, at load, for 30 s at most; its output is never shown.",
    ),
    key("source.schema", TEXT, "dbo", "The schema to copy (public for postgres)."),
    key(
        "source.encrypt",
        "true, false or strict",
        "true",
        "SQL Server TLS: true verifies the certificate and host name; false encrypts the login only where the server can; strict is TDS 8.0 (SQL Server 2022, Azure SQL).",
    ),
    key(
        "source.trust_server_cert",
        "true or false",
        "false",
        "SQL Server: encrypt without verifying the server's certificate (said in a warning and by health-check).",
    ),
    key(
        "source.ca_cert",
        PATH,
        "",
        "SQL Server: a CA file the server's certificate must chain to (instead of the system's roots).",
    ),
    key(
        "source.ssl_mode",
        "disable, allow, prefer, require, verify-ca or verify-full",
        "",
        "PostgreSQL source: TLS with libpq's meanings (prefer when not set).",
    ),
    key("source.ssl_root_cert", PATH, "", "PostgreSQL source: the CA file (libpq's sslrootcert)."),
    key("source.ssl_cert", PATH, "", "PostgreSQL source: a client certificate (libpq's sslcert)."),
    key("source.ssl_key", PATH, "", "PostgreSQL source: the client certificate's key (libpq's sslkey)."),
    key(
        "target.type",
        "postgres (also postgresql), mssql (also sqlserver)",
        "postgres",
        "The target database's kind. A SQL Server target takes a SQL Server source, in any mode; the run state goes in a file (--state-file) or in the target database's schema mssql_pg_migrate, as on PostgreSQL.",
    ),
    key("target.host", TEXT, "", "The target server's host name or address (required)."),
    key("target.port", "1-65535", "5432", "The target server's port (1433 for mssql)."),
    key("target.database", TEXT, "", "The target database (required)."),
    key("target.user", TEXT, "", "The login (required)."),
    key("target.password", TEXT, "", "As source.password; without any of the three, PGPASSWORD or ~/.pgpass."),
    key("target.password_file", PATH, "", "As source.password_file."),
    key("target.password_command", "shell command", "", "As source.password_command."),
    key("target.schema", TEXT, "public", "The schema the tables are created in (dbo for mssql)."),
    key(
        "target.ssl_mode",
        "disable, allow, prefer, require, verify-ca or verify-full",
        "prefer",
        "TLS with libpq's meanings: require encrypts without verifying, verify-ca checks the chain, verify-full also the host name.",
    ),
    key("target.ssl_root_cert", PATH, "", "The CA file (libpq's sslrootcert); the system's roots without it."),
    key("target.ssl_cert", PATH, "", "A client certificate (libpq's sslcert)."),
    key("target.ssl_key", PATH, "", "The client certificate's key (libpq's sslkey)."),
    key("target.encrypt", "true, false or strict", "", "SQL Server target: as source.encrypt (true when not set)."),
    key(
        "target.trust_server_cert",
        "true or false",
        "",
        "SQL Server target: as source.trust_server_cert (false when not set).",
    ),
    key("target.ca_cert", PATH, "", "SQL Server target: as source.ca_cert."),
    key(
        "migration.target_mode",
        "drop_recreate, truncate or upsert",
        "drop_recreate",
        "How existing target tables are treated (see the modes table in the README).",
    ),
    key("migration.workers", COUNT, "auto", "Tables and partitions copied at once (auto: the cores, 2 to 8)."),
    key(
        "migration.chunk_size",
        COUNT,
        "auto",
        "Rows per chunk (one read, one COPY, one commit; auto: 100000, and a PostgreSQL source's table read by \
         storage blocks takes at least 64 MiB of them a chunk).",
    ),
    key("migration.parallel_readers", COUNT, "auto", "Concurrent reads from the source (auto: the cores, 2 to 16)."),
    key(
        "migration.write_ahead_writers",
        COUNT,
        "auto",
        "Concurrent COPY streams into the target (auto: the cores, 2 to 12).",
    ),
    key("migration.memory_budget_percent", "1-95", "70", "Share of the machine's memory the buffers may use."),
    key("migration.read_ahead_buffers", COUNT, "auto", "Buffers a reader may fill ahead of its writer (auto: 4)."),
    key(
        "migration.large_table_threshold",
        "rows",
        "5000000",
        "Tables with more rows are split into key ranges read in parallel.",
    ),
    key("migration.max_partitions", "1-1024", "12", "At most this many key ranges per table."),
    key("migration.min_rows_per_partition", "rows", "200000", "Key ranges are at least this large."),
    key("migration.max_mssql_connections", COUNT, "auto", "The SQL Server pool's size (auto: readers + 2)."),
    key("migration.max_pg_connections", COUNT, "auto", "The PostgreSQL pool's size (auto: writers or workers + 2)."),
    key("migration.use_binary_copy", "true", "true", "Binary COPY, always (false is refused)."),
    key(
        "migration.use_unlogged_tables",
        "true or false",
        "false",
        "Load into UNLOGGED tables and SET LOGGED after (not with upsert).",
    ),
    key("migration.copy_buffer_rows", "rows", "10000", "Accepted for the guide's configs; buffers are sized in bytes."),
    key(
        "migration.upsert_batch_size",
        COUNT,
        "auto",
        "Upsert: rows per batch (read, staged, merged and committed together; auto: chunk_size).",
    ),
    key(
        "migration.upsert_parallel_tasks",
        COUNT,
        "auto",
        "Upsert: batches merged at once (auto: write_ahead_writers).",
    ),
    key(
        "migration.include_tables",
        "list of table patterns",
        "[]",
        "Tables to copy (`*` and `?`, case-insensitive, optionally schema.table); empty: all.",
    ),
    key("migration.exclude_tables", "list of table patterns", "[]", "Tables to leave out."),
    key("migration.create_indexes", "true or false", "true", "Build the source's indexes on the target."),
    key("migration.create_foreign_keys", "true or false", "true", "Build the source's foreign keys on the target."),
    key(
        "migration.create_check_constraints",
        "true or false",
        "true",
        "Build the source's check constraints on the target.",
    ),
    key(
        "migration.analyze_after_load",
        "true or false",
        "true",
        "ANALYZE each table once loaded (drop_recreate, truncate, and tables an upsert creates), so its copy is planned well at once.",
    ),
    key("migration.identifier_case", "preserve, lower or snake", "preserve", "How target names are spelled."),
    key(
        "migration.type_overrides",
        "list of {source_type, target_type} or {schema, table, column, target_type}",
        "[]",
        "Other target types than the default mapping (docs/TYPES.md).",
    ),
    key("migration.continue_on_error", "true or false", "false", "Skip a failing table instead of stopping the run."),
    key(
        "migration.max_retries",
        "0-100",
        "3",
        "Retries of a chunk after a deadlock, serialization failure or throttling.",
    ),
    key(
        "migration.reconnect_timeout",
        "seconds, 0-86400",
        "120",
        "How long a run waits for a server that went away (restart, failover) before exit 2.",
    ),
    key(
        "migration.delete_missing",
        "true, false or a list of table patterns",
        "false",
        "Upsert: delete target rows whose key the source no longer has.",
    ),
    key(
        "migration.change_columns",
        "mapping of table pattern to column",
        "[]",
        "Upsert: a column that rises with every change (rowversion, a date and time, an integer), so a sync reads only what changed.",
    ),
    key(
        "migration.change_lookback",
        "seconds (time columns) or values (integer columns)",
        "300",
        "Upsert: how far before the last mark a sync reads again, for rows committed late.",
    ),
    key(
        "migration.upsert_keys",
        "mapping of table pattern to index name",
        "[]",
        "Upsert: a unique index (NOT NULL columns) serving as the key of a table without a primary key.",
    ),
];

/// The environment variable that overrides `key`.
pub fn env_var(key: &str) -> String {
    crate::load::env_var_name(key)
}

/// docs/CONFIG.md.
pub fn markdown() -> String {
    let mut doc = String::from(
        "# Configuration reference\n\n\
         Generated by `cargo xtask docs` from `crates/config/src/reference.rs` (tests fail\n\
         when a key the loader accepts is missing here, when a default here is not the\n\
         loader's, or when this file is stale). Every key can also be set through its\n\
         environment variable, which wins over the file; any string may use `${VAR}` or\n\
         `${VAR:-default}`.\n",
    );
    let mut section = "";
    for k in KEYS {
        let this = k.key.split('.').next().unwrap_or_default();
        if this != section {
            section = this;
            doc.push_str(&format!("\n## {section}\n\n| key | takes | default | environment variable | what it does |\n|---|---|---|---|---|\n"));
        }
        let default = if k.default.is_empty() { String::new() } else { format!("`{}`", k.default) };
        doc.push_str(&format!(
            "| `{}` | {} | {default} | `{}` | {} |\n",
            k.key,
            k.takes.replace('|', "\\|"),
            env_var(k.key),
            k.about.replace('|', "\\|")
        ));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Loader;
    use crate::validate::{MIGRATION_KEYS, SOURCE_KEYS, TARGET_KEYS};

    #[test]
    fn every_key_the_loader_accepts_is_documented_and_nothing_else() {
        let accepted: Vec<String> = [("source", SOURCE_KEYS), ("target", TARGET_KEYS), ("migration", MIGRATION_KEYS)]
            .iter()
            .flat_map(|(section, keys)| keys.iter().map(move |k| format!("{section}.{k}")))
            .collect();
        let documented: Vec<&str> = KEYS.iter().map(|k| k.key).collect();
        let missing: Vec<&String> = accepted.iter().filter(|k| !documented.contains(&k.as_str())).collect();
        let unknown: Vec<&&str> = documented.iter().filter(|k| !accepted.iter().any(|a| a == *k)).collect();
        assert!(missing.is_empty() && unknown.is_empty(), "undocumented: {missing:?}; not keys: {unknown:?}");
    }

    #[test]
    fn every_documented_default_is_the_one_the_loader_applies() {
        let minimal = "source: {type: mssql, host: h, database: d, user: u, password: p}\n\
                       target: {type: postgres, host: h2, database: d2, user: u2, password: p2}\n";
        let config = Loader::new().load_str(minimal, "yaml").unwrap_or_else(|e| panic!("{e}"));
        let resolved = serde_json::to_value(&config).unwrap_or_default();
        let mut wrong = Vec::new();
        for k in KEYS.iter().filter(|k| !k.default.is_empty()) {
            let (section, name) = k.key.split_once('.').unwrap_or_default();
            let value = &resolved[section][name];
            let shown = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            if shown != k.default {
                wrong.push(format!("{}: documented {}, loaded {shown}", k.key, k.default));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
