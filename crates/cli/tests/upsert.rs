//! `target_mode: upsert` through the real binary, PostgreSQL → PostgreSQL
//! on throwaway clusters, with the edge-case fixture (every type, composite,
//! uuid and text keys, foreign keys): the first sync into an empty target,
//! a sync after inserts, updates (to NULL, to and from empty strings, a
//! large value, key changes) and deletes at the source, a sync with nothing
//! changed (nothing written, measured in pg_stat), SIGKILL and resume, and
//! a keyless table refused before anything is written. Values are compared
//! with the source's, row by row.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use common::pair::{SECRET, Setup, key_counts, setup, start_until};
use mssql_pg_migrate_testkit::compare::{EDGE_CASE_TABLES, compare_tables};

const UPSERT: &str = "target_mode: upsert, exclude_tables: [no_key]";

fn keyed_tables() -> Vec<&'static str> {
    EDGE_CASE_TABLES.iter().copied().filter(|t| *t != "no_key").collect()
}

async fn assert_same_keyed_data(s: &Setup) {
    let source = s.source.connect("src").await.unwrap();
    let target = s.target.connect("dst").await.unwrap();
    if let Err(difference) = compare_tables(&source, "src", &target, "copy", &keyed_tables()).await {
        panic!("{difference}");
    }
}

