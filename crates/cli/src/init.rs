//! `init`: an interactive wizard that asks for the two servers, tests both
//! connections, lets the user pick a schema and tables, and writes a
//! commented YAML config.
//!
//! The conversation ([`Wizard`]) is separate from the terminal
//! ([`Prompter`]) and from the servers ([`Servers`]), so tests drive it
//! with scripted answers. Passwords are read without echo and never
//! printed; by default the file refers to them as `${VARIABLE}`s.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use mssql_pg_migrate::config::{Encrypt, PgTls, Secret, SourceConfig, SourceKind, SslMode, TargetConfig};
use mssql_pg_migrate::transfer::health::{list_source_tables, probe_target};
use mssql_pg_migrate::transfer::source::{ServerProbe, TableName};

use crate::exit::{CliError, Exit};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Output file
    #[arg(short = 'o', long = "output", value_name = "PATH", default_value = "config.yaml")]
    pub output: PathBuf,
    /// Also ask for the tuning options, and write all of them
    #[arg(long)]
    pub advanced: bool,
    /// Overwrite an existing file without asking
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// The user's side of the conversation.
pub trait Prompter {
    fn say(&mut self, text: &str);
    /// One answer; `None` when the input has ended.
    fn line(&mut self, prompt: &str) -> Option<String>;
    /// One answer that is never shown as typed (masked on a terminal).
    fn secret(&mut self, prompt: &str) -> Option<String>;
    /// Whether choices are picked from menus ([`Prompter::select`],
    /// [`Prompter::select_many`]) rather than typed as lines.
    fn has_menus(&self) -> bool {
        false
    }
    /// One of `choices`, the cursor starting at `default`; `None` when the
    /// input has ended or was cancelled.
    fn select(&mut self, _question: &str, _choices: &[String], _default: usize) -> Option<usize> {
        None
    }
    /// Any of `choices`, with `selected` ticked at the start.
    fn select_many(&mut self, _question: &str, _choices: &[String], _selected: &[usize]) -> Option<Vec<usize>> {
        None
    }
}

/// What the wizard asks of the servers.
pub trait Servers {
    fn source(&mut self, source: &SourceConfig) -> Result<(ServerProbe, Vec<TableName>), String>;
    fn target(&mut self, target: &TargetConfig) -> Result<ServerProbe, String>;
}

/// The input ended before the wizard finished.
#[derive(Debug, PartialEq, Eq)]
pub struct InputEnded;

/// How the written file refers to the passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordStyle {
    /// `${VARIABLE}`, set in the environment at run time.
    Environment,
    /// The password itself, in a file only its owner may read.
    Inline,
}

/// Everything the config is written from.
#[derive(Debug, Clone)]
pub struct Answers {
    pub source: SourceConfig,
    pub target: TargetConfig,
    pub passwords: PasswordStyle,
    /// `include_tables`; empty for every table of the schema.
    pub include_tables: Vec<String>,
    pub target_mode: &'static str,
    /// Tuning keys and their values as written (`auto` included), in order.
    pub tuning: Vec<(&'static str, String)>,
}

pub const SOURCE_PASSWORD_VAR: &str = "MSSQL_PASSWORD";
pub const PG_SOURCE_PASSWORD_VAR: &str = "SOURCE_PASSWORD";
pub const TARGET_PASSWORD_VAR: &str = "POSTGRES_PASSWORD";

/// The conversation.
pub struct Wizard<'a, P: Prompter, S: Servers> {
    pub prompter: &'a mut P,
    pub servers: &'a mut S,
    pub advanced: bool,
}

