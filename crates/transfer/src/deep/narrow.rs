//! Checksums taken by each server, narrowing a table to the key ranges
//! whose rows differ somewhere, so only those rows cross the network.
//!
//! A keyed table's integer key range is cut into buckets of about
//! [`BUCKET_KEYS`] values; each side returns per bucket its row count and
//! the sum of its row hashes ([`super::checksum`]). A bucket that differs
//! is cut again ([`SPLIT`] ways) until it spans at most [`LEAF_KEYS`] key
//! values; those leaves are compared row by row. Target rows outside the
//! source's key range are extra by definition and need no source read.
//!
//! Any other key (composite, uuid, text) is cut by a hash of its canonical
//! form instead, into buckets of about [`LEAF_KEYS`] rows at once: a hash
//! range has no index to narrow it by, so each level would be another scan
//! of both tables. The rows of differing buckets are read in a few scans
//! filtered by the hash ([`HASHED_READ_BUCKETS`] buckets each).

use mssql_pg_migrate_postgres::checksum::{bucket_sums, session_checksum_dialect};
use mssql_pg_migrate_postgres::pg_error;
use mssql_pg_migrate_schema::ident::{qualified_mssql, qualified_pg};
use mssql_pg_migrate_schema::target::TargetTable;

use super::checksum::{
    self, BEYOND, BucketKey, BucketSum, Buckets, ChecksumDialect, HashedColumn, KEY_HASH_MAX, Scope, differing_buckets,
};
use super::target_error;
use crate::error::{Side, TransferError};
use crate::source::{ReadSpec, Source};

/// Key values per bucket at first.
const BUCKET_KEYS: i64 = 10_000;
/// Buckets per table at most, so the answer stays small for sparse keys.
const MAX_BUCKETS: i64 = 1 << 16;
/// A differing range is cut this many ways...
const SPLIT: i64 = 16;
/// ...until it spans this many key values, whose rows are then fetched.
const LEAF_KEYS: i64 = 1_024;
/// A hashed key's differing buckets read per scan of the source (about a
/// comparison chunk's rows)...
pub(super) const HASHED_READ_BUCKETS: usize = (super::CHUNK_ROWS / LEAF_KEYS as u64) as usize;
/// ...and at most this many scans: past that, reading every row once costs less.
const HASHED_READ_SCANS: usize = 4;

/// Each side's checksum query for one table: over the whole table (or,
/// keyless, its only query).
#[derive(Debug, Clone)]
pub(super) struct Hashing {
    source_sql: String,
    target_sql: String,
    key: HashingKey,
}

/// What a table's buckets are cut by.
#[derive(Debug, Clone)]
enum HashingKey {
    Keyless,
    /// A one-column integer key, with each side's query over a key range
    /// (what bisection asks).
    Integer {
        source_range_sql: String,
        target_range_sql: String,
    },
    /// Any other key: the expression of its hash on each side.
    Hashed {
        source: String,
        target: String,
    },
}

/// How the source and the target write checksums, agreed between them;
/// `None` when tables are compared row by row: a server that cannot hash
/// text as UTF-8, or (unless checksums were `asked` for) a source whose
/// hashing is slower than reading its rows.
pub(super) async fn checksum_dialects<S: Source>(
    source: &S,
    client: &tokio_postgres::Client,
    asked: bool,
) -> Result<Option<(ChecksumDialect, ChecksumDialect)>, TransferError> {
    let Some(mut source_dialect) = source.checksum_dialect().await? else { return Ok(None) };
    if !asked && matches!(source_dialect, ChecksumDialect::Mssql { interpreted: true, .. }) {
        return Ok(None);
    }
    let target_dialect = session_checksum_dialect(client)
        .await
        .map_err(|e| pg_error(Side::Target, "asking the server's encoding", &e))?;
    let Some(mut target_dialect) = target_dialect else { return Ok(None) };
    // Both sides hash a row the same way: by record only if both can.
    if let (ChecksumDialect::Postgres { record_hash: ours }, ChecksumDialect::Postgres { record_hash: theirs }) =
        (&mut source_dialect, &mut target_dialect)
    {
        let both = *ours && *theirs;
        (*ours, *theirs) = (both, both);
    }
    Ok(Some((source_dialect, target_dialect)))
}

