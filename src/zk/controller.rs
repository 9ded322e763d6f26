//! Controller election and epoch fencing (reference §2): `/controller` (EPHEMERAL, who leads)
//! and `/controller_epoch` (PERSISTENT plain integer, whose zkVersion fences every controller
//! write).

use tracing::{info, warn};
use zookeeper_client::{Error as ClientError, MultiWriteError, MultiWriteResult};

use super::client::KafkaZkClient;
use super::data;
use super::error::ZkError;
use super::ops::{retrying, CheckedOp, EPHEMERAL, PERSISTENT};
use super::paths::{CONTROLLER_EPOCH_PATH, CONTROLLER_PATH};
use super::watch::Watch;
use crate::util::clock::now_ms;

fn decode_controller_id(bytes: &[u8]) -> Result<i32, ZkError> {
    data::decode_controller(bytes).map_err(|e| ZkError::malformed(CONTROLLER_PATH, e))
}

impl KafkaZkClient {
    /// The active controller's id plus an exists+data watch on `/controller`: it fires when a
    /// controller is elected, changes, or goes away (`Reelect` / `ControllerChange`).
    ///
    /// # Errors
    /// ZooKeeper failures; `MalformedData` for a foreign payload.
    pub async fn get_controller_and_watch(&self) -> Result<(Option<i32>, Watch), ZkError> {
        let (node, watch) = self.get_data_and_watch_opt(CONTROLLER_PATH).await?;
        let id = node
            .map(|(bytes, _)| decode_controller_id(&bytes))
            .transpose()?;
        Ok((id, watch))
    }

    /// The active controller's id, if any.
    ///
    /// # Errors
    /// As [`Self::get_controller_and_watch`].
    pub async fn get_controller_id(&self) -> Result<Option<i32>, ZkError> {
        let node = self.get_data_opt(CONTROLLER_PATH).await?;
        node.map(|(bytes, _)| decode_controller_id(&bytes))
            .transpose()
    }

    /// `(epoch, zkVersion)` of `/controller_epoch`, or `None` before the first election.
    ///
    /// # Errors
    /// ZooKeeper failures; `MalformedData` if the payload is not an integer.
    pub async fn get_controller_epoch(&self) -> Result<Option<(i32, i32)>, ZkError> {
        match self.get_data_opt(CONTROLLER_EPOCH_PATH).await? {
            Some((bytes, stat)) => {
                let epoch = data::decode_controller_epoch(&bytes)
                    .map_err(|e| ZkError::malformed(CONTROLLER_EPOCH_PATH, e))?;
                Ok(Some((epoch, stat.version)))
            }
            None => Ok(None),
        }
    }

    /// Reads `/controller_epoch`, creating it as `0` (zkVersion 0) if absent.
    async fn get_or_create_controller_epoch(&self) -> Result<(i32, i32), ZkError> {
        if let Some(current) = self.get_controller_epoch().await? {
            return Ok(current);
        }
        match self
            .zk
            .create(
                CONTROLLER_EPOCH_PATH,
                &data::encode_controller_epoch(0),
                &PERSISTENT,
            )
            .await
        {
            Ok(_) | Err(ClientError::NodeExists) => {}
            Err(e) => return Err(ZkError::from_zk(CONTROLLER_EPOCH_PATH, e)),
        }
        self.get_controller_epoch()
            .await?
            .ok_or_else(|| ZkError::NoNode {
                path: CONTROLLER_EPOCH_PATH.to_string(),
            })
    }

