//! Loading and unloading a `__transaction_state` partition (reference §2.8 "Loading"): on
//! becoming its leader at epoch E, read it from the log start to the log end (unreplicated
//! data included, as Kafka does), last record per transactional id wins and a tombstone
//! removes; install the ids at coordinator epoch E; then finish every transaction found
//! prepared (send its markers again, write its completion). Requests meanwhile get
//! COORDINATOR_LOAD_IN_PROGRESS; losing the partition drops its ids (NOT_COORDINATOR).

use std::collections::HashMap;

use super::coordinator::{Owned, TransactionCoordinator};
use super::metadata::{TxnMetadata, TxnState};
use super::records::{self, TRANSACTION_STATE_TOPIC};
use crate::log::TopicPartition;
use crate::protocol::batch;
use crate::util::clock::now_ms;

impl TransactionCoordinator {
    /// This broker leads `__transaction_state` partition `partition` at `epoch`.
    pub fn on_election(&self, partition: i32, epoch: i32) {
        {
            let mut owned = self.owned();
            if owned.get(&partition).is_some_and(|p| p.epoch == epoch) {
                return;
            }
            owned.insert(
                partition,
                Owned {
                    epoch,
                    loading: true,
                    txns: HashMap::new(),
                },
            );
        }
        tracing::info!(
            topic = TRANSACTION_STATE_TOPIC,
            partition,
            epoch,
            "loading transaction state"
        );
        let me = self.clone();
        tokio::spawn(async move { me.load(partition, epoch).await });
    }

    /// Another broker leads `partition` now.
    pub fn on_resignation(&self, partition: i32) {
        if let Some(p) = self.owned().remove(&partition) {
            tracing::info!(
                topic = TRANSACTION_STATE_TOPIC,
                partition,
                transactional_ids = p.txns.len(),
                "unloaded transaction state"
            );
        }
    }

    async fn load(&self, partition: i32, epoch: i32) {
        let started = std::time::Instant::now();
        let me = self.clone();
        let replayed = tokio::task::spawn_blocking(move || me.replay(partition)).await;
        let txns = match replayed {
            Ok(Ok(t)) => t,
            Ok(Err(reason)) => {
                tracing::error!(topic = TRANSACTION_STATE_TOPIC, partition, epoch, %reason,
                    "loading transaction state failed; not coordinating its ids");
                self.forget_if_loading(partition, epoch);
                return;
            }
            Err(e) => {
                tracing::error!(topic = TRANSACTION_STATE_TOPIC, partition, epoch, error = %e,
                    "transaction state load task failed");
                self.forget_if_loading(partition, epoch);
                return;
            }
        };
        let mut to_finish = Vec::new();
        {
            let mut owned = self.owned();
            let Some(p) = owned
                .get_mut(&partition)
                .filter(|p| p.epoch == epoch && p.loading)
            else {
                return;
            };
            p.txns = txns;
            p.loading = false;
            let now = now_ms();
            for t in p.txns.values_mut() {
                if t.state.is_prepare() {
                    let prepared = t.current();
                    if let Ok(complete) = t.prepare_complete(now) {
                        to_finish.push((t.transactional_id.clone(), prepared, complete));
                    }
                }
            }
            tracing::info!(
                topic = TRANSACTION_STATE_TOPIC,
                partition,
                epoch,
                transactional_ids = p.txns.len(),
                prepared = to_finish.len(),
                ms = started.elapsed().as_millis() as u64,
                "loaded transaction state"
            );
        }
        for (id, prepared, complete) in to_finish {
            self.spawn_completion(id, epoch, prepared, complete);
        }
    }

    fn forget_if_loading(&self, partition: i32, epoch: i32) {
        let mut owned = self.owned();
        if owned
            .get(&partition)
            .is_some_and(|p| p.epoch == epoch && p.loading)
        {
            owned.remove(&partition);
        }
    }

    fn replay(&self, partition: i32) -> Result<HashMap<String, TxnMetadata>, String> {
        let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, partition);
        let p = self
            .inner
            .replicas
            .partition(&tp)
            .ok_or_else(|| format!("{tp} is not hosted here"))?;
        let log = p.log().clone();
        let end = log.log_end_offset();
        let mut offset = log.log_start_offset();
        let mut txns: HashMap<String, TxnMetadata> = HashMap::new();
        let mut skipped = 0usize;
        while offset < end {
            let info = log
                .read(offset, self.inner.config.load_buffer_size, Some(end), true)
                .map_err(|e| format!("reading {tp} at {offset}: {e}"))?;
            let data = info
                .records
                .read()
                .map_err(|e| format!("reading {tp} at {offset}: {e}"))?;
            let mut next = offset;
            for item in batch::batches(&data) {
                let Ok((h, range)) = item else { break };
                next = h.next_offset();
                if h.is_control() {
                    continue;
                }
                let Some(recs) = batch::uncompressed_records(&data[range]) else {
                    skipped += 1;
                    continue;
                };
                for r in recs {
                    let Some(Ok(id)) = r.key.map(records::decode_key) else {
                        skipped += 1;
                        continue;
                    };
                    match r.value.map(records::decode_value) {
                        None => {
                            txns.remove(&id);
                        }
                        Some(Ok(transit)) if transit.state != TxnState::Dead => {
                            txns.insert(id.clone(), TxnMetadata::from_transit(&id, &transit));
                        }
                        Some(Ok(_)) => {
                            txns.remove(&id);
                        }
                        Some(Err(_)) => skipped += 1,
                    }
                }
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
        if skipped > 0 {
            tracing::warn!(
                topic = TRANSACTION_STATE_TOPIC,
                partition,
                skipped,
                "skipped unreadable transaction state records"
            );
        }
        Ok(txns)
    }
}
