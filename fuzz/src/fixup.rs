//! Structure-aware repair of a mutated request before it reaches the broker: the CRC-32C of
//! every record batch in a Produce request is recomputed, so that mutated records get past the
//! produce path's CRC check and into the log validator, the append and replication instead of
//! all ending as CORRUPT_MESSAGE. Nothing else is changed, and only when the frame's
//! correlation id is even: inputs with an odd one keep their CRCs, so the refusal path is
//! fuzzed too. The repair is a pure function of the input, so a crash reproduces.

use bytes::Bytes;
use gregor::protocol::frame;
use gregor::protocol::versions::is_supported;
use kafka_protocol::messages::{ApiKey, ProduceRequest};

/// Byte offsets of Kafka's RecordBatch v2 header (`DefaultRecordBatch`).
const LENGTH_OFFSET: usize = 8;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const CRC_START: usize = 21;
const HEADER_LEN: usize = 61;
const LOG_OVERHEAD: usize = 12;

/// Rewrites, in `frame_bytes`, the CRC of each complete v2 batch of each Produce partition.
pub fn fix_produce_crcs(frame_bytes: &mut [u8]) {
    let shared = Bytes::copy_from_slice(frame_bytes);
    let Ok(f) = frame::decode_header(shared.clone()) else {
        return;
    };
    if f.api_key != ApiKey::Produce
        || f.correlation_id % 2 != 0
        || !is_supported(f.api_key, f.api_version)
    {
        return;
    }
    let Ok(request) = frame::decode_body::<ProduceRequest>(&f.body, f.api_version) else {
        return;
    };
    let base = shared.as_ptr() as usize;
    for t in &request.topic_data {
        for p in &t.partition_data {
            let Some(records) = &p.records else { continue };
            // Decoding slices the input (no copy), so the records' place in the frame is known.
            let start = (records.as_ptr() as usize).wrapping_sub(base);
            let Some(region) = frame_bytes.get_mut(start..start.saturating_add(records.len()))
            else {
                continue;
            };
            fix_batches(region);
        }
    }
}

/// Recomputes the CRC of each complete v2 batch at the start of `region`, in order.
fn fix_batches(region: &mut [u8]) {
    let mut pos = 0usize;
    while region.len() - pos >= HEADER_LEN {
        let b = &mut region[pos..];
        if b[MAGIC_OFFSET] != 2 {
            return;
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&b[LENGTH_OFFSET..LENGTH_OFFSET + 4]);
        let Ok(len) = usize::try_from(i32::from_be_bytes(len)) else {
            return;
        };
        let total = len.saturating_add(LOG_OVERHEAD);
        if total < HEADER_LEN || total > b.len() {
            return;
        }
        let crc = crc32c::crc32c(&b[CRC_START..total]);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        pos += total;
    }
}
