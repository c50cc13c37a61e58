//! `cargo xtask bench --source mssql`: the tool reading SQL Server against
//! the source's own read limit, on the same data and machine.
//!
//! The server is the one `MSSQL_TEST_URL` names, or else the Babelfish TDS
//! server `.ci/tds-server` starts. The Stack Overflow 2010-shaped set goes
//! into a database `so_bench_<scale>` there through the T-SQL `gen-data
//! --tsql` writes (its 1000-row INSERT batches, ten per round trip, shared
//! by two connections), in a process of its own. A database that an earlier
//! bench loaded completely at the same scale is reused: the set is a pure
//! function of the scale, and loading scale 1 through T-SQL takes minutes.
//! Then, `--runs` times each and interleaved:
//!
//! - (a) the release binary's full load into a throwaway PostgreSQL cluster
//!   (`drop_recreate`, default tuning): wall time, peak RSS and CPU time;
//! - (b) the read limit: `freebcp … out /dev/null -c` (FreeTDS, C) of every
//!   table, two at a time: what reading the same rows costs with nothing
//!   written anywhere.
//!
//! Both servers and the tool share the machine, so the CPU time each used
//! during (a) is reported too: the tool's (from `wait4`), the TDS server's
//! and the target's (from `/proc`, summed over their OS users' processes).

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use mssql_pg_migrate_testkit::PgCluster;
use mssql_pg_migrate_testkit::mssql::TestServer;

use crate::bench::{
    BenchArgs, Sample, build_release, cpu_of_user, median, memory_bytes, owner_of_listener, reset, run_tool,
    two_tables_at_a_time,
};
use crate::sodata::{self, TABLES};

/// Marks a database whose load finished, with the rows loaded; in a schema
/// of its own so that the migrated schema `dbo` holds only the set.
const LOADED_MARKER: &str = "bench_meta.loaded";

/// The database holding the set at `scale` (`so_bench_0_05` for 0.05).
fn database_for(scale: f64) -> String {
    format!("so_bench_{}", scale.to_string().replace(['.', '-'], "_"))
}

/// Statements sent per round trip while loading (each a 1000-row INSERT).
const INSERTS_PER_TRIP: usize = 10;

fn server() -> Result<(TestServer, Option<crate::tds::StartedServer>), String> {
    if let Ok(url) = std::env::var("MSSQL_TEST_URL") {
        return Ok((TestServer::parse(&url)?, None));
    }
    let started = crate::tds::StartedServer::start()?;
    Ok((TestServer::parse(&started.url)?, Some(started)))
}

/// The release binary, the SQL Server with the set loaded, and an empty
/// target cluster: what every bench reading SQL Server starts from.
pub struct MssqlBench {
    pub binary: std::path::PathBuf,
    pub server: TestServer,
    /// The TDS server this bench started, stopped when dropped.
    _started: Option<crate::tds::StartedServer>,
    pub runtime: tokio::runtime::Runtime,
    pub target: PgCluster,
    /// The tool's config (SQL Server's `dbo` into the target's `so`).
    pub config: std::path::PathBuf,
    pub rows: u64,
    pub database: String,
    _dir: tempfile::TempDir,
}

impl MssqlBench {
    pub fn start(scale: f64) -> Result<MssqlBench, String> {
        MssqlBench::start_in(scale, &database_for(scale))
    }

    /// As [`MssqlBench::start`], with the set in a database of its own
    /// (`<the scale's database>_<suffix>`), for a bench that changes it.
    pub fn start_changing(scale: f64, suffix: &str) -> Result<MssqlBench, String> {
        MssqlBench::start_in(scale, &format!("{}_{suffix}", database_for(scale)))
    }

    fn start_in(scale: f64, database: &str) -> Result<MssqlBench, String> {
        let binary = build_release()?;
        let (mut server, started) = server()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
        let database = database.to_owned();
        server.database = database.clone();
        let rows: u64 = TABLES.iter().map(|t| t.rows(scale)).sum();
        if runtime.block_on(loaded_rows(&server)) == Some(rows) {
            eprintln!("reusing the data set at scale {scale} in {database}");
        } else {
            // The load runs in a process of its own: a child forked from a
            // process that grew while loading starts with that size in its peak RSS.
            eprintln!("loading the data set at scale {scale} into {database}");
            let loaded = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
                .args(["gen-data", "--scale", &scale.to_string(), "--target", &server.url()])
                .status()
                .map_err(|e| format!("cannot run gen-data: {e}"))?;
            if !loaded.success() {
                return Err(format!("loading the data set failed ({loaded})"));
            }
        }
        eprintln!("starting the target cluster");
        let target = PgCluster::start().map_err(|e| e.to_string())?;
        runtime.block_on(target.create_database("so_dst")).map_err(|e| e.to_string())?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let config = dir.path().join("bench.yaml");
        let yaml = format!(
            "{}target: {{type: postgres, host: 127.0.0.1, port: {}, database: so_dst, user: postgres, password: '{}', \
             schema: so, ssl_mode: disable}}\n",
            server.source_yaml("dbo", &server.password.replace('$', "$$")),
            target.port(),
            target.password().replace('$', "$$"),
        );
        std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
        Ok(MssqlBench { binary, server, _started: started, runtime, target, config, rows, database, _dir: dir })
    }
}

