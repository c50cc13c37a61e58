//! Reading a table as ranges of its storage blocks, the pure part: where a
//! chunk's range starts and ends, the condition that selects it, and the
//! basis a resume checks. The reads themselves, under the snapshot the
//! source holds for the run, are in [`crate::reader`].
//!
//! A TID range scan (PostgreSQL 14 and later) reads a range of blocks in
//! storage order, which costs the server about a fifth less than the same
//! rows paged in key order through the primary key's index. Under one
//! snapshot the ranges of a table are, together, exactly its rows as of
//! that snapshot, wherever updates have moved them; so every page imports
//! the snapshot a held transaction exported.
//!
//! Bounds are block numbers, with the key's conventions: a partition or
//! chunk holds the blocks after `after` up to and including `upto`.
//!
//! ```
//! use mssql_pg_migrate_postgres::blocks::{BlockRange, chunk_range, range_condition};
//!
//! // Blocks 100 to 199 of a 1,000-block table, the 200 rows at most that a
//! // chunk of 100 rows at 2 rows a block covers, within a partition up to 149.
//! let range = chunk_range(Some(99), Some(149), Some(100), 1000).unwrap();
//! assert_eq!(range, BlockRange { first: 100, end: Some(150), last: 149, complete: true });
//! assert_eq!(range_condition(&range), "ctid >= '(100,0)'::tid AND ctid < '(150,0)'::tid");
//! ```

/// The last block of a range read to the table's end, whatever its size then.
pub const TO_THE_END: u32 = u32::MAX;

/// Which blocks a chunk reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    /// The first block read.
    pub first: u64,
    /// The block the read stops before; `None`: to the table's end.
    pub end: Option<u64>,
    /// The chunk's last block, its progress in the run state
    /// ([`TO_THE_END`] for a read to the end).
    pub last: u32,
    /// Whether the chunk reaches its partition's end.
    pub complete: bool,
}

/// The blocks of the chunk after block `after` (from the first when
/// `None`) in the partition ending at `upto` (inclusive; `None` or
/// [`TO_THE_END`]: the table's end), covering `blocks` blocks, or the rest
/// of the partition when `None`. `table_blocks` is the table's size when
/// its read was planned: a chunk reaching it reads to the end, which takes
/// in every row the snapshot sees, since the table only grew since.
///
/// `None` after [`TO_THE_END`]: a chunk read to the end leaves no block
/// after it. The engine asks when it has redone such a chunk, whose commit
/// was in doubt, since a redone chunk never closes its partition itself.
pub fn chunk_range(
    after: Option<u32>,
    upto: Option<u32>,
    blocks: Option<u64>,
    table_blocks: u64,
) -> Option<BlockRange> {
    if after == Some(TO_THE_END) {
        return None;
    }
    let first = after.map_or(0, |a| u64::from(a) + 1);
    let partition_end = upto.filter(|&u| u != TO_THE_END).map(|u| u64::from(u) + 1);
    let wanted_end = blocks.map(|b| first + b.max(1));
    let end = match (wanted_end, partition_end) {
        (Some(w), Some(p)) => Some(w.min(p)),
        (Some(w), None) if w < table_blocks => Some(w),
        (Some(_), None) | (None, None) => None,
        (None, Some(p)) => Some(p),
    };
    // A block number past the largest a TID can hold reads to the end instead.
    let end = end.filter(|&e| e < u64::from(TO_THE_END));
    let last = end.map_or(TO_THE_END, |e| u32::try_from(e.saturating_sub(1)).unwrap_or(TO_THE_END));
    let complete = match (end, partition_end) {
        (None, _) => true,
        (Some(e), Some(p)) => e >= p,
        (Some(_), None) => false,
    };
    Some(BlockRange { first, end, last, complete })
}

/// The condition on `ctid` that selects `range`'s rows: literals, since a
/// COPY takes no parameters; block numbers only, no text from elsewhere.
pub fn range_condition(range: &BlockRange) -> String {
    match range.end {
        Some(end) => format!("ctid >= '({},0)'::tid AND ctid < '({end},0)'::tid", range.first),
        None => format!("ctid >= '({},0)'::tid", range.first),
    }
}

/// The inclusive last blocks of the first `parts − 1` of `parts` equal
/// partitions of `table_blocks` blocks; the last partition runs to the end.
pub fn partition_bounds(table_blocks: u64, parts: u32) -> Vec<u32> {
    let parts = u64::from(parts.max(1));
    (1..parts)
        .map(|i| table_blocks * i / parts)
        .filter(|&start| start > 0)
        .filter_map(|start| u32::try_from(start - 1).ok())
        .fold(Vec::new(), |mut bounds, b| {
            if bounds.last() != Some(&b) {
                bounds.push(b);
            }
            bounds
        })
}

/// Blocks that hold about `rows` rows at `rows_per_block` (at least one).
pub fn blocks_for_rows(rows: u64, rows_per_block: f64) -> u64 {
    let per_block = if rows_per_block.is_finite() && rows_per_block >= 1.0 { rows_per_block } else { 1.0 };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let blocks = (rows as f64 / per_block).ceil() as u64;
    blocks.max(1)
}

/// What a resume compares with: the held snapshot's oldest transaction
/// still running when it was taken (a 64-bit transaction id), and the
/// table's storage file then. A table whose storage file is the same
/// (not rewritten by `VACUUM FULL`, `CLUSTER` or a `TRUNCATE`) and that
/// has no row version from that transaction or a later one holds the rows
/// it held then at the same places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Basis {
    pub xmin: u64,
    pub filenode: i64,
}

