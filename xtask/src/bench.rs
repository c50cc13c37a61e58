//! `cargo xtask bench`: the tool against the hardware's limit and against
//! `pg_dump | pg_restore`, on the same data, machine and clusters.
//!
//! Two throwaway clusters (source and target) get the Stack Overflow
//! 2010-shaped data set at `--scale`; then, `--runs` times each and
//! interleaved so drift hits them all alike:
//!
//! - (a) the release binary's full load (`drop_recreate`, default tuning):
//!   wall time, rows/s, MB/s, peak RSS (from `wait4`); (a2) the same with
//!   `analyze_after_load: false`, the raw pipe's work alone;
//! - (b) the raw limit for the same work: each table as
//!   `COPY … TO STDOUT (FORMAT binary)` piped (between two `psql`) into
//!   `COPY … FROM STDIN (FORMAT binary)`, two tables at a time, then the
//!   same primary keys, two at a time;
//! - (c) `pg_dump -Fc -Z0 | pg_restore` of the schema (uncompressed: the
//!   fastest form of the pipe);
//! - (d) `pgcopydb clone` with `--table-jobs` and `--index-jobs` equal to
//!   the tool's workers, where pgcopydb is installed (Debian `pgcopydb`).
//!
//! Medians are reported with every run's time, and the ratios (a)/(b) and
//! (a)/(c).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use futures_util::StreamExt as _;
use mssql_pg_migrate_testkit::PgCluster;
use mssql_pg_migrate_transfer::tuning::{Machine, Tuning};

use crate::bench_mssql::MssqlBench;
use crate::gendata;
use crate::sodata::{self, TABLES};

const SCHEMA: &str = "so";

pub struct BenchArgs {
    pub scale: f64,
    pub runs: usize,
    /// `pg` (PostgreSQL → PostgreSQL, the default) or `mssql`.
    pub source: String,
    /// `pg` (the default) or `mssql` (with `--source mssql`: SQL Server →
    /// SQL Server, see `bench_mssql_copy`).
    pub target: String,
    /// `full` (a full load against its peers, the default), `upsert`
    /// (syncs into the copy, see `bench_upsert`) or `validate` (proving
    /// the copy, see `bench_validate`).
    pub mode: String,
}

impl BenchArgs {
    pub fn parse(args: &[String]) -> Result<BenchArgs, String> {
        let mut parsed =
            BenchArgs { scale: 0.05, runs: 3, source: "pg".into(), target: "pg".into(), mode: "full".into() };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            match arg.as_str() {
                "--scale" => parsed.scale = number(rest.next(), "--scale")?,
                "--runs" => parsed.runs = number::<usize>(rest.next(), "--runs")?.max(1),
                "--source" => match rest.next().map(String::as_str) {
                    Some(source @ ("pg" | "mssql")) => parsed.source = source.to_owned(),
                    other => return Err(format!("--source takes pg or mssql, not {other:?}")),
                },
                "--target" => match rest.next().map(String::as_str) {
                    Some(target @ ("pg" | "mssql")) => parsed.target = target.to_owned(),
                    other => return Err(format!("--target takes pg or mssql, not {other:?}")),
                },
                "--mode" => match rest.next().map(String::as_str) {
                    Some(mode @ ("full" | "upsert" | "validate")) => parsed.mode = mode.to_owned(),
                    other => return Err(format!("--mode takes full, upsert or validate, not {other:?}")),
                },
                other => {
                    return Err(format!(
                        "unexpected argument '{other}' (bench takes --scale S, --runs N, --source pg|mssql, \
                         --target pg|mssql and --mode full|upsert|validate)"
                    ));
                }
            }
        }
        if parsed.target == "mssql" && (parsed.source != "mssql" || parsed.mode != "full") {
            return Err("--target mssql takes --source mssql and the full mode".into());
        }
        if !(parsed.scale > 0.0 && parsed.scale <= 10.0) {
            return Err(format!("--scale must be in (0, 10], not {}", parsed.scale));
        }
        Ok(parsed)
    }
}

pub fn number<T: std::str::FromStr>(value: Option<&String>, flag: &str) -> Result<T, String> {
    let text = value.ok_or_else(|| format!("{flag} needs a value"))?;
    text.parse().map_err(|_| format!("{flag}: '{text}' is not a number"))
}

/// One timed run of a contender.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    /// User plus system CPU time of the process, where it is one.
    pub cpu_seconds: Option<f64>,
}

