//! A control plane of its own (KIP-291, `control.plane.listener.name`): every broker has a
//! client listener (`PLAINTEXT`) and a `CONTROL` listener. The controller reaches brokers only
//! on `CONTROL` and brokers send it ControlledShutdown there; the same requests on the client
//! listener are refused with CLUSTER_AUTHORIZATION_FAILED before any epoch in them is looked at,
//! so a client cannot empty a broker's metadata or fence the real controller. Metadata answers
//! with the endpoints of the listener it was asked on.

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use integration_tests::util::poll_until;
use integration_tests::ClusterOptions;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, HeaderVersion, StrBytes};
use rdkafka::admin::TopicReplication;

use crate::clients;
use crate::raw::{frame, send_raw, Outcome};

const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

/// Sends `req` at `version` to `addr` and decodes the answer.
async fn ask<Q, R>(addr: std::net::SocketAddr, req: &Q, version: i16) -> anyhow::Result<R>
where
    Q: kafka_protocol::protocol::Request,
    R: Decodable + HeaderVersion,
{
    let f = frame(req, version, 41)?;
    let Outcome::Response(body) = send_raw(addr, &f, Duration::from_secs(15)).await? else {
        bail!("{:?} v{version}: the connection was closed", Q::KEY)
    };
    let mut b = Bytes::from(body);
    let _ = ResponseHeader::decode(&mut b, R::header_version(version))?;
    R::decode(&mut b, version)
}

async fn metadata_ports(addr: std::net::SocketAddr) -> anyhow::Result<Vec<(i32, i32)>> {
    let md: MetadataResponse = ask(addr, &MetadataRequest::default(), 4).await?;
    let mut ports: Vec<(i32, i32)> = md.brokers.iter().map(|b| (b.node_id.0, b.port)).collect();
    ports.sort_unstable();
    Ok(ports)
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_requests_travel_only_on_the_control_plane() -> anyhow::Result<()> {
    let cluster = clients::start_cluster(ClusterOptions::new(3).with_control_plane()).await?;
    let boot = cluster.bootstrap();
    let ids = cluster.broker_ids();
    let data: Vec<_> = ids.iter().map(|id| cluster.broker_addr(*id)).collect();
    let control: Vec<_> = ids
        .iter()
        .map(|id| cluster.control_addr(*id).context("control listener"))
        .collect::<anyhow::Result<_>>()?;

    // The registration lists both listeners, as Kafka writes them.
    let reg = cluster
        .zk_get_json("/brokers/ids/0")
        .await?
        .context("/brokers/ids/0")?;
    ensure!(
        reg["endpoints"].as_array().map(Vec::len) == Some(2),
        "endpoints: {reg}"
    );
    ensure!(
        reg["listener_security_protocol_map"]["CONTROL"] == "PLAINTEXT",
        "{reg}"
    );

    // Each listener answers Metadata with its own endpoints.
    let want_data: Vec<(i32, i32)> = ids
        .iter()
        .zip(&data)
        .map(|(id, a)| (*id, i32::from(a.port())))
        .collect();
    let want_control: Vec<(i32, i32)> = ids
        .iter()
        .zip(&control)
        .map(|(id, a)| (*id, i32::from(a.port())))
        .collect();
    ensure!(
        metadata_ports(data[0]).await? == want_data,
        "client listener"
    );
    ensure!(
        metadata_ports(control[0]).await? == want_control,
        "control listener"
    );

    // Leaders are elected and data flows: LeaderAndIsr and UpdateMetadata came on CONTROL.
    clients::create_topic_with(&boot, "cp", 3, TopicReplication::Fixed(3), &[]).await?;
    let producer = clients::producer(&boot, "all")?;
    let acked = clients::produce_keyed(&producer, "cp", 100).await?;

    // On the client listener, a forged UpdateMetadata from a "newer controller" with no
    // brokers is refused, and so are LeaderAndIsr, StopReplica and ControlledShutdown.
    let mut um = UpdateMetadataRequest::default();
    um.controller_id = BrokerId(0);
    um.controller_epoch = 1 << 25;
    um.broker_epoch = -1;
    let resp: UpdateMetadataResponse = ask(data[1], &um, 6).await?;
    ensure!(
        resp.error_code == CLUSTER_AUTHORIZATION_FAILED,
        "UpdateMetadata: {resp:?}"
    );
    let mut lai = LeaderAndIsrRequest::default();
    lai.controller_id = BrokerId(0);
    lai.controller_epoch = 1 << 25;
    lai.broker_epoch = -1;
    let resp: LeaderAndIsrResponse = ask(data[1], &lai, 4).await?;
    ensure!(
        resp.error_code == CLUSTER_AUTHORIZATION_FAILED,
        "LeaderAndIsr: {resp:?}"
    );
    let mut sr = StopReplicaRequest::default();
    sr.controller_id = BrokerId(0);
    sr.controller_epoch = 1 << 25;
    sr.broker_epoch = -1;
    let resp: StopReplicaResponse = ask(data[1], &sr, 3).await?;
    ensure!(
        resp.error_code == CLUSTER_AUTHORIZATION_FAILED,
        "StopReplica: {resp:?}"
    );
    let mut cs = ControlledShutdownRequest::default();
    cs.broker_id = BrokerId(1);
    cs.broker_epoch = -1;
    let resp: ControlledShutdownResponse = ask(data[0], &cs, 3).await?;
    ensure!(
        resp.error_code == CLUSTER_AUTHORIZATION_FAILED,
        "ControlledShutdown: {resp:?}"
    );

    // None of it took: the broker still knows every broker, and the real controller (whose
    // epoch was not overtaken) still moves it: a new topic gets leaders on every broker.
    ensure!(
        metadata_ports(data[1]).await? == want_data,
        "broker list changed"
    );
    clients::create_topic_with(&boot, "cp2", 3, TopicReplication::Fixed(3), &[]).await?;
    poll_until(
        "broker 1 to learn the leaders of cp2",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let mut req = MetadataRequest::default();
            let mut t = metadata_request::MetadataRequestTopic::default();
            t.name = Some(TopicName(StrBytes::from_static_str("cp2")));
            req.topics = Some(vec![t]);
            let md: MetadataResponse = ask(data[1], &req, 4).await?;
            let led = md.topics.first().is_some_and(|t| {
                t.partitions.len() == 3 && t.partitions.iter().all(|p| p.leader_id.0 >= 0)
            });
            Ok(led.then_some(()))
        },
    )
    .await?;

    // A broker stopping asks the controller on CONTROL and hands its leadership over.
    let victim = 2;
    let status = cluster.terminate(victim).await?;
    ensure!(status.success(), "broker {victim} exited with {status}");
    ensure!(
        cluster
            .log_tail(victim, 200)
            .contains("controlled shutdown"),
        "no controlled shutdown in the log:\n{}",
        cluster.log_tail(victim, 40)
    );
    for p in 0..3 {
        let leader = crate::replication::leader_of(&cluster, "cp", p).await?;
        ensure!(
            leader != victim,
            "partition {p} still led by the stopped broker"
        );
    }
    let read = clients::consume_all(&boot, "cp", 3, Duration::from_secs(60))?;
    crate::basic::check_acked_at_offsets(&acked, &read)?;
    Ok(())
}
