//! The clients named in the acceptance criteria, run as the user would: kcat (Debian's
//! librdkafka 2.0.2) and kafka-python (Debian's python3-kafka).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use integration_tests::ClusterOptions;

use crate::clients;

fn require(tool: &str) -> anyhow::Result<()> {
    if Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()?
        .success()
    {
        Ok(())
    } else {
        bail!("{tool} is not installed (apt-get install kcat python3-kafka; .ci/run does)")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kcat_round_trips_100k_keyed_messages_in_order() -> anyhow::Result<()> {
    require("kcat")?;
    let cluster = clients::start_cluster(ClusterOptions::new(3)).await?;
    let b = cluster.bootstrap();
    clients::create_topic(&b, "kc", 6, 1).await?;

    let listing = Command::new("kcat").args(["-b", &b, "-L"]).output()?;
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    ensure!(listing.contains(" 3 brokers:"), "kcat -L: {listing}");

    let n = 100_000;
    let input: String = (0..n).map(|i| format!("key{i}:val{i}\n")).collect();
    let mut producer = Command::new("kcat")
        .args(["-b", &b, "-P", "-t", "kc", "-K:", "-X", "acks=all"])
        .stdin(Stdio::piped())
        .spawn()?;
    producer
        .stdin
        .take()
        .context("kcat stdin")?
        .write_all(input.as_bytes())?;
    let status = producer.wait()?;
    ensure!(status.success(), "kcat -P failed: {status}");

    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("kcat")
            .args(["-b", &b, "-C", "-t", "kc", "-o", "beginning", "-e", "-q"])
            .args(["-f", "%p %o %k %s\\n"])
            .output(),
    )
    .await
    .context("kcat -C timed out")??;
    ensure!(
        out.status.success(),
        "kcat -C: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut seen = vec![false; n];
    let mut last: std::collections::HashMap<i32, (i64, usize)> = Default::default();
    let mut count = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        ensure!(f.len() == 4, "bad kcat line {line:?}");
        let (p, off): (i32, i64) = (f[0].parse()?, f[1].parse()?);
        let i: usize = f[2].trim_start_matches("key").parse()?;
        ensure!(f[3] == format!("val{i}"), "value mismatch in {line:?}");
        ensure!(!seen[i], "message {i} read twice");
        seen[i] = true;
        if let Some((lo, li)) = last.get(&p) {
            ensure!(
                off > *lo && i > *li,
                "partition {p} order broken at {line:?}"
            );
        }
        last.insert(p, (off, i));
        count += 1;
    }
    ensure!(count == n, "read {count} of {n}");
    ensure!(last.len() == 6, "partitions used: {}", last.len());
    Ok(())
}

const KAFKA_PYTHON: &str = r#"
import sys
from kafka import KafkaProducer, KafkaConsumer, TopicPartition
b = sys.argv[1].split(",")
n = int(sys.argv[2])
p = KafkaProducer(bootstrap_servers=b, acks="all")
futs = [p.send("py", key=b"k%d" % i, value=b"v%d" % i) for i in range(n)]
p.flush()
acked = {}
for i, f in enumerate(futs):
    md = f.get(timeout=30)
    acked[(md.partition, md.offset)] = i
assert p.config["api_version"] >= (0, 11), p.config["api_version"]
c = KafkaConsumer(bootstrap_servers=b, auto_offset_reset="earliest", consumer_timeout_ms=10000)
parts = [TopicPartition("py", x) for x in sorted(c.partitions_for_topic("py"))]
c.assign(parts)
c.seek_to_beginning()
got = 0
last = {}
for m in c:
    i = acked[(m.partition, m.offset)]
    assert m.key == b"k%d" % i and m.value == b"v%d" % i, (m, i)
    assert last.get(m.partition, -1) < i, "order"
    last[m.partition] = i
    got += 1
    if got == n:
        break
assert got == n, got
print("ok", n, p.config["api_version"])
"#;

#[tokio::test(flavor = "multi_thread")]
async fn kafka_python_round_trip() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(3)).await?;
    let b = cluster.bootstrap();
    clients::create_topic(&b, "py", 6, 1).await?;
    let stdout =
        crate::group_clients::run_python(KAFKA_PYTHON, &[&b, "5000"], Duration::from_secs(120))
            .await
            .context("kafka-python")?;
    ensure!(stdout.starts_with("ok 5000"), "{stdout}");
    Ok(())
}
