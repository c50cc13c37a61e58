//! `cargo xtask bench --mode upsert`: what keeping a PostgreSQL copy current
//! costs, on the same Stack Overflow-shaped data and clusters as `bench`.
//! Per round, interleaved:
//!
//! - (d) a `drop_recreate` full load, the yardstick;
//! - (u1) the first upsert, into an empty target;
//! - (u2) a re-sync after 1% of the rows changed at the source (every
//!   hundredth row of each scaled table, one column each);
//! - (u3) a re-sync with nothing changed.
//!
//! Every sync reads all rows (no change columns yet), so (u2) and (u3) show
//! the merge's cost of finding what changed. Each upsert's report is checked:
//! (u2) must update exactly the rows changed, (u3) none.

use mssql_pg_migrate_testkit::PgCluster;

use crate::bench::{
    BenchArgs, Sample, build_release, load_source, median, memory_bytes, reset, run_tool_doc, tool_config,
};

/// The column each scaled table changes in (u2); an integer, so a change is
/// `+ 1` whatever the value.
const CHANGED: &[(&str, &str)] = &[
    ("Users", "Age"),
    ("Posts", "Score"),
    ("Comments", "Score"),
    ("Votes", "BountyAmount"),
    ("Badges", "UserId"),
    ("PostLinks", "LinkTypeId"),
];

pub fn bench(args: &BenchArgs) -> Result<(), String> {
    let binary = build_release()?;
    eprintln!("starting the source and target clusters");
    let source = PgCluster::start().map_err(|e| e.to_string())?;
    let target = PgCluster::start().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let (rows, bytes) = runtime.block_on(load_source(&source, &target, args.scale))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let full = dir.path().join("full.yaml");
    std::fs::write(&full, tool_config(&source, &target)).map_err(|e| e.to_string())?;
    let upsert = dir.path().join("upsert.yaml");
    std::fs::write(&upsert, format!("{}migration: {{target_mode: upsert}}\n", tool_config(&source, &target)))
        .map_err(|e| e.to_string())?;

    let (mut d, mut u1, mut u2, mut u3) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut peak = 0;
    for run in 1..=args.runs {
        eprintln!("round {run} of {}", args.runs);
        runtime.block_on(reset(&target))?;
        d.push(run_tool_doc(&binary, &full, rows)?.0);
        runtime.block_on(reset(&target))?;
        let (sample, doc) = run_tool_doc(&binary, &upsert, rows)?;
        check_merged(&doc, "u1", Some(rows), Some(0))?;
        u1.push(sample);
        let changed = runtime.block_on(change_one_percent(&source, run))?;
        let (sample, doc) = run_tool_doc(&binary, &upsert, rows)?;
        check_merged(&doc, "u2", Some(0), Some(changed))?;
        u2.push(sample);
        let (sample, doc) = run_tool_doc(&binary, &upsert, rows)?;
        check_merged(&doc, "u3", Some(0), Some(0))?;
        u3.push(sample);
        peak = [&u1, &u2, &u3].iter().flat_map(|s| s.iter()).filter_map(|s| s.peak_rss_bytes).max().unwrap_or(0);
    }
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(0);
    println!("machine: {cores} cores, {:.1} GiB memory", memory_bytes() as f64 / (1u64 << 30) as f64);
    println!(
        "data: scale {}, {rows} rows in 9 tables, {:.0} MB in the source's heap and TOAST",
        args.scale,
        bytes as f64 / 1e6
    );
    let line = |label: &str, samples: &[Sample]| {
        let m = median(samples);
        let all: Vec<String> = samples.iter().map(|s| format!("{:.2}", s.seconds)).collect();
        println!("{label:<40} median {m:>7.2} s   {:>9.0} rows/s   (runs: {})", rows as f64 / m, all.join(" "));
        m
    };
    let full_load = line("(d) drop_recreate full load", &d);
    let first = line("(u1) upsert into an empty target", &u1);
    let one_percent = line("(u2) upsert after 1% changed", &u2);
    let unchanged = line("(u3) upsert with nothing changed", &u3);
    println!("peak RSS of the upserts: {:.1} MB", peak as f64 / 1e6);
    println!(
        "ratios to (d): (u1) {:.2}   (u2) {:.2}   (u3) {:.2}",
        first / full_load,
        one_percent / full_load,
        unchanged / full_load
    );
    Ok(())
}

/// Changes one column of every hundredth row of each scaled table (a
/// different hundredth each round); returns the rows changed.
async fn change_one_percent(source: &PgCluster, round: usize) -> Result<u64, String> {
    let client = source.connect("so_src").await.map_err(|e| e.to_string())?;
    let mut changed = 0;
    for (table, column) in CHANGED {
        let sql = format!(
            "UPDATE so.\"{table}\" SET \"{column}\" = coalesce(\"{column}\", 0) + 1 WHERE \"Id\" % 100 = {}",
            round % 100
        );
        changed += client.execute(&sql, &[]).await.map_err(|e| format!("changing {table}: {e}"))?;
    }
    client.batch_execute("VACUUM ANALYZE").await.map_err(|e| e.to_string())?;
    Ok(changed)
}

/// Checks the report's merge counts summed over the tables.
fn check_merged(
    doc: &serde_json::Value,
    label: &str,
    inserted: Option<u64>,
    updated: Option<u64>,
) -> Result<(), String> {
    let tables = doc["report"]["tables"].as_array().ok_or("the report has no tables")?;
    let sum = |field: &str| tables.iter().map(|t| t["merged"][field].as_u64().unwrap_or(0)).sum::<u64>();
    let (got_inserted, got_updated) = (sum("inserted"), sum("updated"));
    if inserted.is_some_and(|n| n != got_inserted) || updated.is_some_and(|n| n != got_updated) {
        return Err(format!(
            "{label}: the merges inserted {got_inserted} and updated {got_updated} rows, expected {inserted:?} and {updated:?}"
        ));
    }
    Ok(())
}
