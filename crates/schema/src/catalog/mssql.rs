//! The SQL Server catalog reader (`sys.*` views), over tiberius.
//!
//! The SQL and the decoding of each value are kept apart from the
//! connection: [`column_from_parts`] and friends are plain functions with
//! unit tests, and the integration suite (run when `MSSQL_TEST_URL` is
//! set) runs the queries against a real server.

use mssql_pg_migrate_typemap::{CatalogType, MssqlType};
use tiberius::{Client, Row};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::compat::Compat;

use super::{
    CatalogRows, CheckRow, ColumnRow, ForeignKeyColumnRow, IndexColumnRow, KeyColumnRow, KeyKind, TableRow,
    UnsupportedRow,
};
use crate::SchemaError;
use crate::ident::qualified_mssql;
use crate::model::{Column, ColumnType, Computed, Identity, ReferentialAction, Table};

/// Tables of one schema, with the row count and the used size (in-row,
/// row-overflow and LOB pages) of the heap or clustered index. In-row and
/// row-overflow units hang off the hobt, LOB units off the partition.
pub const TABLES: &str = "\
SELECT CAST(t.object_id AS bigint), s.name, t.name,
       CAST(COALESCE((SELECT SUM(p.rows) FROM sys.partitions p
                      WHERE p.object_id = t.object_id AND p.index_id IN (0, 1)), 0) AS bigint),
       CAST(COALESCE((SELECT SUM(a.used_pages) FROM sys.partitions p
                      JOIN sys.allocation_units a
                        ON a.container_id = CASE WHEN a.type IN (1, 3) THEN p.hobt_id ELSE p.partition_id END
                      WHERE p.object_id = t.object_id AND p.index_id IN (0, 1)), 0) AS bigint) * 8192
FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id
WHERE s.name = @P1 AND t.is_ms_shipped = 0
ORDER BY t.name";

/// [`TABLES`] for a server without `sys.allocation_units` (Babelfish, or a
/// login that may not see it): rows from the heap, the clustered index, or
/// any one index when the server keeps none of those (Babelfish numbers its
/// indexes from 2), and no size estimate.
pub const TABLES_WITHOUT_SIZES: &str = "\
SELECT CAST(t.object_id AS bigint), s.name, t.name,
       CAST(COALESCE((SELECT MAX(p.rows) FROM sys.partitions p WHERE p.object_id = t.object_id), 0) AS bigint),
       CAST(0 AS bigint)
FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id
WHERE s.name = @P1 AND t.is_ms_shipped = 0
ORDER BY t.name";

/// The names as declared, for servers whose `sys` views fold them
/// (Babelfish keeps the declared case only in `INFORMATION_SCHEMA`).
pub const DECLARED_NAMES: &str = "\
SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME
FROM INFORMATION_SCHEMA.COLUMNS
WHERE TABLE_SCHEMA = @P1
ORDER BY TABLE_NAME, ORDINAL_POSITION";

/// Non-NULL where `sys.allocation_units` exists.
pub const HAS_ALLOCATION_UNITS: &str = "SELECT OBJECT_ID(N'sys.allocation_units')";

/// Whether the server is Babelfish: `NULL` on SQL Server, which answers
/// unknown properties with `NULL`.
pub const IS_BABELFISH: &str = "SELECT CAST(SERVERPROPERTY('Babelfish') AS int)";

