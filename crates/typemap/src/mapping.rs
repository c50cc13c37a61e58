//! The conversion table: which PostgreSQL types each SQL Server type can land
//! in, and at what fidelity. Defaults and overrides both go through
//! [`conversion`], so there is one truth for every pairing.

use crate::mssql::{Length, MssqlType};
use crate::pg::PgType;
use crate::{Fidelity, TypeError};

/// The target type used when no override applies. Follows the data engineer's
/// guide's type table; types the table omits get the most faithful text or
/// bytea form.
pub fn default_target(source: &MssqlType) -> PgType {
    match source {
        MssqlType::Bit => PgType::Boolean,
        MssqlType::TinyInt | MssqlType::SmallInt => PgType::SmallInt,
        MssqlType::Int => PgType::Integer,
        MssqlType::BigInt => PgType::BigInt,
        MssqlType::Decimal { precision, scale } => PgType::Numeric(Some(((*precision).into(), (*scale).into()))),
        MssqlType::Money => PgType::Numeric(Some((19, 4))),
        MssqlType::SmallMoney => PgType::Numeric(Some((10, 4))),
        MssqlType::Float => PgType::DoublePrecision,
        MssqlType::Real => PgType::Real,
        MssqlType::Date => PgType::Date,
        MssqlType::Time { .. } => PgType::Time(None),
        MssqlType::DateTime | MssqlType::DateTime2 { .. } | MssqlType::SmallDateTime => PgType::Timestamp(None),
        MssqlType::DateTimeOffset { .. } => PgType::TimestampTz(None),
        MssqlType::Char(Length::Bounded(n)) | MssqlType::NChar(Length::Bounded(n)) => PgType::Char((*n).into()),
        MssqlType::VarChar(Length::Bounded(n)) | MssqlType::NVarChar(Length::Bounded(n)) => {
            PgType::Varchar(Some((*n).into()))
        }
        MssqlType::Char(Length::Max)
        | MssqlType::NChar(Length::Max)
        | MssqlType::VarChar(Length::Max)
        | MssqlType::NVarChar(Length::Max)
        | MssqlType::Text
        | MssqlType::NText
        | MssqlType::Xml
        | MssqlType::SqlVariant
        | MssqlType::HierarchyId
        | MssqlType::Geography
        | MssqlType::Geometry => PgType::Text,
        MssqlType::UniqueIdentifier => PgType::Uuid,
        MssqlType::Binary(_)
        | MssqlType::VarBinary(_)
        | MssqlType::Image
        | MssqlType::RowVersion
        | MssqlType::Clr { .. } => PgType::Bytea,
    }
}

