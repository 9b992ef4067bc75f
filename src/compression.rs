//! Which compression a file uses ([`Compression`], from a `.deb` member name or a
//! `Release` index path) and the one streaming dispatcher that wraps a reader in its
//! decoder ([`decoder`]): every xz stream, every gzip member, every zstd frame of the input.
//!
//! Owns the choice and configuration of decoders only. It must not read whole inputs,
//! verify hashes or name files in errors: callers ([`crate::deb`], [`crate::apt::decompress`])
//! own their limits on output and their messages.

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

/// How a decoder treats its input. Limits on a decoder's memory belong here too: every
/// decoder is built by [`decoder`] alone.
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
/// Corrupt or truncated input is an error of a later `read`.
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
            let stream = liblzma::stream::Stream::new_stream_decoder(u64::MAX, flags)
                .map_err(io::Error::other)?;
            Box::new(liblzma::read::XzDecoder::new_stream(input, stream))
        }
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
    })
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
}
