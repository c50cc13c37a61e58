//! The SQL Server side of the tests: the server `MSSQL_TEST_URL` names (SQL
//! Server, or the Babelfish TDS server `.ci/tds-server` starts), the T-SQL
//! edge-case fixture loaded into a schema of the test's own, and the
//! PostgreSQL rows the migrated fixture must equal.

use std::path::PathBuf;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

/// The tables of `tests/fixtures/mssql/edge_cases.sql`, as declared.
pub const MSSQL_EDGE_CASE_TABLES: &[&str] = &[
    "AllTypes",
    "Order \"Lines\" x",
    "user",
    "skewed",
    "composite",
    "by_guid",
    "by_text",
    "no_key",
    "empty_table",
    "one_row",
    "ca",
    "cb",
    "employees",
];

/// A tiberius client over TCP.
pub type TestClient = Client<Compat<TcpStream>>;

/// The server `MSSQL_TEST_URL` names:
/// `mssql://user:password@host:port/database[?encrypt=true&trust_server_cert=true][&ca_cert=PATH]`;
/// `ca_cert` names the CA file that signed the server's certificate (the
/// test TDS server's own, self-signed), for tests of verification.
#[derive(Clone)]
pub struct TestServer {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    pub encrypt: bool,
    pub trust_server_cert: bool,
    pub ca_cert: Option<String>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestServer({}@{}:{}/{})", self.user, self.host, self.port, self.database)
    }
}

impl TestServer {
    /// Reads a URL of the form above.
    ///
    /// # Errors
    /// What part of the URL is missing.
    pub fn parse(url: &str) -> Result<TestServer, String> {
        let rest = url
            .strip_prefix("mssql://")
            .or_else(|| url.strip_prefix("sqlserver://"))
            .ok_or("MSSQL_TEST_URL must start with mssql://")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (credentials, address) = rest.rsplit_once('@').ok_or("MSSQL_TEST_URL needs user:password@")?;
        let (user, password) = credentials.split_once(':').ok_or("MSSQL_TEST_URL needs user:password@")?;
        let (host_port, database) = address.split_once('/').unwrap_or((address, "master"));
        let (host, port) = host_port.split_once(':').unwrap_or((host_port, "1433"));
        let flag = |name: &str| query.split('&').any(|kv| kv == format!("{name}=true"));
        // The password may hold '@' or ':'; the user and host may not.
        Ok(TestServer {
            host: host.into(),
            port: port.parse().map_err(|_| format!("port {port:?} in MSSQL_TEST_URL is not a number"))?,
            database: database.into(),
            user: user.into(),
            password: password.into(),
            encrypt: flag("encrypt"),
            trust_server_cert: flag("trust_server_cert"),
            ca_cert: query.split('&').find_map(|kv| kv.strip_prefix("ca_cert=")).map(str::to_owned),
        })
    }

