//! Mutated requests through every handler of a live broker: valid frames of each served API,
//! changed at random (bytes flipped or replaced, cut, extended, spliced), each answered or
//! closed within a bounded time; afterwards the broker still serves and every message it
//! acknowledged before is read back unchanged. The controller's own requests are among them:
//! the broker runs a control plane, so on the client listener they must be refused, and the
//! test checks afterwards that the broker still knows itself and leads its partitions. The seed
//! is printed so a failure reproduces (`HOSTILE_SEED=<n>`); `HOSTILE_FRAMES` sets the count.

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use integration_tests::ClusterOptions;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clients;
use crate::raw::{frame, metadata_ok, send_raw, Outcome};
use kafka_protocol::protocol::Decodable;

const TOPIC: &str = "hostile";

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// One valid frame per served API (at an old and a new version where they differ).
fn corpus() -> anyhow::Result<Vec<Vec<u8>>> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let batch = gregor::protocol::batch::build_batch(
        0,
        1_700_000_000_000,
        &[
            (Some(b"k".as_slice()), Some(b"fuzzed".as_slice())),
            (None, Some(b"second".as_slice())),
        ],
    )
    .freeze();
    let mut out = Vec::new();
    let mut produce = ProduceRequest::default();
    produce.acks = 1;
    produce.timeout_ms = 1000;
    let mut pd = PartitionProduceData::default();
    pd.index = 1;
    pd.records = Some(batch);
    let mut td = TopicProduceData::default();
    td.name = name(TOPIC);
    td.partition_data = vec![pd];
    produce.topic_data = vec![td];
    out.push(frame(&produce, 3, 1).context("corpus: produce v3")?);
    out.push(frame(&produce, 8, 1).context("corpus: produce v8")?);

    let mut fetch = FetchRequest::default();
    fetch.replica_id = BrokerId(-1);
    fetch.max_wait_ms = 10;
    fetch.min_bytes = 1;
    fetch.max_bytes = 1 << 20;
    let mut fp = FetchPartition::default();
    fp.partition = 0;
    fp.partition_max_bytes = 1 << 20;
    fp.current_leader_epoch = -1;
    let mut ft = FetchTopic::default();
    ft.topic = name(TOPIC);
    ft.partitions = vec![fp];
    fetch.topics = vec![ft];
    out.push(frame(&fetch, 4, 2).context("corpus: fetch v4")?);
    out.push(frame(&fetch, 11, 2).context("corpus: fetch v11")?);
    fetch.isolation_level = 1;
    out.push(frame(&fetch, 11, 2).context("corpus: read_committed fetch v11")?);

    let mut lo = ListOffsetsRequest::default();
    lo.replica_id = BrokerId(-1);
    let mut lt = list_offsets_request::ListOffsetsTopic::default();
    lt.name = name(TOPIC);
    let mut lp = list_offsets_request::ListOffsetsPartition::default();
    lp.timestamp = -1;
    lt.partitions = vec![lp];
    lo.topics = vec![lt];
    out.push(frame(&lo, 1, 3).context("corpus: lo v1")?);
    out.push(frame(&lo, 5, 3).context("corpus: lo v5")?);

    let mut md = MetadataRequest::default();
    let mut mt = metadata_request::MetadataRequestTopic::default();
    mt.name = Some(name(TOPIC));
    md.topics = Some(vec![mt]);
    out.push(frame(&md, 1, 4).context("corpus: md v1")?);
    out.push(frame(&md, 8, 4).context("corpus: md v8")?);
    out.push(
        frame(&ApiVersionsRequest::default(), 0, 5)
            .context("corpus: ApiVersionsRequest::default() v0")?,
    );
    out.push(
        frame(&ApiVersionsRequest::default(), 3, 5)
            .context("corpus: ApiVersionsRequest::default() v3")?,
    );

    let mut ct = CreateTopicsRequest::default();
    let mut c = create_topics_request::CreatableTopic::default();
    c.name = name("fuzz-created");
    c.num_partitions = 2;
    c.replication_factor = 1;
    ct.topics = vec![c];
    ct.validate_only = true;
    ct.timeout_ms = 1000;
    out.push(frame(&ct, 4, 6).context("corpus: ct v4")?);
    let mut dt = DeleteTopicsRequest::default();
    dt.topic_names = vec![name("fuzz-missing")];
    dt.timeout_ms = 1000;
    out.push(frame(&dt, 3, 7).context("corpus: dt v3")?);
    let mut dc = DescribeConfigsRequest::default();
    let mut r = describe_configs_request::DescribeConfigsResource::default();
    r.resource_type = 2;
    r.resource_name = StrBytes::from_static_str(TOPIC);
    dc.resources = vec![r];
    out.push(frame(&dc, 2, 8).context("corpus: dc v2")?);

    let mut ofe = OffsetForLeaderEpochRequest::default();
    let mut ot = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
    ot.topic = name(TOPIC);
    let mut op = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
    op.leader_epoch = 0;
    op.current_leader_epoch = -1;
    ot.partitions = vec![op];
    ofe.topics = vec![ot];
    out.push(frame(&ofe, 3, 9).context("corpus: ofe v3")?);

    // The controller's requests too: the broker runs a control plane (KIP-291), so on this,
    // the client listener, they are refused whatever a mutation makes of their epochs (without
    // it, a run saw UpdateMetadata at epoch 33554432 empty the broker list and fence the real
    // controller, as on an unauthenticated Kafka broker).
    let mut lai = LeaderAndIsrRequest::default();
    lai.controller_id = BrokerId(0);
    lai.controller_epoch = 2;
    let mut ls = leader_and_isr_request::LeaderAndIsrPartitionState::default();
    ls.partition_index = 0;
    ls.leader = BrokerId(0);
    ls.leader_epoch = 9;
    ls.isr = vec![BrokerId(0)];
    ls.replicas = vec![BrokerId(0)];
    let mut lt = leader_and_isr_request::LeaderAndIsrTopicState::default();
    lt.topic_name = name(TOPIC);
    lt.partition_states = vec![ls];
    lai.topic_states = vec![lt];
    out.push(frame(&lai, 4, 10).context("corpus: lai v4")?);
    let mut um = UpdateMetadataRequest::default();
    um.controller_id = BrokerId(0);
    um.controller_epoch = 2;
    out.push(frame(&um, 6, 11).context("corpus: um v6")?);
    let mut sr = StopReplicaRequest::default();
    sr.controller_id = BrokerId(0);
    sr.controller_epoch = 2;
    let mut st = stop_replica_request::StopReplicaTopicState::default();
    st.topic_name = name(TOPIC);
    let mut sp = stop_replica_request::StopReplicaPartitionState::default();
    sp.partition_index = 0;
    sp.leader_epoch = 99;
    sp.delete_partition = true;
    st.partition_states = vec![sp];
    sr.topic_states = vec![st];
    out.push(frame(&sr, 3, 12).context("corpus: sr v3")?);
    let mut cs = ControlledShutdownRequest::default();
    cs.broker_id = BrokerId(77);
    cs.broker_epoch = 0;
    out.push(frame(&cs, 3, 13).context("corpus: cs v3")?);

    let group = GroupId(StrBytes::from_static_str("fuzz-group"));
    let mut fc = FindCoordinatorRequest::default();
    fc.key = StrBytes::from_static_str("fuzz-group");
    out.push(frame(&fc, 2, 14).context("corpus: fc v2")?);
    let mut jg = JoinGroupRequest::default();
    jg.group_id = group.clone();
    jg.session_timeout_ms = 10_000;
    jg.rebalance_timeout_ms = 10_000;
    jg.protocol_type = StrBytes::from_static_str("consumer");
    let mut proto = join_group_request::JoinGroupRequestProtocol::default();
    proto.name = StrBytes::from_static_str("range");
    jg.protocols = vec![proto];
    out.push(frame(&jg, 5, 15).context("corpus: jg v5")?);
    let mut sg = SyncGroupRequest::default();
    sg.group_id = group.clone();
    sg.generation_id = 1;
    out.push(frame(&sg, 3, 16).context("corpus: sg v3")?);
    let mut hb = HeartbeatRequest::default();
    hb.group_id = group.clone();
    out.push(frame(&hb, 3, 17).context("corpus: hb v3")?);
    let mut lg = LeaveGroupRequest::default();
    lg.group_id = group.clone();
    out.push(frame(&lg, 3, 18).context("corpus: lg v3")?);
    let mut dg = DescribeGroupsRequest::default();
    dg.groups = vec![group.clone()];
    out.push(frame(&dg, 4, 19).context("corpus: dg v4")?);
    out.push(
        frame(&ListGroupsRequest::default(), 3, 20)
            .context("corpus: ListGroupsRequest::default() v3")?,
    );
    let mut oc = OffsetCommitRequest::default();
    oc.group_id = group.clone();
    oc.generation_id_or_member_epoch = -1;
    let mut oct = offset_commit_request::OffsetCommitRequestTopic::default();
    oct.name = name(TOPIC);
    let mut ocp = offset_commit_request::OffsetCommitRequestPartition::default();
    ocp.committed_offset = 3;
    oct.partitions = vec![ocp];
    oc.topics = vec![oct];
    out.push(frame(&oc, 7, 21).context("corpus: oc v7")?);
    let mut of = OffsetFetchRequest::default();
    of.group_id = group;
    out.push(frame(&of, 5, 22).context("corpus: of v5")?);
    let mut ipi = InitProducerIdRequest::default();
    ipi.transactional_id = None;
    ipi.producer_id = ProducerId(-1);
    ipi.producer_epoch = -1;
    out.push(frame(&ipi, 0, 23).context("corpus: ipi v0")?);
    out.push(frame(&ipi, 4, 23).context("corpus: ipi v4")?);
    // An idempotent batch (producer 0, epoch 0, sequence 0): mutations reach the producer
    // state's sequence and epoch checks.
    let plain = gregor::protocol::batch::build_batch(
        1,
        1_700_000_000_000,
        &[(None, Some(b"idem".as_slice()))],
    );
    let h = gregor::protocol::batch::BatchHeader::parse(&plain)?;
    let fields = gregor::protocol::batch_builder::BatchFields {
        producer_id: 0,
        producer_epoch: 0,
        base_sequence: 0,
        ..gregor::protocol::batch_builder::BatchFields::of(&h)
    };
    let idem = gregor::protocol::batch_builder::encode_batch(
        &fields,
        &plain[gregor::protocol::batch::HEADER_LEN..],
    )
    .freeze();
    let mut pd = produce_request::PartitionProduceData::default();
    pd.index = 1;
    pd.records = Some(idem);
    let mut td = produce_request::TopicProduceData::default();
    td.name = name(TOPIC);
    td.partition_data = vec![pd];
    let mut idem_produce = ProduceRequest::default();
    idem_produce.acks = -1;
    idem_produce.timeout_ms = 1000;
    idem_produce.topic_data = vec![td];
    out.push(frame(&idem_produce, 8, 24).context("corpus: idempotent produce v8")?);
    // The same batch as a transaction's (bit 4) from a transactional producer, and the
    // markers that would end it: mutations reach the transaction checks and the marker path.
    let txn_fields = gregor::protocol::batch_builder::BatchFields {
        attributes: 0x10,
        ..fields
    };
    let txn_batch = gregor::protocol::batch_builder::encode_batch(
        &txn_fields,
        &plain[gregor::protocol::batch::HEADER_LEN..],
    )
    .freeze();
    let mut txn_produce = idem_produce.clone();
    txn_produce.transactional_id = Some(TransactionalId(StrBytes::from_static_str("hostile")));
    txn_produce.topic_data[0].partition_data[0].records = Some(txn_batch);
    out.push(frame(&txn_produce, 8, 25).context("corpus: transactional produce v8")?);
    let mut mt = write_txn_markers_request::WritableTxnMarkerTopic::default();
    mt.name = name(TOPIC);
    mt.partition_indexes = vec![1];
    let mut marker = write_txn_markers_request::WritableTxnMarker::default();
    marker.producer_id = ProducerId(0);
    marker.producer_epoch = 0;
    marker.coordinator_epoch = 0;
    marker.topics = vec![mt];
    let mut markers = WriteTxnMarkersRequest::default();
    markers.markers = vec![marker];
    out.push(frame(&markers, 1, 26).context("corpus: write txn markers v1")?);
    // The transactional producer's requests, so mutations reach the coordinator's state
    // machine and TxnOffsetCommit's pending offsets.
    let txn_id = TransactionalId(StrBytes::from_static_str("hostile"));
    let mut tipi = ipi.clone();
    tipi.transactional_id = Some(txn_id.clone());
    tipi.transaction_timeout_ms = 60_000;
    out.push(frame(&tipi, 4, 27).context("corpus: transactional ipi v4")?);
    let mut apt = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
    apt.name = name(TOPIC);
    apt.partitions = vec![0, 1];
    let mut ap = AddPartitionsToTxnRequest::default();
    ap.v3_and_below_transactional_id = txn_id.clone();
    ap.v3_and_below_producer_id = ProducerId(0);
    ap.v3_and_below_topics = vec![apt];
    out.push(frame(&ap, 3, 28).context("corpus: add partitions v3")?);
    let mut ao = AddOffsetsToTxnRequest::default();
    ao.transactional_id = txn_id.clone();
    ao.group_id = GroupId(StrBytes::from_static_str("hostile-group"));
    out.push(frame(&ao, 3, 29).context("corpus: add offsets v3")?);
    let mut tcp = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
    tcp.committed_offset = 1;
    let mut tct = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
    tct.name = name(TOPIC);
    tct.partitions = vec![tcp];
    let mut tc = TxnOffsetCommitRequest::default();
    tc.transactional_id = txn_id.clone();
    tc.group_id = GroupId(StrBytes::from_static_str("hostile-group"));
    tc.generation_id = -1;
    tc.topics = vec![tct];
    out.push(frame(&tc, 3, 30).context("corpus: txn offset commit v3")?);
    let mut et = EndTxnRequest::default();
    et.transactional_id = txn_id;
    et.committed = true;
    out.push(frame(&et, 3, 31).context("corpus: end txn v3")?);
    Ok(out)
}

