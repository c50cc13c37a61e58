//! Throwaway PostgreSQL clusters for tests, demos and benchmarks.
//!
//! [`PgCluster::start`] runs `initdb` into a fresh temporary folder, starts
//! `postgres` on a free port of 127.0.0.1 (no Unix socket, nothing else
//! reachable), and removes everything when the value is dropped. Each
//! cluster costs about a second, so a test can own one outright instead of
//! sharing state with other tests.
//!
//! The server binaries are found through `$MPM_PG_BINDIR`, `PATH`,
//! `pg_config --bindir`, or `/usr/lib/postgresql/<version>/bin` (newest
//! first). PostgreSQL refuses to run as root, so under root (as in CI) the
//! cluster runs as the unprivileged `postgres` OS user, or the user named
//! by `$MPM_PG_OS_USER`. When no server is installed, [`PgCluster::start`]
//! fails with a message that says how to install one; it never skips.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mssql_pg_migrate_testkit::HarnessError> {
//! let cluster = mssql_pg_migrate_testkit::PgCluster::start()?;
//! cluster.create_database("shop").await?;
//! let client = cluster.connect("shop").await?;
//! let row = client.query_one("SELECT 1 + 1", &[]).await?;
//! assert_eq!(row.get::<_, i32>(0), 2);
//! # Ok(()) }
//! ```

mod abandoned;
mod binaries;
pub mod compare;
pub mod mssql;
mod os_user;

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use binaries::{Search, find_server_binaries};
pub use os_user::OsUser;

/// Why a cluster could not be created or used.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "PostgreSQL server binaries (initdb and postgres) were not found; looked in {searched}.\n\
         Install them (Debian/Ubuntu: `apt-get install postgresql`) or point MPM_PG_BINDIR at their folder."
    )]
    NotInstalled { searched: String },
    #[error(
        "running as root, and PostgreSQL refuses to run as root: no unprivileged OS user '{user}' was found \
         (create one with `useradd --system --no-create-home {user}`, or name another with MPM_PG_OS_USER)"
    )]
    NoUnprivilegedUser { user: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("initdb failed ({status}):\n{output}")]
    Initdb { status: String, output: String },
    #[error("the PostgreSQL server did not start: {reason}\n--- server log ---\n{log}")]
    Start { reason: String, log: String },
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

/// The superuser every cluster is created with.
pub const SUPERUSER: &str = "postgres";

/// A running, private PostgreSQL cluster. Dropping it stops the server and
/// deletes its files.
#[derive(Debug)]
pub struct PgCluster {
    // Field order matters: the server stops (Drop of `server`) before the
    // folder is removed. `None` while stopped on purpose.
    server: Option<Server>,
    port: u16,
    password: String,
    bindir: PathBuf,
    dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGQUIT is PostgreSQL's immediate shutdown: backends exit at once and
        // no checkpoint is written, which is all a throwaway cluster needs.
        signal(self.child.id(), libc::SIGQUIT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(unsafe_code)]
fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child's.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// What a finished child process used, for memory tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// The exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    /// Peak resident set (`ru_maxrss`).
    pub peak_rss_bytes: u64,
    /// User plus system CPU time.
    pub cpu_seconds: f64,
}

/// Waits for `child` (not yet waited for) and reports its usage from
/// `wait4`, which counts that process alone.
///
/// # Errors
/// When `wait4` fails.
#[allow(unsafe_code)]
pub fn wait_with_usage(child: Child) -> std::io::Result<Usage> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| std::io::Error::other("pid out of range"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data that wait4 fills in; a zeroed one is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointers are to live locals; wait4 has no other preconditions.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        return Err(std::io::Error::last_os_error());
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Usage {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        // Linux reports ru_maxrss in KiB.
        peak_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
        cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
    })
}

