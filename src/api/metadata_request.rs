//! Decoding Metadata (3) requests, v0–8, without materialising one struct per listed topic.
//!
//! A generic decode turns every listed name into a ~70-byte struct, so an 8 MB request of 4 M
//! empty names cost the broker about 700 MB before a byte of answer existed. Kafka answers a
//! Metadata request per distinct name (`topics.toSet`), so this decoder keeps each distinct name
//! once, as a slice of the request buffer: duplicates cost nothing, and a distinct name costs
//! one slice and one set entry.
//!
//! Layout (all versions non-flexible): topics `ARRAY(STRING)` (v1+: nullable, -1 = all topics),
//! then `allow_auto_topic_creation` BOOLEAN (v4+), then `include_cluster_authorized_operations`
//! and `include_topic_authorized_operations` BOOLEAN (v8).

use std::collections::HashSet;

/// A decoded Metadata request.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct MetadataQuery<'a> {
    /// `None`: every topic. Otherwise each distinct requested name once, in first-listed order.
    pub topics: Option<Vec<&'a str>>,
    pub allow_auto_topic_creation: bool,
    pub include_cluster_authorized_operations: bool,
    pub include_topic_authorized_operations: bool,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "{what}: needs {n} bytes at byte {} of a {}-byte body",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn i16(&mut self, what: &str) -> Result<i16, String> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn boolean(&mut self, what: &str) -> Result<bool, String> {
        Ok(self.take(1, what)?[0] != 0)
    }
}

/// Decodes a Metadata request body of `version` (0–8).
///
/// # Errors
/// What is malformed and where: a truncated field, a negative name length, a name that is not
/// UTF-8, a null array in v0, or bytes after the last field.
pub(super) fn parse(body: &[u8], version: i16) -> Result<MetadataQuery<'_>, String> {
    let mut r = Reader { buf: body, pos: 0 };
    let count = r.i32("topics count")?;
    let topics = if count < 0 {
        if version == 0 || count != -1 {
            return Err(format!("invalid topics array length {count}"));
        }
        None
    } else {
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let mut names = Vec::new();
        for i in 0..count {
            let len = r.i16("topic name length")?;
            let len = usize::try_from(len)
                .map_err(|_| format!("topic {i}: negative name length {len}"))?;
            let name = r.take(len, "topic name")?;
            if seen.insert(name) {
                let name = std::str::from_utf8(name)
                    .map_err(|e| format!("topic {i}: name is not UTF-8: {e}"))?;
                names.push(name);
            }
        }
        Some(names)
    };
    let allow_auto_topic_creation = if version >= 4 {
        r.boolean("allow_auto_topic_creation")?
    } else {
        true
    };
    let (cluster_ops, topic_ops) = if version >= 8 {
        (
            r.boolean("include_cluster_authorized_operations")?,
            r.boolean("include_topic_authorized_operations")?,
        )
    } else {
        (false, false)
    };
    if r.pos != body.len() {
        return Err(format!(
            "{} trailing bytes after the request body",
            body.len() - r.pos
        ));
    }
    Ok(MetadataQuery {
        topics,
        allow_auto_topic_creation,
        include_cluster_authorized_operations: cluster_ops,
        include_topic_authorized_operations: topic_ops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    fn encode(topics: Option<&[String]>, auto: bool, ops: (bool, bool), version: i16) -> Vec<u8> {
        let mut req = MetadataRequest::default();
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut mt = MetadataRequestTopic::default();
                    mt.name = Some(TopicName(StrBytes::from_string(t.clone())));
                    mt
                })
                .collect()
        });
        // kafka-protocol refuses a field set away from its default where the version lacks it.
        req.allow_auto_topic_creation = auto || version < 4;
        if version >= 8 {
            req.include_cluster_authorized_operations = ops.0;
            req.include_topic_authorized_operations = ops.1;
        }
        let mut b = BytesMut::new();
        req.encode(&mut b, version).unwrap();
        b.to_vec()
    }

    proptest! {
        /// What kafka-protocol encodes, this decoder reads: the same flags and each distinct
        /// name once, in first-listed order.
        #[test]
        fn reads_what_kafka_protocol_writes(
            version in 0i16..=8,
            names in proptest::collection::vec("[a-c]{0,3}", 0..30),
            null in any::<bool>(),
            auto in any::<bool>(),
            ops in any::<(bool, bool)>(),
        ) {
            let null = null && version > 0;
            let body = encode((!null).then_some(&names[..]), auto, ops, version);
            let q = parse(&body, version).unwrap();
            let mut want: Vec<&str> = Vec::new();
            for n in &names {
                if !want.contains(&n.as_str()) {
                    want.push(n);
                }
            }
            prop_assert_eq!(q.topics, (!null).then_some(want));
            prop_assert_eq!(q.allow_auto_topic_creation, version < 4 || auto);
            prop_assert_eq!(
                (q.include_cluster_authorized_operations, q.include_topic_authorized_operations),
                if version >= 8 { ops } else { (false, false) }
            );
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64),
                                        version in 0i16..=8) {
            let _ = parse(&body, version);
        }
    }

    #[test]
    fn four_million_empty_names_are_one_topic() {
        let mut body = 4_000_000i32.to_be_bytes().to_vec();
        body.resize(4 + 8_000_000, 0);
        body.push(1);
        let q = parse(&body, 4).unwrap();
        assert_eq!(q.topics, Some(vec![""]));
    }

    #[test]
    fn malformed_bodies_name_the_problem() {
        let cases: [(&[u8], i16, &str); 5] = [
            (&[0, 0, 0, 1, 0xff, 0xff], 1, "negative name length"),
            (&[0, 0, 0, 1, 0, 5, b'a'], 1, "topic name: needs 5 bytes"),
            (
                &[0xff, 0xff, 0xff, 0xff],
                0,
                "invalid topics array length -1",
            ),
            (&[0, 0, 0, 1, 0, 1, 0xc3], 1, "not UTF-8"),
            (&[0, 0, 0, 0, 7], 1, "1 trailing bytes"),
        ];
        for (body, version, want) in cases {
            let err = parse(body, version).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
