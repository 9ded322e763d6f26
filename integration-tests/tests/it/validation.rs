//! Kafka's `LogValidator` on the leader, seen from clients: the audit's five corrupt batches
//! (valid CRCs, broken contents) are refused with nothing appended and every consumer of the
//! partition keeps reading; batches of every codec from librdkafka, kafka-python 3.x and
//! aiokafka are accepted, and a topic `compression.type` recompresses what they send.

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use gregor::protocol::batch::{BatchHeader, HEADER_LEN};
use gregor::protocol::batch_builder::{build_batch, encode_batch, BatchFields};
use integration_tests::ClusterOptions;
use kafka_protocol::messages::produce_response::ProduceResponse;
use kafka_protocol::messages::{ResponseHeader, TransactionalId};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::admin::TopicReplication;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;

use crate::clients;
use crate::group_clients::{python, run_python_with};
use crate::raw::{frame, send_raw, Outcome};

const T: Duration = Duration::from_secs(10);
const PRODUCE_VERSION: i16 = 8;

/// Produces with kafka-python or aiokafka: `client bootstrap topic codec n prefix`; keys
/// `<prefix>-<i>`, values `<prefix>-value-<i>`, all to partition 0, acks=1, each send awaited.
const PY_PRODUCE: &str = r#"
import sys, asyncio
client, boot, topic, codec, n, prefix = sys.argv[1:7]
n = int(n)
codec = None if codec == "none" else codec
msgs = [(f"{prefix}-{i}".encode(), f"{prefix}-value-{i}".encode()) for i in range(n)]
if client == "kafka-python":
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=boot, compression_type=codec, acks=1,
                      enable_idempotence=False, linger_ms=5, client_id="it-validation")
    futs = [p.send(topic, key=k, value=v, partition=0) for k, v in msgs]
    p.flush(30)
    for f in futs:
        f.get(timeout=30)
    p.close()
else:
    from aiokafka import AIOKafkaProducer
    async def main():
        p = AIOKafkaProducer(bootstrap_servers=boot, compression_type=codec, acks=1,
                             enable_idempotence=False, linger_ms=5, client_id="it-validation")
        await p.start()
        try:
            futs = [await p.send(topic, key=k, value=v, partition=0) for k, v in msgs]
            for f in futs:
                await f
        finally:
            await p.stop()
    asyncio.run(main())
print("acked", n)
"#;

/// Reads partition 0 from the start: `client bootstrap topic count`; prints one
/// `offset<TAB>key<TAB>value` line per record once `count` were read (exits 1 after 60 s).
const PY_CONSUME: &str = r#"
import sys, time, asyncio
client, boot, topic, count = sys.argv[1:5]
count = int(count)
out = []
deadline = time.time() + 60
if client == "kafka-python":
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=boot, enable_auto_commit=False, group_id=None,
                      auto_offset_reset="earliest", client_id="it-validation")
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    while len(out) < count and time.time() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            out.extend(recs)
    c.close()
else:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    async def main():
        c = AIOKafkaConsumer(bootstrap_servers=boot, enable_auto_commit=False,
                             auto_offset_reset="earliest", client_id="it-validation")
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            while len(out) < count and time.time() < deadline:
                for recs in (await c.getmany(timeout_ms=500)).values():
                    out.extend(recs)
        finally:
            await c.stop()
    asyncio.run(main())
for r in out:
    print(f"{r.offset}\t{r.key.decode()}\t{r.value.decode()}")
sys.exit(0 if len(out) >= count else 1)
"#;

/// Which interpreter runs a Python client: Debian's python3 for its kafka-python 2.0, the
/// test venv for kafka-python 3.x and aiokafka.
#[derive(Clone, Copy, Debug)]
enum Py {
    Debian,
    Venv,
}

async fn run_py(py: Py, script: &str, args: &[&str]) -> anyhow::Result<String> {
    let interpreter = match py {
        Py::Debian => python().into(),
        Py::Venv => tokio::task::spawn_blocking(integration_tests::python::venv_python)
            .await
            .context("venv task")??,
    };
    run_python_with(&interpreter, script, args, Duration::from_secs(120)).await
}

/// `(offset, key, value)` lines printed by [`PY_CONSUME`].
fn parse_consumed(out: &str) -> anyhow::Result<Vec<(i64, String, String)>> {
    out.lines()
        .map(|l| {
            let mut it = l.splitn(3, '\t');
            let (Some(o), Some(k), Some(v)) = (it.next(), it.next(), it.next()) else {
                bail!("bad consumer line {l:?}");
            };
            Ok((o.parse()?, k.to_string(), v.to_string()))
        })
        .collect()
}

fn fields(b: &[u8]) -> anyhow::Result<BatchFields> {
    Ok(BatchFields::of(&BatchHeader::parse(b)?))
}

