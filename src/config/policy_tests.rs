//! Keys gregor cannot act on fully accept only the values it can honour, and the checks Kafka
//! makes across keys (listener protocols, broker ids against the generated range, the request
//! byte budget against the largest request) stop start-up naming the key.

use super::keys::BROKER_KEYS;
use super::tests::cfg;

#[test]
fn keys_gregor_cannot_act_on_accept_only_what_it_does() {
    // Each refused value names the key and says why.
    for (key, bad, good) in [
        ("zookeeper.set.acl", "true", "false"),
        ("num.replica.fetchers", "2", "1"),
        ("log.preallocate", "true", "false"),
        ("log.cleaner.enable", "true", "false"),
        ("log.cleaner.threads", "2", "1"),
        ("log.cleaner.min.cleanable.ratio", "0.7", "0.5"),
        ("log.cleaner.delete.retention.ms", "1000", "86400000"),
        ("offsets.commit.required.acks", "1", "-1"),
        ("inter.broker.protocol.version", "2.3", "2.4"),
        ("inter.broker.protocol.version", "3.0", "2.8-IV1"),
        ("log.message.format.version", "0.10.2", "0.11.0"),
    ] {
        let err = cfg(&[(key, bad)]).unwrap_err();
        assert_eq!(err.key(), Some(key), "{key}={bad}: {err}");
        assert!(cfg(&[(key, good)]).is_ok(), "{key}={good}");
    }
    // What the stock server.properties of Kafka 2.8 sets is all accepted.
    let stock = cfg(&[
        ("num.network.threads", "3"),
        ("num.io.threads", "8"),
        ("socket.send.buffer.bytes", "102400"),
        ("socket.receive.buffer.bytes", "102400"),
        ("socket.request.max.bytes", "104857600"),
        ("num.partitions", "1"),
        ("num.recovery.threads.per.data.dir", "1"),
        ("offsets.topic.replication.factor", "1"),
        ("transaction.state.log.replication.factor", "1"),
        ("transaction.state.log.min.isr", "1"),
        ("log.retention.hours", "168"),
        ("log.segment.bytes", "1073741824"),
        ("log.retention.check.interval.ms", "300000"),
        ("zookeeper.connection.timeout.ms", "18000"),
        ("group.initial.rebalance.delay.ms", "0"),
    ])
    .unwrap();
    assert_eq!(stock.num_network_threads + stock.num_io_threads, 11);
    // Kafka's 3 + 8 threads become as many workers as there are cores, up to 11.
    assert_eq!(stock.runtime_workers(2), 2);
    assert_eq!(stock.runtime_workers(64), 11);
    assert_eq!(stock.runtime_workers(0), 1);
    assert_eq!(stock.socket_send_buffer_bytes, Some(102_400));
    assert_eq!(stock.num_recovery_threads_per_data_dir, 1);
    // Every key at its default is accepted, but the cleaner switch (compaction does not exist).
    for key in BROKER_KEYS {
        if key.name == "log.cleaner.enable" {
            continue;
        }
        if let Some(d) = key.default {
            let given = cfg(&[(key.name, d)]);
            assert!(
                given.is_ok() || key.name == "broker.id" || key.name == "log.dir",
                "{}={d}: {:?}",
                key.name,
                given.err()
            );
        }
    }
}

#[test]
fn listeners_protocols_ids_and_budgets_are_checked() {
    let err = cfg(&[("listener.security.protocol.map", "PLAINTEXT:SSL")]).unwrap_err();
    assert_eq!(err.key(), Some("listener.security.protocol.map"), "{err}");
    let err = cfg(&[("listener.security.protocol.map", "SSL:SSL")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("no security protocol for listener PLAINTEXT"),
        "{err}"
    );
    assert!(cfg(&[("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT")]).is_ok());
    let err = cfg(&[("inter.broker.listener.name", "INTERNAL")]).unwrap_err();
    assert_eq!(err.key(), Some("inter.broker.listener.name"), "{err}");
    assert!(cfg(&[("inter.broker.listener.name", "PLAINTEXT")]).is_ok());
    // Several listeners, each mapped to PLAINTEXT; the inter-broker and control-plane ones
    // must be advertised and differ (Kafka's rules).
    let two = [
        (
            "listeners",
            "CLIENT://:9092,INTERNAL://127.0.0.1:9093,CONTROL://127.0.0.1:9094",
        ),
        (
            "listener.security.protocol.map",
            "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROL:PLAINTEXT",
        ),
        ("inter.broker.listener.name", "internal"),
        ("control.plane.listener.name", "CONTROL"),
    ];
    let c = cfg(&two).unwrap();
    assert_eq!(c.listeners.len(), 3);
    assert_eq!(c.inter_broker_listener_name, "INTERNAL");
    assert_eq!(c.controller_listener_name(), "CONTROL");
    assert!(c.accepts_control_requests("CONTROL") && !c.accepts_control_requests("CLIENT"));
    let mut same = two.to_vec();
    same[3] = ("control.plane.listener.name", "INTERNAL");
    assert_eq!(
        cfg(&same).unwrap_err().key(),
        Some("control.plane.listener.name")
    );
    let mut unadvertised = two.to_vec();
    unadvertised.push(("advertised.listeners", "CLIENT://h:9092,INTERNAL://h:9093"));
    assert_eq!(
        cfg(&unadvertised).unwrap_err().key(),
        Some("control.plane.listener.name")
    );
    let mut default_inter = two.to_vec();
    default_inter.remove(2);
    assert_eq!(
        cfg(&default_inter).unwrap_err().key(),
        Some("inter.broker.listener.name"),
        "PLAINTEXT is not among the listeners"
    );
    assert!(cfg(&[("security.inter.broker.protocol", "SSL")]).is_err());
    let single = cfg(&[]).unwrap();
    assert!(single.accepts_control_requests("PLAINTEXT"));
    assert_eq!(single.controller_listener_name(), "PLAINTEXT");
    // Configured ids stay below the generated range while generation is on.
    let err = cfg(&[("broker.id", "1001")]).unwrap_err();
    assert_eq!(err.key(), Some("broker.id"), "{err}");
    assert!(cfg(&[
        ("broker.id", "1001"),
        ("broker.id.generation.enable", "false")
    ])
    .is_ok());
    assert!(cfg(&[("broker.id", "1001"), ("reserved.broker.max.id", "2000")]).is_ok());
    // A byte budget below one request could never admit the largest.
    let err = cfg(&[("queued.max.request.bytes", "1000")]).unwrap_err();
    assert_eq!(err.key(), Some("queued.max.request.bytes"), "{err}");
    let c = cfg(&[
        ("queued.max.request.bytes", "209715200"),
        ("queued.max.requests", "7"),
    ])
    .unwrap();
    assert_eq!(c.queued_max_request_bytes, Some(209_715_200));
    assert_eq!(c.queued_max_requests, 7);
    assert_eq!(cfg(&[]).unwrap().queued_max_request_bytes, None);
    let c = cfg(&[("socket.send.buffer.bytes", "-1")]).unwrap();
    assert_eq!(c.socket_send_buffer_bytes, None);
    assert_eq!(cfg(&[]).unwrap().zookeeper_max_in_flight_requests, 2000);
}
