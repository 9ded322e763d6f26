//! Incremental fetch sessions (KIP-227; Kafka 2.8's `FetchSession`, `FetchSessionCache` and
//! `FetchManager`), so a fetcher of many partitions sends and receives only what changed.
//!
//! A full fetch (session epoch 0) may open a session: the broker remembers each partition's fetch
//! parameters and the high watermark and log start offset it last reported. An incremental fetch
//! (epoch ≥ 1, one more than the last) lists only the partitions whose parameters changed and the
//! ones to forget; the broker reads every partition of the session and answers only those with
//! records, an error, or a changed high watermark or log start offset. Partitions that returned
//! records move to the end of the session's order, so one busy partition cannot take the response
//! budget of the others forever. Epoch −1 closes a session and fetches without one.
//!
//! The cache holds at most `max.incremental.fetch.session.cache.slots` sessions. A full slot table
//! makes room as Kafka's does: a session unused for two minutes goes first; otherwise a follower's
//! (privileged) session may take the place of a consumer's, and a larger session the place of a
//! smaller one that is older than two minutes.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::common::TopicPartition;
use crate::replication::FetchPartitionRequest;

/// The session id meaning "none" (`FetchMetadata.INVALID_SESSION_ID`).
pub(super) const NO_SESSION: i32 = 0;
/// The epoch of a full fetch that may open a session.
const INITIAL_EPOCH: i32 = 0;
/// The epoch of a full fetch that closes the session it names and opens none.
const FINAL_EPOCH: i32 = -1;
/// Kafka's `MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS`.
const EVICTION_AGE: Duration = Duration::from_secs(120);

/// `FetchMetadata.nextEpoch`.
fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// Why an incremental fetch cannot be served; the client starts over with a full fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionError {
    /// FETCH_SESSION_ID_NOT_FOUND (70).
    NotFound,
    /// INVALID_FETCH_SESSION_EPOCH (71).
    InvalidEpoch,
}

impl SessionError {
    pub(super) fn code(self) -> i16 {
        match self {
            SessionError::NotFound => 70,
            SessionError::InvalidEpoch => 71,
        }
    }
}

/// What a fetch request asks of the session cache (its header fields, decoded).
pub(super) struct SessionRequest<'a> {
    pub session_id: i32,
    pub epoch: i32,
    /// Partitions listed in the request, in request order.
    pub partitions: Vec<FetchPartitionRequest>,
    /// Partitions an incremental request removes from its session.
    pub forgotten: &'a [TopicPartition],
    /// From a follower (replica id ≥ 0): its session is privileged.
    pub follower: bool,
}

/// How one fetch request uses sessions; made before the read, consumed by [`respond`].
///
/// [`respond`]: FetchSessionCache::respond
pub(super) enum FetchContext {
    /// No session: every partition is answered, session id 0.
    Sessionless,
    /// A full fetch that may open a session once its results are known.
    Full {
        follower: bool,
        requested: Vec<FetchPartitionRequest>,
    },
    /// An incremental fetch of session `id`; the session's epoch must still be `expected_epoch`
    /// when the response is made (another request on the same session otherwise got there first).
    Incremental {
        id: i32,
        expected_epoch: i32,
    },
    Error(SessionError),
}

/// What a partition's result says, as far as a session decides whether to send it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outcome {
    pub has_records: bool,
    pub error: bool,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// The answer's session fields and which results it carries, in order.
#[derive(Debug)]
pub(super) struct SessionResponse {
    pub error: Option<SessionError>,
    pub session_id: i32,
    /// Indexes into the results passed to [`FetchSessionCache::respond`], in response order.
    pub include: Vec<usize>,
}

/// One partition of a session (Kafka's `CachedPartition`).
struct Cached {
    request: FetchPartitionRequest,
    /// What the last response said, −1 when not yet sent (or after an error, so that the
    /// partition is sent again once the error clears).
    high_watermark: i64,
    log_start_offset: i64,
}

impl Cached {
    /// `CachedPartition.maybeUpdateResponseData` with updates on.
    fn must_respond(&mut self, o: &Outcome) -> bool {
        let mut respond = o.has_records;
        if self.high_watermark != o.high_watermark {
            self.high_watermark = o.high_watermark;
            respond = true;
        }
        if self.log_start_offset != o.log_start_offset {
            self.log_start_offset = o.log_start_offset;
            respond = true;
        }
        if o.error {
            self.high_watermark = -1;
            respond = true;
        }
        respond
    }
}

