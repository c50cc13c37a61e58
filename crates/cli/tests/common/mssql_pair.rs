//! A SQL Server source (the server `MSSQL_TEST_URL` names, see
//! `tests/mssql_integration.rs`) with the T-SQL edge-case fixture, a
//! throwaway target cluster, and a config between them, driven through the
//! real binary.

#![allow(dead_code)] // Each test file uses a different part.

use std::path::{Path, PathBuf};
use std::process::Command;

use mssql_pg_migrate_testkit::PgCluster;
use mssql_pg_migrate_testkit::compare::compare_tables;
use mssql_pg_migrate_testkit::mssql::{MSSQL_EDGE_CASE_TABLES, TestServer, expected_data_sql};

use super::pair::{SECRET, binary};

pub struct Setup {
    pub server: TestServer,
    pub target: PgCluster,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// Loads the fixture into `schema` and writes a config from it to a fresh
/// target cluster (schema `copy`, login `migrator` with password [`SECRET`]).
pub async fn setup(server: TestServer, schema: &str, migration: &str) -> Setup {
    server.load_edge_cases(schema).await;
    let target = PgCluster::start().unwrap();
    target.create_database("dst").await.unwrap();
    let t = target.connect("dst").await.unwrap();
    t.batch_execute(&format!("CREATE ROLE migrator LOGIN SUPERUSER PASSWORD '{SECRET}'")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("migrate.yaml");
    let text = format!(
        "{}target: {{type: postgres, host: 127.0.0.1, port: {}, database: dst, user: migrator, password: '${{DST_PW}}', \
         schema: copy, ssl_mode: disable}}\n\
         migration: {{chunk_size: 300, large_table_threshold: 1000, min_rows_per_partition: 400, max_partitions: 4, \
         max_retries: 3, {migration}}}\n",
        server.source_yaml(schema, "${SRC_PW}"),
        target.port()
    );
    std::fs::write(&config, text).unwrap();
    Setup { server, target, dir, config }
}

impl Setup {
    pub fn command(&self, state_file: Option<&Path>, args: &[&str]) -> Command {
        let mut cmd = binary(&self.config, state_file, args);
        cmd.env("SRC_PW", &self.server.password).env("DST_PW", SECRET);
        cmd
    }

    pub async fn target_scalar(&self, sql: &str) -> String {
        super::pair::target_scalar(&self.target, sql).await
    }

    pub async fn reset_target(&self, state_file: Option<&Path>) {
        super::pair::reset_target(&self.target, state_file).await;
    }

    pub async fn assert_expected_data(&self) {
        let t = self.target.connect("dst").await.unwrap();
        t.batch_execute("DROP SCHEMA IF EXISTS expected CASCADE").await.unwrap();
        t.batch_execute(&expected_data_sql("copy").unwrap()).await.unwrap();
        t.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
        if let Err(difference) = compare_tables(&t, "expected", &t, "copy", MSSQL_EDGE_CASE_TABLES).await {
            panic!("{difference}");
        }
    }
}
