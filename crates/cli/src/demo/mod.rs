//! `demo`: the first command to try. Starts two throwaway PostgreSQL
//! clusters, loads a small shop database into one, migrates it into the
//! other with the live display, checks the row counts, and says where the
//! result is and how to point the tool at a real SQL Server. Nothing
//! outside the two temporary clusters is touched.

use std::io::{BufRead as _, IsTerminal as _};

use mssql_pg_migrate::config::Loader;
use mssql_pg_migrate::transfer::{self, RunOptions, ValidateOptions};
use mssql_pg_migrate_testkit::PgCluster;

use crate::exit::{CliError, Exit};
use crate::run::{Front, execute};
use crate::{Cli, output};

/// The sample database (schema `shop`).
const SHOP: &str = include_str!("shop.sql");

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop the clusters when the migration is done, without waiting for Enter
    #[arg(long, conflicts_with = "keep")]
    pub no_wait: bool,
    /// Keep the clusters up (to look at the copy with psql) until Ctrl-C or
    /// SIGTERM, also when stdin is not a terminal
    #[arg(long)]
    pub keep: bool,
}

pub fn demo(cli: &Cli, args: &DemoArgs) -> Result<(), CliError> {
    let say = |text: &str| output::print_err(text);
    say("Starting two throwaway PostgreSQL clusters on 127.0.0.1 (source and target)…\n");
    let cluster = |role: &str| {
        PgCluster::start().map_err(|e| CliError::new(Exit::Config, format!("cannot start the {role} cluster: {e}")))
    };
    let source = cluster("source")?;
    let target = cluster("target")?;
    let runtime = crate::runtime()?;
    runtime
        .block_on(async {
            source.create_database("shop").await?;
            target.create_database("warehouse").await?;
            source.connect("shop").await?.batch_execute(SHOP).await?;
            Ok::<_, mssql_pg_migrate_testkit::HarnessError>(())
        })
        .map_err(|e| CliError::new(Exit::Io, format!("cannot load the sample database: {e}")))?;
    say(&format!(
        "Loaded the sample database `shop` (customers, products, orders, order_lines, audit_log) on port {}.\n\
         Migrating it into `warehouse` on port {}:\n",
        source.port(),
        target.port()
    ));

    let yaml = format!(
        "source: {{type: postgres, host: 127.0.0.1, port: {}, database: shop, user: postgres, password: '{}', schema: shop}}\n\
         target: {{type: postgres, host: 127.0.0.1, port: {}, database: warehouse, user: postgres, password: '{}', schema: shop, ssl_mode: disable}}\n\
         migration: {{chunk_size: 20000, large_table_threshold: 50000, min_rows_per_partition: 25000}}\n",
        source.port(),
        source.password().replace('$', "$$"),
        target.port(),
        target.password().replace('$', "$$"),
    );
    let config = Loader::new()
        .load_str(&yaml, "yaml")
        .map_err(|e| CliError::new(Exit::Config, format!("the demo's config does not load: {e}")))?;
    execute(cli, &config, RunOptions::default(), "run", Front::Lines)?;

    let report = runtime.block_on(transfer::validate(&config, &ValidateOptions::default())).map_err(CliError::from)?;
    let counts: Vec<String> =
        report.tables.iter().map(|t| format!("{} {}", t.target, t.target_rows.unwrap_or_default())).collect();
    say(&format!(
        "\nvalidate: {} of {} table(s) have the source's row count ({}).\n",
        report.matched,
        report.tables.len(),
        counts.join(", ")
    ));
    if !report.is_success() {
        return Err(CliError::new(Exit::Validation, "the demo's row counts differ; please report this as a bug"));
    }

    // The psql command is shown only while the clusters it names are up.
    let waits_for_enter = !args.keep && !args.no_wait && std::io::stdin().is_terminal();
    if args.keep || waits_for_enter {
        say(&format!(
            "\nThe copy is in database `warehouse`, schema `shop`, of the target cluster:\n  \
             PGPASSWORD='{}' psql -h 127.0.0.1 -p {} -U postgres warehouse -c 'SELECT * FROM shop.orders LIMIT 5'\n",
            target.password(),
            target.port()
        ));
    } else {
        say("\nThe clusters are deleted now; `mssql-pg-migrate demo --keep` keeps them up to look at the copy.\n");
    }
    say("\nTo migrate a real SQL Server:\n  \
         mssql-pg-migrate init                          # asks for both servers, tests them, writes config.yaml\n  \
         mssql-pg-migrate -c config.yaml health-check   # versions, TLS, permissions\n  \
         mssql-pg-migrate -c config.yaml run --dry-run  # the plan: DDL, chunks, estimates, ETA\n  \
         mssql-pg-migrate -c config.yaml run            # or `tui` to watch it\n");
    if args.keep {
        say("\nThe clusters stay up until Ctrl-C (or SIGTERM); then they are stopped and deleted.\n");
        runtime.block_on(until_stopped());
    } else if waits_for_enter {
        say("\nThe clusters stay up until you press Enter; then they are stopped and deleted.\n");
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    say("Stopping and deleting the demo clusters.\n");
    drop(target);
    drop(source);
    Ok(())
}

/// Returns on SIGINT or SIGTERM (or at once when neither can be listened for).
async fn until_stopped() {
    let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
