//! File positions of the last batches appended to a segment, in memory.
//!
//! Offset translation starts at the sparse offset index's entry and walks batch headers from
//! there, one `pread` per header (Kafka's `FileRecords.searchForOffsetWithSize` does the same).
//! With `index.interval.bytes` at 4 KiB and small batches, a follower or a consumer tailing the
//! log walks a dozen or more headers per fetch, and a capped consumer read walks twice (to the
//! fetch offset and to the high watermark). Nearly every such read asks for one of the last few
//! batches, whose positions the append just learned: this keeps them, so the walk starts at the
//! batch itself and reads one header. It is only a better starting point: the header at the
//! position is still read and checked, and anything older falls back to the index.

use std::collections::VecDeque;

/// Batches remembered per segment: enough for every follower and consumer that is less than
/// this many batches behind; 16 bytes each.
const CAPACITY: usize = 256;

/// (last offset, file position) of the most recent batches of one segment, oldest first.
#[derive(Debug, Default)]
pub(crate) struct TailPositions {
    batches: VecDeque<(i64, u64)>,
}

impl TailPositions {
    /// Records a batch appended at `pos` whose last offset is `last_offset`; positions and
    /// offsets only grow within a segment.
    pub(crate) fn push(&mut self, last_offset: i64, pos: u64) {
        if self
            .batches
            .back()
            .is_some_and(|&(o, p)| o >= last_offset || p >= pos)
        {
            // Out of order (cannot happen for appends): start over rather than mislead.
            self.batches.clear();
        }
        if self.batches.len() == CAPACITY {
            self.batches.pop_front();
        }
        self.batches.push_back((last_offset, pos));
    }

    /// A position to start looking for the first batch whose last offset is ≥ `offset`: that
    /// batch's own position when it is known to be the first such batch, the position of the
    /// last remembered batch when every remembered batch ends before `offset`, and `None`
    /// (use the index) when the answer may lie before the remembered batches.
    pub(crate) fn start_for(&self, offset: i64) -> Option<u64> {
        let i = self.batches.partition_point(|&(last, _)| last < offset);
        match i {
            // The first remembered batch may not be the first to reach `offset`.
            0 => None,
            // Every remembered batch ends before `offset`: whatever follows the last one.
            n if n == self.batches.len() => self.batches.back().map(|&(_, p)| p),
            // The batch before ends below `offset`, so this one is the first to reach it.
            n => self.batches.get(n).map(|&(_, p)| p),
        }
    }

    /// Forgets batches at or after `size` (the file was truncated to `size` bytes).
    pub(crate) fn truncate_to_size(&mut self, size: u64) {
        while self.batches.back().is_some_and(|&(_, p)| p >= size) {
            self.batches.pop_back();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.batches = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of 3 offsets and 100 bytes: batch k holds offsets 3k..3k+2 at position 100k.
    fn filled(n: i64) -> TailPositions {
        let mut t = TailPositions::default();
        for k in 0..n {
            t.push(3 * k + 2, 100 * k as u64);
        }
        t
    }

    #[test]
    fn an_offset_inside_a_remembered_batch_starts_at_that_batch() {
        let t = filled(10);
        assert_eq!(t.start_for(9), Some(300));
        assert_eq!(t.start_for(10), Some(300));
        assert_eq!(t.start_for(11), Some(300));
        assert_eq!(t.start_for(12), Some(400));
        assert_eq!(t.start_for(29), Some(900));
    }

    #[test]
    fn the_first_remembered_batch_is_not_trusted_and_the_end_starts_at_the_last_batch() {
        let t = filled(10);
        assert_eq!(t.start_for(0), None);
        assert_eq!(t.start_for(2), None);
        // Past the last batch: start at it; the scan steps over it and finds nothing.
        assert_eq!(t.start_for(30), Some(900));
        assert_eq!(TailPositions::default().start_for(5), None);
    }

    #[test]
    fn capacity_drops_the_oldest_and_truncation_the_newest() {
        let mut t = filled(CAPACITY as i64 + 10);
        // Batch 10 is the oldest kept, so offsets in it are not trusted.
        assert_eq!(t.start_for(31), None);
        assert_eq!(t.start_for(33), Some(1100));
        t.truncate_to_size(1150);
        assert_eq!(t.start_for(40), Some(1100));
        t.truncate_to_size(1100);
        assert_eq!(t.start_for(40), Some(1000));
        t.clear();
        assert_eq!(t.start_for(40), None);
    }

    #[test]
    fn an_out_of_order_push_forgets_what_came_before() {
        let mut t = filled(5);
        t.push(4, 50);
        assert_eq!(t.start_for(4), None);
        assert_eq!(t.start_for(5), Some(50));
    }
}
