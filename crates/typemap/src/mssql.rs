//! SQL Server column types, as read from `sys.columns` / `sys.types`.

use std::fmt;

use crate::TypeError;

/// Declared length of a character or binary column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Length {
    /// `(max)`: up to 2 GB.
    Max,
    /// A declared bound. Characters for `nchar`/`nvarchar` (UTF-16 code units),
    /// bytes for `char`/`varchar`/`binary`/`varbinary`.
    Bounded(u16),
}

impl fmt::Display for Length {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Length::Max => f.write_str("max"),
            Length::Bounded(n) => write!(f, "{n}"),
        }
    }
}

/// A SQL Server data type with the parameters that matter for mapping.
///
/// Alias types (`CREATE TYPE x FROM nvarchar(20)`) are resolved to their base
/// type before they get here; the alias name travels separately in
/// [`crate::SourceColumn::alias`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MssqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    /// `decimal(p,s)` and `numeric(p,s)`, which SQL Server treats as one type.
    Decimal {
        precision: u8,
        scale: u8,
    },
    Money,
    SmallMoney,
    /// `float` / `float(25..53)`: IEEE double.
    Float,
    /// `real` / `float(1..24)`: IEEE single.
    Real,
    Date,
    Time {
        scale: u8,
    },
    DateTime,
    DateTime2 {
        scale: u8,
    },
    SmallDateTime,
    DateTimeOffset {
        scale: u8,
    },
    Char(Length),
    VarChar(Length),
    NChar(Length),
    NVarChar(Length),
    Text,
    NText,
    Binary(Length),
    VarBinary(Length),
    Image,
    UniqueIdentifier,
    Xml,
    SqlVariant,
    HierarchyId,
    Geography,
    Geometry,
    /// `rowversion`, also spelled `timestamp` in older catalogs.
    RowVersion,
    /// A user-defined CLR (assembly) type.
    Clr {
        type_name: String,
    },
}

/// The raw facts the catalog gives about one column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogType<'a> {
    /// The system type name (`sys.types.name` of the `system_type_id`), or
    /// the assembly type's name when `is_assembly_type` is set.
    pub name: &'a str,
    /// `sys.columns.max_length`: bytes, `-1` for `(max)`.
    pub max_length: i16,
    pub precision: u8,
    pub scale: u8,
    pub is_assembly_type: bool,
}

impl MssqlType {
    /// Builds the type from catalog facts.
    ///
    /// # Errors
    /// [`TypeError::UnknownType`] for a name SQL Server does not define, and
    /// [`TypeError::InvalidParameters`] for parameters outside SQL Server's own limits
    /// (which means the catalog row was misread).
    pub fn from_catalog(t: CatalogType<'_>) -> Result<Self, TypeError> {
        let name = t.name.to_ascii_lowercase();
        let invalid = |why: &str| TypeError::InvalidParameters { type_name: name.clone(), reason: why.to_owned() };
        let bytes = || -> Result<Length, TypeError> {
            match t.max_length {
                -1 => Ok(Length::Max),
                n if n > 0 && n <= 8000 => Ok(Length::Bounded(n as u16)),
                n => Err(invalid(&format!("max_length {n} is not -1 or 1..=8000"))),
            }
        };
        let utf16_units = || -> Result<Length, TypeError> {
            match t.max_length {
                -1 => Ok(Length::Max),
                n if n > 0 && n <= 8000 && n % 2 == 0 => Ok(Length::Bounded((n / 2) as u16)),
                n => Err(invalid(&format!("max_length {n} is not -1 or an even number in 2..=8000"))),
            }
        };
        let time_scale = || -> Result<u8, TypeError> {
            if t.scale <= 7 { Ok(t.scale) } else { Err(invalid(&format!("scale {} is not in 0..=7", t.scale))) }
        };
        if t.is_assembly_type {
            return Ok(match name.as_str() {
                "hierarchyid" => MssqlType::HierarchyId,
                "geography" => MssqlType::Geography,
                "geometry" => MssqlType::Geometry,
                _ => MssqlType::Clr { type_name: t.name.to_owned() },
            });
        }
        Ok(match name.as_str() {
            "bit" => MssqlType::Bit,
            "tinyint" => MssqlType::TinyInt,
            "smallint" => MssqlType::SmallInt,
            "int" => MssqlType::Int,
            "bigint" => MssqlType::BigInt,
            "decimal" | "numeric" => {
                if !(1..=38).contains(&t.precision) || t.scale > t.precision {
                    return Err(invalid(&format!(
                        "precision {} / scale {} is not 1..=38 with scale <= precision",
                        t.precision, t.scale
                    )));
                }
                MssqlType::Decimal { precision: t.precision, scale: t.scale }
            }
            "money" => MssqlType::Money,
            "smallmoney" => MssqlType::SmallMoney,
            // sys.columns reports float(1..24) as `real` and float(25..53) as `float`;
            // a bare `float` with a small precision only comes from hand-made input.
            "float" if t.precision != 0 && t.precision <= 24 => MssqlType::Real,
            "float" => MssqlType::Float,
            "real" => MssqlType::Real,
            "date" => MssqlType::Date,
            "time" => MssqlType::Time { scale: time_scale()? },
            "datetime" => MssqlType::DateTime,
            "datetime2" => MssqlType::DateTime2 { scale: time_scale()? },
            "smalldatetime" => MssqlType::SmallDateTime,
            "datetimeoffset" => MssqlType::DateTimeOffset { scale: time_scale()? },
            "char" => MssqlType::Char(bytes()?),
            "varchar" => MssqlType::VarChar(bytes()?),
            "nchar" => MssqlType::NChar(utf16_units()?),
            "nvarchar" => MssqlType::NVarChar(utf16_units()?),
            // sysname is nvarchar(128) NOT NULL by definition.
            "sysname" => MssqlType::NVarChar(Length::Bounded(128)),
            "text" => MssqlType::Text,
            "ntext" => MssqlType::NText,
            "binary" => MssqlType::Binary(bytes()?),
            "varbinary" => MssqlType::VarBinary(bytes()?),
            "image" => MssqlType::Image,
            "uniqueidentifier" => MssqlType::UniqueIdentifier,
            "xml" => MssqlType::Xml,
            "sql_variant" => MssqlType::SqlVariant,
            "hierarchyid" => MssqlType::HierarchyId,
            "geography" => MssqlType::Geography,
            "geometry" => MssqlType::Geometry,
            "timestamp" | "rowversion" => MssqlType::RowVersion,
            _ => return Err(TypeError::UnknownType { type_name: name }),
        })
    }

