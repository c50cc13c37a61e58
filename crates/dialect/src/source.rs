//! Sources: what the engine needs from the server it copies from. Each
//! dialect's crate implements [`Source`]; the engine is generic over it,
//! so the per-row path has no dynamic dispatch.

use std::fmt;
use std::future::Future;

use mssql_pg_migrate_schema::target::{Dialect, TargetTable};
use mssql_pg_migrate_schema::{Column, ColumnType, Table};
use mssql_pg_migrate_typemap::{MssqlType, PgType};

use crate::checksum::{BucketSum, Buckets, ChecksumDialect};
use crate::error::TransferError;
use crate::sink::RowSink;

/// One column as the reader selects it.
#[derive(Debug, Clone)]
pub struct ReadColumn {
    pub source_name: String,
    pub source_type: ColumnType,
    pub target: PgType,
}

/// What a reader needs to know about one table.
#[derive(Debug, Clone)]
pub struct ReadSpec {
    pub schema: String,
    pub table: String,
    /// The copied columns, in the order the target takes them.
    pub columns: Vec<ReadColumn>,
    /// Positions in `columns` of the primary key, in key order; empty when
    /// the table has no usable key and is read as one stream.
    pub key: Vec<usize>,
    /// `schema.table` for messages.
    pub label: String,
    /// The widest row read so far, in bytes, shared by every page and
    /// partition of the table, so a source that fetches in batches sizes
    /// them from the start of each page.
    pub widest_row: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Read only the rows changed since a mark (an incremental upsert).
    pub changed_since: Option<ChangedSince>,
    /// Read only the rows meeting this condition, written in the source's
    /// SQL by the engine's `deep::checksum::bucket_filter_sql`: a deep
    /// validation reading the buckets whose checksums differ.
    pub within_buckets: Option<String>,
    /// The least storage, in bytes, a chunk covers where the source reads
    /// ranges of its storage (a PostgreSQL table read by blocks), whatever
    /// the row limit; 0 lets the row limit alone decide (the engine's
    /// tuning says why it is set).
    pub min_chunk_bytes: u64,
}

/// How a change column's values rise, which decides how a mark is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// SQL Server `rowversion`: the mark is `MIN_ACTIVE_ROWVERSION()`, below
    /// which every version is committed, so nothing is read twice or missed.
    RowVersion,
    /// A date and time: the mark is the maximum less `change_lookback` seconds.
    Time,
    /// An integer: the mark is the maximum less `change_lookback`.
    Integer,
}

impl ChangeKind {
    /// How a change column of `source_type` works, or `None` for a type
    /// that cannot serve as one.
    pub fn of(source_type: &ColumnType) -> Option<ChangeKind> {
        match source_type {
            ColumnType::Mssql(MssqlType::RowVersion) => Some(ChangeKind::RowVersion),
            ColumnType::Mssql(
                MssqlType::DateTime
                | MssqlType::DateTime2 { .. }
                | MssqlType::SmallDateTime
                | MssqlType::DateTimeOffset { .. },
            )
            | ColumnType::Postgres(PgType::Timestamp(_) | PgType::TimestampTz(_)) => Some(ChangeKind::Time),
            ColumnType::Mssql(MssqlType::TinyInt | MssqlType::SmallInt | MssqlType::Int | MssqlType::BigInt)
            | ColumnType::Postgres(PgType::SmallInt | PgType::Integer | PgType::BigInt) => Some(ChangeKind::Integer),
            _ => None,
        }
    }
}

/// Only rows whose `column` is at least `mark` (or NULL, which no mark
/// can place) are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedSince {
    /// The column's source name.
    pub column: String,
    pub source_type: ColumnType,
    pub kind: ChangeKind,
    /// In the text form the source's mark query gave.
    pub mark: String,
    /// Whether the column can hold NULL. Only then does the read ask for
    /// NULLs too: `OR column IS NULL` keeps PostgreSQL's planner off the
    /// column's index (a 1% change of a 10M-row table was read by walking
    /// each key range whole, 84 ms a range against 13 ms through the index).
    pub nullable: bool,
}

impl ChangedSince {
    /// The read of `column`'s rows at or after `mark`.
    pub fn new(column: &Column, kind: ChangeKind, mark: String) -> ChangedSince {
        ChangedSince {
            column: column.name.clone(),
            source_type: column.data_type.clone(),
            kind,
            mark,
            nullable: column.nullable,
        }
    }
}

