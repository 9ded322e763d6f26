//! Bad input never takes the broker down: each malformed request gets a Kafka error code or a
//! closed connection, within a bounded time, and other clients keep being served.

use std::time::Duration;

use anyhow::{bail, ensure};
use bytes::Bytes;
use gregor::protocol::batch::build_batch;
use integration_tests::ClusterOptions;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::ProduceResponse;
use kafka_protocol::messages::{ApiVersionsRequest, ProduceRequest, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::clients;
use crate::raw::{frame, metadata_ok, send_raw, Outcome};

const T: Duration = Duration::from_secs(10);

fn produce_frame(records: Bytes) -> anyhow::Result<Vec<u8>> {
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_static_str("bad"));
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = 1;
    req.timeout_ms = 5000;
    req.topic_data = vec![t];
    frame(&req, 7, 11)
}

fn produce_error(out: Outcome) -> anyhow::Result<i16> {
    let Outcome::Response(body) = out else {
        bail!("produce answered by a closed connection")
    };
    let mut b = Bytes::from(body);
    let _ = ResponseHeader::decode(&mut b, 0)?;
    let resp = ProduceResponse::decode(&mut b, 7)?;
    Ok(resp.responses[0].partition_responses[0].error_code)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_error_codes_or_closed_connections() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let addr = cluster.broker_addr(0);
    if let Err(e) = clients::create_topic(&cluster.bootstrap(), "bad", 1, 1).await {
        anyhow::bail!("{e:#}\n{}", cluster.log_tail(0, 60));
    }

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative length prefix", (-5i32).to_be_bytes().to_vec()),
        ("200 MB length prefix", {
            let mut v = (200 * 1024 * 1024i32).to_be_bytes().to_vec();
            v.extend_from_slice(&[0u8; 64]);
            v
        }),
        ("truncated header", {
            let mut v = 3i32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0, 3, 0]);
            v
        }),
        ("unknown API key", {
            let mut v = 10i32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0, 0]);
            v
        }),
        ("unsupported Metadata version", {
            let mut v = 10i32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0, 3, 0, 99, 0, 0, 0, 1, 0, 0]);
            v
        }),
        ("garbage body", {
            let mut v = 40i32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 0]);
            v.extend((0..30u8).map(|i| i.wrapping_mul(97).wrapping_add(13)));
            v
        }),
        ("array count of 2^31-1 in a tiny Metadata request", {
            let mut v = 14i32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 0]);
            v.extend_from_slice(&i32::MAX.to_be_bytes());
            v
        }),
    ];
    for (name, bytes) in cases {
        let out = send_raw(addr, &bytes, T).await?;
        ensure!(
            out == Outcome::Closed,
            "{name}: expected a closed connection, got {out:?}"
        );
        metadata_ok(addr).await?;
    }

    // ApiVersions at a version we do not know: UNSUPPORTED_VERSION (35), encoded as v0.
    let f = frame(&ApiVersionsRequest::default(), 3, 5)?;
    let mut f = f;
    f[6..8].copy_from_slice(&77i16.to_be_bytes());
    match send_raw(addr, &f, T).await? {
        Outcome::Response(body) => {
            ensure!(body[..4] == 5i32.to_be_bytes(), "correlation id");
            ensure!(
                body[4..6] == 35i16.to_be_bytes(),
                "error code {:?}",
                &body[4..6]
            );
        }
        Outcome::Closed => bail!("ApiVersions v77 must be answered"),
    }

    // A batch whose CRC does not match: CORRUPT_MESSAGE (2), and nothing is appended.
    let mut batch = build_batch(0, 1_700_000_000_000, &[(Some(b"k"), Some(b"v"))]);
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    let code = produce_error(send_raw(addr, &produce_frame(batch.freeze())?, T).await?)?;
    ensure!(code == 2, "corrupt CRC: error code {code}");
    // Two batches in one partition's records: INVALID_RECORD (87), as Kafka's
    // ProduceRequest.validateRecords answers.
    let mut two = build_batch(0, 1, &[(None, Some(b"a"))]);
    two.extend_from_slice(&build_batch(0, 1, &[(None, Some(b"b"))]));
    let code = produce_error(send_raw(addr, &produce_frame(two.freeze())?, T).await?)?;
    ensure!(code == 87, "two batches: error code {code}");
    // A valid batch goes in at offset 0: the corrupt ones left no trace.
    let ok = build_batch(0, 1, &[(None, Some(b"good"))]);
    let code = produce_error(send_raw(addr, &produce_frame(ok.freeze())?, T).await?)?;
    ensure!(code == 0, "valid batch: error code {code}");
    let (low, high) = rdkafka::consumer::Consumer::fetch_watermarks(
        &clients::consumer(&cluster.bootstrap())?,
        "bad",
        0,
        T,
    )?;
    ensure!(
        (low, high) == (0, 1),
        "watermarks after the bad produces: {low}..{high}"
    );

    // acks=7 is INVALID_REQUIRED_ACKS (21).
    let mut f = produce_frame(build_batch(0, 1, &[(None, Some(b"x"))]).freeze())?;
    // acks is the first body field after the header (v7: transactional id null (2 bytes) first).
    let header_len = 4 + 2 + 2 + 4 + 2 + "raw-test".len();
    f[header_len + 2..header_len + 4].copy_from_slice(&7i16.to_be_bytes());
    let code = produce_error(send_raw(addr, &f, T).await?)?;
    ensure!(code == 21, "acks=7: error code {code}");

    ensure!(
        cluster.is_running(0),
        "broker exited: {}",
        cluster.log_tail(0, 30)
    );
    Ok(())
}
