//! The `request_path` target: fuzzer bytes → (Produce CRCs repaired, see `fixup`) → one request
//! frame → `gregor::api::handle` on a live in-process broker backed by a real ZooKeeper, awaited
//! on one tokio runtime. Every handler runs for real: appends, fetches, admin writes to
//! ZooKeeper, the controller's requests, the group coordinator.
//!
//! The broker is built once (a `OnceLock`) and kept across inputs, as a broker keeps its state
//! across requests. Each call is bounded by a short timeout (`GREGOR_FUZZ_HANDLER_TIMEOUT_MS`,
//! 20 ms by default) and an elapsed one counts as an answer: a Fetch waiting for data, a
//! JoinGroup waiting for its rebalance or an acks=all produce waiting for replicas would
//! otherwise hold the fuzzer for their whole timeout. Dropping the future is what a closed
//! connection does too.
//!
//! Fuzzed controller requests, CreateTopics and DeleteTopics change the broker for good, so the
//! harness replaces it with a fresh one (new chroot, new log directory) when it stops being
//! useful: the seed partitions are no longer led here, the controller epoch was raised by a
//! forged request, or the fuzzer created more than `MAX_TOPICS` topics / `MAX_PARTITIONS`
//! partitions. Replacing is rate-limited (`GREGOR_FUZZ_RESET_MIN_RUNS`, 5,000 inputs by
//! default) except for the size limits, which bound the run's disk and memory.
//!
//! Besides "no panic, no sanitizer report", each answer is checked: its size prefix matches its
//! length and it carries the request's correlation id.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gregor::protocol::file_region::Chunk;
use gregor::protocol::frame;

use crate::broker::Broker;
use crate::fixup;
use crate::zookeeper::ZooKeeper;

/// Topics (in the metadata cache) and partitions (hosted here) beyond which the broker is
/// replaced at once.
const MAX_TOPICS: usize = 64;
const MAX_PARTITIONS: usize = 256;
/// The health and size checks run every this many inputs.
const CHECK_EVERY: u64 = 64;
/// API keys counted separately in the statistics (gregor serves keys below 33).
const API_SLOTS: usize = 34;
/// How often the statistics line is printed.
const STATS_EVERY: Duration = Duration::from_secs(20);

struct State {
    broker: Option<Broker>,
    incarnation: u64,
    runs: u64,
    runs_at_reset: u64,
    resets: u64,
    elapsed: u64,
    errors: u64,
    last_stats: Instant,
    /// Per API key (index; the last slot for anything else): inputs and time in `handle`.
    per_api: Vec<(u64, Duration)>,
}

struct Harness {
    rt: tokio::runtime::Runtime,
    zk: ZooKeeper,
    /// A session of the harness's own, to remove replaced brokers' chroots.
    janitor: zookeeper_client::Client,
    timeout: Duration,
    reset_min_runs: u64,
    state: Mutex<State>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic aborts the fuzzer (libfuzzer-sys' hook), so the lock is never seen poisoned.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        if let Ok(filter) = std::env::var("GREGOR_FUZZ_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .try_init();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("request_path: cannot build the tokio runtime");
        let started = Instant::now();
        let zk = ZooKeeper::start().unwrap_or_else(|e| panic!("request_path: {e}"));
        let janitor = rt
            .block_on(zookeeper_client::Client::connect(&zk.connect_string()))
            .unwrap_or_else(|e| panic!("request_path: the harness's ZooKeeper session: {e}"));
        let h = Harness {
            rt,
            zk,
            janitor,
            timeout: Duration::from_millis(env_u64("GREGOR_FUZZ_HANDLER_TIMEOUT_MS", 20)),
            reset_min_runs: env_u64("GREGOR_FUZZ_RESET_MIN_RUNS", 5000),
            state: Mutex::new(State {
                broker: None,
                incarnation: 0,
                runs: 0,
                runs_at_reset: 0,
                resets: 0,
                elapsed: 0,
                errors: 0,
                last_stats: Instant::now(),
                per_api: vec![(0, Duration::ZERO); API_SLOTS],
            }),
        };
        {
            let mut st = lock(&h.state);
            h.replace(&mut st, "start");
        }
        eprintln!(
            "gregor-fuzz: ZooKeeper {} and broker ready in {:.1} s (handler timeout {:?})",
            h.zk.connect_string(),
            started.elapsed().as_secs_f64(),
            h.timeout
        );
        h
    })
}

impl Harness {
    /// Stops the current broker (if any) and starts a fresh one on a new chroot.
    fn replace(&self, st: &mut State, reason: &str) {
        let started = Instant::now();
        if let Some(old) = st.broker.take() {
            self.rt.block_on(old.stop());
            let (janitor, chroot) = (self.janitor.clone(), chroot(st.incarnation));
            self.rt
                .spawn(async move { crate::zookeeper::remove_tree(&janitor, &chroot).await });
        }
        st.incarnation += 1;
        let connect = format!("{}{}", self.zk.connect_string(), chroot(st.incarnation));
        let broker = self
            .rt
            .block_on(Broker::start(&connect))
            .unwrap_or_else(|e| {
                panic!(
                    "request_path: broker #{} did not start: {e} (ZooKeeper log: {})",
                    st.incarnation,
                    self.zk.log_path().display()
                )
            });
        st.broker = Some(broker);
        if st.incarnation > 1 {
            st.resets += 1;
            eprintln!(
                "gregor-fuzz: broker replaced ({reason}) after {} inputs, in {:.2} s",
                st.runs - st.runs_at_reset,
                started.elapsed().as_secs_f64()
            );
        }
        st.runs_at_reset = st.runs;
    }

