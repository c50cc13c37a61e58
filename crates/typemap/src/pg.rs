//! PostgreSQL target column types: the finite set the transfer engine can encode.

use std::fmt;
use std::str::FromStr;

use crate::TypeError;

/// Largest `n` PostgreSQL accepts in `char(n)` / `varchar(n)`.
pub const MAX_CHAR_LENGTH: u32 = 10_485_760;
/// Largest precision PostgreSQL accepts in `numeric(p,s)`.
pub const MAX_NUMERIC_PRECISION: u16 = 1000;

/// A PostgreSQL column type the engine knows how to write in binary COPY.
///
/// `None` in a precision or length means the type was written without one
/// (`numeric`, `varchar`, `timestamp`), with PostgreSQL's meaning of that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    Boolean,
    SmallInt,
    Integer,
    BigInt,
    Numeric(Option<(u16, u16)>),
    Real,
    DoublePrecision,
    Char(u32),
    Varchar(Option<u32>),
    Text,
    Bytea,
    Date,
    Time(Option<u8>),
    Timestamp(Option<u8>),
    TimestampTz(Option<u8>),
    Uuid,
    Xml,
    /// A built-in PostgreSQL type the engine has no model of (json, jsonb,
    /// inet, interval, arrays...), from a PostgreSQL source to the same
    /// type: the binary COPY bytes pass through unchanged.
    Passthrough(BuiltinName),
}

/// The spelling `format_type` gives a type of schema `pg_catalog` (or an
/// array of one): words, digits, spaces, parentheses, commas and `[]`, so
/// it is safe to splice into DDL. Interned, so [`PgType`] stays `Copy`; a
/// catalog holds few distinct type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BuiltinName(&'static str);

impl BuiltinName {
    /// The name, or `None` for a spelling with other characters (a
    /// quoted or schema-qualified name is not a built-in type's).
    pub fn new(formatted: &str) -> Option<BuiltinName> {
        let plain = !formatted.is_empty()
            && formatted.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || " _(),[]".contains(c));
        if !plain {
            return None;
        }
        static NAMES: std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeSet<&'static str>>> =
            std::sync::OnceLock::new();
        let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        let name = match names.get(formatted) {
            Some(name) => name,
            None => {
                let leaked: &'static str = Box::leak(formatted.to_owned().into_boxed_str());
                names.insert(leaked);
                leaked
            }
        };
        Some(BuiltinName(name))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl PgType {
    /// Fractional-second digits kept by a time type (PostgreSQL's default is 6).
    pub(crate) fn fractional_digits(self) -> Option<u8> {
        match self {
            PgType::Time(p) | PgType::Timestamp(p) | PgType::TimestampTz(p) => Some(p.unwrap_or(6)),
            _ => None,
        }
    }

    /// Inclusive value range of an integer type.
    pub(crate) fn integer_range(self) -> Option<(i128, i128)> {
        match self {
            PgType::SmallInt => Some((i16::MIN.into(), i16::MAX.into())),
            PgType::Integer => Some((i32::MIN.into(), i32::MAX.into())),
            PgType::BigInt => Some((i64::MIN.into(), i64::MAX.into())),
            _ => None,
        }
    }

    /// Whether the type can carry `GENERATED ... AS IDENTITY`.
    pub fn supports_identity(self) -> bool {
        matches!(self, PgType::SmallInt | PgType::Integer | PgType::BigInt)
    }

    /// Whether values are character strings.
    pub fn is_textual(self) -> bool {
        matches!(self, PgType::Char(_) | PgType::Varchar(_) | PgType::Text)
    }
}

impl fmt::Display for PgType {
    /// Renders the type as it appears in DDL. The output is a fixed keyword
    /// plus numbers, so it is safe to splice into SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_digits = |f: &mut fmt::Formatter<'_>, name: &str, p: &Option<u8>| match p {
            Some(p) => write!(f, "{name}({p})"),
            None => f.write_str(name),
        };
        match self {
            PgType::Boolean => f.write_str("boolean"),
            PgType::SmallInt => f.write_str("smallint"),
            PgType::Integer => f.write_str("integer"),
            PgType::BigInt => f.write_str("bigint"),
            PgType::Numeric(None) => f.write_str("numeric"),
            PgType::Numeric(Some((p, s))) => write!(f, "numeric({p},{s})"),
            PgType::Real => f.write_str("real"),
            PgType::DoublePrecision => f.write_str("double precision"),
            PgType::Char(n) => write!(f, "char({n})"),
            PgType::Varchar(None) => f.write_str("varchar"),
            PgType::Varchar(Some(n)) => write!(f, "varchar({n})"),
            PgType::Text => f.write_str("text"),
            PgType::Bytea => f.write_str("bytea"),
            PgType::Date => f.write_str("date"),
            PgType::Time(p) => with_digits(f, "time", p),
            PgType::Timestamp(p) => with_digits(f, "timestamp", p),
            PgType::TimestampTz(p) => with_digits(f, "timestamptz", p),
            PgType::Uuid => f.write_str("uuid"),
            PgType::Xml => f.write_str("xml"),
            PgType::Passthrough(name) => f.write_str(name.as_str()),
        }
    }
}

impl FromStr for PgType {
    type Err = TypeError;

