//! `--progress`: JSON lines on stderr while the run goes, from the
//! library's events, with stdout keeping the one result document.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use common::assert_matches_schema;
use common::pair::{FAILPOINT_VAR, finish, setup};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lines_report_tables_and_the_run_until_the_last_row() {
    let s = setup("target_mode: drop_recreate").await;
    // A chunk held for 2.5 s mid-COPY: ticks land while tables are in flight.
    let (code, stdout, stderr) =
        finish(s.command(None, &["--progress", "--output-json", "run"]).env(FAILPOINT_VAR, "mid-copy:3:2500"));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let document: Value = serde_json::from_str(&stdout).expect("stdout is exactly one JSON document");
    assert_matches_schema("output.schema.json", &document);
    assert_eq!(document["status"], "success");

    let lines: Vec<Value> = stderr.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect();
    for line in &lines {
        assert_matches_schema("progress.schema.json", line);
    }
    let runs: Vec<&Value> = lines.iter().filter(|l| l["type"] == "run").collect();
    let tables: Vec<&Value> = lines.iter().filter(|l| l["type"] == "table").collect();
    assert!(runs.len() >= 3, "one run line per second at least:\n{stderr}");
    assert!(!tables.is_empty(), "a table was in flight during the pause:\n{stderr}");
    for t in &tables {
        for field in ["table", "rows_done", "rows_total", "bytes", "rows_per_second", "eta_seconds"] {
            assert!(t.get(field).is_some(), "{field} missing in {t}");
        }
        assert!(t["rows_done"].as_u64() <= t["rows_total"].as_u64(), "{t}");
        assert_eq!(t["rows_transferred"], t["rows_done"], "the guide's name for the same count: {t}");
    }
    // Tables finished during the held chunk have their keys built at once,
    // not after the last row.
    let finalizing_while_loading =
        runs.iter().any(|r| r["finalizing"].is_string() && r["tables_done"].as_u64() < r["tables_total"].as_u64());
    assert!(finalizing_while_loading, "no table was finalized while another still loaded:\n{stderr}");
    // Rows only grow, and the last line has them all.
    let done: Vec<u64> = runs.iter().map(|r| r["rows_done"].as_u64().unwrap()).collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    let source_rows = s.source_rows().await;
    let last = runs.last().unwrap();
    assert_eq!(last["rows_done"].as_u64(), Some(source_rows), "{last}");
    assert_eq!(last["rows_total"].as_u64(), Some(source_rows), "finished tables count their true rows: {last}");
    assert_eq!((last["tables_done"].as_u64(), last["tables_total"].as_u64()), (Some(13), Some(13)));
    assert_eq!(last["run_id"], document["run_id"]);
    assert_eq!(last["eta_seconds"], 0.0);
    assert_eq!(last["rows_transferred"].as_u64(), Some(source_rows), "{last}");

    // The guide's own pipeline over these lines, run by jq where it is
    // installed: each table line prints "table: rows".
    let guide_filter = ".table + \": \" + (.rows_transferred | tostring)";
    if let Ok(mut jq) = std::process::Command::new("jq")
        .args(["-r", guide_filter])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        let first_table = tables[0].to_string();
        jq.stdin.take().unwrap().write_all(format!("{first_table}\n").as_bytes()).unwrap();
        let out = jq.wait_with_output().unwrap();
        let expected = format!("{}: {}\n", tables[0]["table"].as_str().unwrap(), tables[0]["rows_done"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    } else {
        eprintln!("SKIPPED the guide's jq pipeline: jq is not installed");
    }
}
