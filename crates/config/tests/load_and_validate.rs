//! Loading from every format, environment handling, validation reports and
//! redaction, through the public API only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use std::io::Write;

use mssql_pg_migrate_config::{
    Config, ConfigError, IdentifierCase, Loader, OverrideScope, PgType, Problems, REDACTED, SourceKind, SslMode,
    TargetMode,
};

const PASSWORD: &str = "Zq9!unmistakable-TEST-pw";

const YAML: &str = r#"
source:
  type: sqlserver
  host: mssql.example.com
  database: SourceDB
  user: sa
  password: "Zq9!unmistakable-TEST-pw"
  trust_server_cert: true
target:
  type: postgresql
  host: pg.example.com
  port: 6543
  database: target_db
  user: etl
  password: "Zq9!unmistakable-TEST-pw"
  ssl_mode: require
migration:
  target_mode: truncate
  workers: 6
  chunk_size: auto
  include_tables: ["sales_*", "inventory_*"]
  exclude_tables: ["*_archive"]
  identifier_case: snake
  type_overrides:
    - source_type: xml
      target_type: xml
    - table: Orders
      column: PlacedAt
      target_type: timestamptz(3)
"#;

const JSON: &str = r#"{
  "source": {"type": "sqlserver", "host": "mssql.example.com", "database": "SourceDB", "user": "sa",
             "password": "Zq9!unmistakable-TEST-pw", "trust_server_cert": true},
  "target": {"type": "postgresql", "host": "pg.example.com", "port": 6543, "database": "target_db",
             "user": "etl", "password": "Zq9!unmistakable-TEST-pw", "ssl_mode": "require"},
  "migration": {"target_mode": "truncate", "workers": 6, "chunk_size": "auto",
                "include_tables": ["sales_*", "inventory_*"], "exclude_tables": ["*_archive"],
                "identifier_case": "snake",
                "type_overrides": [{"source_type": "xml", "target_type": "xml"},
                                   {"table": "Orders", "column": "PlacedAt", "target_type": "timestamptz(3)"}]}
}"#;

const TOML: &str = r#"
[source]
type = "sqlserver"
host = "mssql.example.com"
database = "SourceDB"
user = "sa"
password = "Zq9!unmistakable-TEST-pw"
trust_server_cert = true

[target]
type = "postgresql"
host = "pg.example.com"
port = 6543
database = "target_db"
user = "etl"
password = "Zq9!unmistakable-TEST-pw"
ssl_mode = "require"

[migration]
target_mode = "truncate"
workers = 6
chunk_size = "auto"
include_tables = ["sales_*", "inventory_*"]
exclude_tables = ["*_archive"]
identifier_case = "snake"

[[migration.type_overrides]]
source_type = "xml"
target_type = "xml"

[[migration.type_overrides]]
table = "Orders"
column = "PlacedAt"
target_type = "timestamptz(3)"
"#;

/// A minimal valid YAML config to which tests append mistakes.
const BASE: &str = "source: {type: mssql, host: h, database: d, user: u, password: p}\n\
                    target: {type: postgres, host: h2, database: d2, user: u2, password: p2}\n";

fn problems(result: Result<Config, ConfigError>) -> Problems {
    match result {
        Err(ConfigError::Invalid(p)) => p,
        Err(other) => panic!("expected validation problems, got {other}"),
        Ok(c) => panic!("expected validation problems, got a config: {c:?}"),
    }
}

fn problem_for<'p>(p: &'p Problems, key: &str) -> &'p str {
    &p.0.iter().find(|x| x.key == key).unwrap_or_else(|| panic!("no problem for {key} in:\n{p}")).message
}

