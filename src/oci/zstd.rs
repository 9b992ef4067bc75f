//! Deterministic zstd on every core: one zstd frame written by libzstd's own worker
//! threads.
//!
//! libzstd (1.5.7, built from the sources vendored by the pinned `zstd-sys`) cuts the
//! input into jobs of [`JOB_SIZE`] bytes, each primed with the last part of the previous
//! one ([`OVERLAP_LOG`]), and compresses the jobs in parallel. The job boundaries depend
//! only on these parameters, so the bytes are the same for 1 or 16 workers and any
//! pattern of writes. Multi-threaded mode is always on (at least one worker, even on one
//! core): libzstd's single-threaded path (`nbWorkers` 0) and its one-shot
//! `ZSTD_compress` make different bytes from the same input. Measured on real Debian
//! libraries, one frame with 4 MiB jobs is within 0.3 % of single-threaded zstd's size.
//!
//! Compression only: it writes to the writer it wraps and touches no file.

use std::io::{self, Write};

use zstd::stream::write::Encoder;
use zstd::zstd_safe::CParameter;

/// Uncompressed bytes per job. Part of the output format: changing it changes every
/// zstd layer digest.
pub const JOB_SIZE: u32 = 4 << 20;

/// How much of the window each job reloads from the one before, as libzstd's
/// `ZSTD_c_overlapLog` (6: an eighth of the window, libzstd's own choice at level 3).
/// Part of the output format.
pub const OVERLAP_LOG: u32 = 6;

/// The libzstd release every zstd layer is made with (`ZSTD_versionNumber`): another
/// release may choose other matches and so other bytes.
pub const LIBZSTD_VERSION: u32 = 10507;

/// At most this many worker threads, whatever the machine.
const MAX_WORKERS: usize = 16;

/// A zstd frame writer compressing jobs in parallel; call [`ZstdWriter::finish`].
pub struct ZstdWriter<W: Write> {
    encoder: Encoder<'static, W>,
}

impl<W: Write> ZstdWriter<W> {
    /// A writer at `level` on as many workers as the machine has cores.
    pub fn new(out: W, level: i32) -> io::Result<ZstdWriter<W>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ZstdWriter::with_workers(out, level, cores)
    }

    /// A writer with exactly `workers` compression threads (clamped to 1–16). The output
    /// is the same for every number of workers.
    pub fn with_workers(out: W, level: i32, workers: usize) -> io::Result<ZstdWriter<W>> {
        let mut encoder = Encoder::new(out, level)?;
        encoder.multithread(workers.clamp(1, MAX_WORKERS) as u32)?;
        encoder.set_parameter(CParameter::JobSize(JOB_SIZE))?;
        encoder.set_parameter(CParameter::OverlapSizeLog(OVERLAP_LOG))?;
        // A content checksum per frame: a damaged blob fails to decode.
        encoder.include_checksum(true)?;
        Ok(ZstdWriter { encoder })
    }

    /// End the frame and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.encoder.finish()
    }
}

impl<W: Write> Write for ZstdWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.encoder.write(data)
    }

    /// Job boundaries are cut by size only; a flush is not passed to libzstd (which would
    /// end a block early and make the bytes depend on the caller's flushes).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::Read;

    use crate::oci::tests::text_like as sample;

    fn zstd(data: &[u8], level: i32, workers: usize, piece: usize) -> Vec<u8> {
        let mut w = ZstdWriter::with_workers(Vec::new(), level, workers).unwrap();
        for chunk in data.chunks(piece.max(1)) {
            w.write_all(chunk).unwrap();
            w.flush().unwrap();
        }
        w.finish().unwrap()
    }

    fn unzstd(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::compression::decoder(
            z,
            crate::compression::Compression::Zstd,
            &crate::compression::DecodeOptions::CHECKED,
        )
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
        out
    }

    /// `ZSTD_SYS_USE_PKG_CONFIG` in the environment makes zstd-sys link the system
    /// libzstd instead of the pinned one: the bytes of every zstd layer would change.
    #[test]
    fn links_the_pinned_libzstd() {
        assert_eq!(zstd::zstd_safe::version_number(), LIBZSTD_VERSION);
    }

    #[test]
    fn round_trips_at_every_size() {
        for len in [0, 1, 1000, JOB_SIZE as usize - 1, JOB_SIZE as usize + 1] {
            let data = sample(len);
            assert_eq!(unzstd(&zstd(&data, 3, 2, 65536)), data, "length {len}");
        }
    }

    /// The bytes of a multi-job input (three jobs) with 1, 2 and 16 workers and writes of
    /// several sizes, at the two levels offered by name: the same, and the golden value.
    /// Any change of output bytes must be a conscious update of these values.
    #[test]
    fn golden_digests_do_not_depend_on_workers_or_write_sizes() {
        let data = sample(2 * JOB_SIZE as usize + 4321);
        let mut digests = Vec::new();
        for level in [3, 9] {
            let reference = zstd(&data, level, 1, data.len());
            for (workers, piece) in [(2, 100_003), (16, 4096), (1, 1001)] {
                assert!(
                    zstd(&data, level, workers, piece) == reference,
                    "level {level}, {workers} workers, writes of {piece} bytes"
                );
            }
            digests.push(hex::encode(Sha256::digest(&reference)));
        }
        assert_eq!(
            digests,
            [
                "8395e6c64b9ff58fadbb20dcc6d8da281d06d9270ec7f1966edf0d40346aae43",
                "42b10a0dc3a0743e72ee0fd112aed1fdefe78720fd083ef6717b5cc66effa0f7",
            ]
        );
    }

    #[test]
    fn starts_with_the_frame_magic() {
        assert_eq!(zstd(b"x", 3, 1, 1)[..4], [0x28, 0xb5, 0x2f, 0xfd]);
    }
}
