//! `cargo xtask airflow-it`: the guide's Airflow DAG
//! (docs/examples/airflow/mssql_to_pg_sync.py) run for real. Apache
//! Airflow is installed from PyPI into a virtualenv kept in
//! `target/airflow-venv`. Two throwaway PostgreSQL clusters are started,
//! the source loaded with the edge-case fixture. `airflow dags test` runs
//! the DAG twice: a first sync into an empty target, then an hour later
//! after changes at the source. Each time the task's XCom must be the
//! run's JSON document, reporting success and the rows merged, and the
//! target must equal the source value by value. A third hour's first try
//! is killed (SIGKILL) in the middle of a COPY; Airflow's retry must take
//! the `resume` path and complete the copy. With `MSSQL_TEST_URL` set, a
//! fourth run reads the T-SQL fixture from that server.

use std::path::Path;
use std::process::Command;

use mssql_pg_migrate_testkit::PgCluster;

use crate::venv::{root, run, virtualenv};
use mssql_pg_migrate_testkit::compare::{EDGE_CASE_TABLES, compare_tables, edge_case_fixture};
use mssql_pg_migrate_testkit::mssql::{MSSQL_EDGE_CASE_TABLES, TestServer, expected_data_sql};

const AIRFLOW: &str = "apache-airflow==2.10.5";
const DAG_ID: &str = "mssql_to_pg_sync";

