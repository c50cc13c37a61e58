//! The PostgreSQL catalog reader (`pg_catalog`), for PostgreSQL sources and
//! for checking an existing target in `truncate` mode.

use std::str::FromStr;

use mssql_pg_migrate_schema::catalog::{
    CatalogRows, CheckRow, ColumnRow, ForeignKeyColumnRow, IndexColumnRow, KeyColumnRow, KeyKind, TableRow,
};
use mssql_pg_migrate_schema::{Column, ColumnType, Computed, Identity, ReferentialAction, SchemaError, Table};
use mssql_pg_migrate_typemap::{BuiltinName, PgType};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

/// Tables of one schema with the planner's row estimate and the heap plus
/// TOAST size as of the last VACUUM or ANALYZE (no privilege needed).
pub const TABLES: &str = "\
SELECT c.oid::int8, n.nspname::text, c.relname::text, GREATEST(c.reltuples, 0)::int8,
       (c.relpages::int8 + COALESCE((SELECT t.relpages::int8 FROM pg_class t WHERE t.oid = c.reltoastrelid), 0))
         * current_setting('block_size')::int8
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname";

pub const COLUMNS: &str = "\
SELECT a.attrelid::int8, a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
       CASE WHEN co.collname IS NOT NULL AND co.collname <> 'default' THEN co.collname::text END,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       a.attidentity <> '', s.seqstart::text, s.seqincrement::text, CASE WHEN has_sequence_privilege(s.seqrelid, 'SELECT,USAGE') THEN pg_sequence_last_value(s.seqrelid)::text END,
       (SELECT t.typnamespace = 'pg_catalog'::regnamespace
               AND (t.typelem = 0 OR (SELECT e.typnamespace = 'pg_catalog'::regnamespace FROM pg_type e WHERE e.oid = t.typelem))
        FROM pg_type t WHERE t.oid = a.atttypid)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_depend dep ON dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum
     AND dep.classid = 'pg_class'::regclass AND dep.deptype = 'i' AND a.attidentity <> ''
LEFT JOIN pg_sequence s ON s.seqrelid = dep.objid
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum";

pub const KEYS: &str = "\
SELECT con.conrelid::int8, con.conname::text, con.contype::text, a.attname::text
FROM pg_constraint con
JOIN pg_namespace n ON n.oid = con.connamespace
CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
WHERE n.nspname = $1 AND con.contype IN ('p', 'u')
ORDER BY con.conrelid, con.conname, k.ord";

pub const INDEXES: &str = "\
SELECT i.indrelid::int8, ic.relname::text, i.indisunique, pg_get_expr(i.indpred, i.indrelid),
       a.attname::text, COALESCE((i.indoption[k.ord - 1] & 1) = 1, false), k.ord > i.indnkeyatts,
       CASE WHEN k.attnum = 0 THEN pg_get_indexdef(i.indexrelid, k.ord::int, true) END,
       CASE WHEN NOT opc.opcdefault THEN opc.opcname::text END,
       NULLIF(am.amname::text, 'btree')
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
LEFT JOIN pg_opclass opc ON k.ord <= i.indnkeyatts AND opc.oid = i.indclass[k.ord - 1]
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.contype IN ('p', 'u', 'x'))
ORDER BY i.indrelid, ic.relname, k.ord";

pub const FOREIGN_KEYS: &str = "\
SELECT con.conrelid::int8, con.conname::text, a.attname::text, rn.nspname::text, rc.relname::text, ra.attname::text,
       con.confdeltype::text, con.confupdtype::text
FROM pg_constraint con
JOIN pg_namespace n ON n.oid = con.connamespace
JOIN pg_class rc ON rc.oid = con.confrelid
JOIN pg_namespace rn ON rn.oid = rc.relnamespace
CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(attnum, refnum, ord)
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
JOIN pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = k.refnum
WHERE n.nspname = $1 AND con.contype = 'f'
ORDER BY con.conrelid, con.conname, k.ord";

pub const CHECKS: &str = "\
SELECT con.conrelid::int8, con.conname::text, pg_get_expr(con.conbin, con.conrelid)
FROM pg_constraint con
JOIN pg_namespace n ON n.oid = con.connamespace
WHERE n.nspname = $1 AND con.contype = 'c' AND con.conrelid <> 0
ORDER BY con.conrelid, con.conname";

const SERVER: &str = "PostgreSQL";

fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, what: &'static str) -> Result<T, SchemaError> {
    row.try_get(idx).map_err(|e| {
        let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
        SchemaError::Catalog { server: SERVER, what, message: format!("{e}{cause}"), transient: false }
    })
}

async fn query(
    client: &tokio_postgres::Client,
    sql: &str,
    schema: &str,
    what: &'static str,
) -> Result<Vec<Row>, SchemaError> {
    client.query(sql, &[&schema]).await.map_err(|e| SchemaError::Catalog {
        server: SERVER,
        what,
        message: e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_owned()),
        transient: crate::error::pg_transience(&e) != mssql_pg_migrate_dialect::Transience::Permanent,
    })
}

