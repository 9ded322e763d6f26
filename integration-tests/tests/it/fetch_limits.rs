//! A fetch cannot make the broker build an answer larger than its `fetch.max.bytes`: a partition
//! listed many times in one request is read once (Kafka keeps one entry per partition), and the
//! request's own `max_bytes` cannot raise the broker's cap. A client that asks and never reads
//! loses its connection after `connections.max.idle.ms` instead of pinning responses forever.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use bytes::Bytes;
use integration_tests::ClusterOptions;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::clients;
use crate::raw::{frame, metadata_ok, read_until_closed, send_raw, Outcome};
use tokio::io::AsyncWriteExt;

const CAP: i32 = 2 * 1024 * 1024;

fn fetch_listing_partition_zero(times: usize) -> anyhow::Result<Vec<u8>> {
    let mut topic = FetchTopic::default();
    topic.topic = TopicName(StrBytes::from_static_str("big"));
    topic.partitions = (0..times)
        .map(|_| {
            let mut p = FetchPartition::default();
            p.partition = 0;
            p.fetch_offset = 0;
            p.current_leader_epoch = -1;
            p.partition_max_bytes = 50 * 1024 * 1024;
            p
        })
        .collect();
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = 0;
    req.min_bytes = 1;
    req.max_bytes = i32::MAX;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = vec![topic];
    frame(&req, 11, 5)
}

/// About 6 MB in `big`'s only partition, in batches of at most 1 MB: three times the cap.
async fn fill(bootstrap: &str) -> anyhow::Result<()> {
    clients::fill_topic(bootstrap, "big", 1, 600, 10_000).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_listed_sixty_times_is_read_once_within_fetch_max_bytes() -> anyhow::Result<()>
{
    let cluster =
        clients::start_cluster(ClusterOptions::new(1).with_override("fetch.max.bytes", CAP))
            .await?;
    let bootstrap = cluster.bootstrap();
    fill(&bootstrap).await?;

    let out = send_raw(
        cluster.broker_addr(0),
        &fetch_listing_partition_zero(60)?,
        Duration::from_secs(30),
    )
    .await?;
    let Outcome::Response(body) = out else {
        bail!("the fetch was answered by a closed connection")
    };
    ensure!(
        body.len() <= CAP as usize + 4096,
        "response of {} bytes exceeds fetch.max.bytes = {CAP}",
        body.len()
    );
    let mut b = Bytes::from(body);
    let _ = ResponseHeader::decode(&mut b, 0)?;
    let resp = FetchResponse::decode(&mut b, 11)?;
    ensure!(resp.error_code == 0, "top-level error {}", resp.error_code);
    let partitions: Vec<_> = resp.responses.iter().flat_map(|t| &t.partitions).collect();
    ensure!(
        partitions.len() == 1,
        "partition 0 answered {} times",
        partitions.len()
    );
    let records = partitions[0].records.as_ref().map_or(0, Bytes::len);
    // It did read (whole batches of up to 1 MB each), and no more than the cap.
    ensure!(
        records >= 100_000 && records <= CAP as usize,
        "{records} record bytes for a cap of {CAP}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    let idle = Duration::from_secs(2);
    let cluster = clients::start_cluster(
        ClusterOptions::new(1)
            .with_override("fetch.max.bytes", CAP)
            .with_override("connections.max.idle.ms", idle.as_millis()),
    )
    .await?;
    fill(&cluster.bootstrap()).await?;
    let addr = cluster.broker_addr(0);

    // Every answer to the same fetch is the same size; 20 of them are far more than the socket
    // buffers hold.
    let one = fetch_listing_partition_zero(1)?;
    let Outcome::Response(answer) = send_raw(addr, &one, Duration::from_secs(30)).await? else {
        bail!("the fetch was answered by a closed connection")
    };
    let answer = answer.len() + 4;
    let asked = 20usize;
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(&one.repeat(asked)).await?;
    tokio::time::sleep(idle * 3).await;

    // Now read: a closed connection ends in EOF or a reset before every answer arrived.
    let started = Instant::now();
    let (got, ended) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let Some(how) = ended else {
        bail!(
            "connection still open {:?} after the stall ({got} bytes read)",
            started.elapsed()
        );
    };
    ensure!(
        got < asked * answer,
        "all {asked} answers arrived ({got} bytes, then {how}): the stall did not block the broker"
    );
    metadata_ok(addr).await?;
    Ok(())
}
