//! Identifier quoting for each dialect, and the target's spelling of names.

use mssql_pg_migrate_config::IdentifierCase;

/// Wraps `value` in `open` … `close`, doubling every `close` inside: the one
/// escaping rule both dialects use for identifiers and string literals.
fn wrap_doubling(open: &str, close: char, value: &str) -> String {
    let mut out = String::with_capacity(value.len() + open.len() + 1);
    out.push_str(open);
    for c in value.chars() {
        if c == close {
            out.push(close);
        }
        out.push(c);
    }
    out.push(close);
    out
}

/// Quotes a PostgreSQL identifier: wrapped in `"`, inner `"` doubled. The
/// result is always quoted, so case, spaces, reserved words and non-ASCII
/// letters all survive exactly.
pub fn quote_pg(name: &str) -> String {
    wrap_doubling("\"", '"', name)
}

/// `"schema"."name"` for PostgreSQL.
pub fn qualified_pg(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_pg(schema), quote_pg(name))
}

/// Quotes a SQL Server identifier: wrapped in `[` `]`, inner `]` doubled.
pub fn quote_mssql(name: &str) -> String {
    wrap_doubling("[", ']', name)
}

/// `[schema].[name]` for SQL Server.
pub fn qualified_mssql(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_mssql(schema), quote_mssql(name))
}

/// A PostgreSQL string literal. Assumes `standard_conforming_strings = on`
/// (the default since PostgreSQL 9.1, and set by the engine on its own
/// sessions), where only `'` needs escaping.
pub fn literal_pg(value: &str) -> String {
    wrap_doubling("'", '\'', value)
}

/// A SQL Server Unicode string literal (`N'...'`).
pub fn literal_mssql(value: &str) -> String {
    wrap_doubling("N'", '\'', value)
}

/// How a source name is spelled in the target under `identifier_case`.
///
/// `snake` splits words at case changes and at anything that is not a
/// letter or digit: `OrderLines` → `order_lines`, `HTTPServer` →
/// `http_server`, `userID` → `user_id`, `Order Lines` → `order_lines`.
pub fn target_name(name: &str, case: IdentifierCase) -> String {
    match case {
        IdentifierCase::Preserve => name.to_owned(),
        IdentifierCase::Lower => name.to_lowercase(),
        IdentifierCase::Snake => snake_case(name),
    }
}

fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            continue;
        }
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary = prev.is_lowercase() || prev.is_numeric() || (prev.is_uppercase() && next_is_lower);
            if boundary && !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
        }
        out.extend(c.to_lowercase());
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() { name.to_lowercase() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_every_awkward_name() {
        let cases = [
            ("Orders", "\"Orders\"", "[Orders]"),
            ("order lines", "\"order lines\"", "[order lines]"),
            ("select", "\"select\"", "[select]"),
            ("say \"hi\"", "\"say \"\"hi\"\"\"", "[say \"hi\"]"),
            ("[x]", "\"[x]\"", "[[x]]]"),
            ("Größe", "\"Größe\"", "[Größe]"),
            ("", "\"\"", "[]"),
        ];
        for (name, pg, ms) in cases {
            assert_eq!(quote_pg(name), pg);
            assert_eq!(quote_mssql(name), ms);
        }
        assert_eq!(qualified_pg("dbo", "a\"b"), "\"dbo\".\"a\"\"b\"");
        assert_eq!(qualified_mssql("dbo", "a]b"), "[dbo].[a]]b]");
        assert_eq!(literal_pg("it's"), "'it''s'");
        assert_eq!(literal_pg("back\\slash"), "'back\\slash'");
        assert_eq!(literal_mssql("it's"), "N'it''s'");
    }

    #[test]
    fn identifier_case_rules() {
        let cases = [
            ("OrderLines", "order_lines"),
            ("HTTPServer", "http_server"),
            ("userID", "user_id"),
            ("Order Lines", "order_lines"),
            ("already_snake", "already_snake"),
            ("Address2Line", "address2_line"),
            ("ÄrgerÜber", "ärger_über"),
            ("__weird__", "weird"),
            ("X", "x"),
            ("!!", "!!"),
        ];
        for (name, want) in cases {
            assert_eq!(target_name(name, IdentifierCase::Snake), want, "{name}");
        }
        assert_eq!(target_name("OrderLines", IdentifierCase::Lower), "orderlines");
        assert_eq!(target_name("OrderLines", IdentifierCase::Preserve), "OrderLines");
    }
}
