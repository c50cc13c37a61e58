//! Value-by-value comparison of tables between two databases, and the
//! edge-case fixture both the library's and the binary's tests load.

use std::path::PathBuf;

/// The tables of `tests/fixtures/pg/edge_cases.sql` (schema `src`).
pub const EDGE_CASE_TABLES: &[&str] = &[
    "Every Type",
    "Order \"Lines\"",
    "user",
    "skewed",
    "composite",
    "by_uuid",
    "by_text",
    "no_key",
    "empty_table",
    "one_row",
    "ca",
    "cb",
    "employees",
];

/// The SQL of the PostgreSQL edge-case fixture.
pub fn edge_case_fixture() -> std::io::Result<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pg/edge_cases.sql");
    std::fs::read_to_string(path)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Every row of a table as its text form, sorted.
///
/// # Errors
/// The server's error.
pub async fn table_rows(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let sql = format!("SELECT whole_row::text FROM {}.{} whole_row ORDER BY 1", quote(schema), quote(table));
    Ok(client.query(&sql, &[]).await?.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// Compares `tables` row by row; returns the first difference, described.
///
/// # Errors
/// A description of the first table that differs (count, or the first row).
pub async fn compare_tables(
    source: &tokio_postgres::Client,
    source_schema: &str,
    target: &tokio_postgres::Client,
    target_schema: &str,
    tables: &[&str],
) -> Result<(), String> {
    for table in tables {
        let want = table_rows(source, source_schema, table).await.map_err(|e| format!("source {table}: {e}"))?;
        let got = table_rows(target, target_schema, table).await.map_err(|e| format!("target {table}: {e}"))?;
        if got.len() != want.len() {
            return Err(format!("{table}: {} rows in the target, {} in the source", got.len(), want.len()));
        }
        if let Some((i, (g, w))) = got.iter().zip(&want).enumerate().find(|(_, (g, w))| g != w) {
            return Err(format!("{table} row {i} differs:\n  source: {}\n  target: {}", excerpt(w, g), excerpt(g, w)));
        }
    }
    Ok(())
}

/// `text` from a little before where it first differs from `other`, so a
/// difference deep in a wide row is visible; at most 200 characters.
fn excerpt(text: &str, other: &str) -> String {
    let common = text.chars().zip(other.chars()).take_while(|(a, b)| a == b).count();
    let start = common.saturating_sub(40);
    let shown: String = text.chars().skip(start).take(200).collect();
    if start == 0 { shown } else { format!("…{shown}") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn excerpts_start_near_the_first_difference() {
        let a = format!("{}X tail", "a".repeat(300));
        let b = format!("{}Y tail", "a".repeat(300));
        let shown = super::excerpt(&a, &b);
        assert!(shown.starts_with('…') && shown.contains("X tail"), "{shown}");
        assert_eq!(super::excerpt("short", "shorT"), "short");
    }
}
