//! Sequential batch-header scanning over a segment file through one reusable window buffer,
//! so walking many small batches costs a few large `pread`s rather than one per header.
//! Used by offset translation on the read path and by recovery, which also checks CRCs.

use crate::protocol::batch::{BatchHeader, HEADER_LEN};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Why a scan stopped before the end of the data.
#[derive(Debug)]
pub(crate) enum ScanError {
    Io(io::Error),
    /// The bytes at `position` are not a valid, complete batch.
    Corrupt {
        position: u64,
        reason: String,
    },
}

impl From<io::Error> for ScanError {
    fn from(e: io::Error) -> Self {
        ScanError::Io(e)
    }
}

pub(crate) struct Scanner<'a> {
    file: &'a File,
    /// Bytes of the file to consider; anything after is ignored (e.g. a concurrent append).
    end: u64,
    buf: Vec<u8>,
    buf_pos: u64,
    cap: usize,
}

/// Window for the read path: one header. Only headers are copied while locating a batch,
/// as in Kafka, so the fetch path copies record data exactly once.
pub(crate) const READ_WINDOW: usize = HEADER_LEN;
/// Window for recovery, which streams whole segments.
pub(crate) const RECOVERY_WINDOW: usize = 1024 * 1024;

/// `pread` until `buf` is full or the file ends; returns the bytes read.
pub(crate) fn read_fully_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(file: &'a File, end: u64, cap: usize) -> Scanner<'a> {
        Scanner {
            file,
            end,
            buf: Vec::new(),
            buf_pos: 0,
            cap: cap.max(HEADER_LEN),
        }
    }

    /// Returns up to `len` (≤ cap) bytes at `pos`, fewer only at the end of the data.
    fn window(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let len = len.min(self.cap);
        let buffered_end = self.buf_pos + self.buf.len() as u64;
        let wanted_end = pos.saturating_add(len as u64).min(self.end);
        if pos < self.buf_pos || wanted_end > buffered_end {
            let to_read = self.end.saturating_sub(pos).min(self.cap as u64) as usize;
            self.buf.resize(to_read, 0);
            let n = read_fully_at(self.file, &mut self.buf, pos)?;
            self.buf.truncate(n);
            self.buf_pos = pos;
        }
        let start = (pos - self.buf_pos) as usize;
        let stop = (start + len).min(self.buf.len());
        Ok(self.buf.get(start..stop).unwrap_or(&[]))
    }

    /// Parses the header of the batch at `pos` and checks that the whole batch lies before
    /// the end. `Ok(None)` exactly at the end.
    pub(crate) fn header_at(&mut self, pos: u64) -> Result<Option<BatchHeader>, ScanError> {
        if pos >= self.end {
            return Ok(None);
        }
        let end = self.end;
        let bytes = self.window(pos, HEADER_LEN)?;
        let header = BatchHeader::parse(bytes).map_err(|e| ScanError::Corrupt {
            position: pos,
            reason: e.to_string(),
        })?;
        let batch_end = pos.saturating_add(header.total_size() as u64);
        if batch_end > end {
            return Err(ScanError::Corrupt {
                position: pos,
                reason: format!(
                    "batch of {} bytes runs past the end of the data at {end}",
                    header.total_size()
                ),
            });
        }
        Ok(Some(header))
    }

    /// Verifies the CRC of the batch at `pos` (whose header was read by `header_at`),
    /// streaming through the window so a huge batch needs no huge buffer.
    pub(crate) fn verify_crc(&mut self, pos: u64, header: &BatchHeader) -> Result<(), ScanError> {
        // CRC covers [21, total_size) of the batch.
        let mut at = pos + 21;
        let stop = pos + header.total_size() as u64;
        let mut crc = 0u32;
        while at < stop {
            let want = (stop - at).min(self.cap as u64) as usize;
            let chunk = self.window(at, want)?;
            if chunk.is_empty() {
                return Err(ScanError::Corrupt {
                    position: pos,
                    reason: "file ended inside a batch".into(),
                });
            }
            crc = crc32c::crc32c_append(crc, chunk);
            at += chunk.len() as u64;
        }
        if crc != header.crc {
            return Err(ScanError::Corrupt {
                position: pos,
                reason: format!(
                    "CRC mismatch: stored {:#010x}, computed {crc:#010x}",
                    header.crc
                ),
            });
        }
        Ok(())
    }

    /// From `pos`, the first batch whose last offset is ≥ `target`, with its position.
    pub(crate) fn find_batch(
        &mut self,
        mut pos: u64,
        target: i64,
    ) -> Result<Option<(u64, BatchHeader)>, ScanError> {
        while let Some(header) = self.header_at(pos)? {
            if header.last_offset() >= target {
                return Ok(Some((pos, header)));
            }
            pos += header.total_size() as u64;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::build_batch;

    #[test]
    fn walks_headers_and_verifies_crc_with_small_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut data = Vec::new();
        for i in 0..20 {
            let v = vec![i as u8; 100 + i];
            data.extend_from_slice(&build_batch(i as i64, 0, &[(None, Some(&v))]));
        }
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let mut s = Scanner::new(&file, data.len() as u64, 64);
        let mut pos = 0;
        let mut n = 0;
        while let Some(h) = s.header_at(pos).unwrap() {
            s.verify_crc(pos, &h).unwrap();
            assert_eq!(h.base_offset, n);
            pos += h.total_size() as u64;
            n += 1;
        }
        assert_eq!(n, 20);
        let (p, h) = s.find_batch(0, 7).unwrap().unwrap();
        assert_eq!(h.base_offset, 7);
        assert!(p > 0);
        assert!(s.find_batch(0, 20).unwrap().is_none());

        let mut short = Scanner::new(&file, data.len() as u64 - 1, 4096);
        let last = short.find_batch(0, 19);
        assert!(matches!(last, Err(ScanError::Corrupt { .. })));
    }
}
