//! `cargo xtask bench --source mssql --target mssql`: SQL Server → SQL
//! Server on one server, the tool against `freebcp out | freebcp in`.
//!
//! The data set is the one `--source mssql` loads (database
//! `so_bench_<scale>`); each run copies it into a fresh database
//! `<that>_copy`, `--runs` times each and interleaved:
//!
//! - (a) the release binary's `run` (`drop_recreate`, default tuning, state
//!   in a file): bare tables, the bulk loads, keys and indexes after;
//! - (b) the same work by FreeTDS (C): the same bare tables, then per
//!   table, two tables at a time, `freebcp out` in character format to a file
//!   and `freebcp in` from it (`TABLOCK`, identities kept, 100,000-row
//!   batches), then the same keys and indexes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use mssql_pg_migrate_mssql::{catalog, ddl};
use mssql_pg_migrate_testkit::mssql::{TestServer, execute_script};

use crate::bench::{BenchArgs, Sample, median, memory_bytes, run_command, two_tables_at_a_time};
use crate::bench_mssql::MssqlBench;

pub fn bench(args: &BenchArgs) -> Result<(), String> {
    let bench = MssqlBench::start(args.scale)?;
    let MssqlBench { binary, server, runtime, rows, database, .. } = &bench;
    let copy = TestServer { database: format!("{database}_copy"), ..server.clone() };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = dir.path().join("copy.yaml");
    let yaml = format!(
        "{}target: {{type: mssql, host: '{}', port: {}, database: '{}', user: '{}', password: '{}', schema: dbo, \
         encrypt: {}, trust_server_cert: {}}}\n",
        server.source_yaml("dbo", &server.password.replace('$', "$$")),
        copy.host,
        copy.port,
        copy.database,
        copy.user,
        copy.password.replace('$', "$$"),
        copy.encrypt,
        copy.trust_server_cert
    );
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
    let state = dir.path().join("copy.state");
    let state_arg = state.to_string_lossy().into_owned();
    let (mut tool, mut peer) = (Vec::new(), Vec::new());
    let mut peer_failed: Option<String> = None;
    for run in 1..=args.runs {
        eprintln!("run {run} of {}", args.runs);
        runtime.block_on(recreate(&copy))?;
        let _ = std::fs::remove_file(&state);
        let (sample, doc) = run_command(binary, &config, &["--state-file", &state_arg, "run"])?;
        let copied = doc["report"]["rows"].as_u64().unwrap_or(0);
        if copied != *rows {
            return Err(format!("the tool copied {copied} rows, not {rows}"));
        }
        tool.push(sample);
        if peer_failed.is_none() {
            runtime.block_on(recreate(&copy))?;
            match runtime.block_on(freebcp_copy(server, &copy, dir.path())) {
                Ok(sample) => peer.push(sample),
                // Babelfish refuses some of FreeTDS's bulk loads ("Trying to
                // read more data than available in BCP request"); the tool's
                // numbers still stand.
                Err(e) => peer_failed = Some(e),
            }
        }
    }
    let a = median(&tool);
    let peak = tool.iter().filter_map(|s| s.peak_rss_bytes).max().unwrap_or(0);
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(0);
    println!("machine: {cores} cores, {:.1} GiB memory", memory_bytes() as f64 / (1u64 << 30) as f64);
    println!(
        "server: {} (database {database} → {}); data: scale {}, {rows} rows in 9 tables",
        server.host, copy.database, args.scale
    );
    let line = |label: &str, m: f64, samples: &[Sample]| {
        let all: Vec<String> = samples.iter().map(|s| format!("{:.2}", s.seconds)).collect();
        println!("{label:<46} median {m:>7.2} s {:>9.0} rows/s   (runs: {})", *rows as f64 / m, all.join(" "));
    };
    line("(a) mssql-pg-migrate run (SQL Server → SQL Server)", a, &tool);
    match &peer_failed {
        None => line("(b) freebcp out | freebcp in, keys and indexes", median(&peer), &peer),
        Some(e) => println!("(b) freebcp out | freebcp in: not measurable on this server: {e}"),
    }
    println!("peak RSS of (a): {:.1} MB", peak as f64 / 1e6);
    let cpu: Vec<f64> = tool.iter().filter_map(|s| s.cpu_seconds).collect();
    if !cpu.is_empty() {
        println!("CPU of the tool during (a): {:.2} s per run", cpu.iter().sum::<f64>() / cpu.len() as f64);
    }
    if peer_failed.is_none() {
        println!("ratio: (a)/(b) = {:.2}", a / median(&peer));
    }
    runtime.block_on(drop_database(&copy))?;
    Ok(())
}