#[test]
fn the_same_config_loads_identically_from_yaml_json_and_toml() {
    let loader = Loader::new();
    let yaml = loader.load_str(YAML, "yaml").unwrap();
    let json = loader.load_str(JSON, "json").unwrap();
    let toml = loader.load_str(TOML, "toml").unwrap();
    assert_eq!(yaml, json);
    assert_eq!(yaml, toml);
    assert_eq!(yaml.fingerprint().hash, toml.fingerprint().hash);

    // And the values are the ones written, with the guide's defaults elsewhere.
    assert_eq!(yaml.source.kind, SourceKind::Mssql);
    assert_eq!(yaml.source.port, 1433);
    assert_eq!(yaml.source.schema, "dbo");
    assert!(yaml.source.encrypt.is_on() && yaml.source.trust_server_cert);
    assert_eq!(yaml.source.password.expose(), PASSWORD);
    assert_eq!(yaml.target.port, 6543);
    assert_eq!(yaml.target.schema, "public");
    assert_eq!(yaml.target.tls.ssl_mode, SslMode::Require);
    let m = &yaml.migration;
    assert_eq!(m.target_mode, TargetMode::Truncate);
    assert_eq!((m.workers, m.chunk_size, m.parallel_readers), (Some(6), None, None));
    assert_eq!(m.memory_budget_percent, 70);
    assert_eq!((m.large_table_threshold, m.max_partitions, m.min_rows_per_partition), (5_000_000, 12, 200_000));
    assert_eq!((m.copy_buffer_rows, m.upsert_batch_size, m.upsert_parallel_tasks), (10_000, None, None));
    assert!(m.use_binary_copy && !m.use_unlogged_tables);
    assert!(m.create_indexes && m.create_foreign_keys && m.create_check_constraints && m.analyze_after_load);
    assert_eq!(m.identifier_case, IdentifierCase::Snake);
    assert_eq!(m.type_overrides.len(), 2);
    assert_eq!(m.type_overrides[0].scope, OverrideScope::SourceType("xml".into()));
    assert_eq!(m.type_overrides[1].target, PgType::TimestampTz(Some(3)));
    assert!(m.selects_table("dbo", "Sales_2024"));
    assert!(!m.selects_table("dbo", "sales_archive"));
    assert!(!m.selects_table("dbo", "customers"));
}

#[test]
fn files_are_read_by_extension_and_missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("c.yaml", YAML), ("c.yml", YAML), ("c.json", JSON), ("c.toml", TOML)] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let config = Loader::new().load_file(&path).unwrap();
        assert_eq!(config.target.database, "target_db", "{name}");
    }
    let missing = dir.path().join("nope.yaml");
    let err = Loader::new().load_file(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }));
    assert!(err.to_string().contains("nope.yaml"), "{err}");

    let ini = dir.path().join("c.ini");
    std::fs::write(&ini, "x").unwrap();
    assert!(matches!(Loader::new().load_file(&ini).unwrap_err(), ConfigError::UnknownFormat { .. }));

    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "source: [unclosed\n").unwrap();
    let err = Loader::new().load_file(&broken).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("broken.yaml"), "{err}");
}

#[test]
fn variables_expand_in_any_string_with_defaults() {
    let yaml = "source: {type: mssql, host: '${SQL_HOST}', database: 'db_${ENVIRONMENT:-dev}', user: u, password: '${SA_PASSWORD}'}\n\
                target: {type: postgres, host: '${PG_HOST:-localhost}', port: '${PG_PORT}', database: d, user: u, password: 'a$$b'}\n\
                migration: {include_tables: ['${PREFIX}_*']}\n";
    let config = Loader::new()
        .with_env([("SQL_HOST", "sql7"), ("SA_PASSWORD", PASSWORD), ("PG_PORT", "15432"), ("PREFIX", "sales")])
        .load_str(yaml, "yaml")
        .unwrap();
    assert_eq!(config.source.host, "sql7");
    assert_eq!(config.source.database, "db_dev");
    assert_eq!(config.source.password.expose(), PASSWORD);
    assert_eq!(config.target.host, "localhost");
    assert_eq!(config.target.port, 15432, "an expanded string is accepted where a number is expected");
    assert_eq!(config.target.password.expose(), "a$b");
    assert_eq!(config.migration.include_tables[0].as_str(), "sales_*");

    let p = problems(Loader::new().load_str(yaml, "yaml"));
    assert!(problem_for(&p, "source.host").contains("SQL_HOST is not set"));
    assert!(problem_for(&p, "source.password").contains("SA_PASSWORD is not set"));
    assert!(problem_for(&p, "migration.include_tables[0]").contains("PREFIX"));
}

