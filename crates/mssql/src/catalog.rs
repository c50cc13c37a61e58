//! The SQL Server catalog reader (`sys.*` views), over tiberius.
//!
//! The SQL and the decoding of each value are kept apart from the
//! connection: [`column_from_parts`] and friends are plain functions with
//! unit tests, and the integration suite (run when `MSSQL_TEST_URL` is
//! set) runs the queries against a real server.

use mssql_pg_migrate_schema::catalog::{CatalogRows, TableRow};
use mssql_pg_migrate_schema::ident::qualified_mssql;
use mssql_pg_migrate_schema::{Column, ColumnType, Computed, Identity, ReferentialAction, SchemaError, Table};
use mssql_pg_migrate_typemap::{CatalogType, MssqlType};
use tiberius::{Client, Row};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::compat::Compat;

pub mod facts;

use facts::{
    CheckFact, ColumnFact, ColumnFacts, ComputedFact, ForeignKeyColumnFact, ForeignKeyFact, IdentityFact,
    IndexColumnFact, IndexFact, ObjectFacts, PartitionFact, TableFact, TypeFact,
};

/// The schema's tables. This and the queries below each read one `sys`
/// view and are joined in [`facts::catalog_rows`] (see there for why).
pub const TABLES: &str = "\
SELECT CAST(object_id AS bigint), SCHEMA_NAME(schema_id), name
FROM sys.tables WHERE schema_id = SCHEMA_ID(@P1) AND is_ms_shipped = 0";

/// Row counts by partition.
pub const PARTITIONS: &str = "\
SELECT CAST(object_id AS bigint), CAST(index_id AS int), CAST(rows AS bigint)
FROM sys.partitions WHERE OBJECT_SCHEMA_NAME(object_id) = @P1";

/// Used bytes (in-row, row-overflow and LOB pages) of each heap or
/// clustered index. In-row and row-overflow units hang off the hobt, LOB
/// units off the partition. Asked only where `sys.allocation_units` exists.
pub const SIZES: &str = "\
SELECT CAST(p.object_id AS bigint), CAST(SUM(a.used_pages) AS bigint) * 8192
FROM sys.partitions p
JOIN sys.allocation_units a ON a.container_id = CASE WHEN a.type IN (1, 3) THEN p.hobt_id ELSE p.partition_id END
WHERE p.index_id IN (0, 1) AND OBJECT_SCHEMA_NAME(p.object_id) = @P1
GROUP BY p.object_id";

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

/// Columns of the schema's objects (views too; only tables are kept).
pub const COLUMNS: &str = "\
SELECT CAST(object_id AS bigint), CAST(column_id AS int), name, CAST(system_type_id AS int),
       CAST(user_type_id AS int), max_length, precision, scale, is_nullable, collation_name,
       CAST(default_object_id AS bigint), is_identity
FROM sys.columns WHERE OBJECT_SCHEMA_NAME(object_id) = @P1";

/// Every type of the database; alias types resolve through a column's
/// `system_type_id` (Babelfish numbers types by PostgreSQL oid, so the ids
/// are looked up rather than known).
pub const TYPES: &str = "\
SELECT CAST(user_type_id AS int), name, is_user_defined, is_assembly_type FROM sys.types";

pub const DEFAULTS: &str = "\
SELECT CAST(object_id AS bigint), definition
FROM sys.default_constraints WHERE OBJECT_SCHEMA_NAME(parent_object_id) = @P1";

pub const COMPUTED_COLUMNS: &str = "\
SELECT CAST(object_id AS bigint), CAST(column_id AS int), definition, is_persisted
FROM sys.computed_columns WHERE OBJECT_SCHEMA_NAME(object_id) = @P1";