/// One to four random changes; the length prefix is kept consistent most of the time so the
/// body reaches the handler.
fn mutate(rng: &mut rand::rngs::StdRng, frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = f.len();
        // Bytes 4..14 are the request header's key, version and correlation id: change them
        // rarely, so most frames reach the handler of their API at a served version.
        let at = if rng.gen_bool(0.1) {
            rng.gen_range(4..len.max(5))
        } else {
            rng.gen_range(14.min(len - 1)..len)
        };
        match rng.gen_range(0..6) {
            0 => f[at] ^= 1 << rng.gen_range(0..8),
            1 => f[at] = [0x00, 0xff, 0x7f, 0x80][rng.gen_range(0..4)],
            2 => f.truncate(at.max(5)),
            3 => {
                let extra: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect();
                f.splice(at..at, extra);
            }
            4 => {
                // Overwrite four bytes with a large or negative count/length.
                let v = [i32::MAX, -1, 0x7fff, 1 << 24][rng.gen_range(0..4)];
                for (i, b) in v.to_be_bytes().iter().enumerate() {
                    if let Some(x) = f.get_mut(at + i) {
                        *x = *b;
                    }
                }
            }
            _ => {
                let from = rng.gen_range(4..len);
                let n = rng.gen_range(1..=16).min(len - from);
                let chunk = f[from..from + n].to_vec();
                f.splice(at..at, chunk);
            }
        }
    }
    if !rng.gen_bool(0.05) && f.len() >= 4 {
        let body = (f.len() - 4) as i32;
        f[..4].copy_from_slice(&body.to_be_bytes());
    }
    f
}

