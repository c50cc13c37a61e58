//! A Stack Overflow 2010-shaped data set: the nine tables of the public
//! StackOverflow2010 database with its row-count ratios (19.3M rows at
//! scale 1), realistic text sizes (`Posts.Body` is long `nvarchar(max)`
//! text) and some non-ASCII text, so UTF-16 → UTF-8 is exercised.
//!
//! Every value is a pure function of (table, row id), so PostgreSQL and
//! the T-SQL script get the same content, and a scale is reproducible.

use std::fmt::Write as _;

/// One column: name, PostgreSQL type, SQL Server type.
pub struct Column {
    pub name: &'static str,
    pub pg: &'static str,
    pub mssql: &'static str,
}

const fn col(name: &'static str, pg: &'static str, mssql: &'static str) -> Column {
    Column { name, pg, mssql }
}

pub struct Table {
    pub name: &'static str,
    /// Rows at scale 1 (StackOverflow2010's counts); lookup tables do not scale.
    pub rows_at_scale_1: u64,
    pub scales: bool,
    pub columns: &'static [Column],
}

pub const TABLES: &[Table] = &[
    Table {
        name: "Users",
        rows_at_scale_1: 299_398,
        scales: true,
        columns: &[
            col("Id", "integer", "int"),
            col("AboutMe", "text", "nvarchar(max)"),
            col("Age", "integer", "int"),
            col("CreationDate", "timestamp(3)", "datetime"),
            col("DisplayName", "varchar(40)", "nvarchar(40)"),
            col("DownVotes", "integer", "int"),
            col("EmailHash", "varchar(40)", "nvarchar(40)"),
            col("LastAccessDate", "timestamp(3)", "datetime"),
            col("Location", "varchar(100)", "nvarchar(100)"),
            col("Reputation", "integer", "int"),
            col("UpVotes", "integer", "int"),
            col("Views", "integer", "int"),
            col("WebsiteUrl", "varchar(200)", "nvarchar(200)"),
            col("AccountId", "integer", "int"),
        ],
    },
    Table {
        name: "Posts",
        rows_at_scale_1: 3_729_195,
        scales: true,
        columns: &[
            col("Id", "integer", "int"),
            col("AcceptedAnswerId", "integer", "int"),
            col("AnswerCount", "integer", "int"),
            col("Body", "text", "nvarchar(max)"),
            col("ClosedDate", "timestamp(3)", "datetime"),
            col("CommentCount", "integer", "int"),
            col("CommunityOwnedDate", "timestamp(3)", "datetime"),
            col("CreationDate", "timestamp(3)", "datetime"),
            col("FavoriteCount", "integer", "int"),
            col("LastActivityDate", "timestamp(3)", "datetime"),
            col("LastEditDate", "timestamp(3)", "datetime"),
            col("LastEditorDisplayName", "varchar(40)", "nvarchar(40)"),
            col("LastEditorUserId", "integer", "int"),
            col("OwnerUserId", "integer", "int"),
            col("ParentId", "integer", "int"),
            col("PostTypeId", "integer", "int"),
            col("Score", "integer", "int"),
            col("Tags", "varchar(150)", "nvarchar(150)"),
            col("Title", "varchar(250)", "nvarchar(250)"),
            col("ViewCount", "integer", "int"),
        ],
    },
    Table {
        name: "Comments",
        rows_at_scale_1: 3_875_183,
        scales: true,
        columns: &[
            col("Id", "integer", "int"),
            col("CreationDate", "timestamp(3)", "datetime"),
            col("PostId", "integer", "int"),
            col("Score", "integer", "int"),
            col("Text", "varchar(700)", "nvarchar(700)"),
            col("UserId", "integer", "int"),
        ],
    },
    Table {
        name: "Votes",
        rows_at_scale_1: 10_143_364,
        scales: true,
        columns: &[
            col("Id", "integer", "int"),
            col("PostId", "integer", "int"),
            col("UserId", "integer", "int"),
            col("BountyAmount", "integer", "int"),
            col("VoteTypeId", "integer", "int"),
            col("CreationDate", "timestamp(3)", "datetime"),
        ],
    },
    Table {
        name: "Badges",
        rows_at_scale_1: 1_102_019,
        scales: true,
        columns: &[
            col("Id", "integer", "int"),
            col("Name", "varchar(40)", "nvarchar(40)"),
            col("UserId", "integer", "int"),
            col("Date", "timestamp(3)", "datetime"),
        ],
    },
    Table {
        name: "PostLinks",
        rows_at_scale_1: 161_519,
        scales: true,
        columns: &[
            col("Id", "integer", "int"),
            col("CreationDate", "timestamp(3)", "datetime"),
            col("PostId", "integer", "int"),
            col("RelatedPostId", "integer", "int"),
            col("LinkTypeId", "integer", "int"),
        ],
    },
    Table {
        name: "VoteTypes",
        rows_at_scale_1: 15,
        scales: false,
        columns: &[col("Id", "integer", "int"), col("Name", "varchar(50)", "varchar(50)")],
    },
    Table {
        name: "PostTypes",
        rows_at_scale_1: 8,
        scales: false,
        columns: &[col("Id", "integer", "int"), col("Type", "varchar(50)", "nvarchar(50)")],
    },
    Table {
        name: "LinkTypes",
        rows_at_scale_1: 2,
        scales: false,
        columns: &[col("Id", "integer", "int"), col("Type", "varchar(50)", "varchar(50)")],
    },
];

