//! Deterministic gzip on every core.
//!
//! The input is cut into fixed blocks of [`BLOCK`] bytes. Each block is deflated on its
//! own by a worker thread (raw deflate with miniz_oxide, no preset dictionary), ended by
//! a sync flush so that the next block starts on a byte boundary; the last block ends
//! the stream. The compressed blocks are written in input order behind one gzip header,
//! followed by the CRC-32 and length of the whole input: a single gzip member that any
//! gunzip reads. The bytes depend only on the input and the level — never on the
//! number of threads, the machine, or how the caller split its writes — which is what
//! lets an image digest be reproduced anywhere.
//!
//! This is pigz's block layout without its dictionary priming (miniz_oxide has no
//! preset dictionary). Measured on a 12.6 MB layer of real Debian libraries: 1 MiB
//! blocks cost +0.1 % of size against one stream (ratio 0.3922 vs 0.3918 at level 6)
//! and compress 1.9× faster on 2 cores.
//!
//! Compression only: it writes to the writer it wraps and touches no file.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Uncompressed bytes per independently deflated block. Part of the output format:
/// changing it changes every layer digest.
pub const BLOCK: usize = 1 << 20;

/// The OS byte of the gzip header: 255, "unknown" (RFC 1952), whatever the host.
const GZIP_OS: u8 = 255;

/// At most this many worker threads, whatever the machine.
const MAX_WORKERS: usize = 16;

type Job = (u64, Vec<u8>, bool);
type Done = (u64, io::Result<Vec<u8>>);

/// A gzip stream writer compressing blocks in parallel; call [`GzWriter::finish`].
pub struct GzWriter<W: Write> {
    out: W,
    level: u32,
    workers: usize,
    /// Input of the block being filled.
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
    /// Blocks handed to workers, and blocks written to `out`.
    submitted: u64,
    written: u64,
    /// Compressed blocks that came back before the ones preceding them.
    ready: BTreeMap<u64, Vec<u8>>,
    pool: Option<Pool>,
    header_written: bool,
}

struct Pool {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the job queue ends the workers; results still queued are dropped.
        self.jobs.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl<W: Write> GzWriter<W> {
    /// A writer at `level` (0–9) on as many workers as the machine has cores.
    pub fn new(out: W, level: u32) -> GzWriter<W> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        GzWriter::with_workers(out, level, cores)
    }

    /// A writer with exactly `workers` compression threads (at least one). The output
    /// is the same for every number of workers.
    pub fn with_workers(out: W, level: u32, workers: usize) -> GzWriter<W> {
        GzWriter {
            out,
            level: level.min(9),
            workers: workers.clamp(1, MAX_WORKERS),
            buf: Vec::with_capacity(BLOCK),
            crc: crc32fast::Hasher::new(),
            len: 0,
            submitted: 0,
            written: 0,
            ready: BTreeMap::new(),
            pool: None,
            header_written: false,
        }
    }

    fn pool(&mut self) -> io::Result<&mut Pool> {
        if self.pool.is_none() {
            // Bounded queues: at most two blocks per worker wait or are in flight, so
            // memory stays a few MiB whatever the input size.
            let (jobs, job_rx) = mpsc::sync_channel::<Job>(self.workers);
            let (done_tx, done) = mpsc::channel::<Done>();
            let job_rx = Arc::new(Mutex::new(job_rx));
            let mut threads = Vec::with_capacity(self.workers);
            for i in 0..self.workers {
                let job_rx = Arc::clone(&job_rx);
                let done_tx = done_tx.clone();
                let level = self.level;
                let t = std::thread::Builder::new()
                    .name(format!("gzip-{i}"))
                    .spawn(move || {
                        let mut c = Compress::new(Compression::new(level), false);
                        loop {
                            let job = job_rx.lock().map(|rx| rx.recv());
                            let Ok(Ok((n, input, last))) = job else {
                                return;
                            };
                            let out = deflate_block(&mut c, &input, last);
                            if done_tx.send((n, out)).is_err() {
                                return;
                            }
                        }
                    })?;
                threads.push(t);
            }
            self.pool = Some(Pool {
                jobs: Some(jobs),
                done,
                threads,
            });
        }
        Ok(self.pool.as_mut().expect("just made"))
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS
            self.out
                .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, GZIP_OS])?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Hand the filled block to the workers; write whatever is ready in order.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let input = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let n = self.submitted;
        // Keep at most 2 × workers blocks outstanding: wait for the oldest first.
        while self.submitted - self.written >= 2 * self.workers as u64 {
            self.receive_one()?;
        }
        let jobs = self
            .pool()?
            .jobs
            .clone()
            .expect("the queue is open until drop");
        jobs.send((n, input, last))
            .map_err(|_| io::Error::other("gzip worker threads ended unexpectedly"))?;
        self.submitted += 1;
        self.drain_ready()
    }

    /// Wait for one compressed block, then write every block that is next in order.
    fn receive_one(&mut self) -> io::Result<()> {
        let pool = self.pool.as_mut().expect("blocks were submitted");
        let (n, out) = pool
            .done
            .recv()
            .map_err(|_| io::Error::other("gzip worker threads ended unexpectedly"))?;
        self.ready.insert(n, out?);
        self.drain_ready()
    }

    fn drain_ready(&mut self) -> io::Result<()> {
        if !self.ready.contains_key(&self.written) {
            return Ok(());
        }
        self.write_header()?;
        while let Some(block) = self.ready.remove(&self.written) {
            self.out.write_all(&block)?;
            self.written += 1;
        }
        Ok(())
    }

    /// Compress what is left, write the gzip trailer and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.written < self.submitted {
            self.receive_one()?;
        }
        self.write_header()?;
        let crc = std::mem::take(&mut self.crc).finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        // ISIZE: the input length modulo 2^32 (RFC 1952).
        self.out.write_all(&(self.len as u32).to_le_bytes())?;
        self.pool.take();
        let GzWriter { out, .. } = self;
        Ok(out)
    }
}

