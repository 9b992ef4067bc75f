//! The OCI image layout: blobs, config, manifests, index, written in a temporary
//! directory beside the destination and renamed over it only on success.
//!
//! It writes only in the destination's parent directory (its temporary directory, an
//! old layout moved aside, the destination) and never reads a layout back: that is
//! `oci::read`'s.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use canon_json::CanonJsonSerialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::layer_cache::LayerCache;
use super::referrers::{sort_descriptors, Artifact};
use super::{
    Compressor, Descriptor, ImageConfig, LayerInfo, OciError, WrittenImage, ANNOTATION_REF_NAME,
    MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
};
use crate::rootfs::tree::Tree;

/// An OCI image layout being written in a fresh temporary directory created beside the
/// output (same file system). [`LayoutWriter::commit`] renames it over the output;
/// dropping the writer without committing deletes it, so a failed build leaves nothing
/// at the output.
#[derive(Debug)]
pub struct LayoutWriter {
    dir: tempfile::TempDir,
    /// The owner's lock on the temporary directory ([`crate::temporary`]).
    _lock: Option<File>,
    /// `index.json`'s image descriptor (tagged), once [`LayoutWriter::finish`] wrote it.
    top: Option<Descriptor>,
}

/// The start of the temporary layout's name beside `output`: `.<name>.tmp-` (the PID
/// and random characters follow, [`crate::temporary`]).
pub fn temp_prefix(output: &Path) -> String {
    let base = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    format!(".{base}.tmp-")
}

/// The start of the name of the directory an old layout is moved into while the new one
/// is renamed in (it holds the old layout under the output's own name).
pub const ASIDE_PREFIX: &str = ".old-layout-";

