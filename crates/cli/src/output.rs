//! The JSON documents printed with `--output-json`.

use crate::exit::CliError;

/// Bumped on any incompatible change to the documents' shape.
pub const SCHEMA_VERSION: u32 = 1;

pub fn print_json(document: &serde_json::Value) {
    println!("{document}");
}

pub fn error_document(command: &str, error: &CliError) -> serde_json::Value {
    let mut detail = serde_json::json!({
        "kind": error.exit.kind(),
        "exit_code": error.exit.code(),
        "message": error.message,
    });
    if let Some(problems) = &error.problems {
        detail["problems"] = problems.clone();
    }
    serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "status": "error",
        "error": detail,
    })
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
