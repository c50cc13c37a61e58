//! Two throwaway clusters (source `src` with the edge-case fixture, target
//! `dst` with a `migrator` login whose password is [`SECRET`]) and a config
//! between them, driven through the real binary.

#![allow(dead_code)] // Each test file uses a different part.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mssql_pg_migrate_testkit::PgCluster;
use mssql_pg_migrate_testkit::compare::{EDGE_CASE_TABLES, compare_tables, edge_case_fixture};

pub const FAILPOINT_VAR: &str = "MSSQL_PG_MIGRATE_FAILPOINT";
/// Distinctive, so a leak into any output or state is found by a plain search.
pub const SECRET: &str = "Zq9-resume-secret-7Kp";

pub struct Setup {
    pub source: PgCluster,
    pub target: PgCluster,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// A config from the source's `src` to the target's `dst` (schema `copy`)
/// with small chunks; passwords come from `SRC_PW` and `DST_PW`.
pub fn config_text(
    source_port: u16,
    source_user: &str,
    target_port: u16,
    target_user: &str,
    migration: &str,
) -> String {
    format!(
        "source: {{type: postgres, host: 127.0.0.1, port: {source_port}, database: src, user: {source_user}, password: '${{SRC_PW}}', schema: src}}\n\
         target: {{type: postgres, host: 127.0.0.1, port: {target_port}, database: dst, user: {target_user}, password: '${{DST_PW}}', schema: copy, ssl_mode: disable}}\n\
         migration: {{chunk_size: 300, large_table_threshold: 1000, min_rows_per_partition: 400, max_partitions: 4, max_retries: 3, {migration}}}\n"
    )
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

pub async fn setup(migration: &str) -> Setup {
    let source = PgCluster::start().unwrap();
    let target = PgCluster::start().unwrap();
    source.create_database("src").await.unwrap();
    target.create_database("dst").await.unwrap();
    source.connect("src").await.unwrap().batch_execute(&edge_case_fixture().unwrap()).await.unwrap();
    let t = target.connect("dst").await.unwrap();
    t.batch_execute(&format!("CREATE ROLE migrator LOGIN SUPERUSER PASSWORD '{SECRET}'")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("migrate.yaml");
    std::fs::write(&config, config_text(source.port(), "postgres", target.port(), "migrator", migration)).unwrap();
    Setup { source, target, dir, config }
}

impl Setup {
    pub fn command(&self, state_file: Option<&Path>, args: &[&str]) -> Command {
        self.command_with(&self.config, state_file, args)
    }

    /// The binary on another config file (same password variables).
    pub fn command_with(&self, config: &Path, state_file: Option<&Path>, args: &[&str]) -> Command {
        let mut cmd = binary(config, state_file, args);
        cmd.env("SRC_PW", self.source.password()).env("DST_PW", SECRET);
        cmd
    }

    pub fn finish(&self, state_file: Option<&Path>, args: &[&str]) -> (i32, String, String) {
        finish(&mut self.command(state_file, args))
    }

    /// Writes a config beside the default one and returns its path.
    pub fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The binary on `config` (with `--state-file` when given) and `args`,
/// without inherited `MSSQL_PG_MIGRATE…` variables, which would change results.
pub fn binary(config: &Path, state_file: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mssql-pg-migrate"));
    cmd.arg("-c").arg(config);
    if let Some(path) = state_file {
        cmd.arg("--state-file").arg(path);
    }
    cmd.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("MSSQL_PG_MIGRATE") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs `cmd` quietly to its end and returns its exit code, peak RSS and CPU time.
pub fn run_measured(cmd: &mut Command) -> mssql_pg_migrate_testkit::Usage {
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    mssql_pg_migrate_testkit::wait_with_usage(child).unwrap()
}

/// Runs `cmd` to its end: exit code, stdout, stderr, with no [`SECRET`] in either.
pub fn finish(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the password leaked:\n{stdout}\n{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

impl Setup {
    /// A source login `reader` (password `reader-pw`) that may read every
    /// table of `src` except `denied`.
    pub async fn add_reader_without(&self, denied: &str) {
        let src = self.source.connect("src").await.unwrap();
        src.batch_execute(&format!(
            "CREATE ROLE reader LOGIN PASSWORD 'reader-pw';
             GRANT USAGE ON SCHEMA src TO reader;
             GRANT SELECT ON ALL TABLES IN SCHEMA src TO reader;
             REVOKE SELECT ON src.{denied} FROM reader;"
        ))
        .await
        .unwrap();
    }

    /// Rows in all the fixture's tables of the source.
    pub async fn source_rows(&self) -> u64 {
        let src = self.source.connect("src").await.unwrap();
        let mut rows = 0;
        for name in EDGE_CASE_TABLES {
            let sql = format!("SELECT count(*) FROM src.\"{}\"", name.replace('"', "\"\""));
            rows += src.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0);
        }
        u64::try_from(rows).unwrap()
    }

    pub async fn assert_same_data(&self) {
        let s = self.source.connect("src").await.unwrap();
        let t = self.target.connect("dst").await.unwrap();
        if let Err(difference) = compare_tables(&s, "src", &t, "copy", EDGE_CASE_TABLES).await {
            panic!("{difference}");
        }
    }

    pub async fn target_scalar(&self, sql: &str) -> String {
        target_scalar(&self.target, sql).await
    }

    pub async fn reset_target(&self, state_file: Option<&Path>) {
        reset_target(&self.target, state_file).await;
    }
}

/// `"P F"`: how many primary keys and foreign keys schema `copy` of the
/// target's `dst` holds (the fixtures' 12 and 3 once a copy is complete,
/// each built exactly once).
pub async fn key_counts(target: &PgCluster) -> String {
    target_scalar(
        target,
        "SELECT count(*) FILTER (WHERE contype = 'p')::text || ' ' || count(*) FILTER (WHERE contype = 'f')::text \
         FROM pg_constraint WHERE connamespace = 'copy'::regnamespace",
    )
    .await
}

/// The first column of the first row of `sql` in the target's `dst`, as text.
pub async fn target_scalar(target: &PgCluster, sql: &str) -> String {
    let t = target.connect("dst").await.unwrap();
    t.query_one(sql, &[]).await.unwrap().get::<_, Option<String>>(0).unwrap_or_default()
}

/// Drops what a run made in the target's `dst` (schema `copy` and the
/// state schema) and the state file, so the next run starts afresh.
pub async fn reset_target(target: &PgCluster, state_file: Option<&Path>) {
    let t = target.connect("dst").await.unwrap();
    t.batch_execute("DROP SCHEMA IF EXISTS copy CASCADE; DROP SCHEMA IF EXISTS mssql_pg_migrate CASCADE")
        .await
        .unwrap();
    if let Some(path) = state_file {
        let _ = std::fs::remove_file(path);
    }
}

/// A running binary whose stderr lines arrive on `lines`.
pub struct Running {
    pub child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// Waits for the exit; returns the code and the rest of stderr.
    pub fn wait(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.lines.iter().collect();
        (status.code(), rest.join("\n"))
    }
}

/// Starts the binary with a failpoint armed; returns once the failpoint is
/// reached (the process is still running).
pub fn start_until(cmd: &mut Command, failpoint: &str) -> Running {
    start_until_writing(cmd, failpoint, Stdio::null())
}

/// As [`start_until`], with the binary's stdout going to `stdout`.
pub fn start_until_writing(cmd: &mut Command, failpoint: &str, stdout: Stdio) -> Running {
    let mut child = cmd.env(FAILPOINT_VAR, failpoint).stdout(stdout).stderr(Stdio::piped()).spawn().unwrap();
    let name = failpoint.split(':').next().unwrap();
    let marker = format!("failpoint {name} reached");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let hit = line.contains(&marker);
                seen.push(line);
                if hit {
                    return Running { child, lines: rx };
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("exited ({status}) before failpoint {failpoint}:\n{}", seen.join("\n"));
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("failpoint {failpoint} never reached:\n{}", seen.join("\n"));
            }
        }
    }
}
