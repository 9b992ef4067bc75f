//! Compressed layers kept by their `diff_id`, so that rebuilding an unchanged tree does
//! not compress it again (the dominant cost of a warm rebuild).
//!
//! An entry is `<cache>/layers/<FORMAT>/<hex of diff_id>`: the blob exactly as
//! [`super::write_layer_as`] made it. The directory name carries everything the bytes
//! depend on besides the tar ([`Compressor::cache_format`]: the compressor, its level,
//! block or job size, and for zstd the libzstd release), so another compressor, level or
//! layout never reads it. An entry is used only after it has been checked against the
//! tree being built: it must decompress (gzip: as one member with nothing after it; zstd:
//! every frame, each with its checksum) to a tar whose SHA-256 is the `diff_id` just
//! computed from the tree. The bytes that were
//! checked are the bytes written to the image. A damaged entry is removed and the layer
//! compressed again. `compose verify` (the hash audit) never uses the cache.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Compressor, LayerInfo, OciError};
use crate::compression::{Compression, DecodeOptions};

/// The start of the names of layers being copied into the cache (the PID and random
/// characters follow, [`crate::temporary`]).
const KEEP_PREFIX: &str = ".keep-";

/// Turns the cache off when set to `0`.
pub const ENV: &str = "COMPOSE_LAYER_CACHE";

/// The cache directory of one compressor: `<cache>/layers/<FORMAT>`.
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
    compressor: Compressor,
}

impl LayerCache {
    /// The layer cache of `compressor` under a download cache root, unless
    /// `COMPOSE_LAYER_CACHE=0`.
    pub fn under(cache_root: &Path, compressor: Compressor) -> Option<LayerCache> {
        if std::env::var_os(ENV).is_some_and(|v| v == "0") {
            return None;
        }
        let dir = cache_root.join("layers").join(compressor.cache_format());
        // Copies of runs that were killed while keeping a layer (crate::temporary).
        crate::temporary::sweep(&dir, &[(KEEP_PREFIX, crate::temporary::Stale::Remove)]);
        Some(LayerCache { dir, compressor })
    }

    /// Holds no layer at all (a first build): no need to compute a diff_id to look one up.
    pub fn is_empty(&self) -> bool {
        fs::read_dir(&self.dir).map_or(true, |mut d| d.next().is_none())
    }

    fn entry(&self, diff_id: &str) -> Option<PathBuf> {
        let hex = diff_id.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| self.dir.join(hex))
    }

    /// Copy the cached layer for `diff_id` to `out` if there is an intact one. `None`
    /// when there is none (or it was damaged and has been removed); `out` then holds
    /// unspecified bytes and must be rewritten from its start.
    pub fn fetch(&self, diff_id: &str, out: &File) -> Result<Option<LayerInfo>, OciError> {
        let Some(path) = self.entry(diff_id) else {
            return Ok(None);
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                eprintln!(
                    "warning: cannot read cached layer {}: {e}; compressing again",
                    path.display()
                );
                return Ok(None);
            }
        };
        let mut tee = Tee {
            file,
            copy: BufWriter::with_capacity(1 << 20, out),
            hasher: Sha256::new(),
            len: 0,
            write_error: None,
        };
        let checked = check(&mut tee, diff_id, self.compressor);
        // A failure to write the output is the build's error, not a damaged entry.
        if let Some(e) = tee.write_error.take() {
            return Err(OciError::io("cannot write the layer")(e));
        }
        let flushed = tee.copy.flush();
        flushed.map_err(OciError::io("cannot write the layer"))?;
        match checked {
            Ok(()) => Ok(Some(LayerInfo {
                digest: format!("sha256:{}", hex::encode(tee.hasher.finalize())),
                diff_id: diff_id.to_string(),
                size: tee.len,
                compressor: self.compressor,
            })),
            Err(why) => {
                eprintln!(
                    "warning: cached layer {} is damaged ({why}); compressing again",
                    path.display()
                );
                let _ = fs::remove_file(&path);
                Ok(None)
            }
        }
    }

    /// Keep the finished layer `blob` (with `diff_id`) for later builds. A cache that
    /// cannot be written is not an error of the build: it is said once on stderr.
    pub fn keep(&self, diff_id: &str, blob: &Path) {
        let Some(path) = self.entry(diff_id) else {
            return;
        };
        if path.exists() {
            return;
        }
        let stored = (|| -> io::Result<()> {
            fs::create_dir_all(&self.dir)?;
            let mut tmp = tempfile::Builder::new()
                .prefix(&crate::temporary::prefix(KEEP_PREFIX))
                .tempfile_in(&self.dir)?;
            crate::temporary::lock_file(tmp.as_file());
            io::copy(&mut File::open(blob)?, tmp.as_file_mut())?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        })();
        if let Err(e) = stored {
            eprintln!(
                "warning: cannot keep the layer in {}: {e} (the image is not affected)",
                self.dir.display()
            );
        }
    }
}

/// Does what `tee` reads decompress to a tar with SHA-256 `diff_id`? The reason when not.
/// Every gzip member and every zstd frame is read to the end, each checked against its
/// own CRC-32 or content checksum; bytes after them are not a member or frame, so they
/// fail too.
fn check(tee: &mut Tee<'_>, diff_id: &str, compressor: Compressor) -> Result<(), String> {
    let (kind, name) = if compressor.is_gzip() {
        (Compression::Gz, "gzip")
    } else {
        (Compression::Zstd, "zstd")
    };
    let mut tar = Sha256::new();
    let reader = BufReader::with_capacity(256 * 1024, tee);
    let mut z = crate::compression::decoder(reader, kind, &DecodeOptions::CHECKED)
        .map_err(|e| format!("not a {name} stream: {e}"))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match z.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => tar.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("not a {name} stream: {e}")),
        }
    }
    let actual = format!("sha256:{}", hex::encode(tar.finalize()));
    if actual != diff_id {
        return Err(format!("it holds a tar with {actual}"));
    }
    Ok(())
}

/// Reads the cached file, writing and hashing every byte read.
struct Tee<'a> {
    file: File,
    copy: BufWriter<&'a File>,
    hasher: Sha256,
    len: u64,
    write_error: Option<io::Error>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Err(e) = self.copy.write_all(&buf[..n]) {
            let err = io::Error::new(e.kind(), e.to_string());
            self.write_error = Some(e);
            return Err(err);
        }
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}
