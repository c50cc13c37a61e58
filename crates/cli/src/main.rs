//! The `mssql-pg-migrate` binary: parses arguments, runs one command, and
//! turns the outcome into the documented exit code. All real work lives in
//! the library crates.

mod demo;
mod exit;
mod init;
mod inspect;
mod live;
mod metrics;
mod output;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use mssql_pg_migrate::config::{Config, ConfigError, Loader};

use crate::exit::{CliError, Exit};

/// `--version`: the package version and the git commit built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("MSSQL_PG_MIGRATE_BUILD_COMMIT"), ")");

/// Move a SQL Server database into PostgreSQL: schema, data, and the changes since the last run.
#[derive(Debug, Parser)]
#[command(name = "mssql-pg-migrate", version = VERSION, max_term_width = 100)]
struct Cli {
    /// Config file path (.yaml, .yml, .json or .toml)
    #[arg(short = 'c', long = "config", value_name = "PATH", default_value = "config.yaml", global = true)]
    config: PathBuf,
    /// State file for resume capability
    #[arg(long, value_name = "PATH", global = true)]
    state_file: Option<PathBuf>,
    /// Print one JSON document with the result on stdout (logs stay on stderr)
    #[arg(long, global = true)]
    output_json: bool,
    /// Log format on stderr
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log level
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = Verbosity::Info, global = true)]
    verbosity: Verbosity,
    /// Graceful shutdown timeout in seconds after SIGINT/SIGTERM
    #[arg(long, value_name = "SEC", default_value_t = 60, global = true)]
    shutdown_timeout: u64,
    /// Print progress as JSON lines on stderr
    #[arg(long, global = true)]
    progress: bool,
    /// Serve Prometheus metrics (rows, bytes, chunks, retries and errors
    /// per table) at http://ADDR/metrics while run, resume or tui goes
    #[arg(long, value_name = "IP:PORT", global = true)]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Verbosity {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the resolved configuration (defaults applied, variables expanded,
    /// secrets redacted), or every problem in it
    Config,
    /// Run the migration: create the target tables, copy every row, then
    /// build keys, indexes and constraints
    Run(RunArgs),
    /// Continue an interrupted run from its saved state (the --state-file,
    /// or the target database without one); the configuration must not
    /// have changed
    Resume,
    /// Compare row counts per table between source and target, or with
    /// --deep every value of every row (exit 4 when any differ)
    Validate(ValidateArgs),
    /// Connect to both servers: versions, latency, TLS, and the permissions
    /// the run needs (exit 2 when a server is unreachable, 1 when a
    /// permission is missing)
    HealthCheck,
    /// Try the tool without any server of your own: migrates a sample
    /// database between two throwaway local PostgreSQL clusters
    Demo(demo::DemoArgs),
    /// Run (or with --resume, continue) the migration in a terminal UI:
    /// per-table progress, throughput, logs, errors; p pauses, c cancels,
    /// q quits. Starts the init wizard when the config file does not exist
    Tui(TuiArgs),
    /// Write a config file interactively: asks for both servers, tests the
    /// connections, and lets you pick a schema and tables
    Init(init::InitArgs),
    /// Print a shell completion script (for example:
    /// `mssql-pg-migrate completions bash > /etc/bash_completion.d/mssql-pg-migrate`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page in roff (`mssql-pg-migrate man | man -l -`)
    Man,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Print the plan (DDL, chunks, estimates, fidelity, ETA) without
    /// changing the target or moving data
    #[arg(long)]
    dry_run: bool,
    /// Source schema (overrides source.schema)
    #[arg(long, value_name = "SCHEMA")]
    source_schema: Option<String>,
    /// Target schema (overrides target.schema)
    #[arg(long, value_name = "SCHEMA")]
    target_schema: Option<String>,
    /// Tables in flight at once (overrides migration.workers)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    workers: Option<u32>,
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    /// Compare every value of every row, naming each differing row by its
    /// key with the columns and both values (keyless tables: counts of
    /// differing rows)
    #[arg(long)]
    deep: bool,
    /// Differing rows shown per table with --deep (all are counted)
    #[arg(long, value_name = "N", default_value_t = 10, requires = "deep")]
    show: usize,
    /// With --deep: re-copy the missing and different rows (merged by key),
    /// delete extra ones unless the mode keeps them (upsert without
    /// delete_missing), then compare again; exit 0 when nothing is left
    #[arg(long, requires = "deep")]
    repair: bool,
    /// With --deep: compare only PCT percent of each keyed table's chunks,
    /// spread over its key range (extra rows are then not looked for)
    #[arg(long, value_name = "PCT", requires = "deep", value_parser = parse_percent)]
    sample: Option<f64>,
    /// With --deep: how tables are compared. checksum: each server hashes
    /// its rows in buckets (by key range, or by a hash of the key) and only
    /// the rows of buckets that differ are read (tables whose every column
    /// has a common canonical form); rows: every row read from both sides.
    /// Default: checksum, except from Babelfish, whose T-SQL hashing costs
    /// more than reading the rows
    #[arg(long, value_name = "HOW", requires = "deep")]
    method: Option<DeepMethod>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DeepMethod {
    Checksum,
    Rows,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("{text:?} is not a percentage above 0 and at most 100")),
    }
}

