//! Project automation, run as `cargo xtask <task>`.
//!
//! Tasks:
//! - `mssql-it [--image IMAGE] [-- CARGO_TEST_ARGS...]`: starts SQL Server in
//!   Docker (SQL Server 2022 on amd64, Azure SQL Edge on arm64), waits until it
//!   accepts logins, runs the test suite with `MSSQL_TEST_URL` pointing at it,
//!   and removes the container. Without a Docker engine it starts the
//!   Babelfish TDS server of `../shared/babelfish` through `.ci/tds-server`
//!   instead. PostgreSQL comes from the tests' own throwaway clusters.
//! - `gen-data --scale S --target URL [--schema NAME] [--tsql PATH]`: loads the
//!   Stack Overflow 2010-shaped data set into a PostgreSQL database
//!   (`postgresql://user:password@host:port/database`) or, through its T-SQL,
//!   into a SQL Server database it creates afresh
//!   (`mssql://user:password@host:port/database?encrypt=true&trust_server_cert=true`),
//!   and with `--tsql` writes that T-SQL script to a file.
//! - `docs`: rewrites the generated references (docs/CLI.md, docs/TYPES.md, docs/CONFIG.md)
//!   through the tests that check them (`UPDATE_DOCS=1`).
//! - `bench [--scale S] [--runs N] [--source pg|mssql] [--target pg|mssql] [--mode full|upsert|validate]`: the tool's full load
//!   against raw binary COPY and against `pg_dump | pg_restore`, on throwaway
//!   clusters; with `--source mssql`, reading SQL Server (`MSSQL_TEST_URL`, or
//!   the Babelfish TDS server) against `freebcp out`, and with `--target
//!   mssql` too, copying into SQL Server against `freebcp out | freebcp in`; with `--mode upsert`,
//!   syncs into the copy (first, after 1% changed, nothing changed) against
//!   a full load; with `--mode validate`, `validate --deep` of the copy
//!   against the load that made it; see docs/BENCHMARKS.md.
//! - `airflow-it`: the guide's Airflow DAG run by Airflow (see `airflow.rs`).
//! - `k8s-validate`: the Kubernetes manifests of docs/examples checked
//!   against Kubernetes' schemas (see `k8s.rs`).

mod airflow;
mod bench;
mod bench_mssql;
mod bench_mssql_copy;
mod bench_upsert;
mod bench_validate;
mod gendata;
mod k8s;
mod sodata;
mod tds;
mod venv;

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const CONTAINER: &str = "mpm-xtask-mssql";
const HOST_PORT: u16 = 14330;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("mssql-it") => mssql_it(&args[1..]),
        Some("airflow-it") => airflow::airflow_it(),
        Some("k8s-validate") => k8s::k8s_validate(),
        Some("docs") => docs(),
        Some("gen-data") => gen_data(&args[1..]),
        Some("bench") => bench::BenchArgs::parse(&args[1..]).and_then(|a| bench::bench(&a)),
        Some("help") | Some("--help") | Some("-h") | None => {
            println!(
                "usage: cargo xtask mssql-it [--image IMAGE] [-- CARGO_TEST_ARGS...]\n       \
                 cargo xtask gen-data --scale S --target postgresql://USER:PASSWORD@HOST:PORT/DB|mssql://USER:PASSWORD@HOST:PORT/DB [--schema NAME] [--tsql PATH]\n       \
                 cargo xtask bench [--scale S] [--runs N] [--source pg|mssql] [--target pg|mssql] [--mode full|upsert|validate]\n       \
                 cargo xtask airflow-it\n       \
                 cargo xtask k8s-validate\n       \
                 cargo xtask docs"
            );
            Ok(())
        }
        Some(other) => Err(format!("unknown task '{other}'; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn gen_data(args: &[String]) -> Result<(), String> {
    let (mut scale, mut target, mut schema, mut tsql) = (None, None, "so".to_owned(), None);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--scale" => scale = Some(bench::number::<f64>(rest.next(), "--scale")?),
            "--target" => target = Some(rest.next().ok_or("--target needs a value")?.clone()),
            "--schema" => schema = rest.next().ok_or("--schema needs a value")?.clone(),
            "--tsql" => tsql = Some(std::path::PathBuf::from(rest.next().ok_or("--tsql needs a value")?)),
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    let scale = scale.ok_or("--scale is required (1 is about 19.3M rows)")?;
    if !(scale > 0.0 && scale <= 10.0) {
        return Err(format!("--scale must be in (0, 10], not {scale}"));
    }
    if let Some(path) = &tsql {
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let rows = sodata::write_tsql(scale, &mut out).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {rows} rows as T-SQL to {}", path.display());
    }
    let Some(url) = target else {
        return if tsql.is_some() { Ok(()) } else { Err("--target URL (or --tsql PATH) is required".into()) };
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    if url.starts_with("mssql://") || url.starts_with("sqlserver://") {
        // The database of the URL is created afresh, and the T-SQL of
        // --tsql runs in it (schema dbo).
        let server = mssql_pg_migrate_testkit::mssql::TestServer::parse(&url)?;
        return runtime.block_on(bench_mssql::load(&server, scale)).map(|_| ());
    }
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&url, tokio_postgres::NoTls).await.map_err(|e| format!("connecting: {e}"))?;
        tokio::spawn(connection);
        let started = Instant::now();
        let rows = gendata::load(&client, &schema, scale).await?;
        eprintln!("loaded {rows} rows into schema {schema} in {:.1} s", started.elapsed().as_secs_f64());
        Ok(())
    })
}

