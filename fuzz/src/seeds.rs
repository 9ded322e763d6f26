//! The seed corpora, generated rather than committed: for `request_path`, valid request frames
//! (no size prefix) of every API and version gregor serves (`gregor::protocol::versions::SUPPORTED`),
//! with bodies that name the broker's seed topic, group and id so that mutations start from
//! requests the handlers act on; for `batch_validator`, inputs of both of its modes for every
//! codec (see `batch`).
//!
//! `scripts/fuzz.sh` writes them by running the built fuzz target once with
//! `GREGOR_FUZZ_WRITE_SEEDS=<dir>` (see [`write_if_asked`]), so the seeds come from the same
//! build and no second, uninstrumented build of gregor is needed.

use std::path::Path;

use bytes::Bytes;
use gregor::protocol::batch::CompressionCodec;
use gregor::protocol::batch_builder::build_batch;
use gregor::protocol::versions::SUPPORTED;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};

use crate::batch::{self, RAW_MODE};
use crate::broker::{frame, BROKER_ID, SEED_GROUP, SEED_PARTITIONS, SEED_TOPIC};

/// Correlation id of every seed: even, so the Produce CRC fix-up applies (see `fixup`).
const CORRELATION_ID: i32 = 2;

fn topic(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn group() -> GroupId {
    GroupId(StrBytes::from_static_str(SEED_GROUP))
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A few records, compressed with `codec` the way Kafka's producer writes them.
pub fn records(codec: CompressionCodec) -> Result<Bytes, String> {
    let now = 1_700_000_000_000;
    let plain = build_batch(
        0,
        now,
        &[
            (Some(b"key-1".as_slice()), Some(b"value-1".as_slice())),
            (None, Some(b"value-2".as_slice())),
            (Some(b"key-3".as_slice()), None),
        ],
    );
    batch::recompress(&plain, codec)
}

/// A Produce frame to a seed partition (the broker's setup uses it too).
///
/// # Errors
/// If encoding fails (it does not for the supported versions).
pub fn produce_frame(partition: i32, acks: i16, version: i16) -> Result<Bytes, String> {
    produce_with(partition, acks, version, records(CompressionCodec::None)?)
}

fn produce_with(partition: i32, acks: i16, version: i16, recs: Bytes) -> Result<Bytes, String> {
    let mut p = produce_request::PartitionProduceData::default();
    p.index = partition;
    p.records = Some(recs);
    let mut t = produce_request::TopicProduceData::default();
    t.name = topic(SEED_TOPIC);
    t.partition_data = vec![p];
    let mut r = ProduceRequest::default();
    r.acks = acks;
    r.timeout_ms = 50;
    r.topic_data = vec![t];
    frame(ApiKey::Produce as i16, version, CORRELATION_ID, &r)
}

fn enc<R: Encodable + HeaderVersion>(key: ApiKey, v: i16, body: &R) -> Result<Bytes, String> {
    frame(key as i16, v, CORRELATION_ID, body).map_err(|e| format!("seed {key:?} v{v}: {e}"))
}

fn fetch(v: i16, replica: i32) -> FetchRequest {
    let mut r = FetchRequest::default();
    r.replica_id = BrokerId(replica);
    r.max_wait_ms = 0;
    r.min_bytes = 1;
    r.max_bytes = 1 << 20;
    r.topics = vec![fetch_request::FetchTopic::default()
        .with_topic(topic(SEED_TOPIC))
        .with_partitions(
            (0..SEED_PARTITIONS)
                .map(|p| {
                    fetch_request::FetchPartition::default()
                        .with_partition(p)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 16)
                })
                .collect(),
        )];
    if v >= 7 {
        // A new incremental session (KIP-227): session id 0, epoch 0.
        r.session_epoch = 0;
    }
    r
}

fn leader_and_isr(v: i16) -> LeaderAndIsrRequest {
    // A partition of another topic, so that running the seed does not move the seed topic.
    let state = leader_and_isr_request::LeaderAndIsrPartitionState::default()
        .with_topic_name(topic("lai"))
        .with_partition_index(0)
        .with_controller_epoch(1)
        .with_leader(BrokerId(BROKER_ID))
        .with_leader_epoch(0)
        .with_isr(vec![BrokerId(BROKER_ID)])
        .with_replicas(vec![BrokerId(BROKER_ID)])
        .with_is_new(true);
    let mut r = LeaderAndIsrRequest::default()
        .with_controller_id(BrokerId(BROKER_ID))
        .with_controller_epoch(1)
        .with_broker_epoch(-1)
        .with_live_leaders(vec![
            leader_and_isr_request::LeaderAndIsrLiveLeader::default()
                .with_broker_id(BrokerId(BROKER_ID))
                .with_host_name(s("127.0.0.1"))
                .with_port(9092),
        ]);
    if v >= 2 {
        r.topic_states = vec![leader_and_isr_request::LeaderAndIsrTopicState::default()
            .with_topic_name(topic("lai"))
            .with_partition_states(vec![state])];
    } else {
        r.ungrouped_partition_states = vec![state];
    }
    r
}

fn update_metadata(v: i16) -> UpdateMetadataRequest {
    let state = update_metadata_request::UpdateMetadataPartitionState::default()
        .with_topic_name(topic("lai"))
        .with_partition_index(0)
        .with_controller_epoch(0)
        .with_leader(BrokerId(BROKER_ID))
        .with_isr(vec![BrokerId(BROKER_ID)])
        .with_replicas(vec![BrokerId(BROKER_ID)]);
    let broker = update_metadata_request::UpdateMetadataBroker::default()
        .with_id(BrokerId(BROKER_ID))
        .with_endpoints(vec![
            update_metadata_request::UpdateMetadataEndpoint::default()
                .with_host(s("127.0.0.1"))
                .with_port(9092)
                .with_listener(s("PLAINTEXT"))
                .with_security_protocol(0),
        ]);
    // Controller epoch 0: older than the broker's controller, so the seed itself is fenced
    // (STALE_CONTROLLER_EPOCH) and mutations find the accepted path by raising it.
    let mut r = UpdateMetadataRequest::default()
        .with_controller_id(BrokerId(BROKER_ID))
        .with_controller_epoch(0)
        .with_broker_epoch(-1)
        .with_live_brokers(vec![broker]);
    if v >= 5 {
        r.topic_states = vec![update_metadata_request::UpdateMetadataTopicState::default()
            .with_topic_name(topic("lai"))
            .with_partition_states(vec![state])];
    } else {
        r.ungrouped_partition_states = vec![state];
    }
    r
}

fn stop_replica(v: i16) -> StopReplicaRequest {
    let mut r = StopReplicaRequest::default()
        .with_controller_id(BrokerId(BROKER_ID))
        .with_controller_epoch(1)
        .with_broker_epoch(-1);
    match v {
        0 => {
            r.ungrouped_partitions = vec![stop_replica_request::StopReplicaPartitionV0::default()
                .with_topic_name(topic("lai"))
                .with_partition_index(0)]
        }
        1 | 2 => {
            r.topics = vec![stop_replica_request::StopReplicaTopicV1::default()
                .with_name(topic("lai"))
                .with_partition_indexes(vec![0])]
        }
        _ => {
            r.topic_states = vec![stop_replica_request::StopReplicaTopicState::default()
                .with_topic_name(topic("lai"))
                .with_partition_states(vec![
                    stop_replica_request::StopReplicaPartitionState::default()
                        .with_partition_index(0)
                        .with_leader_epoch(1)
                        .with_delete_partition(true),
                ])]
        }
    }
    r
}

fn create_topics(validate_only: bool) -> CreateTopicsRequest {
    let t = create_topics_request::CreatableTopic::default()
        .with_name(topic("created"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
            .with_name(s("cleanup.policy"))
            .with_value(Some(s("delete")))]);
    CreateTopicsRequest::default()
        .with_topics(vec![t])
        .with_timeout_ms(50)
        .with_validate_only(validate_only)
}

fn offset_commit(v: i16) -> OffsetCommitRequest {
    let p = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(1)
        .with_committed_metadata(Some(s("meta")));
    let mut r = OffsetCommitRequest::default()
        .with_group_id(group())
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic(SEED_TOPIC))
                .with_partitions(vec![p]),
        ]);
    // v0 commits to ZooKeeper; later versions as a simple (generation -1) commit.
    if v >= 1 {
        r.generation_id_or_member_epoch = -1;
    }
    r
}