#[derive(Debug, clap::Args)]
struct TuiArgs {
    /// Continue the saved run instead of starting a new one
    #[arg(long)]
    resume: bool,
    /// Tables in flight at once (overrides migration.workers)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    workers: Option<u32>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are successes; a usage mistake is a config error
            // (exit 1, "fix, don't retry"), never clap's default 2, which the
            // guide reserves for connection errors that orchestrators retry.
            let _ = e.print();
            return if e.use_stderr() { Exit::Config.into() } else { Exit::Success.into() };
        }
    };
    // The TUI owns the screen: its logs go to its log pane, not stderr.
    let tui_logs = matches!(cli.command, Command::Tui(_)).then(mssql_pg_migrate_tui::LogBuffer::default);
    init_logging(cli.log_format, cli.verbosity, tui_logs.clone());
    let outcome = match cli.command {
        Command::Config => show_config(&cli),
        Command::Run(ref args) => run::run(&cli, args),
        Command::Resume => run::resume(&cli),
        Command::Validate(ref args) => inspect::validate(&cli, args),
        Command::HealthCheck => inspect::health_check(&cli),
        Command::Init(ref args) => init::init(args).map(|_| ()),
        Command::Demo(ref args) => demo::demo(&cli, args),
        Command::Tui(ref args) => tui(&cli, args, tui_logs.unwrap_or_default()),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mssql-pg-migrate", &mut script);
            output::print_text(&String::from_utf8_lossy(&script));
            Ok(())
        }
        Command::Man => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => {
                    output::print_text(&String::from_utf8_lossy(&page));
                    Ok(())
                }
                Err(e) => Err(CliError::new(Exit::Io, format!("cannot render the manual page: {e}"))),
            }
        }
    };
    match outcome {
        Ok(()) => Exit::Success.into(),
        Err(error) => {
            match cli.log_format {
                LogFormat::Json => tracing::error!(exit_code = error.exit.code(), "{}", error.message),
                LogFormat::Text => output::print_err(&format!("error: {}\n", error.message)),
            }
            if cli.output_json {
                output::print_json(&output::error_document(command_name(&cli.command), &error));
            }
            error.exit.into()
        }
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Config => "config",
        Command::Run(_) => "run",
        Command::Resume => "resume",
        Command::Validate(_) => "validate",
        Command::HealthCheck => "health-check",
        Command::Init(_) => "init",
        Command::Demo(_) => "demo",
        Command::Tui(_) => "tui",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
    }
}

fn init_logging(format: LogFormat, verbosity: Verbosity, into: Option<mssql_pg_migrate_tui::LogBuffer>) {
    let level = match verbosity {
        Verbosity::Debug => "debug",
        Verbosity::Info => "info",
        Verbosity::Warn => "warn",
        Verbosity::Error => "error",
    };
    // Server NOTICEs ("table ... does not exist, skipping" from DROP IF
    // EXISTS) are the driver's info records; they only matter when debugging.
    let driver = if verbosity == Verbosity::Debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::new(format!("{level},tokio_postgres={driver}"));
    // Colours only for a person at a terminal, not for Airflow's log files.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // Text records leave out the engine's `run` span: its run_id would
    // prefix every line a person reads. JSON records keep it, for machines.
    let no_run_span = || tracing_subscriber::filter::filter_fn(|m| !(m.is_span() && m.name() == "run"));
    let text = tracing_subscriber::fmt::layer().with_target(false);
    let json = tracing_subscriber::fmt::layer().with_target(false).json();
    let registry = tracing_subscriber::registry().with(filter);
    match (format, into) {
        (LogFormat::Text, None) => {
            registry.with(text.with_ansi(colour).with_writer(std::io::stderr).with_filter(no_run_span())).init();
        }
        (LogFormat::Json, None) => registry.with(json.with_writer(std::io::stderr)).init(),
        (LogFormat::Text, Some(buffer)) => {
            registry.with(text.with_ansi(false).without_time().with_writer(buffer).with_filter(no_run_span())).init();
        }
        (LogFormat::Json, Some(buffer)) => registry.with(json.with_writer(buffer)).init(),
    }
}

