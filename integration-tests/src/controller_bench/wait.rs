//! The one wait every phase of the controller benchmark is made of: poll, until a deadline, until
//! every partition satisfies a condition both in ZooKeeper (its state znode) and in the Metadata
//! answer of each given broker, and record when each of those views first did.
//!
//! ZooKeeper is re-read only for the partitions still pending (the conditions used never turn
//! false again once true within a phase), so polling 10,000 partitions stays cheap for the
//! cluster being measured. A deadline passing is an outcome, reported, never an error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::probe::Probe;

/// Pause between two polling rounds.
pub const POLL: Duration = Duration::from_millis(100);
/// At most this many distinct poll errors are kept for the report.
const MAX_ERRORS: usize = 5;

/// Condition on one partition: `(partition, leader, isr) -> satisfied`.
pub type Pred<'a> = &'a (dyn Fn(i32, i32, &[i32]) -> bool + Sync);

/// Seconds from `start` to now, rounded to milliseconds.
pub fn secs(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// Keeps the first few distinct errors seen while polling.
#[derive(Debug, Default)]
pub struct Errors(Vec<String>);

impl Errors {
    pub fn note(&mut self, e: impl std::fmt::Display) {
        let s = format!("{e:#}");
        if self.0.len() < MAX_ERRORS && !self.0.contains(&s) {
            self.0.push(s);
        }
    }

    pub fn to_json(&self) -> Value {
        json!(self.0)
    }
}

/// What to wait for.
pub struct WaitSpec<'a> {
    pub topic: &'a str,
    pub partitions: i32,
    /// Brokers whose Metadata must satisfy `pred` for every partition.
    pub ask: Vec<i32>,
    pub pred: Pred<'a>,
    /// Times are reported relative to this instant.
    pub start: Instant,
    pub deadline: Instant,
}

/// When each view first satisfied the condition, and what was left at the deadline.
#[derive(Debug)]
pub struct WaitOutcome {
    pub zk: Option<f64>,
    pub metadata: BTreeMap<i32, Option<f64>>,
    zk_left: usize,
    /// Partitions not yet satisfied in each broker's last answer (`None`: it never answered).
    md_left: BTreeMap<i32, Option<usize>>,
    /// Each broker's last answer: topic error code and partitions listed.
    md_last: BTreeMap<i32, Value>,
    errors: Errors,
}

impl WaitOutcome {
    pub fn done(&self) -> bool {
        self.zk.is_some() && self.metadata.values().all(Option::is_some)
    }

    /// The slowest view's time, once all are done.
    pub fn seconds(&self) -> Option<f64> {
        if !self.done() {
            return None;
        }
        let md = self.metadata.values().flatten().copied();
        self.zk.into_iter().chain(md).reduce(f64::max)
    }

    pub fn to_json(&self) -> Value {
        let md: serde_json::Map<String, Value> = self
            .metadata
            .iter()
            .map(|(id, s)| (id.to_string(), json!(s)))
            .collect();
        let mut v = json!({
            "seconds": self.seconds(),
            "timed_out": !self.done(),
            "zk_seconds": self.zk,
            "metadata_seconds": md,
        });
        if !self.done() {
            let left: serde_json::Map<String, Value> = self
                .md_left
                .iter()
                .map(|(id, n)| (id.to_string(), json!(n)))
                .collect();
            v["zk_partitions_left"] = json!(self.zk_left);
            v["metadata_partitions_left"] = Value::Object(left);
            let last = self
                .md_last
                .iter()
                .map(|(id, a)| (id.to_string(), a.clone()));
            v["metadata_last_answer"] = Value::Object(last.collect());
            v["errors"] = self.errors.to_json();
        }
        v
    }
}

/// Partitions of `view` (missing ones count) that fail `pred`.
fn md_unsatisfied(view: &super::probe::MdView, partitions: i32, pred: Pred<'_>) -> usize {
    (0..partitions)
        .filter(|p| match view.partitions.get(p) {
            Some(mp) => !pred(*p, mp.leader, &mp.isr),
            None => true,
        })
        .count()
}

/// Polls until `spec` holds in ZooKeeper and in every asked broker's Metadata, or the deadline.
pub async fn wait_partitions(probe: &mut Probe, spec: &WaitSpec<'_>) -> WaitOutcome {
    let mut pending: Vec<i32> = (0..spec.partitions).collect();
    let mut out = WaitOutcome {
        zk: None,
        metadata: spec.ask.iter().map(|id| (*id, None)).collect(),
        zk_left: pending.len(),
        md_left: spec.ask.iter().map(|id| (*id, None)).collect(),
        md_last: BTreeMap::new(),
        errors: Errors::default(),
    };
    loop {
        if out.zk.is_none() {
            match probe.states(spec.topic, &pending).await {
                Ok(states) => {
                    pending.retain(|p| {
                        states
                            .get(p)
                            .is_none_or(|s| !(spec.pred)(*p, s.leader, &s.isr))
                    });
                    out.zk_left = pending.len();
                    if pending.is_empty() {
                        out.zk = Some(secs(spec.start));
                    }
                }
                Err(e) => out.errors.note(e),
            }
        }
        for &id in &spec.ask {
            if out.metadata.get(&id).is_some_and(Option::is_some) {
                continue;
            }
            match probe.metadata(id, spec.topic).await {
                Ok(view) => {
                    let left = md_unsatisfied(&view, spec.partitions, spec.pred);
                    out.md_left.insert(id, Some(left));
                    let last = json!({"topic_error": view.topic_error, "partitions_listed": view.partitions.len()});
                    out.md_last.insert(id, last);
                    if left == 0 {
                        out.metadata.insert(id, Some(secs(spec.start)));
                    }
                }
                Err(e) => out.errors.note(format!("broker {id}: {e:#}")),
            }
        }
        if out.done() || Instant::now() >= spec.deadline {
            return out;
        }
        tokio::time::sleep(POLL).await;
    }
}
