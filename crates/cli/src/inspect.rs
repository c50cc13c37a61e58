//! Commands that look without moving data: `health-check`, `validate` and
//! `run --dry-run`. Their human output is the command's product, so it
//! goes to stdout; logs stay on stderr.

use std::fmt::Write as _;

use mssql_pg_migrate::transfer::deep::{CompareMethod, DeepOptions, DeepReport, DifferenceKind};
use mssql_pg_migrate::transfer::dry_run::{Chunking, DeletesPlan, DryRunPlan};
use mssql_pg_migrate::transfer::health::{Check, EndpointHealth};
use mssql_pg_migrate::transfer::{
    self, DryRunOptions, Health, HealthOptions, HealthReport, StateLocation, ValidateOptions, ValidationReport,
};

use crate::exit::{CliError, Exit};
use crate::{Cli, RunArgs, ValidateArgs, load_config, output};

fn state_location(cli: &Cli) -> StateLocation {
    match &cli.state_file {
        Some(path) => StateLocation::File(path.clone()),
        None => StateLocation::Target,
    }
}

pub fn health_check(cli: &Cli) -> Result<(), CliError> {
    let config = load_config(cli)?;
    let options = HealthOptions { state: state_location(cli), ..HealthOptions::default() };
    let report = crate::block_on(transfer::health_check(&config, &options))??;
    let document = output::document("health-check", status_of(report.health), &report);
    if !cli.output_json {
        output::print_text(&health_text(&report));
    }
    let failed = || report.failures().map(|(side, c)| format!("{side} {}", c.name)).collect::<Vec<_>>().join(", ");
    let error = match report.health {
        Health::Healthy => None,
        Health::Unreachable => {
            let down: Vec<String> = [&report.source, &report.target]
                .into_iter()
                .filter(|e| !e.reachable)
                .filter_map(|e| e.error.clone())
                .collect();
            Some(CliError::new(Exit::Connection, down.join("; ")))
        }
        Health::MissingPermissions => {
            Some(CliError::new(Exit::Config, format!("missing permissions or preconditions: {}", failed())))
        }
    };
    finish(cli, document, error)
}

pub fn validate(cli: &Cli, args: &ValidateArgs) -> Result<(), CliError> {
    let config = load_config(cli)?;
    if args.deep {
        let options = DeepOptions {
            max_samples: args.show,
            repair: args.repair,
            sample_percent: args.sample,
            method: args.method.map(|m| match m {
                crate::DeepMethod::Checksum => CompareMethod::Checksum,
                crate::DeepMethod::Rows => CompareMethod::Rows,
            }),
            ..DeepOptions::default()
        };
        let report = crate::block_on(transfer::validate_deep(&config, &options))??;
        let mismatches = report.mismatches().map(|t| t.source.as_str());
        let text = (!cli.output_json).then(|| deep_text(&report));
        return finish_validation(cli, &report, report.is_success(), text, "values", report.mismatched, mismatches);
    }
    let report = crate::block_on(transfer::validate(&config, &ValidateOptions::default()))??;
    let mismatches = report.mismatches().map(|t| t.source.as_str());
    let text = (!cli.output_json).then(|| validation_text(&report));
    finish_validation(cli, &report, report.is_success(), text, "row counts", report.mismatched, mismatches)
}

/// Prints a validation's document (and its `text` for people), exit 4
/// naming the tables whose `what` differ.
fn finish_validation<'a>(
    cli: &Cli,
    report: &impl serde::Serialize,
    success: bool,
    text: Option<String>,
    what: &str,
    mismatched: usize,
    mismatches: impl Iterator<Item = &'a str>,
) -> Result<(), CliError> {
    let status = if success { "success" } else { "mismatch" };
    let document = output::document("validate", status, report);
    if let Some(text) = text {
        output::print_text(&text);
    }
    let error = (!success).then(|| {
        let names: Vec<&str> = mismatches.collect();
        CliError::new(Exit::Validation, format!("{what} differ in {mismatched} table(s): {}", names.join(", ")))
    });
    finish(cli, document, error)
}

pub fn dry_run(cli: &Cli, args: &RunArgs) -> Result<(), CliError> {
    let config = load_config(cli)?;
    let options = DryRunOptions {
        source_schema: args.source_schema.clone(),
        target_schema: args.target_schema.clone(),
        workers: args.workers,
    };
    let plan = crate::block_on(transfer::dry_run(&config, &options))??;
    if cli.output_json {
        output::print_json(&output::document("run", "planned", &plan));
    } else {
        output::print_text(&plan_text(&plan));
    }
    Ok(())
}