/// Identity facts, asked only when some column is an identity. They come
/// from `IDENT_SEED` / `IDENT_INCR` / `IDENT_CURRENT` (one identity per
/// table, so they are unambiguous) rather than from `sys.identity_columns`
/// alone, which Babelfish returns once per same-named identity column of
/// any table, with NULL seeds. `IDENT_CURRENT` is the seed until a value is
/// generated; only `sys.identity_columns.last_value` tells the two apart,
/// so it gates it.
pub const IDENTITIES: &str = "\
SELECT CAST(c.object_id AS bigint), CAST(c.column_id AS int),
       CAST(CAST(IDENT_SEED(q.name) AS decimal(38, 0)) AS nvarchar(40)),
       CAST(CAST(IDENT_INCR(q.name) AS decimal(38, 0)) AS nvarchar(40)),
       CASE WHEN EXISTS (SELECT 1 FROM sys.identity_columns ic
                         WHERE ic.object_id = c.object_id AND ic.column_id = c.column_id AND ic.last_value IS NOT NULL)
            THEN CAST(CAST(IDENT_CURRENT(q.name) AS decimal(38, 0)) AS nvarchar(40)) END
FROM sys.columns c
JOIN sys.tables t ON t.object_id = c.object_id
CROSS APPLY (SELECT QUOTENAME(SCHEMA_NAME(t.schema_id)) + N'.' + QUOTENAME(t.name) AS name) q
WHERE c.is_identity = 1 AND t.schema_id = SCHEMA_ID(@P1)";

/// Indexes of every kind; keys, plain indexes and the kinds PostgreSQL has
/// no equivalent for (XML, spatial, columnstore, hash) are told apart from
/// the flags. Key constraints are found from the indexes that enforce
/// them: `sys.key_constraints.unique_index_id` would do on SQL Server, but
/// Babelfish fills it with another number than `sys.indexes.index_id`.
pub const INDEXES: &str = "\
SELECT CAST(object_id AS bigint), CAST(index_id AS int), name, CAST(type AS int), type_desc, is_unique,
       is_primary_key, is_unique_constraint, is_hypothetical, is_disabled, filter_definition
FROM sys.indexes WHERE OBJECT_SCHEMA_NAME(object_id) = @P1";

pub const INDEX_COLUMNS: &str = "\
SELECT CAST(object_id AS bigint), CAST(index_id AS int), CAST(index_column_id AS int), CAST(column_id AS int),
       CAST(key_ordinal AS int), is_descending_key, is_included_column
FROM sys.index_columns WHERE OBJECT_SCHEMA_NAME(object_id) = @P1";

/// Foreign keys, with the referenced table's names (it may be in another
/// schema; `NULL` where the login may not see it).
pub const FOREIGN_KEYS: &str = "\
SELECT CAST(object_id AS bigint), CAST(parent_object_id AS bigint), name, CAST(delete_referential_action AS int),
       CAST(update_referential_action AS int), is_disabled,
       OBJECT_SCHEMA_NAME(referenced_object_id), OBJECT_NAME(referenced_object_id)
FROM sys.foreign_keys WHERE OBJECT_SCHEMA_NAME(parent_object_id) = @P1";

pub const FOREIGN_KEY_COLUMNS: &str = "\
SELECT CAST(constraint_object_id AS bigint), CAST(constraint_column_id AS int), CAST(parent_column_id AS int),
       COL_NAME(referenced_object_id, referenced_column_id)
FROM sys.foreign_key_columns WHERE OBJECT_SCHEMA_NAME(parent_object_id) = @P1";

