//! `compose verify`: the audit by hash. Rebuild from the lock in a temporary directory
//! (every cached blob re-hashed; a damaged one is a failure, not re-fetched; no layer
//! taken from the layer cache) and compare: with `compose verify MANIFEST`, every digest
//! the lock recorded ([`verify`]); with `compose verify REF`, the published image itself
//! ([`verify_image`]), rebuilt from the build record attached to it (docs/referrers.md)
//! or from `--manifest` and `--lock`, and on a difference what differs, path by path
//! (`crate::diff`).
//!
//! Writes nothing outside its temporary directory: never the recorded lock, never the
//! user's outputs, never the image audited.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::build::{build, plan, BuildOptions, BuildResult};
use crate::error::{Error, Result};
use crate::image_ref::{self, ImageRef};
use crate::lock::{self, Lock};

/// One line of `compose verify`'s audit.
#[derive(Debug, Clone)]
pub struct AuditLine {
    /// The check passed.
    pub ok: bool,
    /// What was checked and the outcome; several lines when several outputs differ.
    pub text: String,
}

/// A rebuild from the lock, in its temporary directory.
struct Rebuilt {
    result: BuildResult,
    /// The lock given.
    recorded: Lock,
    /// The lock the rebuild wrote.
    rebuilt: Lock,
    lock_path: PathBuf,
    /// Holds the rebuilt image (`result.output`) until the comparison is done.
    _tmp: tempfile::TempDir,
}

/// Rebuild from the lock in a temporary directory, after checking that the lock
/// describes this manifest and these switches.
fn rebuild(opts: &BuildOptions) -> Result<Rebuilt> {
    let lock_path = opts
        .lock
        .clone()
        .unwrap_or_else(|| lock::lock_path(&opts.manifest));
    let Some(recorded) = Lock::load(&lock_path)? else {
        return Err(Error::Lock(format!(
            "verify: no lock at {}; build once (or run `compose lock`) first",
            lock_path.display()
        )));
    };
    if !recorded.has_outputs() {
        return Err(Error::Lock(format!(
            "verify: {} records no output digests (written by `compose lock`); build once to record them",
            lock_path.display()
        )));
    }
    let tmp = tempfile::tempdir().map_err(|source| Error::Io {
        context: "verify: cannot make a temporary directory".into(),
        source,
    })?;
    let mut o = opts.clone();
    o.archs = recorded
        .archs
        .keys()
        .map(|a| a.name().to_string())
        .collect();
    o.epoch = recorded.epoch;
    // The layers are compressed as the recorded build compressed them.
    o.compression = recorded.layer_compressor();
    o.tag = Some(recorded.tag.clone());
    o.output = Some(tmp.path().join("out"));
    // The rebuilt lock goes to the temp dir: verify never rewrites the recorded one.
    let rebuilt_lock = tmp.path().join("rebuilt.lock");
    std::fs::copy(&lock_path, &rebuilt_lock).map_err(|source| Error::Io {
        context: "verify: cannot copy the lock".into(),
        source,
    })?;
    o.lock = Some(rebuilt_lock.clone());
    o.locked = false;
    o.audit = true;
    let plan = plan(&o)?;
    if recorded.manifest != plan.manifest_sha() {
        return Err(Error::Lock(format!(
            "verify: {} changed since the lock was written ({}); the lock no longer describes it",
            opts.manifest.display(),
            recorded.locate(&lock_path, &lock::Fact::Manifest)
        )));
    }
    if let Some(why) = plan.includes_changed(&recorded) {
        return Err(Error::Lock(format!(
            "verify: {why}; the lock no longer describes {}",
            opts.manifest.display()
        )));
    }
    if recorded.excluded != plan.excluded {
        return Err(Error::Lock(format!(
            "verify: the lock {} was written with {}, this run has {}; give verify the same switches as the build",
            lock_path.display(),
            crate::build::exclusions(&recorded.excluded),
            crate::build::exclusions(&plan.excluded)
        )));
    }
    drop(plan);
    let result = build(&o)?;
    let rebuilt = Lock::load(&rebuilt_lock)?.expect("build writes the lock");
    Ok(Rebuilt {
        result,
        recorded,
        rebuilt,
        lock_path,
        _tmp: tmp,
    })
}

/// The lines saying how each architecture's packages were fetched.
fn fetched_lines(result: &BuildResult) -> Vec<AuditLine> {
    let mut lines = Vec::new();
    for image in &result.images {
        let how = if image.from_snapshot.is_empty() {
            "fetched by their recorded URL".to_string()
        } else {
            format!(
                "fetched by their recorded URL except {} (gone from the archive; from the snapshot service)",
                image.from_snapshot.join(", ")
            )
        };
        lines.push(AuditLine {
            ok: true,
            text: format!(
                "{}: {} packages {how}, size and SHA256 checked",
                image.arch,
                image.packages.len()
            ),
        });
    }
    lines
}

