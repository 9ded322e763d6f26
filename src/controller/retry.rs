//! Backoff for controller events whose handler failed (a ZooKeeper connection problem, or data
//! that keeps failing): each failure of the same event doubles its wait, from one second up to
//! thirty, and a success resets it, so a handler that cannot succeed costs a retry every half
//! minute instead of one every second forever.

use std::collections::HashMap;
use std::time::Duration;

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(30);
/// Distinct failing events remembered; beyond it the memory starts over (all back to `FIRST`).
const REMEMBERED: usize = 1024;

/// Consecutive failures per event (by its description, which names topic or broker).
#[derive(Default)]
pub(super) struct Retries {
    failures: HashMap<String, u32>,
}

impl Retries {
    pub(super) fn succeeded(&mut self, event: &str) {
        self.failures.remove(event);
    }

    /// Records a failure of `event`; returns how long to wait before running it again.
    pub(super) fn failed(&mut self, event: &str) -> Duration {
        if self.failures.len() >= REMEMBERED && !self.failures.contains_key(event) {
            self.failures.clear();
        }
        let n = self.failures.entry(event.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        FIRST.saturating_mul(1 << (*n - 1).min(5)).min(MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset_on_success() {
        let mut r = Retries::default();
        let waits: Vec<u64> = (0..8).map(|_| r.failed("TopicChange").as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            r.failed("BrokerChange"),
            FIRST,
            "events back off independently"
        );
        r.succeeded("TopicChange");
        assert_eq!(r.failed("TopicChange"), FIRST);
    }

    #[test]
    fn memory_is_bounded() {
        let mut r = Retries::default();
        for i in 0..10 * REMEMBERED {
            r.failed(&format!("PartitionModification(\"t{i}\")"));
        }
        assert!(r.failures.len() <= REMEMBERED);
    }
}
