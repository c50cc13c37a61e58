//! The configuration examples we ship must load, and mean what they say.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use mssql_pg_migrate::config::{Loader, SourceKind, TargetMode};
use mssql_pg_migrate_tests::repo_root;

#[test]
fn the_documented_example_config_loads_with_its_stated_values() {
    let path = repo_root().join("docs/examples/config.yaml");
    let config = Loader::new()
        .with_env([("MSSQL_PASSWORD", "from-env-1"), ("POSTGRES_PASSWORD", "from-env-2")])
        .load_file(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(config.source.kind, SourceKind::Mssql);
    assert_eq!(config.source.password.expose(), "from-env-1");
    assert_eq!(config.target.password.expose(), "from-env-2");
    assert_eq!(config.migration.target_mode, TargetMode::DropRecreate);
    assert_eq!(config.migration.include_tables.len(), 2);
    assert!(config.migration.selects_table("dbo", "sales_2024"));
    assert!(!config.migration.selects_table("dbo", "sales_archive"));
    // It asks for TLS; the pool must accept that (it once refused `require`).
    assert_eq!(config.target.tls.ssl_mode, mssql_pg_migrate::config::SslMode::Require);
    let endpoint = mssql_pg_migrate::transfer::target_endpoint(&config.target);
    let pool =
        mssql_pg_migrate::transfer::pool::PgPool::new(&endpoint, mssql_pg_migrate::transfer::error::Side::Target, 1);
    assert!(pool.is_ok(), "{:?}", pool.err());
}

#[test]
fn the_example_without_its_variables_says_which_are_missing() {
    let path = repo_root().join("docs/examples/config.yaml");
    let err = Loader::new().load_file(&path).unwrap_err().to_string();
    assert!(err.contains("MSSQL_PASSWORD is not set") && err.contains("POSTGRES_PASSWORD is not set"), "{err}");
}

#[test]
fn the_fixture_configs_load_identically_in_all_three_formats() {
    let dir = repo_root().join("tests/fixtures");
    let load = |name: &str| Loader::new().load_file(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let yaml = load("pg_to_pg.yaml");
    assert_eq!(yaml, load("pg_to_pg.json"));
    assert_eq!(yaml, load("pg_to_pg.toml"));
    assert_eq!(yaml.source.kind, SourceKind::Postgres);
    assert_eq!(yaml.source.schema, "public");
    assert_eq!(yaml.target.schema, "copy");
}

#[test]
fn the_airflow_dag_is_python_and_switches_between_run_and_resume_on_the_try_number() {
    let path = repo_root().join("docs/examples/airflow/mssql_to_pg_sync.py");
    let text = std::fs::read_to_string(&path).unwrap();
    // Compiled, not run: Airflow itself is `cargo xtask airflow-it`'s.
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "{{ 'resume' if task_instance.try_number > 1 else 'run' }}",
        "--output-json --progress",
        "do_xcom_push=True",
        "--output-json validate",
        "\"retries\": 3",
    ] {
        assert!(text.contains(needle), "the DAG lost the guide's {needle:?}");
    }
}

fn yaml(path: &std::path::Path) -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text_of<'v>(value: &'v serde_yaml_ng::Value, what: &str) -> &'v str {
    value.as_str().unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

