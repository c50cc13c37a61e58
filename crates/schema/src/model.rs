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

/// What [`ColumnType::typical_width`] assumes of a value without a bound
/// (`nvarchar(max)`, `text`, `xml`...): such columns usually hold documents.
const UNBOUNDED_WIDTH_GUESS: u64 = 2048;

impl ColumnType {
    /// Bytes a value of this type typically takes on the wire: fixed types
    /// their size, bounded strings and binaries half their bound, unbounded
    /// ones [`UNBOUNDED_WIDTH_GUESS`]. Only for ordering work when the
    /// catalog has no size estimate; never for anything that must be exact.
    pub fn typical_width(&self) -> u64 {
        use mssql_pg_migrate_typemap::Length;
        let half = |length: &Length, unit: u64| match length {
            Length::Max => UNBOUNDED_WIDTH_GUESS,
            Length::Bounded(n) => (u64::from(*n) * unit).div_ceil(2),
        };
        match self {
            ColumnType::Mssql(t) => match t {
                MssqlType::Bit | MssqlType::TinyInt => 1,
                MssqlType::SmallInt => 2,
                MssqlType::Int | MssqlType::Real | MssqlType::SmallMoney | MssqlType::SmallDateTime => 4,
                MssqlType::Date => 3,
                MssqlType::BigInt | MssqlType::Float | MssqlType::Money | MssqlType::DateTime => 8,
                MssqlType::RowVersion | MssqlType::Time { .. } | MssqlType::DateTime2 { .. } => 8,
                MssqlType::DateTimeOffset { .. } => 10,
                MssqlType::Decimal { .. } | MssqlType::UniqueIdentifier => 16,
                MssqlType::Char(l) | MssqlType::VarChar(l) | MssqlType::Binary(l) | MssqlType::VarBinary(l) => {
                    half(l, 1)
                }
                MssqlType::NChar(l) | MssqlType::NVarChar(l) => half(l, 2),
                _ => UNBOUNDED_WIDTH_GUESS,
            },
            ColumnType::Postgres(t) => match t {
                PgType::Boolean => 1,
                PgType::SmallInt => 2,
                PgType::Integer | PgType::Real | PgType::Date => 4,
                PgType::BigInt | PgType::DoublePrecision | PgType::Time(_) | PgType::Timestamp(_) => 8,
                PgType::TimestampTz(_) => 8,
                PgType::Numeric(_) | PgType::Uuid => 16,
                PgType::Char(n) => u64::from(*n),
                PgType::Varchar(Some(n)) => u64::from(*n).div_ceil(2),
                PgType::Varchar(None) | PgType::Text | PgType::Bytea | PgType::Xml | PgType::Passthrough(_) => {
                    UNBOUNDED_WIDTH_GUESS
                }
            },
            ColumnType::Unsupported { .. } => UNBOUNDED_WIDTH_GUESS,
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

/// One key column of an index: a column, or (from a PostgreSQL source) an
/// expression.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexColumn {
    /// The column's name; empty for an expression.
    pub name: String,
    pub descending: bool,
    /// The expression, in the source dialect, of an expression column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// A PostgreSQL operator class other than the type's default
    /// (`jsonb_path_ops`, `text_pattern_ops`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opclass: Option<String>,
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
    /// A PostgreSQL access method other than btree (`gin`, `gist`,
    /// `brin`, `hash`, `spgist`); SQL Server's row-store indexes are btrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
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
    /// A table of `columns` with no keys, indexes or constraints, and no
    /// catalog estimates.
    pub fn new(schema: impl Into<String>, name: impl Into<String>, columns: Vec<Column>) -> Table {
        Table {
            schema: schema.into(),
            name: name.into(),
            columns,
            primary_key: None,
            unique_constraints: Vec::new(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            checks: Vec::new(),
            estimated_rows: 0,
            estimated_bytes: 0,
            unsupported: Vec::new(),
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether a btree on the whole table (the primary key, a unique
    /// constraint, or an unfiltered index) has `column` first, so that a
    /// range of `column` is found without reading the table.
    pub fn leads_an_index(&self, column: &str) -> bool {
        let first_of = |columns: &[String]| columns.first().is_some_and(|c| c == column);
        self.primary_key.as_ref().is_some_and(|k| first_of(&k.columns))
            || self.unique_constraints.iter().any(|k| first_of(&k.columns))
            || self.indexes.iter().any(|ix| {
                ix.method.is_none()
                    && ix.filter.is_none()
                    && ix.columns.first().is_some_and(|c| c.expression.is_none() && c.name == column)
            })
    }

    /// The table's size for ordering work (largest first, so no big table
    /// is left to run alone at the end): the catalog's estimate, or where
    /// the server keeps none (Babelfish), rows times the columns' typical
    /// widths.
    pub fn size_for_scheduling(&self) -> u64 {
        if self.estimated_bytes > 0 {
            return self.estimated_bytes;
        }
        let width: u64 = self.columns.iter().map(|c| c.data_type.typical_width()).sum();
        self.estimated_rows.saturating_mul(width.max(1))
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

    #[test]
    fn a_column_leads_an_index_only_as_the_first_column_of_an_unfiltered_btree() {
        let index = |columns: &[&str], filter: Option<&str>, method: Option<&str>| Index {
            name: "ix".into(),
            columns: columns.iter().map(|c| IndexColumn { name: (*c).into(), ..IndexColumn::default() }).collect(),
            included: Vec::new(),
            unique: false,
            filter: filter.map(Into::into),
            method: method.map(Into::into),
        };
        let key = |columns: &[&str]| Key { name: "k".into(), columns: columns.iter().map(|c| (*c).into()).collect() };
        let mut t = Table::new("s", "t", Vec::new());
        assert!(!t.leads_an_index("modified"));
        t.indexes = vec![index(&["region", "modified"], None, None)];
        assert!(!t.leads_an_index("modified"), "second in the index");
        t.indexes.push(index(&["modified"], Some("deleted = 0"), None));
        assert!(!t.leads_an_index("modified"), "filtered");
        t.indexes.push(index(&["modified"], None, Some("brin")));
        assert!(!t.leads_an_index("modified"), "not a btree");
        t.indexes.push(index(&["modified", "id"], None, None));
        assert!(t.leads_an_index("modified"));
        let mut keyed = Table::new("s", "t", Vec::new());
        keyed.primary_key = Some(key(&["seq"]));
        keyed.unique_constraints = vec![key(&["stamp", "seq"])];
        assert!(keyed.leads_an_index("seq") && keyed.leads_an_index("stamp") && !keyed.leads_an_index("other"));
    }

    #[test]
    fn without_a_catalog_size_wide_tables_outweigh_long_narrow_ones() {
        use mssql_pg_migrate_typemap::Length;
        let table = |rows: u64, bytes: u64, types: Vec<MssqlType>| Table {
            estimated_rows: rows,
            estimated_bytes: bytes,
            ..Table::new(
                "dbo",
                "t",
                types
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| Column::new(format!("c{i}"), ColumnType::Mssql(t)))
                    .collect(),
            )
        };
        // Stack Overflow's shape: votes are many narrow rows, posts fewer
        // rows with a document each.
        let votes = table(500_000, 0, vec![MssqlType::Int, MssqlType::Int, MssqlType::DateTime]);
        let posts = table(190_000, 0, vec![MssqlType::Int, MssqlType::NVarChar(Length::Max)]);
        assert_eq!(votes.size_for_scheduling(), 500_000 * 16);
        assert_eq!(posts.size_for_scheduling(), 190_000 * (4 + 2048));
        assert_eq!(table(10, 0, vec![MssqlType::NVarChar(Length::Bounded(100))]).size_for_scheduling(), 10 * 100);
        // The catalog's own estimate wins where it has one.
        assert_eq!(table(500_000, 7, vec![MssqlType::Int]).size_for_scheduling(), 7);
        assert_eq!(table(0, 0, vec![MssqlType::Int]).size_for_scheduling(), 0);
    }
}
