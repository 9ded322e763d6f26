//! Property tests of the request decoding path: whatever bytes arrive, header and body decoding
//! return a value or an error and never panic or allocate what the input does not hold.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use proptest::prelude::*;

use super::Req;
use crate::protocol::frame;
use crate::protocol::versions::SUPPORTED;

/// Decodes `frame_bytes` the way `handle` does before dispatching.
fn decode_like_handle(frame_bytes: Bytes) -> Result<(), super::ApiError> {
    let f = frame::decode_header(frame_bytes)?;
    if !crate::protocol::versions::is_supported(f.api_key, f.api_version) {
        return Err(super::ApiError::UnsupportedVersion {
            key: f.api_key,
            version: f.api_version,
        });
    }
    let req = Req::from_frame(f, std::sync::Arc::from(""));
    match req.key {
        ApiKey::ApiVersions => req.decode::<ApiVersionsRequest>().map(|_| ()),
        ApiKey::Metadata => req.decode::<MetadataRequest>().map(|_| ()),
        ApiKey::Produce => req.decode::<ProduceRequest>().map(|_| ()),
        ApiKey::Fetch => req.decode::<FetchRequest>().map(|_| ()),
        ApiKey::ListOffsets => req.decode::<ListOffsetsRequest>().map(|_| ()),
        ApiKey::CreateTopics => req.decode::<CreateTopicsRequest>().map(|_| ()),
        ApiKey::DeleteTopics => req.decode::<DeleteTopicsRequest>().map(|_| ()),
        ApiKey::DescribeConfigs => req.decode::<DescribeConfigsRequest>().map(|_| ()),
        ApiKey::LeaderAndIsr => req.decode::<LeaderAndIsrRequest>().map(|_| ()),
        ApiKey::UpdateMetadata => req.decode::<UpdateMetadataRequest>().map(|_| ()),
        ApiKey::StopReplica => req.decode::<StopReplicaRequest>().map(|_| ()),
        ApiKey::ControlledShutdown => req.decode::<ControlledShutdownRequest>().map(|_| ()),
        ApiKey::OffsetForLeaderEpoch => req.decode::<OffsetForLeaderEpochRequest>().map(|_| ()),
        ApiKey::FindCoordinator => req.decode::<FindCoordinatorRequest>().map(|_| ()),
        ApiKey::JoinGroup => req.decode::<JoinGroupRequest>().map(|_| ()),
        ApiKey::SyncGroup => req.decode::<SyncGroupRequest>().map(|_| ()),
        ApiKey::Heartbeat => req.decode::<HeartbeatRequest>().map(|_| ()),
        ApiKey::LeaveGroup => req.decode::<LeaveGroupRequest>().map(|_| ()),
        ApiKey::DescribeGroups => req.decode::<DescribeGroupsRequest>().map(|_| ()),
        ApiKey::ListGroups => req.decode::<ListGroupsRequest>().map(|_| ()),
        ApiKey::OffsetCommit => req.decode::<OffsetCommitRequest>().map(|_| ()),
        ApiKey::OffsetFetch => req.decode::<OffsetFetchRequest>().map(|_| ()),
        ApiKey::InitProducerId => req.decode::<InitProducerIdRequest>().map(|_| ()),
        ApiKey::WriteTxnMarkers => req.decode::<WriteTxnMarkersRequest>().map(|_| ()),
        ApiKey::AddPartitionsToTxn => req.decode::<AddPartitionsToTxnRequest>().map(|_| ()),
        ApiKey::AddOffsetsToTxn => req.decode::<AddOffsetsToTxnRequest>().map(|_| ()),
        ApiKey::EndTxn => req.decode::<EndTxnRequest>().map(|_| ()),
        ApiKey::TxnOffsetCommit => req.decode::<TxnOffsetCommitRequest>().map(|_| ()),
        _ => Ok(()),
    }
}

fn encode<R: Encodable + HeaderVersion>(key: ApiKey, version: i16, body: &R) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut b = BytesMut::new();
    let _ = header.encode(&mut b, R::header_version(version));
    let _ = body.encode(&mut b, version);
    b.freeze()
}