    /// The server of `MSSQL_TEST_URL`, or `None` with the reason `test` is
    /// skipped written past the test harness's capture, so a skip is
    /// visible in every run.
    ///
    /// # Panics
    /// When the variable is set but is not a URL of the form above.
    pub fn from_env(test: &str) -> Option<TestServer> {
        let Ok(url) = std::env::var("MSSQL_TEST_URL") else {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: MSSQL_TEST_URL is not set, so no SQL Server is available \
                 (`.ci/run` starts one from ../shared/babelfish; `cargo xtask mssql-it` uses Docker or that server)"
            );
            return None;
        };
        match TestServer::parse(&url) {
            Ok(server) => Some(server),
            Err(e) => panic!("{e}"),
        }
    }

    /// The URL form [`TestServer::parse`] reads.
    pub fn url(&self) -> String {
        let ca = self.ca_cert.as_deref().map(|path| format!("&ca_cert={path}")).unwrap_or_default();
        format!(
            "mssql://{}:{}@{}:{}/{}?encrypt={}&trust_server_cert={}{ca}",
            self.user, self.password, self.host, self.port, self.database, self.encrypt, self.trust_server_cert
        )
    }

    /// Opens a connection.
    ///
    /// # Errors
    /// The connection's error, as text.
    pub async fn connect(&self) -> Result<TestClient, String> {
        let mut config = Config::new();
        config.host(&self.host);
        config.port(self.port);
        config.database(&self.database);
        config.authentication(AuthMethod::sql_server(&self.user, &self.password));
        config.encryption(if self.encrypt { EncryptionLevel::Required } else { EncryptionLevel::Off });
        if self.trust_server_cert {
            config.trust_cert();
        }
        let tcp = TcpStream::connect(config.get_addr()).await.map_err(|e| e.to_string())?;
        Client::connect(config, tcp.compat_write()).await.map_err(|e| e.to_string())
    }

    /// The `source:` section of a config for schema `schema`, with the
    /// password taken from `password` (a literal or a `${VARIABLE}`).
    pub fn source_yaml(&self, schema: &str, password: &str) -> String {
        format!(
            "source: {{type: mssql, host: '{}', port: {}, database: '{}', user: '{}', password: '{password}', \
             schema: {schema}, encrypt: {}, trust_server_cert: {}}}\n",
            self.host, self.port, self.database, self.user, self.encrypt, self.trust_server_cert
        )
    }

    /// Loads the edge-case fixture into `schema` (dropping what an earlier
    /// run left there).
    ///
    /// # Panics
    /// When a batch fails, naming it.
    pub async fn load_edge_cases(&self, schema: &str) {
        let fixture = std::fs::read_to_string(fixtures().join("edge_cases.sql")).expect("the T-SQL fixture");
        let mut client = self.connect().await.unwrap_or_else(|e| panic!("connecting to {self:?}: {e}"));
        execute_script(&mut client, &fixture.replace("mpm_it", schema)).await;
    }

    /// Loads the edge-case fixture into `schema` with `AllTypes` lacking its
    /// `sql_variant` column, for what cannot take one (a SQL Server target).
    ///
    /// The column is cut from the script rather than dropped afterwards:
    /// Babelfish's catalog views check column privileges by name, so a
    /// `DROP COLUMN` fails another session's catalog read that started
    /// before it ("column \"sv\" … does not exist").
    ///
    /// # Panics
    /// When the fixture no longer has the spans this cuts, or a batch fails.
    pub async fn load_edge_cases_without_sql_variant(&self, schema: &str) {
        let mut fixture = std::fs::read_to_string(fixtures().join("edge_cases.sql")).expect("the T-SQL fixture");
        for (span, times) in [
            (" sv sql_variant NULL,", 1),
            (" img, sv,", 2),
            (" CAST(-7 AS int),", 1),
            (" CAST(N'variant ✓' AS nvarchar(20)),", 1),
        ] {
            assert_eq!(fixture.matches(span).count(), times, "the fixture's sql_variant span {span:?}");
            fixture = fixture.replace(span, if span.starts_with(" img") { " img," } else { "" });
        }
        let mut client = self.connect().await.unwrap_or_else(|e| panic!("connecting to {self:?}: {e}"));
        execute_script(&mut client, &fixture.replace("mpm_it", schema)).await;
    }

    /// Whether the server is Babelfish (`SERVERPROPERTY('Babelfish')` is 1;
    /// SQL Server answers NULL).
    pub async fn is_babelfish(&self) -> bool {
        let Ok(mut client) = self.connect().await else { return false };
        let Ok(stream) = client.simple_query("SELECT CAST(SERVERPROPERTY('Babelfish') AS int)").await else {
            return false;
        };
        matches!(stream.into_row().await.map(|r| r.map(|r| r.try_get::<i32, usize>(0))), Ok(Some(Ok(Some(1)))))
    }
}

/// The test TDS server `.ci/tds-server` started, which a test may stop and
/// start again: its folder is in `MSSQL_TEST_SERVER_DIR` (set by `.ci/run`).
#[derive(Debug, Clone)]
pub struct RestartableServer {
    dir: PathBuf,
}

