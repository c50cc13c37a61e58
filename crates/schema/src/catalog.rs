//! What catalog readers return, and how the model is built from it. Each
//! dialect's crate queries its server's catalog into these flat rows (one
//! per key or index column, in order); [`assemble`] builds the model from
//! them the same way for every source, so only the SQL and the row
//! decoding differ, and those live with the dialect.

use std::collections::BTreeMap;

use crate::model::{CheckConstraint, Column, ForeignKey, Index, IndexColumn, Key, ReferentialAction, Table};

/// Source-catalog identifier of a table (`object_id` or `oid`).
pub type ObjectId = i64;

#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub object_id: ObjectId,
    pub schema: String,
    pub name: String,
    pub estimated_rows: i64,
    pub estimated_bytes: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnRow {
    pub object_id: ObjectId,
    pub column: Column,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Primary,
    Unique,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyColumnRow {
    pub object_id: ObjectId,
    pub name: String,
    pub kind: KeyKind,
    pub column: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexColumnRow {
    pub object_id: ObjectId,
    pub name: String,
    pub unique: bool,
    pub filter: Option<String>,
    /// `None` for an expression column.
    pub column: Option<String>,
    pub descending: bool,
    pub included: bool,
    /// The expression of an expression column, where the source can give
    /// it (PostgreSQL); without one such an index is not carried over.
    pub expression: Option<String>,
    /// A non-default operator class (PostgreSQL).
    pub opclass: Option<String>,
    /// A non-btree access method (PostgreSQL), the same on every row of the index.
    pub method: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForeignKeyColumnRow {
    pub object_id: ObjectId,
    pub name: String,
    pub column: String,
    pub referenced_schema: String,
    pub referenced_table: String,
    pub referenced_column: String,
    pub on_delete: ReferentialAction,
    pub on_update: ReferentialAction,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckRow {
    pub object_id: ObjectId,
    pub name: String,
    pub expression: String,
}

/// An object the catalog has but the tool does not carry over.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsupportedRow {
    pub object_id: ObjectId,
    pub description: String,
}

/// Everything one schema's catalog queries returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogRows {
    pub tables: Vec<TableRow>,
    pub columns: Vec<ColumnRow>,
    pub keys: Vec<KeyColumnRow>,
    pub indexes: Vec<IndexColumnRow>,
    pub foreign_keys: Vec<ForeignKeyColumnRow>,
    pub checks: Vec<CheckRow>,
    pub unsupported: Vec<UnsupportedRow>,
}

/// Builds tables from catalog rows, keeping only those `select(schema, name)`
/// accepts, ordered by name. Rows of one constraint or index must be
/// consecutive and in column order, as every catalog query sorts them.
pub fn assemble(rows: CatalogRows, select: &dyn Fn(&str, &str) -> bool) -> Vec<Table> {
    let mut tables: BTreeMap<ObjectId, Table> = rows
        .tables
        .into_iter()
        .filter(|t| select(&t.schema, &t.name))
        .map(|t| {
            let table = Table {
                estimated_rows: u64::try_from(t.estimated_rows).unwrap_or(0),
                estimated_bytes: u64::try_from(t.estimated_bytes).unwrap_or(0),
                ..Table::new(t.schema, t.name, Vec::new())
            };
            (t.object_id, table)
        })
        .collect();

    for row in rows.columns {
        if let Some(t) = tables.get_mut(&row.object_id) {
            t.columns.push(row.column);
        }
    }
    for row in rows.keys {
        let Some(t) = tables.get_mut(&row.object_id) else { continue };
        let slot = match row.kind {
            KeyKind::Primary => {
                t.primary_key.get_or_insert_with(|| Key { name: row.name.clone(), columns: Vec::new() })
            }
            KeyKind::Unique => {
                if t.unique_constraints.last().is_none_or(|k| k.name != row.name) {
                    t.unique_constraints.push(Key { name: row.name.clone(), columns: Vec::new() });
                }
                let Some(last) = t.unique_constraints.last_mut() else { continue };
                last
            }
        };
        slot.columns.push(row.column);
    }
    let mut expression_indexes: Vec<(ObjectId, String)> = Vec::new();
    for row in rows.indexes {
        let Some(t) = tables.get_mut(&row.object_id) else { continue };
        if t.indexes.last().is_none_or(|i| i.name != row.name) {
            t.indexes.push(Index {
                name: row.name.clone(),
                columns: Vec::new(),
                included: Vec::new(),
                unique: row.unique,
                filter: row.filter.clone(),
                method: row.method.clone(),
            });
        }
        let Some(index) = t.indexes.last_mut() else { continue };
        match (row.column, row.included, row.expression) {
            (None, false, Some(expression)) => index.columns.push(IndexColumn {
                name: String::new(),
                descending: row.descending,
                expression: Some(expression),
                opclass: row.opclass,
            }),
            (None, _, _) => expression_indexes.push((row.object_id, row.name)),
            (Some(c), true, _) => index.included.push(c),
            (Some(c), false, _) => index.columns.push(IndexColumn {
                name: c,
                descending: row.descending,
                expression: None,
                opclass: row.opclass,
            }),
        }
    }
    for (object_id, name) in expression_indexes {
        if let Some(t) = tables.get_mut(&object_id)
            && t.indexes.iter().any(|i| i.name == name)
        {
            t.indexes.retain(|i| i.name != name);
            t.unsupported.push(format!("index {name} is on an expression, which is not carried over"));
        }
    }
    for row in rows.foreign_keys {
        let Some(t) = tables.get_mut(&row.object_id) else { continue };
        if t.foreign_keys.last().is_none_or(|f| f.name != row.name) {
            t.foreign_keys.push(ForeignKey {
                name: row.name.clone(),
                columns: Vec::new(),
                referenced_schema: row.referenced_schema.clone(),
                referenced_table: row.referenced_table.clone(),
                referenced_columns: Vec::new(),
                on_delete: row.on_delete,
                on_update: row.on_update,
            });
        }
        let Some(fk) = t.foreign_keys.last_mut() else { continue };
        fk.columns.push(row.column);
        fk.referenced_columns.push(row.referenced_column);
    }
    for row in rows.checks {
        if let Some(t) = tables.get_mut(&row.object_id) {
            t.checks.push(CheckConstraint { name: row.name, expression: row.expression });
        }
    }
    for row in rows.unsupported {
        if let Some(t) = tables.get_mut(&row.object_id) {
            t.unsupported.push(row.description);
        }
    }
    let mut out: Vec<Table> = tables.into_values().collect();
    out.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    out
}

/// Parses an integer the catalog returns as text (SQL Server's identity
/// values are `sql_variant`s, cast to text so every integer type reads alike).
pub fn parse_i128(
    text: Option<&str>,
    what: &'static str,
    server: &'static str,
) -> Result<Option<i128>, crate::SchemaError> {
    match text {
        None => Ok(None),
        Some(t) => t.trim().parse::<i128>().map(Some).map_err(|_| crate::SchemaError::Catalog {
            server,
            what,
            message: format!("'{t}' is not an integer"),
            transient: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use mssql_pg_migrate_typemap::PgType;

    use super::*;
    use crate::model::ColumnType;

    fn col(object_id: ObjectId, name: &str) -> ColumnRow {
        ColumnRow { object_id, column: Column::new(name, ColumnType::Postgres(PgType::Integer)) }
    }

    fn index_row(name: &str, column: Option<&str>, included: bool) -> IndexColumnRow {
        IndexColumnRow {
            object_id: 1,
            name: name.into(),
            unique: false,
            filter: None,
            column: column.map(Into::into),
            descending: false,
            included,
            expression: None,
            opclass: None,
            method: None,
        }
    }

    #[test]
    fn rows_become_tables_with_ordered_multi_column_objects() {
        let fk = |column: &str, referenced_column: &str| ForeignKeyColumnRow {
            object_id: 1,
            name: "fk_self".into(),
            column: column.into(),
            referenced_schema: "s".into(),
            referenced_table: "a".into(),
            referenced_column: referenced_column.into(),
            on_delete: ReferentialAction::Cascade,
            on_update: ReferentialAction::NoAction,
        };
        let rows = CatalogRows {
            tables: vec![
                TableRow {
                    object_id: 2,
                    schema: "s".into(),
                    name: "b".into(),
                    estimated_rows: -1,
                    estimated_bytes: -1,
                },
                TableRow {
                    object_id: 1,
                    schema: "s".into(),
                    name: "a".into(),
                    estimated_rows: 10,
                    estimated_bytes: 8192,
                },
                TableRow {
                    object_id: 3,
                    schema: "s".into(),
                    name: "skipped".into(),
                    estimated_rows: 1,
                    estimated_bytes: 0,
                },
            ],
            columns: vec![col(1, "x"), col(1, "y"), col(2, "z"), col(3, "w")],
            keys: vec![
                KeyColumnRow { object_id: 1, name: "pk".into(), kind: KeyKind::Primary, column: "x".into() },
                KeyColumnRow { object_id: 1, name: "pk".into(), kind: KeyKind::Primary, column: "y".into() },
                KeyColumnRow { object_id: 1, name: "uq1".into(), kind: KeyKind::Unique, column: "y".into() },
                KeyColumnRow { object_id: 1, name: "uq2".into(), kind: KeyKind::Unique, column: "x".into() },
            ],
            indexes: vec![
                index_row("ix", Some("y"), false),
                index_row("ix", Some("x"), true),
                index_row("ix_expr", None, false),
            ],
            foreign_keys: vec![fk("x", "y"), fk("y", "x")],
            checks: vec![CheckRow { object_id: 2, name: "ck".into(), expression: "z > 0".into() }],
            unsupported: vec![UnsupportedRow { object_id: 2, description: "xml index".into() }],
        };
        let tables = assemble(rows, &|_, name| name != "skipped");
        assert_eq!(tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let a = &tables[0];
        assert_eq!(a.estimated_rows, 10);
        assert_eq!(a.estimated_bytes, 8192);
        assert_eq!(tables[1].estimated_rows, 0);
        assert_eq!(tables[1].estimated_bytes, 0);
        assert_eq!(a.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(a.primary_key, Some(Key { name: "pk".into(), columns: vec!["x".into(), "y".into()] }));
        assert_eq!(a.unique_constraints.len(), 2);
        assert_eq!(a.indexes.len(), 1);
        assert_eq!(a.indexes[0].columns, vec![IndexColumn { name: "y".into(), ..IndexColumn::default() }]);
        assert_eq!(a.indexes[0].included, vec!["x".to_owned()]);
        assert_eq!(a.unsupported, vec!["index ix_expr is on an expression, which is not carried over".to_owned()]);
        assert_eq!(a.foreign_keys.len(), 1);
        assert_eq!(a.foreign_keys[0].columns, vec!["x".to_owned(), "y".to_owned()]);
        assert_eq!(a.foreign_keys[0].referenced_columns, vec!["y".to_owned(), "x".to_owned()]);
        assert_eq!(tables[1].checks[0].expression, "z > 0");
        assert_eq!(tables[1].unsupported, vec!["xml index".to_owned()]);
    }
}