pub fn bench(args: &BenchArgs) -> Result<(), String> {
    if args.mode == "validate" {
        return crate::bench_validate::bench(args);
    }
    if args.mode == "upsert" {
        return crate::bench_upsert::bench(args);
    }
    if args.target == "mssql" {
        return crate::bench_mssql_copy::bench(args);
    }
    if args.source == "mssql" {
        return crate::bench_mssql::bench(args);
    }
    let PgBench { binary, source, target, runtime, rows, bytes, dir } = PgBench::start(args.scale)?;
    let config = dir.path().join("bench.yaml");
    std::fs::write(&config, tool_config(&source, &target)).map_err(|e| e.to_string())?;
    // The raw pipe does not analyze what it loaded; the tool does by
    // default, so (a2) shows it doing the raw pipe's work alone.
    let unanalyzed = dir.path().join("unanalyzed.yaml");
    let yaml = format!("{}migration: {{analyze_after_load: false}}\n", tool_config(&source, &target));
    std::fs::write(&unanalyzed, yaml).map_err(|e| e.to_string())?;

    let pgcopydb = pgcopydb_program();
    if pgcopydb.is_none() {
        eprintln!("pgcopydb is not installed (apt-get install pgcopydb): contender (d) left out");
    }
    // The servers' CPU (both clusters, whose OS users may be one) during (a) and (b).
    let mut server_users: Vec<u32> = [source.port(), target.port()].into_iter().filter_map(owner_of_listener).collect();
    server_users.dedup();
    let servers_cpu = || server_users.iter().map(|&u| cpu_of_user(u)).sum::<f64>();
    let (mut servers_a, mut servers_b) = (Vec::new(), Vec::new());
    let (mut tool, mut raw, mut dump, mut copydb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut tool_unanalyzed, mut raw_analyzed) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        eprintln!("run {run} of {}", args.runs);
        runtime.block_on(reset(&target))?;
        let before = servers_cpu();
        tool.push(run_tool(&binary, &config, rows)?);
        servers_a.push(servers_cpu() - before);
        runtime.block_on(reset(&target))?;
        tool_unanalyzed.push(run_tool(&binary, &unanalyzed, rows)?);
        runtime.block_on(reset(&target))?;
        let before = servers_cpu();
        raw.push(runtime.block_on(raw_copy(&source, &target, false))?);
        servers_b.push(servers_cpu() - before);
        runtime.block_on(reset(&target))?;
        raw_analyzed.push(runtime.block_on(raw_copy(&source, &target, true))?);
        runtime.block_on(reset(&target))?;
        dump.push(dump_restore(&source, &target)?);
        if let Some(program) = &pgcopydb {
            runtime.block_on(reset(&target))?;
            copydb.push(pgcopydb_clone(program, &source, &target, dir.path())?);
        }
    }
    let (a, b, c) = (median(&tool), median(&raw), median(&dump));
    let peak = tool.iter().filter_map(|s| s.peak_rss_bytes).max().unwrap_or(0);
    print_machine_and_data(args.scale, rows, bytes);
    let line = |label: &str, m: f64, samples: &[Sample]| {
        let all: Vec<String> = samples.iter().map(|s| format!("{:.2}", s.seconds)).collect();
        println!(
            "{label:<30} median {m:>7.2} s   {:>9.0} rows/s {:>7.1} MB/s   (runs: {})",
            rows as f64 / m,
            bytes as f64 / 1e6 / m,
            all.join(" ")
        );
    };
    line("(a) mssql-pg-migrate run", a, &tool);
    let a2 = median(&tool_unanalyzed);
    line("(a2) the same without ANALYZE", a2, &tool_unanalyzed);
    line("(b) raw binary COPY + keys", b, &raw);
    let b2 = median(&raw_analyzed);
    line("(b2) the same + ANALYZE", b2, &raw_analyzed);
    line("(c) pg_dump -Fc -Z0 | pg_restore", c, &dump);
    let e = (!copydb.is_empty()).then(|| median(&copydb));
    if let Some(e) = e {
        line(&format!("(d) pgcopydb clone, {} jobs", tool_workers()), e, &copydb);
    }
    println!("peak RSS of (a): {:.1} MB", peak as f64 / 1e6);
    let cpu: Vec<f64> = tool.iter().filter_map(|s| s.cpu_seconds).collect();
    if !cpu.is_empty() {
        let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
        println!("CPU of (a): {mean:.2} s per run ({:.0}% of one core over the median wall time)", 100.0 * mean / a);
    }
    if !server_users.is_empty() {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        println!(
            "CPU of both servers: {:.2} s per run during (a), {:.2} s during (b) (the psql clients of (b) not counted)",
            mean(&servers_a),
            mean(&servers_b)
        );
    }
    match e {
        Some(e) => println!("ratios: (a)/(b) = {:.2}   (a)/(c) = {:.2}   (a)/(d) = {:.2}", a / b, a / c, a / e),
        None => println!("ratios: (a)/(b) = {:.2}   (a)/(c) = {:.2}", a / b, a / c),
    }
    println!("like for like: (a)/(b2) = {:.2} (both ANALYZE)   (a2)/(b) = {:.2} (neither)", a / b2, a2 / b);
    Ok(())
}

