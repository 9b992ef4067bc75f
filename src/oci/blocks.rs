//! Compress fixed blocks on every core and write them in input order: [`BlockWriter`].
//!
//! The input is cut into blocks of [`BLOCK`] bytes by size alone (never by the caller's
//! writes or flushes). Each block is compressed by a worker thread as a pure function of
//! its bytes, its index and whether it is the last ([`BlockCodec::block`]); the results
//! are written in input order between the codec's header and trailer. So the output
//! depends only on the input and the codec — not on the number of threads, the machine or
//! how the input was written — which is what lets a layer digest be reproduced anywhere.
//!
//! Owns the threads, the bounded queue and the ordering. It knows no compression format
//! (that is each [`BlockCodec`]: `super::gzip`) and touches no file.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Uncompressed bytes per block. Part of every block format's output: changing it
/// changes every layer digest.
pub const BLOCK: usize = 1 << 20;

/// At most this many worker threads, whatever the machine.
const MAX_WORKERS: usize = 16;

/// One block format: how a block is compressed, and what goes before and after them.
pub trait BlockCodec: Clone + Send + 'static {
    /// What a worker keeps between blocks (a compressor's tables).
    type Worker;
    /// Name of the worker threads (`gzip`).
    const NAME: &'static str;
    /// A worker's state, made on its thread.
    fn worker(&self) -> Self::Worker;
    /// Block `index` compressed; `last` is set on the final block only, which may be
    /// empty (the input ended on a block boundary, or was empty).
    fn block(
        &self,
        worker: &mut Self::Worker,
        index: u64,
        input: &[u8],
        last: bool,
    ) -> io::Result<Vec<u8>>;
    /// Bytes before the first block.
    fn header(&self) -> &'static [u8];
    /// Bytes after the last block, from the CRC-32 and length of the whole input.
    fn trailer(&self, crc: u32, len: u64) -> Vec<u8>;
}

type Job = (u64, Vec<u8>, bool);
type Done = (u64, io::Result<Vec<u8>>);

/// A writer compressing blocks in parallel; call [`BlockWriter::finish`].
pub struct BlockWriter<W: Write, C: BlockCodec> {
    out: W,
    codec: C,
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

impl<W: Write, C: BlockCodec> BlockWriter<W, C> {
    /// A writer on as many workers as the machine has cores.
    pub fn new(out: W, codec: C) -> BlockWriter<W, C> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        BlockWriter::with_workers(out, codec, cores)
    }

    /// A writer with exactly `workers` compression threads (clamped to 1–16). The output
    /// is the same for every number of workers.
    pub fn with_workers(out: W, codec: C, workers: usize) -> BlockWriter<W, C> {
        BlockWriter {
            out,
            codec,
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
                let codec = self.codec.clone();
                let t = std::thread::Builder::new()
                    .name(format!("{}-{i}", C::NAME))
                    .spawn(move || {
                        let mut state = codec.worker();
                        loop {
                            let job = job_rx.lock().map(|rx| rx.recv());
                            let Ok(Ok((n, input, last))) = job else {
                                return;
                            };
                            let out = codec.block(&mut state, n, &input, last);
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
            self.out.write_all(self.codec.header())?;
            self.header_written = true;
        }
        Ok(())
    }

    fn ended(&self) -> io::Error {
        io::Error::other(format!("{} worker threads ended unexpectedly", C::NAME))
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
        jobs.send((n, input, last)).map_err(|_| self.ended())?;
        self.submitted += 1;
        self.drain_ready()
    }

    /// Wait for one compressed block, then write every block that is next in order.
    fn receive_one(&mut self) -> io::Result<()> {
        let pool = self.pool.as_mut().expect("blocks were submitted");
        let received = pool.done.recv();
        let (n, out) = received.map_err(|_| self.ended())?;
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

    /// Compress what is left (the last block, possibly empty), write the trailer and
    /// return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.written < self.submitted {
            self.receive_one()?;
        }
        self.write_header()?;
        let crc = std::mem::take(&mut self.crc).finalize();
        let trailer = self.codec.trailer(crc, self.len);
        self.out.write_all(&trailer)?;
        self.pool.take();
        let BlockWriter { out, .. } = self;
        Ok(out)
    }
}

impl<W: Write, C: BlockCodec> Write for BlockWriter<W, C> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A codec that shows what each block saw: its index, length and `last`; a block
    /// starting with `!` fails.
    #[derive(Clone)]
    struct Show;

    impl BlockCodec for Show {
        type Worker = ();
        const NAME: &'static str = "show";
        fn worker(&self) {}
        fn block(&self, _: &mut (), n: u64, input: &[u8], last: bool) -> io::Result<Vec<u8>> {
            if input.first() == Some(&b'!') {
                return Err(io::Error::other("a block failed"));
            }
            Ok(format!("[{n}:{}:{last}]", input.len()).into_bytes())
        }
        fn header(&self) -> &'static [u8] {
            b"H"
        }
        fn trailer(&self, crc: u32, len: u64) -> Vec<u8> {
            format!("T{crc:08x}:{len}").into_bytes()
        }
    }

    fn run(len: usize, workers: usize, piece: usize) -> String {
        let data = vec![b'x'; len];
        let mut w = BlockWriter::with_workers(Vec::new(), Show, workers);
        for chunk in data.chunks(piece.max(1)) {
            w.write_all(chunk).unwrap();
        }
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    #[test]
    fn blocks_are_cut_by_size_and_written_in_order() {
        let crc = |n| crc32fast::hash(&vec![b'x'; n]);
        assert_eq!(run(0, 2, 1), format!("H[0:0:true]T{:08x}:0", crc(0)));
        assert_eq!(
            run(BLOCK, 3, 4096),
            format!("H[0:{BLOCK}:false][1:0:true]T{:08x}:{BLOCK}", crc(BLOCK))
        );
        let len = 5 * BLOCK + 7;
        let mut want = String::from("H");
        for n in 0..5 {
            want.push_str(&format!("[{n}:{BLOCK}:false]"));
        }
        want.push_str(&format!("[5:7:true]T{:08x}:{len}", crc(len)));
        for (workers, piece) in [(1, len), (2, 100_003), (16, 1 << 20)] {
            assert_eq!(run(len, workers, piece), want, "{workers} workers");
        }
    }

    #[test]
    fn a_failed_block_fails_the_writer() {
        let mut w = BlockWriter::with_workers(Vec::new(), Show, 2);
        // The error comes back with a later write or with finish, whichever sees it.
        let e = match w.write_all(&vec![b'!'; 3 * BLOCK]) {
            Err(e) => e,
            Ok(()) => w.finish().unwrap_err(),
        };
        assert_eq!(e.to_string(), "a block failed");
    }

    #[test]
    fn dropping_unfinished_stops_the_workers() {
        let mut w = BlockWriter::with_workers(Vec::new(), Show, 2);
        w.write_all(&vec![b'x'; 3 * BLOCK]).unwrap();
        drop(w); // must not hang
    }
}
