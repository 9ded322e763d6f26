//! Producer-id blocks (Kafka's `ProducerIdManager.getNewProducerIdBlock`): every broker takes
//! blocks of 1,000 ids from `/latest_producer_id_block` with a version-checked write, so two
//! brokers never hand out the same id, also across restarts (a restarted broker takes a new
//! block and the rest of its old one is never used).

use zookeeper_client::Error as ClientError;

use super::client::KafkaZkClient;
use super::data::{decode_producer_id_block, encode_producer_id_block, ProducerIdBlock};
use super::error::{CodecError, ZkError};
use super::ops::{lost, Backoff, PERSISTENT};
use super::paths::LATEST_PRODUCER_ID_BLOCK_PATH;

/// Ids per block, as in Kafka.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

impl KafkaZkClient {
    /// Claims the next block for `broker`.
    ///
    /// # Errors
    /// A stored block that does not decode, ids exhausted, ZooKeeper failures.
    pub async fn allocate_producer_id_block(
        &self,
        broker: i32,
    ) -> Result<ProducerIdBlock, ZkError> {
        let path = LATEST_PRODUCER_ID_BLOCK_PATH;
        let mut backoff = Backoff::new();
        loop {
            let current = self.get_data_opt(path).await?;
            let start = match &current {
                Some((data, _)) if !data.is_empty() => {
                    let last =
                        decode_producer_id_block(data).map_err(|e| ZkError::malformed(path, e))?;
                    if last.end > i64::MAX - PRODUCER_ID_BLOCK_SIZE {
                        return Err(ZkError::malformed(
                            path,
                            CodecError::new(format!(
                                "producer ids are exhausted: the last block ends at {}",
                                last.end
                            )),
                        ));
                    }
                    last.end + 1
                }
                _ => 0,
            };
            let block = ProducerIdBlock {
                broker,
                start,
                end: start + PRODUCER_ID_BLOCK_SIZE - 1,
            };
            let payload = encode_producer_id_block(&block);
            let written = match &current {
                Some((_, stat)) => self
                    .zk
                    .set_data(path, &payload, Some(stat.version))
                    .await
                    .map(|_| ()),
                // Normally created at start-up with the other top-level paths.
                None => self
                    .zk
                    .create(path, &payload, &PERSISTENT)
                    .await
                    .map(|_| ()),
            };
            match written {
                Ok(()) => {
                    tracing::info!(
                        broker,
                        start = block.start,
                        end = block.end,
                        "claimed producer id block"
                    );
                    return Ok(block);
                }
                Err(ClientError::BadVersion | ClientError::NodeExists) => {}
                // The write may have landed before the connection went: the re-read tells.
                Err(e) if lost(&e) && backoff.allowed() => {
                    let stored = self.get_data_opt(path).await?;
                    if stored
                        .as_ref()
                        .is_some_and(|(d, _)| d.as_slice() == payload.as_slice())
                    {
                        return Ok(block);
                    }
                    backoff.wait().await;
                }
                Err(e) => return Err(ZkError::from_zk(path, e)),
            }
        }
    }
}