struct Session {
    privileged: bool,
    created: Instant,
    last_used: Instant,
    /// The epoch the next incremental request must carry.
    epoch: i32,
    /// Partitions in a slab: `order` lists the occupied slots in fetch order, `index` finds a
    /// partition's slot, so moving a partition to the end touches neither the slab nor the map.
    slots: Vec<Option<Cached>>,
    free: Vec<usize>,
    order: Vec<usize>,
    index: HashMap<TopicPartition, usize>,
}

impl Session {
    fn new(privileged: bool, now: Instant) -> Self {
        Self {
            privileged,
            created: now,
            last_used: now,
            epoch: next_epoch(INITIAL_EPOCH),
            slots: Vec::new(),
            free: Vec::new(),
            order: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn upsert(&mut self, request: FetchPartitionRequest) {
        if let Some(&slot) = self.index.get(&request.tp) {
            if let Some(c) = self.slots[slot].as_mut() {
                c.request = request;
            }
            return;
        }
        let tp = request.tp.clone();
        let cached = Some(Cached {
            request,
            high_watermark: -1,
            log_start_offset: -1,
        });
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = cached;
                s
            }
            None => {
                self.slots.push(cached);
                self.slots.len() - 1
            }
        };
        self.order.push(slot);
        self.index.insert(tp, slot);
    }

    fn forget(&mut self, tps: &[TopicPartition]) {
        let mut removed = Vec::new();
        for tp in tps {
            if let Some(slot) = self.index.remove(tp) {
                self.slots[slot] = None;
                self.free.push(slot);
                removed.push(slot);
            }
        }
        if !removed.is_empty() {
            self.order.retain(|s| !removed.contains(s));
        }
    }

    /// The session's partitions as one fetch reads them, in order.
    fn requests(&self) -> Vec<FetchPartitionRequest> {
        self.order
            .iter()
            .filter_map(|&s| self.slots[s].as_ref().map(|c| c.request.clone()))
            .collect()
    }

    /// Kafka's `IncrementalFetchContext.updateAndGenerateResponseData`: which of `outcomes` (one
    /// per partition, in session order) to send; those with records move to the end.
    fn select(&mut self, outcomes: &[Outcome]) -> Vec<usize> {
        let mut include = Vec::new();
        let mut stay = Vec::with_capacity(self.order.len());
        let mut moved = Vec::new();
        for (i, &slot) in self.order.iter().enumerate() {
            let (Some(o), Some(c)) = (outcomes.get(i), self.slots[slot].as_mut()) else {
                stay.push(slot);
                continue;
            };
            if c.must_respond(o) {
                include.push(i);
            }
            if o.has_records {
                moved.push(slot);
            } else {
                stay.push(slot);
            }
        }
        stay.extend(moved);
        self.order = stay;
        include
    }
}

/// The broker's fetch sessions.
pub struct FetchSessionCache {
    max_sessions: usize,
    eviction_age: Duration,
    sessions: Mutex<HashMap<i32, Session>>,
}

impl FetchSessionCache {
    /// `max_sessions` = `max.incremental.fetch.session.cache.slots`; 0 disables sessions.
    pub fn new(max_sessions: usize) -> Self {
        Self::with_eviction_age(max_sessions, EVICTION_AGE)
    }