    /// The 2.1+ election (`registerControllerAndIncrementControllerEpoch`): read
    /// `/controller_epoch` = (E, V), then atomically create `/controller` and set the epoch to
    /// E+1 at version V. Returns `(E+1, new zkVersion)`; every later controller write must
    /// carry that zkVersion.
    ///
    /// # Errors
    /// `ControllerMoved` if another broker is controller or won the race; ZooKeeper failures.
    pub async fn register_controller_and_increment_epoch(
        &self,
        broker_id: i32,
    ) -> Result<(i32, i32), ZkError> {
        let (epoch, version) = self.get_or_create_controller_epoch().await?;
        // Wrapping would make the new controller's requests look older than every broker's.
        let new_epoch = epoch.checked_add(1).ok_or_else(|| {
            ZkError::malformed(
                CONTROLLER_EPOCH_PATH,
                super::error::CodecError::new(format!(
                    "controller epoch {epoch} cannot be incremented"
                )),
            )
        })?;
        let controller = data::encode_controller(broker_id, now_ms());
        let new_epoch_bytes = data::encode_controller_epoch(new_epoch);
        let mut writer = self.zk.new_multi_writer();
        writer
            .add_create(CONTROLLER_PATH, &controller, &EPHEMERAL)
            .map_err(|e| ZkError::from_zk(CONTROLLER_PATH, e))?;
        writer
            .add_set_data(CONTROLLER_EPOCH_PATH, &new_epoch_bytes, Some(version))
            .map_err(|e| ZkError::from_zk(CONTROLLER_EPOCH_PATH, e))?;
        match writer.commit().await {
            Ok(results) => {
                let new_version = results.iter().find_map(|r| match r {
                    MultiWriteResult::SetData { stat } => Some(stat.version),
                    _ => None,
                });
                match new_version {
                    Some(new_version) => {
                        info!(
                            broker_id,
                            epoch = new_epoch,
                            epoch_zk_version = new_version,
                            "elected controller"
                        );
                        Ok((new_epoch, new_version))
                    }
                    // The reply lacked the setData stat; the re-read below is authoritative.
                    None => self.check_controller_and_epoch(broker_id, new_epoch).await,
                }
            }
            // Someone else is controller, or bumped the epoch first, or our reply was lost:
            // the znodes tell whether we won anyway.
            Err(MultiWriteError::OperationFailed {
                source: ClientError::NodeExists | ClientError::BadVersion,
                ..
            }) => self.check_controller_and_epoch(broker_id, new_epoch).await,
            Err(MultiWriteError::RequestFailed { source }) if super::ops::lost(&source) => {
                self.check_controller_and_epoch(broker_id, new_epoch).await
            }
            Err(MultiWriteError::OperationFailed { index: 1, source }) => {
                Err(ZkError::from_zk(CONTROLLER_EPOCH_PATH, source))
            }
            Err(MultiWriteError::OperationFailed { source, .. })
            | Err(MultiWriteError::RequestFailed { source }) => {
                Err(ZkError::from_zk(CONTROLLER_PATH, source))
            }
        }
    }

    /// After a failed or unanswered election multi: we won only if `/controller` names us and
    /// the epoch is the one we tried to write.
    async fn check_controller_and_epoch(
        &self,
        broker_id: i32,
        new_epoch: i32,
    ) -> Result<(i32, i32), ZkError> {
        let controller = self.get_controller_id().await?;
        let epoch = self.get_controller_epoch().await?;
        match (controller, epoch) {
            (Some(id), Some((e, version))) if id == broker_id && e == new_epoch => {
                info!(
                    broker_id,
                    epoch = e,
                    epoch_zk_version = version,
                    "elected controller"
                );
                Ok((e, version))
            }
            (controller, epoch) => {
                warn!(broker_id, ?controller, ?epoch, "lost controller election");
                Err(ZkError::ControllerMoved {
                    detail: format!(
                        "broker {broker_id} lost the election for epoch {new_epoch}: \
                         controller is {controller:?}, (epoch, zkVersion) is {epoch:?}"
                    ),
                })
            }
        }
    }

    /// Deletes `/controller` if this controller's epoch is still current (Kafka's
    /// `deleteController`, used to move the controller away); already gone is fine.
    ///
    /// # Errors
    /// `ControllerMoved` if the epoch changed; ZooKeeper failures.
    pub async fn delete_controller(&self, epoch_zk_version: i32) -> Result<(), ZkError> {
        let delete = || async {
            match self
                .epoch_checked(
                    epoch_zk_version,
                    CheckedOp::Delete {
                        path: CONTROLLER_PATH,
                    },
                )
                .await
            {
                Ok(_) | Err(ZkError::NoNode { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        };
        retrying(CONTROLLER_PATH, delete).await
    }

    /// Deletes `/controller` if this very session created it (a broker that holds it while
    /// not acting as controller, after a failover that failed half-way, must give it up or no
    /// election runs again). Returns whether it was deleted.
    ///
    /// # Errors
    /// ZooKeeper failures.
    pub async fn delete_own_controller(&self) -> Result<bool, ZkError> {
        let Some((_, stat)) = self.get_data_opt(CONTROLLER_PATH).await? else {
            return Ok(false);
        };
        if stat.ephemeral_owner != self.session_id() {
            return Ok(false);
        }
        match self.zk.delete(CONTROLLER_PATH, Some(stat.version)).await {
            Ok(()) => Ok(true),
            Err(zookeeper_client::Error::NoNode | zookeeper_client::Error::BadVersion) => Ok(false),
            Err(e) => Err(ZkError::from_zk(CONTROLLER_PATH, e)),
        }
    }
}
