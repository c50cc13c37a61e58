//! A PostgreSQL source. No value is decoded: PostgreSQL's binary send
//! format is also binary COPY's field format. A page goes one of two ways:
//!
//! - As the server's own `COPY (SELECT …) TO STDOUT (FORMAT binary)`
//!   output, whose rows a PostgreSQL target takes byte for byte
//!   ([`RowSink::copy_rows`]); [`crate::copy_out`] only finds where rows
//!   end and keeps the last key. This is the fast path: for a table with
//!   one integer key or none (COPY takes no parameters, so the bounds are
//!   written as integers) whose rows seen so far are narrow.
//! - Otherwise through a portal fetched in batches, each field's bytes
//!   handed to the sink ([`RowSink::field`]): any key, and rows of any size
//!   one at a time.

use std::collections::HashMap;
use std::error::Error;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{TryStreamExt, pin_mut};
use mssql_pg_migrate_dialect::checksum::{BucketSum, Buckets, ChecksumDialect};
use mssql_pg_migrate_dialect::sink::{CellEncoder as _, FieldError, RowSink};
use mssql_pg_migrate_dialect::source::{
    BlockPlan, ChangeKind, ChangedSince, KeyText, Page, ReadSpec, ServerProbe, Source, TableAccess, TableName, hex,
    join_key_parts, split_key_parts, unhex,
};
use mssql_pg_migrate_dialect::{Side, TransferError, Transience};
use mssql_pg_migrate_schema::ident::{literal_pg, qualified_pg, quote_pg};
use mssql_pg_migrate_schema::target::Dialect;
use mssql_pg_migrate_schema::{ColumnType, Table};
use mssql_pg_migrate_typemap::PgType;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::blocks::{
    Basis, TO_THE_END, block_from_state, block_to_state, blocks_for_rows, chunk_range, partition_bounds,
    range_condition,
};
use crate::copy_out::{CopyOutScanner, KeyField};
use crate::error::pg_error;
use crate::pool::PgPool;

/// One key part: the column's type and its value in binary send format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawValue {
    pub ty: Type,
    pub bytes: Bytes,
}

