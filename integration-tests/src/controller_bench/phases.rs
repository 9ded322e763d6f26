//! The measured phases of the controller benchmark (issue 9, acceptance 1–2): topic creation,
//! SIGTERM of the busiest leader, `kill -9` of a follower-only broker and of the controller, and
//! topic deletion. Each returns its figures as JSON; a deadline passing is reported as
//! `timed_out`, never waited out or turned into an error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use super::probe::{create_topic, delete_topic};
use super::procs;
use super::wait::{secs, Errors, POLL};
use super::Bench;

/// Polling interval for single-znode transitions (registration gone, new controller).
const FAST_POLL: Duration = Duration::from_millis(20);

/// `{id: value}` as a JSON object.
fn by_broker<T: Clone + Into<Value>>(m: &BTreeMap<i32, T>) -> Value {
    Value::Object(
        m.iter()
            .map(|(id, v)| (id.to_string(), v.clone().into()))
            .collect(),
    )
}

/// Runs a request future on its own task and reports `(seconds, outcome)` when it ends.
fn spawn_request<F>(start: Instant, fut: F) -> tokio::task::JoinHandle<(f64, Value)>
where
    F: std::future::Future<Output = Result<Value>> + Send + 'static,
{
    tokio::spawn(async move {
        let r = fut.await;
        let v = r.unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        (secs(start), v)
    })
}

/// Collects a [`spawn_request`] result, waiting at most `wait` more.
async fn request_outcome(h: tokio::task::JoinHandle<(f64, Value)>, wait: Duration) -> Value {
    match tokio::time::timeout(wait, h).await {
        Ok(Ok((s, v))) => json!({"seconds": s, "response": v}),
        Ok(Err(e)) => json!({"error": format!("request task failed: {e}")}),
        Err(_) => json!({"timed_out": true}),
    }
}

impl Bench {
    fn addr(&self, id: i32) -> String {
        format!("127.0.0.1:{}", self.base_port + id as u16)
    }

    /// Partitions led by each broker, from the state znodes.
    async fn leader_counts(&self) -> Result<BTreeMap<i32, usize>> {
        let all: Vec<i32> = (0..self.partitions).collect();
        let states = self.probe.states(&self.topic, &all).await?;
        let mut counts: BTreeMap<i32, usize> = self
            .probe
            .broker_ids()
            .into_iter()
            .map(|id| (id, 0))
            .collect();
        for s in states.values() {
            // Offline partitions (leader -1) are no broker's.
            if let Some(n) = counts.get_mut(&s.leader) {
                *n += 1;
            }
        }
        Ok(counts)
    }

    /// CreateTopics (to the controller) until every partition has a leader in ZooKeeper and in
    /// every broker's Metadata.
    pub(super) async fn create(&mut self) -> Value {
        let controller = match self.probe.controller().await {
            Ok(Some(c)) => c,
            Ok(None) => return json!({"error": "no controller"}),
            Err(e) => return json!({"error": format!("{e:#}")}),
        };
        let (addr, topic, n, timeout) = (
            self.addr(controller),
            self.topic.clone(),
            self.partitions,
            self.timeout,
        );
        let start = Instant::now();
        let request = spawn_request(start, async move {
            let (code, msg) = create_topic(&addr, &topic, n, 3, timeout).await?;
            Ok(json!({"error_code": code, "error_message": msg}))
        });
        let led = |_: i32, leader: i32, _: &[i32]| leader >= 0;
        let ask = self.probe.broker_ids();
        let out = self.wait_all(ask, &led, start, start + self.timeout).await;
        let mut v = out.to_json();
        v["sent_to_controller"] = json!(controller);
        v["create_topics"] = request_outcome(request, Duration::from_secs(15)).await;
        v
    }