impl<W: Write> Write for GzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.buf.len();
        let take = room.min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        self.crc.update(&data[..take]);
        self.len += take as u64;
        if self.buf.len() == BLOCK {
            self.submit(false)?;
        }
        Ok(take)
    }

    /// Blocks are cut by size only: flushing does not end one early (that would make
    /// the bytes depend on the caller's flushes).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raw-deflate `input` as one block: ended by a sync flush (so the next block starts on
/// a byte boundary), or, when `last`, by the end of the stream.
fn deflate_block(c: &mut Compress, input: &[u8], last: bool) -> io::Result<Vec<u8>> {
    c.reset();
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    let mut consumed = 0usize;
    loop {
        let before = c.total_in();
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
        consumed += (c.total_in() - before) as usize;
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete when all input is taken and the output was not
            // filled (zlib's rule: avail_out != 0 after the call).
            _ if !last && consumed == input.len() && room_left => break,
            _ => out.reserve(out.capacity().max(64 * 1024)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Not very compressible, not random: text-like bytes with repeats.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 7 == 0 {
                    b'a' + (x >> 24) as u8 % 26
                } else {
                    b"compose layer "[(i / 3) % 14]
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], workers: usize, piece: usize) -> Vec<u8> {
        let mut w = GzWriter::with_workers(Vec::new(), 6, workers);
        for chunk in data.chunks(piece.max(1)) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        // GzDecoder reads one member only: the output must be exactly one.
        let mut d = flate2::read::GzDecoder::new(gz);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn round_trips_as_one_member_at_every_size() {
        for len in [
            0,
            1,
            1000,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK,
            3 * BLOCK + 77,
        ] {
            let data = sample(len);
            let gz = gzip(&data, 3, 64 * 1024);
            assert_eq!(gunzip(&gz), data, "length {len}");
            // The trailer: CRC-32 and length of the input.
            let t = &gz[gz.len() - 8..];
            assert_eq!(t[..4], crc32fast::hash(&data).to_le_bytes());
            assert_eq!(t[4..], (len as u32).to_le_bytes());
        }
    }

    #[test]
    fn bytes_do_not_depend_on_workers_or_write_sizes() {
        let data = sample(3 * BLOCK + 4321);
        let reference = gzip(&data, 1, data.len());
        for (workers, piece) in [(1, 1 << 12), (2, 100_003), (4, 1 << 20), (16, 7)] {
            assert_eq!(
                gzip(&data, workers, piece),
                reference,
                "{workers} workers, writes of {piece} bytes"
            );
        }
    }

    /// The multi-block layout is part of every image digest larger than one block (the
    /// pipeline's golden digest covers a one-block layer): any change of output bytes
    /// must be a conscious update of this value.
    #[test]
    fn golden_multi_block_digest() {
        use sha2::{Digest, Sha256};
        let gz = gzip(&sample(3 * BLOCK + 4321), 2, 65536);
        assert_eq!(
            hex::encode(Sha256::digest(&gz)),
            "3c920f41ba29a01d9da16fda4a79a112269c8653cc46a7cb9fe17eb5c9bd8350"
        );
    }

    #[test]
    fn header_is_fixed() {
        let gz = gzip(b"x", 2, 1);
        assert_eq!(gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn ratio_close_to_one_stream() {
        let data = sample(4 * BLOCK);
        let blocks = gzip(&data, 2, 1 << 16).len() as f64;
        let mut one = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        one.write_all(&data).unwrap();
        let one = one.finish().unwrap().len() as f64;
        assert!(blocks / one < 1.01, "blocks {blocks} vs one stream {one}");
    }

    #[test]
    fn dropping_unfinished_stops_the_workers() {
        let mut w = GzWriter::with_workers(Vec::new(), 6, 2);
        w.write_all(&sample(3 * BLOCK)).unwrap();
        drop(w); // must not hang
    }
}
