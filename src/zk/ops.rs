//! Low-level znode operations shared by the typed API: tolerant reads, watch registration,
//! recursive creates, Kafka's checked ephemeral create, and the controller-epoch–fenced multi
//! (`wrapRequestWithControllerEpochCheck`, KAFKA-6082).
//!
//! zookeeper-client sends a request when its future is *created*, so building several futures
//! before awaiting any pipelines them on the one connection; the batch helpers rely on that.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tracing::{debug, warn};
use zookeeper_client::{
    Acls, CreateMode, CreateOptions, Error as ClientError, MultiWriteError, MultiWriteResult, Stat,
};

use super::client::KafkaZkClient;
use super::error::ZkError;
use super::paths::{parent_path, CONTROLLER_EPOCH_PATH};
use super::watch::Watch;

pub(super) const PERSISTENT: CreateOptions<'static> =
    CreateMode::Persistent.with_acls(Acls::anyone_all());
pub(super) const EPHEMERAL: CreateOptions<'static> =
    CreateMode::Ephemeral.with_acls(Acls::anyone_all());
pub(super) const PERSISTENT_SEQUENTIAL: CreateOptions<'static> =
    CreateMode::PersistentSequential.with_acls(Acls::anyone_all());

/// Retries after a connection loss. A request issued while disconnected waits for the
/// reconnection (or fails with SessionExpired), so a few attempts suffice.
const RETRIES: u32 = 3;
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// Data and stat of a znode.
pub(super) type NodeData = (Vec<u8>, Stat);

/// Outcome of [`KafkaZkClient::create_ephemeral_checked`].
pub(super) enum EphemeralCreate {
    /// Created by this session (possibly by an earlier attempt whose reply was lost).
    Created(Stat),
    /// Held by another session; its current data.
    HeldByOther(Vec<u8>),
}

/// One write fenced by the controller epoch.
#[derive(Debug, Clone, Copy)]
pub(super) enum CheckedOp<'a> {
    /// Persistent create.
    Create { path: &'a str, data: &'a [u8] },
    /// Conditional setData (`-1` matches any version).
    SetData {
        path: &'a str,
        data: &'a [u8],
        expected_version: i32,
    },
    /// Unconditional delete.
    Delete { path: &'a str },
}

impl CheckedOp<'_> {
    fn path(&self) -> &str {
        match self {
            Self::Create { path, .. } | Self::SetData { path, .. } | Self::Delete { path } => path,
        }
    }
}

/// Runs `op` again while it fails with a retriable error, up to [`RETRIES`] times.
pub(super) async fn retrying<T, F, Fut>(path: &str, mut op: F) -> Result<T, ZkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ZkError>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Err(e) if e.is_retriable() && attempt < RETRIES => {
                attempt += 1;
                debug!(path, attempt, error = %e, "retrying zookeeper request");
                tokio::time::sleep(RETRY_BACKOFF * attempt).await;
            }
            other => return other,
        }
    }
}

impl KafkaZkClient {
    /// Data and stat, or `None` if the znode does not exist.
    pub(super) async fn get_data_opt(&self, path: &str) -> Result<Option<NodeData>, ZkError> {
        retrying(path, || async move {
            match self.zk.get_data(path).await {
                Ok(v) => Ok(Some(v)),
                Err(ClientError::NoNode) => Ok(None),
                Err(e) => Err(ZkError::from_zk(path, e)),
            }
        })
        .await
    }

    /// [`Self::get_data_opt`] for many paths, pipelined; results are in `paths` order.
    pub(super) async fn get_data_many(
        &self,
        paths: &[String],
    ) -> Result<Vec<Option<NodeData>>, ZkError> {
        let pending: Vec<_> = paths.iter().map(|p| self.zk.get_data(p)).collect();
        let mut out = Vec::with_capacity(paths.len());
        for (path, reply) in paths.iter().zip(pending) {
            out.push(match reply.await {
                Ok(v) => Some(v),
                Err(ClientError::NoNode) => None,
                // Re-read on its own; the retry waits for the reconnection.
                Err(ClientError::ConnectionLoss) => self.get_data_opt(path).await?,
                Err(e) => return Err(ZkError::from_zk(path, e)),
            });
        }
        Ok(out)
    }

    /// Kafka's "exists watch + read": the watch fires on creation, data change and deletion,
    /// so it also covers a znode that does not exist yet.
    pub(super) async fn get_data_and_watch_opt(
        &self,
        path: &str,
    ) -> Result<(Option<NodeData>, Watch), ZkError> {
        let (stat, watcher) = retrying(path, || async move {
            self.zk
                .check_and_watch_stat(path)
                .await
                .map_err(|e| ZkError::from_zk(path, e))
        })
        .await?;
        let watch = Watch::new(path, watcher);
        if stat.is_none() {
            return Ok((None, watch));
        }
        // Deleted in between: the watch has fired or will, so `None` is consistent.
        Ok((self.get_data_opt(path).await?, watch))
    }

