//! The `LogManager` (Kafka's `LogManager`): owns the data directories and every partition
//! log in them. It loads (and after a crash, recovers) logs at startup, creates and deletes
//! logs for the replica manager, runs retention / flush / checkpoint tasks, and performs the
//! clean shutdown that lets the next start skip recovery.

use super::checkpoint::{
    self, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT, REPLICATION_OFFSET_CHECKPOINT,
};
use super::config::{BackgroundIntervals, LogConfig};
use super::deleter;
use super::dir_failure::{self, DataDir, FailureReceiver};
use super::error::{IoContext, LogError};
use super::meta::{self, DirLock};
use super::partition_log::{Log, OpenParams};
use super::types::TopicPartition;
use crate::util::clock::now_ms;
use crate::util::sync::{lock, read, write};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Marker written by a clean shutdown; its absence at startup means "recover".
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
/// Suffix of a partition directory awaiting deletion.
pub const DELETE_DIR_SUFFIX: &str = "-delete";
/// Suffix of a partition directory being moved between log dirs (not supported here).
pub const FUTURE_DIR_SUFFIX: &str = "-future";

/// Supplies each partition's high watermark to retention (`None`: skip the partition,
/// e.g. no longer hosted).
pub type HighWatermarkFn = Arc<dyn Fn(&TopicPartition) -> Option<i64> + Send + Sync>;

/// Cheap-clone handle; all clones share one set of logs.
#[derive(Clone)]
pub struct LogManager {
    inner: Arc<Inner>,
}

struct Inner {
    dirs: Vec<Arc<DataDir>>,
    failures: Mutex<Option<FailureReceiver>>,
    /// Released on shutdown so the directories can be reopened in the same process.
    locks: Mutex<Vec<DirLock>>,
    default_config: LogConfig,
    logs: RwLock<BTreeMap<TopicPartition, Arc<Log>>>,
    /// Serialises log creation so two callers cannot create the same partition twice.
    create_lock: Mutex<()>,
    /// Serialises checkpoint writes (background task vs. delete_log vs. shutdown).
    checkpoint_lock: Mutex<()>,
    shut_down: AtomicBool,
}

impl std::fmt::Debug for LogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogManager")
            .field("dirs", &self.inner.dirs)
            .field("logs", &read(&self.inner.logs).len())
            .finish()
    }
}

/// A partition directory found at startup, with what is needed to open it.
struct Found {
    tp: TopicPartition,
    path: PathBuf,
    config: LogConfig,
}

/// Reads an offsets checkpoint, treating a corrupt one as empty (recover from 0) as Kafka does.
fn read_checkpoint_or_empty(path: &Path) -> BTreeMap<TopicPartition, i64> {
    checkpoint::read_offsets(path).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring unreadable checkpoint; resetting it");
        BTreeMap::new()
    })
}

fn list_partition_dirs(
    dir: &Path,
    topic_configs: &dyn Fn(&str) -> LogConfig,
) -> Result<Vec<Found>, LogError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        if !entry.file_type().at(&path)?.is_dir() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(DELETE_DIR_SUFFIX) {
            tracing::info!(dir = %path.display(), "removing partition directory marked for deletion");
            deleter::remove_now(&path);
        } else if name.ends_with(FUTURE_DIR_SUFFIX) {
            tracing::warn!(dir = %path.display(), "ignoring future replica directory (log dir moves are not supported)");
        } else if let Some(tp) = TopicPartition::from_dir_name(name) {
            let config = topic_configs(&tp.topic);
            found.push(Found { tp, path, config });
        } else {
            tracing::warn!(dir = %path.display(), "ignoring directory that is not <topic>-<partition>");
        }
    }
    Ok(found)
}

type LoadResult = Result<Vec<(TopicPartition, Arc<Log>)>, LogError>;

