//! Chunk planning: how a table is split into partitions read in parallel.
//! Pure; the boundaries of non-integer keys come from the source server
//! (see [`crate::source::Source::boundaries`]), so ordering is always the
//! server's, never Rust's.

/// A key range `(after, upto]`; `None` is open-ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition<K> {
    pub id: u32,
    pub after: Option<K>,
    pub upto: Option<K>,
}

/// The planner's settings, from the `migration` section and the tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanSettings {
    pub large_table_threshold: u64,
    pub max_partitions: u32,
    pub min_rows_per_partition: u64,
    /// Partitions read at once across the run.
    pub readers: u32,
    /// Rows per chunk: no partition is planned smaller than one.
    pub chunk_rows: u64,
    /// [`crate::tuning::Tuning::min_chunk_bytes`], for the read specs.
    pub min_chunk_bytes: u64,
}

impl PlanSettings {
    pub fn new(m: &mssql_pg_migrate_config::MigrationConfig, tuning: &crate::tuning::Tuning) -> Self {
        PlanSettings {
            large_table_threshold: m.large_table_threshold,
            max_partitions: m.max_partitions,
            min_rows_per_partition: m.min_rows_per_partition,
            readers: u32::try_from(tuning.parallel_readers).unwrap_or(u32::MAX),
            chunk_rows: tuning.chunk_size,
            min_chunk_bytes: tuning.min_chunk_bytes,
        }
    }
}

/// What the planner knows of a table's size and of the run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSize {
    pub rows: u64,
    /// [`mssql_pg_migrate_schema::Table::size_for_scheduling`].
    pub bytes: u64,
    /// The sum of `bytes` over the run's tables.
    pub run_bytes: u64,
}

/// Partitions per reader's share of the run's bytes, for a table split to
/// balance the run (see [`partition_count`]).
const BALANCE_PIECES_PER_SHARE: u64 = 8;

/// How many partitions a table gets.
///
/// By rows, as the guide defines it: one below `large_table_threshold`;
/// above it, as many as keep `min_rows_per_partition` rows each, up to
/// `max_partitions`.
///
/// And by balance: a table holding more than one reader's share of the
/// run's bytes gets a partition per eighth of a share it holds (each at
/// least a chunk), up to `max_partitions`. Without this, a wide table
/// below the row threshold (a few million posts with their bodies) is read
/// by one reader at the end of the run while the others have nothing left
/// to do. Eighths, not whole shares: readers keep to tables of their own
/// while they can (two writers loading one table cost its server more
/// than one), so the others join a large table only for its last
/// partitions, and those must be small to even out the end.
pub fn partition_count(size: TableSize, s: PlanSettings) -> u32 {
    let max = s.max_partitions.max(1);
    let by_rows = if size.rows < s.large_table_threshold || size.rows == 0 {
        1
    } else {
        u32::try_from(size.rows / s.min_rows_per_partition.max(1)).unwrap_or(u32::MAX).clamp(1, max)
    };
    let share = size.run_bytes.div_ceil(u64::from(s.readers.max(1)));
    if s.readers <= 1 || share == 0 || size.bytes <= share {
        return by_rows;
    }
    let piece = share.div_ceil(BALANCE_PIECES_PER_SHARE);
    let by_share = size.bytes.div_ceil(piece).min(size.rows.div_ceil(s.chunk_rows.max(1)));
    by_rows.max(u32::try_from(by_share).unwrap_or(u32::MAX).min(max))
}

/// How many of the lightest reads are kept for the end of the run, given
/// every read's weight heaviest first ([`read_weight`]): the lightest ones
/// whose weights together stay within one balance piece (an eighth of a
/// reader's share, as in [`partition_count`]).
///
/// A table's key builds and `ANALYZE` run after its last partition, and
/// take longest for the largest tables. Were the largest table copied last,
/// they would end the run with the other readers idle; with the smallest
/// tables copied last instead, their copies overlap the large table's
/// builds, and their own builds are short.
pub fn filler_count(weights_heaviest_first: &[u64], readers: u32) -> usize {
    let run: u64 = weights_heaviest_first.iter().fold(0u64, |sum, w| sum.saturating_add(*w));
    let budget = run.div_ceil(u64::from(readers.max(1))).div_ceil(BALANCE_PIECES_PER_SHARE);
    let mut taken = 0u64;
    weights_heaviest_first
        .iter()
        .rev()
        .take_while(|&&w| {
            taken = taken.saturating_add(w);
            taken <= budget
        })
        .count()
}

