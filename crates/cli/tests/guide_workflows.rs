//! The data engineer's guide's command lines, as its text gives them, run
//! in order against two throwaway clusters (a PostgreSQL source stands in
//! for SQL Server; the command lines do not change with the source).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::pair::{FAILPOINT_VAR, SECRET, Setup, setup, start_until};

/// Runs one of the guide's command lines in `dir` (where `config.yaml`
/// is). Its state file path, `/tmp/migration.state`, is moved into `dir`
/// so parallel tests do not share it.
fn guide_command(s: &Setup, dir: &Path, line: &str) -> Command {
    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| if w == "/tmp/migration.state" { dir.join("migration.state").display().to_string() } else { w.into() })
        .collect();
    assert_eq!(words[0], "mssql-pg-migrate");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mssql-pg-migrate"));
    cmd.args(&words[1..]).current_dir(dir).env("SRC_PW", s.source.password()).env("DST_PW", SECRET);
    for (name, _) in std::env::vars() {
        if name.starts_with("MSSQL_PG_MIGRATE") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn run(s: &Setup, dir: &Path, line: &str) -> Output {
    let out = guide_command(s, dir, line).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{line}:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_command_lines_work_as_written() {
    let s = setup("target_mode: drop_recreate").await;
    let dir = s.dir.path();
    std::fs::copy(&s.config, dir.join("config.yaml")).unwrap();
    let tables_in_target = || s.target_scalar("SELECT count(*)::text FROM pg_tables WHERE schemaname = 'copy'");

    run(&s, dir, "mssql-pg-migrate -c config.yaml health-check");

    run(&s, dir, "mssql-pg-migrate -c config.yaml run --dry-run");
    assert_eq!(tables_in_target().await, "0", "a dry run changes nothing");

    run(&s, dir, "mssql-pg-migrate -c config.yaml run");
    s.assert_same_data().await;

    let validated = run(&s, dir, "mssql-pg-migrate -c config.yaml validate");
    let said = String::from_utf8_lossy(&validated.stdout).into_owned();
    let tables: Vec<&str> = said.lines().filter(|l| l.starts_with("src.")).collect();
    assert_eq!(tables.len(), 13, "{said}");
    assert!(tables.iter().all(|l| l.ends_with(" ok")), "{said}");

    // "With resume capability": interrupted mid-copy, then the guide's resume line.
    s.reset_target(None).await;
    let mut interrupted =
        guide_command(&s, dir, "mssql-pg-migrate -c config.yaml --state-file /tmp/migration.state run");
    let running = start_until(interrupted.env(FAILPOINT_VAR, "mid-copy:3"), "mid-copy:3");
    let mut child = running.child;
    child.kill().unwrap();
    child.wait().unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("migration.state")).unwrap()).unwrap();
    assert_eq!(state["status"], "running");
    run(&s, dir, "mssql-pg-migrate -c config.yaml --state-file /tmp/migration.state resume");
    s.assert_same_data().await;
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("migration.state")).unwrap()).unwrap();
    assert_eq!(state["status"], "completed");

    // "JSON output for Airflow": one document on stdout.
    let out = run(&s, dir, "mssql-pg-migrate -c config.yaml --output-json run");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((doc["command"].as_str(), doc["status"].as_str()), (Some("run"), Some("success")), "{doc}");
    assert_eq!(doc["report"]["rows"], 18063, "every row of the fixture: {doc}");

    // "Debugging".
    let out = run(&s, dir, "mssql-pg-migrate -c config.yaml --verbosity debug run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("DEBUG"));
    let out = run(&s, dir, "mssql-pg-migrate -c config.yaml --log-format json run");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.lines().count() > 3, "{stderr}");
    // jq reads a stream of JSON texts; blank lines between them are whitespace to it.
    let mut records = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("`| jq` would fail on {line:?}: {e}"));
        assert!(record["level"].is_string() && record["fields"].is_object(), "{line}");
        records.push(record);
    }
    // The summary a terminal shows as a table comes as records too.
    let message = |r: &serde_json::Value| r["fields"]["message"].as_str().unwrap_or_default().to_owned();
    assert_eq!(records.iter().filter(|r| message(r) == "table summary").count(), 13, "{stderr}");
    let total = records.iter().find(|r| message(r) == "run summary").expect("a run summary record");
    assert_eq!(total["fields"]["rows"], 18063, "{total}");
    s.assert_same_data().await;
}
