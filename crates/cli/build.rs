//! Records the git commit the binary is built from, for `--version`:
//! `0.1.0 (commit 1a2b3c4d5e6f)`, with `-dirty` when the tree had
//! uncommitted changes. Built outside a git checkout (a published crate),
//! it says `commit unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let described = match commit {
        Some(hash) if dirty => format!("commit {hash}-dirty"),
        Some(hash) => format!("commit {hash}"),
        None => "commit unknown".to_owned(),
    };
    println!("cargo:rustc-env=MSSQL_PG_MIGRATE_BUILD_COMMIT={described}");
    // Rebuild when the commit or the index moves; both paths are git's own.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{reference}");
        }
    }
}