pub fn median(samples: &[Sample]) -> f64 {
    let mut times: Vec<f64> = samples.iter().map(|s| s.seconds).collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .map_or(0, |kb: u64| kb * 1024)
}

pub fn build_release() -> Result<PathBuf, String> {
    eprintln!("building the release binary");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        // The Dockerfile's build step, so every bench runs it too.
        .args(["build", "--release", "--locked", "--quiet", "-p", "mssql-pg-migrate-cli"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("the release build failed".into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target_dir.join("release").join("mssql-pg-migrate"))
}

/// What a bench that reads either source (`--source`) starts from: the
/// servers, up while it lives, and the tool's config for a full load.
pub enum Sourced {
    Postgres { bench: PgBench, config: PathBuf },
    Mssql(MssqlBench),
}

impl Sourced {
    /// `changes`: the bench changes the set, so from SQL Server it gets a
    /// database of its own with this suffix (a PostgreSQL set is loaded
    /// afresh every time).
    pub fn start(args: &BenchArgs, changes: Option<&str>) -> Result<Sourced, String> {
        if args.source == "mssql" {
            let bench = match changes {
                Some(suffix) => MssqlBench::start_changing(args.scale, suffix)?,
                None => MssqlBench::start(args.scale)?,
            };
            return Ok(Sourced::Mssql(bench));
        }
        let bench = PgBench::start(args.scale)?;
        let config = bench.dir.path().join("bench.yaml");
        std::fs::write(&config, tool_config(&bench.source, &bench.target)).map_err(|e| e.to_string())?;
        print_machine_and_data(args.scale, bench.rows, bench.bytes);
        Ok(Sourced::Postgres { bench, config })
    }

    pub fn binary(&self) -> &Path {
        match self {
            Sourced::Postgres { bench, .. } => &bench.binary,
            Sourced::Mssql(bench) => &bench.binary,
        }
    }

    pub fn config(&self) -> &Path {
        match self {
            Sourced::Postgres { config, .. } => config,
            Sourced::Mssql(bench) => &bench.config,
        }
    }

    pub fn target(&self) -> &PgCluster {
        match self {
            Sourced::Postgres { bench, .. } => &bench.target,
            Sourced::Mssql(bench) => &bench.target,
        }
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        match self {
            Sourced::Postgres { bench, .. } => &bench.runtime,
            Sourced::Mssql(bench) => &bench.runtime,
        }
    }

    pub fn rows(&self) -> u64 {
        match self {
            Sourced::Postgres { bench, .. } => bench.rows,
            Sourced::Mssql(bench) => bench.rows,
        }
    }
}

/// The release binary and two clusters, the source loaded: what every
/// PostgreSQL bench starts from.
pub struct PgBench {
    pub binary: PathBuf,
    pub source: PgCluster,
    pub target: PgCluster,
    pub runtime: tokio::runtime::Runtime,
    /// Rows and bytes of the source's tables.
    pub rows: u64,
    pub bytes: u64,
    /// For the bench's config files.
    pub dir: tempfile::TempDir,
}

impl PgBench {
    pub fn start(scale: f64) -> Result<PgBench, String> {
        let binary = build_release()?;
        eprintln!("starting the source and target clusters");
        let source = PgCluster::start().map_err(|e| e.to_string())?;
        let target = PgCluster::start().map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
        let (rows, bytes) = runtime.block_on(load_source(&source, &target, scale))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        Ok(PgBench { binary, source, target, runtime, rows, bytes, dir })
    }
}

/// The first lines of a bench's result: the machine and the data set.
pub fn print_machine_and_data(scale: f64, rows: u64, bytes: u64) {
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(0);
    println!("machine: {cores} cores, {:.1} GiB memory", memory_bytes() as f64 / (1u64 << 30) as f64);
    println!(
        "data: scale {scale}, {rows} rows in 9 tables, {:.0} MB in the source's heap and TOAST",
        bytes as f64 / 1e6
    );
}

/// Creates `so_src` (with the data set at `scale`) and an empty `so_dst`;
/// returns the rows and the bytes of the source's tables.
pub async fn load_source(source: &PgCluster, target: &PgCluster, scale: f64) -> Result<(u64, u64), String> {
    source.create_database("so_src").await.map_err(|e| e.to_string())?;
    target.create_database("so_dst").await.map_err(|e| e.to_string())?;
    let client = source.connect("so_src").await.map_err(|e| e.to_string())?;
    eprintln!("generating the data set at scale {scale}");
    let rows = gendata::load(&client, SCHEMA, scale).await?;
    // The load's dirty pages are written now, not during the first run.
    client.batch_execute("CHECKPOINT").await.map_err(|e| e.to_string())?;
    let size = client
        .query_one(
            "SELECT sum(pg_table_size(c.oid))::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind = 'r'",
            &[&SCHEMA],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((rows, u64::try_from(size.get::<_, i64>(0)).unwrap_or(0)))
}

/// The tool's config from the source's `so_src` to the target's `so_dst`.
pub fn tool_config(source: &PgCluster, target: &PgCluster) -> String {
    format!(
        "source: {{type: postgres, host: 127.0.0.1, port: {}, database: so_src, user: postgres, password: '{}', schema: {SCHEMA}}}\n\
         target: {{type: postgres, host: 127.0.0.1, port: {}, database: so_dst, user: postgres, password: '{}', schema: {SCHEMA}, ssl_mode: disable}}\n",
        source.port(),
        source.password().replace('$', "$$"),
        target.port(),
        target.password().replace('$', "$$"),
    )
}

/// Empties the target and writes out dirty pages, the server's and then
/// the kernel's, so each run starts alike: without `sync`, the kernel
/// writes the last run's WAL, or the freshly loaded source, back to disk
/// during the next run, on the same two cores.
pub async fn reset(target: &PgCluster) -> Result<(), String> {
    let client = target.connect("so_dst").await.map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; DROP SCHEMA IF EXISTS mssql_pg_migrate CASCADE; CHECKPOINT"
        ))
        .await
        .map_err(|e| format!("resetting the target: {e}"))?;
    let synced = Command::new("sync").status().map_err(|e| format!("cannot run sync: {e}"))?;
    if !synced.success() {
        return Err(format!("sync failed: {synced}"));
    }
    Ok(())
}

pub fn run_tool(binary: &Path, config: &Path, expected_rows: u64) -> Result<Sample, String> {
    run_tool_doc(binary, config, Some(expected_rows)).map(|(sample, _)| sample)
}

/// [`run_tool`], with the run's JSON document; `expected_rows: None` for
/// a run that reads only some rows (an incremental sync).
pub fn run_tool_doc(
    binary: &Path,
    config: &Path,
    expected_rows: Option<u64>,
) -> Result<(Sample, serde_json::Value), String> {
    let (sample, doc) = run_command(binary, config, &["run"])?;
    let rows = doc["report"]["rows"].as_u64().unwrap_or(0);
    if let Some(expected) = expected_rows
        && rows != expected
    {
        return Err(format!("the tool copied {rows} rows, not {expected}"));
    }
    Ok((sample, doc))
}

/// One timed command of the release binary (`run`, `validate --deep`…),
/// which must exit 0, with its JSON document.
pub fn run_command(binary: &Path, config: &Path, command: &[&str]) -> Result<(Sample, serde_json::Value), String> {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(config)
        // BENCH_VERBOSITY=debug shows where a run's time goes (its log, with timestamps).
        .args(["--output-json", "--verbosity", std::env::var("BENCH_VERBOSITY").as_deref().unwrap_or("warn")])
        .args(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let usage = mssql_pg_migrate_testkit::wait_with_usage(child).map_err(|e| format!("wait4 failed: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let output = reader.join().map_err(|_| "the output reader panicked")?;
    if usage.code != Some(0) {
        return Err(format!("the tool's {} exited {:?}:\n{output}", command.join(" "), usage.code));
    }
    let doc: serde_json::Value = serde_json::from_str(&output).map_err(|e| format!("not JSON ({e}): {output}"))?;
    let sample = Sample { seconds, peak_rss_bytes: Some(usage.peak_rss_bytes), cpu_seconds: Some(usage.cpu_seconds) };
    Ok((sample, doc))
}

/// (b): the same tables and keys, by binary COPY out and in, two at a time.
/// The bytes go between two `psql` processes (C, as the server ships them),
/// so the limit measured is PostgreSQL's and the pipe's, not this crate's
/// debug build. With `analyze`, then `ANALYZE` of each table, two at a
/// time, as the tool does by default (`analyze_after_load`): (b2).
async fn raw_copy(source: &PgCluster, target: &PgCluster, analyze: bool) -> Result<Sample, String> {
    let started = Instant::now();
    let (create, keys) = sodata::pg_tables(SCHEMA);
    let client = target.connect("so_dst").await.map_err(|e| e.to_string())?;
    client.batch_execute(&create).await.map_err(|e| e.to_string())?;
    two_tables_at_a_time(|table| pipe_table(source, target, table))?;
    let key_steps = futures_util::stream::iter(keys.lines().map(|sql| async move {
        let c = target.connect("so_dst").await.map_err(|e| e.to_string())?;
        c.batch_execute(sql).await.map_err(|e| e.to_string())
    }))
    .buffer_unordered(2)
    .collect::<Vec<_>>()
    .await;
    for k in key_steps {
        k?;
    }
    if analyze {
        let analyses = futures_util::stream::iter(TABLES.iter().map(|t| async move {
            let c = target.connect("so_dst").await.map_err(|e| e.to_string())?;
            c.batch_execute(&format!("ANALYZE {}.{}", sodata::quote_pg(SCHEMA), sodata::quote_pg(t.name)))
                .await
                .map_err(|e| e.to_string())
        }))
        .buffer_unordered(2)
        .collect::<Vec<_>>()
        .await;
        for a in analyses {
            a?;
        }
    }
    Ok(Sample { seconds: started.elapsed().as_secs_f64(), peak_rss_bytes: None, cpu_seconds: None })
}

/// Runs `job` on every table of the data set, two tables at a time, as the
/// contenders that are not the tool do their work.
pub fn two_tables_at_a_time(job: impl Fn(&str) -> Result<(), String> + Sync) -> Result<(), String> {
    let queue = std::sync::Mutex::new(TABLES.iter().map(|t| t.name).collect::<Vec<_>>());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| -> Result<(), String> {
                    loop {
                        let next = queue.lock().map_err(|_| "queue poisoned".to_owned())?.pop();
                        let Some(table) = next else { return Ok(()) };
                        job(table)?;
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| "a worker thread panicked".to_owned())?)
    })
}

/// The tool's default workers on this machine, which pgcopydb gets as
/// table and index jobs.
fn tool_workers() -> usize {
    Tuning::default_workers(Machine::detect().cores)
}

/// The OS user owning the process that listens on `port` of 127.0.0.1.
pub fn owner_of_listener(port: u16) -> Option<u32> {
    let hex_port = format!(":{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local address, state 0A (LISTEN), uid.
        (fields.get(1)?.ends_with(&hex_port) && fields.get(3)? == &"0A").then(|| fields.get(7)?.parse().ok())?
    })
}

/// CPU seconds (user + system, own and reaped children) of every process
/// of OS user `uid`: a server's postmaster collects its backends' time.
pub fn cpu_of_user(uid: u32) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    let mut total = 0u64;
    for entry in entries.flatten() {
        let path = entry.path();
        let owned = std::fs::read_to_string(path.join("status")).ok().and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok())
        });
        if owned != Some(uid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else { continue };
        // Fields after the command's closing parenthesis; utime is field 14.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<u64> = rest.split_whitespace().skip(11).take(4).filter_map(|f| f.parse().ok()).collect();
        total += fields.iter().sum::<u64>();
    }
    total as f64 / ticks
}