pub fn airflow_it() -> Result<(), String> {
    let venv = virtualenv("airflow-venv", AIRFLOW, "bin/airflow")?;
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "build",
            "--quiet",
            "-p",
            "mssql-pg-migrate-cli",
        ]),
        "building the binary",
    )?;
    let binary = root().join("target/debug/mssql-pg-migrate");
    let source = PgCluster::start().map_err(|e| e.to_string())?;
    let target = PgCluster::start().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        source.create_database("src").await.map_err(|e| e.to_string())?;
        target.create_database("dst").await.map_err(|e| e.to_string())?;
        let client = source.connect("src").await.map_err(|e| e.to_string())?;
        let fixture = edge_case_fixture().map_err(|e| e.to_string())?;
        client.batch_execute(&fixture).await.map_err(|e| e.to_string())
    })?;

    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dags = home.path().join("dags");
    let state = home.path().join("state");
    std::fs::create_dir_all(&dags).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
    std::fs::copy(root().join("docs/examples/airflow/mssql_to_pg_sync.py"), dags.join("mssql_to_pg_sync.py"))
        .map_err(|e| format!("copying the DAG: {e}"))?;
    // Kills the first try of a `run` after the marker file appears, at a
    // known step, as a node's OOM killer would; every other call is the binary.
    let wrapper = home.path().join("mssql-pg-migrate");
    let kill_marker = home.path().join("kill-next-run");
    std::fs::write(
        &wrapper,
        format!(
            "#!/usr/bin/env bash
             if [ -e '{marker}' ] && [ \"${{@: -1}}\" = run ]; then
               rm -f '{marker}'
               MSSQL_PG_MIGRATE_FAILPOINT=mid-copy:3 '{binary}' \"$@\" 2>'{home}/killed.err' &
               pid=$!
               for _ in $(seq 1 600); do grep -q 'failpoint mid-copy reached' '{home}/killed.err' && break; sleep 0.1; done
               kill -9 $pid; wait $pid; exit 137
             fi
             exec '{binary}' \"$@\"
",
            marker = kill_marker.display(),
            binary = binary.display(),
            home = home.path().display()
        ),
    )
    .map_err(|e| e.to_string())?;
    run(Command::new("chmod").arg("755").arg(&wrapper), "making the wrapper executable")?;
    let config = home.path().join("migration.yaml");
    std::fs::write(
        &config,
        format!(
            "source: {{type: postgres, host: 127.0.0.1, port: {}, database: src, user: postgres, password: '${{SRC_PW}}', schema: src}}\n\
             target: {{type: postgres, host: 127.0.0.1, port: {}, database: dst, user: postgres, password: '${{DST_PW}}', schema: copy, ssl_mode: disable}}\n\
             migration: {{target_mode: upsert, exclude_tables: [no_key], chunk_size: 500}}\n",
            source.port(),
            target.port()
        ),
    )
    .map_err(|e| e.to_string())?;
    let airflow = |args: &[&str]| {
        let mut command = Command::new(venv.join("bin/airflow"));
        command
            .args(args)
            .env("AIRFLOW_HOME", home.path())
            .env("AIRFLOW__CORE__DAGS_FOLDER", &dags)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("MSSQL_PG_MIGRATE_BIN", &wrapper)
            .env("MSSQL_PG_MIGRATE_RETRY_DELAY", "1")
            .env("MSSQL_PG_MIGRATE_CONFIG", &config)
            .env("MSSQL_PG_MIGRATE_STATE", &state)
            .env("SRC_PW", source.password())
            .env("DST_PW", target.password());
        command
    };
    eprintln!("preparing Airflow's database");
    run(&mut airflow(&["db", "migrate"]), "airflow db migrate")?;

    let keyed: Vec<&str> = EDGE_CASE_TABLES.iter().copied().filter(|t| *t != "no_key").collect();
    let hours = ["2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"];
    for (hour, date) in hours.iter().enumerate() {
        if hour == 2 {
            std::fs::write(&kill_marker, "").map_err(|e| e.to_string())?;
        }
        eprintln!("airflow dags test {DAG_ID} {date}");
        run(&mut airflow(&["dags", "test", DAG_ID, date]), "airflow dags test")?;
        let doc = xcom(&venv, home.path(), date)?;
        // The killed first try of hour 2 was retried as a resume.
        let command = if hour == 2 { "resume" } else { "run" };
        if doc["command"] != command || doc["status"] != "success" {
            return Err(format!("hour {hour}: the XCom is not a successful {command}'s document: {doc}"));
        }
        if hour == 2 {
            if kill_marker.exists() {
                return Err("hour 2: the first try was not killed".into());
            }
            let tries = airflow_tries(&venv, home.path(), date)?;
            if tries != 2 {
                return Err(format!("hour 2: incremental_sync ran {tries} time(s), expected 2 (killed, then resumed)"));
            }
        }
        let skewed = doc["report"]["tables"]
            .as_array()
            .and_then(|tables| tables.iter().find(|t| t["source"] == "src.skewed"))
            .ok_or_else(|| format!("hour {hour}: no src.skewed in the XCom: {doc}"))?;
        // Hour 2 changed nothing; a resume reports what it merged itself.
        let expected = match hour {
            0 => [4103, 0],
            1 => [2, 10],
            _ => [0, 0],
        };
        let merged = [skewed["merged"]["inserted"].as_u64(), skewed["merged"]["updated"].as_u64()];
        if merged != expected.map(Some) {
            return Err(format!("hour {hour}: src.skewed merged {merged:?}, expected {expected:?}: {skewed}"));
        }
        runtime.block_on(async {
            let s = source.connect("src").await.map_err(|e| e.to_string())?;
            let t = target.connect("dst").await.map_err(|e| e.to_string())?;
            compare_tables(&s, "src", &t, "copy", &keyed).await.map_err(|d| format!("hour {hour}: {d}"))?;
            if hour > 0 {
                return Ok(());
            }
            // The next hour's changes.
            s.batch_execute(
                "UPDATE src.skewed SET v = 'next hour' WHERE id BETWEEN 1 AND 10;
                 INSERT INTO src.skewed VALUES (7000, 'added'), (7001, 'added');",
            )
            .await
            .map_err(|e| format!("changing the source: {}", e.as_db_error().map_or(e.to_string(), |d| d.to_string())))
        })?;
        eprintln!("hour {hour}: XCom and data as expected");
    }
    println!(
        "airflow-it: the DAG ran three times with `airflow dags test` (the third killed once and resumed on retry); XCom and copied data as expected"
    );

    // From SQL Server too, when a test server is at hand (`.ci/tds-server up`).
    let Some(server) = TestServer::from_env("airflow-it from SQL Server") else { return Ok(()) };
    let mssql_config = home.path().join("from-mssql.yaml");
    std::fs::write(
        &mssql_config,
        format!(
            "{}target: {{type: postgres, host: 127.0.0.1, port: {}, database: dst_mssql, user: postgres, password: '${{DST_PW}}', schema: it, ssl_mode: disable}}\n\
             migration: {{target_mode: upsert, exclude_tables: [no_key], chunk_size: 500}}\n",
            server.source_yaml("mpm_af", "${MSSQL_PW}"),
            target.port()
        ),
    )
    .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        server.load_edge_cases("mpm_af").await;
        target.create_database("dst_mssql").await.map_err(|e| e.to_string())
    })?;
    // The keyless table, which upsert leaves out, copied once so that the
    // expected values (which cover every table) can be built beside the copy.
    let keyless = home.path().join("keyless.yaml");
    let text = std::fs::read_to_string(&mssql_config).map_err(|e| e.to_string())?;
    std::fs::write(&keyless, text.replace("target_mode: upsert, exclude_tables: [no_key]", "include_tables: [no_key]"))
        .map_err(|e| e.to_string())?;
    run(
        Command::new(&binary)
            .arg("-c")
            .arg(&keyless)
            .arg("run")
            .env("MSSQL_PW", &server.password)
            .env("DST_PW", target.password()),
        "copying the keyless table",
    )?;
    let date = "2026-01-01T03:00:00+00:00";
    eprintln!("airflow dags test {DAG_ID} {date} (from SQL Server)");
    let mut command = airflow(&["dags", "test", DAG_ID, date]);
    command.env("MSSQL_PG_MIGRATE_CONFIG", &mssql_config).env("MSSQL_PW", &server.password);
    run(&mut command, "airflow dags test (from SQL Server)")?;
    let doc = xcom(&venv, home.path(), date)?;
    if doc["command"] != "run" || doc["status"] != "success" {
        return Err(format!("from SQL Server: the XCom is not a successful run's document: {doc}"));
    }
    let keyed: Vec<&str> = MSSQL_EDGE_CASE_TABLES.iter().copied().filter(|t| *t != "no_key").collect();
    let db = |e: tokio_postgres::Error| e.as_db_error().map_or_else(|| e.to_string(), ToString::to_string);
    runtime.block_on(async {
        let t = target.connect("dst_mssql").await.map_err(|e| e.to_string())?;
        t.batch_execute(&expected_data_sql("it").map_err(|e| e.to_string())?).await.map_err(db)?;
        t.batch_execute("SET TimeZone = 'UTC'").await.map_err(db)?;
        compare_tables(&t, "expected", &t, "it", &keyed).await.map_err(|d| format!("from SQL Server: {d}"))
    })?;
    println!("airflow-it: from SQL Server ({}), XCom and copied values as expected", server.host);
    Ok(())
}