impl<P: Prompter, S: Servers> Wizard<'_, P, S> {
    /// Asks until `parse` accepts the answer; an empty answer takes `default`.
    fn ask<T>(
        &mut self,
        question: &str,
        default: Option<&str>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, InputEnded> {
        let prompt = match default {
            Some(d) if !d.is_empty() => format!("{question} [{d}]: "),
            _ => format!("{question}: "),
        };
        loop {
            let answer = self.prompter.line(&prompt).ok_or(InputEnded)?;
            let answer = answer.trim();
            let answer = if answer.is_empty() { default.unwrap_or("") } else { answer };
            match parse(answer) {
                Ok(value) => return Ok(value),
                Err(why) => self.prompter.say(&format!("  {why}\n")),
            }
        }
    }

    fn ask_text(&mut self, question: &str, default: Option<&str>) -> Result<String, InputEnded> {
        self.ask(question, default, |a| if a.is_empty() { Err("an answer is needed".into()) } else { Ok(a.to_owned()) })
    }

    fn ask_yes(&mut self, question: &str, default: bool) -> Result<bool, InputEnded> {
        self.ask(question, Some(if default { "yes" } else { "no" }), |a| match a.to_ascii_lowercase().as_str() {
            "y" | "yes" | "true" => Ok(true),
            "n" | "no" | "false" => Ok(false),
            _ => Err("answer yes or no".into()),
        })
    }

    fn ask_choice(
        &mut self,
        question: &str,
        choices: &[&'static str],
        default: &str,
    ) -> Result<&'static str, InputEnded> {
        if self.prompter.has_menus() {
            let options: Vec<String> = choices.iter().map(|c| (*c).to_owned()).collect();
            let start = choices.iter().position(|c| *c == default).unwrap_or(0);
            let picked = self.prompter.select(question, &options, start).ok_or(InputEnded)?;
            return choices.get(picked).copied().ok_or(InputEnded);
        }
        let list = choices.join(", ");
        self.ask(&format!("{question} ({list})"), Some(default), |a| {
            choices.iter().copied().find(|c| c.eq_ignore_ascii_case(a)).ok_or_else(|| format!("choose one of: {list}"))
        })
    }

    fn ask_port(&mut self, question: &str, default: u16) -> Result<u16, InputEnded> {
        self.ask(question, Some(&default.to_string()), |a| {
            a.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("{a:?} is not a port (1-65535)"))
        })
    }

    fn ask_password(&mut self, question: &str) -> Result<Secret, InputEnded> {
        let answer = self.prompter.secret(&format!("{question} (not shown): ")).ok_or(InputEnded)?;
        Ok(Secret::new(answer.trim_end_matches(['\r', '\n'])))
    }

    /// `auto` or a whole number in `range`.
    fn ask_tunable(
        &mut self,
        question: &str,
        default: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<String, InputEnded> {
        self.ask(question, Some(default), |a| {
            if a.eq_ignore_ascii_case("auto") {
                return Ok("auto".to_owned());
            }
            match a.parse::<u64>() {
                Ok(n) if range.contains(&n) => Ok(n.to_string()),
                _ => Err(format!("answer auto or a whole number from {} to {}", range.start(), range.end())),
            }
        })
    }

    pub fn run(&mut self) -> Result<Answers, InputEnded> {
        self.prompter.say("This wizard writes a mssql-pg-migrate config. Press Enter to take the [default].\n\n");
        let (source, tables) = self.source()?;
        let (schema, include_tables) = self.selection(&source, &tables)?;
        let source = SourceConfig { schema, ..source };
        let target = self.target(&source)?;
        let passwords = match self.ask_choice(
            "How should the file refer to the passwords? env: as ${VARIABLES} set when the tool runs; \
             inline: written into the file, readable by you only",
            &["env", "inline"],
            "env",
        )? {
            "inline" => PasswordStyle::Inline,
            _ => PasswordStyle::Environment,
        };
        let target_mode = self.ask_choice(
            "Target mode: drop_recreate drops and recreates the target tables; truncate empties existing ones",
            &["drop_recreate", "truncate"],
            "drop_recreate",
        )?;
        let tuning = if self.advanced { self.tuning()? } else { Vec::new() };
        Ok(Answers { source, target, passwords, include_tables, target_mode, tuning })
    }

    fn source(&mut self) -> Result<(SourceConfig, Vec<TableName>), InputEnded> {
        self.prompter.say("Source\n");
        loop {
            let kind = match self.ask_choice("Source type", &["mssql", "postgres"], "mssql")? {
                "postgres" => SourceKind::Postgres,
                _ => SourceKind::Mssql,
            };
            let (default_port, default_schema) = match kind {
                SourceKind::Mssql => (1433, "dbo"),
                SourceKind::Postgres => (5432, "public"),
            };
            let host = self.ask_text("Source host", Some("localhost"))?;
            let port = self.ask_port("Source port", default_port)?;
            let database = self.ask_text("Source database", None)?;
            let user = self.ask_text("Source user", None)?;
            let password = self.ask_password("Source password")?;
            let (encrypt, trust_server_cert) = if kind == SourceKind::Mssql {
                let encrypt = self.ask_yes("Encrypt the connection (TLS)", true)?;
                let trust =
                    self.ask_yes("Trust the server's certificate without checking it (dev servers only)", false)?;
                (encrypt, trust)
            } else {
                (false, false)
            };
            let source = SourceConfig {
                kind,
                host,
                port,
                database,
                user,
                password,
                password_file: None,
                password_command: None,
                schema: default_schema.to_owned(),
                encrypt: if encrypt { Encrypt::On } else { Encrypt::Off },
                trust_server_cert,
                ca_cert: None,
                pg_tls: (kind == SourceKind::Postgres).then(|| PgTls::with_mode(SslMode::Prefer)),
            };
            self.prompter.say("Testing the source connection... ");
            match self.servers.source(&source) {
                Ok((server, tables)) => {
                    self.prompter.say(&format!(
                        "ok: {} as {}, {} table(s)\n",
                        server.version,
                        server.user,
                        tables.len()
                    ));
                    return Ok((source, tables));
                }
                Err(why) => {
                    self.prompter.say(&format!("failed: {why}\n"));
                    if !self.ask_yes("Enter the source again", true)? {
                        self.prompter.say("Keeping these settings; schemas and tables cannot be listed.\n");
                        return Ok((source, Vec::new()));
                    }
                }
            }
        }
    }

    fn selection(&mut self, source: &SourceConfig, tables: &[TableName]) -> Result<(String, Vec<String>), InputEnded> {
        let mut schemas: Vec<(&str, usize)> = Vec::new();
        for t in tables {
            match schemas.last_mut() {
                Some((s, n)) if *s == t.schema => *n += 1,
                _ => schemas.push((&t.schema, 1)),
            }
        }
        if !schemas.is_empty() {
            let list: Vec<String> = schemas.iter().map(|(s, n)| format!("{s} ({n} tables)")).collect();
            self.prompter.say(&format!("Schemas: {}\n", list.join(", ")));
        }
        let default = if schemas.iter().any(|(s, _)| *s == source.schema) {
            source.schema.clone()
        } else {
            schemas.first().map_or_else(|| source.schema.clone(), |(s, _)| (*s).to_owned())
        };
        let known: Vec<&str> = schemas.iter().map(|(s, _)| *s).collect();
        if self.prompter.has_menus() && !known.is_empty() {
            return self.select_tables(&schemas, &default, tables);
        }
        let schema = self.ask("Source schema", Some(&default), |a| {
            if a.is_empty() {
                Err("an answer is needed".into())
            } else if !known.is_empty() && !known.contains(&a) {
                Err(format!("no tables in schema {a:?}; choose one of: {}", known.join(", ")))
            } else {
                Ok(a.to_owned())
            }
        })?;
        let in_schema: Vec<&TableName> = tables.iter().filter(|t| t.schema == schema).collect();
        for t in in_schema.iter().take(40) {
            self.prompter.say(&format!("  {:<40} ~{} rows\n", t.name, t.estimated_rows));
        }
        if in_schema.len() > 40 {
            self.prompter.say(&format!("  … and {} more\n", in_schema.len() - 40));
        }
        let names: Vec<&str> = in_schema.iter().map(|t| t.name.as_str()).collect();
        let include = self.ask(
            "Tables to migrate: all, or names and globs separated by commas (Orders, Sales_*)",
            Some("all"),
            |a| {
                if a.eq_ignore_ascii_case("all") {
                    return Ok(Vec::new());
                }
                let chosen: Vec<String> =
                    a.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect();
                if chosen.is_empty() {
                    return Err("name at least one table, or answer all".into());
                }
                if names.is_empty() {
                    return Ok(chosen);
                }
                let unmatched: Vec<&String> =
                    chosen.iter().filter(|p| !names.iter().any(|n| glob_matches(p, n))).collect();
                if unmatched.is_empty() {
                    Ok(chosen)
                } else {
                    let list: Vec<&str> = unmatched.iter().map(|s| s.as_str()).collect();
                    Err(format!("no table of {schema} matches: {}", list.join(", ")))
                }
            },
        )?;
        Ok((schema, include))
    }

    /// [`Wizard::selection`] from menus: the schema by arrow keys, then its
    /// tables ticked (all at first); every table ticked is written as "all",
    /// so tables added later are migrated too.
    fn select_tables(
        &mut self,
        schemas: &[(&str, usize)],
        default: &str,
        tables: &[TableName],
    ) -> Result<(String, Vec<String>), InputEnded> {
        let options: Vec<String> = schemas.iter().map(|(s, n)| format!("{s} ({n} tables)")).collect();
        let start = schemas.iter().position(|(s, _)| *s == default).unwrap_or(0);
        let picked = self.prompter.select("Source schema", &options, start).ok_or(InputEnded)?;
        let schema = schemas.get(picked).map(|(s, _)| (*s).to_owned()).ok_or(InputEnded)?;
        let in_schema: Vec<&TableName> = tables.iter().filter(|t| t.schema == schema).collect();
        let options: Vec<String> =
            in_schema.iter().map(|t| format!("{}  (~{} rows)", t.name, t.estimated_rows)).collect();
        let all: Vec<usize> = (0..options.len()).collect();
        loop {
            let chosen = self
                .prompter
                .select_many("Tables to migrate (space ticks, → all, ← none, type to filter)", &options, &all)
                .ok_or(InputEnded)?;
            if chosen.is_empty() {
                self.prompter.say("  tick at least one table\n");
                continue;
            }
            if chosen.len() == options.len() {
                return Ok((schema, Vec::new()));
            }
            let names = chosen.iter().filter_map(|&i| in_schema.get(i)).map(|t| t.name.clone()).collect();
            return Ok((schema, names));
        }
    }

    fn target(&mut self, source: &SourceConfig) -> Result<TargetConfig, InputEnded> {
        self.prompter.say("\nTarget (PostgreSQL)\n");
        loop {
            let host = self.ask_text("Target host", Some("localhost"))?;
            let port = self.ask_port("Target port", 5432)?;
            let database = self.ask_text("Target database", None)?;
            let user = self.ask_text("Target user", None)?;
            let password = self.ask_password("Target password")?;
            let default_schema = source.schema.to_lowercase();
            let schema = self.ask_text("Target schema", Some(&default_schema))?;
            let modes = ["disable", "prefer", "require", "verify-full"];
            let ssl_mode = match self.ask_choice("SSL mode", &modes, "prefer")? {
                "disable" => SslMode::Disable,
                "require" => SslMode::Require,
                "verify-full" => SslMode::VerifyFull,
                _ => SslMode::Prefer,
            };
            let target = TargetConfig {
                kind: mssql_pg_migrate::config::TargetKind::Postgres,
                mssql_tls: None,
                host,
                port,
                database,
                user,
                password,
                password_file: None,
                password_command: None,
                schema,
                tls: PgTls::with_mode(ssl_mode),
            };
            self.prompter.say("Testing the target connection... ");
            match self.servers.target(&target) {
                Ok(server) => {
                    self.prompter.say(&format!("ok: {} as {}\n", short_version(&server.version), server.user));
                    return Ok(target);
                }
                Err(why) => {
                    self.prompter.say(&format!("failed: {why}\n"));
                    if !self.ask_yes("Enter the target again", true)? {
                        return Ok(target);
                    }
                }
            }
        }
    }

    fn tuning(&mut self) -> Result<Vec<(&'static str, String)>, InputEnded> {
        self.prompter.say("\nTuning (auto sizes from this machine's cores and memory)\n");
        let workers = self.ask_tunable("Tables copied at once (workers)", "auto", 1..=64)?;
        let chunk_size = self.ask_tunable("Rows per chunk (chunk_size)", "auto", 1..=10_000_000)?;
        let readers = self.ask_tunable("Parallel readers", "auto", 1..=64)?;
        let writers = self.ask_tunable("Parallel writers (write_ahead_writers)", "auto", 1..=64)?;
        let memory = self.ask_tunable("Memory budget, percent of RAM", "70", 1..=95)?;
        let retries = self.ask_tunable("Retries of a failed chunk (max_retries)", "3", 0..=100)?;
        let keep_going = self.ask_yes("Continue with the other tables when one fails (continue_on_error)", false)?;
        Ok(vec![
            ("workers", workers),
            ("chunk_size", chunk_size),
            ("parallel_readers", readers),
            ("write_ahead_writers", writers),
            ("read_ahead_buffers", "auto".to_owned()),
            ("memory_budget_percent", memory),
            ("max_mssql_connections", "auto".to_owned()),
            ("max_pg_connections", "auto".to_owned()),
            ("max_retries", retries),
            ("continue_on_error", keep_going.to_string()),
            ("use_unlogged_tables", "false".to_owned()),
        ])
    }
}

