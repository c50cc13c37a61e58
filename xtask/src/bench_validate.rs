//! `cargo xtask bench --mode validate`: what proving a copy costs, next to
//! the load that made it, on the Stack Overflow-shaped set from PostgreSQL
//! (`--source pg`, the default) or SQL Server (`--source mssql`). Per
//! round, interleaved:
//!
//! - (d) a `drop_recreate` full load: the yardstick, and the copy checked;
//! - (v) `validate`: row counts only;
//! - (vd) `validate --deep --method checksum` of that identical copy, and
//! - (vr) `validate --deep --method rows`, each of which must exit 0.
//!
//! Besides the times and peak RSS, it prints how (vd) compared each table
//! (by checksum, or row by row where no checksum applies) and how many rows
//! it had to read.

use crate::bench::{BenchArgs, Sample, Sourced, median, reset, run_command, run_tool};

pub fn bench(args: &BenchArgs) -> Result<(), String> {
    let servers = Sourced::start(args, None)?;
    let (binary, config, target, runtime, rows) =
        (servers.binary(), servers.config(), servers.target(), servers.runtime(), servers.rows());

    let (mut load, mut count, mut deep, mut rows_deep) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut last_deep = serde_json::Value::Null;
    for run in 1..=args.runs {
        eprintln!("round {run} of {}", args.runs);
        runtime.block_on(reset(target))?;
        load.push(run_tool(binary, config, rows)?);
        count.push(run_command(binary, config, &["validate"])?.0);
        for (method, samples) in [("checksum", &mut deep), ("rows", &mut rows_deep)] {
            let (sample, doc) = run_command(binary, config, &["validate", "--deep", "--method", method])?;
            if doc["status"] != "success" {
                return Err(format!("validate --deep found differences in an identical copy:\n{doc:#}"));
            }
            samples.push(sample);
            if method == "checksum" {
                last_deep = doc;
            }
        }
    }

    println!("source: {}; data: scale {}, {rows} rows in 9 tables", args.source, args.scale);
    let line = |label: &str, samples: &[Sample]| {
        // Also when a label is long, the columns line up.
        let m = median(samples);
        let all: Vec<String> = samples.iter().map(|s| format!("{:.2}", s.seconds)).collect();
        let peak = samples.iter().filter_map(|s| s.peak_rss_bytes).max().unwrap_or(0);
        println!(
            "{label:<40} median {m:>7.2} s {:>10.0} rows/s   peak RSS {:>6.1} MB   (runs: {})",
            rows as f64 / m,
            peak as f64 / 1e6,
            all.join(" ")
        );
        m
    };
    let d = line("(d) run, drop_recreate", &load);
    let v = line("(v) validate (row counts)", &count);
    let vd = line("(vd) validate --deep --method checksum", &deep);
    let vr = line("(vr) validate --deep --method rows", &rows_deep);
    println!("ratios: (vd)/(d) = {:.2}   (vr)/(d) = {:.2}   (v)/(d) = {:.2}", vd / d, vr / d, v / d);
    for table in last_deep["report"]["tables"].as_array().into_iter().flatten() {
        println!(
            "  {:<24} {:>9} rows  {:<8}  {:>9} rows read",
            table["source"].as_str().unwrap_or("?"),
            table["rows_compared"],
            table["method"].as_str().unwrap_or("?"),
            table["rows_fetched"]
        );
    }
    Ok(())
}