    /// Whether the znode exists.
    pub(super) async fn exists(&self, path: &str) -> Result<bool, ZkError> {
        retrying(path, || async move {
            self.zk
                .check_stat(path)
                .await
                .map(|s| s.is_some())
                .map_err(|e| ZkError::from_zk(path, e))
        })
        .await
    }

    /// Children names (unsorted), or empty if the parent does not exist (as in Kafka).
    pub(super) async fn get_children_opt(&self, path: &str) -> Result<Vec<String>, ZkError> {
        retrying(path, || async move {
            match self.zk.list_children(path).await {
                Ok(children) => Ok(children),
                Err(ClientError::NoNode) => Ok(Vec::new()),
                Err(e) => Err(ZkError::from_zk(path, e)),
            }
        })
        .await
    }

    /// Children names plus a child watch. If the parent is missing, the watch is an exists
    /// watch instead, so its creation is still noticed (Kafka would silently watch nothing).
    pub(super) async fn get_children_and_watch(
        &self,
        path: &str,
    ) -> Result<(Vec<String>, Watch), ZkError> {
        let mut attempt = 0;
        loop {
            match self.zk.list_and_watch_children(path).await {
                Ok((children, watcher)) => return Ok((children, Watch::new(path, watcher))),
                Err(ClientError::NoNode) => match self.zk.check_and_watch_stat(path).await {
                    Ok((None, watcher)) => return Ok((Vec::new(), Watch::new(path, watcher))),
                    // Created in between: list again.
                    Ok((Some(_), _)) => {}
                    Err(e) => return Err(ZkError::from_zk(path, e)),
                },
                Err(ClientError::ConnectionLoss) if attempt < RETRIES => {}
                Err(e) => return Err(ZkError::from_zk(path, e)),
            }
            attempt += 1;
            tokio::time::sleep(RETRY_BACKOFF * attempt).await;
        }
    }

    /// `mkdir -p` with persistent, data-less znodes; existing ones are fine.
    pub(super) async fn ensure_path(&self, path: &str) -> Result<(), ZkError> {
        retrying(path, || async move {
            self.zk
                .mkdir(path, &PERSISTENT)
                .await
                .map_err(|e| ZkError::from_zk(path, e))
        })
        .await
    }

    /// Kafka's `setOrCreate…`: overwrite `path`, or create it (with parents) if missing; the
    /// last writer wins.
    pub(super) async fn set_or_create(&self, path: &str, payload: &[u8]) -> Result<(), ZkError> {
        match self.zk.set_data(path, payload, None).await {
            Ok(_) => return Ok(()),
            Err(ClientError::NoNode) => {}
            Err(e) => return Err(ZkError::from_zk(path, e)),
        }
        match self.create_recursive(path, payload, &PERSISTENT).await {
            Ok(_) => Ok(()),
            // Created concurrently: last writer wins, as with setData.
            Err(ZkError::NodeExists { .. }) => self
                .zk
                .set_data(path, payload, None)
                .await
                .map(|_| ())
                .map_err(|e| ZkError::from_zk(path, e)),
            Err(e) => Err(e),
        }
    }

    /// Creates `path`, creating missing (persistent, empty) ancestors first. `NodeExists` on
    /// `path` itself is returned to the caller.
    pub(super) async fn create_recursive(
        &self,
        path: &str,
        data: &[u8],
        options: &CreateOptions<'_>,
    ) -> Result<Stat, ZkError> {
        match self.zk.create(path, data, options).await {
            Ok((stat, _)) => return Ok(stat),
            Err(ClientError::NoNode) => {
                if let Some(parent) = parent_path(path) {
                    self.ensure_path(parent).await?;
                }
            }
            Err(e) => return Err(ZkError::from_zk(path, e)),
        }
        self.zk
            .create(path, data, options)
            .await
            .map(|(stat, _)| stat)
            .map_err(|e| ZkError::from_zk(path, e))
    }

