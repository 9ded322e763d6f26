//! What the controller benchmark observes: partition state znodes and broker registrations through
//! gregor's ZooKeeper client, and each broker's Metadata answer through gregor's protocol client,
//! one connection per broker, re-opened after any failure.
//!
//! Every read is bounded (ZooKeeper calls by [`ZK_CALL_TIMEOUT`], Metadata by the connection's
//! timeout), so a wedged cluster makes a poll fail, never hang.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use gregor::protocol::client::BrokerConnection;
use gregor::zk::{KafkaZkClient, LeaderIsrAndControllerEpoch};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// Bound on one ZooKeeper call (a pipelined read of 10,000 state znodes included).
pub const ZK_CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one Metadata round trip to a broker.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Metadata v8: the newest non-flexible version gregor serves; v4+ lets the request refuse
/// auto-creation, so polling a deleted topic never re-creates it.
const METADATA_VERSION: i16 = 8;
const CLIENT_ID: &str = "gregor-bench-controller";

/// One partition as a broker's Metadata answer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdPartition {
    pub leader: i32,
    pub isr: Vec<i32>,
}

/// A broker's view of the benchmark topic.
#[derive(Debug, Clone, Default)]
pub struct MdView {
    /// Topic-level error code (3 = UNKNOWN_TOPIC_OR_PARTITION before creation / after deletion).
    pub topic_error: i16,
    pub partitions: BTreeMap<i32, MdPartition>,
    /// Live brokers the answer lists.
    pub brokers: Vec<i32>,
}

/// ZooKeeper session plus per-broker Metadata connections.
pub struct Probe {
    zk: KafkaZkClient,
    addrs: BTreeMap<i32, String>,
    conns: BTreeMap<i32, BrokerConnection>,
}

