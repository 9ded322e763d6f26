//! The group coordinator on `__consumer_offsets` (Kafka's `GroupCoordinator` and
//! `GroupMetadataManager`, reference §7).
//!
//! A group belongs to partition `abs(hashCode(groupId)) % offsets.topic.num.partitions`
//! ([`hash`]); this broker coordinates it while it leads that partition. LeaderAndIsr tells the
//! coordinator when that changes: becoming leader starts a background load of the partition
//! ([`loader`]; requests get COORDINATOR_LOAD_IN_PROGRESS meanwhile), losing it unloads its groups
//! (NOT_COORDINATOR from then on). Membership ([`membership`]) and offsets ([`offsets`]) write
//! their records through [`store`] in Kafka's formats ([`records`]). Failures are
//! [`GroupError`]s; `api` turns them into Kafka error codes.
//!
//! [`transaction`] is the transaction coordinator's part: for now the producer ids of
//! InitProducerId.

pub mod error;
pub mod group;
pub mod hash;
pub mod loader;
pub mod membership;
pub mod offsets;
pub mod records;
pub mod store;
pub mod transaction;
pub mod txn_offsets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::KafkaConfig;
use crate::log::TopicPartition;
use crate::protocol::batch;
use crate::replication::ReplicaManager;
use crate::util::clock::now_ms;
use crate::util::periodic::spawn_every;
use crate::util::sync::lock;
pub use error::GroupError;
use loader::Replayed;
use membership::{Membership, MembershipConfig};
use store::{GroupLog, ReplicaGroupLog, OFFSETS_TOPIC};

/// Where this broker stands with one offsets partition it leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    Loading { epoch: i32 },
    Loaded { epoch: i32 },
}

struct Inner {
    membership: Membership,
    log: Arc<dyn GroupLog>,
    owned: Mutex<HashMap<i32, Ownership>>,
    replicas: ReplicaManager,
    num_partitions: i32,
    load_buffer_size: usize,
    retention_check_interval: Duration,
}

/// The group coordinator. Cheap to clone.
#[derive(Clone)]
pub struct GroupCoordinator {
    inner: Arc<Inner>,
}