/// How faithfully values of `source` land in a column of `target`, or why the
/// pairing is refused (values could fail to load, or the engine has no
/// conversion for it).
pub fn conversion(source: &MssqlType, target: PgType) -> Result<Fidelity, TypeError> {
    use Fidelity::{Exact, Lossy, Widened};
    let refuse = |reason: String| TypeError::IncompatibleTarget {
        source_type: source.to_string(),
        target_type: target.to_string(),
        reason,
    };
    let fidelity = match (source, target) {
        // --- integers and booleans -------------------------------------------------
        (MssqlType::Bit, PgType::Boolean) => Exact,
        (_, PgType::Boolean) => return Err(refuse("only bit converts to boolean".into())),
        (s, t) if t.integer_range().is_some() => {
            let (tmin, tmax) = t.integer_range().unwrap_or_default();
            let range = match (s.integer_range(), s.decimal_shape()) {
                (Some(r), _) => r,
                (None, Some((p, 0))) => {
                    let max = 10i128.pow(u32::from(p)) - 1;
                    (-max, max)
                }
                (None, Some(_)) => {
                    return Err(refuse("fractional digits would be cut off".into()));
                }
                (None, None) => {
                    if *s == MssqlType::RowVersion && t == PgType::BigInt {
                        return Ok(Widened("the 8 rowversion bytes are read as one big-endian signed integer".into()));
                    }
                    return Err(refuse("the source is not an integer type".into()));
                }
            };
            if range.0 < tmin || range.1 > tmax {
                return Err(refuse(format!("values of {s} may not fit in {t}")));
            }
            if range == (tmin, tmax) {
                Exact
            } else if *s == MssqlType::Bit {
                Widened("0/1 stored as an integer".into())
            } else {
                Widened(format!("{t} accepts a wider range than {s}"))
            }
        }
        (s, PgType::Numeric(shape)) if s.decimal_shape().is_some() => {
            let (p, sc) = s.decimal_shape().unwrap_or_default();
            match shape {
                None => Widened("numeric without a declared precision accepts any value".into()),
                Some((tp, ts)) if tp - ts < p - sc => {
                    return Err(refuse(format!("{target} keeps {} integer digits, {s} needs {}", tp - ts, p - sc)));
                }
                Some((tp, ts)) if ts < sc => {
                    Lossy(format!("values are rounded from {sc} to {ts} decimal places (numeric({tp},{ts}))"))
                }
                Some(shape) if shape == (p, sc) => Exact,
                Some(_) => Widened(format!("{target} accepts more digits than {s}")),
            }
        }
        (MssqlType::Float, PgType::DoublePrecision) | (MssqlType::Real, PgType::Real) => Exact,
        (MssqlType::Real, PgType::DoublePrecision) => {
            Widened("every real value is exactly representable as double precision".into())
        }
        (MssqlType::Float, PgType::Real) => Lossy("double precision values are rounded to single precision".into()),
        (s, PgType::Real | PgType::DoublePrecision) if s.decimal_shape().is_some() => {
            Lossy("binary floating point cannot represent every decimal value; values are rounded".into())
        }
        (MssqlType::Float | MssqlType::Real, PgType::Numeric(None)) => {
            Lossy("each value is stored as its shortest decimal form; -0 becomes 0".into())
        }
        // --- dates and times ---------------------------------------------------------
        (MssqlType::Date, PgType::Date) => Exact,
        (MssqlType::Date, PgType::Timestamp(_)) => Widened("dates are stored at midnight".into()),
        (MssqlType::Time { scale }, PgType::Time(_)) => fractional(*scale, target, "time"),
        (MssqlType::DateTime2 { scale }, PgType::Timestamp(_)) => fractional(*scale, target, "datetime2"),
        (MssqlType::DateTime, PgType::Timestamp(_)) => {
            if target.fractional_digits().unwrap_or(6) >= 3 {
                Widened(
                    "datetime's 1/300-second ticks are stored as the milliseconds SQL Server \
                     displays (.000, .003, .007)"
                        .into(),
                )
            } else {
                Lossy(format!(
                    "datetime milliseconds are truncated to {} fractional digits",
                    target.fractional_digits().unwrap_or(0)
                ))
            }
        }
        (MssqlType::SmallDateTime, PgType::Timestamp(_)) => {
            Widened("smalldatetime has minute precision; timestamp accepts more".into())
        }
        (MssqlType::DateTimeOffset { scale }, PgType::TimestampTz(_)) => {
            let offset = Lossy("the UTC offset of each value is not kept: the instant is exact, stored in UTC".into());
            offset.and(fractional(*scale, target, "datetimeoffset"))
        }
        (MssqlType::DateTimeOffset { scale }, PgType::Timestamp(_)) => Lossy(
            "values are stored as their UTC wall-clock time; the offset is not kept".into(),
        )
        .and(fractional(*scale, target, "datetimeoffset")),
        (MssqlType::DateTime | MssqlType::DateTime2 { .. } | MssqlType::SmallDateTime, PgType::TimestampTz(_)) => {
            let scale = match source {
                MssqlType::DateTime2 { scale } => *scale,
                MssqlType::DateTime => 3,
                _ => 0,
            };
            Lossy("the source has no time zone; values are taken to be UTC".into()).and(fractional(
                scale,
                target,
                source.base_name(),
            ))
        }
        // --- strings -----------------------------------------------------------------
        (s, t) if is_string(s) && t.is_textual() => string_conversion(s, t).map_err(refuse)?,
        (MssqlType::Xml, PgType::Xml) => Exact,
        (MssqlType::Xml, PgType::Text) => {
            Widened("the XML as SQL Server serialises it; text does not check well-formedness".into())
        }
        // --- binary ------------------------------------------------------------------
        (MssqlType::VarBinary(Length::Max) | MssqlType::Image, PgType::Bytea) => Exact,
        (MssqlType::Binary(_) | MssqlType::VarBinary(_), PgType::Bytea) => {
            Widened("bytea does not enforce the declared length".into())
        }
        (MssqlType::RowVersion, PgType::Bytea) => Widened("the 8-byte value; bytea does not enforce the length".into()),
        (MssqlType::Clr { .. }, PgType::Bytea) => {
            Widened("the type's raw CLR serialisation; its methods are not available in PostgreSQL".into())
        }
        // --- special types -----------------------------------------------------------
        (MssqlType::UniqueIdentifier, PgType::Uuid) => Exact,
        (MssqlType::UniqueIdentifier, PgType::Text) => {
            Widened("stored in the canonical lowercase 8-4-4-4-12 form".into())
        }
        (MssqlType::SqlVariant, PgType::Text) => {
            Lossy("each value is stored as its string form; its base type is not kept".into())
        }
        (MssqlType::HierarchyId, PgType::Text) => {
            Widened("stored as its path string (/1/3/); ordering is by text, not by hierarchy".into())
        }
        (MssqlType::HierarchyId, PgType::Bytea) => {
            Widened("SQL Server's binary form, whose byte order is hierarchy order".into())
        }
        (MssqlType::Geography | MssqlType::Geometry, PgType::Text) => {
            Lossy("stored as WKT (with Z and M); the SRID of each value is not kept".into())
        }
        (MssqlType::Geography | MssqlType::Geometry, PgType::Bytea) => {
            Widened("SQL Server's native serialisation, SRID included; not usable by PostGIS as is".into())
        }
        // --- anything readable as text --------------------------------------------------
        (s, PgType::Text | PgType::Varchar(None)) if has_text_form(s) => {
            Widened(format!("stored as the text form of {s}"))
        }
        _ => return Err(refuse("the engine has no conversion for this pair".into())),
    };
    Ok(fidelity)
}

