//! The plan stage (pure, invariant 7): from the commit log's next offset, the trigger's end and the
//! limits, the exact range of the next batch. Ranges are cut by offsets only, never by the clock,
//! so a retry plans the same range; the bytes limit cuts later, at a record the data decides.

/// The next batch `[start, end)`: at most `max_records` offsets from `next`, never past `end`.
pub fn batch_range(next: i64, end: i64, max_records: u64) -> (i64, i64) {
    let max = i64::try_from(max_records).unwrap_or(i64::MAX);
    (next, end.min(next.saturating_add(max)).max(next))
}

/// Records an event delivered that are still to be synced: those at or after the log's next
/// offset (earlier ones are redeliveries), and the end of the range they imply.
pub fn delivered_range(next: i64, offsets: &[i64]) -> Option<i64> {
    offsets
        .iter()
        .copied()
        .filter(|&o| o >= next)
        .max()
        .map(|last| last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_cut_by_offsets() {
        assert_eq!(batch_range(10, 100, 50), (10, 60));
        assert_eq!(batch_range(10, 30, 50), (10, 30));
        assert_eq!(batch_range(30, 30, 50), (30, 30));
        assert_eq!(batch_range(40, 30, 50), (40, 40));
        assert_eq!(
            batch_range(i64::MAX - 1, i64::MAX, u64::MAX),
            (i64::MAX - 1, i64::MAX)
        );
    }

    #[test]
    fn redeliveries_are_dropped() {
        assert_eq!(delivered_range(5, &[1, 2, 3]), None);
        assert_eq!(delivered_range(5, &[4, 5, 6]), Some(7));
        assert_eq!(delivered_range(0, &[]), None);
    }
}
