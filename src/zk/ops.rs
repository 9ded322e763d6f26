//! Low-level znode operations shared by the typed API: tolerant reads, watch registration,
//! recursive creates, Kafka's checked ephemeral create, and the controller-epoch–fenced multi
//! (`wrapRequestWithControllerEpochCheck`, KAFKA-6082).
//!
//! zookeeper-client sends a request when its future is *created*, so building several futures
//! before awaiting any pipelines them on the one connection; the batch helpers rely on that.

use std::future::Future;
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
/// How long a request that lost its connection is tried again: long enough to outlast a
/// reconnection within the session (a stalled server is given up after a third of the session
/// timeout, and the session outlives that), short enough that a caller facing a ZooKeeper that
/// is gone hears of it. A session that expires meanwhile ends the retries at once.
const RETRY_WINDOW: Duration = Duration::from_secs(20);
const RETRY_BACKOFF: Duration = Duration::from_millis(50);
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// Whether a raw client error means the request's connection was lost (its outcome unknown):
/// ZooKeeper's CONNECTIONLOSS, or the transport errors the client hands pending requests when
/// it gives a connection up ("no response from connection in …ms", a reset).
pub(super) fn lost(e: &ClientError) -> bool {
    matches!(e, ClientError::ConnectionLoss | ClientError::Custom(_))
}

/// Retries of one request within [`RETRY_WINDOW`], waiting a little longer each time.
pub(super) struct Backoff {
    started: std::time::Instant,
    attempt: u32,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff {
            started: std::time::Instant::now(),
            attempt: 0,
        }
    }

    /// Whether another attempt may be made.
    pub(super) fn allowed(&self) -> bool {
        self.started.elapsed() < RETRY_WINDOW
    }

    /// Waits before the next attempt.
    pub(super) async fn wait(&mut self) {
        self.attempt = self.attempt.saturating_add(1);
        tokio::time::sleep((RETRY_BACKOFF * self.attempt).min(MAX_RETRY_BACKOFF)).await;
    }
}

/// How many requests a batch helper keeps in flight at once unless
/// `zookeeper.max.in.flight.requests` says otherwise: enough to hide the round trip, few enough
/// that a batch of any size holds bounded memory (ZooKeeper itself throttles a connection at
/// `globalOutstandingLimit`, 1000 by default).
pub(super) const PIPELINE_CHUNK: usize = 2000;

/// Independent writes packed into one multi by [`KafkaZkClient::epoch_checked_items`]: ZooKeeper
/// applies (and logs) a multi as one transaction, so 10,000 partition writes cost 157 of them
/// rather than 10,000, while a multi stays far below `jute.maxbuffer` (1 MB).
pub(super) const MULTI_GROUP: usize = 64;

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

/// Why an epoch-checked multi was not applied.
#[derive(Debug)]
pub(super) struct MultiFailure {
    /// Index of the op that failed; `None` for the epoch check or the request as a whole.
    pub(super) op: Option<usize>,
    pub(super) error: ZkError,
}

impl MultiFailure {
    fn whole(error: ZkError) -> Self {
        Self { op: None, error }
    }
}