/// PostgreSQL's `version()` goes on about the platform and compiler.
fn short_version(version: &str) -> &str {
    version.split(" on ").next().unwrap_or(version)
}

/// `*` and `?` globs, case-insensitive, as `include_tables` matches them.
fn glob_matches(pattern: &str, name: &str) -> bool {
    mssql_pg_migrate::config::TablePattern::new(pattern).is_ok_and(|p| p.matches("", name))
}

/// A YAML scalar for any string: JSON's quoting is valid YAML.
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// The password as the file holds it.
fn password_entry(secret: &Secret, style: PasswordStyle, variable: &str) -> String {
    match style {
        PasswordStyle::Environment => quoted(&format!("${{{variable}}}")),
        // `$` starts a variable reference in config values; `$$` is a literal `$`.
        PasswordStyle::Inline => quoted(&secret.expose().replace('$', "$$")),
    }
}

/// The commented YAML config.
pub fn render(a: &Answers) -> String {
    let s = &a.source;
    let t = &a.target;
    let source_var = match s.kind {
        SourceKind::Mssql => SOURCE_PASSWORD_VAR,
        SourceKind::Postgres => PG_SOURCE_PASSWORD_VAR,
    };
    let mut y = String::new();
    y.push_str("# mssql-pg-migrate configuration, written by `mssql-pg-migrate init`.\n");
    y.push_str("# Check it:        mssql-pg-migrate -c FILE health-check\n");
    y.push_str("# See the plan:    mssql-pg-migrate -c FILE run --dry-run\n");
    if a.passwords == PasswordStyle::Environment {
        y.push_str(&format!("# Passwords come from the environment: set {source_var} and {TARGET_PASSWORD_VAR}.\n"));
    }
    y.push_str("# Any key can be overridden: MSSQL_PG_MIGRATE__<SECTION>__<KEY>=value\n\n");
    y.push_str("source:\n");
    let kind = match s.kind {
        SourceKind::Mssql => "mssql",
        SourceKind::Postgres => "postgres",
    };
    y.push_str(&format!("  type: {kind}                      # mssql | postgres\n"));
    y.push_str(&format!("  host: {}\n", quoted(&s.host)));
    y.push_str(&format!("  port: {}\n", s.port));
    y.push_str(&format!("  database: {}\n", quoted(&s.database)));
    y.push_str(&format!("  user: {}\n", quoted(&s.user)));
    y.push_str(&format!(
        "  password: {}    # or password_file: /run/secrets/...\n",
        password_entry(&s.password, a.passwords, source_var)
    ));
    y.push_str(&format!("  schema: {}\n", quoted(&s.schema)));
    if s.kind == SourceKind::Mssql {
        y.push_str(&format!("  encrypt: {}                   # TLS to SQL Server\n", s.encrypt));
        y.push_str(&format!(
            "  trust_server_cert: {}        # true only for servers with self-signed certificates\n",
            s.trust_server_cert
        ));
    }
    y.push_str("\ntarget:\n  type: postgres\n");
    y.push_str(&format!("  host: {}\n", quoted(&t.host)));
    y.push_str(&format!("  port: {}\n", t.port));
    y.push_str(&format!("  database: {}\n", quoted(&t.database)));
    y.push_str(&format!("  user: {}\n", quoted(&t.user)));
    y.push_str(&format!("  password: {}\n", password_entry(&t.password, a.passwords, TARGET_PASSWORD_VAR)));
    y.push_str(&format!("  schema: {}\n", quoted(&t.schema)));
    let ssl = match t.tls.ssl_mode {
        SslMode::Disable => "disable",
        SslMode::Allow => "allow",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    };
    y.push_str(&format!(
        "  ssl_mode: {ssl}                # disable | allow | prefer | require | verify-ca | verify-full\n"
    ));
    y.push_str("  # ssl_root_cert: /path/ca.pem  # the CA for verify-ca / verify-full (else the system's)\n");
    y.push_str("\nmigration:\n");
    y.push_str(&format!("  target_mode: {}       # drop_recreate | truncate\n", a.target_mode));
    if a.include_tables.is_empty() {
        y.push_str("  # include_tables: [\"Sales_*\"]  # globs with * and ?; every table of the schema when absent\n");
    } else {
        let list: Vec<String> = a.include_tables.iter().map(|t| quoted(t)).collect();
        y.push_str(&format!("  include_tables: [{}]\n", list.join(", ")));
    }
    y.push_str("  # exclude_tables: [\"*_archive\"]\n");
    if a.tuning.is_empty() {
        y.push_str("  # Tuning keys (workers, chunk_size, ...) default to auto; `init --advanced` writes them all.\n");
    } else {
        y.push_str("  # Tuning: auto sizes from the machine's cores and memory.\n");
        for (key, value) in &a.tuning {
            y.push_str(&format!("  {key}: {value}\n"));
        }
    }
    y
}

