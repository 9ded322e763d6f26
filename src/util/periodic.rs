//! A background task that runs a job at a fixed interval until shutdown: the first run is one
//! interval after the start, and a run is never interrupted; shutdown is seen between runs.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Spawns `job` every `every` until `shutdown` turns true (or its sender goes).
pub fn spawn_every<F, Fut>(
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut job: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                _ = tick.tick() => job().await,
            }
        }
    })
}
