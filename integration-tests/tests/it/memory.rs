//! What a large request costs the broker's memory. An 8 MB Metadata request of 4 M empty names
//! once raised the broker's RSS by about 700 MB; a `validate_only` CreateTopics of 5 M
//! partitions cost 408 MB and stalled a concurrent Metadata. The figures are printed (RSS
//! before and after, the concurrent Metadata's wait); the assertions are on memory and on the
//! answers, never on time. Clients that ask for large fetch answers and never read them hold
//! no broker memory either.

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
use crate::raw::{frame, metadata_ok, read_until_closed, send_raw, Outcome};
use tokio::io::AsyncWriteExt;

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

/// A Fetch v11 of partitions `0..partitions` of `topic` from offset 0, up to `per_partition`
/// bytes each and no request-level cap (the broker's `fetch.max.bytes` applies).
fn fetch_everything(topic: &str, partitions: i32, per_partition: i32) -> anyhow::Result<Vec<u8>> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest};
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.to_string()));
    t.partitions = (0..partitions)
        .map(|p| {
            let mut fp = FetchPartition::default();
            fp.partition = p;
            fp.fetch_offset = 0;
            fp.current_leader_epoch = -1;
            fp.partition_max_bytes = per_partition;
            fp
        })
        .collect();
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = 0;
    req.min_bytes = 1;
    req.max_bytes = i32::MAX;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = vec![t];
    frame(&req, 11, 21)
}