/// What merging a row into a table that exists costs its server beyond
/// the row's own bytes, in bytes of a plain copy. Measured merging a 1%
/// change (every row a real update, a new version and an entry in each
/// index): about 9.5 µs a row for 60-byte rows (Votes) and 14.5 µs for
/// 1 KB rows (Posts), which is 9.2 µs a row plus 5.3 ns a byte.
pub const MERGED_ROW_BYTES: u64 = 1_700;

/// What a read weighs when readers take the heaviest first. A copy into a
/// table the run fills weighs its table's bytes. A merge into a table that
/// exists (upsert) weighs each row it reads (`rows_read`: for an
/// incremental read, the changed rows) at the table's average row bytes
/// plus [`MERGED_ROW_BYTES`]: merging is per-row work, so a change of 100k
/// narrow rows outweighs one of 37k wide ones with more bytes, and must
/// start first or run alone at the end.
pub fn read_weight(size: TableSize, rows_read: u64, merged: bool) -> u64 {
    if !merged {
        return size.bytes;
    }
    let row_bytes = size.bytes.checked_div(size.rows).unwrap_or(0);
    rows_read.saturating_mul(row_bytes.saturating_add(MERGED_ROW_BYTES))
}

/// Inclusive upper bounds that split `[min, max]` into `parts` ranges of
/// equal width (the last partition is open above, so it has no bound).
pub fn integer_bounds(min: i64, max: i64, parts: u32) -> Vec<i64> {
    if parts <= 1 || max <= min {
        return Vec::new();
    }
    let span = i128::from(max) - i128::from(min) + 1;
    let step = (span + i128::from(parts) - 1) / i128::from(parts);
    (1..i128::from(parts))
        .map(|i| i128::from(min) + i * step - 1)
        .filter(|b| *b < i128::from(max))
        .filter_map(|b| i64::try_from(b).ok())
        .collect()
}

