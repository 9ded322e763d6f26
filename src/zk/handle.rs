//! A swappable handle to the current ZooKeeper session. After a session expires the broker opens
//! a new one and swaps it in here; every component reads the current client through this handle
//! (cloning it out, so no lock is held across an `.await`).

use std::sync::{Arc, RwLock};

use super::KafkaZkClient;
use crate::util::sync::{read, write};

/// Cheap-clone handle to the broker's current ZooKeeper client.
#[derive(Clone)]
pub struct ZkHandle {
    inner: Arc<RwLock<KafkaZkClient>>,
}

impl ZkHandle {
    pub fn new(client: KafkaZkClient) -> Self {
        Self {
            inner: Arc::new(RwLock::new(client)),
        }
    }

    /// The current client.
    pub fn get(&self) -> KafkaZkClient {
        read(&self.inner).clone()
    }

    /// Installs the client of a new session.
    pub fn replace(&self, client: KafkaZkClient) {
        *write(&self.inner) = client;
    }
}

impl KafkaZkClient {
    /// Removes this broker's ephemeral znodes (`/controller` if it holds `broker_id`, then
    /// `/brokers/ids/<id>`) at shutdown, as closing the session does in Kafka, so the cluster
    /// reacts now rather than after the session timeout.
    ///
    /// # Errors
    /// A ZooKeeper failure other than the node being gone already.
    pub async fn deregister(&self, broker_id: i32) -> Result<(), super::ZkError> {
        if self.get_controller_id().await? == Some(broker_id) {
            match self.zk.delete(super::paths::CONTROLLER_PATH, None).await {
                Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
                Err(e) => return Err(super::ZkError::from_zk(super::paths::CONTROLLER_PATH, e)),
            }
        }
        let path = super::paths::broker_path(broker_id);
        match self.zk.delete(&path, None).await {
            Ok(()) | Err(zookeeper_client::Error::NoNode) => Ok(()),
            Err(e) => Err(super::ZkError::from_zk(&path, e)),
        }
    }
}
