//! gzip layers: the two block formats [`Members`] and [`MinizStream`], written on every
//! core by [`super::blocks::BlockWriter`].
//!
//! - [`Members`] (`gzip:LEVEL`, the default): each block of [`BLOCK`] bytes is its own
//!   gzip member (RFC 1952 allows any number in one file), raw deflate by libdeflate 1.26
//!   (vendored and pinned through `libdeflater`), between a fixed header and the block's
//!   own CRC-32 and length. A block's bytes are a pure function of its input and the
//!   level. Measured on 30 MB of real shared libraries: about 4× less CPU than
//!   [`MinizStream`] at the same level and 2–3 % smaller; the members cost 18 bytes per
//!   MiB. Every gunzip reads them (GNU gzip, Go's `compress/gzip` in skopeo and
//!   containerd, Python, flate2's `MultiGzDecoder`).
//! - [`MinizStream`] (`gzip-miniz:LEVEL`): compose's gzip before libdeflate, kept so that
//!   an image built then rebuilds to the same bytes (a lock of format 1 says `gzip`
//!   and means this). One member: blocks raw-deflated by miniz_oxide, each ended by a
//!   sync flush so that the next starts on a byte boundary (pigz's layout without its
//!   dictionary priming), behind one header and the whole input's CRC-32 and length.
//!
//! Compression only: it writes to the writer it wraps and touches no file.

use std::io;

use flate2::{Compress, Compression, FlushCompress, Status};

pub use super::blocks::BLOCK;
use super::blocks::{BlockCodec, BlockWriter};

/// The libdeflate release every [`Members`] layer is made with (pinned in Cargo.toml):
/// another release may choose other matches and so other bytes.
pub const LIBDEFLATE_VERSION: &str = "1.26";

/// The highest level of [`Members`] (libdeflate's slowest, smallest).
pub const MEMBERS_MAX_LEVEL: u32 = 12;

/// A gzip header with no name, no time and no extra flags; OS 255, "unknown" (RFC 1952),
/// whatever the host.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// A gzip writer of [`Members`].
pub type GzWriter<W> = BlockWriter<W, Members>;
/// A gzip writer of [`MinizStream`].
pub type MinizGzWriter<W> = BlockWriter<W, MinizStream>;

/// One gzip member per block, deflated by libdeflate at a level of 1–12.
#[derive(Debug, Clone, Copy)]
pub struct Members {
    level: i32,
}

impl Members {
    /// At `level`, clamped to 1–[`MEMBERS_MAX_LEVEL`].
    pub fn new(level: u32) -> Members {
        Members {
            level: level.clamp(1, MEMBERS_MAX_LEVEL) as i32,
        }
    }
}

impl BlockCodec for Members {
    type Worker = libdeflater::Compressor;
    const NAME: &'static str = "gzip";

    fn worker(&self) -> libdeflater::Compressor {
        let level = libdeflater::CompressionLvl::new(self.level)
            .expect("Members::new keeps the level in libdeflate's range");
        libdeflater::Compressor::new(level)
    }

    fn block(
        &self,
        c: &mut libdeflater::Compressor,
        index: u64,
        input: &[u8],
        _last: bool,
    ) -> io::Result<Vec<u8>> {
        // An input ending on a block boundary ends with an empty last block: nothing to
        // add. An empty input still needs one member (an empty file is not gzip).
        if input.is_empty() && index > 0 {
            return Ok(Vec::new());
        }
        let bound = c.deflate_compress_bound(input.len());
        let mut out = vec![0; HEADER.len() + bound + 8];
        out[..HEADER.len()].copy_from_slice(&HEADER);
        let n = c
            .deflate_compress(input, &mut out[HEADER.len()..HEADER.len() + bound])
            .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
        out.truncate(HEADER.len() + n);
        out.extend_from_slice(&crc32fast::hash(input).to_le_bytes());
        // ISIZE: the block's length (below 2^32: a block is 1 MiB).
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        Ok(out)
    }

    fn header(&self) -> &'static [u8] {
        b""
    }

    fn trailer(&self, _crc: u32, _len: u64) -> Vec<u8> {
        Vec::new()
    }
}

/// One gzip member of miniz_oxide blocks at a level of 1–9.
#[derive(Debug, Clone, Copy)]
pub struct MinizStream {
    level: u32,
}

impl MinizStream {
    /// At `level`, clamped to 0–9.
    pub fn new(level: u32) -> MinizStream {
        MinizStream {
            level: level.min(9),
        }
    }
}

impl BlockCodec for MinizStream {
    type Worker = Compress;
    const NAME: &'static str = "gzip";

    fn worker(&self) -> Compress {
        Compress::new(Compression::new(self.level), false)
    }

    fn block(&self, c: &mut Compress, _: u64, input: &[u8], last: bool) -> io::Result<Vec<u8>> {
        deflate_block(c, input, last)
    }

