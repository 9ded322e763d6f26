//! Loading a partition directory at startup (Kafka's `Log.loadSegments` / `recoverLog`).
//!
//! After a clean shutdown the segments and their indexes are trusted, with a cheap sanity
//! check that rebuilds any index that fails it. After an unclean stop, every segment from the
//! one containing the recovery point onwards is re-read batch by batch; at the first invalid
//! byte the segment is truncated and all later segments are deleted, because nothing after a
//! hole can be trusted to be contiguous.
//!
//! A recovered segment's `.txnindex` is emptied, as is that of every later segment and of a
//! trusted segment whose index fails its check; `Loaded::txn_index_from` tells the producer
//! state rebuild where to start writing them again from the log's markers.

use super::config::LogConfig;
use super::deleter;
use super::epoch_cache::LeaderEpochCache;
use super::error::{IoContext, LogError};
use super::segment::{LogSegment, DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use super::txn_index::TXN_INDEX_SUFFIX;
use super::types::TopicPartition;
use crate::protocol::batch::BatchHeader;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The in-memory state of a loaded log.
pub(crate) struct Loaded {
    pub segments: BTreeMap<i64, LogSegment>,
    pub next_offset: i64,
    pub log_start_offset: i64,
    pub recovery_point: i64,
    /// The first segment whose `.txnindex` was emptied and must be rebuilt.
    pub txn_index_from: Option<i64>,
}

/// Where a log starts loading from: checkpointed values and how the broker last stopped.
pub(crate) struct LoadParams<'a> {
    pub tp: &'a TopicPartition,
    pub config: &'a LogConfig,
    pub recovery_point: i64,
    pub log_start_offset: i64,
    pub had_clean_shutdown: bool,
    pub now: i64,
}

/// Parses a 20-digit segment file stem.
fn parse_base_offset(stem: &str) -> Option<i64> {
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// Removes leftovers of interrupted operations and returns the base offsets of the
/// segments present.
fn scan_dir(dir: &Path, p: &LoadParams<'_>) -> Result<BTreeSet<i64>, LogError> {
    let mut bases = BTreeSet::new();
    let mut index_files = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(DELETED_SUFFIX) || name.ends_with(".cleaned") {
            deleter::remove_now(&path);
        } else if name.ends_with(".swap") {
            // Only compaction writes swap files and this broker does not compact.
            tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, file = name, "ignoring swap file");
        } else if let Some(stem) = name.strip_suffix(LOG_SUFFIX) {
            match parse_base_offset(stem) {
                Some(base) => {
                    bases.insert(base);
                }
                None => {
                    tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, file = name,
                    "ignoring log file with a malformed name")
                }
            }
        } else if let Some(stem) = name
            .strip_suffix(INDEX_SUFFIX)
            .or_else(|| name.strip_suffix(TIME_INDEX_SUFFIX))
            .or_else(|| name.strip_suffix(TXN_INDEX_SUFFIX))
        {
            if let Some(base) = parse_base_offset(stem) {
                index_files.push((base, path));
            }
        }
    }
    for (base, path) in index_files {
        if !bases.contains(&base) {
            tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, file = %path.display(),
                "deleting orphaned index file");
            deleter::remove_now(&path);
        }
    }
    Ok(bases)
}

/// Rebuilds one segment, feeding batch epochs to the cache. Returns (truncated bytes, next offset).
fn recover_segment(
    segment: &mut LogSegment,
    p: &LoadParams<'_>,
    cache: &LeaderEpochCache,
) -> Result<(u64, i64), LogError> {
    let mut on_batch = |h: &BatchHeader| -> Result<(), LogError> {
        let epoch = h.partition_leader_epoch;
        if epoch >= 0 && cache.latest_epoch().is_none_or(|latest| epoch > latest) {
            cache.assign(epoch, h.base_offset)?;
        }
        Ok(())
    };
    let r = segment.recover(p.config, &mut on_batch)?;
    if r.truncated_bytes > 0 {
        tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, segment = segment.base_offset(),
            truncated_bytes = r.truncated_bytes, next_offset = r.next_offset, "truncated corrupt tail of segment");
    }
    Ok((r.truncated_bytes, r.next_offset))
}

fn delete_segments(segments: Vec<LogSegment>, p: &LoadParams<'_>) -> Result<(), LogError> {
    let mut paths = Vec::new();
    for mut segment in segments {
        tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, segment = segment.base_offset(),
            "deleting segment during recovery");
        paths.extend(segment.rename_to_deleted()?);
    }
    deleter::schedule(paths, p.config.file_delete_delay_ms);
    Ok(())
}

