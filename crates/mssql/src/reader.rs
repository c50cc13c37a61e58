//! A SQL Server source over tiberius 0.13, pooled with bb8 through
//! [`MssqlManager`].
//!
//! Values go from tiberius' [`ColumnData`] straight into the run's
//! [`CellEncoder`] ([`encode_cell`]; binary COPY for a PostgreSQL target),
//! without an owned value per cell. Types tiberius would
//! read inexactly are converted by the server in the SELECT list instead
//! ([`select_expression`]): money arrives as `f64` from tiberius, so it is
//! cast to `decimal`. A datetimeoffset arrives as TDS has it (the UTC
//! instant and its offset), for the encoder to keep what its target can.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use mssql_pg_migrate_config::Secret;
use mssql_pg_migrate_dialect::checksum::{BucketSum, Buckets, ChecksumDialect, MssqlStrings};
use mssql_pg_migrate_dialect::sink::{CellEncoder, EncodeError, FieldError, RowSink, micros_of};
use mssql_pg_migrate_dialect::source::{
    ChangeKind, ChangedSince, KeyText, Page, ReadColumn, ReadSpec, ServerProbe, Source, TableAccess, TableName, hex,
    join_key_parts, split_key_parts, unhex,
};
use mssql_pg_migrate_dialect::{Side, TransferError, Transience};
use mssql_pg_migrate_schema::ident::{literal_mssql, qualified_mssql, quote_mssql};
use mssql_pg_migrate_schema::target::Dialect;
use mssql_pg_migrate_schema::{ColumnType, Table};
use mssql_pg_migrate_typemap::{Length, MssqlType, PgType};
use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel, Query};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::checksum;
use crate::error::{server_error, tiberius_transience};
use crate::prelogin::{self, ServerEncryption};

/// A tiberius client over a tokio TCP stream.
pub type MssqlClient = Client<Compat<TcpStream>>;

/// How long one server response may take. tiberius 0.13 defaults to 30 s
/// per round trip, which a page of a large table behind a slow writer can
/// exceed while it waits; a stalled server is still caught.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// TDS packet size to negotiate; the server may grant less.
pub const PACKET_SIZE: u32 = 32_767;

/// Where and how to connect to SQL Server.
#[derive(Debug, Clone)]
pub struct MssqlEndpoint {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Secret,
    pub encrypt: bool,
    /// TDS 8.0 strict encryption (`encrypt: strict`).
    pub strict: bool,
    pub trust_server_cert: bool,
    /// A CA file the server's certificate must chain to.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Which end of the migration the server is, for messages.
    pub side: Side,
}

impl MssqlEndpoint {
    pub fn address(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }

    fn tiberius_config(&self, encryption: EncryptionLevel) -> Config {
        let mut config = Config::new();
        config.host(&self.host);
        config.port(self.port);
        config.database(&self.database);
        config.authentication(AuthMethod::sql_server(&self.user, self.password.expose()));
        config.application_name("mssql-pg-migrate");
        config.encryption(encryption);
        // The config refuses both at once; tiberius would panic on them.
        if self.trust_server_cert {
            config.trust_cert();
        } else if let Some(ca) = &self.ca_cert {
            config.trust_cert_ca(ca.display());
        }
        config.packet_size(PACKET_SIZE);
        config.command_timeout(Some(COMMAND_TIMEOUT));
        config
    }

    /// Opens one connection.
    ///
    /// # Errors
    /// [`TransferError::Connect`] naming the server.
    pub async fn connect(&self) -> Result<MssqlClient, TransferError> {
        let fail_as = |transience: Transience| {
            move |message: String| TransferError::Connect {
                side: self.side,
                address: self.address(),
                message,
                transience,
            }
        };
        // Failing to reach the port is an outage; what the server answers
        // at login is judged by its error number.
        let fail = fail_as(Transience::Outage);
        let encryption = if self.strict {
            EncryptionLevel::Strict
        } else if self.encrypt {
            EncryptionLevel::Required
        } else {
            // `encrypt: false` still protects the login where the server can
            // (TDS ENCRYPT_OFF); a server without TLS gets a clear-text login,
            // which tiberius would otherwise try to encrypt and stall on.
            let address = format!("{}:{}", self.host, self.port);
            match prelogin::server_offers_tls(&address, Duration::from_secs(15)).await.map_err(fail)? {
                ServerEncryption::NotSupported => {
                    tracing::warn!(
                        "the {} server at {} offers no TLS: with encrypt: false the login, password \
                         included, and all data cross the network in clear text",
                        self.side,
                        self.address()
                    );
                    EncryptionLevel::NotSupported
                }
                _ => EncryptionLevel::Off,
            }
        };
        let config = self.tiberius_config(encryption);
        let tcp = tokio::time::timeout(Duration::from_secs(15), TcpStream::connect(config.get_addr()))
            .await
            .map_err(|_| fail("no answer within 15 s".into()))?
            .map_err(|e| fail(e.to_string()))?;
        tcp.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
        Client::connect(config, tcp.compat_write()).await.map_err(|e| {
            let fail = fail_as(tiberius_transience(&e));
            if self.strict {
                // A server without TDS 8.0 waits for a TDS PRELOGIN that a strict
                // client never sends, so the handshake times out.
                fail(format!(
                    "{e} ({}.encrypt: strict needs a server with TDS 8.0, such as SQL Server 2022 or Azure \
                     SQL; use encrypt: true for older servers)",
                    self.side
                ))
            } else {
                fail(e.to_string())
            }
        })
    }
}

/// bb8's view of SQL Server connections. Written here rather than taken
/// from bb8-tiberius, which pins tiberius 0.12 (see docs/ARCHITECTURE.md).
#[derive(Debug, Clone)]
pub struct MssqlManager {
    endpoint: MssqlEndpoint,
}

impl bb8::ManageConnection for MssqlManager {
    type Connection = MssqlClient;
    type Error = TransferError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        self.endpoint.connect().await
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        conn.simple_query("SELECT 1")
            .await
            .map_err(|e| server_error("checking a pooled connection", &e))?
            .into_results()
            .await
            .map_err(|e| server_error("checking a pooled connection", &e))?;
        Ok(())
    }

    fn has_broken(&self, _: &mut Self::Connection) -> bool {
        false
    }
}

/// A SQL Server database reached through a bb8 pool: read as a source, and
/// the sessions a SQL Server target writes through.
#[derive(Debug, Clone)]
pub struct MssqlSource {
    pool: bb8::Pool<MssqlManager>,
    /// Whether the server is Babelfish, for the few answers where it is not
    /// SQL Server (see the README of ../shared/babelfish).
    babelfish: bool,
    /// How to connect: for connections outside the pool (slices of large
    /// values), messages, and what the probe reports of TLS.
    endpoint: MssqlEndpoint,
    /// The pool's limit: a second connection is taken only where it allows.
    max_size: u32,
    /// The pool's latest failure to open a connection.
    connect_failures: ConnectFailures,
    /// How the server hashes strings as UTF-8, once asked.
    checksum_strings: tokio::sync::OnceCell<Option<MssqlStrings>>,
}

/// What the pool last failed to connect with. bb8 opens connections in
/// background tasks and hands their errors only to its error sink, so a
/// caller waiting for a connection while the server is down would
/// otherwise learn nothing until its wait times out; it watches this instead.
#[derive(Debug, Clone)]
struct ConnectFailures(Arc<tokio::sync::watch::Sender<Option<ConnectFailure>>>);

#[derive(Debug, Clone)]
struct ConnectFailure {
    message: String,
    transience: Transience,
}

impl bb8::ErrorSink<TransferError> for ConnectFailures {
    fn sink(&self, error: TransferError) {
        // Failed checks of pooled connections also arrive here; the pool
        // then tries another connection, so only failures to connect count.
        if let TransferError::Connect { message, transience, .. } = error {
            self.0.send_replace(Some(ConnectFailure { message, transience }));
        }
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<TransferError>> {
        Box::new(self.clone())
    }
}

impl MssqlSource {
    /// Builds the pool and opens one connection to prove the server is
    /// there; which end of the migration it is comes from `endpoint.side`.
    ///
    /// # Errors
    /// [`TransferError::Connect`] when the first connection fails.
    pub async fn connect(endpoint: MssqlEndpoint, max_size: u32) -> Result<MssqlSource, TransferError> {
        let unpooled = endpoint.clone();
        let mut first = endpoint.connect().await?;
        let max_size = max_size.max(1);
        let connect_failures = ConnectFailures(Arc::new(tokio::sync::watch::Sender::new(None)));
        // Connections are retried by the engine's reconnect policy, which
        // knows how long to wait; bb8 retrying on its own would hide why.
        let pool = bb8::Pool::builder()
            .max_size(max_size)
            .connection_timeout(Duration::from_secs(60))
            .retry_connection(false)
            .error_sink(Box::new(connect_failures.clone()))
            .build_unchecked(MssqlManager { endpoint });
        if max_size > 1 {
            // The catalog reads on two connections and the readers on more:
            // logging in the second now overlaps its login with the first
            // queries and the target's setup. A failure here is the pool's
            // to retry when a connection is asked for.
            let warming = pool.clone();
            tokio::spawn(async move {
                if let Ok(second) = warming.dedicated_connection().await {
                    let _ = warming.add(second);
                }
            });
        }
        let babelfish = crate::catalog::is_babelfish(&mut first).await;
        pool.add(first)
            .map_err(|_| TransferError::Config("the SQL Server pool refused its first connection".into()))?;
        Ok(MssqlSource {
            pool,
            babelfish,
            endpoint: unpooled,
            max_size,
            connect_failures,
            checksum_strings: tokio::sync::OnceCell::new(),
        })
    }

    /// Whether reading the table is permitted: a query for no rows succeeds.
    async fn can_select(&self, table: &Table) -> bool {
        let sql = format!("SELECT TOP (0) * FROM {}", qualified_mssql(&table.schema, &table.name));
        self.single_row(sql, "checking SELECT permission").await.is_ok()
    }

