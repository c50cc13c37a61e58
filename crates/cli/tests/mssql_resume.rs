//! Interruption and resume through the real binary, SQL Server → PostgreSQL,
//! against the server `MSSQL_TEST_URL` names (see `tests/mssql_integration.rs`):
//! SIGKILL at named steps then `resume`, SIGTERM then `resume`, and a wrong
//! password. After every resume the target is compared row by row with
//! the fixture's expected values.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::mssql_pair::setup;
use common::pair::{finish, run_measured, start_until};
use mssql_pg_migrate_testkit::mssql::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_seven_points_then_resume_gives_exact_data() {
    let Some(server) = TestServer::from_env("sigkill_at_seven_points_then_resume_gives_exact_data") else { return };
    let s = setup(server, "mpm_cli_kill", "target_mode: drop_recreate").await;
    let state_file = s.dir.path().join("migration.state");
    // (failpoint, whether the state is a file or lives in the target database)
    let points: &[(&str, bool)] = &[
        ("catalog-read", true),
        ("planned", false),
        ("mid-copy:3", true),
        ("before-commit:2", false),
        ("after-commit:4", true), // committed, state not yet written
        ("chunk-saved:5", false),
        ("finalize-step:2", true),
    ];
    for &(point, use_file) in points {
        let file = use_file.then_some(state_file.as_path());
        s.reset_target(file).await;
        let mut running = start_until(&mut s.command(file, &["run"]), point);
        running.child.kill().unwrap(); // SIGKILL on Unix
        running.child.wait().unwrap();

        let (code, stdout, stderr) = finish(&mut s.command(file, &["--output-json", "resume"]));
        assert_eq!(code, 0, "resume after SIGKILL at {point}:\n{stdout}\n{stderr}");
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        common::assert_matches_schema("output.schema.json", &doc);
        assert_eq!(doc["status"], "success", "{point}");
        s.assert_expected_data().await;
        let constraints = common::pair::key_counts(&s.target).await;
        assert_eq!(constraints, "12 3", "{point}: primary keys and foreign keys, each once");
        let status = if use_file {
            let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
            assert!(!saved.to_string().contains(&s.server.password), "the source password is not in the state");
            assert_eq!(saved["run_id"], doc["run_id"], "{point}: resume keeps the run id");
            saved["status"].as_str().unwrap().to_owned()
        } else {
            s.target_scalar("SELECT state->>'status' FROM mssql_pg_migrate.runs").await
        };
        assert_eq!(status, "completed", "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_with_exit_5_and_resume_completes() {
    let Some(server) = TestServer::from_env("sigterm_stops_with_exit_5_and_resume_completes") else { return };
    let s = setup(server, "mpm_cli_term", "target_mode: drop_recreate").await;
    let state_file = s.dir.path().join("m.state");
    let running = start_until(&mut s.command(Some(&state_file), &["--shutdown-timeout", "2", "run"]), "mid-copy:4");
    let sent = Instant::now();
    Command::new("kill").args(["-TERM", &running.child.id().to_string()]).status().unwrap();
    let (code, stderr) = running.wait();
    assert_eq!(code, Some(5), "exit code after SIGTERM: {stderr}");
    assert!(sent.elapsed() < Duration::from_secs(15), "stopped {:?} after SIGTERM with a 2 s timeout", sent.elapsed());
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(saved["status"], "cancelled");

    let (code, stdout, stderr) = finish(&mut s.command(Some(&state_file), &["resume"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    s.assert_expected_data().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_source_password_exits_2_without_showing_it() {
    let Some(server) = TestServer::from_env("a_wrong_source_password_exits_2_without_showing_it") else { return };
    let s = setup(server, "mpm_cli_pw", "target_mode: drop_recreate").await;
    let wrong = "Not-the-Passw0rd-x7";
    let out = s.command(None, &["--output-json", "run"]).env("SRC_PW", wrong).output().unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(!stdout.contains(wrong) && !stderr.contains(wrong), "the password leaked:\n{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    common::assert_matches_schema("output.schema.json", &doc);
    assert_eq!(doc["error"]["kind"], "connection");
    let message = doc["error"]["message"].as_str().unwrap().to_lowercase();
    assert!(message.contains("login failed") && message.contains(&s.server.port.to_string()), "{message}");
}

/// What the whole process may use, values included (issue 12's target).
const PEAK_RSS_LIMIT: u64 = 200 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabyte_values_from_sql_server_are_copied_within_the_memory_bound() {
    let Some(server) = TestServer::from_env("fifty_megabyte_values_from_sql_server_are_copied_within_the_memory_bound")
    else {
        return;
    };
    let s = setup(server, "mpm_cli_big", "target_mode: drop_recreate, include_tables: [big]").await;
    // Twelve values of 50 MB, each different: six binary, six text (with
    // non-ASCII characters, whose UTF-8 length differs from the stored one).
    let mut source = s.server.connect().await.unwrap();
    mssql_pg_migrate_testkit::mssql::execute_script(
        &mut source,
        "CREATE TABLE mpm_cli_big.big (id int NOT NULL PRIMARY KEY, payload varbinary(max) NULL, body nvarchar(max) NULL)\nGO\n\
         DECLARE @i int = 1;\n\
         WHILE @i <= 12\n\
         BEGIN\n\
             IF @i <= 6\n\
                 INSERT INTO mpm_cli_big.big (id, payload) VALUES \
                 (@i, CAST(REPLICATE(CAST(CHAR(64 + @i) AS varchar(max)), 52428800) AS varbinary(max)));\n\
             ELSE\n\
                 INSERT INTO mpm_cli_big.big (id, body) VALUES \
                 (@i, REPLICATE(CAST(NCHAR(64 + @i) + N'é' AS nvarchar(max)), 26214400));\n\
             SET @i = @i + 1;\n\
         END\nGO\n",
    )
    .await;
    drop(source);

    let usage = run_measured(&mut s.command(None, &["--verbosity", "warn", "run"]));
    assert_eq!(usage.code, Some(0));
    let peak = usage.peak_rss_bytes;
    println!("peak RSS {:.1} MB for 12 values of 50 MB from SQL Server", peak as f64 / 1e6);
    assert!(peak <= PEAK_RSS_LIMIT, "peak RSS {} MB exceeds {} MB", peak >> 20, PEAK_RSS_LIMIT >> 20);

    let copied = s
        .target_scalar(
            "SELECT string_agg(id || ':' || coalesce(length(payload), length(body)) || ':' || \
             md5(coalesce(payload, convert_to(body, 'UTF8'))), ',' ORDER BY id) FROM copy.big",
        )
        .await;
    let expected = s
        .target_scalar(
            "SELECT string_agg(g || ':' || CASE WHEN g <= 6 THEN 52428800 ELSE 52428800 END || ':' || \
             md5(CASE WHEN g <= 6 THEN convert_to(repeat(chr(64 + g), 52428800), 'UTF8') \
             ELSE convert_to(repeat(chr(64 + g) || 'é', 26214400), 'UTF8') END), ',' ORDER BY g) \
             FROM generate_series(1, 12) g",
        )
        .await;
    assert_eq!(copied, expected);
}