/// Columns with their base type (alias types resolved through
/// `system_type_id`), default, identity and computed definition.
///
/// Identity facts come from `IDENT_SEED` / `IDENT_INCR` / `IDENT_CURRENT`
/// (one identity per table, so they are unambiguous) rather than from
/// joining `sys.identity_columns`, which Babelfish returns once per
/// same-named identity column of any table, with NULL seeds.
/// `IDENT_CURRENT` is the seed until a value is generated; only
/// `sys.identity_columns.last_value` tells the two apart, so it gates it.
pub const COLUMNS: &str = "\
SELECT CAST(c.object_id AS bigint), c.name, COALESCE(bt.name, ut.name),
       CASE WHEN ut.is_user_defined = 1 AND ut.is_assembly_type = 0 THEN ut.name END,
       CAST(ut.is_assembly_type AS bit), c.max_length, c.precision, c.scale, c.is_nullable, c.collation_name,
       dc.definition,
       CASE WHEN c.is_identity = 1 THEN CAST(CAST(IDENT_SEED(q.name) AS decimal(38, 0)) AS nvarchar(40)) END,
       CASE WHEN c.is_identity = 1 THEN CAST(CAST(IDENT_INCR(q.name) AS decimal(38, 0)) AS nvarchar(40)) END,
       CASE WHEN c.is_identity = 1
             AND EXISTS (SELECT 1 FROM sys.identity_columns ic
                         WHERE ic.object_id = c.object_id AND ic.column_id = c.column_id AND ic.last_value IS NOT NULL)
            THEN CAST(CAST(IDENT_CURRENT(q.name) AS decimal(38, 0)) AS nvarchar(40)) END,
       cc.definition, CAST(COALESCE(cc.is_persisted, 0) AS bit)
FROM sys.columns c
JOIN sys.tables t ON t.object_id = c.object_id
JOIN sys.schemas s ON s.schema_id = t.schema_id
CROSS APPLY (SELECT QUOTENAME(s.name) + N'.' + QUOTENAME(t.name) AS name) q
JOIN sys.types ut ON ut.user_type_id = c.user_type_id
LEFT JOIN sys.types bt ON bt.user_type_id = c.system_type_id AND ut.is_assembly_type = 0
LEFT JOIN sys.default_constraints dc ON dc.object_id = c.default_object_id
LEFT JOIN sys.computed_columns cc ON cc.object_id = c.object_id AND cc.column_id = c.column_id
WHERE s.name = @P1 AND t.is_ms_shipped = 0
ORDER BY c.object_id, c.column_id";

/// Primary keys and unique constraints, from the indexes that enforce them.
/// `sys.key_constraints.unique_index_id` would do on SQL Server, but
/// Babelfish fills it with another number than `sys.indexes.index_id`.
pub const KEYS: &str = "\
SELECT CAST(i.object_id AS bigint), i.name, CASE WHEN i.is_primary_key = 1 THEN 'PK' ELSE 'UQ' END, c.name
FROM sys.indexes i
JOIN sys.tables t ON t.object_id = i.object_id
JOIN sys.schemas s ON s.schema_id = t.schema_id
JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
WHERE s.name = @P1 AND (i.is_primary_key = 1 OR i.is_unique_constraint = 1) AND ic.key_ordinal > 0
ORDER BY i.object_id, i.is_primary_key DESC, i.name, ic.key_ordinal";

/// Row-store indexes that do not back a key constraint; key columns first
/// in key order, then included columns.
pub const INDEXES: &str = "\
SELECT CAST(i.object_id AS bigint), i.name, i.is_unique, i.filter_definition, c.name,
       ic.is_descending_key, ic.is_included_column
FROM sys.indexes i
JOIN sys.tables t ON t.object_id = i.object_id
JOIN sys.schemas s ON s.schema_id = t.schema_id
JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
WHERE s.name = @P1 AND i.type IN (1, 2) AND i.is_primary_key = 0 AND i.is_unique_constraint = 0
  AND i.is_hypothetical = 0 AND i.is_disabled = 0
ORDER BY i.object_id, i.name, ic.is_included_column, ic.key_ordinal, ic.index_column_id";

/// Indexes of kinds PostgreSQL has no equivalent for (XML, spatial,
/// columnstore, hash), reported rather than silently dropped.
pub const UNSUPPORTED_INDEXES: &str = "\
SELECT CAST(i.object_id AS bigint), i.name, i.type_desc
FROM sys.indexes i
JOIN sys.tables t ON t.object_id = i.object_id
JOIN sys.schemas s ON s.schema_id = t.schema_id
WHERE s.name = @P1 AND i.type NOT IN (0, 1, 2) AND i.is_hypothetical = 0
ORDER BY i.object_id, i.name";

pub const FOREIGN_KEYS: &str = "\
SELECT CAST(fk.parent_object_id AS bigint), fk.name, pc.name, rs.name, rt.name, rc.name,
       CAST(fk.delete_referential_action AS int), CAST(fk.update_referential_action AS int)
