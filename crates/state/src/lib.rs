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

/// One partition (chunk range) of a table: the keys in `(start_pk, end_pk]`.
///
/// Keys are in the source's text form for the state (see the transfer
/// crate's `Source::key_to_state`): a single integer key is its decimal
/// digits, anything else a JSON array of tagged parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionState {
    pub partition_id: u32,
    pub status: WorkStatus,
    /// The last key committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pk: Option<String>,
    pub rows_transferred: u64,
    /// The partition's exclusive lower bound; `None`: from the first key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_pk: Option<String>,
    /// The partition's inclusive upper bound; `None`: to the last key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_pk: Option<String>,
    /// Written just before a chunk commits, cleared just after: a chunk
    /// ending at this key may or may not be in the target, so resume
    /// replaces `(last_pk, pending_pk]` instead of appending to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_pk: Option<String>,
}

impl PartitionState {
    /// A partition not started yet.
    pub fn new(partition_id: u32, start_pk: Option<String>, end_pk: Option<String>) -> Self {
        PartitionState {
            partition_id,
            status: WorkStatus::Pending,
            last_pk: None,
            rows_transferred: 0,
            start_pk,
            end_pk,
            pending_pk: None,
        }
    }
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
    /// `schema.table` in the target.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// Whether this run created the target table (so finalization builds
    /// its keys, indexes and constraints).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
    /// For a table read as ranges of the source's storage under one
    /// snapshot (its partitions' bounds are then blocks): what the source
    /// checks on a resume, that the table still holds the rows those
    /// ranges were read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_basis: Option<String>,
}

impl TableState {
    /// A table planned but not started.
    pub fn new(target: impl Into<String>, created: bool, total_rows: u64, partitions: Vec<PartitionState>) -> Self {
        TableState {
            status: WorkStatus::Pending,
            total_rows,
            transferred_rows: 0,
            skipped_rows: 0,
            partitions,
            last_pk: None,
            target: target.into(),
            created,
            read_basis: None,
        }
    }

    /// Rows committed, summed over the partitions.
    pub fn committed_rows(&self) -> u64 {
        self.partitions.iter().map(|p| p.rows_transferred).sum()
    }
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
    /// The configuration that was hashed (secrets and tuning keys left
    /// out), so a refused resume can name the keys that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// `run --source-schema` / `--target-schema`, which resume reuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_schema: Option<String>,
    /// Statements that put back what the run removed from existing target
    /// tables for the load (truncate mode drops their foreign keys).
    /// Recorded before the removal, so a crash cannot lose them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore: Vec<String>,
    /// Upsert with change columns: per table (keyed as `tables`), where the
    /// next sync starts reading. Carried from run to run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub marks: BTreeMap<String, ChangeMark>,
}

/// Where a table's incremental reads start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeMark {
    /// The change column the marks are values of; another column starts over.
    pub column: String,
    /// Rows whose column is at least this (or NULL) are read; `None`: all rows.
    pub mark: Option<String>,
    /// Taken from the source as this run began; becomes `mark` once every
    /// row of the table read by this run is merged.
    pub next: Option<String>,
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
            config: None,
            source_schema: None,
            target_schema: None,
            restore: Vec::new(),
            marks: BTreeMap::new(),
        }
    }

    /// Whether the target was prepared (tables created or truncated) and
    /// the chunks planned: from then on, a resume must not prepare again.
    pub fn is_planned(&self) -> bool {
        !self.tables.is_empty()
    }

    /// Reads a state from its JSON text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] naming the line and column of the damage.
    pub fn from_json(bytes: &[u8], origin: &Path) -> Result<RunState, StateError> {
        let corrupt = |reason: String| StateError::Corrupt { path: origin.to_owned(), reason };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(corrupt("the file is empty".into()));
        }
        let state: RunState = serde_json::from_slice(bytes).map_err(|e| {
            let what = if e.is_eof() { "it ends early (truncated?)" } else { "invalid content" };
            corrupt(format!("{what}: {e}"))
        })?;
        if state.run_id.trim().is_empty() {
            return Err(corrupt("run_id is empty".into()));
        }
        if !state.config_hash.starts_with("sha256:") {
            return Err(corrupt(format!("config_hash {:?} is not a sha256: hash", state.config_hash)));
        }
        for (name, table) in &state.tables {
            for (i, p) in table.partitions.iter().enumerate() {
                if p.partition_id as usize != i {
                    return Err(corrupt(format!("table {name}: partition {i} has partition_id {}", p.partition_id)));
                }
            }
        }
        Ok(state)
    }

    /// The state as pretty JSON, as [`RunState::save`] writes it.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        let mut json = serde_json::to_vec_pretty(self).unwrap_or_default();
        json.push(b'\n');
        json
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
        RunState::from_json(&bytes, path)
    }

    /// Replaces the file at `path` with this state, atomically.
    ///
    /// # Errors
    /// [`StateError::Io`] naming the step that failed.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        write_atomically(path, &self.to_json())
    }
}

/// Replaces the file at `path` with `bytes`: a temporary file beside it is
/// written and fsynced, renamed over `path`, and the folder is fsynced, so
/// a crash at any instant leaves the old content or the new, never a mix.
///
/// # Errors
/// [`StateError::Io`] naming the step that failed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
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
    {
        let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(bytes).map_err(io("write", &tmp))?;
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

/// The current time as RFC 3339 UTC with seconds (`2025-01-15T10:30:00Z`).
pub fn now_rfc3339() -> String {
    let seconds =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    rfc3339_from_unix(seconds)
}

/// Formats seconds since 1970 as RFC 3339 UTC.
pub fn rfc3339_from_unix(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// civil_from_days, which counts in 400-year eras so leap rules fall out).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(1_736_937_000), "2025-01-15T10:30:00Z");
        assert_eq!(rfc3339_from_unix(951_782_400), "2000-02-29T00:00:00Z", "leap day of a century leap year");
        assert_eq!(rfc3339_from_unix(4_107_542_399), "2100-02-28T23:59:59Z", "2100 is not a leap year");
        assert_eq!(rfc3339_from_unix(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
