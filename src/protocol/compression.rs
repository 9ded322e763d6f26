//! The four record-batch codecs as Kafka's clients write them, for the leader's validation
//! (decompress and walk the records) and for a topic `compression.type` that differs from the
//! producer's (recompress).
//!
//! Decompression is streaming wherever the format allows it, so validating a batch costs a
//! small fixed buffer however far its payload expands. The one exception is a raw (unframed)
//! snappy block, which has to be expanded whole; its declared length is checked against the
//! most snappy can expand (about 21× — a 3-byte copy element yields at most 64 bytes) first,
//! so a lying header cannot make the broker allocate more than a small multiple of the request.
//!
//! Framing, as Kafka 2.8 reads and writes it:
//! - gzip: RFC 1952 members (Java's `GZIPInputStream` reads concatenated members);
//! - snappy: the xerial "snappy-java" stream (16-byte header, then length-prefixed raw blocks of
//!   32 KiB input) that the Java client writes, or a single raw block as librdkafka writes it;
//! - lz4: the LZ4 frame format with 64 KiB independent blocks (`KafkaLZ4BlockOutputStream`);
//! - zstd: a standard zstd frame at level 3 (zstd-jni's default).

use std::io::{self, BufRead, BufReader, Read, Write};

use super::batch::CompressionCodec;

/// xerial snappy-java stream header: magic, then version 1 and minimum compatible version 1.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
/// snappy-java's default block size; Kafka 2.8 uses it unchanged.
const XERIAL_BLOCK: usize = 32 * 1024;
/// Largest expansion a snappy block can have (64 output bytes from a 3-byte copy element),
/// rounded up, plus room for a tiny block's preamble.
const SNAPPY_MAX_RATIO: usize = 22;
const SNAPPY_SLACK: usize = 64;
/// The largest zstd window a producer's frame may ask for: 2^24 = 16 MiB covers every level up
/// to 19 (zstd-jni and librdkafka defaults are 3); the ultra levels' 128 MiB windows are refused
/// so that one request cannot make the broker reserve that much.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;
/// zstd-jni's default level, which Kafka 2.8 uses.
const ZSTD_LEVEL: i32 = 3;

/// A reader over the decompressed payload of a batch encoded with `codec`.
///
/// # Errors
/// The payload's framing is invalid at its start (a bad gzip header, a snappy length that cannot
/// be, an lz4 frame header that is wrong, a zstd window beyond [`ZSTD_WINDOW_LOG_MAX`]), or the
/// codec is one Kafka does not define.
pub fn decoder<'a>(codec: CompressionCodec, data: &'a [u8]) -> io::Result<Box<dyn BufRead + 'a>> {
    Ok(match codec {
        CompressionCodec::None => Box::new(data),
        CompressionCodec::Gzip => {
            Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(data)))
        }
        CompressionCodec::Snappy => {
            if data.starts_with(&XERIAL_MAGIC) {
                Box::new(BufReader::new(XerialReader::new(data)?))
            } else {
                Box::new(io::Cursor::new(snappy_raw_block(data)?))
            }
        }
        CompressionCodec::Lz4 => Box::new(BufReader::new(lz4_flex::frame::FrameDecoder::new(data))),
        CompressionCodec::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(data)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(BufReader::new(d))
        }
        CompressionCodec::Unknown(id) => {
            return Err(invalid(format!("unknown compression codec id {id}")));
        }
    })
}

/// `data` compressed with `codec` in the framing Kafka's Java producer writes.
///
/// # Errors
/// Only if the codec library fails on its own output buffer, or for an unknown codec.
pub fn compress(codec: CompressionCodec, data: &[u8]) -> io::Result<Vec<u8>> {
    match codec {
        CompressionCodec::None => Ok(data.to_vec()),
        CompressionCodec::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2),
                flate2::Compression::default(),
            );
            enc.write_all(data)?;
            enc.finish()
        }
        CompressionCodec::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + data.len() / 2);
            out.extend_from_slice(&XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK) {
                let compressed = enc.compress_vec(block).map_err(io::Error::other)?;
                let len = i32::try_from(compressed.len()).map_err(io::Error::other)?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        CompressionCodec::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(
                info,
                Vec::with_capacity(data.len()),
            );
            enc.write_all(data)?;
            enc.finish().map_err(io::Error::other)
        }
        CompressionCodec::Zstd => zstd::stream::encode_all(data, ZSTD_LEVEL),
        CompressionCodec::Unknown(id) => Err(invalid(format!("unknown compression codec id {id}"))),
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// One raw snappy block, expanded after its declared length was checked against what its
/// size can produce.
fn snappy_raw_block(data: &[u8]) -> io::Result<Vec<u8>> {
    let len = snap::raw::decompress_len(data).map_err(|e| invalid(format!("snappy: {e}")))?;
    let most = data
        .len()
        .saturating_mul(SNAPPY_MAX_RATIO)
        .saturating_add(SNAPPY_SLACK);
    if len > most {
        return Err(invalid(format!(
            "snappy block of {} bytes declares {len} uncompressed bytes, more than snappy can expand to",
            data.len()
        )));
    }
    snap::raw::Decoder::new()
        .decompress_vec(data)
        .map_err(|e| invalid(format!("snappy: {e}")))
}

