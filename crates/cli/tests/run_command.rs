//! `mssql-pg-migrate run` through the real binary, against throwaway
//! PostgreSQL clusters on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use common::bin;
use mssql_pg_migrate_testkit::PgCluster;

/// One cluster holding both the source and the target database.
async fn cluster_with_source() -> PgCluster {
    let pg = PgCluster::start().unwrap();
    pg.create_database("src").await.unwrap();
    pg.create_database("dst").await.unwrap();
    pg.connect("src")
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2));
             INSERT INTO public.items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, 2500) g;
             CREATE TABLE public.tags (item_id int REFERENCES public.items (id), tag text);
             INSERT INTO public.tags SELECT g, 't' FROM generate_series(1, 2500, 5) g;",
        )
        .await
        .unwrap();
    pg
}

fn config_file(dir: &std::path::Path, pg: &PgCluster, target_port: u16, mode: &str) -> std::path::PathBuf {
    let path = dir.join("run.yaml");
    let text = format!(
        "source: {{type: postgres, host: 127.0.0.1, port: {port}, database: src, user: postgres, password: '${{PW}}', schema: public}}\n\
         target: {{type: postgres, host: 127.0.0.1, port: {target_port}, database: dst, user: postgres, password: '${{PW}}', schema: copied, ssl_mode: disable}}\n\
         migration: {{target_mode: {mode}, chunk_size: 1000}}\n",
        port = pg.port(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_copies_the_database_and_prints_one_json_document() {
    let pg = cluster_with_source().await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &pg, pg.port(), "drop_recreate");
    let out = bin().arg("-c").arg(&path).args(["--output-json", "run"]).env("PW", pg.password()).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "exactly one JSON document on stdout: {stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    common::assert_matches_schema("output.schema.json", &doc);
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["command"], "run");
    assert_eq!(doc["status"], "success");
    let tables = doc["report"]["tables"].as_array().unwrap();
    let rows: Vec<(String, u64)> =
        tables.iter().map(|t| (t["source"].as_str().unwrap().to_owned(), t["rows"].as_u64().unwrap())).collect();
    assert_eq!(rows, vec![("public.items".to_owned(), 2500), ("public.tags".to_owned(), 500)]);
    assert!(!stdout.contains(pg.password()) && !stderr.contains(pg.password()), "the password leaked");

    let dst = pg.connect("dst").await.unwrap();
    let row = dst.query_one("SELECT count(*), sum(price)::text FROM copied.items", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, String>(1)), (2500, "3907812.50".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_a_human_summary_without_json() {
    let pg = cluster_with_source().await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &pg, pg.port(), "drop_recreate");
    let out = bin().arg("-c").arg(&path).args(["run", "--workers", "1"]).env("PW", pg.password()).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(out.stdout.is_empty(), "human output goes to stderr");
    assert!(
        stderr.contains("public.items") && stderr.contains("2500") && stderr.contains("total: 3000 rows"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_what_went_wrong() {
    let pg = cluster_with_source().await;
    let dir = tempfile::tempdir().unwrap();

    // Nothing listens on port 1: a connection error, exit 2 (retry later).
    let path = config_file(dir.path(), &pg, 1, "drop_recreate");
    let out = bin().arg("-c").arg(&path).args(["--output-json", "run"]).env("PW", pg.password()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "connection");
    assert!(doc["error"]["message"].as_str().unwrap().contains("127.0.0.1:1/dst"), "{doc}");

    // upsert with a keyless table: a configuration error, exit 1 (fix, don't retry).
    let path = config_file(dir.path(), &pg, pg.port(), "upsert");
    let out = bin().arg("-c").arg(&path).args(["--output-json", "run"]).env("PW", pg.password()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "config");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("Table 'public.tags' has no primary key, required for upsert mode"), "{doc}");

    // --workers 0 is a usage error, exit 1.
    let out = bin().arg("-c").arg(&path).args(["run", "--workers", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_records_carry_the_run_id_and_the_table() {
    let pg = cluster_with_source().await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &pg, pg.port(), "drop_recreate");
    let out = bin()
        .arg("-c")
        .arg(&path)
        .args(["--output-json", "--log-format", "json", "run"])
        .env("PW", pg.password())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let run_id = serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["run_id"].clone();
    assert!(run_id.is_string(), "{stdout}");
    let records: Vec<serde_json::Value> = stderr.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let planned: Vec<&serde_json::Value> = records.iter().filter(|r| r["fields"]["message"] == "planned").collect();
    let tables: Vec<&str> = planned.iter().map(|r| r["fields"]["table"].as_str().unwrap()).collect();
    assert_eq!(tables, ["public.items", "public.tags"], "{stderr}");
    for r in &planned {
        assert_eq!(r["span"]["run_id"], run_id, "{r}");
    }
    let progress =
        records.iter().rfind(|r| r["fields"]["message"].as_str().is_some_and(|m| m.starts_with("progress:")));
    assert_eq!(progress.map(|r| &r["span"]["run_id"]), Some(&run_id), "{stderr}");

    // Text records stay free of it: a person reads those.
    let out = bin().arg("-c").arg(&path).args(["run"]).env("PW", pg.password()).output().unwrap();
    let text = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(" planned table=public.items") && !text.contains("run_id"), "{text}");
}