/// A valid frame (default body) for every supported API and version.
fn valid_frames() -> Vec<Bytes> {
    let mut out = Vec::new();
    for (key, min, max) in SUPPORTED {
        for v in *min..=*max {
            let f = match key {
                ApiKey::ApiVersions => encode(*key, v, &ApiVersionsRequest::default()),
                ApiKey::Metadata => encode(*key, v, &MetadataRequest::default()),
                ApiKey::Produce => {
                    let mut p = produce_request::PartitionProduceData::default();
                    p.records = Some(Bytes::from_static(&[0u8; 70]));
                    let mut t = produce_request::TopicProduceData::default();
                    t.name = TopicName(StrBytes::from_static_str("t"));
                    t.partition_data = vec![p];
                    let mut r = ProduceRequest::default();
                    r.topic_data = vec![t];
                    encode(*key, v, &r)
                }
                ApiKey::Fetch => {
                    let mut t = fetch_request::FetchTopic::default();
                    t.topic = TopicName(StrBytes::from_static_str("t"));
                    t.partitions = vec![fetch_request::FetchPartition::default()];
                    let mut r = FetchRequest::default();
                    r.topics = vec![t];
                    encode(*key, v, &r)
                }
                ApiKey::ListOffsets => encode(*key, v, &ListOffsetsRequest::default()),
                ApiKey::CreateTopics => encode(*key, v, &CreateTopicsRequest::default()),
                ApiKey::DeleteTopics => encode(*key, v, &DeleteTopicsRequest::default()),
                ApiKey::DescribeConfigs => encode(*key, v, &DescribeConfigsRequest::default()),
                ApiKey::LeaderAndIsr => encode(*key, v, &LeaderAndIsrRequest::default()),
                ApiKey::UpdateMetadata => encode(*key, v, &UpdateMetadataRequest::default()),
                ApiKey::StopReplica => encode(*key, v, &StopReplicaRequest::default()),
                ApiKey::ControlledShutdown => {
                    encode(*key, v, &ControlledShutdownRequest::default())
                }
                ApiKey::OffsetForLeaderEpoch => {
                    let mut t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
                    t.topic = TopicName(StrBytes::from_static_str("t"));
                    t.partitions =
                        vec![offset_for_leader_epoch_request::OffsetForLeaderPartition::default()];
                    let mut r = OffsetForLeaderEpochRequest::default();
                    r.topics = vec![t];
                    encode(*key, v, &r)
                }
                ApiKey::FindCoordinator => {
                    let mut r = FindCoordinatorRequest::default();
                    r.key = StrBytes::from_static_str("group");
                    encode(*key, v, &r)
                }
                ApiKey::JoinGroup => {
                    let mut p = join_group_request::JoinGroupRequestProtocol::default();
                    p.name = StrBytes::from_static_str("range");
                    p.metadata = Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b't']);
                    let mut r = JoinGroupRequest::default();
                    r.group_id = GroupId(StrBytes::from_static_str("group"));
                    r.protocol_type = StrBytes::from_static_str("consumer");
                    r.protocols = vec![p];
                    encode(*key, v, &r)
                }
                ApiKey::SyncGroup => {
                    let mut a = sync_group_request::SyncGroupRequestAssignment::default();
                    a.member_id = StrBytes::from_static_str("m");
                    a.assignment = Bytes::from_static(&[0, 0]);
                    let mut r = SyncGroupRequest::default();
                    r.group_id = GroupId(StrBytes::from_static_str("group"));
                    r.assignments = vec![a];
                    encode(*key, v, &r)
                }
                ApiKey::Heartbeat => encode(*key, v, &HeartbeatRequest::default()),
                ApiKey::LeaveGroup => {
                    let mut r = LeaveGroupRequest::default();
                    if v >= 3 {
                        r.members = vec![leave_group_request::MemberIdentity::default()];
                    }
                    encode(*key, v, &r)
                }
                ApiKey::DescribeGroups => {
                    let mut r = DescribeGroupsRequest::default();
                    r.groups = vec![GroupId(StrBytes::from_static_str("group"))];
                    encode(*key, v, &r)
                }
                ApiKey::ListGroups => encode(*key, v, &ListGroupsRequest::default()),
                ApiKey::OffsetCommit => {
                    let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
                    p.committed_metadata = Some(StrBytes::from_static_str("meta"));
                    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
                    t.name = TopicName(StrBytes::from_static_str("t"));
                    t.partitions = vec![p];
                    let mut r = OffsetCommitRequest::default();
                    r.group_id = GroupId(StrBytes::from_static_str("group"));
                    r.topics = vec![t];
                    encode(*key, v, &r)
                }
                ApiKey::OffsetFetch => {
                    let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
                    t.name = TopicName(StrBytes::from_static_str("t"));
                    t.partition_indexes = vec![0, 1];
                    let mut r = OffsetFetchRequest::default();
                    r.group_id = GroupId(StrBytes::from_static_str("group"));
                    r.topics = Some(vec![t]);
                    encode(*key, v, &r)
                }
                ApiKey::InitProducerId => {
                    let mut r = InitProducerIdRequest::default();
                    r.transactional_id = None;
                    r.transaction_timeout_ms = 60_000;
                    r.producer_id = ProducerId(-1);
                    r.producer_epoch = -1;
                    encode(*key, v, &r)
                }
                ApiKey::WriteTxnMarkers => {
                    let mut t = write_txn_markers_request::WritableTxnMarkerTopic::default();
                    t.name = TopicName(StrBytes::from_static_str("t"));
                    t.partition_indexes = vec![0, 1];
                    let mut m = write_txn_markers_request::WritableTxnMarker::default();
                    m.producer_id = ProducerId(7);
                    m.producer_epoch = 1;
                    m.transaction_result = true;
                    m.coordinator_epoch = 3;
                    m.topics = vec![t];
                    let mut r = WriteTxnMarkersRequest::default();
                    r.markers = vec![m];
                    encode(*key, v, &r)
                }
                ApiKey::AddPartitionsToTxn => {
                    let mut t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
                    t.name = TopicName(StrBytes::from_static_str("t"));
                    t.partitions = vec![0];
                    let mut r = AddPartitionsToTxnRequest::default();
                    r.v3_and_below_transactional_id =
                        TransactionalId(StrBytes::from_static_str("tx"));
                    r.v3_and_below_producer_id = ProducerId(1);
                    r.v3_and_below_topics = vec![t];
                    encode(*key, v, &r)
                }
                ApiKey::AddOffsetsToTxn => {
                    let mut r = AddOffsetsToTxnRequest::default();
                    r.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
                    r.group_id = GroupId(StrBytes::from_static_str("group"));
                    encode(*key, v, &r)
                }
                ApiKey::EndTxn => {
                    let mut r = EndTxnRequest::default();
                    r.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
                    r.committed = true;
                    encode(*key, v, &r)
                }
                ApiKey::TxnOffsetCommit => {
                    let mut p =
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
                    p.committed_offset = 5;
                    let mut t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
                    t.name = TopicName(StrBytes::from_static_str("t"));
                    t.partitions = vec![p];
                    let mut r = TxnOffsetCommitRequest::default();
                    r.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
                    r.group_id = GroupId(StrBytes::from_static_str("group"));
                    r.topics = vec![t];
                    encode(*key, v, &r)
                }
                // Every advertised API must be fuzzed: a new one needs a frame here.
                other => panic!("no valid frame for advertised {other:?}"),
            };
            out.push(f);
        }
    }
    out
}