/// The xerial snappy-java stream: after the header, blocks of `[i32 BE length][raw block]`,
/// expanded one at a time.
struct XerialReader<'a> {
    rest: &'a [u8],
    block: Vec<u8>,
    pos: usize,
}

impl<'a> XerialReader<'a> {
    fn new(data: &'a [u8]) -> io::Result<Self> {
        if data.len() < XERIAL_HEADER_LEN {
            return Err(invalid("snappy: truncated xerial stream header".into()));
        }
        Ok(XerialReader {
            rest: &data[XERIAL_HEADER_LEN..],
            block: Vec::new(),
            pos: 0,
        })
    }

    fn next_block(&mut self) -> io::Result<bool> {
        if self.rest.is_empty() {
            return Ok(false);
        }
        let Some((len_bytes, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(invalid("snappy: truncated xerial block length".into()));
        };
        let len = i32::from_be_bytes(*len_bytes);
        let len = usize::try_from(len)
            .map_err(|_| invalid(format!("snappy: negative xerial block length {len}")))?;
        if len > rest.len() {
            return Err(invalid(format!(
                "snappy: xerial block of {len} bytes but {} remain",
                rest.len()
            )));
        }
        let (block, rest) = rest.split_at(len);
        self.block = snappy_raw_block(block)?;
        self.pos = 0;
        self.rest = rest;
        Ok(true)
    }
}

impl Read for XerialReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [CompressionCodec; 5] = [
        CompressionCodec::None,
        CompressionCodec::Gzip,
        CompressionCodec::Snappy,
        CompressionCodec::Lz4,
        CompressionCodec::Zstd,
    ];

    fn expand(codec: CompressionCodec, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decoder(codec, data)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn every_codec_round_trips_across_block_boundaries() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect();
        for codec in ALL {
            let packed = compress(codec, &data).unwrap();
            assert_eq!(expand(codec, &packed).unwrap(), data, "{codec:?}");
        }
    }

    #[test]
    fn xerial_stream_has_snappy_java_header_and_blocks() {
        let data = vec![7u8; 70_000];
        let packed = compress(CompressionCodec::Snappy, &data).unwrap();
        assert_eq!(&packed[..8], &XERIAL_MAGIC);
        assert_eq!(&packed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        // 70,000 bytes in 32 KiB blocks: three blocks.
        let mut rest = &packed[16..];
        let mut blocks = 0;
        while !rest.is_empty() {
            let len = i32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            rest = &rest[4 + len..];
            blocks += 1;
        }
        assert_eq!(blocks, 3);
    }

    #[test]
    fn raw_snappy_block_as_librdkafka_writes_it_is_read() {
        let data = b"hello hello hello hello raw snappy".repeat(50);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(expand(CompressionCodec::Snappy, &raw).unwrap(), data);
    }

    #[test]
    fn a_snappy_length_beyond_what_the_block_can_hold_is_refused_before_allocating() {
        // Varint 0xFFFFFFFF (4 GiB) followed by two bytes of "data".
        let lie = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x01];
        let err = expand(CompressionCodec::Snappy, &lie).unwrap_err();
        assert!(
            err.to_string().contains("more than snappy can expand"),
            "{err}"
        );
    }

    #[test]
    fn garbage_fails_with_an_error_for_every_codec() {
        let garbage: Vec<u8> = (0..300u32).map(|i| (i * 37 % 256) as u8).collect();
        for codec in &ALL[1..] {
            assert!(expand(*codec, &garbage).is_err(), "{codec:?}");
        }
    }

    #[test]
    fn lz4_frame_uses_independent_64k_blocks() {
        let packed = compress(CompressionCodec::Lz4, b"abc").unwrap();
        assert_eq!(&packed[..4], &0x184D_2204u32.to_le_bytes());
        // FLG: version 01, block independence set; BD: 64 KiB max block size (4).
        assert_eq!(packed[4] & 0xC0, 0x40);
        assert_ne!(packed[4] & 0x20, 0);
        assert_eq!((packed[5] >> 4) & 0x07, 4);
    }
}