impl ReadSpec {
    /// Builds the spec from the source table and its target plan. The key is
    /// the primary key when all its columns are copied; otherwise the table
    /// is read as one stream.
    pub fn new(source: &Table, target: &TargetTable) -> ReadSpec {
        let columns: Vec<ReadColumn> = target
            .copied_columns()
            .map(|c| ReadColumn {
                source_name: c.source_name.clone(),
                source_type: c.source_type.clone(),
                target: c.pg_type,
            })
            .collect();
        let key = source
            .primary_key
            .as_ref()
            .and_then(|pk| {
                pk.columns.iter().map(|k| columns.iter().position(|c| &c.source_name == k)).collect::<Option<Vec<_>>>()
            })
            .unwrap_or_default();
        ReadSpec {
            schema: source.schema.clone(),
            table: source.name.clone(),
            columns,
            key,
            label: target.source_label(),
            widest_row: std::sync::Arc::default(),
            changed_since: None,
            within_buckets: None,
            min_chunk_bytes: 0,
        }
    }

    /// The spec of a pass over every row that reads only the key (the
    /// deletes of an incremental sync need every key the source has).
    pub fn keys_only(&self) -> ReadSpec {
        ReadSpec {
            columns: self.key.iter().filter_map(|&k| self.columns.get(k).cloned()).collect(),
            key: (0..self.key.len()).collect(),
            widest_row: std::sync::Arc::default(),
            changed_since: None,
            within_buckets: None,
            ..self.clone()
        }
    }

    /// Appends the page query's ` WHERE` clause: `keyset` (the key bounds
    /// the reader wrote in its dialect), then the spec's own filters (the
    /// change mark as `changed` renders it, and the buckets), joined by AND.
    pub fn write_where(&self, sql: &mut String, mut keyset: Vec<String>, changed: impl Fn(&ChangedSince) -> String) {
        keyset.extend(self.changed_since.as_ref().map(changed));
        keyset.extend(self.within_buckets.iter().cloned());
        if !keyset.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&keyset.join(" AND "));
        }
    }

    /// The target's names of the key columns (`target` is the plan this
    /// spec was built from).
    pub fn key_target_names(&self, target: &TargetTable) -> Vec<String> {
        let copied: Vec<&str> = target.copied_columns().map(|c| c.name.as_str()).collect();
        self.key.iter().filter_map(|&k| copied.get(k).map(|n| (*n).to_owned())).collect()
    }

    /// ` WHERE` and the incremental read's condition (`changed`, the
    /// dialect's), or nothing for a full read: what planning queries count
    /// and split.
    pub fn changed_filter(&self, changed: impl Fn(&ChangedSince) -> String) -> String {
        self.changed_since.as_ref().map(|c| format!(" WHERE {}", changed(c))).unwrap_or_default()
    }

    /// Whether the key is one integer column, which the planner splits by value.
    pub fn integer_key(&self) -> Option<&ReadColumn> {
        let [k] = self.key.as_slice() else { return None };
        let column = self.columns.get(*k)?;
        let integer = match &column.source_type {
            ColumnType::Mssql(t) => {
                matches!(t, MssqlType::TinyInt | MssqlType::SmallInt | MssqlType::Int | MssqlType::BigInt)
            }
            ColumnType::Postgres(t) => matches!(t, PgType::SmallInt | PgType::Integer | PgType::BigInt),
            ColumnType::Unsupported { .. } => false,
        };
        integer.then_some(column)
    }
}

/// The outcome of reading one page.
#[derive(Debug)]
pub struct Page<K> {
    pub rows: u64,
    /// The key of the page's last row (`None` for an empty page or a keyless
    /// table); for a page of block ranges, its last block.
    pub last_key: Option<K>,
    /// Whether the page read its range to the end, where the source decides
    /// that rather than the row count (a page of block ranges); `None`: a
    /// page shorter than its limit is the range's last.
    pub complete: Option<bool>,
}

/// A table's full read planned as ranges of its physical storage, all read
/// under one snapshot that the source holds for the run
/// ([`Source::block_plan`]).
#[derive(Debug, Clone)]
pub struct BlockPlan<K> {
    /// The inclusive upper bound of every partition but the last, which
    /// reads to the table's end.
    pub bounds: Vec<K>,
    /// What the source needs, after that snapshot is gone (a resume, a lost
    /// connection), to tell whether the table still holds the rows it held
    /// then at the same places; kept in the run state.
    pub basis: String,
}