impl LayoutWriter {
    /// Create the temporary layout (mode 0755, with `blobs/sha256`) in `output`'s
    /// parent directory, creating that directory if needed; errors when it cannot.
    pub fn create_beside(output: &Path) -> Result<LayoutWriter, OciError> {
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent)
            .map_err(OciError::io(format!("cannot create {}", parent.display())))?;
        let dir = tempfile::Builder::new()
            .prefix(&crate::temporary::prefix(&temp_prefix(output)))
            .tempdir_in(&parent)
            .map_err(OciError::io(format!(
                "cannot create a temporary directory in {}",
                parent.display()
            )))?;
        // TempDir is 0700; the layout is an ordinary directory once committed.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).map_err(
            OciError::io(format!("cannot set the mode of {}", dir.path().display())),
        )?;
        let lock = crate::temporary::lock_dir(dir.path());
        let blobs = dir.path().join("blobs/sha256");
        fs::create_dir_all(&blobs)
            .map_err(OciError::io(format!("cannot create {}", blobs.display())))?;
        Ok(LayoutWriter {
            dir,
            _lock: lock,
            top: None,
        })
    }

    /// The temporary directory (for tests and diagnostics).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn blobs(&self) -> PathBuf {
        self.dir.path().join("blobs/sha256")
    }

    /// Write the layer of `tree` as a blob: streamed into a temporary file in
    /// `blobs/sha256`, renamed to its digest.
    pub fn write_layer(&mut self, tree: &Tree, epoch: u64) -> Result<LayerInfo, OciError> {
        self.write_layer_cached(tree, epoch, Compressor::default(), None)
    }

    /// [`LayoutWriter::write_layer`] with `compressor`, taking the compressed layer from
    /// `cache` (which must be `compressor`'s, [`LayerCache::under`]) when it holds an
    /// intact one for this tree, and keeping it there otherwise.
    pub fn write_layer_cached(
        &mut self,
        tree: &Tree,
        epoch: u64,
        compressor: Compressor,
        cache: Option<&LayerCache>,
    ) -> Result<LayerInfo, OciError> {
        let blobs = self.blobs();
        let tmp = tempfile::NamedTempFile::new_in(&blobs).map_err(OciError::io(format!(
            "cannot create a file in {}",
            blobs.display()
        )))?;
        // Errors name the file being written: on a full disk (ENOSPC) that says where.
        let at = tmp.path().to_path_buf();
        let located = |e: OciError| match e {
            OciError::Io { context, source } => OciError::Io {
                context: format!("{context} at {}", at.display()),
                source,
            },
            other => other,
        };
        let cached = match cache {
            Some(cache) if !cache.is_empty() => {
                let diff_id = super::layer::diff_id(tree, epoch).map_err(located)?;
                let cached = cache.fetch(&diff_id, tmp.as_file()).map_err(located)?;
                if cached.is_none() {
                    tmp.as_file()
                        .set_len(0)
                        .and_then(|()| tmp.as_file().seek(SeekFrom::Start(0)).map(drop))
                        .map_err(|e| located(OciError::io("cannot write the layer")(e)))?;
                }
                cached
            }
            _ => None,
        };
        let fresh = cached.is_none();
        let info = match cached {
            Some(info) => info,
            None => {
                // Through the plain File: NamedTempFile's own writes append the path to errors.
                let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file());
                let info =
                    super::write_layer_as(tree, epoch, compressor, &mut out).map_err(located)?;
                out.into_inner()
                    .map_err(|e| located(OciError::io("cannot write the layer")(e.into_error())))?;
                info
            }
        };
        tmp.as_file()
            .sync_all()
            .map_err(|e| located(OciError::io("cannot write the layer")(e)))?;
        // NamedTempFile is 0600; blobs are world-readable like the JSON ones.
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|e| located(OciError::io("cannot write the layer")(e)))?;
        let dest = blobs.join(hex_of(&info.digest));
        tmp.persist(&dest)
            .map_err(|e| OciError::io(format!("cannot create {}", dest.display()))(e.error))?;
        if let (Some(cache), true) = (cache, fresh) {
            cache.keep(&info.diff_id, &dest);
        }
        Ok(info)
    }

    /// Write a JSON blob (canonical form) and return its descriptor.
    fn write_json(&self, media_type: &str, value: &Value) -> Result<Descriptor, OciError> {
        let bytes = value
            .to_canon_json_vec()
            .map_err(OciError::io("cannot serialise JSON"))?;
        let hex = hex::encode(Sha256::digest(&bytes));
        let path = self.blobs().join(&hex);
        write_synced(&path, &bytes)?;
        Ok(Descriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{hex}"),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        })
    }

    /// Write the image config, then the manifest referring to it and to `layer`.
    /// Returns both descriptors; the manifest's carries its platform.
    pub fn write_image(
        &mut self,
        config: &ImageConfig,
        layer: &LayerInfo,
        epoch: u64,
        annotations: &BTreeMap<String, String>,
    ) -> Result<WrittenImage, OciError> {
        let created = rfc3339(epoch);
        let mut container = Map::new();
        if !config.env.is_empty() {
            let mut env = config.env.clone();
            env.sort();
            container.insert("Env".into(), json!(env));
        }
        if let Some(user) = &config.user {
            container.insert("User".into(), json!(user));
        }
        if let Some(workdir) = &config.workdir {
            container.insert("WorkingDir".into(), json!(workdir));
        }
        if let Some(entrypoint) = &config.entrypoint {
            container.insert("Entrypoint".into(), json!(entrypoint));
        }
        if let Some(cmd) = &config.cmd {
            container.insert("Cmd".into(), json!(cmd));
        }
        if !config.labels.is_empty() {
            container.insert("Labels".into(), json!(config.labels));
        }
        let mut image = json!({
            "created": created,
            "architecture": config.architecture,
            "os": "linux",
            "config": container,
            "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
            "history": [{ "created": created, "created_by": "compose" }],
        });
        if let Some(variant) = &config.variant {
            image["variant"] = json!(variant);
        }
        let config_desc = self.write_json(MEDIA_TYPE_CONFIG, &image)?;

        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": descriptor_json(&config_desc),
            "layers": [{
                "mediaType": layer.compressor.media_type(),
                "digest": layer.digest,
                "size": layer.size,
            }],
        });
        if !annotations.is_empty() {
            manifest["annotations"] = json!(annotations);
        }
        let mut desc = self.write_json(MEDIA_TYPE_MANIFEST, &manifest)?;
        desc.platform = Some((config.architecture.clone(), config.variant.clone()));
        Ok(WrittenImage {
            manifest: desc,
            config: config_desc,
        })
    }

    /// Write `index.json` and `oci-layout`. One manifest: `index.json`'s single
    /// descriptor is that manifest. Several: an image index blob lists them (sorted by
    /// architecture and variant) and `index.json` points to it. The `index.json`
    /// descriptor is tagged `org.opencontainers.image.ref.name = tag`. Returns the digest
    /// `index.json` points to.
    pub fn finish(
        &mut self,
        mut manifests: Vec<Descriptor>,
        tag: &str,
    ) -> Result<String, OciError> {
        check_tag(tag)?;
        let mut top = match manifests.len() {
            0 => return Err(OciError::NoManifests),
            1 => manifests.pop().expect("one manifest"),
            _ => {
                manifests.sort_by(|a, b| a.platform.cmp(&b.platform).then(a.digest.cmp(&b.digest)));
                let index = json!({
                    "schemaVersion": 2,
                    "mediaType": MEDIA_TYPE_INDEX,
                    "manifests": manifests.iter().map(descriptor_json).collect::<Vec<_>>(),
                });
                self.write_json(MEDIA_TYPE_INDEX, &index)?
            }
        };
        top.annotations
            .insert(ANNOTATION_REF_NAME.into(), tag.to_string());
        self.write_index(&top, &[])?;
        write_synced(
            &self.dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let digest = top.digest.clone();
        self.top = Some(top);
        Ok(digest)
    }

    /// The image `index.json` points to (index or manifest), without its tag: the
    /// `subject` of its referrers. None before [`LayoutWriter::finish`].
    pub fn subject(&self) -> Option<Descriptor> {
        self.top.clone().map(|mut d| {
            d.annotations.clear();
            d.platform = None;
            d
        })
    }

    /// Add `artifacts` (referrers of the image, `oci::referrers`): their blobs, and their
    /// descriptors in `index.json` after the tagged image (sorted by `artifactType`, then
    /// digest; untagged, so the image stays the one tagged entry). The image's own
    /// blobs and digest do not change.
    pub fn attach(&mut self, artifacts: &[Artifact]) -> Result<(), OciError> {
        let top = self.top.clone().ok_or(OciError::NoManifests)?;
        for a in artifacts {
            for (digest, _, bytes) in &a.blobs {
                write_synced(&self.blobs().join(hex_of(digest)), bytes)?;
            }
            write_synced(&self.blobs().join(hex_of(&a.digest)), &a.manifest)?;
        }
        let mut referrers: Vec<Value> = artifacts.iter().map(Artifact::descriptor_json).collect();
        sort_descriptors(&mut referrers);
        self.write_index(&top, &referrers)
    }

    fn write_index(&self, top: &Descriptor, referrers: &[Value]) -> Result<(), OciError> {
        let mut manifests = vec![descriptor_json(top)];
        manifests.extend(referrers.iter().cloned());
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": manifests,
        });
        let bytes = index
            .to_canon_json_vec()
            .map_err(OciError::io("cannot serialise JSON"))?;
        write_synced(&self.dir.path().join("index.json"), &bytes)
    }

    /// Make the layout durable and rename it to `output`. An existing OCI layout (or
    /// empty directory) at `output` is replaced: moved aside, the new one renamed in,
    /// the old one deleted. Anything else at `output` is left alone and is an error.
    pub fn commit(self, output: &Path) -> Result<(), OciError> {
        self.commit_keeping_old(output)?.finish()
    }

    /// Whether `output` may be replaced by a layout: absent, an OCI image layout or an
    /// empty directory (what [`LayoutWriter::commit`] accepts). Checked before the build
    /// so that a refusal costs no work.
    pub fn check_destination(output: &Path) -> Result<(), OciError> {
        match fs::symlink_metadata(output) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(OciError::io(format!("cannot inspect {}", output.display()))(e)),
            Ok(meta)
                if meta.is_dir()
                    && (output.join("oci-layout").is_file() || is_empty_dir(output)) =>
            {
                Ok(())
            }
            Ok(_) => Err(OciError::NotALayout {
                output: output.to_path_buf(),
            }),
        }
    }

    /// [`LayoutWriter::commit`], keeping the layout it replaced aside until
    /// [`CommittedLayout::finish`] deletes it or [`CommittedLayout::rollback`] puts it
    /// back (another output of the build could not be put in place).
    pub fn commit_keeping_old(self, output: &Path) -> Result<CommittedLayout, OciError> {
        let tmp = self.dir.path().to_path_buf();
        for dir in [tmp.join("blobs/sha256"), tmp.join("blobs"), tmp.clone()] {
            sync_dir(&dir)?;
        }
        let parent = tmp.parent().expect("temp dir has a parent").to_path_buf();

        let mut aside = None;
        match fs::symlink_metadata(output) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(OciError::io(format!("cannot inspect {}", output.display()))(e)),
            Ok(meta) => {
                let is_layout =
                    meta.is_dir() && (output.join("oci-layout").is_file() || is_empty_dir(output));
                if !is_layout {
                    return Err(OciError::NotALayout {
                        output: output.to_path_buf(),
                    });
                }
                let old = tempfile::Builder::new()
                    .prefix(&crate::temporary::prefix(ASIDE_PREFIX))
                    .tempdir_in(&parent)
                    .map_err(OciError::io(format!(
                        "cannot create a temporary directory in {}",
                        parent.display()
                    )))?;
                let old = old.keep();
                let lock = crate::temporary::lock_dir(&old);
                // Under the output's own name, so that a sweep after a crash knows where
                // it belongs (crate::temporary::Stale::Restore).
                let name = output.file_name().unwrap_or(std::ffi::OsStr::new("layout"));
                let target = old.join(name);
                if let Err(e) = fs::rename(output, &target) {
                    let _ = fs::remove_dir_all(&old);
                    return Err(OciError::io(format!(
                        "cannot move the old {} aside",
                        output.display()
                    ))(e));
                }
                aside = Some((old, target, lock));
            }
        }

        let tmp = self.dir.keep();
        if let Err(e) = fs::rename(&tmp, output) {
            // Put the old layout back and clean up; the new one is lost with the error.
            if let Some((old, target, _)) = &aside {
                let _ = fs::rename(target, output);
                let _ = fs::remove_dir_all(old);
            }
            let _ = fs::remove_dir_all(&tmp);
            return Err(OciError::io(format!(
                "cannot rename the image layout to {}",
                output.display()
            ))(e));
        }
        let committed = CommittedLayout {
            output: output.to_path_buf(),
            parent,
            staged: tmp,
            aside,
            _lock: self._lock,
        };
        if let Err(e) = sync_dir(&committed.parent) {
            committed.rollback();
            return Err(e);
        }
        Ok(committed)
    }
}

