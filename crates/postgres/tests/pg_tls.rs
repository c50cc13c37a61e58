//! TLS to PostgreSQL with each `ssl_mode`, against a throwaway cluster
//! whose certificates are made here (a test CA, a server certificate for
//! 127.0.0.1/localhost, one for another host, an expired one, a client
//! certificate): what connects, what is refused and with which advice, and
//! what `pg_stat_ssl` and the health words say.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use mssql_pg_migrate_config::{Secret, SslMode};
use mssql_pg_migrate_dialect::Side;
use mssql_pg_migrate_postgres::pool::{PgEndpoint, PgPool};
use mssql_pg_migrate_postgres::reader::probe_pg;
use mssql_pg_migrate_postgres::tls::TlsFiles;
use mssql_pg_migrate_testkit::{PgCluster, SUPERUSER};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    Ca { cert: params.self_signed(&key).unwrap(), key }
}

/// A certificate for `names` (DNS names or IP addresses) signed by `ca`,
/// as PEM (certificate, key); `expired` makes it valid only in 2000.
fn issue(ca: &Ca, common_name: &str, names: &[&str], expired: bool) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, common_name);
    for name in names {
        params.subject_alt_names.push(match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*name).try_into().unwrap()),
        });
    }
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2000, 12, 31);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes `text` where the server can read it and libpq-style key checks
/// pass (owned by the data directory's owner, mode 0600).
fn write_for_server(cluster: &PgCluster, name: &str, text: &str) -> PathBuf {
    let path = cluster.dir().join(name);
    std::fs::write(&path, text).unwrap();
    let owner = std::fs::metadata(cluster.dir().join("data")).unwrap();
    std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn write_for_client(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Serves `cert_and_key` from now on (`ssl` is reloadable).
async fn serve(cluster: &PgCluster, name: &str, (cert, key): &(String, String), ca_pem: &str) {
    let cert = write_for_server(cluster, &format!("{name}.crt"), cert);
    let key = write_for_server(cluster, &format!("{name}.key"), key);
    let ca = write_for_server(cluster, "clients-ca.crt", ca_pem);
    let admin = cluster.connect("postgres").await.unwrap();
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "''"));
    // One statement per round trip: ALTER SYSTEM refuses a transaction block.
    for statement in [
        "ALTER SYSTEM SET ssl = on".to_owned(),
        format!("ALTER SYSTEM SET ssl_cert_file = {}", quote(&cert)),
        format!("ALTER SYSTEM SET ssl_key_file = {}", quote(&key)),
        format!("ALTER SYSTEM SET ssl_ca_file = {}", quote(&ca)),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    // The postmaster applies a reload asynchronously.
    std::thread::sleep(std::time::Duration::from_millis(500));
}

fn endpoint(cluster: &PgCluster, host: &str, ssl_mode: SslMode, tls: TlsFiles) -> PgEndpoint {
    PgEndpoint {
        host: host.into(),
        port: cluster.port(),
        database: "postgres".into(),
        user: SUPERUSER.into(),
        password: Secret::new(cluster.password()),
        ssl_mode,
        tls,
    }
}

/// The probe's (encrypted, words), or the connection error.
async fn connect(e: &PgEndpoint) -> Result<(Option<bool>, String), String> {
    let pool = PgPool::new(e, Side::Target, 1).map_err(|e| e.to_string())?;
    let probe = probe_pg(&pool, Side::Target).await.map_err(|e| e.to_string())?;
    Ok((probe.tls, probe.tls_detail.unwrap_or_default()))
}

/// A cluster (TLS still off), a folder for the client's files, and the
/// test CA with its PEM there.
struct Fixture {
    cluster: PgCluster,
    files: tempfile::TempDir,
    ca: Ca,
    ca_pem: String,
    ca_file: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let files = tempfile::tempdir().unwrap();
        let ca = ca("mssql-pg-migrate test CA");
        let ca_pem = ca.cert.pem();
        let ca_file = write_for_client(files.path(), "ca.pem", &ca_pem);
        Fixture { cluster: PgCluster::start().unwrap(), files, ca, ca_pem, ca_file }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ssl_mode_connects_or_refuses_as_libpq_does_and_says_why() {
    let Fixture { cluster, files, ca, ca_pem, ca_file } = Fixture::new();
    let with_ca = TlsFiles { root_cert: Some(ca_file.clone()), ..TlsFiles::default() };
    let none = TlsFiles::default;

    // Without TLS on the server: disable and prefer connect in clear; require is refused.
    let (tls, words) = connect(&endpoint(&cluster, "127.0.0.1", SslMode::Prefer, none())).await.unwrap();
    assert_eq!((tls, words.as_str()), (Some(false), "not encrypted"));
    let refused = connect(&endpoint(&cluster, "127.0.0.1", SslMode::Require, none())).await.unwrap_err();
    assert!(refused.contains("does not offer TLS") && refused.contains("target.ssl_mode"), "{refused}");

    serve(&cluster, "good", &issue(&ca, "server", &["localhost", "127.0.0.1"], false), &ca_pem).await;
    let (tls, _) = connect(&endpoint(&cluster, "127.0.0.1", SslMode::Disable, none())).await.unwrap();
    assert_eq!(tls, Some(false), "disable never encrypts");
    for mode in [SslMode::Prefer, SslMode::Require] {
        let (tls, words) = connect(&endpoint(&cluster, "127.0.0.1", mode, none())).await.unwrap();
        assert_eq!(tls, Some(true), "{mode:?}");
        assert!(words.starts_with("TLSv1.") && words.ends_with("certificate not verified"), "{mode:?}: {words}");
    }
    let (tls, words) = connect(&endpoint(&cluster, "127.0.0.1", SslMode::VerifyFull, with_ca.clone())).await.unwrap();
    assert_eq!(tls, Some(true));
    assert!(words.ends_with("certificate and host name verified"), "{words}");
    let (_, words) = connect(&endpoint(&cluster, "localhost", SslMode::VerifyFull, with_ca.clone())).await.unwrap();
    assert!(words.ends_with("certificate and host name verified"), "by DNS name too: {words}");

    // A CA the connection does not trust (the system's roots do not hold the test CA).
    let unknown = connect(&endpoint(&cluster, "127.0.0.1", SslMode::VerifyFull, none())).await.unwrap_err();
    assert!(unknown.contains("target.ssl_root_cert"), "{unknown}");
    let other_ca = write_for_client(files.path(), "other-ca.pem", &self::ca("another test CA").cert.pem());
    let wrong_ca = TlsFiles { root_cert: Some(other_ca), ..TlsFiles::default() };
    let refused = connect(&endpoint(&cluster, "127.0.0.1", SslMode::VerifyCa, wrong_ca)).await.unwrap_err();
    assert!(refused.contains("not signed by a CA this connection trusts"), "{refused}");

    // A certificate for another host: verify-full refuses, verify-ca accepts.
    serve(&cluster, "elsewhere", &issue(&ca, "server", &["db.elsewhere.invalid"], false), &ca_pem).await;
    let refused = connect(&endpoint(&cluster, "127.0.0.1", SslMode::VerifyFull, with_ca.clone())).await.unwrap_err();
    assert!(refused.contains("not for 127.0.0.1") && refused.contains("verify-ca"), "{refused}");
    let (_, words) = connect(&endpoint(&cluster, "127.0.0.1", SslMode::VerifyCa, with_ca.clone())).await.unwrap();
    assert!(words.ends_with("certificate chain verified (host name not checked)"), "{words}");

    // An expired certificate.
    serve(&cluster, "expired", &issue(&ca, "server", &["127.0.0.1"], true), &ca_pem).await;
    let refused = connect(&endpoint(&cluster, "127.0.0.1", SslMode::VerifyCa, with_ca.clone())).await.unwrap_err();
    assert!(refused.contains("expired"), "{refused}");
    let (tls, _) = connect(&endpoint(&cluster, "127.0.0.1", SslMode::Require, none())).await.unwrap();
    assert_eq!(tls, Some(true), "require does not look at the certificate, as libpq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_demands_a_client_certificate_gets_one() {
    let Fixture { cluster, files, ca, ca_pem, ca_file } = Fixture::new();
    serve(&cluster, "good", &issue(&ca, "server", &["127.0.0.1"], false), &ca_pem).await;
    // TLS sessions must show a certificate whose CN is the login.
    let hba = cluster.dir().join("data").join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full\n{rules}"))
        .unwrap();
    cluster.connect("postgres").await.unwrap().batch_execute("SELECT pg_reload_conf()").await.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));

    let without = TlsFiles { root_cert: Some(ca_file.clone()), ..TlsFiles::default() };
    let refused = connect(&endpoint(&cluster, "127.0.0.1", SslMode::VerifyFull, without)).await.unwrap_err();
    assert!(refused.contains("target.ssl_cert"), "{refused}");

    let (cert, key) = issue(&ca, SUPERUSER, &[], false);
    let with = TlsFiles {
        root_cert: Some(ca_file),
        client_cert: Some(write_for_client(files.path(), "client.crt", &cert)),
        client_key: Some(write_for_client(files.path(), "client.key", &key)),
    };
    let (tls, words) = connect(&endpoint(&cluster, "127.0.0.1", SslMode::VerifyFull, with)).await.unwrap();
    assert_eq!(tls, Some(true));
    assert!(words.ends_with("certificate and host name verified"), "{words}");
}

/// What a `side` session of the pool at `e` shows for `setting`.
async fn session_setting(e: &PgEndpoint, side: Side, setting: &str) -> String {
    let pool = PgPool::new(e, side, 1).unwrap();
    let client = pool.get(side).await.unwrap();
    client.query_one(&format!("SHOW {setting}"), &[]).await.unwrap().get::<_, String>(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_sessions_commit_durably_even_where_the_server_does_not() {
    // The test clusters run with synchronous_commit = off.
    let cluster = PgCluster::start().unwrap();
    let e = endpoint(&cluster, "127.0.0.1", SslMode::Disable, TlsFiles::default());
    assert_eq!(session_setting(&e, Side::Target, "synchronous_commit").await, "on");
    let source = session_setting(&e, Side::Source, "synchronous_commit").await;
    assert_eq!(source, "off", "a source is only read: left as the server has it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_sessions_sort_key_builds_in_at_least_256_mb() {
    let cluster = PgCluster::start().unwrap();
    let e = endpoint(&cluster, "127.0.0.1", SslMode::Disable, TlsFiles::default());
    let memory = "maintenance_work_mem";
    assert_eq!(session_setting(&e, Side::Target, memory).await, "256MB", "raised from the server's 64MB");
    assert_eq!(session_setting(&e, Side::Source, memory).await, "64MB", "a source is only read");
    let admin = cluster.connect("postgres").await.unwrap();
    admin.batch_execute("ALTER SYSTEM SET maintenance_work_mem = '1GB'").await.unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(session_setting(&e, Side::Target, memory).await, "1GB", "a server set higher keeps its setting");
}

/// A COPY OUT's bytes through a pool session at `e`, all messages joined.
async fn copy_bytes(e: &PgEndpoint, sql: &str) -> (Vec<u8>, usize) {
    use futures_util::TryStreamExt as _;
    let pool = PgPool::new(e, Side::Source, 1).unwrap();
    let client = pool.get(Side::Source).await.unwrap();
    let messages: Vec<bytes::Bytes> = client.copy_out(sql).await.unwrap().try_collect().await.unwrap();
    (messages.concat(), messages.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_out_over_tls_is_left_as_the_server_sent_it() {
    // The socket joins COPY rows only where it can frame the protocol; TLS
    // records pass through it untouched.
    let Fixture { cluster, ca, ca_pem, .. } = Fixture::new();
    serve(&cluster, "good", &issue(&ca, "server", &["127.0.0.1"], false), &ca_pem).await;
    let sql = "COPY (SELECT i, md5(i::text) FROM generate_series(1, 20000) AS i ORDER BY i) TO STDOUT (FORMAT binary)";
    let (clear, clear_messages) =
        copy_bytes(&endpoint(&cluster, "127.0.0.1", SslMode::Disable, TlsFiles::default()), sql).await;
    let (encrypted, tls_messages) =
        copy_bytes(&endpoint(&cluster, "127.0.0.1", SslMode::Require, TlsFiles::default()), sql).await;
    assert!(encrypted == clear, "the same bytes either way");
    assert!(clear_messages < 2_000, "in clear, rows joined: {clear_messages} messages");
    assert!(tls_messages >= 20_000, "under TLS, one message per row: {tls_messages}");
}