pub const CHECKS: &str = "\
SELECT CAST(parent_object_id AS bigint), name, definition, is_disabled
FROM sys.check_constraints WHERE OBJECT_SCHEMA_NAME(parent_object_id) = @P1";

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
    let identity = match mssql_pg_migrate_schema::catalog::parse_i128(p.identity_seed, w, SERVER)? {
        None => None,
        Some(seed) => Some(Identity {
            seed,
            increment: mssql_pg_migrate_schema::catalog::parse_i128(p.identity_increment, w, SERVER)?.unwrap_or(1),
            current: mssql_pg_migrate_schema::catalog::parse_i128(p.identity_current, w, SERVER)?,
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

fn bad(what: &'static str, message: String) -> SchemaError {
    SchemaError::Catalog { server: SERVER, what, message, transient: false }
}

/// A catalog query that failed, and whether it may pass.
fn failed(what: &'static str, e: &tiberius::error::Error) -> SchemaError {
    let transient = crate::error::tiberius_transience(e) != mssql_pg_migrate_dialect::Transience::Permanent;
    SchemaError::Catalog { server: SERVER, what, message: e.to_string(), transient }
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
    params: &[&dyn tiberius::ToSql],
    what: &'static str,
) -> Result<Vec<Row>, SchemaError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let started = std::time::Instant::now();
    let stream = client.query(sql, params).await.map_err(|e| failed(what, &e))?;
    let rows = stream.into_first_result().await.map_err(|e| failed(what, &e))?;
    tracing::debug!(rows = rows.len(), ms = started.elapsed().as_millis(), "catalog: {what}");
    Ok(rows)
}

fn owned(row: &Row, idx: usize, what: &'static str) -> Result<String, SchemaError> {
    req::<&str>(row, idx, what).map(str::to_owned)
}

fn owned_opt(row: &Row, idx: usize, what: &'static str) -> Result<Option<String>, SchemaError> {
    opt::<&str>(row, idx, what).map(|v| v.map(str::to_owned))
}

/// Reads every table of `schema` that `select` accepts, on one connection
/// or, given a second, with the columns read on it at the same time (each
/// connection's first queries are slow on Babelfish, whose T-SQL parser
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
    let (objects, (columns, declared)) = match second {
        Some(other) => {
            let (objects, columns) = futures_util::future::join(
                read_objects(client, schema, babelfish),
                read_columns(other, schema, babelfish),
            )
            .await;
            (objects?, columns?)
        }
        None => (read_objects(client, schema, babelfish).await?, read_columns(client, schema, babelfish).await?),
    };
    let mut rows = facts::catalog_rows(objects, columns)?;
    if let Some(declared) = declared {
        apply_declared_names(&mut rows, &declared);
        count_unanalyzed_tables(client, &mut rows.tables).await;
    }
    Ok(mssql_pg_migrate_schema::catalog::assemble(rows, select))
}

/// The columns of `schema` with their types, defaults, computed
/// definitions and identities, and on Babelfish (only) their declared names.
async fn read_columns<S>(
    client: &mut Client<Compat<S>>,
    schema: &str,
    babelfish: bool,
) -> Result<(ColumnFacts, Option<Vec<DeclaredColumn>>), SchemaError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut facts = ColumnFacts::default();
    let w = "columns";
    for r in query(client, COLUMNS, &[&schema], w).await? {
        facts.columns.push(ColumnFact {
            object_id: req(&r, 0, w)?,
            column_id: req(&r, 1, w)?,
            name: owned(&r, 2, w)?,
            system_type_id: req(&r, 3, w)?,
            user_type_id: req(&r, 4, w)?,
            max_length: req(&r, 5, w)?,
            precision: req(&r, 6, w)?,
            scale: req(&r, 7, w)?,
            nullable: req(&r, 8, w)?,
            collation: owned_opt(&r, 9, w)?,
            default_object_id: opt(&r, 10, w)?.unwrap_or(0),
            is_identity: req(&r, 11, w)?,
        });
    }
    let w = "types";
    for r in query(client, TYPES, &[], w).await? {
        facts.types.push(TypeFact {
            user_type_id: req(&r, 0, w)?,
            name: owned(&r, 1, w)?,
            is_user_defined: req(&r, 2, w)?,
            is_assembly_type: req(&r, 3, w)?,
        });
    }
    let w = "defaults";
    for r in query(client, DEFAULTS, &[&schema], w).await? {
        if let Some(definition) = owned_opt(&r, 1, w)? {
            facts.defaults.insert(req(&r, 0, w)?, definition);
        }
    }
    let w = "computed columns";
    for r in query(client, COMPUTED_COLUMNS, &[&schema], w).await? {
        // A definition the login may not see is NULL: the column then
        // reads as a plain one, which is what it holds.
        if let Some(definition) = owned_opt(&r, 2, w)? {
            facts.computed.push(ComputedFact {
                object_id: req(&r, 0, w)?,
                column_id: req(&r, 1, w)?,
                definition,
                persisted: req(&r, 3, w)?,
            });
        }
    }
    if facts.columns.iter().any(|c| c.is_identity) {
        let w = "identity columns";
        for r in query(client, IDENTITIES, &[&schema], w).await? {
            facts.identities.push(IdentityFact {
                object_id: req(&r, 0, w)?,
                column_id: req(&r, 1, w)?,
                seed: owned_opt(&r, 2, w)?,
                increment: owned_opt(&r, 3, w)?,
                current: owned_opt(&r, 4, w)?,
            });
        }
    }
    if !babelfish {
        return Ok((facts, None));
    }
    let mut declared = Vec::new();
    let w = "declared names";
    for r in query(client, DECLARED_NAMES, &[&schema], w).await? {
        declared.push(DeclaredColumn { schema: owned(&r, 0, w)?, table: owned(&r, 1, w)?, column: owned(&r, 2, w)? });
    }
    Ok((facts, Some(declared)))
}

