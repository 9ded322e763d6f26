//! The purgatory of delayed operations, keyed by partition (Kafka's `DelayedOperationPurgatory`
//! for `DelayedProduce` and `DelayedFetch`).
//!
//! A parked request (an acks=all produce waiting for the high watermark, a long-poll fetch
//! waiting for data) registers a [`Watch`] on each of its partitions *before* it checks whether
//! it is already done, then sleeps until a wake-up or its deadline. Whoever changes a partition
//! wakes only that partition's watchers with the [`Event`] that happened, and only those watchers
//! whose [`Interest`] the event can satisfy: an append that leaves the high watermark in place
//! wakes follower fetches (they read up to the log end) but no consumer or produce waiter.
//!
//! No wake-up is lost: each watch has one `Notify`, and `notify_one` stores a permit when the
//! waiter is between its check and its sleep. A watch removes itself from every partition when it
//! is dropped — completion, timeout, or the request's future being dropped with its connection —
//! and a partition with no watchers left takes no memory. The key map is split into shards, each
//! behind its own short-held std mutex (never across an `.await`), so no lock spans all partitions.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::log::TopicPartition;

/// Kafka 2.8 splits its watcher map into 512 lists; a broker here hosts fewer partitions per
/// core, and a shard costs one mutex and one map.
const SHARDS: usize = 64;

/// What a delayed operation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// acks=all produce: the high watermark passing its append.
    Produce,
    /// A follower's fetch: new records up to the log end, or a new high watermark to learn.
    FollowerFetch,
    /// A consumer's fetch: records below the high watermark.
    ConsumerFetch,
}

/// What happened to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The leader's log end moved and its high watermark did not.
    Appended,
    /// The high watermark moved (after an append, a follower fetch, or an ISR change).
    HighWatermark,
    /// The role, epoch or hosting of the partition changed: every waiter re-checks.
    StateChanged,
}

impl Event {
    fn wakes(self, interest: Interest) -> bool {
        match self {
            Event::Appended => interest == Interest::FollowerFetch,
            Event::HighWatermark | Event::StateChanged => true,
        }
    }
}

type Watchers = HashMap<u64, (Interest, Arc<Notify>)>;

/// Watchers of every partition, by partition.
pub struct Purgatory {
    shards: Box<[Mutex<HashMap<TopicPartition, Watchers>>]>,
    hasher: RandomState,
    next_id: AtomicU64,
}

impl Default for Purgatory {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            next_id: AtomicU64::new(0),
        }
    }
}

impl Purgatory {
    fn shard(&self, tp: &TopicPartition) -> MutexGuard<'_, HashMap<TopicPartition, Watchers>> {
        let i = (self.hasher.hash_one(tp) as usize) % self.shards.len();
        // A shard's critical sections only insert into and remove from maps, so a poisoned
        // lock still holds a usable value.
        match self.shards[i].lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Registers one operation on `keys`. Register before the first completion check.
    pub fn watch(
        self: &Arc<Self>,
        keys: impl IntoIterator<Item = TopicPartition>,
        interest: Interest,
    ) -> Watch {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut registered: Vec<TopicPartition> = Vec::new();
        for tp in keys {
            if registered.contains(&tp) {
                continue;
            }
            self.shard(&tp)
                .entry(tp.clone())
                .or_default()
                .insert(id, (interest, notify.clone()));
            registered.push(tp);
        }
        Watch {
            purgatory: self.clone(),
            id,
            keys: registered,
            notify,
        }
    }

    /// Wakes the watchers of `tp` that `event` can complete; returns how many.
    pub fn wake(&self, tp: &TopicPartition, event: Event) -> usize {
        self.wake_except(tp, event, None)
    }

    /// [`wake`](Self::wake), leaving out the watch `except`: the operation whose own read
    /// caused the event already knows, and waking it would only make it read everything again
    /// before it parks.
    ///
    /// Consumer fetches are woken last, acks=all produces before them and follower fetches
    /// first. The runtime runs the task woken last first on this thread, as soon as the waking
    /// task parks, and hands the earlier ones to other threads: so the answer that ends the
    /// produce-to-consume path goes out without a thread hand-off.
    pub fn wake_except(&self, tp: &TopicPartition, event: Event, except: Option<u64>) -> usize {
        let mut woken: Vec<(Interest, Arc<Notify>)> = match self.shard(tp).get(tp) {
            Some(watchers) => watchers
                .iter()
                .filter(|(id, (interest, _))| Some(**id) != except && event.wakes(*interest))
                .map(|(_, (interest, n))| (*interest, n.clone()))
                .collect(),
            None => return 0,
        };
        woken.sort_by_key(|(interest, _)| match interest {
            Interest::FollowerFetch => 0,
            Interest::Produce => 1,
            Interest::ConsumerFetch => 2,
        });
        for (_, n) in &woken {
            n.notify_one();
        }
        woken.len()
    }

