//! How a layer is compressed: [`Compressor`], chosen by `--compression` or the manifest's
//! `[image] compression`, written `gzip:6`, `zstd:3` or `gzip-miniz:6` (in the lock too),
//! and the one writer that applies it ([`LayerCompressor`]).
//!
//! Owns the names, levels and defaults, the media type each gives the layer and the
//! name of its directory in the layer cache. It must not decode (that is
//! `crate::compression`) or write files.

use std::fmt;
use std::io::{self, Write};

use super::gzip::{
    GzWriter, Members, MinizGzWriter, MinizStream, BLOCK, LIBDEFLATE_VERSION, MEMBERS_MAX_LEVEL,
};
use super::zstd::{ZstdWriter, JOB_SIZE, LIBZSTD_VERSION};

/// Media type of a gzip layer.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of a zstd layer.
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// gzip's default level (zlib's own). Measured per core with libdeflate on 30 MB of real
/// shared libraries: level 4 65 MB/s at ratio 0.390, level 6 58 MB/s at 0.378, level 9
/// 22 MB/s at 0.376, level 12 5 MB/s at 0.366 (miniz_oxide's level 6: 14 MB/s at 0.387).
pub const GZIP_DEFAULT_LEVEL: u32 = 6;
/// zstd's default level: on real Debian libraries about 0.33 of the tar at 80–140 MB/s
/// per core; level 9 is 8–11 % smaller at a quarter of the speed, 19 is 20 % smaller
/// at a hundredth.
pub const ZSTD_DEFAULT_LEVEL: u32 = 3;
/// The highest zstd level offered (libzstd's "ultra" levels above it need a window
/// larger than a decoder of compose accepts).
pub const ZSTD_MAX_LEVEL: u32 = 19;

/// A layer compression and its level. The default is gzip at level 6: every consumer
/// reads gzip, while Docker before 23 and umoci before 0.5 cannot read zstd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compressor {
    /// gzip, one member per 1 MiB block deflated by libdeflate (`super::gzip::Members`),
    /// level 1–12.
    Gzip(u32),
    /// One zstd frame in 4 MiB jobs (`super::zstd`), level 1–19.
    Zstd(u32),
    /// compose's gzip before libdeflate: one member of miniz_oxide blocks
    /// (`super::gzip::MinizStream`), level 1–9. What a lock of format 1 means by `gzip`,
    /// so that the images it recorded rebuild to the same bytes.
    GzipMiniz(u32),
}

impl Default for Compressor {
    fn default() -> Compressor {
        Compressor::Gzip(GZIP_DEFAULT_LEVEL)
    }
}

impl Compressor {
    /// `gzip`, `gzip:LEVEL`, `zstd` or `zstd:LEVEL`; anything else is an error sentence.
    pub fn parse(s: &str) -> Result<Compressor, String> {
        let (name, level) = match s.split_once(':') {
            Some((name, level)) => (name, Some(level)),
            None => (s, None),
        };
        let (default, max, make): (u32, u32, fn(u32) -> Compressor) = match name {
            "gzip" => (GZIP_DEFAULT_LEVEL, MEMBERS_MAX_LEVEL, Compressor::Gzip),
            "zstd" => (ZSTD_DEFAULT_LEVEL, ZSTD_MAX_LEVEL, Compressor::Zstd),
            "gzip-miniz" => (GZIP_DEFAULT_LEVEL, 9, Compressor::GzipMiniz),
            _ => {
                return Err(format!(
                    "`{s}` is not a layer compression; use gzip[:LEVEL] (1-{MEMBERS_MAX_LEVEL}, default {GZIP_DEFAULT_LEVEL}) or zstd[:LEVEL] (1-{ZSTD_MAX_LEVEL}, default {ZSTD_DEFAULT_LEVEL})"
                ))
            }
        };
        let level = match level {
            None => default,
            Some(l) => match l.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) && !l.starts_with('0') => n,
                _ => {
                    return Err(format!(
                        "`{s}`: the {name} level must be a whole number from 1 to {max}"
                    ))
                }
            },
        };
        Ok(make(level))
    }

    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compressor::Gzip(_) | Compressor::GzipMiniz(_) => MEDIA_TYPE_LAYER_GZIP,
            Compressor::Zstd(_) => MEDIA_TYPE_LAYER_ZSTD,
        }
    }

    /// `gzip`, `zstd` or `gzip-miniz`.
    pub fn name(self) -> &'static str {
        match self {
            Compressor::Gzip(_) => "gzip",
            Compressor::Zstd(_) => "zstd",
            Compressor::GzipMiniz(_) => "gzip-miniz",
        }
    }

    /// Whether the layer is gzip (either kind): what Docker before 23 reads.
    pub fn is_gzip(self) -> bool {
        self.media_type() == MEDIA_TYPE_LAYER_GZIP
    }

    /// Everything the compressed bytes depend on besides the tar, as a directory name
    /// of the layer cache: `gzip6-members1024k-libdeflate1.26`,
    /// `zstd3-job4096k-libzstd10507`, `gzip6-block1024k` (miniz).
    pub fn cache_format(self) -> String {
        match self {
            Compressor::Gzip(level) => {
                format!(
                    "gzip{level}-members{}k-libdeflate{LIBDEFLATE_VERSION}",
                    BLOCK >> 10
                )
            }
            Compressor::GzipMiniz(level) => format!("gzip{level}-block{}k", BLOCK >> 10),
            Compressor::Zstd(level) => {
                format!(
                    "zstd{level}-job{}k-libzstd{LIBZSTD_VERSION}",
                    JOB_SIZE >> 10
                )
            }
        }
    }

    /// A writer compressing into `out` on every core.
    pub fn writer<W: Write>(self, out: W) -> io::Result<LayerCompressor<W>> {
        Ok(match self {
            Compressor::Gzip(level) => {
                LayerCompressor::Gzip(GzWriter::new(out, Members::new(level)))
            }
            Compressor::Zstd(level) => LayerCompressor::Zstd(ZstdWriter::new(out, level as i32)?),
            Compressor::GzipMiniz(level) => {
                LayerCompressor::GzipMiniz(MinizGzWriter::new(out, MinizStream::new(level)))
            }
        })
    }
}