pub fn bench(args: &BenchArgs) -> Result<(), String> {
    let bench = MssqlBench::start(args.scale)?;
    let MssqlBench { binary, server, runtime, target, config, rows, database, .. } = &bench;
    let (rows, database) = (*rows, database.as_str());
    let babelfish_user = owner_of_listener(server.port);
    let target_user = owner_of_listener(target.port());
    let (mut tool, mut limit) = (Vec::new(), Vec::new());
    let (mut server_cpu, mut target_cpu, mut server_cpu_limit) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=args.runs {
        eprintln!("run {run} of {}", args.runs);
        runtime.block_on(reset(target))?;
        let before = (babelfish_user.map(cpu_of_user), target_user.map(cpu_of_user));
        tool.push(run_tool(binary, config, rows)?);
        if let (Some(user), Some(b)) = (babelfish_user, before.0) {
            server_cpu.push(cpu_of_user(user) - b);
        }
        if let (Some(user), Some(b)) = (target_user, before.1) {
            target_cpu.push(cpu_of_user(user) - b);
        }
        let before = babelfish_user.map(cpu_of_user);
        limit.push(freebcp_all(server)?);
        if let (Some(user), Some(b)) = (babelfish_user, before) {
            server_cpu_limit.push(cpu_of_user(user) - b);
        }
    }
    let (a, b) = (median(&tool), median(&limit));
    let peak = tool.iter().filter_map(|s| s.peak_rss_bytes).max().unwrap_or(0);
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(0);
    println!("machine: {cores} cores, {:.1} GiB memory", memory_bytes() as f64 / (1u64 << 30) as f64);
    println!("source: {} (database {database}); data: scale {}, {rows} rows in 9 tables", server.host, args.scale);
    let line = |label: &str, m: f64, samples: &[Sample]| {
        let all: Vec<String> = samples.iter().map(|s| format!("{:.2}", s.seconds)).collect();
        println!("{label:<42} median {m:>7.2} s {:>9.0} rows/s   (runs: {})", rows as f64 / m, all.join(" "));
    };
    line("(a) mssql-pg-migrate run (SQL Server → PG)", a, &tool);
    line("(b) freebcp out, 2 tables at a time", b, &limit);
    println!("peak RSS of (a): {:.1} MB", peak as f64 / 1e6);
    let mean = |v: &[f64]| if v.is_empty() { None } else { Some(v.iter().sum::<f64>() / v.len() as f64) };
    let tool_cpu: Vec<f64> = tool.iter().filter_map(|s| s.cpu_seconds).collect();
    for (label, cpu) in
        [("the tool", mean(&tool_cpu)), ("the TDS server", mean(&server_cpu)), ("the target", mean(&target_cpu))]
    {
        if let Some(cpu) = cpu {
            println!("CPU during (a), {label}: {cpu:.2} s per run ({:.0}% of one core)", 100.0 * cpu / a);
        }
    }
    if let Some(cpu) = mean(&server_cpu_limit) {
        println!("CPU during (b), the TDS server: {cpu:.2} s per run ({:.0}% of one core)", 100.0 * cpu / b);
    }
    println!("ratio: (a)/(b) = {:.2}", a / b);
    Ok(())
}

