#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.
//! End to end, PostgreSQL → PostgreSQL, on throwaway clusters: the engine
//! copies `fixtures/pg/edge_cases.sql` and every table is compared value by
//! value (each row's text form), then keys, indexes, constraints and
//! identities are checked in the target's catalog.

use mssql_pg_migrate::config::{Config, Loader};
use mssql_pg_migrate::transfer::{self, RunOptions, TableStatus, TransferError};
use mssql_pg_migrate_testkit::PgCluster;
use mssql_pg_migrate_testkit::compare::{EDGE_CASE_TABLES, compare_tables, edge_case_fixture, table_rows};

const TABLES: &[&str] = EDGE_CASE_TABLES;

fn config(source: &PgCluster, target: &PgCluster, migration: &str) -> Config {
    let yaml = format!(
        "source: {{type: postgres, host: 127.0.0.1, port: {}, database: src, user: postgres, password: '{}', schema: src}}\n\
         target: {{type: postgres, host: 127.0.0.1, port: {}, database: dst, user: postgres, password: '{}', schema: copy, ssl_mode: disable}}\n\
         migration: {{chunk_size: 300, large_table_threshold: 1000, min_rows_per_partition: 400, max_partitions: 4, {migration}}}\n",
        source.port(),
        source.password(),
        target.port(),
        target.password()
    );
    Loader::new().load_str(&yaml, "yaml").unwrap()
}

async fn setup() -> (PgCluster, PgCluster) {
    let source = PgCluster::start().unwrap();
    let target = PgCluster::start().unwrap();
    source.create_database("src").await.unwrap();
    target.create_database("dst").await.unwrap();
    let sql = edge_case_fixture().unwrap();
    source.connect("src").await.unwrap().batch_execute(&sql).await.unwrap();
    (source, target)
}

/// [`setup`], then `sql` run on the source's `src`.
async fn setup_with(sql: &str) -> (PgCluster, PgCluster) {
    let (source, target) = setup().await;
    source.connect("src").await.unwrap().batch_execute(sql).await.unwrap();
    (source, target)
}

async fn rows(client: &tokio_postgres::Client, schema: &str, table: &str) -> Vec<String> {
    table_rows(client, schema, table).await.unwrap()
}

async fn assert_same_data(source: &PgCluster, target: &PgCluster) {
    let s = source.connect("src").await.unwrap();
    let t = target.connect("dst").await.unwrap();
    if let Err(difference) = compare_tables(&s, "src", &t, "copy", TABLES).await {
        panic!("{difference}");
    }
}

