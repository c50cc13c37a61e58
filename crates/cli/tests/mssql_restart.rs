//! Riding through a SQL Server restart, through the real binary: the test
//! TDS server stops at once while a chunk is in the middle of its COPY,
//! stays down longer than `max_retries`' retries last, and comes back; the
//! run waits and completes with the fixture's exact values. Then a server
//! that stays down past `reconnect_timeout`: exit 2, and `resume` completes.
//!
//! A file of its own: it stops the server every SQL Server test shares,
//! and cargo runs one test binary at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use std::time::Duration;

use common::mssql_pair::{Setup, setup};
use common::pair::{finish, start_until};
use mssql_pg_migrate_testkit::mssql::{RestartableServer, TestServer};

/// Longer than the 0.5 + 1 + 2 s that `max_retries: 3` would wait.
const DOWNTIME: Duration = Duration::from_secs(6);

async fn assert_complete_copy(s: &Setup, state_file: &std::path::Path) {
    s.assert_expected_data().await;
    let constraints = common::pair::key_counts(&s.target).await;
    assert_eq!(constraints, "12 3", "primary keys and foreign keys, each once");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(state_file).unwrap()).unwrap();
    assert_eq!(saved["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_server_restarted_mid_run_is_waited_for_and_one_down_too_long_exits_2_then_resumes() {
    const NAME: &str = "a_sql_server_restarted_mid_run_is_waited_for_and_one_down_too_long_exits_2_then_resumes";
    let Some(server) = TestServer::from_env(NAME) else { return };
    let Some(control) = RestartableServer::from_env(NAME) else { return };
    let s = setup(server, "mpm_cli_restart", "target_mode: drop_recreate").await;
    let state_file = s.dir.path().join("migration.state");

    let running = start_until(&mut s.command(Some(&state_file), &["run"]), "mid-copy:3:1000");
    control.stop().unwrap();
    tokio::time::sleep(DOWNTIME).await;
    control.start().unwrap();
    let (code, stderr) = running.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("server unavailable; reconnecting"), "{stderr}");
    assert!(stderr.contains("source server"), "the wait names the source:\n{stderr}");
    assert_complete_copy(&s, &state_file).await;

    // Down for good, as far as a 3 s reconnect_timeout can tell.
    s.reset_target(Some(&state_file)).await;
    let text =
        std::fs::read_to_string(&s.config).unwrap().replace("max_retries: 3", "max_retries: 3, reconnect_timeout: 3");
    std::fs::write(&s.config, text).unwrap();
    let running = start_until(&mut s.command(Some(&state_file), &["run"]), "mid-copy:3:500");
    control.stop().unwrap();
    let (code, stderr) = running.wait();
    control.start().unwrap();
    assert_eq!(code, Some(2), "a connection failure (retry later):\n{stderr}");
    assert!(stderr.contains("migration.reconnect_timeout sets how long a run waits"), "{stderr}");
    let (code, stdout, stderr) = finish(&mut s.command(Some(&state_file), &["--output-json", "resume"]));
    assert_eq!(code, 0, "resume:\n{stdout}\n{stderr}");
    assert_complete_copy(&s, &state_file).await;
}