#[test]
fn environment_overrides_any_key_and_wins_over_the_file() {
    let config = Loader::new()
        .with_env([
            ("MSSQL_PG_MIGRATE__SOURCE__HOST", "override-host"),
            ("MSSQL_PG_MIGRATE__TARGET__PASSWORD", "0123"),
            ("MSSQL_PG_MIGRATE__MIGRATION__WORKERS", "3"),
            ("MSSQL_PG_MIGRATE__MIGRATION__USE_UNLOGGED_TABLES", "true"),
            ("MSSQL_PG_MIGRATE__MIGRATION__EXCLUDE_TABLES", "tmp_*, *_old"),
            (
                "MSSQL_PG_MIGRATE__MIGRATION__TYPE_OVERRIDES",
                r#"[{"source_type": "datetimeoffset", "target_type": "text"}]"#,
            ),
            ("UNRELATED_VARIABLE", "ignored"),
        ])
        .load_str(BASE, "yaml")
        .unwrap();
    assert_eq!(config.source.host, "override-host");
    assert_eq!(config.target.password.expose(), "0123", "taken literally, never as a number");
    assert_eq!(config.migration.workers, Some(3));
    assert!(config.migration.use_unlogged_tables);
    let excluded: Vec<&str> = config.migration.exclude_tables.iter().map(|p| p.as_str()).collect();
    assert_eq!(excluded, ["tmp_*", "*_old"]);
    assert_eq!(config.migration.type_overrides[0].target, PgType::Text);

    // A bad override names the variable it came from.
    let p = problems(Loader::new().with_env([("MSSQL_PG_MIGRATE__MIGRATION__WORKRS", "3")]).load_str(BASE, "yaml"));
    let problem = &p.0[0];
    assert_eq!(problem.key, "migration.workrs");
    assert!(problem.message.contains("did you mean migration.workers?"), "{problem}");
    assert_eq!(problem.origin.as_deref(), Some("environment variable MSSQL_PG_MIGRATE__MIGRATION__WORKRS"));
}

#[test]
fn password_file_is_an_alternative_to_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("sa.secret")).unwrap();
    writeln!(f, "{PASSWORD}").unwrap();
    let yaml = "source: {type: mssql, host: h, database: d, user: u, password_file: sa.secret}\n\
                target: {type: postgres, host: h2, database: d2, user: u2, password_file: missing.secret}\n";
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let p = problems(Loader::new().load_file(&path));
    assert_eq!(p.0.len(), 1, "{p}");
    assert!(problem_for(&p, "target.password_file").contains("missing.secret"));

    std::fs::write(dir.path().join("missing.secret"), "pg-pass\r\n").unwrap();
    let config = Loader::new().load_file(&path).unwrap();
    assert_eq!(config.source.password.expose(), PASSWORD, "relative to the config file, newline trimmed");
    assert_eq!(config.target.password.expose(), "pg-pass");

    let both = "source: {type: mssql, host: h, database: d, user: u, password: x, password_file: /x}\n\
                target: {type: postgres, host: h2, database: d2, user: u2}\n";
    let p = problems(Loader::new().load_str(both, "yaml"));
    assert!(problem_for(&p, "source.password_file").contains("set only one of password, password_file"));
    let missing = problem_for(&p, "target.password");
    assert!(missing.contains("password_file") && missing.contains("password_command"), "{missing}");
    assert!(missing.contains("PGPASSWORD"), "a PostgreSQL server also takes libpq's places: {missing}");
}

