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
        "mssql-pg-migrate init ",
        "demo --keep",
        "Stopping and deleting the demo clusters.",
    ] {
        assert!(stderr.contains(text), "missing {text:?}:\n{stderr}");
    }
    assert!(!stderr.contains("psql "), "no command for clusters that are deleted at once:\n{stderr}");
    assert!(!stderr.contains("does not exist, skipping"), "server notices are noise at info level:\n{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no colour codes when stderr is not a terminal:\n{stderr}");
}

#[test]
fn demo_keep_leaves_the_copy_up_for_the_printed_psql_command_until_sigterm() {
    use std::io::{BufRead as _, BufReader};
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("mssql-pg-migrate"))
        .args(["demo", "--keep"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (mut seen, mut psql) = (String::new(), None);
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the demo ended before keeping its clusters:\n{seen}");
        seen.push_str(&line);
        if line.contains("psql -h 127.0.0.1") {
            psql = Some(line.trim().to_owned());
        }
        if line.contains("stay up until Ctrl-C") {
            break;
        }
    }
    // The printed command, as a user would paste it, answers while the
    // demo waits.
    let command = psql.unwrap_or_else(|| panic!("no psql command printed:\n{seen}"));
    let command = command.replace("-c 'SELECT * FROM shop.orders LIMIT 5'", "-tAc 'SELECT count(*) FROM shop.orders'");
    let out = std::process::Command::new("sh").args(["-c", &command]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "100000",
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{seen}{rest}");
    assert!(rest.contains("Stopping and deleting the demo clusters."), "{rest}");
    let after = std::process::Command::new("sh").args(["-c", &command]).output().unwrap();
    assert!(!after.status.success(), "the clusters are gone after SIGTERM");
}
