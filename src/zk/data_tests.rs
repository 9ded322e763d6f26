//! Unit tests for `zk::data`: decode the exact payloads Kafka writes (reference §1) and check
//! that our encodings carry the same keys and values.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;

fn json(bytes: &[u8]) -> Value {
    match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => panic!(
            "encoder produced invalid JSON {:?}: {e}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

/// Same JSON document regardless of key order.
fn assert_same_json(actual: &[u8], expected: &str) {
    assert_eq!(
        json(actual),
        json(expected.as_bytes()),
        "{}",
        String::from_utf8_lossy(actual)
    );
}

fn map(entries: &[(i32, &[i32])]) -> BTreeMap<i32, Vec<i32>> {
    entries.iter().map(|(p, r)| (*p, r.to_vec())).collect()
}

#[test]
fn controller_roundtrip() {
    let kafka = br#"{"version":1,"brokerid":2,"timestamp":"1589000000000"}"#;
    assert_eq!(decode_controller(kafka), Ok(2));
    let ours = encode_controller(2, 1_589_000_000_000);
    assert_eq!(
        ours,
        br#"{"brokerid":2,"timestamp":"1589000000000","version":1}"#
    );
    assert_same_json(&ours, std::str::from_utf8(kafka).unwrap_or_default());
    assert!(decode_controller(b"{\"version\":1}").is_err());
}

#[test]
fn controller_epoch_is_plain_integer() {
    assert_eq!(encode_controller_epoch(7), b"7");
    assert_eq!(decode_controller_epoch(b"7"), Ok(7));
    assert_eq!(decode_controller_epoch(b"0"), Ok(0));
    assert!(decode_controller_epoch(b"{\"epoch\":7}").is_err());
    assert!(decode_controller_epoch(b"").is_err());
}

#[test]
fn cluster_id_version_is_a_string() {
    let kafka = br#"{"version":"1","id":"fGh2bU0oTbKzOJn1wm6dPQ"}"#;
    assert_eq!(
        decode_cluster_id(kafka).as_deref(),
        Ok("fGh2bU0oTbKzOJn1wm6dPQ")
    );
    assert_eq!(
        encode_cluster_id("fGh2bU0oTbKzOJn1wm6dPQ"),
        br#"{"id":"fGh2bU0oTbKzOJn1wm6dPQ","version":"1"}"#
    );
    let id = new_cluster_id();
    assert_eq!(id.len(), 22);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert_ne!(id, new_cluster_id());
}

#[test]
fn base64_uuid_matches_kafka() {
    // Kafka: Uuid(0x0123456789abcdef, 0xfedcba9876543210).toString
    let uuid = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
    assert_eq!(base64_uuid(&uuid), "ASNFZ4mrze_-3LqYdlQyEA");
    assert!(!new_topic_id().starts_with('-'));
}

#[test]
fn decode_broker_v4() {
    let kafka = br#"{"version":4,"host":"h1","port":9092,"jmx_port":-1,"timestamp":"1589000000000","endpoints":["PLAINTEXT://h1:9092","SSL://h1:9093"],"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT","SSL":"SSL"},"rack":"r1"}"#;
    let info = decode_broker(1, kafka);
    let expected = BrokerInfo {
        id: 1,
        endpoints: vec![
            EndPoint::plaintext("h1", 9092),
            EndPoint {
                listener_name: "SSL".into(),
                security_protocol: SecurityProtocol::Ssl,
                host: "h1".into(),
                port: 9093,
            },
        ],
        rack: Some("r1".into()),
    };
    assert_eq!(info, Ok(expected));
}

#[test]
fn decode_broker_v5_with_features_and_custom_listener() {
    let kafka = br#"{"features":{"f":{"min_version":1,"max_version":1}},"listener_security_protocol_map":{"INTERNAL":"SASL_SSL"},"endpoints":["INTERNAL://[::1]:9094"],"jmx_port":-1,"port":-1,"host":null,"version":5,"timestamp":"1"}"#;
    let info = decode_broker(7, kafka);
    let expected = BrokerInfo {
        id: 7,
        endpoints: vec![EndPoint {
            listener_name: "INTERNAL".into(),
            security_protocol: SecurityProtocol::SaslSsl,
            host: "::1".into(),
            port: 9094,
        }],
        rack: None,
    };
    assert_eq!(info, Ok(expected));
}

#[test]
fn decode_broker_v1_and_errors() {
    let v1 = br#"{"version":1,"host":"h","port":9092,"jmx_port":-1}"#;
    assert_eq!(
        decode_broker(0, v1).map(|b| b.endpoints),
        Ok(vec![EndPoint::plaintext("h", 9092)])
    );
    assert!(decode_broker(0, br#"{"version":0,"host":"h","port":1}"#).is_err());
    assert!(decode_broker(0, br#"{"version":4,"endpoints":["FOO://h:1"]}"#).is_err());
    assert!(decode_broker(0, br#"{"version":4,"endpoints":["PLAINTEXT://h:x"]}"#).is_err());
    assert!(decode_broker(0, b"not json").is_err());
}

#[test]
fn encode_broker_v5() {
    let info = BrokerInfo {
        id: 1,
        endpoints: vec![
            EndPoint::plaintext("h1", 9092),
            EndPoint {
                listener_name: "SSL".into(),
                security_protocol: SecurityProtocol::Ssl,
                host: "h1".into(),
                port: 9093,
            },
        ],
        rack: Some("r1".into()),
    };
    let ours = encode_broker(&info, 1_589_000_000_000);
    assert_same_json(
        &ours,
        r#"{"version":5,"host":"h1","port":9092,"jmx_port":-1,"timestamp":"1589000000000","endpoints":["PLAINTEXT://h1:9092","SSL://h1:9093"],"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT","SSL":"SSL"},"features":{},"rack":"r1"}"#,
    );
    assert!(!ours.contains(&b' '), "compact");
    assert_eq!(decode_broker(1, &ours), Ok(info));
}

#[test]
fn encode_broker_without_plaintext_or_rack() {
    let info = BrokerInfo {
        id: 2,
        endpoints: vec![EndPoint {
            listener_name: "SSL".into(),
            security_protocol: SecurityProtocol::Ssl,
            host: "::1".into(),
            port: 9093,
        }],
        rack: None,
    };
    let v = json(&encode_broker(&info, 5));
    assert_eq!(v["host"], Value::Null);
    assert_eq!(v["port"], -1);
    assert_eq!(v["endpoints"][0], "SSL://[::1]:9093");
    assert!(v.get("rack").is_none());
}

#[test]
fn decode_topic_v1_v2_v3() {
    let v1 = br#"{"version":1,"partitions":{"0":[1,2,3],"1":[2,3,1]}}"#;
    let expected = TopicAssignment {
        partitions: map(&[(0, &[1, 2, 3]), (1, &[2, 3, 1])]),
        ..Default::default()
    };
    assert_eq!(decode_topic_assignment(v1), Ok(expected.clone()));

    let v2 = br#"{"version":2,"partitions":{"0":[1,2,3],"1":[2,3,1]},"adding_replicas":{},"removing_replicas":{}}"#;
    assert_eq!(decode_topic_assignment(v2), Ok(expected.clone()));

    let v3 = br#"{"version":3,"topic_id":"ASNFZ4mrze_-3LqYdlQyEA","partitions":{"0":[1,2,3],"1":[2,3,1]},"adding_replicas":{"0":[3]},"removing_replicas":{"1":[1],"9":[4]}}"#;
    let with_id = TopicAssignment {
        topic_id: Some("ASNFZ4mrze_-3LqYdlQyEA".into()),
        adding: map(&[(0, &[3])]),
        removing: map(&[(1, &[1])]),
        ..expected
    };
    assert_eq!(decode_topic_assignment(v3), Ok(with_id));
}

#[test]
fn decode_topic_errors() {
    assert!(decode_topic_assignment(br#"{"version":1,"partitions":{"x":[1]}}"#).is_err());
    assert!(
        decode_topic_assignment(br#"{"version":3,"topic_id":"short","partitions":{}}"#).is_err()
    );
}

#[test]
fn encode_topic_v3() {
    let assignment = TopicAssignment {
        topic_id: Some("ASNFZ4mrze_-3LqYdlQyEA".into()),
        partitions: map(&[(0, &[1, 2])]),
        adding: map(&[(0, &[])]),
        removing: BTreeMap::new(),
    };
    let ours = encode_topic_assignment(&assignment);
    assert_eq!(
        ours,
        br#"{"adding_replicas":{},"partitions":{"0":[1,2]},"removing_replicas":{},"topic_id":"ASNFZ4mrze_-3LqYdlQyEA","version":3}"#
    );
    let back = decode_topic_assignment(&ours);
    assert_eq!(
        back,
        Ok(TopicAssignment {
            adding: BTreeMap::new(),
            ..assignment
        })
    );
}

#[test]
fn config_roundtrip() {
    let kafka = br#"{"version":1,"config":{"retention.ms":"86400000"}}"#;
    let cfg: BTreeMap<String, String> =
        [("retention.ms".to_string(), "86400000".to_string())].into();
    assert_eq!(decode_config(kafka), Ok(cfg.clone()));
    assert_same_json(
        &encode_config(&cfg),
        std::str::from_utf8(kafka).unwrap_or_default(),
    );
    assert_eq!(
        encode_config(&BTreeMap::new()),
        br#"{"config":{},"version":1}"#
    );
    assert_eq!(decode_config(b""), Ok(BTreeMap::new()));
    assert_eq!(decode_config(br#"{"version":1}"#), Ok(BTreeMap::new()));
    assert!(decode_config(br#"{"version":1,"config":{"a":1}}"#).is_err());
}

#[test]
fn partition_state_roundtrip() {
    let state = LeaderIsrAndControllerEpoch {
        leader: 1,
        leader_epoch: 4,
        isr: vec![1, 2],
        controller_epoch: 7,
    };
    let kafka = br#"{"controller_epoch":7,"leader":1,"version":1,"leader_epoch":4,"isr":[1,2]}"#;
    assert_eq!(decode_partition_state(kafka), Ok(state.clone()));
    let reference =
        br#"{"version":1,"leader":1,"leader_epoch":4,"isr":[1,2],"controller_epoch":7}"#;
    assert_eq!(decode_partition_state(reference), Ok(state.clone()));
    assert_eq!(
        encode_partition_state(&state),
        br#"{"controller_epoch":7,"isr":[1,2],"leader":1,"leader_epoch":4,"version":1}"#
    );
    assert!(decode_partition_state(br#"{"version":1,"leader":1}"#).is_err());
}

#[test]
fn partition_state_epochs_that_cannot_be_incremented_are_refused() {
    let with_epoch = |e: i64| {
        format!(r#"{{"controller_epoch":7,"leader":1,"version":1,"leader_epoch":{e},"isr":[1]}}"#)
    };
    assert!(decode_partition_state(with_epoch(2_147_483_646).as_bytes()).is_ok());
    for bad in [2_147_483_647, -1, 2_147_483_648] {
        let e = decode_partition_state(with_epoch(bad).as_bytes());
        assert!(e.is_err(), "leader epoch {bad} accepted");
    }
}

#[test]
fn partition_lists() {
    let kafka = br#"{"version":1,"partitions":[{"topic":"t","partition":0},{"topic":"u","partition":3},{"topic":"t","partition":0}]}"#;
    assert_eq!(
        decode_partition_list(kafka),
        Ok(vec![("t".into(), 0), ("u".into(), 3)])
    );
    let ours = encode_partition_list(&[("t".into(), 0)]);
    assert_eq!(
        ours,
        br#"{"partitions":[{"partition":0,"topic":"t"}],"version":1}"#
    );
    assert_eq!(decode_partition_list(br#"{"version":1}"#), Ok(vec![]));
}

#[test]
fn log_dir_events() {
    // As Kafka 2.8's LogDirEventNotificationSequenceZNode writes it (key order aside).
    let kafka = br#"{"version":1,"broker":3,"event":1}"#;
    assert_eq!(decode_log_dir_event(kafka), Ok(3));
    assert_eq!(
        encode_log_dir_event(7),
        br#"{"broker":7,"event":1,"version":1}"#
    );
    assert!(decode_log_dir_event(br#"{"version":1,"event":1}"#).is_err());
    assert!(decode_log_dir_event(br#"{"version":1,"broker":"x"}"#).is_err());
}

#[test]
fn topic_names() {
    assert!(validate_topic_name("orders.v1_x-2").is_ok());
    for bad in ["", ".", "..", "a/b", "a b", "ü"] {
        assert!(validate_topic_name(bad).is_err(), "{bad:?}");
    }
    assert!(validate_topic_name(&"a".repeat(249)).is_ok());
    assert!(validate_topic_name(&"a".repeat(250)).is_err());
    assert!(topics_collide("a.b", "a_b"));
    assert!(!topics_collide("a.b", "a.b"));
    assert!(!topics_collide("a.b", "a-b"));
}

#[test]
fn assignments() {
    assert!(validate_assignment(&map(&[(0, &[1, 2]), (1, &[2, 1])])).is_ok());
    assert!(validate_assignment(&BTreeMap::new()).is_err());
    assert!(validate_assignment(&map(&[(1, &[1])])).is_err());
    assert!(validate_assignment(&map(&[(0, &[1]), (1, &[1, 2])])).is_err());
    assert!(validate_assignment(&map(&[(0, &[1, 1])])).is_err());
    assert!(validate_assignment(&map(&[(0, &[])])).is_err());
}

#[test]
fn producer_id_block_reads_kafkas_json_and_writes_its_keys() {
    // What Kafka 2.8's ProducerIdBlockZNode writes: the ends as decimal strings.
    let kafka = br#"{"version":1,"broker":2,"block_start":"5000","block_end":"5999"}"#;
    let block = decode_producer_id_block(kafka).unwrap();
    assert_eq!(
        block,
        ProducerIdBlock {
            broker: 2,
            start: 5000,
            end: 5999
        }
    );
    assert_eq!(
        encode_producer_id_block(&block),
        br#"{"block_end":"5999","block_start":"5000","broker":2,"version":1}"#
    );
    assert_eq!(json(&encode_producer_id_block(&block)), json(kafka));
    // Numbers instead of strings, a reversed range, garbage: refused with the reason.
    assert!(decode_producer_id_block(
        br#"{"version":1,"broker":2,"block_start":5000,"block_end":"5999"}"#
    )
    .is_err());
    let reversed =
        decode_producer_id_block(br#"{"version":1,"broker":2,"block_start":"9","block_end":"5"}"#);
    assert!(reversed
        .unwrap_err()
        .to_string()
        .contains("not a valid range"));
    assert!(decode_producer_id_block(b"{").is_err());
}