fn join_group(member: &str) -> JoinGroupRequest {
    let meta = Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 4, b'f', b'u', b'z', b'z', 0, 0, 0, 0]);
    JoinGroupRequest::default()
        .with_group_id(group())
        .with_session_timeout_ms(6000)
        .with_rebalance_timeout_ms(6000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(meta)])
}

/// Seed frames for one API at one version.
fn frames_for(key: ApiKey, v: i16) -> Result<Vec<(String, Bytes)>, String> {
    let mut out: Vec<(&str, Bytes)> = Vec::new();
    match key {
        ApiKey::ApiVersions => {
            let r = ApiVersionsRequest::default()
                .with_client_software_name(s("gregor-fuzz"))
                .with_client_software_version(s("1.0"));
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::Metadata => {
            let mut r = MetadataRequest::default();
            r.topics = Some(vec![metadata_request::MetadataRequestTopic::default()
                .with_name(Some(topic(SEED_TOPIC)))]);
            out.push(("topic", enc(key, v, &r)?));
            r.topics = if v == 0 { Some(vec![]) } else { None };
            out.push(("all", enc(key, v, &r)?));
        }
        ApiKey::Produce => {
            for (label, acks) in [("acks1", 1), ("acksall", -1), ("acks0", 0)] {
                out.push((
                    label,
                    produce_with(1, acks, v, records(CompressionCodec::None)?)?,
                ));
            }
            let mut codecs = vec![
                ("gzip", CompressionCodec::Gzip),
                ("snappy", CompressionCodec::Snappy),
                ("lz4", CompressionCodec::Lz4),
            ];
            if v >= 7 {
                codecs.push(("zstd", CompressionCodec::Zstd));
            }
            for (label, codec) in codecs {
                out.push((label, produce_with(0, 1, v, records(codec)?)?));
            }
        }
        ApiKey::Fetch => {
            out.push(("consumer", enc(key, v, &fetch(v, -1))?));
            out.push(("follower", enc(key, v, &fetch(v, BROKER_ID))?));
            let committed = fetch(v, -1).with_isolation_level(1);
            out.push(("read-committed", enc(key, v, &committed)?));
        }
        ApiKey::ListOffsets => {
            let mut r = ListOffsetsRequest::default();
            r.replica_id = BrokerId(-1);
            r.isolation_level = i8::from(v >= 2);
            let parts = [-1i64, -2, 1_700_000_000_000]
                .iter()
                .enumerate()
                .map(|(i, ts)| {
                    let mut p = list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(i as i32 % SEED_PARTITIONS)
                        .with_timestamp(*ts);
                    if v == 0 {
                        p.max_num_offsets = 1;
                    }
                    p
                })
                .collect();
            r.topics = vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic(SEED_TOPIC))
                .with_partitions(parts)];
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::LeaderAndIsr => out.push(("", enc(key, v, &leader_and_isr(v))?)),
        ApiKey::UpdateMetadata => out.push(("", enc(key, v, &update_metadata(v))?)),
        ApiKey::StopReplica => out.push(("", enc(key, v, &stop_replica(v))?)),
        ApiKey::ControlledShutdown => {
            // Another broker's id: this one's own would ask its controller to move leaders.
            let r = ControlledShutdownRequest::default()
                .with_broker_id(BrokerId(7))
                .with_broker_epoch(-1);
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::CreateTopics => {
            out.push(("create", enc(key, v, &create_topics(false))?));
            if v >= 1 {
                out.push(("validate", enc(key, v, &create_topics(true))?));
            }
        }
        ApiKey::DeleteTopics => {
            let r = DeleteTopicsRequest::default()
                .with_topic_names(vec![topic("created")])
                .with_timeout_ms(50);
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::DescribeConfigs => {
            let resources = vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(SEED_TOPIC))
                    .with_configuration_keys(None),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s(&BROKER_ID.to_string()))
                    .with_configuration_keys(Some(vec![s("log.retention.ms")])),
            ];
            let r = DescribeConfigsRequest::default()
                .with_resources(resources)
                .with_include_synonyms(v >= 1);
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::OffsetForLeaderEpoch => {
            let mut r = OffsetForLeaderEpochRequest::default();
            if v >= 3 {
                r.replica_id = BrokerId(-1);
            }
            r.topics = vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic(SEED_TOPIC))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(-1)
                            .with_leader_epoch(0),
                    ]),
            ];
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::FindCoordinator => {
            let r = FindCoordinatorRequest::default().with_key(s(SEED_GROUP));
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::JoinGroup => {
            out.push(("new", enc(key, v, &join_group(""))?));
            out.push(("member", enc(key, v, &join_group("fuzz-member"))?));
        }
        ApiKey::SyncGroup => {
            let r = SyncGroupRequest::default()
                .with_group_id(group())
                .with_generation_id(1)
                .with_member_id(s("fuzz-member"))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s("fuzz-member"))
                        .with_assignment(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
                ]);
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::Heartbeat => {
            let r = HeartbeatRequest::default()
                .with_group_id(group())
                .with_generation_id(1)
                .with_member_id(s("fuzz-member"));
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::LeaveGroup => {
            let mut r = LeaveGroupRequest::default().with_group_id(group());
            if v >= 3 {
                r.members =
                    vec![leave_group_request::MemberIdentity::default()
                        .with_member_id(s("fuzz-member"))];
            } else {
                r.member_id = s("fuzz-member");
            }
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::DescribeGroups => {
            let r = DescribeGroupsRequest::default().with_groups(vec![group()]);
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::ListGroups => out.push(("", enc(key, v, &ListGroupsRequest::default())?)),
        ApiKey::OffsetCommit => out.push(("", enc(key, v, &offset_commit(v))?)),
        ApiKey::OffsetFetch => {
            let mut r = OffsetFetchRequest::default().with_group_id(group());
            r.topics = Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic(SEED_TOPIC))
                    .with_partition_indexes(vec![0, 1]),
            ]);
            out.push(("topics", enc(key, v, &r)?));
            if v >= 2 {
                r.topics = None;
                out.push(("all", enc(key, v, &r)?));
            }
            if v >= 7 {
                r.require_stable = true;
                out.push(("stable", enc(key, v, &r)?));
            }
        }
        ApiKey::InitProducerId => {
            let r = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            out.push(("", enc(key, v, &r)?));
            let txn = r.with_transactional_id(Some(TransactionalId(s("fuzz-txn"))));
            out.push(("transactional", enc(key, v, &txn)?));
        }
        ApiKey::WriteTxnMarkers => {
            for commit in [true, false] {
                let m = write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(0))
                    .with_producer_epoch(0)
                    .with_transaction_result(commit)
                    .with_coordinator_epoch(0)
                    .with_topics(vec![
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(topic(SEED_TOPIC))
                            .with_partition_indexes(vec![0, 1]),
                    ]);
                let r = WriteTxnMarkersRequest::default().with_markers(vec![m]);
                out.push((if commit { "commit" } else { "abort" }, enc(key, v, &r)?));
            }
        }
        ApiKey::AddPartitionsToTxn => {
            let r = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s("fuzz-txn")))
                .with_v3_and_below_producer_id(ProducerId(0))
                .with_v3_and_below_producer_epoch(0)
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(topic(SEED_TOPIC))
                        .with_partitions(vec![0, 1]),
                ]);
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::AddOffsetsToTxn => {
            let r = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("fuzz-txn")))
                .with_producer_id(ProducerId(0))
                .with_group_id(group());
            out.push(("", enc(key, v, &r)?));
        }
        ApiKey::EndTxn => {
            for commit in [true, false] {
                let r = EndTxnRequest::default()
                    .with_transactional_id(TransactionalId(s("fuzz-txn")))
                    .with_producer_id(ProducerId(0))
                    .with_committed(commit);
                out.push((if commit { "commit" } else { "abort" }, enc(key, v, &r)?));
            }
        }
        ApiKey::TxnOffsetCommit => {
            let r = TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s("fuzz-txn")))
                .with_group_id(group())
                .with_producer_id(ProducerId(0))
                .with_generation_id(-1)
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(topic(SEED_TOPIC))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]);
            out.push(("", enc(key, v, &r)?));
        }
        other => return Err(format!("no seed frame for advertised {other:?}: add one")),
    }
    Ok(out
        .into_iter()
        .map(|(label, f)| {
            let sep = if label.is_empty() { "" } else { "-" };
            (format!("{key:?}-v{v}{sep}{label}"), f)
        })
        .collect())
}