/// `compose verify MANIFEST`: rebuild from the lock in a temporary directory (cache
/// entries are re-hashed and a damaged one is a failure, not re-fetched) and compare
/// every digest the lock recorded.
pub fn verify(opts: &BuildOptions) -> Result<Vec<AuditLine>> {
    let Rebuilt {
        result,
        recorded,
        rebuilt,
        lock_path,
        _tmp,
    } = rebuild(opts)?;
    let mut lines = fetched_lines(&result);
    let diff = recorded.output_changes(&rebuilt);
    for arch in recorded.archs.keys() {
        let bad: Vec<_> = diff
            .iter()
            .filter(|c| c.text.starts_with(&format!("{arch}:")))
            .collect();
        lines.push(AuditLine {
            ok: bad.is_empty(),
            text: if bad.is_empty() {
                let o = recorded.archs[arch].outputs.as_ref().expect("has_outputs");
                format!(
                    "{arch}: layer {} config {} manifest {} equal",
                    o.layer_digest.short(),
                    o.config.short(),
                    o.manifest.short()
                )
            } else {
                bad.iter()
                    .map(|c| format!("{}:{}", lock_path.display(), c))
                    .collect::<Vec<_>>()
                    .join("\n")
            },
        });
    }
    let index_ok = recorded.index == rebuilt.index;
    lines.push(AuditLine {
        ok: index_ok,
        text: format!(
            "index {} {}",
            recorded
                .index
                .as_ref()
                .map(|i| i.digest())
                .unwrap_or_default(),
            if index_ok {
                "equal".to_string()
            } else {
                format!("differs: rebuilt {}", result.digest)
            }
        ),
    });
    Ok(lines)
}

/// What `compose verify REF` is given besides the reference: the build's switches
/// (`--cache`, `--mirror`, `--keyring`, …, and `--lock`), `--manifest` for an image
/// without a build record, and `--insecure` for a registry over plain HTTP.
#[derive(Debug, Clone, Default)]
pub struct ImageAudit {
    /// The build options; `manifest` is ignored (see `manifest`).
    pub opts: BuildOptions,
    /// `--manifest FILE`: rebuild from this manifest (and `opts.lock`, else the lock
    /// beside it) instead of the image's build record.
    pub manifest: Option<PathBuf>,
    /// Allow a registry over plain HTTP.
    pub insecure: bool,
}

/// A record's file name as a plain name in the temporary directory.
fn plain_name(title: &str, fallback: &str) -> String {
    let ok = !title.is_empty()
        && title != "."
        && title != ".."
        && !title.contains(['/', '\\', '\0'])
        && title.len() <= 200;
    if ok {
        title.to_string()
    } else {
        fallback.to_string()
    }
}

/// The keyring paths the sources of a manifest (its TOML text) name.
fn keyring_paths(text: &str) -> Vec<PathBuf> {
    let Ok(value) = text.parse::<toml::Table>() else {
        return Vec::new(); // the manifest's own validation says what is wrong
    };
    let sources = value.get("source").and_then(|s| s.as_array());
    sources
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("keyring").and_then(|k| k.as_str()))
        .map(PathBuf::from)
        .collect()
}

/// How many directories above the manifest a relative path reaches (`../../k` → 2);
/// None for an absolute path.
fn depth_above(path: &Path) -> Option<usize> {
    let (mut depth, mut deepest) = (0i64, 0i64);
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::CurDir => {}
            _ => return None,
        }
        deepest = deepest.min(depth);
    }
    Some((-deepest) as usize)
}

/// Write the record's manifest and lock into `tmp`, the manifest as deep as its
/// relative keyring paths reach, and an empty file at each keyring path: the record
/// carries no keyring, and a rebuild from the lock reads none (each `.deb` is fetched by
/// its pinned SHA-256; no signed index is read), but the manifest's validation asks that
/// each exists. Returns the manifest's and the lock's paths.
fn write_record(tmp: &Path, record: &image_ref::Record) -> Result<(PathBuf, PathBuf)> {
    let io = |path: &Path| {
        let context = format!("verify: cannot write {}", path.display());
        move |source| Error::Io { context, source }
    };
    let text = String::from_utf8_lossy(&record.manifest).into_owned();
    let keyrings = keyring_paths(&text);
    let depth = keyrings
        .iter()
        .filter_map(|k| depth_above(k))
        .filter(|d| *d <= 32)
        .max()
        .unwrap_or(0);
    let mut dir = tmp.to_path_buf();
    for _ in 0..depth {
        dir.push("m");
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let manifest_name = plain_name(&record.manifest_name, "manifest.toml");
    let mut lock_name = plain_name(&record.lock_name, "manifest.toml.lock");
    if lock_name == manifest_name {
        lock_name = format!("{manifest_name}.lock");
    }
    let manifest = dir.join(manifest_name);
    let lock = dir.join(lock_name);
    for (path, bytes) in [(&manifest, &record.manifest), (&lock, &record.lock)] {
        std::fs::write(path, bytes).map_err(io(path))?;
    }
    // Only inside the temporary directory: a record is untrusted input, and a keyring
    // path reaching further up (or absolute) is left for the validation to report.
    for k in keyrings
        .iter()
        .filter(|k| depth_above(k).is_some_and(|d| d <= depth))
    {
        let path = dir.join(k);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, b"").map_err(io(&path))?;
    }
    Ok((manifest, lock))
}

