//! `ZkError`: every failure of the ZooKeeper layer, each naming the znode (or input) at fault.
//!
//! Callers branch on three families: *retriable* (`ConnectionLoss`: the session is still alive,
//! the request may be retried once reconnected), *session lost* (`SessionExpired`,
//! `SessionClosed`: build a new client, re-register, re-elect) and *semantic* (everything else,
//! e.g. `ControllerMoved`, which makes the controller resign).

use std::time::Duration;

use thiserror::Error;

/// A JSON or plain-text znode payload that does not match Kafka's format.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct CodecError(pub String);

impl CodecError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Errors of the ZooKeeper layer.
#[derive(Debug, Error)]
pub enum ZkError {
    /// `zookeeper.connect` could not be parsed (bad host list or chroot).
    #[error("invalid zookeeper.connect {connect:?}: {reason}")]
    InvalidConnectString { connect: String, reason: String },

    /// No session could be established within `zookeeper.connection.timeout.ms`, after
    /// `attempts` tries; `last_error` is why the last one failed.
    #[error(
        "could not connect to ZooKeeper at {connect:?} within {timeout:?} \
         ({attempts} attempts, the last failed with: {last_error})"
    )]
    ConnectTimeout {
        connect: String,
        timeout: Duration,
        attempts: u32,
        last_error: String,
    },

    /// The TCP connection dropped while a request on `path` was in flight; the session may still
    /// be alive, so the outcome of a write is unknown. Retriable.
    #[error("connection to ZooKeeper lost during a request on {path}")]
    ConnectionLoss { path: String },

    /// The session expired (ephemeral nodes are gone); a new client is needed.
    #[error("ZooKeeper session expired (request on {path})")]
    SessionExpired { path: String },

    /// The session was closed by this process or failed authentication.
    #[error("ZooKeeper session closed (request on {path})")]
    SessionClosed { path: String },

    #[error("znode {path} does not exist")]
    NoNode { path: String },

    #[error("znode {path} already exists")]
    NodeExists { path: String },

    /// A conditional write found a different zkVersion on `path`.
    #[error("conditional write to {path} failed: its zkVersion is not {}", expected_version(*.expected))]
    BadVersion { path: String, expected: Option<i32> },

    #[error("znode {path} still has children")]
    NotEmpty { path: String },

    /// `/brokers/ids/<id>` is held by another live session.
    #[error("broker id {id} is already registered in ZooKeeper by another session: {existing}")]
    BrokerIdInUse { id: i32, existing: String },

    /// The `/controller_epoch` fencing check failed or another broker won the election: this
    /// process must stop acting as controller (KAFKA-6082).
    #[error("controller moved: {detail}")]
    ControllerMoved { detail: String },

    #[error("topic {topic:?} already exists: {reason}")]
    TopicExists { topic: String, reason: String },

    #[error("invalid topic name {topic:?}: {reason}")]
    InvalidTopic { topic: String, reason: String },

    #[error("invalid replica assignment for topic {topic:?}: {reason}")]
    InvalidReplicaAssignment { topic: String, reason: String },

    /// A znode's payload could not be decoded.
    #[error("malformed data in znode {path}: {source}")]
    MalformedData {
        path: String,
        #[source]
        source: CodecError,
    },

    /// Any other ZooKeeper error, with the path of the request that failed.
    #[error("ZooKeeper request on {path} failed: {source}")]
    Zk {
        path: String,
        #[source]
        source: zookeeper_client::Error,
    },
}

fn expected_version(expected: Option<i32>) -> String {
    match expected {
        Some(v) => v.to_string(),
        None => "the expected one".to_string(),
    }
}

impl ZkError {
    /// Maps a client error on `path` to the matching variant.
    pub(crate) fn from_zk(path: &str, err: zookeeper_client::Error) -> Self {
        use zookeeper_client::Error as E;
        let path = path.to_string();
        match err {
            E::NoNode => Self::NoNode { path },
            E::NodeExists => Self::NodeExists { path },
            E::BadVersion => Self::BadVersion {
                path,
                expected: None,
            },
            E::NotEmpty => Self::NotEmpty { path },
            // The client fails a pending request with a transport error when it gives its
            // connection up; for the caller that is ZooKeeper's connection loss.
            E::ConnectionLoss | E::Custom(_) => Self::ConnectionLoss { path },
            E::SessionExpired | E::SessionMoved => Self::SessionExpired { path },
            E::ClientClosed | E::AuthFailed => Self::SessionClosed { path },
            source => Self::Zk { path, source },
        }
    }

    pub(crate) fn malformed(path: &str, source: CodecError) -> Self {
        Self::MalformedData {
            path: path.to_string(),
            source,
        }
    }

    /// True if the same request may succeed when retried on this session (connection loss or
    /// server throttling). For writes the first attempt may have been applied.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Self::ConnectionLoss { .. }
                | Self::Zk {
                    source: zookeeper_client::Error::Throttled,
                    ..
                }
        )
    }

    /// True if the session is gone for good: a new `KafkaZkClient` is required.
    pub fn is_session_lost(&self) -> bool {
        matches!(
            self,
            Self::SessionExpired { .. } | Self::SessionClosed { .. }
        )
    }

    /// True for `ControllerMoved`, on which the controller must resign.
    pub fn is_controller_moved(&self) -> bool {
        matches!(self, Self::ControllerMoved { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let loss = ZkError::from_zk("/a", zookeeper_client::Error::ConnectionLoss);
        assert!(loss.is_retriable());
        assert!(!loss.is_session_lost());
        let expired = ZkError::from_zk("/a", zookeeper_client::Error::SessionExpired);
        assert!(expired.is_session_lost());
        assert!(!expired.is_retriable());
        let moved = ZkError::ControllerMoved { detail: "x".into() };
        assert!(moved.is_controller_moved());
    }

    #[test]
    fn messages_name_the_path() {
        let err = ZkError::from_zk("/brokers/ids/1", zookeeper_client::Error::NodeExists);
        assert_eq!(err.to_string(), "znode /brokers/ids/1 already exists");
        let err = ZkError::BadVersion {
            path: "/s".into(),
            expected: Some(3),
        };
        assert_eq!(
            err.to_string(),
            "conditional write to /s failed: its zkVersion is not 3"
        );
    }
}
