//! `compose verify MANIFEST`: the audit by hash. Rebuild from the lock in a temporary
//! directory (every cached blob re-hashed; a damaged one is a failure, not re-fetched;
//! no layer taken from the layer cache) and compare every recorded digest.
//!
//! Writes nothing outside its temporary directory: never the recorded lock, never the
//! user's outputs.

use crate::build::{build, plan, BuildOptions};
use crate::error::{Error, Result};
use crate::lock::{self, Lock};

/// One line of `compose verify`'s audit.
#[derive(Debug, Clone)]
pub struct AuditLine {
    /// The check passed.
    pub ok: bool,
    /// What was checked and the outcome; several lines when several outputs differ.
    pub text: String,
}

/// `compose verify`: rebuild from the lock in a temporary directory (cache entries are
/// re-hashed and a damaged one is a failure, not re-fetched) and compare every digest.
pub fn verify(opts: &BuildOptions) -> Result<Vec<AuditLine>> {
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
