//! `tui` on a pseudo-terminal (util-linux `script`), against two throwaway
//! clusters: the run completes under the TUI, `q` leaves it, the exit code
//! and the data are those of a plain `run`, and the screen showed the run.
//! Drawing itself is tested in the tui crate with ratatui's TestBackend.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pair::{SECRET, setup};

fn script_available() -> bool {
    Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_runs_a_migration_to_the_end_and_quits_on_q() {
    if !script_available() {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the_tui_runs_a_migration_to_the_end_and_quits_on_q: util-linux `script` is not installed, \
             so no pseudo-terminal is available"
        );
        return;
    }
    let s = setup("target_mode: drop_recreate").await;
    let binary = env!("CARGO_BIN_EXE_mssql-pg-migrate");
    // `script` gives the pseudo-terminal no size; the TUI draws to its size.
    let inner = format!("stty rows 30 cols 100; exec {binary} -c {} tui", s.config.display());
    let mut child = Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .env("SRC_PW", s.source.password())
        .env("DST_PW", SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // A terminal emulator keeps what the TUI's screen shows; ratatui only
    // writes the cells that change, so the raw bytes are not the screen.
    let shown = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = std::thread::spawn({
        let shown = std::sync::Arc::clone(&shown);
        move || {
            let mut terminal = vt100::Parser::new(30, 100, 0);
            let mut raw = Vec::new();
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&chunk[..n]);
                terminal.process(&chunk[..n]);
                if terminal.screen().alternate_screen() {
                    *shown.lock().unwrap() = terminal.screen().contents();
                }
            }
            String::from_utf8_lossy(&raw).into_owned()
        }
    });

    // Wait for the run to finish in the target, then leave with q.
    let t = s.target.connect("dst").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = t
            .query_one(
                "SELECT coalesce((SELECT state->>'status' FROM mssql_pg_migrate.runs LIMIT 1), '') \
                 WHERE to_regclass('mssql_pg_migrate.runs') IS NOT NULL",
                &[],
            )
            .await
            .map(|r| r.get::<_, String>(0) == "completed")
            .unwrap_or(false);
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the run under the TUI did not complete");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await; // a frame with the final state
    stdin.write_all(b"q").unwrap();
    stdin.flush().unwrap();
    let status = child.wait().unwrap();
    let raw = reader.join().unwrap();
    let screen = shown.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{screen}");
    assert!(!raw.contains(SECRET), "the password reached the terminal");
    println!("{screen}"); // Shown with --nocapture: the last frame.
    let first = screen.lines().next().unwrap_or_default();
    assert!(first.starts_with(" DONE ") && first.contains("13/13 tables"), "last screen:\n{screen}");
    for expected in ["Tables (13)", "Throughput", "Errors 0", "src.skewed", "done: "] {
        assert!(screen.contains(expected), "the last screen lacks {expected:?}:\n{screen}");
    }
    s.assert_same_data().await;
}

#[test]
fn without_a_terminal_tui_says_what_to_use_instead() {
    // Under the test harness stderr is a pipe, never a terminal.
    let out = common::bin().args(["-c", "nowhere.yaml", "tui"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tui needs a terminal") && stderr.contains("--progress"), "{stderr}");
}
