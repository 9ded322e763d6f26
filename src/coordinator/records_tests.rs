//! Byte fixtures for the `__consumer_offsets` formats, written out field by field from the
//! schemas in reference §7, plus round-trip and garbage-input properties.

use super::*;
use proptest::prelude::*;

/// Concatenates fixture pieces so each field stays readable.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn offset_key_v1_fixture() {
    let expected = cat(&[
        &[0x00, 0x01],                   // version 1
        &[0x00, 0x03, b'g', b'r', b'p'], // group STRING
        &[0x00, 0x02, b't', b'p'],       // topic STRING
        &[0x00, 0x00, 0x00, 0x03],       // partition INT32
    ]);
    assert_eq!(offset_key("grp", "tp", 3).as_ref(), expected.as_slice());
    assert_eq!(
        decode_key(&expected).unwrap(),
        RecordKey::Offset {
            group: "grp".into(),
            topic: "tp".into(),
            partition: 3
        }
    );
    // Version 0 shares the schema.
    let mut v0 = expected.clone();
    v0[1] = 0;
    assert!(matches!(
        decode_key(&v0).unwrap(),
        RecordKey::Offset { partition: 3, .. }
    ));
}

#[test]
fn group_key_v2_fixture() {
    let expected = [0x00, 0x02, 0x00, 0x03, b'g', b'r', b'p'];
    assert_eq!(group_key("grp").as_ref(), &expected);
    assert_eq!(
        decode_key(&expected).unwrap(),
        RecordKey::Group {
            group: "grp".into()
        }
    );
}

