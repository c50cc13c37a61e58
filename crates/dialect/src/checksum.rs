//! Checksum types both sides of a comparison share. The SQL that computes
//! them is written by the engine's `deep::checksum` module; each dialect's
//! crate asks its server how it hashes and runs the queries.

/// How a SQL Server hashes a string's UTF-8 bytes, found by asking the
/// server (the probes in the SQL Server crate) rather than by its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MssqlStrings {
    /// A UTF-8 collation (SQL Server 2019 and later) turns the text into
    /// UTF-8 `varchar`, whose bytes `HASHBYTES` takes.
    Utf8Collation,
    /// `HASHBYTES` of an `nvarchar` already takes UTF-8 bytes (Babelfish,
    /// which stores text as UTF-8).
    NvarcharBytes,
}

/// The dialect a checksum query is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumDialect {
    /// SQL Server; `strings` is `None` on a server with no way to hash
    /// UTF-8 (before 2019), which then hashes no text. `interpreted` for
    /// Babelfish, whose T-SQL functions run through a translation layer:
    /// hashing a row there costs several times reading it (measured in
    /// docs/BENCHMARKS.md), so checksums are used only when asked for.
    Mssql { strings: Option<MssqlStrings>, interpreted: bool },
    /// PostgreSQL 11 or later with a UTF-8 database (`md5(text)` hashes
    /// the database's bytes; `hashtextextended` arrived in 11);
    /// `record_hash` when both sides have `hash_record_extended` (14).
    Postgres { record_hash: bool },
}

/// One bucket's row count and hash sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSum {
    pub bucket: i64,
    pub rows: i64,
    /// The sum in decimal; `None` only for an empty table.
    pub sum: Option<String>,
}

/// Key values `[lo, hi]` split into buckets of `width` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub lo: i64,
    pub hi: i64,
    pub width: i64,
}

impl Buckets {
    /// `[lo, hi]` in about `parts` buckets; `None` when the span does not
    /// fit in 64 bits (such a key is compared row by row).
    pub fn split(lo: i64, hi: i64, parts: i64) -> Option<Buckets> {
        let span = hi.checked_sub(lo)?.checked_add(1)?;
        if span <= 0 {
            return None;
        }
        let parts = parts.clamp(1, span);
        Some(Buckets { lo, hi, width: span / parts + i64::from(span % parts != 0) })
    }

    /// The key values of bucket `b`.
    pub fn range(&self, b: i64) -> (i64, i64) {
        let from = self.lo.saturating_add(b.saturating_mul(self.width));
        let to = from.saturating_add(self.width - 1).min(self.hi);
        (from, to)
    }
}
