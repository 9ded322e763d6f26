//! Partition state znodes and topic assignments in batches, for the controller (Kafka's
//! `getTopicPartitionStatesRaw`, `createTopicPartitionStatesRaw`, `updateLeaderAndIsr`,
//! `getReplicaAssignmentForTopics`).
//!
//! Every call pipelines its requests on the one session (zookeeper-client sends a request when
//! its future is created), in chunks of `zookeeper.max.in.flight.requests`, so a batch of 10,000 partitions costs a
//! handful of round trips rather than 10,000. Writes stay fenced on the `/controller_epoch`
//! zkVersion; up to `MULTI_GROUP` partitions share one multi, and a group that fails is
//! retried partition by partition, so one partition's conflict never blocks another.

use std::collections::BTreeSet;

use tracing::warn;
use zookeeper_client::{Error as ClientError, MultiWriteResult};

use super::client::KafkaZkClient;
use super::data::{self, LeaderIsrAndControllerEpoch, TopicAssignment};
use super::error::ZkError;
use super::ops::CheckedOp;
use super::paths::{partition_state_path, topic_partition_path, topic_partitions_path, topic_path};
use super::topics::check_topic_path;
use super::watch::Watch;
use crate::common::TopicPartition;

/// zkVersion of a freshly created znode.
const INITIAL_ZK_VERSION: i32 = 0;

/// A partition state with the zkVersion it was read at.
pub type VersionedState = (LeaderIsrAndControllerEpoch, i32);

/// The outcome of one partition's write in a batch: its new zkVersion, or why it failed
/// (`BadVersion` when someone changed it meanwhile, `NodeExists` for a create).
pub type WriteOutcome = Result<i32, ZkError>;

/// A fencing or session failure stops the whole batch (the controller must resign or re-elect);
/// anything else is that partition's own outcome.
fn is_batch_fatal(e: &ZkError) -> bool {
    e.is_controller_moved() || e.is_session_lost()
}