#[test]
fn password_command_gives_its_first_line_and_a_failure_names_the_key_without_its_output() {
    let yaml = "source: {type: mssql, host: h, database: d, user: u, password_command: \"printf 'from-%s\\\\nrest' vault\"}\n\
                target: {type: postgres, host: h2, database: d2, user: u2, password: x}\n";
    let config = Loader::new().load_str(yaml, "yaml").unwrap();
    assert_eq!(config.source.password.expose(), "from-vault");
    let shown = serde_json::to_string(&config).unwrap();
    assert!(!shown.contains("from-vault"), "{shown}");
    assert!(shown.contains("password_command"), "the command (not a secret) is shown: {shown}");

    let failing = "source: {type: mssql, host: h, database: d, user: u, password_command: 'echo s3cret; exit 7'}\n\
                   target: {type: postgres, host: h2, database: d2, user: u2, password: x, password_command: 'true'}\n";
    let p = problems(Loader::new().load_str(failing, "yaml"));
    let why = problem_for(&p, "source.password_command");
    assert!(why.contains("exit status: 7") && !why.contains("s3cret"), "{why}");
    assert!(problem_for(&p, "target.password_command").contains("set only one of password, password_command"));
}

#[test]
fn a_postgresql_server_without_a_password_takes_pgpassword_then_the_password_file() {
    let yaml = "source: {type: postgres, host: src.example, database: shop, user: reader}\n\
                target: {type: postgres, host: db.example, port: 6432, database: dw, user: etl}\n";
    let config = Loader::new().with_env([("PGPASSWORD", "from-env")]).load_str(yaml, "yaml").unwrap();
    assert_eq!((config.source.password.expose(), config.target.password.expose()), ("from-env", "from-env"));

    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(&pgpass, "db.example:6432:dw:etl:target-secret\n*:*:shop:reader:source-secret\n").unwrap();
    let file = pgpass.to_str().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = problems(Loader::new().with_env([("PGPASSFILE", file)]).load_str(yaml, "yaml"));
        assert!(problem_for(&p, "target.password").contains("chmod 0600"), "{p}");
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = Loader::new().with_env([("PGPASSFILE", file)]).load_str(yaml, "yaml").unwrap();
    assert_eq!(config.target.password.expose(), "target-secret");
    assert_eq!(config.source.password.expose(), "source-secret");

    // SQL Server logins are not libpq's: no fallback there.
    let mssql = "source: {type: mssql, host: h, database: d, user: u}\ntarget: {type: postgres, host: h, database: d, user: u, password: x}\n";
    let p = problems(Loader::new().with_env([("PGPASSWORD", "from-env")]).load_str(mssql, "yaml"));
    assert!(!problem_for(&p, "source.password").contains("PGPASSWORD"));
}

