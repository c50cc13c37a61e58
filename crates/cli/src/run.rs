//! `run` and `resume`: the full load, with a human summary or one JSON
//! document, stopped gracefully by SIGINT or SIGTERM.

use std::fmt::Write as _;
use std::time::Duration;

use mssql_pg_migrate::transfer::{self, ErrorKind, RunOptions, RunReport, StateLocation, TableStatus, TransferError};

use crate::exit::{CliError, Exit};
use crate::live::{self, Live};
use crate::{Cli, RunArgs, load_config, output};
use mssql_pg_migrate::config::Config;
use mssql_pg_migrate_tui::LogBuffer;

impl From<TransferError> for CliError {
    fn from(error: TransferError) -> Self {
        let exit = match error.kind() {
            ErrorKind::Config => Exit::Config,
            ErrorKind::Connection => Exit::Connection,
            ErrorKind::Transfer => Exit::Transfer,
            ErrorKind::Cancelled => Exit::Cancelled,
            ErrorKind::State => Exit::State,
            ErrorKind::Io => Exit::Io,
        };
        CliError::new(exit, error.to_string())
    }
}

pub fn run(cli: &Cli, args: &RunArgs) -> Result<(), CliError> {
    if args.dry_run {
        return crate::inspect::dry_run(cli, args);
    }
    let options = RunOptions {
        source_schema: args.source_schema.clone(),
        target_schema: args.target_schema.clone(),
        workers: args.workers,
        ..RunOptions::default()
    };
    let config = load_config(cli)?;
    execute(cli, &config, options, "run", Front::Lines)
}

pub fn resume(cli: &Cli) -> Result<(), CliError> {
    let config = load_config(cli)?;
    execute(cli, &config, RunOptions { resume: true, ..RunOptions::default() }, "resume", Front::Lines)
}

/// What shows the run while it goes.
pub enum Front {
    /// Progress lines, the terminal display or log lines on stderr (see `live`).
    Lines,
    /// The full-screen TUI; logs are captured into the buffer.
    Tui { logs: LogBuffer, title: String },
}

/// Waits for SIGINT or SIGTERM (Kubernetes stops pods with SIGTERM).
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

pub fn execute(
    cli: &Cli,
    config: &Config,
    mut options: RunOptions,
    command: &'static str,
    front: Front,
) -> Result<(), CliError> {
    options.state = match &cli.state_file {
        Some(path) => StateLocation::File(path.clone()),
        None => StateLocation::Target,
    };
    let runtime = crate::copy_runtime(config, options.workers)?;
    // The run id is known once the state is saved; a failure after that
    // point names it, so the orchestrator knows what `resume` continues.
    let live = Live::new();
    options.events = Some(live.sink());
    let display = live::Mode::choose(cli.progress);
    let cancel = options.cancel.clone();
    let abort = options.abort.clone();
    let shutdown_timeout = Duration::from_secs(cli.shutdown_timeout);
    let result = runtime.block_on(async {
        if let Some(addr) = cli.metrics_addr {
            let exporter = crate::metrics::Exporter::serve(addr).await?;
            options.events = Some(exporter.sink(options.events.take()));
        }
        tokio::spawn(async move {
            let first = stop_signal().await;
            tracing::warn!(
                signal = first,
                timeout_s = shutdown_timeout.as_secs(),
                "stopping: no new chunks; chunks in flight finish or roll back within the shutdown timeout"
            );
            cancel.cancel();
            tokio::select! {
                second = stop_signal() => tracing::warn!(signal = second, "second signal: abandoning chunks in flight"),
                () = tokio::time::sleep(shutdown_timeout) => tracing::warn!("shutdown timeout reached: abandoning chunks in flight"),
            }
            abort.cancel();
        });
        match front {
            Front::Lines => {
                let reporter = live.start(display);
                let result = transfer::run(config, &options).await;
                reporter.finish().await;
                Ok(result)
            }
            Front::Tui { logs, title } => mssql_pg_migrate_tui::run_interactive(config, options, title, logs)
                .await
                .map_err(|e| CliError::new(Exit::Io, e.to_string())),
        }
    });
    // Tasks still blocked on a server (abandoned chunks) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    let report = result?.map_err(|e| {
        let mut error = CliError::from(e);
        error.run_id = live.snapshot().and_then(|s| s.run_id);
        error
    })?;
    let document = output::run_document(command, &report);
    if !cli.output_json {
        match cli.log_format {
            crate::LogFormat::Text => print_summary(&report),
            // `2>&1 | jq` (the guide's recipe) must see nothing but records.
            crate::LogFormat::Json => log_summary(&report),
        }
    }
    if report.is_success() {
        if cli.output_json {
            output::print_json(&document);
        }
        Ok(())
    } else {
        let failed: Vec<&str> =
            report.tables.iter().filter(|t| t.status != TableStatus::Completed).map(|t| t.source.as_str()).collect();
        let mut message = String::new();
        if !failed.is_empty() {
            message.push_str(&format!("{} table(s) did not complete: {}", failed.len(), failed.join(", ")));
        }
        if !report.finalization_errors.is_empty() {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(&format!("{} finalization step(s) failed", report.finalization_errors.len()));
        }
        Err(CliError::new(Exit::Transfer, message).with_document(document))
    }
}