FROM sys.foreign_keys fk
JOIN sys.tables t ON t.object_id = fk.parent_object_id
JOIN sys.schemas s ON s.schema_id = t.schema_id
JOIN sys.foreign_key_columns fkc ON fkc.constraint_object_id = fk.object_id
JOIN sys.columns pc ON pc.object_id = fkc.parent_object_id AND pc.column_id = fkc.parent_column_id
JOIN sys.tables rt ON rt.object_id = fk.referenced_object_id
JOIN sys.schemas rs ON rs.schema_id = rt.schema_id
JOIN sys.columns rc ON rc.object_id = fkc.referenced_object_id AND rc.column_id = fkc.referenced_column_id
WHERE s.name = @P1 AND fk.is_disabled = 0
ORDER BY fk.parent_object_id, fk.name, fkc.constraint_column_id";

pub const CHECKS: &str = "\
SELECT CAST(cc.parent_object_id AS bigint), cc.name, cc.definition
FROM sys.check_constraints cc
JOIN sys.tables t ON t.object_id = cc.parent_object_id
JOIN sys.schemas s ON s.schema_id = t.schema_id
WHERE s.name = @P1 AND cc.is_disabled = 0
ORDER BY cc.parent_object_id, cc.name";

const SERVER: &str = "SQL Server";

/// The facts of one `sys.columns` row, as the query returns them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnParts<'a> {
    pub name: &'a str,
    pub base_type: &'a str,
    pub alias_type: Option<&'a str>,
    pub is_assembly_type: bool,
    pub max_length: i16,
    pub precision: u8,
    pub scale: u8,
    pub nullable: bool,
    pub collation: Option<&'a str>,
    pub default: Option<&'a str>,
    pub identity_seed: Option<&'a str>,
    pub identity_increment: Option<&'a str>,
    pub identity_current: Option<&'a str>,
    pub computed: Option<&'a str>,
    pub persisted: bool,
}

/// Builds the model's column from one catalog row. A type the tool cannot
/// read becomes [`ColumnType::Unsupported`] (planning that table then fails
/// and names the column), so one odd table does not stop the catalog read.
///
/// # Errors
/// An identity value that is not an integer.
pub fn column_from_parts(p: &ColumnParts<'_>) -> Result<Column, SchemaError> {
    let catalog = CatalogType {
        name: p.base_type,
        max_length: p.max_length,
        precision: p.precision,
        scale: p.scale,
        is_assembly_type: p.is_assembly_type,
    };
    let data_type = match MssqlType::from_catalog(catalog) {
        Ok(t) => ColumnType::Mssql(t),
        Err(e) => ColumnType::Unsupported { type_name: p.base_type.to_owned(), reason: e.to_string() },
    };
    let w = "identity columns";
    let identity = match super::parse_i128(p.identity_seed, w, SERVER)? {
        None => None,
        Some(seed) => Some(Identity {
            seed,
            increment: super::parse_i128(p.identity_increment, w, SERVER)?.unwrap_or(1),
            current: super::parse_i128(p.identity_current, w, SERVER)?,
        }),
    };
    Ok(Column {
        name: p.name.to_owned(),
        data_type,
        alias_type: p.alias_type.map(str::to_owned),
        nullable: p.nullable,
        collation: p.collation.map(str::to_owned),
        default: p.default.map(str::to_owned),
        identity,
        computed: p.computed.map(|e| Computed { expression: e.to_owned(), persisted: p.persisted }),
    })
}

/// `sys.foreign_keys.*_referential_action`.
pub fn referential_action(code: i32) -> ReferentialAction {
    match code {
        1 => ReferentialAction::Cascade,
        2 => ReferentialAction::SetNull,
        3 => ReferentialAction::SetDefault,
        _ => ReferentialAction::NoAction,
    }
}

/// `sys.key_constraints.type`: `PK` or `UQ` (char(2), possibly padded).
pub fn key_kind(code: &str) -> KeyKind {
    if code.trim() == "PK" { KeyKind::Primary } else { KeyKind::Unique }
}

