//! Topics: assignments (`/brokers/topics/<t>`), configs (`/config/topics/<t>`) and partition
//! state znodes (`…/partitions/<p>/state`), reference §1 and §3.
//!
//! Controller-side writes are fenced with the `/controller_epoch` zkVersion (KAFKA-6082);
//! admin-side topic creation and the leader's ISR write are not, as in Kafka.

use std::collections::BTreeMap;

use tracing::info;
use zookeeper_client::{Error as ClientError, MultiWriteResult};

use super::client::KafkaZkClient;
use super::data::{self, LeaderIsrAndControllerEpoch, TopicAssignment};
use super::error::ZkError;
use super::ops::{CheckedOp, NodeData, PERSISTENT};
use super::paths::{
    delete_topic_path, partition_state_path, topic_config_path, topic_partition_path,
    topic_partitions_path, topic_path, BROKER_TOPICS_PATH, CONFIG_TOPICS_PATH,
};
use super::watch::Watch;

/// zkVersion of a freshly created znode.
const INITIAL_ZK_VERSION: i32 = 0;

/// Rejects names that would address another znode (`a/b`, `..`) before any path is built.
/// Full Kafka name rules apply only on creation, so legacy topics stay readable.
pub(super) fn check_topic_path(topic: &str) -> Result<(), ZkError> {
    if topic.is_empty() || topic == "." || topic == ".." || topic.contains('/') {
        return Err(ZkError::InvalidTopic {
            topic: topic.to_string(),
            reason: "not usable as a znode name".to_string(),
        });
    }
    Ok(())
}

fn decode_assignment(topic: &str, bytes: &[u8]) -> Result<TopicAssignment, ZkError> {
    data::decode_topic_assignment(bytes).map_err(|e| ZkError::malformed(&topic_path(topic), e))
}

fn decode_state(
    topic: &str,
    partition: i32,
    node: NodeData,
) -> Result<(LeaderIsrAndControllerEpoch, i32), ZkError> {
    let (bytes, stat) = node;
    let state = data::decode_partition_state(&bytes)
        .map_err(|e| ZkError::malformed(&partition_state_path(topic, partition), e))?;
    Ok((state, stat.version))
}