impl ToSql for RawValue {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_slice(&self.bytes);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A field's bytes without decoding, whatever its type.
struct RawField<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for RawField<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(RawField(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(RawField(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A PostgreSQL database read through a connection pool.
#[derive(Debug, Clone)]
pub struct PgSource {
    pool: PgPool,
    /// The snapshot held for block reads, and the tables read so.
    blocks: Arc<BlockReads>,
}

/// Block reads ([`crate::blocks`]): the snapshot every page imports, held
/// by one transaction on a connection of its own, and each table read
/// this way.
#[derive(Default)]
struct BlockReads {
    held: tokio::sync::Mutex<SnapshotHolder>,
    tables: std::sync::Mutex<HashMap<String, BlockTable>>,
}

impl fmt::Debug for BlockReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockReads").finish_non_exhaustive()
    }
}

#[derive(Default)]
enum SnapshotHolder {
    #[default]
    NotYet,
    /// The server cannot (older than 14, or a standby that refuses):
    /// tables are read by key.
    Unsupported,
    Holding(Box<HeldSnapshot>),
    /// The holding connection was lost after snapshot `epoch`.
    Lost {
        epoch: u64,
    },
}

struct HeldSnapshot {
    snapshot: RunSnapshot,
    session: deadpool_postgres::Object,
}

/// A snapshot every page of the run imports.
#[derive(Debug, Clone)]
struct RunSnapshot {
    name: String,
    xmin: u64,
    /// Counts the snapshots held in this run: a table read under an
    /// earlier one is checked before a later one reads it.
    epoch: u64,
}

/// A table read as block ranges.
#[derive(Debug, Clone, Copy)]
struct BlockTable {
    /// Its size when planned (or resumed), after the snapshot was taken.
    blocks: u64,
    rows_per_block: f64,
    /// The server's block size in bytes.
    block_bytes: u64,
    basis: Basis,
    /// The snapshot its rows were last known to match.
    checked_epoch: u64,
}

impl PgSource {
    pub fn new(pool: PgPool) -> Self {
        PgSource { pool, blocks: Arc::default() }
    }

    fn err(context: &str, spec: &ReadSpec, e: &tokio_postgres::Error) -> TransferError {
        pg_error(Side::Source, format!("{context} {}", spec.label), e)
    }

    /// Reads a page as the server's binary COPY output and hands its rows
    /// to `sink` as they came, message by message: no row is parsed into
    /// values, only scanned for its end and its key. Per row this saves the
    /// driver's `Row` (an allocation) and the per-field calls of the portal
    /// path: about a fifth of the tool's CPU on narrow rows.
    async fn read_page_by_copy<S: RowSink>(
        &self,
        spec: &ReadSpec,
        page: &CopyPage,
        sink: &mut S,
    ) -> Result<Page<Vec<RawValue>>, TransferError> {
        let client = self.pool.get(Side::Source).await?;
        let stream = client.copy_out(page.sql.as_str()).await.map_err(|e| Self::err("reading", spec, &e))?;
        scan_copy_out(spec, page, stream, sink).await
    }

    /// Reads a page through a portal fetched in batches sized to the rows
    /// seen so far (see [`portal_page`]).
    async fn read_page_by_portal<S: RowSink>(
        &self,
        spec: &ReadSpec,
        after: Option<&Vec<RawValue>>,
        upto: Option<&Vec<RawValue>>,
        limit: Option<u64>,
        sink: &mut S,
    ) -> Result<Page<Vec<RawValue>>, TransferError> {
        let fail = |e: tokio_postgres::Error| Self::err("reading", spec, &e);
        let mut client = self.pool.get(Side::Source).await?;
        let sql = page_sql(spec, after.is_some(), upto.is_some(), limit.is_some());
        let limit_param = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(2 * spec.key.len() + 1);
        for key in [after, upto].into_iter().flatten() {
            params.extend(key.iter().map(|k| k as &(dyn ToSql + Sync)));
        }
        if let Some(l) = &limit_param {
            params.push(l);
        }
        let tx = client.build_transaction().read_only(true).start().await.map_err(fail)?;
        let page = portal_page(&tx, spec, &sql, params, sink).await?;
        tx.commit().await.map_err(fail)?;
        Ok(page)
    }
}

/// The server version from which block reads are used: TID range scans.
const BLOCK_READS_FROM_VERSION: i32 = 140_000;

/// Where the table is stored now, for a table whose blocks hold all its
/// rows: a plain table without inheritance children (a partitioned or
/// inherited table's rows lie in other tables' blocks).
const TABLE_STORAGE: &str = "\
SELECT pg_relation_filenode(c.oid)::int8,
       (pg_relation_size(c.oid) / current_setting('block_size')::int8)::int8,
       c.reltuples::float8, c.relpages::int8, current_setting('block_size')::int8
FROM pg_class c WHERE c.oid = to_regclass($1) AND c.relkind = 'r' AND NOT c.relhassubclass";

/// The density a table never analyzed is taken to have until its first
/// chunk measures it: about the most rows an 8 kB block holds, so that the
/// first chunk is not larger than meant.
const UNKNOWN_ROWS_PER_BLOCK: f64 = 290.0;

impl BlockTable {
    /// A table stored as `storage` says, read under `snapshot` from `basis`.
    fn new(storage: &Storage, basis: Basis, snapshot: &RunSnapshot) -> BlockTable {
        BlockTable {
            blocks: storage.blocks,
            rows_per_block: storage.rows_per_block,
            block_bytes: storage.block_bytes,
            basis,
            checked_epoch: snapshot.epoch,
        }
    }
}

/// A table's storage as [`TABLE_STORAGE`] reads it.
struct Storage {
    filenode: i64,
    blocks: u64,
    rows_per_block: f64,
    block_bytes: u64,
}

impl PgSource {
    /// The snapshot pages import: the one held, or, when its connection
    /// was lost (a restart, a failover), a new one exported now. `None`
    /// when the server cannot export one for this use.
    async fn run_snapshot(&self) -> Result<Option<RunSnapshot>, TransferError> {
        let mut held = self.blocks.held.lock().await;
        let epoch = match &*held {
            SnapshotHolder::Unsupported => return Ok(None),
            SnapshotHolder::Holding(h) if !h.session.is_closed() => return Ok(Some(h.snapshot.clone())),
            SnapshotHolder::Holding(h) => h.snapshot.epoch + 1,
            SnapshotHolder::Lost { epoch } => epoch + 1,
            SnapshotHolder::NotYet => 1,
        };
        let context = "exporting a snapshot for the run's reads";
        let fail = |e: tokio_postgres::Error| pg_error(Side::Source, context, &e);
        // Its own pool, so that the session it holds all run long takes
        // nothing from the readers'.
        let session = self.pool.sibling(1)?.get(Side::Source).await?;
        let version: i32 = session
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(fail)?;
        if version < BLOCK_READS_FROM_VERSION {
            *held = SnapshotHolder::Unsupported;
            return Ok(None);
        }
        // The transaction stays open, idle, for the run: a server limit on
        // idle transactions would end it and force a new snapshot.
        let exported = async {
            session
                .batch_execute(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                     SET LOCAL idle_in_transaction_session_timeout = 0",
                )
                .await?;
            let row = session
                .query_one("SELECT pg_export_snapshot(), pg_snapshot_xmin(pg_current_snapshot())::text", &[])
                .await?;
            Ok::<_, tokio_postgres::Error>((row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?))
        };
        let (name, xmin) = match exported.await {
            Ok(exported) => exported,
            // The server refused (a standby that cannot, a pooler): the
            // first time, the run reads by key instead; later, a page
            // cannot go on without one.
            Err(e) if e.code().is_some() && epoch == 1 => {
                tracing::info!(error = %e, "the source cannot export a snapshot; tables are read in key order");
                *held = SnapshotHolder::Unsupported;
                return Ok(None);
            }
            Err(e) => return Err(fail(e)),
        };
        let xmin = xmin.parse().map_err(|_| TransferError::Server {
            side: Side::Source,
            context: context.to_owned(),
            message: format!("the snapshot's xmin {xmin:?} is not a transaction id"),
            transience: Transience::Permanent,
        })?;
        if epoch > 1 {
            tracing::warn!(snapshot = %name, "the source's snapshot was lost with its connection; holding a new one");
        } else {
            tracing::debug!(snapshot = %name, "holding a snapshot for the run's block reads");
        }
        let snapshot = RunSnapshot { name, xmin, epoch };
        *held = SnapshotHolder::Holding(Box::new(HeldSnapshot { snapshot: snapshot.clone(), session }));
        Ok(Some(snapshot))
    }

    /// Forgets snapshot `epoch` once a page found it gone, so that the
    /// next page holds a new one.
    async fn snapshot_lost(&self, epoch: u64) {
        let mut held = self.blocks.held.lock().await;
        if matches!(&*held, SnapshotHolder::Holding(h) if h.snapshot.epoch == epoch) {
            *held = SnapshotHolder::Lost { epoch };
        }
    }

    /// Where `spec`'s table is stored, or `None` when its blocks do not
    /// hold all its rows.
    async fn storage(&self, spec: &ReadSpec) -> Result<Option<Storage>, TransferError> {
        let client = self.pool.get(Side::Source).await?;
        let fail = |e: tokio_postgres::Error| Self::err("reading where the rows are stored of", spec, &e);
        let Some(row) = client.query_opt(TABLE_STORAGE, &[&table_sql(spec)]).await.map_err(fail)? else {
            return Ok(None);
        };
        let filenode: Option<i64> = row.try_get(0).map_err(fail)?;
        let blocks: i64 = row.try_get(1).map_err(fail)?;
        let tuples: f64 = row.try_get(2).map_err(fail)?;
        let pages: i64 = row.try_get(3).map_err(fail)?;
        let block_bytes: i64 = row.try_get(4).map_err(fail)?;
        #[allow(clippy::cast_precision_loss)]
        let rows_per_block = if tuples > 0.0 && pages > 0 { tuples / pages as f64 } else { UNKNOWN_ROWS_PER_BLOCK };
        Ok(filenode.map(|filenode| Storage {
            filenode,
            blocks: u64::try_from(blocks).unwrap_or(0),
            rows_per_block,
            block_bytes: u64::try_from(block_bytes).unwrap_or(0).max(1),
        }))
    }

    /// Whether `spec`'s table still holds exactly the rows that `basis`'s
    /// snapshot saw, at the same places, as `snapshot` sees it: the same
    /// storage file, and no row version written by a transaction that was
    /// running when the basis was taken or began later. The check is
    /// conservative (a version the old snapshot did see may count as new)
    /// and costs one pass over the table's rows; it runs only when a
    /// table's ranges were read under another snapshot.
    async fn unchanged_since(
        &self,
        spec: &ReadSpec,
        basis: Basis,
        snapshot: &RunSnapshot,
    ) -> Result<bool, TransferError> {
        let fail = |e: tokio_postgres::Error| Self::err("checking for changes since the last snapshot", spec, &e);
        let mut client = self.pool.get(Side::Source).await?;
        let tx = self.import(&mut client, spec, snapshot).await?;
        // Ages compare transaction ids across wraparound within 2^31 of
        // now; a basis more than a billion transactions old counts as
        // changed rather than risk that.
        let sql = format!(
            "SELECT pg_relation_filenode(to_regclass($1)) IS NOT DISTINCT FROM $2::text::oid \
             AND pg_snapshot_xmin(pg_current_snapshot())::text::numeric - $3::text::numeric < 1000000000 \
             AND NOT EXISTS (SELECT 1 FROM ONLY {} WHERE age(xmin) <= age(($3::text::numeric % 4294967296)::text::xid))",
            table_sql(spec)
        );
        let (filenode, xmin) = (basis.filenode.to_string(), basis.xmin.to_string());
        let unchanged: bool =
            tx.query_one(&sql, &[&table_sql(spec), &filenode, &xmin]).await.and_then(|r| r.try_get(0)).map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(unchanged)
    }

    /// Starts a read-only transaction on `client` that sees `snapshot`.
    async fn import<'c>(
        &self,
        client: &'c mut deadpool_postgres::Object,
        spec: &ReadSpec,
        snapshot: &RunSnapshot,
    ) -> Result<deadpool_postgres::Transaction<'c>, TransferError> {
        let fail = |e: tokio_postgres::Error| Self::err("reading", spec, &e);
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(fail)?;
        let set = format!("SET TRANSACTION SNAPSHOT {}", literal_pg(&snapshot.name));
        match tx.batch_execute(&set).await {
            Ok(()) => Ok(tx),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE) => {
                // The holding transaction ended before its connection was
                // seen closed: the next attempt holds a new snapshot.
                self.snapshot_lost(snapshot.epoch).await;
                Err(TransferError::Server {
                    side: Side::Source,
                    context: format!("reading {}", spec.label),
                    message: format!("the run's snapshot is gone ({e}); holding a new one"),
                    transience: Transience::Retry,
                })
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// The block-read state of `spec`'s table, if it is read so.
    fn block_table(&self, spec: &ReadSpec) -> Option<BlockTable> {
        if spec.changed_since.is_some() || spec.within_buckets.is_some() {
            return None;
        }
        self.blocks.tables.lock().ok()?.get(&spec.label).copied()
    }

    fn keep_block_table(&self, spec: &ReadSpec, table: BlockTable) {
        if let Ok(mut tables) = self.blocks.tables.lock() {
            tables.insert(spec.label.clone(), table);
        }
    }

    /// Reads the chunk of blocks after `after` (up to `upto`, covering
    /// about `limit` rows) under the run's snapshot: as COPY once the
    /// table's rows are known to be narrow, otherwise through a portal;
    /// a table's first chunk is only about [`PROBE_ROWS`] rows, which
    /// learn how wide its rows are.
    async fn read_blocks<S: RowSink>(
        &self,
        spec: &ReadSpec,
        mut table: BlockTable,
        (after, upto, limit): (Option<&Vec<RawValue>>, Option<&Vec<RawValue>>, Option<u64>),
        sink: &mut S,
    ) -> Result<Page<Vec<RawValue>>, TransferError> {
        let not_a_block = |key: &Vec<RawValue>| {
            TransferError::State(format!(
                "table {} is read by storage blocks, but a chunk bound {} is not a block",
                spec.label,
                Self::describe_key(key)
            ))
        };
        let after = after.map(|k| block_of(k).ok_or_else(|| not_a_block(k))).transpose()?;
        let upto = upto.map(|k| block_of(k).ok_or_else(|| not_a_block(k))).transpose()?;
        let Some(snapshot) = self.run_snapshot().await? else {
            return Err(TransferError::Server {
                side: Side::Source,
                context: format!("reading {}", spec.label),
                message: "the server no longer exports snapshots, which this table's read by storage blocks needs"
                    .into(),
                transience: Transience::Permanent,
            });
        };
        if table.checked_epoch != snapshot.epoch {
            if !self.unchanged_since(spec, table.basis, &snapshot).await? {
                return Err(TransferError::Server {
                    side: Side::Source,
                    context: format!("reading {}", spec.label),
                    message: "rows of the table changed after part of it was read under the run's snapshot, \
                              which was lost with its connection; the parts cannot be joined exactly. \
                              `resume` copies the table again"
                        .into(),
                    transience: Transience::Permanent,
                });
            }
            tracing::info!(table = %spec.label, "unchanged since the lost snapshot; its reads go on under a new one");
            table.checked_epoch = snapshot.epoch;
            self.keep_block_table(spec, table);
        }
        let widest = spec.widest_row.load(std::sync::atomic::Ordering::Relaxed);
        let blocks = limit.map(|l| {
            if widest == 0 {
                // The probe that learns the rows' width stays small.
                blocks_for_rows(l.min(PROBE_ROWS), table.rows_per_block)
            } else {
                blocks_for_rows(l, table.rows_per_block).max(spec.min_chunk_bytes / table.block_bytes)
            }
        });
        let Some(range) = chunk_range(after, upto, blocks, table.blocks) else {
            return Ok(Page { rows: 0, last_key: Some(block_key(TO_THE_END)), complete: Some(true) });
        };
        let select =
            format!("SELECT {} FROM ONLY {} WHERE {}", column_list(spec), table_sql(spec), range_condition(&range));
        let fail = |e: tokio_postgres::Error| Self::err("reading", spec, &e);
        let mut client = self.pool.get(Side::Source).await?;
        let tx = self.import(&mut client, spec, &snapshot).await?;
        let page = if (1..COPY_ROWS_BELOW).contains(&widest) && sink.takes_copy_rows() {
            let page =
                CopyPage { sql: format!("COPY ({select}) TO STDOUT (FORMAT binary)"), key: None, key_type: None };
            let stream = tx.copy_out(page.sql.as_str()).await.map_err(fail)?;
            scan_copy_out(spec, &page, stream, sink).await?
        } else {
            portal_page(&tx, spec, &select, Vec::new(), sink).await?
        };
        tx.commit().await.map_err(fail)?;
        // The next chunks are sized by the density met here: the catalog's
        // is an estimate, and there is none for a table never analyzed.
        if let Some(end) = range.end
            && page.rows > 0
        {
            #[allow(clippy::cast_precision_loss)]
            let density = page.rows as f64 / (end - range.first).max(1) as f64;
            // Halving at most per chunk: a sparse stretch (rows deleted)
            // must not size the next chunk for a dense one many times over.
            table.rows_per_block = density.max(table.rows_per_block / 2.0);
            self.keep_block_table(spec, table);
        }
        Ok(Page { rows: page.rows, last_key: Some(block_key(range.last)), complete: Some(range.complete) })
    }
}

/// A block as a key: how partition bounds and progress carry it.
fn block_key(block: u32) -> Vec<RawValue> {
    vec![RawValue { ty: Type::TID, bytes: Bytes::copy_from_slice(&block.to_be_bytes()) }]
}

/// The block a key made by [`block_key`] holds.
fn block_of(key: &[RawValue]) -> Option<u32> {
    match key {
        [one] if one.ty == Type::TID => Some(u32::from_be_bytes(one.bytes[..].try_into().ok()?)),
        _ => None,
    }
}

/// Scans a page's binary COPY output (see [`PgSource::read_page_by_copy`]).
async fn scan_copy_out<S: RowSink>(
    spec: &ReadSpec,
    page: &CopyPage,
    stream: tokio_postgres::CopyOutStream,
    sink: &mut S,
) -> Result<Page<Vec<RawValue>>, TransferError> {
    let fail = |e: tokio_postgres::Error| PgSource::err("reading", spec, &e);
    let broken = |message: String| TransferError::Server {
        side: Side::Source,
        context: format!("reading {}", spec.label),
        message,
        transience: Transience::Permanent,
    };
    let gone = |e: FieldError| match e {
        FieldError::WriterGone => TransferError::Cancelled,
        FieldError::Encode(e) => broken(e.to_string()),
    };
    let fields = u16::try_from(spec.columns.len())
        .map_err(|_| TransferError::Config(format!("table {} has more than 65535 columns", spec.label)))?;
    pin_mut!(stream);
    let mut scanner = CopyOutScanner::new(fields, page.key);
    while let Some(message) = stream.try_next().await.map_err(fail)? {
        let scanned = scanner.scan(&message).map_err(|e| broken(e.to_string()))?;
        if let Some(byte) = scanned.held {
            sink.copy_rows(&[byte]).await.map_err(gone)?;
        }
        sink.copy_rows(&message[scanned.rows]).await.map_err(gone)?;
    }
    spec.widest_row.fetch_max(scanner.widest_row(), std::sync::atomic::Ordering::Relaxed);
    if !scanner.ended() {
        return Err(broken("the COPY output ended before its trailer".into()));
    }
    let last_key = scanner
        .last_key()
        .zip(page.key_type.clone())
        .map(|(bytes, ty)| vec![RawValue { ty, bytes: Bytes::copy_from_slice(bytes) }]);
    Ok(Page { rows: scanner.rows(), last_key, complete: None })
}

/// Reads `sql`'s rows through a portal of `tx` fetched in batches sized to
/// the rows seen so far: the driver buffers a whole batch, so rows of 50 MB
/// come one at a time while narrow rows come thousands at a time.
async fn portal_page<S: RowSink>(
    tx: &tokio_postgres::Transaction<'_>,
    spec: &ReadSpec,
    sql: &str,
    params: Vec<&(dyn ToSql + Sync)>,
    sink: &mut S,
) -> Result<Page<Vec<RawValue>>, TransferError> {
    let fail = |e: tokio_postgres::Error| PgSource::err("reading", spec, &e);
    let fields = spec.columns.len();
    let field_count = u16::try_from(fields)
        .map_err(|_| TransferError::Config(format!("table {} has more than 65535 columns", spec.label)))?;
    let statement = tx.prepare(sql).await.map_err(fail)?;
    let portal = tx.bind_raw(&statement, params).await.map_err(fail)?;
    let mut widest = spec.widest_row.load(std::sync::atomic::Ordering::Relaxed);
    let mut batch = if widest == 0 { FIRST_BATCH_ROWS } else { next_batch(MAX_BATCH_ROWS, widest) };
    let mut rows = 0u64;
    let mut last = None;
    loop {
        let stream = tx.query_portal_raw(&portal, batch).await.map_err(fail)?;
        pin_mut!(stream);
        let mut fetched = 0;
        while let Some(row) = stream.try_next().await.map_err(fail)? {
            sink.encoder().begin_row(field_count);
            let mut row_bytes = 0;
            for i in 0..fields {
                let field: RawField<'_> = row.try_get(i).map_err(fail)?;
                match field.0 {
                    None => sink.encoder().null(),
                    Some(bytes) => {
                        row_bytes += bytes.len();
                        sink.field(bytes).await.map_err(|e| match e {
                            FieldError::WriterGone => TransferError::Cancelled,
                            FieldError::Encode(e) => TransferError::Value {
                                table: spec.label.clone(),
                                column: spec.columns[i].source_name.clone(),
                                key: "(unknown)".into(),
                                message: e.to_string(),
                            },
                        })?;
                    }
                }
            }
            widest = widest.max(row_bytes);
            rows += 1;
            fetched += 1;
            // A wide row is not kept for its key: only the key is.
            if !spec.key.is_empty() {
                last = Some(if row_bytes > KEEP_ROW_BYTES {
                    LastRow::Key(key_of(spec, &row).map_err(fail)?)
                } else {
                    LastRow::Row(row)
                });
            }
            sink.row_done().await.map_err(|_| TransferError::Cancelled)?;
        }
        spec.widest_row.fetch_max(widest, std::sync::atomic::Ordering::Relaxed);
        if fetched < batch {
            break;
        }
        batch = next_batch(batch, widest);
    }
    drop(portal);
    let last_key = match last {
        Some(LastRow::Row(row)) => Some(key_of(spec, &row).map_err(fail)?),
        Some(LastRow::Key(key)) => Some(key),
        None => None,
    };
    Ok(Page { rows, last_key, complete: None })
}

fn table_sql(spec: &ReadSpec) -> String {
    qualified_pg(&spec.schema, &spec.table)
}

/// The read columns, quoted, in the order the target takes them.
fn column_list(spec: &ReadSpec) -> String {
    spec.columns.iter().map(|c| quote_pg(&c.source_name)).collect::<Vec<_>>().join(", ")
}

fn key_list(spec: &ReadSpec) -> String {
    spec.key.iter().map(|&k| quote_pg(&spec.columns[k].source_name)).collect::<Vec<_>>().join(", ")
}

/// `($n, $n+1, …)` for the key's parts, starting at `first`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// The page query: `SELECT cols FROM t WHERE (key) > (…) AND (key) <= (…) ORDER BY key LIMIT …`.
pub fn page_sql(spec: &ReadSpec, has_after: bool, has_upto: bool, has_limit: bool) -> String {
    let n = spec.key.len();
    let after = has_after.then(|| format!("({})", placeholders(1, n)));
    let first_after_bounds = 1 + if has_after { n } else { 0 };
    let upto = has_upto.then(|| format!("({})", placeholders(first_after_bounds, n)));
    let limit = has_limit.then(|| format!("${}", first_after_bounds + if has_upto { n } else { 0 }));
    select_page(spec, after, upto, limit)
}

/// The page query with the bounds and limit given as SQL: placeholders,
/// or literals where the query cannot take parameters (COPY).
fn select_page(spec: &ReadSpec, after: Option<String>, upto: Option<String>, limit: Option<String>) -> String {
    let mut sql = format!("SELECT {} FROM {}", column_list(spec), table_sql(spec));
    let keys = key_list(spec);
    let mut conditions = Vec::new();
    if let Some(after) = after {
        conditions.push(format!("({keys}) > {after}"));
    }
    if let Some(upto) = upto {
        conditions.push(format!("({keys}) <= {upto}"));
    }
    spec.write_where(&mut sql, conditions, changed_condition);
    if !spec.key.is_empty() {
        let _ = write!(sql, " ORDER BY {keys}");
    }
    if let Some(limit) = limit {
        let _ = write!(sql, " LIMIT {limit}");
    }
    sql
}

/// A page read as the server's binary COPY output, whose rows a PostgreSQL
/// target takes as they are: the statement, and where each row's key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPage {
    pub sql: String,
    pub key: Option<KeyField>,
    /// The key's type, for the last key the page hands back.
    pub key_type: Option<Type>,
}

/// The page as `COPY (SELECT …) TO STDOUT (FORMAT binary)`, for a table
/// without a key or with one integer key. COPY takes no parameters, so the
/// bounds are written as integer literals; other keys are read through
/// [`page_sql`].
pub fn copy_page(
    spec: &ReadSpec,
    after: Option<&[RawValue]>,
    upto: Option<&[RawValue]>,
    limit: Option<u64>,
) -> Option<CopyPage> {
    let (key, key_type) = if spec.key.is_empty() {
        (None, None)
    } else {
        let column = spec.integer_key()?;
        let (width, ty) = match column.source_type {
            ColumnType::Postgres(PgType::SmallInt) => (2, Type::INT2),
            ColumnType::Postgres(PgType::Integer) => (4, Type::INT4),
            ColumnType::Postgres(PgType::BigInt) => (8, Type::INT8),
            _ => return None,
        };
        (Some(KeyField { index: u16::try_from(spec.key[0]).ok()?, width }), Some(ty))
    };
    let literal = |bound: Option<&[RawValue]>| -> Option<Option<String>> {
        match bound {
            None => Some(None),
            Some([value]) => raw_integer(value).map(|v| Some(format!("({v})"))),
            Some(_) => None,
        }
    };
    let select = select_page(spec, literal(after)?, literal(upto)?, limit.map(|l| l.to_string()));
    Some(CopyPage { sql: format!("COPY ({select}) TO STDOUT (FORMAT binary)"), key, key_type })
}

/// The incremental read's condition: the column at or after the mark, or
/// NULL where it can be (no mark can place a NULL, so such rows are read
/// every time).
pub fn changed_condition(changed: &ChangedSince) -> String {
    let q = quote_pg(&changed.column);
    let at_or_after = format!("{q} >= {}::{}", literal_pg(&changed.mark), changed.source_type);
    if changed.nullable { format!("({at_or_after} OR {q} IS NULL)") } else { format!("({at_or_after})") }
}

impl Source for PgSource {
    type Key = Vec<RawValue>;

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn probe(&self) -> Result<ServerProbe, TransferError> {
        probe_pg(&self.pool, Side::Source).await
    }

    async fn ping(&self) -> Result<(), TransferError> {
        ping_pg(&self.pool, Side::Source).await
    }

    async fn change_mark(
        &self,
        spec: &ReadSpec,
        column: &str,
        kind: ChangeKind,
        lookback: u32,
    ) -> Result<Option<String>, TransferError> {
        let q = quote_pg(column);
        let table = table_sql(spec);
        let context = "taking the change mark";
        let client = self.pool.get(Side::Source).await?;
        let row = match kind {
            ChangeKind::Time => {
                let sql = format!("SELECT (max({q}) - make_interval(secs => $1))::text FROM {table}");
                client.query_one(&sql, &[&f64::from(lookback)]).await
            }
            ChangeKind::Integer | ChangeKind::RowVersion => {
                let sql = format!("SELECT (max({q}) - $1)::text FROM {table}");
                client.query_one(&sql, &[&i64::from(lookback)]).await
            }
        };
        let row = row.map_err(|e| Self::err(context, spec, &e))?;
        row.try_get::<_, Option<String>>(0).map_err(|e| Self::err(context, spec, &e))
    }

    async fn table_access(&self, schema: &str, tables: &[Table]) -> Result<Vec<TableAccess>, TransferError> {
        let client = self.pool.get(Side::Source).await?;
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        let context = format!("checking the privileges on schema {schema}");
        let rows = client
            .query(TABLE_ACCESS, &[&schema, &names])
            .await
            .map_err(|e| pg_error(Side::Source, context.as_str(), &e))?;
        let mut granted = std::collections::HashMap::new();
        for row in rows {
            let name: String = row.try_get(0).map_err(|e| pg_error(Side::Source, context.as_str(), &e))?;
            let select: bool = row.try_get(1).map_err(|e| pg_error(Side::Source, context.as_str(), &e))?;
            granted.insert(name, select);
        }
        Ok(tables
            .iter()
            .map(|t| TableAccess {
                table: format!("{}.{}", t.schema, t.name),
                select: granted.get(&t.name).copied().unwrap_or(false),
                view_definition: true,
            })
            .collect())
    }

    async fn list_tables(&self) -> Result<Vec<TableName>, TransferError> {
        let client = self.pool.get(Side::Source).await?;
        let context = "listing the tables";
        let rows = client.query(LIST_TABLES, &[]).await.map_err(|e| pg_error(Side::Source, context, &e))?;
        rows.iter()
            .map(|r| {
                let rows: i64 = r.try_get(2).map_err(|e| pg_error(Side::Source, context, &e))?;
                Ok(TableName {
                    schema: r.try_get(0).map_err(|e| pg_error(Side::Source, context, &e))?,
                    name: r.try_get(1).map_err(|e| pg_error(Side::Source, context, &e))?,
                    estimated_rows: u64::try_from(rows).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn count_rows(&self, spec: &ReadSpec) -> Result<u64, TransferError> {
        let client = self.pool.get(Side::Source).await?;
        let sql = format!("SELECT count(*) FROM {}{}", table_sql(spec), spec.changed_filter(changed_condition));
        let row = client.query_one(&sql, &[]).await.map_err(|e| Self::err("counting the rows of", spec, &e))?;
        let count: i64 = row.try_get(0).map_err(|e| Self::err("counting the rows of", spec, &e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn read_schema(
        &self,
        schema: &str,
        select: &(dyn Fn(&str, &str) -> bool + Sync),
    ) -> Result<Vec<Table>, TransferError> {
        let client = self.pool.get(Side::Source).await?;
        Ok(crate::catalog::read_schema(&client, schema, select).await?)
    }

    async fn integer_range(&self, spec: &ReadSpec) -> Result<Option<(i64, i64)>, TransferError> {
        let client = self.pool.get(Side::Source).await?;
        let key = key_list(spec);
        let sql = format!(
            "SELECT min({key})::int8, max({key})::int8 FROM {}{}",
            table_sql(spec),
            spec.changed_filter(changed_condition)
        );
        let row = client.query_one(&sql, &[]).await.map_err(|e| Self::err("reading the key range of", spec, &e))?;
        let min: Option<i64> = row.try_get(0).map_err(|e| Self::err("reading the key range of", spec, &e))?;
        let max: Option<i64> = row.try_get(1).map_err(|e| Self::err("reading the key range of", spec, &e))?;
        Ok(min.zip(max))
    }

    fn integer_key(&self, spec: &ReadSpec, value: i64) -> Self::Key {
        let target = spec.integer_key().map(|c| c.target);
        let (ty, bytes) = match target {
            Some(PgType::SmallInt) => (Type::INT2, Bytes::copy_from_slice(&(value as i16).to_be_bytes())),
            Some(PgType::Integer) => (Type::INT4, Bytes::copy_from_slice(&(value as i32).to_be_bytes())),
            _ => (Type::INT8, Bytes::copy_from_slice(&value.to_be_bytes())),
        };
        vec![RawValue { ty, bytes }]
    }

    async fn boundaries(&self, spec: &ReadSpec, every: u64) -> Result<Vec<Self::Key>, TransferError> {
        let client = self.pool.get(Side::Source).await?;
        let keys = key_list(spec);
        let sql = format!(
            "SELECT {keys} FROM (SELECT {keys}, row_number() OVER (ORDER BY {keys}) AS mpm_rn FROM {}{}) s \
             WHERE mpm_rn % $1 = 0 ORDER BY {keys}",
            table_sql(spec),
            spec.changed_filter(changed_condition)
        );
        let every = i64::try_from(every.max(1)).unwrap_or(i64::MAX);
        let rows =
            client.query(&sql, &[&every]).await.map_err(|e| Self::err("computing chunk boundaries of", spec, &e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut key = Vec::with_capacity(spec.key.len());
            for i in 0..spec.key.len() {
                let field: RawField<'_> =
                    row.try_get(i).map_err(|e| Self::err("computing chunk boundaries of", spec, &e))?;
                let ty = row.columns()[i].type_().clone();
                key.push(RawValue { ty, bytes: Bytes::copy_from_slice(field.0.unwrap_or_default()) });
            }
            out.push(key);
        }
        Ok(out)
    }

    async fn checksum_dialect(&self) -> Result<Option<ChecksumDialect>, TransferError> {
        let client = self.pool.get(Side::Source).await?;
        crate::checksum::session_checksum_dialect(&client)
            .await
            .map_err(|e| pg_error(Side::Source, "asking the server's encoding", &e))
    }

    async fn checksum_buckets(
        &self,
        spec: &ReadSpec,
        sql: &str,
        buckets: Option<Buckets>,
    ) -> Result<Vec<BucketSum>, TransferError> {
        let client = self.pool.get(Side::Source).await?;
        crate::checksum::bucket_sums(&client, sql, buckets)
            .await
            .map_err(|e| Self::err("computing the checksums of", spec, &e))
    }

    async fn block_plan(&self, spec: &ReadSpec, parts: u32) -> Result<Option<BlockPlan<Self::Key>>, TransferError> {
        if spec.changed_since.is_some() || spec.within_buckets.is_some() {
            return Ok(None);
        }
        // A table without a key is one chunk, emptied first when redone: one
        // range, read under the run's snapshot like the others.
        let parts = if spec.key.is_empty() { 1 } else { parts };
        // Taken before the table's size is read: every row the snapshot
        // sees lies in a block that already exists then.
        let Some(snapshot) = self.run_snapshot().await? else { return Ok(None) };
        let Some(storage) = self.storage(spec).await? else { return Ok(None) };
        let basis = Basis { xmin: snapshot.xmin, filenode: storage.filenode };
        self.keep_block_table(spec, BlockTable::new(&storage, basis, &snapshot));
        let bounds = partition_bounds(storage.blocks, parts).into_iter().map(block_key).collect();
        Ok(Some(BlockPlan { bounds, basis: basis.to_state() }))
    }

    async fn resume_block_read(&self, spec: &ReadSpec, basis: &str) -> Result<bool, TransferError> {
        let basis = Basis::from_state(basis)
            .map_err(|why| TransferError::State(format!("saved run state, table {}: {why}", spec.label)))?;
        let Some(snapshot) = self.run_snapshot().await? else { return Ok(false) };
        let Some(storage) = self.storage(spec).await? else { return Ok(false) };
        if !self.unchanged_since(spec, basis, &snapshot).await? {
            return Ok(false);
        }
        self.keep_block_table(spec, BlockTable::new(&storage, basis, &snapshot));
        Ok(true)
    }

    async fn read_page<S: RowSink>(
        &self,
        spec: &ReadSpec,
        after: Option<&Self::Key>,
        upto: Option<&Self::Key>,
        limit: Option<u64>,
        sink: &mut S,
    ) -> Result<Page<Self::Key>, TransferError> {
        if let Some(table) = self.block_table(spec) {
            return self.read_blocks(spec, table, (after, upto, limit), sink).await;
        }
        let widest = spec.widest_row.load(std::sync::atomic::Ordering::Relaxed);
        let Some(copy) = copy_page(spec, after.map(Vec::as_slice), upto.map(Vec::as_slice), limit)
            .filter(|_| sink.takes_copy_rows())
        else {
            return self.read_page_by_portal(spec, after, upto, limit, sink).await;
        };
        if (1..COPY_ROWS_BELOW).contains(&widest) {
            return self.read_page_by_copy(spec, &copy, sink).await;
        }
        let Some(limit) = limit.filter(|&l| widest == 0 && l > PROBE_ROWS && !spec.key.is_empty()) else {
            return self.read_page_by_portal(spec, after, upto, limit, sink).await;
        };
        // The table's first page: how wide its rows are is not known yet.
        // Its first rows come through the portal, which learns that, and
        // the rest of the page as COPY when they were narrow.
        let probe = self.read_page_by_portal(spec, after, upto, Some(PROBE_ROWS), sink).await?;
        if probe.rows < PROBE_ROWS {
            return Ok(probe);
        }
        let Some(probe_end) = probe.last_key else {
            return Err(TransferError::Server {
                side: Side::Source,
                context: format!("reading {}", spec.label),
                message: format!("a page of {PROBE_ROWS} keyed rows came back without its last key"),
                transience: Transience::Permanent,
            });
        };
        let rest = Some(limit - PROBE_ROWS);
        let narrow = (1..COPY_ROWS_BELOW).contains(&spec.widest_row.load(std::sync::atomic::Ordering::Relaxed));
        let rest = match copy_page(spec, Some(&probe_end), upto.map(Vec::as_slice), rest).filter(|_| narrow) {
            Some(page) => self.read_page_by_copy(spec, &page, sink).await?,
            None => self.read_page_by_portal(spec, Some(&probe_end), upto, rest, sink).await?,
        };
        Ok(Page { rows: probe.rows + rest.rows, last_key: rest.last_key.or(Some(probe_end)), complete: None })
    }

    fn describe_key(key: &Self::Key) -> String {
        if let Some(block) = block_of(key) {
            return block_to_state(block);
        }
        let parts: Vec<String> = key.iter().map(describe_raw).collect();
        format!("({})", parts.join(", "))
    }

    fn key_to_state(key: &Self::Key) -> String {
        if let Some(block) = block_of(key) {
            return block_to_state(block);
        }
        if let [one] = key.as_slice()
            && let Some(value) = raw_integer(one)
        {
            return value.to_string();
        }
        join_key_parts(key.iter().map(|v| format!("{}:{}", v.ty.oid(), hex(&v.bytes))).collect())
    }

    fn key_from_state(&self, spec: &ReadSpec, text: &str) -> Result<Self::Key, String> {
        if let Some(block) = block_from_state(text) {
            return Ok(block_key(block));
        }
        match split_key_parts(spec, text)? {
            KeyText::Integer(value) => Ok(self.integer_key(spec, value)),
            KeyText::Parts(parts) => parts
                .iter()
                .map(|part| {
                    let (oid, bytes) = part.split_once(':').ok_or_else(|| format!("key part {part:?} has no type"))?;
                    let oid: u32 = oid.parse().map_err(|_| format!("key part {part:?} has no type"))?;
                    // Only describe_key looks at the type; the bytes are sent as they are.
                    let ty = Type::from_oid(oid).unwrap_or(Type::BYTEA);
                    Ok(RawValue { ty, bytes: Bytes::from(unhex(bytes)?) })
                })
                .collect(),
        }
    }
}

/// SELECT on each named table, which also needs USAGE on its schema.
const TABLE_ACCESS: &str = "\
SELECT c.relname::text, has_table_privilege(c.oid, 'SELECT') AND has_schema_privilege(n.oid, 'USAGE')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = ANY($2)";

/// User tables outside the system schemas and this tool's state schema.
const LIST_TABLES: &str = "\
SELECT n.nspname::text, c.relname::text, GREATEST(c.reltuples, 0)::int8
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'mssql_pg_migrate') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2";

const PROBE: &str = "\
SELECT version(), current_user::text, s.ssl, s.version, s.cipher
FROM (SELECT 1) one LEFT JOIN pg_stat_ssl s ON s.pid = pg_backend_pid()";

/// Version, login and encryption of a session of `pool` (a PostgreSQL
/// source, or the target).
///
/// # Errors
/// When no session can be had or the query fails.
pub async fn probe_pg(pool: &PgPool, side: Side) -> Result<ServerProbe, TransferError> {
    let client = pool.get(side).await?;
    let context = "reading the server version";
    let row = client.query_one(PROBE, &[]).await.map_err(|e| pg_error(side, context, &e))?;
    let tls: Option<bool> = row.try_get(2).map_err(|e| pg_error(side, context, &e))?;
    let protocol: Option<String> = row.try_get(3).map_err(|e| pg_error(side, context, &e))?;
    let cipher: Option<String> = row.try_get(4).map_err(|e| pg_error(side, context, &e))?;
    Ok(ServerProbe {
        version: row.try_get(0).map_err(|e| pg_error(side, context, &e))?,
        user: row.try_get(1).map_err(|e| pg_error(side, context, &e))?,
        tls,
        tls_detail: Some(match (tls, protocol, cipher) {
            (Some(true), Some(protocol), Some(cipher)) => {
                format!("{protocol} {cipher}, {}", pool.verification().describe().trim_start_matches("encrypted, "))
            }
            (Some(false), ..) => "not encrypted".to_owned(),
            _ => pool.verification().describe().to_owned(),
        }),
    })
}

/// One empty round trip on a pooled session.
///
/// # Errors
/// When no session can be had or the server does not answer.
pub async fn ping_pg(pool: &PgPool, side: Side) -> Result<(), TransferError> {
    let client = pool.get(side).await?;
    client.simple_query("").await.map_err(|e| pg_error(side, "measuring the round trip", &e))?;
    Ok(())
}

/// Rows in the first fetch of a page: one, since nothing is known yet of
/// the rows' size and the driver may read several fetched rows ahead.
const FIRST_BATCH_ROWS: i32 = 1;
/// A COPY streams without pausing and the driver reads a few messages
/// ahead of the reader, so pages are read as COPY only while every row seen
/// is narrower than this; the first [`PROBE_ROWS`] of a table, and tables
/// with wider rows, go through the portal, which fetches rows of 50 MB one
/// at a time.
const COPY_ROWS_BELOW: usize = 1 << 20;
/// Rows of a table's first page read through the portal, to learn how
/// wide its rows are before the rest of the page is read as COPY.
const PROBE_ROWS: u64 = 1024;
/// Most rows per fetch, for narrow rows.
const MAX_BATCH_ROWS: i32 = 16_384;
/// Bytes of rows a fetch aims at: what the driver holds at once.
const BATCH_BYTES: usize = 4 << 20;
/// Rows wider than this are not kept until the next row arrives.
const KEEP_ROW_BYTES: usize = 64 << 10;

/// The next fetch size: doubling towards [`MAX_BATCH_ROWS`], but never
/// more rows than fit [`BATCH_BYTES`] at the widest row seen (at least one).
fn next_batch(current: i32, widest_row: usize) -> i32 {
    let fitting = i32::try_from(BATCH_BYTES / widest_row.max(1)).unwrap_or(i32::MAX).max(1);
    current.saturating_mul(2).min(MAX_BATCH_ROWS).min(fitting)
}

/// The last row of a page, or only its key when the row is wide.
enum LastRow {
    Row(tokio_postgres::Row),
    Key(Vec<RawValue>),
}

/// The key of `row`.
fn key_of(spec: &ReadSpec, row: &tokio_postgres::Row) -> Result<Vec<RawValue>, tokio_postgres::Error> {
    let mut key = Vec::with_capacity(spec.key.len());
    for &k in &spec.key {
        let field: RawField<'_> = row.try_get(k)?;
        let ty = row.columns()[k].type_().clone();
        key.push(RawValue { ty, bytes: Bytes::copy_from_slice(field.0.unwrap_or_default()) });
    }
    Ok(key)
}

fn raw_integer(v: &RawValue) -> Option<i64> {
    let b = &v.bytes[..];
    match v.ty {
        Type::INT2 => Some(i64::from(i16::from_be_bytes(b.try_into().ok()?))),
        Type::INT4 => Some(i64::from(i32::from_be_bytes(b.try_into().ok()?))),
        Type::INT8 => Some(i64::from_be_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

fn describe_raw(v: &RawValue) -> String {
    let b = &v.bytes[..];
    if let Some(value) = raw_integer(v) {
        return value.to_string();
    }
    match v.ty {
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => format!("'{}'", String::from_utf8_lossy(b)),
        _ => b.iter().fold(String::from("0x"), |mut s, byte| {
            let _ = write!(s, "{byte:02x}");
            s
        }),
    }
}

#[cfg(test)]
mod tests {
    use mssql_pg_migrate_schema::ColumnType;

    use super::*;
    use mssql_pg_migrate_dialect::source::ReadColumn;

    fn spec(key: Vec<usize>) -> ReadSpec {
        let col = |n: &str| ReadColumn {
            source_name: n.into(),
            source_type: ColumnType::Postgres(PgType::Integer),
            target: PgType::Integer,
        };
        ReadSpec {
            schema: "s\"x".into(),
            table: "T".into(),
            columns: vec![col("a"), col("b c"), col("d")],
            key,
            label: "s.T".into(),
            widest_row: Default::default(),
            changed_since: None,
            within_buckets: None,
            min_chunk_bytes: 0,
        }
    }

    #[test]
    fn fetches_grow_for_narrow_rows_and_shrink_to_one_for_huge_ones() {
        assert_eq!(next_batch(64, 100), 128);
        assert_eq!(next_batch(8192, 100), MAX_BATCH_ROWS);
        assert_eq!(next_batch(MAX_BATCH_ROWS, 100), MAX_BATCH_ROWS);
        assert_eq!(next_batch(64, 1 << 20), 4, "4 MB of 1 MB rows");
        assert_eq!(next_batch(64, 50 << 20), 1, "a 50 MB row comes alone");
        assert_eq!(next_batch(64, 0), 128, "rows of NULLs only");
    }

    #[test]
    fn incremental_pages_read_rows_at_or_after_the_mark_and_those_without_a_value() {
        let changed = ReadSpec {
            changed_since: Some(ChangedSince {
                column: "mod'ified".into(),
                source_type: ColumnType::Postgres(PgType::TimestampTz(Some(6))),
                kind: ChangeKind::Time,
                mark: "2026-11-30 01:00:00+00".into(),
                nullable: true,
            }),
            ..spec(vec![0])
        };
        assert_eq!(
            page_sql(&changed, true, false, true),
            "SELECT \"a\", \"b c\", \"d\" FROM \"s\"\"x\".\"T\" WHERE (\"a\") > ($1) \
             AND (\"mod'ified\" >= '2026-11-30 01:00:00+00'::timestamptz(6) OR \"mod'ified\" IS NULL) \
             ORDER BY \"a\" LIMIT $2"
        );
        let never_null = ChangedSince { nullable: false, ..changed.changed_since.clone().expect("set above") };
        assert_eq!(
            changed_condition(&never_null),
            "(\"mod'ified\" >= '2026-11-30 01:00:00+00'::timestamptz(6))",
            "a NOT NULL column is compared alone, so its index can serve the read"
        );
    }

    #[test]
    fn page_queries_compare_whole_keys_and_quote_names() {
        assert_eq!(
            page_sql(&spec(vec![0, 1]), true, true, true),
            "SELECT \"a\", \"b c\", \"d\" FROM \"s\"\"x\".\"T\" WHERE (\"a\", \"b c\") > ($1, $2) \
             AND (\"a\", \"b c\") <= ($3, $4) ORDER BY \"a\", \"b c\" LIMIT $5"
        );
        assert_eq!(
            page_sql(&spec(vec![0]), false, true, true),
            "SELECT \"a\", \"b c\", \"d\" FROM \"s\"\"x\".\"T\" WHERE (\"a\") <= ($1) ORDER BY \"a\" LIMIT $2"
        );
        assert_eq!(page_sql(&spec(vec![]), false, false, false), "SELECT \"a\", \"b c\", \"d\" FROM \"s\"\"x\".\"T\"");
    }

    #[test]
    fn integer_keyed_and_keyless_pages_are_read_as_copy_with_literal_bounds() {
        let key = |v: i32| vec![RawValue { ty: Type::INT4, bytes: Bytes::copy_from_slice(&v.to_be_bytes()) }];
        let (after, upto) = (key(-7), key(300));
        let page = copy_page(&spec(vec![1]), Some(&after), Some(&upto), Some(100_000)).expect("an integer key");
        assert_eq!(
            page.sql,
            "COPY (SELECT \"a\", \"b c\", \"d\" FROM \"s\"\"x\".\"T\" WHERE (\"b c\") > (-7) AND (\"b c\") <= (300) \
             ORDER BY \"b c\" LIMIT 100000) TO STDOUT (FORMAT binary)"
        );
        assert_eq!((page.key, page.key_type), (Some(KeyField { index: 1, width: 4 }), Some(Type::INT4)));
        let keyless = copy_page(&spec(vec![]), None, None, None).expect("no key");
        assert_eq!(keyless.sql, "COPY (SELECT \"a\", \"b c\", \"d\" FROM \"s\"\"x\".\"T\") TO STDOUT (FORMAT binary)");
        assert_eq!((keyless.key, keyless.key_type), (None, None));
    }

    #[test]
    fn pages_whose_bounds_cannot_be_integer_literals_keep_their_parameters() {
        assert_eq!(copy_page(&spec(vec![0, 1]), None, None, Some(10)), None, "a key of two columns");
        let mut text_key = spec(vec![0]);
        text_key.columns[0].source_type = ColumnType::Postgres(PgType::Text);
        assert_eq!(copy_page(&text_key, None, None, Some(10)), None, "a text key");
        let mut bigint_key = spec(vec![0]);
        bigint_key.columns[0].source_type = ColumnType::Postgres(PgType::BigInt);
        let bigint_page = copy_page(&bigint_key, None, None, None).expect("a bigint key");
        assert_eq!((bigint_page.key, bigint_page.key_type), (Some(KeyField { index: 0, width: 8 }), Some(Type::INT8)));
    }

    #[test]
    fn keys_are_described_readably() {
        let key = vec![
            RawValue { ty: Type::INT4, bytes: Bytes::from_static(&[0, 0, 1, 0]) },
            RawValue { ty: Type::TEXT, bytes: Bytes::from_static(b"abc") },
            RawValue { ty: Type::UUID, bytes: Bytes::from_static(&[0xab, 0x01]) },
        ];
        assert_eq!(PgSource::describe_key(&key), "(256, 'abc', 0xab01)");
    }

    #[tokio::test]
    async fn keys_round_trip_through_the_state_text() {
        // The pool is never used: building keys needs no connection.
        let endpoint = crate::pool::PgEndpoint {
            host: "127.0.0.1".into(),
            port: 1,
            database: "none".into(),
            user: "none".into(),
            password: Default::default(),
            ssl_mode: mssql_pg_migrate_config::SslMode::Disable,
            tls: Default::default(),
        };
        let source = PgSource::new(PgPool::new(&endpoint, Side::Source, 1).unwrap());
        let int_key = vec![RawValue { ty: Type::INT4, bytes: Bytes::copy_from_slice(&(-7i32).to_be_bytes()) }];
        assert_eq!(PgSource::key_to_state(&int_key), "-7", "the guide's form for integer keys");
        assert_eq!(source.key_from_state(&spec(vec![0]), "-7").unwrap(), int_key);

        let composite = vec![
            RawValue { ty: Type::TEXT, bytes: Bytes::from_static("é \"x\"".as_bytes()) },
            RawValue { ty: Type::INT4, bytes: Bytes::from_static(&[0, 0, 0, 9]) },
        ];
        let text = PgSource::key_to_state(&composite);
        assert_eq!(text, r#"["25:c3a9202278 22","23:00000009"]"#.replace(' ', ""));
        assert_eq!(source.key_from_state(&spec(vec![1, 2]), &text).unwrap(), composite);

        let err = source.key_from_state(&spec(vec![0, 1, 2]), &text).unwrap_err();
        assert!(err.contains("has 2 part(s), but the key of s.T has 3"), "{err}");
        assert!(source.key_from_state(&spec(vec![1, 2]), "[\"25:zz\",\"23:00\"]").unwrap_err().contains("hexadecimal"));
    }
}
