//! The pre-0.9 consumer offsets Kafka still serves for OffsetCommit/OffsetFetch v0:
//! `/consumers/<group>/offsets/<topic>/<partition>` holding the offset as decimal text.

use super::client::KafkaZkClient;
use super::error::ZkError;
use super::paths::CONSUMERS_PATH;

fn consumer_offset_path(group: &str, topic: &str, partition: i32) -> String {
    format!("{CONSUMERS_PATH}/{group}/offsets/{topic}/{partition}")
}

impl KafkaZkClient {
    /// Stores a v0 commit (Kafka's `setOrCreateConsumerOffset`).
    ///
    /// # Errors
    /// ZooKeeper failures, or a group/topic name that is not a valid znode path.
    pub async fn set_consumer_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), ZkError> {
        let path = consumer_offset_path(group, topic, partition);
        self.set_or_create(&path, offset.to_string().as_bytes())
            .await
    }

    /// A v0 commit, or `None` if there is none (or it does not parse, as Kafka treats it).
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn get_consumer_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, ZkError> {
        let path = consumer_offset_path(group, topic, partition);
        Ok(self
            .get_data_opt(&path)
            .await?
            .and_then(|(data, _)| std::str::from_utf8(&data).ok()?.trim().parse().ok()))
    }
}
