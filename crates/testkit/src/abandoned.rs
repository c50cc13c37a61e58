//! Clusters whose test process died without stopping them.
//!
//! A test process that aborts (a stack overflow, SIGKILL) never runs
//! `PgCluster`'s `Drop`, so its server keeps running and its folder keeps
//! its data; a few of them fill the disk. Each cluster's folder records
//! the process that owns it (`owner.pid`), and starting a cluster first
//! stops and removes those whose owner is gone.

use std::path::Path;
use std::time::{Duration, Instant};

/// The file in a cluster's folder naming the process that owns it.
pub(crate) const OWNER_FILE: &str = "owner.pid";

/// Whether process `pid` exists (one we may not signal exists too).
#[allow(unsafe_code)]
fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; no signal is sent.
    let answer = unsafe { libc::kill(pid, 0) };
    answer == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.lines().next()?.trim().parse().ok()
}

/// Stops the server of the cluster folder `dir`, if one still runs there,
/// as an immediate shutdown would (SIGQUIT), and waits for it to go.
#[allow(unsafe_code)]
fn stop_server(dir: &Path) {
    let data = dir.join("data");
    let Some(pid) = read_pid(&data.join("postmaster.pid")) else { return };
    // The pid may have been reused since: only a postgres serving this
    // folder is stopped.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let serves_here = String::from_utf8_lossy(&cmdline).contains(&*data.to_string_lossy());
    if !serves_here {
        return;
    }
    // SAFETY: sending a signal to a process we checked is this folder's server.
    unsafe { libc::kill(pid, libc::SIGQUIT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops and removes the clusters under `parent` whose owner process is
/// gone. Folders without an owner file (still being set up, or made by an
/// older harness) are left alone. Returns how many were removed.
pub(crate) fn reap(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        if !entry.file_name().to_string_lossy().starts_with("mpm-pg-") {
            continue;
        }
        let Some(owner) = read_pid(&dir.join(OWNER_FILE)) else { continue };
        if alive(owner) {
            continue;
        }
        stop_server(&dir);
        // Another process may be reaping the same folder: whoever removes it wins.
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_whose_owner_is_gone_are_removed_and_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        let gone = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        };
        for (name, owner) in
            [("mpm-pg-gone", Some(gone)), ("mpm-pg-mine", Some(std::process::id())), ("mpm-pg-new", None)]
        {
            let dir = parent.path().join(name);
            std::fs::create_dir_all(dir.join("data")).unwrap();
            if let Some(pid) = owner {
                std::fs::write(dir.join(OWNER_FILE), pid.to_string()).unwrap();
            }
        }
        // A postmaster.pid naming a process that is not this folder's server is left alone.
        std::fs::write(parent.path().join("mpm-pg-gone/data/postmaster.pid"), format!("{}\n", std::process::id()))
            .unwrap();
        std::fs::create_dir_all(parent.path().join("other")).unwrap();
        assert_eq!(reap(parent.path()), 1);
        let mut left: Vec<String> =
            std::fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["mpm-pg-mine", "mpm-pg-new", "other"]);
    }
}