/// Stdin and stderr. On a terminal (both), inquire's prompts: menus with
/// arrow keys, masked passwords, line editing; piped input is read a line
/// per answer, so scripts can drive the wizard.
pub struct Console {
    input: std::io::StdinLock<'static>,
    terminal: bool,
}

impl Console {
    pub fn new() -> Console {
        let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        Console { input: std::io::stdin().lock(), terminal }
    }
}

/// An answer from inquire; Esc and Ctrl-C end the wizard as the end of
/// input would.
fn answered<T>(result: Result<T, inquire::InquireError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(inquire::InquireError::OperationCanceled | inquire::InquireError::OperationInterrupted) => None,
        Err(e) => {
            output::print_err(&format!("cannot read the answer: {e}\n"));
            None
        }
    }
}

/// Menus show this many rows; databases have hundreds of tables.
const MENU_ROWS: usize = 15;

impl Console {
    /// One line of stdin; `None` at its end.
    fn read_line(&mut self) -> Option<String> {
        let mut answer = String::new();
        match self.input.read_line(&mut answer) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(answer),
        }
    }
}

impl Prompter for Console {
    fn say(&mut self, text: &str) {
        output::print_err(text);
    }

    fn line(&mut self, prompt: &str) -> Option<String> {
        if self.terminal {
            return answered(inquire::Text::new(prompt.trim_end()).prompt());
        }
        output::print_err(prompt);
        self.read_line()
    }

