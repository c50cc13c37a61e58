//! The SQL Server side of a checksummed comparison: how this server is
//! asked to hash a string's UTF-8 bytes. The engine's `deep::checksum`
//! writes the rest of the query.

use mssql_pg_migrate_dialect::checksum::MssqlStrings;
use mssql_pg_migrate_schema::ident::literal_mssql;

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
