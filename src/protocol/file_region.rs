//! Record data as a byte range of an open segment file, and a response as a list of chunks that
//! are either bytes in memory or such a range. Fetch responses carry their records this way
//! (Kafka's `FileRecords`), so the network layer sends them with `sendfile(2)` from the page
//! cache: no buffer is allocated, zeroed or filled per partition, whatever the response size,
//! and a client that stops reading holds no memory. Only readers that must parse records (the
//! group coordinator's loader, tests) copy a range into memory, with [`FileRegion::read`].
//!
//! A region names bytes that were complete when it was taken. The file can only grow at its end
//! or be cut by a follower's truncation; a cut shows as a short read (here) or a short send (in
//! the network layer), and both are errors, never silently shorter records: Kafka closes the
//! connection in that case too.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// `len` bytes of `file` from `pos`; the empty region needs no file.
#[derive(Debug, Clone, Default)]
pub struct FileRegion {
    source: Option<(Arc<File>, u64)>,
    len: usize,
}

impl FileRegion {
    pub fn new(file: Arc<File>, pos: u64, len: usize) -> Self {
        if len == 0 {
            return Self::default();
        }
        Self {
            source: Some((file, pos)),
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file and the offset of the first byte, if the region is not empty.
    pub fn source(&self) -> Option<(&File, u64)> {
        self.source.as_ref().map(|(f, pos)| (f.as_ref(), *pos))
    }

    /// The region's bytes, copied into memory. A file that now ends inside the region (it was
    /// truncated meanwhile) is an `UnexpectedEof` error.
    pub fn read(&self) -> std::io::Result<Bytes> {
        let Some((file, pos)) = &self.source else {
            return Ok(Bytes::new());
        };
        let mut buf = BytesMut::zeroed(self.len);
        file.read_exact_at(&mut buf, *pos)?;
        Ok(buf.freeze())
    }
}

/// One piece of a response frame.
#[derive(Debug, Clone)]
pub enum Chunk {
    Mem(Bytes),
    File(FileRegion),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Mem(b) => b.len(),
            Chunk::File(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The chunks as one buffer (file ranges read), for readers that need the whole frame in memory:
/// tests and in-process callers of the dispatcher.
pub fn concat(chunks: &[Chunk]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(chunks.iter().map(Chunk::len).sum());
    for c in chunks {
        match c {
            Chunk::Mem(b) => out.extend_from_slice(b),
            Chunk::File(r) => out.extend_from_slice(&r.read()?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, Arc<File>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.log");
        File::create(&path).unwrap().write_all(bytes).unwrap();
        (dir, Arc::new(File::open(&path).unwrap()))
    }

    #[test]
    fn reads_exactly_its_range() {
        let (_d, f) = file_with(b"0123456789");
        let r = FileRegion::new(f, 3, 4);
        assert_eq!(r.len(), 4);
        assert_eq!(&r.read().unwrap()[..], b"3456");
        let chunks = [Chunk::Mem(Bytes::from_static(b"ab")), Chunk::File(r)];
        assert_eq!(concat(&chunks).unwrap(), b"ab3456");
    }

    #[test]
    fn a_file_cut_inside_the_region_is_an_error_not_fewer_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.log");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (&f).write_all(b"0123456789").unwrap();
        let f = Arc::new(f);
        let r = FileRegion::new(Arc::clone(&f), 6, 4);
        assert_eq!(&r.read().unwrap()[..], b"6789");
        f.set_len(8).unwrap();
        let err = r.read().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn the_empty_region_has_no_file() {
        let (_d, f) = file_with(b"x");
        assert!(FileRegion::new(f, 0, 0).source().is_none());
        assert!(FileRegion::default().read().unwrap().is_empty());
    }
}
