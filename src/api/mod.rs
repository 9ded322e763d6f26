//! KafkaApis: one dispatcher on the request's API key, one file per API family. This is the only
//! place where domain errors become Kafka error codes ([`codes`]).
//!
//! [`handle`] returns `Ok(Some(frame))` to answer, `Ok(None)` when no answer is due (acks=0), and
//! `Err` when the connection must be closed (an unknown API, an unsupported version, a body that
//! does not decode, or an acks=0 produce that failed — Kafka closes the connection in each case).

mod admin;
mod codes;
mod control;
mod controlled_shutdown;
#[cfg(test)]
mod decode_tests;
mod fetch;
mod fetch_encode;
mod fetch_session;
mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod metadata_request;
mod offset_for_leader_epoch;
mod offsets;
mod produce;
mod txn;
mod txn_markers;
mod versions;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use crate::config::KafkaConfig;
use crate::controller::ControllerHandle;
use crate::coordinator::transaction::{ProducerIdManager, TransactionCoordinator};
use crate::coordinator::GroupCoordinator;
use crate::metadata::MetadataCache;
use crate::protocol::file_region::Chunk;
use crate::protocol::frame::{self, RequestFrame};
use crate::protocol::versions as supported;
use crate::replication::ReplicaManager;
use crate::zk::ZkHandle;
pub(crate) use codes::error_code;
pub use fetch_session::FetchSessionCache;

/// Everything a request handler may call. Cheap to clone.
#[derive(Clone)]
pub struct ApiContext {
    pub config: Arc<KafkaConfig>,
    pub cluster_id: Arc<str>,
    pub replicas: ReplicaManager,
    pub metadata: MetadataCache,
    pub zk: ZkHandle,
    pub controller: ControllerHandle,
    pub coordinator: GroupCoordinator,
    pub txn_coordinator: TransactionCoordinator,
    /// Producer ids for InitProducerId.
    pub producer_ids: Arc<ProducerIdManager>,
    /// This broker's epoch: the czxid of its `/brokers/ids/<id>` znode, renewed per session.
    pub broker_epoch: Arc<AtomicI64>,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: Arc<FetchSessionCache>,
    /// The listener the request arrived on (upper-case name, e.g. `PLAINTEXT`).
    pub listener: Arc<str>,
}

impl ApiContext {
    pub fn broker_id(&self) -> i32 {
        self.config.broker_id
    }

    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::SeqCst)
    }
}

/// A response frame (size prefix included) in pieces: bytes in memory, written with vectored
/// I/O, and ranges of segment files (fetched records), sent with `sendfile(2)`.
pub type Response = Vec<Chunk>;

/// Why a connection is closed instead of answered.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Header(#[from] frame::HeaderError),
    #[error("unsupported version {version} of {key:?}")]
    UnsupportedVersion { key: ApiKey, version: i16 },
    #[error("{key:?} v{version}: malformed request body: {reason}")]
    Malformed {
        key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {key:?} v{version} response: {reason}")]
    Encode {
        key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("acks=0 produce failed ({0}); closing the connection as Kafka does")]
    AcksZeroFailure(String),
}

/// A decoded request, ready for its handler.
pub(crate) struct Req {
    pub key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub body: Bytes,
    /// The header's client id ("" when null).
    pub client_id: String,
    /// Kafka's form of the peer address, "/127.0.0.1", formatted once per connection.
    pub client_host: Arc<str>,
}

impl Req {
    fn from_frame(f: RequestFrame, client_host: Arc<str>) -> Self {
        Req {
            key: f.api_key,
            version: f.api_version,
            correlation_id: f.correlation_id,
            body: f.body,
            client_id: f.client_id.unwrap_or_default(),
            client_host,
        }
    }

    pub fn decode<M: kafka_protocol::protocol::Decodable>(&self) -> Result<M, ApiError> {
        frame::decode_body(&self.body, self.version).map_err(|e| ApiError::Malformed {
            key: self.key,
            version: self.version,
            reason: e.to_string(),
        })
    }

