use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::{HarnessError, io_error};

/// An unprivileged OS account the server runs as when we are root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

impl OsUser {
    /// `None` when not root (the server runs as us), else the account to use.
    ///
    /// # Errors
    /// [`HarnessError::NoUnprivilegedUser`] when root and the account does not exist.
    pub fn for_server() -> Result<Option<OsUser>, HarnessError> {
        if effective_uid() != 0 {
            return Ok(None);
        }
        let name = std::env::var("MPM_PG_OS_USER").unwrap_or_else(|_| "postgres".to_owned());
        OsUser::lookup(&name)?.map(Some).ok_or(HarnessError::NoUnprivilegedUser { user: name })
    }

    /// Looks an account up through NSS (`getent passwd`), so LDAP and
    /// similar sources work as well as /etc/passwd.
    fn lookup(name: &str) -> Result<Option<OsUser>, HarnessError> {
        let out = Command::new("getent")
            .args(["passwd", name])
            .output()
            .map_err(io_error("running getent to find the server's OS user"))?;
        if !out.status.success() {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = line.trim().split(':').collect();
        match (fields.get(2).and_then(|u| u.parse().ok()), fields.get(3).and_then(|g| g.parse().ok())) {
            (Some(uid), Some(gid)) if uid != 0 => Ok(Some(OsUser { name: name.to_owned(), uid, gid })),
            _ => Ok(None),
        }
    }

    /// Makes `path` owned by this account.
    pub(crate) fn give(&self, path: &Path) -> Result<(), HarnessError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).map_err(io_error(format!(
            "handing {} to OS user {}",
            path.display(),
            self.name
        )))
    }

    /// Makes `cmd` run as this account (std drops supplementary groups too).
    pub(crate) fn apply(&self, cmd: &mut Command) {
        cmd.uid(self.uid).gid(self.gid);
    }
}