async fn admin(server: &TestServer) -> Result<mssql_pg_migrate_testkit::mssql::TestClient, String> {
    TestServer { database: "master".into(), ..server.clone() }.connect().await
}

/// An empty `copy` database, made anew.
async fn recreate(copy: &TestServer) -> Result<(), String> {
    let name = &copy.database;
    let mut admin = admin(copy).await?;
    let sql = format!("IF DB_ID(N'{name}') IS NOT NULL DROP DATABASE [{name}];\nGO\nCREATE DATABASE [{name}];\nGO\n");
    execute_script(&mut admin, &sql).await;
    Ok(())
}

async fn drop_database(copy: &TestServer) -> Result<(), String> {
    let mut admin = admin(copy).await?;
    execute_script(&mut admin, &format!("DROP DATABASE [{}];\nGO\n", copy.database)).await;
    Ok(())
}

/// (b): the tables as the tool makes them, the rows through FreeTDS's bcp,
/// then the keys and indexes the tool builds.
async fn freebcp_copy(source: &TestServer, copy: &TestServer, scratch: &Path) -> Result<Sample, String> {
    let started = Instant::now();
    let mut from = source.connect().await?;
    let babelfish = source.is_babelfish().await;
    let everything = |_: &str, _: &str| true;
    let tables =
        catalog::read_schema(&mut from, None, "dbo", babelfish, &everything).await.map_err(|e| e.to_string())?;
    let mut to = copy.connect().await?;
    for table in &tables {
        let sql = ddl::create_table("dbo", table).map_err(|e| e.to_string())?;
        execute_script(&mut to, &format!("{sql}\nGO\n")).await;
    }
    // -E (keep identity values) makes freebcp set IDENTITY_INSERT, which a
    // table without an identity refuses.
    let with_identity: Vec<String> = tables
        .iter()
        .filter(|t| t.columns.iter().any(|c| c.identity.is_some()))
        .map(|t| t.name.to_lowercase())
        .collect();
    tokio::task::block_in_place(|| {
        two_tables_at_a_time(|table| {
            let file = scratch.join(format!("{table}.bcp"));
            bcp(source, table, "out", &file, &[])?;
            let mut options = vec!["-b", "100000", "-h", "TABLOCK"];
            if with_identity.contains(&table.to_lowercase()) {
                options.push("-E");
            }
            bcp(copy, table, "in", &file, &options)?;
            std::fs::remove_file(&file).map_err(|e| e.to_string())
        })
    })?;
    for table in &tables {
        for (_, sql) in ddl::after_load("dbo", table, true, true) {
            execute_script(&mut to, &format!("{sql}\nGO\n")).await;
        }
    }
    Ok(Sample { seconds: started.elapsed().as_secs_f64(), peak_rss_bytes: None, cpu_seconds: None })
}

fn bcp(server: &TestServer, table: &str, direction: &str, file: &Path, extra: &[&str]) -> Result<(), String> {
    let status = Command::new("freebcp")
        .arg(format!("dbo.{table}"))
        .arg(direction)
        .arg(file)
        // Character format with control characters as terminators: the
        // native format fails on Babelfish ("Unknown datatype"), and text
        // holds tabs and newlines.
        .args(["-c", "-t", "\u{1f}", "-r", "\u{1e}", "-S"])
        .arg(format!("{}:{}", server.host, server.port))
        .args(["-U", &server.user, "-P", &server.password, "-D", &server.database])
        .args(extra)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run freebcp (apt-get install freetds-bin): {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("freebcp {direction} of {table} failed ({status})")) }
}
