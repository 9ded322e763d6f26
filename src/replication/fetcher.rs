//! Follower fetchers (Kafka's `ReplicaFetcherManager` / `ReplicaFetcherThread`): one task per
//! source broker carrying every partition this broker follows from it (`num.replica.fetchers` =
//! 1). Each round first asks OffsetForLeaderEpoch for partitions still truncating (KIP-101/279),
//! then sends one Fetch with `replica_id` = own id for the rest and appends what comes back
//! verbatim; the leader's offsets and epochs are never rewritten.
//!
//! The task owns its connection; the manager only edits the shared partition map and wakes the
//! task. A response for a partition whose entry changed while the request was in flight (removed,
//! re-added with a new epoch, truncated) is dropped, so a role change never races an append.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::partition::Partition;
use super::rules::{self, EpochEndOffset, OutOfRangeAction};
use super::session_handler::{PartitionParams, SessionHandler};
use super::ReplicaError;
use crate::log::TopicPartition;
use crate::metadata::MetadataCache;
use crate::protocol::client::{BrokerConnection, ClientError};

const FETCH_VERSION: i16 = 11;
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 3;
const LIST_OFFSETS_VERSION: i16 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `replica.*` settings a fetcher uses.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    pub broker_id: i32,
    /// The listener name whose endpoint followers connect to.
    pub listener: String,
    pub fetch_max_bytes: i32,
    pub response_max_bytes: i32,
    pub wait_max_ms: i32,
    pub min_bytes: i32,
    pub backoff: Duration,
    pub socket_timeout: Duration,
}

/// One followed partition's fetch position.
struct FetchState {
    partition: Arc<Partition>,
    /// The leader epoch this broker follows in; stamped on every request as CurrentLeaderEpoch.
    epoch: i32,
    /// The next offset to fetch, always the local LEO once truncation is done.
    offset: i64,
    truncating: bool,
    delayed_until: Option<Instant>,
}

/// What one request round carries for a partition, to recognise stale responses.
#[derive(Clone)]
struct Sent {
    tp: TopicPartition,
    partition: Arc<Partition>,
    epoch: i32,
    offset: i64,
}

struct Shared {
    source: i32,
    partitions: Mutex<HashMap<TopicPartition, FetchState>>,
    wake: Notify,
}

impl Shared {
    fn map(&self) -> MutexGuard<'_, HashMap<TopicPartition, FetchState>> {
        match self.partitions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Partitions ready now, split into (truncating, fetching), and the earliest delay end.
    fn ready(&self) -> (Vec<Sent>, Vec<Sent>, Option<Instant>) {
        let now = Instant::now();
        let mut truncating = Vec::new();
        let mut fetching = Vec::new();
        let mut next = None::<Instant>;
        for (tp, st) in self.map().iter_mut() {
            if let Some(until) = st.delayed_until {
                if until > now {
                    next = Some(next.map_or(until, |n| n.min(until)));
                    continue;
                }
                st.delayed_until = None;
            }
            let sent = Sent {
                tp: tp.clone(),
                partition: st.partition.clone(),
                epoch: st.epoch,
                offset: st.offset,
            };
            if st.truncating {
                truncating.push(sent);
            } else {
                fetching.push(sent);
            }
        }
        (truncating, fetching, next)
    }

    /// Applies `f` to the partition's entry if it is still the one `sent` was built from.
    fn update(&self, sent: &Sent, f: impl FnOnce(&mut FetchState)) {
        if let Some(st) = self.map().get_mut(&sent.tp) {
            if st.epoch == sent.epoch && st.offset == sent.offset {
                f(st);
            }
        }
    }

    fn still_current(&self, sent: &Sent) -> bool {
        self.map()
            .get(&sent.tp)
            .is_some_and(|st| st.epoch == sent.epoch && st.offset == sent.offset)
    }

    fn delay(&self, sent: &Sent, backoff: Duration) {
        self.update(sent, |st| st.delayed_until = Some(Instant::now() + backoff));
    }
}

