//! `${VAR}` and `${VAR:-default}` in configuration strings.

/// Expands variables in `text`. `$$` is a literal `$`; a `$` not followed by
/// `{` or `$` is kept as it is, so most passwords need no escaping.
///
/// # Errors
/// A message naming the variable that is unset (and has no default), or
/// describing the malformed reference.
pub(crate) fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated '${': add the closing '}' (or write $$ for a literal $)".to_owned())?;
            let reference = &body[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (reference, None),
            };
            if !is_variable_name(name) {
                // The text is not echoed: it may be part of a password.
                return Err("invalid variable reference: write ${NAME} or ${NAME:-default} with NAME made of \
                     letters, digits and _ (or $$ for a literal $)"
                    .to_owned());
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!("environment variable {name} is not set (or write ${{{name}:-default}})"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn references_defaults_and_escapes() {
        assert_eq!(expand("${HOST}:5432", &env).unwrap(), "db1:5432");
        assert_eq!(expand("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("${HOST:-fallback}", &env).unwrap(), "db1");
        assert_eq!(expand("${EMPTY:-x}", &env).unwrap(), "");
        assert_eq!(expand("${NOPE:-}", &env).unwrap(), "");
        assert_eq!(expand("pa$$word", &env).unwrap(), "pa$word");
        assert_eq!(expand("pa$word$", &env).unwrap(), "pa$word$");
        assert_eq!(expand("$${HOST}", &env).unwrap(), "${HOST}");
        assert_eq!(expand("a${HOST}b${HOST}c", &env).unwrap(), "adb1bdb1c");
    }

    #[test]
    fn errors_name_the_variable() {
        let e = expand("${MSSQL_PASSWORD}", &env).unwrap_err();
        assert!(e.contains("MSSQL_PASSWORD is not set"), "{e}");
        let e = expand("${HOST", &env).unwrap_err();
        assert!(e.contains("unterminated"), "{e}");
        let e = expand("${1BAD}", &env).unwrap_err();
        assert!(e.contains("invalid variable reference"), "{e}");
    }
}