/// A layout in place, the one it replaced still kept aside.
#[derive(Debug)]
pub struct CommittedLayout {
    output: PathBuf,
    parent: PathBuf,
    /// Where it was staged (free again: where a rollback moves it back out).
    staged: PathBuf,
    /// The directory holding the old layout, the old layout in it, and its lock.
    aside: Option<(PathBuf, PathBuf, Option<File>)>,
    _lock: Option<File>,
}

impl CommittedLayout {
    /// Delete the replaced layout, if any.
    pub fn finish(mut self) -> Result<(), OciError> {
        if let Some((old, _, _)) = self.aside.take() {
            fs::remove_dir_all(&old)
                .map_err(OciError::io(format!("cannot delete {}", old.display())))?;
        }
        Ok(())
    }

    /// Undo the commit: delete the new layout and put back the one it replaced.
    pub fn rollback(mut self) {
        if fs::rename(&self.output, &self.staged).is_ok() {
            let _ = fs::remove_dir_all(&self.staged);
        }
        if let Some((old, target, _)) = self.aside.take() {
            let _ = fs::rename(&target, &self.output);
            let _ = fs::remove_dir_all(&old);
        }
        let _ = sync_dir(&self.parent);
    }
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn descriptor_json(d: &Descriptor) -> Value {
    let mut v = json!({
        "mediaType": d.media_type,
        "digest": d.digest,
        "size": d.size,
    });
    if let Some((arch, variant)) = &d.platform {
        let mut platform = json!({ "architecture": arch, "os": "linux" });
        if let Some(variant) = variant {
            platform["variant"] = json!(variant);
        }
        v["platform"] = platform;
    }
    if !d.annotations.is_empty() {
        v["annotations"] = json!(d.annotations);
    }
    v
}

/// A tag the OCI distribution spec allows ([`super::tag_problem`]).
fn check_tag(tag: &str) -> Result<(), OciError> {
    match super::tag_problem(tag) {
        None => Ok(()),
        Some(reason) => Err(OciError::BadTag {
            tag: tag.to_string(),
            reason,
        }),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let err = || OciError::io(format!("cannot write {}", path.display()));
    let mut file = File::create(path).map_err(err())?;
    file.write_all(bytes).map_err(err())?;
    file.sync_all().map_err(err())
}

fn sync_dir(dir: &Path) -> Result<(), OciError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(OciError::io(format!("cannot sync {}", dir.display())))
}

fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// Seconds since the Unix epoch as RFC 3339 UTC: `1970-01-01T00:00:00Z`.
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian), by 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn tags() {
        assert!(check_tag("noble-tiny-grpc").is_ok());
        assert!(check_tag("v1.2_3").is_ok());
        assert!(check_tag("").is_err());
        assert!(check_tag("-x").is_err());
        assert!(check_tag("a:b").is_err());
        assert!(check_tag(&"a".repeat(129)).is_err());
    }
}