impl RestartableServer {
    /// The server `MSSQL_TEST_SERVER_DIR` names, or `None` with the reason
    /// `test` is skipped written past the test harness's capture.
    pub fn from_env(test: &str) -> Option<RestartableServer> {
        match std::env::var_os("MSSQL_TEST_SERVER_DIR") {
            Some(dir) => Some(RestartableServer { dir: PathBuf::from(dir) }),
            None => {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: MSSQL_TEST_SERVER_DIR is not set, so the SQL Server cannot be restarted \
                     (`.ci/run` sets it for the TDS server it starts)"
                );
                None
            }
        }
    }

    /// Stops the server at once: every session ends, as in a crash or failover.
    ///
    /// # Errors
    /// The script's complaint.
    pub fn stop(&self) -> Result<(), String> {
        self.control("stop")
    }

    /// Starts the stopped server again, same port and certificate.
    ///
    /// # Errors
    /// The script's complaint.
    pub fn start(&self) -> Result<(), String> {
        self.control("start")
    }

    fn control(&self, verb: &str) -> Result<(), String> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/tds-server");
        let out = std::process::Command::new(script)
            .arg(verb)
            .arg(&self.dir)
            .output()
            .map_err(|e| format!("running .ci/tds-server {verb}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(".ci/tds-server {verb} failed: {}", String::from_utf8_lossy(&out.stderr)))
        }
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mssql")
}

/// Runs a T-SQL script batch by batch (batches end at lines holding only `GO`).
///
/// # Panics
/// When a batch fails, naming it.
pub async fn execute_script(client: &mut TestClient, script: &str) {
    for batch in script.split("\nGO\n").filter(|b| !b.trim().is_empty()) {
        let failed = |e: tiberius::error::Error| -> ! { panic!("{e}\nin batch:\n{batch:.400}") };
        let results = client.simple_query(batch).await.unwrap_or_else(|e| failed(e));
        results.into_results().await.unwrap_or_else(|e| failed(e));
    }
}

/// Every row of table `schema.table`, each cell in an exact text form,
/// sorted, so two copies of a table compare value by value whatever their
/// row order. Money is read as exact text (tiberius decodes it as a
/// float), a `sql_variant` as its base type and value, and a rowversion
/// (which each server makes anew) as NULL; times are written in 100 ns
/// whatever scale the server sent them at (Babelfish sends a `time(7)` at 6
/// or 7 depending on how the row was written: the instant must match).
///
/// # Panics
/// When a query fails.
pub async fn exact_rows(client: &mut TestClient, schema: &str, table: &str) -> Vec<Vec<String>> {
    let quote = |name: &str| format!("[{}]", name.replace(']', "]]"));
    let literal = |text: &str| format!("N'{}'", text.replace('\'', "''"));
    let qualified = format!("{}.{}", quote(schema), quote(table));
    let columns_sql = format!(
        "SELECT c.name, TYPE_NAME(c.system_type_id) FROM sys.columns c \
         WHERE c.object_id = OBJECT_ID({}) ORDER BY c.column_id",
        literal(&qualified)
    );
    let query = |e: tiberius::error::Error| -> ! { panic!("reading {qualified}: {e}") };
    let columns = match client.simple_query(columns_sql).await {
        Ok(stream) => stream.into_first_result().await.unwrap_or_else(|e| query(e)),
        Err(e) => query(e),
    };
    assert!(!columns.is_empty(), "{qualified} has no columns");
    let select: Vec<String> = columns
        .iter()
        .map(|row| {
            let name = quote(row.get::<&str, _>(0).unwrap_or_default());
            match row.get::<&str, _>(1).unwrap_or_default() {
                "money" | "smallmoney" => format!("CONVERT(varchar(30), {name}, 2)"),
                "sql_variant" => format!(
                    "CONCAT(CONVERT(nvarchar(128), SQL_VARIANT_PROPERTY({name}, 'BaseType')), N':', \
                     CONVERT(nvarchar(4000), {name}))"
                ),
                "timestamp" | "rowversion" => "NULL".to_owned(),
                _ => name,
            }
        })
        .collect();
    let sql = format!("SELECT {} FROM {qualified}", select.join(", "));
    let rows = match client.simple_query(sql).await {
        Ok(stream) => stream.into_first_result().await.unwrap_or_else(|e| query(e)),
        Err(e) => query(e),
    };
    let mut out: Vec<Vec<String>> = rows.iter().map(|row| row.cells().map(|(_, cell)| exact(cell)).collect()).collect();
    out.sort();
    out
}