impl GroupCoordinator {
    pub fn new(config: &KafkaConfig, replicas: ReplicaManager) -> Self {
        let log: Arc<dyn GroupLog> = Arc::new(ReplicaGroupLog::new(
            replicas.clone(),
            Duration::from_millis(config.offsets_commit_timeout_ms),
        ));
        let membership = Membership::new(
            MembershipConfig {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
                max_size: usize::try_from(config.group_max_size).unwrap_or(usize::MAX),
                offsets_partitions: config.offsets_topic_num_partitions,
                offset_metadata_max_bytes: config.offset_metadata_max_bytes,
                offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            },
            log.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                membership,
                log,
                owned: Mutex::new(HashMap::new()),
                replicas,
                num_partitions: config.offsets_topic_num_partitions,
                load_buffer_size: config.offsets_load_buffer_size,
                retention_check_interval: Duration::from_millis(
                    config.offsets_retention_check_interval_ms,
                ),
            }),
        }
    }

    /// Starts the session/rebalance clock, the background writer and offset expiry.
    pub fn start(&self, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let m = self.inner.membership.clone();
        let ticker = tokio::spawn(m.clone().run_ticker(shutdown.clone()));
        let writer = tokio::spawn(
            m.writes
                .clone()
                .run(self.inner.log.clone(), shutdown.clone()),
        );
        let expiry = spawn_every(self.inner.retention_check_interval, shutdown, move || {
            m.expire_offsets(now_ms());
            std::future::ready(())
        });
        vec![ticker, writer, expiry]
    }

    fn owned(&self) -> MutexGuard<'_, HashMap<i32, Ownership>> {
        lock(&self.inner.owned)
    }

    pub fn membership(&self) -> &Membership {
        &self.inner.membership
    }

    /// The offsets partition that stores `group_id`.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        hash::partition_for(group_id, self.inner.num_partitions)
    }

    /// Whether this broker may serve `group_id` now (Kafka's `validateGroupStatus`).
    ///
    /// # Errors
    /// [`GroupError::InvalidGroupId`] for an empty id, [`GroupError::LoadInProgress`] while its
    /// partition loads, [`GroupError::NotCoordinator`] when another broker leads the partition.
    pub fn check(&self, group_id: &str) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        match self.owned().get(&self.partition_for(group_id)) {
            Some(Ownership::Loaded { .. }) => Ok(()),
            Some(Ownership::Loading { .. }) => Err(GroupError::LoadInProgress),
            None => Err(GroupError::NotCoordinator),
        }
    }

    /// (loaded partitions, whether any partition is still loading), for ListGroups.
    pub fn loaded_partitions(&self) -> (Vec<i32>, bool) {
        let owned = self.owned();
        let loaded = owned
            .iter()
            .filter(|(_, o)| matches!(o, Ownership::Loaded { .. }))
            .map(|(p, _)| *p)
            .collect();
        let loading = owned
            .values()
            .any(|o| matches!(o, Ownership::Loading { .. }));
        (loaded, loading)
    }

    /// This broker became leader of offsets partition `partition` at `epoch`: load it in the
    /// background (Kafka's `onElection`). A partition already loaded stays loaded.
    pub fn on_election(&self, partition: i32, epoch: i32) {
        {
            let mut owned = self.owned();
            match owned.get(&partition) {
                Some(Ownership::Loaded { .. }) => {
                    owned.insert(partition, Ownership::Loaded { epoch });
                    return;
                }
                Some(Ownership::Loading { .. }) | None => {
                    owned.insert(partition, Ownership::Loading { epoch });
                }
            }
        }
        tracing::info!(
            topic = OFFSETS_TOPIC,
            partition,
            epoch,
            "loading groups and offsets"
        );
        let me = self.clone();
        tokio::spawn(async move { me.load(partition, epoch).await });
    }

    /// This broker no longer leads offsets partition `partition` (Kafka's `onResignation`).
    pub fn on_resignation(&self, partition: i32) {
        if self.owned().remove(&partition).is_none() {
            return;
        }
        let groups = self.inner.membership.unload(partition);
        tracing::info!(topic = OFFSETS_TOPIC, partition, groups, "unloaded groups");
    }

    async fn load(&self, partition: i32, epoch: i32) {
        let started = std::time::Instant::now();
        let me = self.clone();
        let replayed = tokio::task::spawn_blocking(move || me.replay(partition)).await;
        let replayed = match replayed {
            Ok(Ok(r)) => r,
            Ok(Err(reason)) => {
                tracing::error!(topic = OFFSETS_TOPIC, partition, epoch, %reason,
                    "loading the offsets partition failed; not coordinating its groups");
                self.forget_if_loading(partition, epoch);
                return;
            }
            Err(e) => {
                tracing::error!(topic = OFFSETS_TOPIC, partition, epoch, error = %e,
                    "offsets load task failed");
                self.forget_if_loading(partition, epoch);
                return;
            }
        };
        let skipped = replayed.skipped;
        let mut owned = self.owned();
        if owned.get(&partition) != Some(&Ownership::Loading { epoch }) {
            // Lost or re-elected meanwhile; a newer election owns the outcome.
            return;
        }
        let (groups, offsets) = self.inner.membership.install(partition, replayed);
        owned.insert(partition, Ownership::Loaded { epoch });
        tracing::info!(
            topic = OFFSETS_TOPIC,
            partition,
            epoch,
            groups,
            offsets,
            skipped,
            ms = started.elapsed().as_millis() as u64,
            "loaded groups and offsets"
        );
    }

    fn forget_if_loading(&self, partition: i32, epoch: i32) {
        let mut owned = self.owned();
        if owned.get(&partition) == Some(&Ownership::Loading { epoch }) {
            owned.remove(&partition);
        }
    }

    /// Reads the partition from its log start to its log end offset and replays it.
    fn replay(&self, partition: i32) -> Result<Replayed, String> {
        let tp = TopicPartition {
            topic: OFFSETS_TOPIC.to_string(),
            partition,
        };
        let p = self
            .inner
            .replicas
            .partition(&tp)
            .ok_or_else(|| format!("{tp} is not hosted here"))?;
        let log = p.log().clone();
        let end = log.log_end_offset();
        let mut offset = log.log_start_offset();
        let mut replayed = Replayed::default();
        while offset < end {
            let info = log
                .read(offset, self.inner.load_buffer_size, Some(end), true)
                .map_err(|e| format!("reading {tp} at {offset}: {e}"))?;
            let data = info
                .records
                .read()
                .map_err(|e| format!("reading {tp} at {offset}: {e}"))?;
            // A read may end inside a batch; replay the whole ones and read the rest again.
            let Some((next, whole)) = batch::batch_headers(&data)
                .map_while(Result::ok)
                .map(|(h, range)| (h.next_offset(), range.end))
                .last()
                .filter(|(n, _)| *n > offset)
            else {
                break;
            };
            replayed.apply_batches(&data[..whole]);
            offset = next;
        }
        Ok(replayed)
    }
}
