//! Bringing the cluster back between phases: restart whichever broker a phase stopped (timing the
//! restart: registered, serving Metadata with every partition, back in every ISR), then wait for
//! full ISRs and preferred leaders, requesting a preferred-replica election through
//! `/admin/preferred_replica_election` when leaders are not balanced, as Kafka's tool does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::procs;
use super::wait::{secs, Errors, POLL};
use super::Bench;

/// Markers in a broker log that explain a failed start.
const FAILURE_MARKERS: [&str; 2] = ["Too many open files", "os error 24"];

/// Times of one restart, relative to spawning `cluster.sh up` (the process's own start is
/// found from `/proc` and reported too).
#[derive(Default)]
struct RestartMarks {
    process_started: Option<f64>,
    registered: Option<f64>,
    serves_metadata: Option<f64>,
    in_isr: Option<f64>,
}

impl RestartMarks {
    fn done(&self) -> bool {
        self.registered.is_some() && self.serves_metadata.is_some() && self.in_isr.is_some()
    }
}

impl Bench {
    /// Restarts broker `id` with `cluster.sh up` and times it; the result is appended to
    /// [`Bench::restarts`]. Returns whether it came back (registered and serving).
    pub(super) async fn restart(&mut self, id: i32, label: &str) -> bool {
        self.probe.disconnect(id);
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut starting = match self.cluster.start_missing(self.timeout) {
            Ok(s) => s,
            Err(e) => {
                self.restarts
                    .push(json!({"after": label, "broker": id, "error": format!("{e:#}")}));
                return false;
            }
        };
        let mut marks = RestartMarks::default();
        let mut pending: Vec<i32> = (0..self.partitions).collect();
        let mut errors = Errors::default();
        let mut script_failed = false;
        while !marks.done() && Instant::now() < deadline {
            if marks.process_started.is_none() {
                if let Some(age) = self.cluster.pid(id).and_then(procs::age) {
                    let at = start.elapsed().saturating_sub(age);
                    marks.process_started = Some((at.as_secs_f64() * 1000.0).round() / 1000.0);
                }
            }
            if marks.registered.is_none() {
                match self.probe.registrations().await {
                    Ok(r) if r.contains_key(&id) => marks.registered = Some(secs(start)),
                    Ok(_) => {}
                    Err(e) => errors.note(e),
                }
            }
            if marks.registered.is_some() && marks.serves_metadata.is_none() {
                match self.probe.metadata(id, &self.topic).await {
                    Ok(v) if v.partitions.len() == self.partitions as usize => {
                        marks.serves_metadata = Some(secs(start));
                    }
                    Ok(_) => {}
                    Err(e) => errors.note(format!("broker {id}: {e:#}")),
                }
            }
            if marks.in_isr.is_none() {
                match self.probe.states(&self.topic, &pending).await {
                    Ok(states) => {
                        pending.retain(|p| states.get(p).is_none_or(|s| !s.isr.contains(&id)));
                        if pending.is_empty() {
                            marks.in_isr = Some(secs(start));
                        }
                    }
                    Err(e) => errors.note(e),
                }
            }
            if starting.try_finished() == Some(false) {
                script_failed = true;
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let script = starting.finish(Duration::from_secs(15)).await;
        let running = self.cluster.pid(id).is_some();
        let since_process = |t: Option<f64>| {
            let (t, p) = (t?, marks.process_started?);
            Some(((t - p).max(0.0) * 1000.0).round() / 1000.0)
        };
        let stopped_by = self.stopped_by.remove(&id);
        let mut v = json!({
            "before": label,
            "broker": id,
            "stopped_by": stopped_by,
            "since_process_start": {
                "registered_seconds": since_process(marks.registered),
                "serves_metadata_seconds": since_process(marks.serves_metadata),
                "in_all_isrs_seconds": since_process(marks.in_isr),
            },
            "process_started_seconds": marks.process_started,
            "registered_seconds": marks.registered,
            "serves_metadata_seconds": marks.serves_metadata,
            "in_all_isrs_seconds": marks.in_isr,
            "partitions_not_in_isr": pending.len(),
            "timed_out": !marks.done() && !script_failed,
            "running": running,
            "cluster_sh": script,
            "descriptors": self.cluster.descriptors(&[id]),
        });
        if !marks.done() {
            let log = procs::tail(&self.cluster.log_path(id), 400);
            let failure = log
                .iter()
                .rev()
                .find(|l| FAILURE_MARKERS.iter().any(|m| l.contains(m)));
            v["too_many_open_files"] = json!(failure.is_some());
            v["failure_line"] = json!(failure);
            v["log_tail"] = json!(log[log.len().saturating_sub(5)..]);
            v["errors"] = errors.to_json();
        }
        self.restarts.push(v);
        running && marks.registered.is_some() && marks.serves_metadata.is_some()
    }

    /// Waits for full ISRs, then for every partition to be led by its preferred replica in
    /// ZooKeeper and in every broker's Metadata, requesting an election for those that are not.
    pub(super) async fn balance(&mut self) -> (bool, Value) {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let assignment = match self.probe.assignment(&self.topic).await {
            Ok(Some(a)) => a,
            Ok(None) => return (false, json!({"error": "topic has no assignment znode"})),
            Err(e) => return (false, json!({"error": format!("{e:#}")})),
        };
        let full_isr = |p: i32, leader: i32, isr: &[i32]| {
            leader >= 0 && assignment.get(&p).is_some_and(|r| r.len() == isr.len())
        };
        let isr = self.wait_all(Vec::new(), &full_isr, start, deadline).await;
        let requested = self.request_election(&assignment, deadline).await;
        let preferred = |p: i32, leader: i32, _: &[i32]| {
            assignment.get(&p).and_then(|r| r.first()) == Some(&leader)
        };
        let ask = self.probe.broker_ids();
        let leaders = self.wait_all(ask, &preferred, start, deadline).await;
        let ok = isr.done() && leaders.done();
        let v = json!({
            "balanced": ok,
            "seconds": secs(start),
            "full_isr": isr.to_json(),
            "election_requested": requested,
            "preferred_leaders": leaders.to_json(),
        });
        (ok, v)
    }

    /// Requests a preferred election for partitions whose ZooKeeper leader is not the first
    /// replica (retrying while an earlier request is pending); returns what was done.
    async fn request_election(
        &mut self,
        assignment: &BTreeMap<i32, Vec<i32>>,
        deadline: Instant,
    ) -> Value {
        let all: Vec<i32> = (0..self.partitions).collect();
        let states = match self.probe.states(&self.topic, &all).await {
            Ok(s) => s,
            Err(e) => return json!({"error": format!("{e:#}")}),
        };
        let off: Vec<i32> = all
            .into_iter()
            .filter(|p| {
                let first = assignment.get(p).and_then(|r| r.first());
                states.get(p).map(|s| s.leader).as_ref() != first
            })
            .collect();
        if off.is_empty() {
            return json!({"partitions": 0});
        }
        loop {
            match self
                .probe
                .request_preferred_election(&self.topic, &off)
                .await
            {
                Ok(true) => return json!({"partitions": off.len()}),
                Ok(false) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                Ok(false) => {
                    return json!({"partitions": off.len(), "error": "an earlier request stayed pending"})
                }
                Err(e) => return json!({"partitions": off.len(), "error": format!("{e:#}")}),
            }
        }
    }

    /// Restarts every broker that is not running, then balances. Healthy = all brokers running
    /// and registered (balance is reported, a phase still runs without it).
    pub(super) async fn ready(&mut self, label: &str) -> (bool, Value) {
        let mut restarted = Vec::new();
        let mut all_up = true;
        for id in self.probe.broker_ids() {
            if self.cluster.pid(id).is_none() {
                restarted.push(id);
                all_up &= self.restart(id, label).await;
            }
        }
        let registered = match self.probe.registrations().await {
            Ok(r) => self.probe.broker_ids().iter().all(|id| r.contains_key(id)),
            Err(_) => false,
        };
        // Full ISRs cannot come with a broker down: waiting would only burn the deadline.
        let (balanced, balance) = if all_up && registered {
            self.balance().await
        } else {
            (false, json!({"skipped": "a broker is not running"}))
        };
        let v = json!({
            "restarted": restarted,
            "all_registered": registered,
            "balanced": balanced,
            "balance": balance,
        });
        (all_up && registered, v)
    }
}