/// Four clients each ask for a ~55 MB fetch answer (Kafka's default `fetch.max.bytes`) and
/// never read it. The records go from the segment files with sendfile, so the broker holds no
/// copy of them while the clients stall (it once held 472 MB for four such clients); the
/// connections are closed after `connections.max.idle.ms` without progress.
#[tokio::test(flavor = "multi_thread")]
async fn clients_that_never_read_a_large_fetch_hold_no_broker_memory() -> anyhow::Result<()> {
    const CLIENTS: usize = 4;
    const PARTITIONS: i32 = 6;
    let idle = Duration::from_secs(4);
    let cluster = clients::start_cluster(
        ClusterOptions::new(1).with_override("connections.max.idle.ms", idle.as_millis()),
    )
    .await?;
    let addr = cluster.broker_addr(0);
    let pid = cluster.pid(0).context("broker pid")?;
    // About 10 MB per partition.
    clients::fill_topic(
        &cluster.bootstrap(),
        "wide",
        PARTITIONS,
        1_000 * PARTITIONS,
        10_000,
    )
    .await?;
    let fetch = fetch_everything("wide", PARTITIONS, 10 * 1024 * 1024)?;

    // One reading client first: the answer's size, and proof that it is large.
    let Outcome::Response(answer) = send_raw(addr, &fetch, T).await? else {
        bail!("the fetch was answered by a closed connection")
    };
    let answer = answer.len() + 4;
    ensure!(
        answer > 50 * 1024 * 1024,
        "the answer is only {answer} bytes; the test needs one near fetch.max.bytes"
    );

    let (_, rss_before) = memory(pid)?;
    let mut streams = Vec::new();
    for _ in 0..CLIENTS {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(&fetch).await?;
        streams.push(s);
    }
    // Sample while the broker is stuck sending (well before the idle timeout closes them).
    let mut rss_max = rss_before;
    let sampling = Instant::now();
    while sampling.elapsed() < idle / 2 {
        rss_max = rss_max.max(memory(pid)?.1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let growth = rss_max.saturating_sub(rss_before);
    eprintln!(
        "{CLIENTS} clients not reading a {answer}-byte fetch answer: broker RSS {rss_before} -> max {rss_max} (+{growth})"
    );

    // Each connection was answered (its first bytes arrived) and then cut: EOF or a reset
    // before the whole answer, once the broker gave up on it.
    tokio::time::sleep(idle * 2).await;
    for (i, s) in streams.iter_mut().enumerate() {
        let started = Instant::now();
        let (got, ended) = read_until_closed(s, Duration::from_secs(20)).await;
        let Some(how) = ended else {
            bail!(
                "client {i}: connection still open {:?} after the stall ({got} bytes read)",
                started.elapsed()
            );
        };
        ensure!(got > 0, "client {i}: the broker never started answering");
        ensure!(
            got < answer,
            "client {i}: the whole answer arrived ({got} bytes, then {how}): the stall did not block the broker"
        );
    }
    ensure!(
        growth <= 128 * 1024 * 1024,
        "stalled fetch answers raised the broker's RSS by {growth} bytes"
    );
    metadata_ok(addr).await?;
    ensure!(cluster.is_running(0), "{}", cluster.log_tail(0, 30));
    Ok(())
}

/// Connections that each announce a 10 MB request, send all of it but the last bytes and stall:
/// returns the broker's RSS growth while they stall and the bytes the clients got to send.
async fn stall_nearly_complete_frames(budget: Option<usize>) -> anyhow::Result<(u64, usize)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const CLIENTS: usize = 12;
    const FRAME: usize = 10 * 1024 * 1024;
    let mut opts = ClusterOptions::new(1)
        .with_override("socket.request.max.bytes", FRAME)
        .with_override("connections.max.idle.ms", 60_000);
    if let Some(b) = budget {
        opts = opts.with_override("queued.max.request.bytes", b);
    }
    let cluster = clients::start_cluster(opts).await?;
    let addr = cluster.broker_addr(0);
    let pid = cluster.pid(0).context("broker pid")?;
    let (_, rss_before) = memory(pid)?;
    let sent = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..CLIENTS {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let sent = Arc::clone(&sent);
        writers.push(tokio::spawn(async move {
            let mut bytes = (FRAME as i32).to_be_bytes().to_vec();
            bytes.resize(4 + FRAME - 1024, 0x5a);
            for chunk in bytes.chunks(64 * 1024) {
                if s.write_all(chunk).await.is_err() {
                    return s;
                }
                sent.fetch_add(chunk.len(), Ordering::Relaxed);
            }
            // Never the last KiB: the frame stays incomplete.
            std::future::pending::<()>().await;
            s
        }));
    }
    let mut rss_max = rss_before;
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_secs(4) {
        rss_max = rss_max.max(memory(pid)?.1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = sent.load(Ordering::Relaxed);
    for w in &writers {
        w.abort();
    }
    // The stalled connections close with the writers; the budget is whole again.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if metadata_ok(addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .context("Metadata after the stalled clients left")?;
    ensure!(cluster.is_running(0), "{}", cluster.log_tail(0, 30));
    Ok((rss_max.saturating_sub(rss_before), sent))
}

/// `queued.max.request.bytes`: the bytes of requests being received are capped per broker, so
/// clients that send most of a large request and stall cannot make it hold more.
#[tokio::test(flavor = "multi_thread")]
async fn the_request_byte_budget_caps_what_stalled_large_requests_hold() -> anyhow::Result<()> {
    const BUDGET: usize = 20 * 1024 * 1024;
    let (unbounded, offered_unbounded) = stall_nearly_complete_frames(None).await?;
    let (bounded, offered) = stall_nearly_complete_frames(Some(BUDGET)).await?;
    eprintln!(
        "12 clients stalling 10 MB requests: broker RSS +{unbounded} bytes without a budget \
         ({offered_unbounded} bytes sent), +{bounded} with queued.max.request.bytes={BUDGET} \
         ({offered} bytes sent)"
    );
    // The clients offered far more than the budget (the kernel buffers what the broker does
    // not read), so the cap is what held the broker back.
    ensure!(offered > 2 * BUDGET, "only {offered} bytes were offered");
    ensure!(
        unbounded > 2 * BUDGET as u64,
        "without a budget the broker held only {unbounded} bytes: the test cannot tell"
    );
    ensure!(
        bounded <= (BUDGET + 16 * 1024 * 1024) as u64,
        "with a {BUDGET}-byte budget the broker's RSS grew by {bounded} bytes"
    );
    Ok(())
}
