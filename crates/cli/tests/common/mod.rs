//! Helpers shared by the CLI test files.

#![allow(dead_code)] // Each test file uses a different part.

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
