//! Kafka's `ConnectionQuotas`: at most `max.connections.per.ip` connections from one address
//! (`max.connections.per.ip.overrides` per host), and at most `max.connections` in all.
//!
//! A connection over its address's limit is closed as soon as it is accepted, as Kafka does; at
//! the broker-wide limit the listeners stop accepting until a connection closes, so new clients
//! wait in the kernel's backlog instead of being refused. Each accepted connection holds a
//! [`Slot`] that gives its place back when the connection ends, however it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The limits as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionQuotaConfig {
    pub max_connections: usize,
    pub max_per_ip: usize,
    pub per_ip_overrides: HashMap<IpAddr, usize>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Connection counts shared by every listener of the broker.
pub struct ConnectionQuotas {
    config: ConnectionQuotaConfig,
    counts: Mutex<Counts>,
    released: Notify,
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{ip} already has the configured maximum of {max} connections")]
pub struct TooManyConnections {
    pub ip: IpAddr,
    pub max: usize,
}

impl ConnectionQuotas {
    pub fn new(config: ConnectionQuotaConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            counts: Mutex::new(Counts::default()),
            released: Notify::new(),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Counts are plain integers updated in one step: a poisoned lock still holds them.
        match self.counts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Returns once the broker is below `max.connections` (Kafka's `waitForConnectionSlot`).
    pub async fn wait_for_room(&self) {
        loop {
            // Registered before the check, so a close between the check and the wait still
            // wakes this listener.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.counts().total < self.config.max_connections {
                return;
            }
            released.await;
        }
    }

    /// Counts a new connection from `ip`, or refuses it when `ip` is at its limit.
    ///
    /// # Errors
    /// [`TooManyConnections`] naming the address and its limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, TooManyConnections> {
        let max = self
            .config
            .per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.config.max_per_ip);
        let mut counts = self.counts();
        let n = counts.by_ip.entry(ip).or_insert(0);
        if *n >= max {
            if *n == 0 {
                counts.by_ip.remove(&ip);
            }
            return Err(TooManyConnections { ip, max });
        }
        *n += 1;
        counts.total += 1;
        Ok(Slot {
            quotas: self.clone(),
            ip,
        })
    }

    /// Open connections now (all, and from `ip`).
    pub fn open(&self, ip: IpAddr) -> (usize, usize) {
        let counts = self.counts();
        (counts.total, counts.by_ip.get(&ip).copied().unwrap_or(0))
    }
}

/// One counted connection; dropping it frees its place.
pub struct Slot {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut counts = self.quotas.counts();
            counts.total = counts.total.saturating_sub(1);
            if let Some(n) = counts.by_ip.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.by_ip.remove(&self.ip);
                }
            }
        }
        self.quotas.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn quotas(max: usize, per_ip: usize, overrides: &[(IpAddr, usize)]) -> Arc<ConnectionQuotas> {
        ConnectionQuotas::new(ConnectionQuotaConfig {
            max_connections: max,
            max_per_ip: per_ip,
            per_ip_overrides: overrides.iter().copied().collect(),
        })
    }

    #[test]
    fn an_address_at_its_limit_is_refused_until_one_of_its_connections_closes() {
        let q = quotas(100, 2, &[]);
        let a = q.admit(ip(1)).unwrap();
        let _b = q.admit(ip(1)).unwrap();
        assert_eq!(
            q.admit(ip(1)).err(),
            Some(TooManyConnections { ip: ip(1), max: 2 })
        );
        assert!(q.admit(ip(2)).is_ok(), "other addresses are not affected");
        drop(a);
        assert!(q.admit(ip(1)).is_ok());
    }

    #[test]
    fn an_override_replaces_the_default_for_its_address() {
        let q = quotas(100, 1, &[(ip(9), 3), (ip(8), 0)]);
        let held: Vec<Slot> = (0..3).map(|_| q.admit(ip(9)).unwrap()).collect();
        assert!(q.admit(ip(9)).is_err());
        assert!(
            q.admit(ip(8)).is_err(),
            "an override of 0 refuses every connection"
        );
        assert_eq!(q.open(ip(9)), (3, 3));
        assert_eq!(q.open(ip(8)), (3, 0));
        drop(held);
        assert_eq!(q.open(ip(9)), (0, 0));
    }

    #[tokio::test]
    async fn at_the_broker_limit_acceptance_waits_for_a_close() {
        let q = quotas(2, 10, &[]);
        let a = q.admit(ip(1)).unwrap();
        let _b = q.admit(ip(2)).unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), q.wait_for_room()).await;
        assert!(waiting.is_err(), "room reported at the limit");
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.wait_for_room().await });
        tokio::task::yield_now().await;
        drop(a);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a close did not wake the listener")
            .unwrap();
    }
}