/// Every request seed, named `<Api>-v<version>[-<variant>]`.
///
/// # Errors
/// An API in `SUPPORTED` without a seed here, or a body that does not encode.
pub fn request_seeds() -> Result<Vec<(String, Bytes)>, String> {
    let mut out = Vec::new();
    for (key, min, max) in SUPPORTED {
        for v in *min..=*max {
            out.extend(frames_for(*key, v)?);
        }
    }
    Ok(out)
}

/// Every batch-validator seed: each codec in both modes, under a few topic configs.
///
/// # Errors
/// If a codec fails on its own output (it does not).
pub fn batch_seeds() -> Result<Vec<(String, Bytes)>, String> {
    let codecs = [
        ("none", CompressionCodec::None),
        ("gzip", CompressionCodec::Gzip),
        ("snappy", CompressionCodec::Snappy),
        ("lz4", CompressionCodec::Lz4),
        ("zstd", CompressionCodec::Zstd),
    ];
    let mut out = Vec::new();
    for (name, codec) in codecs {
        let plain = records(CompressionCodec::None)?;
        let compressed = records(codec)?;
        // Topic compression.type: 0 = producer (stored as sent), 2 = gzip (rebuilt unless gzip).
        for config in [0u8, 2] {
            out.push((
                format!("structured-{name}-cfg{config}"),
                batch::structured_seed(config, codec, &plain),
            ));
            out.push((
                format!("raw-{name}-cfg{config}"),
                Bytes::from([&[config | RAW_MODE][..], &compressed[..]].concat()),
            ));
        }
    }
    Ok(out)
}

/// If `GREGOR_FUZZ_WRITE_SEEDS=<dir>` is set, writes `target`'s seeds there and exits: how
/// `scripts/fuzz.sh` fills `fuzz/corpus/<target>` from the built target.
pub fn write_if_asked(target: &str) {
    let Some(dir) = std::env::var_os("GREGOR_FUZZ_WRITE_SEEDS") else {
        return;
    };
    let seeds = match target {
        "request_path" => request_seeds(),
        "batch_validator" => batch_seeds(),
        other => Err(format!("no seeds for an unknown target {other:?}")),
    };
    let result = seeds.and_then(|seeds| {
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (name, bytes) in &seeds {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(seeds.len())
    });
    match result {
        Ok(n) => {
            eprintln!(
                "gregor-fuzz: wrote {n} {target} seeds to {}",
                Path::new(&dir).display()
            );
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("gregor-fuzz: cannot write the {target} seeds: {e}");
            std::process::exit(1);
        }
    }
}