/// The audit's five batches: each has a valid CRC over contents Kafka refuses.
fn corrupt_batches(now: i64) -> anyhow::Result<Vec<(&'static str, Bytes, i16)>> {
    let one = build_batch(0, now, &[(Some(b"k"), Some(b"only one"))]);
    let three = build_batch(
        0,
        now,
        &[
            (Some(b"k1"), Some(b"v1")),
            (Some(b"k2"), Some(b"v2")),
            (Some(b"k3"), Some(b"v3")),
        ],
    );
    let mut out = Vec::new();
    let mut f = fields(&one)?;
    f.record_count = 10;
    f.last_offset_delta = 9;
    out.push((
        "record count 10, one record present",
        encode_batch(&f, &one[HEADER_LEN..]).freeze(),
        87,
    ));
    let garbage: Vec<u8> = (0..(three.len() - HEADER_LEN) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 | 0x81)
        .collect();
    out.push((
        "garbage record bodies",
        encode_batch(&fields(&three)?, &garbage).freeze(),
        87,
    ));
    let mut f = fields(&three)?;
    f.attributes = 1;
    out.push((
        "gzip flag over uncompressed records",
        encode_batch(&f, &three[HEADER_LEN..]).freeze(),
        2,
    ));
    let mut f = fields(&one)?;
    f.last_offset_delta = i32::MAX - 1;
    f.record_count = i32::MAX;
    out.push((
        "lastOffsetDelta 2^31-2",
        encode_batch(&f, &one[HEADER_LEN..]).freeze(),
        87,
    ));
    let mut f = fields(&one)?;
    f.attributes = 0x10;
    out.push((
        "transactional flag without a producer id",
        encode_batch(&f, &one[HEADER_LEN..]).freeze(),
        87,
    ));
    Ok(out)
}

/// Sends `records` to partition 0 of `topic` in Produce v8 (acks=1, with a transactional id
/// when `txn_id` so that only the batch itself can be wrong); returns (error code, message,
/// record errors).
async fn raw_produce(
    addr: std::net::SocketAddr,
    topic: &str,
    records: Bytes,
    txn_id: bool,
) -> anyhow::Result<(i16, Option<String>, usize)> {
    let mut req = crate::idempotence_wire::produce_request(topic, records, 1);
    if txn_id {
        req.transactional_id = Some(TransactionalId(StrBytes::from_static_str("it-txn")));
    }
    let Outcome::Response(body) = send_raw(addr, &frame(&req, PRODUCE_VERSION, 3)?, T).await?
    else {
        bail!("produce answered by a closed connection")
    };
    let mut b = Bytes::from(body);
    let _ = ResponseHeader::decode(&mut b, 0)?;
    let resp = ProduceResponse::decode(&mut b, PRODUCE_VERSION)?;
    let pr = &resp.responses[0].partition_responses[0];
    Ok((
        pr.error_code,
        pr.error_message.as_ref().map(|m| m.to_string()),
        pr.record_errors.len(),
    ))
}

fn high_watermark(bootstrap: &str, topic: &str) -> anyhow::Result<i64> {
    Ok(clients::consumer(bootstrap)?
        .fetch_watermarks(topic, 0, T)?
        .1)
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_batches_are_refused_and_every_consumer_keeps_reading() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let boot = cluster.bootstrap();
    let topic = "validated";
    clients::create_topic(&boot, topic, 1, 1).await?;
    let producer = clients::producer(&boot, "1")?;
    clients::produce_range(&producer, topic, 0..10).await?;
    ensure!(high_watermark(&boot, topic)? == 10, "first ten messages");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    for (what, batch, want) in corrupt_batches(now)? {
        let (code, message, _) = raw_produce(cluster.broker_addr(0), topic, batch, true).await?;
        ensure!(
            code == want,
            "{what}: error code {code} (message {message:?}), expected {want}"
        );
        ensure!(
            message.as_deref().is_some_and(|m| m.contains(topic)),
            "{what}: the v8 error message names the partition: {message:?}"
        );
        let high = high_watermark(&boot, topic)?;
        ensure!(
            high == 10,
            "{what}: appended anyway (high watermark {high})"
        );
    }
    // Without a transactional id the transactional batch of a producer is Kafka's
    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED; without a producer id it is still INVALID_RECORD.
    let body = build_batch(0, now, &[(None, Some(b"t"))]);
    let mut f = fields(&body)?;
    f.attributes = 0x10;
    let mut of_producer = f;
    (
        of_producer.producer_id,
        of_producer.producer_epoch,
        of_producer.base_sequence,
    ) = (4, 0, 0);
    for (what, f, want) in [
        ("transactional bit, no producer id", f, 87),
        (
            "transactional batch without transactional id",
            of_producer,
            53,
        ),
    ] {
        let batch = encode_batch(&f, &body[HEADER_LEN..]).freeze();
        let (code, _, _) = raw_produce(cluster.broker_addr(0), topic, batch, false).await?;
        ensure!(code == want, "{what}: error code {code}, expected {want}");
        ensure!(
            high_watermark(&boot, topic)? == 10,
            "{what}: appended anyway"
        );
    }

    clients::produce_range(&producer, topic, 10..20).await?;
    let want: Vec<(i64, String, String)> = (0..20)
        .map(|i| (i as i64, format!("key-{i}"), format!("value-{i}")))
        .collect();

    let read = clients::consume_all(&boot, topic, 1, Duration::from_secs(60))?;
    ensure!(read.get(&0) == Some(&want), "librdkafka read {read:?}");
    for (py, client) in [
        (Py::Debian, "kafka-python"),
        (Py::Venv, "kafka-python"),
        (Py::Venv, "aiokafka"),
    ] {
        let out = run_py(py, PY_CONSUME, &[client, &boot, topic, "20"]).await?;
        let got = parse_consumed(&out)?;
        ensure!(got == want, "{client} ({py:?}) read {got:?}");
    }
    ensure!(cluster.is_running(0), "{}", cluster.log_tail(0, 30));
    Ok(())
}

