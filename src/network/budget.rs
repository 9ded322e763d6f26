//! The broker-wide budget for requests being received (Kafka's `queued.max.requests` and
//! `queued.max.request.bytes`, whose `MemoryPool` stops network threads from reading when full).
//!
//! A frame's buffer is allocated as soon as its size is known and filled as bytes trickle in, so
//! without a budget a few thousand connections each announcing 100 MB and then sending slowly
//! could make the broker allocate without bound. A connection reserves its frame's bytes (and one
//! request slot) before allocating and keeps them until the frame is read; while the budget is
//! used up, new frames wait — their clients just see a slower broker — and nothing is refused.
//! Once read, a request is handled at once (there is no queue behind the network layer), so the
//! budget ends where Kafka's queue would: when handling starts.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes are counted in units of 1 KiB so that a budget of many GiB fits the semaphore's `u32`
/// per acquisition.
const UNIT: usize = 1024;

/// The shared budget of one broker.
#[derive(Debug)]
pub struct RequestBudget {
    requests: Arc<Semaphore>,
    bytes: Option<(Arc<Semaphore>, u32)>,
}

/// What one request being received holds; released when dropped. (The semaphores are never
/// closed, so a permit is always there; `None` would only let the request go ahead unbudgeted
/// rather than hang.)
#[derive(Debug)]
pub struct Reserved {
    _request: Option<OwnedSemaphorePermit>,
    _bytes: Option<OwnedSemaphorePermit>,
}

impl RequestBudget {
    /// `max_requests` frames and `max_bytes` bytes (`None`: no byte limit) being received at once.
    pub fn new(max_requests: usize, max_bytes: Option<usize>) -> Arc<RequestBudget> {
        let bytes = max_bytes.map(|b| {
            let units = b.div_ceil(UNIT).clamp(1, u32::MAX as usize);
            (Arc::new(Semaphore::new(units)), units as u32)
        });
        Arc::new(RequestBudget {
            requests: Arc::new(Semaphore::new(
                max_requests.clamp(1, Semaphore::MAX_PERMITS),
            )),
            bytes,
        })
    }

    /// Waits until a frame of `size` bytes may be received. A frame larger than the whole byte
    /// budget waits for all of it (the configuration check keeps the budget at least
    /// `socket.request.max.bytes`).
    pub async fn reserve(&self, size: usize) -> Reserved {
        let request = Arc::clone(&self.requests).acquire_owned().await.ok();
        let bytes = match &self.bytes {
            Some((sem, total)) => {
                let units = u32::try_from(size.div_ceil(UNIT))
                    .unwrap_or(u32::MAX)
                    .clamp(1, *total);
                Arc::clone(sem).acquire_many_owned(units).await.ok()
            }
            None => None,
        };
        Reserved {
            _request: request,
            _bytes: bytes,
        }
    }

    /// Requests slots free now (for tests and logs).
    pub fn free_requests(&self) -> usize {
        self.requests.available_permits()
    }

    /// Budget bytes free now, in bytes (`None`: unlimited).
    pub fn free_bytes(&self) -> Option<usize> {
        self.bytes
            .as_ref()
            .map(|(sem, _)| sem.available_permits() * UNIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn frames_wait_for_bytes_and_slots_and_go_on_when_they_are_freed() {
        let budget = RequestBudget::new(2, Some(10 * UNIT));
        let a = budget.reserve(6 * UNIT).await;
        assert_eq!(budget.free_bytes(), Some(4 * UNIT));
        // 6 KiB more do not fit: the frame waits until the first is read.
        let waiting = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { budget.reserve(6 * UNIT).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "over the byte budget");
        drop(a);
        let b = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        // Two slots: a third frame waits for one, whatever its size.
        let c = budget.reserve(1).await;
        assert_eq!(budget.free_requests(), 0);
        let third = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { budget.reserve(1).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "over the request count");
        drop(c);
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .unwrap()
            .unwrap();
        drop(b);
        // A frame larger than the whole budget takes all of it rather than waiting forever.
        let huge = tokio::time::timeout(Duration::from_secs(5), budget.reserve(100 * UNIT))
            .await
            .unwrap();
        assert_eq!(budget.free_bytes(), Some(0));
        drop(huge);
        assert_eq!(budget.free_bytes(), Some(10 * UNIT));
    }
}
