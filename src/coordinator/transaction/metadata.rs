//! One transactional id's state (Kafka's `TransactionMetadata`): its producer id and epoch, the
//! transaction's partitions, and the state machine with Kafka 2.8's valid previous states.
//!
//! A change is first *prepared*: the new values come back as a [`TxnTransit`] and the id is
//! marked with the pending state, so any other request meanwhile gets CONCURRENT_TRANSACTIONS.
//! Only after the transit is durable in `__transaction_state` is it *completed* (the cache takes
//! it); a failed write *aborts* it, leaving the old values. An illegal transition is refused as
//! an error, never applied.

use std::collections::BTreeSet;

use crate::log::TopicPartition;

/// Kafka's `TransactionState`, with its id in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's `TransactionMetadata.validPreviousStates`.
    pub fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[Ongoing, PrepareEpochFence],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteCommit, CompleteAbort],
            PrepareEpochFence => &[Ongoing],
        }
    }

    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// Kafka reserves the last epochs so a producer can always be fenced once more.
pub const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= EPOCH_EXHAUSTED
}

/// The values a transition writes (Kafka's `TxnTransitMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnTransit {
    pub producer_id: i64,
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// A refused transition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("transactional id {id} already has a pending transition to {pending}")]
    Pending { id: String, pending: &'static str },
    #[error("transactional id {id}: {to} does not follow {from}")]
    Illegal {
        id: String,
        from: &'static str,
        to: &'static str,
    },
    #[error("transactional id {id}: completing {to} without that pending transition")]
    NotPending { id: String, to: &'static str },
}

/// One transactional id in the coordinator's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub pending: Option<TxnState>,
    /// A fence's epoch bump whose write failed: the next fence does not bump again.
    pub failed_epoch_fence: bool,
}

impl TxnMetadata {
    /// A new id, as InitProducerId creates it: epoch -1, Empty.
    pub fn new(id: &str, producer_id: i64, timeout_ms: i32, now: i64) -> TxnMetadata {
        TxnMetadata {
            transactional_id: id.to_string(),
            producer_id,
            last_producer_id: -1,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now,
            pending: None,
            failed_epoch_fence: false,
        }
    }

    /// The metadata a loaded record describes (no pending transition).
    pub fn from_transit(id: &str, t: &TxnTransit) -> TxnMetadata {
        TxnMetadata {
            transactional_id: id.to_string(),
            producer_id: t.producer_id,
            last_producer_id: t.last_producer_id,
            producer_epoch: t.producer_epoch,
            last_producer_epoch: t.last_producer_epoch,
            timeout_ms: t.timeout_ms,
            state: t.state,
            partitions: t.partitions.clone(),
            start_ms: t.start_ms,
            last_update_ms: t.last_update_ms,
            pending: None,
            failed_epoch_fence: false,
        }
    }

    pub fn is_epoch_exhausted(&self) -> bool {
        is_epoch_exhausted(self.producer_epoch)
    }

    /// The current values as a transit (what a record of the current state holds).
    pub fn current(&self) -> TxnTransit {
        TxnTransit {
            producer_id: self.producer_id,
            last_producer_id: self.last_producer_id,
            producer_epoch: self.producer_epoch,
            last_producer_epoch: self.last_producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: self.partitions.clone(),
            start_ms: self.start_ms,
            last_update_ms: self.last_update_ms,
        }
    }

    /// Kafka's `prepareTransitionTo`: checks and marks the pending state.
    fn prepare(&mut self, t: TxnTransit) -> Result<TxnTransit, TransitionError> {
        if let Some(p) = self.pending {
            return Err(TransitionError::Pending {
                id: self.transactional_id.clone(),
                pending: p.name(),
            });
        }
        if !t.state.valid_previous().contains(&self.state) {
            return Err(TransitionError::Illegal {
                id: self.transactional_id.clone(),
                from: self.state.name(),
                to: t.state.name(),
            });
        }
        self.pending = Some(t.state);
        Ok(t)
    }

    fn transit(&self, state: TxnState, now: i64) -> TxnTransit {
        TxnTransit {
            state,
            last_update_ms: now,
            ..self.current()
        }
    }

