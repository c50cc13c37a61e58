//! Writing rows into a SQL Server table through the TDS bulk load
//! (`INSERT BULK`), the protocol's own fast path: never row-by-row INSERTs.
//!
//! A load writes [`ddl::loaded_columns`](crate::ddl::loaded_columns) (no
//! computed columns, no rowversions) with the options a copy needs:
//!
//! - identity values as the source has them (the identity column is in the
//!   load's column list, as `SqlBulkCopy`'s `KeepIdentity` does; the table's
//!   identity is reseeded afterwards, [`ddl::reseed_identity`](crate::ddl::reseed_identity));
//! - NULLs kept (`KEEP_NULLS`): a column's default applies to rows inserted
//!   later, never to a NULL the source holds;
//! - the table locked (`TABLOCK`), which lets SQL Server log the load
//!   minimally into an empty heap;
//! - no constraint checks and no triggers: keys and checks are added after
//!   the data, and checked then.
//!
//! Where tiberius or the server would not take a value as it is:
//!
//! - tiberius refuses a string or binary value above 64 KB (it checks it
//!   against a `(max)` column's 16-bit length word), so such values are
//!   loaded empty and written afterwards by the row's primary key;
//! - tiberius sends a time's increments at the scale it was read at, and
//!   the server reads them at the column's, so times are rescaled to the
//!   column's scale first;
//! - Babelfish misreads bulk-loaded decimals and negative smallmoney, so
//!   there a table with numbers goes through a staging table (see
//!   [`bulk_load`]).

use std::borrow::Cow;
use std::fmt::Write as _;

use mssql_pg_migrate_dialect::TransferError;
use mssql_pg_migrate_schema::ident::{qualified_mssql, quote_mssql};
use mssql_pg_migrate_schema::{Column, ColumnType, Table};
use mssql_pg_migrate_typemap::MssqlType;
use tiberius::time::{DateTime2, DateTimeOffset, Time};
use tiberius::{Client, ColumnData, SqlBulkCopyOption, SqlBulkCopyOptions, TokenRow, TypeInfo, VarLenType};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::compat::Compat;

use crate::ddl::loaded_columns;
use crate::error::target_error;
use crate::target::execute;

/// How a copy reads `column` from a SQL Server source so the bulk load
/// writes it exactly: tiberius decodes `money` as a float, so it is read as
/// the decimal it is (the load writes a decimal into `money` exactly);
/// everything else as it is.
pub fn copy_select_expression(column: &Column) -> String {
    let q = quote_mssql(&column.name);
    match &column.data_type {
        ColumnType::Mssql(MssqlType::Money) => format!("CAST({q} AS decimal(19,4))"),
        ColumnType::Mssql(MssqlType::SmallMoney) => format!("CAST({q} AS decimal(10,4))"),
        _ => q,
    }
}

/// The bulk-load options of a copy (see the module's documentation).
pub fn copy_options() -> SqlBulkCopyOptions {
    SqlBulkCopyOption::KeepIdentity | SqlBulkCopyOption::KeepNulls | SqlBulkCopyOption::TableLock
}

/// Above this many bytes a string or binary value cannot go through the
/// bulk load: tiberius checks it against the 65,535 of a `(max)` column's
/// length word. Such a value is loaded empty and written by key afterwards.
const BULK_VALUE_LIMIT: usize = 65_535;

/// Whether `cell` may be too large for the bulk load. A string's wire form
/// (UTF-16, or the collation's code page) takes at most twice its UTF-8 bytes.
fn too_large(cell: &ColumnData<'_>) -> bool {
    match cell {
        ColumnData::String(Some(s)) => s.len() * 2 > BULK_VALUE_LIMIT,
        ColumnData::Binary(Some(b)) => b.len() > BULK_VALUE_LIMIT,
        _ => false,
    }
}