fn tui(cli: &Cli, args: &TuiArgs, logs: mssql_pg_migrate_tui::LogBuffer) -> Result<(), CliError> {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(CliError::new(
            Exit::Config,
            "tui needs a terminal; without one use `run` (add --progress for JSON progress lines)",
        ));
    }
    let config = if cli.config.exists() {
        load_config(cli)?
    } else {
        output::print_err(&format!("No config file at {}; the wizard writes one.\n\n", cli.config.display()));
        let answers = init::init(&init::InitArgs { output: cli.config.clone(), advanced: false, force: false })?;
        init::config_of(&answers)?
    };
    let title = format!(
        "{}:{}/{} → {}:{}/{}",
        config.source.host,
        config.source.port,
        config.source.database,
        config.target.host,
        config.target.port,
        config.target.database
    );
    let options =
        mssql_pg_migrate::transfer::RunOptions { resume: args.resume, workers: args.workers, ..Default::default() };
    let command = if args.resume { "resume" } else { "run" };
    run::execute(cli, &config, options, command, run::Front::Tui { logs, title })
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    runtime_with(None)
}

/// The runtime of a copy: as many threads as its tuning leaves the tool
/// (fewer when a server shares this machine), unless `TOKIO_WORKER_THREADS`
/// says otherwise.
fn copy_runtime(config: &Config, workers: Option<u32>) -> Result<tokio::runtime::Runtime, CliError> {
    use mssql_pg_migrate::transfer::tuning::{Machine, Tuning};
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return runtime_with(None);
    }
    runtime_with(Some(Tuning::resolve(&config.migration, Machine::for_run(config), workers).runtime_threads))
}

fn runtime_with(threads: Option<usize>) -> Result<tokio::runtime::Runtime, CliError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(threads.max(1));
    }
    builder.enable_all().build().map_err(|e| CliError::new(Exit::Io, format!("cannot start the async runtime: {e}")))
}

/// Runs `future` to completion on a fresh runtime; the library's error
/// converts at the caller (`??`).
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, CliError> {
    Ok(runtime()?.block_on(future))
}

fn load_config(cli: &Cli) -> Result<Config, CliError> {
    let config = Loader::from_process_env().load_file(&cli.config).map_err(CliError::from)?;
    tracing::debug!(path = %cli.config.display(), hash = %config.fingerprint().hash, "configuration loaded");
    Ok(config)
}

fn show_config(cli: &Cli) -> Result<(), CliError> {
    let config = load_config(cli)?;
    let hash = config.fingerprint().hash;
    if cli.output_json {
        output::print_json(&serde_json::json!({
            "schema_version": output::SCHEMA_VERSION,
            "command": "config",
            "status": "ok",
            "config_path": cli.config.display().to_string(),
            "config_hash": hash,
            "config": config.to_redacted_json(),
        }));
    } else {
        let yaml = serde_yaml_ng::to_string(&config).map_err(|e| CliError::new(Exit::Io, e.to_string()))?;
        output::print_text(&format!(
            "# {} resolved; secrets redacted; config_hash {hash}\n{yaml}",
            cli.config.display()
        ));
    }
    Ok(())
}

impl From<ConfigError> for CliError {
    fn from(error: ConfigError) -> Self {
        let exit = match &error {
            ConfigError::Read { .. } => Exit::Io,
            _ => Exit::Config,
        };
        let problems = match &error {
            ConfigError::Invalid(p) => serde_json::to_value(p).ok(),
            _ => None,
        };
        CliError { exit, message: error.to_string(), problems, document: None, run_id: None }
    }
}