    /// Builds the type as T-SQL spells it in a declaration or a `CAST`:
    /// `name(args)`, with `max` for `(max)`. Omitted arguments take SQL
    /// Server's defaults: `(1)` for character and binary types, `(18, 0)`
    /// for decimal, scale 7 for time types, `float(53)`.
    ///
    /// # Errors
    /// As [`MssqlType::from_catalog`], for an unknown name or parameters
    /// outside SQL Server's limits.
    pub fn from_declaration(name: &str, args: &[u32], max: bool) -> Result<Self, TypeError> {
        let lower = name.to_ascii_lowercase();
        let invalid = |why: String| TypeError::InvalidParameters { type_name: lower.clone(), reason: why };
        let first = args.first().copied();
        let small = |v: u32| u8::try_from(v).map_err(|_| invalid(format!("{v} is out of range")));
        let length = |units_per_char: u32| -> Result<i16, TypeError> {
            if max {
                return Ok(-1);
            }
            let n = first.unwrap_or(1);
            i16::try_from(n.saturating_mul(units_per_char)).map_err(|_| invalid(format!("length {n} is out of range")))
        };
        let mut facts = CatalogType { name, max_length: 0, precision: 0, scale: 0, is_assembly_type: false };
        match lower.as_str() {
            "char" | "varchar" | "binary" | "varbinary" => facts.max_length = length(1)?,
            "nchar" | "nvarchar" => facts.max_length = length(2)?,
            "decimal" | "numeric" | "dec" => {
                facts.name = "decimal";
                facts.precision = small(first.unwrap_or(18))?;
                facts.scale = small(args.get(1).copied().unwrap_or(0))?;
            }
            "time" | "datetime2" | "datetimeoffset" => facts.scale = small(first.unwrap_or(7))?,
            "float" => facts.precision = small(first.unwrap_or(53))?,
            "int" | "integer" => facts.name = "int",
            _ => {}
        }
        MssqlType::from_catalog(facts)
    }

