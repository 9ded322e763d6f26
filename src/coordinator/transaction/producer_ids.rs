//! Producer ids for InitProducerId (Kafka's `ProducerIdManager`): handed out one by one from
//! this broker's current block, a new block claimed from ZooKeeper when it runs out. Ids are
//! unique across the cluster and across restarts, not dense.

use tokio::sync::Mutex;

use crate::zk::{ZkError, ZkHandle};

/// Why no producer id could be handed out.
#[derive(Debug, thiserror::Error)]
#[error("could not claim a block of producer ids: {0}")]
pub struct ProducerIdError(#[from] ZkError);

/// The next id and the block's last one (inclusive).
#[derive(Debug, Clone, Copy)]
struct Block {
    next: i64,
    end: i64,
}

/// Cheap to share behind an `Arc`; callers queue on the block while a new one is claimed.
pub struct ProducerIdManager {
    broker: i32,
    zk: ZkHandle,
    block: Mutex<Option<Block>>,
}

impl std::fmt::Debug for ProducerIdManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerIdManager")
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl ProducerIdManager {
    pub fn new(broker: i32, zk: ZkHandle) -> ProducerIdManager {
        ProducerIdManager {
            broker,
            zk,
            block: Mutex::new(None),
        }
    }

    /// Claims a block now if none is held, as Kafka's coordinator does at start-up, so the
    /// first InitProducerId does not wait for ZooKeeper.
    ///
    /// # Errors
    /// ZooKeeper failures; the next [`Self::generate`] tries again.
    pub async fn claim_initial_block(&self) -> Result<(), ProducerIdError> {
        let mut block = self.block.lock().await;
        if block.is_none() {
            *block = Some(self.claim().await?);
        }
        Ok(())
    }

    async fn claim(&self) -> Result<Block, ProducerIdError> {
        let b = self
            .zk
            .get()
            .allocate_producer_id_block(self.broker)
            .await?;
        Ok(Block {
            next: b.start,
            end: b.end,
        })
    }

    /// A producer id no broker has handed out before.
    ///
    /// # Errors
    /// The block is used up and ZooKeeper could not give a new one.
    pub async fn generate(&self) -> Result<i64, ProducerIdError> {
        let mut held = self.block.lock().await;
        let block = match *held {
            Some(b) if b.next <= b.end => b,
            _ => self.claim().await?,
        };
        *held = Some(Block {
            next: block.next + 1,
            end: block.end,
        });
        Ok(block.next)
    }
}