    fn secret(&mut self, prompt: &str) -> Option<String> {
        if self.terminal {
            return answered(
                inquire::Password::new(prompt.trim_end())
                    .with_display_mode(inquire::PasswordDisplayMode::Masked)
                    .without_confirmation()
                    .prompt(),
            );
        }
        // Piped input is not echoed by anyone.
        output::print_err(prompt);
        self.read_line()
    }

    fn has_menus(&self) -> bool {
        self.terminal
    }

    fn select(&mut self, question: &str, choices: &[String], default: usize) -> Option<usize> {
        let menu =
            inquire::Select::new(question, choices.to_vec()).with_starting_cursor(default).with_page_size(MENU_ROWS);
        answered(menu.raw_prompt()).map(|picked| picked.index)
    }

    fn select_many(&mut self, question: &str, choices: &[String], selected: &[usize]) -> Option<Vec<usize>> {
        let menu =
            inquire::MultiSelect::new(question, choices.to_vec()).with_default(selected).with_page_size(MENU_ROWS);
        answered(menu.raw_prompt()).map(|picked| picked.into_iter().map(|p| p.index).collect())
    }
}

/// The real servers, through the library.
pub struct Network {
    runtime: tokio::runtime::Runtime,
}

impl Servers for Network {
    fn source(&mut self, source: &SourceConfig) -> Result<(ServerProbe, Vec<TableName>), String> {
        self.runtime.block_on(list_source_tables(source)).map_err(|e| e.to_string())
    }