    /// The base type name, as used in `type_overrides[].source_type`.
    pub fn base_name(&self) -> &str {
        match self {
            MssqlType::Bit => "bit",
            MssqlType::TinyInt => "tinyint",
            MssqlType::SmallInt => "smallint",
            MssqlType::Int => "int",
            MssqlType::BigInt => "bigint",
            MssqlType::Decimal { .. } => "decimal",
            MssqlType::Money => "money",
            MssqlType::SmallMoney => "smallmoney",
            MssqlType::Float => "float",
            MssqlType::Real => "real",
            MssqlType::Date => "date",
            MssqlType::Time { .. } => "time",
            MssqlType::DateTime => "datetime",
            MssqlType::DateTime2 { .. } => "datetime2",
            MssqlType::SmallDateTime => "smalldatetime",
            MssqlType::DateTimeOffset { .. } => "datetimeoffset",
            MssqlType::Char(_) => "char",
            MssqlType::VarChar(_) => "varchar",
            MssqlType::NChar(_) => "nchar",
            MssqlType::NVarChar(_) => "nvarchar",
            MssqlType::Text => "text",
            MssqlType::NText => "ntext",
            MssqlType::Binary(_) => "binary",
            MssqlType::VarBinary(_) => "varbinary",
            MssqlType::Image => "image",
            MssqlType::UniqueIdentifier => "uniqueidentifier",
            MssqlType::Xml => "xml",
            MssqlType::SqlVariant => "sql_variant",
            MssqlType::HierarchyId => "hierarchyid",
            MssqlType::Geography => "geography",
            MssqlType::Geometry => "geometry",
            MssqlType::RowVersion => "rowversion",
            MssqlType::Clr { type_name } => type_name,
        }
    }

    /// Whether `name` (as written in a config file) designates this type's
    /// base type. `numeric` and `decimal` are synonyms, as are `timestamp`
    /// and `rowversion`, and `sysname` names the `nvarchar` it is.
    pub fn matches_base_name(&self, name: &str) -> bool {
        let name = name.trim();
        match self {
            MssqlType::Decimal { .. } => name.eq_ignore_ascii_case("decimal") || name.eq_ignore_ascii_case("numeric"),
            MssqlType::RowVersion => name.eq_ignore_ascii_case("rowversion") || name.eq_ignore_ascii_case("timestamp"),
            other => other.base_name().eq_ignore_ascii_case(name),
        }
    }

    /// Every base name [`MssqlType::matches_base_name`] accepts for a system type.
    pub const BASE_NAMES: &'static [&'static str] = &[
        "bit",
        "tinyint",
        "smallint",
        "int",
        "bigint",
        "decimal",
        "numeric",
        "money",
        "smallmoney",
        "float",
        "real",
        "date",
        "time",
        "datetime",
        "datetime2",
        "smalldatetime",
        "datetimeoffset",
        "char",
        "varchar",
        "nchar",
        "nvarchar",
        "text",
        "ntext",
        "binary",
        "varbinary",
        "image",
        "uniqueidentifier",
        "xml",
        "sql_variant",
        "hierarchyid",
        "geography",
        "geometry",
        "rowversion",
        "timestamp",
    ];

    /// For integer-valued types, the inclusive range of values.
    pub(crate) fn integer_range(&self) -> Option<(i128, i128)> {
        match self {
            MssqlType::Bit => Some((0, 1)),
            MssqlType::TinyInt => Some((0, 255)),
            MssqlType::SmallInt => Some((i16::MIN.into(), i16::MAX.into())),
            MssqlType::Int => Some((i32::MIN.into(), i32::MAX.into())),
            MssqlType::BigInt => Some((i64::MIN.into(), i64::MAX.into())),
            _ => None,
        }
    }

    /// For exact numeric types, `(precision, scale)`; integers count their
    /// decimal digits so they compare with `numeric(p,s)`.
    pub(crate) fn decimal_shape(&self) -> Option<(u16, u16)> {
        match self {
            MssqlType::Bit => Some((1, 0)),
            MssqlType::TinyInt => Some((3, 0)),
            MssqlType::SmallInt => Some((5, 0)),
            MssqlType::Int => Some((10, 0)),
            MssqlType::BigInt => Some((19, 0)),
            MssqlType::Decimal { precision, scale } => Some(((*precision).into(), (*scale).into())),
            MssqlType::Money => Some((19, 4)),
            MssqlType::SmallMoney => Some((10, 4)),
            _ => None,
        }
    }
}

impl fmt::Display for MssqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MssqlType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            MssqlType::Time { scale } => write!(f, "time({scale})"),
            MssqlType::DateTime2 { scale } => write!(f, "datetime2({scale})"),
            MssqlType::DateTimeOffset { scale } => write!(f, "datetimeoffset({scale})"),
            MssqlType::Char(n)
            | MssqlType::VarChar(n)
            | MssqlType::NChar(n)
            | MssqlType::NVarChar(n)
            | MssqlType::Binary(n)
            | MssqlType::VarBinary(n) => write!(f, "{}({n})", self.base_name()),
            other => f.write_str(other.base_name()),
        }
    }
}
