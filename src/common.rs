//! The shared vocabulary every layer speaks: the partition name, the leader sentinels Kafka puts
//! in partition states and metadata, and the endpoint a broker is reached at. A leaf module: it
//! imports nothing from the crate, so `log`, `zk`, `replication` and the rest can all use it
//! without depending on each other.

use std::fmt;

/// `leader` of a partition that has no leader (offline), in ZooKeeper state and in metadata.
pub const NO_LEADER: i32 = -1;

/// `leader` the controller sends in UpdateMetadata for a partition whose topic is being deleted
/// (Kafka's `LeaderAndIsr.LeaderDuringDelete`): brokers drop it from their metadata.
pub const LEADER_DURING_DELETE: i32 = -2;

/// Leader epoch of a StopReplica partition that carries none (before v3): skips the epoch
/// check (Kafka's `LeaderAndIsr.NoEpoch`).
pub const NO_EPOCH: i32 = -1;

/// Leader epoch the controller sends in StopReplica while deleting a topic, whose epoch is not
/// bumped: stops the replica whatever its epoch (Kafka's `LeaderAndIsr.EpochDuringDelete`).
pub const EPOCH_DURING_DELETE: i32 = -2;

/// Kafka's longest topic name (`Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;

/// Kafka's topic name rule (`Topic.validate`): 1–249 characters from `[a-zA-Z0-9._-]`, not `.`
/// or `..`. Every layer that names a directory or a znode after a topic relies on it: a `/`
/// would escape the data dir, a space would break the space-separated checkpoint files.
///
/// # Errors
/// A message saying which rule the name breaks.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the empty string is not allowed".into());
    }
    if name == "." || name == ".." {
        return Err(format!("'{name}' is not allowed"));
    }
    if name.len() > MAX_TOPIC_NAME_LENGTH {
        return Err(format!(
            "'{name}' is longer than {MAX_TOPIC_NAME_LENGTH} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "'{name}' contains {c:?}; only ASCII alphanumerics, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// A topic partition; its `Display` form (`t-0`) is also its directory name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// Parses a partition directory name `<topic>-<partition>`. Topics may contain `-`, so
    /// the partition is whatever follows the last one.
    pub fn from_dir_name(name: &str) -> Option<TopicPartition> {
        let (topic, partition) = name.rsplit_once('-')?;
        if topic.is_empty() || partition.is_empty() || partition.starts_with('+') {
            return None;
        }
        let partition: i32 = partition.parse().ok()?;
        (partition >= 0).then(|| TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Where a broker listens, as `host:port` (for controller and replica connections).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: i32,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_is_host_colon_port() {
        let ep = Endpoint {
            host: "10.0.0.1".into(),
            port: 9092,
        };
        assert_eq!(ep.to_string(), "10.0.0.1:9092");
    }
}