struct Fetcher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Inner {
    config: FetcherConfig,
    metadata: MetadataCache,
    /// Leader addresses from LeaderAndIsr's LiveLeaders, which can arrive before the
    /// UpdateMetadata that would tell the metadata cache.
    leader_addrs: Mutex<HashMap<i32, String>>,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

/// The set of fetcher tasks of this broker.
#[derive(Clone)]
pub struct FetcherManager {
    inner: Arc<Inner>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl FetcherManager {
    pub fn new(config: FetcherConfig, metadata: MetadataCache) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                metadata,
                leader_addrs: Mutex::new(HashMap::new()),
                fetchers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Remembers where `broker` listens (from LeaderAndIsr's LiveLeaders).
    pub fn set_leader_addr(&self, broker: i32, addr: String) {
        locked(&self.inner.leader_addrs).insert(broker, addr);
    }

    /// Starts following many partitions of one leader at once: one wake-up of its fetcher, so
    /// a LeaderAndIsr for thousands of partitions does not start a fetch round per partition.
    pub fn add_partitions(
        &self,
        leader: i32,
        partitions: Vec<(TopicPartition, Arc<Partition>, i32, i64)>,
    ) {
        if partitions.is_empty() {
            return;
        }
        let names: Vec<TopicPartition> = partitions.iter().map(|(tp, ..)| tp.clone()).collect();
        self.remove_partitions(&names);
        let mut fetchers = locked(&self.inner.fetchers);
        let fetcher = fetchers.entry(leader).or_insert_with(|| {
            let shared = Arc::new(Shared {
                source: leader,
                partitions: Mutex::new(HashMap::new()),
                wake: Notify::new(),
            });
            let task = tokio::spawn(run(self.clone(), shared.clone()));
            tracing::info!(
                broker = self.inner.config.broker_id,
                source = leader,
                "started replica fetcher"
            );
            Fetcher { shared, task }
        });
        {
            let mut map = fetcher.shared.map();
            for (tp, partition, epoch, offset) in partitions {
                map.insert(
                    tp,
                    FetchState {
                        partition,
                        epoch,
                        offset,
                        truncating: true,
                        delayed_until: None,
                    },
                );
            }
        }
        fetcher.shared.wake.notify_one();
    }

    /// Stops following these partitions (leadership here, StopReplica, or a new leader).
    pub fn remove_partitions(&self, tps: &[TopicPartition]) {
        let fetchers = locked(&self.inner.fetchers);
        for f in fetchers.values() {
            let mut map = f.shared.map();
            for tp in tps {
                map.remove(tp);
            }
        }
    }

    /// Stops every fetcher task (broker shutdown).
    pub fn shutdown(&self) {
        let mut fetchers = locked(&self.inner.fetchers);
        for (_, f) in fetchers.drain() {
            f.task.abort();
        }
    }

    fn leader_addr(&self, broker: i32) -> Option<String> {
        if let Some(a) = locked(&self.inner.leader_addrs).get(&broker) {
            return Some(a.clone());
        }
        let snap = self.inner.metadata.snapshot();
        let b = snap.brokers.get(&broker)?;
        let ep = b.endpoint(&self.inner.config.listener)?;
        Some(format!("{}:{}", ep.host, ep.port))
    }
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// Groups per-partition entries by topic (first-seen order) and builds each topic's entry.
fn by_topic<P, T>(items: Vec<(String, P)>, make: impl Fn(TopicName, Vec<P>) -> T) -> Vec<T> {
    let mut grouped: Vec<(String, Vec<P>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (topic, item) in items {
        match index.get(&topic) {
            Some(i) => grouped[*i].1.push(item),
            None => {
                index.insert(topic.clone(), grouped.len());
                grouped.push((topic, vec![item]));
            }
        }
    }
    grouped
        .into_iter()
        .map(|(t, parts)| make(topic_name(&t), parts))
        .collect()
}

/// The fetcher task for one source broker.
async fn run(manager: FetcherManager, shared: Arc<Shared>) {
    let cfg = manager.inner.config.clone();
    let mut conn: Option<BrokerConnection> = None;
    let mut session = SessionHandler::default();
    loop {
        let (truncating, fetching, next_delay) = shared.ready();
        if truncating.is_empty() && fetching.is_empty() {
            let wait = next_delay
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        if conn.is_none() {
            conn = connect(&manager, shared.source, &cfg).await;
            if conn.is_none() {
                tokio::time::sleep(cfg.backoff).await;
                continue;
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let result = if truncating.is_empty() {
            fetch_round(c, &shared, &cfg, &mut session, fetching).await
        } else {
            truncation_round(c, &shared, &cfg, truncating).await
        };
        if let Err(e) = result {
            tracing::warn!(broker = cfg.broker_id, source = shared.source, error = %e,
                "replica fetch failed; reconnecting after backoff");
            conn = None;
            // The leader may or may not have seen the request: start the session over.
            session.restart();
            tokio::time::sleep(cfg.backoff).await;
        }
    }
}

async fn connect(
    manager: &FetcherManager,
    source: i32,
    cfg: &FetcherConfig,
) -> Option<BrokerConnection> {
    let Some(addr) = manager.leader_addr(source) else {
        tracing::debug!(
            broker = cfg.broker_id,
            source,
            "leader address not known yet"
        );
        return None;
    };
    let client_id = format!("broker-{}-fetcher-0", cfg.broker_id);
    match BrokerConnection::connect(&addr, &client_id, CONNECT_TIMEOUT).await {
        Ok(c) => Some(c.with_timeout(cfg.socket_timeout)),
        Err(e) => {
            tracing::debug!(broker = cfg.broker_id, source, error = %e, "cannot reach leader");
            None
        }
    }
}

/// OffsetForLeaderEpoch for partitions that just became followers, then truncation.
async fn truncation_round(
    conn: &mut BrokerConnection,
    shared: &Shared,
    cfg: &FetcherConfig,
    partitions: Vec<Sent>,
) -> Result<(), ClientError> {
    let mut asking = Vec::new();
    for s in partitions {
        match s.partition.log().leader_epoch_cache().latest_epoch() {
            // No epochs known locally: the pre-KIP-101 rule, truncate to the high watermark.
            None => finish_truncation(shared, &s, s.offset.min(s.partition.high_watermark()), true),
            Some(latest) => asking.push((s, latest)),
        }
    }
    if asking.is_empty() {
        return Ok(());
    }
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = BrokerId(cfg.broker_id);
    req.topics = by_topic(
        asking
            .iter()
            .map(|(s, latest)| {
                let mut p = OffsetForLeaderPartition::default();
                p.partition = s.tp.partition;
                p.current_leader_epoch = s.epoch;
                p.leader_epoch = *latest;
                (s.tp.topic.clone(), p)
            })
            .collect(),
        |name, parts| {
            let mut topic = OffsetForLeaderTopic::default();
            topic.topic = name;
            topic.partitions = parts;
            topic
        },
    );
    let resp = conn.send(&req, OFFSET_FOR_LEADER_EPOCH_VERSION).await?;
    let answers: HashMap<(&str, i32), _> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| ((t.topic.0.as_str(), p.partition), p))
        })
        .collect();
    for (s, _) in &asking {
        let answer = answers.get(&(s.tp.topic.as_str(), s.tp.partition)).copied();
        let Some(a) = answer else {
            shared.delay(s, cfg.backoff);
            continue;
        };
        if let Some(error) = ResponseError::try_from_code(a.error_code) {
            tracing::debug!(broker = cfg.broker_id, topic = %s.tp.topic, partition = s.tp.partition,
                %error, "OffsetForLeaderEpoch failed; retrying");
            shared.delay(s, cfg.backoff);
            continue;
        }
        let log = s.partition.log();
        let leader = EpochEndOffset {
            leader_epoch: a.leader_epoch,
            end_offset: a.end_offset,
        };
        let own = match log.end_offset_for_epoch(a.leader_epoch) {
            (_, off) if off < 0 => None,
            (epoch, off) => Some((epoch, off)),
        };
        let target = rules::truncation_target(
            leader,
            own,
            log.log_end_offset(),
            s.partition.high_watermark(),
        );
        tracing::info!(broker = cfg.broker_id, topic = %s.tp.topic, partition = s.tp.partition,
            epoch = s.epoch, leader_epoch = a.leader_epoch, leader_end = a.end_offset,
            target = target.offset, done = target.done, "truncation point from leader");
        finish_truncation(shared, s, target.offset, target.done);
    }
    Ok(())
}

fn finish_truncation(shared: &Shared, s: &Sent, offset: i64, done: bool) {
    match s.partition.truncate_as_follower(s.epoch, offset) {
        Ok(leo) => shared.update(s, |st| {
            st.offset = leo;
            st.truncating = !done;
        }),
        Err(ReplicaError::FencedLeaderEpoch) => {}
        Err(e) => {
            tracing::error!(topic = %s.tp.topic, partition = s.tp.partition, error = %e,
                "follower truncation failed");
            shared.delay(s, Duration::from_secs(1));
        }
    }
}

/// One Fetch for every ready partition and the appends of what it returned. Within a fetch
/// session the request lists only what changed, and the response only what has news.
async fn fetch_round(
    conn: &mut BrokerConnection,
    shared: &Shared,
    cfg: &FetcherConfig,
    session: &mut SessionHandler,
    partitions: Vec<Sent>,
) -> Result<(), ClientError> {
    let params: Vec<(TopicPartition, PartitionParams)> = partitions
        .iter()
        .map(|s| {
            let p = PartitionParams {
                offset: s.offset,
                leader_epoch: s.epoch,
                log_start_offset: s.partition.log().log_start_offset(),
                max_bytes: cfg.fetch_max_bytes,
            };
            (s.tp.clone(), p)
        })
        .collect();
    let plan = session.plan(&params);
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(cfg.broker_id);
    req.max_wait_ms = cfg.wait_max_ms;
    req.min_bytes = cfg.min_bytes;
    req.max_bytes = cfg.response_max_bytes;
    req.isolation_level = 0;
    req.session_id = plan.session_id;
    req.session_epoch = plan.epoch;
    req.topics = by_topic(
        plan.listed
            .iter()
            .map(|&i| {
                let (tp, f) = &params[i];
                let mut p = FetchPartition::default();
                p.partition = tp.partition;
                p.current_leader_epoch = f.leader_epoch;
                p.fetch_offset = f.offset;
                p.log_start_offset = f.log_start_offset;
                p.partition_max_bytes = f.max_bytes;
                (tp.topic.clone(), p)
            })
            .collect(),
        |name, parts| {
            let mut topic = FetchTopic::default();
            topic.topic = name;
            topic.partitions = parts;
            topic
        },
    );
    req.forgotten_topics_data = by_topic(
        plan.forgotten
            .iter()
            .map(|tp| (tp.topic.clone(), tp.partition))
            .collect(),
        |name, parts| {
            let mut topic = ForgottenTopic::default();
            topic.topic = name;
            topic.partitions = parts;
            topic
        },
    );
    let resp = conn.send(&req, FETCH_VERSION).await?;
    let top_error = ResponseError::try_from_code(resp.error_code);
    session.answered(plan, top_error, resp.session_id);
    if let Some(error) = top_error {
        if matches!(
            error,
            ResponseError::FetchSessionIdNotFound | ResponseError::InvalidFetchSessionEpoch
        ) {
            // The leader lost or moved past the session: the next (full) request starts over.
            tracing::debug!(broker = cfg.broker_id, source = shared.source, %error,
                "fetch session reset");
            return Ok(());
        }
        tracing::warn!(
            broker = cfg.broker_id,
            source = shared.source,
            %error,
            "fetch request failed"
        );
        for s in &partitions {
            shared.delay(s, cfg.backoff);
        }
        return Ok(());
    }
    // A response may carry thousands of partitions: look each up by name, not by a scan.
    let by_name: HashMap<(&str, i32), usize> = partitions
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.tp.topic.as_str(), s.tp.partition), i))
        .collect();
    for topic in resp.responses {
        for data in topic.partitions {
            let Some(s) = by_name
                .get(&(topic.topic.0.as_str(), data.partition_index))
                .map(|i| &partitions[*i])
            else {
                continue;
            };
            if !shared.still_current(s) {
                continue;
            }
            match ResponseError::try_from_code(data.error_code) {
                None => {
                    let records = data.records.unwrap_or_default();
                    apply_fetched(
                        shared,
                        cfg,
                        s,
                        records,
                        data.high_watermark,
                        data.log_start_offset,
                    );
                }
                Some(ResponseError::OffsetOutOfRange) => {
                    handle_out_of_range(conn, shared, cfg, s).await?
                }
                Some(error) => {
                    tracing::debug!(broker = cfg.broker_id, topic = %s.tp.topic,
                        partition = s.tp.partition, %error, "follower fetch error; backing off");
                    shared.delay(s, cfg.backoff);
                }
            }
        }
    }
    Ok(())
}

fn apply_fetched(
    shared: &Shared,
    cfg: &FetcherConfig,
    s: &Sent,
    records: Bytes,
    leader_hw: i64,
    leader_log_start: i64,
) {
    match s
        .partition
        .append_as_follower(s.epoch, s.offset, records, leader_hw, leader_log_start)
    {
        Ok(leo) => shared.update(s, |st| st.offset = leo),
        Err(ReplicaError::FencedLeaderEpoch) => {}
        Err(e) => {
            tracing::warn!(broker = cfg.broker_id, topic = %s.tp.topic, partition = s.tp.partition,
                error = %e, "follower append failed; re-truncating");
            let leo = s.partition.log().log_end_offset();
            shared.update(s, |st| {
                st.offset = leo;
                st.truncating = true;
                st.delayed_until = Some(Instant::now() + cfg.backoff);
            });
        }
    }
}

/// OFFSET_OUT_OF_RANGE on a follower fetch: ask the leader for its log end and start (reference
/// §5) and truncate or restart accordingly.
async fn handle_out_of_range(
    conn: &mut BrokerConnection,
    shared: &Shared,
    cfg: &FetcherConfig,
    s: &Sent,
) -> Result<(), ClientError> {
    let leo = list_offset(conn, cfg, s, -1).await?;
    let start = list_offset(conn, cfg, s, -2).await?;
    let (Some(leader_leo), Some(leader_start)) = (leo, start) else {
        shared.delay(s, cfg.backoff);
        return Ok(());
    };
    let own = s.partition.log().log_end_offset();
    let action = rules::out_of_range_action(leader_leo, leader_start, own);
    tracing::warn!(broker = cfg.broker_id, topic = %s.tp.topic, partition = s.tp.partition,
        own_leo = own, leader_leo, leader_start, ?action, "follower fetch offset out of range");
    let result = match action {
        OutOfRangeAction::TruncateTo(o) => s.partition.truncate_as_follower(s.epoch, o),
        OutOfRangeAction::StartAt(o) => s.partition.truncate_fully_as_follower(s.epoch, o),
        OutOfRangeAction::Resume(o) => Ok(o),
    };
    match result {
        Ok(next) => shared.update(s, |st| st.offset = next),
        Err(ReplicaError::FencedLeaderEpoch) => {}
        Err(e) => {
            tracing::error!(topic = %s.tp.topic, partition = s.tp.partition, error = %e,
                "follower reset after out-of-range failed");
            shared.delay(s, cfg.backoff);
        }
    }
    Ok(())
}

/// ListOffsets as a replica: `-1` the leader's LEO, `-2` its log start. `None` on a
/// partition-level error.
async fn list_offset(
    conn: &mut BrokerConnection,
    cfg: &FetcherConfig,
    s: &Sent,
    timestamp: i64,
) -> Result<Option<i64>, ClientError> {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = s.tp.partition;
    p.current_leader_epoch = s.epoch;
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = topic_name(&s.tp.topic);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(cfg.broker_id);
    req.topics = vec![t];
    let resp = conn.send(&req, LIST_OFFSETS_VERSION).await?;
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| {
            p.partition_index == s.tp.partition
                && ResponseError::try_from_code(p.error_code).is_none()
        })
        .map(|p| p.offset))
}