/// `compose verify REF`: find the image's build record (or take `--manifest`/`--lock`),
/// rebuild from its lock in a temporary directory and compare the rebuilt image with the
/// published one, platform by platform; on a difference, what differs (config fields,
/// paths with their package).
pub fn verify_image(reference: &str, audit: &ImageAudit) -> Result<Vec<AuditLine>> {
    let parsed = ImageRef::parse(reference)?;
    let published = image_ref::open(reference, &parsed, audit.insecure)?;
    let record_dir = tempfile::tempdir().map_err(|source| Error::Io {
        context: "verify: cannot make a temporary directory".into(),
        source,
    })?;
    let mut opts = audit.opts.clone();
    let mut lines = Vec::new();
    match &audit.manifest {
        Some(manifest) => opts.manifest = manifest.clone(),
        None => {
            let Some(record) = image_ref::record(&published)? else {
                return Err(Error::Lock(format!(
                    "verify: {reference} has no build record; give --manifest and --lock"
                )));
            };
            let (manifest, lock) = write_record(record_dir.path(), &record)?;
            let pinned = Lock::load(&lock)?.expect("written above");
            let sha = lock::Sha256::of(&record.manifest);
            if pinned.manifest != sha {
                return Err(Error::Lock(format!(
                    "verify: the build record of {reference} does not hold together: its lock pins manifest {}, its manifest is {}",
                    pinned.manifest.short(),
                    sha.short()
                )));
            }
            lines.push(AuditLine {
                ok: true,
                text: format!(
                    "build record found: {} and {}",
                    crate::text::shown(&record.manifest_name),
                    crate::text::shown(&record.lock_name)
                ),
            });
            opts.manifest = manifest;
            opts.lock = Some(lock);
        }
    }
    let Rebuilt { result, _tmp, .. } = rebuild(&opts)?;
    lines.extend(fetched_lines(&result));
    let rebuilt_ref = ImageRef::Layout {
        dir: result.output.clone(),
        tag: Some(result.tag.clone()),
    };
    let rebuilt = image_ref::open("the rebuild", &rebuilt_ref, false)?;
    let images: BTreeMap<String, &crate::build::ArchImage> = result
        .images
        .iter()
        .map(|i| (i.arch.platform(), i))
        .collect();
    // The rebuilt tree knows each path's origin: a package (with its pinned version) or
    // one of compose's generators.
    let origin = |platform: &str, path: &str| -> Option<String> {
        let image = images.get(platform)?;
        let from = image.origins.get(path)?;
        Some(match image.packages.iter().find(|p| &p.name == from) {
            Some(p) => format!("package {} {}", p.name, p.version),
            None => format!("made by compose: {from}"),
        })
    };
    let reports = crate::diff::compare_images(
        &rebuilt,
        &published,
        ("the rebuild", "the published image"),
        &origin,
    )?;
    for r in reports {
        let mut text = format!(
            "{}: {}",
            r.platform,
            if r.equal { "equal" } else { "different" }
        );
        for l in &r.lines {
            text.push_str(if r.equal { ", " } else { "\n       " });
            text.push_str(l);
        }
        lines.push(AuditLine { ok: r.equal, text });
    }
    let same = rebuilt.top.digest == published.top.digest;
    lines.push(AuditLine {
        ok: same,
        text: if same {
            format!("image {} equal", published.top.digest)
        } else {
            format!(
                "image {} published, {} rebuilt",
                published.top.digest, rebuilt.top.digest
            )
        },
    });
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(manifest: &str) -> image_ref::Record {
        image_ref::Record {
            manifest_name: "m.toml".into(),
            manifest: manifest.as_bytes().to_vec(),
            lock_name: "../m.toml.lock".into(),
            lock: b"lock".to_vec(),
        }
    }

    #[test]
    fn a_records_files_and_keyrings_stay_in_the_temporary_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("t");
        std::fs::create_dir(&base).unwrap();
        let far = format!("{}x/escaped.gpg", "../".repeat(40));
        let toml = format!(
            "[[source]]\nurl = \"u\"\nkeyring = \"../../keys/k.gpg\"\n[[source]]\nurl = \"v\"\nkeyring = \"{far}\"\n[[source]]\nurl = \"w\"\nkeyring = \"/abs/k.gpg\"\n"
        );
        let (manifest, lock) = write_record(&base, &record(&toml)).unwrap();
        assert_eq!(manifest, base.join("m/m/m.toml"));
        // A title that is not a plain name is replaced.
        assert_eq!(lock, base.join("m/m/manifest.toml.lock"));
        assert!(base.join("keys/k.gpg").is_file());
        let mut written: Vec<PathBuf> = walk(tmp.path());
        written.sort();
        assert_eq!(
            written,
            [
                base.join("keys/k.gpg"),
                base.join("m/m/m.toml"),
                base.join("m/m/manifest.toml.lock")
            ]
        );
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