/// Runs a ZooKeeper call under [`ZK_CALL_TIMEOUT`].
async fn bounded<T, F>(what: &str, fut: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T, gregor::zk::ZkError>>,
{
    match tokio::time::timeout(ZK_CALL_TIMEOUT, fut).await {
        Ok(r) => r.with_context(|| format!("zookeeper: {what}")),
        Err(_) => bail!("zookeeper: {what}: no answer within {ZK_CALL_TIMEOUT:?}"),
    }
}

impl Probe {
    /// Opens the ZooKeeper session; broker connections open on first use.
    ///
    /// # Errors
    /// When ZooKeeper cannot be reached.
    pub async fn connect(zookeeper: &str, addrs: BTreeMap<i32, String>) -> Result<Self> {
        let zk = KafkaZkClient::connect(zookeeper, Duration::from_secs(30), ZK_CALL_TIMEOUT)
            .await
            .with_context(|| format!("connecting to zookeeper {zookeeper}"))?;
        Ok(Self {
            zk,
            addrs,
            conns: BTreeMap::new(),
        })
    }

    pub fn broker_ids(&self) -> Vec<i32> {
        self.addrs.keys().copied().collect()
    }

    /// Registered broker ids with their registration czxid (the broker epoch).
    ///
    /// # Errors
    /// ZooKeeper failures or timeouts.
    pub async fn registrations(&self) -> Result<BTreeMap<i32, i64>> {
        let brokers = bounded("get /brokers/ids/*", self.zk.get_all_brokers()).await?;
        Ok(brokers
            .into_iter()
            .map(|(b, czxid)| (b.id, czxid))
            .collect())
    }

    /// `/controller`'s broker id.
    ///
    /// # Errors
    /// ZooKeeper failures or timeouts.
    pub async fn controller(&self) -> Result<Option<i32>> {
        bounded("get /controller", self.zk.get_controller_id()).await
    }

    /// `/controller_epoch`'s value.
    ///
    /// # Errors
    /// ZooKeeper failures or timeouts.
    pub async fn controller_epoch(&self) -> Result<Option<i32>> {
        Ok(
            bounded("get /controller_epoch", self.zk.get_controller_epoch())
                .await?
                .map(|(epoch, _)| epoch),
        )
    }

    /// The topic's replica assignment (`None` once `/brokers/topics/<t>` is gone).
    ///
    /// # Errors
    /// ZooKeeper failures or timeouts.
    pub async fn assignment(&self, topic: &str) -> Result<Option<BTreeMap<i32, Vec<i32>>>> {
        let a = bounded(
            "get /brokers/topics/<t>",
            self.zk.get_topic_assignment(topic),
        )
        .await?;
        Ok(a.map(|a| a.partitions))
    }

    /// Whether `/admin/delete_topics/<topic>` exists.
    ///
    /// # Errors
    /// ZooKeeper failures or timeouts.
    pub async fn deletion_pending(&self, topic: &str) -> Result<bool> {
        let (topics, _watch) = bounded(
            "get /admin/delete_topics",
            self.zk.get_topic_deletions_and_watch(),
        )
        .await?;
        Ok(topics.iter().any(|t| t == topic))
    }

    /// State znodes of `partitions` (pipelined); partitions without one are absent.
    ///
    /// # Errors
    /// ZooKeeper failures or timeouts.
    pub async fn states(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, LeaderIsrAndControllerEpoch>> {
        let states = bounded(
            "get partition states",
            self.zk.get_partition_states(topic, partitions),
        )
        .await?;
        Ok(states.into_iter().map(|(p, (s, _))| (p, s)).collect())
    }

    /// Writes `/admin/preferred_replica_election` for `partitions`, as
    /// `kafka-preferred-replica-election.sh` does. `Ok(false)` while an earlier request is pending.
    ///
    /// # Errors
    /// ZooKeeper failures other than a pending request.
    pub async fn request_preferred_election(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<bool> {
        let list: Vec<(String, i32)> = partitions.iter().map(|p| (topic.to_string(), *p)).collect();
        match tokio::time::timeout(
            ZK_CALL_TIMEOUT,
            self.zk.create_preferred_replica_election(&list),
        )
        .await
        {
            Ok(Ok(())) => Ok(true),
            Ok(Err(gregor::zk::ZkError::NodeExists { .. })) => Ok(false),
            Ok(Err(e)) => {
                Err(anyhow!(e).context("zookeeper: create /admin/preferred_replica_election"))
            }
            Err(_) => bail!("zookeeper: create /admin/preferred_replica_election timed out"),
        }
    }

    async fn conn(&mut self, id: i32) -> Result<&mut BrokerConnection> {
        if !self.conns.contains_key(&id) {
            let addr = self
                .addrs
                .get(&id)
                .ok_or_else(|| anyhow!("no address for broker {id}"))?;
            let conn = BrokerConnection::connect(addr, CLIENT_ID, METADATA_TIMEOUT).await?;
            self.conns.insert(id, conn);
        }
        self.conns
            .get_mut(&id)
            .ok_or_else(|| anyhow!("connection to broker {id} vanished"))
    }

    /// Broker `id`'s Metadata answer for `topic`. A failed round trip drops the connection.
    ///
    /// # Errors
    /// Connection, codec or timeout failures.
    pub async fn metadata(&mut self, id: i32, topic: &str) -> Result<MdView> {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]))
            .with_allow_auto_topic_creation(false);
        let conn = self.conn(id).await?;
        let resp = match conn.send(&req, METADATA_VERSION).await {
            Ok(r) => r,
            Err(e) => {
                self.conns.remove(&id);
                return Err(e.into());
            }
        };
        let mut view = MdView {
            brokers: resp.brokers.iter().map(|b| b.node_id.0).collect(),
            ..MdView::default()
        };
        for t in resp.topics {
            view.topic_error = t.error_code;
            for p in t.partitions {
                let isr = p.isr_nodes.iter().map(|b| b.0).collect();
                view.partitions.insert(
                    p.partition_index,
                    MdPartition {
                        leader: p.leader_id.0,
                        isr,
                    },
                );
            }
        }
        Ok(view)
    }

    /// Forgets broker `id`'s connection (after it was stopped), so the next use reconnects.
    pub fn disconnect(&mut self, id: i32) {
        self.conns.remove(&id);
    }
}

/// Sends CreateTopics (`partitions`, RF `rf`, broker-chosen assignment) to `addr` on a fresh
/// connection and returns the topic's error code and message.
///
/// # Errors
/// Connection, codec or timeout failures.
pub async fn create_topic(
    addr: &str,
    topic: &str,
    partitions: i32,
    rf: i16,
    timeout: Duration,
) -> Result<(i16, Option<String>)> {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)])
        .with_timeout_ms(timeout.as_millis() as i32);
    let mut conn = BrokerConnection::connect(addr, CLIENT_ID, METADATA_TIMEOUT)
        .await?
        .with_timeout(timeout + Duration::from_secs(10));
    let resp = conn.send(&req, 4).await?;
    let t = resp
        .topics
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("CreateTopics response without a topic"))?;
    Ok((t.error_code, t.error_message.map(|m| m.to_string())))
}

/// Sends DeleteTopics for `topic` to `addr` on a fresh connection; returns the error code.
///
/// # Errors
/// Connection, codec or timeout failures.
pub async fn delete_topic(addr: &str, topic: &str, timeout: Duration) -> Result<i16> {
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(StrBytes::from_string(topic.to_string()))])
        .with_timeout_ms(timeout.as_millis() as i32);
    let mut conn = BrokerConnection::connect(addr, CLIENT_ID, METADATA_TIMEOUT)
        .await?
        .with_timeout(timeout + Duration::from_secs(10));
    let resp = conn.send(&req, 3).await?;
    resp.responses
        .into_iter()
        .next()
        .map(|r| r.error_code)
        .ok_or_else(|| anyhow!("DeleteTopics response without a topic"))
}
