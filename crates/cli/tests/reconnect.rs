//! Riding through a server restart, PostgreSQL → PostgreSQL through the
//! real binary on throwaway clusters: the target, then the source, stops
//! at once (as `pg_ctl stop -m immediate` or a failover would) while a
//! chunk is in the middle of its COPY, stays down longer than `max_retries`'
//! retries last, and comes back; the run waits for it and completes with
//! exact data. A server that stays down past `reconnect_timeout` fails the
//! run with exit 2, and `resume` completes it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use std::time::Duration;

use common::pair::{SECRET, Setup, setup, start_until};

/// Longer than the 0.5 + 1 + 2 s that `max_retries: 3` would wait.
const DOWNTIME: Duration = Duration::from_secs(6);

/// The point where the run is held while a server goes down: chunk 3 pauses
/// 1 s after its first COPY message, then goes on against the stopped server.
const MID_COPY: &str = "mid-copy:3:1000";

async fn assert_complete_copy(s: &Setup, state_file: Option<&std::path::Path>) {
    s.assert_same_data().await;
    let constraints = common::pair::key_counts(&s.target).await;
    assert_eq!(constraints, "12 3", "primary keys and foreign keys, each once");
    let status = match state_file {
        Some(path) => {
            let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            saved["status"].as_str().unwrap().to_owned()
        }
        None => s.target_scalar("SELECT state->>'status' FROM mssql_pg_migrate.runs").await,
    };
    assert_eq!(status, "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_restarted_mid_run_is_waited_for_and_the_run_completes_exactly() {
    // The state lives in the target, so its saves and the migration lock
    // also have to survive the restart.
    let mut s = setup("target_mode: drop_recreate").await;
    let running = start_until(&mut s.command(None, &["run"]), MID_COPY);
    s.target.stop_immediately();
    tokio::time::sleep(DOWNTIME).await;
    s.target.start_again().unwrap();
    let (code, stderr) = running.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains(SECRET), "the password leaked:\n{stderr}");
    assert!(stderr.contains("server unavailable; reconnecting"), "{stderr}");
    assert!(stderr.contains("migration lock taken again"), "the lock is held again after the restart:\n{stderr}");
    assert_complete_copy(&s, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restarted_mid_run_is_waited_for_and_the_run_completes_exactly() {
    let mut s = setup("target_mode: drop_recreate").await;
    let state_file = s.dir.path().join("migration.state");
    // The test clusters run with synchronous_commit = off, so a crash would
    // take the fixture's last rows with it; written out, it survives.
    s.source.connect("src").await.unwrap().batch_execute("CHECKPOINT").await.unwrap();
    let running = start_until(&mut s.command(Some(&state_file), &["run"]), MID_COPY);
    s.source.stop_immediately();
    tokio::time::sleep(DOWNTIME).await;
    s.source.start_again().unwrap();
    let (code, stderr) = running.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("server unavailable; reconnecting"), "{stderr}");
    assert!(stderr.contains("source server"), "the wait names the source:\n{stderr}");
    assert_complete_copy(&s, Some(&state_file)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_down_past_reconnect_timeout_exits_2_and_resume_completes() {
    let mut s = setup("target_mode: drop_recreate, reconnect_timeout: 3").await;
    let started = std::time::Instant::now();
    let running = start_until(&mut s.command(None, &["run"]), MID_COPY);
    s.target.stop_immediately();
    let (code, stderr) = running.wait();
    let took = started.elapsed();
    assert_eq!(code, Some(2), "a connection failure (retry later):\n{stderr}");
    assert!(
        stderr.contains("after reconnecting for 3 s; migration.reconnect_timeout sets how long a run waits"),
        "the error says how long it waited and which key waits longer:\n{stderr}"
    );
    assert!(took < Duration::from_secs(30), "gave up after the timeout, not later: {took:?}");

    s.target.start_again().unwrap();
    let (code, stdout, stderr) = s.finish(None, &["--output-json", "resume"]);
    assert_eq!(code, 0, "resume:\n{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["status"], "success");
    assert_complete_copy(&s, None).await;
}
