use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;

/// Where to look for the server binaries; [`Search::from_environment`] is
/// what [`find_server_binaries`] uses.
#[derive(Debug, Clone)]
pub struct Search {
    /// `$MPM_PG_BINDIR`.
    pub bindir: Option<OsString>,
    /// `$PATH`.
    pub path: Option<OsString>,
    /// The `pg_config` program to ask for `--bindir`.
    pub pg_config: OsString,
    /// Debian's versioned install root, normally `/usr/lib/postgresql`.
    pub versioned_root: PathBuf,
}

impl Search {
    pub fn from_environment() -> Self {
        Search {
            bindir: std::env::var_os("MPM_PG_BINDIR"),
            path: std::env::var_os("PATH"),
            pg_config: "pg_config".into(),
            versioned_root: PathBuf::from("/usr/lib/postgresql"),
        }
    }

    /// Finds the folder with `initdb` and `postgres`.
    ///
    /// # Errors
    /// [`HarnessError::NotInstalled`], listing where it looked.
    pub fn run(&self) -> Result<PathBuf, HarnessError> {
        let mut searched = Vec::new();
        if let Some(dir) = &self.bindir {
            let dir = PathBuf::from(dir);
            if has_server(&dir) {
                return Ok(dir);
            }
            searched.push(format!("MPM_PG_BINDIR ({})", dir.display()));
        }
        if let Some(path) = &self.path {
            if let Some(dir) = std::env::split_paths(path).find(|d| has_server(d)) {
                // Resolve symlinks (/usr/local/bin/initdb -> .../15/bin/initdb) so
                // initdb finds its share/ folder next to the real binary.
                let real = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_owned))
                    .filter(|d| has_server(d))
                    .unwrap_or(dir);
                return Ok(real);
            }
            searched.push("PATH".into());
        }
        if let Ok(out) = Command::new(&self.pg_config).arg("--bindir").output()
            && out.status.success()
        {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server(&dir) {
                return Ok(dir);
            }
        }
        searched.push(format!("{} --bindir", self.pg_config.to_string_lossy()));
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(&self.versioned_root)
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
        searched.push(format!("{}/*/bin", self.versioned_root.display()));
        Err(HarnessError::NotInstalled { searched: searched.join(", ") })
    }
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// Finds the folder with `initdb` and `postgres` in the usual places.
///
/// # Errors
/// [`HarnessError::NotInstalled`], listing where it looked.
pub fn find_server_binaries() -> Result<PathBuf, HarnessError> {
    Search::from_environment().run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_server_the_error_says_how_to_install_one() {
        let empty = tempfile::tempdir().unwrap();
        let search = Search {
            bindir: Some(empty.path().into()),
            path: Some(empty.path().into()),
            pg_config: "mpm-no-such-pg-config".into(),
            versioned_root: empty.path().join("none"),
        };
        let err = search.run().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, HarnessError::NotInstalled { .. }));
        assert!(text.contains("apt-get install postgresql"), "{text}");
        assert!(text.contains("MPM_PG_BINDIR"), "{text}");
        assert!(text.contains("mpm-no-such-pg-config --bindir"), "{text}");
    }

    #[test]
    fn the_newest_versioned_install_wins() {
        let root = tempfile::tempdir().unwrap();
        for version in ["9", "15", "13"] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("initdb"), "").unwrap();
            std::fs::write(bin.join("postgres"), "").unwrap();
        }
        let search = Search {
            bindir: None,
            path: None,
            pg_config: "mpm-no-such-pg-config".into(),
            versioned_root: root.path().to_owned(),
        };
        assert_eq!(search.run().unwrap(), root.path().join("15/bin"));
    }
}
