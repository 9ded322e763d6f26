//! Request/notification znodes the controller consumes (reference §1, §3, §5): topic deletion
//! flags (`/admin/delete_topics`), ISR change notifications (`/isr_change_notification`) and
//! preferred replica elections (`/admin/preferred_replica_election`).
//!
//! Producers (admin tools, partition leaders) write them unfenced; the controller removes them
//! with epoch-checked deletes so a deposed controller cannot drop requests it never handled.

use tracing::info;

use super::client::KafkaZkClient;
use super::data;
use super::error::{CodecError, ZkError};
use super::ops::{PERSISTENT, PERSISTENT_SEQUENTIAL};
use super::paths::{
    delete_topic_path, isr_change_notification_path, isr_change_sequence_prefix, topic_config_path,
    topic_path, DELETE_TOPICS_PATH, ISR_CHANGE_NOTIFICATION_PATH, ISR_CHANGE_PREFIX,
    PREFERRED_REPLICA_ELECTION_PATH,
};
use super::topics::check_topic_path;
use super::watch::Watch;

/// An `isr_change_<seq>` child name; anything else would address another znode.
fn check_isr_change_child(child: &str) -> Result<(), ZkError> {
    check_sequential_child(ISR_CHANGE_NOTIFICATION_PATH, ISR_CHANGE_PREFIX, child)
}

/// A `<prefix><digits>` child name of `parent`, as ZooKeeper's sequential create makes them.
pub(super) fn check_sequential_child(
    parent: &str,
    prefix: &str,
    child: &str,
) -> Result<(), ZkError> {
    let digits = child.strip_prefix(prefix).unwrap_or_default();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ZkError::malformed(
            parent,
            CodecError::new(format!("{child:?} is not a {prefix}<sequence> child")),
        ));
    }
    Ok(())
}

