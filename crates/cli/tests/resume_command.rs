//! Interruption and resume through the real binary, PostgreSQL → PostgreSQL
//! on throwaway clusters: SIGKILL at named steps (failpoints), SIGTERM, a
//! target session killed mid-COPY, damaged state and changed configuration.
//! After every resume the target is compared with the source value by value.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::pair::{Running, SECRET, setup, start_until};

fn sigkill(mut running: Running) {
    running.child.kill().unwrap(); // SIGKILL on Unix
    running.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_twelve_points_then_resume_gives_exact_data() {
    let s = setup("target_mode: drop_recreate").await;
    let state_file = s.dir.path().join("migration.state");
    // (failpoint, whether the state is a file or lives in the target database)
    let points: &[(&str, bool)] = &[
        ("catalog-read", true),
        ("target-prepared", false),
        ("planned", true),
        ("mid-copy:3", true),
        ("mid-copy:6", false),
        ("before-commit:5", true),
        ("before-commit:2", false),
        ("after-commit:4", true), // committed, state not yet written
        ("after-commit:9", false),
        ("chunk-saved:7", false),
        ("finalize-step:3", true),
        ("finalize-step:1", false),
    ];
    for &(point, use_file) in points {
        let file = use_file.then_some(state_file.as_path());
        s.reset_target(file).await;
        sigkill(start_until(&mut s.command(file, &["run"]), point));

        let (code, stdout, stderr) = s.finish(file, &["--output-json", "resume"]);
        assert_eq!(code, 0, "resume after SIGKILL at {point}:\n{stdout}\n{stderr}");
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        common::assert_matches_schema("output.schema.json", &doc);
        assert_eq!(doc["command"], "resume");
        assert_eq!(doc["status"], "success", "{point}");
        s.assert_same_data().await;
        // Keys and foreign keys were built exactly once, whatever was interrupted.
        let constraints = common::pair::key_counts(&s.target).await;
        assert_eq!(constraints, "12 3", "{point}: primary keys and foreign keys");
        let status = if use_file {
            let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
            assert!(!saved.to_string().contains(SECRET));
            assert_eq!(saved["run_id"], doc["run_id"], "{point}: resume keeps the run id");
            saved["status"].as_str().unwrap().to_owned()
        } else {
            s.target_scalar("SELECT state->>'status' FROM mssql_pg_migrate.runs").await
        };
        assert_eq!(status, "completed", "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_mode_puts_back_the_foreign_keys_it_dropped_after_any_sigkill() {
    let s = setup("target_mode: truncate").await;
    let state_file = s.dir.path().join("truncate.state");
    let (code, _, stderr) = s.finish(None, &["run"]);
    assert_eq!(code, 0, "first load: {stderr}");
    let fk_definitions = "SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), '; ' ORDER BY conname) \
                          FROM pg_constraint WHERE connamespace = 'copy'::regnamespace AND contype = 'f'";
    let before = s.target_scalar(fk_definitions).await;
    assert_eq!(before.matches("FOREIGN KEY").count(), 3, "{before}");
    // (failpoint, state in a file, what continues: `resume` or a new `run`)
    let points: &[(&str, bool, &str)] = &[
        ("target-prepared", true, "resume"), // foreign keys dropped, tables truncated
        ("target-prepared", false, "run"),   // a new run inherits what to put back
        ("mid-copy:3", false, "resume"),
        ("after-commit:4", true, "resume"),
        ("finalize-step:2", true, "resume"), // one foreign key back, two not
        ("finalize-step:1", false, "run"),
    ];
    for &(point, use_file, then) in points {
        let file = use_file.then_some(state_file.as_path());
        // Foreign keys are dropped only when the run finds them in place.
        s.target
            .connect("dst")
            .await
            .unwrap()
            .batch_execute("DROP SCHEMA IF EXISTS mssql_pg_migrate CASCADE")
            .await
            .unwrap();
        if let Some(path) = file {
            let _ = std::fs::remove_file(path);
        }
        sigkill(start_until(&mut s.command(file, &["run"]), point));
        let (code, stdout, stderr) = s.finish(file, &[then]);
        assert_eq!(code, 0, "{then} after SIGKILL at {point}:\n{stdout}\n{stderr}");
        s.assert_same_data().await;
        assert_eq!(s.target_scalar(fk_definitions).await, before, "{point}: the foreign keys as they were");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_within_the_timeout_with_exit_5_and_resume_completes() {
    let s = setup("target_mode: drop_recreate").await;
    let state_file = s.dir.path().join("m.state");
    // One chunk is held mid-COPY, so the graceful stop must give up on it.
    let running = start_until(&mut s.command(Some(&state_file), &["--shutdown-timeout", "2", "run"]), "mid-copy:4");
    let pid = running.child.id();
    let sent = Instant::now();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let (code, stderr) = running.wait();
    let elapsed = sent.elapsed();
    assert_eq!(code, Some(5), "exit code after SIGTERM: {stderr}");
    assert!(elapsed < Duration::from_secs(15), "stopped {elapsed:?} after SIGTERM with a 2 s timeout");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(saved["status"], "cancelled");

    let (code, stdout, stderr) = s.finish(Some(&state_file), &["resume"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    s.assert_same_data().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_aborts_at_once_and_the_state_stays_usable() {
    let s = setup("target_mode: drop_recreate").await;
    let running = start_until(&mut s.command(None, &["--shutdown-timeout", "600", "run"]), "mid-copy:2");
    let pid = running.child.id().to_string();
    let sent = Instant::now();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let (code, stderr) = running.wait();
    assert_eq!(code, Some(5), "{stderr}");
    assert!(sent.elapsed() < Duration::from_secs(15), "the second signal did not abort: {:?}", sent.elapsed());
    assert_eq!(s.target_scalar("SELECT state->>'status' FROM mssql_pg_migrate.runs").await, "cancelled");
    let (code, stdout, stderr) = s.finish(None, &["resume"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    s.assert_same_data().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_session_killed_mid_copy_is_retried_and_the_data_is_exact() {
    let s = setup("target_mode: drop_recreate").await;
    // The chunk pauses 3 s mid-COPY, long enough to terminate its session.
    let running = start_until(&mut s.command(None, &["run"]), "mid-copy:5:3000");
    let t = s.target.connect("dst").await.unwrap();
    let killed: i64 = t
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'mssql-pg-migrate' AND query LIKE 'COPY%') k",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1, "no COPY session to terminate");
    let (code, stderr) = running.wait();
    assert_eq!(code, Some(0), "{stderr}");
    // A session that ends under the chunk is an outage of that session: redone on a new one.
    assert!(stderr.contains("server unavailable; reconnecting"), "the chunk was retried: {stderr}");
    assert!(stderr.contains("reconnected what="), "the chunk was redone: {stderr}");
    s.assert_same_data().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_changed_in_the_source_between_a_kill_and_resume_is_copied_again_whole() {
    // A PostgreSQL 14+ source is read by storage blocks under the run's
    // snapshot; a resume reads the rest under a new one, which joins the
    // ranges read before only if the table did not change in between.
    let s = setup("target_mode: drop_recreate").await;
    let state_file = s.dir.path().join("migration.state");
    sigkill(start_until(&mut s.command(Some(&state_file), &["run"]), "chunk-saved:6"));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let read_in_part = rewrite_tables_read_in_part(&s, &saved).await;

    let (code, stdout, stderr) = s.finish(Some(&state_file), &["resume"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("copying it again"), "the changed tables were copied again: {stderr}");
    s.assert_same_data().await;
    assert_eq!(common::pair::key_counts(&s.target).await, "12 3");
    let resumed: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    for label in &read_in_part {
        assert_ne!(resumed["tables"][label]["read_basis"], saved["tables"][label]["read_basis"], "{label}: a new plan");
    }
}

/// The tables a killed run read in part by storage blocks (in `saved`, its
/// state), with the rows of their first two blocks (copied by the first
/// chunk) rewritten in the source with the same values: the new versions
/// lie in blocks not read yet, so a resume that took the ranges up without
/// its check would copy those rows twice; the other rows stay where they
/// were, so progress kept from the old plan would skip them.
async fn rewrite_tables_read_in_part(s: &common::pair::Setup, saved: &serde_json::Value) -> Vec<String> {
    let read_in_part: Vec<String> = saved["tables"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, t)| {
            t["read_basis"].is_string()
                && t["status"] != "completed"
                && t["partitions"].as_array().unwrap().iter().any(|p| p["rows_transferred"].as_u64() > Some(0))
        })
        .map(|(label, _)| label.clone())
        .collect();
    assert!(!read_in_part.is_empty(), "no table was read in part at the kill:\n{saved:#}");
    let src = s.source.connect("src").await.unwrap();
    for label in &read_in_part {
        let table = format!("src.\"{}\"", label.strip_prefix("src.").unwrap().replace('"', "\"\""));
        let first: String = src
            .query_one(
                &format!("SELECT attname::text FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum = 1"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let column = format!("\"{}\"", first.replace('"', "\"\""));
        src.batch_execute(&format!("UPDATE {table} SET {column} = {column} WHERE ctid < '(2,0)'::tid")).await.unwrap();
    }
    read_in_part
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_copied_again_with_the_state_in_the_target_forgets_its_old_progress_across_a_second_kill() {
    // With the state in the target, the chunk rows committed with the data
    // are the truth on a load: a table started over must not get its old
    // partitions' rows back when the resume is killed before its first chunk.
    let s = setup("target_mode: drop_recreate").await;
    sigkill(start_until(&mut s.command(None, &["run"]), "chunk-saved:6"));
    let document = s.target_scalar("SELECT state::text FROM mssql_pg_migrate.runs").await;
    let mut saved: serde_json::Value = serde_json::from_str(&document).unwrap();
    let t = s.target.connect("dst").await.unwrap();
    for row in
        t.query("SELECT table_name, partition_id, rows_transferred FROM mssql_pg_migrate.chunks", &[]).await.unwrap()
    {
        let (table, partition, rows): (String, i32, i64) = (row.get(0), row.get(1), row.get(2));
        saved["tables"][&table]["partitions"][usize::try_from(partition).unwrap()]["rows_transferred"] = rows.into();
    }
    let read_in_part = rewrite_tables_read_in_part(&s, &saved).await;

    sigkill(start_until(&mut s.command(None, &["resume"]), "mid-copy:1"));
    let (code, stdout, stderr) = s.finish(None, &["resume"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    s.assert_same_data().await;
    assert_eq!(common::pair::key_counts(&s.target).await, "12 3");
    let document = s.target_scalar("SELECT state::text FROM mssql_pg_migrate.runs").await;
    let resumed: serde_json::Value = serde_json::from_str(&document).unwrap();
    for label in &read_in_part {
        assert_ne!(resumed["tables"][label]["read_basis"], saved["tables"][label]["read_basis"], "{label}: a new plan");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_state_files_and_changed_configs_are_refused_with_exit_6() {
    let s = setup("target_mode: drop_recreate").await;
    let state_file = s.dir.path().join("m.state");
    assert_eq!(s.finish(Some(&state_file), &["run"]).0, 0);
    let rows_before = s.target_scalar("SELECT count(*)::text FROM copy.skewed").await;
    let whole = std::fs::read(&state_file).unwrap();

    for (damage, why) in [(whole[..whole.len() / 2].to_vec(), "truncated"), (b"{ not json".to_vec(), "invalid")] {
        std::fs::write(&state_file, &damage).unwrap();
        let (code, stdout, stderr) = s.finish(Some(&state_file), &["--output-json", "resume"]);
        assert_eq!(code, 6, "{why}: {stderr}");
        assert!(stderr.contains(&state_file.display().to_string()), "{why}: the message names the file: {stderr}");
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        common::assert_matches_schema("output.schema.json", &doc);
        assert_eq!(doc["error"]["kind"], "state");
        assert_eq!(std::fs::read(&state_file).unwrap(), damage, "{why}: the file is left as it was");
        assert_eq!(
            s.target_scalar("SELECT count(*)::text FROM copy.skewed").await,
            rows_before,
            "{why}: nothing deleted"
        );
    }

    std::fs::write(&state_file, &whole).unwrap();
    let yaml = std::fs::read_to_string(&s.config).unwrap().replace("drop_recreate", "truncate");
    std::fs::write(&s.config, yaml).unwrap();
    let (code, _, stderr) = s.finish(Some(&state_file), &["resume"]);
    assert_eq!(code, 6, "{stderr}");
    // The guide's troubleshooting text, verbatim.
    assert!(stderr.contains("Config hash mismatch - cannot resume with different configuration"), "{stderr}");
    assert!(stderr.contains("migration.target_mode"), "{stderr}");

    let missing = s.dir.path().join("none.state");
    let (code, _, stderr) = s.finish(Some(&missing), &["resume"]);
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("nothing to resume"), "{stderr}");

    let unwritable = s.dir.path().join("no/such/folder/m.state");
    let (code, _, stderr) = s.finish(Some(&unwritable), &["run"]);
    assert_eq!(code, 7, "a state file that cannot be written is an IO error: {stderr}");
}
