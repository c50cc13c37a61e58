//! The configuration examples we ship must load, and mean what they say.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use mssql_pg_migrate::config::{Loader, SourceKind, TargetMode};
use mssql_pg_migrate_tests::repo_root;

#[test]
fn the_documented_example_config_loads_with_its_stated_values() {
    let path = repo_root().join("docs/examples/config.yaml");
    let config = Loader::new()
        .with_env([("MSSQL_PASSWORD", "from-env-1"), ("POSTGRES_PASSWORD", "from-env-2")])
        .load_file(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(config.source.kind, SourceKind::Mssql);
    assert_eq!(config.source.password.expose(), "from-env-1");
    assert_eq!(config.target.password.expose(), "from-env-2");
    assert_eq!(config.migration.target_mode, TargetMode::DropRecreate);
    assert_eq!(config.migration.include_tables.len(), 2);
    assert!(config.migration.selects_table("dbo", "sales_2024"));
    assert!(!config.migration.selects_table("dbo", "sales_archive"));
    // It asks for TLS; the pool must accept that (it once refused `require`).
    assert_eq!(config.target.tls.ssl_mode, mssql_pg_migrate::config::SslMode::Require);
    let endpoint = mssql_pg_migrate::transfer::target_endpoint(&config.target);
    let pool =
        mssql_pg_migrate::transfer::pool::PgPool::new(&endpoint, mssql_pg_migrate::transfer::error::Side::Target, 1);
    assert!(pool.is_ok(), "{:?}", pool.err());
}

#[test]
fn the_example_without_its_variables_says_which_are_missing() {
    let path = repo_root().join("docs/examples/config.yaml");
    let err = Loader::new().load_file(&path).unwrap_err().to_string();
    assert!(err.contains("MSSQL_PASSWORD is not set") && err.contains("POSTGRES_PASSWORD is not set"), "{err}");
}

#[test]
fn the_fixture_configs_load_identically_in_all_three_formats() {
    let dir = repo_root().join("tests/fixtures");
    let load = |name: &str| Loader::new().load_file(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let yaml = load("pg_to_pg.yaml");
    assert_eq!(yaml, load("pg_to_pg.json"));
    assert_eq!(yaml, load("pg_to_pg.toml"));
    assert_eq!(yaml.source.kind, SourceKind::Postgres);
    assert_eq!(yaml.source.schema, "public");
    assert_eq!(yaml.target.schema, "copy");
}

#[test]
fn the_airflow_dag_is_python_and_switches_between_run_and_resume_on_the_try_number() {
    let path = repo_root().join("docs/examples/airflow/mssql_to_pg_sync.py");
    let text = std::fs::read_to_string(&path).unwrap();
    // Compiled, not run: Airflow itself is `cargo xtask airflow-it`'s.
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "{{ 'resume' if task_instance.try_number > 1 else 'run' }}",
        "--output-json --progress",
        "do_xcom_push=True",
        "--output-json validate",
        "\"retries\": 3",
    ] {
        assert!(text.contains(needle), "the DAG lost the guide's {needle:?}");
    }
}
