//! Helpers for the consumer-group tests in [`crate::groups`]: rdkafka group members polled in
//! their own threads (so heartbeats and rebalances flow while the test waits), consumers that
//! read and commit from the test's own task, the checks of what consumers read and committed,
//! and external client processes (kcat, Python) whose waits are bounded and which are killed
//! when dropped. Raw coordinator requests are in [`crate::group_raw`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// One message read: (partition, offset, i) for the message `key-i` / `value-i`.
pub type Read = (i32, i64, usize);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `i` of a `key-i` / `value-i` message, or why the message is not one.
pub fn message_index(key: &[u8], value: &[u8]) -> anyhow::Result<usize> {
    let key = String::from_utf8_lossy(key);
    let value = String::from_utf8_lossy(value);
    let i: usize = key
        .strip_prefix("key-")
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("unexpected message key {key:?}"))?;
    ensure!(
        value == format!("value-{i}"),
        "message {key:?} carries value {value:?}"
    );
    Ok(i)
}

// ----- rdkafka group consumers ---------------------------------------------------------------

/// What a group consumer saw, shared between its polling thread and the test.
#[derive(Default, Debug)]
pub struct MemberState {
    /// Partitions of the subscribed topic currently assigned (`consumer.assignment()`).
    pub assignment: BTreeSet<i32>,
    /// Messages read, in the order they were returned.
    pub messages: Vec<Read>,
    /// Consumer errors returned by poll (the last few).
    pub errors: Vec<String>,
    /// Rebalance callbacks with the time since the consumer started (the last few).
    pub rebalances: Vec<String>,
    /// Set once the consumer has been closed (after LeaveGroup).
    pub closed: bool,
}

const KEEP: usize = 20;

fn push_bounded(v: &mut Vec<String>, s: String) {
    if v.len() >= KEEP {
        v.remove(0);
    }
    v.push(s);
}

/// rdkafka context of the group tests: librdkafka warnings go to stderr with the member's name,
/// rebalance callbacks are recorded in the member's [`MemberState`].
pub struct GroupContext {
    name: String,
    started: Instant,
    state: Arc<Mutex<MemberState>>,
}

impl GroupContext {
    pub fn new(name: &str) -> Self {
        GroupContext {
            name: name.to_string(),
            started: Instant::now(),
            state: Arc::default(),
        }
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            eprintln!("librdkafka [{}] {fac}: {log_message}", self.name);
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let what = match rebalance {
            Rebalance::Assign(tpl) => format!("assigned {:?}", partitions_of(tpl)),
            Rebalance::Revoke(tpl) => format!("revoked {:?}", partitions_of(tpl)),
            Rebalance::Error(e) => format!("rebalance error: {e}"),
        };
        let at = self.started.elapsed().as_secs_f32();
        push_bounded(
            &mut lock(&self.state).rebalances,
            format!("{at:.1}s {what}"),
        );
    }
}

/// The configuration of a group consumer: earliest reset, the `range` assignor (so every member
/// and kcat agree on one protocol), a heartbeat well inside the session timeout.
pub fn group_config(
    bootstrap: &str,
    group: &str,
    client_id: &str,
    session_timeout_ms: u32,
    auto_commit: bool,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("client.id", client_id)
        .set("session.timeout.ms", session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (session_timeout_ms / 6).clamp(500, 1000).to_string(),
        )
        .set("partition.assignment.strategy", "range")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", auto_commit.to_string())
        .set("auto.commit.interval.ms", "1000")
        .set("enable.partition.eof", "false");
    c
}

/// A group consumer subscribed to one topic and polled by its own thread until closed.
/// Dropping it asks the thread to close the consumer (LeaveGroup) without waiting.
pub struct Member {
    pub name: String,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<MemberState>>,
}