/// Runs `op` again while it fails with a retriable error, for up to [`RETRY_WINDOW`].
pub(super) async fn retrying<T, F, Fut>(path: &str, mut op: F) -> Result<T, ZkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ZkError>>,
{
    let mut backoff = Backoff::new();
    loop {
        match op().await {
            Err(e) if e.is_retriable() && backoff.allowed() => {
                debug!(path, attempt = backoff.attempt + 1, error = %e, "retrying zookeeper request");
                backoff.wait().await;
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
        let mut out = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(self.max_in_flight()) {
            let pending: Vec<_> = chunk.iter().map(|p| self.zk.get_data(p)).collect();
            for (path, reply) in chunk.iter().zip(pending) {
                out.push(match reply.await {
                    Ok(v) => Some(v),
                    Err(ClientError::NoNode) => None,
                    // Re-read on its own; the retry waits for the reconnection.
                    Err(e) if lost(&e) => self.get_data_opt(path).await?,
                    Err(e) => return Err(ZkError::from_zk(path, e)),
                });
            }
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
        let mut backoff = Backoff::new();
        loop {
            match self.zk.list_and_watch_children(path).await {
                Ok((children, watcher)) => return Ok((children, Watch::new(path, watcher))),
                Err(ClientError::NoNode) => match self.zk.check_and_watch_stat(path).await {
                    Ok((None, watcher)) => return Ok((Vec::new(), Watch::new(path, watcher))),
                    // Created in between: list again.
                    Ok((Some(_), _)) => {}
                    Err(e) => return Err(ZkError::from_zk(path, e)),
                },
                Err(e) if lost(&e) && backoff.allowed() => {}
                Err(e) => return Err(ZkError::from_zk(path, e)),
            }
            backoff.wait().await;
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
        let mut backoff = Backoff::new();
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
                    None if backoff.allowed() => {}
                    None => {
                        return Err(ZkError::NodeExists {
                            path: path.to_string(),
                        })
                    }
                },
                Err(e) if lost(&e) && backoff.allowed() => {}
                Err(e) => return Err(ZkError::from_zk(path, e)),
            }
            backoff.wait().await;
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
        let multi = self.epoch_checked_ops(epoch_zk_version, &[op]);
        async move {
            multi
                .await
                .map_err(|f| f.error)?
                .into_iter()
                .next()
                .ok_or_else(|| ZkError::Zk {
                    path: CONTROLLER_EPOCH_PATH.to_string(),
                    source: ClientError::UnexpectedError(
                        "multi returned no result for the op".into(),
                    ),
                })
        }
    }

    /// Sends `multi(check /controller_epoch == epoch_zk_version, ops…)` now (so building many
    /// of these before awaiting pipelines them) and returns a future for the results of `ops`,
    /// in order. On failure nothing is applied; the error says which op failed (`None`: the
    /// epoch check, reported as `ControllerMoved`, or the request as a whole).
    pub(super) fn epoch_checked_ops<'a>(
        &'a self,
        epoch_zk_version: i32,
        ops: &[CheckedOp<'_>],
    ) -> impl Future<Output = Result<Vec<MultiWriteResult>, MultiFailure>> + Send + 'a {
        let paths: Vec<String> = ops.iter().map(|op| op.path().to_string()).collect();
        let mut writer = self.zk.new_multi_writer();
        let mut prepared = writer.add_check_version(CONTROLLER_EPOCH_PATH, epoch_zk_version);
        for op in ops {
            prepared = prepared.and_then(|()| match *op {
                CheckedOp::Create { path, data } => writer.add_create(path, data, &PERSISTENT),
                CheckedOp::SetData {
                    path,
                    data,
                    expected_version,
                } => writer.add_set_data(path, data, Some(expected_version)),
                CheckedOp::Delete { path } => writer.add_delete(path, None),
            });
        }
        let commit = prepared.map(|()| writer.commit());
        async move {
            let first = paths.first().cloned().unwrap_or_default();
            let commit = commit.map_err(|e| MultiFailure::whole(ZkError::from_zk(&first, e)))?;
            match commit.await {
                Ok(mut results) => {
                    // The first result is the epoch check's.
                    if !results.is_empty() {
                        results.remove(0);
                    }
                    Ok(results)
                }
                Err(MultiWriteError::OperationFailed { index: 0, source }) => {
                    Err(MultiFailure::whole(match source {
                        ClientError::BadVersion | ClientError::NoNode => {
                            warn!(path = %first, epoch_zk_version, "controller epoch check failed");
                            ZkError::ControllerMoved {
                                detail: format!(
                                    "{CONTROLLER_EPOCH_PATH} is no longer at zkVersion \
                                     {epoch_zk_version} (write to {first} rejected)"
                                ),
                            }
                        }
                        other => ZkError::from_zk(CONTROLLER_EPOCH_PATH, other),
                    }))
                }
                Err(MultiWriteError::OperationFailed { index, source }) => {
                    let op = index - 1;
                    let path = paths.get(op).map_or(first.as_str(), String::as_str);
                    Err(MultiFailure {
                        op: Some(op),
                        error: ZkError::from_zk(path, source),
                    })
                }
                Err(MultiWriteError::RequestFailed { source }) => {
                    Err(MultiFailure::whole(ZkError::from_zk(&first, source)))
                }
            }
        }
    }

    /// Applies many independent items (each a list of ops) with the epoch check, packing up to
    /// `MULTI_GROUP` items into one multi (one ZooKeeper transaction) and pipelining the
    /// multis. A multi fails as a whole, so a group that fails is retried item by item and
    /// every item gets its own outcome, `op` counted within the item.
    pub(super) async fn epoch_checked_items(
        &self,
        epoch_zk_version: i32,
        items: &[Vec<CheckedOp<'_>>],
    ) -> Vec<Result<Vec<MultiWriteResult>, MultiFailure>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.max_in_flight()) {
            let groups: Vec<&[Vec<CheckedOp<'_>>]> = chunk.chunks(MULTI_GROUP).collect();
            let pending: Vec<_> = groups
                .iter()
                .map(|g| {
                    let ops: Vec<CheckedOp<'_>> = g.iter().flatten().copied().collect();
                    self.epoch_checked_ops(epoch_zk_version, &ops)
                })
                .collect();
            for (group, reply) in groups.into_iter().zip(pending) {
                match reply.await {
                    Ok(results) => {
                        let mut results = results.into_iter();
                        for item in group {
                            out.push(Ok(results.by_ref().take(item.len()).collect()));
                        }
                    }
                    Err(_) => {
                        let single: Vec<_> = group
                            .iter()
                            .map(|item| self.epoch_checked_ops(epoch_zk_version, item))
                            .collect();
                        for reply in single {
                            out.push(reply.await);
                        }
                    }
                }
            }
        }
        out
    }

    /// Epoch-checked deletes of `paths`, grouped into multis and pipelined; already-missing
    /// znodes are fine, which also makes a retry after a connection loss safe.
    pub(super) async fn delete_checked_many(
        &self,
        paths: &[String],
        epoch_zk_version: i32,
    ) -> Result<(), ZkError> {
        let items: Vec<Vec<CheckedOp<'_>>> = paths
            .iter()
            .map(|p| vec![CheckedOp::Delete { path: p }])
            .collect();
        let replies = self.epoch_checked_items(epoch_zk_version, &items).await;
        for (path, reply) in paths.iter().zip(replies) {
            let mut result = reply.map(|_| ()).map_err(|f| f.error);
            let mut backoff = Backoff::new();
            while matches!(&result, Err(e) if e.is_retriable()) && backoff.allowed() {
                backoff.wait().await;
                result = self
                    .epoch_checked(epoch_zk_version, CheckedOp::Delete { path })
                    .await
                    .map(|_| ());
            }
            match result {
                Ok(_) | Err(ZkError::NoNode { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Kafka's `deleteRecursive` with the epoch check on every delete; a missing root is fine.
    /// The tree is listed one level at a time and deleted bottom-up, each level's requests
    /// pipelined, so the cost grows with the tree's depth, not its size.
    pub(super) async fn delete_recursive_checked(
        &self,
        path: &str,
        epoch_zk_version: i32,
    ) -> Result<(), ZkError> {
        let mut levels: Vec<Vec<String>> = vec![vec![path.to_string()]];
        while let Some(last) = levels.last() {
            let mut next = Vec::new();
            for chunk in last.chunks(self.max_in_flight()) {
                let pending: Vec<_> = chunk.iter().map(|p| self.zk.list_children(p)).collect();
                for (parent, reply) in chunk.iter().zip(pending) {
                    let children = match reply.await {
                        Ok(c) => c,
                        Err(ClientError::NoNode) => Vec::new(),
                        Err(e) if lost(&e) => self.get_children_opt(parent).await?,
                        Err(e) => return Err(ZkError::from_zk(parent, e)),
                    };
                    next.extend(children.into_iter().map(|c| format!("{parent}/{c}")));
                }
            }
            if next.is_empty() {
                break;
            }
            levels.push(next);
        }
        for level in levels.iter().rev() {
            for chunk in level.chunks(self.max_in_flight()) {
                self.delete_checked_many(chunk, epoch_zk_version).await?;
            }
        }
        Ok(())
    }
}
