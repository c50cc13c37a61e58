//! `cargo xtask k8s-validate`: the Kubernetes manifests in
//! `docs/examples/kubernetes/` checked against Kubernetes' own OpenAPI
//! schemas (strict: an unknown field is an error), by the PyPI package
//! `kubernetes-validate`, installed into `target/k8s-venv` on first use.
//! No cluster is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

const VALIDATOR: &str = "kubernetes-validate==1.37.0";
/// The Kubernetes version whose schemas the manifests must satisfy.
const KUBERNETES: &str = "1.30.0";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{what}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprint!("{text}");
    // The validator exits 0 even when a file fails; its ERROR lines say so.
    if out.status.success() && !text.contains("ERROR") {
        Ok(())
    } else {
        Err(format!("{what} failed ({})", out.status))
    }
}

pub fn k8s_validate() -> Result<(), String> {
    let venv = root().join("target/k8s-venv");
    let validator = venv.join("bin/kubernetes-validate");
    if !validator.exists() {
        eprintln!("installing {VALIDATOR} into {}", venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv), "creating the virtualenv")?;
        run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", VALIDATOR]), "installing the validator")?;
    }
    let dir = root().join("docs/examples/kubernetes");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    manifests.sort();
    if manifests.is_empty() {
        return Err(format!("no manifests in {}", dir.display()));
    }
    run(
        Command::new(&validator).args(["--strict", "--kubernetes-version", KUBERNETES]).args(&manifests),
        "validating the manifests",
    )?;
    eprintln!("{} manifests valid for Kubernetes {KUBERNETES} (strict)", manifests.len());
    Ok(())
}
