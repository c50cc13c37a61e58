//! `demo`: two throwaway clusters, the sample shop database, a full run,
//! a validation, and the directions to a real SQL Server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use common::{assert_matches_schema, bin};

#[test]
fn the_demo_migrates_the_sample_database_and_says_what_to_do_next() {
    let out = bin().args(["--output-json", "demo", "--no-wait"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is the run's one JSON document");
    assert_matches_schema("output.schema.json", &doc);
    assert_eq!(doc["status"], "success");
    let rows: Vec<(String, u64)> = doc["report"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["source"].as_str().unwrap().to_owned(), t["rows"].as_u64().unwrap()))
        .collect();
    let expected = [
        ("shop.audit_log", 5000),
        ("shop.customers", 20000),
        ("shop.order_lines", 250_000),
        ("shop.orders", 100_000),
        ("shop.products", 2000),
    ];
    assert_eq!(rows, expected.map(|(t, n)| (t.to_owned(), n)).to_vec());
    for text in [
        "validate: 5 of 5 table(s) have the source's row count",
        "psql -h 127.0.0.1 -p ",
        "mssql-pg-migrate init ",
        "Stopping and deleting the demo clusters.",
    ] {
        assert!(stderr.contains(text), "missing {text:?}:\n{stderr}");
    }
    assert!(!stderr.contains("does not exist, skipping"), "server notices are noise at info level:\n{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no colour codes when stderr is not a terminal:\n{stderr}");
}