    fn target(&mut self, target: &TargetConfig) -> Result<ServerProbe, String> {
        self.runtime.block_on(probe_target(target)).map_err(|e| e.to_string())
    }
}

/// Runs the wizard and writes the file; returns the answers.
pub fn init(args: &InitArgs) -> Result<Answers, CliError> {
    refuse_overwrite(&args.output, args.force)?;
    let mut console = Console::new();
    let mut servers = Network { runtime: crate::runtime()? };
    let answers = Wizard { prompter: &mut console, servers: &mut servers, advanced: args.advanced }.run().map_err(
        |InputEnded| CliError::new(Exit::Config, "the input ended before the wizard finished; nothing was written"),
    )?;
    // The file may have appeared while the questions were answered.
    refuse_overwrite(&args.output, args.force)?;
    write_config(&args.output, &render(&answers), answers.passwords == PasswordStyle::Inline)?;
    let path = args.output.display();
    let mut done = format!("\nWrote {path}.\n");
    if answers.passwords == PasswordStyle::Environment {
        let source_var = match answers.source.kind {
            SourceKind::Mssql => SOURCE_PASSWORD_VAR,
            SourceKind::Postgres => PG_SOURCE_PASSWORD_VAR,
        };
        done.push_str(&format!("Set the passwords:  export {source_var}=... {TARGET_PASSWORD_VAR}=...\n"));
    }
    done.push_str(&format!(
        "Next:  mssql-pg-migrate -c {path} health-check\n       mssql-pg-migrate -c {path} run --dry-run\n       \
         mssql-pg-migrate -c {path} run\n"
    ));
    output::print_err(&done);
    Ok(answers)
}

/// The configuration the answers describe, with the passwords as typed
/// (in memory only), so the TUI can start right after the wizard without
/// the password variables being set.
pub fn config_of(answers: &Answers) -> Result<mssql_pg_migrate::config::Config, CliError> {
    let in_memory = Answers { passwords: PasswordStyle::Inline, ..answers.clone() };
    mssql_pg_migrate::config::Loader::new()
        .load_str(&render(&in_memory), "yaml")
        .map_err(|e| CliError::new(Exit::Config, format!("the wizard's answers do not make a valid config: {e}")))
}

fn refuse_overwrite(path: &Path, force: bool) -> Result<(), CliError> {
    if path.exists() && !force {
        return Err(CliError::new(
            Exit::Config,
            format!("{} already exists; pass -f/--force to overwrite it, or -o to write elsewhere", path.display()),
        ));
    }
    Ok(())
}