#[test]
fn each_kind_of_validation_error_names_its_key_and_reason() {
    let cases: &[(&str, &str, &str)] = &[
        // unknown keys, with suggestions
        ("migration: {chunk_sise: 10}", "migration.chunk_sise", "did you mean migration.chunk_size?"),
        ("migration: {host: x}", "migration.host", "it belongs in the"),
        ("workers: 3", "workers", "did you mean migration.workers"),
        // wrong types
        ("migration: {workers: many}", "migration.workers", "whole number"),
        ("migration: {create_indexes: maybe}", "migration.create_indexes", "true or false"),
        ("migration: {include_tables: {a: b}}", "migration.include_tables", "must be a list"),
        ("migration: [1, 2]", "migration", "must be a mapping"),
        ("migration: {memory_budget_percent: 12.5}", "migration.memory_budget_percent", "whole number"),
        // out of range
        ("migration: {memory_budget_percent: 99}", "migration.memory_budget_percent", "out of range: allowed 1..=95"),
        ("migration: {workers: 0}", "migration.workers", "out of range"),
        ("migration: {max_partitions: -3}", "migration.max_partitions", "out of range"),
        ("migration: {reconnect_timeout: 90000}", "migration.reconnect_timeout", "out of range: allowed 0..=86400"),
        ("migration: {reconnect_timeout: 2m}", "migration.reconnect_timeout", "whole number"),
        // bad choices
        ("migration: {target_mode: truncte}", "migration.target_mode", "did you mean truncate?"),
        ("migration: {identifier_case: upper}", "migration.identifier_case", "preserve, lower, snake"),
        // type overrides
        (
            "migration: {type_overrides: [{source_type: int, target_type: smallint}]}",
            "migration.type_overrides[0].target_type",
            "may not fit",
        ),
        (
            "migration: {type_overrides: [{source_type: datetime3, target_type: text}]}",
            "migration.type_overrides[0].source_type",
            "did you mean datetime or datetime2?",
        ),
        (
            "migration: {type_overrides: [{source_type: xml, target_type: 'text; drop table x'}]}",
            "migration.type_overrides[0].target_type",
            "not a target type",
        ),
        (
            "migration: {type_overrides: [{source_type: xml, table: t, column: c, target_type: text}]}",
            "migration.type_overrides[0]",
            "not both",
        ),
        // contradictions
        ("migration: {use_unlogged_tables: true, target_mode: upsert}", "migration.use_unlogged_tables", "upsert"),
        (
            "migration: {parallel_readers: 8, max_mssql_connections: 4}",
            "migration.max_mssql_connections",
            "parallel_readers: 8",
        ),
        (
            "migration: {write_ahead_writers: 9, max_pg_connections: 2}",
            "migration.max_pg_connections",
            "write_ahead_writers: 9",
        ),
        (
            "migration: {include_tables: [a*], exclude_tables: [a*]}",
            "migration.exclude_tables[0]",
            "also in include_tables",
        ),
        ("migration: {use_binary_copy: false}", "migration.use_binary_copy", "not supported"),
        ("migration: {delete_missing: true}", "migration.delete_missing", "target_mode: upsert only"),
        ("migration: {target_mode: upsert, delete_missing: maybe}", "migration.delete_missing", "true or false"),
    ];
    for (extra, key, fragment) in cases {
        let text = format!("{BASE}{extra}\n");
        let p = problems(Loader::new().load_str(&text, "yaml"));
        let message = problem_for(&p, key);
        assert!(message.contains(fragment), "{extra}: {key}: {message:?} lacks {fragment:?}");
    }

    // Missing required keys and sections.
    let p = problems(Loader::new().load_str("source: {type: mssql, host: h}\n", "yaml"));
    for key in ["source.database", "source.user", "source.password", "target"] {
        assert!(problem_for(&p, key).contains("missing"), "{key}: {p}");
    }

    // A PostgreSQL source that is the target itself.
    let same = "source: {type: postgres, host: db, database: app, user: u, password: p}\n\
                target: {type: postgres, host: DB, database: app, user: u, password: p}\n";
    let p = problems(Loader::new().load_str(same, "yaml"));
    assert!(problem_for(&p, "target.schema").contains("overwrite its own source"));
}

#[test]
fn three_mistakes_yield_one_report_listing_all_three() {
    let yaml = "source: {type: mssql, host: h, database: d, user: u, password: p, port: 70000}\n\
                target: {type: postgres, host: h2, database: d2, user: u2, password: p2, ssl_mode: sometimes}\n\
                migration: {wokers: 4}\n";
    let p = problems(Loader::new().load_str(yaml, "yaml"));
    let keys: Vec<&str> = p.0.iter().map(|x| x.key.as_str()).collect();
    assert_eq!(keys, ["migration.wokers", "source.port", "target.ssl_mode"], "{p}");
    let report = p.to_string();
    assert!(report.starts_with("3 problems in the configuration:"), "{report}");
    assert!(report.contains("source.port: 70000 is out of range: allowed 1..=65535"), "{report}");
    assert!(report.contains("did you mean migration.workers?"), "{report}");
    assert!(report.contains("\"sometimes\" is not one of: disable, allow, prefer, require"), "{report}");
}

