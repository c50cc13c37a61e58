//! SQL Server → PostgreSQL column type mapping, as pure functions.
//!
//! Given what the SQL Server catalog says about a column, this crate picks the
//! PostgreSQL column type and gives a *fidelity verdict*: does every source
//! value land exactly, in a wider type, or with a documented loss? No I/O
//! happens here, so every rule is unit-tested without a server.
//!
//! The defaults follow the data engineer's guide's type table. Users can
//! override the target per source type or per column ([`Override`]); an
//! override is only accepted when the engine has a conversion for the pair
//! ([`conversion`]), so a bad override fails at configuration time, not
//! halfway through a load.
//!
//! ```
//! use mssql_pg_migrate_typemap::{map_column, CatalogType, MssqlType, SourceColumn, Verdict};
//!
//! let t = MssqlType::from_catalog(CatalogType {
//!     name: "datetime2", max_length: 8, precision: 27, scale: 7, is_assembly_type: false,
//! })?;
//! let column = SourceColumn::new("dbo", "Orders", "CreatedAt", &t);
//! let mapping = map_column(&column, &[])?;
//! assert_eq!(mapping.pg_type.to_string(), "timestamp");
//! assert_eq!(mapping.fidelity.verdict(), Verdict::Lossy); // time(7)'s 100 ns digit
//! # Ok::<(), mssql_pg_migrate_typemap::TypeError>(())
//! ```

mod mapping;
pub mod mssql;
pub mod pg;

use std::fmt;

use serde::Serialize;

pub use mapping::{conversion, default_target};
pub use mssql::{CatalogType, Length, MssqlType};
pub use pg::{BuiltinName, PgType};

/// Everything that can go wrong while mapping types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    #[error("'{type_name}' is not a SQL Server type this tool knows")]
    UnknownType { type_name: String },
    #[error("SQL Server type '{type_name}' has invalid parameters: {reason}")]
    InvalidParameters { type_name: String, reason: String },
    #[error("'{type_name}' is not a supported PostgreSQL target type: {reason}")]
    UnsupportedTarget { type_name: String, reason: String },
    #[error("{source_type} cannot be mapped to {target_type}: {reason}")]
    IncompatibleTarget { source_type: String, target_type: String, reason: String },
}

/// How faithfully source values land in the target column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every value lands unchanged, and the target accepts nothing more.
    Exact,
    /// Every value lands unchanged (or in a documented equivalent form); the
    /// target type accepts more than the source did.
    Widened,
    /// Some information is not kept; the reason says which.
    Lossy,
}

/// A [`Verdict`] with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fidelity {
    Exact,
    Widened(String),
    Lossy(String),
}

impl Fidelity {
    pub fn verdict(&self) -> Verdict {
        match self {
            Fidelity::Exact => Verdict::Exact,
            Fidelity::Widened(_) => Verdict::Widened,
            Fidelity::Lossy(_) => Verdict::Lossy,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Fidelity::Exact => None,
            Fidelity::Widened(r) | Fidelity::Lossy(r) => Some(r),
        }
    }

    /// Combines two findings about one column: the worse verdict wins and
    /// the reasons of both are kept, worst first.
    pub fn and(self, other: Fidelity) -> Fidelity {
        let verdict = self.verdict().max(other.verdict());
        let (first, second) = if self.verdict() >= other.verdict() { (self, other) } else { (other, self) };
        let reason = match (first.reason(), second.reason()) {
            (Some(a), Some(b)) => format!("{a}; {b}"),
            (Some(a), None) | (None, Some(a)) => a.to_owned(),
            (None, None) => return Fidelity::Exact,
        };
        match verdict {
            Verdict::Exact => Fidelity::Exact,
            Verdict::Widened => Fidelity::Widened(reason),
            Verdict::Lossy => Fidelity::Lossy(reason),
        }
    }
}

impl fmt::Display for Fidelity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fidelity::Exact => f.write_str("exact"),
            Fidelity::Widened(r) => write!(f, "widened: {r}"),
            Fidelity::Lossy(r) => write!(f, "lossy: {r}"),
        }
    }
}

impl Serialize for Fidelity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Fidelity", 2)?;
        s.serialize_field("verdict", &self.verdict())?;
        s.serialize_field("reason", &self.reason())?;
        s.end()
    }
}

/// What the catalog says about one source column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumn<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    pub name: &'a str,
    /// The base type (alias types already resolved).
    pub data_type: &'a MssqlType,
    /// The alias (user-defined) type name, when the column used one.
    pub alias: Option<&'a str>,
    pub nullable: bool,
    pub collation: Option<&'a str>,
    pub identity: bool,
    pub computed: bool,
}