    /// A failure of this server, on its side of the migration.
    fn failure(&self, context: &str, e: &tiberius::error::Error) -> TransferError {
        match self.endpoint.side {
            Side::Source => server_error(context, e),
            Side::Target => crate::error::target_error(context, e),
        }
    }

    /// The first row of a query without parameters.
    async fn single_row(&self, sql: String, context: &str) -> Result<Option<tiberius::Row>, TransferError> {
        let mut conn = self.conn().await?;
        conn.simple_query(sql)
            .await
            .map_err(|e| self.failure(context, &e))?
            .into_row()
            .await
            .map_err(|e| self.failure(context, &e))
    }

    /// Every row of the first result of a bound query.
    async fn all_rows(&self, query: Query<'_>, context: &str) -> Result<Vec<tiberius::Row>, TransferError> {
        let mut conn = self.conn().await?;
        query
            .query(&mut conn)
            .await
            .map_err(|e| self.failure(context, &e))?
            .into_first_result()
            .await
            .map_err(|e| self.failure(context, &e))
    }

    /// Whether the server is Babelfish.
    pub fn is_babelfish(&self) -> bool {
        self.babelfish
    }

    /// How to connect, outside the pool.
    pub fn endpoint(&self) -> &MssqlEndpoint {
        &self.endpoint
    }

    /// A pooled session, or the reason the pool cannot open one.
    ///
    /// # Errors
    /// [`TransferError::Connect`].
    pub async fn session(&self) -> Result<bb8::PooledConnection<'_, MssqlManager>, TransferError> {
        self.conn().await
    }

    /// A pooled connection, or the reason the pool cannot open one.
    async fn conn(&self) -> Result<bb8::PooledConnection<'_, MssqlManager>, TransferError> {
        let connect_error = |failure: ConnectFailure| TransferError::Connect {
            side: self.endpoint.side,
            address: self.endpoint.address(),
            message: failure.message,
            transience: failure.transience,
        };
        // Only failures from now on: an old one may have been overcome.
        let mut failures = self.connect_failures.0.subscribe();
        let failed = async {
            loop {
                if failures.changed().await.is_err() {
                    return std::future::pending().await;
                }
                if let Some(failure) = failures.borrow_and_update().clone() {
                    return failure;
                }
            }
        };
        tokio::select! {
            biased;
            got = self.pool.get() => got.map_err(|e| match e {
                bb8::RunError::User(e) => e,
                bb8::RunError::TimedOut => TransferError::Connect {
                    side: self.endpoint.side,
                    address: self.endpoint.address(),
                    message: "no pooled connection became free within 60 s".into(),
                    transience: Transience::Outage,
                },
            }),
            failure = failed => Err(connect_error(failure)),
        }
    }
}

/// Version, edition and login of the session.
pub const PROBE: &str = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), \
CAST(SERVERPROPERTY('Edition') AS nvarchar(128)), SUSER_SNAME()";

/// Whether this session is encrypted (needs VIEW SERVER STATE).
pub const ENCRYPTION: &str = "SELECT encrypt_option FROM sys.dm_exec_connections WHERE session_id = @@SPID";

/// Every user table the login can see, with the heap or clustered index's rows.
pub const LIST_TABLES: &str = "\
SELECT s.name, t.name,
       CAST(COALESCE((SELECT SUM(p.rows) FROM sys.partitions p
                      WHERE p.object_id = t.object_id AND p.index_id IN (0, 1)), 0) AS bigint)
FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id
WHERE t.is_ms_shipped = 0
ORDER BY s.name, t.name";

/// SELECT and VIEW DEFINITION on every table of a schema, as the login
/// holds them directly or through its roles, schema or database grants.
pub const TABLE_ACCESS: &str = "\
SELECT t.name,
       CAST(HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'SELECT') AS bit),
       CAST(HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'VIEW DEFINITION') AS bit)
FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id
WHERE s.name = @P1 AND t.is_ms_shipped = 0";

/// The SELECT-list expression for a column: the column itself, or a server
/// conversion where tiberius would otherwise read the value inexactly.
pub fn select_expression(column: &ReadColumn) -> String {
    let q = quote_mssql(&column.source_name);
    match &column.source_type {
        ColumnType::Mssql(MssqlType::Money) => format!("CAST({q} AS decimal(19,4))"),
        ColumnType::Mssql(MssqlType::SmallMoney) => format!("CAST({q} AS decimal(10,4))"),
        ColumnType::Mssql(MssqlType::HierarchyId) => format!("CAST({q} AS nvarchar(4000))"),
        ColumnType::Mssql(MssqlType::Geography | MssqlType::Geometry) => format!("{q}.ToString()"),
        ColumnType::Mssql(MssqlType::SqlVariant) => format!("CAST({q} AS nvarchar(4000))"),
        _ => q,
    }
}

/// A parameter compared with a key column. Character keys get the
/// parameter cast to varchar: an nvarchar parameter would make the server
/// convert the column instead, and lose the index seek.
fn key_parameter(column: &ReadColumn, index: usize) -> String {
    match &column.source_type {
        ColumnType::Mssql(MssqlType::Char(_) | MssqlType::VarChar(_)) => format!("CAST(@P{index} AS varchar(8000))"),
        _ => format!("@P{index}"),
    }
}

/// `(k1 > p1) OR (k1 = p1 AND k2 > p2) …`: a row comparison, which
/// T-SQL lacks, spelled out. `last_op` is `>` for a lower bound, `<=` for an upper.
fn keyset_condition(spec: &ReadSpec, first_param: usize, strict: &str, last_op: &str) -> String {
    let n = spec.key.len();
    let mut alternatives = Vec::with_capacity(n);
    for i in 0..n {
        let mut terms = Vec::with_capacity(i + 1);
        for j in 0..=i {
            let column = &spec.columns[spec.key[j]];
            let op = if j < i {
                "="
            } else if i == n - 1 {
                last_op
            } else {
                strict
            };
            terms.push(format!("{} {op} {}", quote_mssql(&column.source_name), key_parameter(column, first_param + j)));
        }
        alternatives.push(format!("({})", terms.join(" AND ")));
    }
    format!("({})", alternatives.join(" OR "))
}

/// Values longer than this (in bytes as stored) are left out of the page's
/// rows and fetched in slices by key instead: tiberius holds every value it
/// reads whole in memory, so a 50 MB cell would cost 50 MB per reader.
pub const LOB_INLINE_LIMIT: i64 = 1 << 20;
/// Bytes per slice of a binary value. Each slice is a query that may make
/// the server read the whole value again (Babelfish decompresses it), so
/// slices are large; tiberius holds one at a time.
const LOB_SLICE_BYTES: i64 = 8 << 20;
/// Characters per slice of a text value: 8 MB as UTF-16 on the wire, at
/// most 12 MB of UTF-8.
const LOB_SLICE_CHARS: i64 = 4 << 20;
/// Bytes moved at a time from a spooled text value into the COPY stream.
const SPOOL_CHUNK: usize = 1 << 20;

/// How a column's large values are fetched in slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LobKind {
    /// Bytes, into `bytea`; the stored length is the field's length.
    Binary,
    /// Characters, into a text type; spooled to a temporary file first,
    /// since COPY needs the UTF-8 length before the bytes.
    Text,
}

/// Whether `column` holds values that can exceed [`LOB_INLINE_LIMIT`] and
/// land in a target that takes them in parts.
pub fn lob_kind(column: &ReadColumn) -> Option<LobKind> {
    let ColumnType::Mssql(source) = &column.source_type else { return None };
    let text_target = column.target.is_textual() || column.target == PgType::Xml;
    match source {
        MssqlType::VarBinary(Length::Max) | MssqlType::Image if column.target == PgType::Bytea => Some(LobKind::Binary),
        MssqlType::VarChar(Length::Max)
        | MssqlType::NVarChar(Length::Max)
        | MssqlType::Text
        | MssqlType::NText
        | MssqlType::Xml
            if text_target =>
        {
            Some(LobKind::Text)
        }
        _ => None,
    }
}

/// The columns of `spec` whose large values are fetched in slices: none for
/// a keyless table, whose rows cannot be found again.
pub fn sliced_columns(spec: &ReadSpec) -> Vec<(usize, LobKind)> {
    if spec.key.is_empty() {
        return Vec::new();
    }
    spec.columns.iter().enumerate().filter_map(|(i, c)| lob_kind(c).map(|kind| (i, kind))).collect()
}

/// The expression slices are cut from: SUBSTRING takes no text, ntext or xml.
fn slice_source(column: &ReadColumn) -> String {
    let q = quote_mssql(&column.source_name);
    match &column.source_type {
        ColumnType::Mssql(MssqlType::Text) => format!("CAST({q} AS varchar(max))"),
        ColumnType::Mssql(MssqlType::NText | MssqlType::Xml) => format!("CAST({q} AS nvarchar(max))"),
        _ => q,
    }
}

