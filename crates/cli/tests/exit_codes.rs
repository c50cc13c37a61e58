//! Every exit code of the guide's table, 0 to 7, reached through the real
//! binary with `--output-json`: the code, and the JSON document's
//! `error.kind` and `error.exit_code`, must agree.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use std::process::{Command, Stdio};

use common::assert_matches_schema;
use common::pair::{closed_port, config_text, finish, setup, start_until_writing};
use serde_json::Value;

/// Checks the exit code and the JSON document; returns the document.
fn expect(code: i32, stdout: &str, stderr: &str, expected: i32, kind: Option<&str>) -> Value {
    assert_eq!(code, expected, "expected exit {expected}:\n{stdout}\n{stderr}");
    let doc: Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("exit {expected}: not JSON ({e}):\n{stdout}"));
    assert_matches_schema("output.schema.json", &doc);
    assert_eq!(doc["schema_version"], 1);
    match kind {
        None => assert!(doc.get("error").is_none(), "{doc}"),
        Some(kind) => {
            assert_eq!(doc["error"]["kind"], kind, "{doc}");
            assert_eq!(doc["error"]["exit_code"], expected, "{doc}");
            assert!(!doc["error"]["message"].as_str().unwrap().is_empty());
        }
    }
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exit_code_from_0_to_7_is_reached_and_reported() {
    let s = setup("target_mode: drop_recreate").await;
    let json = ["--output-json"];

    // 0: success.
    let (code, stdout, stderr) = s.finish(None, &[&json[..], &["run"]].concat());
    let doc = expect(code, &stdout, &stderr, 0, None);
    assert_eq!(doc["status"], "success");
    assert_eq!(doc["report"]["rows"].as_u64(), Some(s.source_rows().await), "{doc}");
    s.assert_same_data().await;

    // 1: a configuration error, every problem named by its key.
    let bad = s.write_config(
        "bad.yaml",
        &config_text(s.source.port(), "postgres", s.target.port(), "migrator", "chunk_size: -5"),
    );
    let (code, stdout, stderr) = finish(&mut s.command_with(&bad, None, &["--output-json", "run"]));
    let doc = expect(code, &stdout, &stderr, 1, Some("config"));
    assert!(doc["error"]["message"].as_str().unwrap().contains("migration.chunk_size"), "{doc}");

    // 2: the target does not answer.
    let gone = s.write_config("gone.yaml", &config_text(s.source.port(), "postgres", closed_port(), "migrator", ""));
    let (code, stdout, stderr) = finish(&mut s.command_with(&gone, None, &["--output-json", "run"]));
    let doc = expect(code, &stdout, &stderr, 2, Some("connection"));
    assert!(doc["error"]["message"].as_str().unwrap().contains("cannot connect to the target server"), "{doc}");

    // 3: a transfer error: the source login may not read one table.
    s.add_reader_without("skewed").await;
    let reader =
        s.write_config("reader.yaml", &config_text(s.source.port(), "reader", s.target.port(), "migrator", ""));
    let (code, stdout, stderr) =
        finish(s.command_with(&reader, None, &["--output-json", "run"]).env("SRC_PW", "reader-pw"));
    let doc = expect(code, &stdout, &stderr, 3, Some("transfer"));
    assert!(doc["error"]["message"].as_str().unwrap().contains("permission denied for table skewed"), "{doc}");
    assert!(doc["run_id"].as_str().is_some_and(|id| id.len() == 36), "a failed run names its run: {doc}");

    // 4: validation finds a difference (the first run's copy lost a row).
    let (code, _, stderr) = s.finish(None, &["run"]);
    assert_eq!(code, 0, "{stderr}");
    s.target.connect("dst").await.unwrap().batch_execute("DELETE FROM copy.employees WHERE id = 2000").await.unwrap();
    let (code, stdout, stderr) = s.finish(None, &["--output-json", "validate"]);
    let doc = expect(code, &stdout, &stderr, 4, Some("validation"));
    assert!(doc["error"]["message"].as_str().unwrap().contains("src.employees"), "{doc}");

    // 5: cancelled by SIGTERM mid-COPY; the document names the run to resume.
    let state_file = s.dir.path().join("cancelled.state");
    let out_path = s.dir.path().join("cancelled.json");
    let out = std::fs::File::create(&out_path).unwrap();
    let running = start_until_writing(
        &mut s.command(Some(&state_file), &["--output-json", "--shutdown-timeout", "2", "run"]),
        "mid-copy:3",
        Stdio::from(out),
    );
    Command::new("kill").args(["-TERM", &running.child.id().to_string()]).status().unwrap();
    let (code, stderr) = running.wait();
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let doc = expect(code.unwrap_or(-1), &stdout, &stderr, 5, Some("cancelled"));
    let saved: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(saved["status"], "cancelled");
    assert_eq!(doc["run_id"], saved["run_id"], "the document names the saved run");

    // 6: nothing to resume.
    let none = s.dir.path().join("none.state");
    let (code, stdout, stderr) = s.finish(Some(&none), &["--output-json", "resume"]);
    let doc = expect(code, &stdout, &stderr, 6, Some("state"));
    assert!(doc["error"]["message"].as_str().unwrap().contains("nothing to resume"), "{doc}");

    // 7: the state file cannot be written.
    let unwritable = s.dir.path().join("no/such/folder/m.state");
    let (code, stdout, stderr) = s.finish(Some(&unwritable), &["--output-json", "run"]);
    let doc = expect(code, &stdout, &stderr, 7, Some("io"));
    assert!(doc["error"]["message"].as_str().unwrap().contains("no/such/folder"), "{doc}");
}