/// The checksum queries for `spec`'s table, or `None` when it is compared
/// row by row: a column no form renders alike on both sides.
pub(super) fn hashing_for(
    (source_dialect, target_dialect): (ChecksumDialect, ChecksumDialect),
    spec: &ReadSpec,
    target: &TargetTable,
) -> Option<Hashing> {
    let target_names: Vec<&str> = target.copied_columns().map(|c| c.name.as_str()).collect();
    let mut source_columns = Vec::with_capacity(spec.columns.len());
    let mut target_columns = Vec::with_capacity(spec.columns.len());
    for (column, target_name) in spec.columns.iter().zip(&target_names) {
        let form = checksum::form_of(&column.source_type, column.target)?;
        source_columns.push(HashedColumn { name: &column.source_name, form });
        target_columns.push(HashedColumn { name: target_name, form });
    }
    let source_key: Vec<HashedColumn<'_>> = spec.key.iter().filter_map(|&k| source_columns.get(k).copied()).collect();
    let target_key: Vec<HashedColumn<'_>> = spec.key.iter().filter_map(|&k| target_columns.get(k).copied()).collect();
    let source_table = match source_dialect {
        ChecksumDialect::Mssql { .. } => qualified_mssql(&spec.schema, &spec.table),
        ChecksumDialect::Postgres { .. } => qualified_pg(&spec.schema, &spec.table),
    };
    let target_table = mssql_pg_migrate_postgres::ddl::table_name(target);
    let sides = |ours: Option<BucketKey<'_>>, theirs: Option<BucketKey<'_>>, scope| {
        let source_sql = checksum::bucket_sql(source_dialect, &source_table, ours.map(|k| (k, scope)), &source_columns);
        let target_sql =
            checksum::bucket_sql(target_dialect, &target_table, theirs.map(|k| (k, scope)), &target_columns);
        source_sql.zip(target_sql)
    };
    let integer = spec.integer_key().is_some();
    let ((source_sql, target_sql), key) = match (source_key.as_slice(), target_key.as_slice()) {
        ([], _) | (_, []) => (sides(None, None, Scope::Whole)?, HashingKey::Keyless),
        ([ours], [theirs]) if integer => {
            let (ours, theirs) = (BucketKey::Integer(ours.name), BucketKey::Integer(theirs.name));
            let (source_range_sql, target_range_sql) = sides(Some(ours), Some(theirs), Scope::Range)?;
            (sides(Some(ours), Some(theirs), Scope::Whole)?, HashingKey::Integer { source_range_sql, target_range_sql })
        }
        (ours, theirs) => (
            sides(Some(BucketKey::Hashed(ours)), Some(BucketKey::Hashed(theirs)), Scope::Whole)?,
            HashingKey::Hashed {
                source: checksum::key_hash_sql(source_dialect, ours)?,
                target: checksum::key_hash_sql(target_dialect, theirs)?,
            },
        ),
    };
    Some(Hashing { source_sql, target_sql, key })
}

/// One table on both servers, with its checksum queries.
pub(super) struct Sides<'a, S> {
    pub source: &'a S,
    pub client: &'a tokio_postgres::Client,
    pub spec: &'a ReadSpec,
    pub target: &'a TargetTable,
    pub hashing: &'a Hashing,
}

impl<S: Source> Sides<'_, S> {
    /// Both sides' sums for `buckets` (the whole table when `None`), taken at once.
    async fn sums(&self, buckets: Option<(Buckets, Scope)>) -> Result<(Vec<BucketSum>, Vec<BucketSum>), TransferError> {
        let hashing = self.hashing;
        let (ours, theirs) = match (buckets, &hashing.key) {
            (Some((_, Scope::Range)), HashingKey::Integer { source_range_sql, target_range_sql }) => {
                (source_range_sql, target_range_sql)
            }
            _ => (&hashing.source_sql, &hashing.target_sql),
        };
        let bounds = buckets.map(|(b, _)| b);
        let theirs = async {
            bucket_sums(self.client, theirs, bounds)
                .await
                .map_err(target_error("computing the checksums of", self.target))
        };
        tokio::try_join!(self.source.checksum_buckets(self.spec, ours, bounds), theirs)
    }

    /// A keyless table's rows, when both sides hold the same multiset of
    /// rows (same count and hash sum); `None` when they do not.
    pub(super) async fn same_multiset(&self) -> Result<Option<u64>, TransferError> {
        let (ours, theirs) = self.sums(None).await?;
        let rows = ours.iter().map(|b| b.rows).sum::<i64>();
        Ok(differing_buckets(&ours, &theirs).is_empty().then(|| u64::try_from(rows).unwrap_or(0)))
    }
}

/// What a keyed table's checksums left to compare row by row.
#[derive(Debug)]
pub(super) enum Narrowed {
    Ranges {
        /// Key ranges (inclusive, in order) whose rows differ somewhere;
        /// both sides' rows in them are compared.
        leaves: Vec<(i64, i64)>,
        /// Target-only ranges beyond the source's keys: every row in them is extra.
        beyond: Vec<(i64, i64)>,
        /// The source's rows, all proven by checksum or compared in a leaf.
        rows: u64,
        /// Buckets checksummed at the top level.
        buckets: u64,
        /// The source's smallest and largest key.
        keys: (i64, i64),
    },
    /// A key that is not one integer column, cut by its hash.
    Hashed {
        /// The buckets of the key's hash...
        buckets: Buckets,
        /// ...whose checksums differ (in order): both sides' rows in them are compared.
        differing: Vec<i64>,
        /// The expression of the key's hash on each side, for
        /// [`checksum::bucket_filter_sql`].
        source_hash: String,
        target_hash: String,
        /// The source's rows, all proven by checksum or compared.
        rows: u64,
    },
    /// So many buckets differ that narrowing would cost more than reading
    /// every row (or the source is empty): compare every row.
    Everything,
}