#[test]
fn every_valid_frame_decodes() {
    let frames = valid_frames();
    assert!(frames.len() > 50);
    for f in frames {
        let (key, version, _) = frame::peek_fixed(&f).unwrap();
        decode_like_handle(f).unwrap_or_else(|e| panic!("key {key} v{version}: {e}"));
    }
}

#[test]
fn huge_array_counts_fail_cleanly() {
    // Metadata v1 whose topic array claims i32::MAX entries, in a 14-byte frame.
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i16(1);
    b.put_i32(1);
    b.put_i16(-1);
    b.put_i32(i32::MAX);
    let f = frame::decode_header(b.freeze()).unwrap();
    let req = Req::from_frame(f, std::sync::Arc::from(""));
    assert!(req.decode::<MetadataRequest>().is_err());
    // The same through a flexible (compact) array: Metadata v9 is not served, but CreateTopics
    // v4 is not flexible either, so use UpdateMetadata v6 (flexible) with a huge compact count.
    let mut b = BytesMut::new();
    b.put_i16(6);
    b.put_i16(6);
    b.put_i32(1);
    b.put_i16(-1);
    b.put_u8(0); // header tagged fields
    b.put_i32(0); // controller id
    b.put_i32(0); // controller epoch
    b.put_i64(0); // broker epoch
    b.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // compact array length varint ≈ 2^32
    let f = frame::decode_header(b.freeze()).unwrap();
    let req = Req::from_frame(f, std::sync::Arc::from(""));
    assert!(req.decode::<UpdateMetadataRequest>().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_like_handle(Bytes::from(bytes));
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let frames = valid_frames();
        let mut f = frames[which.index(frames.len())].to_vec();
        for (i, v) in flips {
            let n = f.len();
            f[i.index(n)] = v;
        }
        let keep = cut.index(f.len() + 1);
        let _ = decode_like_handle(Bytes::from(f[..keep].to_vec()));
        let _ = decode_like_handle(Bytes::from(f));
    }
}
