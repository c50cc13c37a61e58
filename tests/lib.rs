//! Cross-crate tests of mssql-pg-migrate. The tests are the `[[test]]`
//! targets beside this file; fixtures live in `fixtures/`.

use std::path::PathBuf;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