#[test]
fn the_kubernetes_job_mounts_what_the_other_manifests_define_and_its_config_loads_with_the_secrets() {
    let dir = repo_root().join("docs/examples/kubernetes");
    let (config_map, secret, pvc, job) = (
        yaml(&dir.join("configmap.yaml")),
        yaml(&dir.join("secret.yaml")),
        yaml(&dir.join("pvc.yaml")),
        yaml(&dir.join("job.yaml")),
    );
    for (doc, kind) in [(&config_map, "ConfigMap"), (&secret, "Secret"), (&pvc, "PersistentVolumeClaim"), (&job, "Job")]
    {
        assert_eq!(text_of(&doc["kind"], "kind"), kind);
    }
    let pod = &job["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_sequence().unwrap();
    let volume = |key: &str, field: &str| {
        volumes.iter().find_map(|v| v[key][field].as_str()).unwrap_or_else(|| panic!("no {key} volume"))
    };
    assert_eq!(volume("configMap", "name"), text_of(&config_map["metadata"]["name"], "ConfigMap name"));
    assert_eq!(volume("secret", "secretName"), text_of(&secret["metadata"]["name"], "Secret name"));
    assert_eq!(volume("persistentVolumeClaim", "claimName"), text_of(&pvc["metadata"]["name"], "PVC name"));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    let script = text_of(&container["args"][0], "the container's script");
    assert!(script.contains("--state-file /state/migration.state") && script.contains("step=resume"), "{script}");
    let mounts: Vec<&str> =
        container["volumeMounts"].as_sequence().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    assert_eq!(mounts, ["/config", "/secrets", "/state"]);
    // SIGKILL comes terminationGracePeriodSeconds after SIGTERM: the run must stop by itself first.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let shutdown: u64 =
        script.split("--shutdown-timeout ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(shutdown + 15 <= grace, "--shutdown-timeout {shutdown} leaves too little of the {grace} s grace");

    // The config in the ConfigMap loads, with the passwords from the Secret's files where the Job mounts them.
    let secrets = tempfile::tempdir().unwrap();
    for (file, value) in secret["stringData"].as_mapping().unwrap() {
        std::fs::write(secrets.path().join(file.as_str().unwrap()), value.as_str().unwrap()).unwrap();
    }
    let text = text_of(&config_map["data"]["migration.yaml"], "migration.yaml")
        .replace("/secrets/", &format!("{}/", secrets.path().display()));
    let config = Loader::new().load_str(&text, "yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.source.password.expose(), "change-me");
    assert_eq!(config.migration.target_mode, TargetMode::Upsert);
    assert!(!text.contains("password:"), "no password inline in the ConfigMap");
}

#[test]
fn the_container_image_is_small_non_root_and_built_with_the_pinned_toolchain() {
    let root = repo_root();
    let dockerfile = std::fs::read_to_string(root.join("docker/Dockerfile")).unwrap();
    let toolchain = std::fs::read_to_string(root.join("rust-toolchain.toml")).unwrap();
    let channel = toolchain.lines().find_map(|l| l.strip_prefix("channel = ")).unwrap().trim_matches('"');
    let pinned = channel.rsplit_once('.').map_or(channel, |(minor, _)| minor);
    assert!(
        dockerfile.contains(&format!("FROM rust:{pinned}-bookworm AS build")),
        "the build stage uses Rust {pinned}"
    );
    for line in [
        "RUN cargo build --release --locked -p mssql-pg-migrate-cli",
        "FROM debian:bookworm-slim",
        "USER 10001",
        "VOLUME [\"/state\"]",
        "ENTRYPOINT [\"mssql-pg-migrate\"]",
    ] {
        assert!(dockerfile.lines().any(|l| l.trim() == line), "the Dockerfile lacks {line:?}");
    }
    let compose = yaml(&root.join("docker/compose.yaml"));
    let migrate = &compose["services"]["migrate"];
    assert_eq!(text_of(&migrate["build"]["dockerfile"], "dockerfile"), "docker/Dockerfile");
    // The config Compose mounts loads with the passwords Compose sets.
    let mount = migrate["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|v| v.as_str()?.strip_suffix(":/config/migration.yaml:ro"))
        .unwrap();
    let path = root.join("docker").join(mount);
    let environment = migrate["environment"].as_mapping().unwrap();
    let env: Vec<(String, String)> =
        environment.iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_str().unwrap().to_owned())).collect();
    let config = Loader::new().with_env(env).load_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(config.source.kind, SourceKind::Mssql);
    assert_eq!(config.source.host, "mssql");
}
