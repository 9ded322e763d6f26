//! One-shot ZooKeeper watches, as the controller uses them (reference §1 "Watches").
//!
//! A `Watch` fires once; the caller re-reads with the matching `*_and_watch` call to re-arm it,
//! exactly like Kafka's handlers re-register on every event. When the session ends every
//! outstanding watch fires with `SessionEnded`, so no waiter hangs.

use zookeeper_client::{EventType, OneshotWatcher, SessionState, WatchedEvent};

/// Why a session ended for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLoss {
    /// The ensemble expired the session: ephemeral nodes (broker registration, `/controller`)
    /// are gone.
    Expired,
    /// This process closed it (all client handles dropped).
    Closed,
    /// Authentication failed.
    AuthFailed,
}

impl SessionLoss {
    /// Maps a terminal session state; non-terminal states never reach one-shot watchers
    /// (the client filters them), so they are treated as a close.
    pub(crate) fn from_state(state: SessionState) -> Self {
        match state {
            SessionState::Expired => Self::Expired,
            SessionState::AuthFailed => Self::AuthFailed,
            _ => Self::Closed,
        }
    }
}

/// What happened to a watched znode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventKind {
    NodeCreated,
    NodeDeleted,
    DataChanged,
    ChildrenChanged,
    SessionEnded(SessionLoss),
}

/// A fired watch: what happened and on which path (relative to the chroot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: WatchEventKind,
    pub path: String,
}

/// A registered one-shot watch on `path`.
#[derive(Debug)]
pub struct Watch {
    path: String,
    inner: OneshotWatcher,
}

impl Watch {
    pub(crate) fn new(path: &str, inner: OneshotWatcher) -> Self {
        Self {
            path: path.to_string(),
            inner,
        }
    }

    /// The watched path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Waits for the watch to fire. Dropping the `Watch` unregisters it locally.
    pub async fn changed(self) -> WatchEvent {
        let event: WatchedEvent = self.inner.changed().await;
        let kind = match event.event_type {
            EventType::NodeCreated => WatchEventKind::NodeCreated,
            EventType::NodeDeleted => WatchEventKind::NodeDeleted,
            EventType::NodeDataChanged => WatchEventKind::DataChanged,
            EventType::NodeChildrenChanged => WatchEventKind::ChildrenChanged,
            EventType::Session => {
                WatchEventKind::SessionEnded(SessionLoss::from_state(event.session_state))
            }
        };
        // Session events carry no path; report the watched one so callers can route the event.
        let path = if event.path.is_empty() {
            self.path
        } else {
            event.path
        };
        tracing::debug!(path = %path, kind = ?kind, "zookeeper watch fired");
        WatchEvent { kind, path }
    }
}