    /// Parses a type name as a user writes it in `type_overrides`: any
    /// spelling PostgreSQL accepts for the supported types, in any case.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let unsupported = |reason: String| TypeError::UnsupportedTarget { type_name: input.to_owned(), reason };
        let normalized = input.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
        let (head, params) = split_params(&normalized).map_err(&unsupported)?;
        // "timestamp(3) with time zone" puts the suffix after the parameters.
        let (head, tz_suffix) = match head.strip_suffix(" with time zone") {
            Some(h) => (h.to_owned(), Some(true)),
            None => match head.strip_suffix(" without time zone") {
                Some(h) => (h.to_owned(), Some(false)),
                None => (head, None),
            },
        };
        let no_params = |t: PgType| -> Result<PgType, TypeError> {
            if params.is_empty() { Ok(t) } else { Err(unsupported(format!("{t} takes no parameters"))) }
        };
        let one = |name: &str| -> Result<Option<u64>, TypeError> {
            match params.as_slice() {
                [] => Ok(None),
                [n] => Ok(Some(*n)),
                _ => Err(unsupported(format!("{name} takes one parameter"))),
            }
        };
        let digits = |name: &str| -> Result<Option<u8>, TypeError> {
            match one(name)? {
                None => Ok(None),
                Some(p) if p <= 6 => Ok(Some(p as u8)),
                Some(p) => Err(unsupported(format!("{name} precision {p} is above PostgreSQL's maximum of 6"))),
            }
        };
        let length = |name: &str| -> Result<Option<u32>, TypeError> {
            match one(name)? {
                None => Ok(None),
                Some(n) if (1..=u64::from(MAX_CHAR_LENGTH)).contains(&n) => Ok(Some(n as u32)),
                Some(n) => Err(unsupported(format!("{name} length {n} is not in 1..={MAX_CHAR_LENGTH}"))),
            }
        };
        let tz_ok = |t: PgType| -> Result<PgType, TypeError> {
            match tz_suffix {
                None => Ok(t),
                Some(_) => Err(unsupported(format!("{t} takes no time zone clause"))),
            }
        };
        let parsed = match head.as_str() {
            "boolean" | "bool" => no_params(PgType::Boolean)?,
            "smallint" | "int2" => no_params(PgType::SmallInt)?,
            "integer" | "int" | "int4" => no_params(PgType::Integer)?,
            "bigint" | "int8" => no_params(PgType::BigInt)?,
            "numeric" | "decimal" => match params.as_slice() {
                [] => PgType::Numeric(None),
                [p] | [p, _] => {
                    let s = params.get(1).copied().unwrap_or(0);
                    if *p == 0 || *p > u64::from(MAX_NUMERIC_PRECISION) || s > *p {
                        return Err(unsupported(format!(
                            "numeric({p},{s}) needs 1 <= precision <= {MAX_NUMERIC_PRECISION} and 0 <= scale <= precision"
                        )));
                    }
                    PgType::Numeric(Some((*p as u16, s as u16)))
                }
                _ => return Err(unsupported("numeric takes at most two parameters".into())),
            },
            "real" | "float4" => no_params(PgType::Real)?,
            "double precision" | "float8" | "float" => no_params(PgType::DoublePrecision)?,
            "char" | "character" | "bpchar" => PgType::Char(length("char")?.unwrap_or(1)),
            "varchar" | "character varying" => PgType::Varchar(length("varchar")?),
            "text" => no_params(PgType::Text)?,
            "bytea" => no_params(PgType::Bytea)?,
            "date" => no_params(PgType::Date)?,
            "time" => match tz_suffix {
                Some(true) => {
                    return Err(unsupported(
                        "time with time zone is not supported: its offset has no source value".into(),
                    ));
                }
                _ => PgType::Time(digits("time")?),
            },
            "timestamp" => match tz_suffix {
                Some(true) => PgType::TimestampTz(digits("timestamp")?),
                _ => PgType::Timestamp(digits("timestamp")?),
            },
            "timestamptz" => PgType::TimestampTz(digits("timestamptz")?),
            "uuid" => no_params(PgType::Uuid)?,
            "xml" => no_params(PgType::Xml)?,
            other => {
                return Err(unsupported(format!(
                    "'{other}' is not a target type this tool can write; supported: {}",
                    SUPPORTED_SPELLINGS
                )));
            }
        };
        if !matches!(head.as_str(), "time" | "timestamp") {
            return tz_ok(parsed);
        }
        Ok(parsed)
    }
}

/// The type names accepted by [`PgType::from_str`], for error messages.
pub const SUPPORTED_SPELLINGS: &str = "boolean, smallint, integer, bigint, numeric[(p[,s])], real, \
double precision, char(n), varchar[(n)], text, bytea, date, time[(p)], timestamp[(p)], \
timestamptz[(p)], uuid, xml";

/// Splits `name(a,b) suffix` into (`name suffix`, [a, b]).
fn split_params(s: &str) -> Result<(String, Vec<u64>), String> {
    let Some(open) = s.find('(') else {
        return Ok((s.to_owned(), Vec::new()));
    };
    let close = s[open..].find(')').map(|i| open + i).ok_or_else(|| "unbalanced parenthesis".to_owned())?;
    let params = s[open + 1..close]
        .split(',')
        .map(|p| {
            p.trim().parse::<u64>().map_err(|_| format!("parameter '{}' is not a non-negative whole number", p.trim()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let head = format!("{}{}", s[..open].trim_end(), &s[close + 1..]);
    if head.contains('(') || head.contains(')') {
        return Err("only one parameter list is allowed".into());
    }
    Ok((head.trim().to_owned(), params))
}