impl PgCluster {
    /// Creates and starts a cluster. Blocks for about a second.
    ///
    /// # Errors
    /// [`HarnessError::NotInstalled`] without server binaries,
    /// [`HarnessError::NoUnprivilegedUser`] under root without a user to run
    /// the server as, and the failing step's error otherwise.
    pub fn start() -> Result<PgCluster, HarnessError> {
        let bindir = find_server_binaries()?;
        let run_as = OsUser::for_server()?;
        let reaped = abandoned::reap(&std::env::temp_dir());
        if reaped > 0 {
            eprintln!("stopped and removed {reaped} test cluster(s) whose process had died");
        }
        let dir = tempfile::Builder::new()
            .prefix("mpm-pg-")
            .tempdir()
            .map_err(io_error("creating the cluster's temporary folder"))?;
        std::fs::write(dir.path().join(abandoned::OWNER_FILE), std::process::id().to_string())
            .map_err(io_error("recording the cluster's owner"))?;
        if let Some(user) = &run_as {
            user.give(dir.path())?;
        }
        let password = random_password();
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).map_err(io_error("writing the superuser password file"))?;
        if let Some(user) = &run_as {
            user.give(&pwfile)?;
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "-N"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .env("LC_ALL", "C");
        if let Some(user) = &run_as {
            user.apply(&mut initdb);
        }
        let out = initdb.output().map_err(io_error("running initdb"))?;
        if !out.status.success() {
            return Err(HarnessError::Initdb {
                status: out.status.to_string(),
                output: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            });
        }
        let _ = std::fs::remove_file(&pwfile);

        // A port found free can be taken before the server binds it; try a few.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            match start_server(&bindir, &data, dir.path(), port, run_as.as_ref()) {
                Ok(server) => {
                    return Ok(PgCluster { server: Some(server), port, password, bindir, dir });
                }
                Err(e @ HarnessError::Start { .. }) if is_port_clash(&e) => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| HarnessError::Start { reason: "no free port".into(), log: String::new() }))
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password (random per cluster).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The folder holding the server binaries in use.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The folder holding the cluster (data directory and server log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id, for tests that kill it on purpose.
    ///
    /// # Panics
    /// While the server is stopped ([`PgCluster::stop_immediately`]).
    pub fn server_pid(&self) -> u32 {
        self.server.as_ref().map(|s| s.child.id()).expect("the server is stopped")
    }

    /// Stops the server as a crash or `pg_ctl stop -m immediate` would:
    /// every session ends at once, nothing is checkpointed. Blocks until
    /// the server has exited.
    pub fn stop_immediately(&mut self) {
        self.server = None;
    }

    /// Starts the stopped server again on the same port (crash recovery
    /// first, so it refuses sessions for a moment, as a restarted server does).
    ///
    /// # Errors
    /// When the server does not come back.
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.server.is_some() {
            return Ok(());
        }
        let run_as = OsUser::for_server()?;
        let data = self.dir.path().join("data");
        self.server = Some(start_server(&self.bindir, &data, self.dir.path(), self.port, run_as.as_ref())?);
        Ok(())
    }

    /// Connection settings for `database` as the superuser.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(self.host())
            .port(self.port)
            .user(SUPERUSER)
            .password(&self.password)
            .dbname(database)
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// Connects to `database` as the superuser. Must be called inside a Tokio
    /// runtime, which drives the connection.
    ///
    /// # Errors
    /// [`HarnessError::Db`] when the connection fails.
    pub async fn connect(&self, database: &str) -> Result<tokio_postgres::Client, HarnessError> {
        let (client, connection) = self.config(database).connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            // The connection ends when the client is dropped; errors after that are moot.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Creates a database (UTF-8, owned by the superuser).
    ///
    /// # Errors
    /// [`HarnessError::Db`] when it cannot be created.
    pub async fn create_database(&self, name: &str) -> Result<(), HarnessError> {
        let client = self.connect("postgres").await?;
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        client.batch_execute(&format!("CREATE DATABASE {quoted} TEMPLATE template0 ENCODING 'UTF8'")).await?;
        Ok(())
    }

    /// The server log so far, for failure messages.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }
}

fn start_server(
    bindir: &Path,
    data: &Path,
    dir: &Path,
    port: u16,
    run_as: Option<&OsUser>,
) -> Result<Server, HarnessError> {
    let log_path = dir.join("server.log");
    // Appended to: a restarted server's log follows the first one's.
    let log = File::options().create(true).append(true).open(&log_path).map_err(io_error("creating the server log"))?;
    let log_err = log.try_clone().map_err(io_error("duplicating the server log handle"))?;
    let mut cmd = Command::new(bindir.join("postgres"));
    cmd.arg("-D")
        .arg(data)
        .arg("-p")
        .arg(port.to_string())
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            // Durability is pointless for a cluster deleted after the test.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    if let Some(user) = run_as {
        user.apply(&mut cmd);
    }
    let child = cmd.spawn().map_err(io_error("starting postgres"))?;
    let mut server = Server { child };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(HarnessError::Start { reason: format!("postgres exited with {status}"), log: read_log(dir) });
        }
        if is_ready(data) && TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(server);
        }
        if Instant::now() > deadline {
            // Dropping `server` stops the half-started process.
            return Err(HarnessError::Start { reason: "not ready after 60 s".into(), log: read_log(dir) });
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The postmaster writes `ready` as the status line of postmaster.pid once
/// it accepts connections.
fn is_ready(data: &Path) -> bool {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .map(|pid| pid.lines().any(|l| l.trim() == "ready"))
        .unwrap_or(false)
}

fn is_port_clash(e: &HarnessError) -> bool {
    matches!(e, HarnessError::Start { log, .. } if log.contains("could not bind") || log.contains("already in use"))
}

fn read_log(dir: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(dir.join("server.log")) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

fn free_port() -> Result<u16, HarnessError> {
    let listener =
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).map_err(io_error("finding a free port"))?;
    let port = listener.local_addr().map_err(io_error("finding a free port"))?.port();
    Ok(port)
}

/// 24 random alphanumerics from the OS's randomness, without a crate for it.
fn random_password() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    (0..24)
        .map(|i| {
            let mut h = RandomState::new().build_hasher();
            h.write_usize(i);
            char::from(ALPHABET[(h.finish() % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

/// Compares the file at `path` (relative to the repository root) with
/// `generated`, for references generated from the code; with `UPDATE_DOCS`
/// set (`cargo xtask docs`) writes it instead.
///
/// # Panics
/// When the file is stale, saying how to regenerate it.
pub fn check_generated(path: &str, generated: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&file, generated).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        return;
    }
    let current = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(current == generated, "{path} is stale: run `cargo xtask docs` and commit it");
}