/// NodeExists is success for directory znodes another controller may have created.
fn ignore_exists<T>(result: Result<T, ZkError>) -> Result<(), ZkError> {
    match result {
        Ok(_) | Err(ZkError::NodeExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

impl KafkaZkClient {
    /// Sorted topic names (children of `/brokers/topics`).
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn get_all_topics(&self) -> Result<Vec<String>, ZkError> {
        let mut topics = self.get_children_opt(BROKER_TOPICS_PATH).await?;
        topics.sort_unstable();
        Ok(topics)
    }

    /// Sorted topic names plus a child watch on `/brokers/topics` (controller only).
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn get_all_topics_and_watch(&self) -> Result<(Vec<String>, Watch), ZkError> {
        let (mut topics, watch) = self.get_children_and_watch(BROKER_TOPICS_PATH).await?;
        topics.sort_unstable();
        Ok((topics, watch))
    }

    /// The topic's assignment (v1, v2 or v3 JSON), or `None` if the topic does not exist.
    ///
    /// # Errors
    /// `InvalidTopic`, ZooKeeper failures, `MalformedData`.
    pub async fn get_topic_assignment(
        &self,
        topic: &str,
    ) -> Result<Option<TopicAssignment>, ZkError> {
        check_topic_path(topic)?;
        let node = self.get_data_opt(&topic_path(topic)).await?;
        node.map(|(bytes, _)| decode_assignment(topic, &bytes))
            .transpose()
    }

    /// Like [`Self::get_topic_assignment`], plus a watch on the topic znode (new partitions,
    /// reassignment, deletion).
    ///
    /// # Errors
    /// As [`Self::get_topic_assignment`].
    pub async fn get_topic_assignment_and_watch(
        &self,
        topic: &str,
    ) -> Result<(Option<TopicAssignment>, Watch), ZkError> {
        check_topic_path(topic)?;
        let (node, watch) = self.get_data_and_watch_opt(&topic_path(topic)).await?;
        let assignment = node
            .map(|(bytes, _)| decode_assignment(topic, &bytes))
            .transpose()?;
        Ok((assignment, watch))
    }

    /// Admin-side creation (`AdminZkClient.createTopicWithAssignment`): validates the name and
    /// assignment, writes `/config/topics/<t>` first, then the v3 assignment with a fresh
    /// topic id, so a broker never sees a topic without its config.
    ///
    /// # Errors
    /// `InvalidTopic` (bad name or `.`/`_` collision), `InvalidReplicaAssignment`,
    /// `TopicExists` (exists, is being deleted, or was created concurrently).
    pub async fn create_topic(
        &self,
        topic: &str,
        assignment: &BTreeMap<i32, Vec<i32>>,
        config: &BTreeMap<String, String>,
    ) -> Result<(), ZkError> {
        let invalid = |reason: String| ZkError::InvalidTopic {
            topic: topic.to_string(),
            reason,
        };
        data::validate_topic_name(topic).map_err(invalid)?;
        data::validate_assignment(assignment).map_err(|reason| {
            ZkError::InvalidReplicaAssignment {
                topic: topic.to_string(),
                reason,
            }
        })?;
        let exists = |reason: &str| ZkError::TopicExists {
            topic: topic.to_string(),
            reason: reason.to_string(),
        };
        if self.exists(&delete_topic_path(topic)).await? {
            return Err(exists("it is marked for deletion"));
        }
        let existing = self.get_all_topics().await?;
        if existing.iter().any(|t| t == topic) {
            return Err(exists("its znode exists"));
        }
        if let Some(other) = existing.iter().find(|t| data::topics_collide(t, topic)) {
            return Err(invalid(format!(
                "collides with existing topic {other:?} ('.' vs '_')"
            )));
        }
        self.write_topic_config(topic, config).await?;
        let assignment = TopicAssignment {
            topic_id: Some(data::new_topic_id()),
            partitions: assignment.clone(),
            ..TopicAssignment::default()
        };
        let path = topic_path(topic);
        let payload = data::encode_topic_assignment(&assignment);
        match self.create_recursive(&path, &payload, &PERSISTENT).await {
            Ok(_) => {
                info!(
                    topic,
                    topic_id = assignment.topic_id.as_deref().unwrap_or_default(),
                    partitions = assignment.partitions.len(),
                    "created topic in zookeeper"
                );
                Ok(())
            }
            Err(ZkError::NodeExists { .. }) => Err(exists("it was created concurrently")),
            Err(e) => Err(e),
        }
    }

    /// `setOrCreateEntityConfigs`: overwrite, or create (with parents) if missing.
    async fn write_topic_config(
        &self,
        topic: &str,
        config: &BTreeMap<String, String>,
    ) -> Result<(), ZkError> {
        let path = topic_config_path(topic);
        self.set_or_create(&path, &data::encode_config(config))
            .await
    }

    /// The topic's config overrides; empty if it has none.
    ///
    /// # Errors
    /// `InvalidTopic`, ZooKeeper failures, `MalformedData`.
    pub async fn get_topic_config(&self, topic: &str) -> Result<BTreeMap<String, String>, ZkError> {
        check_topic_path(topic)?;
        let path = topic_config_path(topic);
        match self.get_data_opt(&path).await? {
            Some((bytes, _)) => {
                data::decode_config(&bytes).map_err(|e| ZkError::malformed(&path, e))
            }
            None => Ok(BTreeMap::new()),
        }
    }

    /// Overrides of every topic under `/config/topics` (pipelined), for broker start-up.
    ///
    /// # Errors
    /// ZooKeeper failures, `MalformedData`.
    pub async fn get_all_topic_configs(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, ZkError> {
        let topics = self.get_children_opt(CONFIG_TOPICS_PATH).await?;
        let paths: Vec<String> = topics.iter().map(|t| topic_config_path(t)).collect();
        let nodes = self.get_data_many(&paths).await?;
        let mut configs = BTreeMap::new();
        for ((topic, path), node) in topics.into_iter().zip(&paths).zip(nodes) {
            if let Some((bytes, _)) = node {
                let config =
                    data::decode_config(&bytes).map_err(|e| ZkError::malformed(path, e))?;
                configs.insert(topic, config);
            }
        }
        Ok(configs)
    }

    /// A partition's state and its zkVersion, or `None` if no state znode exists yet.
    ///
    /// # Errors
    /// `InvalidTopic`, ZooKeeper failures, `MalformedData`.
    pub async fn get_partition_state(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<(LeaderIsrAndControllerEpoch, i32)>, ZkError> {
        check_topic_path(topic)?;
        let node = self
            .get_data_opt(&partition_state_path(topic, partition))
            .await?;
        node.map(|n| decode_state(topic, partition, n)).transpose()
    }

    /// States of several partitions of one topic (pipelined); partitions without a state
    /// znode are absent from the map.
    ///
    /// # Errors
    /// As [`Self::get_partition_state`].
    pub async fn get_partition_states(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, (LeaderIsrAndControllerEpoch, i32)>, ZkError> {
        check_topic_path(topic)?;
        let paths: Vec<String> = partitions
            .iter()
            .map(|p| partition_state_path(topic, *p))
            .collect();
        let nodes = self.get_data_many(&paths).await?;
        let mut states = BTreeMap::new();
        for (p, node) in partitions.iter().zip(nodes) {
            if let Some(node) = node {
                states.insert(*p, decode_state(topic, *p, node)?);
            }
        }
        Ok(states)
    }

    /// Creates the state znode of one partition (and its parents), epoch-checked. Returns the
    /// new zkVersion.
    ///
    /// # Errors
    /// `NodeExists` if the state exists, `NoNode` if the topic does not, `ControllerMoved`,
    /// ZooKeeper failures.
    pub async fn create_partition_state(
        &self,
        topic: &str,
        partition: i32,
        state: &LeaderIsrAndControllerEpoch,
        epoch_zk_version: i32,
    ) -> Result<i32, ZkError> {
        let states = [(partition, state.clone())];
        let mut results = self
            .create_partition_states(topic, &states, epoch_zk_version)
            .await?;
        match results.pop() {
            Some((_, result)) => result,
            None => Err(ZkError::NoNode {
                path: partition_state_path(topic, partition),
            }),
        }
    }

    /// `createTopicPartitionStatesRaw`: creates `…/partitions`, each `…/partitions/<p>` and
    /// each `…/state`, every write epoch-checked and pipelined. Returns one result per
    /// partition (an existing state is `NodeExists` there); fencing and session failures
    /// abort the whole call. The topic znode is never created here, so a topic deleted
    /// meanwhile is not resurrected.
    ///
    /// # Errors
    /// `NoNode` if the topic does not exist, `ControllerMoved`, `InvalidTopic`, ZooKeeper
    /// failures on the directory znodes.
    pub async fn create_partition_states(
        &self,
        topic: &str,
        states: &[(i32, LeaderIsrAndControllerEpoch)],
        epoch_zk_version: i32,
    ) -> Result<Vec<(i32, Result<i32, ZkError>)>, ZkError> {
        check_topic_path(topic)?;
        let partitions_dir = topic_partitions_path(topic);
        ignore_exists(
            self.epoch_checked(
                epoch_zk_version,
                CheckedOp::Create {
                    path: &partitions_dir,
                    data: &[],
                },
            )
            .await,
        )?;
        let dirs: Vec<String> = states
            .iter()
            .map(|(p, _)| topic_partition_path(topic, *p))
            .collect();
        let pending: Vec<_> = dirs
            .iter()
            .map(|path| self.epoch_checked(epoch_zk_version, CheckedOp::Create { path, data: &[] }))
            .collect();
        for reply in pending {
            ignore_exists(reply.await)?;
        }
        let paths: Vec<String> = states
            .iter()
            .map(|(p, _)| partition_state_path(topic, *p))
            .collect();
        let payloads: Vec<Vec<u8>> = states
            .iter()
            .map(|(_, s)| data::encode_partition_state(s))
            .collect();
        let pending: Vec<_> = paths
            .iter()
            .zip(&payloads)
            .map(|(path, data)| {
                self.epoch_checked(epoch_zk_version, CheckedOp::Create { path, data })
            })
            .collect();
        let mut results = Vec::with_capacity(states.len());
        for ((partition, _), reply) in states.iter().zip(pending) {
            match reply.await {
                Ok(MultiWriteResult::Create { stat, .. }) if !stat.is_invalid() => {
                    results.push((*partition, Ok(stat.version)))
                }
                // Some servers return no stat inside a multi (ZOOKEEPER-4026); new is version 0.
                Ok(_) => results.push((*partition, Ok(INITIAL_ZK_VERSION))),
                Err(e) if e.is_controller_moved() || e.is_session_lost() => return Err(e),
                Err(e) => results.push((*partition, Err(e))),
            }
        }
        Ok(results)
    }

    /// Controller write of a partition state: conditional on the state's zkVersion and on the
    /// controller epoch. Returns the new zkVersion.
    ///
    /// # Errors
    /// `BadVersion` if the state changed (re-read and retry), `ControllerMoved` if the epoch
    /// did, `NoNode`, ZooKeeper failures.
    pub async fn update_partition_state(
        &self,
        topic: &str,
        partition: i32,
        state: &LeaderIsrAndControllerEpoch,
        expected_version: i32,
        epoch_zk_version: i32,
    ) -> Result<i32, ZkError> {
        check_topic_path(topic)?;
        let path = partition_state_path(topic, partition);
        let payload = data::encode_partition_state(state);
        let op = CheckedOp::SetData {
            path: &path,
            data: &payload,
            expected_version,
        };
        match self.epoch_checked(epoch_zk_version, op).await {
            Ok(MultiWriteResult::SetData { stat }) => Ok(stat.version),
            Ok(_) => Err(ZkError::Zk {
                path,
                source: ClientError::UnexpectedError(
                    "multi answered setData with another result".into(),
                ),
            }),
            Err(ZkError::BadVersion { path, .. }) => Err(ZkError::BadVersion {
                path,
                expected: Some(expected_version),
            }),
            Err(e) => Err(e),
        }
    }

    /// Partition leader's ISR write (IBP < 2.7-IV2): conditional on the state's zkVersion only,
    /// no controller-epoch check. Returns the new zkVersion.
    ///
    /// # Errors
    /// `BadVersion` if the controller (or anyone) changed the state, `NoNode`, ZooKeeper
    /// failures.
    pub async fn update_partition_state_as_leader(
        &self,
        topic: &str,
        partition: i32,
        state: &LeaderIsrAndControllerEpoch,
        expected_version: i32,
    ) -> Result<i32, ZkError> {
        check_topic_path(topic)?;
        let path = partition_state_path(topic, partition);
        let payload = data::encode_partition_state(state);
        match self
            .zk
            .set_data(&path, &payload, Some(expected_version))
            .await
        {
            Ok(stat) => Ok(stat.version),
            Err(ClientError::BadVersion) => Err(ZkError::BadVersion {
                path,
                expected: Some(expected_version),
            }),
            Err(e) => Err(ZkError::from_zk(&path, e)),
        }
    }
}