impl KafkaZkClient {
    /// Marks a topic for deletion by creating `/admin/delete_topics/<t>`; already marked is
    /// fine. Whether the topic exists is the caller's check.
    ///
    /// # Errors
    /// `InvalidTopic`, ZooKeeper failures.
    pub async fn request_topic_deletion(&self, topic: &str) -> Result<(), ZkError> {
        check_topic_path(topic)?;
        match self
            .create_recursive(&delete_topic_path(topic), &[], &PERSISTENT)
            .await
        {
            Ok(_) => {
                info!(topic, "topic marked for deletion");
                Ok(())
            }
            Err(ZkError::NodeExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Topics queued for deletion (sorted) plus a child watch (controller only).
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn get_topic_deletions_and_watch(&self) -> Result<(Vec<String>, Watch), ZkError> {
        let (mut topics, watch) = self.get_children_and_watch(DELETE_TOPICS_PATH).await?;
        topics.sort_unstable();
        Ok((topics, watch))
    }

    /// Completes a deletion: removes `/brokers/topics/<t>` recursively, `/config/topics/<t>` and
    /// `/admin/delete_topics/<t>`, every delete epoch-checked; missing znodes are fine.
    ///
    /// # Errors
    /// `ControllerMoved`, `InvalidTopic`, ZooKeeper failures.
    pub async fn delete_topic_znodes(
        &self,
        topic: &str,
        epoch_zk_version: i32,
    ) -> Result<(), ZkError> {
        check_topic_path(topic)?;
        self.delete_recursive_checked(&topic_path(topic), epoch_zk_version)
            .await?;
        let rest = [topic_config_path(topic), delete_topic_path(topic)];
        self.delete_checked_many(&rest, epoch_zk_version).await?;
        info!(topic, "deleted topic znodes");
        Ok(())
    }

    /// Removes only the deletion flag (for topics that do not exist), epoch-checked.
    ///
    /// # Errors
    /// `ControllerMoved`, `InvalidTopic`, ZooKeeper failures.
    pub async fn delete_topic_deletion_flag(
        &self,
        topic: &str,
        epoch_zk_version: i32,
    ) -> Result<(), ZkError> {
        check_topic_path(topic)?;
        self.delete_checked_many(&[delete_topic_path(topic)], epoch_zk_version)
            .await
    }

    /// Partition leader: records changed ISRs in a new PERSISTENT_SEQUENTIAL `isr_change_<seq>`.
    /// Retried on connection loss; a duplicate notification is harmless.
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn create_isr_change_notification(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<(), ZkError> {
        let prefix = &isr_change_sequence_prefix();
        let payload = &data::encode_partition_list(partitions);
        super::ops::retrying(prefix, || async move {
            self.create_recursive(prefix, payload, &PERSISTENT_SEQUENTIAL)
                .await
                .map(|_| ())
        })
        .await
    }

    /// Pending `isr_change_<seq>` child names in sequence order, plus a child watch.
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn get_isr_change_notifications_and_watch(
        &self,
    ) -> Result<(Vec<String>, Watch), ZkError> {
        let (mut children, watch) = self
            .get_children_and_watch(ISR_CHANGE_NOTIFICATION_PATH)
            .await?;
        children.retain(|c| c.starts_with(ISR_CHANGE_PREFIX));
        children.sort_unstable();
        Ok((children, watch))
    }

    /// Partitions listed in one notification; empty if it was already deleted.
    ///
    /// # Errors
    /// `MalformedData` for a bad child name or payload, ZooKeeper failures.
    pub async fn read_isr_change_notification(
        &self,
        child: &str,
    ) -> Result<Vec<(String, i32)>, ZkError> {
        check_isr_change_child(child)?;
        let path = isr_change_notification_path(child);
        match self.get_data_opt(&path).await? {
            Some((bytes, _)) => {
                data::decode_partition_list(&bytes).map_err(|e| ZkError::malformed(&path, e))
            }
            None => Ok(Vec::new()),
        }
    }

    /// Deletes processed notifications, epoch-checked and pipelined; missing ones are fine.
    ///
    /// # Errors
    /// `ControllerMoved`, `MalformedData` for a bad child name, ZooKeeper failures.
    pub async fn delete_isr_change_notifications(
        &self,
        children: &[String],
        epoch_zk_version: i32,
    ) -> Result<(), ZkError> {
        for child in children {
            check_isr_change_child(child)?;
        }
        let paths: Vec<String> = children
            .iter()
            .map(|c| isr_change_notification_path(c))
            .collect();
        self.delete_checked_many(&paths, epoch_zk_version).await
    }

    /// Tool side: requests preferred-leader elections for `partitions`.
    ///
    /// # Errors
    /// `NodeExists` while a previous request is still pending, ZooKeeper failures.
    pub async fn create_preferred_replica_election(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<(), ZkError> {
        let payload = data::encode_partition_list(partitions);
        self.create_recursive(PREFERRED_REPLICA_ELECTION_PATH, &payload, &PERSISTENT)
            .await
            .map(|_| ())
    }

    /// The pending election request (`None` if there is none) plus an exists+data watch.
    ///
    /// # Errors
    /// `MalformedData`, ZooKeeper failures.
    pub async fn get_preferred_replica_election_and_watch(
        &self,
    ) -> Result<(Option<Vec<(String, i32)>>, Watch), ZkError> {
        let (node, watch) = self
            .get_data_and_watch_opt(PREFERRED_REPLICA_ELECTION_PATH)
            .await?;
        let partitions = node
            .map(|(bytes, _)| {
                data::decode_partition_list(&bytes)
                    .map_err(|e| ZkError::malformed(PREFERRED_REPLICA_ELECTION_PATH, e))
            })
            .transpose()?;
        Ok((partitions, watch))
    }

    /// Removes the processed election request, epoch-checked; already gone is fine.
    ///
    /// # Errors
    /// `ControllerMoved`, ZooKeeper failures.
    pub async fn delete_preferred_replica_election(
        &self,
        epoch_zk_version: i32,
    ) -> Result<(), ZkError> {
        self.delete_checked_many(
            &[PREFERRED_REPLICA_ELECTION_PATH.to_string()],
            epoch_zk_version,
        )
        .await
    }
}