    /// SIGTERM of the broker leading the most partitions: time to exit, how many partitions the
    /// survivors (and ZooKeeper) still name it leader of when it exits, and until when.
    pub(super) async fn sigterm(&mut self) -> Value {
        let counts = match self.leader_counts().await {
            Ok(c) => c,
            Err(e) => return json!({"error": format!("{e:#}")}),
        };
        let Some((&victim, &led_before)) = counts.iter().max_by_key(|(id, n)| (**n, -**id)) else {
            return json!({"error": "no brokers"});
        };
        let Some(pid) = self.cluster.pid(victim) else {
            return json!({"error": format!("broker {victim} is not running")});
        };
        let survivors: Vec<i32> = counts.keys().copied().filter(|id| *id != victim).collect();
        let all: Vec<i32> = (0..self.partitions).collect();
        let mut zk_pending = match self.probe.states(&self.topic, &all).await {
            Ok(s) => all
                .into_iter()
                .filter(|p| s.get(p).is_some_and(|s| s.leader == victim))
                .collect(),
            Err(e) => return json!({"error": format!("{e:#}")}),
        };
        let start = Instant::now();
        if let Err(e) = procs::signal(pid, libc::SIGTERM) {
            return json!({"error": format!("{e:#}")});
        }
        self.stopped_by.insert(victim, "SIGTERM");
        let mut t = SigtermTrace::new(&survivors);
        self.trace_sigterm(victim, pid, start, &mut zk_pending, &mut t)
            .await;
        self.probe.disconnect(victim);
        let after_exit = t.exit.and_then(|exit| {
            let md = t.md_zero.values().copied().collect::<Option<Vec<f64>>>()?;
            let last = md.into_iter().chain(t.zk_zero).reduce(f64::max)?;
            Some(((last - exit).max(0.0) * 1000.0).round() / 1000.0)
        });
        json!({
            "broker": victim,
            "pid": pid,
            "led_before": led_before,
            "exit_seconds": t.exit,
            "forced_kill": t.forced,
            "at_exit": {
                "zk_led_by_stopped": t.zk_at_exit,
                "metadata_led_by_stopped": by_broker(&t.md_at_exit),
                "exited_leading_none": t.exit.is_some()
                    && t.zk_at_exit == Some(0)
                    && t.md_at_exit.values().all(|n| *n == Some(0)),
            },
            "led_by_stopped_zero_seconds": {"zk": t.zk_zero, "metadata": by_broker(&t.md_zero)},
            "named_leader_after_exit_seconds": after_exit,
            "timed_out": after_exit.is_none(),
            "errors": t.errors.to_json(),
        })
    }