fn pgcopydb_program() -> Option<PathBuf> {
    let found = Command::new("pgcopydb").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    found.is_ok_and(|s| s.success()).then(|| PathBuf::from("pgcopydb"))
}

/// A libpq key/value connection string (the password quoted as libpq reads it).
fn conninfo(cluster: &PgCluster, database: &str) -> String {
    let password = cluster.password().replace('\\', "\\\\").replace('\'', "\\'");
    format!("host=127.0.0.1 port={} dbname={database} user=postgres password='{password}'", cluster.port())
}

/// (d): `pgcopydb clone` of the source database (the data set's tables,
/// keys and indexes, then its VACUUM ANALYZE), with as many table and
/// index jobs as the tool has workers, its pg_dump and pg_restore from the
/// server's folder.
fn pgcopydb_clone(program: &Path, source: &PgCluster, target: &PgCluster, scratch: &Path) -> Result<Sample, String> {
    let work = scratch.join("pgcopydb");
    let _ = std::fs::remove_dir_all(&work);
    let jobs = tool_workers().to_string();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![source.bindir().to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    let started = Instant::now();
    let output = Command::new(program)
        .args(["clone", "--no-owner", "--no-acl", "--table-jobs", &jobs, "--index-jobs", &jobs, "--dir"])
        .arg(&work)
        .args(["--source", &conninfo(source, "so_src"), "--target", &conninfo(target, "so_dst")])
        .env("PATH", std::env::join_paths(paths).map_err(|e| e.to_string())?)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start pgcopydb: {e}"))?;
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        return Err(format!(
            "pgcopydb clone failed ({}):\n{}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(Sample { seconds: started.elapsed().as_secs_f64(), peak_rss_bytes: None, cpu_seconds: None })
}

/// A client program from the server's folder, or from `PATH` (Debian ships
/// the clients in the same folder; other layouts may not).
fn client_program(cluster: &PgCluster, name: &str) -> PathBuf {
    let beside = cluster.bindir().join(name);
    if beside.exists() { beside } else { PathBuf::from(name) }
}

fn psql(cluster: &PgCluster, database: &str, sql: &str) -> Command {
    let mut cmd = Command::new(client_program(cluster, "psql"));
    let port = cluster.port().to_string();
    cmd.args(["-X", "-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", database, "-c", sql])
        .env("PGPASSWORD", cluster.password());
    cmd
}

/// `psql -c 'COPY … TO STDOUT (FORMAT binary)' | psql -c 'COPY … FROM STDIN (FORMAT binary)'`.
fn pipe_table(source: &PgCluster, target: &PgCluster, table: &str) -> Result<(), String> {
    let out = format!("COPY {SCHEMA}.\"{table}\" TO STDOUT (FORMAT binary)");
    let into = format!("COPY {SCHEMA}.\"{table}\" FROM STDIN (FORMAT binary)");
    let mut reader =
        psql(source, "so_src", &out).stdout(Stdio::piped()).spawn().map_err(|e| format!("cannot start psql: {e}"))?;
    let piped = reader.stdout.take().ok_or("no psql output")?;
    let written = psql(target, "so_dst", &into)
        .stdin(Stdio::from(piped))
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot start psql: {e}"))?;
    let read = reader.wait().map_err(|e| e.to_string())?;
    if read.success() && written.success() { Ok(()) } else { Err(format!("copying {table}: {read} | {written}")) }
}

/// (c): `pg_dump -Fc -Z0 -n so | pg_restore`.
fn dump_restore(source: &PgCluster, target: &PgCluster) -> Result<Sample, String> {
    let started = Instant::now();
    let mut dump = Command::new(client_program(source, "pg_dump"))
        // -Z0: no compression, the fastest pg_dump there is for a pipe.
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &source.port().to_string(),
            "-U",
            "postgres",
            "-Fc",
            "-Z0",
            "-n",
            SCHEMA,
            "so_src",
        ])
        .env("PGPASSWORD", source.password())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start pg_dump: {e}"))?;
    let piped = dump.stdout.take().ok_or("no pg_dump output")?;
    let restore = Command::new(client_program(target, "pg_restore"))
        .args(["-h", "127.0.0.1", "-p", &target.port().to_string(), "-U", "postgres", "--no-owner", "-d", "so_dst"])
        .env("PGPASSWORD", target.password())
        .stdin(Stdio::from(piped))
        .status()
        .map_err(|e| format!("cannot start pg_restore: {e}"))?;
    let dumped = dump.wait().map_err(|e| e.to_string())?;
    if !dumped.success() || !restore.success() {
        return Err(format!("pg_dump ({dumped}) | pg_restore ({restore}) failed"));
    }
    Ok(Sample { seconds: started.elapsed().as_secs_f64(), peak_rss_bytes: None, cpu_seconds: None })
}