#[test]
fn offset_value_v3_fixture() {
    let expected = cat(&[
        &[0x00, 0x03],                   // version 3
        &[0, 0, 0, 0, 0, 0, 0, 0x2a],    // offset 42
        &[0, 0, 0, 5],                   // leader_epoch 5
        &[0x00, 0x01, b'm'],             // metadata "m"
        &[0, 0, 0, 0, 0, 0, 0x03, 0xe8], // commit_timestamp 1000
    ]);
    let v = OffsetValue {
        offset: 42,
        leader_epoch: Some(5),
        metadata: "m".into(),
        commit_timestamp: 1000,
        expire_timestamp: None,
    };
    assert_eq!(offset_value(&v).as_ref(), expected.as_slice());
    assert_eq!(decode_offset_value(&expected).unwrap(), v);
    // No leader epoch is written as -1 and read back as none.
    let none = OffsetValue {
        leader_epoch: None,
        ..v
    };
    let bytes = offset_value(&none);
    assert_eq!(&bytes[10..14], &[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(decode_offset_value(&bytes).unwrap(), none);
}

#[test]
fn offset_value_v1_fixture_carries_the_expiry() {
    let expected = cat(&[
        &[0x00, 0x01],                   // version 1
        &[0, 0, 0, 0, 0, 0, 0, 0x2a],    // offset 42
        &[0x00, 0x00],                   // metadata ""
        &[0, 0, 0, 0, 0, 0, 0x03, 0xe8], // commit_timestamp 1000
        &[0, 0, 0, 0, 0, 0, 0x07, 0xd0], // expire_timestamp 2000
    ]);
    let v = OffsetValue {
        offset: 42,
        leader_epoch: None,
        metadata: String::new(),
        commit_timestamp: 1000,
        expire_timestamp: Some(2000),
    };
    assert_eq!(offset_value(&v).as_ref(), expected.as_slice());
    assert_eq!(decode_offset_value(&expected).unwrap(), v);
}

#[test]
fn offset_values_v0_and_v2_decode() {
    let body = cat(&[
        &[0, 0, 0, 0, 0, 0, 0x01, 0x00], // offset 256
        &[0x00, 0x02, b'h', b'i'],       // metadata "hi"
        &[0, 0, 0, 0, 0, 0, 0, 0x09],    // timestamp 9
    ]);
    for version in [0u8, 2] {
        let bytes = cat(&[&[0, version], &body]);
        assert_eq!(
            decode_offset_value(&bytes).unwrap(),
            OffsetValue {
                offset: 256,
                leader_epoch: None,
                metadata: "hi".into(),
                commit_timestamp: 9,
                expire_timestamp: None,
            },
            "version {version}"
        );
    }
}

fn member_m1() -> MemberValue {
    MemberValue {
        member_id: "m1".into(),
        group_instance_id: None,
        client_id: "c1".into(),
        client_host: "/127.0.0.1".into(),
        rebalance_timeout: 30_000,
        session_timeout: 10_000,
        subscription: Bytes::from_static(&[1, 2]),
        assignment: Bytes::from_static(&[3]),
    }
}

#[test]
fn group_value_v3_fixture() {
    let expected = cat(&[
        &[0x00, 0x03], // version 3
        &[0x00, 0x08], // protocol_type STRING
        b"consumer",
        &[0, 0, 0, 2], // generation 2
        &[0x00, 0x05], // protocol NULLABLE_STRING
        b"range",
        &[0x00, 0x02, b'm', b'1'],   // leader NULLABLE_STRING
        &[0, 0, 0, 0, 0, 0, 0, 100], // current_state_timestamp 100
        &[0, 0, 0, 1],               // members: 1
        &[0x00, 0x02, b'm', b'1'],   //   member_id
        &[0xff, 0xff],               //   group_instance_id null
        &[0x00, 0x02, b'c', b'1'],   //   client_id
        &[0x00, 0x0a],               //   client_host
        b"/127.0.0.1",
        &[0x00, 0x00, 0x75, 0x30], //   rebalance_timeout 30000
        &[0x00, 0x00, 0x27, 0x10], //   session_timeout 10000
        &[0, 0, 0, 2, 1, 2],       //   subscription BYTES
        &[0, 0, 0, 1, 3],          //   assignment BYTES
    ]);
    let v = GroupValue {
        protocol_type: "consumer".into(),
        generation: 2,
        protocol: Some("range".into()),
        leader: Some("m1".into()),
        current_state_timestamp: Some(100),
        members: vec![member_m1()],
    };
    assert_eq!(group_value(&v).as_ref(), expected.as_slice());
    assert_eq!(decode_group_value(&expected).unwrap(), v);
}

#[test]
fn empty_group_value_has_null_protocol_and_leader() {
    let v = GroupValue {
        protocol_type: "consumer".into(),
        generation: 3,
        protocol: None,
        leader: None,
        current_state_timestamp: Some(5),
        members: vec![],
    };
    let bytes = group_value(&v);
    // protocol and leader: two null strings right after the generation.
    assert_eq!(&bytes[16..20], &[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(&bytes[bytes.len() - 4..], &[0, 0, 0, 0]);
    assert_eq!(decode_group_value(&bytes).unwrap(), v);
}

#[test]
fn group_values_v0_to_v2_decode() {
    let head = cat(&[
        &[0x00, 0x08],
        b"consumer",
        &[0, 0, 0, 7],
        &[0x00, 0x05],
        b"range",
        &[0x00, 0x02, b'm', b'1'],
    ]);
    let member_v0 = cat(&[
        &[0x00, 0x02, b'm', b'1'],
        &[0x00, 0x02, b'c', b'1'],
        &[0x00, 0x0a],
        b"/127.0.0.1",
        &[0x00, 0x00, 0x27, 0x10], // session_timeout only
        &[0, 0, 0, 2, 1, 2],
        &[0, 0, 0, 1, 3],
    ]);
    let member_v1 = cat(&[
        &[0x00, 0x02, b'm', b'1'],
        &[0x00, 0x02, b'c', b'1'],
        &[0x00, 0x0a],
        b"/127.0.0.1",
        &[0x00, 0x00, 0x75, 0x30], // rebalance_timeout
        &[0x00, 0x00, 0x27, 0x10], // session_timeout
        &[0, 0, 0, 2, 1, 2],
        &[0, 0, 0, 1, 3],
    ]);
    let v0 = cat(&[&[0, 0], &head, &[0, 0, 0, 1], &member_v0]);
    let g0 = decode_group_value(&v0).unwrap();
    assert_eq!(g0.generation, 7);
    assert_eq!(g0.current_state_timestamp, None);
    assert_eq!(
        g0.members[0],
        MemberValue {
            rebalance_timeout: 10_000,
            ..member_m1()
        },
        "v0 members take the session timeout as rebalance timeout"
    );
    let v1 = cat(&[&[0, 1], &head, &[0, 0, 0, 1], &member_v1]);
    assert_eq!(decode_group_value(&v1).unwrap().members[0], member_m1());
    let ts = [0, 0, 0, 0, 0, 0, 0, 100];
    let v2 = cat(&[&[0, 2], &head, &ts, &[0, 0, 0, 1], &member_v1]);
    let g2 = decode_group_value(&v2).unwrap();
    assert_eq!(g2.current_state_timestamp, Some(100));
    assert_eq!(g2.members[0], member_m1());
}

#[test]
fn bad_input_is_an_error() {
    assert!(matches!(
        decode_key(&[0, 9, 0, 0]),
        Err(RecordError::UnknownVersion { version: 9, .. })
    ));
    assert!(matches!(
        decode_key(&[0, 2, 0, 5, b'a']),
        Err(RecordError::Truncated { .. })
    ));
    assert!(matches!(
        decode_key(&[0, 2, 0, 1, b'a', 0]),
        Err(RecordError::TrailingBytes { left: 1, .. })
    ));
    assert!(matches!(
        decode_key(&[0, 2, 0, 2, 0xff, 0xfe]),
        Err(RecordError::NotUtf8 { .. })
    ));
    assert!(matches!(
        decode_offset_value(&[0, 4]),
        Err(RecordError::UnknownVersion { version: 4, .. })
    ));
    // A member count of 2^31-1 with no members behind it fails without allocating.
    let huge = cat(&[
        &[0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff],
        &[0, 0, 0, 0, 0, 0, 0, 0],
        &[0x7f, 0xff, 0xff, 0xff],
    ]);
    assert!(matches!(
        decode_group_value(&huge),
        Err(RecordError::Truncated { .. })
    ));
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,20}"
}

prop_compose! {
    fn arb_member()(member_id in text(), instance in proptest::option::of(text()),
        client_id in text(), client_host in text(), rebalance_timeout in any::<i32>(),
        session_timeout in any::<i32>(), subscription in proptest::collection::vec(any::<u8>(), 0..40),
        assignment in proptest::collection::vec(any::<u8>(), 0..40)) -> MemberValue {
        MemberValue {
            member_id,
            group_instance_id: instance,
            client_id,
            client_host,
            rebalance_timeout,
            session_timeout,
            subscription: subscription.into(),
            assignment: assignment.into(),
        }
    }
}

proptest! {
    #[test]
    fn keys_round_trip(group in text(), topic in text(), partition in any::<i32>()) {
        prop_assert_eq!(
            decode_key(&offset_key(&group, &topic, partition)).unwrap(),
            RecordKey::Offset { group: group.clone(), topic, partition }
        );
        prop_assert_eq!(decode_key(&group_key(&group)).unwrap(), RecordKey::Group { group });
    }

    #[test]
    fn offset_values_round_trip(offset in any::<i64>(), epoch in proptest::option::of(0..i32::MAX),
        metadata in text(), ts in any::<i64>(), expire in proptest::option::of(any::<i64>())) {
        let v = OffsetValue {
            offset,
            // v1 (written when there is an expiry) has no leader epoch.
            leader_epoch: if expire.is_some() { None } else { epoch },
            metadata,
            commit_timestamp: ts,
            expire_timestamp: expire,
        };
        prop_assert_eq!(decode_offset_value(&offset_value(&v)).unwrap(), v);
    }

    #[test]
    fn group_values_round_trip(protocol_type in text(), generation in any::<i32>(),
        protocol in proptest::option::of(text()), leader in proptest::option::of(text()),
        ts in proptest::option::of(0..i64::MAX),
        members in proptest::collection::vec(arb_member(), 0..4)) {
        let v = GroupValue { protocol_type, generation, protocol, leader, current_state_timestamp: ts, members };
        prop_assert_eq!(decode_group_value(&group_value(&v)).unwrap(), v);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_key(&bytes);
        let _ = decode_offset_value(&bytes);
        let _ = decode_group_value(&bytes);
    }
}