    /// Replaces the broker if it outgrew its limits, or is no longer useful and has served
    /// long enough.
    fn maybe_replace(&self, st: &mut State) {
        let Some(b) = &st.broker else {
            return self.replace(st, "missing");
        };
        let (topics, partitions) = b.size();
        if topics > MAX_TOPICS || partitions > MAX_PARTITIONS {
            let reason = format!("{topics} topics, {partitions} partitions");
            return self.replace(st, &reason);
        }
        if st.runs - st.runs_at_reset >= self.reset_min_runs {
            if let Some(reason) = b.unhealthy() {
                self.replace(st, reason);
            }
        }
    }

    fn print_stats(&self, st: &mut State) {
        if st.last_stats.elapsed() < STATS_EVERY {
            return;
        }
        st.last_stats = Instant::now();
        let (topics, partitions) = st.broker.as_ref().map_or((0, 0), Broker::size);
        let zk_sessions = self
            .zk
            .four_letter("cons")
            .map_or(0, |c| c.lines().filter(|l| l.contains("sid=")).count());
        let leos = st
            .broker
            .as_ref()
            .map(Broker::seed_log_end_offsets)
            .unwrap_or_default();
        eprintln!(
            "gregor-fuzz: {} inputs, {} timed out (>{:?}), {} refused (connection closed), \
             {} broker replacements; now {topics} topics, {partitions} partitions, seed log \
             end offsets {leos:?}, {zk_sessions} ZooKeeper connections",
            st.runs, st.elapsed, self.timeout, st.errors, st.resets
        );
        let mut slowest: Vec<(usize, u64, Duration)> = st
            .per_api
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| *n > 0)
            .map(|(k, (n, t))| (k, *n, *t))
            .collect();
        slowest.sort_by_key(|(_, _, t)| std::cmp::Reverse(*t));
        let top: Vec<String> = slowest
            .iter()
            .take(6)
            .map(|(k, n, t)| {
                let name = if *k == API_SLOTS - 1 {
                    "other".to_string()
                } else {
                    format!("key {k}")
                };
                format!("{name}: {n} in {:.1} s", t.as_secs_f64())
            })
            .collect();
        eprintln!("gregor-fuzz: time in handle by API: {}", top.join(", "));
    }
}

/// The chroot of the broker incarnation `n`.
fn chroot(n: u64) -> String {
    format!("/gregor-fuzz/{n}")
}

/// Starts ZooKeeper and the broker (libFuzzer's init, before the first input).
pub fn init() {
    harness();
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let h = harness();
    let mut input = data.to_vec();
    fixup::fix_produce_crcs(&mut input);
    let fixed = frame::peek_fixed(&input).ok();
    let correlation_id = fixed.map(|(_, _, c)| c);
    let slot = fixed
        .and_then(|(key, _, _)| usize::try_from(key).ok())
        .filter(|k| *k < API_SLOTS - 1)
        .unwrap_or(API_SLOTS - 1);
    let mut st = lock(&h.state);
    st.runs += 1;
    if st.runs % CHECK_EVERY == 0 {
        h.maybe_replace(&mut st);
        h.print_stats(&mut st);
    }
    let Some(b) = &st.broker else {
        return;
    };
    let (ctx, host) = (&b.ctx, &b.client_host);
    let started = Instant::now();
    let outcome = h.rt.block_on(async {
        tokio::time::timeout(
            h.timeout,
            gregor::api::handle(ctx, host, Bytes::from(input)),
        )
        .await
    });
    let took = started.elapsed();
    let api = &mut st.per_api[slot];
    api.0 += 1;
    api.1 += took;
    match outcome {
        Err(_) => st.elapsed += 1,
        Ok(Err(_)) => st.errors += 1,
        Ok(Ok(None)) => {}
        Ok(Ok(Some(chunks))) => check_response(&chunks, correlation_id),
    }
}

/// An answer's size prefix counts the bytes after it, then comes the request's correlation id.
fn check_response(chunks: &[Chunk], correlation_id: Option<i32>) {
    let total: usize = chunks.iter().map(Chunk::len).sum();
    let Some(Chunk::Mem(head)) = chunks.first() else {
        panic!("a response must start with its header in memory, got {chunks:?}");
    };
    assert!(head.len() >= 8, "response head of {} bytes", head.len());
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    assert_eq!(size + 4, total, "response size prefix against its length");
    let id = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    assert_eq!(Some(id), correlation_id, "response correlation id");
}
