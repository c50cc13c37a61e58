//! `init` driven through the real binary with scripted answers on stdin,
//! against two throwaway clusters, then used as a new user would: the
//! written config runs a migration.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use common::pair::{SECRET, Setup, setup};

/// Runs `init` with `answers` (one per line) on stdin; returns the code and stderr.
fn init(s: &Setup, args: &[&str], answers: &[String]) -> (i32, String) {
    let mut cmd = s.command_with(Path::new("unused.yaml"), None, &[&["init"], args].concat());
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = answers.join("\n");
    input.push('\n');
    // The binary may refuse before reading its input (an existing file).
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(stdout.is_empty(), "the wizard talks on stderr only: {stdout}");
    (out.status.code().unwrap_or(-1), stderr)
}

/// Runs a migration with the config the wizard wrote (passwords from the
/// variables it names); it must succeed.
fn run_written(s: &Setup, config: &Path) {
    let run = s
        .command_with(config, None, &["run"])
        .env("SOURCE_PASSWORD", s.source.password())
        .env("POSTGRES_PASSWORD", SECRET)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
}

fn answers(s: &Setup, passwords: &str) -> Vec<String> {
    [
        "postgres",
        "127.0.0.1",
        &s.source.port().to_string(),
        "src",
        "postgres",
        s.source.password(),
        "src",
        "all",
        "127.0.0.1",
        &s.target.port().to_string(),
        "dst",
        "migrator",
        SECRET,
        "copy",
        "disable",
        passwords,
        "",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wizard_writes_a_config_that_runs_and_never_shows_a_password() {
    let s = setup("target_mode: drop_recreate").await;
    let path = s.dir.path().join("wizard.yaml");
    let path_arg = path.to_str().unwrap();

    let (code, stderr) = init(&s, &["-o", path_arg], &answers(&s, "env"));
    assert_eq!(code, 0, "{stderr}");
    println!("{stderr}"); // Shown with --nocapture: the session as a user sees it.
    assert!(!stderr.contains(SECRET) && !stderr.contains(s.source.password()), "a password was shown:\n{stderr}");
    assert!(stderr.contains("Testing the source connection... ok: PostgreSQL 15"), "{stderr}");
    assert!(stderr.contains("Schemas: src (13 tables)"), "{stderr}");
    assert!(stderr.contains("Testing the target connection... ok: PostgreSQL 15"), "{stderr}");
    assert!(stderr.contains("export SOURCE_PASSWORD=... POSTGRES_PASSWORD=..."), "{stderr}");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(!written.contains(SECRET), "env style keeps passwords out of the file:\n{written}");
    assert!(written.starts_with("# mssql-pg-migrate configuration"), "{written}");

    // The written config works as it is.
    run_written(&s, &path);
    s.assert_same_data().await;

    // An existing file is kept unless -f is given.
    let (code, stderr) = init(&s, &["-o", path_arg], &answers(&s, "env"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already exists; pass -f/--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written, "the file was changed");

    // -f overwrites; inline passwords make the file private.
    let (code, stderr) = init(&s, &["-o", path_arg, "-f"], &answers(&s, "inline"));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
    let inline = std::fs::read_to_string(&path).unwrap();
    assert!(inline.contains(SECRET), "{inline}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // --advanced asks for the tuning keys and writes them all.
    let advanced = s.dir.path().join("advanced.yaml");
    let mut tuned = answers(&s, "env");
    tuned.extend(["3", "50000", "", "", "40", "7", "no"].map(str::to_owned));
    let (code, stderr) = init(&s, &["-o", advanced.to_str().unwrap(), "--advanced"], &tuned);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Tables copied at once (workers) [auto]"), "{stderr}");
    let text = std::fs::read_to_string(&advanced).unwrap();
    for line in [
        "  workers: 3\n",
        "  chunk_size: 50000\n",
        "  parallel_readers: auto\n",
        "  memory_budget_percent: 40\n",
        "  max_retries: 7\n",
    ] {
        assert!(text.contains(line), "missing {line:?}:\n{text}");
    }

    // Input that stops early writes nothing.
    let partial = s.dir.path().join("partial.yaml");
    let (code, stderr) = init(&s, &["-o", partial.to_str().unwrap()], &answers(&s, "env")[..5]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the input ended before the wizard finished; nothing was written"), "{stderr}");
    assert!(!partial.exists());
}

/// The binary under a pseudo-terminal (util-linux `script`), driven by keys
/// sent once the text each waits for has been drawn.
struct Terminal {
    child: std::process::Child,
    keys: std::process::ChildStdin,
    screen: std::sync::Arc<std::sync::Mutex<String>>,
    seen: usize,
}

impl Terminal {
    fn start(s: &Setup, args: &[&str]) -> Terminal {
        let command = std::iter::once(env!("CARGO_BIN_EXE_mssql-pg-migrate"))
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = std::process::Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("TERM", "xterm")
            .env("COLUMNS", "120")
            .env("LINES", "40")
            .env("SRC_PW", s.source.password())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let shared = std::sync::Arc::clone(&screen);
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
                if n == 0 {
                    break;
                }
                shared.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let keys = child.stdin.take().unwrap();
        Terminal { child, keys, screen, seen: 0 }
    }

    /// Waits until `text` is drawn after what was waited for before, then types `keys`.
    fn on(&mut self, text: &str, keys: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            {
                let screen = self.screen.lock().unwrap();
                if let Some(at) = screen[self.seen..].find(text) {
                    self.seen += at + text.len();
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "never drawn: {text:?}\n{screen}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Let the prompt finish drawing and switch the terminal to raw mode.
        std::thread::sleep(std::time::Duration::from_millis(150));
        self.keys.write_all(keys.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let screen = self.screen.lock().unwrap().clone();
        (status.code(), screen)
    }
}

const DOWN: &str = "\x1b[B";
const UP: &str = "\x1b[A";
const LEFT: &str = "\x1b[D";
const ENTER: &str = "\r";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_wizard_offers_menus_and_masks_passwords() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        println!("SKIPPED the terminal session: util-linux `script` is not installed");
        return;
    }
    let s = setup("target_mode: drop_recreate").await;
    let path = s.dir.path().join("terminal.yaml");
    let mut t = Terminal::start(&s, &["-c", "unused.yaml", "init", "-o", path.to_str().unwrap()]);
    t.on("Source type", &format!("{DOWN}{ENTER}")); // mssql → postgres
    t.on("Source host", &format!("127.0.0.1{ENTER}"));
    t.on("Source port", &format!("{}{ENTER}", s.source.port()));
    t.on("Source database", &format!("src{ENTER}"));
    t.on("Source user", &format!("postgres{ENTER}"));
    t.on("Source password", &format!("{}{ENTER}", s.source.password()));
    t.on("Source schema", ENTER);
    // Every table starts ticked: untick all, tick the first.
    t.on("Tables to migrate", &format!("{LEFT} {ENTER}"));
    t.on("Target host", &format!("127.0.0.1{ENTER}"));
    t.on("Target port", &format!("{}{ENTER}", s.target.port()));
    t.on("Target database", &format!("dst{ENTER}"));
    t.on("Target user", &format!("migrator{ENTER}"));
    t.on("Target password", &format!("{SECRET}{ENTER}"));
    t.on("Target schema", &format!("copy{ENTER}"));
    t.on("SSL mode", &format!("{UP}{ENTER}")); // prefer → disable
    t.on("passwords", ENTER); // env
    t.on("Target mode", ENTER); // drop_recreate
    let (code, screen) = t.finish();
    assert_eq!(code, Some(0), "{screen}");
    assert!(!screen.contains(SECRET) && !screen.contains(s.source.password()), "a password was shown:\n{screen}");
    assert!(screen.contains("********"), "passwords are masked as typed:\n{screen}");

    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.contains("type: postgres"), "{written}");
    assert!(written.contains("ssl_mode: disable"), "{written}");
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&written).unwrap();
    let include = yaml["migration"]["include_tables"].as_sequence().unwrap();
    assert_eq!(include.len(), 1, "one table ticked: {written}");

    run_written(&s, &path);
    let copied = s.target_scalar("SELECT count(*)::text FROM pg_tables WHERE schemaname = 'copy'").await;
    assert_eq!(copied, "1");
}
