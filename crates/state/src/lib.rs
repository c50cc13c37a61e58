//! The run state that makes a migration resumable.
//!
//! The state is a JSON document in the format of the data engineer's guide:
//! `run_id`, `config_hash`, `status`, timestamps, and per table its status,
//! row totals and, per partition (chunk), the last key committed. This
//! crate owns the format and its storage as a file: [`RunState::save`]
//! replaces the file atomically (temporary file, fsync, rename, fsync of
//! the folder), so a crash at any instant leaves either the old or the new
//! state, never a torn one; [`RunState::load`] names the file and the
//! position of any damage.
//!
//! ```
//! use mssql_pg_migrate_state::{RunState, RunStatus};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("migration.state");
//! let mut state = RunState::new("550e8400-e29b-41d4-a716-446655440000", "sha256:ab", "2025-01-15T10:30:00Z");
//! state.status = RunStatus::Completed;
//! state.save(&path)?;
//! assert_eq!(RunState::load(&path)?, state);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {} does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error("state file {} is damaged and cannot be used: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot {action} state file {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkStatus {
    Pending,
    InProgress,
    Completed,
    Failed,
    Skipped,
}

/// One partition (chunk) of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionState {
    pub partition_id: u32,
    pub status: WorkStatus,
    /// The last key committed, in its canonical text form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pk: Option<String>,
    pub rows_transferred: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableState {
    pub status: WorkStatus,
    pub total_rows: u64,
    pub transferred_rows: u64,
    #[serde(default)]
    pub skipped_rows: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionState>,
    /// For a table read as one stream: the last key committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pk: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    pub run_id: String,
    pub config_hash: String,
    pub status: RunStatus,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
    /// Keyed by the table's name as the run reports it.
    pub tables: BTreeMap<String, TableState>,
}

impl RunState {
    /// A new, running state with no tables yet.
    pub fn new(run_id: impl Into<String>, config_hash: impl Into<String>, now: impl Into<String>) -> Self {
        let now = now.into();
        RunState {
            run_id: run_id.into(),
            config_hash: config_hash.into(),
            status: RunStatus::Running,
            started_at: now.clone(),
            updated_at: now,
            tables: BTreeMap::new(),
        }
    }

    /// Reads and checks a state file.
    ///
    /// # Errors
    /// [`StateError::NotFound`], [`StateError::Io`], or [`StateError::Corrupt`]
    /// naming the line and column of the damage.
    pub fn load(path: &Path) -> Result<RunState, StateError> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StateError::NotFound { path: path.to_owned() },
            _ => StateError::Io { action: "read", path: path.to_owned(), source },
        })?;
        let corrupt = |reason: String| StateError::Corrupt { path: path.to_owned(), reason };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(corrupt("the file is empty".into()));
        }
        let state: RunState = serde_json::from_slice(&bytes).map_err(|e| {
            let what = if e.is_eof() { "it ends early (truncated?)" } else { "invalid content" };
            corrupt(format!("{what}: {e}"))
        })?;
        if state.run_id.trim().is_empty() {
            return Err(corrupt("run_id is empty".into()));
        }
        if !state.config_hash.starts_with("sha256:") {
            return Err(corrupt(format!("config_hash {:?} is not a sha256: hash", state.config_hash)));
        }
        Ok(state)
    }

    /// Replaces the file at `path` with this state, atomically.
    ///
    /// # Errors
    /// [`StateError::Io`] naming the step that failed.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |action: &'static str, p: &Path| {
            let p = p.to_owned();
            move |source| StateError::Io { action, path: p, source }
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let json = serde_json::to_vec_pretty(self).map_err(|e| StateError::Io {
            action: "encode",
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        {
            let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
            file.write_all(&json).map_err(io("write", &tmp))?;
            file.write_all(b"\n").map_err(io("write", &tmp))?;
            file.sync_all().map_err(io("fsync", &tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            StateError::Io { action: "replace", path: path.to_owned(), source: e }
        })?;
        // The rename is durable only once the folder's entry is on disk.
        std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io("fsync the folder of", path))?;
        Ok(())
    }
}
