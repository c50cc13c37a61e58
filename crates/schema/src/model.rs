//! What a catalog reader extracts, independent of the source server.

use mssql_pg_migrate_typemap::{MssqlType, PgType};
use serde::Serialize;

/// A column's type in the source's own terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "dialect", content = "type", rename_all = "snake_case")]
pub enum ColumnType {
    #[serde(serialize_with = "display")]
    Mssql(MssqlType),
    #[serde(serialize_with = "display")]
    Postgres(PgType),
    /// A type this tool cannot read; planning the table fails and names it.
    Unsupported { type_name: String, reason: String },
}

impl std::fmt::Display for ColumnType {
    /// The type as the source's catalog spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnType::Mssql(t) => t.fmt(f),
            ColumnType::Postgres(t) => t.fmt(f),
            ColumnType::Unsupported { type_name, .. } => f.write_str(type_name),
        }
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// `IDENTITY(seed, increment)` and the source's current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub seed: i128,
    pub increment: i128,
    /// `IDENT_CURRENT`, or `None` when no row was ever inserted.
    pub current: Option<i128>,
}

/// A computed column's definition, in the source dialect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Computed {
    pub expression: String,
    pub persisted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: String,
    pub data_type: ColumnType,
    /// The alias (user-defined) type the column was declared with, if any.
    pub alias_type: Option<String>,
    pub nullable: bool,
    pub collation: Option<String>,
    /// The default expression, in the source dialect.
    pub default: Option<String>,
    pub identity: Option<Identity>,
    pub computed: Option<Computed>,
}

impl Column {
    /// A NOT NULL column without alias type, collation, default, identity
    /// or computation; the other facts are set on the value.
    pub fn new(name: impl Into<String>, data_type: ColumnType) -> Column {
        Column {
            name: name.into(),
            data_type,
            alias_type: None,
            nullable: false,
            collation: None,
            default: None,
            identity: None,
            computed: None,
        }
    }
}

/// A primary key or unique constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Key {
    pub name: String,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexColumn {
    pub name: String,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Index {
    pub name: String,
    pub columns: Vec<IndexColumn>,
    /// `INCLUDE (...)` columns.
    pub included: Vec<String>,
    pub unique: bool,
    /// The filter predicate of a filtered index, in the source dialect.
    pub filter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferentialAction {
    NoAction,
    Cascade,
    SetNull,
    SetDefault,
    Restrict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub referenced_schema: String,
    pub referenced_table: String,
    pub referenced_columns: Vec<String>,
    pub on_delete: ReferentialAction,
    pub on_update: ReferentialAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckConstraint {
    pub name: String,
    /// The predicate, in the source dialect.
    pub expression: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Option<Key>,
    pub unique_constraints: Vec<Key>,
    pub indexes: Vec<Index>,
    pub foreign_keys: Vec<ForeignKey>,
    pub checks: Vec<CheckConstraint>,
    /// The catalog's row-count estimate (not an exact count).
    pub estimated_rows: u64,
    /// The catalog's size estimate of the table's data, in bytes.
    pub estimated_bytes: u64,
    /// Objects the catalog holds that are not carried over (expression
    /// indexes, XML and spatial indexes...), described for the report.
    pub unsupported: Vec<String>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_display_as_their_catalog_spells_them() {
        assert_eq!(ColumnType::Postgres(PgType::BigInt).to_string(), "bigint");
        assert_eq!(ColumnType::Mssql(MssqlType::DateTime).to_string(), "datetime");
        let odd = ColumnType::Unsupported { type_name: "geography".into(), reason: "no mapping".into() };
        assert_eq!(odd.to_string(), "geography");
    }
}
