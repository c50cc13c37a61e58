//! The state file: the guide's format, atomic saves, damaged files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use mssql_pg_migrate_state::{RunState, RunStatus, StateError, WorkStatus};

/// The example document of the data engineer's guide, verbatim in content.
const GUIDE_EXAMPLE: &str = r#"{
  "run_id": "550e8400-e29b-41d4-a716-446655440000",
  "config_hash": "sha256:a1b2c3d4",
  "status": "running",
  "started_at": "2025-01-15T10:30:00Z",
  "updated_at": "2025-01-15T10:35:00Z",
  "tables": {
    "orders": {
      "status": "completed",
      "total_rows": 5000000,
      "transferred_rows": 5000000,
      "skipped_rows": 0,
      "partitions": [
        {"partition_id": 0, "status": "completed", "last_pk": "5000000", "rows_transferred": 5000000}
      ]
    },
    "customers": {
      "status": "in_progress",
      "total_rows": 1000000,
      "transferred_rows": 500000,
      "last_pk": "500000"
    }
  }
}"#;

#[test]
fn the_guides_state_format_loads_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("migration.state");
    std::fs::write(&path, GUIDE_EXAMPLE).unwrap();
    let state = RunState::load(&path).unwrap();
    assert_eq!(state.status, RunStatus::Running);
    let orders = &state.tables["orders"];
    assert_eq!(
        (orders.status, orders.total_rows, orders.transferred_rows),
        (WorkStatus::Completed, 5_000_000, 5_000_000)
    );
    assert_eq!(orders.partitions[0].last_pk.as_deref(), Some("5000000"));
    let customers = &state.tables["customers"];
    assert_eq!((customers.status, customers.last_pk.as_deref()), (WorkStatus::InProgress, Some("500000")));

    state.save(&path).unwrap();
    let again = RunState::load(&path).unwrap();
    assert_eq!(again, state);
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut original: serde_json::Value = serde_json::from_str(GUIDE_EXAMPLE).unwrap();
    // The guide's example omits skipped_rows for one table; we always write it.
    original["tables"]["customers"]["skipped_rows"] = 0.into();
    assert_eq!(saved, original, "saving writes the same document");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["migration.state"], "no temporary file is left behind");
}

#[test]
fn damaged_state_files_are_refused_with_the_reason_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.state");
    let cases = [
        (&GUIDE_EXAMPLE[..GUIDE_EXAMPLE.len() / 2], "truncated"),
        ("", "empty"),
        ("{\"run_id\": 5}", "invalid content"),
        (&GUIDE_EXAMPLE.replace("sha256:a1b2c3d4", "md5:x"), "not a sha256"),
        (&GUIDE_EXAMPLE.replace("\"running\"", "\"paused\""), "unknown variant"),
    ];
    for (content, why) in cases {
        std::fs::write(&path, content).unwrap();
        match RunState::load(&path) {
            Err(StateError::Corrupt { path: p, reason }) => {
                assert_eq!(p, path);
                assert!(reason.contains(why), "{why}: {reason}");
            }
            other => panic!("{why}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content, "the damaged file is not touched");
    }
    assert!(matches!(RunState::load(&dir.path().join("none")), Err(StateError::NotFound { .. })));
}