    /// Kafka's `checkedEphemeralCreate`: on NodeExists (or a lost reply), an existing node owned
    /// by this very session counts as created.
    pub(super) async fn create_ephemeral_checked(
        &self,
        path: &str,
        data: &[u8],
    ) -> Result<EphemeralCreate, ZkError> {
        let session = self.session_id();
        let mut attempt = 0;
        loop {
            match self.zk.create(path, data, &EPHEMERAL).await {
                Ok((stat, _)) => return Ok(EphemeralCreate::Created(stat)),
                Err(ClientError::NodeExists) => match self.get_data_opt(path).await? {
                    Some((_, stat)) if stat.ephemeral_owner == session => {
                        debug!(path, "ephemeral znode already created by this session");
                        return Ok(EphemeralCreate::Created(stat));
                    }
                    Some((existing, _)) => return Ok(EphemeralCreate::HeldByOther(existing)),
                    // Its owner's session ended in between: try again.
                    None if attempt < RETRIES => {}
                    None => {
                        return Err(ZkError::NodeExists {
                            path: path.to_string(),
                        })
                    }
                },
                Err(ClientError::ConnectionLoss) if attempt < RETRIES => {}
                Err(e) => return Err(ZkError::from_zk(path, e)),
            }
            attempt += 1;
            tokio::time::sleep(RETRY_BACKOFF * attempt).await;
        }
    }

    /// Sends `multi(check /controller_epoch == epoch_zk_version, op)` now and returns a future
    /// for its outcome. A failed check is `ControllerMoved`; a failed `op` is mapped on its own
    /// path. Nothing is applied unless both succeed.
    pub(super) fn epoch_checked<'a>(
        &'a self,
        epoch_zk_version: i32,
        op: CheckedOp<'_>,
    ) -> impl Future<Output = Result<MultiWriteResult, ZkError>> + Send + 'a {
        let path = op.path().to_string();
        let mut writer = self.zk.new_multi_writer();
        let prepared = writer
            .add_check_version(CONTROLLER_EPOCH_PATH, epoch_zk_version)
            .and_then(|()| match op {
                CheckedOp::Create { path, data } => writer.add_create(path, data, &PERSISTENT),
                CheckedOp::SetData {
                    path,
                    data,
                    expected_version,
                } => writer.add_set_data(path, data, Some(expected_version)),
                CheckedOp::Delete { path } => writer.add_delete(path, None),
            });
        let commit = prepared.map(|()| writer.commit());
        async move {
            let commit = commit.map_err(|e| ZkError::from_zk(&path, e))?;
            match commit.await {
                Ok(results) => results.into_iter().nth(1).ok_or_else(|| ZkError::Zk {
                    path: path.clone(),
                    source: ClientError::UnexpectedError(
                        "multi returned no result for the op".into(),
                    ),
                }),
                Err(MultiWriteError::OperationFailed { index: 0, source }) => match source {
                    ClientError::BadVersion | ClientError::NoNode => {
                        warn!(path = %path, epoch_zk_version, "controller epoch check failed");
                        Err(ZkError::ControllerMoved {
                            detail: format!(
                                "{CONTROLLER_EPOCH_PATH} is no longer at zkVersion {epoch_zk_version} \
                                 (write to {path} rejected)"
                            ),
                        })
                    }
                    other => Err(ZkError::from_zk(CONTROLLER_EPOCH_PATH, other)),
                },
                Err(MultiWriteError::OperationFailed { source, .. })
                | Err(MultiWriteError::RequestFailed { source }) => {
                    Err(ZkError::from_zk(&path, source))
                }
            }
        }
    }

    /// Epoch-checked deletes of `paths`, pipelined; already-missing znodes are fine, which also
    /// makes a retry after a connection loss safe.
    pub(super) async fn delete_checked_many(
        &self,
        paths: &[String],
        epoch_zk_version: i32,
    ) -> Result<(), ZkError> {
        let pending: Vec<_> = paths
            .iter()
            .map(|p| self.epoch_checked(epoch_zk_version, CheckedOp::Delete { path: p }))
            .collect();
        for (path, reply) in paths.iter().zip(pending) {
            let mut result = reply.await;
            let mut attempt = 0;
            while matches!(&result, Err(e) if e.is_retriable()) && attempt < RETRIES {
                attempt += 1;
                tokio::time::sleep(RETRY_BACKOFF * attempt).await;
                result = self
                    .epoch_checked(epoch_zk_version, CheckedOp::Delete { path })
                    .await;
            }
            match result {
                Ok(_) | Err(ZkError::NoNode { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Kafka's `deleteRecursive` with the epoch check on every delete; a missing root is fine.
    pub(super) fn delete_recursive_checked<'a>(
        &'a self,
        path: &'a str,
        epoch_zk_version: i32,
    ) -> Pin<Box<dyn Future<Output = Result<(), ZkError>> + Send + 'a>> {
        Box::pin(async move {
            for child in self.get_children_opt(path).await? {
                let child_path = format!("{path}/{child}");
                self.delete_recursive_checked(&child_path, epoch_zk_version)
                    .await?;
            }
            self.delete_checked_many(&[path.to_string()], epoch_zk_version)
                .await
        })
    }
}