fn bad(what: &'static str, message: String) -> SchemaError {
    SchemaError::Catalog { server: SERVER, what, message }
}

fn opt<'a, T: tiberius::FromSql<'a>>(row: &'a Row, idx: usize, what: &'static str) -> Result<Option<T>, SchemaError> {
    row.try_get::<T, usize>(idx).map_err(|e| bad(what, format!("column {idx}: {e}")))
}

fn req<'a, T: tiberius::FromSql<'a>>(row: &'a Row, idx: usize, what: &'static str) -> Result<T, SchemaError> {
    opt(row, idx, what)?.ok_or_else(|| bad(what, format!("column {idx} is NULL")))
}

async fn query<S>(
    client: &mut Client<Compat<S>>,
    sql: &str,
    schema: &str,
    what: &'static str,
) -> Result<Vec<Row>, SchemaError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let started = std::time::Instant::now();
    let stream = client.query(sql, &[&schema]).await.map_err(|e| bad(what, e.to_string()))?;
    let rows = stream.into_first_result().await.map_err(|e| bad(what, e.to_string()))?;
    tracing::debug!(rows = rows.len(), ms = started.elapsed().as_millis(), "catalog: {what}");
    Ok(rows)
}

/// Reads every table of `schema` that `select` accepts, on one connection
/// or, given a second, with the columns read on it at the same time (the
/// column query is the catalog's slowest on Babelfish, whose T-SQL parser
/// starts cold in every session). `babelfish` ([`is_babelfish`], asked
/// once per source) adds what only Babelfish needs.
///
/// # Errors
/// [`SchemaError::Catalog`] when a query fails, naming which.
pub async fn read_schema<S>(
    client: &mut Client<Compat<S>>,
    second: Option<&mut Client<Compat<S>>>,
    schema: &str,
    babelfish: bool,
    select: &(dyn Fn(&str, &str) -> bool + Sync),
) -> Result<Vec<Table>, SchemaError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut rows = CatalogRows::default();
    let (columns, declared) = match second {
        Some(other) => {
            let (tables, columns) = futures_util::future::join(
                read_tables(client, schema, &mut rows),
                read_columns(other, schema, babelfish),
            )
            .await;
            tables?;
            columns?
        }
        None => {
            read_tables(client, schema, &mut rows).await?;
            read_columns(client, schema, babelfish).await?
        }
    };
    rows.columns = columns;
    if let Some(declared) = declared {
        apply_declared_names(&mut rows, &declared);
        count_unanalyzed_tables(client, &mut rows.tables).await;
    }
    Ok(super::assemble(rows, select))
}

/// The columns of `schema`, and on Babelfish (only) their declared names.
async fn read_columns<S>(
    client: &mut Client<Compat<S>>,
    schema: &str,
    babelfish: bool,
) -> Result<(Vec<ColumnRow>, Option<Vec<DeclaredColumn>>), SchemaError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut columns = Vec::new();
    for r in query(client, COLUMNS, schema, "columns").await? {
        let w = "columns";
        let parts = ColumnParts {
            name: req(&r, 1, w)?,
            base_type: req(&r, 2, w)?,
            alias_type: opt(&r, 3, w)?,
            is_assembly_type: req(&r, 4, w)?,
            max_length: req(&r, 5, w)?,
            precision: req(&r, 6, w)?,
            scale: req(&r, 7, w)?,
            nullable: req(&r, 8, w)?,
            collation: opt(&r, 9, w)?,
            default: opt(&r, 10, w)?,
            identity_seed: opt(&r, 11, w)?,
            identity_increment: opt(&r, 12, w)?,
            identity_current: opt(&r, 13, w)?,
            computed: opt(&r, 14, w)?,
            persisted: req(&r, 15, w)?,
        };
        columns.push(ColumnRow { object_id: req(&r, 0, w)?, column: column_from_parts(&parts)? });
    }
    if !babelfish {
        return Ok((columns, None));
    }
    let mut declared = Vec::new();
    for r in query(client, DECLARED_NAMES, schema, "declared names").await? {
        let w = "declared names";
        declared.push(DeclaredColumn {
            schema: req::<&str>(&r, 0, w)?.to_owned(),
            table: req::<&str>(&r, 1, w)?.to_owned(),
            column: req::<&str>(&r, 2, w)?.to_owned(),
        });
    }
    Ok((columns, Some(declared)))
}