/// What a source server says about itself and the session the tool holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerProbe {
    /// Product and version, as the server reports them.
    pub version: String,
    /// The login the session runs as.
    pub user: String,
    /// Whether the session is encrypted; `None` when the server does not
    /// let this login see it.
    pub tls: Option<bool>,
    /// The protocol and cipher where the server tells them, and what the
    /// connection verified of the server's certificate, in words.
    pub tls_detail: Option<String>,
}

/// Whether the source login may read one table and its definition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableAccess {
    /// `schema.table` in the source.
    pub table: String,
    /// SELECT on the table (and, for PostgreSQL, USAGE on its schema).
    pub select: bool,
    /// VIEW DEFINITION on SQL Server, without which defaults and computed
    /// columns read as empty. PostgreSQL catalogs are readable by every role.
    pub view_definition: bool,
}

/// A table the source login can see, for choosing what to migrate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableName {
    pub schema: String,
    pub name: String,
    /// The catalog's row estimate.
    pub estimated_rows: u64,
}

/// A server the engine copies from.
pub trait Source: Send + Sync + 'static {
    /// A key value (one part per key column), held only between pages.
    type Key: Clone + Send + Sync + fmt::Debug + 'static;

    fn dialect(&self) -> Dialect;

    /// Version, login and encryption of a pooled session.
    fn probe(&self) -> impl Future<Output = Result<ServerProbe, TransferError>> + Send;

    /// One round trip that does no work, for measuring latency.
    fn ping(&self) -> impl Future<Output = Result<(), TransferError>> + Send;

    /// The login's access to each of `tables` (all in `schema`), in their order.
    fn table_access(
        &self,
        schema: &str,
        tables: &[Table],
    ) -> impl Future<Output = Result<Vec<TableAccess>, TransferError>> + Send;

    /// Every user table the login can see, in every schema, by schema and name.
    fn list_tables(&self) -> impl Future<Output = Result<Vec<TableName>, TransferError>> + Send;

    /// The exact number of rows a read of `spec` returns: the table's, or
    /// for an incremental read the rows changed since its mark.
    fn count_rows(&self, spec: &ReadSpec) -> impl Future<Output = Result<u64, TransferError>> + Send;

    /// Reads the catalog of `schema`, keeping the tables `select` accepts.
    fn read_schema(
        &self,
        schema: &str,
        select: &(dyn Fn(&str, &str) -> bool + Sync),
    ) -> impl Future<Output = Result<Vec<Table>, TransferError>> + Send;

    /// The smallest and largest value of a one-column integer key among the
    /// rows a read of `spec` returns; `None` when there are none.
    fn integer_range(&self, spec: &ReadSpec) -> impl Future<Output = Result<Option<(i64, i64)>, TransferError>> + Send;

    /// A key value for an integer bound, in the key column's own type.
    fn integer_key(&self, spec: &ReadSpec, value: i64) -> Self::Key;

    /// The key of every `every`-th row a read of `spec` returns, in key
    /// order, computed by the server.
    fn boundaries(
        &self,
        spec: &ReadSpec,
        every: u64,
    ) -> impl Future<Output = Result<Vec<Self::Key>, TransferError>> + Send;

    /// Reads up to `limit` rows (all when `None`) with keys in `(after, upto]`,
    /// in key order, encoding each into `sink`.
    fn read_page<S: RowSink>(
        &self,
        spec: &ReadSpec,
        after: Option<&Self::Key>,
        upto: Option<&Self::Key>,
        limit: Option<u64>,
        sink: &mut S,
    ) -> impl Future<Output = Result<Page<Self::Key>, TransferError>> + Send;

    /// Plans the full read of `spec`'s table as `parts` ranges of its
    /// physical storage, read in storage order under one snapshot the
    /// source holds for the run: cheaper for the server than pages in key
    /// order, and together exactly the table as of that snapshot however
    /// its rows lie. `None`: this source, server or table is read by key.
    fn block_plan(
        &self,
        _spec: &ReadSpec,
        _parts: u32,
    ) -> impl Future<Output = Result<Option<BlockPlan<Self::Key>>, TransferError>> + Send {
        async { Ok(None) }
    }

    /// Takes up a block read of `spec` planned under `basis` (a
    /// [`BlockPlan`]'s) by an earlier run: whether the table still holds
    /// exactly the rows it held then, at the same places, so that ranges
    /// read then and ranges read now join without a row twice or missing.
    /// `false`: it may not; the table is copied again from a new plan.
    fn resume_block_read(
        &self,
        _spec: &ReadSpec,
        _basis: &str,
    ) -> impl Future<Output = Result<bool, TransferError>> + Send {
        async { Ok(false) }
    }

    /// Where the next incremental read of `spec`'s table by `column` starts,
    /// taken now: for a rowversion the oldest version not yet committed,
    /// otherwise the column's maximum less `lookback` (seconds or values).
    /// `None` for an empty table.
    fn change_mark(
        &self,
        spec: &ReadSpec,
        column: &str,
        kind: ChangeKind,
        lookback: u32,
    ) -> impl Future<Output = Result<Option<String>, TransferError>> + Send;

    /// How this server writes row checksums (the engine's `deep::checksum`),
    /// asked once per source; `None` for a server that cannot take part
    /// (a database whose text is not UTF-8).
    fn checksum_dialect(&self) -> impl Future<Output = Result<Option<ChecksumDialect>, TransferError>> + Send;

    /// Runs a query from the engine's `deep::checksum::bucket_sql` written for
    /// this source's dialect, binding `buckets` (lower bound, upper bound,
    /// width) when the query is keyed.
    fn checksum_buckets(
        &self,
        spec: &ReadSpec,
        sql: &str,
        buckets: Option<Buckets>,
    ) -> impl Future<Output = Result<Vec<BucketSum>, TransferError>> + Send;

    /// Renders a key for messages.
    fn describe_key(key: &Self::Key) -> String;

    /// The key's exact text form for the run state: the decimal digits of
    /// a single integer key (as in the guide's state example), otherwise
    /// a JSON array with one tagged string per part.
    fn key_to_state(key: &Self::Key) -> String;

    /// Reads a key written by [`Source::key_to_state`] for `spec`'s key.
    ///
    /// # Errors
    /// Why the text is not a key of this table (a state from another
    /// table, or damaged).
    fn key_from_state(&self, spec: &ReadSpec, text: &str) -> Result<Self::Key, String>;
}

