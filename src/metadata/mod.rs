//! The broker's metadata cache: live brokers, every partition's leader/replicas/ISR and the
//! controller id, fed only by UpdateMetadata from the controller (reference §1: brokers learn the
//! cluster only from UpdateMetadata). Metadata requests are answered from it.
//!
//! Readers take an `Arc` snapshot, so a large Metadata response never blocks an update.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::log::TopicPartition;
use crate::util::sync::{read, write};

/// The "leader" value the controller sends for partitions of a topic being deleted.
pub use crate::common::LEADER_DURING_DELETE;
/// No leader.
pub use crate::common::NO_LEADER;

/// One endpoint of a live broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub listener: String,
    pub security_protocol: i16,
    pub host: String,
    pub port: i32,
}

/// A live broker as the controller last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    pub id: i32,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
}

impl LiveBroker {
    /// The endpoint for `listener`; a broker without that listener is unreachable through
    /// it (Kafka's `getAliveBrokers(listenerName)` leaves it out).
    pub fn endpoint(&self, listener: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.listener == listener)
    }
}

/// A partition's state as the controller last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    pub zk_version: i32,
    pub controller_epoch: i32,
}

/// A consistent view of the cache at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, LiveBroker>,
    pub topics: HashMap<String, BTreeMap<i32, PartitionInfo>>,
}

impl Snapshot {
    /// The state of one partition.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionInfo> {
        self.topics.get(topic).and_then(|t| t.get(&partition))
    }
}

/// Cheap-clone handle to the cache.
#[derive(Clone)]
pub struct MetadataCache {
    inner: Arc<RwLock<Arc<Snapshot>>>,
}

impl Default for MetadataCache {
    fn default() -> Self {
        Self::new()
    }
}

impl MetadataCache {
    /// An empty cache: no brokers, no topics, controller unknown (-1).
    pub fn new() -> Self {
        let snap = Snapshot {
            controller_id: -1,
            ..Default::default()
        };
        Self {
            inner: Arc::new(RwLock::new(Arc::new(snap))),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        // A panic while holding the lock cannot leave a half-written snapshot: writers swap
        // whole Arcs. So the poisoned value is still consistent.
        read(&self.inner).clone()
    }

    /// Applies an UpdateMetadata: replaces the live-broker set and upserts partition states;
    /// partitions whose leader is [`LEADER_DURING_DELETE`] are dropped. Returns the dropped ones.
    pub fn update(
        &self,
        controller_id: i32,
        brokers: Vec<LiveBroker>,
        partitions: Vec<(String, i32, PartitionInfo)>,
    ) -> Vec<TopicPartition> {
        let mut guard = write(&self.inner);
        let old = guard.clone();
        let mut topics = old.topics.clone();
        let mut deleted = Vec::new();
        for (topic, p, info) in partitions {
            if info.leader == LEADER_DURING_DELETE {
                if let Some(parts) = topics.get_mut(&topic) {
                    parts.remove(&p);
                    if parts.is_empty() {
                        topics.remove(&topic);
                    }
                }
                deleted.push(TopicPartition {
                    topic,
                    partition: p,
                });
            } else {
                topics.entry(topic).or_default().insert(p, info);
            }
        }
        *guard = Arc::new(Snapshot {
            controller_id,
            brokers: brokers.into_iter().map(|b| (b.id, b)).collect(),
            topics,
        });
        deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(leader: i32) -> PartitionInfo {
        PartitionInfo {
            leader,
            leader_epoch: 0,
            isr: vec![leader],
            replicas: vec![leader],
            offline_replicas: vec![],
            zk_version: 0,
            controller_epoch: 1,
        }
    }

    #[test]
    fn update_upserts_and_deletes() {
        let c = MetadataCache::new();
        let b = LiveBroker {
            id: 1,
            endpoints: vec![],
            rack: None,
        };
        c.update(
            1,
            vec![b.clone()],
            vec![("t".into(), 0, info(1)), ("t".into(), 1, info(1))],
        );
        let s = c.snapshot();
        assert_eq!(s.topics["t"].len(), 2);
        assert_eq!(s.controller_id, 1);
        let deleted = c.update(
            1,
            vec![b],
            vec![("t".into(), 0, info(LEADER_DURING_DELETE))],
        );
        assert_eq!(deleted.len(), 1);
        assert_eq!(c.snapshot().topics["t"].len(), 1);
        // The old snapshot is untouched.
        assert_eq!(s.topics["t"].len(), 2);
    }
}