/// Tables with their row counts and sizes, indexes, foreign keys and checks.
async fn read_objects<S>(
    client: &mut Client<Compat<S>>,
    schema: &str,
    babelfish: bool,
) -> Result<ObjectFacts, SchemaError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut facts = ObjectFacts::default();
    let w = "tables";
    for r in query(client, TABLES, &[&schema], w).await? {
        facts.tables.push(TableFact { object_id: req(&r, 0, w)?, schema: owned(&r, 1, w)?, name: owned(&r, 2, w)? });
    }
    let w = "partitions";
    for r in query(client, PARTITIONS, &[&schema], w).await? {
        facts.partitions.push(PartitionFact {
            object_id: req(&r, 0, w)?,
            index_id: req(&r, 1, w)?,
            rows: opt(&r, 2, w)?.unwrap_or(0),
        });
    }
    // Asked first rather than tried, since a failed query is logged as an
    // error by the driver even when running without sizes then works.
    // Babelfish has no allocation units, so it is not asked.
    if !babelfish && has_allocation_units(client).await {
        let w = "table sizes";
        for r in query(client, SIZES, &[&schema], w).await? {
            facts.sizes.insert(req(&r, 0, w)?, opt(&r, 1, w)?.unwrap_or(0));
        }
    } else {
        tracing::debug!("table sizes are not available (no sys.allocation_units); planning without size estimates");
    }
    let w = "indexes";
    for r in query(client, INDEXES, &[&schema], w).await? {
        facts.indexes.push(IndexFact {
            object_id: req(&r, 0, w)?,
            index_id: req(&r, 1, w)?,
            name: owned_opt(&r, 2, w)?,
            kind: req(&r, 3, w)?,
            kind_description: owned_opt(&r, 4, w)?,
            unique: opt(&r, 5, w)?.unwrap_or(false),
            primary_key: opt(&r, 6, w)?.unwrap_or(false),
            unique_constraint: opt(&r, 7, w)?.unwrap_or(false),
            hypothetical: opt(&r, 8, w)?.unwrap_or(false),
            disabled: opt(&r, 9, w)?.unwrap_or(false),
            filter: owned_opt(&r, 10, w)?,
        });
    }
    let w = "index columns";
    for r in query(client, INDEX_COLUMNS, &[&schema], w).await? {
        facts.index_columns.push(IndexColumnFact {
            object_id: req(&r, 0, w)?,
            index_id: req(&r, 1, w)?,
            index_column_id: req(&r, 2, w)?,
            column_id: req(&r, 3, w)?,
            key_ordinal: opt(&r, 4, w)?.unwrap_or(0),
            descending: opt(&r, 5, w)?.unwrap_or(false),
            included: opt(&r, 6, w)?.unwrap_or(false),
        });
    }
    let w = "foreign keys";
    for r in query(client, FOREIGN_KEYS, &[&schema], w).await? {
        facts.foreign_keys.push(ForeignKeyFact {
            object_id: req(&r, 0, w)?,
            parent_object_id: req(&r, 1, w)?,
            name: owned(&r, 2, w)?,
            on_delete: req(&r, 3, w)?,
            on_update: req(&r, 4, w)?,
            disabled: opt(&r, 5, w)?.unwrap_or(false),
            referenced_schema: owned_opt(&r, 6, w)?,
            referenced_table: owned_opt(&r, 7, w)?,
        });
    }
    let w = "foreign key columns";
    for r in query(client, FOREIGN_KEY_COLUMNS, &[&schema], w).await? {
        facts.foreign_key_columns.push(ForeignKeyColumnFact {
            constraint_object_id: req(&r, 0, w)?,
            ordinal: req(&r, 1, w)?,
            parent_column_id: req(&r, 2, w)?,
            referenced_column: owned_opt(&r, 3, w)?,
        });
    }
    let w = "check constraints";
    for r in query(client, CHECKS, &[&schema], w).await? {
        // A definition the login may not see is NULL; such a check is
        // left out (the target then accepts more, never less).
        let Some(definition) = owned_opt(&r, 2, w)? else { continue };
        facts.checks.push(CheckFact {
            object_id: req(&r, 0, w)?,
            name: owned(&r, 1, w)?,
            definition,
            disabled: opt(&r, 3, w)?.unwrap_or(false),
        });
    }
    Ok(facts)
}

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
    let mut owner: HashMap<mssql_pg_migrate_schema::catalog::ObjectId, (String, String)> = HashMap::new();
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
    use mssql_pg_migrate_schema::catalog::{
        ColumnRow, ForeignKeyColumnRow, IndexColumnRow, KeyColumnRow, KeyKind, TableRow,
    };

    #[test]
    fn a_catalog_query_cut_off_may_pass_and_an_unreadable_value_may_not() {
        let reset = tiberius::error::Error::Io { kind: std::io::ErrorKind::ConnectionReset, message: "reset".into() };
        let SchemaError::Catalog { transient, what, .. } = failed("columns", &reset) else { panic!() };
        assert_eq!((transient, what), (true, "columns"));
        let refused = tiberius::error::Error::Protocol("unexpected token".into());
        assert!(matches!(failed("columns", &refused), SchemaError::Catalog { transient: false, .. }));
        assert!(matches!(bad("columns", "column 3 is NULL".into()), SchemaError::Catalog { transient: false, .. }));
    }

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
        assert_eq!(referential_action(0), ReferentialAction::NoAction);
        assert_eq!(referential_action(1), ReferentialAction::Cascade);
        assert_eq!(referential_action(2), ReferentialAction::SetNull);
        assert_eq!(referential_action(3), ReferentialAction::SetDefault);
    }

    #[test]
    fn every_query_reads_one_view_of_the_schema() {
        let by_schema = [
            TABLES,
            PARTITIONS,
            SIZES,
            COLUMNS,
            DEFAULTS,
            COMPUTED_COLUMNS,
            IDENTITIES,
            INDEXES,
            INDEX_COLUMNS,
            FOREIGN_KEYS,
            FOREIGN_KEY_COLUMNS,
            CHECKS,
        ];
        for sql in by_schema {
            assert!(sql.contains("= @P1") || sql.contains("SCHEMA_ID(@P1)"), "{sql}");
        }
        // The joins Babelfish parses slowly stay out of every query but
        // the two asked only where needed.
        for sql in by_schema.iter().chain([&TYPES]).filter(|sql| **sql != SIZES && **sql != IDENTITIES) {
            assert!(!sql.contains("JOIN"), "{sql}");
        }
        assert!(DECLARED_NAMES.contains("TABLE_SCHEMA = @P1"));
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
                expression: None,
                opclass: None,
                method: None,
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
