//! `--metrics-addr`: Prometheus metrics scraped from a running binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use common::pair::{closed_port, finish, setup, start_until};
use mssql_pg_migrate_testkit::compare::EDGE_CASE_TABLES;

fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The value of each series of `family`, by its `table` label (unescaped).
fn series(body: &str, family: &str) -> HashMap<String, u64> {
    let prefix = format!("mssql_pg_migrate_{family}{{table=\"");
    body.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            let (label, value) = rest.rsplit_once("\"} ").unwrap();
            let label = label.replace("\\\"", "\"").replace("\\n", "\n").replace("\\\\", "\\");
            (label, value.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_migration_serves_its_counters_per_table() {
    let s = setup("target_mode: drop_recreate").await;
    let port = closed_port();
    let addr = format!("127.0.0.1:{port}");
    // Frozen at the first key build: that table's data is all in, the
    // others may still be loading.
    let mut cmd = s.command(None, &["--metrics-addr", &addr, "run"]);
    let mut running = start_until(&mut cmd, "finalize-step");

    let response = get(port, "/metrics");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("# TYPE mssql_pg_migrate_rows_total counter"), "{body}");
    let run_info = body.lines().find(|l| l.starts_with("mssql_pg_migrate_run_info{run_id=\"")).unwrap();
    assert!(run_info.ends_with("resumed=\"false\"} 1"), "{run_info}");

    let rows = series(body, "rows_total");
    let status = series(body, "table_status");
    let estimated = series(body, "estimated_rows");
    let chunks = series(body, "chunks_total");
    let bytes = series(body, "bytes_total");
    let errors = series(body, "errors_total");
    let source = s.source.connect("src").await.unwrap();
    let mut completed = 0;
    for table in EDGE_CASE_TABLES {
        let label = format!("src.{table}");
        assert!(estimated.contains_key(&label), "every planned table has a series: {label}\n{body}");
        assert_eq!(errors.get(&label), Some(&0), "{label}");
        if status.get(&label) == Some(&1) {
            completed += 1;
            let sql = format!("SELECT count(*) FROM src.\"{}\"", table.replace('"', "\"\""));
            let count: i64 = source.query_one(&sql, &[]).await.unwrap().get(0);
            assert_eq!(rows[&label], count as u64, "{label}: rows_total is the table's row count");
            assert!(chunks[&label] >= 1 && (count == 0 || bytes[&label] > 0), "{label}: {body}");
        }
    }
    assert!(completed >= 1, "the table being finalized is complete:\n{body}");
    assert!(rows.values().sum::<u64>() > 0);

    let missing = get(port, "/");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    running.child.kill().unwrap();
    running.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_is_a_configuration_error_naming_the_flag() {
    let s = setup("target_mode: drop_recreate").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, stderr) = finish(&mut s.command(None, &["--metrics-addr", &addr, "run"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("--metrics-addr {addr}: cannot listen there")), "{stderr}");
    let copied = s.target_scalar("SELECT count(*)::text FROM pg_tables WHERE schemaname = 'copy'").await;
    assert_eq!(copied, "0", "nothing is created before the address is checked");
}