/// Loads (and if needed recovers) every segment of the log in `dir`.
pub(crate) fn load_log(
    dir: &Path,
    p: &LoadParams<'_>,
    cache: &LeaderEpochCache,
) -> Result<Loaded, LogError> {
    let bases = scan_dir(dir, p)?;
    let mut segments = BTreeMap::new();
    let mut missing_index = BTreeSet::new();
    for &base in &bases {
        let segment = LogSegment::open(dir, base, p.config, p.now)?;
        // A segment without data has no index files until its first append.
        if segment.size() > 0 && !segment.indexes_on_disk() {
            missing_index.insert(base);
        }
        segments.insert(base, segment);
    }

    // Segments from the one holding the recovery point onwards are suspect after a crash.
    let first_unflushed = if p.had_clean_shutdown {
        i64::MAX
    } else {
        segments
            .range(..=p.recovery_point)
            .next_back()
            .map(|(base, _)| *base)
            .unwrap_or(i64::MIN)
    };
    if !p.had_clean_shutdown {
        tracing::info!(topic = %p.tp.topic, partition = p.tp.partition, recovery_point = p.recovery_point,
            "recovering log after unclean shutdown");
    }

    let all: Vec<i64> = segments.keys().copied().collect();
    let mut next_offset = all.first().copied().unwrap_or(p.log_start_offset);
    let mut txn_index_from: Option<i64> = None;
    for (i, &base) in all.iter().enumerate() {
        let is_last = i + 1 == all.len();
        let upper = all.get(i + 1).copied();
        let Some(segment) = segments.get_mut(&base) else {
            continue;
        };
        if txn_index_from.is_none() {
            if let Err(problem) = segment.txn_index().sanity_check(base) {
                tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, segment = base,
                    problem, "rebuilding transaction index");
                txn_index_from = Some(base);
            }
        }
        if base >= first_unflushed {
            txn_index_from.get_or_insert(base);
        }
        if txn_index_from.is_some() {
            segment.txn_index_mut().reset()?;
        }
        if base >= first_unflushed {
            let (truncated, next) = recover_segment(segment, p, cache)?;
            next_offset = next;
            if truncated > 0 && !is_last {
                let doomed: Vec<i64> = all[i + 1..].to_vec();
                let removed = doomed.iter().filter_map(|b| segments.remove(b)).collect();
                delete_segments(removed, p)?;
                break;
            }
            continue;
        }
        // Trusted segment: verify the indexes are plausible, rebuild them otherwise.
        let trusted_next = match upper {
            Some(next_base) => Ok(next_base),
            None => segment.load_tail(),
        };
        let problem = match (&trusted_next, missing_index.contains(&base)) {
            (_, true) => Some("index file missing".to_string()),
            (Err(e), _) => Some(e.to_string()),
            (Ok(n), false) => segment.sanity_check(*n).err(),
        };
        next_offset = match (problem, trusted_next) {
            (None, Ok(n)) => n,
            (problem, _) => {
                tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, segment = base,
                    problem = problem.as_deref().unwrap_or("unknown"), "rebuilding segment indexes");
                recover_segment(segment, p, cache)?.1
            }
        };
    }

    // A log whose data ends before its start offset (e.g. the start was advanced by a
    // leader before a crash) has nothing worth keeping.
    if !segments.is_empty() && next_offset < p.log_start_offset {
        tracing::warn!(topic = %p.tp.topic, partition = p.tp.partition, next_offset,
            log_start_offset = p.log_start_offset, "log end is before log start; deleting all segments");
        delete_segments(std::mem::take(&mut segments).into_values().collect(), p)?;
    }
    if segments.is_empty() {
        let start = p.log_start_offset.max(0);
        segments.insert(start, LogSegment::create(dir, start, p.config, p.now)?);
        next_offset = start;
    }
    let first_base = segments.keys().next().copied().unwrap_or(0);
    if let Some((_, active)) = segments.iter_mut().next_back() {
        active.resize_indexes(p.config.max_index_size as usize)?;
    }
    let log_start_offset = p.log_start_offset.max(first_base);
    cache.truncate_from_end(next_offset)?;
    cache.truncate_from_start(log_start_offset)?;
    Ok(Loaded {
        segments,
        next_offset,
        log_start_offset,
        recovery_point: next_offset,
        txn_index_from,
    })
}
