//! The partition state machine (Kafka's `ZkPartitionStateMachine`): moves a batch of partitions
//! between `NonExistent`, `New`, `Online` and `Offline`, refusing (and logging) any transition
//! whose previous state is not valid.
//!
//! Going Online elects leaders for the whole batch at once: the choice made by the pure
//! functions of `election` on the cached state, one pipelined round of conditional writes
//! fenced on the controller epoch and on each znode's cached version, and further rounds, on
//! states read afresh, only for partitions whose znode changed underneath (BADVERSION). On success the context holds the new leadership
//! and the batch carries LeaderAndIsr for the live replicas plus UpdateMetadata for every broker.

use std::collections::{BTreeMap, BTreeSet};

use super::context::{ControllerContext, Leadership, PartitionState};
use super::election::{
    controlled_shutdown_choice, needs_unclean, new_partition_choice, offline_choice,
    preferred_choice, Choice, Strategy,
};
use super::request_batch::RequestBatch;
use crate::common::TopicPartition;
use crate::config::topic_log_config;
use crate::log::LogConfig;
use crate::zk::{KafkaZkClient, LeaderIsrAndControllerEpoch, ZkError};

/// Rounds of conditional writes before a partition whose znode keeps changing is given up on
/// (it stays in its state and the next trigger retries it).
const WRITE_ROUNDS: usize = 5;

/// The states to decide on for `partitions`, each with the version its conditional write will
/// check. The first round (`from_cache`) takes the controller's cached state, as every write is
/// conditional on the cached version: a state changed underneath (a leader's ISR change, say)
/// fails its write and is decided again on the znode read in the next round. That halves the
/// ZooKeeper round trips of a failover on an accurate cache and is as safe as reading first.
/// Partitions without a cached state, and every retry round, read the znodes (pipelined).
pub(super) async fn states_to_decide_on(
    ctx: &ControllerContext,
    zk: &KafkaZkClient,
    partitions: Vec<TopicPartition>,
    from_cache: bool,
) -> Result<Vec<(TopicPartition, Option<Leadership>)>, ZkError> {
    let mut out = Vec::with_capacity(partitions.len());
    let mut read = Vec::new();
    for tp in partitions {
        match ctx.leadership.get(&tp).filter(|_| from_cache) {
            Some(l) => {
                let l = l.clone();
                out.push((tp, Some(l)));
            }
            None => read.push(tp),
        }
    }
    if !read.is_empty() {
        let states = zk.get_partition_states_batch(&read).await?;
        for (tp, state) in read.into_iter().zip(states) {
            let l = state.map(|(state, zk_version)| Leadership { state, zk_version });
            if let Some(l) = &l {
                ctx.check_state_epoch(&tp, &l.state)?;
            }
            out.push((tp, l));
        }
    }
    Ok(out)
}

/// Why a partition was not elected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ElectionFailure {
    /// The previous state does not allow the transition.
    InvalidTransition(PartitionState),
    /// The strategy found no eligible leader; nothing was written.
    NoEligibleLeader,
    /// No state znode exists (never initialised).
    NoState,
    /// The znode kept changing, or its write failed (the error says why).
    WriteFailed(String),
}

/// The state machine over the controller's context, for one event's batch of requests.
pub(super) struct PartitionStateMachine<'a> {
    pub ctx: &'a mut ControllerContext,
    pub zk: &'a KafkaZkClient,
    pub batch: &'a mut RequestBatch,
    /// The broker's log defaults (its `unclean.leader.election.enable` among them), under
    /// each topic's overrides.
    pub broker_log_config: &'a LogConfig,
}

