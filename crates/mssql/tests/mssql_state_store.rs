#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.
//! The run state kept in a SQL Server database ([`MssqlStateStore`]),
//! against the TDS server named by `MSSQL_TEST_URL` (skipped with its
//! reason without one): documents and chunk rows round-trip exactly, a
//! chunk row rolled back with its transaction is gone, names that differ
//! only in case stay apart, and a new run drops the old run's chunk rows.

use mssql_pg_migrate_config::Secret;
use mssql_pg_migrate_dialect::Side;
use mssql_pg_migrate_dialect::store::{ChunkRecord, KeptMark, SavedRun, StateStore};
use mssql_pg_migrate_mssql::store::{MssqlStateStore, record_chunk};
use mssql_pg_migrate_mssql::target::execute;
use mssql_pg_migrate_mssql::{MssqlEndpoint, MssqlSource};
use mssql_pg_migrate_testkit::mssql::{TestServer, execute_script};

const DATABASE: &str = "mss_store_db";

fn chunk(table: &str, partition: i32, last_pk: Option<&str>, rows: i64, completed: bool) -> ChunkRecord {
    ChunkRecord {
        table: table.into(),
        partition,
        last_pk: last_pk.map(str::to_owned),
        rows_transferred: rows,
        completed,
    }
}

fn sorted(mut saved: SavedRun) -> SavedRun {
    saved.chunks.sort_by(|a, b| (&a.table, a.partition).cmp(&(&b.table, b.partition)));
    saved
}

/// Writes `chunks` in one transaction on a session of the store's server,
/// committed or rolled back.
async fn write_chunks(server: &MssqlSource, run_id: &str, chunks: &[ChunkRecord], commit: bool) {
    let mut session = server.session().await.unwrap();
    execute(&mut session, "SET XACT_ABORT ON; BEGIN TRANSACTION", "begin").await.unwrap();
    for c in chunks {
        record_chunk(&mut session, run_id, c).await.unwrap();
    }
    let end = if commit { "COMMIT TRANSACTION" } else { "ROLLBACK TRANSACTION" };
    execute(&mut session, end, "end").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_state_round_trips_through_a_sql_server_database() {
    let Some(server) = TestServer::from_env("the_run_state_round_trips_through_a_sql_server_database") else {
        return;
    };
    let mut admin = server.connect().await.unwrap();
    execute_script(
        &mut admin,
        &format!("IF DB_ID(N'{DATABASE}') IS NOT NULL DROP DATABASE {DATABASE}\nGO\nCREATE DATABASE {DATABASE}\nGO\n"),
    )
    .await;
    let endpoint = MssqlEndpoint {
        host: server.host.clone(),
        port: server.port,
        database: DATABASE.into(),
        user: server.user.clone(),
        password: Secret::new(server.password.clone()),
        encrypt: server.encrypt,
        strict: false,
        trust_server_cert: server.trust_server_cert,
        ca_cert: server.ca_cert.clone().map(Into::into),
        side: Side::Target,
    };
    let target = MssqlSource::connect(endpoint, 2).await.unwrap();
    let store = MssqlStateStore::new(target.clone());

    // Nothing yet, not even the schema.
    assert_eq!(store.load("mig").await.unwrap(), None);
    assert_eq!(store.load_marks("mig").await.unwrap(), Vec::new());

    // A document past nvarchar(4000), with text outside the BMP.
    let document = format!(r#"{{"run_id":"run-a","note":"{}"}}"#, "é😀 ".repeat(30_000));
    store.open("mig", "run-a").await.unwrap();
    store.open("mig", "run-a").await.unwrap(); // opening again finds everything built
    store.save("mig", "run-a", &document).await.unwrap();
    let written = [
        chunk("dbo.Orders", 0, Some(r#"[{"i":5}]"#), 5, false),
        chunk("dbo.orders", 0, None, 2, true),
        chunk("dbo.Orders", 1, Some("17"), 3, false),
    ];
    write_chunks(&target, "run-a", &written, true).await;
    // Rolled back with its chunk's rows: as if never written.
    write_chunks(&target, "run-a", &[chunk("dbo.Orders", 2, Some("99"), 1, true)], false).await;
    let loaded = sorted(store.load("mig").await.unwrap().unwrap());
    assert_eq!(loaded.document, document);
    assert_eq!(loaded.chunks, [written[0].clone(), written[2].clone(), written[1].clone()]);

    // A chunk row written again is replaced, a key going back to NULL too.
    let again = [chunk("dbo.Orders", 0, Some("[9]"), 9, true), chunk("dbo.Orders", 1, None, 4, true)];
    write_chunks(&target, "run-a", &again, true).await;
    let loaded = sorted(store.load("mig").await.unwrap().unwrap());
    assert_eq!(loaded.chunks, [again[0].clone(), again[1].clone(), written[1].clone()]);
    // Another migration's state is its own.
    assert_eq!(store.load("MIG").await.unwrap(), None);

    // A new run of the migration: the old run's chunk rows go.
    store.open("mig", "run-b").await.unwrap();
    store.save("mig", "run-b", "{}").await.unwrap();
    assert_eq!(store.load("mig").await.unwrap(), Some(SavedRun { document: "{}".into(), chunks: Vec::new() }));

    // Marks: kept, replaced, and NULL kept as NULL.
    let marks = [
        KeptMark { table: "dbo.Orders".into(), change_column: "rv".into(), mark: Some("0x00000000000007D1".into()) },
        KeptMark { table: "dbo.orders".into(), change_column: "modified".into(), mark: None },
    ];
    for m in &marks {
        store.keep_mark("mig", m).await.unwrap();
    }
    let moved = KeptMark { mark: Some("0x00000000000007D9".into()), ..marks[0].clone() };
    store.keep_mark("mig", &moved).await.unwrap();
    let mut kept = store.load_marks("mig").await.unwrap();
    kept.sort_by(|a, b| a.table.cmp(&b.table));
    assert_eq!(kept, [moved, marks[1].clone()]);
    assert_eq!(store.load_marks("other").await.unwrap(), Vec::new());
    // The database stays: the pool's sessions close in the background, and
    // a DROP DATABASE now could find one still open. The next run drops it.
}
