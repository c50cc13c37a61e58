//! Helpers shared by the CLI test files.

#![allow(dead_code)] // Each test file uses a different part.

pub mod mssql_pair;
pub mod pair;

use assert_cmd::Command;

/// The real binary, with no inherited `MSSQL_PG_MIGRATE__…` overrides: the
/// tests decide the environment, and inherited overrides would change results.
pub fn bin() -> Command {
    let mut cmd = Command::cargo_bin("mssql-pg-migrate").unwrap();
    for (name, _) in std::env::vars() {
        if name.starts_with("MSSQL_PG_MIGRATE") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Checks `document` against `docs/<schema>` (a JSON Schema), listing every violation.
pub fn assert_matches_schema(schema: &str, document: &serde_json::Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(schema);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema_value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator =
        jsonschema::validator_for(&schema_value).unwrap_or_else(|e| panic!("{schema} is not a schema: {e}"));
    let errors: Vec<String> =
        validator.iter_errors(document).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "document does not match {schema}:\n{}\n{document:#}", errors.join("\n"));
}
