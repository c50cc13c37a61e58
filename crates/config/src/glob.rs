//! Table-name patterns for `include_tables` / `exclude_tables`.

use std::fmt;

use serde::{Serialize, Serializer};

/// A glob over table names: `*` matches any run of characters, `?` any one
/// character, everything else itself. Matching ignores ASCII case, as SQL
/// Server's default collations do for identifiers.
///
/// A pattern with a dot (`sales.order*`) is matched against `schema.table`;
/// one without is matched against the table name alone.
#[derive(Clone, PartialEq, Eq)]
pub struct TablePattern {
    text: String,
}

impl TablePattern {
    /// # Errors
    /// A message when the pattern is empty or only white space.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("a table pattern cannot be empty".into());
        }
        Ok(TablePattern { text: text.to_owned() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern selects `schema.table`.
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        if self.text.contains('.') {
            let qualified: Vec<char> = schema.chars().chain(['.']).chain(table.chars()).collect();
            glob_match(&self.text.chars().collect::<Vec<_>>(), &qualified)
        } else {
            glob_match(&self.text.chars().collect::<Vec<_>>(), &table.chars().collect::<Vec<_>>())
        }
    }
}

/// Iterative wildcard matching with single-star backtracking: linear in
/// practice and never exponential.
fn glob_match(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                resume = Some((p, n));
                p += 1;
            }
            Some(c) if *c == '?' || c.eq_ignore_ascii_case(&name[n]) || *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match resume {
                Some((star, matched)) => {
                    p = star + 1;
                    n = matched + 1;
                    resume = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

impl fmt::Debug for TablePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl Serialize for TablePattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::TablePattern;

    #[test]
    fn wildcards_and_case() {
        let p = |s: &str| TablePattern::new(s).unwrap();
        assert!(p("sales_*").matches("dbo", "Sales_2024"));
        assert!(!p("sales_*").matches("dbo", "sale_2024"));
        assert!(p("*_archive").matches("dbo", "orders_archive"));
        assert!(!p("*_archive").matches("dbo", "orders_archive2"));
        assert!(p("t?mp").matches("dbo", "temp"));
        assert!(p("*").matches("dbo", ""));
        assert!(p("a*b*c").matches("dbo", "aXXbYYbZc"));
        assert!(!p("a*b*c").matches("dbo", "aXXbYY"));
        assert!(p("hr.*").matches("hr", "People"));
        assert!(!p("hr.*").matches("dbo", "People"));
        assert!(p("Ünïcödé").matches("dbo", "Ünïcödé"));
        assert!(TablePattern::new("  ").is_err());
    }
}
