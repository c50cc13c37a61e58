//! The SQL Server side of a checksummed comparison: how this server is
//! asked to hash a string's UTF-8 bytes ([`string_probes`]), and the T-SQL
//! of each value form, row and key hash ([`TsqlChecksum`]). The engine's
//! `deep::checksum` says why the forms are what they are.

use mssql_pg_migrate_dialect::checksum::{ChecksumSql, FieldForm, HashedColumn, KEY_HASH_MAX, MssqlStrings};
use mssql_pg_migrate_schema::ident::{literal_mssql, quote_mssql};

/// A string with characters from several Unicode planes and outside every
/// single-byte code page.
pub const PROBE_TEXT: &str = "é€中😀";

/// The UTF-8 collation [`MssqlStrings::Utf8Collation`] converts through.
pub const UTF8_COLLATION: &str = "Latin1_General_100_BIN2_UTF8";

/// For each way of hashing strings: a query that returns 1 when the server
/// knows what the way needs (asked first, so a server without it is not
/// sent SQL it cannot compile, an error its log would show), and a query
/// that returns 1 when the server's hash of [`PROBE_TEXT`] that way is the
/// hash of its UTF-8 bytes.
pub fn string_probes() -> [(MssqlStrings, String, String); 2] {
    let literal = literal_mssql(PROBE_TEXT);
    let utf8_bytes: String = PROBE_TEXT.bytes().map(|b| format!("{b:02X}")).collect();
    let probe = |way: MssqlStrings| {
        format!("SELECT CASE WHEN {} = HASHBYTES('MD5', 0x{utf8_bytes}) THEN 1 ELSE 0 END", string_hash(way, &literal))
    };
    let has_collation =
        format!("SELECT CASE WHEN COLLATIONPROPERTY('{UTF8_COLLATION}', 'CodePage') = 65001 THEN 1 ELSE 0 END");
    [
        (MssqlStrings::Utf8Collation, has_collation, probe(MssqlStrings::Utf8Collation)),
        (MssqlStrings::NvarcharBytes, "SELECT 1".to_owned(), probe(MssqlStrings::NvarcharBytes)),
    ]
}

/// The `HASHBYTES` of the UTF-8 bytes of `nvarchar` (an expression), the
/// `way` the server can.
pub fn string_hash(way: MssqlStrings, nvarchar: &str) -> String {
    match way {
        MssqlStrings::Utf8Collation => {
            format!("HASHBYTES('MD5', CONVERT(varchar(max), {nvarchar} COLLATE {UTF8_COLLATION}))")
        }
        MssqlStrings::NvarcharBytes => format!("HASHBYTES('MD5', {nvarchar})"),
    }
}

/// The first 8 bytes of a `HASHBYTES` result as text, NULL for NULL.
fn hash_text(hash: &str) -> String {
    format!("CONVERT(varchar(20), CAST(SUBSTRING({hash}, 1, 8) AS bigint))")
}