/// Writes through a temporary file and a rename, so a failed write leaves
/// any existing file whole; an inline password makes the file owner-only.
fn write_config(path: &Path, text: &str, private: bool) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::new(Exit::Io, format!("cannot write {}: {e}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "config.yaml".into());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&temp).map_err(io)?;
    let written = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(io(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use mssql_pg_migrate::config::Loader;

    use super::*;

    struct Script {
        answers: VecDeque<&'static str>,
        shown: String,
        secrets_asked: usize,
    }

    impl Script {
        fn new(answers: &[&'static str]) -> Script {
            Script { answers: answers.iter().copied().collect(), shown: String::new(), secrets_asked: 0 }
        }
    }

    impl Prompter for Script {
        fn say(&mut self, text: &str) {
            self.shown.push_str(text);
        }
        fn line(&mut self, prompt: &str) -> Option<String> {
            self.shown.push_str(prompt);
            self.answers.pop_front().map(str::to_owned)
        }
        fn secret(&mut self, prompt: &str) -> Option<String> {
            self.secrets_asked += 1;
            self.line(prompt)
        }
    }

    struct Fake {
        source_failures: usize,
    }

    impl Servers for Fake {
        fn source(&mut self, _: &SourceConfig) -> Result<(ServerProbe, Vec<TableName>), String> {
            if self.source_failures > 0 {
                self.source_failures -= 1;
                return Err("cannot connect to the source server at db:1433/Sales: login failed".into());
            }
            let table =
                |schema: &str, name: &str| TableName { schema: schema.into(), name: name.into(), estimated_rows: 10 };
            let probe = ServerProbe {
                version: "SQL Server 16.0 (Developer)".into(),
                user: "etl".into(),
                tls: Some(true),
                tls_detail: None,
            };
            Ok((probe, vec![table("dbo", "Orders"), table("dbo", "Sales_2024"), table("hr", "People")]))
        }
        fn target(&mut self, _: &TargetConfig) -> Result<ServerProbe, String> {
            Ok(ServerProbe {
                version: "PostgreSQL 15.8 on x86_64".into(),
                user: "loader".into(),
                tls: Some(false),
                tls_detail: None,
            })
        }
    }

    const SOURCE: &[&str] = &["", "db.example", "", "Sales", "etl", "pa$$ \"quoted\" 'x'", "", "yes"];
    const TARGET: &[&str] = &["", "", "warehouse", "loader", "t-secret", "sales", "disable"];

    fn drive(answers: &[&'static str], advanced: bool, failures: usize) -> (Result<Answers, InputEnded>, Script) {
        let mut script = Script::new(answers);
        let mut fake = Fake { source_failures: failures };
        let result = Wizard { prompter: &mut script, servers: &mut fake, advanced }.run();
        (result, script)
    }

    fn load(yaml: &str, env: &[(&str, &str)]) -> mssql_pg_migrate::config::Config {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Loader::new().with_env(env).load_str(yaml, "yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    #[test]
    fn a_scripted_session_writes_a_config_that_loads_with_every_answer() {
        let answers: Vec<&'static str> = [SOURCE, &["hr", "all"], TARGET, &["inline", "truncate"]].concat();
        let (result, script) = drive(&answers, false, 0);
        let a = result.unwrap();
        assert_eq!(script.secrets_asked, 2);
        assert!(!script.shown.contains("pa$$") && !script.shown.contains("t-secret"), "{}", script.shown);
        assert!(script.shown.contains("ok: SQL Server 16.0 (Developer) as etl, 3 table(s)"), "{}", script.shown);
        assert!(script.shown.contains("Schemas: dbo (2 tables), hr (1 tables)"), "{}", script.shown);
        let yaml = render(&a);
        let config = load(&yaml, &[]);
        assert_eq!((config.source.host.as_str(), config.source.port), ("db.example", 1433));
        assert_eq!(config.source.schema, "hr");
        assert_eq!(config.source.password.expose(), "pa$$ \"quoted\" 'x'", "inline passwords survive quoting and $");
        assert!(config.source.encrypt.is_on() && config.source.trust_server_cert);
        assert_eq!(config.target.password.expose(), "t-secret");
        assert_eq!((config.target.schema.as_str(), config.target.tls.ssl_mode), ("sales", SslMode::Disable));
        assert_eq!(config.migration.target_mode, mssql_pg_migrate::config::TargetMode::Truncate);
        assert!(config.migration.include_tables.is_empty());
        assert!(yaml.contains("# Check it:"), "the file is commented");
    }

    #[test]
    fn passwords_default_to_variables_and_advanced_writes_the_tuning_keys() {
        let answers: Vec<&'static str> =
            [SOURCE, &["", "Orders, sales_*"], TARGET, &["", ""], &["4", "", "", "", "50", "5", "yes"]].concat();
        let (result, _) = drive(&answers, true, 0);
        let a = result.unwrap();
        let yaml = render(&a);
        assert!(!yaml.contains("t-secret") && !yaml.contains("pa$$"), "{yaml}");
        assert!(yaml.contains("\"${MSSQL_PASSWORD}\"") && yaml.contains("\"${POSTGRES_PASSWORD}\""), "{yaml}");
        let config = load(&yaml, &[("MSSQL_PASSWORD", "from-env"), ("POSTGRES_PASSWORD", "pg-env")]);
        assert_eq!(config.source.password.expose(), "from-env");
        assert_eq!(config.source.schema, "dbo");
        let include: Vec<&str> = config.migration.include_tables.iter().map(|p| p.as_str()).collect();
        assert_eq!(include, ["Orders", "sales_*"]);
        let m = &config.migration;
        assert_eq!((m.workers, m.chunk_size, m.memory_budget_percent, m.max_retries), (Some(4), None, 50, 5));
        assert!(m.continue_on_error);
        assert!(yaml.contains("  chunk_size: auto\n"), "{yaml}");
    }

    #[test]
    fn wrong_answers_are_asked_again_with_the_reason() {
        let answers: Vec<&'static str> = [
            &["oracle"][..],
            &SOURCE[..2],
            &["99999"],
            &SOURCE[2..],
            &["nowhere", "hr", "Missing, Peo*", "People"],
            TARGET,
            &["", ""],
        ]
        .concat();
        let (result, script) = drive(&answers, false, 0);
        let a = result.unwrap();
        assert!(script.shown.contains("choose one of: mssql, postgres"), "{}", script.shown);
        assert!(script.shown.contains("\"99999\" is not a port (1-65535)"), "{}", script.shown);
        assert!(script.shown.contains("no tables in schema \"nowhere\"; choose one of: dbo, hr"), "{}", script.shown);
        assert!(script.shown.contains("no table of hr matches: Missing"), "{}", script.shown);
        assert_eq!(a.include_tables, ["People"]);
    }

    #[test]
    fn a_failed_connection_offers_to_enter_the_source_again() {
        let answers: Vec<&'static str> = [SOURCE, &["yes"], SOURCE, &["", ""], TARGET, &["", ""]].concat();
        let (result, script) = drive(&answers, false, 1);
        assert!(result.is_ok());
        assert!(script.shown.contains("failed: cannot connect to the source server at db:1433/Sales: login failed"));
        assert_eq!(script.shown.matches("Testing the source connection").count(), 2);
    }

    /// A terminal's prompter: typed answers from `lines`, menu picks from `picks`.
    struct Menus {
        lines: Script,
        picks: VecDeque<Vec<usize>>,
        /// Each menu's question, choices and preselection, in order.
        offered: Vec<(String, Vec<String>, Vec<usize>)>,
    }

    impl Prompter for Menus {
        fn say(&mut self, text: &str) {
            self.lines.say(text);
        }
        fn line(&mut self, prompt: &str) -> Option<String> {
            self.lines.line(prompt)
        }
        fn secret(&mut self, prompt: &str) -> Option<String> {
            self.lines.secret(prompt)
        }
        fn has_menus(&self) -> bool {
            true
        }
        fn select(&mut self, question: &str, choices: &[String], default: usize) -> Option<usize> {
            self.offered.push((question.to_owned(), choices.to_vec(), vec![default]));
            self.picks.pop_front().and_then(|p| p.first().copied())
        }
        fn select_many(&mut self, question: &str, choices: &[String], selected: &[usize]) -> Option<Vec<usize>> {
            self.offered.push((question.to_owned(), choices.to_vec(), selected.to_vec()));
            self.picks.pop_front()
        }
    }

    fn drive_menus(tables: Vec<usize>) -> (Answers, Menus) {
        let lines: Vec<&'static str> = [
            &["db.example", "", "Sales", "etl", "pw", "", "yes"][..],
            &["", "", "warehouse", "loader", "t-secret", "sales"],
        ]
        .concat();
        // Source type mssql, schema dbo, the tables, SSL disable, passwords inline, truncate.
        let picks = [vec![0], vec![0], tables, vec![0], vec![1], vec![1]];
        let mut menus = Menus { lines: Script::new(&lines), picks: picks.into_iter().collect(), offered: Vec::new() };
        let mut fake = Fake { source_failures: 0 };
        let answers = Wizard { prompter: &mut menus, servers: &mut fake, advanced: false }.run().unwrap();
        (answers, menus)
    }

    #[test]
    fn on_a_terminal_choices_come_from_menus_and_tables_are_ticked() {
        let (a, menus) = drive_menus(vec![1]);
        assert_eq!(a.source.kind, SourceKind::Mssql);
        assert_eq!((a.source.schema.as_str(), a.include_tables.clone()), ("dbo", vec!["Sales_2024".to_owned()]));
        assert_eq!(a.target.tls.ssl_mode, SslMode::Disable);
        assert_eq!((a.passwords, a.target_mode), (PasswordStyle::Inline, "truncate"));
        let offered: Vec<(&str, Vec<&str>, Vec<usize>)> = menus
            .offered
            .iter()
            .map(|(q, c, d)| (q.split(':').next().unwrap(), c.iter().map(String::as_str).collect(), d.clone()))
            .collect();
        assert_eq!(offered[0], ("Source type", vec!["mssql", "postgres"], vec![0]));
        assert_eq!(offered[1], ("Source schema", vec!["dbo (2 tables)", "hr (1 tables)"], vec![0]));
        assert_eq!(offered[2].1, ["Orders  (~10 rows)", "Sales_2024  (~10 rows)"]);
        assert_eq!(offered[2].2, [0, 1], "every table is ticked at first");
        assert_eq!(offered[3], ("SSL mode", vec!["disable", "prefer", "require", "verify-full"], vec![1]), "prefer");
        assert_eq!(menus.lines.secrets_asked, 2);

        let (a, _) = drive_menus(vec![0, 1]);
        assert!(a.include_tables.is_empty(), "every table ticked is written as all");
    }

    #[test]
    fn input_that_ends_early_is_reported() {
        let (result, _) = drive(&SOURCE[..4], false, 0);
        assert_eq!(result.unwrap_err(), InputEnded);
    }
}
