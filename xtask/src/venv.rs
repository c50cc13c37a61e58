//! Python tools the xtasks install from PyPI into throwaway virtualenvs
//! under `target/`, made on first use and kept for the next.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `command`; its stdout when it succeeds, else both streams in the error.
pub fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{what} failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

/// `target/<name>` with `package` installed, made unless `binary` (a path
/// inside it) already exists. Returns the virtualenv's folder.
pub fn virtualenv(name: &str, package: &str, binary: &str) -> Result<PathBuf, String> {
    let venv = root().join("target").join(name);
    if !venv.join(binary).exists() {
        eprintln!("installing {package} into {}", venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv), "creating the virtualenv")?;
        run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", package]), "installing from PyPI")?;
    }
    Ok(venv)
}