    fn header(&self) -> &'static [u8] {
        &HEADER
    }

    fn trailer(&self, crc: u32, len: u64) -> Vec<u8> {
        let mut t = crc.to_le_bytes().to_vec();
        // ISIZE: the input length modulo 2^32 (RFC 1952).
        t.extend_from_slice(&(len as u32).to_le_bytes());
        t
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
    use std::io::{Read, Write};

    use crate::oci::tests::text_like as sample;

    /// `data` compressed at level 6 by `workers` threads, written `piece` bytes at a time.
    fn compress<C: BlockCodec>(codec: C, data: &[u8], workers: usize, piece: usize) -> Vec<u8> {
        let mut w = BlockWriter::with_workers(Vec::new(), codec, workers);
        for chunk in data.chunks(piece.max(1)) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn members(data: &[u8], workers: usize, piece: usize) -> Vec<u8> {
        compress(Members::new(6), data, workers, piece)
    }

    fn miniz(data: &[u8], workers: usize, piece: usize) -> Vec<u8> {
        compress(MinizStream::new(6), data, workers, piece)
    }

    /// Every member (`all`), or the first only.
    fn gunzip(gz: &[u8], all: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let read = if all {
            flate2::read::MultiGzDecoder::new(gz).read_to_end(&mut out)
        } else {
            flate2::read::GzDecoder::new(gz).read_to_end(&mut out)
        };
        read.unwrap();
        out
    }

    const SIZES: [usize; 8] = [
        0,
        1,
        1000,
        BLOCK - 1,
        BLOCK,
        BLOCK + 1,
        2 * BLOCK,
        3 * BLOCK + 77,
    ];

    #[test]
    fn members_round_trip_one_member_per_block() {
        for len in SIZES {
            let data = sample(len);
            let gz = members(&data, 3, 64 * 1024);
            assert_eq!(gunzip(&gz, true), data, "length {len}");
            // Each member is a whole gzip file of its block: header, deflate, its CRC-32
            // and length.
            let mut rest = &gz[..];
            let mut blocks = data.chunks(BLOCK).collect::<Vec<_>>();
            if blocks.is_empty() {
                blocks.push(&[]);
            }
            for block in blocks {
                assert_eq!(rest[..10], HEADER, "length {len}");
                let mut d = flate2::bufread::GzDecoder::new(rest);
                let mut out = Vec::new();
                d.read_to_end(&mut out).unwrap();
                assert_eq!(out, block, "length {len}");
                rest = d.into_inner();
            }
            assert!(
                rest.is_empty(),
                "length {len}: nothing after the last block's member"
            );
        }
    }

    #[test]
    fn miniz_round_trips_as_one_member_at_every_size() {
        for len in SIZES {
            let data = sample(len);
            let gz = miniz(&data, 3, 64 * 1024);
            assert_eq!(gunzip(&gz, false), data, "length {len}");
            // The trailer: CRC-32 and length of the input.
            let t = &gz[gz.len() - 8..];
            assert_eq!(t[..4], crc32fast::hash(&data).to_le_bytes());
            assert_eq!(t[4..], (len as u32).to_le_bytes());
        }
    }

    #[test]
    fn bytes_do_not_depend_on_workers_or_write_sizes() {
        let data = sample(3 * BLOCK + 4321);
        for write in [members, miniz] {
            let reference = write(&data, 1, data.len());
            for (workers, piece) in [(1, 1 << 12), (2, 100_003), (4, 1 << 20), (16, 7)] {
                assert!(
                    write(&data, workers, piece) == reference,
                    "{workers} workers, writes of {piece} bytes"
                );
            }
        }
    }

    /// Both formats are part of every gzip image digest: any change of output bytes
    /// must be a conscious update of these values.
    #[test]
    fn golden_multi_block_digests() {
        use sha2::{Digest, Sha256};
        let data = sample(3 * BLOCK + 4321);
        assert_eq!(
            hex::encode(Sha256::digest(members(&data, 2, 65536))),
            "7d2eb569caf599b7f715352bd8efe4e187ec593915a6467c3ecf9ac9cf914a60"
        );
        assert_eq!(
            hex::encode(Sha256::digest(miniz(&data, 2, 65536))),
            "3c920f41ba29a01d9da16fda4a79a112269c8653cc46a7cb9fe17eb5c9bd8350"
        );
    }

    #[test]
    fn gnu_gzip_reads_the_members() {
        let data = sample(2 * BLOCK + 99);
        let gz = members(&data, 2, 1 << 16);
        let child = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("SKIPPED: no gzip program on PATH");
            return;
        };
        let mut stdin = child.stdin.take().unwrap();
        let feed = std::thread::spawn(move || stdin.write_all(&gz).unwrap());
        let out = child.wait_with_output().unwrap();
        feed.join().unwrap();
        assert!(out.status.success());
        assert!(out.stdout == data, "gzip -dc gave other bytes");
    }

    /// On real machine code (this test's own executable, as a layer is mostly shared
    /// libraries) the members are smaller than the miniz blocks and than one miniz stream
    /// of the same bytes.
    #[test]
    fn members_are_smaller_than_miniz_on_real_code() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let data = &exe[..exe.len().min(4 * BLOCK)];
        assert!(
            data.len() > BLOCK,
            "a test executable of {} bytes",
            data.len()
        );
        let ours = members(data, 2, 1 << 16).len();
        let old = miniz(data, 2, 1 << 16).len();
        let mut one = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        one.write_all(data).unwrap();
        let one = one.finish().unwrap().len();
        assert!(
            ours < old,
            "libdeflate members {ours} vs miniz blocks {old}"
        );
        assert!(
            ours < one,
            "libdeflate members {ours} vs one miniz stream {one}"
        );
    }
}