impl fmt::Display for Compressor {
    /// `gzip:6`, `zstd:3`, `gzip-miniz:6`: what [`Compressor::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compressor::Gzip(level) | Compressor::Zstd(level) | Compressor::GzipMiniz(level) => {
                write!(f, "{}:{level}", self.name())
            }
        }
    }
}

/// A layer being compressed; call [`LayerCompressor::finish`].
pub enum LayerCompressor<W: Write> {
    /// gzip.
    Gzip(GzWriter<W>),
    /// zstd.
    Zstd(ZstdWriter<W>),
    /// gzip of miniz_oxide blocks.
    GzipMiniz(MinizGzWriter<W>),
}

impl<W: Write> LayerCompressor<W> {
    /// End the stream and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            LayerCompressor::Gzip(w) => w.finish(),
            LayerCompressor::Zstd(w) => w.finish(),
            LayerCompressor::GzipMiniz(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for LayerCompressor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            LayerCompressor::Gzip(w) => w.write(data),
            LayerCompressor::Zstd(w) => w.write(data),
            LayerCompressor::GzipMiniz(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LayerCompressor::Gzip(w) => w.flush(),
            LayerCompressor::Zstd(w) => w.flush(),
            LayerCompressor::GzipMiniz(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_levels_and_prints_them_back() {
        for (text, c) in [
            ("gzip", Compressor::Gzip(6)),
            ("gzip:9", Compressor::Gzip(9)),
            ("gzip:12", Compressor::Gzip(12)),
            ("gzip-miniz", Compressor::GzipMiniz(6)),
            ("gzip-miniz:9", Compressor::GzipMiniz(9)),
            ("zstd", Compressor::Zstd(3)),
            ("zstd:19", Compressor::Zstd(19)),
        ] {
            assert_eq!(Compressor::parse(text), Ok(c), "{text}");
            assert_eq!(Compressor::parse(&c.to_string()), Ok(c));
        }
        assert_eq!(Compressor::default().to_string(), "gzip:6");
    }

    #[test]
    fn refuses_unknown_names_and_levels_out_of_range() {
        for bad in [
            "xz",
            "gzip:0",
            "gzip:13",
            "gzip-miniz:10",
            "zstd:20",
            "zstd:-1",
            "zstd:",
            "zstd:03",
            "ZSTD",
        ] {
            assert!(Compressor::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Compressor::parse("lz4").unwrap_err(),
            "`lz4` is not a layer compression; use gzip[:LEVEL] (1-12, default 6) or zstd[:LEVEL] (1-19, default 3)"
        );
    }

    #[test]
    fn cache_directories_name_compressor_and_level() {
        assert_eq!(
            Compressor::Gzip(6).cache_format(),
            "gzip6-members1024k-libdeflate1.26"
        );
        assert_eq!(Compressor::GzipMiniz(6).cache_format(), "gzip6-block1024k");
        assert_eq!(
            Compressor::Zstd(3).cache_format(),
            "zstd3-job4096k-libzstd10507"
        );
        assert_ne!(
            Compressor::Zstd(9).cache_format(),
            Compressor::Zstd(3).cache_format()
        );
    }
}
