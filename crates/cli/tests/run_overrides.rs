//! `run --source-schema/--target-schema/--workers` override the config
//! file, and a later `resume` or `validate` keeps to the same schemas.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use common::pair::setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_overrides_choose_where_rows_come_from_and_land() {
    let s = setup("target_mode: drop_recreate").await;
    let src = s.source.connect("src").await.unwrap();
    src.batch_execute(
        "CREATE SCHEMA other;
         CREATE TABLE other.only_here (id integer PRIMARY KEY, v text);
         INSERT INTO other.only_here SELECT g, 'row ' || g FROM generate_series(1, 42) g;",
    )
    .await
    .unwrap();

    let (code, stdout, stderr) = s.finish(
        None,
        &["--output-json", "run", "--source-schema", "other", "--target-schema", "landed", "--workers", "1"],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    common::assert_matches_schema("output.schema.json", &doc);
    let tables = doc["report"]["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "only the overriding source schema is read: {doc}");
    assert_eq!(
        (tables[0]["source"].as_str(), tables[0]["target"].as_str()),
        (Some("other.only_here"), Some("landed.only_here"))
    );

    let landed =
        s.target_scalar("SELECT string_agg(v, ',' ORDER BY id) FROM landed.only_here WHERE id IN (1, 42)").await;
    assert_eq!(landed, "row 1,row 42");
    assert_eq!(
        s.target_scalar("SELECT count(*)::text FROM pg_namespace WHERE nspname = 'copy'").await,
        "0",
        "the config's target schema was not used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_included_table_name_that_matches_nothing_stops_the_run_naming_it() {
    let s = setup("target_mode: drop_recreate, include_tables: [skewed, no_such_table, 'nothing_*']").await;
    let (code, stdout, stderr) = s.finish(None, &["run"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("include_tables") && stderr.contains("no_such_table"), "{stderr}");
    // A wildcard that matches nothing is a filter, not a name.
    assert!(!stderr.contains("nothing_*"), "{stderr}");
    assert_eq!(
        s.target_scalar("SELECT count(*)::text FROM pg_tables WHERE schemaname = 'copy'").await,
        "0",
        "nothing is created before the names are checked"
    );
}