    fn with_eviction_age(max_sessions: usize, eviction_age: Duration) -> Self {
        Self {
            max_sessions,
            eviction_age,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn locked(&self) -> MutexGuard<'_, HashMap<i32, Session>> {
        // Every critical section leaves the map consistent before it can panic.
        match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.locked().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Kafka's `FetchManager.newContext`: the partitions this request reads, in order, and the
    /// context that turns their results into the response.
    pub(super) fn new_context(
        &self,
        req: SessionRequest<'_>,
    ) -> (FetchContext, Vec<FetchPartitionRequest>) {
        let mut sessions = self.locked();
        if req.epoch == INITIAL_EPOCH || req.epoch == FINAL_EPOCH {
            // A full fetch closes any session it names.
            if req.session_id != NO_SESSION {
                sessions.remove(&req.session_id);
            }
            let context = if req.epoch == FINAL_EPOCH {
                FetchContext::Sessionless
            } else {
                FetchContext::Full {
                    follower: req.follower,
                    requested: req.partitions.clone(),
                }
            };
            return (context, req.partitions);
        }
        let Some(session) = sessions.get_mut(&req.session_id) else {
            return (FetchContext::Error(SessionError::NotFound), Vec::new());
        };
        if session.epoch != req.epoch {
            return (FetchContext::Error(SessionError::InvalidEpoch), Vec::new());
        }
        for p in req.partitions.iter().cloned() {
            session.upsert(p);
        }
        session.forget(req.forgotten);
        if session.len() == 0 {
            sessions.remove(&req.session_id);
            return (FetchContext::Sessionless, req.partitions);
        }
        session.last_used = Instant::now();
        session.epoch = next_epoch(session.epoch);
        let reads = session.requests();
        let context = FetchContext::Incremental {
            id: req.session_id,
            expected_epoch: session.epoch,
        };
        (context, reads)
    }

    /// The response's session fields and the results it carries, given one outcome per
    /// partition read (in the order [`new_context`] returned them).
    ///
    /// [`new_context`]: FetchSessionCache::new_context
    pub(super) fn respond(&self, context: FetchContext, outcomes: &[Outcome]) -> SessionResponse {
        let all = || (0..outcomes.len()).collect();
        match context {
            FetchContext::Sessionless => SessionResponse {
                error: None,
                session_id: NO_SESSION,
                include: all(),
            },
            FetchContext::Error(e) => SessionResponse {
                error: Some(e),
                session_id: NO_SESSION,
                include: Vec::new(),
            },
            FetchContext::Full {
                follower,
                requested,
            } => SessionResponse {
                error: None,
                session_id: self.maybe_create(follower, requested, outcomes),
                include: all(),
            },
            FetchContext::Incremental { id, expected_epoch } => {
                let mut sessions = self.locked();
                match sessions.get_mut(&id) {
                    Some(s) if s.epoch == expected_epoch => SessionResponse {
                        error: None,
                        session_id: id,
                        include: s.select(outcomes),
                    },
                    Some(_) => SessionResponse {
                        error: Some(SessionError::InvalidEpoch),
                        session_id: id,
                        include: Vec::new(),
                    },
                    // Evicted while this fetch waited: the client must start over.
                    None => SessionResponse {
                        error: Some(SessionError::NotFound),
                        session_id: NO_SESSION,
                        include: Vec::new(),
                    },
                }
            }
        }
    }

    /// `FetchSessionCache.maybeCreateSession` after a full fetch: the new session's id, or 0 when
    /// there is no room for it.
    fn maybe_create(
        &self,
        follower: bool,
        requested: Vec<FetchPartitionRequest>,
        outcomes: &[Outcome],
    ) -> i32 {
        if self.max_sessions == 0 || requested.is_empty() {
            return NO_SESSION;
        }
        let now = Instant::now();
        let mut sessions = self.locked();
        if sessions.len() >= self.max_sessions
            && !try_evict(
                &mut sessions,
                self.eviction_age,
                follower,
                requested.len(),
                now,
            )
        {
            return NO_SESSION;
        }
        let mut session = Session::new(follower, now);
        for (request, o) in requested.into_iter().zip(outcomes) {
            let tp = request.tp.clone();
            session.upsert(request);
            let slot = session.index.get(&tp).copied();
            if let Some(c) = slot.and_then(|s| session.slots[s].as_mut()) {
                c.high_watermark = if o.error { -1 } else { o.high_watermark };
                c.log_start_offset = o.log_start_offset;
            }
        }
        let id = loop {
            let id = random_session_id();
            if !sessions.contains_key(&id) {
                break id;
            }
        };
        sessions.insert(id, session);
        id
    }
}

/// Kafka's `tryEvict`: the least recently used session if it is stale; otherwise the least
/// valuable evictable one — by (privileged, size) — if the new one is worth more. Consumers'
/// sessions are evictable by followers' at once; any session becomes evictable by anyone once it
/// is older than the eviction age.
fn try_evict(
    sessions: &mut HashMap<i32, Session>,
    eviction_age: Duration,
    privileged: bool,
    size: usize,
    now: Instant,
) -> bool {
    let Some((&lru, oldest)) = sessions.iter().min_by_key(|(id, s)| (s.last_used, **id)) else {
        return false;
    };
    if now.duration_since(oldest.last_used) > eviction_age {
        sessions.remove(&lru);
        return true;
    }
    let evictable = |s: &Session| {
        let old = now.duration_since(s.created) > eviction_age;
        if privileged {
            !s.privileged || old
        } else {
            old
        }
    };
    let least = sessions
        .iter()
        .filter(|(_, s)| evictable(s))
        .min_by_key(|(id, s)| (s.privileged, s.len(), **id))
        .map(|(id, s)| (*id, s.privileged, s.len()));
    match least {
        Some((id, p, n)) if (privileged, size) > (p, n) => {
            sessions.remove(&id);
            true
        }
        _ => false,
    }
}

/// A positive id, random as Kafka's, so that one client cannot guess another's session.
fn random_session_id() -> i32 {
    rand::Rng::gen_range(&mut rand::thread_rng(), 1..i32::MAX)
}

#[cfg(test)]
#[path = "fetch_session_tests.rs"]
mod tests;