/// Maps a `format_type` spelling to the model. Another built-in type
/// (`builtin`: of schema pg_catalog, or an array of one) is copied as it
/// is ([`PgType::Passthrough`]); a type defined in the database (an enum,
/// a domain, a composite) becomes [`ColumnType::Unsupported`], so only
/// tables that use one fail, saying so.
pub fn column_type(formatted: &str, builtin: bool) -> ColumnType {
    match PgType::from_str(formatted) {
        Ok(t) => ColumnType::Postgres(t),
        Err(_) => match BuiltinName::new(formatted).filter(|_| builtin) {
            Some(name) => ColumnType::Postgres(PgType::Passthrough(name)),
            None => ColumnType::Unsupported {
                type_name: formatted.to_owned(),
                reason: "a type defined in the source database (enum, domain, composite or extension type); \
                         create it in the target and map the column with type_overrides, or leave the table out"
                    .into(),
            },
        },
    }
}

fn action(code: &str) -> ReferentialAction {
    match code {
        "r" => ReferentialAction::Restrict,
        "c" => ReferentialAction::Cascade,
        "n" => ReferentialAction::SetNull,
        "d" => ReferentialAction::SetDefault,
        _ => ReferentialAction::NoAction,
    }
}

/// Reads every table of `schema` that `select` accepts.
///
/// # Errors
/// [`SchemaError::Catalog`] when a query fails, naming which.
pub async fn read_schema(
    client: &tokio_postgres::Client,
    schema: &str,
    select: &(dyn Fn(&str, &str) -> bool + Sync),
) -> Result<Vec<Table>, SchemaError> {
    let mut rows = CatalogRows::default();
    for r in query(client, TABLES, schema, "tables").await? {
        rows.tables.push(TableRow {
            object_id: get(&r, 0, "tables")?,
            schema: get(&r, 1, "tables")?,
            name: get(&r, 2, "tables")?,
            estimated_rows: get(&r, 3, "tables")?,
            estimated_bytes: get(&r, 4, "tables")?,
        });
    }
    for r in query(client, COLUMNS, schema, "columns").await? {
        let w = "columns";
        let identity = if get::<bool>(&r, 7, w)? {
            let seed =
                mssql_pg_migrate_schema::catalog::parse_i128(get::<Option<&str>>(&r, 8, w)?, w, SERVER)?.unwrap_or(1);
            let increment =
                mssql_pg_migrate_schema::catalog::parse_i128(get::<Option<&str>>(&r, 9, w)?, w, SERVER)?.unwrap_or(1);
            let current = mssql_pg_migrate_schema::catalog::parse_i128(get::<Option<&str>>(&r, 10, w)?, w, SERVER)?;
            Some(Identity { seed, increment, current })
        } else {
            None
        };
        let generated: Option<String> = get(&r, 6, w)?;
        rows.columns.push(ColumnRow {
            object_id: get(&r, 0, w)?,
            column: Column {
                name: get(&r, 1, w)?,
                data_type: column_type(get(&r, 2, w)?, get::<Option<bool>>(&r, 11, w)?.unwrap_or(false)),
                alias_type: None,
                nullable: get(&r, 3, w)?,
                collation: get(&r, 4, w)?,
                default: get(&r, 5, w)?,
                identity,
                computed: generated.map(|expression| Computed { expression, persisted: true }),
            },
        });
    }
    for r in query(client, KEYS, schema, "keys").await? {
        let kind = if get::<&str>(&r, 2, "keys")? == "p" { KeyKind::Primary } else { KeyKind::Unique };
        rows.keys.push(KeyColumnRow {
            object_id: get(&r, 0, "keys")?,
            name: get(&r, 1, "keys")?,
            kind,
            column: get(&r, 3, "keys")?,
        });
    }
    for r in query(client, INDEXES, schema, "indexes").await? {
        let w = "indexes";
        rows.indexes.push(IndexColumnRow {
            object_id: get(&r, 0, w)?,
            name: get(&r, 1, w)?,
            unique: get(&r, 2, w)?,
            filter: get(&r, 3, w)?,
            column: get(&r, 4, w)?,
            descending: get(&r, 5, w)?,
            included: get(&r, 6, w)?,
            expression: get(&r, 7, w)?,
            opclass: get(&r, 8, w)?,
            method: get(&r, 9, w)?,
        });
    }
    for r in query(client, FOREIGN_KEYS, schema, "foreign keys").await? {
        let w = "foreign keys";
        rows.foreign_keys.push(ForeignKeyColumnRow {
            object_id: get(&r, 0, w)?,
            name: get(&r, 1, w)?,
            column: get(&r, 2, w)?,
            referenced_schema: get(&r, 3, w)?,
            referenced_table: get(&r, 4, w)?,
            referenced_column: get(&r, 5, w)?,
            on_delete: action(get(&r, 6, w)?),
            on_update: action(get(&r, 7, w)?),
        });
    }
    for r in query(client, CHECKS, schema, "check constraints").await? {
        let w = "check constraints";
        rows.checks.push(CheckRow { object_id: get(&r, 0, w)?, name: get(&r, 1, w)?, expression: get(&r, 2, w)? });
    }
    Ok(mssql_pg_migrate_schema::catalog::assemble(rows, select))
}
