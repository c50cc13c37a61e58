//! The harness against a real server: create, fill, query, and clean up.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};

use mssql_pg_migrate_testkit::PgCluster;

#[tokio::test]
async fn a_throwaway_cluster_creates_fills_and_queries_a_table() {
    let cluster = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cluster.host(), "127.0.0.1");
    cluster.create_database("Shop Floor").await.unwrap();
    let client = cluster.connect("Shop Floor").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE \"Orders\" (id int PRIMARY KEY, customer text NOT NULL, total numeric(10,2));
             INSERT INTO \"Orders\" VALUES (1, 'Ada', 12.50), (2, 'Grace', NULL), (3, 'Émile 😀', 0.01);",
        )
        .await
        .unwrap();
    let rows = client.query("SELECT id, customer, total::text FROM \"Orders\" ORDER BY id", &[]).await.unwrap();
    let got: Vec<(i32, String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        got,
        [
            (1, "Ada".to_owned(), Some("12.50".to_owned())),
            (2, "Grace".to_owned(), None),
            (3, "Émile 😀".to_owned(), Some("0.01".to_owned())),
        ]
    );
    let encoding: String = client.query_one("SHOW server_encoding", &[]).await.unwrap().get(0);
    assert_eq!(encoding, "UTF8");
}

#[tokio::test]
async fn the_cluster_requires_its_password_and_vanishes_when_dropped() {
    let cluster = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let mut wrong = cluster.config("postgres");
    wrong.password("not-the-password");
    let Err(err) = wrong.connect(tokio_postgres::NoTls).await else { panic!("a wrong password was accepted") };
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD), "{err:?}");

    let (port, dir) = (cluster.port(), cluster.dir().to_owned());
    assert!(dir.join("data/PG_VERSION").is_file());
    drop(cluster);
    assert!(!dir.exists(), "the cluster folder is removed");
    assert!(
        TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_err(),
        "nothing listens on port {port} any more"
    );
}

#[tokio::test]
async fn two_clusters_run_side_by_side() {
    let (a, b) = (PgCluster::start().unwrap(), PgCluster::start().unwrap());
    assert_ne!(a.port(), b.port());
    let (ca, cb) = (a.connect("postgres").await.unwrap(), b.connect("postgres").await.unwrap());
    ca.batch_execute("CREATE TABLE only_in_a (x int)").await.unwrap();
    let in_b: i64 =
        cb.query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'", &[]).await.unwrap().get(0);
    assert_eq!(in_b, 0);
}
