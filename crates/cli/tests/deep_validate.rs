//! `validate --deep` through the real binary: a clean copy of the edge-case
//! fixture matches value for value; single corruptions injected into the
//! target are each found, with the row's key, the column and both values.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use common::assert_matches_schema;
use common::pair::setup;
use serde_json::Value;

fn table<'a>(report: &'a Value, source: &str) -> &'a Value {
    report["tables"].as_array().unwrap().iter().find(|t| t["source"] == source).unwrap_or_else(|| panic!("{source}"))
}

/// The sample of `source`'s table with this kind and key.
fn sample<'a>(report: &'a Value, source: &str, kind: &str, key: &[&str]) -> &'a Value {
    let t = table(report, source);
    t["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind && s["key"] == serde_json::json!(key))
        .unwrap_or_else(|| panic!("no {kind} row {key:?} in {source}: {t:#}"))
}

/// (source, target) of `column` in the sample.
fn values(sample: &Value, column: &str) -> (Value, Value) {
    let c = sample["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == column)
        .unwrap_or_else(|| panic!("column {column} not reported: {sample:#}"));
    (c["source"].clone(), c["target"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_copy_matches_and_each_injected_corruption_is_named() {
    let s = setup("target_mode: drop_recreate").await;
    let (code, _, stderr) = s.finish(None, &["run"]);
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, stderr) = s.finish(None, &["--output-json", "validate", "--deep"]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_matches_schema("output.schema.json", &doc);
    let report = &doc["report"];
    assert_eq!(report["mismatched"], 0, "{report:#}");
    let source = s.source.connect("src").await.unwrap();
    for t in report["tables"].as_array().unwrap() {
        let name = t["source"].as_str().unwrap().strip_prefix("src.").unwrap();
        let sql = format!("SELECT count(*) FROM src.\"{}\"", name.replace('"', "\"\""));
        let count: i64 = source.query_one(&sql, &[]).await.unwrap().get(0);
        assert_eq!(t["rows_compared"], count, "every row compared: {t}");
    }
    assert_eq!(table(report, "src.no_key")["keyed"], false);
    // Every table with rows is proven by the servers' checksums without a
    // row read: by integer key ranges, by buckets of a composite, uuid or
    // text key's hash, or (keyless) as a multiset.
    for name in [
        "src.Every Type",
        "src.skewed",
        "src.user",
        "src.employees",
        "src.no_key",
        "src.Order \"Lines\"",
        "src.composite",
        "src.by_uuid",
        "src.by_text",
    ] {
        let t = table(report, name);
        assert_eq!((t["method"].clone(), t["rows_fetched"].clone()), (Value::from("checksum"), Value::from(0)), "{t}");
    }

    // Row by row when asked: every row read, the same verdict.
    let (code, stdout, stderr) = s.finish(None, &["--output-json", "validate", "--deep", "--method", "rows"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    for t in doc["report"]["tables"].as_array().unwrap() {
        assert_eq!((t["method"].clone(), t["rows_fetched"].clone()), (Value::from("rows"), t["rows_compared"].clone()));
    }

    let target = s.target.connect("dst").await.unwrap();
    // A table the target lacks is named, and the others are still compared.
    target.batch_execute("ALTER TABLE copy.\"user\" RENAME TO user_away").await.unwrap();
    let (code, stdout, _) = s.finish(None, &["--output-json", "validate", "--deep"]);
    assert_eq!(code, 4);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let missing = table(&doc["report"], "src.user");
    assert_eq!(
        missing["error"], "the target has no table \"copy\".\"user\" (run the migration first, or check target.schema)",
        "{missing}"
    );
    assert_eq!(
        (doc["report"]["matched"].clone(), doc["report"]["mismatched"].clone()),
        (Value::from(12), Value::from(1))
    );
    target.batch_execute("ALTER TABLE copy.user_away RENAME TO \"user\"").await.unwrap();
    target
        .batch_execute(
            r#"
            UPDATE copy."Every Type" SET i4 = 1, ts = ts + interval '1 microsecond' WHERE id = 4;
            UPDATE copy."Every Type" SET n = n + 0.0000000001, d = 2, dt = dt + 1 WHERE id = 5;
            UPDATE copy."Every Type" SET t = left(t, 10), vc = 'x ', by = '\x00ff11' WHERE id = 3;
            UPDATE copy."Every Type" SET b = true, u = '00000000-0000-0000-0000-000000000001', x = '<b/>' WHERE id = 2;
            UPDATE copy."Every Type" SET vc = '' WHERE id = 1;
            DELETE FROM copy.skewed WHERE id = 1000000000000;
            INSERT INTO copy.skewed VALUES (-6, 'extra');
            INSERT INTO copy.no_key VALUES (3, 'dup');
            UPDATE copy.composite SET v = v + 1 WHERE region = 'r1' AND seq = 1;
            DELETE FROM copy.by_uuid WHERE id = md5('7')::uuid;
            UPDATE copy.by_text SET v = -1 WHERE k = md5('3') || 'Z';
            INSERT INTO copy.by_text VALUES ('not in the source', 7);
            "#,
        )
        .await
        .unwrap();

    let (code, stdout, stderr) = s.finish(None, &["--output-json", "validate", "--deep"]);
    assert_eq!(code, 4, "{stderr}\n{stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_matches_schema("output.schema.json", &doc);
    assert_eq!(doc["status"], "mismatch");
    assert_eq!(doc["error"]["exit_code"], 4);
    let report = &doc["report"];

    let every = "src.Every Type";
    assert_eq!(table(report, every)["different"], 5);
    let row4 = sample(report, every, "different", &["4"]);
    assert_eq!(values(row4, "i4"), (Value::from("0"), Value::from("1")));
    assert_eq!(values(row4, "ts"), (Value::from("2000-01-01 00:00:00"), Value::from("2000-01-01 00:00:00.000001")));
    assert_eq!(row4["columns"].as_array().unwrap().len(), 2, "only the changed columns: {row4}");
    let row5 = sample(report, every, "different", &["5"]);
    assert_eq!(values(row5, "n"), (Value::from("0.0000000001"), Value::from("0.0000000002")));
    assert_eq!(values(row5, "d"), (Value::from("-0"), Value::from("2")));
    assert_eq!(values(row5, "dt"), (Value::from("1969-07-20"), Value::from("1969-07-21")));
    let row3 = sample(report, every, "different", &["3"]);
    assert_eq!(values(row3, "vc"), (Value::from("x"), Value::from("x ")), "a trailing space");
    assert_eq!(values(row3, "t").1, Value::from("tab\there\nn"), "a truncated string");
    assert_eq!(values(row3, "by"), (Value::from("\\x00ff10"), Value::from("\\x00ff11")));
    let row2 = sample(report, every, "different", &["2"]);
    assert_eq!(values(row2, "b"), (Value::from("false"), Value::from("true")));
    assert_eq!(values(row2, "u").1, Value::from("00000000-0000-0000-0000-000000000001"));
    assert_eq!(values(row2, "x"), (Value::from("<a/>"), Value::from("<b/>")));
    let row1 = sample(report, every, "different", &["1"]);
    assert_eq!(values(row1, "vc"), (Value::Null, Value::from("")), "NULL turned into an empty string");

    let skewed = table(report, "src.skewed");
    assert_eq!((skewed["missing"].clone(), skewed["extra"].clone()), (Value::from(1), Value::from(1)));
    sample(report, "src.skewed", "missing", &["1000000000000"]);
    sample(report, "src.skewed", "extra", &["-6"]);
    // Found by bisecting the checksums: of its 4,101 source rows, only the
    // missing one was read (the extra one lies below every source key).
    assert_eq!((skewed["method"].clone(), skewed["rows_fetched"].clone()), (Value::from("checksum"), Value::from(1)));

    let no_key = table(report, "src.no_key");
    assert_eq!((no_key["missing"].clone(), no_key["extra"].clone()), (Value::from(0), Value::from(1)), "{no_key}");

    let composite = sample(report, "src.composite", "different", &["r1", "1"]);
    assert_eq!(values(composite, "v"), (Value::from("3"), Value::from("4")));
    let uuid: String = source.query_one("SELECT md5('7')::uuid::text", &[]).await.unwrap().get(0);
    sample(report, "src.by_uuid", "missing", &[&uuid]);
    let text_key: String = source.query_one("SELECT md5('3') || 'Z'", &[]).await.unwrap().get(0);
    assert_eq!(values(sample(report, "src.by_text", "different", &[&text_key]), "v").1, Value::from("-1"));
    sample(report, "src.by_text", "extra", &["not in the source"]);
    // Found through the buckets of the key's hash: only the rows of the
    // buckets whose checksums differ were read (the extra row's bucket
    // may be the changed row's).
    for (name, buckets) in [("src.composite", 1), ("src.by_uuid", 1), ("src.by_text", 2)] {
        let t = table(report, name);
        let (fetched, compared) = (t["rows_fetched"].as_u64().unwrap(), t["rows_compared"].as_u64().unwrap());
        assert_eq!(t["method"], "checksum", "{t}");
        let per_bucket = compared / t["chunks"].as_u64().unwrap();
        assert!(fetched > 0 && fetched <= buckets * 3 * per_bucket, "{fetched} of {compared} rows read: {t}");
    }
    let by_text = table(report, "src.by_text");
    assert_eq!((by_text["different"].clone(), by_text["extra"].clone()), (Value::from(1), Value::from(1)));

    for untouched in ["src.user", "src.one_row", "src.empty_table", "src.Order \"Lines\"", "src.ca", "src.cb"] {
        assert_eq!(table(report, untouched)["different"], 0, "{untouched}");
        assert!(table(report, untouched)["samples"].as_array().unwrap().is_empty(), "{untouched}");
    }
    assert_eq!(report["mismatched"], 6, "the six tables changed, no other: {report:#}");

    // The human report names the same.
    let (code, text, _) = s.finish(None, &["validate", "--deep"]);
    assert_eq!(code, 4);
    assert!(text.contains("key (1000000000000): missing in the target"), "{text}");
    assert!(text.contains("vc: source NULL target \"\""), "{text}");

    // A sample compares some chunks (here, with fewer than 10,000 rows a
    // table, the one chunk each has) and does not look for extra rows.
    let (code, stdout, _) = s.finish(None, &["--output-json", "validate", "--deep", "--sample", "25"]);
    assert_eq!(code, 4);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_matches_schema("output.schema.json", &doc);
    let skewed = table(&doc["report"], "src.skewed");
    assert_eq!((skewed["sampled_percent"].clone(), skewed["missing"].clone()), (Value::from(25.0), Value::from(1)));
    assert_eq!(skewed["extra"], 0, "not looked for in a sample");
    let (code, _, stderr) = s.finish(None, &["validate", "--deep", "--sample", "0"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is not a percentage above 0 and at most 100"), "{stderr}");

    // Repair re-copies exactly the differing rows and deletes the extra
    // ones (drop_recreate: the target holds only the source's rows).
    let before: i64 = target.query_one("SELECT count(*) FROM copy.skewed", &[]).await.unwrap().get(0);
    let (code, stdout, stderr) = s.finish(None, &["--output-json", "validate", "--deep", "--repair"]);
    assert_eq!(code, 4, "the keyless table cannot be repaired: {stderr}\n{stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_matches_schema("output.schema.json", &doc);
    let report = &doc["report"];
    let every = table(report, "src.Every Type");
    assert_eq!((every["repaired"].clone(), every["remaining"].clone()), (Value::from(5), Value::from(0)), "{every}");
    let skewed = table(report, "src.skewed");
    assert_eq!((skewed["repaired"].clone(), skewed["deleted"].clone()), (Value::from(1), Value::from(1)), "{skewed}");
    let by_text = table(report, "src.by_text");
    assert_eq!(
        (by_text["repaired"].clone(), by_text["deleted"].clone()),
        (Value::from(1), Value::from(1)),
        "{by_text}"
    );
    assert_eq!(table(report, "src.no_key")["remaining"], 1, "keyless: counted, not repaired");
    assert_eq!(report["mismatched"], 1, "{report:#}");
    let after: i64 = target.query_one("SELECT count(*) FROM copy.skewed", &[]).await.unwrap().get(0);
    assert_eq!(after, before, "one row back, one row gone");
    target.batch_execute("DELETE FROM copy.no_key WHERE ctid = (SELECT max(ctid) FROM copy.no_key)").await.unwrap();
    let (code, stdout, stderr) = s.finish(None, &["validate", "--deep"]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    s.assert_same_data().await;
}
