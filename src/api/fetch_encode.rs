//! FetchResponse v4–11 encoded as a list of chunks, so record data goes from the segment file to
//! the socket without passing through memory: the small header and per-partition fields are
//! written into chunks of their own, and each partition's records are the file range the log
//! returned (sent with `sendfile(2)` by the network layer). The layout is the one kafka-protocol produces for these non-flexible
//! versions; a test compares the two byte for byte.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::file_region::{Chunk, FileRegion};

/// One partition of the response.
#[derive(Debug, Clone)]
pub(super) struct PartitionOut {
    pub index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// `(producer id, first offset)` of aborted transactions; `None` is the null array
    /// (read_uncommitted).
    pub aborted: Option<Vec<(i64, i64)>>,
    pub records: FileRegion,
}

/// One topic of the response.
#[derive(Debug, Clone)]
pub(super) struct TopicOut {
    pub name: Bytes,
    pub partitions: Vec<PartitionOut>,
}

fn partition_len(version: i16, p: &PartitionOut) -> usize {
    // index, error, high watermark, last stable offset, aborted transactions (array length and
    // 16 bytes each), records length; plus log start offset (v5+) and preferred read replica
    // (v11+).
    let aborted = p.aborted.as_ref().map_or(0, |a| 16 * a.len());
    4 + 2
        + 8
        + 8
        + 4
        + aborted
        + 4
        + if version >= 5 { 8 } else { 0 }
        + if version >= 11 { 4 } else { 0 }
}

/// The response's top-level fields (v7+): a fetch-session error and the session id.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SessionFields {
    pub error_code: i16,
    pub session_id: i32,
}

