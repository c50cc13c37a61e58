//! `health-check`, `run --dry-run` and `validate` through the real binary,
//! against throwaway PostgreSQL clusters on both sides.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use common::assert_matches_schema;
use common::pair::{SECRET, closed_port, config_text, finish, setup};
use serde_json::Value;

/// The one document on stdout, checked against the documented schema.
fn json(stdout: &str) -> Value {
    let doc = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{stdout}"));
    assert_matches_schema("output.schema.json", &doc);
    doc
}

fn check<'a>(endpoint: &'a Value, name: &str) -> &'a Value {
    endpoint["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {endpoint}"))
}

fn table<'a>(list: &'a Value, source: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|t| t["source"] == source).unwrap_or_else(|| panic!("no {source} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_reports_servers_and_permissions_and_exits_0_1_or_2() {
    let s = setup("target_mode: drop_recreate").await;

    // Everything in place.
    let (code, stdout, stderr) = s.finish(None, &["--output-json", "health-check"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let doc = json(&stdout);
    assert_eq!((doc["command"].as_str(), doc["status"].as_str()), (Some("health-check"), Some("healthy")));
    let (source, target) = (&doc["report"]["source"], &doc["report"]["target"]);
    for (endpoint, user) in [(source, "postgres"), (target, "migrator")] {
        assert_eq!(endpoint["reachable"], true);
        assert!(endpoint["server"]["version"].as_str().unwrap().starts_with("PostgreSQL 15"), "{endpoint}");
        assert_eq!(endpoint["server"]["user"], user);
        assert_eq!(endpoint["server"]["tls"], false, "ssl is off on the test clusters");
        assert_eq!(endpoint["server"]["tls_detail"], "not encrypted");
        let latency = endpoint["latency_ms"].as_f64().unwrap();
        assert!(latency > 0.0 && latency < 1000.0, "latency {latency}");
    }
    assert_eq!(check(source, "tables_selected")["detail"], "13 table(s) in schema src");
    assert_eq!(check(source, "select")["detail"], "SELECT on all 13 table(s)");
    assert_eq!(check(source, "view_definition")["ok"], true);
    assert_eq!(
        check(target, "create_on_target_schema")["detail"],
        "schema copy does not exist; CREATE on database dst lets the run make it"
    );
    assert_eq!(check(target, "state_schema")["ok"], true);
    assert_eq!(check(target, "owns_existing_tables")["ok"], true);

    let (code, stdout, _) = s.finish(None, &["health-check"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("TLS      not encrypted") && stdout.contains("latency  ") && stdout.contains("healthy:"),
        "{stdout}"
    );

    // A source login without SELECT on one table, and a target login that
    // may create nothing and owns none of the existing tables.
    s.add_reader_without("skewed").await;
    let dst = s.target.connect("dst").await.unwrap();
    dst.batch_execute(
        "CREATE ROLE limited LOGIN PASSWORD 'limited-pw';
         CREATE SCHEMA copy;
         CREATE TABLE copy.skewed (id bigint);
         GRANT USAGE ON SCHEMA copy TO limited;",
    )
    .await
    .unwrap();
    let limited =
        s.write_config("limited.yaml", &config_text(s.source.port(), "reader", s.target.port(), "limited", ""));
    let (code, stdout, stderr) = finish(
        s.command_with(&limited, None, &["--output-json", "health-check"])
            .env("SRC_PW", "reader-pw")
            .env("DST_PW", "limited-pw"),
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let doc = json(&stdout);
    assert_eq!(doc["status"], "missing_permissions");
    assert_eq!((doc["error"]["kind"].as_str(), doc["error"]["exit_code"].as_u64()), (Some("config"), Some(1)));
    let (source, target) = (&doc["report"]["source"], &doc["report"]["target"]);
    assert_eq!(check(source, "select")["detail"], "SELECT missing on 1: src.skewed");
    let create = check(target, "create_on_target_schema");
    assert_eq!(create["ok"], false);
    assert!(
        create["detail"].as_str().unwrap().contains("GRANT CREATE, USAGE ON SCHEMA \"copy\" TO \"limited\""),
        "{create}"
    );
    let state = check(target, "state_schema");
    assert_eq!(state["ok"], false);
    assert!(state["detail"].as_str().unwrap().contains("GRANT CREATE ON DATABASE \"dst\" TO \"limited\""), "{state}");
    let owns = check(target, "owns_existing_tables");
    assert_eq!(owns["detail"], "the run must drop tables the login does not own: copy.skewed");
    // The same in human form names every failure.
    let (code, stdout, stderr) = finish(
        s.command_with(&limited, None, &["health-check"]).env("SRC_PW", "reader-pw").env("DST_PW", "limited-pw"),
    );
    assert_eq!(code, 1);
    println!("{stdout}{stderr}"); // Shown with --nocapture.
    assert_eq!(stdout.matches("FAIL").count(), 4, "{stdout}");
    assert!(stdout.contains("NOT READY"), "{stdout}");
    assert!(stderr.contains("missing permissions or preconditions: source select, target"), "{stderr}");

    // A target nobody answers at: exit 2, and the source is still reported.
    let port = closed_port();
    let gone = s.write_config("gone.yaml", &config_text(s.source.port(), "postgres", port, "migrator", ""));
    let (code, stdout, stderr) = finish(&mut s.command_with(&gone, None, &["--output-json", "health-check"]));
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let doc = json(&stdout);
    assert_eq!(doc["status"], "unreachable");
    assert_eq!(doc["error"]["kind"], "connection");
    assert_eq!(doc["report"]["source"]["reachable"], true);
    assert_eq!(doc["report"]["target"]["reachable"], false);
    let error = doc["report"]["target"]["error"].as_str().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{port}/dst")), "{error}");
    assert!(!stdout.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_plan_and_changes_nothing() {
    let s = setup("target_mode: drop_recreate").await;
    let (code, stdout, stderr) = s.finish(None, &["--output-json", "run", "--dry-run"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let doc = json(&stdout);
    assert_eq!(doc["status"], "planned");
    let plan = &doc["report"];
    assert_eq!(plan["tables"].as_array().unwrap().len(), 13);
    assert_eq!(plan["prepare"][0], "CREATE SCHEMA IF NOT EXISTS \"copy\"");
    assert!(plan["prepare"][1].as_str().unwrap().starts_with("DROP TABLE IF EXISTS \"copy\".\"Every Type\""));

    // skewed: ids -5, 1..4000, 1000000..1000100 and 10^12: 4 partitions of equal width.
    let skewed = table(&plan["tables"], "src.skewed");
    assert_eq!(skewed["target"], "copy.skewed");
    assert_eq!(skewed["estimated_rows"], 4103);
    assert_eq!(skewed["chunking"]["method"], "integer_ranges");
    assert_eq!(
        skewed["chunking"]["bounds"],
        serde_json::json!([249_999_999_996_i64, 499_999_999_998_i64, 750_000_000_000_i64])
    );
    assert_eq!(skewed["partitions"], 4);
    assert!(skewed["create_table"].as_str().unwrap().starts_with("CREATE TABLE \"copy\".\"skewed\""));
    assert_eq!(skewed["after_load"][0]["sql"], "ANALYZE \"copy\".\"skewed\"", "statistics first, then keys");
    assert!(skewed["after_load"][1]["sql"].as_str().unwrap().contains("PRIMARY KEY (\"id\")"));
    assert!(skewed["estimated_bytes"].as_u64().unwrap() > 0);

    let composite = table(&plan["tables"], "src.composite");
    assert_eq!(composite["chunking"]["method"], "key_scan");
    assert_eq!(composite["chunking"]["key"], serde_json::json!(["region", "seq"]));
    assert_eq!(composite["chunking"]["partitions"], 4);
    assert_eq!(table(&plan["tables"], "src.no_key")["chunking"]["method"], "whole");
    // cb's foreign key to ca is built after all data.
    let cb = table(&plan["tables"], "src.cb");
    assert!(cb["foreign_keys"][0]["sql"].as_str().unwrap().contains("REFERENCES \"copy\".\"ca\""), "{cb}");
    assert!(plan["eta_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(plan["estimated_rows"].as_u64().unwrap(), sum_rows(&plan["tables"]));

    let (code, stdout, _) = s.finish(None, &["run", "--dry-run"]);
    assert_eq!(code, 0);
    println!("{stdout}"); // Shown with --nocapture, for reading the plan as a user would.
    for expected in [
        "nothing was changed",
        "src.skewed -> copy.skewed",
        "key id, ranges split at 249999999996, 499999999998, 750000000000",
        "key (region, seq), 4 range(s) found by a key scan",
        "one stream (no usable primary key",
        "estimated time",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }

    let schemas = s
        .target_scalar(
            "SELECT string_agg(nspname, ',') FROM pg_namespace WHERE nspname IN ('copy', 'mssql_pg_migrate')",
        )
        .await;
    assert_eq!(schemas, "", "the dry run changed the target");
}

fn sum_rows(tables: &Value) -> u64 {
    tables.as_array().unwrap().iter().map(|t| t["estimated_rows"].as_u64().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_compares_row_counts_and_exits_4_on_a_difference() {
    let s = setup("target_mode: drop_recreate").await;
    let (code, _, stderr) = s.finish(None, &["run"]);
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, stderr) = s.finish(None, &["--output-json", "validate"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let doc = json(&stdout);
    assert_eq!((doc["status"].as_str(), doc["report"]["matched"].as_u64()), (Some("success"), Some(13)));
    let src = s.source.connect("src").await.unwrap();
    for name in ["skewed", "no_key", "empty_table", "Every Type"] {
        let sql = format!("SELECT count(*) FROM src.\"{name}\"");
        let expected: i64 = src.query_one(&sql, &[]).await.unwrap().get(0);
        let counted = table(&doc["report"]["tables"], &format!("src.{name}"));
        assert_eq!(counted["source_rows"].as_i64(), Some(expected), "{counted}");
        assert_eq!(counted["target_rows"].as_i64(), Some(expected), "{counted}");
    }

    let dst = s.target.connect("dst").await.unwrap();
    dst.batch_execute("DELETE FROM copy.skewed WHERE id > 4000; DROP TABLE copy.one_row").await.unwrap();
    let (code, stdout, stderr) = s.finish(None, &["--output-json", "validate"]);
    assert_eq!(code, 4, "{stdout}\n{stderr}");
    let doc = json(&stdout);
    assert_eq!(doc["status"], "mismatch");
    assert_eq!((doc["error"]["kind"].as_str(), doc["error"]["exit_code"].as_u64()), (Some("validation"), Some(4)));
    assert_eq!((doc["report"]["matched"].as_u64(), doc["report"]["mismatched"].as_u64()), (Some(11), Some(2)));
    let skewed = table(&doc["report"]["tables"], "src.skewed");
    assert_eq!((skewed["source_rows"].as_u64(), skewed["target_rows"].as_u64()), (Some(4103), Some(4001)));
    assert_eq!(table(&doc["report"]["tables"], "src.one_row")["target_rows"], Value::Null);

    let (code, stdout, stderr) = s.finish(None, &["validate"]);
    assert_eq!(code, 4);
    assert!(stdout.contains("MISMATCH") && stdout.contains("missing"), "{stdout}");
    assert!(stderr.contains("row counts differ in 2 table(s): src.one_row, src.skewed"), "{stderr}");
}
