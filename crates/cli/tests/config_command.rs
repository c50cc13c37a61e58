//! `mssql-pg-migrate config` through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use common::bin;
use predicates::prelude::*;

const PASSWORD: &str = "Cli-Only-9f3e!pw";

fn write_config(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn good_yaml() -> String {
    format!(
        "source: {{type: mssql, host: sql1, database: Shop, user: sa, password: '${{SA_PW}}'}}\n\
         target: {{type: postgres, host: pg1, database: shop, user: etl, password: '{PASSWORD}'}}\n\
         migration: {{workers: 3}}\n"
    )
}

#[test]
fn prints_the_resolved_config_as_yaml_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "m.yaml", &good_yaml());
    let out = bin().args(["-c"]).arg(&path).arg("config").env("SA_PW", PASSWORD).assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(!stdout.contains(PASSWORD), "{stdout}");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&stdout).unwrap();
    assert_eq!(doc["source"]["host"].as_str(), Some("sql1"));
    assert_eq!(doc["source"]["port"].as_u64(), Some(1433));
    assert_eq!(doc["source"]["password"].as_str(), Some("********"));
    assert_eq!(doc["target"]["password"].as_str(), Some("********"));
    assert_eq!(doc["migration"]["workers"].as_u64(), Some(3));
    assert_eq!(doc["migration"]["chunk_size"].as_str(), Some("auto"));
    assert_eq!(doc["migration"]["target_mode"].as_str(), Some("drop_recreate"));
    assert!(stdout.starts_with("# ") && stdout.contains("config_hash sha256:"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.get_output().stderr).contains(PASSWORD));
}

#[test]
fn output_json_prints_exactly_one_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "m.json",
        &serde_json::to_string(&serde_yaml_ng::from_str::<serde_json::Value>(&good_yaml()).unwrap()).unwrap(),
    );
    let out = bin()
        .arg("--output-json")
        .args(["--config"])
        .arg(&path)
        .arg("config")
        .env("SA_PW", PASSWORD)
        .env("MSSQL_PG_MIGRATE__MIGRATION__WORKERS", "5")
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    common::assert_matches_schema("output.schema.json", &doc);
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["config"]["migration"]["workers"], 5, "the environment override applies");
    assert_eq!(doc["config"]["source"]["password"], "********");
    assert!(doc["config_hash"].as_str().unwrap().starts_with("sha256:"));
    assert!(!stdout.contains(PASSWORD));
}

#[test]
fn an_invalid_config_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "bad.yaml",
        &format!(
            "source: {{type: mssql, host: h, database: d, user: u, password: '{PASSWORD}', port: 0}}\n\
             target: {{type: postgres, host: h2, database: d2, user: u2, password: p, ssl_mode: nope}}\n\
             migration: {{chunksize: 5}}\n"
        ),
    );
    let out = bin().arg("-c").arg(&path).arg("config").assert().code(1);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("3 problems in the configuration"), "{stderr}");
    for needle in ["source.port", "target.ssl_mode", "migration.chunksize", "did you mean migration.chunk_size?"] {
        assert!(stderr.contains(needle), "{needle} missing from:\n{stderr}");
    }
    assert!(!stderr.contains(PASSWORD));
    assert!(out.get_output().stdout.is_empty(), "nothing on stdout without --output-json");

    let out = bin().arg("--output-json").arg("-c").arg(&path).arg("config").assert().code(1);
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["status"], "error");
    assert_eq!(doc["error"]["kind"], "config");
    assert_eq!(doc["error"]["exit_code"], 1);
    let keys: Vec<&str> =
        doc["error"]["problems"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["migration.chunksize", "source.port", "target.ssl_mode"]);
}

#[test]
fn a_missing_config_file_is_named_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    bin()
        .current_dir(dir.path())
        .arg("config")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("config.yaml not found").and(predicate::str::contains("-c/--config")));
}

#[test]
fn the_default_config_path_is_config_yaml_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "config.yaml", &good_yaml());
    bin()
        .current_dir(dir.path())
        .arg("config")
        .env("SA_PW", "x")
        .assert()
        .success()
        .stdout(predicate::str::contains("host: sql1"));
}

