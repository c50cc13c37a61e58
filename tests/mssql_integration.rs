#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.
//! SQL Server → PostgreSQL against a real SQL Server named by
//! `MSSQL_TEST_URL` (`mssql://user:password@host:port/database[?trust_server_cert=true]`),
//! for example the one `cargo xtask mssql-it` starts in Docker. Without the
//! variable the test prints why it is skipped and checks nothing.

use mssql_pg_migrate::config::{Loader, Secret};
use mssql_pg_migrate::transfer::dry_run::Chunking;
use mssql_pg_migrate::transfer::source::mssql::MssqlEndpoint;
use mssql_pg_migrate::transfer::{self, DryRunOptions, Health, HealthOptions, RunOptions, ValidateOptions};
use mssql_pg_migrate_testkit::PgCluster;
use mssql_pg_migrate_tests::repo_root;

struct Url {
    endpoint: MssqlEndpoint,
}

fn parse_url(url: &str) -> Url {
    let rest = url.strip_prefix("mssql://").or_else(|| url.strip_prefix("sqlserver://")).expect("mssql:// URL");
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (credentials, address) = rest.rsplit_once('@').expect("user:password@ in MSSQL_TEST_URL");
    let (user, password) = credentials.split_once(':').expect("user:password");
    let (host_port, database) = address.split_once('/').unwrap_or((address, "master"));
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, "1433"));
    Url {
        endpoint: MssqlEndpoint {
            host: host.into(),
            port: port.parse().unwrap(),
            database: database.into(),
            user: user.into(),
            password: Secret::new(password),
            encrypt: query.contains("encrypt=true"),
            trust_server_cert: query.contains("trust_server_cert=true"),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_server_edge_cases_land_exactly() {
    let Ok(url) = std::env::var("MSSQL_TEST_URL") else {
        // Written to the process's stderr, past the harness's capture, so
        // the skip is visible in every `cargo test` run, not only a failing one.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED sql_server_edge_cases_land_exactly: MSSQL_TEST_URL is not set, so no SQL Server is available \
             (run `cargo xtask mssql-it` where Docker exists, or set MSSQL_TEST_URL)"
        );
        return;
    };
    let Url { endpoint } = parse_url(&url);
    let mut client = endpoint.connect().await.unwrap();
    let fixture = std::fs::read_to_string(repo_root().join("tests/fixtures/mssql/edge_cases.sql")).unwrap();
    for batch in fixture.split("\nGO\n").filter(|b| !b.trim().is_empty()) {
        client.simple_query(batch).await.unwrap().into_results().await.unwrap();
    }
    drop(client);

    let pg = PgCluster::start().unwrap();
    pg.create_database("dst").await.unwrap();
    let yaml = format!(
        "source: {{type: mssql, host: '{}', port: {}, database: '{}', user: '{}', password: '{}', schema: mpm_it, \
         encrypt: {}, trust_server_cert: {}}}\n\
         target: {{type: postgres, host: 127.0.0.1, port: {}, database: dst, user: postgres, password: '{}', schema: it, ssl_mode: disable}}\n\
         migration: {{chunk_size: 500, large_table_threshold: 1000, min_rows_per_partition: 500, max_partitions: 4}}\n",
        endpoint.host,
        endpoint.port,
        endpoint.database,
        endpoint.user,
        endpoint.password,
        endpoint.encrypt,
        endpoint.trust_server_cert,
        pg.port(),
        pg.password()
    );
    let config = Loader::new().load_str(&yaml, "yaml").unwrap();
    let report = transfer::run(&config, &RunOptions::default()).await.unwrap();
    assert!(report.is_success(), "{report:#?}");

    let t = pg.connect("dst").await.unwrap();
    let text = |sql: &'static str| {
        let t = &t;
        async move { t.query_one(sql, &[]).await.unwrap().get::<_, Option<String>>(0) }
    };
    let row2 = "SELECT concat_ws('|', b, ti, si, i, bi, d38, d0, m, sm, f, r, dt, tm, dtm, sdt, dt2, \
                to_char(dto AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), c, vc, nc, nvc, u, x) \
                FROM it.\"Every Type\" WHERE id = 2";
    assert_eq!(
        text(row2).await.unwrap(),
        "f|0|-32768|-2147483648|-9223372036854775808|-9999999999999999999999999999.9999999999|\
         -99999999999999999999999999999999999999|-922337203685477.5808|-214748.3648|-1.7976931348623157e+308|\
         -3.4028235e+38|0001-01-01|00:00:00|1753-01-01 00:00:00|1900-01-01 00:00:00|0001-01-01 00:00:00|\
         2024-06-01 06:49:56.789012|     ||     ||6f9619ff-8b86-d011-b42d-00c04fc964ff|<a/>"
    );
    let row3 = "SELECT concat_ws('|', m, sm, tm, dtm, dt2, to_char(dto AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), \
                c, vc, nc, nvc, x) FROM it.\"Every Type\" WHERE id = 3";
    assert_eq!(
        text(row3).await.unwrap(),
        "922337203685477.5807|214748.3647|23:59:59.999999|9999-12-31 23:59:59.997|9999-12-31 23:59:59.999999|\
         2000-01-01 14:00:00|ab   |tab\there|é😀   |quote's \"dq\" \\ 😀 𝄞|<r a=\"1\">é</r>"
    );
    let row4 = "SELECT concat_ws('|', f::text, length(vmax), md5(vmax) = md5(repeat('ab', 5500000)), length(nvmax), \
                md5(nvmax) = md5(repeat('ab😀', 2700000)), length(vb), md5(vb) = md5(convert_to(repeat('xyz', 3700000), 'UTF8')), \
                encode(bn, 'hex')) FROM it.\"Every Type\" WHERE id = 4";
    assert_eq!(text(row4).await.unwrap(), "-0|11000000|t|8100000|t|11100000|t|00ff10ab");
    assert_eq!(text("SELECT concat_ws('|', flag, total, d0) FROM it.\"Every Type\" WHERE id = 1").await.unwrap(), "t");
    assert_eq!(
        text("SELECT string_agg(concat_ws(',', \"select\", \"Größe\", \"Mixed Case\"), ';' ORDER BY 1) FROM it.\"Order \"\"Lines] x\"").await.unwrap(),
        "1,S,10;2,XL"
    );
    assert_eq!(text("SELECT count(DISTINCT id)::text FROM it.by_guid").await.unwrap(), "3000");
    assert_eq!(text("SELECT count(DISTINCT k)::text FROM it.by_text").await.unwrap(), "3000");
    assert_eq!(
        text("SELECT count(*)::text FROM pg_constraint WHERE contype = 'f' AND connamespace = 'it'::regnamespace")
            .await
            .unwrap(),
        "2"
    );
    let next =
        text("INSERT INTO it.\"Every Type\" (flag, created) VALUES (true, now()) RETURNING id::text").await.unwrap();
    assert_eq!(next, "100", "IDENTITY(100, 5) never generated a value in the source: the seed comes next");

    // The read-only commands against the same server.
    let health = transfer::health_check(&config, &HealthOptions::default()).await.unwrap();
    assert_eq!(health.health, Health::Healthy, "{health:#?}");
    let server = health.source.server.as_ref().unwrap();
    assert!(server.version.starts_with("SQL Server "), "{server:?}");
    assert_eq!(server.user, endpoint.user);
    if endpoint.encrypt {
        assert_eq!(server.tls, Some(true));
    }
    assert!(health.source.latency_ms.is_some_and(|ms| ms > 0.0));
    let validation = transfer::validate(&config, &ValidateOptions::default()).await.unwrap();
    assert!(validation.is_success(), "{validation:#?}");
    let by_guid = validation.tables.iter().find(|t| t.source == "mpm_it.by_guid").unwrap();
    assert_eq!((by_guid.source_rows, by_guid.target_rows), (3000, Some(3000)));
    let plan = transfer::dry_run(&config, &DryRunOptions::default()).await.unwrap();
    assert_eq!(plan.tables.len(), report.tables.len());
    let guid_plan = plan.tables.iter().find(|t| t.source == "mpm_it.by_guid").unwrap();
    assert!(matches!(guid_plan.chunking, Chunking::KeyScan { .. }), "{:?}", guid_plan.chunking);
}