    /// The SIGTERM polling loop: liveness first, then ZooKeeper and the survivors' Metadata, so
    /// the counts of the round that sees the exit are the counts at exit.
    async fn trace_sigterm(
        &mut self,
        victim: i32,
        pid: u32,
        start: Instant,
        zk_pending: &mut Vec<i32>,
        t: &mut SigtermTrace,
    ) {
        let deadline = start + self.timeout;
        loop {
            let just_exited = t.exit.is_none() && !procs::alive(pid);
            if just_exited {
                t.exit = Some(secs(start));
            }
            if t.zk_zero.is_none() {
                match self.probe.states(&self.topic, zk_pending).await {
                    Ok(s) => zk_pending.retain(|p| s.get(p).is_some_and(|s| s.leader == victim)),
                    Err(e) => t.errors.note(e),
                }
                if zk_pending.is_empty() {
                    t.zk_zero = Some(secs(start));
                }
            }
            if just_exited {
                t.zk_at_exit = Some(zk_pending.len());
            }
            for (&id, zero) in t.md_zero.iter_mut() {
                if zero.is_some() {
                    if just_exited {
                        t.md_at_exit.insert(id, Some(0));
                    }
                    continue;
                }
                match self.probe.metadata(id, &self.topic).await {
                    // An answer without the topic's partitions says nothing about leaders.
                    Ok(v) if v.partitions.len() < self.partitions as usize => {
                        t.errors
                            .note(format!("broker {id}: {} partitions", v.partitions.len()));
                    }
                    Ok(v) => {
                        let led = v.partitions.values().filter(|p| p.leader == victim).count();
                        if led == 0 {
                            *zero = Some(secs(start));
                        }
                        if just_exited {
                            t.md_at_exit.insert(id, Some(led));
                        }
                    }
                    Err(e) => t.errors.note(format!("broker {id}: {e:#}")),
                }
            }
            let all_zero = t.zk_zero.is_some() && t.md_zero.values().all(Option::is_some);
            if (t.exit.is_some() && all_zero) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL / 2).await;
        }
        if t.exit.is_none() && procs::signal(pid, libc::SIGKILL).is_ok() {
            t.forced = true;
            self.stopped_by
                .insert(victim, "SIGKILL after SIGTERM timed out");
        }
    }

    /// `kill -9` of the controller (`controller`) or of the non-controller leading the most
    /// partitions; times from the znode event to every partition led by a live broker.
    pub(super) async fn kill(&mut self, controller: bool) -> Value {
        let (old_controller, counts) =
            match (self.probe.controller().await, self.leader_counts().await) {
                (Ok(Some(c)), Ok(n)) => (c, n),
                (Ok(None), _) => return json!({"error": "no controller"}),
                (Err(e), _) | (_, Err(e)) => return json!({"error": format!("{e:#}")}),
            };
        let victim = if controller {
            old_controller
        } else {
            match counts
                .iter()
                .filter(|(id, _)| **id != old_controller)
                .max_by_key(|(id, n)| (**n, -**id))
            {
                Some((id, _)) => *id,
                None => return json!({"error": "no non-controller broker"}),
            }
        };
        let Some(pid) = self.cluster.pid(victim) else {
            return json!({"error": format!("broker {victim} is not running")});
        };
        let survivors: Vec<i32> = counts.keys().copied().filter(|id| *id != victim).collect();
        let start = Instant::now();
        if let Err(e) = procs::signal(pid, libc::SIGKILL) {
            return json!({"error": format!("{e:#}")});
        }
        self.stopped_by.insert(victim, "SIGKILL");
        self.probe.disconnect(victim);
        let ev = self.await_failover_event(victim, controller, start).await;
        let mut v = json!({
            "broker": victim,
            "was_controller": controller,
            "led_before": counts.get(&victim),
            "znode_gone_after_kill_seconds": ev.gone,
            "new_controller": ev.new_controller,
            "new_controller_after_kill_seconds": ev.new_controller_at,
        });
        let Some(reference) = (if controller {
            ev.new_controller_instant
        } else {
            ev.gone_instant
        }) else {
            v["timed_out"] = json!(true);
            v["errors"] = ev.errors.to_json();
            return v;
        };
        let live = survivors.clone();
        let led_live = move |_: i32, leader: i32, _: &[i32]| live.contains(&leader);
        let out = self
            .wait_all(survivors, &led_live, reference, reference + self.timeout)
            .await;
        let key = if controller {
            "all_led_by_live_after_new_controller"
        } else {
            "all_led_by_live_after_znode_gone"
        };
        v[key] = out.to_json();
        v["seconds"] = json!(out.seconds());
        v["timed_out"] = json!(!out.done());
        v
    }

    /// Polls until the victim's registration is gone and, for a controller kill, until another
    /// broker holds `/controller`.
    async fn await_failover_event(
        &self,
        victim: i32,
        controller: bool,
        start: Instant,
    ) -> Failover {
        let deadline = start + self.timeout;
        let mut ev = Failover::default();
        while Instant::now() < deadline {
            if ev.gone.is_none() {
                match self.probe.registrations().await {
                    Ok(r) if !r.contains_key(&victim) => {
                        ev.gone = Some(secs(start));
                        ev.gone_instant = Some(Instant::now());
                    }
                    Ok(_) => {}
                    Err(e) => ev.errors.note(e),
                }
            }
            if controller && ev.new_controller.is_none() {
                match self.probe.controller().await {
                    Ok(Some(c)) if c != victim => {
                        ev.new_controller = Some(c);
                        ev.new_controller_at = Some(secs(start));
                        ev.new_controller_instant = Some(Instant::now());
                    }
                    Ok(_) => {}
                    Err(e) => ev.errors.note(e),
                }
            }
            if ev.gone.is_some() && (!controller || ev.new_controller.is_some()) {
                break;
            }
            tokio::time::sleep(FAST_POLL).await;
        }
        ev
    }

    /// DeleteTopics (to the controller) until `/brokers/topics/<t>`, `/admin/delete_topics/<t>`
    /// and every `<t>-<p>` log directory are gone, watching for re-registrations (expired
    /// sessions) and controller moves meanwhile.
    pub(super) async fn delete(&mut self) -> Value {
        let (controller, regs, epoch) = match (
            self.probe.controller().await,
            self.probe.registrations().await,
            self.probe.controller_epoch().await,
        ) {
            (Ok(Some(c)), Ok(r), Ok(e)) => (c, r, e),
            (Ok(None), _, _) => return json!({"error": "no controller"}),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                return json!({"error": format!("{e:#}")})
            }
        };
        let (addr, topic, timeout) = (self.addr(controller), self.topic.clone(), self.timeout);
        let start = Instant::now();
        let request = spawn_request(start, async move {
            let code = delete_topic(&addr, &topic, timeout).await?;
            Ok(json!({"error_code": code}))
        });
        let d = self.trace_deletion(start, &regs, epoch).await;
        let done = d.done.is_some();
        json!({
            "seconds": d.done,
            "timed_out": !done,
            "sent_to_controller": controller,
            "topic_znode_gone_seconds": d.topic_gone,
            "delete_flag_gone_seconds": d.flag_gone,
            "log_dirs_gone_seconds": by_broker(&d.dirs_gone),
            "renamed_dirs_left_at_done": d.renamed_at_done,
            "sessions_expired": d.expired,
            "controller_epoch_before": epoch,
            "controller_moves": d.moves,
            "delete_topics": request_outcome(request, Duration::from_secs(15)).await,
            "errors": d.errors.to_json(),
        })
    }

    async fn trace_deletion(
        &mut self,
        start: Instant,
        regs_before: &BTreeMap<i32, i64>,
        epoch_before: Option<i32>,
    ) -> Deletion {
        let deadline = start + self.timeout;
        let mut d = Deletion::default();
        let mut epoch_seen = epoch_before;
        let ids = self.probe.broker_ids();
        loop {
            if d.topic_gone.is_none() {
                match self.probe.assignment(&self.topic).await {
                    Ok(None) => d.topic_gone = Some(secs(start)),
                    Ok(Some(_)) => {}
                    Err(e) => d.errors.note(e),
                }
            }
            // The flag is created by the request; it only counts as gone once the topic is.
            if d.topic_gone.is_some() && d.flag_gone.is_none() {
                match self.probe.deletion_pending(&self.topic).await {
                    Ok(false) => d.flag_gone = Some(secs(start)),
                    Ok(true) => {}
                    Err(e) => d.errors.note(e),
                }
            }
            let mut renamed = 0;
            for &id in &ids {
                let (live, r) = self.cluster.topic_dirs(id, &self.topic);
                renamed += r;
                if live == 0 && !d.dirs_gone.contains_key(&id) {
                    d.dirs_gone.insert(id, secs(start));
                }
            }
            self.note_session_and_controller(start, regs_before, &mut epoch_seen, &mut d)
                .await;
            if d.topic_gone.is_some() && d.flag_gone.is_some() && d.dirs_gone.len() == ids.len() {
                d.done = d
                    .topic_gone
                    .into_iter()
                    .chain(d.flag_gone)
                    .chain(d.dirs_gone.values().copied())
                    .reduce(f64::max);
                d.renamed_at_done = Some(renamed);
                return d;
            }
            if Instant::now() >= deadline {
                return d;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Records brokers whose registration czxid changed or vanished (their session expired) and
    /// changes of `/controller_epoch`.
    async fn note_session_and_controller(
        &self,
        start: Instant,
        regs_before: &BTreeMap<i32, i64>,
        epoch_seen: &mut Option<i32>,
        d: &mut Deletion,
    ) {
        match self.probe.registrations().await {
            Ok(now) => {
                for (id, czxid) in regs_before {
                    let changed = now.get(id) != Some(czxid);
                    if changed && !d.expired.iter().any(|e| e["broker"] == json!(id)) {
                        d.expired.push(json!({"broker": id, "seconds": secs(start), "registered": now.contains_key(id)}));
                    }
                }
            }
            Err(e) => d.errors.note(e),
        }
        match self.probe.controller_epoch().await {
            Ok(e) if e != *epoch_seen => {
                d.moves.push(json!({"seconds": secs(start), "epoch": e}));
                *epoch_seen = e;
            }
            Ok(_) => {}
            Err(e) => d.errors.note(e),
        }
    }
}

/// What the SIGTERM loop observed.
struct SigtermTrace {
    exit: Option<f64>,
    forced: bool,
    zk_zero: Option<f64>,
    zk_at_exit: Option<usize>,
    md_zero: BTreeMap<i32, Option<f64>>,
    md_at_exit: BTreeMap<i32, Option<usize>>,
    errors: Errors,
}

impl SigtermTrace {
    fn new(survivors: &[i32]) -> Self {
        Self {
            exit: None,
            forced: false,
            zk_zero: None,
            zk_at_exit: None,
            md_zero: survivors.iter().map(|id| (*id, None)).collect(),
            md_at_exit: survivors.iter().map(|id| (*id, None)).collect(),
            errors: Errors::default(),
        }
    }
}

/// When a killed broker's registration vanished and a new controller appeared.
#[derive(Default)]
struct Failover {
    gone: Option<f64>,
    gone_instant: Option<Instant>,
    new_controller: Option<i32>,
    new_controller_at: Option<f64>,
    new_controller_instant: Option<Instant>,
    errors: Errors,
}

/// What the deletion loop observed.
#[derive(Default)]
struct Deletion {
    done: Option<f64>,
    topic_gone: Option<f64>,
    flag_gone: Option<f64>,
    dirs_gone: BTreeMap<i32, f64>,
    renamed_at_done: Option<usize>,
    expired: Vec<Value>,
    moves: Vec<Value>,
    errors: Errors,
}