/// Joins the per-part texts of a key for the state (see [`Source::key_to_state`]).
pub fn join_key_parts(parts: Vec<String>) -> String {
    serde_json::Value::Array(parts.into_iter().map(serde_json::Value::String).collect()).to_string()
}

/// Splits a key's state text into its part texts, or `Ok(None)` for the
/// single-integer form, whose value is returned separately.
pub fn split_key_parts(spec: &ReadSpec, text: &str) -> Result<KeyText, String> {
    if spec.integer_key().is_some()
        && let Ok(value) = text.parse::<i64>()
    {
        return Ok(KeyText::Integer(value));
    }
    let parts: Vec<String> =
        serde_json::from_str(text).map_err(|e| format!("key {text:?} is not a key in the state's form: {e}"))?;
    if parts.len() != spec.key.len() {
        return Err(format!(
            "key {text:?} has {} part(s), but the key of {} has {}",
            parts.len(),
            spec.label,
            spec.key.len()
        ));
    }
    Ok(KeyText::Parts(parts))
}

/// A key's state text, split.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyText {
    Integer(i64),
    Parts(Vec<String>),
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("{text:?} is not hexadecimal"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("{text:?} is not hexadecimal"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use mssql_pg_migrate_typemap::{MssqlType, PgType};

    use super::*;

    fn column(name: &str, target: PgType) -> ReadColumn {
        ReadColumn { source_name: name.into(), source_type: ColumnType::Mssql(MssqlType::Int), target }
    }

    #[test]
    fn a_key_only_pass_reads_the_key_columns_in_key_order_from_every_row() {
        let spec = ReadSpec {
            schema: "dbo".into(),
            table: "Lines".into(),
            columns: vec![column("v", PgType::Text), column("region", PgType::Text), column("seq", PgType::Integer)],
            key: vec![1, 2],
            label: "dbo.Lines".into(),
            widest_row: std::sync::Arc::default(),
            changed_since: Some(ChangedSince {
                column: "v".into(),
                source_type: ColumnType::Mssql(MssqlType::Int),
                kind: ChangeKind::Integer,
                mark: "7".into(),
                nullable: true,
            }),
            within_buckets: Some("bucket = 1".into()),
            min_chunk_bytes: 0,
        };
        let keys = spec.keys_only();
        let names: Vec<&str> = keys.columns.iter().map(|c| c.source_name.as_str()).collect();
        assert_eq!((names, keys.key.clone()), (vec!["region", "seq"], vec![0, 1]));
        assert_eq!((keys.changed_since, keys.within_buckets), (None, None), "every row");
        assert_eq!((keys.schema.as_str(), keys.table.as_str(), keys.label.as_str()), ("dbo", "Lines", "dbo.Lines"));
    }
}