    /// Encodes `body` as this request's response frame.
    pub fn respond<M: Encodable>(&self, body: &M) -> Result<Option<Response>, ApiError> {
        let header_version = self.key.response_header_version(self.version);
        frame::encode_response(self.correlation_id, header_version, body, self.version)
            .map(|b| Some(vec![Chunk::Mem(b.freeze())]))
            .map_err(|e| ApiError::Encode {
                key: self.key,
                version: self.version,
                reason: e.to_string(),
            })
    }
}

/// Handles one request frame (without its size prefix).
///
/// # Errors
/// See the module docs: every `Err` closes the connection.
pub async fn handle(
    ctx: &ApiContext,
    client_host: &Arc<str>,
    frame_bytes: Bytes,
) -> Result<Option<Response>, ApiError> {
    let (key, version, correlation_id) = frame::peek_fixed(&frame_bytes)?;
    // An ApiVersions request of a version we do not know is answered at v0 with
    // UNSUPPORTED_VERSION and our ranges (KIP-511), before its header is parsed: newer header
    // versions may carry fields we cannot read.
    if key == ApiKey::ApiVersions as i16 && !supported::is_supported(ApiKey::ApiVersions, version) {
        return versions::unsupported_version(correlation_id);
    }
    let f: RequestFrame = frame::decode_header(frame_bytes)?;
    if !supported::is_supported(f.api_key, f.api_version) {
        return Err(ApiError::UnsupportedVersion {
            key: f.api_key,
            version: f.api_version,
        });
    }
    tracing::trace!(api = ?f.api_key, version = f.api_version, correlation_id,
        client = ?f.client_id, "request");
    let req = Req::from_frame(f, client_host.clone());
    match req.key {
        ApiKey::ApiVersions => versions::handle(&req),
        ApiKey::Metadata => metadata::handle(ctx, &req).await,
        ApiKey::Produce => produce::handle(ctx, &req).await,
        ApiKey::Fetch => fetch::handle(ctx, &req).await,
        ApiKey::ListOffsets => list_offsets::handle(ctx, &req),
        ApiKey::CreateTopics => admin::create_topics(ctx, &req).await,
        ApiKey::DeleteTopics => admin::delete_topics(ctx, &req).await,
        ApiKey::DescribeConfigs => admin::describe_configs(ctx, &req).await,
        ApiKey::LeaderAndIsr => control::leader_and_isr(ctx, &req).await,
        ApiKey::UpdateMetadata => control::update_metadata(ctx, &req),
        ApiKey::StopReplica => control::stop_replica(ctx, &req).await,
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch::handle(ctx, &req),
        ApiKey::ControlledShutdown => controlled_shutdown::handle(ctx, &req).await,
        ApiKey::FindCoordinator => groups::find_coordinator(ctx, &req).await,
        ApiKey::JoinGroup => groups::join_group(ctx, &req).await,
        ApiKey::SyncGroup => groups::sync_group(ctx, &req).await,
        ApiKey::Heartbeat => groups::heartbeat(ctx, &req),
        ApiKey::LeaveGroup => groups::leave_group(ctx, &req),
        ApiKey::DescribeGroups => groups::describe_groups(ctx, &req),
        ApiKey::ListGroups => groups::list_groups(ctx, &req),
        ApiKey::OffsetCommit => offsets::offset_commit(ctx, &req).await,
        ApiKey::OffsetFetch => offsets::offset_fetch(ctx, &req).await,
        ApiKey::InitProducerId => init_producer_id::handle(ctx, &req).await,
        ApiKey::WriteTxnMarkers => txn_markers::handle(ctx, &req).await,
        ApiKey::AddPartitionsToTxn => txn::add_partitions_to_txn(ctx, &req).await,
        ApiKey::AddOffsetsToTxn => txn::add_offsets_to_txn(ctx, &req).await,
        ApiKey::EndTxn => txn::end_txn(ctx, &req).await,
        ApiKey::TxnOffsetCommit => txn::txn_offset_commit(ctx, &req).await,
        other => Err(ApiError::UnsupportedVersion {
            key: other,
            version: req.version,
        }),
    }
}