impl Member {
    /// Creates the consumer, subscribes it to `topic` and starts polling it.
    ///
    /// # Errors
    /// The consumer cannot be created or subscribed.
    pub fn start(name: &str, config: ClientConfig, topic: &str) -> anyhow::Result<Member> {
        let ctx = GroupContext::new(name);
        let state = ctx.state.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread_state = state.clone();
        let thread_stop = stop.clone();
        let topic = topic.to_string();
        std::thread::Builder::new()
            .name(format!("member-{name}"))
            .spawn(move || {
                let consumer: BaseConsumer<GroupContext> = match config.create_with_context(ctx) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(format!("creating the consumer: {e}")));
                        return;
                    }
                };
                if let Err(e) = consumer.subscribe(&[&topic]) {
                    let _ = tx.send(Err(format!("subscribing to {topic}: {e}")));
                    return;
                }
                let _ = tx.send(Ok(()));
                poll_loop(&consumer, &topic, &thread_state, &thread_stop);
                // Dropping the consumer closes it: final auto-commit, LeaveGroup.
                drop(consumer);
                lock(&thread_state).closed = true;
            })
            .context("spawning a member thread")?;
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(Member {
                name: name.to_string(),
                stop,
                state,
            }),
            Ok(Err(e)) => bail!("member {name}: {e}"),
            Err(_) => bail!("member {name}: its thread neither started nor failed in 30 s"),
        }
    }

    /// The partitions assigned to this member now.
    pub fn assignment(&self) -> BTreeSet<i32> {
        lock(&self.state).assignment.clone()
    }

    /// Every message this member has read so far.
    pub fn messages(&self) -> Vec<Read> {
        lock(&self.state).messages.clone()
    }

    /// Name, assignment, recent rebalances and errors: for failure messages.
    pub fn describe(&self) -> String {
        let s = lock(&self.state);
        format!(
            "{}: assignment {:?}, {} messages, closed {}, rebalances {:?}, errors {:?}",
            self.name,
            s.assignment,
            s.messages.len(),
            s.closed,
            s.rebalances,
            s.errors
        )
    }

    /// Closes the consumer (commit if auto-commit is on, LeaveGroup) and waits until it is.
    ///
    /// # Errors
    /// The close takes longer than `timeout`.
    pub async fn close(&self, timeout: Duration) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        while !lock(&self.state).closed {
            if Instant::now() > deadline {
                bail!(
                    "member did not close within {timeout:?}: {}",
                    self.describe()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn poll_loop(
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    state: &Mutex<MemberState>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let polled = consumer.poll(Duration::from_millis(100));
        let assignment: Option<BTreeSet<i32>> = consumer.assignment().ok().map(|tpl| {
            tpl.elements_for_topic(topic)
                .iter()
                .map(|e| e.partition())
                .collect()
        });
        let mut s = lock(state);
        match polled {
            Some(Ok(m)) => {
                match message_index(m.key().unwrap_or_default(), m.payload().unwrap_or_default()) {
                    Ok(i) => s.messages.push((m.partition(), m.offset(), i)),
                    Err(e) => push_bounded(&mut s.errors, format!("{e:#}")),
                }
            }
            Some(Err(e)) => push_bounded(&mut s.errors, e.to_string()),
            None => {}
        }
        if let Some(a) = assignment {
            s.assignment = a;
        }
    }
}

/// Whether `sets` are each non-empty, pairwise disjoint, and together exactly `all`.
pub fn splits(sets: &[BTreeSet<i32>], all: &BTreeSet<i32>) -> bool {
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    sets.iter().all(|s| !s.is_empty()) && total == union.len() && union == *all
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `timeout` with `what` and
/// `report()` (e.g. the assignments seen).
pub async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
    report: impl Fn() -> String,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {timeout:?} waiting for {what}; {}",
                report()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A group consumer driven from the test's own task (see [`read_at_least`]).
pub fn group_consumer(
    name: &str,
    config: &ClientConfig,
) -> anyhow::Result<BaseConsumer<GroupContext>> {
    config
        .create_with_context(GroupContext::new(name))
        .with_context(|| format!("creating consumer {name}"))
}

/// Polls `consumer` (without blocking the runtime) until it has read at least `min` messages,
/// then `linger` longer to catch anything read twice. Fails after `timeout`.
pub async fn read_at_least(
    consumer: &BaseConsumer<GroupContext>,
    min: usize,
    linger: Duration,
    timeout: Duration,
) -> anyhow::Result<Vec<Read>> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut linger_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if linger_until.is_some_and(|l| now >= l) {
            return Ok(out);
        }
        if linger_until.is_none() && out.len() >= min {
            linger_until = Some(now + linger);
            continue;
        }
        if now > deadline {
            let s = lock(&consumer.context().state);
            bail!(
                "read {} of {min} messages in {timeout:?}; assignment {:?}, rebalances {:?}, errors {:?}",
                out.len(),
                consumer.assignment().map(|t| partitions_of(&t)).ok(),
                s.rebalances,
                s.errors
            );
        }
        match consumer.poll(Duration::ZERO) {
            Some(Ok(m)) => {
                let i =
                    message_index(m.key().unwrap_or_default(), m.payload().unwrap_or_default())?;
                out.push((m.partition(), m.offset(), i));
            }
            Some(Err(e)) => {
                push_bounded(&mut lock(&consumer.context().state).errors, e.to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Per partition, the offset after the last message read: what a consumer commits.
pub fn next_offsets(read: &[Read]) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    for (p, off, _) in read {
        let e = next.entry(*p).or_insert(0);
        *e = (*e).max(off + 1);
    }
    next
}

/// Commits `offsets` of `topic` synchronously.
pub fn commit_offsets(
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .with_context(|| format!("committing {offsets:?}"))
}

/// Committed offsets of partitions `0..partitions` in a TPL answer: `None` = nothing committed.
pub fn offsets_in(
    tpl: &TopicPartitionList,
    topic: &str,
) -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
    let mut out = BTreeMap::new();
    for e in tpl.elements_for_topic(topic) {
        if let Err(err) = e.error() {
            bail!("partition {}: {err}", e.partition());
        }
        let off = match e.offset() {
            Offset::Offset(o) => Some(o),
            Offset::Invalid => None,
            other => bail!("partition {}: unexpected offset {other:?}", e.partition()),
        };
        out.insert(e.partition(), off);
    }
    Ok(out)
}

/// The group's committed offsets for `topic` partitions `0..partitions`, asked by a fresh
/// consumer that does not join (OffsetFetch through librdkafka), retried until `timeout`
/// (a coordinator may be moving or loading).
pub async fn fetch_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
    let consumer = group_consumer(
        &format!("committed-{group}"),
        &group_config(bootstrap, group, "it-committed", 10_000, false),
    )?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let last = match consumer.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
            Ok(answer) => match offsets_in(&answer, topic) {
                Ok(o) => return Ok(o),
                Err(e) => format!("{e:#}"),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("committed offsets of group {group} not readable within {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ----- what consumers read and committed ------------------------------------------------------

/// (partition, offset) → i of every acknowledged message.
pub fn by_offset(acked: &[(i32, i64, usize)]) -> HashMap<(i32, i64), usize> {
    acked.iter().map(|(p, o, i)| ((*p, *o), *i)).collect()
}

/// Per partition, the offset after the last acknowledged message (the log end).
pub fn log_ends(acked: &[(i32, i64, usize)]) -> BTreeMap<i32, i64> {
    next_offsets(acked)
}

/// Every message read sits at the offset it was acknowledged at, and none was read twice.
pub fn check_reads(what: &str, read: &[Read], acked: &[(i32, i64, usize)]) -> anyhow::Result<()> {
    let at = by_offset(acked);
    let mut seen = BTreeSet::new();
    for (p, off, i) in read {
        let expected = at.get(&(*p, *off)).with_context(|| {
            format!("{what} read message {i} at {p}/{off}, which was never acknowledged there")
        })?;
        ensure!(
            expected == i,
            "{what} read message {i} at {p}/{off}, where message {expected} was acknowledged"
        );
        ensure!(seen.insert(*i), "{what} read message {i} ({p}/{off}) twice");
    }
    Ok(())
}

/// The set of message indices in `read`.
pub fn indices(read: &[Read]) -> BTreeSet<usize> {
    read.iter().map(|r| r.2).collect()
}

/// Checks that `resumed` (the second consumer of a group) started on every partition exactly at
/// `committed` (0 where nothing was committed) and read everything from there, and that `first`
/// (the consumer that committed) read exactly what lies before.
pub fn check_resume(
    first: &[Read],
    committed: &BTreeMap<i32, i64>,
    resumed: &[Read],
    acked: &[(i32, i64, usize)],
) -> anyhow::Result<()> {
    check_reads("the first consumer", first, acked)?;
    check_reads("the resuming consumer", resumed, acked)?;
    let start = |p: i32| committed.get(&p).copied().unwrap_or(0);
    let mut first_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, off, i) in resumed {
        ensure!(
            *off >= start(*p),
            "the resuming consumer re-read message {i} at {p}/{off}, before the committed offset {}",
            start(*p)
        );
        let f = first_offset.entry(*p).or_insert(*off);
        *f = (*f).min(*off);
    }
    for (p, end) in log_ends(acked) {
        if start(p) < end {
            ensure!(
                first_offset.get(&p) == Some(&start(p)),
                "partition {p}: resumed at {:?}, committed offset {} (log end {end})",
                first_offset.get(&p),
                start(p)
            );
        }
    }
    let expected_rest: BTreeSet<usize> = acked
        .iter()
        .filter(|(p, off, _)| *off >= start(*p))
        .map(|a| a.2)
        .collect();
    let rest = indices(resumed);
    ensure!(
        rest == expected_rest,
        "the resuming consumer read {} messages, expected {} (missing {:?}, unexpected {:?})",
        rest.len(),
        expected_rest.len(),
        expected_rest.difference(&rest).take(10).collect::<Vec<_>>(),
        rest.difference(&expected_rest).take(10).collect::<Vec<_>>()
    );
    let before = indices(first);
    ensure!(
        before.is_disjoint(&rest),
        "messages read by both consumers: {:?}",
        before.intersection(&rest).take(10).collect::<Vec<_>>()
    );
    let all: BTreeSet<usize> = acked.iter().map(|a| a.2).collect();
    let union: BTreeSet<usize> = before.union(&rest).copied().collect();
    ensure!(
        union == all,
        "together the consumers read {} of {} messages (missing {:?})",
        union.len(),
        all.len(),
        all.difference(&union).take(10).collect::<Vec<_>>()
    );
    Ok(())
}

/// Reads at least `min` messages of `topic` as a member of `group` (manual commits), commits
/// `last + 1` of every partition read, checks the consumer's own `committed()` view, closes the
/// consumer and returns what it read and committed.
pub async fn read_prefix_and_commit(
    bootstrap: &str,
    group: &str,
    topic: &str,
    min: usize,
) -> anyhow::Result<(Vec<Read>, BTreeMap<i32, i64>)> {
    let consumer = group_consumer(
        &format!("{group}-first"),
        &group_config(bootstrap, group, "it-first", 10_000, false),
    )?;
    consumer.subscribe(&[topic])?;
    let read = read_at_least(&consumer, min, Duration::ZERO, Duration::from_secs(60))
        .await
        .with_context(|| format!("first consumer of {group}"))?;
    let committed = next_offsets(&read);
    commit_offsets(&consumer, topic, &committed)?;
    // The answer list must be freed before the consumer: librdkafka's lists keep references to
    // the client's partitions, and destroying the client waits for them.
    let own = {
        let tpl = consumer
            .committed(Duration::from_secs(10))
            .context("committed() of the committing consumer")?;
        offsets_in(&tpl, topic)?
    };
    for (p, off) in &own {
        ensure!(
            *off == committed.get(p).copied(),
            "committed() of the committing consumer says {p} → {off:?}, it committed {:?}",
            committed.get(p)
        );
    }
    drop(consumer);
    Ok((read, committed))
}

/// The committed offsets a fresh consumer of the group sees equal `committed`, and no other
/// partition of the topic has one.
pub async fn check_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    committed: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let seen = fetch_committed(bootstrap, group, topic, partitions, timeout).await?;
    for p in 0..partitions {
        ensure!(
            seen.get(&p).copied().flatten() == committed.get(&p).copied(),
            "group {group}: committed offset of {topic}-{p} is {:?}, expected {:?} (all: {seen:?})",
            seen.get(&p),
            committed.get(&p)
        );
    }
    Ok(())
}

/// Reads as a new member of `group` until at least `min` messages arrived (and 2 s more).
pub async fn read_as_new_member(
    bootstrap: &str,
    group: &str,
    topic: &str,
    min: usize,
) -> anyhow::Result<Vec<Read>> {
    let consumer = group_consumer(
        &format!("{group}-resume"),
        &group_config(bootstrap, group, "it-resume", 10_000, false),
    )?;
    consumer.subscribe(&[topic])?;
    read_at_least(
        &consumer,
        min,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await
    .with_context(|| format!("resuming consumer of {group}"))
}

// ----- external processes --------------------------------------------------------------------

/// Fails with an install hint if `tool` is not on PATH.
pub fn require_tool(tool: &str) -> anyhow::Result<()> {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .context("running sh")?
        .success();
    ensure!(
        found,
        "{tool} is not installed (apt-get install kcat python3-kafka python3-confluent-kafka; .ci/run does)"
    );
    Ok(())
}

/// Debian's python3 (which has python3-kafka and python3-confluent-kafka), else `python3`.
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs `script` with [`python`] and `args`; its stdout once it exits successfully within
/// `timeout`, else an error with both outputs.
pub async fn run_python(script: &str, args: &[&str], timeout: Duration) -> anyhow::Result<String> {
    run_python_with(Path::new(python()), script, args, timeout).await
}

/// [`run_python`] with the given interpreter (e.g. the test venv's).
pub async fn run_python_with(
    interpreter: &Path,
    script: &str,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<String> {
    let out = tokio::time::timeout(
        timeout,
        tokio::process::Command::new(interpreter)
            .arg("-c")
            .arg(script)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("{} {args:?} timed out", interpreter.display()))??;
    ensure!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        interpreter.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A child process whose stdout and stderr go to files; killed (SIGKILL) and reaped on drop.
pub struct Spawned {
    child: Child,
    what: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Spawned {
    /// Starts `cmd` with stdin closed and its output in `<dir>/<name>.out` / `.err`.
    pub fn spawn(cmd: &mut Command, dir: &Path, name: &str) -> anyhow::Result<Spawned> {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Spawned {
            child,
            what: name.to_string(),
            stdout,
            stderr,
        })
    }

    /// Waits for the exit at most `timeout`; on timeout kills the process and returns `None`.
    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                self.kill()?;
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `None` while running, else how it exited.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// SIGKILL (no clean shutdown, no LeaveGroup) and reap.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child
                .kill()
                .with_context(|| format!("killing {}", self.what))?;
            self.child.wait()?;
        }
        Ok(())
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout_text(&self) -> anyhow::Result<String> {
        Ok(String::from_utf8_lossy(&std::fs::read(&self.stdout)?).to_string())
    }

    /// The last `lines` lines of its stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        integration_tests::util::tail(&self.stderr, lines)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
