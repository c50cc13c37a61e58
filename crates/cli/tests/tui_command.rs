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
    let tui = Pty::start(&s, "tui");
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
    let (code, screen, raw) = tui.quit();
    assert_eq!(code, Some(0), "{screen}");
    assert!(!raw.contains(SECRET), "the password reached the terminal");
    println!("{screen}"); // Shown with --nocapture: the last frame.
    let first = screen.lines().next().unwrap_or_default();
    assert!(first.starts_with(" DONE ") && first.contains("13/13 tables"), "last screen:\n{screen}");
    for expected in ["Tables (13)", "Throughput", "Errors 0", "src.skewed", "done: "] {
        assert!(screen.contains(expected), "the last screen lacks {expected:?}:\n{screen}");
    }
    s.assert_same_data().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tui_resume_without_a_saved_run_shows_why_and_exits_6() {
    if !script_available() {
        use std::io::Write as _;
        let _ =
            writeln!(std::io::stderr(), "SKIPPED tui_resume_without_a_saved_run: util-linux `script` is not installed");
        return;
    }
    let s = setup("target_mode: drop_recreate").await;
    let tui = Pty::start(&s, "tui --resume --workers 1");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tui.screen().starts_with(" FAILED ") {
        assert!(Instant::now() < deadline, "the TUI never showed the failure:\n{}", tui.screen());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, screen, _) = tui.quit();
    assert_eq!(code, Some(6), "{screen}");
    assert!(screen.contains("nothing to resume"), "{screen}");
}

/// The binary under util-linux `script`: a pseudo-terminal of 100×30 whose
/// screen a terminal emulator keeps, since ratatui writes only changed cells.
struct Pty {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    shown: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<String>,
}

impl Pty {
    fn start(s: &common::pair::Setup, args: &str) -> Pty {
        let binary = env!("CARGO_BIN_EXE_mssql-pg-migrate");
        // `script` gives the pseudo-terminal no size; the TUI draws to its size.
        let inner = format!("stty rows 30 cols 100; exec {binary} -c {} {args}", s.config.display());
        let mut child = Command::new("script")
            .args(["-qfec", &inner, "/dev/null"])
            .env("SRC_PW", s.source.password())
            .env("DST_PW", SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
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
        Pty { child, stdin, shown, reader }
    }

    /// The TUI's screen as last drawn.
    fn screen(&self) -> String {
        self.shown.lock().unwrap().clone()
    }

    /// Presses q; the exit code, the last screen, and everything written.
    fn quit(mut self) -> (Option<i32>, String, String) {
        self.stdin.write_all(b"q").unwrap();
        self.stdin.flush().unwrap();
        let status = self.child.wait().unwrap();
        let raw = self.reader.join().unwrap();
        let screen = self.shown.lock().unwrap().clone();
        (status.code(), screen, raw)
    }
}

#[test]
fn without_a_terminal_tui_says_what_to_use_instead() {
    // Under the test harness stderr is a pipe, never a terminal.
    let out = common::bin().args(["-c", "nowhere.yaml", "tui"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tui needs a terminal") && stderr.contains("--progress"), "{stderr}");
}
