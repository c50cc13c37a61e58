//! Embedding mssql-pg-migrate in a program: a configuration built in code,
//! a run whose events the program watches, a cancellation, and the resume
//! that finishes the job.
//!
//! ```sh
//! cargo run -p mssql-pg-migrate --example embed -- config.yaml
//! ```
//!
//! `cargo test` runs the same code against two throwaway PostgreSQL
//! databases (the test at the bottom), so this example cannot rot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mssql_pg_migrate::config::{Config, Loader};
use mssql_pg_migrate::transfer::{self, Event, EventSink, RunOptions, RunReport, TransferError};

/// Runs the migration of `config`, printing each committed chunk; with
/// `stop_after_chunks`, cancels the run once that many chunks are in (as a
/// program's shutdown would), so a later `resume` must finish it.
async fn migrate(config: &Config, resume: bool, stop_after_chunks: Option<u64>) -> Result<RunReport, TransferError> {
    let options = RunOptions { resume, ..RunOptions::default() };
    let cancel = options.cancel.clone();
    let chunks = Arc::new(AtomicU64::new(0));
    let events: EventSink = Arc::new(move |event: &Event| match event {
        Event::ChunkCommitted { table, partition, rows, .. } => {
            println!("{table} partition {partition}: {rows} rows in");
            let done = chunks.fetch_add(1, Ordering::Relaxed) + 1;
            if stop_after_chunks.is_some_and(|limit| done >= limit) {
                // Chunks in flight finish and commit; no new one starts.
                cancel.cancel();
            }
        }
        Event::TableFinished { table, status, .. } => println!("{table}: {status:?}"),
        _ => {}
    });
    transfer::run(config, &RunOptions { events: Some(events), ..options }).await
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: embed CONFIG.yaml")?;
    // The process environment supplies ${VAR}s and MSSQL_PG_MIGRATE__… overrides.
    let config = Loader::from_process_env().load_file(std::path::Path::new(&path))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(migrate(&config, false, None))?;
    println!("{} rows in {} table(s), success: {}", report.rows, report.tables.len(), report.is_success());
    Ok(())
}

#[cfg(test)]
mod tests {
    use mssql_pg_migrate_testkit::PgCluster;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_run_is_finished_by_resume_with_every_row() {
        let pg = PgCluster::start().unwrap();
        pg.create_database("src").await.unwrap();
        pg.create_database("dst").await.unwrap();
        pg.connect("src")
            .await
            .unwrap()
            .batch_execute(
                "CREATE TABLE public.readings (id bigint PRIMARY KEY, sensor text NOT NULL, value double precision);
                 INSERT INTO public.readings SELECT g, 'sensor-' || (g % 7), g / 3.0 FROM generate_series(1, 5000) g;",
            )
            .await
            .unwrap();
        let yaml = format!(
            "source: {{type: postgres, host: 127.0.0.1, port: {port}, database: src, user: postgres, password: '{pw}', schema: public}}\n\
             target: {{type: postgres, host: 127.0.0.1, port: {port}, database: dst, user: postgres, password: '{pw}', schema: copy, ssl_mode: disable}}\n\
             migration: {{chunk_size: 500, workers: 1, parallel_readers: 1}}\n",
            port = pg.port(),
            pw = pg.password().replace('$', "$$"),
        );
        let config = Loader::new().load_str(&yaml, "yaml").unwrap();

        let stopped = migrate(&config, false, Some(2)).await;
        assert!(matches!(stopped, Err(TransferError::Cancelled)), "{stopped:?}");
        let report = migrate(&config, true, None).await.unwrap();
        assert!(report.is_success(), "{report:?}");

        let dst = pg.connect("dst").await.unwrap();
        let row = dst
            .query_one("SELECT count(*), sum(id)::int8, count(DISTINCT sensor) FROM copy.readings", &[])
            .await
            .unwrap();
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2)), (5000, 12_502_500, 7));
    }
}