/// The whole size-prefixed response frame (response header v0) as chunks.
///
/// `version` must be 4..=11 (what gregor serves); topic names must fit an int16 length, which
/// holds because they come from a request that decoded.
pub(super) fn encode(
    correlation_id: i32,
    version: i16,
    session: SessionFields,
    topics: &[TopicOut],
) -> Vec<Chunk> {
    let mut size = 4 + 4 + if version >= 7 { 6 } else { 0 } + 4;
    let mut chunks_needed = 1;
    for t in topics {
        size += 2 + t.name.len() + 4;
        for p in &t.partitions {
            size += partition_len(version, p) + p.records.len();
            if !p.records.is_empty() {
                chunks_needed += 2;
            }
        }
    }
    let mut chunks = Vec::with_capacity(chunks_needed);
    let mut head = BytesMut::with_capacity(64);
    head.put_i32(size as i32);
    head.put_i32(correlation_id);
    head.put_i32(0); // throttle_time_ms
    if version >= 7 {
        head.put_i16(session.error_code);
        head.put_i32(session.session_id);
    }
    head.put_i32(topics.len() as i32);
    for t in topics {
        head.put_i16(t.name.len() as i16);
        head.put_slice(&t.name);
        head.put_i32(t.partitions.len() as i32);
        for p in &t.partitions {
            head.put_i32(p.index);
            head.put_i16(p.error_code);
            head.put_i64(p.high_watermark);
            head.put_i64(p.last_stable_offset);
            if version >= 5 {
                head.put_i64(p.log_start_offset);
            }
            match &p.aborted {
                None => head.put_i32(-1),
                Some(list) => {
                    head.put_i32(list.len() as i32);
                    for (producer_id, first_offset) in list {
                        head.put_i64(*producer_id);
                        head.put_i64(*first_offset);
                    }
                }
            }
            if version >= 11 {
                head.put_i32(-1); // preferred_read_replica: none
            }
            head.put_i32(p.records.len() as i32);
            if !p.records.is_empty() {
                chunks.push(Chunk::Mem(head.split().freeze()));
                chunks.push(Chunk::File(p.records.clone()));
            }
        }
    }
    if !head.is_empty() {
        chunks.push(Chunk::Mem(head.freeze()));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::file_region::concat;
    use crate::protocol::frame::encode_response;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    /// A segment-like file holding 1,007 bytes: 7 then 1,000 of them are fetched.
    fn sample_file() -> (tempfile::TempDir, std::sync::Arc<std::fs::File>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.log");
        let mut data = vec![1u8, 2, 3, 4, 5, 6, 7];
        data.extend(std::iter::repeat_n(9u8, 1000));
        std::fs::write(&path, data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        (dir, std::sync::Arc::new(file))
    }

    fn sample() -> Vec<TopicOut> {
        let (_dir, file) = sample_file();
        vec![
            TopicOut {
                name: Bytes::from_static(b"orders"),
                partitions: vec![
                    PartitionOut {
                        index: 0,
                        error_code: 0,
                        high_watermark: 42,
                        last_stable_offset: 40,
                        log_start_offset: 3,
                        aborted: Some(vec![(7, 30), (9, 35)]),
                        records: FileRegion::new(file.clone(), 0, 7),
                    },
                    PartitionOut {
                        index: 1,
                        error_code: 1,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        aborted: None,
                        records: FileRegion::default(),
                    },
                ],
            },
            TopicOut {
                name: Bytes::from_static(b"t2"),
                partitions: vec![PartitionOut {
                    index: 5,
                    error_code: 0,
                    high_watermark: 9,
                    last_stable_offset: 9,
                    log_start_offset: 0,
                    aborted: Some(Vec::new()),
                    records: FileRegion::new(file.clone(), 7, 1000),
                }],
            },
        ]
    }

    fn reference(version: i16, session: SessionFields, topics: &[TopicOut]) -> Vec<u8> {
        let mut r = FetchResponse::default();
        r.error_code = session.error_code;
        r.session_id = session.session_id;
        r.responses = topics
            .iter()
            .map(|t| {
                let mut ft = FetchableTopicResponse::default();
                ft.topic = TopicName(StrBytes::from_utf8(t.name.clone()).unwrap());
                ft.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut pd = PartitionData::default();
                        pd.partition_index = p.index;
                        pd.error_code = p.error_code;
                        pd.high_watermark = p.high_watermark;
                        pd.last_stable_offset = p.last_stable_offset;
                        if version >= 5 {
                            pd.log_start_offset = p.log_start_offset;
                        }
                        // Null for read_uncommitted, a list (maybe empty) for read_committed.
                        pd.aborted_transactions = p.aborted.as_ref().map(|list| {
                            list.iter()
                                .map(|(pid, first)| {
                                    let mut a = AbortedTransaction::default();
                                    a.producer_id = ProducerId(*pid);
                                    a.first_offset = *first;
                                    a
                                })
                                .collect()
                        });
                        pd.records = Some(p.records.read().unwrap());
                        pd
                    })
                    .collect();
                ft
            })
            .collect();
        encode_response(77, 0, &r, version).unwrap().to_vec()
    }

    #[test]
    fn matches_kafka_protocol_encoding_for_every_served_version() {
        let topics = sample();
        let none = SessionFields::default();
        for version in 4..=11 {
            let ours: Vec<u8> = concat(&encode(77, version, none, &topics)).unwrap();
            assert_eq!(ours, reference(version, none, &topics), "v{version}");
        }
        for version in 7..=11 {
            let session = SessionFields {
                error_code: 0,
                session_id: 123_456_789,
            };
            let ours: Vec<u8> = concat(&encode(77, version, session, &topics)).unwrap();
            assert_eq!(ours, reference(version, session, &topics), "v{version}");
            let failed = SessionFields {
                error_code: 70,
                session_id: 0,
            };
            let ours: Vec<u8> = concat(&encode(78, version, failed, &[])).unwrap();
            assert_eq!(ours, reference_with(78, version, failed), "v{version}");
        }
        assert_eq!(
            concat(&encode(1, 11, none, &[])).unwrap(),
            reference_empty(11)
        );
    }

    fn reference_empty(version: i16) -> Vec<u8> {
        reference_with(1, version, SessionFields::default())
    }

    fn reference_with(correlation_id: i32, version: i16, session: SessionFields) -> Vec<u8> {
        let mut r = FetchResponse::default();
        r.error_code = session.error_code;
        r.session_id = session.session_id;
        encode_response(correlation_id, 0, &r, version)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn records_are_passed_through_as_file_ranges() {
        let topics = sample();
        let chunks = encode(1, 11, SessionFields::default(), &topics);
        let records = &topics[1].partitions[0].records;
        let (file, pos) = records.source().unwrap();
        assert!(chunks.iter().any(|c| matches!(c, Chunk::File(r)
            if r.source().is_some_and(|(f, p)| std::ptr::eq(f, file) && p == pos)
                && r.len() == records.len())));
    }
}