#[test]
fn a_key_given_twice_is_refused_by_name_not_resolved_silently() {
    // A parser keeps the last value; which mode runs must not hang on that.
    let yaml = format!("{BASE}migration: {{target_mode: upsert, workers: 2, target_mode: drop_recreate}}\n");
    let p = problems(Loader::new().load_str(&yaml, "yaml"));
    let keys: Vec<&str> = p.0.iter().map(|x| x.key.as_str()).collect();
    assert_eq!(keys, ["migration.target_mode"], "{p}");
    assert!(problem_for(&p, "migration.target_mode").contains("more than once in the same mapping"), "{p}");

    let json = r#"{"source": {"type": "mssql", "host": "h", "database": "d", "user": "u", "password": "p",
                   "host": "h2"},
                   "target": {"type": "postgres", "host": "h2", "database": "d2", "user": "u2", "password": "p2"}}"#;
    let p = problems(Loader::new().load_str(json, "json"));
    assert_eq!(p.0.iter().map(|x| x.key.as_str()).collect::<Vec<_>>(), ["source.host"], "{p}");

    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    write!(file, "{BASE}migration:\n  workers: 2\n  workers: 4\n").unwrap();
    let p = problems(Loader::new().load_file(file.path()));
    let problem = &p.0[0];
    assert_eq!(problem.key, "migration.workers");
    assert_eq!(problem.origin.as_deref(), Some(file.path().display().to_string().as_str()), "names the file");

    // TOML refuses a repeated key itself, as a syntax error.
    let toml = "[source]\ntype = 'mssql'\nhost = 'h'\nhost = 'h2'\n";
    assert!(matches!(Loader::new().load_str(toml, "toml"), Err(ConfigError::Syntax { .. })));
}

#[test]
fn secrets_never_appear_in_debug_display_or_json() {
    let config = Loader::new().load_str(YAML, "yaml").unwrap();
    let debug = format!("{config:?}");
    let pretty = format!("{config:#?}");
    let json = serde_json::to_string(&config).unwrap();
    let yaml = serde_yaml_ng::to_string(&config).unwrap();
    let fingerprint = serde_json::to_string(&config.fingerprint()).unwrap();
    let display = format!("{} {}", config.source.password, config.target.password);
    for (what, text) in [
        ("debug", &debug),
        ("pretty", &pretty),
        ("json", &json),
        ("yaml", &yaml),
        ("fingerprint", &fingerprint),
        ("display", &display),
    ] {
        assert!(!text.contains(PASSWORD), "{what} leaks the password: {text}");
        assert!(!text.contains("unmistakable"), "{what} leaks part of the password");
    }
    assert!(json.contains(REDACTED) && debug.contains(REDACTED));
    assert!(!fingerprint.contains(REDACTED), "secrets are not even hashed in redacted form");

    // Nor in error reports: a malformed password, a number for a password, a bad reference.
    let bad = format!(
        "source: {{type: mssql, host: h, database: d, user: u, password: '{PASSWORD}${{oops'}}\n\
         target: {{type: postgres, host: h2, database: d2, user: u2, password: 98765432123}}\n\
         migration: {{workers: 1}}\n"
    );
    let err = Loader::new().load_str(&bad, "yaml").unwrap_err();
    let report = format!("{err} {err:?}");
    assert!(!report.contains("unmistakable") && !report.contains("98765432123"), "{report}");
    assert!(report.contains("source.password") && report.contains("target.password"), "{report}");
}

#[test]
fn the_fingerprint_ignores_secrets_and_tuning_but_names_what_changed() {
    let base = Loader::new().load_str(YAML, "yaml").unwrap();
    let mut tuned = base.clone();
    tuned.migration.workers = Some(1);
    tuned.migration.chunk_size = Some(1000);
    tuned.source.password = mssql_pg_migrate_config::Secret::new("rotated");
    assert_eq!(base.fingerprint().hash, tuned.fingerprint().hash);
    assert!(base.fingerprint().hash.starts_with("sha256:") && base.fingerprint().hash.len() == 71);

    let mut changed = base.clone();
    changed.migration.target_mode = TargetMode::DropRecreate;
    changed.target.schema = "staging".into();
    assert_ne!(base.fingerprint().hash, changed.fingerprint().hash);
    assert_eq!(base.fingerprint().changed_keys(&changed.fingerprint()), ["migration.target_mode", "target.schema"]);
    // Stable across processes: rebuilding from the canonical document gives the same hash.
    let again = mssql_pg_migrate_config::Fingerprint::from_canonical(base.fingerprint().canonical);
    assert_eq!(again.hash, base.fingerprint().hash);
}