/// Tables with their keys, indexes, foreign keys and checks.
async fn read_tables<S>(client: &mut Client<Compat<S>>, schema: &str, rows: &mut CatalogRows) -> Result<(), SchemaError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // Asked first rather than tried, since a failed query is logged as an
    // error by the driver even when the fallback then works.
    let sized = if has_allocation_units(client).await {
        query(client, TABLES, schema, "tables").await
    } else {
        Err(bad("tables", "sys.allocation_units does not exist".into()))
    };
    let tables = match sized {
        Ok(tables) => tables,
        Err(e) => {
            tracing::debug!("table sizes are not available ({e}); planning without size estimates");
            query(client, TABLES_WITHOUT_SIZES, schema, "tables").await?
        }
    };
    for r in tables {
        let w = "tables";
        rows.tables.push(TableRow {
            object_id: req(&r, 0, w)?,
            schema: req::<&str>(&r, 1, w)?.to_owned(),
            name: req::<&str>(&r, 2, w)?.to_owned(),
            estimated_rows: req(&r, 3, w)?,
            estimated_bytes: req(&r, 4, w)?,
        });
    }
    for r in query(client, KEYS, schema, "keys").await? {
        let w = "keys";
        rows.keys.push(KeyColumnRow {
            object_id: req(&r, 0, w)?,
            name: req::<&str>(&r, 1, w)?.to_owned(),
            kind: key_kind(req(&r, 2, w)?),
            column: req::<&str>(&r, 3, w)?.to_owned(),
        });
    }
    for r in query(client, INDEXES, schema, "indexes").await? {
        let w = "indexes";
        rows.indexes.push(IndexColumnRow {
            object_id: req(&r, 0, w)?,
            name: req::<&str>(&r, 1, w)?.to_owned(),
            unique: req(&r, 2, w)?,
            filter: opt::<&str>(&r, 3, w)?.map(str::to_owned),
            column: Some(req::<&str>(&r, 4, w)?.to_owned()),
            descending: req(&r, 5, w)?,
            included: req(&r, 6, w)?,
        });
    }
    for r in query(client, UNSUPPORTED_INDEXES, schema, "indexes").await? {
        let w = "indexes";
        let name = opt::<&str>(&r, 1, w)?.unwrap_or("(unnamed)");
        let kind = opt::<&str>(&r, 2, w)?.unwrap_or("unknown");
        rows.unsupported.push(UnsupportedRow {
            object_id: req(&r, 0, w)?,
            description: format!("index {name} of type {kind} has no PostgreSQL equivalent and is not carried over"),
        });
    }
    for r in query(client, FOREIGN_KEYS, schema, "foreign keys").await? {
        let w = "foreign keys";
        rows.foreign_keys.push(ForeignKeyColumnRow {
            object_id: req(&r, 0, w)?,
            name: req::<&str>(&r, 1, w)?.to_owned(),
            column: req::<&str>(&r, 2, w)?.to_owned(),
            referenced_schema: req::<&str>(&r, 3, w)?.to_owned(),
            referenced_table: req::<&str>(&r, 4, w)?.to_owned(),
            referenced_column: req::<&str>(&r, 5, w)?.to_owned(),
            on_delete: referential_action(req(&r, 6, w)?),
            on_update: referential_action(req(&r, 7, w)?),
        });
    }
    for r in query(client, CHECKS, schema, "check constraints").await? {
        let w = "check constraints";
        rows.checks.push(CheckRow {
            object_id: req(&r, 0, w)?,
            name: req::<&str>(&r, 1, w)?.to_owned(),
            expression: req::<&str>(&r, 2, w)?.to_owned(),
        });
    }
    Ok(())
}