/// The first cell of the first row `sql` returns (of any of its results),
/// in the exact text form of [`exact_rows`].
///
/// # Panics
/// When the query fails or returns no row.
pub async fn first_cell(client: &mut TestClient, sql: &str) -> String {
    let failed = |e: tiberius::error::Error| -> ! { panic!("{e}\nin: {sql}") };
    let results = match client.simple_query(sql).await {
        Ok(stream) => stream.into_results().await.unwrap_or_else(|e| failed(e)),
        Err(e) => failed(e),
    };
    let row = results.iter().flatten().next().unwrap_or_else(|| panic!("no row from: {sql}"));
    row.cells().next().map(|(_, cell)| exact(cell)).unwrap_or_default()
}

fn exact(cell: &tiberius::ColumnData<'_>) -> String {
    use tiberius::ColumnData;
    use tiberius::time::Time;
    let ticks = |t: Time| t.increments() * 10u64.pow(7 - u32::from(t.scale()));
    match cell {
        ColumnData::Time(Some(t)) => format!("Time({})", ticks(*t)),
        ColumnData::DateTime2(Some(d)) => format!("DateTime2({}, {})", d.date().days(), ticks(d.time())),
        ColumnData::DateTimeOffset(Some(o)) => {
            let d = o.datetime2();
            format!("DateTimeOffset({}, {}, {})", d.date().days(), ticks(d.time()), o.offset())
        }
        other => format!("{other:?}"),
    }
}

/// The PostgreSQL script that builds schema `expected` with the rows the
/// migrated fixture must hold, its tables made LIKE those in `target_schema`.
///
/// # Errors
/// The file's read error.
pub fn expected_data_sql(target_schema: &str) -> std::io::Result<String> {
    let text = std::fs::read_to_string(fixtures().join("expected.sql"))?;
    Ok(text.replace("(LIKE it.", &format!("(LIKE \"{}\".", target_schema.replace('"', "\"\""))))
}

#[cfg(test)]
mod tests {
    use super::TestServer;

    #[test]
    fn urls_parse_and_print_back() {
        let s = TestServer::parse("mssql://sa_bf:P@ss:w0rd!@127.0.0.1:14330/so?encrypt=true&trust_server_cert=true")
            .unwrap();
        assert_eq!((s.user.as_str(), s.password.as_str()), ("sa_bf", "P@ss:w0rd!"));
        assert_eq!((s.host.as_str(), s.port, s.database.as_str()), ("127.0.0.1", 14330, "so"));
        assert!(s.encrypt && s.trust_server_cert);
        assert_eq!(TestServer::parse(&s.url()).unwrap().url(), s.url());
        let with_ca =
            TestServer::parse("mssql://u:p@h/db?encrypt=true&trust_server_cert=true&ca_cert=/tmp/x/cert.pem").unwrap();
        assert_eq!(with_ca.ca_cert.as_deref(), Some("/tmp/x/cert.pem"));
        assert_eq!(TestServer::parse(&with_ca.url()).unwrap().ca_cert, with_ca.ca_cert);
        let plain = TestServer::parse("mssql://u:p@h").unwrap();
        assert_eq!((plain.port, plain.database.as_str(), plain.encrypt), (1433, "master", false));
        assert!(TestServer::parse("postgres://u:p@h").is_err());
        assert!(TestServer::parse("mssql://u:p@h:x/db").unwrap_err().contains("\"x\""));
        assert!(!format!("{s:?}").contains("w0rd"), "Debug hides the password");
    }
}
