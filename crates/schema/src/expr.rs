//! Translation of SQL Server expressions (defaults, checks, computed columns,
//! index filters) into PostgreSQL.
//!
//! The translator tokenizes the source text and rebuilds the expression
//! from tokens, so every identifier goes through [`quote_pg`] and every
//! string through [`literal_pg`]; nothing from the source is spliced into
//! the target's SQL as raw text. What it does not understand it refuses,
//! with the reason: an untranslated default is reported and left out,
//! which is safer than a default that means something else.

use mssql_pg_migrate_config::IdentifierCase;
use mssql_pg_migrate_typemap::{MssqlType, PgType, default_target};

use crate::ident::{literal_pg, quote_pg, target_name};

/// Where the translated expression will be used: generated columns must be
/// immutable in PostgreSQL, so time and random functions are refused there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExprUse {
    Default,
    Check,
    Generated,
    IndexFilter,
    /// A key column of an index that is an expression (PostgreSQL sources).
    IndexExpression,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Word(String),
    Str(String),
    Number(String),
    Binary(String),
    Punct(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let delimited = |i: &mut usize, close: char| -> Result<String, String> {
        let mut s = String::new();
        *i += 1;
        loop {
            match chars.get(*i) {
                None => return Err(format!("unterminated {close}-delimited token")),
                Some(&c) if c == close => {
                    if chars.get(*i + 1) == Some(&close) {
                        s.push(close);
                        *i += 2;
                    } else {
                        *i += 1;
                        return Ok(s);
                    }
                }
                Some(&c) => {
                    s.push(c);
                    *i += 1;
                }
            }
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '[' {
            out.push(Token::Ident(delimited(&mut i, ']')?));
        } else if c == '"' {
            out.push(Token::Ident(delimited(&mut i, '"')?));
        } else if c == '\'' {
            out.push(Token::Str(delimited(&mut i, '\'')?));
        } else if (c == 'N' || c == 'n') && chars.get(i + 1) == Some(&'\'') {
            i += 1;
            out.push(Token::Str(delimited(&mut i, '\'')?));
        } else if c == '0' && matches!(chars.get(i + 1), Some('x' | 'X')) {
            let start = i + 2;
            i = start;
            while i < chars.len() && chars[i].is_ascii_hexdigit() {
                i += 1;
            }
            out.push(Token::Binary(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && matches!(chars[i], 'e' | 'E') {
                i += 1;
                if i < chars.len() && matches!(chars[i], '+' | '-') {
                    i += 1;
                }
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Token::Number(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' || c == '@' || c == '#' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '@' | '#' | '$')) {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let (punct, len) = match two.as_str() {
                "<>" | "!=" => ("<>", 2),
                "<=" | "!>" => ("<=", 2),
                ">=" | "!<" => (">=", 2),
                _ => match c {
                    '(' => ("(", 1),
                    ')' => (")", 1),
                    ',' => (",", 1),
                    '+' => ("+", 1),
                    '-' => ("-", 1),
                    '*' => ("*", 1),
                    '/' => ("/", 1),
                    '%' => ("%", 1),
                    '=' => ("=", 1),
                    '<' => ("<", 1),
                    '>' => (">", 1),
                    other => return Err(format!("the character '{other}' is not supported")),
                },
            };
            out.push(Token::Punct(punct));
            i += len;
        }
    }
    Ok(out)
}

const KEYWORDS: &[&str] =
    &["AND", "OR", "NOT", "IS", "NULL", "IN", "LIKE", "BETWEEN", "CASE", "WHEN", "THEN", "ELSE", "END"];

/// Functions that mean the same in both dialects and are immutable.
const SAME_IMMUTABLE: &[&str] =
    &["upper", "lower", "abs", "round", "floor", "coalesce", "nullif", "ltrim", "rtrim", "replace", "power", "sqrt"];

/// The column an expression's name refers to: the one spelled exactly so,
/// else the only one spelled so without regard to case, since SQL Server
/// resolves names by the database's collation, which is usually
/// case-insensitive (and Babelfish stores definitions folded to lower case).
fn resolve<'c>(columns: &'c [(String, PgType)], name: &str) -> Option<&'c (String, PgType)> {
    if let Some(exact) = columns.iter().find(|(n, _)| n == name) {
        return Some(exact);
    }
    let folded = name.to_lowercase();
    let mut candidates = columns.iter().filter(|(n, _)| n.to_lowercase() == folded);
    let first = candidates.next()?;
    candidates.next().is_none().then_some(first)
}

/// Reads a T-SQL type as written in `CAST(x AS type)` or `CONVERT(type, x)`
/// at the start of `tokens`, and returns its default PostgreSQL type and the
/// number of tokens it took.
fn cast_type(tokens: &[Token]) -> Result<(PgType, usize), String> {
    let name = match tokens.first() {
        Some(Token::Word(n) | Token::Ident(n)) => n,
        _ => return Err("CAST or CONVERT without a type is not understood".into()),
    };
    let mut args = Vec::new();
    let mut max = false;
    let mut used = 1;
    if matches!(tokens.get(1), Some(Token::Punct("("))) {
        used = 2;
        loop {
            match tokens.get(used) {
                Some(Token::Number(n)) => {
                    args.push(n.parse::<u32>().map_err(|_| format!("type argument {n} is not a length"))?)
                }
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("max") => max = true,
                _ => return Err(format!("the type {name}(...) is not understood")),
            }
            used += 1;
            match tokens.get(used) {
                Some(Token::Punct(",")) => used += 1,
                Some(Token::Punct(")")) => {
                    used += 1;
                    break;
                }
                _ => return Err(format!("the type {name}(...) is not understood")),
            }
        }
    }
    let ty = MssqlType::from_declaration(name, &args, max).map_err(|e| format!("CAST to {name}: {e}"))?;
    Ok((default_target(&ty), used))
}

/// What an open parenthesis belongs to, so its closing one can finish it.
enum Paren {
    Plain,
    Cast,
    /// `CONVERT(type, x` became `CAST(x`; the close adds ` AS type)`.
    Convert(PgType),
}

/// Translates a SQL Server expression into PostgreSQL.
///
/// `columns` are the table's source column names with their target types;
/// a name in the expression must resolve to one of them (see [`resolve`]).
/// `CAST(x AS t)` and `CONVERT(t, x)` (without a style) become casts to the
/// type `t` maps to.
/// `result_type` is the target type of the column the expression fills
/// (defaults and generated columns), so `0`/`1` become `false`/`true` for
/// boolean columns.
///
/// # Errors
/// The reason the expression cannot be translated faithfully.
pub fn translate_mssql(
    text: &str,
    columns: &[(String, PgType)],
    case: IdentifierCase,
    result_type: Option<PgType>,
    usage: ExprUse,
) -> Result<String, String> {
    let tokens = tokenize(strip_outer_parens(text))?;
    if tokens.is_empty() {
        return Err("the expression is empty".into());
    }
    let token_type = |t: &Token| match t {
        Token::Ident(name) | Token::Word(name) => resolve(columns, name).map(|(_, ty)| *ty),
        _ => None,
    };
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut parens: Vec<Paren> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let next_is_call = matches!(tokens.get(i + 1), Some(Token::Punct("(")));
        match token {
            Token::Word(word) if next_is_call => {
                let lower = word.to_ascii_lowercase();
                let empty_args = matches!(tokens.get(i + 2), Some(Token::Punct(")")));
                let no_args = |replacement: &str, volatile: bool| -> Result<(String, usize), String> {
                    if !empty_args {
                        return Err(format!("{word}() with arguments is not supported"));
                    }
                    if volatile && usage == ExprUse::Generated {
                        return Err(format!("{word}() is not immutable, so it cannot compute a generated column"));
                    }
                    Ok((replacement.to_owned(), 3))
                };
                if lower == "cast" {
                    parens.push(Paren::Cast);
                    out.push("CAST(".into());
                    i += 2;
                    continue;
                }
                if lower == "convert" {
                    let (ty, used) = cast_type(&tokens[i + 2..])?;
                    if !matches!(tokens.get(i + 2 + used), Some(Token::Punct(","))) {
                        return Err("CONVERT without a value is not understood".into());
                    }
                    parens.push(Paren::Convert(ty));
                    out.push("CAST(".into());
                    i += 3 + used;
                    continue;
                }
                let (text, consumed) = match lower.as_str() {
                    "getdate" | "sysdatetime" | "current_timestamp" => no_args("LOCALTIMESTAMP", true)?,
                    "getutcdate" | "sysutcdatetime" => no_args("(now() AT TIME ZONE 'UTC')", true)?,
                    "sysdatetimeoffset" => no_args("CURRENT_TIMESTAMP", true)?,
                    "newid" | "newsequentialid" => no_args("gen_random_uuid()", true)?,
                    "suser_sname" | "suser_name" | "user_name" | "current_user" | "system_user" => {
                        no_args("CURRENT_USER", true)?
                    }
                    "isnull" => ("coalesce(".to_owned(), 2),
                    "len" => ("length(".to_owned(), 2),
                    "ceiling" => ("ceil(".to_owned(), 2),
                    f if SAME_IMMUTABLE.contains(&f) => (format!("{f}("), 2),
                    _ => return Err(format!("the function {word}() has no PostgreSQL translation")),
                };
                if consumed == 2 {
                    parens.push(Paren::Plain);
                }
                out.push(text);
                i += consumed;
                continue;
            }
            Token::Word(word) if word.eq_ignore_ascii_case("as") && matches!(parens.last(), Some(Paren::Cast)) => {
                let (ty, used) = cast_type(&tokens[i + 1..])?;
                if !matches!(tokens.get(i + 1 + used), Some(Token::Punct(")"))) {
                    return Err("CAST(... AS type) is not closed after the type".into());
                }
                out.push("AS".into());
                out.push(ty.to_string());
                i += 1 + used;
                continue;
            }
            Token::Word(word) if KEYWORDS.contains(&word.to_ascii_uppercase().as_str()) => {
                out.push(word.to_ascii_uppercase());
            }
            Token::Word(word) if word.eq_ignore_ascii_case("current_timestamp") => {
                if usage == ExprUse::Generated {
                    return Err("CURRENT_TIMESTAMP is not immutable".into());
                }
                out.push("LOCALTIMESTAMP".into());
            }
            Token::Word(name) | Token::Ident(name) => {
                let Some((declared, _)) = resolve(columns, name) else {
                    return Err(format!("'{name}' is not a column of this table"));
                };
                if usage == ExprUse::Default {
                    return Err(format!("a default cannot refer to the column '{name}'"));
                }
                out.push(quote_pg(&target_name(declared, case)));
            }
            Token::Str(s) => out.push(literal_pg(s)),
            Token::Number(n) => {
                // `[flag] = 1` compares a bit; in PostgreSQL the column is boolean.
                let neighbour_is_bool = [prev_operand(&tokens, i), next_operand(&tokens, i)]
                    .into_iter()
                    .flatten()
                    .any(|t| token_type(t) == Some(PgType::Boolean));
                let lone = tokens.iter().all(|t| matches!(t, Token::Number(_) | Token::Punct("(" | ")")));
                let boolean = neighbour_is_bool || (lone && result_type == Some(PgType::Boolean));
                match (boolean, n.as_str()) {
                    (true, "0") => out.push("false".into()),
                    (true, "1") => out.push("true".into()),
                    (true, other) => return Err(format!("{other} is not a bit value")),
                    (false, _) => out.push(n.clone()),
                }
            }
            Token::Binary(hex) => out.push(format!("'\\x{hex}'::bytea")),
            Token::Punct("+") => {
                // `+` concatenates strings in SQL Server but only adds in PostgreSQL.
                let textual = tokens.iter().any(|t| {
                    matches!(t, Token::Str(_)) || token_type(t).is_some_and(|ty| ty.is_textual() || ty == PgType::Xml)
                });
                if textual {
                    return Err("'+' on strings (concatenation) is not translated".into());
                }
                out.push("+".into());
            }
            Token::Punct("(") => {
                parens.push(Paren::Plain);
                out.push("(".into());
            }
            Token::Punct(")") => match parens.pop() {
                Some(Paren::Convert(ty)) => {
                    out.push("AS".into());
                    out.push(ty.to_string());
                    out.push(")".into());
                }
                Some(Paren::Plain | Paren::Cast) => out.push(")".into()),
                None => return Err("a ')' closes nothing".into()),
            },
            Token::Punct(",") if matches!(parens.last(), Some(Paren::Convert(_))) => {
                return Err("CONVERT with a style argument is not translated".into());
            }
            Token::Punct(p) => out.push((*p).to_owned()),
        }
        i += 1;
    }
    if !parens.is_empty() {
        return Err("a '(' is not closed".into());
    }
    Ok(join_tokens(&out))
}

/// The operand token before position `i`, skipping parentheses and one comparison operator.
fn prev_operand(tokens: &[Token], i: usize) -> Option<&Token> {
    let mut j = i;
    let mut saw_operator = false;
    while j > 0 {
        j -= 1;
        match &tokens[j] {
            Token::Punct("(" | ")") => {}
            Token::Punct("=" | "<>") if !saw_operator => saw_operator = true,
            t if saw_operator => return Some(t),
            _ => return None,
        }
    }
    None
}

fn next_operand(tokens: &[Token], i: usize) -> Option<&Token> {
    let mut saw_operator = false;
    for t in &tokens[i + 1..] {
        match t {
            Token::Punct("(" | ")") => {}
            Token::Punct("=" | "<>") if !saw_operator => saw_operator = true,
            t if saw_operator => return Some(t),
            _ => return None,
        }
    }
    None
}

fn join_tokens(parts: &[String]) -> String {
    let mut s = String::new();
    for (i, p) in parts.iter().enumerate() {
        let glue = i > 0 && !s.ends_with('(') && p != ")" && p != "," && !(s.ends_with('-') && i == 1);
        if glue {
            s.push(' ');
        }
        s.push_str(p);
    }
    s
}

/// Removes redundant outer parentheses, which SQL Server adds around every
/// stored definition: `((0))` → `0`.
pub fn strip_outer_parens(text: &str) -> &str {
    let mut s = text.trim();
    loop {
        if !(s.starts_with('(') && s.ends_with(')')) {
            return s;
        }
        // Only strip when the first '(' closes at the very end.
        let mut depth = 0i32;
        let mut closes_at_end = true;
        let mut in_string = false;
        for (idx, c) in s.char_indices() {
            match c {
                '\'' => in_string = !in_string,
                '(' if !in_string => depth += 1,
                ')' if !in_string => {
                    depth -= 1;
                    if depth == 0 && idx != s.len() - 1 {
                        closes_at_end = false;
                        break;
                    }
                }
                _ => {}
            }
        }
        if !closes_at_end {
            return s;
        }
        s = s[1..s.len() - 1].trim();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<(String, PgType)> {
        [
            ("Qty", PgType::Integer),
            ("Price", PgType::Numeric(Some((10, 2)))),
            ("Active", PgType::Boolean),
            ("Name", PgType::Varchar(Some(50))),
            ("Order Date", PgType::Timestamp(Some(3))),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), t))
        .collect()
    }

    fn default(text: &str, ty: PgType) -> Result<String, String> {
        translate_mssql(text, &cols(), IdentifierCase::Preserve, Some(ty), ExprUse::Default)
    }

    fn check(text: &str) -> Result<String, String> {
        translate_mssql(text, &cols(), IdentifierCase::Preserve, None, ExprUse::Check)
    }

    #[test]
    fn defaults_translate_or_say_why_not() {
        assert_eq!(default("((0))", PgType::Integer).as_deref(), Ok("0"));
        assert_eq!(default("((0))", PgType::Boolean).as_deref(), Ok("false"));
        assert_eq!(default("((1))", PgType::Boolean).as_deref(), Ok("true"));
        assert_eq!(default("((-1.5))", PgType::Numeric(None)).as_deref(), Ok("-1.5"));
        assert_eq!(default("(getdate())", PgType::Timestamp(Some(3))).as_deref(), Ok("LOCALTIMESTAMP"));
        assert_eq!(default("(sysutcdatetime())", PgType::Timestamp(None)).as_deref(), Ok("(now() AT TIME ZONE 'UTC')"));
        assert_eq!(default("(sysdatetimeoffset())", PgType::TimestampTz(None)).as_deref(), Ok("CURRENT_TIMESTAMP"));
        assert_eq!(default("(newid())", PgType::Uuid).as_deref(), Ok("gen_random_uuid()"));
        assert_eq!(default("(N'it''s')", PgType::Text).as_deref(), Ok("'it''s'"));
        assert_eq!(default("('2020-01-01')", PgType::Date).as_deref(), Ok("'2020-01-01'"));
        assert_eq!(default("(0x0A1B)", PgType::Bytea).as_deref(), Ok("'\\x0A1B'::bytea"));
        assert_eq!(default("(suser_sname())", PgType::Text).as_deref(), Ok("CURRENT_USER"));
        assert_eq!(default("((2))", PgType::Boolean), Err("2 is not a bit value".into()));
        assert!(default("(CONVERT([varchar](10),getdate(),(120)))", PgType::Text).unwrap_err().contains("style"));
        assert!(default("([Qty])", PgType::Integer).unwrap_err().contains("cannot refer"));
        assert!(default("(next value for [dbo].[seq])", PgType::BigInt).is_err());
    }

    #[test]
    fn checks_quote_columns_and_map_bits() {
        assert_eq!(check("([Qty]>(0))").as_deref(), Ok("\"Qty\" > (0)"));
        assert_eq!(check("([Active]=(1))").as_deref(), Ok("\"Active\" = (true)"));
        assert_eq!(check("((0)=[Active])").as_deref(), Ok("(false) = \"Active\""));
        assert_eq!(
            check("([Price]>=(0) AND [Price]<(1000))").as_deref(),
            Ok("\"Price\" >= (0) AND \"Price\" < (1000)")
        );
        assert_eq!(check("([Qty]!=(3))").as_deref(), Ok("\"Qty\" <> (3)"));
        assert_eq!(check("(len([Name])>(0))").as_deref(), Ok("length(\"Name\") > (0)"));
        assert_eq!(check("([Order Date] IS NOT NULL)").as_deref(), Ok("\"Order Date\" IS NOT NULL"));
        assert_eq!(check("([Name] like N'A%')").as_deref(), Ok("\"Name\" LIKE 'A%'"));
        assert!(check("([Name]+'x'<>'')").unwrap_err().contains("concatenation"));
        assert!(check("([Missing]>(0))").unwrap_err().contains("'Missing' is not a column"));
        assert!(check("([dbo].[f]([Qty])>(0))").is_err());
    }

    #[test]
    fn cast_and_convert_become_casts_to_the_mapped_type() {
        // Babelfish reports `DEFAULT (N'anon')` on nvarchar(20) like this.
        assert_eq!(
            default("CAST(('anon') AS nvarchar(4))", PgType::Varchar(Some(20))).as_deref(),
            Ok("CAST(('anon') AS varchar(4))")
        );
        assert_eq!(default("(CONVERT([nvarchar](max),N'x'))", PgType::Text).as_deref(), Ok("CAST('x' AS text)"));
        assert_eq!(
            default("(CONVERT([decimal](12,2),(0)))", PgType::Numeric(Some((12, 2)))).as_deref(),
            Ok("CAST((0) AS numeric(12,2))")
        );
        assert_eq!(
            check("([Price]>=CAST((0) AS decimal(12,2)))").as_deref(),
            Ok("\"Price\" >= CAST((0) AS numeric(12,2))")
        );
        assert_eq!(check("(CONVERT(bigint,[Qty])*(2)>(0))").as_deref(), Ok("CAST(\"Qty\" AS bigint) * (2) > (0)"));
        assert_eq!(default("(CAST(getdate() AS date))", PgType::Date).as_deref(), Ok("CAST(LOCALTIMESTAMP AS date)"));
        assert!(default("(CAST((1) AS vector(3)))", PgType::Text).unwrap_err().contains("vector"));
        assert!(default("(CAST((1) AS int)", PgType::Integer).unwrap_err().contains("not closed"));
        assert!(check("([Qty])>(0))").unwrap_err().contains("closes nothing"));
    }

    #[test]
    fn names_resolve_like_a_case_insensitive_server() {
        // Babelfish stores definitions with names folded to lower case.
        assert_eq!(
            check("([qty]>(0) AND [ORDER DATE] IS NOT NULL)").as_deref(),
            Ok("\"Qty\" > (0) AND \"Order Date\" IS NOT NULL")
        );
        let twins = vec![("Id".to_owned(), PgType::Integer), ("ID".to_owned(), PgType::Integer)];
        let check_twins = |t: &str| translate_mssql(t, &twins, IdentifierCase::Preserve, None, ExprUse::Check);
        assert_eq!(check_twins("([ID]>(0))").as_deref(), Ok("\"ID\" > (0)"), "an exact spelling wins");
        assert!(check_twins("([id]>(0))").unwrap_err().contains("not a column"), "ambiguous without case");
    }

    #[test]
    fn identifier_case_applies_inside_expressions() {
        let got = translate_mssql("([Order Date] IS NULL)", &cols(), IdentifierCase::Snake, None, ExprUse::Check);
        assert_eq!(got.as_deref(), Ok("\"order_date\" IS NULL"));
    }

    #[test]
    fn generated_columns_refuse_volatile_functions() {
        let gen_ = |t: &str| translate_mssql(t, &cols(), IdentifierCase::Preserve, None, ExprUse::Generated);
        assert_eq!(gen_("([Qty]*[Price])").as_deref(), Ok("\"Qty\" * \"Price\""));
        assert!(gen_("(getdate())").unwrap_err().contains("not immutable"));
        assert_eq!(gen_("(upper([Name]))").as_deref(), Ok("upper(\"Name\")"));
    }

    #[test]
    fn outer_parentheses_are_stripped_only_when_they_wrap_everything() {
        assert_eq!(strip_outer_parens("((0))"), "0");
        assert_eq!(strip_outer_parens("(a) + (b)"), "(a) + (b)");
        assert_eq!(strip_outer_parens("(')(')"), "')('");
        assert_eq!(strip_outer_parens("x"), "x");
    }
}