/// The codec ids of every batch stored in partition 0 of `topic` on broker 0, read from its
/// segment files.
fn stored_codecs(cluster: &integration_tests::Cluster, topic: &str) -> anyhow::Result<Vec<u8>> {
    Ok(clients::stored_headers(cluster, 0, topic, 0)?
        .iter()
        .map(|h| (h.attributes & 0x07) as u8)
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_codec_from_real_clients_is_accepted_and_topic_compression_applies(
) -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(1)).await?;
    let boot = cluster.bootstrap();
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let n = 200usize;
    // Stored as sent.
    clients::create_topic(&boot, "codecs", 1, 1).await?;
    // Recompressed: whatever arrives is stored as gzip.
    clients::create_topic_with(
        &boot,
        "as-gzip",
        1,
        TopicReplication::Fixed(1),
        &[("compression.type", "gzip")],
    )
    .await?;

    let mut want = Vec::new();
    for topic in ["codecs", "as-gzip"] {
        for codec in codecs {
            let prefix = format!("rdkafka-{codec}");
            let p: rdkafka::producer::FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &boot)
                .set("enable.idempotence", "false")
                .set("compression.codec", codec)
                .set("linger.ms", "5")
                .create()?;
            let mut acks = Vec::new();
            for i in 0..n {
                let (k, v) = (format!("{prefix}-{i}"), format!("{prefix}-value-{i}"));
                let ack = p
                    .send_result(FutureRecord::to(topic).partition(0).key(&k).payload(&v))
                    .map_err(|(e, _)| anyhow::anyhow!("{prefix} {i}: {e}"))?;
                acks.push(ack);
                if topic == "codecs" {
                    want.push((k, v));
                }
            }
            for (i, ack) in acks.into_iter().enumerate() {
                match ack.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => bail!("{prefix} {i}: {e}"),
                    Err(_) => bail!("{prefix} {i}: delivery future cancelled"),
                }
            }
            for client in ["kafka-python", "aiokafka"] {
                let prefix = format!("{client}-{codec}");
                run_py(
                    Py::Venv,
                    PY_PRODUCE,
                    &[client, &boot, topic, codec, &n.to_string(), &prefix],
                )
                .await
                .with_context(|| format!("{prefix} into {topic}"))?;
                if topic == "codecs" {
                    want.extend(
                        (0..n).map(|i| (format!("{prefix}-{i}"), format!("{prefix}-value-{i}"))),
                    );
                }
            }
        }
    }
    want.sort();
    for topic in ["codecs", "as-gzip"] {
        let read = clients::consume_all(&boot, topic, 1, Duration::from_secs(60))?;
        let mut got: Vec<(String, String)> = read
            .get(&0)
            .map(|v| v.iter().map(|(_, k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        got.sort();
        ensure!(
            got.len() == want.len(),
            "{topic}: read {} of {}",
            got.len(),
            want.len()
        );
        ensure!(
            got == want,
            "{topic}: records differ from what was produced"
        );
        let out = run_py(
            Py::Venv,
            PY_CONSUME,
            &["kafka-python", &boot, topic, &want.len().to_string()],
        )
        .await?;
        ensure!(
            parse_consumed(&out)?.len() == want.len(),
            "{topic}: kafka-python read"
        );
    }
    let stored = stored_codecs(&cluster, "codecs")?;
    for id in 0..=4u8 {
        ensure!(
            stored.contains(&id),
            "codec {id} stored as sent: {stored:?}"
        );
    }
    let stored = stored_codecs(&cluster, "as-gzip")?;
    ensure!(
        !stored.is_empty() && stored.iter().all(|c| *c == 1),
        "compression.type=gzip stores gzip only: {stored:?}"
    );
    Ok(())
}
