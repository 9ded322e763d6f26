//! The leader-epoch cache (KIP-101/279, Kafka's `LeaderEpochFileCache`): the sequence of
//! `(epoch, start offset)` pairs of a partition's log, persisted to `leader-epoch-checkpoint`
//! after every change. Followers use it to find where their log diverges from the leader's
//! (OffsetForLeaderEpoch) instead of truncating blindly to the high watermark.

use super::checkpoint;
use super::error::LogError;
use super::types::TopicPartition;
use crate::util::sync::lock;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// Answer for an unknown epoch in OffsetForLeaderEpoch.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug)]
pub struct LeaderEpochCache {
    tp: TopicPartition,
    path: PathBuf,
    /// The owning log's end offset, shared so `end_offset_for` can answer for the latest
    /// epoch without a reference back to the log.
    log_end_offset: Arc<AtomicI64>,
    entries: Mutex<Vec<EpochEntry>>,
}

impl LeaderEpochCache {
    /// Loads `<dir>/leader-epoch-checkpoint` (missing = empty).
    pub(crate) fn load(
        dir: &Path,
        tp: TopicPartition,
        log_end_offset: Arc<AtomicI64>,
    ) -> Result<LeaderEpochCache, LogError> {
        let path = dir.join(checkpoint::LEADER_EPOCH_CHECKPOINT);
        let entries = checkpoint::read_epochs(&path)?
            .into_iter()
            .map(|(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect();
        Ok(LeaderEpochCache {
            tp,
            path,
            log_end_offset,
            entries: Mutex::new(entries),
        })
    }

    fn persist(&self, entries: &[EpochEntry]) -> Result<(), LogError> {
        let pairs: Vec<(i32, i64)> = entries.iter().map(|e| (e.epoch, e.start_offset)).collect();
        checkpoint::write_epochs(&self.path, &pairs)
    }

    pub fn entries(&self) -> Vec<EpochEntry> {
        lock(&self.entries).clone()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        lock(&self.entries).last().map(|e| e.epoch)
    }

    pub fn latest_entry(&self) -> Option<EpochEntry> {
        lock(&self.entries).last().copied()
    }

    /// Records that `epoch` starts at `start_offset`. A no-op when it is already the latest
    /// epoch with an equal or earlier start; otherwise entries with an epoch ≥ `epoch` or a
    /// start ≥ `start_offset` are dropped first so the sequence stays monotonic in both.
    pub fn assign(&self, epoch: i32, start_offset: i64) -> Result<(), LogError> {
        if epoch < 0 || start_offset < 0 {
            return Err(LogError::InvalidArgument {
                topic_partition: self.tp.to_string(),
                reason: format!(
                    "leader epoch entry ({epoch}, {start_offset}) must be non-negative"
                ),
            });
        }
        let mut entries = lock(&self.entries);
        if let Some(last) = entries.last() {
            if last.epoch == epoch && last.start_offset <= start_offset {
                return Ok(());
            }
        }
        while entries
            .last()
            .is_some_and(|e| e.epoch >= epoch || e.start_offset >= start_offset)
        {
            if let Some(removed) = entries.pop() {
                tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, epoch = removed.epoch,
                    start_offset = removed.start_offset, "removed non-monotonic leader epoch entry");
            }
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        tracing::info!(topic = %self.tp.topic, partition = self.tp.partition, epoch, start_offset, "new leader epoch");
        self.persist(&entries)
    }

    /// Kafka's `endOffsetFor`: for the latest epoch, the log end offset; for an older epoch,
    /// the start offset of the next higher one, paired with the largest known epoch ≤ the
    /// request; `(-1, -1)` for an epoch above every known one or an empty cache.
    pub fn end_offset_for(&self, requested_epoch: i32) -> (i32, i64) {
        let entries = lock(&self.entries);
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested_epoch == UNDEFINED_EPOCH {
            return undefined;
        }
        let Some(last) = entries.last() else {
            return undefined;
        };
        if last.epoch == requested_epoch {
            return (requested_epoch, self.log_end_offset.load(Ordering::Acquire));
        }
        let Some(higher) = entries.iter().find(|e| e.epoch > requested_epoch) else {
            return undefined;
        };
        match entries.iter().rev().find(|e| e.epoch <= requested_epoch) {
            Some(floor) => (floor.epoch, higher.start_offset),
            None => (requested_epoch, higher.start_offset),
        }
    }

    /// After truncating the log to `end_offset`: drops epochs starting at or after it.
    pub fn truncate_from_end(&self, end_offset: i64) -> Result<(), LogError> {
        let mut entries = lock(&self.entries);
        if end_offset < 0 || entries.last().is_none_or(|e| e.start_offset < end_offset) {
            return Ok(());
        }
        entries.retain(|e| e.start_offset < end_offset);
        self.persist(&entries)
    }

    /// After the log start moved to `start_offset`: drops epochs wholly before it and moves
    /// the start of the epoch containing it up to `start_offset`.
    pub fn truncate_from_start(&self, start_offset: i64) -> Result<(), LogError> {
        let mut entries = lock(&self.entries);
        let covered = entries
            .iter()
            .take_while(|e| e.start_offset <= start_offset)
            .count();
        let Some(last_covered) = covered.checked_sub(1) else {
            return Ok(());
        };
        if last_covered == 0 && entries[0].start_offset == start_offset {
            return Ok(());
        }
        let epoch = entries[last_covered].epoch;
        entries.drain(..=last_covered);
        entries.insert(
            0,
            EpochEntry {
                epoch,
                start_offset,
            },
        );
        self.persist(&entries)
    }

    pub fn clear_and_flush(&self) -> Result<(), LogError> {
        let mut entries = lock(&self.entries);
        entries.clear();
        self.persist(&entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, leo: i64) -> LeaderEpochCache {
        LeaderEpochCache::load(
            dir,
            TopicPartition::new("t", 0),
            Arc::new(AtomicI64::new(leo)),
        )
        .unwrap()
    }

    #[test]
    fn assign_end_offset_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), 100);
        assert_eq!(c.end_offset_for(0), (-1, -1));
        c.assign(1, 0).unwrap();
        c.assign(1, 5).unwrap(); // same epoch, later start: ignored
        c.assign(3, 20).unwrap();
        c.assign(5, 60).unwrap();
        assert_eq!(c.latest_epoch(), Some(5));
        assert_eq!(c.end_offset_for(5), (5, 100));
        assert_eq!(c.end_offset_for(3), (3, 60));
        assert_eq!(c.end_offset_for(4), (3, 60));
        assert_eq!(c.end_offset_for(0), (0, 0));
        assert_eq!(c.end_offset_for(6), (-1, -1));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap(),
            "0\n3\n1 0\n3 20\n5 60\n"
        );
        let reloaded = cache(dir.path(), 100);
        assert_eq!(reloaded.entries(), c.entries());
        assert!(c.assign(-1, 0).is_err());
    }

    #[test]
    fn non_monotonic_assign_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), 100);
        c.assign(1, 0).unwrap();
        c.assign(2, 10).unwrap();
        c.assign(4, 30).unwrap();
        c.assign(3, 25).unwrap(); // drops epoch 4
        assert_eq!(c.latest_epoch(), Some(3));
        c.truncate_from_end(10).unwrap();
        assert_eq!(
            c.entries(),
            vec![EpochEntry {
                epoch: 1,
                start_offset: 0
            }]
        );
        c.assign(2, 10).unwrap();
        c.assign(3, 20).unwrap();
        c.truncate_from_start(15).unwrap();
        assert_eq!(
            c.entries(),
            vec![
                EpochEntry {
                    epoch: 2,
                    start_offset: 15
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 20
                }
            ]
        );
        c.clear_and_flush().unwrap();
        assert_eq!(c.latest_epoch(), None);
    }
}