/// The row text's field for one column on SQL Server; `None` for a form
/// the server cannot render.
fn field(column: &HashedColumn<'_>, strings: Option<MssqlStrings>) -> Option<String> {
    use FieldForm as F;
    let c = quote_mssql(column.name);
    Some(match column.form {
        F::Integer => format!("CONVERT(varchar(20), {c})"),
        F::Boolean => format!("CONVERT(varchar(1), {c})"),
        F::Decimal { scale } => format!("CONVERT(varchar(60), CAST({c} AS decimal(38,{scale})))"),
        F::Float8 => format!("CONVERT(varchar(20), CAST(CAST({c} AS binary(8)) AS bigint))"),
        F::Float4 => format!("CONVERT(varchar(11), CAST(CAST({c} AS binary(4)) AS int))"),
        F::Date => format!("CONVERT(varchar(10), DATEDIFF(day, CAST('0001-01-01' AS date), {c}))"),
        F::Time => format!(
            "CONVERT(varchar(20), DATEDIFF_BIG(microsecond, CAST('00:00:00' AS time(7)), CAST({c} AS time(7))))"
        ),
        F::Timestamp => format!(
            "CONVERT(varchar(20), DATEDIFF_BIG(microsecond, CAST('0001-01-01' AS datetime2(7)), CAST({c} AS datetime2(7))))"
        ),
        F::DateTimeMillis => format!(
            "CONVERT(varchar(20), DATEDIFF_BIG(microsecond, CAST('0001-01-01' AS datetime2(7)), CAST({c} AS datetime2(3))))"
        ),
        F::TimestampUtc => format!(
            "CONVERT(varchar(20), DATEDIFF_BIG(microsecond, CAST('0001-01-01' AS datetime2(7)), \
             CAST(SWITCHOFFSET({c}, '+00:00') AS datetime2(7))))"
        ),
        F::Uuid => format!("CONVERT(varchar(36), {c})"),
        F::Text { padded } => {
            let text = if padded {
                format!("RTRIM(CONVERT(nvarchar(max), {c}))")
            } else {
                format!("CONVERT(nvarchar(max), {c})")
            };
            hash_text(&string_hash(strings?, &text))
        }
        F::Bytes => hash_text(&format!("HASHBYTES('MD5', CAST({c} AS varbinary(max)))")),
        F::Native(_) => return None,
    })
}

/// The row text of `columns` on SQL Server (an ASCII `varchar(max)`);
/// `None` when a column's form cannot be rendered there.
fn row_text(columns: &[HashedColumn<'_>], strings: Option<MssqlStrings>) -> Option<String> {
    // varchar(max) from the start: a longer varchar sum would be cut at 8000 bytes.
    let mut text = String::from("CAST('' AS varchar(max))");
    for (i, column) in columns.iter().enumerate() {
        let sep = if i == 0 { "" } else { " + '|'" };
        text.push_str(&format!("{sep} + ISNULL({}, 'N')", field(column, strings)?));
    }
    Some(text)
}

/// The T-SQL of a checksum query's pieces on a server that hashes strings
/// the `strings` way (`None`: it hashes no text).
#[derive(Debug, Clone, Copy)]
pub struct TsqlChecksum {
    pub strings: Option<MssqlStrings>,
}

impl ChecksumSql for TsqlChecksum {
    fn row_hash(&self, columns: &[HashedColumn<'_>]) -> Option<String> {
        let text = row_text(columns, self.strings)?;
        Some(format!("CAST(SUBSTRING(HASHBYTES('MD5', {text}), 1, 8) AS bigint)"))
    }

    fn key_hash(&self, key: &[HashedColumn<'_>]) -> Option<String> {
        let text = row_text(key, self.strings)?;
        Some(format!("CAST(CAST(SUBSTRING(HASHBYTES('MD5', {text}), 1, 4) AS int) & {KEY_HASH_MAX} AS bigint)"))
    }

    fn quote(&self, name: &str) -> String {
        quote_mssql(name)
    }

    fn int8(&self, expr: &str) -> String {
        format!("CAST({expr} AS bigint)")
    }

    fn parameters(&self) -> [&'static str; 3] {
        ["@P1", "@P2", "@P3"]
    }

    fn whole_table(&self, table: &str, hash: &str) -> String {
        format!(
            "SELECT CAST(0 AS bigint), COUNT_BIG(*), CONVERT(varchar(50), SUM(CAST({hash} AS decimal(38,0)))) \
             FROM {table}"
        )
    }

    fn grouped(&self, table: &str, bucket: &str, hash: &str, filter: &str) -> String {
        format!(
            "SELECT mpm_b, COUNT_BIG(*), CONVERT(varchar(50), SUM(CAST(mpm_h AS decimal(38,0)))) \
             FROM (SELECT {bucket} AS mpm_b, {hash} AS mpm_h FROM {table}{filter}) s GROUP BY mpm_b"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probes_compare_with_the_utf8_bytes_of_the_probe_text() {
        let probes = string_probes();
        assert!(probes.iter().all(|(_, _, sql)| sql.contains("0xC3A9E282ACE4B8ADF09F9880")));
        assert!(probes[0].1.contains("COLLATIONPROPERTY") && probes[0].2.contains("_UTF8"));
    }
}
