//! Which compression a file uses ([`Compression`], from a `.deb` member name or a
//! `Release` index path) and the one streaming dispatcher that wraps a reader in its
//! decoder ([`decoder`]): every xz stream, every gzip member, every zstd frame of the input.
//!
//! Owns the choice and configuration of decoders, their memory limit ([`MEMORY_LIMIT`])
//! among it. It must not read whole inputs, verify hashes or name files in errors: callers
//! ([`crate::deb`], [`crate::apt::decompress_into`]) own their limits on output and their
//! messages.

use std::fmt;
use std::io::{self, Read};

/// A compression compose decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Not compressed (no suffix).
    None,
    /// gzip (`.gz`).
    Gz,
    /// xz (`.xz`).
    Xz,
    /// zstd (`.zst`).
    Zstd,
}

impl Compression {
    /// Every compression, for parsing.
    const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Gz,
        Compression::Xz,
        Compression::Zstd,
    ];

    /// The file-name suffix that marks it: `""`, `.gz`, `.xz`, `.zst`.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gz => ".gz",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
        }
    }

    /// The compression a suffix names (`""` is none); None for one compose does not know.
    pub fn from_suffix(suffix: &str) -> Option<Compression> {
        Compression::ALL.into_iter().find(|c| c.suffix() == suffix)
    }

    /// The compression of a `.deb` member, from what follows `.tar` in its name
    /// (`data.tar.xz` → xz, `control.tar` → none); None for an unknown suffix.
    pub fn of_deb_member(name: &str) -> Option<Compression> {
        let suffix = name.rsplit_once(".tar").map_or("", |(_, s)| s);
        Compression::from_suffix(suffix)
    }

    /// The compression of an index `Release` lists, from its path
    /// (`main/binary-amd64/Packages.xz` → xz, `…/Packages` → none); None for an unknown one.
    pub fn of_index_path(path: &str) -> Option<Compression> {
        let file = path.rsplit_once('/').map_or(path, |(_, f)| f);
        match file.rsplit_once('.') {
            Some((_, ext)) => Compression::from_suffix(&format!(".{ext}")),
            None => Some(Compression::None),
        }
    }

    /// Its name in messages: `uncompressed`, `gzip`, `xz`, `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gz => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The most memory a decoder may use, whatever its input declares: an xz stream whose
/// block header asks for a larger dictionary, or a zstd frame with a larger window, is
/// refused when it is read ([`decoder`]). `xz -9` needs 65 MiB to decode and `zstd
/// --long` 128 MiB; Debian and Ubuntu packages and indexes use at most 8 MiB. gzip needs no
/// limit: its window is 32 KiB.
pub const MEMORY_LIMIT: u64 = 128 << 20;

/// zstd's window limit, as a power of two: [`MEMORY_LIMIT`].
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// How a decoder treats its input. Every decoder is built by [`decoder`] alone, with the
/// same [`MEMORY_LIMIT`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The compressed bytes were checked against a signed hash before they are decoded
    /// (a `.deb` against its `Packages` SHA256): xz's own CRC-64/SHA-256 of each block is
    /// skipped (it costs a build about 5 % of its CPU), and a damaged stream still fails
    /// to decode.
    pub verified: bool,
}

impl DecodeOptions {
    /// Input not verified beforehand: every check of the format is made.
    pub const CHECKED: DecodeOptions = DecodeOptions { verified: false };
    /// Input verified against a signed hash beforehand.
    pub const VERIFIED: DecodeOptions = DecodeOptions { verified: true };
}

/// Wrap `input` in the decoder of `compression`: all concatenated xz streams (as `xz -d`),
/// all gzip members (as `gzip -d`), all zstd frames; `None` passes the bytes through.
/// Corrupt or truncated input is an error of a later `read`, and so is input that needs
/// more than [`MEMORY_LIMIT`] to decode (one sentence saying so).
pub fn decoder<'a>(
    input: impl Read + 'a,
    compression: Compression,
    options: &DecodeOptions,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(input),
        Compression::Gz => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Xz => {
            let mut flags = liblzma::stream::CONCATENATED;
            if options.verified {
                flags |= liblzma::stream::IGNORE_CHECK;
            }
            let stream = liblzma::stream::Stream::new_stream_decoder(MEMORY_LIMIT, flags)
                .map_err(io::Error::other)?;
            Box::new(Limited {
                inner: liblzma::read::XzDecoder::new_stream(input, stream),
                compression,
            })
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(input)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(Limited {
                inner: decoder,
                compression,
            })
        }
    })
}

/// A decoder whose "needs more memory than allowed" error becomes one sentence.
struct Limited<R> {
    inner: R,
    compression: Compression,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if over_memory_limit(&e) {
                io::Error::other(format!(
                    "the {} data needs more than {} MiB of memory to decode (a larger dictionary or window than real packages use); refusing it",
                    self.compression,
                    MEMORY_LIMIT >> 20
                ))
            } else {
                e
            }
        })
    }
}

