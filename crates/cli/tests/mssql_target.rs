//! SQL Server → SQL Server through the real binary, on the server
//! `MSSQL_TEST_URL` names (two databases on one server): `run` copies the
//! edge-case fixture, every value and schema object compared with the
//! source; SIGKILL at named steps then `resume` converges to the same copy;
//! a second run meanwhile is refused by the lock; what a SQL Server target
//! cannot do is refused naming the cause.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::pair::{binary, finish, start_until};
use mssql_pg_migrate::mssql::catalog;
use mssql_pg_migrate::schema::{ColumnType, Table};
use mssql_pg_migrate_testkit::mssql::{
    MSSQL_EDGE_CASE_TABLES, TestClient, TestServer, exact_rows, execute_script, first_cell,
};

/// The copy's schema (each test copies into a database of its own).
const COPY_SCHEMA: &str = "mt_copy";

struct Setup {
    server: TestServer,
    schema: String,
    copy_database: String,
    /// Fixture tables the config leaves out.
    left_out: Vec<&'static str>,
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// The rows `sql` answers, every column text (NULL as "NULL").
async fn text_rows(client: &mut TestClient, sql: &str) -> Vec<Vec<String>> {
    let rows = client.simple_query(sql).await.unwrap().into_first_result().await.unwrap();
    rows.iter().map(|r| (0..r.len()).map(|i| r.get::<&str, _>(i).unwrap_or("NULL").to_owned()).collect()).collect()
}

/// Loads the fixture into `schema`, makes an empty copy database, and
/// writes a config between them with `migration` added.
async fn setup(server: TestServer, schema: &str, migration: &str) -> Setup {
    // Babelfish fails one of two databases created at once ("tuple
    // concurrently updated"), so this file's tests make theirs in turn.
    static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _creating = CREATING.lock().await;
    // sql_variant is refused by a SQL Server target (its own test below);
    // the rest of the type coverage stays.
    server.load_edge_cases_without_sql_variant(schema).await;
    let copy_database = format!("{schema}_copy");
    let mut admin = server.connect().await.unwrap();
    execute_script(
        &mut admin,
        &format!(
            "IF DB_ID(N'{copy_database}') IS NOT NULL DROP DATABASE {copy_database}\nGO\n\
             CREATE DATABASE {copy_database}\nGO\n"
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("copy.yaml");
    let text = format!(
        "{}target: {{type: mssql, host: '{}', port: {}, database: {copy_database}, user: '{}', password: '${{DST_PW}}', \
         schema: {COPY_SCHEMA}, encrypt: {}, trust_server_cert: {}}}\n\
         migration: {{chunk_size: 300, large_table_threshold: 1000, min_rows_per_partition: 400, max_partitions: 4, \
         max_retries: 3{migration}}}\n",
        server.source_yaml(schema, "${SRC_PW}"),
        server.host,
        server.port,
        server.user,
        server.encrypt,
        server.trust_server_cert
    );
    std::fs::write(&config, text).unwrap();
    Setup { server, schema: schema.to_owned(), copy_database, left_out: Vec::new(), dir, config }
}

impl Setup {
    fn command(&self, state_file: Option<&Path>, args: &[&str]) -> Command {
        let mut cmd = binary(&self.config, state_file, args);
        cmd.env("SRC_PW", &self.server.password).env("DST_PW", &self.server.password);
        cmd
    }

    /// The fixture's tables the config copies.
    fn tables(&self) -> impl Iterator<Item = &'static str> + '_ {
        MSSQL_EDGE_CASE_TABLES.iter().copied().filter(|t| !self.left_out.contains(t))
    }

    /// The run document in the copy's database is run `run_id`'s, completed,
    /// without the password, and every partition's chunk row is complete.
    async fn assert_state_in_copy_completed(&self, run_id: &str) {
        let mut copy = self.copy_client().await;
        let runs = text_rows(
            &mut copy,
            &format!("SELECT run_id, state FROM mssql_pg_migrate.runs WHERE migration = N'{COPY_SCHEMA}'"),
        )
        .await;
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0][0], run_id, "the resumed run's document");
        let document: serde_json::Value = serde_json::from_str(&runs[0][1]).unwrap();
        assert_eq!(document["status"], "completed", "{document}");
        assert!(!runs[0][1].contains(&self.server.password), "no password in the state");
        let partitions: usize =
            document["tables"].as_object().unwrap().values().map(|t| t["partitions"].as_array().unwrap().len()).sum();
        let chunks = text_rows(
            &mut copy,
            &format!(
                "SELECT CAST(COUNT(*) AS nvarchar(20)), CAST(SUM(CAST(completed AS int)) AS nvarchar(20)) \
                 FROM mssql_pg_migrate.chunks WHERE run_id = N'{run_id}'"
            ),
        )
        .await;
        assert_eq!(chunks, [[partitions.to_string(), partitions.to_string()]], "one complete chunk row per partition");
    }

    async fn copy_client(&self) -> TestClient {
        TestServer { database: self.copy_database.clone(), ..self.server.clone() }.connect().await.unwrap()
    }

    /// The fixture's tables as the catalog reads them, from the source and the copy.
    async fn catalogs(&self) -> (Vec<Table>, Vec<Table>) {
        let babelfish = self.server.is_babelfish().await;
        let wanted = |_: &str, name: &str| self.tables().any(|t| t == name);
        let mut source = self.server.connect().await.unwrap();
        let theirs = catalog::read_schema(&mut source, None, &self.schema, babelfish, &wanted).await.unwrap();
        let mut copy = self.copy_client().await;
        let ours = catalog::read_schema(&mut copy, None, COPY_SCHEMA, babelfish, &wanted).await.unwrap();
        (theirs, ours)
    }

    /// Every table of the copy holds exactly the source's rows, and the
    /// copy's catalog the source's keys, indexes, checks and foreign keys,
    /// each once.
    async fn assert_same_as_source(&self, when: &str) {
        let mut source = self.server.connect().await.unwrap();
        let mut copy = self.copy_client().await;
        for table in self.tables() {
            let ours = exact_rows(&mut copy, COPY_SCHEMA, table).await;
            let theirs = exact_rows(&mut source, &self.schema, table).await;
            assert_eq!(ours.len(), theirs.len(), "{when}: rows of {table}");
            for (a, b) in ours.iter().zip(&theirs) {
                assert_eq!(a, b, "{when}: a row of {table}");
            }
        }
        let (theirs, ours) = self.catalogs().await;
        assert_eq!(ours.len(), theirs.len(), "{when}: tables");
        for (t, o) in theirs.iter().zip(&ours) {
            let types = |t: &Table| {
                t.columns
                    .iter()
                    .map(|c| {
                        let ty = match &c.data_type {
                            ColumnType::Mssql(ty) => mssql_pg_migrate::mssql::ddl::copy_type(ty).to_string(),
                            other => other.to_string(),
                        };
                        (c.name.clone(), ty, c.nullable, c.identity.map(|i| (i.seed, i.increment)), c.default.is_some())
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(types(o), types(t), "{when}: columns of {}", t.name);
            assert_eq!(o.primary_key, t.primary_key, "{when}: primary key of {}", t.name);
            assert_eq!(o.unique_constraints, t.unique_constraints, "{when}: unique constraints of {}", t.name);
            let indexes = |t: &Table| {
                let mut v: Vec<_> = t
                    .indexes
                    .iter()
                    .map(|i| (i.name.clone(), i.columns.clone(), i.included.clone(), i.unique))
                    .collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            };
            assert_eq!(indexes(o), indexes(t), "{when}: indexes of {}", t.name);
            let checks = |t: &Table| t.checks.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
            assert_eq!(checks(o), checks(t), "{when}: checks of {}", t.name);
            let fks = |t: &Table| {
                t.foreign_keys
                    .iter()
                    .map(|f| (f.name.clone(), f.referenced_table.clone(), f.on_delete))
                    .collect::<Vec<_>>()
            };
            assert_eq!(fks(o), fks(t), "{when}: foreign keys of {}", t.name);
        }
    }

    /// The identity value the next insert gets, in the copy and in the source.
    async fn next_identities(&self) -> (String, String) {
        let next = |schema: &str| {
            format!(
                "BEGIN TRAN; INSERT INTO [{schema}].AllTypes (Created) VALUES ('2024-01-01'); \
                 SELECT CAST(SCOPE_IDENTITY() AS int); ROLLBACK"
            )
        };
        let mut source = self.server.connect().await.unwrap();
        let mut copy = self.copy_client().await;
        (first_cell(&mut copy, &next(COPY_SCHEMA)).await, first_cell(&mut source, &next(&self.schema)).await)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_copies_sql_server_into_sql_server_exactly_and_resumes_after_sigkill() {
    let test = "run_copies_sql_server_into_sql_server_exactly_and_resumes_after_sigkill";
    let Some(server) = TestServer::from_env(test) else { return };
    let s = setup(server, "mt_src", "").await;
    let state_file = s.dir.path().join("copy.state");

    // The dry run shows the statements a SQL Server target runs.
    let (code, stdout, stderr) = finish(&mut s.command(Some(&state_file), &["--output-json", "run", "--dry-run"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // (Babelfish's catalog spells constraint names in lower case.)
    for statement in [
        "CREATE TABLE [mt_copy].[AllTypes] ([Id] int IDENTITY(100,5) NOT NULL",
        "IF OBJECT_ID(N'[mt_copy].[PK_AllTypes]') IS NULL ALTER TABLE [mt_copy].[AllTypes] ADD CONSTRAINT [PK_AllTypes]",
        "DROP TABLE IF EXISTS [mt_copy].[skewed]",
    ] {
        assert!(stdout.to_lowercase().contains(&statement.to_lowercase()), "the dry run lacks {statement}:\n{stdout}");
    }

    let (code, stdout, stderr) = finish(&mut s.command(Some(&state_file), &["--output-json", "run"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "success", "{stdout}");
    let tables = report["report"]["tables"].as_array().unwrap();
    let skewed = tables.iter().find(|t| t["source"] == "mt_src.skewed").unwrap();
    assert_eq!((skewed["rows"].as_u64(), skewed["target"].as_str()), (Some(4_103), Some("mt_copy.skewed")));
    assert!(skewed["partitions"].as_u64().unwrap() > 1, "a large table is split: {skewed}");
    let notes = tables.iter().flat_map(|t| t["notes"].as_array().unwrap()).count();
    assert_eq!(notes, 0, "every type is kept as it is, so there is nothing to say: {stdout}");
    s.assert_same_as_source("after run").await;
    let (ours, theirs) = s.next_identities().await;
    assert_eq!(ours, theirs, "the copy's next identity is the source's");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(saved["status"], "completed");
    let (code, stdout, stderr) = finish(&mut s.command(Some(&state_file), &["--output-json", "validate"]));
    assert_eq!(code, 0, "validate:\n{stdout}\n{stderr}");
    assert!(stdout.contains(r#""target":"mt_copy.skewed","target_rows":4103"#), "{stdout}");
    assert!(!saved.to_string().contains(&s.server.password), "no password in the state");

    // Killed at each step, then resumed: with the state in a file, and in
    // the copy's database (its chunk rows committed with each chunk's rows).
    let in_file = Some(state_file.as_path());
    for (point, state) in [
        ("mid-copy:3", in_file),
        ("before-commit:2", None),
        ("before-commit:3", in_file),
        ("after-commit:4", None),
        ("chunk-saved:5", in_file),
        ("finalize-step:2", None),
    ] {
        let mut running = start_until(&mut s.command(state, &["run"]), point);
        if point == "mid-copy:3" {
            // The frozen run holds the migration's lock: another is refused, naming why.
            let (code, stdout, stderr) = finish(&mut s.command(Some(&s.dir.path().join("other.state")), &["run"]));
            assert_eq!(code, 6, "a second run while one holds the lock:\n{stdout}\n{stderr}");
            assert!(stderr.contains("another run of this migration"), "{stderr}");
        }
        running.child.kill().unwrap(); // SIGKILL on Unix
        running.child.wait().unwrap();
        let (code, stdout, stderr) = finish(&mut s.command(state, &["--output-json", "resume"]));
        assert_eq!(code, 0, "resume after SIGKILL at {point}:\n{stdout}\n{stderr}");
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(doc["status"], "success", "{point}: {stdout}");
        s.assert_same_as_source(&format!("resume after SIGKILL at {point}")).await;
        if state.is_none() {
            s.assert_state_in_copy_completed(doc["run_id"].as_str().unwrap()).await;
        }
    }

    // truncate: the existing tables are emptied and loaded again, their
    // foreign keys dropped for the load and put back as they were.
    let mut copy = s.copy_client().await;
    execute_script(&mut copy, &format!("INSERT INTO [{COPY_SCHEMA}].[user] (id, name) VALUES (-7, N'extra')\nGO\n"))
        .await;
    let truncate = s.dir.path().join("truncate.yaml");
    let text =
        std::fs::read_to_string(&s.config).unwrap().replace("max_retries: 3", "max_retries: 3, target_mode: truncate");
    std::fs::write(&truncate, text).unwrap();
    let (code, stdout, stderr) = finish(&mut s.command(Some(&state_file), &["validate"]));
    assert_eq!(code, 4, "validate sees the extra row:\n{stdout}\n{stderr}");
    let mut cmd = binary(&truncate, Some(&s.dir.path().join("t.state")), &["run"]);
    cmd.env("SRC_PW", &s.server.password).env("DST_PW", &s.server.password);
    let (code, stdout, stderr) = finish(&mut cmd);
    assert_eq!(code, 0, "truncate:\n{stdout}\n{stderr}");
    s.assert_same_as_source("after a truncate run").await;
    drop(copy);

    let mut admin = s.server.connect().await.unwrap();
    execute_script(&mut admin, &format!("DROP DATABASE {}\nGO\n", s.copy_database)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_sql_server_target_cannot_do_is_refused_naming_the_cause() {
    let test = "what_a_sql_server_target_cannot_do_is_refused_naming_the_cause";
    let Some(server) = TestServer::from_env(test) else { return };
    let s = setup(server, "mt_refuse", ", include_tables: [variants]").await;
    let mut source = s.server.connect().await.unwrap();
    execute_script(
        &mut source,
        "CREATE TABLE mt_refuse.variants (id int NOT NULL PRIMARY KEY, v sql_variant NULL)\nGO\n\
         INSERT INTO mt_refuse.variants VALUES (1, CAST(2 AS int))\nGO\n",
    )
    .await;
    let (code, stdout, stderr) = finish(&mut s.command(Some(&s.dir.path().join("v.state")), &["run"]));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("column v is sql_variant, which the TDS bulk load cannot write"), "{stderr}");

    // health-check reaches the target and checks what the login may do there.
    let state = s.dir.path().join("h.state");
    let (code, stdout, stderr) = finish(&mut s.command(Some(&state), &["--output-json", "health-check"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let target = &doc["report"]["target"];
    assert_eq!(target["reachable"], true, "{stdout}");
    let checks: Vec<(String, bool)> = target["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["ok"].as_bool().unwrap()))
        .collect();
    for name in ["create_table_in_database", "create_on_target_schema"] {
        assert!(checks.contains(&(name.to_owned(), true)), "{name}: {stdout}");
    }
    // Without a state file, the state goes into the target database, in a
    // schema of its own the login may create.
    let (code, stdout, stderr) = finish(&mut s.command(None, &["--output-json", "health-check"]));
    assert_eq!(code, 0, "without a state file:\n{stdout}\n{stderr}");
    assert!(stdout.contains(r#""name":"state_schema","ok":true"#), "{stdout}");
}

/// The merge counts of each table in a run's JSON document, by source name.
fn merged(doc: &serde_json::Value) -> std::collections::BTreeMap<String, (u64, u64)> {
    doc["report"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let m = &t["merged"];
            (
                t["source"].as_str().unwrap().to_owned(),
                (m["inserted"].as_u64().unwrap(), m["updated"].as_u64().unwrap()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_into_sql_server_writes_only_what_changed() {
    let test = "upsert_into_sql_server_writes_only_what_changed";
    let Some(server) = TestServer::from_env(test) else { return };
    // A keyless table cannot be merged into (its refusal is upsert.rs's test).
    let mut s = setup(server, "mt_up", ", target_mode: upsert, exclude_tables: [no_key]").await;
    s.left_out.push("no_key");
    let state = |n: &str| s.dir.path().join(format!("{n}.state"));
    let sync = |n: &str| {
        let (code, stdout, stderr) = finish(&mut s.command(Some(&state(n)), &["--output-json", "run"]));
        assert_eq!(code, 0, "sync {n}:\n{stdout}\n{stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    // The dry run shows the T-SQL merge a SQL Server target runs.
    let (code, stdout, stderr) = finish(&mut s.command(Some(&state("dry")), &["run", "--dry-run"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout
            .contains("UPDATE t SET [v] = s.[v] FROM [mt_copy].[skewed] AS t JOIN #mpm_stage AS s ON t.[id] = s.[id]")
            && stdout.contains("EXCEPT SELECT t.[v]")
            && !stdout.contains("ON CONFLICT"),
        "{stdout}"
    );
    // The first sync creates and loads every table.
    let first = merged(&sync("first"));
    assert_eq!(first["mt_up.skewed"], (4_103, 0));
    s.assert_same_as_source("after the first sync").await;

    let mut source = s.server.connect().await.unwrap();
    let changed_guids = first_cell(&mut source, "SELECT COUNT(*) FROM mt_up.by_guid WHERE v < 10").await;
    execute_script(
        &mut source,
        "UPDATE mt_up.[user] SET name = NULL\nGO\n\
         UPDATE mt_up.by_guid SET v = v + 1 WHERE v < 10\nGO\n\
         UPDATE mt_up.by_text SET v = v WHERE v < 10\nGO\n\
         INSERT INTO mt_up.composite (region, seq, v) VALUES ('zz', 1, 5), ('zz', 2, NULL)\nGO\n\
         UPDATE mt_up.skewed SET v = '' WHERE id IN (SELECT TOP (3) id FROM mt_up.skewed ORDER BY id)\nGO\n\
         ALTER TABLE mt_up.one_row ADD extra nvarchar(10) NULL\nGO\n\
         UPDATE mt_up.one_row SET extra = N'gained'\nGO\n",
    )
    .await;
    let second_doc = sync("second");
    let second = merged(&second_doc);
    assert_eq!(second["mt_up.one_row"], (0, 1), "a column the source gained, added and filled");
    let notes = second_doc["report"]["tables"].as_array().unwrap().iter().find(|t| t["source"] == "mt_up.one_row");
    assert!(notes.unwrap()["notes"].to_string().contains("added at the source"), "{second_doc}");
    assert_eq!(second["mt_up.user"], (0, 1), "a value set to NULL");
    assert_eq!(second["mt_up.composite"], (2, 0), "two new keys");
    assert_eq!(second["mt_up.skewed"], (0, 3), "values set to empty strings");
    assert_eq!(second["mt_up.by_text"], (0, 0), "an UPDATE to the same values changes nothing");
    assert_eq!(format!("I32(Some({}))", second["mt_up.by_guid"].1), changed_guids);
    s.assert_same_as_source("after the second sync").await;

    // A sync killed as it commits, then resumed: merged again where in doubt.
    execute_script(
        &mut source,
        "UPDATE mt_up.skewed SET v = 'again' WHERE id IN (SELECT TOP (700) id FROM mt_up.skewed ORDER BY id DESC)\nGO\n",
    )
    .await;
    for point in ["before-commit:2", "after-commit:3"] {
        let mut running = start_until(&mut s.command(Some(&state("killed")), &["run"]), point);
        running.child.kill().unwrap();
        running.child.wait().unwrap();
        let (code, stdout, stderr) = finish(&mut s.command(Some(&state("killed")), &["resume"]));
        assert_eq!(code, 0, "resume after SIGKILL at {point}:\n{stdout}\n{stderr}");
        s.assert_same_as_source(&format!("an upsert resumed after SIGKILL at {point}")).await;
    }

    // Nothing changed: nothing is written (AllTypes aside: a row holding a
    // value above 64 KB is written again by every merge, see writer.rs).
    let third = merged(&sync("third"));
    for (table, counts) in &third {
        if table != "mt_up.AllTypes" {
            assert_eq!(*counts, (0, 0), "{table} with nothing changed");
        }
    }
    s.assert_same_as_source("after a sync with nothing changed").await;

    // Incremental reads: a datetime2 change column (added at the source, so
    // added to the copy too). Each sync has a state file of its own, as the
    // guide's Airflow DAG does: the mark is kept in the copy's database.
    execute_script(
        &mut source,
        "ALTER TABLE mt_up.skewed ADD modified datetime2(7) NULL\nGO\n\
         UPDATE mt_up.skewed SET modified = '2020-01-01T00:00:00'\n\
         UPDATE mt_up.skewed SET modified = '2021-01-01T00:00:00.1234567' WHERE id = 1\n\
         UPDATE mt_up.skewed SET modified = NULL WHERE id = 2\nGO\n",
    )
    .await;
    let incremental = s.dir.path().join("incremental.yaml");
    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("max_retries: 3", "max_retries: 3, change_columns: {skewed: modified}, change_lookback: 172800");
    std::fs::write(&incremental, text).unwrap();
    let sync_incremental = |n: &str| {
        let mut cmd = binary(&incremental, Some(&state(n)), &["--output-json", "run"]);
        cmd.env("SRC_PW", &s.server.password).env("DST_PW", &s.server.password);
        let (code, stdout, stderr) = finish(&mut cmd);
        assert_eq!(code, 0, "sync {n}:\n{stdout}\n{stderr}");
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        doc["report"]["tables"].as_array().unwrap().iter().find(|t| t["source"] == "mt_up.skewed").unwrap().clone()
    };
    let first_incremental = sync_incremental("fourth");
    assert_eq!(first_incremental["rows"], 4_103, "no mark yet: every row is read");
    s.assert_same_as_source("after the first incremental sync").await;
    execute_script(
        &mut source,
        "UPDATE mt_up.skewed SET v = 'changed', modified = '2022-01-01T00:00:00' WHERE id BETWEEN 10 AND 14\n\
         INSERT INTO mt_up.skewed (id, v, modified) VALUES (9000, 'new', '2022-01-01T00:00:00')\nGO\n",
    )
    .await;
    let second_incremental = sync_incremental("fifth");
    // From two days and 100 ns before the last maximum (2021-01-01T00:00:00.1234567):
    // row 1, the NULL row, 5 changed, 1 new.
    assert_eq!(second_incremental["rows"], 8, "{second_incremental}");
    let merged = &second_incremental["merged"];
    assert_eq!((merged["inserted"].as_u64(), merged["updated"].as_u64()), (Some(1), Some(5)), "{merged}");
    let since = merged["read_since"].as_str().unwrap();
    assert!(since.starts_with("2020-12-30") && since.contains("00:00:00.12345"), "{since}");
    s.assert_same_as_source("after an incremental sync").await;

    // Deletes (delete_missing): rows gone from the source go from the copy,
    // also when the sync is killed while it deletes, then resumed.
    let deleting = s.dir.path().join("deleting.yaml");
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        "max_retries: 3",
        "max_retries: 3, change_columns: {skewed: modified}, change_lookback: 172800, \
             delete_missing: [by_guid, composite, user, skewed]",
    );
    std::fs::write(&deleting, text).unwrap();
    let gone = first_cell(&mut source, "SELECT COUNT(*) FROM mt_up.by_guid WHERE v % 7 = 0").await;
    execute_script(
        &mut source,
        "DELETE FROM mt_up.by_guid WHERE v % 7 = 0\nGO\nDELETE FROM mt_up.composite WHERE region = 'zz'\nGO\n\
         DELETE FROM mt_up.skewed WHERE id IN (3, 4, 9000)\nGO\n",
    )
    .await;
    let delete_sync = |state_file: &Path, args: &[&str]| {
        let mut cmd = binary(&deleting, Some(state_file), args);
        cmd.env("SRC_PW", &s.server.password).env("DST_PW", &s.server.password);
        cmd
    };
    let doc = {
        let (code, stdout, stderr) = finish(&mut delete_sync(&state("sixth"), &["--output-json", "run"]));
        assert_eq!(code, 0, "a sync with deletes:\n{stdout}\n{stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let deleted = |doc: &serde_json::Value, table: &str| {
        let t = doc["report"]["tables"].as_array().unwrap().iter().find(|t| t["source"] == table).unwrap();
        t["merged"]["deleted"].as_u64().unwrap()
    };
    assert_eq!(format!("I32(Some({}))", deleted(&doc, "mt_up.by_guid")), gone);
    assert_eq!((deleted(&doc, "mt_up.composite"), deleted(&doc, "mt_up.user")), (2, 0));
    // skewed is read incrementally (nothing changed since the last mark),
    // and its deletes still see every key: only the 3 gone are deleted.
    assert_eq!(deleted(&doc, "mt_up.skewed"), 3);
    s.assert_same_as_source("after a sync with deletes").await;
    // Killed while it deletes, and while it collects skewed's keys for the
    // deletes; each time resumed, and the copy equals the source.
    for (gone_now, state_name, point) in [
        ("DELETE FROM mt_up.[user] WHERE id IN (SELECT MIN(id) FROM mt_up.[user])", "seventh", "finalize-step:2"),
        ("DELETE FROM mt_up.skewed WHERE id IN (5, 6)", "eighth", "collecting-keys:1"),
    ] {
        execute_script(&mut source, &format!("{gone_now}\nGO\n")).await;
        let mut running = start_until(&mut delete_sync(&state(state_name), &["run"]), point);
        running.child.kill().unwrap();
        running.child.wait().unwrap();
        let (code, stdout, stderr) = finish(&mut delete_sync(&state(state_name), &["resume"]));
        assert_eq!(code, 0, "resume of a sync with deletes killed at {point}:\n{stdout}\n{stderr}");
        s.assert_same_as_source(&format!("a sync with deletes killed at {point}, resumed")).await;
    }
    let mut admin = s.server.connect().await.unwrap();
    execute_script(&mut admin, &format!("DROP DATABASE {}\nGO\n", s.copy_database)).await;
}
