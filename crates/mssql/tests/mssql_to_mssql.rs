#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.
//! SQL Server → SQL Server through the crate's own pieces, against the TDS
//! server named by `MSSQL_TEST_URL` (skipped with its reason without one):
//! the edge-case fixture's catalog is read, its tables created in a second
//! database from [`ddl`], every row bulk-loaded through [`writer`], keys,
//! indexes, checks, identities and foreign keys added after the data; then
//! every value, and every schema object read back from the copy's catalog,
//! is compared with the source.

use std::collections::BTreeMap;

use futures_util::TryStreamExt as _;
use mssql_pg_migrate_mssql::reader::owned;
use mssql_pg_migrate_mssql::{catalog, ddl, writer};
use mssql_pg_migrate_schema::ident::{qualified_mssql, quote_mssql};
use mssql_pg_migrate_schema::{Column, Table};
use mssql_pg_migrate_testkit::mssql::{MSSQL_EDGE_CASE_TABLES, TestClient, TestServer, exact_rows, execute_script};
use tiberius::ColumnData;

const SOURCE_SCHEMA: &str = "mm_src";
const COPY_DATABASE: &str = "mm_copy_db";
const COPY_SCHEMA: &str = "mm_copy";

async fn execute(client: &mut TestClient, sql: &str) {
    client.execute(sql, &[]).await.unwrap_or_else(|e| panic!("{e}\nin: {sql}"));
}

