//! What a large request costs the broker's memory. An 8 MB Metadata request of 4 M empty names
//! once raised the broker's RSS by about 700 MB; a `validate_only` CreateTopics of 5 M
//! partitions cost 408 MB and stalled a concurrent Metadata. The figures are printed (RSS
//! before and after, the concurrent Metadata's wait); the assertions are on memory and on the
//! answers, never on time.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::{BufMut, Bytes, BytesMut};
use integration_tests::ClusterOptions;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, MetadataResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::clients;
use crate::raw::{frame, metadata_ok, send_raw, Outcome};

const T: Duration = Duration::from_secs(60);

/// `VmHWM` (peak RSS) and `VmRSS` of `pid`, in bytes.
fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} in /proc/{pid}/status"))?;
        let kb: u64 = line.split_whitespace().nth(1).context("value")?.parse()?;
        Ok(kb * 1024)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// A Metadata v4 frame whose topics array is `names` (each a raw name), auto-creation off.
fn metadata_frame(names: impl ExactSizeIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i32(0);
    b.put_i16(3); // Metadata
    b.put_i16(4);
    b.put_i32(9);
    b.put_i16(3);
    b.put_slice(b"mem");
    b.put_i32(names.len() as i32);
    for n in names {
        b.put_i16(n.len() as i16);
        b.put_slice(&n);
    }
    b.put_u8(0);
    let len = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    b.to_vec()
}

fn metadata_topics(out: Outcome) -> anyhow::Result<MetadataResponse> {
    let Outcome::Response(body) = out else {
        bail!("Metadata answered by a closed connection")
    };
    let mut b = Bytes::from(body);
    let _ = ResponseHeader::decode(&mut b, 0)?;
    MetadataResponse::decode(&mut b, 4)
}

#[tokio::test(flavor = "multi_thread")]
async fn large_requests_cost_a_few_bytes_per_request_byte() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let addr = cluster.broker_addr(0);
    let pid = cluster.pid(0).context("broker pid")?;
    metadata_ok(addr).await?;

    // 4 M empty names: 8 MB of request, one distinct (invalid) name.
    let empty = metadata_frame((0..4_000_000).map(|_| Vec::new()));
    let (peak_before, rss_before) = memory(pid)?;
    let resp = metadata_topics(send_raw(addr, &empty, T).await?)?;
    let (peak_after, rss_after) = memory(pid)?;
    let growth = peak_after.saturating_sub(peak_before);
    let per_byte = growth as f64 / empty.len() as f64;
    eprintln!(
        "metadata of 4M empty names ({} request bytes): RSS {rss_before} -> {rss_after}, peak {peak_before} -> {peak_after} (+{growth}, {per_byte:.2} bytes per request byte)",
        empty.len()
    );
    ensure!(
        resp.topics.len() == 1 && resp.topics[0].error_code == 17,
        "one INVALID_TOPIC_EXCEPTION entry for the empty name: {:?}",
        resp.topics.len()
    );
    ensure!(
        per_byte <= 4.0,
        "the broker's peak RSS grew by {growth} bytes ({per_byte:.2} per request byte)"
    );

    // 1 M distinct unknown names of 6 bytes each: the answer itself has 1 M entries, so this
    // costs more; printed for the record, bounded loosely.
    let distinct = metadata_frame((0..1_000_000u32).map(|i| format!("u{i:05}").into_bytes()));
    let (peak_before, _) = memory(pid)?;
    let resp = metadata_topics(send_raw(addr, &distinct, T).await?)?;
    let (peak_after, rss_after) = memory(pid)?;
    let growth = peak_after.saturating_sub(peak_before);
    eprintln!(
        "metadata of 1M distinct names ({} request bytes): peak {peak_before} -> {peak_after} (+{growth}, {:.1} bytes per request byte), RSS after {rss_after}",
        distinct.len(),
        growth as f64 / distinct.len() as f64
    );
    ensure!(
        resp.topics.len() == 1_000_000,
        "one entry per distinct name"
    );
    ensure!(
        resp.topics.iter().all(|t| t.error_code == 3),
        "UNKNOWN_TOPIC_OR_PARTITION for each"
    );

    // A validate_only CreateTopics of 5 M partitions is refused before any placement, and a
    // Metadata sent meanwhile is answered.
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("absurd"));
    topic.num_partitions = 5_000_000;
    topic.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![topic];
    req.timeout_ms = 30_000;
    req.validate_only = true;
    let create = frame(&req, 4, 11)?;
    let (peak_before, _) = memory(pid)?;
    let started = Instant::now();
    let concurrent = tokio::spawn(async move {
        let asked = Instant::now();
        metadata_ok(addr).await.map(|()| asked.elapsed())
    });
    let out = send_raw(addr, &create, T).await?;
    let refused_in = started.elapsed();
    let metadata_wait = concurrent.await??;
    let (peak_after, _) = memory(pid)?;
    let Outcome::Response(body) = out else {
        bail!("CreateTopics answered by a closed connection")
    };
    let mut b = Bytes::from(body);
    let _ = ResponseHeader::decode(&mut b, 0)?;
    let resp = CreateTopicsResponse::decode(&mut b, 4)?;
    let r = &resp.topics[0];
    eprintln!(
        "CreateTopics of 5M partitions: error {} ({:?}) after {refused_in:?}; concurrent Metadata answered in {metadata_wait:?}; peak RSS +{}",
        r.error_code,
        r.error_message.as_ref().map(|m| m.to_string()),
        peak_after.saturating_sub(peak_before)
    );
    ensure!(
        r.error_code == 37,
        "INVALID_PARTITIONS, got {}",
        r.error_code
    );
    ensure!(
        r.error_message
            .as_ref()
            .is_some_and(|m| m.contains("jute.maxbuffer")),
        "the message names the limit"
    );
    ensure!(
        peak_after.saturating_sub(peak_before) < 32 * 1024 * 1024,
        "refusing it cost {} bytes of peak RSS",
        peak_after.saturating_sub(peak_before)
    );
    ensure!(cluster.is_running(0), "{}", cluster.log_tail(0, 30));
    Ok(())
}
