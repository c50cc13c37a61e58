//! The JSON documents printed with `--output-json`.

use crate::exit::CliError;

/// Bumped on any incompatible change to the documents' shape.
pub const SCHEMA_VERSION: u32 = 1;

/// Prints the one JSON document of this invocation on stdout.
pub fn print_json(document: &serde_json::Value) {
    print_text(&format!("{document}\n"));
}

/// Writes to stdout. A reader that went away (`| head`) is not an error
/// worth a panic: the exit code still tells the outcome.
pub fn print_text(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Writes human-readable output to stderr, where it does not mix with a
/// JSON document on stdout; a closed stderr is ignored.
pub fn print_err(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A command's result document: `report` under the common header.
pub fn document(command: &str, status: &str, report: &impl serde::Serialize) -> serde_json::Value {
    serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "status": status,
        "report": report,
    })
}

/// The document printed for a failed command: its result document when
/// it has one, otherwise a bare one, with `error` describing the failure.
pub fn error_document(command: &str, error: &CliError) -> serde_json::Value {
    let mut detail = serde_json::json!({
        "kind": error.exit.kind(),
        "exit_code": error.exit.code(),
        "message": error.message,
    });
    if let Some(problems) = &error.problems {
        detail["problems"] = problems.clone();
    }
    let mut document = error.document.clone().unwrap_or_else(|| {
        serde_json::json!({
            "schema_version": SCHEMA_VERSION,
            "command": command,
            "status": "error",
        })
    });
    if let Some(run_id) = &error.run_id {
        document["run_id"] = serde_json::Value::String(run_id.clone());
    }
    document["error"] = detail;
    document
}

/// The result document of `run`.
pub fn run_document(command: &str, report: &mssql_pg_migrate::transfer::RunReport) -> serde_json::Value {
    serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "run_id": report.run_id,
        "status": if report.is_success() { "success" } else { "failed" },
        "report": report,
    })
}