/// The image that runs on this machine's architecture: SQL Server 2022 has
/// no arm64 build, Azure SQL Edge does.
fn default_image() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "mcr.microsoft.com/azure-sql-edge:latest",
        _ => "mcr.microsoft.com/mssql/server:2022-latest",
    }
}

fn mssql_it(args: &[String]) -> Result<(), String> {
    let mut image = default_image().to_owned();
    let mut test_args: Vec<String> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--image" => image = rest.next().ok_or("--image needs a value")?.clone(),
            "--" => {
                test_args.extend(rest.by_ref().cloned());
            }
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let docker_error = match &engine {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Some(format!("cannot run docker: {e}")),
    };
    if let Some(why) = docker_error {
        eprintln!("xtask: no Docker engine ({why}); using the TDS server from ../shared/babelfish");
        return tds_server_it(&test_args);
    }
    let password = sa_password();
    let _ = docker(&["rm", "-f", CONTAINER]);
    docker(&[
        "run",
        "-d",
        "--name",
        CONTAINER,
        "-e",
        "ACCEPT_EULA=Y",
        "-e",
        &format!("MSSQL_SA_PASSWORD={password}"),
        "-p",
        &format!("127.0.0.1:{HOST_PORT}:1433"),
        &image,
    ])?;
    let outcome = wait_ready().and_then(|()| {
        let url = format!("mssql://sa:{password}@127.0.0.1:{HOST_PORT}/master?trust_server_cert=true");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["test", "--workspace"])
            .args(&test_args)
            .env("MSSQL_TEST_URL", url)
            .status()
            .map_err(|e| format!("cannot run cargo test: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("the test suite failed ({status})")) }
    });
    let _ = docker(&["rm", "-f", CONTAINER]);
    outcome
}

/// Runs the suite against the Babelfish TDS server that `.ci/tds-server`
/// starts, the same way `.ci/run` does.
fn tds_server_it(test_args: &[String]) -> Result<(), String> {
    let server = tds::StartedServer::start()?;
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--workspace"])
        .args(test_args)
        .env("MSSQL_TEST_URL", &server.url)
        .env("MSSQL_TEST_SERVER_DIR", &server.dir)
        .status()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("the test suite failed ({status})")) }
}

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker").args(args).output().map_err(|e| format!("docker {}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("docker {} failed: {}", args[0], String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Both images log this line once logins are accepted; Azure SQL Edge ships
/// no sqlcmd to probe with.
fn wait_ready() -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        let logs = docker(&["logs", CONTAINER]).unwrap_or_default();
        if logs.contains("SQL Server is now ready for client connections") {
            // Recovery of the system databases continues briefly after the line.
            std::thread::sleep(Duration::from_secs(3));
            return Ok(());
        }
        let state = docker(&["inspect", "-f", "{{.State.Running}}", CONTAINER]).unwrap_or_default();
        if state.trim() == "false" {
            return Err(format!("the SQL Server container stopped:\n{logs}"));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    Err("SQL Server was not ready within 180 s".into())
}

/// A password meeting SQL Server's complexity rules, different each run.
fn sa_password() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("Mpm-{:016x}-Aa9", h.finish())
}

/// Regenerates the references the tests check, by running those tests in
/// their writing mode.
fn docs() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (package, test, name) in [
        ("mssql-pg-migrate-cli", "help_and_docs", "the_command_reference_is_generated_from_the_help"),
        ("mssql-pg-migrate-typemap", "mapping_table", "the_type_reference_is_generated_from_the_mapping"),
        (
            "mssql-pg-migrate-config",
            "load_and_validate",
            "the_configuration_reference_is_generated_from_the_documented_keys",
        ),
    ] {
        let status = Command::new(&cargo)
            .args(["test", "--quiet", "-p", package, "--test", test, name])
            .env("UPDATE_DOCS", "1")
            .status()
            .map_err(|e| format!("cannot run cargo test: {e}"))?;
        if !status.success() {
            return Err(format!("generating through {package}'s {test} failed"));
        }
    }
    println!("docs/CLI.md, docs/TYPES.md and docs/CONFIG.md regenerated");
    Ok(())
}