/// Opens every log of one data directory on `threads` threads of its own (Kafka's
/// `num.recovery.threads.per.data.dir`); runs on the directory's thread at startup.
fn load_dir(data_dir: &Arc<DataDir>, found: Vec<Found>, threads: usize) -> LoadResult {
    let dir = data_dir.path();
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let had_clean_shutdown = marker.exists();
    let recovery_points = read_checkpoint_or_empty(&dir.join(RECOVERY_POINT_CHECKPOINT));
    let log_starts = read_checkpoint_or_empty(&dir.join(LOG_START_OFFSET_CHECKPOINT));
    tracing::info!(dir = %dir.display(), had_clean_shutdown, partitions = found.len(), "loading logs");
    let open = |f: Found| -> Result<(TopicPartition, Arc<Log>), LogError> {
        let params = OpenParams {
            recovery_point: recovery_points.get(&f.tp).copied().unwrap_or(0),
            log_start_offset: log_starts.get(&f.tp).copied().unwrap_or(0),
            had_clean_shutdown,
            data_dir: Arc::clone(data_dir),
        };
        let log = Log::open(f.path, f.tp.clone(), f.config, params)?;
        Ok((f.tp, log))
    };
    let total = found.len();
    let per_thread = total.div_ceil(threads.max(1)).max(1);
    let mut groups: Vec<Vec<Found>> = Vec::new();
    let mut rest = found.into_iter().peekable();
    while rest.peek().is_some() {
        groups.push(rest.by_ref().take(per_thread).collect());
    }
    let opened: Vec<LoadResult> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| s.spawn(|| group.into_iter().map(open).collect::<LoadResult>()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(LogError::InvalidArgument {
                        topic_partition: String::new(),
                        reason: "log recovery thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut logs = Vec::with_capacity(total);
    for group in opened {
        logs.extend(group?);
    }
    if had_clean_shutdown {
        std::fs::remove_file(&marker).at(&marker)?;
    }
    Ok(logs)
}

impl LogManager {
    /// Opens the data directories, verifies their identity, and loads every log; see the
    /// module docs. Each directory is loaded on its own thread (Kafka's
    /// `num.recovery.threads.per.data.dir` = 1).
    pub fn startup(
        log_dirs: &[PathBuf],
        broker_id: i32,
        cluster_id: &str,
        default_config: LogConfig,
        topic_configs: &dyn Fn(&str) -> LogConfig,
    ) -> Result<LogManager, LogError> {
        Self::startup_with_threads(
            log_dirs,
            broker_id,
            cluster_id,
            default_config,
            topic_configs,
            1,
        )
    }

    /// [`Self::startup`] with `recovery_threads` threads loading each directory.
    pub fn startup_with_threads(
        log_dirs: &[PathBuf],
        broker_id: i32,
        cluster_id: &str,
        default_config: LogConfig,
        topic_configs: &dyn Fn(&str) -> LogConfig,
        recovery_threads: usize,
    ) -> Result<LogManager, LogError> {
        if log_dirs.is_empty() {
            return Err(LogError::NoLogDirs);
        }
        let (dirs, failures) = dir_failure::register(log_dirs);
        let mut locks = Vec::new();
        let mut per_dir = Vec::new();
        for dir in &dirs {
            let path = dir.path();
            let prepared = std::fs::create_dir_all(path)
                .at(path)
                .and_then(|()| DirLock::acquire(path))
                .and_then(|lock| {
                    meta::check_or_write(path, broker_id, cluster_id)?;
                    Ok((lock, list_partition_dirs(path, topic_configs)?))
                });
            match prepared {
                Ok((lock, found)) => {
                    locks.push(lock);
                    per_dir.push((Arc::clone(dir), found));
                }
                // An I/O error has taken the directory offline (Kafka's
                // createAndValidateLogDirs): the broker starts on the others.
                Err(e) if dir.is_offline() => {
                    tracing::error!(dir = %path.display(), error = %e,
                        "log directory unusable at start-up; continuing without it");
                }
                Err(e) => return Err(e),
            }
        }
        let results: Vec<(Arc<DataDir>, LoadResult)> = std::thread::scope(|s| {
            let handles: Vec<_> = per_dir
                .into_iter()
                .map(|(dir, found)| {
                    let loader = Arc::clone(&dir);
                    (
                        dir,
                        s.spawn(move || load_dir(&loader, found, recovery_threads)),
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(dir, h)| {
                    let result = h.join().unwrap_or_else(|_| {
                        Err(LogError::InvalidArgument {
                            topic_partition: String::new(),
                            reason: "log loading thread panicked".into(),
                        })
                    });
                    (dir, result)
                })
                .collect()
        });
        let mut logs = BTreeMap::new();
        for (dir, result) in results {
            let loaded = match result {
                Ok(loaded) => loaded,
                Err(e) if dir.is_offline() => {
                    tracing::error!(dir = %dir.path().display(), error = %e,
                        "cannot load the logs of a log directory; continuing without it");
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (tp, log) in loaded {
                if let Some(other) = logs.insert(tp.clone(), log) {
                    return Err(LogError::InvalidArgument {
                        topic_partition: tp.to_string(),
                        reason: format!(
                            "found in two log directories (one is {})",
                            other.dir().display()
                        ),
                    });
                }
            }
        }
        if dirs.iter().all(|d| d.is_offline()) {
            return Err(LogError::AllDirsOffline);
        }
        tracing::info!(
            logs = logs.len(),
            dirs = log_dirs.len(),
            offline_dirs = dirs.iter().filter(|d| d.is_offline()).count(),
            "log manager started"
        );
        Ok(LogManager {
            inner: Arc::new(Inner {
                dirs,
                failures,
                locks: Mutex::new(locks),
                default_config,
                logs: RwLock::new(logs),
                create_lock: Mutex::new(()),
                checkpoint_lock: Mutex::new(()),
                shut_down: AtomicBool::new(false),
            }),
        })
    }

    /// The receiver of log-directory failures; the first caller gets it.
    pub fn take_failure_receiver(&self) -> Option<FailureReceiver> {
        dir_failure::take(&self.inner.failures)
    }

    /// Kafka's `LogManager.handleLogDirFailure`: forgets every log of the offline directory
    /// `dir` and returns their partitions. The directory is never used again by this process.
    pub fn handle_dir_failure(&self, dir: &Path) -> Vec<TopicPartition> {
        if let Some(d) = self.inner.dirs.iter().find(|d| d.path() == dir) {
            d.fail("handling the failure of the log directory");
        }
        let mut logs = write(&self.inner.logs);
        let gone: Vec<TopicPartition> = logs
            .iter()
            .filter(|(_, l)| l.data_dir().path() == dir)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in &gone {
            logs.remove(tp);
        }
        tracing::error!(dir = %dir.display(), partitions = gone.len(),
            live_dirs = self.live_dirs().len(), "log directory taken offline");
        gone
    }

    /// The data directories still online.
    pub fn live_dirs(&self) -> Vec<PathBuf> {
        self.inner
            .dirs
            .iter()
            .filter(|d| !d.is_offline())
            .map(|d| d.path().to_path_buf())
            .collect()
    }

    /// The data directories taken offline.
    pub fn offline_dirs(&self) -> Vec<PathBuf> {
        self.inner
            .dirs
            .iter()
            .filter(|d| d.is_offline())
            .map(|d| d.path().to_path_buf())
            .collect()
    }

    pub fn default_config(&self) -> &LogConfig {
        &self.inner.default_config
    }

    /// Every configured data directory, online or not.
    pub fn log_dirs(&self) -> Vec<PathBuf> {
        self.inner
            .dirs
            .iter()
            .map(|d| d.path().to_path_buf())
            .collect()
    }

    /// Runs `f` for each online data directory; one directory's failure (which has taken it
    /// offline) does not stop the others. The first error is returned.
    fn for_live_dirs(
        &self,
        mut f: impl FnMut(&Path) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut first_error = None;
        for dir in self.inner.dirs.iter().filter(|d| !d.is_offline()) {
            if let Err(e) = f(dir.path()) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub fn get_log(&self, tp: &TopicPartition) -> Option<Arc<Log>> {
        read(&self.inner.logs).get(tp).cloned()
    }

    pub fn all_logs(&self) -> Vec<(TopicPartition, Arc<Log>)> {
        read(&self.inner.logs)
            .iter()
            .map(|(tp, log)| (tp.clone(), Arc::clone(log)))
            .collect()
    }

    /// Returns the log, creating it empty in the online data directory holding the fewest
    /// partitions (ties: the first listed).
    pub fn get_or_create_log(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
    ) -> Result<Arc<Log>, LogError> {
        self.get_or_create_log_for(tp, config, true)
    }

    /// [`Self::get_or_create_log`] for a LeaderAndIsr partition: one that is not new to the
    /// cluster (`is_new` false) may have its log in an offline directory, so it is not
    /// created empty elsewhere while any directory is offline (Kafka's rule: an empty replica
    /// could otherwise be elected leader over the data).
    pub fn get_or_create_log_for(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        is_new: bool,
    ) -> Result<Arc<Log>, LogError> {
        if let Some(log) = self.get_log(tp) {
            return Ok(log);
        }
        if !is_new {
            if let Some(dir) = self.inner.dirs.iter().find(|d| d.is_offline()) {
                return Err(LogError::DirOffline {
                    topic_partition: tp.to_string(),
                    dir: dir.path().to_path_buf(),
                });
            }
        }
        // The directory and every checkpoint line are named after the partition: a name outside
        // Kafka's rule could escape the data dir or make the checkpoints unparsable.
        if let Err(reason) = crate::common::validate_topic_name(&tp.topic) {
            return Err(LogError::InvalidArgument {
                topic_partition: tp.to_string(),
                reason: format!("illegal topic name: {reason}"),
            });
        }
        if tp.partition < 0 {
            return Err(LogError::InvalidArgument {
                topic_partition: tp.to_string(),
                reason: "negative partition".into(),
            });
        }
        let _creating = lock(&self.inner.create_lock);
        if let Some(log) = self.get_log(tp) {
            return Ok(log);
        }
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(LogError::Closed {
                topic_partition: tp.to_string(),
            });
        }
        let live: Vec<&Arc<DataDir>> = self.inner.dirs.iter().filter(|d| !d.is_offline()).collect();
        let dir = if let [only] = live.as_slice() {
            // Counting partitions per directory walks every log: skip it when there is no
            // choice, or creating N partitions costs O(N²).
            Arc::clone(only)
        } else {
            let logs = read(&self.inner.logs);
            let count = |d: &DataDir| {
                logs.values()
                    .filter(|l| l.dir().parent() == Some(d.path()))
                    .count()
            };
            live.iter()
                .min_by_key(|d| count(d))
                .map(|d| Arc::clone(d))
                .ok_or(LogError::AllDirsOffline)?
        };
        let path = dir.path().join(tp.to_string());
        let params = OpenParams {
            recovery_point: 0,
            log_start_offset: 0,
            had_clean_shutdown: true,
            data_dir: Arc::clone(&dir),
        };
        let log = Log::open(path, tp.clone(), config, params)?;
        checkpoint::fsync_dir(dir.path())?;
        write(&self.inner.logs).insert(tp.clone(), Arc::clone(&log));
        tracing::info!(topic = %tp.topic, partition = tp.partition, dir = %dir.path().display(), "created log");
        Ok(log)
    }

    /// StopReplica(delete=true): forgets the log, renames its directory to
    /// `<topic>-<partition>.<uuid>-delete` and removes it after `file.delete.delay.ms`.
    pub fn delete_log(&self, tp: &TopicPartition) -> Result<(), LogError> {
        self.delete_logs(std::slice::from_ref(tp))
            .pop()
            .unwrap_or(Ok(()))
    }

    /// [`Self::delete_log`] for many partitions: each data directory is fsynced and has its
    /// checkpoints rewritten once for the whole batch, not once per partition (a 10,000-partition
    /// topic would otherwise rewrite a 10,000-line checkpoint 10,000 times). One outcome per
    /// partition, in order.
    pub fn delete_logs(&self, partitions: &[TopicPartition]) -> Vec<Result<(), LogError>> {
        let mut out = Vec::with_capacity(partitions.len());
        let mut parents: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
        for tp in partitions {
            let Some(log) = write(&self.inner.logs).remove(tp) else {
                out.push(Ok(()));
                continue;
            };
            log.mark_deleted();
            let dir = log.dir().to_path_buf();
            let parent = dir.parent().map(Path::to_path_buf).unwrap_or_default();
            let renamed = parent.join(format!(
                "{}.{}{DELETE_DIR_SUFFIX}",
                tp,
                uuid::Uuid::new_v4().simple()
            ));
            match std::fs::rename(&dir, &renamed).at(&dir) {
                Ok(()) => {
                    tracing::info!(topic = %tp.topic, partition = tp.partition,
                        dir = %renamed.display(), "scheduled log for deletion");
                    deleter::schedule(vec![renamed], log.config().file_delete_delay_ms);
                    parents.entry(parent).or_default().push(out.len());
                    out.push(Ok(()));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        for (parent, indexes) in parents {
            let synced =
                checkpoint::fsync_dir(&parent).and_then(|()| self.write_checkpoints_for(&parent));
            if let Err(e) = synced {
                tracing::warn!(dir = %parent.display(), error = %e, "cannot sync after log deletion");
                for i in indexes {
                    out[i] = Err(LogError::Io {
                        path: parent.clone(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            }
        }
        out
    }

    /// Applies a new config to every log of `topic` (AlterConfigs / config change notification).
    pub fn update_config(&self, topic: &str, config: LogConfig) {
        for (tp, log) in self.all_logs() {
            if tp.topic == topic {
                log.set_config(config.clone());
            }
        }
    }

    fn logs_in(&self, dir: &Path) -> Vec<(TopicPartition, Arc<Log>)> {
        self.all_logs()
            .into_iter()
            .filter(|(_, log)| log.dir().parent() == Some(dir))
            .collect()
    }

    fn write_checkpoints_for(&self, dir: &Path) -> Result<(), LogError> {
        let _guard = lock(&self.inner.checkpoint_lock);
        let logs = self.logs_in(dir);
        let recovery: BTreeMap<_, _> = logs
            .iter()
            .map(|(tp, l)| (tp.clone(), l.recovery_point()))
            .collect();
        checkpoint::write_offsets(&dir.join(RECOVERY_POINT_CHECKPOINT), &recovery)?;
        let starts: BTreeMap<_, _> = logs
            .iter()
            .map(|(tp, l)| (tp.clone(), l.log_start_offset()))
            .collect();
        checkpoint::write_offsets(&dir.join(LOG_START_OFFSET_CHECKPOINT), &starts)
    }

    /// Writes `recovery-point-offset-checkpoint` in every data directory.
    pub fn checkpoint_recovery_points(&self) -> Result<(), LogError> {
        let _guard = lock(&self.inner.checkpoint_lock);
        self.for_live_dirs(|dir| {
            let points: BTreeMap<_, _> = self
                .logs_in(dir)
                .into_iter()
                .map(|(tp, l)| (tp, l.recovery_point()))
                .collect();
            checkpoint::write_offsets(&dir.join(RECOVERY_POINT_CHECKPOINT), &points)
        })
    }

    /// Writes `replication-offset-checkpoint` (the high watermarks) in every data directory, for
    /// the logs whose high watermark `high_watermark` knows.
    pub fn checkpoint_high_watermarks(
        &self,
        high_watermark: &dyn Fn(&TopicPartition) -> Option<i64>,
    ) -> Result<(), LogError> {
        let _guard = lock(&self.inner.checkpoint_lock);
        self.for_live_dirs(|dir| {
            let hws: BTreeMap<_, _> = self
                .logs_in(dir)
                .into_iter()
                .filter_map(|(tp, _)| high_watermark(&tp).map(|hw| (tp, hw)))
                .collect();
            checkpoint::write_offsets(&dir.join(REPLICATION_OFFSET_CHECKPOINT), &hws)
        })
    }

    /// The high watermarks last checkpointed in every data directory (unreadable = empty).
    pub fn read_high_watermarks(&self) -> BTreeMap<TopicPartition, i64> {
        let mut all = BTreeMap::new();
        for dir in self.inner.dirs.iter().filter(|d| !d.is_offline()) {
            all.extend(read_checkpoint_or_empty(
                &dir.path().join(REPLICATION_OFFSET_CHECKPOINT),
            ));
        }
        all
    }

    /// Writes `log-start-offset-checkpoint` in every data directory.
    pub fn checkpoint_log_start_offsets(&self) -> Result<(), LogError> {
        let _guard = lock(&self.inner.checkpoint_lock);
        self.for_live_dirs(|dir| {
            let starts: BTreeMap<_, _> = self
                .logs_in(dir)
                .into_iter()
                .map(|(tp, l)| (tp, l.log_start_offset()))
                .collect();
            checkpoint::write_offsets(&dir.join(LOG_START_OFFSET_CHECKPOINT), &starts)
        })
    }

    /// One retention pass over every log whose high watermark is known. Returns the number
    /// of segments deleted; a failing log is logged and skipped.
    pub fn cleanup_logs(&self, high_watermark: &dyn Fn(&TopicPartition) -> Option<i64>) -> usize {
        let mut total = 0;
        for (tp, log) in self.all_logs() {
            let Some(hw) = high_watermark(&tp) else {
                continue;
            };
            match log.delete_old_segments(hw) {
                Ok(n) => total += n,
                Err(e) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e, "retention failed")
                }
            }
        }
        total
    }

    /// Flushes every log whose `flush.ms` has elapsed since its last flush.
    pub fn flush_dirty_logs(&self) {
        let now = now_ms();
        for (tp, log) in self.all_logs() {
            if now.saturating_sub(log.last_flush_ms()) >= log.config().flush_interval_ms {
                if let Err(e) = log.flush() {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e, "scheduled flush failed");
                }
            }
        }
    }

    /// Runs retention, flush and checkpoint tasks until `shutdown` becomes true (or its
    /// sender is dropped). Disk work runs on the blocking pool.
    pub async fn run_background(
        &self,
        intervals: BackgroundIntervals,
        high_watermark: HighWatermarkFn,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if *shutdown.borrow() {
            return;
        }
        let mut retention = ticker(intervals.retention_check_ms);
        let mut flush = ticker(intervals.flush_check_ms);
        let mut recovery = ticker(intervals.recovery_point_checkpoint_ms);
        let mut log_start = ticker(intervals.log_start_offset_checkpoint_ms);
        let mut producer_expiry = ticker(intervals.producer_expiration_check_ms);
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                _ = tick(&mut retention) => {
                    let hw = Arc::clone(&high_watermark);
                    self.blocking("retention", move |m| {
                        let deleted = m.cleanup_logs(&*hw);
                        tracing::debug!(deleted, "retention pass done");
                    }).await;
                }
                _ = tick(&mut flush) => self.blocking("flush", |m| m.flush_dirty_logs()).await,
                _ = tick(&mut recovery) => self.blocking("recovery-point checkpoint", |m| {
                    if let Err(e) = m.checkpoint_recovery_points() {
                        tracing::warn!(error = %e, "recovery point checkpoint failed");
                    }
                }).await,
                _ = tick(&mut log_start) => self.blocking("log-start checkpoint", |m| {
                    if let Err(e) = m.checkpoint_log_start_offsets() {
                        tracing::warn!(error = %e, "log start offset checkpoint failed");
                    }
                }).await,
                _ = tick(&mut producer_expiry) => self.blocking("producer expiry", |m| {
                    let now = crate::util::clock::now_ms();
                    let expired: usize = m
                        .all_logs()
                        .iter()
                        .map(|(_, log)| log.remove_expired_producers(now))
                        .sum();
                    tracing::debug!(expired, "producer expiry pass done");
                }).await,
            }
        }
        tracing::info!("log manager background tasks stopped");
    }

    async fn blocking(&self, task: &'static str, f: impl FnOnce(&LogManager) + Send + 'static) {
        let manager = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || f(&manager)).await {
            tracing::error!(task, error = %e, "log manager background task failed");
        }
    }

    /// Clean shutdown: flushes and closes every log, writes both checkpoints and, for each
    /// directory whose logs all closed cleanly, the `.kafka_cleanshutdown` marker. The data
    /// directories are released afterwards.
    pub fn shutdown(&self) -> Result<(), LogError> {
        self.inner.shut_down.store(true, Ordering::Release);
        // An offline directory gets no checkpoint and no clean-shutdown marker: its logs are
        // recovered from their last good checkpoint at the next start.
        let result = self.for_live_dirs(|dir| {
            let mut clean = true;
            let mut first_error = None;
            for (tp, log) in self.logs_in(dir) {
                if let Err(e) = log.close() {
                    tracing::error!(topic = %tp.topic, partition = tp.partition, error = %e, "failed to close log");
                    clean = false;
                    first_error.get_or_insert(e);
                }
            }
            let result = self.write_checkpoints_for(dir).and_then(|()| {
                if !clean {
                    return Ok(());
                }
                let marker = dir.join(CLEAN_SHUTDOWN_FILE);
                std::fs::File::create(&marker)
                    .and_then(|f| f.sync_all())
                    .at(&marker)?;
                checkpoint::fsync_dir(dir)
            });
            if let Err(e) = &result {
                tracing::error!(dir = %dir.display(), error = %e, "failed to finish shutdown of log dir");
            }
            first_error.map_or(result, Err)
        });
        lock(&self.inner.locks).clear();
        tracing::info!("log manager shut down");
        result
    }
}

/// A periodic timer, or `None` (never fires) for a zero or unrepresentably long period.
fn ticker(period_ms: u64) -> Option<tokio::time::Interval> {
    if period_ms == 0 {
        return None;
    }
    let period = Duration::from_millis(period_ms);
    let start = tokio::time::Instant::now().checked_add(period)?;
    let mut interval = tokio::time::interval_at(start, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Some(interval)
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