/// Babelfish's `sys.partitions.rows` is PostgreSQL's planner estimate, 0
/// until the table is first analyzed (SQL Server keeps it exact), and it has
/// no `UPDATE STATISTICS`; the chunk planner sizes partitions by the row
/// count, so tables that claim 0 rows are counted.
/// A table the login may not read keeps its estimate; reading it fails
/// later with the server's own words, and the health check names it.
async fn count_unanalyzed_tables<S>(client: &mut Client<Compat<S>>, tables: &mut [TableRow])
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    for table in tables.iter_mut().filter(|t| t.estimated_rows == 0) {
        let sql = format!("SELECT COUNT_BIG(*) FROM {}", qualified_mssql(&table.schema, &table.name));
        let counted = match client.simple_query(sql).await {
            Ok(stream) => {
                stream.into_row().await.map(|row| row.and_then(|r| r.try_get::<i64, usize>(0).ok().flatten()))
            }
            Err(e) => Err(e),
        };
        match counted {
            Ok(Some(rows)) => table.estimated_rows = rows,
            Ok(None) => {}
            Err(e) => tracing::debug!("cannot count {}.{} for planning: {e}", table.schema, table.name),
        }
    }
}

/// The first column of the first row of `sql`, when it is a non-NULL `int`;
/// `None` for a failed query as for NULL, since both mean "not here".
async fn scalar_int<S>(client: &mut Client<Compat<S>>, sql: &str) -> Option<i32>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let row = client.simple_query(sql).await.ok()?.into_row().await.ok()??;
    row.try_get::<i32, usize>(0).ok()?
}

/// Whether `sys.allocation_units` exists here (Babelfish lacks it).
async fn has_allocation_units<S>(client: &mut Client<Compat<S>>) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    scalar_int(client, HAS_ALLOCATION_UNITS).await.is_some()
}

/// Whether the server is Babelfish ([`IS_BABELFISH`]), for the few answers
/// where it is not SQL Server.
pub async fn is_babelfish<S>(client: &mut Client<Compat<S>>) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    scalar_int(client, IS_BABELFISH).await == Some(1)
}

/// One column's names as declared (`INFORMATION_SCHEMA.COLUMNS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredColumn {
    pub schema: String,
    pub table: String,
    pub column: String,
}

fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// Babelfish names an index `{name}{table}{32 hex digits}` (the table name
/// folded) to keep index names unique per schema; the name as declared is
/// what comes before.
pub fn unmangled_index_name<'a>(name: &'a str, folded_table: &str) -> &'a str {
    let Some(head) = name.len().checked_sub(32).and_then(|cut| name.get(..cut)) else { return name };
    let hash = &name[head.len()..];
    if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return name;
    }
    match head.strip_suffix(folded_table) {
        Some(declared) if !declared.is_empty() => declared,
        _ => name,
    }
}

