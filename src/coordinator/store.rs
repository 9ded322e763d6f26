//! How the coordinator writes `__consumer_offsets`: through the normal leader append path with
//! acks=-1 and `offsets.commit.timeout.ms` (reference §7 "Storage"). How an append failure
//! becomes the error a group client understands is `GroupError::from_group_store` and
//! `GroupError::from_offset_store` ([`super::error`]).
//!
//! Writes whose outcome a request waits for (a commit, the leader's assignment) are awaited by
//! that request. Writes nobody waits for (an emptied group's record, expiry tombstones) go through
//! [`WriteQueue`], so the synchronous paths that produce them (a tick, a LeaveGroup) never block.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::error::AppendError;
use crate::log::{AppendOrigin, TopicPartition};
use crate::protocol::batch;
use crate::protocol::batch_builder::{encode_batch, BatchFields};
use crate::replication::ReplicaManager;
use crate::util::clock::now_ms;
use crate::util::sync::lock;

/// The internal topic the coordinator owns.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A record to write: key and value (`None` = tombstone).
pub type Record = (Bytes, Option<Bytes>);

/// Records bound for one offsets partition.
pub type PartitionWrite = (i32, Vec<Record>);

/// A pending append's outcome.
pub type AppendFuture = Pin<Box<dyn Future<Output = Result<(), AppendError>> + Send>>;

/// Somewhere group and offset records can be appended durably.
pub trait GroupLog: Send + Sync + 'static {
    /// Appends `records` to offsets partition `partition` as one batch and waits until it is
    /// committed (acks=-1) or fails.
    fn append(&self, partition: i32, records: Vec<Record>) -> AppendFuture;

    /// [`GroupLog::append`] as a transactional batch of producer `pid` at `epoch` (a
    /// TxnOffsetCommit): the records count only once the producer's COMMIT marker follows.
    fn append_transactional(
        &self,
        partition: i32,
        records: Vec<Record>,
        pid: i64,
        epoch: i16,
    ) -> AppendFuture;
}

/// The production [`GroupLog`]: the replica manager's leader append path.
pub struct ReplicaGroupLog {
    replicas: ReplicaManager,
    timeout: Duration,
}

impl ReplicaGroupLog {
    pub fn new(replicas: ReplicaManager, timeout: Duration) -> Self {
        Self { replicas, timeout }
    }
}

impl ReplicaGroupLog {
    fn append_from(
        &self,
        partition: i32,
        records: Vec<Record>,
        producer: Option<(i64, i16)>,
    ) -> AppendFuture {
        let replicas = self.replicas.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            let kvs: Vec<batch::RecordKv<'_>> = records
                .iter()
                .map(|(k, v)| (Some(k.as_ref()), v.as_deref()))
                .collect();
            let plain = batch::build_batch(0, now_ms(), &kvs);
            let (bytes, origin) = match producer {
                None => (plain.freeze(), AppendOrigin::Client),
                Some((pid, epoch)) => {
                    let h = batch::BatchHeader::parse(&plain).map_err(|_| AppendError::NoResult)?;
                    // Kafka writes a TxnOffsetCommit as a transactional batch at sequence 0;
                    // the coordinator's origin checks its epoch, not its sequence.
                    let fields = BatchFields {
                        attributes: 0x10,
                        producer_id: pid,
                        producer_epoch: epoch,
                        base_sequence: 0,
                        ..BatchFields::of(&h)
                    };
                    let b = encode_batch(&fields, &plain[batch::HEADER_LEN..]).freeze();
                    (b, AppendOrigin::Coordinator)
                }
            };
            let tp = TopicPartition {
                topic: OFFSETS_TOPIC.to_string(),
                partition,
            };
            let results = replicas
                .append_records_from(-1, timeout, vec![(tp, Some(bytes))], origin)
                .await;
            match results.into_iter().next().map(|r| r.result) {
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => {
                    tracing::warn!(topic = OFFSETS_TOPIC, partition, error = %e,
                        "coordinator append failed");
                    Err(AppendError::Replica(e))
                }
                None => Err(AppendError::NoResult),
            }
        })
    }
}

impl GroupLog for ReplicaGroupLog {
    fn append(&self, partition: i32, records: Vec<Record>) -> AppendFuture {
        self.append_from(partition, records, None)
    }

    fn append_transactional(
        &self,
        partition: i32,
        records: Vec<Record>,
        pid: i64,
        epoch: i16,
    ) -> AppendFuture {
        self.append_from(partition, records, Some((pid, epoch)))
    }
}

/// Fire-and-forget writes, drained by [`WriteQueue::run`] in order.
#[derive(Clone, Default)]
pub struct WriteQueue {
    pending: Arc<Mutex<Vec<PartitionWrite>>>,
    wake: Arc<Notify>,
}

impl WriteQueue {
    pub fn push(&self, partition: i32, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        lock(&self.pending).push((partition, records));
        self.wake.notify_one();
    }

    /// Takes everything queued so far.
    pub fn drain(&self) -> Vec<PartitionWrite> {
        std::mem::take(&mut *lock(&self.pending))
    }

    /// Appends queued writes through `log` until `shutdown`. A failed write is logged and
    /// dropped: these records are recomputed (an emptied group is written again on its next
    /// change; expiry runs again on the next check).
    pub async fn run(self, log: Arc<dyn GroupLog>, mut shutdown: watch::Receiver<bool>) {
        loop {
            for (partition, records) in self.drain() {
                if let Err(e) = log.append(partition, records).await {
                    tracing::warn!(
                        topic = OFFSETS_TOPIC,
                        partition,
                        error = %e,
                        "dropping a background coordinator write"
                    );
                }
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                _ = self.wake.notified() => {}
            }
        }
    }
}

/// Test support: a [`GroupLog`] that keeps appended records in memory and can be told to fail.
#[cfg(test)]
#[derive(Default, Clone)]
pub struct MemoryGroupLog {
    pub appended: Arc<Mutex<Vec<PartitionWrite>>>,
    pub fail_with: Arc<Mutex<Option<AppendError>>>,
}

#[cfg(test)]
impl GroupLog for MemoryGroupLog {
    fn append(&self, partition: i32, records: Vec<Record>) -> AppendFuture {
        let me = self.clone();
        Box::pin(async move {
            if let Some(e) = me.fail_with.lock().unwrap().clone() {
                return Err(e);
            }
            me.appended.lock().unwrap().push((partition, records));
            Ok(())
        })
    }

    fn append_transactional(
        &self,
        partition: i32,
        records: Vec<Record>,
        _pid: i64,
        _epoch: i16,
    ) -> AppendFuture {
        self.append(partition, records)
    }
}
