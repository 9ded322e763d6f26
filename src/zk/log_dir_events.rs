//! Log-directory event notifications (KIP-112, reference `kafka-classic-2.md`): a broker whose
//! data directory failed writes a PERSISTENT_SEQUENTIAL
//! `/log_dir_event_notification/log_dir_event_<seq>` naming itself; the controller reads the
//! broker ids, asks each such broker (with LeaderAndIsr) which of its replicas are offline, and
//! deletes the notifications with epoch-checked deletes.

use super::admin::check_sequential_child;
use super::client::KafkaZkClient;
use super::data;
use super::error::ZkError;
use super::ops::PERSISTENT_SEQUENTIAL;
use super::paths::{
    log_dir_event_path, log_dir_event_sequence_prefix, LOG_DIR_EVENT_NOTIFICATION_PATH,
    LOG_DIR_EVENT_PREFIX,
};
use super::watch::Watch;

fn check_child(child: &str) -> Result<(), ZkError> {
    check_sequential_child(LOG_DIR_EVENT_NOTIFICATION_PATH, LOG_DIR_EVENT_PREFIX, child)
}

impl KafkaZkClient {
    /// Broker side (Kafka's `propagateLogDirEvent`): tells the controller that a data
    /// directory of `broker` went offline. Retried on connection loss; a duplicate only makes
    /// the controller ask again.
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn create_log_dir_event(&self, broker: i32) -> Result<(), ZkError> {
        let prefix = &log_dir_event_sequence_prefix();
        let payload = &data::encode_log_dir_event(broker);
        super::ops::retrying(prefix, || async move {
            self.create_recursive(prefix, payload, &PERSISTENT_SEQUENTIAL)
                .await
                .map(|_| ())
        })
        .await
    }

    /// Pending `log_dir_event_<seq>` child names in sequence order, plus a child watch.
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn get_log_dir_events_and_watch(&self) -> Result<(Vec<String>, Watch), ZkError> {
        let (mut children, watch) = self
            .get_children_and_watch(LOG_DIR_EVENT_NOTIFICATION_PATH)
            .await?;
        children.retain(|c| c.starts_with(LOG_DIR_EVENT_PREFIX));
        children.sort_unstable();
        Ok((children, watch))
    }

    /// The broker named by one event; `None` if it was already deleted.
    ///
    /// # Errors
    /// `MalformedData` for a bad child name or payload, ZooKeeper failures.
    pub async fn read_log_dir_event(&self, child: &str) -> Result<Option<i32>, ZkError> {
        check_child(child)?;
        let path = log_dir_event_path(child);
        match self.get_data_opt(&path).await? {
            Some((bytes, _)) => data::decode_log_dir_event(&bytes)
                .map(Some)
                .map_err(|e| ZkError::malformed(&path, e)),
            None => Ok(None),
        }
    }

    /// Deletes processed events, epoch-checked and pipelined; missing ones are fine.
    ///
    /// # Errors
    /// `ControllerMoved`, `MalformedData` for a bad child name, ZooKeeper failures.
    pub async fn delete_log_dir_events(
        &self,
        children: &[String],
        epoch_zk_version: i32,
    ) -> Result<(), ZkError> {
        for child in children {
            check_child(child)?;
        }
        let paths: Vec<String> = children.iter().map(|c| log_dir_event_path(c)).collect();
        self.delete_checked_many(&paths, epoch_zk_version).await
    }
}
