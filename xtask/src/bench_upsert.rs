//! `cargo xtask bench --mode upsert [--source mssql]`: what keeping a
//! PostgreSQL copy current costs, on the same Stack Overflow-shaped data as
//! `bench`, from a PostgreSQL cluster or from SQL Server (the TDS server
//! `bench --source mssql` uses, in a database of its own, `…_upsert`, as
//! the bench changes it). Per round, interleaved:
//!
//! - (d) a `drop_recreate` full load, the yardstick;
//! - (u1) the first upsert, into an empty target;
//! - (u2c) a re-sync after 1% of the rows changed at the source (every
//!   hundredth row of each scaled table, one column each, and its
//!   `Modified` time), reading only changed rows (`change_columns`);
//! - (u3c) a re-sync with nothing changed, reading only changed rows;
//! - (u3cd) the same with `delete_missing: true`: every key is read too
//!   (keys only), which is what deletes cost an incremental sync;
//! - (u2) and (u3): the same without change columns, every row read and
//!   compared by the merge.
//!
//! Every table gets a `Modified` column first (2020-01-01 for every row,
//! the last row a day later), and from the second round on each table's
//! last row is made the latest again before the first upsert, so every
//! round's (u2c) reads the 1% and one row, not also the last round's 1%,
//! which shares the last round's latest time. Each upsert's report is
//! checked: the 1% syncs must update exactly the rows changed, the others
//! none.

use mssql_pg_migrate_testkit::PgCluster;
use mssql_pg_migrate_testkit::mssql::TestServer;

use crate::bench::{BenchArgs, Sample, Sourced, median, reset, run_tool_doc};

