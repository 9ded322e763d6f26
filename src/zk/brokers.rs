//! Broker registration under `/brokers/ids` (reference §1): the EPHEMERAL node whose czxid is
//! the broker epoch (KIP-380), and the reads the controller uses to track live brokers.

use tracing::info;

use super::client::KafkaZkClient;
use super::data::{self, BrokerInfo};
use super::error::{CodecError, ZkError};
use super::ops::{EphemeralCreate, NodeData};
use super::paths::{broker_path, BROKER_IDS_PATH};
use super::watch::Watch;
use crate::util::clock::now_ms;

/// Parses `/brokers/ids` children; a non-numeric name means someone else wrote there.
fn parse_broker_ids(children: Vec<String>) -> Result<Vec<i32>, ZkError> {
    let mut ids = children
        .into_iter()
        .map(|c| {
            c.parse::<i32>().map_err(|_| {
                ZkError::malformed(
                    BROKER_IDS_PATH,
                    CodecError::new(format!("child {c:?} is not a broker id")),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    Ok(ids)
}

fn decode_registration(id: i32, (bytes, stat): NodeData) -> Result<(BrokerInfo, i64), ZkError> {
    let info =
        data::decode_broker(id, &bytes).map_err(|e| ZkError::malformed(&broker_path(id), e))?;
    Ok((info, stat.czxid))
}

impl KafkaZkClient {
    /// Creates EPHEMERAL `/brokers/ids/<id>` with the v5 JSON and returns its czxid, the broker
    /// epoch. Call after [`KafkaZkClient::create_top_level_paths`], and again on every new
    /// session.
    ///
    /// # Errors
    /// `BrokerIdInUse` (with the holder's JSON) if another session holds the id.
    pub async fn register_broker(&self, info: &BrokerInfo) -> Result<i64, ZkError> {
        let path = broker_path(info.id);
        let payload = data::encode_broker(info, now_ms());
        match self.create_ephemeral_checked(&path, &payload).await? {
            EphemeralCreate::Created(stat) => {
                info!(
                    broker_id = info.id,
                    broker_epoch = stat.czxid,
                    payload = %String::from_utf8_lossy(&payload),
                    "registered broker in zookeeper"
                );
                Ok(stat.czxid)
            }
            EphemeralCreate::HeldByOther(existing) => Err(ZkError::BrokerIdInUse {
                id: info.id,
                existing: String::from_utf8_lossy(&existing).into_owned(),
            }),
        }
    }

    /// One broker's registration and czxid (broker epoch), or `None` if it is not live.
    ///
    /// # Errors
    /// ZooKeeper failures; `MalformedData` for JSON that is not Kafka's.
    pub async fn get_broker(&self, id: i32) -> Result<Option<(BrokerInfo, i64)>, ZkError> {
        match self.get_data_opt(&broker_path(id)).await? {
            Some(node) => decode_registration(id, node).map(Some),
            None => Ok(None),
        }
    }

    /// Like [`Self::get_broker`], plus a watch firing on creation, data change (endpoint
    /// update) or deletion of the registration.
    ///
    /// # Errors
    /// As [`Self::get_broker`].
    pub async fn get_broker_and_watch(
        &self,
        id: i32,
    ) -> Result<(Option<(BrokerInfo, i64)>, Watch), ZkError> {
        let (node, watch) = self.get_data_and_watch_opt(&broker_path(id)).await?;
        let broker = node.map(|n| decode_registration(id, n)).transpose()?;
        Ok((broker, watch))
    }

    /// Every live broker with its epoch, sorted by id (reads are pipelined). Brokers that
    /// vanish between the listing and the read are skipped.
    ///
    /// # Errors
    /// ZooKeeper failures; `MalformedData` for foreign children or JSON.
    pub async fn get_all_brokers(&self) -> Result<Vec<(BrokerInfo, i64)>, ZkError> {
        let ids = parse_broker_ids(self.get_children_opt(BROKER_IDS_PATH).await?)?;
        let paths: Vec<String> = ids.iter().map(|id| broker_path(*id)).collect();
        let nodes = self.get_data_many(&paths).await?;
        let mut brokers = Vec::with_capacity(ids.len());
        for (id, node) in ids.into_iter().zip(nodes) {
            if let Some(node) = node {
                brokers.push(decode_registration(id, node)?);
            }
        }
        Ok(brokers)
    }

    /// Sorted live broker ids plus a child watch on `/brokers/ids` (controller only).
    ///
    /// # Errors
    /// ZooKeeper failures; `MalformedData` for foreign children.
    pub async fn get_broker_ids_and_watch(&self) -> Result<(Vec<i32>, Watch), ZkError> {
        let (children, watch) = self.get_children_and_watch(BROKER_IDS_PATH).await?;
        Ok((parse_broker_ids(children)?, watch))
    }
}