/// Creates `server`'s database afresh and runs the T-SQL of `gen-data
/// --tsql` into it. Returns the rows loaded.
pub async fn load(server: &TestServer, scale: f64) -> Result<u64, String> {
    let started = Instant::now();
    let database = &server.database;
    if database.is_empty() || database.contains(']') {
        return Err(format!("cannot create a database named {database:?}"));
    }
    let mut admin = server.clone();
    admin.database = "master".into();
    let mut admin = admin.connect().await?;
    let recreate = format!(
        "IF DB_ID(N'{database}') IS NOT NULL DROP DATABASE [{database}];\nGO\nCREATE DATABASE [{database}];\nGO\n"
    );
    mssql_pg_migrate_testkit::mssql::execute_script(&mut admin, &recreate).await;
    drop(admin);
    let bench_db = server.clone();

    // The script is written on a thread of its own and arrives batch by
    // batch. Its table definitions come first and run here; its INSERT
    // batches are independent, so two connections share them.
    let (batches, arriving) = mpsc::sync_channel::<String>(4);
    let writer = std::thread::spawn(move || {
        let mut out = BatchSplitter { batches, pending: String::new() };
        sodata::write_tsql(scale, &mut out)
    });
    let (inserts, work) = async_channel::bounded::<String>(INSERTS_PER_TRIP);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (server, work) = (bench_db.clone(), work.clone());
            tokio::spawn(async move {
                let mut client = server.connect().await?;
                let mut trip = String::new();
                let mut statements = 0;
                while let Ok(batch) = work.recv().await {
                    trip.push_str(&batch);
                    trip.push('\n');
                    statements += 1;
                    if statements == INSERTS_PER_TRIP {
                        run(&mut client, &trip).await?;
                        trip.clear();
                        statements = 0;
                    }
                }
                if !trip.is_empty() {
                    run(&mut client, &trip).await?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    let mut definitions = bench_db.connect().await?;
    while let Ok(batch) = tokio::task::block_in_place(|| arriving.recv()) {
        if batch.starts_with("INSERT") {
            inserts.send(batch).await.map_err(|_| "the loaders stopped early".to_owned())?;
        } else {
            run(&mut definitions, &batch).await?;
        }
    }
    inserts.close();
    for worker in workers {
        worker.await.map_err(|e| e.to_string())??;
    }
    let rows = writer.join().map_err(|_| "the script writer panicked".to_owned())?.map_err(|e| e.to_string())?;
    run(&mut definitions, "CREATE SCHEMA bench_meta").await?;
    run(&mut definitions, &format!("CREATE TABLE {LOADED_MARKER} (rows bigint NOT NULL)")).await?;
    run(&mut definitions, &format!("INSERT INTO {LOADED_MARKER} VALUES ({rows})")).await?;
    eprintln!("loaded {rows} rows into {database} in {:.0} s", started.elapsed().as_secs_f64());
    Ok(rows)
}

/// The rows of a finished earlier load into `server`'s database, if any.
async fn loaded_rows(server: &TestServer) -> Option<u64> {
    let mut client = server.connect().await.ok()?;
    let sql = format!("SELECT rows FROM {LOADED_MARKER}");
    let row = client.simple_query(sql).await.ok()?.into_row().await.ok()??;
    row.try_get::<i64, usize>(0).ok()?.and_then(|r| u64::try_from(r).ok())
}

async fn run(client: &mut mssql_pg_migrate_testkit::mssql::TestClient, sql: &str) -> Result<(), String> {
    let failed = |e: tiberius::error::Error| format!("loading the data set: {e}\nin: {sql:.300}");
    let results = client.simple_query(sql).await.map_err(failed)?;
    results.into_results().await.map_err(failed)?;
    Ok(())
}

/// Cuts the script into its `GO`-separated batches.
struct BatchSplitter {
    batches: mpsc::SyncSender<String>,
    pending: String,
}

impl std::io::Write for BatchSplitter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.push_str(std::str::from_utf8(buf).map_err(std::io::Error::other)?);
        while let Some(end) = self.pending.find("\nGO\n") {
            let batch: String = self.pending.drain(..end + 4).collect();
            let batch = batch[..end].trim();
            if !batch.is_empty() {
                self.batches.send(batch.to_owned()).map_err(|_| std::io::Error::other("the loader stopped"))?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// (b): `freebcp dbo.T out /dev/null -c` for every table, two at a time.
fn freebcp_all(server: &TestServer) -> Result<Sample, String> {
    let started = Instant::now();
    two_tables_at_a_time(|table| {
        let status = Command::new("freebcp")
            .arg(format!("dbo.{table}"))
            .args(["out", "/dev/null", "-c", "-S"])
            .arg(format!("{}:{}", server.host, server.port))
            .args(["-U", &server.user, "-P", &server.password, "-D", &server.database])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run freebcp (apt-get install freetds-bin): {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("freebcp of {table} failed ({status})")) }
    })?;
    Ok(Sample { seconds: started.elapsed().as_secs_f64(), peak_rss_bytes: None, cpu_seconds: None })
}