/// What a too-large value is loaded as until it is written: empty, which
/// a NOT NULL column takes (its checks come after the data).
fn placeholder(cell: &ColumnData<'_>) -> ColumnData<'static> {
    match cell {
        ColumnData::Binary(_) => ColumnData::Binary(Some(Cow::Borrowed(&[]))),
        _ => ColumnData::String(Some(Cow::Borrowed(""))),
    }
}

/// The fractional-second scale the server's bulk load takes for each
/// column, for date and time columns (`None` for others).
async fn time_scales<S>(
    client: &mut Client<Compat<S>>,
    target: &str,
    columns: &[&str],
) -> tiberius::Result<Vec<Option<u8>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let metadata = client.column_metadata(target, columns).await?;
    Ok(metadata
        .iter()
        .map(|column| match &column.base.ty {
            TypeInfo::VarLenSized(context)
                if matches!(
                    context.r#type(),
                    VarLenType::Timen | VarLenType::Datetime2 | VarLenType::DatetimeOffsetn
                ) =>
            {
                u8::try_from(context.len()).ok()
            }
            _ => None,
        })
        .collect())
}

/// `increments` of 10^-`from` s as increments of 10^-`to` s (a coarser
/// scale cuts the digits it cannot hold, so a time never rounds into the
/// next day).
fn rescaled(increments: u64, from: u8, to: u8) -> u64 {
    if to >= from {
        increments.saturating_mul(10u64.pow(u32::from(to - from)))
    } else {
        increments / 10u64.pow(u32::from(from - to))
    }
}

/// A date and time value at the column's own scale. tiberius writes a time's
/// increments as they are under the column's scale, so a value read at
/// another scale (Babelfish reads `time(7)` at 6) would be misread tenfold.
fn at_scale(cell: ColumnData<'static>, scale: Option<u8>) -> ColumnData<'static> {
    let Some(to) = scale else { return cell };
    let time = |t: Time| Time::new(rescaled(t.increments(), t.scale(), to), to);
    match cell {
        ColumnData::Time(Some(t)) if t.scale() != to => ColumnData::Time(Some(time(t))),
        ColumnData::DateTime2(Some(d)) if d.time().scale() != to => {
            ColumnData::DateTime2(Some(DateTime2::new(d.date(), time(d.time()))))
        }
        ColumnData::DateTimeOffset(Some(o)) if o.datetime2().time().scale() != to => {
            let d = o.datetime2();
            ColumnData::DateTimeOffset(Some(DateTimeOffset::new(DateTime2::new(d.date(), time(d.time())), o.offset())))
        }
        other => other,
    }
}

/// The session's staging table (see [`bulk_load`]).
const STAGE_TABLE: &str = "#mpm_stage";

/// Whether a column goes into the staging table as text.
fn as_text_in_stage(ty: &ColumnType) -> bool {
    matches!(ty, ColumnType::Mssql(MssqlType::Decimal { .. } | MssqlType::SmallMoney | MssqlType::Money))
}

/// The staging table for `columns`: their types, all nullable, no
/// identity, numbers as text when asked.
fn stage_table(columns: &[&Column], numbers_as_text: bool) -> String {
    let definitions = columns
        .iter()
        .map(|c| {
            let ty = match &c.data_type {
                ty if numbers_as_text && as_text_in_stage(ty) => "nvarchar(60)".to_owned(),
                ColumnType::Mssql(ty) => crate::ddl::copy_type(ty).to_string(),
                other => other.to_string(),
            };
            format!("{} {ty} NULL", quote_mssql(&c.name))
        })
        .collect::<Vec<_>>()
        .join(", ");
    // A load that failed on this session may have left it behind.
    format!("DROP TABLE IF EXISTS {STAGE_TABLE}; CREATE TABLE {STAGE_TABLE} ({definitions})")
}

/// A value set aside from the bulk load: its row's key, and its column.
#[derive(Debug)]
struct Deferred {
    key: Vec<ColumnData<'static>>,
    column: usize,
    value: ColumnData<'static>,
}

/// One load of rows into a table's copy: [`TableLoad::prepare`], then
/// [`TableLoad::begin`] the bulk load and [`TableLoad::send`] each row
/// into it, finalize it, and [`TableLoad::complete`] what the bulk load
/// could not do itself. The rows may arrive while the load runs, so a
/// writer streams them from its reader.
///
/// A load goes through the session's staging table (`#mpm_stage`) when it
/// replaces or merges rows ([`LoadMode`]), and on Babelfish when the table has numbers (it misreads
/// a bulk-loaded decimal whose length byte is shorter than its column's,
/// which SQL Server takes as MS-TDS allows, and a negative smallmoney; the
/// stage takes them as text and one `INSERT … SELECT` converts them exactly).
/// What a load does with rows whose keys the table holds already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Nothing: the rows are new (the bulk load's own fast path).
    Insert,
    /// A chunk whose earlier commit is in doubt: the rows with its keys are
    /// deleted and its rows inserted, in the caller's transaction.
    Replace,
    /// Upsert: rows whose values differ are updated, new keys inserted,
    /// equal rows left untouched (no write at all).
    Merge,
}

