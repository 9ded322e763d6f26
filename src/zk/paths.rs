//! Znode paths of Kafka 2.8's ZooKeeper layout (reference §1), relative to the chroot.
//!
//! Everything that builds a path lives here so the layout can be audited in one place; callers
//! must validate topic names first (`data::validate_topic_name`) because a `/` in a name would
//! silently address a different znode.

pub const CONTROLLER_PATH: &str = "/controller";
pub const CONTROLLER_EPOCH_PATH: &str = "/controller_epoch";
pub const CONSUMERS_PATH: &str = "/consumers";
pub const BROKERS_PATH: &str = "/brokers";
pub const BROKER_IDS_PATH: &str = "/brokers/ids";
pub const BROKER_TOPICS_PATH: &str = "/brokers/topics";
pub const BROKER_SEQID_PATH: &str = "/brokers/seqid";
pub const CONFIG_PATH: &str = "/config";
pub const CONFIG_CHANGES_PATH: &str = "/config/changes";
pub const CONFIG_TOPICS_PATH: &str = "/config/topics";
pub const CONFIG_CLIENTS_PATH: &str = "/config/clients";
pub const CONFIG_USERS_PATH: &str = "/config/users";
pub const CONFIG_BROKERS_PATH: &str = "/config/brokers";
pub const CONFIG_IPS_PATH: &str = "/config/ips";
pub const ADMIN_PATH: &str = "/admin";
pub const DELETE_TOPICS_PATH: &str = "/admin/delete_topics";
pub const PREFERRED_REPLICA_ELECTION_PATH: &str = "/admin/preferred_replica_election";
pub const ISR_CHANGE_NOTIFICATION_PATH: &str = "/isr_change_notification";
/// Name prefix of the PERSISTENT_SEQUENTIAL children of [`ISR_CHANGE_NOTIFICATION_PATH`].
pub const ISR_CHANGE_PREFIX: &str = "isr_change_";
pub const LATEST_PRODUCER_ID_BLOCK_PATH: &str = "/latest_producer_id_block";
pub const LOG_DIR_EVENT_NOTIFICATION_PATH: &str = "/log_dir_event_notification";
/// Name prefix of the PERSISTENT_SEQUENTIAL children of [`LOG_DIR_EVENT_NOTIFICATION_PATH`].
pub const LOG_DIR_EVENT_PREFIX: &str = "log_dir_event_";
pub const CLUSTER_ID_PATH: &str = "/cluster/id";

/// The persistent paths every 2.8 broker creates at start-up (`ZkData.PersistentZkPaths`, with
/// `ConfigType.all` expanded), in creation order: parents come before children.
pub const TOP_LEVEL_PATHS: [&str; 14] = [
    CONSUMERS_PATH,
    BROKER_IDS_PATH,
    BROKER_TOPICS_PATH,
    CONFIG_CHANGES_PATH,
    DELETE_TOPICS_PATH,
    BROKER_SEQID_PATH,
    ISR_CHANGE_NOTIFICATION_PATH,
    LATEST_PRODUCER_ID_BLOCK_PATH,
    LOG_DIR_EVENT_NOTIFICATION_PATH,
    CONFIG_TOPICS_PATH,
    CONFIG_CLIENTS_PATH,
    CONFIG_USERS_PATH,
    CONFIG_BROKERS_PATH,
    CONFIG_IPS_PATH,
];

/// `/brokers/ids/<id>`: a live broker's EPHEMERAL registration.
pub fn broker_path(id: i32) -> String {
    format!("{BROKER_IDS_PATH}/{id}")
}

/// `/brokers/topics/<topic>`: the replica assignment.
pub fn topic_path(topic: &str) -> String {
    format!("{BROKER_TOPICS_PATH}/{topic}")
}

/// `/brokers/topics/<topic>/partitions`.
pub fn topic_partitions_path(topic: &str) -> String {
    format!("{BROKER_TOPICS_PATH}/{topic}/partitions")
}

/// `/brokers/topics/<topic>/partitions/<partition>`.
pub fn topic_partition_path(topic: &str, partition: i32) -> String {
    format!("{BROKER_TOPICS_PATH}/{topic}/partitions/{partition}")
}

/// `/brokers/topics/<topic>/partitions/<partition>/state`: leader, ISR and epochs.
pub fn partition_state_path(topic: &str, partition: i32) -> String {
    format!("{BROKER_TOPICS_PATH}/{topic}/partitions/{partition}/state")
}

/// `/config/topics/<topic>`: per-topic config overrides.
pub fn topic_config_path(topic: &str) -> String {
    format!("{CONFIG_TOPICS_PATH}/{topic}")
}

/// `/admin/delete_topics/<topic>`: the deletion request flag.
pub fn delete_topic_path(topic: &str) -> String {
    format!("{DELETE_TOPICS_PATH}/{topic}")
}

/// `/isr_change_notification/<child>` for a child name such as `isr_change_0000000003`.
pub fn isr_change_notification_path(child: &str) -> String {
    format!("{ISR_CHANGE_NOTIFICATION_PATH}/{child}")
}

/// The path handed to a sequential create; ZooKeeper appends 10 zero-padded digits.
pub fn isr_change_sequence_prefix() -> String {
    format!("{ISR_CHANGE_NOTIFICATION_PATH}/{ISR_CHANGE_PREFIX}")
}

/// `/log_dir_event_notification/<child>` for a child such as `log_dir_event_0000000003`.
pub fn log_dir_event_path(child: &str) -> String {
    format!("{LOG_DIR_EVENT_NOTIFICATION_PATH}/{child}")
}

/// The path handed to a sequential create of a log-dir event.
pub fn log_dir_event_sequence_prefix() -> String {
    format!("{LOG_DIR_EVENT_NOTIFICATION_PATH}/{LOG_DIR_EVENT_PREFIX}")
}

/// The parent of an absolute path (`/a/b` → `/a`), or `None` for `/` and top-level nodes.
pub fn parent_path(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_paths() {
        assert_eq!(broker_path(3), "/brokers/ids/3");
        assert_eq!(topic_path("t1"), "/brokers/topics/t1");
        assert_eq!(topic_partitions_path("t1"), "/brokers/topics/t1/partitions");
        assert_eq!(
            topic_partition_path("t1", 2),
            "/brokers/topics/t1/partitions/2"
        );
        assert_eq!(
            partition_state_path("t1", 0),
            "/brokers/topics/t1/partitions/0/state"
        );
        assert_eq!(topic_config_path("t1"), "/config/topics/t1");
        assert_eq!(delete_topic_path("t1"), "/admin/delete_topics/t1");
        assert_eq!(
            isr_change_notification_path("isr_change_0000000001"),
            "/isr_change_notification/isr_change_0000000001"
        );
        assert_eq!(
            isr_change_sequence_prefix(),
            "/isr_change_notification/isr_change_"
        );
    }

    #[test]
    fn top_level_paths_match_kafka_2_8() {
        for p in [
            "/consumers",
            "/brokers/ids",
            "/brokers/topics",
            "/brokers/seqid",
            "/config/changes",
            "/config/topics",
            "/config/clients",
            "/config/users",
            "/config/brokers",
            "/config/ips",
            "/admin/delete_topics",
            "/isr_change_notification",
            "/latest_producer_id_block",
            "/log_dir_event_notification",
        ] {
            assert!(TOP_LEVEL_PATHS.contains(&p), "{p} missing");
        }
    }

    #[test]
    fn parents() {
        assert_eq!(parent_path("/a/b/c"), Some("/a/b"));
        assert_eq!(parent_path("/a"), None);
        assert_eq!(parent_path("/"), None);
    }
}