    /// InitProducerId on Empty/Complete*: the next epoch (or a retry of the last bump), as
    /// Kafka's `prepareIncrementProducerEpoch`. `Ok(None)` is PRODUCER_FENCED.
    pub fn prepare_increment_epoch(
        &mut self,
        timeout_ms: i32,
        expected_epoch: Option<i16>,
        now: i64,
    ) -> Result<Option<TxnTransit>, TransitionError> {
        let bumped = self.producer_epoch.saturating_add(1);
        let (epoch, last) = match expected_epoch {
            None => (bumped, -1),
            Some(e) if self.producer_epoch == -1 || e == self.producer_epoch => {
                (bumped, self.producer_epoch)
            }
            Some(e) if e == self.last_producer_epoch => {
                (self.producer_epoch, self.last_producer_epoch)
            }
            Some(_) => return Ok(None),
        };
        let t = TxnTransit {
            producer_epoch: epoch,
            last_producer_epoch: last,
            last_producer_id: self.producer_id,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now,
            ..self.current()
        };
        self.prepare(t).map(Some)
    }

    /// InitProducerId with the epoch exhausted: a new producer id at epoch 0.
    pub fn prepare_producer_id_rotation(
        &mut self,
        new_producer_id: i64,
        timeout_ms: i32,
        now: i64,
        record_last_epoch: bool,
    ) -> Result<TxnTransit, TransitionError> {
        let t = TxnTransit {
            producer_id: new_producer_id,
            last_producer_id: self.producer_id,
            producer_epoch: 0,
            last_producer_epoch: if record_last_epoch {
                self.producer_epoch
            } else {
                -1
            },
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now,
        };
        self.prepare(t)
    }

    /// InitProducerId (or a timeout) on an Ongoing transaction: bump the epoch to fence the
    /// producer (never logged; the abort that follows carries it).
    pub fn prepare_fence(&mut self) -> Result<TxnTransit, TransitionError> {
        let epoch = if self.failed_epoch_fence {
            self.producer_epoch
        } else {
            self.producer_epoch.saturating_add(1)
        };
        let t = TxnTransit {
            producer_epoch: epoch,
            last_producer_epoch: -1,
            state: TxnState::PrepareEpochFence,
            ..self.current()
        };
        self.prepare(t)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: Ongoing with the union.
    pub fn prepare_add_partitions(
        &mut self,
        added: &BTreeSet<TopicPartition>,
        now: i64,
    ) -> Result<TxnTransit, TransitionError> {
        let start_ms = match self.state {
            TxnState::Empty | TxnState::CompleteAbort | TxnState::CompleteCommit => now,
            _ => self.start_ms,
        };
        let mut t = self.transit(TxnState::Ongoing, now);
        t.partitions.extend(added.iter().cloned());
        t.start_ms = start_ms;
        self.prepare(t)
    }

    /// EndTxn: PrepareCommit or PrepareAbort. An abort that follows a fence takes the fence's
    /// epoch (`fence_epoch`), clearing the fence's pending state first, as Kafka does.
    pub fn prepare_end(
        &mut self,
        commit: bool,
        now: i64,
        fence_epoch: Option<i16>,
    ) -> Result<TxnTransit, TransitionError> {
        if let Some(epoch) = fence_epoch {
            self.pending = None;
            self.producer_epoch = epoch;
            self.last_producer_epoch = -1;
        }
        let state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        let t = self.transit(state, now);
        self.prepare(t)
    }

    /// After every marker is written: CompleteCommit or CompleteAbort, no partitions.
    pub fn prepare_complete(&mut self, now: i64) -> Result<TxnTransit, TransitionError> {
        let state = if self.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        self.failed_epoch_fence = false;
        let mut t = self.transit(state, now);
        t.partitions.clear();
        self.prepare(t)
    }

    /// The id expired: Dead (a tombstone is written).
    pub fn prepare_dead(&mut self) -> Result<TxnTransit, TransitionError> {
        let t = TxnTransit {
            state: TxnState::Dead,
            partitions: BTreeSet::new(),
            ..self.current()
        };
        self.prepare(t)
    }

    /// The transit is durable: take its values.
    pub fn complete(&mut self, t: &TxnTransit) -> Result<(), TransitionError> {
        if self.pending != Some(t.state) {
            return Err(TransitionError::NotPending {
                id: self.transactional_id.clone(),
                to: t.state.name(),
            });
        }
        self.producer_id = t.producer_id;
        self.last_producer_id = t.last_producer_id;
        self.producer_epoch = t.producer_epoch;
        self.last_producer_epoch = t.last_producer_epoch;
        self.timeout_ms = t.timeout_ms;
        self.state = t.state;
        self.partitions = t.partitions.clone();
        self.start_ms = t.start_ms;
        self.last_update_ms = t.last_update_ms;
        self.pending = None;
        Ok(())
    }

    /// The write failed: forget the pending transition.
    pub fn abort_pending(&mut self) {
        self.pending = None;
    }
}