#[derive(Debug)]
pub struct TableLoad {
    target: String,
    context: String,
    /// The loaded columns, quoted, in load order.
    columns: Vec<String>,
    /// Their names as they are, for messages.
    names: Vec<String>,
    /// Positions of the primary key's columns in `columns`.
    key: Vec<usize>,
    /// Whether every key column is loaded (so a row can be found again).
    keyed: bool,
    identity: bool,
    staged: bool,
    numbers_as_text: bool,
    mode: LoadMode,
    /// Positions in `columns` of the identity column, if loaded.
    identity_at: Option<usize>,
    /// Positions in `columns` of xml columns, which a comparison reads as text.
    xml_at: Vec<usize>,
    scales: Vec<Option<u8>>,
    deferred: Vec<Deferred>,
    /// Where a merge also records the keys it staged (`delete_missing`).
    seen_keys: Option<String>,
}

impl TableLoad {
    /// Prepares a load of `table`'s copy in `schema` on `client`; rows whose
    /// keys the table has go as `mode` says, by the table's primary key.
    ///
    /// # Errors
    /// [`TransferError::Server`] naming the table.
    pub async fn prepare<S>(
        client: &mut Client<Compat<S>>,
        schema: &str,
        table: &Table,
        babelfish: bool,
        mode: LoadMode,
    ) -> Result<TableLoad, TransferError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut load = TableLoad::plan(schema, table, babelfish, mode)?;
        let loaded: Vec<&Column> = loaded_columns(table).collect();
        if load.staged {
            execute(client, &stage_table(&loaded, load.numbers_as_text), &load.context).await?;
        }
        let quoted: Vec<&str> = load.columns.iter().map(String::as_str).collect();
        let load_into = if load.staged { STAGE_TABLE } else { load.target.as_str() };
        load.scales = time_scales(client, load_into, &quoted).await.map_err(|e| target_error(&load.context, &e))?;
        Ok(load)
    }

    /// The load [`TableLoad::prepare`] makes, before it asks the server
    /// anything: which columns go, by which key, through a stage or not.
    ///
    /// # Errors
    /// [`TransferError::Incompatible`] when rows must be replaced or merged
    /// and the table has no primary key among its loaded columns.
    pub fn plan(schema: &str, table: &Table, babelfish: bool, mode: LoadMode) -> Result<TableLoad, TransferError> {
        let target = qualified_mssql(schema, &table.name);
        let context = format!("bulk-loading {target}");
        let loaded: Vec<&Column> = loaded_columns(table).collect();
        let numbers_as_text = babelfish && loaded.iter().any(|c| as_text_in_stage(&c.data_type));
        let staged = numbers_as_text || mode != LoadMode::Insert;
        let key: Vec<usize> = table
            .primary_key
            .iter()
            .flat_map(|pk| pk.columns.iter())
            .filter_map(|name| loaded.iter().position(|c| &c.name == name))
            .collect();
        let keyed = table.primary_key.as_ref().is_some_and(|pk| pk.columns.len() == key.len());
        if mode != LoadMode::Insert && !keyed {
            return Err(TransferError::Incompatible {
                table: target,
                message: "rows can be replaced or merged only by a primary key, and the table has none".into(),
            });
        }
        Ok(TableLoad {
            identity: loaded.iter().any(|c| c.identity.is_some()),
            identity_at: loaded.iter().position(|c| c.identity.is_some()),
            xml_at: (0..loaded.len())
                .filter(|&i| matches!(loaded[i].data_type, ColumnType::Mssql(MssqlType::Xml)))
                .collect(),
            target,
            context,
            columns: loaded.iter().map(|c| quote_mssql(&c.name)).collect(),
            names: loaded.iter().map(|c| c.name.clone()).collect(),
            key,
            keyed,
            staged,
            numbers_as_text,
            mode,
            scales: Vec::new(),
            deferred: Vec::new(),
            seen_keys: None,
        })
    }

    /// Makes a merge also add the keys it staged to `seen` (a quoted table
    /// with the key's columns, [`crate::ddl::create_seen_keys`]), in the
    /// same transaction, for the deletes of `delete_missing`.
    pub fn record_keys_into(&mut self, seen: String) {
        self.seen_keys = Some(seen);
    }

    /// `bulk-loading [schema].[table]`, for errors about this load.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// What the bulk load writes into (the table, or the session's stage)
    /// and its columns, quoted, for [`TableLoad::begin`].
    pub fn destination(&self) -> (String, Vec<String>) {
        let into = if self.staged { STAGE_TABLE.to_owned() } else { self.target.clone() };
        (into, self.columns.clone())
    }

    /// Starts the bulk load into `into` (from [`TableLoad::destination`]);
    /// send the rows into what it returns, then finalize that.
    ///
    /// # Errors
    /// [`TransferError::Server`] naming the table.
    pub async fn begin<'c, S>(
        client: &'c mut Client<Compat<S>>,
        into: &'c str,
        names: &'c [&'c str],
    ) -> Result<tiberius::BulkLoadRequest<'c, Compat<S>>, TransferError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        client
            .bulk_insert_with_options(into, names, copy_options(), &[])
            .await
            .map_err(|e| target_error(&format!("bulk-loading {into}"), &e))
    }

    /// Sends one row (a value per loaded column, in order) into `load`.
    ///
    /// # Errors
    /// [`TransferError::Server`] when the server refuses it;
    /// [`TransferError::Value`] for a value above 64 KB in a table without
    /// a primary key, which no UPDATE could find again.
    pub async fn send<S>(
        &mut self,
        load: &mut tiberius::BulkLoadRequest<'_, Compat<S>>,
        row: Vec<ColumnData<'static>>,
    ) -> Result<(), TransferError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut token = TokenRow::with_capacity(row.len());
        // The key is copied only for a row that has a value to write later;
        // every other cell moves into the load as it is.
        let row_key: Option<Vec<ColumnData<'static>>> =
            row.iter().any(too_large).then(|| self.key.iter().filter_map(|&k| row.get(k).cloned()).collect());
        for (index, cell) in row.into_iter().enumerate() {
            if !too_large(&cell) {
                token.push(match at_scale(cell, self.scales.get(index).copied().flatten()) {
                    ColumnData::Numeric(n) if self.numbers_as_text => {
                        ColumnData::String(n.map(|n| Cow::Owned(n.to_string())))
                    }
                    other => other,
                });
                continue;
            }
            let Some(key) = row_key.as_ref().filter(|_| self.keyed) else {
                return Err(TransferError::Value {
                    table: self.target.clone(),
                    column: self.names.get(index).cloned().unwrap_or_default(),
                    key: "(none)".into(),
                    message: "a value above 64 KB cannot be bulk-loaded, and the table has no primary key \
                              by which to write it afterwards"
                        .into(),
                });
            };
            token.push(placeholder(&cell));
            self.deferred.push(Deferred { key: key.clone(), column: index, value: cell });
        }
        load.send(token).await.map_err(|e| target_error(&self.context, &e))
    }

    /// After the bulk load is finalized: moves staged rows into the table
    /// as the [`LoadMode`] says, then writes the values set aside, by key.
    /// Returns the rows a merge inserted and updated (zeros otherwise).
    ///
    /// # Errors
    /// [`TransferError::Server`] naming the table.
    pub async fn complete<S>(self, client: &mut Client<Compat<S>>) -> Result<(u64, u64), TransferError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let target = &self.target;
        let mut merged = (0, 0);
        if self.staged {
            let sql = self.unstage_sql();
            let results = client
                .simple_query(sql)
                .await
                .map_err(|e| target_error(&self.context, &e))?
                .into_results()
                .await
                .map_err(|e| target_error(&self.context, &e))?;
            if self.mode == LoadMode::Merge {
                let counts = results.iter().flatten().last();
                let count = |i: usize| counts.and_then(|r| r.get::<i64, _>(i)).and_then(|n| u64::try_from(n).ok());
                merged = (count(0).unwrap_or(0), count(1).unwrap_or(0));
            }
        }
        let condition = self
            .key
            .iter()
            .enumerate()
            .map(|(i, &k)| format!("{} = @P{}", self.columns[k], i + 2))
            .collect::<Vec<_>>()
            .join(" AND ");
        for Deferred { key: key_values, column, value } in self.deferred {
            let sql = format!("UPDATE {target} SET {} = @P1 WHERE {condition}", self.columns[column]);
            let mut params: Vec<&dyn tiberius::ToSql> = vec![&value];
            params.extend(key_values.iter().map(|k| k as &dyn tiberius::ToSql));
            client.execute(sql, &params).await.map_err(|e| target_error(&self.context, &e))?;
        }
        Ok(merged)
    }

    /// The batch that moves the staged rows into the table and drops the
    /// stage: an insert; a delete of the rows with the stage's keys first
    /// (replace); or an update of the rows whose values differ and an insert
    /// of the new keys, answering how many of each (merge).
    pub fn unstage_sql(&self) -> String {
        let target = &self.target;
        let list = self.columns.join(", ");
        let matches =
            self.key.iter().map(|&k| format!("t.{0} = s.{0}", self.columns[k])).collect::<Vec<_>>().join(" AND ");
        let with_identity = |statement: String| {
            if self.identity {
                format!("SET IDENTITY_INSERT {target} ON; {statement}; SET IDENTITY_INSERT {target} OFF; ")
            } else {
                format!("{statement}; ")
            }
        };
        let insert =
            |filter: &str| format!("INSERT INTO {target} ({list}) SELECT {list} FROM {STAGE_TABLE} AS s{filter}");
        let mut sql = String::new();
        match self.mode {
            LoadMode::Insert => sql.push_str(&with_identity(insert(""))),
            LoadMode::Replace => {
                let _ = write!(
                    sql,
                    "DELETE t FROM {target} AS t WHERE EXISTS (SELECT 1 FROM {STAGE_TABLE} AS s WHERE {matches}); "
                );
                sql.push_str(&with_identity(insert("")));
            }
            LoadMode::Merge => {
                // EXCEPT compares NULLs as equal, so a row is updated only
                // when some value really differs; xml is compared as text,
                // which EXCEPT can compare. An identity cannot be updated
                // (it is the key, or equal by the key).
                let changing: Vec<usize> =
                    (0..self.columns.len()).filter(|i| !self.key.contains(i) && Some(*i) != self.identity_at).collect();
                sql.push_str("DECLARE @mpm_updated bigint = 0, @mpm_inserted bigint; ");
                if !changing.is_empty() {
                    let side = |alias: &str| {
                        changing
                            .iter()
                            .map(|&i| {
                                let column = format!("{alias}.{}", self.columns[i]);
                                if self.xml_at.contains(&i) {
                                    format!("CAST({column} AS nvarchar(max))")
                                } else {
                                    column
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let set = changing
                        .iter()
                        .map(|&i| format!("{0} = s.{0}", self.columns[i]))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let _ = write!(
                        sql,
                        "UPDATE t SET {set} FROM {target} AS t JOIN {STAGE_TABLE} AS s ON {matches} \
                         WHERE EXISTS (SELECT {} EXCEPT SELECT {}); SET @mpm_updated = @@ROWCOUNT; ",
                        side("s"),
                        side("t")
                    );
                }
                let new_keys = format!(" WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {matches})");
                sql.push_str(&with_identity(format!("{}; SET @mpm_inserted = @@ROWCOUNT", insert(&new_keys))));
            }
        }
        if let (LoadMode::Merge, Some(seen)) = (self.mode, &self.seen_keys) {
            let keys = self.key.iter().map(|&k| self.columns[k].as_str()).collect::<Vec<_>>().join(", ");
            let _ = write!(sql, "INSERT INTO {seen} ({keys}) SELECT {keys} FROM {STAGE_TABLE}; ");
        }
        let _ = write!(sql, "DROP TABLE {STAGE_TABLE}");
        if self.mode == LoadMode::Merge {
            sql.push_str("; SELECT @mpm_inserted, @mpm_updated");
        }
        sql
    }
}

/// Loads `rows` (each with one value per [`loaded_columns`] of `table`, in
/// order) into the table's copy in `schema`, in one bulk load on `client`
/// (see [`TableLoad`]). Returns the number of rows the server took.
///
/// # Errors
/// As [`TableLoad::send`]. After an error the session may be in the middle
/// of the bulk-load protocol: drop it rather than reuse it.
pub async fn bulk_load<S, R>(
    client: &mut Client<Compat<S>>,
    schema: &str,
    table: &Table,
    rows: R,
    babelfish: bool,
) -> Result<u64, TransferError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    R: IntoIterator<Item = Vec<ColumnData<'static>>>,
{
    let mut table_load = TableLoad::prepare(client, schema, table, babelfish, LoadMode::Insert).await?;
    let (into, columns) = table_load.destination();
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut load = TableLoad::begin(client, &into, &names).await?;
    for row in rows {
        table_load.send(&mut load, row).await?;
    }
    let done = load.finalize().await.map_err(|e| target_error(&table_load.context, &e))?;
    table_load.complete(client).await?;
    Ok(done.total())
}

#[cfg(test)]
mod tests {
    use tiberius::time::Date;

    use super::*;

    #[test]
    fn a_time_read_at_one_scale_is_written_at_the_columns() {
        let read = ColumnData::Time(Some(Time::new(86_399_999_999, 6)));
        let ColumnData::Time(Some(t)) = at_scale(read, Some(7)) else { panic!() };
        assert_eq!((t.increments(), t.scale()), (863_999_999_990, 7), "23:59:59.999999 at 100 ns");
        let read = ColumnData::DateTime2(Some(DateTime2::new(Date::new(5), Time::new(12_345_678, 7))));
        let ColumnData::DateTime2(Some(d)) = at_scale(read, Some(3)) else { panic!() };
        assert_eq!((d.date().days(), d.time().increments(), d.time().scale()), (5, 1_234, 3), "cut, never rounded");
        let read = ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
            DateTime2::new(Date::new(9), Time::new(50_400_000_000, 6)),
            -840,
        )));
        let ColumnData::DateTimeOffset(Some(o)) = at_scale(read, Some(7)) else { panic!() };
        assert_eq!((o.datetime2().time().increments(), o.offset()), (504_000_000_000, -840));
        assert_eq!(at_scale(ColumnData::I32(Some(4)), None), ColumnData::I32(Some(4)));
    }

    fn staged(mode: LoadMode, identity: bool) -> TableLoad {
        TableLoad {
            target: "[c].[t]".into(),
            context: "bulk-loading [c].[t]".into(),
            columns: vec!["[id]".into(), "[v]".into(), "[x]".into()],
            names: vec!["id".into(), "v".into(), "x".into()],
            key: vec![0],
            keyed: true,
            identity,
            staged: true,
            numbers_as_text: false,
            mode,
            identity_at: identity.then_some(0),
            xml_at: vec![2],
            scales: Vec::new(),
            deferred: Vec::new(),
            seen_keys: None,
        }
    }

    #[test]
    fn a_merge_updates_only_rows_whose_values_differ_and_inserts_new_keys() {
        assert_eq!(
            staged(LoadMode::Merge, true).unstage_sql(),
            "DECLARE @mpm_updated bigint = 0, @mpm_inserted bigint; \
             UPDATE t SET [v] = s.[v], [x] = s.[x] FROM [c].[t] AS t JOIN #mpm_stage AS s ON t.[id] = s.[id] \
             WHERE EXISTS (SELECT s.[v], CAST(s.[x] AS nvarchar(max)) EXCEPT SELECT t.[v], CAST(t.[x] AS nvarchar(max))); \
             SET @mpm_updated = @@ROWCOUNT; \
             SET IDENTITY_INSERT [c].[t] ON; INSERT INTO [c].[t] ([id], [v], [x]) SELECT [id], [v], [x] FROM #mpm_stage AS s \
             WHERE NOT EXISTS (SELECT 1 FROM [c].[t] AS t WHERE t.[id] = s.[id]); SET @mpm_inserted = @@ROWCOUNT; \
             SET IDENTITY_INSERT [c].[t] OFF; DROP TABLE #mpm_stage; SELECT @mpm_inserted, @mpm_updated"
        );
        assert_eq!(
            staged(LoadMode::Replace, false).unstage_sql(),
            "DELETE t FROM [c].[t] AS t WHERE EXISTS (SELECT 1 FROM #mpm_stage AS s WHERE t.[id] = s.[id]); \
             INSERT INTO [c].[t] ([id], [v], [x]) SELECT [id], [v], [x] FROM #mpm_stage AS s; DROP TABLE #mpm_stage"
        );
        // delete_missing: the staged keys are recorded before the stage goes.
        let mut recording = staged(LoadMode::Merge, false);
        recording.record_keys_into("[mssql_pg_migrate].[seen]".into());
        let sql = recording.unstage_sql();
        assert!(
            sql.ends_with(
                "SET @mpm_inserted = @@ROWCOUNT; INSERT INTO [mssql_pg_migrate].[seen] ([id]) SELECT [id] FROM #mpm_stage; \
                 DROP TABLE #mpm_stage; SELECT @mpm_inserted, @mpm_updated"
            ),
            "{sql}"
        );
    }

    #[test]
    fn strings_and_bytes_above_64_kb_wait_for_their_update_and_load_empty() {
        let big = "é".repeat(20_000);
        assert!(too_large(&ColumnData::String(Some(Cow::Owned(big)))), "40,000 UTF-8 bytes, up to 80,000 on the wire");
        assert!(!too_large(&ColumnData::String(Some(Cow::Owned("a".repeat(32_767))))));
        assert!(too_large(&ColumnData::Binary(Some(Cow::Owned(vec![0; 65_536])))));
        assert!(!too_large(&ColumnData::Binary(None)));
        assert_eq!(
            placeholder(&ColumnData::Binary(Some(Cow::Owned(vec![1])))),
            ColumnData::Binary(Some(Cow::Borrowed(&[])))
        );
        assert_eq!(placeholder(&ColumnData::String(None)), ColumnData::String(Some(Cow::Borrowed(""))));
    }
}