impl Table {
    pub fn rows(&self, scale: f64) -> u64 {
        if self.scales { ((self.rows_at_scale_1 as f64 * scale).round() as u64).max(1) } else { self.rows_at_scale_1 }
    }
}

/// One generated value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i32),
    Text(String),
    /// Whole seconds since 2000-01-01 (exact in `datetime` and `timestamp`).
    Timestamp(i64),
}

/// SplitMix64: a small, fast generator whose stream is fixed by its seed.
pub struct Rng(u64);

impl Rng {
    pub fn for_row(table: usize, id: u64) -> Rng {
        Rng((table as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ id.wrapping_mul(0xBF58_476D_1CE4_E5B9))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Uniform in `low..high`.
    fn int(&mut self, low: i32, high: i32) -> i32 {
        low + self.below((high - low).max(1) as u64) as i32
    }
}

/// Words of generated text; about one in twelve is not ASCII.
const WORDS: &[&str] = &[
    "the",
    "query",
    "returns",
    "index",
    "table",
    "function",
    "value",
    "null",
    "join",
    "server",
    "database",
    "error",
    "string",
    "array",
    "class",
    "method",
    "thread",
    "memory",
    "performance",
    "why",
    "does",
    "my",
    "code",
    "fail",
    "when",
    "using",
    "with",
    "select",
    "from",
    "where",
    "group",
    "order",
    "update",
    "insert",
    "delete",
    "how",
    "to",
    "convert",
    "datetime",
    "timezone",
    "unicode",
    "encoding",
    "regex",
    "parse",
    "json",
    "xml",
    "linq",
    "python",
    "java",
    "c#",
    "javascript",
    "sql",
    "linux",
    "windows",
    "build",
    "compile",
    "deploy",
    "test",
    "café",
    "naïve",
    "Größe",
    "東京",
    "データ",
    "Привет",
    "mañana",
    "😀",
    "façade",
    "Ωmega",
    "ζήτημα",
];

fn words(rng: &mut Rng, chars: usize, out: &mut String) {
    let start = out.len();
    while out.len() - start < chars {
        if out.len() > start {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
}

/// Text of `min..=max` bytes' worth of words, cut to at most `max`
/// characters (the column's limit).
fn text(rng: &mut Rng, min: usize, max: usize) -> Value {
    let mut s = String::with_capacity(max + 16);
    let len = min + rng.below((max - min + 1) as u64) as usize;
    words(rng, len, &mut s);
    if let Some((cut, _)) = s.char_indices().nth(max) {
        s.truncate(cut);
    }
    Value::Text(s)
}

/// A post body: HTML-ish paragraphs, 100 to ~4000 bytes, most near 1 KB.
fn body(rng: &mut Rng) -> Value {
    let paragraphs = 1 + rng.below(4) + rng.below(4);
    let mut s = String::with_capacity(2048);
    for _ in 0..paragraphs {
        s.push_str("<p>");
        let len = 40 + rng.below(300) as usize;
        words(rng, len, &mut s);
        s.push_str("</p>\n");
        if rng.chance(25) {
            s.push_str("<pre><code>SELECT * FROM t WHERE id = 42;\n</code></pre>\n");
        }
    }
    Value::Text(s)
}

/// Unix time of 2000-01-01, PostgreSQL's epoch.
const UNIX_2000: i64 = 946_684_800;
/// Seconds from 2000-01-01 to 2008-08-01, where the data begins.
const EPOCH_2008_08: i64 = 270_864_000;
/// The data spans 2008-08 to 2010-12 (~2.4 years).
const SPAN: u64 = 75_000_000;

fn date(rng: &mut Rng) -> Value {
    Value::Timestamp(EPOCH_2008_08 + rng.below(SPAN) as i64)
}

fn maybe(rng: &mut Rng, percent: u64, value: impl FnOnce(&mut Rng) -> Value) -> Value {
    if rng.chance(percent) { value(rng) } else { Value::Null }
}

/// Row counts of the parent tables, for plausible references.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub users: u64,
    pub posts: u64,
}

impl Sizes {
    pub fn at(scale: f64) -> Sizes {
        Sizes { users: TABLES[0].rows(scale), posts: TABLES[1].rows(scale) }
    }
}

const BADGES: &[&str] = &[
    "Teacher",
    "Student",
    "Editor",
    "Supporter",
    "Critic",
    "Scholar",
    "Autobiographer",
    "Commentator",
    "Popular Question",
    "Nice Answer",
];
const VOTE_TYPES: &[&str] = &[
    "AcceptedByOriginator",
    "UpMod",
    "DownMod",
    "Offensive",
    "Favorite",
    "Close",
    "Reopen",
    "BountyStart",
    "BountyClose",
    "Deletion",
    "Undeletion",
    "Spam",
    "ModeratorReview",
    "ApproveEditSuggestion",
    "Unknown",
];
const POST_TYPES: &[&str] = &[
    "Question",
    "Answer",
    "Wiki",
    "TagWikiExcerpt",
    "TagWiki",
    "ModeratorNomination",
    "WikiPlaceholder",
    "PrivilegeWiki",
];

/// The values of row `id` (1-based) of table `index` of [`TABLES`], into `row`.
pub fn row(index: usize, id: u64, sizes: Sizes, row: &mut Vec<Value>) {
    row.clear();
    let mut rng = Rng::for_row(index, id);
    let r = &mut rng;
    let user = |r: &mut Rng| Value::Int(1 + r.below(sizes.users) as i32);
    let post = |r: &mut Rng| Value::Int(1 + r.below(sizes.posts) as i32);
    let id_value = Value::Int(id as i32);
    match TABLES[index].name {
        "Users" => row.extend([
            id_value,
            maybe(r, 40, |r| text(r, 20, 600)),
            maybe(r, 30, |r| Value::Int(r.int(16, 70))),
            date(r),
            text(r, 3, 30),
            Value::Int(r.int(0, 50)),
            maybe(r, 50, |r| Value::Text(format!("{:032x}", r.next() as u128 * 7919))),
            date(r),
            maybe(r, 45, |r| text(r, 4, 40)),
            Value::Int(1 + r.below(20_000) as i32),
            Value::Int(r.int(0, 500)),
            Value::Int(r.int(0, 10_000)),
            maybe(r, 20, |r| Value::Text(format!("https://example.com/{}", r.below(1_000_000)))),
            maybe(r, 90, |r| Value::Int(r.int(1, 5_000_000))),
        ]),
        "Posts" => {
            let question = r.chance(40);
            row.extend([
                id_value,
                if question { maybe(r, 50, post) } else { Value::Null },
                if question { Value::Int(r.int(0, 12)) } else { Value::Null },
                body(r),
                maybe(r, 5, date),
                Value::Int(r.int(0, 20)),
                maybe(r, 2, date),
                date(r),
                if question { maybe(r, 30, |r| Value::Int(r.int(0, 300))) } else { Value::Null },
                date(r),
                maybe(r, 35, date),
                maybe(r, 3, |r| text(r, 3, 30)),
                maybe(r, 35, user),
                maybe(r, 98, user),
                if question { Value::Null } else { post(r) },
                Value::Int(if question { 1 } else { 2 }),
                Value::Int(r.int(-5, 200)),
                if question { text(r, 5, 60) } else { Value::Null },
                if question { text(r, 15, 150) } else { Value::Null },
                Value::Int(r.int(0, 100_000)),
            ]);
        }
        "Comments" => row.extend([
            id_value,
            date(r),
            post(r),
            maybe(r, 30, |r| Value::Int(r.int(0, 50))),
            text(r, 15, 600),
            maybe(r, 97, user),
        ]),
        "Votes" => row.extend([
            id_value,
            post(r),
            maybe(r, 10, user),
            maybe(r, 1, |r| Value::Int(50 * r.int(1, 11))),
            Value::Int(r.int(1, 16)),
            date(r),
        ]),
        "Badges" => row.extend([
            id_value,
            Value::Text(BADGES[r.below(BADGES.len() as u64) as usize].to_owned()),
            user(r),
            date(r),
        ]),
        "PostLinks" => row.extend([id_value, date(r), post(r), post(r), Value::Int(if r.chance(90) { 1 } else { 3 })]),
        "VoteTypes" => row.extend([id_value, Value::Text(VOTE_TYPES[(id - 1) as usize % VOTE_TYPES.len()].to_owned())]),
        "PostTypes" => row.extend([id_value, Value::Text(POST_TYPES[(id - 1) as usize % POST_TYPES.len()].to_owned())]),
        "LinkTypes" => row.extend([id_value, Value::Text(if id == 1 { "Linked" } else { "Duplicate" }.to_owned())]),
        _ => {}
    }
}

pub fn quote_pg(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn quote_mssql(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// PostgreSQL DDL for `schema`: tables without keys (loaded first), and
/// the primary keys to add afterwards.
pub fn pg_tables(schema: &str) -> (String, String) {
    let mut create = format!("CREATE SCHEMA IF NOT EXISTS {};\n", quote_pg(schema));
    let mut keys = String::new();
    for t in TABLES {
        let columns: Vec<String> = t.columns.iter().map(|c| format!("{} {}", quote_pg(c.name), c.pg)).collect();
        let _ = writeln!(create, "CREATE TABLE {}.{} ({});", quote_pg(schema), quote_pg(t.name), columns.join(", "));
        let _ = writeln!(
            keys,
            "ALTER TABLE {}.{} ADD CONSTRAINT {} PRIMARY KEY (\"Id\");",
            quote_pg(schema),
            quote_pg(t.name),
            quote_pg(&format!("PK_{}", t.name))
        );
    }
    (create, keys)
}

/// A T-SQL literal (`N'...'` for text; datetimes as ISO 8601).
fn tsql_literal(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("NULL"),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Text(s) => {
            out.push_str("N'");
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
        Value::Timestamp(secs) => {
            // The data starts in 2008, so the Unix time is positive.
            let unix = u64::try_from(secs + UNIX_2000).unwrap_or(0);
            let iso = mssql_pg_migrate_state::rfc3339_from_unix(unix);
            let _ = write!(out, "'{}'", iso.trim_end_matches('Z'));
        }
    }
}

/// Writes the T-SQL script that builds the same data set in SQL Server
/// (schema `dbo` of the current database), in batches of 1000 rows.
pub fn write_tsql(scale: f64, out: &mut impl std::io::Write) -> std::io::Result<u64> {
    let sizes = Sizes::at(scale);
    let mut written = 0;
    writeln!(out, "-- Stack Overflow 2010-shaped data, scale {scale}, written by `cargo xtask gen-data`.")?;
    writeln!(out, "SET NOCOUNT ON;\nGO")?;
    for t in TABLES {
        let columns: Vec<String> = t.columns.iter().map(|c| format!("{} {}", quote_mssql(c.name), c.mssql)).collect();
        writeln!(out, "DROP TABLE IF EXISTS dbo.{};", quote_mssql(t.name))?;
        writeln!(
            out,
            "CREATE TABLE dbo.{} ({}, CONSTRAINT {} PRIMARY KEY CLUSTERED ([Id]));\nGO",
            quote_mssql(t.name),
            columns.join(", "),
            quote_mssql(&format!("PK_{}", t.name))
        )?;
    }
    let mut values = Vec::new();
    let mut line = String::new();
    for (index, t) in TABLES.iter().enumerate() {
        let names: Vec<String> = t.columns.iter().map(|c| quote_mssql(c.name)).collect();
        let rows = t.rows(scale);
        for first in (1..=rows).step_by(1000) {
            line.clear();
            let _ = writeln!(line, "INSERT INTO dbo.{} ({}) VALUES", quote_mssql(t.name), names.join(", "));
            for id in first..=(first + 999).min(rows) {
                row(index, id, sizes, &mut values);
                line.push_str(if id == first { "(" } else { ",\n(" });
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        line.push_str(", ");
                    }
                    tsql_literal(v, &mut line);
                }
                line.push(')');
                written += 1;
            }
            line.push_str(";\nGO\n");
            out.write_all(line.as_bytes())?;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_one_has_the_ratios_of_stack_overflow_2010() {
        let total: u64 = TABLES.iter().map(|t| t.rows(1.0)).sum();
        assert_eq!(total, 19_310_703);
        let small: u64 = TABLES.iter().map(|t| t.rows(0.05)).sum();
        assert_eq!(small, 965_559, "about a million rows at 0.05");
        assert_eq!(TABLES[6].rows(0.05), 15, "lookup tables do not scale");
    }

    #[test]
    fn rows_are_a_function_of_table_and_id() {
        let sizes = Sizes::at(0.01);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        row(1, 77, sizes, &mut a);
        row(1, 77, sizes, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), TABLES[1].columns.len());
        row(1, 78, sizes, &mut b);
        assert_ne!(a, b);
        for (index, t) in TABLES.iter().enumerate() {
            row(index, 1, sizes, &mut a);
            assert_eq!(a.len(), t.columns.len(), "{}", t.name);
        }
    }

    #[test]
    fn bodies_are_long_and_some_text_is_not_ascii() {
        let sizes = Sizes::at(0.01);
        let mut values = Vec::new();
        let (mut bytes, mut non_ascii) = (0usize, 0);
        for id in 1..=2000 {
            row(1, id, sizes, &mut values);
            if let Value::Text(body) = &values[3] {
                bytes += body.len();
                non_ascii += usize::from(!body.is_ascii());
            }
        }
        let average = bytes / 2000;
        assert!((600..2500).contains(&average), "average body {average} bytes");
        assert!(non_ascii > 1000, "{non_ascii} of 2000 bodies have non-ASCII text");
    }

    #[test]
    fn text_fits_its_column() {
        for id in 0..20_000 {
            let mut rng = Rng::for_row(0, id);
            let Value::Text(t) = text(&mut rng, 3, 30) else { panic!() };
            assert!(t.chars().count() <= 30, "{t:?}");
        }
    }

    #[test]
    fn tsql_literals_escape_quotes_and_spell_dates() {
        let mut s = String::new();
        tsql_literal(&Value::Text("it's 東京".into()), &mut s);
        s.push(' ');
        tsql_literal(&Value::Timestamp(EPOCH_2008_08 + 3661), &mut s);
        assert_eq!(s, "N'it''s 東京' '2008-08-01T01:01:01'");
    }

    #[test]
    fn the_script_creates_every_table_and_inserts_every_row() {
        let mut script = Vec::new();
        let rows = write_tsql(0.0001, &mut script).unwrap();
        let text = String::from_utf8(script).unwrap();
        let expected: u64 = TABLES.iter().map(|t| t.rows(0.0001)).sum();
        assert_eq!(rows, expected);
        assert_eq!(text.matches("CREATE TABLE dbo.").count(), 9);
        assert!(text.contains("INSERT INTO dbo.[Posts] ([Id], [AcceptedAnswerId],"), "{}", &text[..400]);
    }
}