/// The query for one slice of a large value: `@P1` the 1-based start, `@P2`
/// the length, the key's parts from `@P3`. A text slice returns the
/// characters and how many it took: one fewer when the last would be the
/// high half of a surrogate pair, which SUBSTRING counts as a character
/// under collations without supplementary-character support.
pub fn slice_sql(spec: &ReadSpec, column: &ReadColumn, kind: LobKind) -> String {
    let table = qualified_mssql(&spec.schema, &spec.table);
    let key = spec
        .key
        .iter()
        .enumerate()
        .map(|(n, &k)| {
            let c = &spec.columns[k];
            format!("{} = {}", quote_mssql(&c.source_name), key_parameter(c, n + 3))
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let source = slice_source(column);
    match kind {
        LobKind::Binary => format!("SELECT SUBSTRING({source}, @P1, @P2) FROM {table} WHERE {key}"),
        LobKind::Text => format!(
            "SELECT SUBSTRING(v.s, @P1, n.taken), n.taken FROM (SELECT {source} AS s FROM {table} WHERE {key}) v \
             CROSS APPLY (SELECT CAST(@P2 - CASE WHEN UNICODE(SUBSTRING(v.s, @P1 + @P2 - 1, 1)) \
             BETWEEN 55296 AND 56319 THEN 1 ELSE 0 END AS bigint) AS taken) n"
        ),
    }
}

/// The page query. `@P1` is the row limit when there is one; key parameters
/// follow. Each of `sliced` (from [`sliced_columns`]) reads as NULL when its
/// value is larger than [`LOB_INLINE_LIMIT`], and a column added after the
/// table's gives the stored length of such a value (NULL otherwise).
pub fn page_sql(
    spec: &ReadSpec,
    sliced: &[(usize, LobKind)],
    has_after: bool,
    has_upto: bool,
    has_limit: bool,
) -> String {
    let mut select: Vec<String> = spec.columns.iter().map(select_expression).collect();
    for &(i, _) in sliced {
        let q = quote_mssql(&spec.columns[i].source_name);
        // The NULL typed as the column: Babelfish gives an untyped NULL's
        // CASE the type varchar, and so turns nvarchar text into code-page
        // text ('?' for what the code page lacks); SQL Server would not.
        let null = format!("CAST(NULL AS {})", spec.columns[i].source_type);
        select[i] = format!("CASE WHEN DATALENGTH({q}) > {LOB_INLINE_LIMIT} THEN {null} ELSE {} END", select[i]);
        select.push(format!("CASE WHEN DATALENGTH({q}) > {LOB_INLINE_LIMIT} THEN CAST(DATALENGTH({q}) AS bigint) END"));
    }
    let columns = select.join(", ");
    let top = if has_limit { "TOP (@P1) " } else { "" };
    let mut sql = format!("SELECT {top}{columns} FROM {}", qualified_mssql(&spec.schema, &spec.table));
    let mut next = if has_limit { 2 } else { 1 };
    let mut conditions = Vec::new();
    if has_after {
        conditions.push(keyset_condition(spec, next, ">", ">"));
        next += spec.key.len();
    }
    if has_upto {
        conditions.push(keyset_condition(spec, next, "<", "<="));
    }
    spec.write_where(&mut sql, conditions, changed_condition);
    if !spec.key.is_empty() {
        let keys = spec.key.iter().map(|&k| quote_mssql(&spec.columns[k].source_name)).collect::<Vec<_>>();
        let _ = write!(sql, " ORDER BY {}", keys.join(", "));
    }
    sql
}

/// The incremental read's condition: the column at or after the mark, or
/// NULL where it can be (no mark can place a NULL, so such rows are read
/// every time). A rowversion compares as the 8 bytes it is, from the mark's decimal form.
pub fn changed_condition(changed: &ChangedSince) -> String {
    let q = quote_mssql(&changed.column);
    let mark = literal_mssql(&changed.mark);
    let at_or_after = match changed.kind {
        ChangeKind::RowVersion => return format!("({q} >= CAST(CAST({mark} AS bigint) AS binary(8)))"),
        ChangeKind::Time => format!("{q} >= CAST({mark} AS {})", changed.source_type),
        ChangeKind::Integer => format!("{q} >= CAST({mark} AS bigint)"),
    };
    if changed.nullable { format!("({at_or_after} OR {q} IS NULL)") } else { format!("({at_or_after})") }
}

/// Why one cell could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("value {value} does not fit in {target}")]
    OutOfRange { value: String, target: PgType },
    #[error("a {source_type} value cannot be written to a {target} column")]
    Unconvertible { source_type: &'static str, target: PgType },
}

/// Days from 0001-01-01 (SQL Server `date`, `datetime2`) to 2000-01-01.
pub const DAYS_0001_TO_2000: i64 = 730_119;
/// Days from 1900-01-01 (SQL Server `datetime`, `smalldatetime`) to 2000-01-01.
pub const DAYS_1900_TO_2000: i64 = 36_524;
const MICROS_PER_DAY: i64 = 86_400_000_000;

fn variant_name(data: &ColumnData<'_>) -> &'static str {
    match data {
        ColumnData::U8(_) => "tinyint",
        ColumnData::I16(_) => "smallint",
        ColumnData::I32(_) => "int",
        ColumnData::I64(_) => "bigint",
        ColumnData::F32(_) => "real",
        ColumnData::F64(_) => "float",
        ColumnData::Bit(_) => "bit",
        ColumnData::String(_) => "string",
        ColumnData::Guid(_) => "uniqueidentifier",
        ColumnData::Binary(_) => "binary",
        ColumnData::Numeric(_) => "decimal",
        ColumnData::Xml(_) => "xml",
        ColumnData::DateTime(_) => "datetime",
        ColumnData::SmallDateTime(_) => "smalldatetime",
        ColumnData::Time(_) => "time",
        ColumnData::Date(_) => "date",
        ColumnData::DateTime2(_) => "datetime2",
        ColumnData::DateTimeOffset(_) => "datetimeoffset",
    }
}

fn write_integer<E: CellEncoder>(enc: &mut E, v: i64, target: PgType) -> Result<(), CellError> {
    let out_of_range = || CellError::OutOfRange { value: v.to_string(), target };
    match target {
        PgType::SmallInt => enc.int2(i16::try_from(v).map_err(|_| out_of_range())?),
        PgType::Integer => enc.int4(i32::try_from(v).map_err(|_| out_of_range())?),
        PgType::BigInt => enc.int8(v),
        PgType::Numeric(_) => enc.numeric(i128::from(v), 0)?,
        PgType::Boolean => enc.bool(v != 0),
        PgType::Real => enc.float4(v as f32),
        PgType::DoublePrecision => enc.float8(v as f64),
        PgType::Text | PgType::Varchar(_) | PgType::Char(_) => enc.text(&v.to_string())?,
        _ => return Err(CellError::Unconvertible { source_type: "integer", target }),
    }
    Ok(())
}

/// Writes a timestamp given as days since 2000-01-01 plus microseconds.
fn write_timestamp<E: CellEncoder>(enc: &mut E, days: i64, micros: i64, target: PgType) -> Result<(), CellError> {
    match target {
        PgType::Timestamp(_) | PgType::TimestampTz(_) => enc.timestamp(days * MICROS_PER_DAY + micros),
        PgType::Date => enc.date(days as i32),
        _ => return Err(CellError::Unconvertible { source_type: "date/time", target }),
    }
    Ok(())
}

/// Encodes one SQL Server value for a column of type `target`.
///
/// # Errors
/// [`CellError`] for a value PostgreSQL would refuse (NUL in text, out of
/// range) or a pairing the type mapping does not allow.
pub fn encode_cell<E: CellEncoder>(enc: &mut E, data: &ColumnData<'_>, target: PgType) -> Result<(), CellError> {
    let unconvertible = || CellError::Unconvertible { source_type: variant_name(data), target };
    match data {
        ColumnData::U8(None)
        | ColumnData::I16(None)
        | ColumnData::I32(None)
        | ColumnData::I64(None)
        | ColumnData::F32(None)
        | ColumnData::F64(None)
        | ColumnData::Bit(None)
        | ColumnData::String(None)
        | ColumnData::Guid(None)
        | ColumnData::Binary(None)
        | ColumnData::Numeric(None)
        | ColumnData::Xml(None)
        | ColumnData::DateTime(None)
        | ColumnData::SmallDateTime(None)
        | ColumnData::Time(None)
        | ColumnData::Date(None)
        | ColumnData::DateTime2(None)
        | ColumnData::DateTimeOffset(None) => enc.null(),
        ColumnData::Bit(Some(b)) => match target {
            PgType::Boolean => enc.bool(*b),
            _ => write_integer(enc, i64::from(*b), target)?,
        },
        ColumnData::U8(Some(v)) => write_integer(enc, i64::from(*v), target)?,
        ColumnData::I16(Some(v)) => write_integer(enc, i64::from(*v), target)?,
        ColumnData::I32(Some(v)) => write_integer(enc, i64::from(*v), target)?,
        ColumnData::I64(Some(v)) => write_integer(enc, *v, target)?,
        ColumnData::F32(Some(v)) => match target {
            PgType::Real => enc.float4(*v),
            PgType::DoublePrecision => enc.float8(f64::from(*v)),
            _ => return Err(unconvertible()),
        },
        ColumnData::F64(Some(v)) => match target {
            PgType::DoublePrecision => enc.float8(*v),
            PgType::Real => enc.float4(*v as f32),
            _ => return Err(unconvertible()),
        },
        ColumnData::Numeric(Some(n)) => match target {
            PgType::Numeric(_) => enc.numeric(n.value(), n.scale())?,
            PgType::DoublePrecision => enc.float8(n.value() as f64 / 10f64.powi(i32::from(n.scale()))),
            PgType::Real => enc.float4((n.value() as f64 / 10f64.powi(i32::from(n.scale()))) as f32),
            PgType::SmallInt | PgType::Integer | PgType::BigInt if n.scale() == 0 => {
                let v = i64::try_from(n.value())
                    .map_err(|_| CellError::OutOfRange { value: n.value().to_string(), target })?;
                write_integer(enc, v, target)?;
            }
            _ => return Err(unconvertible()),
        },
        ColumnData::String(Some(s)) => match target {
            PgType::Text | PgType::Varchar(_) | PgType::Char(_) | PgType::Xml => enc.text(s)?,
            _ => return Err(unconvertible()),
        },
        ColumnData::Xml(Some(x)) => match target {
            PgType::Xml | PgType::Text | PgType::Varchar(_) => enc.text(x.as_ref().as_ref())?,
            _ => return Err(unconvertible()),
        },
        ColumnData::Guid(Some(u)) => match target {
            // tiberius has already put the GUID's mixed-endian bytes into RFC 4122 order.
            PgType::Uuid => enc.uuid(*u.as_bytes()),
            PgType::Text | PgType::Varchar(_) | PgType::Char(_) => {
                let mut buf = [0u8; 36];
                enc.text(u.hyphenated().encode_upper(&mut buf))?;
            }
            _ => return Err(unconvertible()),
        },
        ColumnData::Binary(Some(b)) => match target {
            PgType::Bytea => enc.bytea(b)?,
            _ => return Err(unconvertible()),
        },
        ColumnData::Date(Some(d)) => write_timestamp(enc, i64::from(d.days()) - DAYS_0001_TO_2000, 0, target)?,
        ColumnData::Time(Some(t)) => match target {
            PgType::Time(_) => enc.time_fraction(t.increments(), t.scale()),
            _ => return Err(unconvertible()),
        },
        ColumnData::DateTime2(Some(dt)) => {
            let days = i64::from(dt.date().days()) - DAYS_0001_TO_2000;
            match target {
                PgType::Timestamp(_) | PgType::TimestampTz(_) => {
                    enc.timestamp_fraction(days, dt.time().increments(), dt.time().scale());
                }
                _ => write_timestamp(enc, days, micros_of(dt.time().increments(), dt.time().scale()), target)?,
            }
        }
        ColumnData::DateTime(Some(dt)) => {
            // 1/300 s ticks, rounded to the millisecond SQL Server shows
            // (.000/.003/.007), as the type mapping documents: 299 ticks
            // are 59.997, not 59.996667.
            let millis = (i64::from(dt.seconds_fragments()) * 10 + 1) / 3;
            let micros = millis * 1_000;
            write_timestamp(enc, i64::from(dt.days()) - DAYS_1900_TO_2000, micros, target)?;
        }
        ColumnData::SmallDateTime(Some(dt)) => {
            let micros = i64::from(dt.seconds_fragments()) * 60_000_000;
            write_timestamp(enc, i64::from(dt.days()) - DAYS_1900_TO_2000, micros, target)?;
        }
        ColumnData::DateTimeOffset(Some(dto)) => {
            // TDS carries the UTC date and time; the offset is how it was written.
            let dt = dto.datetime2();
            let days = i64::from(dt.date().days()) - DAYS_0001_TO_2000;
            match target {
                PgType::Timestamp(_) | PgType::TimestampTz(_) => {
                    enc.timestamp_offset(days, dt.time().increments(), dt.time().scale(), dto.offset());
                }
                _ => write_timestamp(enc, days, micros_of(dt.time().increments(), dt.time().scale()), target)?,
            }
        }
    }
    Ok(())
}

/// Renders a key cell for messages.
pub fn describe_cell(data: &ColumnData<'_>) -> String {
    match data {
        ColumnData::U8(Some(v)) => v.to_string(),
        ColumnData::I16(Some(v)) => v.to_string(),
        ColumnData::I32(Some(v)) => v.to_string(),
        ColumnData::I64(Some(v)) => v.to_string(),
        ColumnData::String(Some(s)) => format!("'{s}'"),
        ColumnData::Guid(Some(u)) => u.hyphenated().to_string().to_uppercase(),
        ColumnData::Numeric(Some(n)) => n.to_string(),
        ColumnData::Binary(Some(b)) => b.iter().fold(String::from("0x"), |mut s, byte| {
            let _ = write!(s, "{byte:02X}");
            s
        }),
        other => format!("{other:?}"),
    }
}

/// A cell that outlives the row it was read from (a key kept between
/// pages, or a value passed on to a bulk load).
pub fn owned(data: &ColumnData<'_>) -> ColumnData<'static> {
    match data {
        ColumnData::String(s) => ColumnData::String(s.as_ref().map(|s| Cow::Owned(s.to_string()))),
        ColumnData::Binary(b) => ColumnData::Binary(b.as_ref().map(|b| Cow::Owned(b.to_vec()))),
        ColumnData::Xml(x) => ColumnData::Xml(x.as_ref().map(|x| Cow::Owned(x.as_ref().clone()))),
        ColumnData::U8(v) => ColumnData::U8(*v),
        ColumnData::I16(v) => ColumnData::I16(*v),
        ColumnData::I32(v) => ColumnData::I32(*v),
        ColumnData::I64(v) => ColumnData::I64(*v),
        ColumnData::F32(v) => ColumnData::F32(*v),
        ColumnData::F64(v) => ColumnData::F64(*v),
        ColumnData::Bit(v) => ColumnData::Bit(*v),
        ColumnData::Guid(v) => ColumnData::Guid(*v),
        ColumnData::Numeric(v) => ColumnData::Numeric(*v),
        ColumnData::DateTime(v) => ColumnData::DateTime(*v),
        ColumnData::SmallDateTime(v) => ColumnData::SmallDateTime(*v),
        ColumnData::Time(v) => ColumnData::Time(*v),
        ColumnData::Date(v) => ColumnData::Date(*v),
        ColumnData::DateTime2(v) => ColumnData::DateTime2(*v),
        ColumnData::DateTimeOffset(v) => ColumnData::DateTimeOffset(*v),
    }
}

/// Why a value could not be written.
enum ValueFailure {
    /// The value itself (refused by the target type, or changed while read).
    Value(String),
    /// Reading its slices failed.
    Server(TransferError),
    /// The writer went away (it reports why).
    WriterGone,
}

impl From<FieldError> for ValueFailure {
    fn from(e: FieldError) -> Self {
        match e {
            FieldError::Encode(e) => ValueFailure::Value(e.to_string()),
            FieldError::WriterGone => ValueFailure::WriterGone,
        }
    }
}

/// One value larger than [`LOB_INLINE_LIMIT`], copied slice by slice from
/// its row, found again by key on a connection of its own, so at most a
/// slice of it is in memory.
struct LargeValue<'a> {
    spec: &'a ReadSpec,
    column: &'a ReadColumn,
    kind: LobKind,
    /// The column's [`slice_sql`], made once per page.
    sql: &'a str,
    key: &'a [ColumnData<'static>],
    /// `DATALENGTH` as stored: the field's length for binary values.
    stored: i64,
}

fn spooled(e: std::io::Error) -> ValueFailure {
    ValueFailure::Value(format!("spooling the value to a temporary file: {e}"))
}

impl LargeValue<'_> {
    async fn copy_into(&self, client: &mut MssqlClient, sink: &mut impl RowSink) -> Result<(), ValueFailure> {
        match self.kind {
            LobKind::Binary => {
                let len = usize::try_from(self.stored).map_err(|_| ValueFailure::Value("negative length".into()))?;
                sink.begin_field(len)?;
                let written = self.binary_slices(client, sink).await?;
                self.same_length(written, len)
            }
            LobKind::Text => {
                // The field's length comes first in COPY, and the UTF-8
                // length of a SQL Server string is only known by reading it;
                // a file, not memory, holds it meanwhile.
                let mut spool = tokio::fs::File::from_std(tempfile::tempfile().map_err(spooled)?);
                let len = self.text_slices(client, &mut spool).await?;
                spool.flush().await.map_err(spooled)?;
                spool.rewind().await.map_err(spooled)?;
                sink.begin_field(len)?;
                let mut buffer = vec![0u8; SPOOL_CHUNK];
                let mut written = 0usize;
                loop {
                    let n = spool.read(&mut buffer).await.map_err(spooled)?;
                    if n == 0 {
                        break;
                    }
                    sink.field_part(&buffer[..n]).await?;
                    written += n;
                }
                self.same_length(written, len)
            }
        }
    }

    fn same_length(&self, written: usize, len: usize) -> Result<(), ValueFailure> {
        if written == len {
            Ok(())
        } else {
            Err(ValueFailure::Value(format!(
                "the value changed while it was read in slices ({len} bytes, then {written}); run again"
            )))
        }
    }

    /// The row holding `len` bytes or characters of the value from `start`.
    async fn slice(&self, client: &mut MssqlClient, start: i64, len: i64) -> Result<tiberius::Row, ValueFailure> {
        let mut query = Query::new(self.sql);
        query.bind(start);
        query.bind(len);
        for cell in self.key {
            query.bind(cell.clone());
        }
        let failed = |e: tiberius::error::Error| {
            let context = format!("reading a large value of {}.{}", self.spec.label, self.column.source_name);
            ValueFailure::Server(server_error(&context, &e))
        };
        let row = query.query(client).await.map_err(failed)?.into_row().await.map_err(failed)?;
        row.ok_or_else(|| ValueFailure::Value("the row was deleted while its value was read".into()))
    }

    /// Copies the bytes into `sink`; returns how many.
    async fn binary_slices(&self, client: &mut MssqlClient, sink: &mut impl RowSink) -> Result<usize, ValueFailure> {
        let mut total = 0usize;
        loop {
            let row = self.slice(client, total as i64 + 1, LOB_SLICE_BYTES).await?;
            let bytes: Option<&[u8]> = row.try_get(0).map_err(|e| ValueFailure::Value(e.to_string()))?;
            let bytes = bytes.unwrap_or_default();
            if bytes.is_empty() {
                return Ok(total);
            }
            sink.field_part(bytes).await?;
            total += bytes.len();
        }
    }

    /// Writes the text as UTF-8 into `spool`; returns how many bytes.
    async fn text_slices(&self, client: &mut MssqlClient, spool: &mut tokio::fs::File) -> Result<usize, ValueFailure> {
        let (mut start, mut total) = (1i64, 0usize);
        loop {
            let row = self.slice(client, start, LOB_SLICE_CHARS).await?;
            let text: Option<&str> = row.try_get(0).map_err(|e| ValueFailure::Value(e.to_string()))?;
            let taken: Option<i64> = row.try_get(1).map_err(|e| ValueFailure::Value(e.to_string()))?;
            let text = text.unwrap_or_default();
            if text.is_empty() {
                return Ok(total);
            }
            if text.as_bytes().contains(&0) {
                return Err(ValueFailure::Value(EncodeError::NulInText.to_string()));
            }
            spool.write_all(text.as_bytes()).await.map_err(spooled)?;
            total += text.len();
            start += taken.unwrap_or(LOB_SLICE_CHARS).max(1);
        }
    }
}

/// A key value: one owned cell per key column.
#[derive(Debug, Clone, PartialEq)]
pub struct MssqlKey(pub Vec<ColumnData<'static>>);

impl Source for MssqlSource {
    type Key = MssqlKey;

    fn dialect(&self) -> Dialect {
        Dialect::Mssql
    }

    async fn probe(&self) -> Result<ServerProbe, TransferError> {
        let context = "reading the server version";
        let row = self.single_row(PROBE.into(), context).await?;
        let text = |i: usize| -> Result<String, TransferError> {
            let value: Option<&str> = match &row {
                Some(r) => r.try_get(i).map_err(|e| server_error(context, &e))?,
                None => None,
            };
            Ok(value.unwrap_or("unknown").to_owned())
        };
        let version = format!("SQL Server {} ({})", text(0)?, text(1)?);
        let user = text(2)?;
        // The DMV needs VIEW SERVER STATE; without it only the login's own
        // choice is known, and encrypt: true means tiberius insists on TLS.
        let seen = match self.single_row(ENCRYPTION.into(), "reading the session's encryption").await {
            Ok(Some(r)) => r.try_get::<&str, _>(0).ok().flatten().map(|v| v.eq_ignore_ascii_case("TRUE")),
            _ => None,
        };
        let tls = seen.or(self.endpoint.encrypt.then_some(true));
        let tls_detail = Some(
            match (tls, self.endpoint.trust_server_cert) {
                (Some(true), true) => "encrypted, certificate not verified (trust_server_cert: true)",
                (Some(true), false) => "encrypted, certificate and host name verified",
                (Some(false), _) => "not encrypted",
                (None, _) => "unknown (the login may not see it)",
            }
            .to_owned(),
        );
        Ok(ServerProbe { version, user, tls, tls_detail })
    }

    async fn ping(&self) -> Result<(), TransferError> {
        self.single_row("SELECT 1".into(), "measuring the round trip").await.map(|_| ())
    }

    async fn change_mark(
        &self,
        spec: &ReadSpec,
        column: &str,
        kind: ChangeKind,
        lookback: u32,
    ) -> Result<Option<String>, TransferError> {
        let q = quote_mssql(column);
        let table = qualified_mssql(&spec.schema, &spec.table);
        let sql = match kind {
            // Versions below it are committed; from it on, some may still commit.
            ChangeKind::RowVersion => {
                "SELECT CAST(CAST(MIN_ACTIVE_ROWVERSION() AS binary(8)) AS bigint) AS mark".to_owned()
            }
            // Style 126 (ISO 8601) reads back into every date and time type,
            // exactly on SQL Server; Babelfish rounds to microseconds, so
            // one is taken off first where the type has them, and a rounded
            // mark can never pass the value it came from.
            ChangeKind::Time => {
                let fine = spec.columns.iter().any(|c| {
                    c.source_name == column
                        && matches!(
                            c.source_type,
                            ColumnType::Mssql(MssqlType::DateTime2 { .. } | MssqlType::DateTimeOffset { .. })
                        )
                });
                let latest = if fine { format!("DATEADD(microsecond, -1, MAX({q}))") } else { format!("MAX({q})") };
                format!("SELECT CONVERT(nvarchar(40), DATEADD(second, -@P1, {latest}), 126) FROM {table}")
            }
            ChangeKind::Integer => format!("SELECT CAST(MAX({q}) - @P1 AS nvarchar(40)) FROM {table}"),
        };
        let mut query = Query::new(sql);
        if kind != ChangeKind::RowVersion {
            query.bind(i64::from(lookback));
        }
        let context = format!("taking the change mark of {}", spec.label);
        let rows = self.all_rows(query, &context).await?;
        let Some(row) = rows.into_iter().next() else { return Ok(None) };
        match kind {
            ChangeKind::RowVersion => {
                row.try_get::<i64, usize>(0).map(|v| v.map(|v| v.to_string())).map_err(|e| server_error(&context, &e))
            }
            _ => row.try_get::<&str, usize>(0).map(|v| v.map(str::to_owned)).map_err(|e| server_error(&context, &e)),
        }
    }

    async fn table_access(&self, schema: &str, tables: &[Table]) -> Result<Vec<TableAccess>, TransferError> {
        let context = format!("checking the permissions on schema {schema}");
        let mut query = Query::new(TABLE_ACCESS);
        query.bind(schema);
        let rows = self.all_rows(query, &context).await?;
        let mut granted = std::collections::HashMap::new();
        for row in rows {
            let name: Option<&str> = row.try_get(0).map_err(|e| server_error(&context, &e))?;
            let select: Option<bool> = row.try_get(1).map_err(|e| server_error(&context, &e))?;
            let definition: Option<bool> = row.try_get(2).map_err(|e| server_error(&context, &e))?;
            if let Some(name) = name {
                // Babelfish's sys.tables folds names that the model keeps as declared.
                granted.insert(name.to_lowercase(), (select, definition == Some(true)));
            }
        }
        let mut access = Vec::with_capacity(tables.len());
        for t in tables {
            let (select, view_definition) =
                granted.get(&t.name.to_lowercase()).copied().unwrap_or((Some(false), false));
            // A refusal is confirmed by reading no rows from the table, the
            // answer on any server: Babelfish's HAS_PERMS_BY_NAME cannot
            // resolve names holding a double quote and says 0 or NULL.
            let select = select == Some(true) || self.can_select(t).await;
            // Babelfish has no VIEW DEFINITION permission (it answers 0 even
            // for sysadmin) and shows definitions to whoever sees the table.
            let view_definition = view_definition || self.babelfish;
            access.push(TableAccess { table: format!("{}.{}", t.schema, t.name), select, view_definition });
        }
        Ok(access)
    }

    async fn list_tables(&self) -> Result<Vec<TableName>, TransferError> {
        let context = "listing the tables";
        let rows = self.all_rows(Query::new(LIST_TABLES), context).await?;
        rows.iter()
            .map(|r| {
                let text = |i: usize| -> Result<String, TransferError> {
                    let v: Option<&str> = r.try_get(i).map_err(|e| self.failure(context, &e))?;
                    Ok(v.unwrap_or_default().to_owned())
                };
                let rows: Option<i64> = r.try_get(2).map_err(|e| self.failure(context, &e))?;
                Ok(TableName {
                    schema: text(0)?,
                    name: text(1)?,
                    estimated_rows: rows.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn count_rows(&self, spec: &ReadSpec) -> Result<u64, TransferError> {
        let sql = format!(
            "SELECT COUNT_BIG(*) FROM {}{}",
            qualified_mssql(&spec.schema, &spec.table),
            spec.changed_filter(changed_condition)
        );
        let context = format!("counting the rows of {}", spec.label);
        let row = self.single_row(sql, &context).await?;
        let count: Option<i64> = match row {
            Some(r) => r.try_get(0).map_err(|e| self.failure(&context, &e))?,
            None => None,
        };
        Ok(count.and_then(|c| u64::try_from(c).ok()).unwrap_or(0))
    }

    async fn read_schema(
        &self,
        schema: &str,
        select: &(dyn Fn(&str, &str) -> bool + Sync),
    ) -> Result<Vec<Table>, TransferError> {
        let mut first = self.conn().await?;
        // A second connection where the limit allows one (the readers reuse
        // it later); the catalog reads on one alone otherwise. The columns,
        // the slowest part, go to the connection that is ready first.
        let Some(mut second) = (if self.max_size > 1 { Some(self.conn().await?) } else { None }) else {
            return Ok(crate::catalog::read_schema(&mut first, None, schema, self.babelfish, select).await?);
        };
        Ok(crate::catalog::read_schema(&mut second, Some(&mut first), schema, self.babelfish, select).await?)
    }

    async fn integer_range(&self, spec: &ReadSpec) -> Result<Option<(i64, i64)>, TransferError> {
        let Some(key) = spec.integer_key() else { return Ok(None) };
        let k = quote_mssql(&key.source_name);
        let sql = format!(
            "SELECT CAST(MIN({k}) AS bigint), CAST(MAX({k}) AS bigint) FROM {}{}",
            qualified_mssql(&spec.schema, &spec.table),
            spec.changed_filter(changed_condition)
        );
        let context = format!("reading the key range of {}", spec.label);
        let Some(row) = self.single_row(sql, &context).await? else { return Ok(None) };
        let min: Option<i64> = row.try_get(0).map_err(|e| server_error(&context, &e))?;
        let max: Option<i64> = row.try_get(1).map_err(|e| server_error(&context, &e))?;
        Ok(min.zip(max))
    }

    fn integer_key(&self, spec: &ReadSpec, value: i64) -> Self::Key {
        let cell = match spec.integer_key().map(|c| &c.source_type) {
            Some(ColumnType::Mssql(MssqlType::TinyInt)) => ColumnData::U8(u8::try_from(value).ok()),
            Some(ColumnType::Mssql(MssqlType::SmallInt)) => ColumnData::I16(i16::try_from(value).ok()),
            Some(ColumnType::Mssql(MssqlType::Int)) => ColumnData::I32(i32::try_from(value).ok()),
            _ => ColumnData::I64(Some(value)),
        };
        MssqlKey(vec![cell])
    }

    async fn boundaries(&self, spec: &ReadSpec, every: u64) -> Result<Vec<Self::Key>, TransferError> {
        let keys = spec.key.iter().map(|&k| select_expression(&spec.columns[k])).collect::<Vec<_>>().join(", ");
        let order = spec.key.iter().map(|&k| quote_mssql(&spec.columns[k].source_name)).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {keys} FROM (SELECT {order}, ROW_NUMBER() OVER (ORDER BY {order}) AS mpm_rn FROM {}{}) s \
             WHERE s.mpm_rn % @P1 = 0 ORDER BY {order}",
            qualified_mssql(&spec.schema, &spec.table),
            spec.changed_filter(changed_condition)
        );
        let context = format!("computing chunk boundaries of {}", spec.label);
        let mut query = Query::new(sql);
        query.bind(i64::try_from(every.max(1)).unwrap_or(i64::MAX));
        let rows = self.all_rows(query, &context).await?;
        Ok(rows.into_iter().map(|row| MssqlKey(row.into_iter().collect())).collect())
    }

    async fn checksum_dialect(&self) -> Result<Option<ChecksumDialect>, TransferError> {
        let strings = self
            .checksum_strings
            .get_or_init(|| async {
                let yes = |sql| async move {
                    let row = self.single_row(sql, "asking how the server hashes text").await;
                    matches!(row, Ok(Some(row)) if row.try_get::<i32, _>(0).ok().flatten() == Some(1))
                };
                for (way, can, hashes_utf8) in checksum::string_probes() {
                    if yes(can).await && yes(hashes_utf8).await {
                        return Some(way);
                    }
                }
                None
            })
            .await;
        Ok(Some(ChecksumDialect::Mssql { strings: *strings, interpreted: self.babelfish }))
    }

    async fn checksum_buckets(
        &self,
        spec: &ReadSpec,
        sql: &str,
        buckets: Option<Buckets>,
    ) -> Result<Vec<BucketSum>, TransferError> {
        let context = format!("computing the checksums of {}", spec.label);
        let mut query = Query::new(sql.to_owned());
        if let Some(b) = buckets {
            query.bind(b.lo);
            query.bind(b.hi);
            query.bind(b.width);
        }
        let rows = self.all_rows(query, &context).await?;
        rows.iter()
            .map(|row| {
                let get = |i| row.try_get::<i64, _>(i).map_err(|e| server_error(&context, &e));
                Ok(BucketSum {
                    bucket: get(0)?.unwrap_or(0),
                    rows: get(1)?.unwrap_or(0),
                    sum: row.try_get::<&str, _>(2).map_err(|e| server_error(&context, &e))?.map(str::to_owned),
                })
            })
            .collect()
    }

    async fn read_page<S: RowSink>(
        &self,
        spec: &ReadSpec,
        after: Option<&Self::Key>,
        upto: Option<&Self::Key>,
        limit: Option<u64>,
        sink: &mut S,
    ) -> Result<Page<Self::Key>, TransferError> {
        let sliced = sliced_columns(spec);
        let slice_sqls: Vec<String> = sliced.iter().map(|&(i, kind)| slice_sql(spec, &spec.columns[i], kind)).collect();
        let sql = page_sql(spec, &sliced, after.is_some(), upto.is_some(), limit.is_some());
        let mut query = Query::new(sql);
        if let Some(limit) = limit {
            query.bind(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        for key in [after, upto].into_iter().flatten() {
            for cell in &key.0 {
                query.bind(cell.clone());
            }
        }
        let context = format!("reading {}", spec.label);
        let mut conn = self.conn().await?;
        let stream = query.query(&mut conn).await.map_err(|e| server_error(&context, &e))?;
        let mut rows_stream = stream.into_row_stream();
        let field_count = u16::try_from(spec.columns.len())
            .map_err(|_| TransferError::Config(format!("table {} has more than 65535 columns", spec.label)))?;
        let column_count = spec.columns.len();
        // Opened at the first large value, for its slices: the page's own
        // connection is busy streaming rows.
        let mut slicer: Option<MssqlClient> = None;
        let mut rows = 0u64;
        let mut last = None;
        while let Some(row) = rows_stream.try_next().await.map_err(|e| server_error(&context, &e))? {
            sink.encoder().begin_row(field_count);
            for (i, (_, data)) in row.cells().enumerate().take(column_count) {
                let column = &spec.columns[i];
                let large = match sliced.iter().position(|&(c, _)| c == i) {
                    Some(n) => row
                        .try_get::<i64, usize>(column_count + n)
                        .map_err(|e| server_error(&context, &e))?
                        .map(|stored| (n, stored)),
                    None => None,
                };
                let written: Result<(), ValueFailure> = match large {
                    Some((n, stored)) => {
                        let key: Vec<ColumnData<'static>> =
                            spec.key.iter().filter_map(|&k| row.cells().nth(k).map(|(_, d)| owned(d))).collect();
                        let client = match &mut slicer {
                            Some(client) => client,
                            None => slicer.insert(self.endpoint.connect().await?),
                        };
                        let slices =
                            LargeValue { spec, column, kind: sliced[n].1, sql: &slice_sqls[n], key: &key, stored };
                        slices.copy_into(client, sink).await
                    }
                    None => {
                        encode_cell(sink.encoder(), data, column.target).map_err(|e| ValueFailure::Value(e.to_string()))
                    }
                };
                let message = match written {
                    Ok(()) => continue,
                    Err(ValueFailure::WriterGone) => return Err(TransferError::Cancelled),
                    Err(ValueFailure::Server(e)) => return Err(e),
                    Err(ValueFailure::Value(message)) => message,
                };
                let key = spec
                    .key
                    .iter()
                    .filter_map(|&k| row.cells().nth(k).map(|(_, d)| describe_cell(d)))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(TransferError::Value {
                    table: spec.label.clone(),
                    column: column.source_name.clone(),
                    key: format!("({key})"),
                    message,
                });
            }
            rows += 1;
            last = Some(row);
            sink.row_done().await.map_err(|_| TransferError::Cancelled)?;
        }
        let last_key = match last {
            Some(row) if !spec.key.is_empty() => {
                let cells: Vec<ColumnData<'static>> =
                    spec.key.iter().filter_map(|&k| row.cells().nth(k).map(|(_, d)| owned(d))).collect();
                Some(MssqlKey(cells))
            }
            _ => None,
        };
        Ok(Page { rows, last_key, complete: None })
    }

    fn describe_key(key: &Self::Key) -> String {
        format!("({})", key.0.iter().map(describe_cell).collect::<Vec<_>>().join(", "))
    }

    fn key_to_state(key: &Self::Key) -> String {
        match key.0.as_slice() {
            [ColumnData::U8(Some(v))] => v.to_string(),
            [ColumnData::I16(Some(v))] => v.to_string(),
            [ColumnData::I32(Some(v))] => v.to_string(),
            [ColumnData::I64(Some(v))] => v.to_string(),
            cells => join_key_parts(cells.iter().map(cell_to_state).collect()),
        }
    }

    fn key_from_state(&self, spec: &ReadSpec, text: &str) -> Result<Self::Key, String> {
        match split_key_parts(spec, text)? {
            KeyText::Integer(value) => Ok(self.integer_key(spec, value)),
            KeyText::Parts(parts) => Ok(MssqlKey(parts.iter().map(|p| cell_from_state(p)).collect::<Result<_, _>>()?)),
        }
    }
}

/// One key cell as `tag:payload`, exact for every type a key can have.
pub fn cell_to_state(data: &ColumnData<'_>) -> String {
    match data {
        ColumnData::U8(Some(v)) => format!("u8:{v}"),
        ColumnData::I16(Some(v)) => format!("i16:{v}"),
        ColumnData::I32(Some(v)) => format!("i32:{v}"),
        ColumnData::I64(Some(v)) => format!("i64:{v}"),
        ColumnData::F32(Some(v)) => format!("f32:{:08x}", v.to_bits()),
        ColumnData::F64(Some(v)) => format!("f64:{:016x}", v.to_bits()),
        ColumnData::Bit(Some(v)) => format!("bit:{}", u8::from(*v)),
        ColumnData::String(Some(v)) => format!("s:{v}"),
        ColumnData::Guid(Some(v)) => format!("g:{}", v.hyphenated()),
        ColumnData::Binary(Some(v)) => format!("b:{}", hex(v)),
        ColumnData::Numeric(Some(v)) => format!("n:{}/{}", v.value(), v.scale()),
        ColumnData::DateTime(Some(v)) => format!("dt:{}/{}", v.days(), v.seconds_fragments()),
        ColumnData::SmallDateTime(Some(v)) => format!("sdt:{}/{}", v.days(), v.seconds_fragments()),
        ColumnData::Date(Some(v)) => format!("d:{}", v.days()),
        ColumnData::Time(Some(v)) => format!("t:{}/{}", v.increments(), v.scale()),
        ColumnData::DateTime2(Some(v)) => {
            format!("dt2:{}/{}/{}", v.date().days(), v.time().increments(), v.time().scale())
        }
        ColumnData::DateTimeOffset(Some(v)) => {
            let dt = v.datetime2();
            format!("dto:{}/{}/{}/{}", dt.date().days(), dt.time().increments(), dt.time().scale(), v.offset())
        }
        _ => "null:".to_owned(),
    }
}

/// Reads a cell written by [`cell_to_state`].
///
/// # Errors
/// The part's text when it is not a key cell.
pub fn cell_from_state(text: &str) -> Result<ColumnData<'static>, String> {
    use tiberius::numeric::Numeric;
    use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};

    let bad = || format!("key part {text:?} is not a key value in the state's form");
    let (tag, payload) = text.split_once(':').ok_or_else(bad)?;
    let nums = |n: usize| -> Result<Vec<i128>, String> {
        let parts: Vec<i128> =
            payload.split('/').map(|p| p.parse::<i128>().map_err(|_| bad())).collect::<Result<_, _>>()?;
        if parts.len() == n { Ok(parts) } else { Err(bad()) }
    };
    let fit = |v: i128| -> Result<i64, String> { i64::try_from(v).map_err(|_| bad()) };
    Ok(match tag {
        "u8" => ColumnData::U8(Some(payload.parse().map_err(|_| bad())?)),
        "i16" => ColumnData::I16(Some(payload.parse().map_err(|_| bad())?)),
        "i32" => ColumnData::I32(Some(payload.parse().map_err(|_| bad())?)),
        "i64" => ColumnData::I64(Some(payload.parse().map_err(|_| bad())?)),
        "f32" => ColumnData::F32(Some(f32::from_bits(u32::from_str_radix(payload, 16).map_err(|_| bad())?))),
        "f64" => ColumnData::F64(Some(f64::from_bits(u64::from_str_radix(payload, 16).map_err(|_| bad())?))),
        "bit" => ColumnData::Bit(Some(payload == "1")),
        "s" => ColumnData::String(Some(Cow::Owned(payload.to_owned()))),
        "g" => ColumnData::Guid(Some(payload.parse().map_err(|_| bad())?)),
        "b" => ColumnData::Binary(Some(Cow::Owned(unhex(payload)?))),
        "n" => {
            let v = nums(2)?;
            let scale = u8::try_from(v[1]).map_err(|_| bad())?;
            ColumnData::Numeric(Some(Numeric::new_with_scale(v[0], scale)))
        }
        "dt" => {
            let v = nums(2)?;
            let days = i32::try_from(v[0]).map_err(|_| bad())?;
            ColumnData::DateTime(Some(DateTime::new(days, u32::try_from(v[1]).map_err(|_| bad())?)))
        }
        "sdt" => {
            let v = nums(2)?;
            let days = u16::try_from(v[0]).map_err(|_| bad())?;
            ColumnData::SmallDateTime(Some(SmallDateTime::new(days, u16::try_from(v[1]).map_err(|_| bad())?)))
        }
        "d" => ColumnData::Date(Some(Date::new(u32::try_from(fit(nums(1)?[0])?).map_err(|_| bad())?))),
        "t" => {
            let v = nums(2)?;
            let time = Time::new(u64::try_from(v[0]).map_err(|_| bad())?, u8::try_from(v[1]).map_err(|_| bad())?);
            ColumnData::Time(Some(time))
        }
        "dt2" | "dto" => {
            let v = nums(if tag == "dt2" { 3 } else { 4 })?;
            let date = Date::new(u32::try_from(v[0]).map_err(|_| bad())?);
            let time = Time::new(u64::try_from(v[1]).map_err(|_| bad())?, u8::try_from(v[2]).map_err(|_| bad())?);
            let dt2 = DateTime2::new(date, time);
            if tag == "dt2" {
                ColumnData::DateTime2(Some(dt2))
            } else {
                ColumnData::DateTimeOffset(Some(DateTimeOffset::new(dt2, i16::try_from(v[3]).map_err(|_| bad())?)))
            }
        }
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use mssql_pg_migrate_typemap::Length;
    use tiberius::numeric::Numeric;
    use tiberius::time::{Date, DateTime, DateTime2, SmallDateTime, Time};
    use tiberius::xml::XmlData;
    use uuid::Uuid;

    use mssql_pg_migrate_postgres::copy::{CopyEncoder, days_from_civil};

    use super::*;

    /// Encodes one value and returns the field bytes (length prefix removed; `None` for NULL).
    fn field(data: ColumnData<'_>, target: PgType) -> Result<Option<Vec<u8>>, CellError> {
        let mut enc = CopyEncoder::with_capacity(64);
        let header = enc.len();
        encode_cell(&mut enc, &data, target)?;
        let bytes = enc.take()[header..].to_vec();
        let len = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if len < 0 {
            return Ok(None);
        }
        assert_eq!(len as usize, bytes.len() - 4);
        Ok(Some(bytes[4..].to_vec()))
    }

    fn i64_of(bytes: &[u8]) -> i64 {
        i64::from_be_bytes(bytes.try_into().unwrap())
    }

    #[test]
    fn epoch_constants_match_the_calendar() {
        assert_eq!(i64::from(days_from_civil(2000, 1, 1) - days_from_civil(1, 1, 1)), DAYS_0001_TO_2000);
        assert_eq!(i64::from(days_from_civil(2000, 1, 1) - days_from_civil(1900, 1, 1)), DAYS_1900_TO_2000);
    }

    #[test]
    fn nulls_of_every_kind_are_null() {
        let nulls = [
            ColumnData::I32(None),
            ColumnData::String(None),
            ColumnData::Binary(None),
            ColumnData::Numeric(None),
            ColumnData::DateTime2(None),
            ColumnData::Guid(None),
            ColumnData::Bit(None),
        ];
        for n in nulls {
            assert_eq!(field(n, PgType::Text).unwrap(), None);
        }
    }

    #[test]
    fn integers_check_their_target_range() {
        assert_eq!(field(ColumnData::U8(Some(255)), PgType::SmallInt).unwrap(), Some(vec![0, 255]));
        assert_eq!(field(ColumnData::I64(Some(-2)), PgType::BigInt).unwrap(), Some((-2i64).to_be_bytes().to_vec()));
        assert_eq!(
            field(ColumnData::I64(Some(70_000)), PgType::SmallInt),
            Err(CellError::OutOfRange { value: "70000".into(), target: PgType::SmallInt })
        );
        assert_eq!(field(ColumnData::Bit(Some(true)), PgType::Boolean).unwrap(), Some(vec![1]));
    }

    #[test]
    fn decimals_keep_every_digit() {
        let max = Numeric::new_with_scale(99_999_999_999_999_999_999_999_999_999_999_999_999, 0);
        let mut expected = CopyEncoder::with_capacity(64);
        let h = expected.len();
        expected.numeric(99_999_999_999_999_999_999_999_999_999_999_999_999, 0).unwrap();
        let expected = expected.take()[h + 4..].to_vec();
        assert_eq!(field(ColumnData::Numeric(Some(max)), PgType::Numeric(Some((38, 0)))).unwrap(), Some(expected));
        // Negative money, cast to decimal(19,4) by the SELECT.
        let money = Numeric::new_with_scale(-9_223_372_036_854_775_808, 4);
        let got = field(ColumnData::Numeric(Some(money)), PgType::Numeric(Some((19, 4)))).unwrap().unwrap();
        assert_eq!(&got[4..6], &[0x40, 0x00], "negative sign");
        assert_eq!(&got[6..8], &[0, 4], "display scale 4");
    }

    #[test]
    fn floats_keep_their_bits() {
        assert_eq!(
            field(ColumnData::F64(Some(-0.0)), PgType::DoublePrecision).unwrap(),
            Some((-0.0f64).to_bits().to_be_bytes().to_vec())
        );
        assert_eq!(
            field(ColumnData::F32(Some(f32::MAX)), PgType::Real).unwrap(),
            Some(f32::MAX.to_bits().to_be_bytes().to_vec())
        );
        assert_eq!(
            field(ColumnData::F64(Some(f64::MIN_POSITIVE)), PgType::DoublePrecision).unwrap(),
            Some(f64::MIN_POSITIVE.to_bits().to_be_bytes().to_vec())
        );
    }

    #[test]
    fn text_is_utf8_and_nul_is_refused() {
        let s = "tab\there\nnew \\ 'q' \"dq\" 😀";
        assert_eq!(
            field(ColumnData::String(Some(Cow::Borrowed(s))), PgType::Text).unwrap(),
            Some(s.as_bytes().to_vec())
        );
        assert_eq!(field(ColumnData::String(Some(Cow::Borrowed(""))), PgType::Varchar(Some(5))).unwrap(), Some(vec![]));
        assert_eq!(
            field(ColumnData::String(Some(Cow::Borrowed("a\0b"))), PgType::Text),
            Err(CellError::Encode(EncodeError::NulInText))
        );
        let xml = XmlData::new("<a>é</a>");
        assert_eq!(
            field(ColumnData::Xml(Some(Cow::Owned(xml))), PgType::Xml).unwrap(),
            Some("<a>é</a>".as_bytes().to_vec())
        );
    }

    #[test]
    fn guids_are_written_in_rfc_order() {
        let u = Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
        assert_eq!(field(ColumnData::Guid(Some(u)), PgType::Uuid).unwrap(), Some(u.as_bytes().to_vec()));
        assert_eq!(
            field(ColumnData::Guid(Some(u)), PgType::Text).unwrap(),
            Some(b"6F9619FF-8B86-D011-B42D-00C04FC964FF".to_vec())
        );
    }

    #[test]
    fn dates_and_times_convert_to_postgres_epochs() {
        // 2024-02-29 as days since 0001-01-01.
        let days = (days_from_civil(2024, 2, 29) - days_from_civil(1, 1, 1)) as u32;
        let pg_days = i64::from(days_from_civil(2024, 2, 29) - days_from_civil(2000, 1, 1));
        assert_eq!(
            field(ColumnData::Date(Some(Date::new(days))), PgType::Date).unwrap(),
            Some((pg_days as i32).to_be_bytes().to_vec())
        );
        // datetime2(7) 23:59:59.9999999 truncates to .999999.
        let t = Time::new(863_999_999_999, 7);
        let got = field(ColumnData::DateTime2(Some(DateTime2::new(Date::new(days), t))), PgType::Timestamp(None))
            .unwrap()
            .unwrap();
        assert_eq!(i64_of(&got), pg_days * MICROS_PER_DAY + 86_399_999_999);
        // time(3) 12:00:00.123
        let got = field(ColumnData::Time(Some(Time::new(43_200_123, 3))), PgType::Time(None)).unwrap().unwrap();
        assert_eq!(i64_of(&got), 43_200_123_000);
        // datetime 1/300 s ticks, shown as SQL Server shows them: 2 ticks
        // are .007, 1 tick .003, and the day's last tick 23:59:59.997.
        let day = days_from_civil(2000, 1, 2) - days_from_civil(1900, 1, 1);
        for (ticks, micros) in [(2, 7_000), (1, 3_000), (3, 10_000), (25_919_999, 86_399_997_000)] {
            let got = field(ColumnData::DateTime(Some(DateTime::new(day, ticks))), PgType::Timestamp(Some(3)))
                .unwrap()
                .unwrap();
            assert_eq!(i64_of(&got), MICROS_PER_DAY + micros, "{ticks} ticks");
        }
        // smalldatetime minutes; dates before 2000 are negative.
        let sdt = SmallDateTime::new(0, 90);
        let got = field(ColumnData::SmallDateTime(Some(sdt)), PgType::Timestamp(None)).unwrap().unwrap();
        assert_eq!(i64_of(&got), -DAYS_1900_TO_2000 * MICROS_PER_DAY + 90 * 60_000_000);
        // 0001-01-01 is representable.
        let got =
            field(ColumnData::DateTime2(Some(DateTime2::new(Date::new(0), Time::new(0, 7)))), PgType::Timestamp(None))
                .unwrap()
                .unwrap();
        assert_eq!(i64_of(&got), -DAYS_0001_TO_2000 * MICROS_PER_DAY);
    }

    #[test]
    fn mismatched_pairings_are_refused_by_name() {
        assert_eq!(
            field(ColumnData::Binary(Some(Cow::Borrowed(&[1]))), PgType::Integer),
            Err(CellError::Unconvertible { source_type: "binary", target: PgType::Integer })
        );
    }

    fn column(name: &str, ty: MssqlType) -> ReadColumn {
        ReadColumn {
            source_name: name.into(),
            target: mssql_pg_migrate_typemap::default_target(&ty),
            source_type: ColumnType::Mssql(ty),
        }
    }

    #[test]
    fn page_queries_spell_out_row_comparisons() {
        let spec = ReadSpec {
            schema: "dbo".into(),
            table: "Order]Lines".into(),
            columns: vec![
                column("Region", MssqlType::VarChar(Length::Bounded(10))),
                column("Id", MssqlType::Int),
                column("Cash", MssqlType::Money),
                column("At", MssqlType::DateTimeOffset { scale: 7 }),
            ],
            key: vec![0, 1],
            label: "dbo.Order]Lines".into(),
            widest_row: Default::default(),
            changed_since: None,
            within_buckets: None,
            min_chunk_bytes: 0,
        };
        assert_eq!(
            page_sql(&spec, &sliced_columns(&spec), true, true, true),
            "SELECT TOP (@P1) [Region], [Id], CAST([Cash] AS decimal(19,4)), \
             [At] FROM [dbo].[Order]]Lines] \
             WHERE (([Region] > CAST(@P2 AS varchar(8000))) OR ([Region] = CAST(@P2 AS varchar(8000)) AND [Id] > @P3)) \
             AND (([Region] < CAST(@P4 AS varchar(8000))) OR ([Region] = CAST(@P4 AS varchar(8000)) AND [Id] <= @P5)) \
             ORDER BY [Region], [Id]"
        );
        let changed = ReadSpec {
            changed_since: Some(ChangedSince {
                column: "At'".into(),
                source_type: ColumnType::Mssql(MssqlType::DateTimeOffset { scale: 7 }),
                kind: ChangeKind::Time,
                mark: "2026-11-30T01:00:00.1234567+01:00".into(),
                nullable: true,
            }),
            ..spec.clone()
        };
        assert!(page_sql(&changed, &[], true, false, true).ends_with(
            "WHERE (([Region] > CAST(@P2 AS varchar(8000))) OR ([Region] = CAST(@P2 AS varchar(8000)) AND [Id] > @P3)) \
             AND ([At'] >= CAST(N'2026-11-30T01:00:00.1234567+01:00' AS datetimeoffset(7)) OR [At'] IS NULL) \
             ORDER BY [Region], [Id]"
        ));
        let rowversion = ChangedSince {
            column: "RowVer".into(),
            source_type: ColumnType::Mssql(MssqlType::RowVersion),
            kind: ChangeKind::RowVersion,
            mark: "2001".into(),
            nullable: false,
        };
        assert_eq!(changed_condition(&rowversion), "([RowVer] >= CAST(CAST(N'2001' AS bigint) AS binary(8)))");
        let never_null = |kind, source_type| ChangedSince {
            column: "Seq".into(),
            source_type,
            kind,
            mark: "41".into(),
            nullable: false,
        };
        assert_eq!(
            changed_condition(&never_null(ChangeKind::Integer, ColumnType::Mssql(MssqlType::BigInt))),
            "([Seq] >= CAST(N'41' AS bigint))",
            "a NOT NULL column is compared alone, so its index can serve the read"
        );
        assert_eq!(
            changed_condition(&ChangedSince {
                nullable: true,
                ..never_null(ChangeKind::Integer, ColumnType::Mssql(MssqlType::BigInt))
            }),
            "([Seq] >= CAST(N'41' AS bigint) OR [Seq] IS NULL)"
        );
        let keyless = ReadSpec { key: vec![], ..spec };
        assert_eq!(
            page_sql(&keyless, &sliced_columns(&keyless), false, false, false),
            "SELECT [Region], [Id], CAST([Cash] AS decimal(19,4)), \
             [At] FROM [dbo].[Order]]Lines]"
        );
    }

    #[test]
    fn large_values_are_left_out_of_pages_and_read_in_slices_by_key() {
        let spec = ReadSpec {
            schema: "dbo".into(),
            table: "Docs".into(),
            columns: vec![
                column("Id", MssqlType::Int),
                column("Body", MssqlType::NVarChar(Length::Max)),
                column("Blob", MssqlType::VarBinary(Length::Max)),
                column("Title", MssqlType::NVarChar(Length::Bounded(40))),
                column("Old", MssqlType::NText),
            ],
            key: vec![0],
            label: "dbo.Docs".into(),
            widest_row: Default::default(),
            changed_since: None,
            within_buckets: None,
            min_chunk_bytes: 0,
        };
        let sliced = sliced_columns(&spec);
        assert_eq!(sliced, [(1, LobKind::Text), (2, LobKind::Binary), (4, LobKind::Text)]);
        assert_eq!(
            page_sql(&spec, &sliced, false, false, true),
            "SELECT TOP (@P1) [Id], CASE WHEN DATALENGTH([Body]) > 1048576 THEN CAST(NULL AS nvarchar(max)) ELSE [Body] END, \
             CASE WHEN DATALENGTH([Blob]) > 1048576 THEN CAST(NULL AS varbinary(max)) ELSE [Blob] END, [Title], \
             CASE WHEN DATALENGTH([Old]) > 1048576 THEN CAST(NULL AS ntext) ELSE [Old] END, \
             CASE WHEN DATALENGTH([Body]) > 1048576 THEN CAST(DATALENGTH([Body]) AS bigint) END, \
             CASE WHEN DATALENGTH([Blob]) > 1048576 THEN CAST(DATALENGTH([Blob]) AS bigint) END, \
             CASE WHEN DATALENGTH([Old]) > 1048576 THEN CAST(DATALENGTH([Old]) AS bigint) END \
             FROM [dbo].[Docs] ORDER BY [Id]"
        );
        assert_eq!(
            slice_sql(&spec, &spec.columns[2], LobKind::Binary),
            "SELECT SUBSTRING([Blob], @P1, @P2) FROM [dbo].[Docs] WHERE [Id] = @P3"
        );
        let text = slice_sql(&spec, &spec.columns[4], LobKind::Text);
        assert!(
            text.starts_with(
                "SELECT SUBSTRING(v.s, @P1, n.taken), n.taken FROM (SELECT CAST([Old] AS nvarchar(max)) AS s"
            ),
            "{text}"
        );
        assert!(text.contains("BETWEEN 55296 AND 56319"), "a surrogate pair is never split: {text}");

        // Keyless rows cannot be found again, and an override to a type
        // that takes no parts keeps the value whole.
        let keyless = ReadSpec { key: vec![], ..spec.clone() };
        assert!(sliced_columns(&keyless).is_empty());
        let mut as_int = column("Body", MssqlType::NVarChar(Length::Max));
        as_int.target = PgType::Integer;
        assert_eq!(lob_kind(&as_int), None);
    }

    #[test]
    fn key_cells_round_trip_through_the_state_text() {
        use tiberius::time::DateTimeOffset;
        let cells = [
            ColumnData::U8(Some(255)),
            ColumnData::I16(Some(-3)),
            ColumnData::I32(Some(i32::MIN)),
            ColumnData::I64(Some(i64::MAX)),
            ColumnData::F64(Some(-0.0)),
            ColumnData::Bit(Some(true)),
            ColumnData::String(Some(Cow::Borrowed("Zoë / \"quoted\" : 🦀"))),
            ColumnData::Guid(Some(Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10))),
            ColumnData::Binary(Some(Cow::Borrowed(&[0, 0xff, 0x10]))),
            ColumnData::Numeric(Some(Numeric::new_with_scale(-12_345_678_901_234_567_890_123_456_789_012_345_678, 10))),
            ColumnData::DateTime(Some(DateTime::new(-53_690, 25_919_999))),
            ColumnData::SmallDateTime(Some(SmallDateTime::new(65_535, 1439))),
            ColumnData::Date(Some(Date::new(3_652_058))),
            ColumnData::Time(Some(Time::new(863_999_999_999, 7))),
            ColumnData::DateTime2(Some(DateTime2::new(Date::new(0), Time::new(1, 7)))),
            ColumnData::DateTimeOffset(Some(DateTimeOffset::new(DateTime2::new(Date::new(5), Time::new(9, 3)), -345))),
        ];
        for cell in cells {
            let text = cell_to_state(&cell);
            let back = cell_from_state(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(format!("{back:?}"), format!("{cell:?}"), "{text}");
        }
        assert!(cell_from_state("dt2:1/2").unwrap_err().contains("dt2:1/2"));
        assert!(cell_from_state("xml:<a/>").is_err());
        assert!(cell_from_state("i32:99999999999").is_err(), "out of range");

        assert_eq!(MssqlSource::key_to_state(&MssqlKey(vec![ColumnData::I64(Some(5_000_000))])), "5000000");
        let composite = MssqlKey(vec![ColumnData::String(Some(Cow::Borrowed("a"))), ColumnData::I32(Some(2))]);
        assert_eq!(MssqlSource::key_to_state(&composite), r#"["s:a","i32:2"]"#);
    }
}