async fn scalar(client: &tokio_postgres::Client, sql: &str) -> String {
    client.query_one(sql, &[]).await.unwrap().get::<_, Option<String>>(0).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_recreate_copies_every_value_and_rebuilds_the_schema() {
    let (source, target) = setup().await;
    // What the run did, in order: the chunks it committed and the steps it ran.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = std::sync::Arc::clone(&seen);
    let events: transfer::EventSink = std::sync::Arc::new(move |event: &transfer::Event| {
        let line = match event {
            transfer::Event::ChunkCommitted { table, .. } => format!("chunk of {table}"),
            transfer::Event::Finalizing { step } => step.clone(),
            _ => return,
        };
        record.lock().unwrap().push(line);
    });
    let options = RunOptions { events: Some(events), ..RunOptions::default() };
    let report = transfer::run(&config(&source, &target, "target_mode: drop_recreate"), &options).await.unwrap();
    assert!(report.is_success(), "{report:#?}");
    assert_same_data(&source, &target).await;

    let by_name = |name: &str| report.tables.iter().find(|t| t.source == format!("src.{name}")).unwrap();
    assert_eq!(by_name("skewed").rows, 4103);
    assert_eq!(by_name("skewed").partitions, 4, "integer keys split by value");
    assert_eq!(by_name("composite").partitions, 4, "composite keys split at server-computed boundaries");
    assert_eq!(by_name("by_text").partitions, 4);
    assert_eq!(by_name("no_key").partitions, 1, "no key: one stream");
    assert_eq!(by_name("empty_table").rows, 0);
    assert!(by_name("Every Type").bytes > 20_000_000, "the 10 MB values were copied");
    let s = source.connect("src").await.unwrap();
    let mut source_rows = 0;
    for table in TABLES {
        let counted = rows(&s, "src", table).await.len() as u64;
        let reported = report.tables.iter().find(|t| t.source == format!("src.{table}")).unwrap().rows;
        assert_eq!(reported, counted, "reported rows of {table}");
        source_rows += counted;
    }
    assert_eq!(report.rows, source_rows);

    let t = target.connect("dst").await.unwrap();
    let constraints = scalar(
        &t,
        "SELECT string_agg(conname || ':' || contype::text || ':' || pg_get_constraintdef(oid), ' | ' ORDER BY conname) \
         FROM pg_constraint WHERE connamespace = 'copy'::regnamespace",
    )
    .await;
    for expected in [
        "ca_cb:f:FOREIGN KEY (cb_id) REFERENCES copy.cb(id) ON UPDATE SET NULL",
        "cb_ca_id_fkey:f:FOREIGN KEY (ca_id) REFERENCES copy.ca(id) ON DELETE CASCADE",
        "employees_manager_id_fkey:f:FOREIGN KEY (manager_id) REFERENCES copy.employees(id)",
        "composite_pkey:p:PRIMARY KEY (region, seq)",
        "Order \"Lines\"_[x]_check:c:CHECK ((\"[x]\" >= 0))",
    ] {
        assert!(constraints.contains(expected), "missing {expected} in {constraints}");
    }
    let indexes =
        scalar(&t, "SELECT string_agg(indexdef, ' | ' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'copy'")
            .await;
    assert!(
        indexes.contains(
            "CREATE UNIQUE INDEX \"ix \"\"odd\"\" name\" ON copy.\"Order \"\"Lines\"\"\" USING btree (\"Mixed Case\" DESC) INCLUDE (\"Größe\")"
        ),
        "{indexes}"
    );
    assert!(indexes.contains("WHERE (\"[x]\" > 10)"), "{indexes}");
    // The default, the generated column and the identity behave as in the source.
    t.batch_execute("INSERT INTO copy.\"Order \"\"Lines\"\"\" (\"select\", \"[x]\") VALUES (1000, 21)").await.unwrap();
    let row = t
        .query_one("SELECT \"Größe\", total::text FROM copy.\"Order \"\"Lines\"\"\" WHERE \"select\" = 1000", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("M".to_owned(), "42.00".to_owned()));
    let next_id = scalar(&t, "INSERT INTO copy.\"Every Type\" DEFAULT VALUES RETURNING id::text").await;
    assert_eq!(
        next_id, "100",
        "the source never generated a value, so its seed (100) is next, not the loaded maximum (8) + 1"
    );
    let logged = scalar(&t, "SELECT string_agg(DISTINCT relpersistence::text, '') FROM pg_class WHERE relnamespace = 'copy'::regnamespace AND relkind = 'r'").await;
    assert_eq!(logged, "p");
    // Every table was analyzed once loaded (by the run: autovacuum's would be last_autoanalyze).
    let unanalyzed = scalar(
        &t,
        "SELECT coalesce(string_agg(relname, ', ' ORDER BY relname), '') FROM pg_stat_user_tables \
         WHERE schemaname = 'copy' AND last_analyze IS NULL",
    )
    .await;
    assert_eq!(unanalyzed, "", "tables the run did not analyze");
    // Statistics per column, which only ANALYZE writes (an index build sets the row count, not these).
    let columns_with_statistics =
        scalar(&t, "SELECT count(*)::text FROM pg_stats WHERE schemaname = 'copy' AND tablename = 'skewed'").await;
    assert_eq!(columns_with_statistics, "2", "id and v");
    // Autovacuum, off while the tables loaded, is back on every table and its TOAST table.
    let options = scalar(
        &t,
        "SELECT coalesce(string_agg(c.relname || '=' || array_to_string(c.reloptions || o.reloptions, ','), ' '), '') \
         FROM pg_class c LEFT JOIN pg_class o ON o.oid = c.reltoastrelid \
         WHERE c.relnamespace = 'copy'::regnamespace AND c.relkind = 'r' \
         AND (c.reloptions IS NOT NULL OR o.reloptions IS NOT NULL)",
    )
    .await;
    assert_eq!(options, "", "tables left with storage options");
    // ... and only once every table was complete: after every chunk, key, index and foreign key.
    let seen = seen.lock().unwrap().clone();
    let given_back: Vec<usize> =
        seen.iter().enumerate().filter(|(_, s)| s.starts_with("autovacuum on ")).map(|(i, _)| i).collect();
    assert_eq!(given_back.len(), TABLES.len(), "{seen:#?}");
    assert_eq!(
        given_back[0],
        seen.len() - TABLES.len(),
        "autovacuum given back before the run was complete: {seen:#?}"
    );
    assert!(seen.iter().any(|s| s.starts_with("foreign key ")), "{seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlogged_load_and_truncate_mode_give_the_same_data() {
    let (source, target) = setup().await;
    let first = transfer::run(
        &config(&source, &target, "target_mode: drop_recreate, use_unlogged_tables: true, identifier_case: preserve"),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    assert!(first.is_success(), "{first:#?}");
    let t = target.connect("dst").await.unwrap();
    let persistence = scalar(&t, "SELECT string_agg(DISTINCT relpersistence::text, '') FROM pg_class WHERE relnamespace = 'copy'::regnamespace AND relkind = 'r'").await;
    assert_eq!(persistence, "p", "tables are LOGGED after the load");

    // Rows the target gained since are gone after a truncate run; the structure stays.
    let analyzed_at = "SELECT coalesce(last_analyze::text, 'never') FROM pg_stat_user_tables \
                       WHERE schemaname = 'copy' AND relname = 'skewed'";
    let first_analyze = scalar(&t, analyzed_at).await;
    assert_ne!(first_analyze, "never");
    t.batch_execute("INSERT INTO copy.skewed VALUES (-100, 'extra'); CREATE INDEX keep_me ON copy.skewed (v)")
        .await
        .unwrap();
    let second =
        transfer::run(&config(&source, &target, "target_mode: truncate"), &RunOptions::default()).await.unwrap();
    assert!(second.is_success(), "{second:#?}");
    assert_same_data(&source, &target).await;
    assert_eq!(scalar(&t, "SELECT count(*)::text FROM pg_indexes WHERE indexname = 'keep_me'").await, "1");
    let second_analyze = scalar(&t, analyzed_at).await;
    assert!(second_analyze > first_analyze, "analyzed again after the reload: {first_analyze} then {second_analyze}");
    let fks = scalar(
        &t,
        "SELECT count(*)::text FROM pg_constraint WHERE contype = 'f' AND connamespace = 'copy'::regnamespace",
    )
    .await;
    assert_eq!(fks, "3", "foreign keys dropped for the load are put back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_refuses_an_incompatible_table_and_names_the_column() {
    let (source, target) = setup().await;
    let t = target.connect("dst").await.unwrap();
    t.batch_execute("CREATE SCHEMA copy; CREATE TABLE copy.skewed (id bigint PRIMARY KEY, v integer); INSERT INTO copy.skewed VALUES (7, 7)")
        .await
        .unwrap();
    let err =
        transfer::run(&config(&source, &target, "target_mode: truncate"), &RunOptions::default()).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, TransferError::Incompatible { .. }), "{err:?}");
    assert!(
        message.contains("copy.skewed") && message.contains("column \"v\" is integer") && message.contains("text"),
        "{message}"
    );
    assert_eq!(scalar(&t, "SELECT string_agg(id::text, ',') FROM copy.skewed").await, "7", "nothing was touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_types_without_a_model_pass_through_unchanged_also_in_upsert() {
    let (source, target) = setup_with(
        "CREATE TABLE src.builtin (id int PRIMARY KEY, j json, jb jsonb, ip inet, net cidr, mac macaddr,
                 span interval, cash money, ints integer[], words text[], vec tsvector, p point, r int4range,
                 bits bit varying(8), stamps timestamptz[]);
             INSERT INTO src.builtin VALUES
               (1, '{\"a\": [1, 2]}', '{\"b\": {\"c\": null}}', '10.1.2.3/8', '10.0.0.0/8', '08:00:2b:01:02:03',
                '1 year 2 mons 3 days 04:05:06.789', 12.34, '{1,NULL,3}', '{\"a b\",\"\"}', 'fat cat',
                '(1.5,-2)', '[1,10)', B'1011', '{\"2026-11-30 01:02:03+00\"}'),
               (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
    )
    .await;
    let tables: Vec<&str> = TABLES.iter().copied().chain(["builtin"]).collect();
    for mode in ["target_mode: drop_recreate", "target_mode: upsert, exclude_tables: [no_key]"] {
        let report = transfer::run(&config(&source, &target, mode), &RunOptions::default()).await.unwrap();
        assert!(report.is_success(), "{mode}: {report:#?}");
        let s = source.connect("src").await.unwrap();
        let t = target.connect("dst").await.unwrap();
        let compared: Vec<&str> = tables.iter().copied().filter(|n| mode.contains("drop") || *n != "no_key").collect();
        compare_tables(&s, "src", &t, "copy", &compared).await.unwrap();
        let types = scalar(
            &t,
            "SELECT string_agg(format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = 'copy.builtin'::regclass AND attnum > 1",
        )
        .await;
        assert_eq!(
            types,
            "json, jsonb, inet, cidr, macaddr, interval, money, integer[], text[], tsvector, point, int4range, \
             bit varying(8), timestamp with time zone[]",
            "{mode}"
        );
    }
    // The upsert found every value equal: json and point have no = operator, so they compare as text.
    let report = transfer::run(
        &config(&source, &target, "target_mode: upsert, exclude_tables: [no_key]"),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    let builtin = report.tables.iter().find(|t| t.source == "src.builtin").unwrap();
    let merged = builtin.merged.as_ref().unwrap();
    assert_eq!((merged.inserted, merged.updated, merged.unchanged), (0, 0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expression_indexes_access_methods_and_operator_classes_are_carried_over() {
    let (source, target) = setup_with(
        "CREATE TABLE src.docs (id int PRIMARY KEY, email text, body jsonb, at point, code text, n int);
         INSERT INTO src.docs VALUES (1, 'A@x.org', '{\"k\": 1}', '(1,2)', 'ab', 5), (2, 'b@x.org', NULL, NULL, 'cd', 6);
         CREATE UNIQUE INDEX docs_email_ci ON src.docs (lower(email));
         CREATE INDEX docs_body ON src.docs USING gin (body jsonb_path_ops);
         CREATE INDEX docs_at ON src.docs USING gist (at);
         CREATE INDEX docs_mixed ON src.docs (n DESC, (code || 'x') text_pattern_ops) INCLUDE (email) WHERE n > 0;",
    )
    .await;
    let report =
        transfer::run(&config(&source, &target, "target_mode: drop_recreate"), &RunOptions::default()).await.unwrap();
    assert!(report.is_success(), "{report:#?}");
    let s = source.connect("src").await.unwrap();
    let t = target.connect("dst").await.unwrap();
    compare_tables(&s, "src", &t, "copy", &["docs"]).await.unwrap();
    let definitions = |schema: &'static str| {
        format!(
            "SELECT string_agg(replace(pg_get_indexdef(indexrelid), '{schema}.', ''), E'\\n' ORDER BY c.relname) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = '{schema}.docs'::regclass AND NOT i.indisprimary"
        )
    };
    let source_indexes = scalar(&s, &definitions("src")).await;
    let target_indexes = scalar(&t, &definitions("copy")).await;
    assert_eq!(target_indexes, source_indexes);
    assert_eq!(
        target_indexes,
        "CREATE INDEX docs_at ON docs USING gist (at)\n\
         CREATE INDEX docs_body ON docs USING gin (body jsonb_path_ops)\n\
         CREATE UNIQUE INDEX docs_email_ci ON docs USING btree (lower(email))\n\
         CREATE INDEX docs_mixed ON docs USING btree (n DESC, ((code || 'x'::text)) text_pattern_ops) INCLUDE (email) WHERE (n > 0)"
    );
    // ANALYZE ran after the expression indexes were built: it keeps
    // statistics of their expressions under the index's name.
    let expression_statistics = scalar(
        &t,
        "SELECT string_agg(tablename || '.' || attname, ', ' ORDER BY tablename, attname) FROM pg_stats \
         WHERE schemaname = 'copy' AND tablename IN ('docs_email_ci', 'docs_mixed')",
    )
    .await;
    assert_eq!(expression_statistics, "docs_email_ci.lower, docs_mixed.expr");
    // The unique expression index holds in the target too.
    let duplicate = t.execute("INSERT INTO copy.docs (id, email) VALUES (3, 'a@X.ORG')", &[]).await;
    let refused = duplicate.unwrap_err();
    assert_eq!(refused.as_db_error().and_then(|e| e.constraint()), Some("docs_email_ci"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_column_type_stops_the_run_or_skips_its_table() {
    let (source, target) =
        setup_with("CREATE TYPE src.mood AS ENUM ('ok', 'bad'); CREATE TABLE src.odd (id int PRIMARY KEY, m src.mood)")
            .await;

    let err = transfer::run(&config(&source, &target, "target_mode: drop_recreate"), &RunOptions::default())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("src.odd") && message.contains("column m has type src.mood"), "{message}");
    assert!(message.contains("a type defined in the source database"), "{message}");

    let report = transfer::run(
        &config(&source, &target, "target_mode: drop_recreate, continue_on_error: true"),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    assert!(!report.is_success());
    let odd = report.tables.iter().find(|t| t.source == "src.odd").unwrap();
    assert_eq!(odd.status, TableStatus::Skipped);
    assert_same_data(&source, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snake_case_identifiers_and_a_target_schema_override() {
    let (source, target) = setup().await;
    let options = RunOptions { target_schema: Some("Snake Target".into()), ..RunOptions::default() };
    let report = transfer::run(&config(&source, &target, "identifier_case: snake"), &options).await.unwrap();
    // PostgreSQL expressions are only carried over with preserve: the
    // check, default and generated column are reported, not mistranslated.
    let notes: Vec<String> = report.notes().map(|n| n.message.clone()).collect();
    assert!(notes.iter().any(|n| n.contains("identifier_case: preserve")), "{notes:?}");
    let t = target.connect("dst").await.unwrap();
    let columns = scalar(
        &t,
        "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns \
         WHERE table_schema = 'Snake Target' AND table_name = 'order_lines'",
    )
    .await;
    assert_eq!(columns, "select,größe,x,mixed_case,total");
    let s = source.connect("src").await.unwrap();
    assert_eq!(rows(&s, "src", "skewed").await, rows(&t, "Snake Target", "skewed").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_a_connection_error_naming_the_server() {
    let (source, target) = setup().await;
    let mut config = config(&source, &target, "");
    config.target.port = 1; // Nothing listens on port 1 of 127.0.0.1.
    let err = transfer::run(&config, &RunOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), transfer::ErrorKind::Connection, "{err}");
    assert!(err.to_string().contains("target server at 127.0.0.1:1/dst"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_select_permission_names_the_table() {
    let (source, target) = setup().await;
    let s = source.connect("src").await.unwrap();
    s.batch_execute(
        "CREATE ROLE reader LOGIN PASSWORD 'reader-pw'; GRANT USAGE ON SCHEMA src TO reader; \
         GRANT SELECT ON ALL TABLES IN SCHEMA src TO reader; REVOKE SELECT ON src.skewed FROM reader;",
    )
    .await
    .unwrap();
    let mut cfg = config(&source, &target, "target_mode: drop_recreate");
    cfg.source.user = "reader".into();
    cfg.source.password = mssql_pg_migrate::config::Secret::new("reader-pw");
    let err = transfer::run(&cfg, &RunOptions::default()).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("src.skewed") && message.contains("permission denied"), "{message}");
    assert_eq!(err.kind(), transfer::ErrorKind::Transfer);

    // With continue_on_error the other tables complete; skewed is failed, not done.
    let cfg = {
        let mut c = config(&source, &target, "target_mode: drop_recreate, continue_on_error: true");
        c.source.user = "reader".into();
        c.source.password = mssql_pg_migrate::config::Secret::new("reader-pw");
        c
    };
    let report = transfer::run(&cfg, &RunOptions::default()).await.unwrap();
    let skewed = report.tables.iter().find(|t| t.source == "src.skewed").unwrap();
    assert_eq!(skewed.status, TableStatus::Failed);
    assert!(skewed.error.as_deref().unwrap().contains("permission denied"), "{skewed:?}");
    let t = target.connect("dst").await.unwrap();
    assert_eq!(rows(&t, "copy", "user").await, rows(&s, "src", "user").await);
    let state = scalar(&t, "SELECT state->'tables'->'src.skewed'->>'status' FROM mssql_pg_migrate.runs").await;
    assert_eq!(state, "failed", "the state does not record the table as done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_dropped_mid_run_fails_by_name_and_is_not_recorded_as_done() {
    let (source, target) = setup().await;
    let source_config = source.config("src");
    // Drops src.by_text once the run has planned its chunks, before any is read.
    let drop_on_plan: transfer::EventSink = std::sync::Arc::new(move |event: &transfer::Event| {
        if let transfer::Event::Planned { .. } = event {
            let config = source_config.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
                    tokio::spawn(connection);
                    client.batch_execute("DROP TABLE src.by_text").await.unwrap();
                });
            })
            .join()
            .unwrap();
        }
    });
    let options = RunOptions { events: Some(drop_on_plan), ..RunOptions::default() };
    let cfg = config(&source, &target, "target_mode: drop_recreate, continue_on_error: true");
    let report = transfer::run(&cfg, &options).await.unwrap();
    let by_text = report.tables.iter().find(|t| t.source == "src.by_text").unwrap();
    assert_eq!(by_text.status, TableStatus::Failed);
    let error = by_text.error.as_deref().unwrap();
    assert!(error.contains("src.by_text") && error.contains("does not exist"), "{error}");
    assert!(!report.is_success());
    let t = target.connect("dst").await.unwrap();
    let state = scalar(&t, "SELECT state->'tables'->'src.by_text'->>'status' FROM mssql_pg_migrate.runs").await;
    assert_eq!(state, "failed");
    let run_status = scalar(&t, "SELECT state->>'status' FROM mssql_pg_migrate.runs").await;
    assert_eq!(run_status, "failed", "a run with a failed table is not completed");
    let s = source.connect("src").await.unwrap();
    assert_eq!(rows(&t, "copy", "composite").await, rows(&s, "src", "composite").await, "other tables complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_early_gives_autovacuum_back_to_the_tables_it_finalized() {
    let (source, target) = setup().await;
    let mut options = RunOptions::default();
    // Stops the run as soon as the first table's finalization starts.
    let first_finalized = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let (stop, record) = (options.cancel.clone(), std::sync::Arc::clone(&first_finalized));
    options.events = Some(std::sync::Arc::new(move |event: &transfer::Event| {
        if let transfer::Event::Finalizing { step } = event
            && let Some(table) = step.strip_prefix("analyzing ")
        {
            record.lock().unwrap().get_or_insert_with(|| table.to_owned());
            stop.cancel();
        }
    }));
    let stopped = transfer::run(&config(&source, &target, "target_mode: drop_recreate"), &options).await;
    assert!(matches!(stopped, Err(TransferError::Cancelled)), "{stopped:?}");
    let finalized = first_finalized.lock().unwrap().clone().expect("a table was finalized before the stop");

    let t = target.connect("dst").await.unwrap();
    let reloptions: String = t
        .query_one(
            "SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class \
             WHERE relnamespace = 'copy'::regnamespace AND relname = $1",
            &[&finalized],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reloptions, "", "{finalized} was finalized: autovacuum is back on");
    // The tables the stop left incomplete keep autovacuum off until the resume completes them.
    let still_off = scalar(
        &t,
        "SELECT count(*)::text FROM pg_class WHERE relnamespace = 'copy'::regnamespace AND relkind = 'r' \
         AND reloptions @> ARRAY['autovacuum_enabled=false']",
    )
    .await;
    assert_ne!(still_off, "0", "the stop came before every table was complete");
}