#[test]
fn tls_settings_take_libpq_modes_and_name_unusable_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not checked at load").unwrap();
    let yaml = "source: {type: mssql, host: h, database: d, user: u, password: x}\n\
                target: {type: postgres, host: h2, database: d2, user: u2, password: y, ssl_mode: verify-full, \
                ssl_root_cert: ca.pem}\n";
    let path = dir.path().join("tls.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = Loader::new().load_file(&path).unwrap();
    assert_eq!(config.target.tls.ssl_mode, mssql_pg_migrate_config::SslMode::VerifyFull);
    assert_eq!(
        config.target.tls.ssl_root_cert.as_deref(),
        Some(dir.path().join("ca.pem").as_path()),
        "relative to the file"
    );

    let ca = dir.path().join("ca.pem");
    let half = yaml.replace("ssl_root_cert: ca.pem", &format!("ssl_cert: '{}'", ca.display()));
    let p = problems(Loader::new().load_str(&half, "yaml"));
    assert!(problem_for(&p, "target.ssl_cert").contains("set both ssl_cert and ssl_key"), "{p}");
    let missing = yaml.replace("ssl_root_cert: ca.pem", "ssl_root_cert: /nonexistent/ca.pem");
    let p = problems(Loader::new().load_str(&missing, "yaml"));
    assert!(problem_for(&p, "target.ssl_root_cert").contains("/nonexistent/ca.pem"), "{p}");
    let unknown = yaml.replace("verify-full", "verify_everything");
    let p = problems(Loader::new().load_str(&unknown, "yaml"));
    assert!(problem_for(&p, "target.ssl_mode").contains("verify-ca"), "the allowed values are listed: {p}");
}

#[test]
fn sql_server_encryption_takes_strict_and_a_ca_but_not_a_ca_with_trust() {
    let base = "target: {type: postgres, host: h, database: d, user: u, password: x}\n";
    let strict =
        format!("source: {{type: mssql, host: h, database: d, user: u, password: x, encrypt: strict}}\n{base}");
    let config = Loader::new().load_str(&strict, "yaml").unwrap();
    assert_eq!(config.source.encrypt, mssql_pg_migrate_config::Encrypt::Strict);
    assert_eq!(serde_json::to_value(&config.source).unwrap()["encrypt"], "strict", "printed as written");
    let plain = Loader::new().load_str(&strict.replace("strict", "false"), "yaml").unwrap();
    assert_eq!(serde_json::to_value(&plain.source).unwrap()["encrypt"], false);

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "pem").unwrap();
    let both = format!(
        "source: {{type: mssql, host: h, database: d, user: u, password: x, ca_cert: '{}', trust_server_cert: true}}\n{base}",
        ca.display()
    );
    let p = problems(Loader::new().load_str(&both, "yaml"));
    assert!(problem_for(&p, "source.ca_cert").contains("not both"), "{p}");
}

#[test]
fn each_source_type_takes_its_own_tls_settings_and_names_the_others() {
    let target = "target: {type: postgres, host: h2, database: d2, user: u, password: x}\n";
    let pg =
        format!("source: {{type: postgres, host: h, database: d, user: u, password: x, ssl_mode: require}}\n{target}");
    let config = Loader::new().load_str(&pg, "yaml").unwrap();
    assert_eq!(config.source.pg_tls.map(|t| t.ssl_mode), Some(mssql_pg_migrate_config::SslMode::Require));

    let mixed = pg.replace("ssl_mode: require", "ssl_mode: require, trust_server_cert: true");
    let p = problems(Loader::new().load_str(&mixed, "yaml"));
    assert!(problem_for(&p, "source.trust_server_cert").contains("ssl_mode, ssl_root_cert"), "{p}");
    let mssql = pg.replacen("type: postgres", "type: mssql", 1);
    let p = problems(Loader::new().load_str(&mssql, "yaml"));
    assert!(problem_for(&p, "source.ssl_mode").contains("encrypt, trust_server_cert and ca_cert"), "{p}");
    let sql_server = Loader::new().load_str(&mssql.replace(", ssl_mode: require", ""), "yaml").unwrap();
    assert_eq!(sql_server.source.pg_tls, None, "no libpq settings for SQL Server");
}