/// Runs `run --output-json` to exit 0 and returns the document.
fn sync(s: &Setup, state_file: Option<&std::path::Path>) -> serde_json::Value {
    let (code, stdout, stderr) = s.finish(state_file, &["--output-json", "run"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    common::assert_matches_schema("output.schema.json", &doc);
    doc
}

/// `[inserted, updated, unchanged]` of one table in a run's document.
fn merged(doc: &serde_json::Value, table: &str) -> [u64; 3] {
    let [inserted, updated, unchanged, _] = merged_and_deleted(doc, table);
    [inserted, updated, unchanged]
}

/// `[inserted, updated, unchanged, deleted]` of one table in a run's document.
fn merged_and_deleted(doc: &serde_json::Value, table: &str) -> [u64; 4] {
    let tables = doc["report"]["tables"].as_array().unwrap();
    let t = tables.iter().find(|t| t["source"] == format!("src.{table}")).unwrap_or_else(|| panic!("{table}: {doc}"));
    let m = &t["merged"];
    ["inserted", "updated", "unchanged", "deleted"].map(|field| m[field].as_u64().unwrap())
}

/// Tuples written to the copied tables so far, and their total size. The
/// tool's sessions report their writes as they end, so this waits for them.
async fn writes_and_size(s: &Setup) -> (i64, i64) {
    let t = s.target.connect("dst").await.unwrap();
    for _ in 0..100 {
        let row = t
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mssql-pg-migrate'", &[])
            .await
            .unwrap();
        if row.get::<_, i64>(0) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let row = t
        .query_one(
            "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del)::bigint, sum(pg_total_relation_size(relid))::bigint \
             FROM pg_stat_user_tables WHERE schemaname = 'copy'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_table_is_refused_by_name_before_anything_is_written() {
    let s = setup("target_mode: upsert").await;
    let (code, stdout, stderr) = s.finish(None, &["run"]);
    assert_eq!(code, 1, "a configuration error:\n{stdout}\n{stderr}");
    assert!(stderr.contains("Table 'src.no_key' has no primary key, required for upsert mode"), "{stderr}");
    let untouched = s
        .target_scalar("SELECT (to_regnamespace('copy') IS NULL AND to_regnamespace('mssql_pg_migrate') IS NULL)::text")
        .await;
    assert_eq!(untouched, "true", "neither tables nor state were written");
    let (code, _, stderr) = s.finish(None, &["run", "--dry-run"]);
    assert_eq!(code, 1, "the dry run refuses the same way:\n{stderr}");
    assert!(stderr.contains("Table 'src.no_key' has no primary key"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_shows_the_key_and_the_merge_of_each_table_and_drops_nothing() {
    let s = setup(UPSERT).await;
    let (code, stdout, stderr) = s.finish(None, &["--output-json", "run", "--dry-run"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    common::assert_matches_schema("output.schema.json", &doc);
    let plan = &doc["report"];
    assert!(plan["prepare"].as_array().unwrap().iter().all(|sql| !sql.as_str().unwrap().contains("DROP")), "{plan}");
    let tables = plan["tables"].as_array().unwrap();
    let composite = tables.iter().find(|t| t["source"] == "src.composite").unwrap();
    assert_eq!(composite["merge"]["key"], serde_json::json!(["region", "seq"]));
    assert_eq!(composite["merge"]["incremental"], false);
    let statement = composite["merge"]["statement"].as_str().unwrap();
    assert!(
        statement.contains("ON CONFLICT (\"region\", \"seq\") DO UPDATE SET \"v\" = EXCLUDED.\"v\" WHERE (t.\"v\") IS DISTINCT FROM (EXCLUDED.\"v\")"),
        "{statement}"
    );
    let (code, text, _) = s.finish(None, &["run", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(text.contains("merge:    on (region, seq), reading every row, compared by the merge"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_merge_inserts_and_updates_keep_deleted_rows_and_write_nothing_when_nothing_changed() {
    let s = setup(UPSERT).await;

    // First sync: every table is created (keys, indexes, foreign keys) and filled.
    let doc = sync(&s, None);
    assert_same_keyed_data(&s).await;
    assert_eq!(key_counts(&s.target).await, "12 3");
    assert_eq!(merged(&doc, "skewed"), [4103, 0, 0]);

    // Changes at the source; a reader of the target sees them only after the sync.
    let src = s.source.connect("src").await.unwrap();
    src.batch_execute(
        "SET search_path = src;
         INSERT INTO skewed SELECT g, 'new ' || g FROM generate_series(5000, 5100) g;
         UPDATE skewed SET v = NULL WHERE id BETWEEN 10 AND 20;
         UPDATE skewed SET v = '' WHERE id BETWEEN 21 AND 30;
         DELETE FROM skewed WHERE id BETWEEN 3000 AND 3009;
         UPDATE \"Every Type\" SET t = repeat('large ', 200000), x = '<b>changed</b>', nf = 1.000 WHERE id = 2;
         UPDATE \"Every Type\" SET vc = '' WHERE vc IS NULL;
         UPDATE composite SET seq = seq + 100000 WHERE seq <= 10;
         INSERT INTO by_uuid VALUES ('ffffffff-ffff-ffff-ffff-ffffffffffff', -1);
         UPDATE by_text SET v = -v WHERE v % 100 = 0;",
    )
    .await
    .unwrap();
    let before_changes = writes_and_size(&s).await;
    let doc = sync(&s, None);
    assert!(writes_and_size(&s).await.0 > before_changes.0, "pg_stat sees the merges' writes");
    assert_eq!(merged(&doc, "skewed"), [101, 21, 4103 + 101 - 10 - 101 - 21]);
    assert_eq!(merged(&doc, "composite"), [10, 0, 2990]);
    assert_eq!(merged(&doc, "by_uuid"), [1, 0, 2500]);
    assert_eq!(merged(&doc, "by_text"), [0, 25, 2475]);
    let every_type_updated = merged(&doc, "Every Type")[1];
    assert!(every_type_updated >= 2, "the large value, xml, numeric scale and '' rows: {every_type_updated}");

    // Deletes are off: rows gone from the source (and old keys) stay in the target.
    let t = s.target.connect("dst").await.unwrap();
    let kept: i64 =
        t.query_one("SELECT count(*) FROM copy.skewed WHERE id BETWEEN 3000 AND 3009", &[]).await.unwrap().get(0);
    assert_eq!(kept, 10);
    let old_keys: i64 = t.query_one("SELECT count(*) FROM copy.composite WHERE seq <= 10", &[]).await.unwrap().get(0);
    assert_eq!(old_keys, 10);
    let large: String = t.query_one("SELECT t FROM copy.\"Every Type\" WHERE id = 2", &[]).await.unwrap().get(0);
    assert_eq!(large.len(), 1_200_000);
    let scale: String = t.query_one("SELECT nf::text FROM copy.\"Every Type\" WHERE id = 2", &[]).await.unwrap().get(0);
    assert_eq!(scale, "1.000", "an unconstrained numeric keeps the source's scale");
    // Without those leftovers, every table equals the source value by value.
    t.batch_execute(
        "DELETE FROM copy.skewed WHERE id BETWEEN 3000 AND 3009; DELETE FROM copy.composite WHERE seq <= 10",
    )
    .await
    .unwrap();
    assert_same_keyed_data(&s).await;

    // Nothing changed: no tuple is written, no table grows.
    let before = writes_and_size(&s).await;
    let doc = sync(&s, None);
    for table in keyed_tables() {
        let [inserted, updated, _] = merged(&doc, table);
        assert_eq!((inserted, updated), (0, 0), "{table}");
    }
    assert_eq!(
        writes_and_size(&s).await,
        before,
        "(tuples written, bytes) before and after a sync with nothing changed"
    );
    assert_same_keyed_data(&s).await;
    // Staging tables are temporary: none is left in any schema.
    let stages =
        s.target_scalar("SELECT count(*)::text FROM pg_class WHERE relname LIKE 'mssql_pg_migrate_merge_%'").await;
    assert_eq!(stages, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_sync_then_resume_converges_to_the_source() {
    let s = setup(UPSERT).await;
    let state_file = s.dir.path().join("upsert.state");
    sync(&s, Some(&state_file));
    let src = s.source.connect("src").await.unwrap();
    // (failpoint, state in a file)
    for (round, (point, use_file)) in
        [("mid-copy:3", true), ("before-commit:2", false), ("after-commit:4", true), ("chunk-saved:3", false)]
            .into_iter()
            .enumerate()
    {
        src.batch_execute(&format!(
            "UPDATE src.skewed SET v = 'round {round} ' || id WHERE id % 7 = {round};
             INSERT INTO src.skewed VALUES ({}, 'added in round {round}');
             UPDATE src.employees SET name = name || '{round}' WHERE id % 5 = 0;",
            2_000_000 + round
        ))
        .await
        .unwrap();
        let file = use_file.then_some(state_file.as_path());
        let mut running = start_until(&mut s.command(file, &["run"]), point);
        running.child.kill().unwrap(); // SIGKILL on Unix
        running.child.wait().unwrap();
        let (code, stdout, stderr) = s.finish(file, &["--output-json", "resume"]);
        assert_eq!(code, 0, "resume after SIGKILL at {point}:\n{stdout}\n{stderr}");
        assert!(!stdout.contains(SECRET));
        assert_same_keyed_data(&s).await;
        assert_eq!(key_counts(&s.target).await, "12 3", "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_delete_missing_rows_gone_from_the_source_are_deleted_also_after_a_kill() {
    let s = setup(&format!("{UPSERT}, delete_missing: true")).await;
    let state_file = s.dir.path().join("deletes.state");
    sync(&s, Some(&state_file));
    let src = s.source.connect("src").await.unwrap();
    let change = |round: i32| {
        format!(
            "SET search_path = src;
             DELETE FROM skewed WHERE id BETWEEN {lo} AND {hi};
             UPDATE composite SET seq = seq + 100000 WHERE seq = {round};
             DELETE FROM employees WHERE id > 1990 - {round};
             DELETE FROM by_text WHERE v % 97 = {round};
             INSERT INTO skewed VALUES (-{round} - 100, 'new');",
            lo = 3000 + 10 * round,
            hi = 3009 + 10 * round
        )
    };

    src.batch_execute(&change(1)).await.unwrap();
    let doc = sync(&s, Some(&state_file));
    assert_eq!(merged_and_deleted(&doc, "skewed"), [1, 0, 4103 - 10, 10]);
    assert_eq!(merged_and_deleted(&doc, "composite")[3], 1, "the old key of a changed key");
    assert_same_keyed_data(&s).await;
    assert_eq!(key_counts(&s.target).await, "12 3");
    // The keys read were dropped with the deletes (the state is in a file).
    let left = s
        .target_scalar("SELECT count(*)::text FROM pg_class WHERE relnamespace = 'mssql_pg_migrate'::regnamespace")
        .await;
    assert_eq!(left, "0");

    // Killed between the merges and the deletes, or in the middle of them: resume deletes exactly once.
    for (round, point) in [(2, "finalize-step:1"), (3, "finalize-step:4"), (4, "after-commit:5")] {
        src.batch_execute(&change(round)).await.unwrap();
        let mut running = start_until(&mut s.command(Some(&state_file), &["run"]), point);
        running.child.kill().unwrap(); // SIGKILL on Unix
        running.child.wait().unwrap();
        let (code, stdout, stderr) = s.finish(Some(&state_file), &["--output-json", "resume"]);
        assert_eq!(code, 0, "resume after SIGKILL at {point}:\n{stdout}\n{stderr}");
        assert_same_keyed_data(&s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_follows_columns_added_and_dropped_at_the_source_and_a_new_table() {
    let s = setup(UPSERT).await;
    sync(&s, None);
    let src = s.source.connect("src").await.unwrap();
    src.batch_execute(
        "SET search_path = src;
         ALTER TABLE skewed ADD COLUMN extra integer DEFAULT 7;
         UPDATE skewed SET extra = 8 WHERE id < 100;
         ALTER TABLE one_row DROP COLUMN v;
         INSERT INTO one_row VALUES (43);
         CREATE TABLE brand_new (id integer PRIMARY KEY, v text);
         INSERT INTO brand_new SELECT g, 'n' || g FROM generate_series(1, 500) g;",
    )
    .await
    .unwrap();
    let doc = sync(&s, None);
    let notes: Vec<&serde_json::Value> =
        doc["report"]["tables"].as_array().unwrap().iter().flat_map(|t| t["notes"].as_array().unwrap()).collect();
    let drift: Vec<String> = notes
        .iter()
        .filter(|n| n["kind"] == "drift")
        .map(|n| format!("{} {}: {}", n["table"].as_str().unwrap(), n["column"].as_str().unwrap(), n["message"]))
        .collect();
    assert_eq!(drift.len(), 2, "{drift:?}");
    assert!(drift[0].starts_with("src.one_row v: \"no longer in the source: kept"), "{drift:?}");
    assert!(
        drift[1].starts_with("src.skewed extra: \"added at the source: added to the target as integer"),
        "{drift:?}"
    );
    // The added column is filled for every row, old and new; the new table is created and loaded.
    let source = s.source.connect("src").await.unwrap();
    let target = s.target.connect("dst").await.unwrap();
    compare_tables(&source, "src", &target, "copy", &["skewed", "brand_new"]).await.unwrap();
    // The dropped column stays, with its values; the new row has its default.
    let kept =
        s.target_scalar("SELECT string_agg(id || '=' || coalesce(v, 'null'), ',' ORDER BY id) FROM copy.one_row").await;
    assert_eq!(kept, "42=null,43=dflt");

    // A type the target column cannot hold stops the run, naming the column...
    src.batch_execute("ALTER TABLE src.by_text ALTER COLUMN v TYPE text USING 'v' || v").await.unwrap();
    let (code, stdout, stderr) = s.finish(None, &["--output-json", "run"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("by_text") && message.contains("column \"v\" is integer"), "{message}");
    // ...or, with continue_on_error, skips that table and syncs the others.
    let config = s.write_config(
        "go_on.yaml",
        &std::fs::read_to_string(&s.config).unwrap().replace(UPSERT, &format!("{UPSERT}, continue_on_error: true")),
    );
    src.batch_execute("UPDATE src.skewed SET extra = 9 WHERE id = 1").await.unwrap();
    let out = s.command_with(&config, None, &["--output-json", "run"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(3), "{doc}");
    let tables = doc["report"]["tables"].as_array().unwrap();
    let by_text = tables.iter().find(|t| t["source"] == "src.by_text").unwrap();
    assert_eq!(by_text["status"], "failed");
    assert_eq!(merged(&doc, "skewed")[1], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_column_reads_only_changed_rows_and_no_late_commit_is_lost() {
    // Look back two days: a row committed late with a time up to two days
    // before the mark is still read.
    let s = setup(&format!("{UPSERT}, change_columns: {{skewed: modified}}, change_lookback: 172800")).await;
    let src = s.source.connect("src").await.unwrap();
    src.batch_execute(
        "ALTER TABLE src.skewed ADD COLUMN modified timestamptz;
         CREATE INDEX ON src.skewed (modified);
         UPDATE src.skewed SET modified = '2020-01-01 00:00:00+00';
         UPDATE src.skewed SET modified = '2021-01-01 00:00:00+00' WHERE id = 1;
         UPDATE src.skewed SET modified = NULL WHERE id = 2;",
    )
    .await
    .unwrap();
    let (code, text, _) = s.finish(None, &["run", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("merge:    on (id), reading every row: no mark of modified was found in the target"),
        "{text}"
    );
    let doc = sync(&s, None);
    assert_eq!(merged(&doc, "skewed"), [4103, 0, 0], "created: loaded whole");

    src.batch_execute(
        "UPDATE src.skewed SET v = 'changed', modified = '2022-01-01 00:00:00+00' WHERE id BETWEEN 10 AND 14;
         INSERT INTO src.skewed VALUES (9000, 'new', '2022-01-01 00:00:00+00');",
    )
    .await
    .unwrap();
    // The dry run shows the mark the target keeps and counts what the sync will read.
    let (code, text, _) = s.finish(None, &["run", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        text.contains(
            "merge:    on (id), reading rows with modified at or after the last sync's mark \
             2020-12-30 00:00:00+00 (8 now)"
        ),
        "{text}"
    );
    let out = s.command(None, &["--output-json", "run", "--dry-run"]).output().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    common::assert_matches_schema("output.schema.json", &plan);
    let planned = plan["report"]["tables"].as_array().unwrap().iter().find(|t| t["source"] == "src.skewed").unwrap();
    assert_eq!(
        (planned["merge"]["mark"].as_str(), planned["merge"]["changed_rows"].as_u64()),
        (Some("2020-12-30 00:00:00+00"), Some(8)),
        "{planned}"
    );
    // A target it cannot reach leaves the marks out, and says so.
    let unreachable = s.write_config(
        "unreachable.yaml",
        &std::fs::read_to_string(&s.config).unwrap().replace(
            &format!("port: {}, database: dst", s.target.port()),
            &format!("port: {}, database: dst", common::pair::closed_port()),
        ),
    );
    let out = s.command_with(&unreachable, None, &["run", "--dry-run"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("the marks the last sync left in the target could not be read"), "{text}");
    assert!(text.contains("reading every row: no mark of modified was found in the target"), "{text}");
    let doc = sync(&s, None);
    let skewed = doc["report"]["tables"].as_array().unwrap().iter().find(|t| t["source"] == "src.skewed").unwrap();
    // From two days before the last mark: row 1, the NULL row, the 5 changed and the new one.
    assert_eq!(skewed["rows"], 8, "{skewed}");
    assert_eq!(skewed["merged"]["read_since"], "2020-12-30 00:00:00+00");
    assert_eq!(merged(&doc, "skewed"), [1, 5, 2]);
    assert_same_keyed_data(&s).await;

    // With deletes too: the sync reads only the changed rows, then every
    // key (keys only) for the deletes; a row deleted at the source goes,
    // the unchanged ones stay.
    let both = s.write_config(
        "both.yaml",
        &std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("change_lookback: 172800", "change_lookback: 172800, delete_missing: [skewed]"),
    );
    let out = s.command_with(&both, None, &["run", "--dry-run"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("deletes:  rows whose key the source no longer has: every key is read (keys only)"),
        "{text}"
    );
    let out = s.command_with(&both, None, &["--output-json", "run", "--dry-run"]).output().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    common::assert_matches_schema("output.schema.json", &plan);
    let planned = plan["report"]["tables"].as_array().unwrap().iter().find(|t| t["source"] == "src.skewed").unwrap();
    assert_eq!(planned["merge"]["deletes"], "every_key_read", "{planned}");
    let other = plan["report"]["tables"].as_array().unwrap().iter().find(|t| t["source"] == "src.composite").unwrap();
    assert!(other["merge"].get("deletes").is_none(), "delete_missing names skewed only: {other}");
    src.batch_execute("DELETE FROM src.skewed WHERE id IN (3, 4, 9000)").await.unwrap();
    let out = s.command_with(&both, None, &["--output-json", "run"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{doc}");
    let skewed = doc["report"]["tables"].as_array().unwrap().iter().find(|t| t["source"] == "src.skewed").unwrap();
    // Read: the 5 changed rows and the NULL one; deleted: the 3 gone.
    assert_eq!((skewed["rows"].as_u64(), skewed["merged"]["deleted"].as_u64()), (Some(6), Some(3)), "{skewed}");
    assert_same_keyed_data(&s).await;
    // Killed while it collects the keys (their transaction open), then resumed.
    src.batch_execute("DELETE FROM src.skewed WHERE id IN (5, 6)").await.unwrap();
    let state = s.dir.path().join("both.state");
    let mut running = start_until(&mut s.command_with(&both, Some(&state), &["run"]), "collecting-keys:1");
    running.child.kill().unwrap();
    running.child.wait().unwrap();
    let out = s.command_with(&both, Some(&state), &["resume"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_keyed_data(&s).await;
    assert_eq!(s.target_scalar("SELECT count(*)::text FROM copy.skewed WHERE id IN (5, 6)").await, "0");

    // A sync during which a row commits with a time just before the mark it took.
    let running = start_until(&mut s.command(None, &["run"]), "mid-copy:1:2000");
    src.batch_execute("UPDATE src.skewed SET v = 'late', modified = '2021-12-31 12:00:00+00' WHERE id = 20")
        .await
        .unwrap();
    let (code, stderr) = running.wait();
    assert_eq!(code, Some(0), "{stderr}");
    // The next sync reads it: nothing is lost to the race.
    let doc = sync(&s, None);
    let skewed = doc["report"]["tables"].as_array().unwrap().iter().find(|t| t["source"] == "src.skewed").unwrap();
    assert_eq!(skewed["merged"]["read_since"], "2021-12-30 00:00:00+00");
    assert_eq!(s.target_scalar("SELECT v FROM copy.skewed WHERE id = 20").await, "late");
    assert_same_keyed_data(&s).await;
}

/// `skewed` synced by its `modified` column (NOT NULL): 2020-01-01 for
/// every row but `latest`, whose later time is the first sync's mark.
async fn skewed_with_change_column(latest: i64) -> (Setup, tokio_postgres::Client) {
    let s = setup(&format!("{UPSERT}, change_columns: {{skewed: modified}}, change_lookback: 0")).await;
    let src = s.source.connect("src").await.unwrap();
    src.batch_execute(&format!(
        "ALTER TABLE src.skewed ADD COLUMN modified timestamptz NOT NULL DEFAULT '2020-01-01 00:00:00+00';
         UPDATE src.skewed SET modified = '2020-06-01 00:00:00+00' WHERE id = {latest};"
    ))
    .await
    .unwrap();
    (s, src)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_read_is_split_over_the_changed_keys_not_the_table() {
    // The row rule of `setup` (split above 1,000 rows, 400 a partition, at
    // most 4): the table's 4,103 rows are four key ranges over its whole key.
    let (s, src) = skewed_with_change_column(2501).await;
    assert_eq!(merged(&sync(&s, None), "skewed"), [4103, 0, 0], "created: loaded whole");
    let partitions_of_skewed = |doc: &serde_json::Value| {
        let tables = doc["report"]["tables"].as_array().unwrap();
        let skewed = tables.iter().find(|t| t["source"] == "src.skewed").unwrap();
        (skewed["rows"].as_u64(), skewed["partitions"].as_u64())
    };

    // A change at the end of the key, as new and recent rows are. Without
    // an index on the change column, counting it would be another scan of
    // the table: the read keeps the table's four ranges, which share one.
    src.batch_execute(
        "UPDATE src.skewed SET v = 'changed ' || id, modified = '2022-01-01 00:00:00+00' WHERE id BETWEEN 2501 AND 4000",
    )
    .await
    .unwrap();
    let doc = sync(&s, None);
    assert_eq!(partitions_of_skewed(&doc), (Some(1500), Some(4)));
    assert_eq!(merged(&doc, "skewed"), [0, 1500, 0]);

    // With the index the change is counted: 1,500 rows are three
    // partitions of 500, bounded within 2501..4000.
    src.batch_execute(
        "CREATE INDEX ON src.skewed (modified);
         UPDATE src.skewed SET v = 'again ' || id, modified = '2023-01-01 00:00:00+00' WHERE id BETWEEN 2501 AND 4000;",
    )
    .await
    .unwrap();
    let doc = sync(&s, None);
    assert_eq!(partitions_of_skewed(&doc), (Some(1500), Some(3)));
    assert_eq!(merged(&doc, "skewed"), [0, 1500, 0]);
    let partitions: serde_json::Value = serde_json::from_str(
        &s.target_scalar("SELECT (state -> 'tables' -> 'src.skewed' -> 'partitions')::text FROM mssql_pg_migrate.runs")
            .await,
    )
    .unwrap();
    let bounds: Vec<(Option<&str>, Option<&str>)> =
        partitions.as_array().unwrap().iter().map(|p| (p["start_pk"].as_str(), p["end_pk"].as_str())).collect();
    assert_eq!(bounds, [(None, Some("3000")), (Some("3000"), Some("3500")), (Some("3500"), None)]);
    assert_same_keyed_data(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_table_merges_on_the_unique_index_upsert_keys_names() {
    let s = setup(&format!("{UPSERT}, upsert_keys: {{logs: ux_logs_ref, loose: ux_loose}}")).await;
    let src = s.source.connect("src").await.unwrap();
    src.batch_execute(
        "CREATE TABLE src.logs (ref integer NOT NULL, msg text);
         CREATE UNIQUE INDEX ux_logs_ref ON src.logs (ref);
         INSERT INTO src.logs SELECT g, 'm' || g FROM generate_series(1, 700) g;
         CREATE TABLE src.loose (ref integer, msg text);
         CREATE UNIQUE INDEX ux_loose ON src.loose (ref);",
    )
    .await
    .unwrap();
    // A unique index over a column that allows NULL cannot match rows.
    let (code, _, stderr) = s.finish(None, &["run"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("table src.loose: column \"ref\" of index \"ux_loose\" allows NULL"),
        "names the table, index and column:\n{stderr}"
    );
    src.batch_execute("DROP TABLE src.loose").await.unwrap();

    sync(&s, None);
    let key = s
        .target_scalar("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'copy.logs'::regclass")
        .await;
    assert_eq!(key, "PRIMARY KEY (ref)", "the named index is the copy's key");
    src.batch_execute("UPDATE src.logs SET msg = 'again' WHERE ref <= 3; INSERT INTO src.logs VALUES (701, 'new')")
        .await
        .unwrap();
    let doc = sync(&s, None);
    assert_eq!(merged(&doc, "logs"), [1, 3, 697]);
    let source = s.source.connect("src").await.unwrap();
    let target = s.target.connect("dst").await.unwrap();
    compare_tables(&source, "src", &target, "copy", &["logs"]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_missing_can_name_the_tables_it_applies_to() {
    let s = setup(&format!("{UPSERT}, delete_missing: [skewed]")).await;
    sync(&s, None);
    let src = s.source.connect("src").await.unwrap();
    src.batch_execute("DELETE FROM src.skewed WHERE id BETWEEN 1 AND 100; DELETE FROM src.by_text WHERE v <= 100")
        .await
        .unwrap();
    let doc = sync(&s, None);
    assert_eq!(merged_and_deleted(&doc, "skewed")[3], 100);
    assert_eq!(merged_and_deleted(&doc, "by_text")[3], 0);
    let left = s
        .target_scalar(
            "SELECT (SELECT count(*) FROM copy.skewed WHERE id BETWEEN 1 AND 100)::text || ' ' || \
             (SELECT count(*) FROM copy.by_text WHERE v <= 100)::text",
        )
        .await;
    assert_eq!(left, "0 100", "deleted in the table listed, kept in the other");
    let source = s.source.connect("src").await.unwrap();
    let target = s.target.connect("dst").await.unwrap();
    compare_tables(&source, "src", &target, "copy", &["skewed"]).await.unwrap();
    target.batch_execute("DELETE FROM copy.by_text WHERE v <= 100").await.unwrap();
    compare_tables(&source, "src", &target, "copy", &["by_text"]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_outlive_per_run_state_files_as_in_the_guides_airflow_dag() {
    let (s, src) = skewed_with_change_column(1).await;
    // `--state-file /tmp/{{ run_id }}.state`: a new file every hour.
    sync(&s, Some(&s.dir.path().join("run-1.state")));
    src.batch_execute(
        "UPDATE src.skewed SET v = 'hour 2', modified = '2020-07-01 00:00:00+00' WHERE id BETWEEN 5 AND 7",
    )
    .await
    .unwrap();
    let doc = sync(&s, Some(&s.dir.path().join("run-2.state")));
    let skewed = doc["report"]["tables"].as_array().unwrap().iter().find(|t| t["source"] == "src.skewed").unwrap();
    assert_eq!(skewed["merged"]["read_since"], "2020-06-01 00:00:00+00", "{skewed}");
    assert_eq!(skewed["rows"], 4, "row 1 at the mark and the 3 changed");
    assert_eq!(merged(&doc, "skewed"), [0, 3, 1]);
    assert_same_keyed_data(&s).await;
}
