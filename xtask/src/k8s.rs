//! `cargo xtask k8s-validate`: the Kubernetes manifests in
//! `docs/examples/kubernetes/` checked against Kubernetes' own OpenAPI
//! schemas (strict: an unknown field is an error), by the PyPI package
//! `kubernetes-validate`, installed into `target/k8s-venv` on first use.
//! No cluster is needed.

use std::path::PathBuf;
use std::process::Command;

use crate::venv::{root, run, virtualenv};

const VALIDATOR: &str = "kubernetes-validate==1.37.0";
/// The Kubernetes version whose schemas the manifests must satisfy.
const KUBERNETES: &str = "1.30.0";

pub fn k8s_validate() -> Result<(), String> {
    let venv = virtualenv("k8s-venv", VALIDATOR, "bin/kubernetes-validate")?;
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
    let said = run(
        Command::new(venv.join("bin/kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", KUBERNETES])
            .args(&manifests),
        "validating the manifests",
    )?;
    eprint!("{said}");
    // The validator exits 0 even when a file fails; its ERROR lines say so.
    if said.contains("ERROR") {
        return Err("a manifest does not validate (ERROR above)".into());
    }
    eprintln!("{} manifests valid for Kubernetes {KUBERNETES} (strict)", manifests.len());
    Ok(())
}