/// Turns ordered bounds `b1 < b2 < … < bn` into `(None, b1], (b1, b2], …, (bn, None)`.
pub fn partitions_from_bounds<K: Clone>(bounds: Vec<K>) -> Vec<Partition<K>> {
    let mut out = Vec::with_capacity(bounds.len() + 1);
    let mut after: Option<K> = None;
    for (i, b) in bounds.into_iter().enumerate() {
        out.push(Partition { id: i as u32, after: after.clone(), upto: Some(b.clone()) });
        after = Some(b);
    }
    out.push(Partition { id: out.len() as u32, after, upto: None });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: PlanSettings = PlanSettings {
        large_table_threshold: 1000,
        max_partitions: 4,
        min_rows_per_partition: 300,
        readers: 1,
        chunk_rows: 100,
        min_chunk_bytes: 0,
    };

    /// A table that is the whole run's work, so balance never splits it
    /// with one reader.
    fn rows(rows: u64) -> TableSize {
        TableSize { rows, bytes: rows * 10, run_bytes: rows * 10 }
    }

    #[test]
    fn small_tables_stay_whole_and_large_ones_split_within_limits() {
        assert_eq!(partition_count(rows(0), S), 1);
        assert_eq!(partition_count(rows(999), S), 1);
        assert_eq!(partition_count(rows(1000), S), 3);
        assert_eq!(partition_count(rows(1_000_000), S), 4);
        let no_min = PlanSettings { min_rows_per_partition: 0, ..S };
        assert_eq!(partition_count(rows(5000), no_min), 4);
    }

    #[test]
    fn a_table_holding_more_than_a_readers_share_is_split_below_the_row_threshold() {
        let two = PlanSettings { readers: 2, ..S };
        // 900 rows (below the threshold of 1000) holding 80% of the run.
        let wide = TableSize { rows: 900, bytes: 800, run_bytes: 1000 };
        let fine = PlanSettings { max_partitions: 16, chunk_rows: 10, ..two };
        assert_eq!(partition_count(wide, fine), 13, "an eighth of a share (63 bytes) each");
        assert_eq!(partition_count(wide, two), 4, "max_partitions still bounds it");
        // Just above its share, into eighths of one.
        assert_eq!(partition_count(TableSize { bytes: 510, ..wide }, fine), 9);
        // No share to balance with one reader; the row rule alone applies.
        assert_eq!(partition_count(wide, S), 1);
        // Within its share it stays whole.
        assert_eq!(partition_count(TableSize { bytes: 500, ..wide }, two), 1);
        // Alone in the run, it is split across every reader...
        let four = PlanSettings { readers: 4, ..S };
        assert_eq!(partition_count(TableSize { rows: 900, bytes: 800, run_bytes: 800 }, four), 4);
        // ...but never into partitions of less than a chunk...
        assert_eq!(partition_count(TableSize { rows: 150, bytes: 800, run_bytes: 800 }, four), 2);
        // ...nor beyond max_partitions.
        let many = PlanSettings { readers: 16, ..S };
        assert_eq!(partition_count(TableSize { rows: 9000, bytes: 800, run_bytes: 800 }, many), 4);
        // Without any size known, only the row rule applies.
        assert_eq!(partition_count(TableSize { rows: 900, bytes: 0, run_bytes: 0 }, two), 1);
        // The row rule's count stands when balance asks for fewer.
        assert_eq!(partition_count(TableSize { rows: 1_000_000, bytes: 800, run_bytes: 1000 }, two), 4);
    }

    #[test]
    fn the_lightest_reads_within_a_balance_piece_are_kept_for_the_end() {
        // The SO2010 set at scale 0.25 (MB): a piece is 715 / 8 = 90 MB.
        let run = [919, 347, 126, 19, 15, 2, 0, 0, 0];
        assert_eq!(filler_count(&run, 2), 6, "Users, Badges, PostLinks and the three type tables");
        // One reader: a piece of the whole run, so Votes joins them.
        assert_eq!(filler_count(&run, 1), 7);
        // The count stops at the first read beyond the budget, even if a
        // lighter one would fit: the order is the scheduler's.
        assert_eq!(filler_count(&[100, 30, 1], 1), 1);
        assert_eq!(filler_count(&[], 2), 0);
        assert_eq!(filler_count(&[u64::MAX, u64::MAX], 2), 0, "no overflow");
    }

    #[test]
    fn integer_ranges_cover_every_key_once() {
        assert_eq!(integer_bounds(1, 100, 4), vec![25, 50, 75]);
        assert_eq!(integer_bounds(1, 3, 4), vec![1, 2]);
        assert_eq!(integer_bounds(5, 5, 4), Vec::<i64>::new());
        assert_eq!(integer_bounds(i64::MIN, i64::MAX, 2), vec![-1]);
        let bounds = integer_bounds(-10, 1_000_000_007, 7);
        assert_eq!(bounds.len(), 6);
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        let parts = partitions_from_bounds(bounds.clone());
        assert_eq!(parts.len(), 7);
        assert_eq!(parts[0], Partition { id: 0, after: None, upto: Some(bounds[0]) });
        assert_eq!(parts[6], Partition { id: 6, after: Some(bounds[5]), upto: None });
        // Every key lands in exactly one partition.
        for key in [-10i64, bounds[0], bounds[0] + 1, bounds[5], 1_000_000_007] {
            let hits =
                parts.iter().filter(|p| p.after.is_none_or(|a| key > a) && p.upto.is_none_or(|u| key <= u)).count();
            assert_eq!(hits, 1, "{key}");
        }
    }

    #[test]
    fn merges_weigh_their_rows_and_copies_their_bytes() {
        let votes = TableSize { rows: 10_000_000, bytes: 600_000_000, run_bytes: 0 };
        let posts = TableSize { rows: 3_700_000, bytes: 4_440_000_000, run_bytes: 0 };
        assert_eq!(read_weight(posts, 0, false), 4_440_000_000, "a copy weighs its table's bytes");
        assert_eq!(read_weight(votes, 101_000, true), 101_000 * (60 + MERGED_ROW_BYTES));
        assert_eq!(read_weight(posts, 37_000, true), 37_000 * (1_200 + MERGED_ROW_BYTES));
        assert!(
            read_weight(votes, 101_000, true) > read_weight(posts, 37_000, true),
            "100k changed narrow rows start before 37k wide ones"
        );
        assert_eq!(read_weight(TableSize { rows: 0, bytes: 8192, run_bytes: 0 }, 5, true), 5 * MERGED_ROW_BYTES);
        assert_eq!(read_weight(posts, u64::MAX, true), u64::MAX, "saturates");
    }

    #[test]
    fn no_bounds_is_one_open_partition() {
        assert_eq!(partitions_from_bounds(Vec::<i64>::new()), vec![Partition { id: 0, after: None, upto: None }]);
    }
}
