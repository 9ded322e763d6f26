//! Partitions lost with their log directory (Kafka's `HostedPartition.Offline` and
//! `ReplicaManager.handleLogDirFailure`, KIP-112). The log layer takes a directory offline at
//! its first I/O error; here the broker stops hosting its partitions, answers every request for
//! them with KAFKA_STORAGE_ERROR, and tells the controller, which moves their leadership to
//! replicas on healthy directories and marks these replicas offline.

use super::manager::locked;
use super::purgatory::Event;
use super::{ReplicaError, ReplicaManager};
use crate::log::TopicPartition;

impl ReplicaManager {
    /// KAFKA_STORAGE_ERROR for a partition whose log directory is offline.
    pub(super) fn offline_error(&self, tp: &TopicPartition) -> Option<ReplicaError> {
        locked(&self.inner.offline)
            .contains(tp)
            .then(|| ReplicaError::Storage(format!("the log directory of {tp} is offline")))
    }

    /// Kafka's `ReplicaManager.handleLogDirFailure`: the partitions of the offline directory
    /// `dir` stop being fetched and hosted, are remembered as offline, their waiters are
    /// answered, and the controller is told through `/log_dir_event_notification` so it moves
    /// their leadership to replicas on healthy directories. Returns how many directories are
    /// still online (none: the broker must stop).
    pub async fn handle_log_dir_failure(&self, dir: &std::path::Path) -> usize {
        let broker = self.broker_id();
        let mut gone = self.inner.logs.handle_dir_failure(dir);
        // A partition may hold a log the manager already forgot (a concurrent deletion).
        for p in self.all_partitions() {
            if p.log().data_dir().path() == dir && !gone.contains(p.topic_partition()) {
                gone.push(p.topic_partition().clone());
            }
        }
        self.inner.fetchers.remove_partitions(&gone);
        {
            let mut offline = locked(&self.inner.offline);
            let mut hosted = self.partitions_mut();
            for tp in &gone {
                hosted.remove(tp);
                offline.insert(tp.clone());
            }
        }
        for tp in &gone {
            self.wake(tp, Event::StateChanged);
        }
        tracing::error!(broker, dir = %dir.display(), partitions = gone.len(),
            "partitions offline after a log directory failure");
        if let Err(e) = self.inner.zk.get().create_log_dir_event(broker).await {
            // The controller learns of the partitions anyway from the KAFKA_STORAGE_ERROR
            // answers to its next LeaderAndIsr; this only delays it.
            tracing::error!(broker, error = %e, "cannot write the log dir event notification");
        }
        self.inner.logs.live_dirs().len()
    }
}