#[test]
fn usage_mistakes_exit_1_not_the_retryable_2() {
    bin()
        .args(["--log-format", "xml", "config"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("possible values: text, json"));
    bin().args(["--verbosity", "loud", "config"]).assert().code(1);
    bin().args(["--shutdown-timeout", "soon", "config"]).assert().code(1);
    bin().arg("frobnicate").assert().code(1);
    bin().assert().code(1);
}

#[test]
fn help_lists_the_guides_global_options() {
    let out = bin().arg("--help").assert().success();
    let help = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for option in [
        "-c, --config",
        "--state-file",
        "--output-json",
        "--log-format",
        "--verbosity",
        "--shutdown-timeout",
        "--progress",
        "config",
    ] {
        assert!(help.contains(option), "{option} missing from --help");
    }
    bin().arg("--version").assert().success().stdout(predicate::str::starts_with("mssql-pg-migrate "));
}

#[test]
fn global_options_are_accepted_before_and_after_the_command_and_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "c.yaml", &good_yaml());
    let out = bin()
        .arg("-c")
        .arg(&path)
        .args(["--state-file", "/tmp/x.state", "--log-format", "json", "--verbosity", "debug"])
        .args(["--shutdown-timeout", "5", "--progress"])
        .arg("config")
        .env("SA_PW", "x")
        .assert()
        .success();
    // --log-format json and --verbosity debug: the debug record is JSON, with the config's hash.
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    let loaded = stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .find(|r| r["fields"]["message"] == "configuration loaded")
        .unwrap_or_else(|| panic!("no debug record in: {stderr}"));
    assert_eq!(loaded["level"], "DEBUG");
    assert!(loaded["fields"]["hash"].as_str().unwrap().starts_with("sha256:"));

    // --verbosity error silences it; options after the command work the same.
    let out = bin()
        .arg("config")
        .arg("-c")
        .arg(&path)
        .args(["--output-json", "--verbosity", "error"])
        .env("SA_PW", "x")
        .assert()
        .success();
    assert!(out.get_output().stderr.is_empty(), "{}", String::from_utf8_lossy(&out.get_output().stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["config"]["source"]["host"], "sql1");
}

#[test]
fn json_logs_carry_the_error_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "c.yaml", "source: {}\n");
    let out = bin().args(["--log-format", "json", "-c"]).arg(&path).arg("config").assert().code(1);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    let record: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(record["level"], "ERROR");
    assert_eq!(record["fields"]["exit_code"], 1);
    assert!(record["fields"]["message"].as_str().unwrap().contains("source.host"));
}

#[test]
fn a_failing_password_command_exits_1_naming_the_key_and_never_shows_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "source: {type: mssql, host: sql1, database: Shop, user: sa, \
                password_command: 'echo half-printed-secret; echo more-secret >&2; exit 2'}\n\
                target: {type: postgres, host: pg1, database: shop, user: etl, password_command: 'printf pg-%s token'}\n";
    let path = write_config(dir.path(), "cmd.yaml", yaml);
    let out = bin().args(["-c"]).arg(&path).arg("config").assert().code(1);
    let (stdout, stderr) = (
        String::from_utf8(out.get_output().stdout.clone()).unwrap(),
        String::from_utf8(out.get_output().stderr.clone()).unwrap(),
    );
    assert!(stderr.contains("source.password_command"), "{stderr}");
    for leaked in ["half-printed-secret", "more-secret"] {
        assert!(!stderr.contains(leaked) && !stdout.contains(leaked), "{leaked} leaked:\n{stdout}\n{stderr}");
    }

    // The target's command worked: its output is the password, shown redacted.
    let fixed = yaml.replace("echo half-printed-secret; echo more-secret >&2; exit 2", "printf sa-%s pw");
    let path = write_config(dir.path(), "cmd-ok.yaml", &fixed);
    let out = bin().args(["-c"]).arg(&path).arg("config").assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(!stdout.contains("pg-token") && !stdout.contains("sa-pw"), "{stdout}");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&stdout).unwrap();
    assert_eq!(doc["target"]["password"].as_str(), Some("********"));
    assert_eq!(doc["target"]["password_command"].as_str(), Some("printf pg-%s token"));
}
