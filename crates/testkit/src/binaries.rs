use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// Finds the folder with `initdb` and `postgres`.
///
/// # Errors
/// [`HarnessError::NotInstalled`], listing where it looked.
pub fn find_server_binaries() -> Result<PathBuf, HarnessError> {
    let mut searched = Vec::new();
    if let Some(dir) = std::env::var_os("MPM_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
        searched.push(format!("MPM_PG_BINDIR ({})", dir.display()));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_server(&dir) {
                // Resolve symlinks (/usr/local/bin/initdb -> .../15/bin/initdb) so
                // initdb finds its share/ folder next to the real binary.
                let real = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_owned))
                    .filter(|d| has_server(d))
                    .unwrap_or(dir);
                return Ok(real);
            }
        }
        searched.push("PATH".into());
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    searched.push("pg_config --bindir".into());
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    searched.push("/usr/lib/postgresql/*/bin".into());
    Err(HarnessError::NotInstalled { searched: searched.join(", ") })
}
