//! Memory stays bounded whatever the values' size: a table of 50 MB values
//! is copied with a peak resident set under a fixed bound (measured with
//! `wait4`, no timing involved), and every value arrives intact.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use common::pair::{SECRET, run_measured, setup};

/// What the whole process may use, values included (issue 6's target).
const PEAK_RSS_LIMIT: u64 = 200 << 20;
const VALUE_BYTES: i64 = 50 << 20;
const ROWS: i64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabyte_values_are_copied_within_the_memory_bound() {
    let s = setup("target_mode: drop_recreate, include_tables: [big]").await;
    let src = s.source.connect("src").await.unwrap();
    // Each value differs, so a mix-up between rows would show in the digests.
    src.batch_execute(&format!(
        "CREATE TABLE src.big (id integer PRIMARY KEY, payload bytea NOT NULL);
         INSERT INTO src.big SELECT g, decode(repeat(lpad(to_hex(g), 2, '0'), {VALUE_BYTES}), 'hex')
         FROM generate_series(1, {ROWS}) g;
         ANALYZE src.big;"
    ))
    .await
    .unwrap();

    let usage = run_measured(&mut s.command(None, &["--verbosity", "warn", "run"]));
    let peak = usage.peak_rss_bytes;
    assert_eq!(usage.code, Some(0));
    println!("peak RSS {:.1} MB for {ROWS} values of {} MB", peak as f64 / 1e6, VALUE_BYTES >> 20);
    assert!(peak <= PEAK_RSS_LIMIT, "peak RSS {} MB exceeds {} MB", peak >> 20, PEAK_RSS_LIMIT >> 20);

    let digests = "SELECT string_agg(id || ':' || length(payload) || ':' || md5(payload), ',' ORDER BY id) FROM ";
    let expected: String = src.query_one(&format!("{digests}src.big"), &[]).await.unwrap().get(0);
    let copied = s.target_scalar(&format!("{digests}copy.big")).await;
    assert_eq!(copied, expected);
    assert!(!copied.contains(SECRET));
}