/// [`print_summary`] as log records, for `--log-format json`.
fn log_summary(report: &RunReport) {
    for t in &report.tables {
        tracing::info!(
            table = %t.source,
            target = %t.target,
            rows = t.rows,
            rows_per_second = t.rows_per_second,
            mb_per_second = t.mb_per_second,
            status = ?t.status,
            error = t.error.as_deref(),
            "table summary"
        );
    }
    for n in report.notes() {
        tracing::info!(table = %n.table, column = n.column.as_deref(), verdict = ?n.verdict, "note: {}", n.message);
    }
    for e in &report.finalization_errors {
        tracing::error!("finalization error: {e}");
    }
    tracing::info!(
        rows = report.rows,
        bytes = report.bytes,
        seconds = report.seconds,
        rows_per_second = report.rows_per_second,
        mb_per_second = report.mb_per_second,
        "run summary"
    );
}

fn print_summary(report: &RunReport) {
    let mut text = String::from("\n");
    let _ = writeln!(text, "{:<40} {:>12} {:>12} {:>10} {:>9}", "table", "rows", "rows/s", "MB/s", "status");
    for t in &report.tables {
        let status = match t.status {
            TableStatus::Completed => "ok",
            TableStatus::Failed => "FAILED",
            TableStatus::Skipped => "SKIPPED",
        };
        let _ = writeln!(
            text,
            "{:<40} {:>12} {:>12.0} {:>10.1} {:>9}",
            t.source, t.rows, t.rows_per_second, t.mb_per_second, status
        );
        if let Some(e) = &t.error {
            let _ = writeln!(text, "    error: {e}");
        }
    }
    let _ = writeln!(
        text,
        "total: {} rows, {:.1} MB in {:.1} s ({:.0} rows/s, {:.1} MB/s)",
        report.rows,
        report.bytes as f64 / 1e6,
        report.seconds,
        report.rows_per_second,
        report.mb_per_second
    );
    let notes: Vec<_> = report.notes().collect();
    if !notes.is_empty() {
        let _ = writeln!(text, "\n{} note(s) on fidelity and objects not carried over:", notes.len());
        for n in notes {
            let column = n.column.as_deref().map(|c| format!(".{c}")).unwrap_or_default();
            let _ = writeln!(text, "  [{:?}] {}{column}: {}", n.verdict, n.table, n.message);
        }
    }
    for e in &report.finalization_errors {
        let _ = writeln!(text, "finalization error: {e}");
    }
    output::print_err(&text);
}