    /// Operations watching `tp`.
    #[cfg(test)]
    pub fn watchers(&self, tp: &TopicPartition) -> usize {
        self.shard(tp).get(tp).map_or(0, HashMap::len)
    }

    /// Partitions with at least one watcher.
    #[cfg(test)]
    pub fn watched_partitions(&self) -> usize {
        (0..self.shards.len())
            .map(|i| match self.shards[i].lock() {
                Ok(g) => g.len(),
                Err(p) => p.into_inner().len(),
            })
            .sum()
    }

    fn unwatch(&self, id: u64, keys: &[TopicPartition]) {
        for tp in keys {
            let mut shard = self.shard(tp);
            if let Some(watchers) = shard.get_mut(tp) {
                watchers.remove(&id);
                if watchers.is_empty() {
                    shard.remove(tp);
                }
            }
        }
    }
}

/// One parked operation's registration; dropping it unregisters it everywhere.
pub struct Watch {
    purgatory: Arc<Purgatory>,
    id: u64,
    keys: Vec<TopicPartition>,
    notify: Arc<Notify>,
}

impl Watch {
    /// This watch's identity, for [`Purgatory::wake_except`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Kafka's `tryCompleteElseWatch` loop: `try_complete` runs now and after every wake-up until
    /// it returns a value; `None` when `deadline` passes first (the caller's `onExpiration`).
    pub async fn wait_until<T>(
        &self,
        deadline: Instant,
        mut try_complete: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        loop {
            if let Some(done) = try_complete() {
                return Some(done);
            }
            if tokio::time::timeout_at(deadline, self.notify.notified())
                .await
                .is_err()
            {
                return None;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.purgatory.unwatch(self.id, &self.keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    /// A condition flipped from outside, as a partition's state would be.
    fn flag() -> Arc<AtomicBool> {
        Arc::new(AtomicBool::new(false))
    }

    #[tokio::test]
    async fn the_fetch_that_moved_the_watermark_is_not_woken_by_it() {
        let purgatory = Arc::new(Purgatory::default());
        let own = purgatory.watch([tp(0)], Interest::FollowerFetch);
        let _consumer = purgatory.watch([tp(0)], Interest::ConsumerFetch);
        let _other = purgatory.watch([tp(0)], Interest::FollowerFetch);
        assert_eq!(
            purgatory.wake_except(&tp(0), Event::HighWatermark, Some(own.id())),
            2
        );
        // No permit was stored for the excluded watch: it checks once and then sleeps to its
        // deadline (a permit would make it check again at once).
        let deadline = Instant::now() + std::time::Duration::from_millis(20);
        let mut checks = 0;
        let done = own
            .wait_until(deadline, || {
                checks += 1;
                None::<()>
            })
            .await;
        assert!(done.is_none());
        assert_eq!(checks, 1);
        // Woken without the exclusion, the same wait checks twice.
        purgatory.wake(&tp(0), Event::HighWatermark);
        let deadline = Instant::now() + std::time::Duration::from_millis(20);
        let mut checks = 0;
        own.wait_until(deadline, || {
            checks += 1;
            None::<()>
        })
        .await;
        assert_eq!(checks, 2);
        assert_eq!(purgatory.wake(&tp(0), Event::HighWatermark), 3);
    }

    #[tokio::test]
    async fn a_waiter_on_one_partition_is_not_woken_by_another() {
        let purgatory = Arc::new(Purgatory::default());
        let watch = purgatory.watch([tp(0)], Interest::ConsumerFetch);
        assert_eq!(purgatory.wake(&tp(1), Event::HighWatermark), 0);
        assert_eq!(purgatory.wake(&tp(1), Event::StateChanged), 0);
        // A permit would make `notified` return at once; none was stored.
        let woken = tokio::time::timeout(Duration::from_millis(50), watch.notify.notified()).await;
        assert!(woken.is_err(), "woken by another partition's event");
        assert_eq!(purgatory.wake(&tp(0), Event::HighWatermark), 1);
    }

    #[tokio::test]
    async fn an_append_wakes_followers_only_and_a_high_watermark_move_wakes_all() {
        let purgatory = Arc::new(Purgatory::default());
        let _produce = purgatory.watch([tp(0)], Interest::Produce);
        let _consumer = purgatory.watch([tp(0)], Interest::ConsumerFetch);
        let _follower = purgatory.watch([tp(0)], Interest::FollowerFetch);
        assert_eq!(purgatory.wake(&tp(0), Event::Appended), 1);
        assert_eq!(purgatory.wake(&tp(0), Event::HighWatermark), 3);
        assert_eq!(purgatory.wake(&tp(0), Event::StateChanged), 3);
    }

    #[tokio::test]
    async fn a_high_watermark_move_completes_every_produce_waiter_of_the_partition() {
        let purgatory = Arc::new(Purgatory::default());
        let replicated = flag();
        let deadline = Instant::now() + Duration::from_secs(30);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (purgatory, replicated) = (purgatory.clone(), replicated.clone());
                tokio::spawn(async move {
                    let watch = purgatory.watch([tp(0), tp(1)], Interest::Produce);
                    watch
                        .wait_until(deadline, || replicated.load(Ordering::SeqCst).then_some(()))
                        .await
                })
            })
            .collect();
        let registered = Instant::now() + Duration::from_secs(10);
        while purgatory.watchers(&tp(0)) < 3 {
            assert!(Instant::now() < registered, "waiters never registered");
            tokio::task::yield_now().await;
        }
        replicated.store(true, Ordering::SeqCst);
        assert_eq!(purgatory.wake(&tp(1), Event::HighWatermark), 3);
        for w in waiters {
            let done = tokio::time::timeout(Duration::from_secs(10), w).await;
            assert!(matches!(done, Ok(Ok(Some(())))), "{done:?}");
        }
        assert_eq!(purgatory.watched_partitions(), 0);
    }

    #[tokio::test]
    async fn a_wake_between_the_check_and_the_sleep_is_not_lost() {
        let purgatory = Arc::new(Purgatory::default());
        let ready = flag();
        let watch = purgatory.watch([tp(0)], Interest::Produce);
        let mut checks = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        let done = watch
            .wait_until(deadline, || {
                checks += 1;
                if checks == 1 {
                    // The condition turns true and the wake fires after this check said no.
                    ready.store(true, Ordering::SeqCst);
                    purgatory.wake(&tp(0), Event::HighWatermark);
                    return None;
                }
                ready.load(Ordering::SeqCst).then_some(checks)
            })
            .await;
        assert_eq!(done, Some(2));
    }

    #[tokio::test]
    async fn the_deadline_ends_the_wait_and_frees_the_watch() {
        let purgatory = Arc::new(Purgatory::default());
        let watch = purgatory.watch([tp(0)], Interest::ConsumerFetch);
        // An append cannot complete a consumer's fetch, so only the deadline ends this wait.
        purgatory.wake(&tp(0), Event::Appended);
        let deadline = Instant::now() + Duration::from_millis(50);
        let done: Option<()> = watch.wait_until(deadline, || None).await;
        assert_eq!(done, None);
        assert!(Instant::now() >= deadline);
        drop(watch);
        assert_eq!(purgatory.watchers(&tp(0)), 0);
        assert_eq!(purgatory.watched_partitions(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_frees_its_watchers() {
        let purgatory = Arc::new(Purgatory::default());
        let p = purgatory.clone();
        let parked = tokio::spawn(async move {
            let watch = p.watch([tp(0), tp(1), tp(0)], Interest::FollowerFetch);
            let far = Instant::now() + Duration::from_secs(3600);
            watch.wait_until(far, || None::<()>).await
        });
        let registered = Instant::now() + Duration::from_secs(10);
        while purgatory.watchers(&tp(1)) == 0 {
            assert!(Instant::now() < registered, "never registered");
            tokio::task::yield_now().await;
        }
        assert_eq!(
            purgatory.watchers(&tp(0)),
            1,
            "a repeated key registers once"
        );
        // The connection closed: its request future is dropped mid-wait.
        parked.abort();
        assert!(parked.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(purgatory.watched_partitions(), 0);
        assert_eq!(purgatory.wake(&tp(0), Event::StateChanged), 0);
    }
}