/// The rows to load: the loaded columns, as tiberius decodes them.
async fn source_rows(client: &mut TestClient, table: &Table) -> Vec<Vec<ColumnData<'static>>> {
    let columns: Vec<String> = ddl::loaded_columns(table).map(writer::copy_select_expression).collect();
    let sql = format!("SELECT {} FROM {}", columns.join(", "), qualified_mssql(SOURCE_SCHEMA, &table.name));
    let mut stream = client.simple_query(sql).await.unwrap();
    let mut out = Vec::new();
    while let Some(item) = stream.try_next().await.unwrap() {
        if let Some(row) = item.into_row() {
            out.push(row.cells().map(|(_, cell)| owned(cell)).collect());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_between_two_databases_keeps_every_value_key_index_check_and_identity() {
    let Some(server) =
        TestServer::from_env("a_copy_between_two_databases_keeps_every_value_key_index_check_and_identity")
    else {
        return;
    };
    server.load_edge_cases(SOURCE_SCHEMA).await;
    let mut source = server.connect().await.unwrap();
    let babelfish = server.is_babelfish().await;
    let wanted = |_: &str, name: &str| MSSQL_EDGE_CASE_TABLES.contains(&name);
    let tables = catalog::read_schema(&mut source, None, SOURCE_SCHEMA, babelfish, &wanted).await.unwrap();
    assert_eq!(tables.len(), MSSQL_EDGE_CASE_TABLES.len(), "{:?}", tables.iter().map(|t| &t.name).collect::<Vec<_>>());

    let mut admin = server.connect().await.unwrap();
    execute_script(
        &mut admin,
        &format!(
            "IF DB_ID(N'{COPY_DATABASE}') IS NOT NULL DROP DATABASE {COPY_DATABASE}\nGO\nCREATE DATABASE {COPY_DATABASE}\nGO\n"
        ),
    )
    .await;
    let copy_server = TestServer { database: COPY_DATABASE.into(), ..server.clone() };
    let mut copy = copy_server.connect().await.unwrap();
    execute(&mut copy, &format!("CREATE SCHEMA {}", quote_mssql(COPY_SCHEMA))).await;

    // Bare tables, then the data, then everything that checks it.
    for table in &tables {
        execute(&mut copy, &ddl::create_table(COPY_SCHEMA, table).unwrap()).await;
    }
    let mut loaded = BTreeMap::new();
    for table in &tables {
        let rows = source_rows(&mut source, table).await;
        let expected = rows.len() as u64;
        let taken = writer::bulk_load(&mut copy, COPY_SCHEMA, table, rows, babelfish).await.unwrap();
        assert_eq!(taken, expected, "{}", table.name);
        loaded.insert(table.name.clone(), taken);
    }
    for table in &tables {
        let statements = ddl::primary_key(COPY_SCHEMA, table)
            .into_iter()
            .chain(ddl::unique_constraints(COPY_SCHEMA, table))
            .chain(ddl::indexes(COPY_SCHEMA, table))
            .chain(ddl::checks(COPY_SCHEMA, table))
            .chain(ddl::reseed_identity(COPY_SCHEMA, table));
        for sql in statements {
            execute(&mut copy, &sql).await;
        }
    }
    for table in &tables {
        for sql in ddl::foreign_keys(COPY_SCHEMA, table) {
            execute(&mut copy, &sql).await;
        }
    }
    assert_eq!(loaded["skewed"], 4_103);
    assert_eq!(loaded["employees"], 2_000);
    assert_eq!(loaded["empty_table"], 0);

    // Every value, compared in its exact decoded form.
    for table in &tables {
        let ours = exact_rows(&mut copy, COPY_SCHEMA, &table.name).await;
        let theirs = exact_rows(&mut source, SOURCE_SCHEMA, &table.name).await;
        assert_eq!(ours.len(), theirs.len(), "{}", table.name);
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a, b, "a row of {}", table.name);
        }
    }
    // A NULL with a default stays NULL; datetime2(7) keeps its last digit
    // where the server has it.
    let one_row = tables.iter().find(|t| t.name == "one_row").unwrap();
    assert_eq!(exact_rows(&mut copy, COPY_SCHEMA, &one_row.name).await, [["I32(Some(42))", "String(None)"]]);

    // The copy's catalog, read as the source's is, holds the same objects.
    let copied = catalog::read_schema(&mut copy, None, COPY_SCHEMA, babelfish, &wanted).await.unwrap();
    for (source_table, copy_table) in tables.iter().zip(&copied) {
        assert_eq!(source_table.name, copy_table.name);
        let shape = |t: &Table| {
            t.columns
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        match &c.data_type {
                            mssql_pg_migrate_schema::ColumnType::Mssql(ty) => ddl::copy_type(ty).to_string(),
                            other => other.to_string(),
                        },
                        c.nullable,
                        c.identity.map(|i| (i.seed, i.increment)),
                        c.computed.as_ref().map(|x| x.persisted),
                        c.default.is_some(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(shape(copy_table), shape(source_table), "columns of {}", source_table.name);
        assert_eq!(copy_table.primary_key, source_table.primary_key, "primary key of {}", source_table.name);
        assert_eq!(copy_table.unique_constraints, source_table.unique_constraints, "{}", source_table.name);
        let indexes = |t: &Table| {
            let mut v: Vec<_> = t
                .indexes
                .iter()
                .map(|i| (i.name.clone(), i.columns.clone(), i.included.clone(), i.unique, i.filter.is_some()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(indexes(copy_table), indexes(source_table), "indexes of {}", source_table.name);
        let named = |t: &Table| t.checks.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(named(copy_table), named(source_table), "checks of {}", source_table.name);
        let fks = |t: &Table| {
            t.foreign_keys
                .iter()
                .map(|f| (f.name.clone(), f.columns.clone(), f.referenced_table.clone(), f.on_delete, f.on_update))
                .collect::<Vec<_>>()
        };
        assert_eq!(fks(copy_table), fks(source_table), "foreign keys of {}", source_table.name);
    }

    // The next identity value is the one the source would give.
    let next_id = |schema: &str| {
        format!(
            "INSERT INTO {} (Created) VALUES ('2024-01-01'); SELECT CAST(SCOPE_IDENTITY() AS int)",
            qualified_mssql(schema, "AllTypes")
        )
    };
    let theirs = scalar(&mut source, &next_id(SOURCE_SCHEMA)).await;
    let ours = scalar(&mut copy, &next_id(COPY_SCHEMA)).await;
    assert_eq!(ours, theirs, "the copy's next identity");

    // A value above 64 KB in a table without a key has no row to be
    // written into after the load: the load stops, naming the column.
    let keyless = Table::new(
        SOURCE_SCHEMA,
        "keyless_big",
        vec![{
            let mut body = Column::new(
                "Body",
                mssql_pg_migrate_schema::ColumnType::Mssql(mssql_pg_migrate_typemap::MssqlType::NVarChar(
                    mssql_pg_migrate_typemap::Length::Max,
                )),
            );
            body.nullable = true;
            body
        }],
    );
    execute(&mut copy, &ddl::create_table(COPY_SCHEMA, &keyless).unwrap()).await;
    let big = vec![vec![ColumnData::String(Some("x".repeat(40_000).into()))]];
    let error = writer::bulk_load(&mut copy, COPY_SCHEMA, &keyless, big, babelfish).await.unwrap_err();
    assert!(
        matches!(&error, mssql_pg_migrate_dialect::TransferError::Value { column, .. } if column == "Body"),
        "{error:?}"
    );
    assert!(error.to_string().contains("no primary key"), "{error}");
    // A failed load leaves its session mid-protocol: the next load takes another.
    drop(copy);
    let mut copy = copy_server.connect().await.unwrap();
    let small = vec![vec![ColumnData::String(Some("x".repeat(30_000).into()))]];
    assert_eq!(writer::bulk_load(&mut copy, COPY_SCHEMA, &keyless, small, babelfish).await.unwrap(), 1);
    let stored = scalar(
        &mut copy,
        &format!("SELECT CAST(LEN(Body) AS int) FROM {}", qualified_mssql(COPY_SCHEMA, "keyless_big")),
    )
    .await;
    assert_eq!(stored, ColumnData::I32(Some(30_000)));

    drop(copy);
    execute_script(&mut admin, &format!("DROP DATABASE {COPY_DATABASE}\nGO\n")).await;
}

async fn scalar(client: &mut TestClient, sql: &str) -> ColumnData<'static> {
    let rows = client.simple_query(sql).await.unwrap().into_results().await.unwrap();
    let row = rows.into_iter().flatten().next().expect("a row");
    owned(row.cells().next().expect("a cell").1)
}