/// Sends `frame` and waits for an answer or a close; a silent broker past `limit` is a hang.
/// Returns whether the connection is still usable.
async fn exchange(stream: &mut TcpStream, frame: &[u8], limit: Duration) -> anyhow::Result<bool> {
    if stream.write_all(frame).await.is_err() {
        return Ok(false);
    }
    let read = async {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).await.is_err() {
            return Ok::<bool, anyhow::Error>(false);
        }
        let n = i32::from_be_bytes(size);
        ensure!((0..64 << 20).contains(&n), "response size {n}");
        let mut body = vec![0u8; n as usize];
        Ok(stream.read_exact(&mut body).await.is_ok())
    };
    // A frame whose length prefix promises more than was sent leaves the broker waiting for
    // the rest, which is correct and not a hang: give it a moment, then drop the connection.
    let short = frame.len() < 4
        || i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize != frame.len() - 4;
    let wait = if short {
        Duration::from_millis(200)
    } else {
        limit
    };
    match tokio::time::timeout(wait, read).await {
        Ok(r) => r,
        Err(_) if short => Ok(false),
        Err(_) => bail!(
            "no answer and no close within {limit:?} for a {}-byte frame",
            frame.len()
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutated_requests_to_every_handler_lose_nothing_acknowledged() -> anyhow::Result<()> {
    let frames: usize = std::env::var("HOSTILE_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seed: u64 = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("hostile: seed {seed}, {frames} frames (HOSTILE_SEED={seed} reproduces)");
    let cluster = clients::start_cluster(
        ClusterOptions::new(1)
            .with_control_plane()
            .with_override("connections.max.idle.ms", 5_000),
    )
    .await?;
    let boot = cluster.bootstrap();
    let addr = cluster.broker_addr(0);
    clients::create_topic(&boot, TOPIC, 3, 1).await?;
    let producer = clients::producer(&boot, "1")?;
    let acked = clients::produce_keyed(&producer, TOPIC, 300).await?;

    let corpus = corpus()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut stream = TcpStream::connect(addr).await?;
    let (mut answered, mut closed) = (0usize, 0usize);
    for i in 0..frames {
        let base = &corpus[rng.gen_range(0..corpus.len())];
        let f = mutate(&mut rng, base);
        let open = exchange(&mut stream, &f, Duration::from_secs(15))
            .await
            .with_context(|| format!("frame {i} (seed {seed})"))?;
        if open {
            answered += 1;
        } else {
            closed += 1;
            stream = TcpStream::connect(addr).await.context("reconnect")?;
        }
        ensure!(
            cluster.is_running(0),
            "broker exited at frame {i}: {}",
            cluster.log_tail(0, 40)
        );
    }
    eprintln!("hostile: {answered} answered, {closed} closed the connection");
    metadata_ok(addr).await?;
    // No forged controller request took: the broker still knows itself and leads all three.
    let mut req = MetadataRequest::default();
    let mut t = metadata_request::MetadataRequestTopic::default();
    t.name = Some(name(TOPIC));
    req.topics = Some(vec![t]);
    let Outcome::Response(body) =
        send_raw(addr, &frame(&req, 4, 99)?, Duration::from_secs(10)).await?
    else {
        bail!("Metadata after the run: connection closed")
    };
    let mut b = bytes::Bytes::from(body);
    let _ = ResponseHeader::decode(&mut b, 0)?;
    let md = MetadataResponse::decode(&mut b, 4)?;
    ensure!(
        md.brokers.len() == 1,
        "brokers after the run: {:?}",
        md.brokers
    );
    let parts = md
        .topics
        .first()
        .map(|t| t.partitions.clone())
        .unwrap_or_default();
    ensure!(
        parts.len() == 3
            && parts
                .iter()
                .all(|p| p.leader_id.0 == 0 && p.error_code == 0),
        "partitions after the run: {parts:?}"
    );
    // Everything acknowledged before is still where it was acknowledged.
    let read = clients::consume_all(&boot, TOPIC, 3, Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("{e:#}\nbroker log:\n{}", cluster.log_tail(0, 80)))?;
    for (p, offset, i) in &acked {
        let found = read
            .get(p)
            .and_then(|v| v.iter().find(|(o, _, _)| o == offset));
        let want = (format!("key-{i}"), format!("value-{i}"));
        ensure!(
            found.is_some_and(|(_, k, v)| (k, v) == (&want.0, &want.1)),
            "message {i} at {p}/{offset} is gone or changed: {found:?}"
        );
    }
    // And the broker still takes writes.
    clients::produce_range(&producer, TOPIC, 300..310).await?;
    Ok(())
}