impl KafkaZkClient {
    /// The states of `partitions` (any topics), in input order; `None` where no state znode
    /// exists or its JSON does not decode (logged with the znode's path). One pipelined read
    /// per partition.
    ///
    /// # Errors
    /// `InvalidTopic`, ZooKeeper failures.
    pub async fn get_partition_states_batch(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Option<VersionedState>>, ZkError> {
        for topic in partitions
            .iter()
            .map(|tp| &tp.topic)
            .collect::<BTreeSet<_>>()
        {
            check_topic_path(topic)?;
        }
        let paths: Vec<String> = partitions
            .iter()
            .map(|tp| partition_state_path(&tp.topic, tp.partition))
            .collect();
        let nodes = self.get_data_many(&paths).await?;
        Ok(paths
            .iter()
            .zip(nodes)
            .map(|(path, node)| {
                let (bytes, stat) = node?;
                // Kafka's decode yields no state for bad JSON: the partition is then left
                // unelected (and logged) instead of failing the whole batch, which would make a
                // failover fail and the controller move around forever.
                data::decode_partition_state(&bytes)
                    .map(|s| (s, stat.version))
                    .map_err(
                        |e| warn!(path = %path, error = %e, "skipping undecodable partition state"),
                    )
                    .ok()
            })
            .collect())
    }

    /// Conditional writes of many partition states, each `multi(check epoch, setData state at
    /// expected version)`, pipelined. Returns one outcome per write, in order.
    ///
    /// # Errors
    /// `ControllerMoved` or a lost session stop the batch (writes already applied stay applied:
    /// they carried this controller's epoch, which was valid when ZooKeeper applied them).
    pub async fn update_partition_states_batch(
        &self,
        writes: &[(TopicPartition, LeaderIsrAndControllerEpoch, i32)],
        epoch_zk_version: i32,
    ) -> Result<Vec<WriteOutcome>, ZkError> {
        let prepared: Vec<(String, Vec<u8>, i32)> = writes
            .iter()
            .map(|(tp, state, version)| {
                (
                    partition_state_path(&tp.topic, tp.partition),
                    data::encode_partition_state(state),
                    *version,
                )
            })
            .collect();
        let items: Vec<Vec<CheckedOp<'_>>> = prepared
            .iter()
            .map(|(path, payload, version)| {
                vec![CheckedOp::SetData {
                    path,
                    data: payload,
                    expected_version: *version,
                }]
            })
            .collect();
        let replies = self.epoch_checked_items(epoch_zk_version, &items).await;
        let mut out = Vec::with_capacity(writes.len());
        for ((path, _, version), reply) in prepared.iter().zip(replies) {
            let outcome = match reply {
                Ok(results) => match results.into_iter().next() {
                    Some(MultiWriteResult::SetData { stat }) => Ok(stat.version),
                    _ => Err(ZkError::Zk {
                        path: path.clone(),
                        source: ClientError::UnexpectedError(
                            "multi answered setData with another result".into(),
                        ),
                    }),
                },
                Err(f) => match f.error {
                    e if is_batch_fatal(&e) => return Err(e),
                    ZkError::BadVersion { path, .. } => Err(ZkError::BadVersion {
                        path,
                        expected: Some(*version),
                    }),
                    e => Err(e),
                },
            };
            out.push(outcome);
        }
        Ok(out)
    }

    /// Creates the state znodes of many new partitions (any topics): `…/partitions` once per
    /// topic, then per partition `multi(check epoch, create …/partitions/<p>, create …/state)`,
    /// pipelined; where the partition's directory already existed, the state alone is created.
    /// Returns one outcome per partition, in order (`NodeExists`: the state existed). The topic
    /// znode is never created here, so a topic deleted meanwhile is not resurrected.
    ///
    /// # Errors
    /// `ControllerMoved`, a lost session, `InvalidTopic`, or a failure creating `…/partitions`.
    pub async fn create_partition_states_batch(
        &self,
        creates: &[(TopicPartition, LeaderIsrAndControllerEpoch)],
        epoch_zk_version: i32,
    ) -> Result<Vec<WriteOutcome>, ZkError> {
        let topics: BTreeSet<&str> = creates.iter().map(|(tp, _)| tp.topic.as_str()).collect();
        for topic in &topics {
            check_topic_path(topic)?;
        }
        let dirs: Vec<String> = topics.iter().map(|t| topic_partitions_path(t)).collect();
        let pending: Vec<_> = dirs
            .iter()
            .map(|path| self.epoch_checked(epoch_zk_version, CheckedOp::Create { path, data: &[] }))
            .collect();
        for reply in pending {
            match reply.await {
                Ok(_) | Err(ZkError::NodeExists { .. }) => {}
                // The topic itself is gone: its partitions fail below with NoNode.
                Err(ZkError::NoNode { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let prepared: Vec<(String, String, Vec<u8>)> = creates
            .iter()
            .map(|(tp, state)| {
                (
                    topic_partition_path(&tp.topic, tp.partition),
                    partition_state_path(&tp.topic, tp.partition),
                    data::encode_partition_state(state),
                )
            })
            .collect();
        let items: Vec<Vec<CheckedOp<'_>>> = prepared
            .iter()
            .map(|(dir, path, payload)| {
                vec![
                    CheckedOp::Create {
                        path: dir,
                        data: &[],
                    },
                    CheckedOp::Create {
                        path,
                        data: payload,
                    },
                ]
            })
            .collect();
        let replies = self.epoch_checked_items(epoch_zk_version, &items).await;
        let mut out = Vec::with_capacity(creates.len());
        for ((_, path, payload), reply) in prepared.iter().zip(replies) {
            let outcome = match reply {
                Ok(results) => Ok(created_version(results.get(1))),
                Err(f) if is_batch_fatal(&f.error) => return Err(f.error),
                // The directory existed (an earlier, interrupted attempt): state alone.
                Err(f) if f.op == Some(0) && matches!(f.error, ZkError::NodeExists { .. }) => {
                    let op = CheckedOp::Create {
                        path,
                        data: payload,
                    };
                    match self.epoch_checked(epoch_zk_version, op).await {
                        Ok(result) => Ok(created_version(Some(&result))),
                        Err(e) if is_batch_fatal(&e) => return Err(e),
                        Err(e) => Err(e),
                    }
                }
                Err(f) => Err(f.error),
            };
            out.push(outcome);
        }
        Ok(out)
    }

    /// The assignments of `topics` with a watch on each topic znode, in input order (Kafka's
    /// `getReplicaAssignmentForTopics` plus the partition-modification watches). A topic whose
    /// znode is missing is `None`; so is one whose JSON cannot be decoded, as Kafka skips it,
    /// with a warning naming the znode.
    ///
    /// # Errors
    /// `InvalidTopic`, ZooKeeper failures.
    pub async fn get_topic_assignments_and_watch(
        &self,
        topics: &[String],
    ) -> Result<Vec<(Option<TopicAssignment>, Watch)>, ZkError> {
        for topic in topics {
            check_topic_path(topic)?;
        }
        let paths: Vec<String> = topics.iter().map(|t| topic_path(t)).collect();
        let mut watches = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(self.max_in_flight()) {
            let pending: Vec<_> = chunk
                .iter()
                .map(|p| self.zk.check_and_watch_stat(p))
                .collect();
            for (path, reply) in chunk.iter().zip(pending) {
                let watcher = match reply.await {
                    Ok((_, watcher)) => watcher,
                    Err(e) if super::ops::lost(&e) => {
                        let (_, w) = self.get_data_and_watch_opt(path).await?;
                        watches.push(w);
                        continue;
                    }
                    Err(e) => return Err(ZkError::from_zk(path, e)),
                };
                watches.push(Watch::new(path, watcher));
            }
        }
        let nodes = self.get_data_many(&paths).await?;
        Ok(paths
            .iter()
            .zip(nodes)
            .zip(watches)
            .map(|((path, node), watch)| {
                let assignment = node.and_then(|(bytes, _)| {
                    data::decode_topic_assignment(&bytes)
                        .map_err(
                            |e| warn!(path = %path, error = %e, "skipping undecodable topic znode"),
                        )
                        .ok()
                });
                (assignment, watch)
            })
            .collect())
    }
}

/// The zkVersion a create reports; some servers return no stat inside a multi
/// (ZOOKEEPER-4026), and a new znode is at version 0.
fn created_version(result: Option<&MultiWriteResult>) -> i32 {
    match result {
        Some(MultiWriteResult::Create { stat, .. }) if !stat.is_invalid() => stat.version,
        _ => INITIAL_ZK_VERSION,
    }
}