impl Basis {
    /// The run state's text.
    pub fn to_state(self) -> String {
        format!("snapshot xmin {} filenode {}", self.xmin, self.filenode)
    }

    /// Reads [`Basis::to_state`]'s text.
    ///
    /// # Errors
    /// Why the text is not a basis.
    pub fn from_state(text: &str) -> Result<Basis, String> {
        let bad = || format!("read basis {text:?} is not \"snapshot xmin N filenode N\"");
        let rest = text.strip_prefix("snapshot xmin ").ok_or_else(bad)?;
        let (xmin, filenode) = rest.split_once(" filenode ").ok_or_else(bad)?;
        Ok(Basis { xmin: xmin.parse().map_err(|_| bad())?, filenode: filenode.parse().map_err(|_| bad())? })
    }
}

/// A block as the run state writes it.
pub fn block_to_state(block: u32) -> String {
    if block == TO_THE_END { "block end".to_owned() } else { format!("block {block}") }
}

/// Reads [`block_to_state`]'s text; `None` for other text (a key).
pub fn block_from_state(text: &str) -> Option<u32> {
    match text.strip_prefix("block ")? {
        "end" => Some(TO_THE_END),
        n => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_advance_through_a_bounded_partition_and_stop_at_its_end() {
        let first = chunk_range(None, Some(249), Some(100), 1000).unwrap();
        assert_eq!(first, BlockRange { first: 0, end: Some(100), last: 99, complete: false });
        let second = chunk_range(Some(first.last), Some(249), Some(100), 1000).unwrap();
        assert_eq!(second, BlockRange { first: 100, end: Some(200), last: 199, complete: false });
        let third = chunk_range(Some(second.last), Some(249), Some(100), 1000).unwrap();
        assert_eq!(third, BlockRange { first: 200, end: Some(250), last: 249, complete: true });
    }

    #[test]
    fn the_last_partition_reads_to_the_end_once_a_chunk_reaches_the_planned_size() {
        let middle = chunk_range(Some(249), None, Some(100), 400).unwrap();
        assert_eq!(middle, BlockRange { first: 250, end: Some(350), last: 349, complete: false });
        let last = chunk_range(Some(349), None, Some(100), 400).unwrap();
        assert_eq!(last, BlockRange { first: 350, end: None, last: TO_THE_END, complete: true });
        assert_eq!(range_condition(&last), "ctid >= '(350,0)'::tid");
        assert_eq!(chunk_range(None, None, Some(100), 0).unwrap().end, None, "an empty table: one read to the end");
    }

    #[test]
    fn a_chunk_in_doubt_is_read_again_up_to_its_recorded_last_block() {
        assert_eq!(
            chunk_range(Some(99), Some(199), None, 1000),
            Some(BlockRange { first: 100, end: Some(200), last: 199, complete: true })
        );
        assert_eq!(
            chunk_range(Some(349), Some(TO_THE_END), None, 400),
            Some(BlockRange { first: 350, end: None, last: TO_THE_END, complete: true }),
            "a chunk that read to the end is read to the end again"
        );
        assert_eq!(chunk_range(None, None, None, 10).unwrap().end, None);
    }

    #[test]
    fn nothing_is_left_after_a_chunk_read_to_the_end() {
        let to_the_end = chunk_range(Some(349), Some(TO_THE_END), None, 400).unwrap();
        assert_eq!(to_the_end.last, TO_THE_END);
        assert_eq!(chunk_range(Some(to_the_end.last), None, Some(100), 400), None);
        assert_eq!(chunk_range(Some(TO_THE_END), Some(TO_THE_END), None, 400), None);
    }

    #[test]
    fn block_numbers_past_a_tids_reach_read_to_the_end() {
        let range = chunk_range(Some(u32::MAX - 2), Some(u32::MAX - 1), Some(100), u64::MAX).unwrap();
        assert_eq!((range.end, range.last, range.complete), (None, TO_THE_END, true));
    }

    #[test]
    fn partitions_split_the_blocks_evenly_without_empty_ones() {
        assert_eq!(partition_bounds(1000, 4), vec![249, 499, 749]);
        assert_eq!(partition_bounds(1000, 1), Vec::<u32>::new());
        assert_eq!(partition_bounds(3, 8), vec![0, 1], "fewer blocks than parts");
        assert_eq!(partition_bounds(0, 4), Vec::<u32>::new());
    }

    #[test]
    fn chunks_cover_their_rows_in_whole_blocks() {
        assert_eq!(blocks_for_rows(100_000, 60.0), 1667);
        assert_eq!(blocks_for_rows(100_000, 0.0), 100_000, "unknown density: a row a block");
        assert_eq!(blocks_for_rows(10, 500.0), 1);
        assert_eq!(blocks_for_rows(100, f64::NAN), 100);
    }

    #[test]
    fn bases_and_blocks_round_trip_through_the_state_text() {
        let basis = Basis { xmin: 5_000_000_123, filenode: 16_390 };
        assert_eq!(basis.to_state(), "snapshot xmin 5000000123 filenode 16390");
        assert_eq!(Basis::from_state(&basis.to_state()), Ok(basis));
        assert!(Basis::from_state("snapshot xmin x filenode 1").unwrap_err().contains("is not"));
        assert_eq!(block_from_state(&block_to_state(42)), Some(42));
        assert_eq!(block_from_state(&block_to_state(TO_THE_END)), Some(TO_THE_END));
        assert_eq!(block_from_state("42"), None, "an integer key is not a block");
    }
}