impl<'a> SourceColumn<'a> {
    /// A nullable, non-identity, non-computed column without a collation.
    pub fn new(schema: &'a str, table: &'a str, name: &'a str, data_type: &'a MssqlType) -> Self {
        SourceColumn {
            schema,
            table,
            name,
            data_type,
            alias: None,
            nullable: true,
            collation: None,
            identity: false,
            computed: false,
        }
    }
}

/// Which columns an [`Override`] applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OverrideScope {
    /// Every column whose base type has this name (`numeric` matches `decimal`).
    SourceType(String),
    /// One column. `schema: None` matches the table in any schema.
    Column { schema: Option<String>, table: String, column: String },
}

/// A user's choice of target type, from `migration.type_overrides`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Override {
    pub scope: OverrideScope,
    pub target: PgType,
}

impl Override {
    fn applies_to(&self, column: &SourceColumn<'_>) -> bool {
        match &self.scope {
            OverrideScope::SourceType(name) => {
                column.data_type.matches_base_name(name) || column.alias.is_some_and(|a| a.eq_ignore_ascii_case(name))
            }
            OverrideScope::Column { schema, table, column: name } => {
                schema.as_deref().is_none_or(|s| s == column.schema) && table == column.table && name == column.name
            }
        }
    }
}

/// Where a mapping's target type came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingOrigin {
    Default,
    TypeOverride,
    ColumnOverride,
}

/// The decision for one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMapping {
    pub pg_type: PgType,
    pub fidelity: Fidelity,
    pub origin: MappingOrigin,
    /// Whether the target column is `GENERATED BY DEFAULT AS IDENTITY`.
    pub identity: bool,
}

/// Maps one column, applying the first matching column override, else the
/// first matching type override, else the default.
///
/// # Errors
/// [`TypeError::IncompatibleTarget`] when the chosen override cannot hold the
/// column's values.
pub fn map_column(column: &SourceColumn<'_>, overrides: &[Override]) -> Result<ColumnMapping, TypeError> {
    let column_override =
        overrides.iter().find(|o| matches!(o.scope, OverrideScope::Column { .. }) && o.applies_to(column));
    let type_override =
        overrides.iter().find(|o| matches!(o.scope, OverrideScope::SourceType(_)) && o.applies_to(column));
    let (mut pg_type, origin) = match (column_override, type_override) {
        (Some(o), _) => (o.target, MappingOrigin::ColumnOverride),
        (None, Some(o)) => (o.target, MappingOrigin::TypeOverride),
        (None, None) => (default_target(column.data_type), MappingOrigin::Default),
    };
    // PostgreSQL identity columns must be integers; SQL Server also allows
    // IDENTITY on decimal(p,0), which fits bigint up to p = 18.
    if column.identity
        && origin == MappingOrigin::Default
        && let MssqlType::Decimal { precision, scale: 0 } = column.data_type
        && *precision <= 18
    {
        pg_type = PgType::BigInt;
    }
    // A computed column's type is the server's derivation, and servers do
    // not always derive one that holds the values: Babelfish reports
    // decimal(38,38) (no value of 1 or more fits) for any numeric result
    // without a declared precision. Unbounded numeric holds every value.
    let mut impossible_scale = None;
    if column.computed
        && origin == MappingOrigin::Default
        && let MssqlType::Decimal { precision, scale } = column.data_type
        && precision == scale
    {
        pg_type = PgType::Numeric(None);
        impossible_scale = Some((*precision, *scale));
    }
    let mut fidelity = conversion(column.data_type, pg_type)?;
    if let Some((precision, scale)) = impossible_scale {
        fidelity = fidelity.and(Fidelity::Widened(format!(
            "the catalog types this computed column decimal({precision},{scale}), which holds no value \
             of 1 or more; numeric without limits holds what the expression yields"
        )));
    }
    if let Some(collation) = column.collation
        && pg_type.is_textual()
        && is_insensitive(collation)
    {
        fidelity = fidelity.and(Fidelity::Widened(format!(
            "values are kept exactly, but comparisons become case- and accent-sensitive \
             (source collation {collation} is not)"
        )));
    }
    let identity = column.identity && pg_type.supports_identity();
    if column.identity && !identity {
        fidelity = fidelity.and(Fidelity::Lossy(format!(
            "the IDENTITY property is dropped: PostgreSQL identity columns must be integers, \
             and {pg_type} is not; values are copied as they are"
        )));
    }
    Ok(ColumnMapping { pg_type, fidelity, origin, identity })
}

/// SQL Server collation names spell their sensitivity: `_CI_` / `_AI`.
fn is_insensitive(collation: &str) -> bool {
    let upper = collation.to_ascii_uppercase();
    upper.split('_').any(|part| part == "CI" || part == "AI")
}
