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

use mssql_pg_migrate_dialect::TransferError;
use mssql_pg_migrate_schema::ident::{qualified_mssql, quote_mssql};
use mssql_pg_migrate_schema::{Column, ColumnType, Table};
use mssql_pg_migrate_typemap::MssqlType;
use tiberius::time::{DateTime2, DateTimeOffset, Time};
use tiberius::{Client, ColumnData, SqlBulkCopyOption, SqlBulkCopyOptions, TokenRow, TypeInfo, VarLenType};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::compat::Compat;

use crate::ddl::loaded_columns;
use crate::error::server_error;

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
/// identity, numbers as text.
fn stage_table(columns: &[&Column]) -> String {
    let definitions = columns
        .iter()
        .map(|c| {
            let ty = match &c.data_type {
                ty if as_text_in_stage(ty) => "nvarchar(60)".to_owned(),
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

async fn execute<S>(client: &mut Client<Compat<S>>, sql: &str, context: &str) -> Result<(), TransferError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    client
        .simple_query(sql)
        .await
        .map_err(|e| server_error(context, &e))?
        .into_results()
        .await
        .map_err(|e| server_error(context, &e))?;
    Ok(())
}

/// A value set aside from the bulk load: its row's key, and its column.
struct Deferred {
    key: Vec<ColumnData<'static>>,
    column: usize,
    value: ColumnData<'static>,
}

/// Loads `rows` (each with one value per [`loaded_columns`] of `table`, in
/// order) into the table's copy in `schema`, in one bulk load on `client`
/// (on Babelfish, through a staging table where the table has numbers);
/// values above 64 KB go in afterwards, one parameterized UPDATE each, by
/// the row's primary key. Returns the number of rows the server took.
///
/// # Errors
/// [`TransferError::Server`] naming the table when the server refuses the
/// load or a row; [`TransferError::Value`] for a value above 64 KB in a
/// table without a primary key, which no UPDATE could find again. After
/// an error the session may be in the middle of the bulk-load protocol:
/// drop it rather than reuse it.
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
    let target = qualified_mssql(schema, &table.name);
    let context = format!("bulk-loading {target}");
    let loaded: Vec<&Column> = loaded_columns(table).collect();
    // Babelfish misreads a bulk-loaded decimal whose length byte is shorter
    // than its column's (SQL Server takes each value's own length, as
    // MS-TDS allows) and a negative smallmoney; there such tables go
    // through a staging table that takes those columns as text, and one
    // INSERT ... SELECT converts them exactly.
    let staged = babelfish && loaded.iter().any(|c| as_text_in_stage(&c.data_type));
    let load_into = if staged {
        execute(client, &stage_table(&loaded), &context).await?;
        STAGE_TABLE.to_owned()
    } else {
        target.clone()
    };
    let key: Vec<usize> = table
        .primary_key
        .iter()
        .flat_map(|pk| pk.columns.iter())
        .filter_map(|name| loaded.iter().position(|c| &c.name == name))
        .collect();
    let keyed = table.primary_key.as_ref().is_some_and(|pk| pk.columns.len() == key.len());
    let columns: Vec<String> = loaded.iter().map(|c| quote_mssql(&c.name)).collect();
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let scales = time_scales(client, &load_into, &columns).await.map_err(|e| server_error(&context, &e))?;
    let mut deferred = Vec::new();
    let mut load = client
        .bulk_insert_with_options(&load_into, &columns, copy_options(), &[])
        .await
        .map_err(|e| server_error(&context, &e))?;
    for row in rows {
        let mut token = TokenRow::with_capacity(row.len());
        // The key is copied only for a row that has a value to write later;
        // every other cell moves into the load as it is.
        let row_key: Option<Vec<ColumnData<'static>>> =
            row.iter().any(too_large).then(|| key.iter().filter_map(|&k| row.get(k).cloned()).collect());
        for (index, cell) in row.into_iter().enumerate() {
            if !too_large(&cell) {
                token.push(match at_scale(cell, scales.get(index).copied().flatten()) {
                    ColumnData::Numeric(n) if staged => ColumnData::String(n.map(|n| Cow::Owned(n.to_string()))),
                    other => other,
                });
                continue;
            }
            let Some(key) = row_key.as_ref().filter(|_| keyed) else {
                return Err(TransferError::Value {
                    table: target,
                    column: loaded.get(index).map_or_else(String::new, |c| c.name.clone()),
                    key: "(none)".into(),
                    message: "a value above 64 KB cannot be bulk-loaded, and the table has no primary key \
                              by which to write it afterwards"
                        .into(),
                });
            };
            token.push(placeholder(&cell));
            deferred.push(Deferred { key: key.clone(), column: index, value: cell });
        }
        load.send(token).await.map_err(|e| server_error(&context, &e))?;
    }
    let done = load.finalize().await.map_err(|e| server_error(&context, &e))?;
    if staged {
        let list = columns.join(", ");
        let mut sql =
            format!("INSERT INTO {target} ({list}) SELECT {list} FROM {STAGE_TABLE}; DROP TABLE {STAGE_TABLE}");
        if loaded.iter().any(|c| c.identity.is_some()) {
            sql = format!("SET IDENTITY_INSERT {target} ON; {sql}; SET IDENTITY_INSERT {target} OFF");
        }
        execute(client, &sql, &context).await?;
    }
    let condition =
        key.iter().enumerate().map(|(i, &k)| format!("{} = @P{}", columns[k], i + 2)).collect::<Vec<_>>().join(" AND ");
    for Deferred { key: key_values, column, value } in deferred {
        let sql = format!("UPDATE {target} SET {} = @P1 WHERE {condition}", columns[column]);
        let mut params: Vec<&dyn tiberius::ToSql> = vec![&value];
        params.extend(key_values.iter().map(|k| k as &dyn tiberius::ToSql));
        client.execute(sql, &params).await.map_err(|e| server_error(&context, &e))?;
    }
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