impl PartitionStateMachine<'_> {
    /// Moves `partitions` to `target`; `strategy` picks leaders for Offline/Online → Online
    /// (New → Online always uses the new-partition rule). Returns the partitions that did not
    /// reach `target`, with why.
    ///
    /// # Errors
    /// `ControllerMoved` (a fencing failure, or a state written by a newer controller) and
    /// session loss; the caller resigns or retries the whole event.
    pub async fn handle_state_changes(
        &mut self,
        partitions: &[TopicPartition],
        target: PartitionState,
        strategy: Strategy,
    ) -> Result<BTreeMap<TopicPartition, ElectionFailure>, ZkError> {
        let mut failed = BTreeMap::new();
        let mut to_init = Vec::new();
        let mut to_elect = Vec::new();
        for tp in partitions {
            let current = self.ctx.partition_state(tp);
            if !target.can_follow(current) {
                tracing::warn!(topic = %tp.topic, partition = tp.partition, from = ?current,
                    to = ?target, epoch = self.ctx.epoch, "illegal partition state transition refused");
                failed.insert(tp.clone(), ElectionFailure::InvalidTransition(current));
                continue;
            }
            match target {
                PartitionState::Online if current == PartitionState::New => {
                    to_init.push(tp.clone())
                }
                PartitionState::Online => to_elect.push(tp.clone()),
                PartitionState::NonExistent => {
                    self.ctx.partition_states.remove(tp);
                }
                other => {
                    self.ctx.partition_states.insert(tp.clone(), other);
                }
            }
        }
        if !to_init.is_empty() {
            let exists = self.initialize(&to_init, &mut failed).await?;
            to_elect.extend(exists);
        }
        if !to_elect.is_empty() {
            self.elect(to_elect, strategy, &mut failed).await?;
        }
        Ok(failed)
    }

    /// Every New or Offline partition of a topic not being deleted → Online (Kafka's
    /// `triggerOnlinePartitionStateChange`).
    pub async fn trigger_online_partition_state_change(&mut self) -> Result<(), ZkError> {
        let mut todo: Vec<TopicPartition> = self
            .ctx
            .partition_states
            .iter()
            .filter(|(tp, s)| {
                matches!(s, PartitionState::New | PartitionState::Offline)
                    && !self.ctx.is_deleting(&tp.topic)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        todo.sort();
        let failed = self
            .handle_state_changes(&todo, PartitionState::Online, Strategy::Offline)
            .await?;
        if !failed.is_empty() {
            tracing::info!(
                partitions = failed.len(),
                epoch = self.ctx.epoch,
                "partitions left without a leader"
            );
        }
        Ok(())
    }

    /// New → Online: creates every state znode with the first replica that may lead. Returns
    /// the partitions whose state already existed (an earlier controller created it): they are
    /// Offline now and go through the offline election.
    async fn initialize(
        &mut self,
        partitions: &[TopicPartition],
        failed: &mut BTreeMap<TopicPartition, ElectionFailure>,
    ) -> Result<Vec<TopicPartition>, ZkError> {
        let mut creates = Vec::new();
        for tp in partitions {
            let ctx = &*self.ctx;
            match new_partition_choice(ctx.replicas(tp), |b| ctx.can_lead_replica(tp, b)) {
                Some(c) => creates.push((
                    tp.clone(),
                    LeaderIsrAndControllerEpoch {
                        leader: c.leader,
                        leader_epoch: 0,
                        isr: c.isr,
                        controller_epoch: ctx.epoch,
                    },
                )),
                None => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition,
                        "no live replica for new partition; it stays New");
                    failed.insert(tp.clone(), ElectionFailure::NoEligibleLeader);
                }
            }
        }
        let outcomes = self
            .zk
            .create_partition_states_batch(&creates, self.ctx.epoch_zk_version)
            .await?;
        let mut existing = Vec::new();
        let mut online = 0usize;
        for ((tp, state), outcome) in creates.into_iter().zip(outcomes) {
            match outcome {
                Ok(zk_version) => {
                    let isr = state.isr.clone();
                    self.ctx
                        .leadership
                        .insert(tp.clone(), Leadership { state, zk_version });
                    self.ctx
                        .partition_states
                        .insert(tp.clone(), PartitionState::Online);
                    self.batch.add_leader_and_isr(self.ctx, &isr, &tp, true);
                    online += 1;
                }
                Err(ZkError::NodeExists { .. }) => {
                    self.ctx
                        .partition_states
                        .insert(tp.clone(), PartitionState::Offline);
                    existing.push(tp);
                }
                Err(e) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e,
                        "cannot create partition state; it stays New");
                    failed.insert(tp, ElectionFailure::WriteFailed(e.to_string()));
                }
            }
        }
        if online > 0 {
            tracing::info!(
                partitions = online,
                epoch = self.ctx.epoch,
                "new partitions online"
            );
        }
        Ok(existing)
    }

    /// Offline/Online → Online with `strategy`, in rounds of pipelined reads and writes.
    async fn elect(
        &mut self,
        mut todo: Vec<TopicPartition>,
        strategy: Strategy,
        failed: &mut BTreeMap<TopicPartition, ElectionFailure>,
    ) -> Result<(), ZkError> {
        let mut unclean_topics: BTreeMap<String, bool> = BTreeMap::new();
        for round in 0..WRITE_ROUNDS {
            if todo.is_empty() {
                return Ok(());
            }
            // Leaders change the ISR without telling the controller at once (isr_change
            // notifications are batched): a decision on a stale cached ISR fails its
            // conditional write and is made again on the znode (see `states_to_decide_on`).
            let states =
                states_to_decide_on(self.ctx, self.zk, std::mem::take(&mut todo), round == 0)
                    .await?;
            let mut current = Vec::with_capacity(states.len());
            for (tp, leadership) in states {
                let Some(leadership) = leadership else {
                    // Never initialised: the next trigger creates it as a New partition.
                    self.ctx
                        .partition_states
                        .insert(tp.clone(), PartitionState::New);
                    failed.insert(tp, ElectionFailure::NoState);
                    continue;
                };
                self.ctx.leadership.insert(tp.clone(), leadership.clone());
                current.push((tp, leadership));
            }
            if strategy == Strategy::Offline {
                self.load_unclean_settings(&current, &mut unclean_topics)
                    .await?;
            }
            let mut writes = Vec::new();
            for (tp, leadership) in current {
                let allow_unclean = unclean_topics.get(&tp.topic).copied().unwrap_or(false);
                match self.choose(&tp, &leadership.state.isr, strategy, allow_unclean) {
                    Some(choice) => writes.push((tp, leadership, choice)),
                    // "Nobody eligible" on the cache has no write to prove it current (the
                    // ISR may have grown since): decided again on the znode.
                    None if round == 0 => todo.push(tp),
                    None => {
                        if strategy == Strategy::Offline {
                            self.ctx
                                .partition_states
                                .insert(tp.clone(), PartitionState::Offline);
                        }
                        tracing::info!(topic = %tp.topic, partition = tp.partition, ?strategy,
                            isr = ?leadership.state.isr, "no eligible leader; leadership unchanged");
                        failed.insert(tp, ElectionFailure::NoEligibleLeader);
                    }
                }
            }
            todo.extend(self.commit(writes, strategy, failed).await?);
        }
        for tp in todo {
            tracing::warn!(topic = %tp.topic, partition = tp.partition, ?strategy,
                "partition state kept changing; election skipped");
            failed.insert(
                tp,
                ElectionFailure::WriteFailed("state kept changing".into()),
            );
        }
        Ok(())
    }

    /// Reads `unclean.leader.election.enable` for the topics where only an unclean leader is
    /// possible (once per topic per event).
    async fn load_unclean_settings(
        &self,
        current: &[(TopicPartition, Leadership)],
        cache: &mut BTreeMap<String, bool>,
    ) -> Result<(), ZkError> {
        let topics: BTreeSet<&str> = current
            .iter()
            .filter(|(tp, l)| {
                !cache.contains_key(&tp.topic)
                    && needs_unclean(self.ctx.replicas(tp), &l.state.isr, |b| {
                        self.ctx.can_lead_replica(tp, b)
                    })
            })
            .map(|(tp, _)| tp.topic.as_str())
            .collect();
        for topic in topics {
            let overrides = self.zk.get_topic_config(topic).await?;
            // Only an explicit, valid `true` may lose data: a config that does not parse
            // elects nobody out of sync (the partition stays offline), as Kafka, whose
            // LogConfig.fromProps would fail, never elects on a config it cannot read.
            let enabled = match topic_log_config(self.broker_log_config, &overrides) {
                Ok(c) => c.unclean_leader_election_enable,
                Err(e) => {
                    tracing::error!(topic, error = %e,
                        "invalid topic config; no unclean leader election for its partitions");
                    false
                }
            };
            cache.insert(topic.to_string(), enabled);
        }
        Ok(())
    }

    fn choose(
        &self,
        tp: &TopicPartition,
        isr: &[i32],
        strategy: Strategy,
        allow_unclean: bool,
    ) -> Option<Choice> {
        let ctx = &*self.ctx;
        let assignment = ctx.replicas(tp);
        let clean = |(leader, isr): (i32, Vec<i32>)| Choice {
            leader,
            isr,
            unclean: false,
        };
        match strategy {
            Strategy::Offline => offline_choice(
                assignment,
                isr,
                |b| ctx.can_lead_replica(tp, b),
                allow_unclean,
            ),
            Strategy::ControlledShutdown => controlled_shutdown_choice(
                assignment,
                isr,
                |b| ctx.is_replica_online(tp, b),
                &ctx.shutting_down,
            )
            .map(clean),
            Strategy::Preferred => {
                preferred_choice(assignment, isr, |b| ctx.can_lead_replica(tp, b)).map(clean)
            }
        }
    }

    /// Writes every choice (leader epoch + 1) in one pipelined round. Returns the partitions to
    /// decide again because their znode changed underneath.
    async fn commit(
        &mut self,
        writes: Vec<(TopicPartition, Leadership, Choice)>,
        strategy: Strategy,
        failed: &mut BTreeMap<TopicPartition, ElectionFailure>,
    ) -> Result<Vec<TopicPartition>, ZkError> {
        let requests: Vec<_> = writes
            .iter()
            .map(|(tp, current, choice)| {
                let state = LeaderIsrAndControllerEpoch {
                    leader: choice.leader,
                    leader_epoch: current.state.leader_epoch + 1,
                    isr: choice.isr.clone(),
                    controller_epoch: self.ctx.epoch,
                };
                (tp.clone(), state, current.zk_version)
            })
            .collect();
        let outcomes = self
            .zk
            .update_partition_states_batch(&requests, self.ctx.epoch_zk_version)
            .await?;
        let mut retry = Vec::new();
        let mut elected = 0usize;
        for (((tp, state, _), (_, previous, choice)), outcome) in
            requests.into_iter().zip(writes).zip(outcomes)
        {
            match outcome {
                Ok(zk_version) => {
                    if choice.unclean {
                        tracing::warn!(topic = %tp.topic, partition = tp.partition,
                            leader = choice.leader, "unclean leader election: data may be lost");
                    }
                    tracing::debug!(topic = %tp.topic, partition = tp.partition,
                        leader = state.leader, previous = previous.state.leader,
                        leader_epoch = state.leader_epoch, ?strategy, "elected leader");
                    self.ctx
                        .leadership
                        .insert(tp.clone(), Leadership { state, zk_version });
                    self.ctx
                        .partition_states
                        .insert(tp.clone(), PartitionState::Online);
                    let mut recipients = self.ctx.live_replicas(&tp);
                    if strategy == Strategy::ControlledShutdown {
                        // A broker shutting down would follow the new leader and be added back
                        // to the ISR; it gets StopReplica instead (see `shutdown`).
                        recipients.retain(|r| !self.ctx.shutting_down.contains(r));
                    }
                    self.batch
                        .add_leader_and_isr(self.ctx, &recipients, &tp, false);
                    elected += 1;
                }
                Err(e) if e.is_retriable() || matches!(e, ZkError::BadVersion { .. }) => {
                    retry.push(tp)
                }
                Err(e) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e,
                        "leader election write failed");
                    failed.insert(tp, ElectionFailure::WriteFailed(e.to_string()));
                }
            }
        }
        if elected > 0 {
            tracing::info!(
                partitions = elected,
                ?strategy,
                epoch = self.ctx.epoch,
                "leaders elected"
            );
        }
        Ok(retry)
    }
}
