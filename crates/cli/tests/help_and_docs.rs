//! Help, shell completions and the manual page, all generated from the
//! clap definitions, so they list exactly the commands and options that exist.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use common::bin;

fn stdout_of(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const COMMANDS: &[&str] =
    &["config", "run", "resume", "validate", "health-check", "demo", "tui", "init", "completions", "man"];
const GLOBAL_OPTIONS: &[&str] =
    &["--config", "--state-file", "--output-json", "--log-format", "--verbosity", "--shutdown-timeout", "--progress"];

#[test]
fn help_lists_every_command_and_global_option() {
    let help = stdout_of(&["--help"]);
    for name in COMMANDS.iter().chain(GLOBAL_OPTIONS) {
        assert!(help.contains(name), "--help lacks {name}:\n{help}");
    }
    let run = stdout_of(&["run", "--help"]);
    for option in ["--dry-run", "--source-schema", "--target-schema", "--workers"] {
        assert!(run.contains(option), "run --help lacks {option}:\n{run}");
    }
}

#[test]
fn completions_know_the_commands_and_options_of_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        // Fish spells long options `-l dry-run`, so the names go without dashes.
        for name in ["health-check", "validate", "dry-run", "state-file"] {
            assert!(script.contains(name), "{shell} completion lacks {name}");
        }
    }
    let out = bin().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "an unknown shell is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"), "the error lists the shells");
}

#[test]
fn the_manual_page_is_roff_with_every_option() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH mssql-pg-migrate 1"), "{page}");
    for option in GLOBAL_OPTIONS {
        // roff escapes hyphens.
        assert!(page.contains(&option.replace('-', "\\-")), "the manual lacks {option}");
    }
    assert!(page.contains("health\\-check"), "the manual lists the commands");
}

#[test]
fn the_output_schema_rejects_documents_that_break_it() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/output.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let good = serde_json::json!({
        "schema_version": 1, "command": "resume", "status": "error",
        "error": {"kind": "state", "exit_code": 6, "message": "nothing to resume"}
    });
    assert!(validator.is_valid(&good));
    let mut wrong_kind = good.clone();
    wrong_kind["error"]["kind"] = "oops".into();
    let mut extra_field = good.clone();
    extra_field["password"] = "x".into();
    let mut missing_report = good.clone();
    missing_report["status"] = "success".into();
    missing_report["command"] = "run".into();
    missing_report.as_object_mut().unwrap().remove("error");
    let mut error_without_detail = good.clone();
    error_without_detail.as_object_mut().unwrap().remove("error");
    for bad in [wrong_kind, extra_field, missing_report, error_without_detail] {
        assert!(!validator.is_valid(&bad), "accepted: {bad}");
    }
}

#[test]
fn version_names_the_git_commit_it_was_built_from() {
    let version = stdout_of(&["--version"]);
    assert!(version.starts_with(&format!("mssql-pg-migrate {} (commit ", env!("CARGO_PKG_VERSION"))), "{version}");
    // The test runs in the checkout the binary was built from.
    let head = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().unwrap();
    assert!(head.status.success(), "git is needed to build and test from a checkout");
    let head = String::from_utf8(head.stdout).unwrap();
    assert!(version.contains(&format!("commit {}", head.trim())), "{version} is not HEAD {head}");
}