/// Replaces folded schema, table and column names in every catalog row by
/// their declared spelling, matching without regard to case. A name with no
/// declared match (an object that appeared between the two queries) is kept.
pub fn apply_declared_names(rows: &mut CatalogRows, declared: &[DeclaredColumn]) {
    use std::collections::HashMap;
    let mut schemas: HashMap<String, &str> = HashMap::new();
    let mut tables: HashMap<(String, String), &str> = HashMap::new();
    let mut columns: HashMap<(String, String, String), &str> = HashMap::new();
    for d in declared {
        let (s, t, c) = (fold(&d.schema), fold(&d.table), fold(&d.column));
        schemas.entry(s.clone()).or_insert(&d.schema);
        tables.entry((s.clone(), t.clone())).or_insert(&d.table);
        columns.entry((s, t, c)).or_insert(&d.column);
    }
    let mut owner: HashMap<super::ObjectId, (String, String)> = HashMap::new();
    for t in &mut rows.tables {
        let key = (fold(&t.schema), fold(&t.name));
        if let Some(name) = tables.get(&key) {
            t.name = (*name).to_owned();
        }
        if let Some(schema) = schemas.get(&key.0) {
            t.schema = (*schema).to_owned();
        }
        owner.insert(t.object_id, key);
    }
    let column_of = |table: Option<&(String, String)>, name: &mut String| {
        if let Some((s, t)) = table
            && let Some(declared) = columns.get(&(s.clone(), t.clone(), fold(name)))
        {
            *name = (*declared).to_owned();
        }
    };
    for c in &mut rows.columns {
        column_of(owner.get(&c.object_id), &mut c.column.name);
    }
    for k in &mut rows.keys {
        column_of(owner.get(&k.object_id), &mut k.column);
    }
    for i in &mut rows.indexes {
        if let Some(name) = i.column.as_mut() {
            column_of(owner.get(&i.object_id), name);
        }
        if let Some((_, table)) = owner.get(&i.object_id) {
            i.name = unmangled_index_name(&i.name, table).to_owned();
        }
    }
    for f in &mut rows.foreign_keys {
        column_of(owner.get(&f.object_id), &mut f.column);
        let referenced = (fold(&f.referenced_schema), fold(&f.referenced_table));
        column_of(Some(&referenced), &mut f.referenced_column);
        if let Some(name) = tables.get(&referenced) {
            f.referenced_table = (*name).to_owned();
        }
        if let Some(schema) = schemas.get(&referenced.0) {
            f.referenced_schema = (*schema).to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use mssql_pg_migrate_typemap::Length;

    use super::*;
    use crate::catalog::{ColumnRow, ForeignKeyColumnRow, IndexColumnRow, KeyColumnRow, TableRow};

    #[test]
    fn catalog_rows_decode_into_columns() {
        let parts = ColumnParts {
            name: "Id",
            base_type: "int",
            max_length: 4,
            precision: 10,
            identity_seed: Some("1000"),
            identity_increment: Some("-5"),
            identity_current: Some("990"),
            ..ColumnParts::default()
        };
        let c = column_from_parts(&parts).unwrap();
        assert_eq!(c.data_type, ColumnType::Mssql(MssqlType::Int));
        assert_eq!(c.identity, Some(Identity { seed: 1000, increment: -5, current: Some(990) }));

        let alias = ColumnParts {
            name: "Phone",
            base_type: "nvarchar",
            alias_type: Some("PhoneNumber"),
            max_length: 40,
            nullable: true,
            collation: Some("Latin1_General_CI_AS"),
            default: Some("(N'')"),
            ..ColumnParts::default()
        };
        let c = column_from_parts(&alias).unwrap();
        assert_eq!(c.data_type, ColumnType::Mssql(MssqlType::NVarChar(Length::Bounded(20))));
        assert_eq!(c.alias_type.as_deref(), Some("PhoneNumber"));
        assert_eq!(c.default.as_deref(), Some("(N'')"));

        let lob = ColumnParts { name: "Body", base_type: "varbinary", max_length: -1, ..ColumnParts::default() };
        assert_eq!(column_from_parts(&lob).unwrap().data_type, ColumnType::Mssql(MssqlType::VarBinary(Length::Max)));

        let computed = ColumnParts {
            name: "Total",
            base_type: "decimal",
            max_length: 9,
            precision: 18,
            scale: 2,
            computed: Some("([Qty]*[Price])"),
            persisted: true,
            ..ColumnParts::default()
        };
        let c = column_from_parts(&computed).unwrap();
        assert_eq!(c.computed, Some(Computed { expression: "([Qty]*[Price])".into(), persisted: true }));

        let clr = ColumnParts {
            name: "Node",
            base_type: "hierarchyid",
            is_assembly_type: true,
            max_length: 892,
            ..ColumnParts::default()
        };
        assert!(matches!(column_from_parts(&clr).unwrap().data_type, ColumnType::Mssql(MssqlType::HierarchyId)));

        let odd = ColumnParts { name: "X", base_type: "vector", max_length: 10, ..ColumnParts::default() };
        let ColumnType::Unsupported { type_name, .. } = column_from_parts(&odd).unwrap().data_type else {
            panic!("an unknown type must be kept as unsupported");
        };
        assert_eq!(type_name, "vector");

        let broken = ColumnParts {
            name: "Id",
            base_type: "int",
            max_length: 4,
            identity_seed: Some("x"),
            ..ColumnParts::default()
        };
        assert!(column_from_parts(&broken).unwrap_err().to_string().contains("'x' is not an integer"));
    }

    #[test]
    fn codes_decode() {
        assert_eq!(key_kind("PK"), KeyKind::Primary);
        assert_eq!(key_kind("UQ"), KeyKind::Unique);
        assert_eq!(referential_action(0), ReferentialAction::NoAction);
        assert_eq!(referential_action(1), ReferentialAction::Cascade);
        assert_eq!(referential_action(2), ReferentialAction::SetNull);
        assert_eq!(referential_action(3), ReferentialAction::SetDefault);
    }

    #[test]
    fn every_query_is_parameterised_by_schema_and_ordered() {
        for sql in [TABLES, TABLES_WITHOUT_SIZES, COLUMNS, KEYS, INDEXES, UNSUPPORTED_INDEXES, FOREIGN_KEYS, CHECKS] {
            assert!(sql.contains("s.name = @P1"), "{sql}");
            assert!(sql.contains("ORDER BY"), "{sql}");
        }
        assert!(DECLARED_NAMES.contains("TABLE_SCHEMA = @P1"));
        assert!(!TABLES_WITHOUT_SIZES.contains("allocation_units"));
    }

    #[test]
    fn folded_names_take_their_declared_spelling_everywhere() {
        let column = |name: &str| Column::new(name, ColumnType::Mssql(MssqlType::Int));
        let table = |object_id, name: &str| TableRow {
            object_id,
            schema: "sales".into(),
            name: name.into(),
            estimated_rows: 0,
            estimated_bytes: 0,
        };
        let mut rows = CatalogRows {
            tables: vec![table(1, "alltypes"), table(2, "größe x")],
            columns: vec![
                ColumnRow { object_id: 1, column: column("id") },
                ColumnRow { object_id: 2, column: column("parentid") },
                ColumnRow { object_id: 2, column: column("added later") },
            ],
            keys: vec![KeyColumnRow {
                object_id: 1,
                name: "pk_alltypes".into(),
                kind: KeyKind::Primary,
                column: "id".into(),
            }],
            indexes: vec![IndexColumnRow {
                object_id: 2,
                name: "ix".into(),
                unique: false,
                filter: None,
                column: Some("parentid".into()),
                descending: false,
                included: false,
            }],
            foreign_keys: vec![ForeignKeyColumnRow {
                object_id: 2,
                name: "fk".into(),
                column: "parentid".into(),
                referenced_schema: "sales".into(),
                referenced_table: "alltypes".into(),
                referenced_column: "id".into(),
                on_delete: ReferentialAction::NoAction,
                on_update: ReferentialAction::NoAction,
            }],
            ..CatalogRows::default()
        };
        let declared = |t: &str, c: &str| DeclaredColumn { schema: "Sales".into(), table: t.into(), column: c.into() };
        apply_declared_names(
            &mut rows,
            &[declared("AllTypes", "Id"), declared("GRÖßE X", "ParentId"), declared("Elsewhere", "id")],
        );
        assert_eq!((rows.tables[0].schema.as_str(), rows.tables[0].name.as_str()), ("Sales", "AllTypes"));
        assert_eq!(rows.tables[1].name, "GRÖßE X", "non-ASCII letters match without case too");
        let names: Vec<&str> = rows.columns.iter().map(|c| c.column.name.as_str()).collect();
        assert_eq!(names, ["Id", "ParentId", "added later"], "an undeclared column keeps its name");
        assert_eq!(rows.keys[0].column, "Id");
        assert_eq!(rows.indexes[0].column.as_deref(), Some("ParentId"));
        assert_eq!(
            unmangled_index_name(
                "ix \"odd\" nameorder \"lines\" xd73f69a4e789f8cdab5b531e93094c83",
                "order \"lines\" x"
            ),
            "ix \"odd\" name"
        );
        assert_eq!(unmangled_index_name("ix_plain", "t"), "ix_plain", "names SQL Server keeps stay");
        assert_eq!(unmangled_index_name("t0123456789abcdef0123456789abcdef", "t"), "t0123456789abcdef0123456789abcdef");
        let fk = &rows.foreign_keys[0];
        assert_eq!(
            (
                fk.column.as_str(),
                fk.referenced_schema.as_str(),
                fk.referenced_table.as_str(),
                fk.referenced_column.as_str()
            ),
            ("ParentId", "Sales", "AllTypes", "Id")
        );
    }
}