/// The source the bench changes between syncs.
enum Changing<'a> {
    Postgres(&'a PgCluster),
    Mssql(&'a TestServer),
}

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
    let servers = Sourced::start(args, Some("upsert"))?;
    let (binary, full, target, runtime, rows) =
        (servers.binary(), servers.config(), servers.target(), servers.runtime(), servers.rows());
    let source = match &servers {
        Sourced::Postgres { bench, .. } => Changing::Postgres(&bench.source),
        Sourced::Mssql(bench) => Changing::Mssql(&bench.server),
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let base = std::fs::read_to_string(full).map_err(|e| e.to_string())?;
    runtime.block_on(add_modified_columns(&source))?;
    let upsert = dir.path().join("upsert.yaml");
    std::fs::write(&upsert, format!("{base}migration: {{target_mode: upsert}}\n")).map_err(|e| e.to_string())?;
    let incremental = dir.path().join("incremental.yaml");
    std::fs::write(
        &incremental,
        format!("{base}migration: {{target_mode: upsert, change_columns: {{'*': Modified}}, change_lookback: 0}}\n"),
    )
    .map_err(|e| e.to_string())?;
    let incremental_deletes = dir.path().join("incremental_deletes.yaml");
    std::fs::write(
        &incremental_deletes,
        format!(
            "{base}migration: {{target_mode: upsert, change_columns: {{'*': Modified}}, change_lookback: 0, \
             delete_missing: true}}\n"
        ),
    )
    .map_err(|e| e.to_string())?;

    let mut samples: [Vec<Sample>; 7] = Default::default();
    let [d, u1, u2c, u3c, u3cd, u2, u3] = &mut samples;
    for run in 1..=args.runs {
        eprintln!("round {run} of {}", args.runs);
        if run > 1 {
            // The last round's changes share one time, the latest: one row
            // is made later still, so this round's first sync takes its
            // mark from one row, as in round 1 and in a live table.
            runtime.block_on(touch_last_rows(&source))?;
        }
        runtime.block_on(reset(target))?;
        d.push(run_tool_doc(binary, full, Some(rows))?.0);
        runtime.block_on(reset(target))?;
        // Takes the marks the incremental syncs start from.
        let (sample, doc) = run_tool_doc(binary, &incremental, Some(rows))?;
        check_merged(&doc, "u1", Some(rows), Some(0))?;
        u1.push(sample);
        let changed = runtime.block_on(change_one_percent(&source, 2 * run))?;
        let (sample, doc) = run_tool_doc(binary, &incremental, None)?;
        check_merged(&doc, "u2c", Some(0), Some(changed))?;
        u2c.push(sample);
        let (sample, doc) = run_tool_doc(binary, &incremental, None)?;
        check_merged(&doc, "u3c", Some(0), Some(0))?;
        u3c.push(sample);
        let (sample, doc) = run_tool_doc(binary, &incremental_deletes, None)?;
        check_merged(&doc, "u3cd", Some(0), Some(0))?;
        check_deleted(&doc, "u3cd", 0)?;
        u3cd.push(sample);
        let changed = runtime.block_on(change_one_percent(&source, 2 * run + 1))?;
        let (sample, doc) = run_tool_doc(binary, &upsert, Some(rows))?;
        check_merged(&doc, "u2", Some(0), Some(changed))?;
        u2.push(sample);
        let (sample, doc) = run_tool_doc(binary, &upsert, Some(rows))?;
        check_merged(&doc, "u3", Some(0), Some(0))?;
        u3.push(sample);
    }
    let peak = samples[1..].iter().flatten().filter_map(|s| s.peak_rss_bytes).max().unwrap_or(0);
    let [d, u1, u2c, u3c, u3cd, u2, u3] = &samples;
    println!("source: {}; data: scale {}, {rows} rows in 9 tables", args.source, args.scale);
    let line = |label: &str, samples: &[Sample]| {
        let m = median(samples);
        let all: Vec<String> = samples.iter().map(|s| format!("{:.2}", s.seconds)).collect();
        println!("{label:<40} median {m:>7.2} s   {:>9.0} rows/s   (runs: {})", rows as f64 / m, all.join(" "));
        m
    };
    let full_load = line("(d) drop_recreate full load", d);
    let first = line("(u1) upsert into an empty target", u1);
    let changed_c = line("(u2c) after 1% changed, change columns", u2c);
    let unchanged_c = line("(u3c) nothing changed, change columns", u3c);
    let unchanged_cd = line("(u3cd) the same, with delete_missing", u3cd);
    let changed = line("(u2) after 1% changed, every row", u2);
    let unchanged = line("(u3) nothing changed, every row", u3);
    println!("peak RSS of the upserts: {:.1} MB", peak as f64 / 1e6);
    println!(
        "ratios to (d): (u1) {:.2}   (u2c) {:.3}   (u3c) {:.3}   (u3cd) {:.3}   (u2) {:.2}   (u3) {:.2}",
        first / full_load,
        changed_c / full_load,
        unchanged_c / full_load,
        unchanged_cd / full_load,
        changed / full_load,
        unchanged / full_load
    );
    Ok(())
}

/// Gives every table the change column `Modified` (2020-01-01, a constant
/// default, so no table is rewritten; the last row a day later, so the
/// maximum is one row as in a live table), indexed as a change column is
/// where such syncs run. On SQL Server only where missing: its database
/// is kept between benches.
async fn add_modified_columns(source: &Changing<'_>) -> Result<(), String> {
    match source {
        Changing::Postgres(source) => {
            let client = source.connect("so_src").await.map_err(|e| e.to_string())?;
            for table in crate::sodata::TABLES {
                let t = format!("so.\"{}\"", table.name);
                let sql = format!(
                    "ALTER TABLE {t} ADD COLUMN \"Modified\" timestamp(3) NOT NULL DEFAULT '2020-01-01';
                     UPDATE {t} SET \"Modified\" = '2020-01-02' WHERE \"Id\" = (SELECT max(\"Id\") FROM {t});
                     CREATE INDEX ON {t} (\"Modified\");
                     ANALYZE {t};"
                );
                client.batch_execute(&sql).await.map_err(|e| format!("adding Modified to {}: {e}", table.name))?;
            }
        }
        Changing::Mssql(server) => {
            let mut client = server.connect().await?;
            for table in crate::sodata::TABLES {
                let name = table.name;
                let sql = format!(
                    "IF COL_LENGTH(N'dbo.{name}', N'Modified') IS NULL
                     BEGIN
                       ALTER TABLE dbo.[{name}] ADD [Modified] datetime2(3) NOT NULL
                         CONSTRAINT [DF_{name}_Modified] DEFAULT '2020-01-01';
                       EXEC(N'UPDATE dbo.[{name}] SET [Modified] = ''2020-01-02''
                              WHERE [Id] = (SELECT MAX([Id]) FROM dbo.[{name}]);
                              CREATE INDEX [IX_{name}_Modified] ON dbo.[{name}] ([Modified]);');
                     END"
                );
                let results = client.simple_query(sql).await.map_err(|e| format!("adding Modified to {name}: {e}"))?;
                results.into_results().await.map_err(|e| format!("adding Modified to {name}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Gives each table's last row (by `Id`) the latest `Modified` time.
async fn touch_last_rows(source: &Changing<'_>) -> Result<(), String> {
    match source {
        Changing::Postgres(source) => {
            let client = source.connect("so_src").await.map_err(|e| e.to_string())?;
            for table in crate::sodata::TABLES {
                let t = format!("so.{}", crate::sodata::quote_pg(table.name));
                let sql = format!(
                    "UPDATE {t} SET \"Modified\" = localtimestamp WHERE \"Id\" = (SELECT max(\"Id\") FROM {t})"
                );
                client.execute(&sql, &[]).await.map_err(|e| format!("touching {}: {e}", table.name))?;
            }
        }
        Changing::Mssql(server) => {
            let mut client = server.connect().await?;
            for table in crate::sodata::TABLES {
                let t = format!("dbo.{}", crate::sodata::quote_mssql(table.name));
                let sql = format!("UPDATE {t} SET [Modified] = SYSDATETIME() WHERE [Id] = (SELECT MAX([Id]) FROM {t})");
                client.execute(sql, &[]).await.map_err(|e| format!("touching {}: {e}", table.name))?;
            }
        }
    }
    Ok(())
}

/// Changes one column of every hundredth row of each scaled table (a
/// different hundredth each round), and its `Modified` time; returns the
/// rows changed.
async fn change_one_percent(source: &Changing<'_>, round: usize) -> Result<u64, String> {
    let mut changed = 0;
    match source {
        Changing::Postgres(source) => {
            let client = source.connect("so_src").await.map_err(|e| e.to_string())?;
            for (table, column) in CHANGED {
                let sql = format!(
                    "UPDATE so.\"{table}\" SET \"{column}\" = coalesce(\"{column}\", 0) + 1, \"Modified\" = localtimestamp \
                     WHERE \"Id\" % 100 = {}",
                    round % 100
                );
                changed += client.execute(&sql, &[]).await.map_err(|e| format!("changing {table}: {e}"))?;
            }
            client.batch_execute("VACUUM ANALYZE").await.map_err(|e| e.to_string())?;
        }
        Changing::Mssql(server) => {
            let mut client = server.connect().await?;
            for (table, column) in CHANGED {
                let sql = format!(
                    "UPDATE dbo.[{table}] SET [{column}] = ISNULL([{column}], 0) + 1, [Modified] = SYSDATETIME() \
                     WHERE [Id] % 100 = {}",
                    round % 100
                );
                let done = client.execute(sql, &[]).await.map_err(|e| format!("changing {table}: {e}"))?;
                changed += done.total();
            }
        }
    }
    Ok(changed)
}

/// Checks the report's merge counts summed over the tables.
/// Every table's report says `deleted` rows were deleted, in all.
fn check_deleted(doc: &serde_json::Value, label: &str, deleted: u64) -> Result<(), String> {
    let tables = doc["report"]["tables"].as_array().ok_or("the report has no tables")?;
    let got: u64 = tables.iter().map(|t| t["merged"]["deleted"].as_u64().unwrap_or(0)).sum();
    if got != deleted {
        return Err(format!("{label}: {got} rows deleted, expected {deleted}"));
    }
    Ok(())
}

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
