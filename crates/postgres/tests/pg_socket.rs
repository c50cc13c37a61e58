//! The pool's own socket (`socket::BufferedConnect`): rows narrower and
//! wider than its read buffer arrive whole and in order, a COPY OUT's rows
//! arrive joined into fewer messages with the server's bytes, a host name
//! resolves, and a server that is not there is reported by address as an
//! outage (a retry may find it back).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use mssql_pg_migrate_config::{Secret, SslMode};
use mssql_pg_migrate_dialect::{Side, TransferError, Transience};
use mssql_pg_migrate_postgres::pool::{PgEndpoint, PgPool};
use mssql_pg_migrate_postgres::socket::READ_BUFFER_BYTES;
use mssql_pg_migrate_postgres::tls::TlsFiles;
use mssql_pg_migrate_testkit::{PgCluster, SUPERUSER};

fn endpoint(host: &str, port: u16, password: &str) -> PgEndpoint {
    PgEndpoint {
        host: host.into(),
        port,
        database: "postgres".into(),
        user: SUPERUSER.into(),
        password: Secret::new(password),
        ssl_mode: SslMode::Prefer,
        tls: TlsFiles::default(),
    }
}

/// The messages of a COPY OUT, as the driver hands them out.
async fn copy_messages(client: &tokio_postgres::Client, sql: &str) -> Vec<Bytes> {
    client.copy_out(sql).await.unwrap().try_collect().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_out_rows_arrive_joined_with_the_servers_bytes_in_order() {
    let cluster = PgCluster::start().unwrap();
    // Rows of 0 to 2,000 bytes, and a few of 100 KB, larger than a joined message.
    let sql = "COPY (SELECT i, repeat(chr(97 + i % 26), CASE WHEN i % 9973 = 0 THEN 100000 ELSE i % 2000 END) \
               FROM generate_series(1, 60000) AS i ORDER BY i) TO STDOUT (FORMAT binary)";
    // The reference: the driver on its own socket, one message per row.
    let (plain, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={SUPERUSER} password={} dbname=postgres",
            cluster.port(),
            cluster.password()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let reference = copy_messages(&plain, sql).await;
    assert!(reference.len() >= 60_000, "one message per row: {}", reference.len());
    let reference = reference.concat();

    // Framed from the first byte (disable) and after the server's refusal of TLS (prefer).
    for ssl_mode in [SslMode::Disable, SslMode::Prefer] {
        let endpoint = PgEndpoint { ssl_mode, ..endpoint("127.0.0.1", cluster.port(), cluster.password()) };
        let pool = PgPool::new(&endpoint, Side::Source, 1).unwrap();
        let client = pool.get(Side::Source).await.unwrap();
        let joined = copy_messages(&client, sql).await;
        assert!(joined.len() < 6_000, "{ssl_mode:?}: rows joined, {} messages for 60,000 rows", joined.len());
        assert!(joined.iter().all(|m| m.len() <= 100_000 + 64 * 1024), "{ssl_mode:?}: no message beyond the limit");
        assert!(joined.concat() == reference, "{ssl_mode:?}: the server's bytes, in order");
        // The session goes on as before: the next statement's answer is framed right.
        let one: i32 = client.query_one("SELECT 41 + 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 42, "{ssl_mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_every_width_cross_the_buffered_socket_intact() {
    let cluster = PgCluster::start().unwrap();
    let pool = PgPool::new(&endpoint("localhost", cluster.port(), cluster.password()), Side::Source, 2).unwrap();
    let client = pool.get(Side::Source).await.unwrap();

    // 200,000 narrow rows: many messages per read of the socket.
    let rows = client
        .query("SELECT i, repeat(chr(97 + i % 26), i % 50) FROM generate_series(1, 200000) AS i ORDER BY i", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 200_000);
    for (n, row) in rows.iter().enumerate() {
        let i = n + 1;
        assert_eq!(row.get::<_, i32>(0) as usize, i);
        let letter = char::from(b'a' + u8::try_from(i % 26).unwrap());
        assert_eq!(row.get::<_, String>(1), letter.to_string().repeat(i % 50), "row {i}");
    }

    // Values several times the buffer, each one a message that spans many reads.
    let wide = READ_BUFFER_BYTES * 3 + 17;
    let rows = client
        .query(
            "SELECT n, repeat(chr(65 + n), $1::int) FROM generate_series(0, 3) AS n ORDER BY n",
            &[&i32::try_from(wide).unwrap()],
        )
        .await
        .unwrap();
    for (n, row) in rows.iter().enumerate() {
        let text: String = row.get(1);
        assert_eq!(text.len(), wide);
        let letter = char::from(b'A' + u8::try_from(n).unwrap());
        assert!(text.chars().all(|c| c == letter), "row {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_is_an_outage_named_by_its_address() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pool = PgPool::new(&endpoint("127.0.0.1", port, "unused"), Side::Target, 1).unwrap();
    let error = pool.get(Side::Target).await.unwrap_err();
    let TransferError::Connect { side, address, message, transience } = &error else {
        panic!("not a connect error: {error:?}");
    };
    assert_eq!(*side, Side::Target);
    assert_eq!(address, &format!("127.0.0.1:{port}/postgres"));
    assert!(message.contains(&format!("could not connect to 127.0.0.1:{port}")), "{message}");
    assert_eq!(*transience, Transience::Outage, "{message}");
}