impl<S: Source> Sides<'_, S> {
    /// Narrows a keyed table to the key ranges where its sides differ.
    pub(super) async fn narrow(&self) -> Result<Narrowed, TransferError> {
        let Sides { source, spec, hashing, .. } = *self;
        match &hashing.key {
            HashingKey::Keyless => return Ok(Narrowed::Everything),
            HashingKey::Hashed { source: source_hash, target: target_hash } => {
                return self.narrow_hashed((source_hash, target_hash)).await;
            }
            HashingKey::Integer { .. } => {}
        }
        let Some((lo, hi)) = source.integer_range(spec).await? else { return Ok(Narrowed::Everything) };
        let parts = hi.checked_sub(lo).map_or(MAX_BUCKETS, |span| (span / BUCKET_KEYS + 1).min(MAX_BUCKETS));
        let Some(top) = Buckets::split(lo, hi, parts) else { return Ok(Narrowed::Everything) };
        let (ours, theirs) = self.sums(Some((top, Scope::Whole))).await?;
        if ours.iter().any(|b| b.bucket == BEYOND && b.rows > 0) {
            // Rows came into the source beyond the keys just read: the ranges
            // no longer cover it, so every row is compared.
            return Ok(Narrowed::Everything);
        }
        let rows = u64::try_from(ours.iter().map(|b| b.rows).sum::<i64>()).unwrap_or(0);
        let buckets = ours.len().max(theirs.len());
        let (beyond, differing): (Vec<i64>, Vec<i64>) =
            differing_buckets(&ours, &theirs).into_iter().partition(|&b| b == BEYOND);
        if differing.len() > 8 && differing.len() * 10 > buckets {
            tracing::warn!(
                table = %spec.label,
                differing = differing.len(),
                buckets,
                "checksums differ in many key ranges; comparing every row"
            );
            return Ok(Narrowed::Everything);
        }
        let mut work: Vec<(i64, i64)> = differing.iter().map(|&b| top.range(b)).collect();
        let mut leaves = Vec::new();
        while let Some((from, to)) = work.pop() {
            let split = (to - from >= LEAF_KEYS).then(|| Buckets::split(from, to, SPLIT)).flatten();
            let Some(sub) = split else {
                leaves.push((from, to));
                continue;
            };
            let (ours, theirs) = self.sums(Some((sub, Scope::Range))).await?;
            work.extend(differing_buckets(&ours, &theirs).into_iter().map(|b| sub.range(b)));
        }
        leaves.sort_unstable();
        // Target rows beyond the source's keys are extra; where, the anti-join
        // over both sides of the range finds (by the key's index).
        let below = (lo > i64::MIN).then(|| (i64::MIN, lo - 1));
        let above = (hi < i64::MAX).then(|| (hi + 1, i64::MAX));
        let beyond = if beyond.is_empty() { Vec::new() } else { below.into_iter().chain(above).collect() };
        Ok(Narrowed::Ranges { leaves, beyond, rows, buckets: buckets as u64, keys: (lo, hi) })
    }

    /// Narrows a table keyed other than by one integer to the buckets of its
    /// key's hash where its sides differ: one scan of each side with buckets
    /// sized from the catalog's row estimate, and a second with buckets sized
    /// from the rows counted, when the first's were too coarse to read.
    async fn narrow_hashed(&self, (source_hash, target_hash): (&str, &str)) -> Result<Narrowed, TransferError> {
        let Sides { spec, target, .. } = *self;
        let parts_for = |rows: u64| (i64::try_from(rows).unwrap_or(i64::MAX) / LEAF_KEYS).clamp(16, MAX_BUCKETS);
        let mut parts = parts_for(target.estimated_rows);
        let mut tried_finer = false;
        loop {
            let Some(buckets) = Buckets::split(0, KEY_HASH_MAX, parts) else { return Ok(Narrowed::Everything) };
            let (ours, theirs) = self.sums(Some((buckets, Scope::Whole))).await?;
            let rows = u64::try_from(ours.iter().map(|b| b.rows).sum::<i64>()).unwrap_or(0);
            let differing = differing_buckets(&ours, &theirs);
            // Asked first: finer buckets only split the differing ones, so
            // they cannot bring the count back under the limit.
            if differing.len() > HASHED_READ_BUCKETS * HASHED_READ_SCANS {
                tracing::warn!(
                    table = %spec.label,
                    differing = differing.len(),
                    buckets = parts,
                    "checksums differ in many buckets of the key's hash; comparing every row"
                );
                return Ok(Narrowed::Everything);
            }
            let rows_in = |b: i64| {
                let of = |sums: &[BucketSum]| sums.iter().find(|s| s.bucket == b).map_or(0, |s| s.rows);
                of(&ours).max(of(&theirs))
            };
            let coarse = differing.iter().any(|&b| rows_in(b) > 4 * LEAF_KEYS);
            if coarse && !tried_finer && parts_for(rows) > parts {
                (parts, tried_finer) = (parts_for(rows), true);
                continue;
            }
            let (source_hash, target_hash) = (source_hash.to_owned(), target_hash.to_owned());
            return Ok(Narrowed::Hashed { buckets, differing, source_hash, target_hash, rows });
        }
    }
}