/// Is `e` a decoder refusing input that needs more than [`MEMORY_LIMIT`]: liblzma's
/// `LZMA_MEMLIMIT_ERROR`, or zstd's `frameParameter_windowTooLarge` (which the zstd crate
/// passes on only as its message)?
fn over_memory_limit(e: &io::Error) -> bool {
    if let Some(inner) = e.get_ref() {
        if let Some(lzma) = inner.downcast_ref::<liblzma::stream::Error>() {
            return *lzma == liblzma::stream::Error::MemLimit;
        }
    }
    e.to_string()
        .contains("Frame requires too much memory for decoding")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn encode(data: &[u8], c: Compression) -> Vec<u8> {
        match c {
            Compression::None => data.to_vec(),
            Compression::Gz => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
        }
    }

    fn decode(bytes: &[u8], c: Compression, options: &DecodeOptions) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decoder(bytes, c, options)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn names_and_suffixes() {
        for c in Compression::ALL {
            assert_eq!(Compression::from_suffix(c.suffix()), Some(c));
            assert_eq!(
                Compression::of_deb_member(&format!("data.tar{}", c.suffix())),
                Some(c)
            );
            assert_eq!(
                Compression::of_index_path(&format!("main/binary-arm64/Packages{}", c.suffix())),
                Some(c)
            );
        }
        assert_eq!(Compression::of_deb_member("data.tar.bz2"), None);
        assert_eq!(
            Compression::of_index_path("main/i18n/Translation-en.bz2"),
            None
        );
        assert_eq!(
            Compression::of_index_path("main.d/binary-all/Packages"),
            Some(Compression::None)
        );
        assert_eq!(Compression::Gz.to_string(), "gzip");
        assert_eq!(Compression::None.to_string(), "uncompressed");
    }

    #[test]
    fn every_stream_member_and_frame_is_decoded() {
        let a = b"Package: first\n".repeat(3000);
        let b = b"Package: second\n".repeat(2000);
        for c in Compression::ALL {
            let mut both = encode(&a, c);
            both.extend(encode(&b, c));
            for options in [DecodeOptions::CHECKED, DecodeOptions::VERIFIED] {
                let out = decode(&both, c, &options).unwrap();
                assert_eq!(out.len(), a.len() + b.len(), "{c}");
                assert!(out.starts_with(&a) && out.ends_with(&b), "{c}");
            }
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let data = b"Package: x\n".repeat(10_000);
        for c in [Compression::Gz, Compression::Xz, Compression::Zstd] {
            let full = encode(&data, c);
            let cut = &full[..full.len() - 10];
            assert!(decode(cut, c, &DecodeOptions::CHECKED).is_err(), "{c}");
            assert!(decode(cut, c, &DecodeOptions::VERIFIED).is_err(), "{c}");
        }
    }

    #[test]
    fn only_a_checked_xz_decoder_reads_the_block_check() {
        // A damaged CRC-64 of the stream's one block (the 8 bytes before the index) is
        // noticed only when the check is read.
        let data = b"checked".repeat(100);
        let mut xz = encode(&data, Compression::Xz);
        // Stream footer (12) + index (≥ 8, here 12 for one record): the CRC-64 precedes both.
        let crc_end = xz.len() - 12 - 12;
        xz[crc_end - 1] ^= 0xff;
        assert!(decode(&xz, Compression::Xz, &DecodeOptions::CHECKED).is_err());
        assert_eq!(
            decode(&xz, Compression::Xz, &DecodeOptions::VERIFIED).unwrap(),
            data
        );
    }

    /// `xz` bytes whose block header declares the dictionary of LZMA2 properties byte
    /// `props` (28: 64 MiB, as `xz -9`; 40: 4 GiB), the header's CRC-32 fixed: the stream
    /// decodes with any dictionary at least as large as the encoder's.
    fn xz_declaring_dictionary(data: &[u8], props: u8) -> Vec<u8> {
        let mut xz = encode(data, Compression::Xz);
        let start = 12; // after the stream header
        let size = (usize::from(xz[start]) + 1) * 4;
        let flags = xz[start + 1];
        let mut pos = start + 2;
        let skip_vli = |pos: &mut usize, xz: &[u8]| {
            while xz[*pos] & 0x80 != 0 {
                *pos += 1;
            }
            *pos += 1;
        };
        for present in [0x40, 0x80] {
            if flags & present != 0 {
                skip_vli(&mut pos, &xz);
            }
        }
        assert_eq!(&xz[pos..pos + 2], &[0x21, 0x01], "one LZMA2 filter");
        xz[pos + 2] = props;
        let crc = crc32fast::hash(&xz[start..start + size - 4]);
        xz[start + size - 4..start + size].copy_from_slice(&crc.to_le_bytes());
        xz
    }

    /// A zstd frame whose window descriptor asks for a 2 GiB window.
    fn zstd_declaring_a_huge_window(data: &[u8]) -> Vec<u8> {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.include_contentsize(false).unwrap();
        e.write_all(data).unwrap();
        let mut z = e.finish().unwrap();
        let descriptor = z[4];
        assert_eq!(
            descriptor & 0x20,
            0,
            "not single-segment: a window descriptor follows"
        );
        z[5] = 21 << 3; // window log 10 + 21 = 31
        z
    }

    #[test]
    fn input_needing_more_memory_than_the_limit_is_refused_in_one_sentence() {
        let data = b"Package: x\n".repeat(1000);
        for (c, bytes) in [
            (Compression::Xz, xz_declaring_dictionary(&data, 40)),
            (Compression::Zstd, zstd_declaring_a_huge_window(&data)),
        ] {
            for options in [DecodeOptions::CHECKED, DecodeOptions::VERIFIED] {
                let err = decode(&bytes, c, &options).unwrap_err();
                assert_eq!(
                    err.to_string(),
                    format!("the {c} data needs more than 128 MiB of memory to decode (a larger dictionary or window than real packages use); refusing it")
                );
            }
        }
        // Within the limit: the dictionary of `xz -9`.
        let xz9 = xz_declaring_dictionary(&data, 28);
        assert_eq!(
            decode(&xz9, Compression::Xz, &DecodeOptions::CHECKED).unwrap(),
            data
        );
    }
}