/// How many tries `incremental_sync` of the DAG run at `date` took.
fn airflow_tries(venv: &Path, home: &Path, date: &str) -> Result<u64, String> {
    let out = query_airflow_db(
        venv,
        home,
        date,
        "SELECT ti.try_number FROM task_instance ti JOIN dag_run r ON r.run_id = ti.run_id AND r.dag_id = ti.dag_id \
         WHERE ti.dag_id = ? AND ti.task_id = 'incremental_sync' AND r.execution_date = ?",
        "row[0] if row else 0",
    )?;
    out.trim().parse().map_err(|_| format!("not a try number: {out}"))
}

/// The `incremental_sync` task's XCom of the DAG run at `date`, decoded.
fn xcom(venv: &Path, home: &Path, date: &str) -> Result<serde_json::Value, String> {
    let out = query_airflow_db(
        venv,
        home,
        date,
        "SELECT x.value FROM xcom x JOIN dag_run r ON r.id = x.dag_run_id WHERE x.dag_id = ? \
         AND x.task_id = 'incremental_sync' AND x.key = 'return_value' AND r.execution_date = ?",
        "json.loads(row[0]) if row else ''",
    )?;
    let text = out.trim();
    if text.is_empty() {
        return Err(format!("no XCom for the run at {date}"));
    }
    serde_json::from_str(text).map_err(|e| format!("the XCom is not JSON ({e}): {text}"))
}

/// Runs `sql` (parameters: the DAG id, the run's date) on Airflow's SQLite
/// database with the virtualenv's Python, printing `shown` of its first row.
fn query_airflow_db(venv: &Path, home: &Path, date: &str, sql: &str, shown: &str) -> Result<String, String> {
    let script = format!(
        "import json, sqlite3, sys\n\
         row = sqlite3.connect(sys.argv[1]).execute(sys.argv[2], (sys.argv[3], sys.argv[4])).fetchone()\n\
         print({shown})\n"
    );
    // Airflow keeps dates in SQLite as 'YYYY-MM-DD HH:MM:SS.ffffff'.
    let stored = format!("{} {}.000000", &date[..10], &date[11..19]);
    run(
        Command::new(venv.join("bin/python"))
            .arg("-c")
            .arg(script)
            .arg(home.join("airflow.db"))
            .arg(sql)
            .arg(DAG_ID)
            .arg(stored),
        "reading Airflow's database",
    )
}