fn finish(cli: &Cli, document: serde_json::Value, error: Option<CliError>) -> Result<(), CliError> {
    match error {
        None => {
            if cli.output_json {
                output::print_json(&document);
            }
            Ok(())
        }
        Some(error) => Err(error.with_document(document)),
    }
}

fn status_of(health: Health) -> &'static str {
    match health {
        Health::Healthy => "healthy",
        Health::MissingPermissions => "missing_permissions",
        Health::Unreachable => "unreachable",
    }
}

fn health_text(report: &HealthReport) -> String {
    let mut text = String::new();
    for (side, e) in [("source", &report.source), ("target", &report.target)] {
        endpoint_text(&mut text, side, e);
    }
    let verdict = match report.health {
        Health::Healthy => "healthy: both servers answer and every check passed",
        Health::MissingPermissions => "NOT READY: a check failed; fix it before running (exit 1)",
        Health::Unreachable => "UNREACHABLE: a server did not answer; retry later or fix the address (exit 2)",
    };
    let _ = writeln!(text, "{verdict}");
    text
}

fn endpoint_text(text: &mut String, side: &str, e: &EndpointHealth) {
    let _ = writeln!(text, "{side}  {}", e.address);
    let Some(server) = &e.server else {
        let _ = writeln!(text, "  unreachable: {}", e.error.as_deref().unwrap_or("no answer"));
        return;
    };
    // PostgreSQL's version() ends with compiler details nobody needs here.
    let version = server.version.split(", compiled by").next().unwrap_or(&server.version);
    let tls = match (&server.tls_detail, server.tls) {
        (Some(detail), _) => detail.as_str(),
        (None, Some(true)) => "yes",
        (None, Some(false)) => "no",
        (None, None) => "unknown (the login may not see it)",
    };
    let _ = writeln!(text, "  server   {version}");
    let _ = writeln!(text, "  login    {}", server.user);
    let _ = writeln!(text, "  TLS      {tls}");
    if let Some(ms) = e.latency_ms {
        let _ = writeln!(text, "  latency  {ms:.2} ms (median of 5 round trips)");
    }
    for Check { name, ok, detail } in &e.checks {
        let mark = if *ok { "ok  " } else { "FAIL" };
        let _ = writeln!(text, "  {mark} {name:<24} {detail}");
    }
}

fn validation_text(report: &ValidationReport) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{:<40} {:>14} {:>14}  result", "table", "source rows", "target rows");
    for t in &report.tables {
        let target = t.target_rows.map_or_else(|| "missing".to_owned(), |n| n.to_string());
        let result = if t.matches { "ok" } else { "MISMATCH" };
        let _ = writeln!(text, "{:<40} {:>14} {:>14}  {result}", t.source, t.source_rows, target);
    }
    let _ = writeln!(text, "{} table(s) match, {} differ", report.matched, report.mismatched);
    text
}

fn deep_text(report: &DeepReport) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<40} {:>12} {:>9} {:>9} {:>9} {:>12}  result",
        "table", "rows", "missing", "extra", "different", "rows read"
    );
    for t in &report.tables {
        let result = if t.matches() { "ok" } else { "DIFFERS" };
        let method = match t.method {
            CompareMethod::Checksum => "checksum",
            CompareMethod::Rows => "rows",
        };
        let _ = writeln!(
            text,
            "{:<40} {:>12} {:>9} {:>9} {:>9} {:>12}  {result} ({method})",
            t.source, t.rows_compared, t.missing, t.extra, t.different, t.rows_fetched
        );
        if let Some(e) = &t.error {
            let _ = writeln!(text, "    not compared: {e}");
        }
        if let Some(percent) = t.sampled_percent {
            let _ = writeln!(text, "    sampled: {percent}% of its chunks ({}); extra rows not looked for", t.chunks);
        }
        if let Some(left) = t.remaining {
            let _ = writeln!(
                text,
                "    repaired: {} row(s) copied again, {} extra deleted; compared again: {left} difference(s) left",
                t.repaired, t.deleted
            );
        }
        for row in &t.samples {
            let kind = match row.kind {
                DifferenceKind::Missing => "missing in the target",
                DifferenceKind::Extra => "extra in the target",
                DifferenceKind::Different => "different",
            };
            let _ = writeln!(text, "    key ({}): {kind}", row.key.join(", "));
            let shown = |v: &Option<String>| v.as_ref().map_or_else(|| "NULL".to_owned(), |v| format!("{v:?}"));
            for c in &row.columns {
                let _ = writeln!(text, "      {}: source {} target {}", c.column, shown(&c.source), shown(&c.target));
            }
        }
    }
    let _ = writeln!(text, "{} table(s) match value for value, {} differ", report.matched, report.mismatched);
    text
}