#[test]
fn reconnect_timeout_defaults_to_two_minutes_and_a_resume_may_change_it() {
    let config = Loader::new().load_str(BASE, "yaml").unwrap();
    assert_eq!(config.migration.reconnect_timeout, 120);
    let longer = Loader::new().load_str(&format!("{BASE}migration: {{reconnect_timeout: 600}}\n"), "yaml").unwrap();
    assert_eq!(longer.migration.reconnect_timeout, 600);
    // A tuning knob: an interrupted run resumes under a longer wait.
    assert_eq!(config.fingerprint().hash, longer.fingerprint().hash);
    let never = Loader::new().load_str(&format!("{BASE}migration: {{reconnect_timeout: 0}}\n"), "yaml").unwrap();
    assert_eq!(never.migration.reconnect_timeout, 0);
}

#[test]
fn the_configuration_reference_is_generated_from_the_documented_keys() {
    mssql_pg_migrate_testkit::check_generated("docs/CONFIG.md", &mssql_pg_migrate_config::reference::markdown());
}

#[test]
fn a_sql_server_target_takes_its_own_defaults_and_tls_keys() {
    for kind in ["mssql", "SQLServer"] {
        let yaml = format!(
            "source: {{type: mssql, host: h, database: d, user: u, password: p}}\n\
             target: {{type: {kind}, host: h2, database: d2, user: u2, password: p2, trust_server_cert: true}}\n"
        );
        let config = Loader::new().load_str(&yaml, "yaml").unwrap();
        assert_eq!(config.target.kind, mssql_pg_migrate_config::TargetKind::Mssql);
        assert_eq!((config.target.port, config.target.schema.as_str()), (1433, "dbo"));
        let tls = config.target.mssql_tls.as_ref().unwrap();
        assert_eq!((tls.encrypt, tls.trust_server_cert), (mssql_pg_migrate_config::Encrypt::On, true));
    }
}

#[test]
fn a_sql_server_target_refuses_what_it_cannot_do_naming_the_key() {
    let mssql_target = "target: {type: mssql, host: h2, database: d2, user: u2, password: p2, ssl_mode: require}\n";
    let yaml = format!(
        "source: {{type: postgres, host: h, database: d, user: u, password: p}}\n{mssql_target}\
         migration: {{target_mode: upsert, change_columns: {{'dbo.t': c}}, delete_missing: true}}\n"
    );
    let p = problems(Loader::new().load_str(&yaml, "yaml"));
    assert!(
        problem_for(&p, "target.type").contains("a PostgreSQL source cannot be copied into a SQL Server target"),
        "{p}"
    );
    assert!(p.0.iter().all(|x| x.key != "migration.change_columns"), "incremental reads are allowed: {p}");
    assert!(p.0.iter().all(|x| x.key != "migration.delete_missing"), "deletes are allowed: {p}");
    assert!(p.0.iter().all(|x| x.key != "migration.target_mode"), "upsert itself is allowed: {p}");
    assert!(problem_for(&p, "target.ssl_mode").contains("is not a setting of this target type"), "{p}");
    let same = "source: {type: mssql, host: h, database: d, user: u, password: p}\n\
                target: {type: mssql, host: H, database: d, user: u, password: p}\n";
    let p = problems(Loader::new().load_str(same, "yaml"));
    assert!(problem_for(&p, "target.schema").contains("overwrite its own source"), "{p}");
}
