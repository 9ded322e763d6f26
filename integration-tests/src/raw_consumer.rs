//! A consumer that does only what the broker's side of a fetch needs: `gregor-bench
//! --raw-consumer` uses it to measure how many messages one consumer connection can be served,
//! without librdkafka's per-message work (on a 2-core machine that client, not the broker, is
//! what limits one consumer).
//!
//! It asks Metadata for the leaders, keeps one connection per leader with one Fetch (v11) in
//! flight, as librdkafka does, with the same limits the benchmark gives librdkafka (50 MB per
//! response, 1 MiB per partition), and counts records from the batch headers (record count at
//! byte 57) of the complete batches; a partial trailing batch is fetched again. No record is
//! decoded, so the figure is the broker's delivery rate to one consumer, not a client's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FETCH_VERSION: i16 = 11;
const METADATA_VERSION: i16 = 4;

/// One connection with a request/response exchange.
struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    async fn connect(addr: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            correlation: 0,
        })
    }

    async fn call<Q, R>(&mut self, req: &Q, version: i16) -> anyhow::Result<R>
    where
        Q: Request + Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(Q::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("gregor-bench-raw")));
        let mut b = BytesMut::new();
        b.extend_from_slice(&[0; 4]);
        header.encode(&mut b, Q::header_version(version))?;
        req.encode(&mut b, version)?;
        let len = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&b).await?;
        let size = self.stream.read_i32().await?;
        ensure!(size >= 0, "negative response size {size}");
        let mut body = BytesMut::zeroed(size as usize);
        self.stream.read_exact(&mut body).await?;
        let mut body = body.freeze();
        let h = ResponseHeader::decode(&mut body, R::header_version(version))?;
        ensure!(
            h.correlation_id == self.correlation,
            "correlation id mismatch"
        );
        R::decode(&mut body, version)
    }
}

/// Complete batches in `records`: (records in them, the offset after the last one).
fn count_batches(mut records: Bytes) -> (u64, Option<i64>) {
    let (mut count, mut next) = (0u64, None);
    while records.len() >= 61 {
        let base = i64::from_be_bytes(records[0..8].try_into().unwrap_or([0; 8]));
        let len = i32::from_be_bytes(records[8..12].try_into().unwrap_or([0; 4]));
        let total = 12 + len.max(0) as usize;
        if len < 49 || records.len() < total {
            break;
        }
        let last_delta = i32::from_be_bytes(records[23..27].try_into().unwrap_or([0; 4]));
        let n = i32::from_be_bytes(records[57..61].try_into().unwrap_or([0; 4]));
        count += n.max(0) as u64;
        next = Some(base + i64::from(last_delta) + 1);
        records.advance(total);
    }
    (count, next)
}

/// Reads `messages` records of `topic` from the beginning; returns the count and the seconds
/// from the first record on.
pub async fn consume(
    bootstrap: &str,
    topic: &str,
    messages: u64,
    deadline: Duration,
) -> anyhow::Result<(u64, f64)> {
    let first = bootstrap.split(',').next().context("empty bootstrap")?;
    let mut boot = Conn::connect(first).await?;
    let mut md_req = MetadataRequest::default();
    let mut t = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(topic.to_string())));
    md_req.topics = Some(vec![t]);
    let md: MetadataResponse = boot.call(&md_req, METADATA_VERSION).await?;
    let addrs: BTreeMap<i32, String> = md
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in md
        .topics
        .first()
        .context("topic not in metadata")?
        .partitions
        .iter()
    {
        ensure!(
            p.leader_id.0 >= 0,
            "partition {} has no leader",
            p.partition_index
        );
        by_leader
            .entry(p.leader_id.0)
            .or_default()
            .push(p.partition_index);
    }
    let started = Instant::now();
    let mut fetchers = tokio::task::JoinSet::new();
    for (leader, partitions) in by_leader {
        let addr = addrs
            .get(&leader)
            .context("leader not among brokers")?
            .clone();
        let topic = topic.to_string();
        fetchers
            .spawn(async move { fetch_from(addr, topic, partitions, started + deadline).await });
    }
    let (mut total, mut first_seen, mut last_seen) = (0u64, None::<Instant>, started);
    while let Some(done) = fetchers.join_next().await {
        let (n, first, last) = done??;
        total += n;
        first_seen = match (first_seen, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last_seen = last_seen.max(last);
        if total >= messages {
            break;
        }
    }
    let from = first_seen.unwrap_or(started);
    Ok((total, last_seen.duration_since(from).as_secs_f64()))
}

/// Fetches `partitions` from one leader until every partition is at its high watermark.
async fn fetch_from(
    addr: String,
    topic: String,
    partitions: Vec<i32>,
    deadline: Instant,
) -> anyhow::Result<(u64, Option<Instant>, Instant)> {
    let mut conn = Conn::connect(&addr).await?;
    let mut offsets: BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
    let mut done: BTreeMap<i32, bool> = partitions.iter().map(|p| (*p, false)).collect();
    let (mut count, mut first, mut last) = (0u64, None, Instant::now());
    while done.values().any(|d| !d) {
        if Instant::now() > deadline {
            bail!("fetching from {addr}: deadline passed with {count} records");
        }
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = 100;
        req.min_bytes = 1;
        req.max_bytes = 52_428_800;
        req.session_epoch = -1;
        let mut ft = FetchTopic::default();
        ft.topic = TopicName(StrBytes::from_string(topic.clone()));
        ft.partitions = offsets
            .iter()
            .filter(|(p, _)| !done[*p])
            .map(|(p, o)| {
                let mut fp = FetchPartition::default();
                fp.partition = *p;
                fp.fetch_offset = *o;
                fp.partition_max_bytes = 1_048_576;
                fp.current_leader_epoch = -1;
                fp.log_start_offset = -1;
                fp
            })
            .collect();
        req.topics = vec![ft];
        let resp: FetchResponse = conn.call(&req, FETCH_VERSION).await?;
        ensure!(resp.error_code == 0, "fetch error {}", resp.error_code);
        for t in resp.responses {
            for p in t.partitions {
                ensure!(
                    p.error_code == 0,
                    "partition {}: error {}",
                    p.partition_index,
                    p.error_code
                );
                let (n, next) = p.records.map(count_batches).unwrap_or((0, None));
                if n > 0 {
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                    count += n;
                }
                if let Some(next) = next {
                    offsets.insert(p.partition_index, next);
                }
                let at = offsets.get(&p.partition_index).copied().unwrap_or(0);
                if at >= p.high_watermark {
                    done.insert(p.partition_index, true);
                }
            }
        }
    }
    Ok((count, first, last))
}
