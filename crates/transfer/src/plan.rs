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

/// The planner's settings, from the `migration` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanSettings {
    pub large_table_threshold: u64,
    pub max_partitions: u32,
    pub min_rows_per_partition: u64,
}

impl From<&mssql_pg_migrate_config::MigrationConfig> for PlanSettings {
    fn from(m: &mssql_pg_migrate_config::MigrationConfig) -> Self {
        PlanSettings {
            large_table_threshold: m.large_table_threshold,
            max_partitions: m.max_partitions,
            min_rows_per_partition: m.min_rows_per_partition,
        }
    }
}

/// How many partitions a table of `rows` rows gets: one below the
/// threshold; above it, as many as keep `min_rows_per_partition` rows each,
/// up to `max_partitions`.
pub fn partition_count(rows: u64, s: PlanSettings) -> u32 {
    if rows < s.large_table_threshold || rows == 0 {
        return 1;
    }
    let by_size = rows / s.min_rows_per_partition.max(1);
    u32::try_from(by_size).unwrap_or(u32::MAX).clamp(1, s.max_partitions.max(1))
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

    const S: PlanSettings =
        PlanSettings { large_table_threshold: 1000, max_partitions: 4, min_rows_per_partition: 300 };

    #[test]
    fn small_tables_stay_whole_and_large_ones_split_within_limits() {
        assert_eq!(partition_count(0, S), 1);
        assert_eq!(partition_count(999, S), 1);
        assert_eq!(partition_count(1000, S), 3);
        assert_eq!(partition_count(1_000_000, S), 4);
        let no_min = PlanSettings { min_rows_per_partition: 0, ..S };
        assert_eq!(partition_count(5000, no_min), 4);
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
    fn no_bounds_is_one_open_partition() {
        assert_eq!(partitions_from_bounds(Vec::<i64>::new()), vec![Partition { id: 0, after: None, upto: None }]);
    }
}
