//! The Babelfish TDS server of `../shared/babelfish`, started and stopped
//! through `.ci/tds-server` (the script `.ci/run` uses), for `mssql-it` and
//! `bench --source mssql` on machines without SQL Server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running TDS server, stopped (and its folder removed) when dropped.
#[derive(Debug)]
pub struct StartedServer {
    /// Its `MSSQL_TEST_URL`.
    pub url: String,
    /// Its folder, for `MSSQL_TEST_SERVER_DIR` (the restart test stops and starts it).
    pub dir: PathBuf,
    script: PathBuf,
}

impl StartedServer {
    /// Starts one in a fresh temporary folder (about 10 s).
    pub fn start() -> Result<StartedServer, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/tds-server");
        let dir = std::env::temp_dir().join(format!("mpm-xtask-tds-{}", std::process::id()));
        eprintln!("starting the TDS server (Babelfish) from ../shared/babelfish");
        let up = Command::new(&script)
            .arg("up")
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let server = StartedServer { url: String::from_utf8_lossy(&up.stdout).trim().to_owned(), dir, script };
        if up.status.success() {
            Ok(server)
        } else {
            Err("the TDS server did not start (set MSSQL_TEST_URL to a SQL Server instead)".into())
        }
    }
}

impl Drop for StartedServer {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).arg("down").arg(&self.dir).status();
    }
}