fn plan_text(plan: &DryRunPlan) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "dry run: {} table(s) from source schema {} to target schema {} (target_mode {}); nothing was changed",
        plan.tables.len(),
        plan.source_schema,
        plan.target_schema,
        plan.target_mode.as_str()
    );
    let t = &plan.tuning;
    let _ = writeln!(
        text,
        "tuning: {} workers, {} readers, {} writers, chunks of {} rows",
        t.workers, t.parallel_readers, t.write_ahead_writers, t.chunk_size
    );
    let _ = writeln!(text, "\nbefore the data:");
    for sql in &plan.prepare {
        let _ = writeln!(text, "  {sql};");
    }
    for table in &plan.tables {
        let _ = writeln!(text, "\n{} -> {}", table.source, table.target);
        let _ = writeln!(
            text,
            "  estimate: {} row(s), {}; {} partition(s), ~{} chunk(s)",
            table.estimated_rows,
            megabytes(table.estimated_bytes),
            table.partitions,
            table.estimated_chunks
        );
        let chunking = match &table.chunking {
            Chunking::Whole => "one stream (no usable primary key; restarted whole if interrupted)".to_owned(),
            Chunking::IntegerRanges { key, bounds } if bounds.is_empty() => format!("key {key}, one range"),
            Chunking::IntegerRanges { key, bounds } => {
                let bounds: Vec<String> = bounds.iter().map(i64::to_string).collect();
                format!("key {key}, ranges split at {}", bounds.join(", "))
            }
            Chunking::KeyScan { key, partitions } => {
                format!("key ({}), {partitions} range(s) found by a key scan when the run starts", key.join(", "))
            }
        };
        let _ = writeln!(text, "  chunks:   {chunking}");
        if let Some(merge) = &table.merge {
            let reads = match (&merge.change_column, &merge.mark, merge.changed_rows) {
                (Some(column), Some(mark), Some(rows)) => {
                    format!("rows with {column} at or after the last sync's mark {mark} ({rows} now)")
                }
                (Some(column), Some(mark), None) => {
                    format!("rows with {column} at or after the last sync's mark {mark}")
                }
                (Some(column), None, _) => {
                    format!("every row: no mark of {column} was found in the target, so the sync reads the table whole")
                }
                (None, ..) => "every row, compared by the merge".to_owned(),
            };
            let _ = writeln!(text, "  merge:    on ({}), reading {reads}; per batch:", merge.key.join(", "));
            match merge.deletes {
                Some(DeletesPlan::KeysMerged) => {
                    let _ = writeln!(text, "  deletes:  rows whose key no batch merged, once the table is complete");
                }
                Some(DeletesPlan::EveryKeyRead) => {
                    let _ = writeln!(
                        text,
                        "  deletes:  rows whose key the source no longer has: every key is read (keys only) \
                         once the table's batches are in"
                    );
                }
                None => {}
            }
            let _ = writeln!(text, "    {};", merge.statement);
        }
        let _ = writeln!(text, "  {};", table.create_table);
        for step in table.after_load.iter().chain(&table.foreign_keys) {
            let _ = writeln!(text, "  {};", step.sql);
        }
        for c in table.columns.iter().filter(|c| c.reason.is_some()) {
            let _ = writeln!(
                text,
                "  [{:?}] {} {} -> {}: {}",
                c.verdict,
                c.source,
                c.source_type,
                c.target_type,
                c.reason.as_deref().unwrap_or_default()
            );
        }
        for n in table.notes.iter().filter(|n| n.column.is_none()) {
            let _ = writeln!(text, "  [{:?}] {}", n.kind, n.message);
        }
    }
    for s in &plan.skipped {
        let _ = writeln!(text, "\nSKIPPED {}: {}", s.source, s.error);
    }
    let _ = writeln!(
        text,
        "\ntotal: {} row(s), {}; estimated time {} ({})",
        plan.estimated_rows,
        megabytes(plan.estimated_bytes),
        duration(plan.eta_seconds),
        plan.eta_basis
    );
    for w in &plan.warnings {
        let _ = writeln!(text, "warning: {w}");
    }
    text
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0 => "under 1 s".to_owned(),
        1..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.2), "under 1 s");
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(125.0), "2 min 5 s");
        assert_eq!(duration(7384.0), "2 h 3 min");
    }
}
