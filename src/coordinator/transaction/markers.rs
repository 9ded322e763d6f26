//! Sending a transaction's markers (Kafka's `TransactionMarkerChannelManager` and its
//! completion handler): one WriteTxnMarkers per partition leader, on the inter-broker listener,
//! repeated for the partitions that failed until every one has its marker.
//!
//! Per partition, as in Kafka: no error (or a topic too old for markers) is done; a partition
//! whose topic is gone is done; NOT_LEADER, UNKNOWN_TOPIC_OR_PARTITION, NOT_ENOUGH_REPLICAS,
//! REQUEST_TIMED_OUT, a lost connection and the like are sent again, to whoever leads then;
//! INVALID_PRODUCER_EPOCH or TRANSACTION_COORDINATOR_FENCED mean a newer coordinator or
//! producer has taken over, and this coordinator stops. It also stops as soon as it no longer
//! coordinates the transaction.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;

use crate::log::TopicPartition;
use crate::metadata::MetadataCache;
use crate::protocol::client::BrokerConnection;
use crate::util::sync::lock;

/// Kafka's `retry.backoff.ms` default, between rounds of resends.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
const WRITE_TXN_MARKERS_VERSION: i16 = 1;

/// How a transaction's markers ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerOutcome {
    Written,
    /// A newer producer epoch or coordinator epoch is in a partition: stop.
    Fenced,
    /// This broker no longer coordinates the transaction.
    Abandoned,
}

type Shared = Arc<tokio::sync::Mutex<Option<BrokerConnection>>>;

pub(super) struct MarkerSender {
    metadata: MetadataCache,
    listener: String,
    timeout: Duration,
    /// One connection per destination broker, reused; dropped on any error.
    connections: Mutex<HashMap<i32, Shared>>,
}

enum Answer {
    Done,
    Retry,
    Fenced,
}

fn classify(code: i16) -> Answer {
    match code {
        0 | 35 | 43 => Answer::Done,
        47 | 52 => Answer::Fenced,
        _ => Answer::Retry,
    }
}

impl MarkerSender {
    pub(super) fn new(metadata: MetadataCache, listener: String, timeout: Duration) -> Self {
        Self {
            metadata,
            listener,
            timeout,
            connections: Mutex::new(HashMap::new()),
        }
    }

    fn connection(&self, broker: i32) -> Shared {
        lock(&self.connections)
            .entry(broker)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None)))
            .clone()
    }

    /// Writes COMMIT (`commit`) or ABORT markers for `pid`/`epoch` to every partition of
    /// `partitions`, until all are written, a partition says it is fenced, or `still_ours`
    /// turns false.
    pub(super) async fn write_markers(
        &self,
        pid: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        partitions: &BTreeSet<TopicPartition>,
        still_ours: &(dyn Fn() -> bool + Sync),
    ) -> MarkerOutcome {
        let mut remaining = partitions.clone();
        loop {
            if remaining.is_empty() {
                return MarkerOutcome::Written;
            }
            if !still_ours() {
                return MarkerOutcome::Abandoned;
            }
            let snap = self.metadata.snapshot();
            let mut by_leader: HashMap<i32, Vec<TopicPartition>> = HashMap::new();
            remaining.retain(|tp| {
                if !snap.topics.contains_key(&tp.topic) {
                    // Deleted: nothing left to mark.
                    return false;
                }
                if let Some(leader) = snap
                    .partition(&tp.topic, tp.partition)
                    .map(|p| p.leader)
                    .filter(|l| *l >= 0)
                {
                    by_leader.entry(leader).or_default().push(tp.clone());
                }
                true
            });
            let mut set = tokio::task::JoinSet::new();
            for (leader, tps) in by_leader {
                let addr = snap
                    .brokers
                    .get(&leader)
                    .and_then(|b| b.endpoint(&self.listener))
                    .map(|e| format!("{}:{}", e.host, e.port));
                let Some(addr) = addr else { continue };
                let conn = self.connection(leader);
                let req = request(pid, epoch, commit, coordinator_epoch, &tps);
                let timeout = self.timeout;
                set.spawn(async move { (tps.clone(), send(conn, &addr, &req, timeout).await) });
            }
            let mut fenced = false;
            while let Some(joined) = set.join_next().await {
                let Ok((tps, codes)) = joined else { continue };
                let Some(codes) = codes else { continue };
                for tp in tps {
                    match codes.get(&tp).copied().map(classify) {
                        Some(Answer::Done) => {
                            remaining.remove(&tp);
                        }
                        Some(Answer::Fenced) => fenced = true,
                        Some(Answer::Retry) | None => {}
                    }
                }
            }
            if fenced {
                return MarkerOutcome::Fenced;
            }
            if !remaining.is_empty() {
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
        }
    }
}

fn request(
    pid: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    tps: &[TopicPartition],
) -> WriteTxnMarkersRequest {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for tp in tps {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .push(tp.partition);
    }
    let mut m = WritableTxnMarker::default();
    m.producer_id = ProducerId(pid);
    m.producer_epoch = epoch;
    m.transaction_result = commit;
    m.coordinator_epoch = coordinator_epoch;
    m.topics = by_topic
        .into_iter()
        .map(|(topic, parts)| {
            let mut t = WritableTxnMarkerTopic::default();
            t.name = TopicName(StrBytes::from_string(topic.to_string()));
            t.partition_indexes = parts;
            t
        })
        .collect();
    let mut req = WriteTxnMarkersRequest::default();
    req.markers = vec![m];
    req
}

/// One request on the shared connection (opened if needed): each partition's code, or `None`
/// when the request failed as a whole (the connection is then dropped).
async fn send(
    conn: Shared,
    addr: &str,
    req: &WriteTxnMarkersRequest,
    timeout: Duration,
) -> Option<HashMap<TopicPartition, i16>> {
    let mut guard = conn.lock().await;
    if guard.is_none() {
        match BrokerConnection::connect(addr, "gregor-txn-markers", timeout).await {
            Ok(c) => *guard = Some(c.with_timeout(timeout + Duration::from_secs(5))),
            Err(e) => {
                tracing::debug!(addr, error = %e, "marker connection failed");
                return None;
            }
        }
    }
    let c = guard.as_mut()?;
    match c.send(req, WRITE_TXN_MARKERS_VERSION).await {
        Ok(resp) => Some(
            resp.markers
                .iter()
                .flat_map(|m| m.topics.iter())
                .flat_map(|t| {
                    let name = t.name.0.as_str();
                    t.partitions
                        .iter()
                        .map(move |p| (TopicPartition::new(name, p.partition_index), p.error_code))
                })
                .collect(),
        ),
        Err(e) => {
            tracing::debug!(addr, error = %e, "WriteTxnMarkers failed; reconnecting");
            *guard = None;
            None
        }
    }
}