/// Fidelity of fractional seconds: `scale` source digits into the target's digits.
fn fractional(scale: u8, target: PgType, source_name: &str) -> Fidelity {
    let kept = target.fractional_digits().unwrap_or(6);
    if scale > kept {
        let lost = match scale {
            7 if kept == 6 => "the 100-nanosecond digit is".to_owned(),
            _ => format!("{} fractional-second digits are", scale - kept),
        };
        Fidelity::Lossy(format!("{lost} truncated: {source_name}({scale}) keeps {scale} digits, {target} keeps {kept}"))
    } else if scale < kept {
        Fidelity::Widened(format!("{target} keeps more fractional digits than {source_name}({scale})"))
    } else {
        Fidelity::Exact
    }
}

fn is_string(t: &MssqlType) -> bool {
    matches!(
        t,
        MssqlType::Char(_)
            | MssqlType::VarChar(_)
            | MssqlType::NChar(_)
            | MssqlType::NVarChar(_)
            | MssqlType::Text
            | MssqlType::NText
    )
}

/// Types whose values have a canonical string form the engine can produce.
fn has_text_form(t: &MssqlType) -> bool {
    !matches!(
        t,
        MssqlType::Binary(_)
            | MssqlType::VarBinary(_)
            | MssqlType::Image
            | MssqlType::RowVersion
            | MssqlType::Clr { .. }
    )
}

/// Character-string sources into `char`, `varchar` or `text`.
///
/// SQL Server bounds `char`/`varchar` in bytes and `nchar`/`nvarchar` in UTF-16
/// units; either bound is at least the number of characters, and PostgreSQL
/// counts characters, so a target bound `>= n` always holds the value.
fn string_conversion(source: &MssqlType, target: PgType) -> Result<Fidelity, String> {
    let (source_bound, padded) = match source {
        MssqlType::Char(l) | MssqlType::NChar(l) => (*l, true),
        MssqlType::VarChar(l) | MssqlType::NVarChar(l) => (*l, false),
        _ => (Length::Max, false),
    };
    let fits = |n: u32| match source_bound {
        Length::Bounded(b) => Ok(u32::from(b) <= n),
        Length::Max => Err(format!("{source} values can be longer than {n} characters and would fail to load")),
    };
    match target {
        PgType::Text | PgType::Varchar(None) => Ok(match source_bound {
            Length::Max => Fidelity::Exact,
            Length::Bounded(_) => {
                Fidelity::Widened(format!("{target} does not enforce the declared length of {source}"))
            }
        }),
        PgType::Varchar(Some(n)) => {
            if !fits(n)? {
                return Err(format!("{source} values can be longer than varchar({n})"));
            }
            Ok(if source_bound == Length::Bounded(n as u16) && !padded {
                Fidelity::Exact
            } else {
                Fidelity::Widened(format!("{target} accepts longer values than {source}"))
            })
        }
        PgType::Char(n) => {
            if !fits(n)? {
                return Err(format!("{source} values can be longer than char({n})"));
            }
            if !padded {
                Ok(Fidelity::Lossy("char(n) pads values with spaces and ignores trailing spaces in comparisons".into()))
            } else if source_bound == Length::Bounded(n as u16) {
                Ok(Fidelity::Exact)
            } else {
                Ok(Fidelity::Widened(format!("{target} is wider than {source}")))
            }
        }
        _ => Err("not a string type".into()),
    }
}
