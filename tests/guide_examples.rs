//! The data engineer's guide's configuration examples, as its text gives
//! them, load and mean what the guide says. (The CLI examples run in
//! `crates/cli/tests/guide_workflows.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use mssql_pg_migrate::config::{Encrypt, Loader, SourceKind, SslMode, TargetKind, TargetMode};

/// "Complete Configuration Example", verbatim.
const GUIDE_CONFIG: &str = r#"# Source database connection
source:
  type: mssql                    # Required: "mssql" or "sqlserver"
  host: mssql.example.com        # Required: hostname or IP
  port: 1433                     # Optional: default 1433
  database: SourceDB             # Required: database name
  user: sa                       # Required: username
  password: "YourPassword"       # Required: password
  schema: dbo                    # Optional: default "dbo"
  encrypt: true                  # Optional: default true
  trust_server_cert: false       # Optional: default false (set true for dev)

# Target database connection
target:
  type: postgres                 # Required: "postgres" or "postgresql"
  host: postgres.example.com     # Required: hostname or IP
  port: 5432                     # Optional: default 5432
  database: target_db            # Required: database name
  user: postgres                 # Required: username
  password: "YourPassword"       # Required: password
  schema: public                 # Optional: default "public"
  ssl_mode: require              # Optional: disable, allow, prefer, require

# Migration settings
migration:
  # Transfer mode
  target_mode: upsert            # drop_recreate, truncate, or upsert

  # Worker parallelism (auto-tuned if not set)
  workers: 4                     # Parallel table transfers
  chunk_size: 50000              # Rows per transfer batch
  parallel_readers: 8            # Reader tasks per large table
  write_ahead_writers: 4         # Parallel writer tasks

  # Memory management
  memory_budget_percent: 70      # % of RAM for buffers
  read_ahead_buffers: 8          # Pipeline buffer chunks

  # Large table partitioning
  large_table_threshold: 5000000 # Rows to trigger partitioning
  max_partitions: 12             # Maximum partitions per table
  min_rows_per_partition: 200000 # Minimum rows per partition

  # Connection pooling
  max_mssql_connections: 50      # MSSQL pool size
  max_pg_connections: 40         # PostgreSQL pool size

  # PostgreSQL optimization
  use_binary_copy: true          # Binary COPY format (~2x faster)
  use_unlogged_tables: false     # UNLOGGED mode (faster, not crash-safe)
  copy_buffer_rows: 10000        # COPY flush threshold

  # Upsert mode settings
  upsert_batch_size: 2000        # Rows per upsert batch
  upsert_parallel_tasks: 4       # Parallel upsert operations

  # Table filtering (glob patterns)
  include_tables:                # Empty = all tables
    - "sales_*"
    - "inventory_*"
  exclude_tables:
    - "*_archive"
    - "temp_*"

  # Schema objects
  create_indexes: true           # Create non-PK indexes
  create_foreign_keys: true      # Create foreign key constraints
  create_check_constraints: true # Create check constraints
"#;

/// "Environment Variable Support", verbatim.
const GUIDE_ENVIRONMENT: &str = r#"source:
  password: ${MSSQL_PASSWORD}

target:
  password: ${POSTGRES_PASSWORD}
"#;

#[test]
fn the_complete_configuration_example_loads_with_every_value_it_states() {
    let config = Loader::new().with_env(Vec::<(String, String)>::new()).load_str(GUIDE_CONFIG, "yaml").unwrap();
    let s = &config.source;
    assert_eq!(s.kind, SourceKind::Mssql);
    assert_eq!(
        (s.host.as_str(), s.port, s.database.as_str(), s.user.as_str()),
        ("mssql.example.com", 1433, "SourceDB", "sa")
    );
    assert_eq!(s.password.expose(), "YourPassword");
    assert_eq!((s.schema.as_str(), s.encrypt, s.trust_server_cert), ("dbo", Encrypt::On, false));
    let t = &config.target;
    assert_eq!(t.kind, TargetKind::Postgres);
    assert_eq!(
        (t.host.as_str(), t.port, t.database.as_str(), t.user.as_str()),
        ("postgres.example.com", 5432, "target_db", "postgres")
    );
    assert_eq!((t.password.expose(), t.schema.as_str(), t.tls.ssl_mode), ("YourPassword", "public", SslMode::Require));
    let m = &config.migration;
    assert_eq!(m.target_mode, TargetMode::Upsert);
    assert_eq!(
        (m.workers, m.chunk_size, m.parallel_readers, m.write_ahead_writers),
        (Some(4), Some(50000), Some(8), Some(4))
    );
    assert_eq!((m.memory_budget_percent, m.read_ahead_buffers), (70, Some(8)));
    assert_eq!((m.large_table_threshold, m.max_partitions, m.min_rows_per_partition), (5_000_000, 12, 200_000));
    assert_eq!((m.max_mssql_connections, m.max_pg_connections), (Some(50), Some(40)));
    assert_eq!((m.use_binary_copy, m.use_unlogged_tables, m.copy_buffer_rows), (true, false, 10000));
    assert_eq!((m.upsert_batch_size, m.upsert_parallel_tasks), (Some(2000), Some(4)));
    let patterns =
        |p: &[mssql_pg_migrate::config::TablePattern]| p.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(patterns(&m.include_tables), ["sales_*", "inventory_*"]);
    assert_eq!(patterns(&m.exclude_tables), ["*_archive", "temp_*"]);
    assert!(m.selects_table("dbo", "sales_2024") && m.selects_table("dbo", "inventory_eu"));
    assert!(!m.selects_table("dbo", "sales_archive") && !m.selects_table("dbo", "orders"));
    assert!(m.create_indexes && m.create_foreign_keys && m.create_check_constraints);
}

#[test]
fn the_environment_variable_example_fills_both_passwords() {
    // The guide's fragment in place of the two passwords of its complete example.
    let text = GUIDE_CONFIG.lines().filter(|l| !l.trim_start().starts_with("password:")).collect::<Vec<_>>().join("\n");
    let without = Loader::new()
        .with_env([("MSSQL_PASSWORD", "from-env-1"), ("POSTGRES_PASSWORD", "from-env-2")])
        .load_str(&format!("{text}\n"), "yaml");
    assert!(without.is_err(), "without the fragment, the passwords are missing");
    let merged = text.replacen("source:\n", "source:\n  password: ${MSSQL_PASSWORD}\n", 1).replacen(
        "target:\n",
        "target:\n  password: ${POSTGRES_PASSWORD}\n",
        1,
    );
    assert!(
        GUIDE_ENVIRONMENT.contains("password: ${MSSQL_PASSWORD}")
            && GUIDE_ENVIRONMENT.contains("password: ${POSTGRES_PASSWORD}")
    );
    let config = Loader::new()
        .with_env([("MSSQL_PASSWORD", "from-env-1"), ("POSTGRES_PASSWORD", "from-env-2")])
        .load_str(&merged, "yaml")
        .unwrap();
    assert_eq!(config.source.password.expose(), "from-env-1");
    assert_eq!(config.target.password.expose(), "from-env-2");
    let unset =
        Loader::new().with_env(Vec::<(String, String)>::new()).load_str(&merged, "yaml").unwrap_err().to_string();
    assert!(unset.contains("MSSQL_PASSWORD is not set") && unset.contains("POSTGRES_PASSWORD is not set"), "{unset}");
}
