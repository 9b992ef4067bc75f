//! The pipeline: manifest → verified indexes → resolved packages → fetched `.deb`s →
//! selected tree → OCI layout, per architecture, written atomically.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::apt::{self, Keyring, PackageEntry, Release};
use crate::deb;
use crate::error::{Error, Result};
use crate::fetch::{FetchOptions, Fetcher, Timeouts, Want};
use crate::lock::{self, ArchLock, Lock, Sha256};
use crate::manifest::{self, Manifest, Source};
use crate::oci::archive::{self, DockerImage};
use crate::oci::{Format, ImageConfig, LayerCache, LayerInfo, LayoutWriter};
use crate::rootfs::export::{self, ExportSummary};
use crate::rootfs::generate::{self, MOZILLA_CERTS};
use crate::rootfs::linkage::{self, Shipped};
use crate::rootfs::select::{self, Selector};
use crate::rootfs::tree::Tree;
use crate::sbom;

/// InRelease/Release/Release.gpg larger than this are refused (Ubuntu's are ~250 KB).
const RELEASE_LIMIT: u64 = 32 << 20;
/// Decompressed Packages larger than this are refused (Debian main is ~50 MB).
const PACKAGES_LIMIT: u64 = 1 << 30;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What `compose MANIFEST` (or `compose lock`/`verify`) was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub manifest: PathBuf,
    /// Debian or `linux/…` names; empty: the manifest's, else the host's.
    pub archs: Vec<String>,
    /// Default `out/<image name>`.
    pub output: Option<PathBuf>,
    /// Default: the image name.
    pub tag: Option<String>,
    /// Default: the XDG cache dir.
    pub cache: Option<PathBuf>,
    pub mirrors: Vec<(String, String)>,
    pub quiet: bool,
    pub allow_expired: bool,
    /// `SOURCE_DATE_EPOCH`; default 0.
    pub epoch: u64,
    /// Parallel downloads; 0 = default.
    pub jobs: usize,
    /// The lock; default `<manifest>.lock` (see [`lock::lock_path`]).
    pub lock: Option<PathBuf>,
    /// The lock must exist, match the manifest, match a fresh resolution, and the
    /// output digests must equal the recorded ones.
    pub locked: bool,
    /// Build from the lock and the cache only.
    pub offline: bool,
    /// `--rootfs DIR`: also write the (single-arch) tree as a plain directory.
    pub rootfs: Option<PathBuf>,
    /// An audit (`compose verify`): a damaged cache entry is a failure, not re-fetched.
    pub audit: bool,
    // --- issue 7 (ship): output format and SBOM ---
    /// `--format`: a layout directory (default) or one archive file at `output`.
    pub format: Format,
    /// `--sbom FILE`: SPDX 2.3 JSON of the image, written only when the build succeeds.
    pub sbom: Option<PathBuf>,
    /// HTTP connect and read timeouts; default `COMPOSE_HTTP_TIMEOUT`, else 20 s / 60 s.
    pub http_timeout: Option<std::time::Duration>,
    // --- issue 7 (push): `--push REGISTRY/REPO[:TAG]` and `--insecure`.
    pub push: Option<crate::push::PushOptions>,
}

/// A package pinned for an architecture, by resolution or by the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub version: String,
    /// The package's `Architecture`: the target architecture or `all`.
    pub architecture: String,
    /// The suite it came from.
    pub suite: String,
    /// Its URL before `--mirror`.
    pub url: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// One architecture's result.
#[derive(Debug, Clone)]
pub struct ArchImage {
    pub arch: String,
    pub packages: Vec<Resolved>,
    pub layer: LayerInfo,
    pub config_digest: String,
    pub manifest_digest: String,
    pub entries: usize,
    pub setid: Vec<String>,
    /// ELF files the linkage check read (DESIGN §5).
    pub elf_files: usize,
}

#[derive(Debug, Clone)]
pub struct BuildResult {
    /// What `index.json` points to: `sha256:…`.
    pub digest: String,
    pub output: PathBuf,
    pub tag: String,
    pub images: Vec<ArchImage>,
    /// The lock written (or checked) and whether the packages came from it.
    pub lock_path: PathBuf,
    pub from_lock: bool,
    /// What `--rootfs` wrote.
    pub rootfs: Option<ExportSummary>,
    // --- issue 7 (push): what `--push` uploaded.
    pub push: Option<crate::push::PushReport>,
}

/// The host's architecture as a Debian name.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "x86" => "i386",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Everything a build needs before it starts per-architecture work.
struct Plan {
    manifest: Manifest,
    archs: Vec<String>,
    tag: String,
    lock_path: PathBuf,
    /// The lock on disk, if any.
    existing: Option<Lock>,
    runtime: tokio::runtime::Runtime,
    fetcher: Arc<Fetcher>,
    /// HTTP timeouts, also for `--push` (issue 7).
    timeouts: Timeouts,
}

fn plan(opts: &BuildOptions) -> Result<Plan> {
    crate::timings::start();
    let manifest = Manifest::load(&opts.manifest)?;
    let archs = architectures(&manifest, &opts.archs)?;
    let tag = opts
        .tag
        .clone()
        .unwrap_or_else(|| manifest.image.name.clone());
    let lock_path = opts
        .lock
        .clone()
        .unwrap_or_else(|| lock::lock_path(&opts.manifest));
    let existing = Lock::load(&lock_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Build(format!("cannot start the async runtime: {e}")))?;
    let timeouts = match opts.http_timeout {
        Some(d) => Timeouts::both(d),
        None => Timeouts::from_env()
            .map_err(Error::Usage)?
            .unwrap_or_default(),
    };
    let fetcher = Arc::new(Fetcher::new(FetchOptions {
        cache_dir: opts
            .cache
            .clone()
            .unwrap_or_else(crate::fetch::Cache::default_dir),
        mirrors: opts.mirrors.clone(),
        quiet: opts.quiet,
        jobs: if opts.jobs == 0 { 8 } else { opts.jobs },
        offline: opts.offline,
        strict_cache: opts.audit,
        timeouts,
    })?);
    crate::timings::mark("plan: manifest, lock, runtime, HTTP client");
    Ok(Plan {
        manifest,
        archs,
        tag,
        lock_path,
        existing,
        runtime,
        fetcher,
        timeouts, // --- issue 7 (push)
    })
}

impl Plan {
    fn manifest_sha(&self) -> Sha256 {
        Sha256::of(self.manifest.text.as_bytes())
    }

    /// The lock on disk if it pins exactly this manifest, these architectures and epoch.
    fn matching_lock(&self, epoch: u64) -> Option<&Lock> {
        self.existing.as_ref().filter(|l| {
            l.manifest == self.manifest_sha()
                && l.epoch == epoch
                && l.archs
                    .keys()
                    .eq(self.archs.iter().collect::<BTreeSet<_>>())
        })
    }

    /// Resolve every architecture from verified indexes into a lock without outputs.
    fn resolve_all(&self, opts: &BuildOptions) -> Result<(Lock, BTreeMap<String, Vec<Resolved>>)> {
        let mut lock = Lock::new(self.manifest_sha(), opts.epoch, self.tag.clone());
        let mut pinned = BTreeMap::new();
        let mut releases = ReleaseCache::default();
        for arch in &self.archs {
            let _phase = Phase(
                self.fetcher
                    .phase(format!("{arch}: verifying indexes, resolving")),
            );
            let (packages, arch_lock) = self.runtime.block_on(resolve(
                &self.fetcher,
                &self.manifest,
                arch,
                opts,
                &mut releases,
            ))?;
            lock.archs.insert(arch.clone(), arch_lock);
            pinned.insert(arch.clone(), packages);
        }
        Ok((lock, pinned))
    }
}

/// A phase spinner, cleared when the phase ends (however it ends).
struct Phase(indicatif::ProgressBar);

impl Drop for Phase {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// The packages a lock pins for `arch`, in name order.
fn pinned_from_lock(lock: &Lock, arch: &str) -> Vec<Resolved> {
    lock.archs[arch]
        .packages
        .iter()
        .map(|(name, p)| Resolved {
            name: name.clone(),
            version: p.version.clone(),
            architecture: p.arch.clone(),
            suite: p.suite.clone(),
            url: p.url.clone(),
            size: p.size,
            sha256: p.sha256.hex().to_string(),
        })
        .collect()
}

fn changes(lock_path: &Path, changes: &[lock::Change]) -> String {
    changes
        .iter()
        .map(|c| format!("  {}:{}", lock_path.display(), c))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compose the image a manifest describes; write (or, with `--locked`, check) its lock.
pub fn build(opts: &BuildOptions) -> Result<BuildResult> {
    let plan = plan(opts)?;
    let manifest = &plan.manifest;
    let output = opts.output.clone().unwrap_or_else(|| {
        let name = &manifest.image.name;
        match opts.format {
            Format::Oci => Path::new("out").join(name),
            _ => Path::new("out").join(format!("{name}.tar")),
        }
    });
    // --- issue 7 (ship): docker-archive holds one architecture.
    if opts.format == Format::DockerArchive && plan.archs.len() > 1 {
        return Err(Error::Usage(format!(
            "--format docker-archive holds one architecture, but {} were asked for ({}); choose one with --arch, or use --format oci-archive",
            plan.archs.len(),
            plan.archs.join(", ")
        )));
    }

    // --rootfs: one architecture only; refuse an unusable directory before any work.
    if let Some(dir) = &opts.rootfs {
        if plan.archs.len() > 1 {
            return Err(Error::Usage(format!(
                "--rootfs writes one root filesystem, but {} architectures were asked for ({}); choose one with --arch",
                plan.archs.len(),
                plan.archs.join(", ")
            )));
        }
        export::check_destination(dir)?;
    }
    // Where the packages come from: a matching lock (no index needed), else resolution.
    let matching = plan.matching_lock(opts.epoch).cloned();
    if opts.locked {
        let Some(existing) = &plan.existing else {
            return Err(Error::Lock(format!(
                "--locked: there is no lock at {}; run `compose lock {}` and commit it",
                plan.lock_path.display(),
                opts.manifest.display()
            )));
        };
        if existing.manifest != plan.manifest_sha() {
            return Err(Error::Lock(format!(
                "--locked: {} changed since the lock was written ({}: manifest {}, now {}); run `compose lock {}` to accept the change",
                opts.manifest.display(),
                existing.locate(&plan.lock_path, &lock::Fact::Manifest),
                existing.manifest.short(),
                plan.manifest_sha().short(),
                opts.manifest.display()
            )));
        }
        if matching.is_none() {
            return Err(Error::Lock(format!(
                "--locked: the lock {} pins architectures [{}] and epoch {}, this build asks for [{}] and epoch {}",
                plan.lock_path.display(),
                existing.archs.keys().cloned().collect::<Vec<_>>().join(", "),
                existing.epoch,
                plan.archs.join(", "),
                opts.epoch
            )));
        }
    }
    let (mut new_lock, pinned, from_lock) = match (&matching, opts.locked && !opts.offline) {
        // --locked: the lock must also be what a fresh resolution gives.
        (Some(existing), true) => {
            let (fresh, pinned) = plan.resolve_all(opts)?;
            let diff = existing.input_changes(&fresh);
            if !diff.is_empty() {
                return Err(Error::Lock(format!(
                    "--locked: resolving again would change the lock:\n{}\nrun `compose lock {}` to accept the new packages",
                    changes(&plan.lock_path, &diff),
                    opts.manifest.display()
                )));
            }
            (fresh, pinned, false)
        }
        (Some(existing), false) => {
            let mut lock = existing.clone();
            let pinned = plan
                .archs
                .iter()
                .map(|a| (a.clone(), pinned_from_lock(existing, a)))
                .collect();
            for a in lock.archs.values_mut() {
                a.outputs = None;
            }
            lock.index = None;
            lock.tool = lock::tool_version();
            lock.tag = plan.tag.clone();
            (lock, pinned, true)
        }
        (None, _) if opts.offline => {
            return Err(Error::Lock(format!(
                "--offline needs a lock that pins this manifest, its architectures and epoch; {} {}; run once without --offline",
                plan.lock_path.display(),
                if plan.existing.is_some() { "does not match" } else { "does not exist" }
            )))
        }
        (None, _) => {
            let (lock, pinned) = plan.resolve_all(opts)?;
            (lock, pinned, false)
        }
    };

    let mut staged_rootfs = None;

    let mut layout = LayoutWriter::create_beside(&output)?;
    // Compressed layers of earlier builds, by diff_id; the hash audit recompresses.
    let layer_cache = if opts.audit {
        None
    } else {
        LayerCache::under(plan.fetcher.cache.root())
    };
    let _cleanup = crate::interrupt::remove_on_interrupt(layout.path());
    let mut _cleanup_rootfs = None;
    let mut images = Vec::new();
    let mut descriptors = Vec::new();
    // --- issue 7 (ship): what the SBOM needs of each tree before it is dropped.
    let mut sbom_archs = Vec::new();
    for arch in &plan.archs {
        let packages = pinned[arch].clone();
        let wants: Vec<Want> = packages
            .iter()
            .map(|r| Want {
                what: format!("package {} {} ({})", r.name, r.version, r.architecture),
                url: r.url.clone(),
                size: r.size,
                sha256: r.sha256.clone(),
            })
            .collect();
        let debs = plan.runtime.block_on(plan.fetcher.get_all(&wants))?;
        crate::timings::mark(format_args!("{arch}: packages fetched and verified"));
        let phase = Phase(plan.fetcher.phase(format!("{arch}: selecting files")));
        let (mut tree, setid, shipped) = compose_tree(manifest, arch, &packages, &debs)?;
        if manifest.generate.sbom {
            // --- issue 7: the tree's own SPDX document, its last file.
            sbom::embed(
                &mut tree,
                &manifest.image.name,
                &plan.tag,
                arch,
                &packages,
                opts.epoch,
            )?;
        }
        crate::timings::mark(format_args!(
            "{arch}: files selected ({} entries)",
            tree.len()
        ));
        // Linkage check (DESIGN §5), before anything of this architecture is written.
        phase.0.set_message(format!("{arch}: checking ELF linkage"));
        let linked = linkage::check(&tree, &[], Some(&shipped))?;
        crate::timings::mark(format_args!("{arch}: linkage checked"));
        phase.0.set_message(format!("{arch}: writing the layer"));
        let layer = layout.write_layer_cached(&tree, opts.epoch, layer_cache.as_ref())?;
        crate::timings::mark(format_args!("{arch}: layer written ({} bytes)", layer.size));
        drop(phase);
        if opts.sbom.is_some() {
            sbom_archs.push(sbom::SbomArch::collect(arch, &packages, &tree)?);
        }
        if let Some(dir) = &opts.rootfs {
            let staged = export::stage(&tree, dir, opts.epoch)?;
            _cleanup_rootfs = Some(crate::interrupt::remove_on_interrupt(staged.path()));
            staged_rootfs = Some(staged);
        }
        let config = image_config(manifest, arch);
        let written =
            layout.write_image(&config, &layer, opts.epoch, &manifest.image.annotations)?;
        let outputs = lock::Outputs::new(&layer, &written.config.digest, &written.manifest.digest)
            .map_err(|e| Error::Build(format!("internal: {e}")))?;
        if let Some(a) = new_lock.archs.get_mut(arch) {
            a.outputs = Some(outputs);
        }
        images.push(ArchImage {
            arch: arch.clone(),
            packages,
            layer,
            config_digest: written.config.digest.clone(),
            manifest_digest: written.manifest.digest.clone(),
            entries: tree.len(),
            setid,
            elf_files: linked.elf_files,
        });
        descriptors.push(written.manifest);
    }
    let digest = layout.finish(descriptors, &plan.tag)?;
    new_lock.index =
        Some(Sha256::from_digest(&digest).map_err(|e| Error::Build(format!("internal: {e}")))?);
    if opts.locked {
        // The hash audit: what was built must be what the lock recorded.
        let existing = plan.existing.as_ref().expect("checked above");
        if existing.has_outputs() {
            let diff = existing.output_changes(&new_lock);
            if !diff.is_empty() {
                return Err(Error::Lock(format!(
                    "--locked: the output differs from the lock (hash audit failed):\n{}",
                    changes(&plan.lock_path, &diff)
                )));
            }
        }
    }
    // Both outputs or neither: the root filesystem goes in place first and is taken
    // back if the layout cannot be. Ctrl-C waits until they and the lock are written.
    // --- issue 7 (ship): the SBOM is made before anything is committed, written after.
    let sbom_doc = match &opts.sbom {
        Some(_) => Some(sbom::document(&sbom::SbomImage {
            name: &manifest.image.name,
            tag: &plan.tag,
            digest: &digest,
            epoch: opts.epoch,
            archs: &sbom_archs,
        })?),
        None => None,
    };
    // --- issue 7 (push): upload from the finished temporary layout (read only, so its
    // digest is unchanged), before anything is committed: a failed push writes nothing.
    let pushed = match &opts.push {
        Some(p) => {
            let _phase = Phase(plan.fetcher.phase(format!("pushing to {}", p.reference)));
            Some(plan.runtime.block_on(crate::push::push_layout(
                layout.path(),
                p,
                plan.timeouts,
                &plan.tag,
            ))?)
        }
        None => None,
    };
    let _critical = crate::interrupt::critical();
    let commit = |layout| {
        commit_output(
            layout,
            &output,
            opts,
            &images,
            &manifest.image.name,
            &plan.tag,
        )
    };
    let rootfs = match staged_rootfs {
        None => {
            commit(layout)?;
            None
        }
        Some(staged) => {
            let committed = staged.commit()?;
            if let Err(e) = commit(layout) {
                committed.rollback();
                return Err(e);
            }
            let summary = committed.finish()?;
            if !summary.owners_set {
                eprintln!(
                    "note: not running as root, so {} was written without owners: every entry belongs to you (the image layer has the real ones)",
                    summary.dir.display()
                );
            }
            Some(summary)
        }
    };
    if plan.existing.as_ref() != Some(&new_lock) {
        new_lock.write(&plan.lock_path)?;
    }
    if let (Some(path), Some(doc)) = (&opts.sbom, &sbom_doc) {
        sbom::write(path, doc)?;
    }
    crate::timings::mark("output committed");
    Ok(BuildResult {
        digest,
        output,
        tag: plan.tag,
        images,
        lock_path: plan.lock_path,
        from_lock,
        rootfs,
        push: pushed,
    })
}

// --- issue 7 (ship): the layout as a directory, or packed into one archive file.
fn commit_output(
    layout: LayoutWriter,
    output: &Path,
    opts: &BuildOptions,
    images: &[ArchImage],
    name: &str,
    tag: &str,
) -> Result<()> {
    match opts.format {
        Format::Oci => layout.commit(output)?,
        Format::OciArchive => archive::write_oci_archive(layout.path(), output, opts.epoch)?,
        Format::DockerArchive => {
            let image = &images[0];
            let repo = name.to_ascii_lowercase();
            archive::write_docker_archive(
                layout.path(),
                output,
                &DockerImage {
                    config_digest: &image.config_digest,
                    layer_digest: &image.layer.digest,
                    name: &repo,
                    tag,
                },
                opts.epoch,
            )?
        }
    }
    Ok(())
}

/// `compose lock`: resolve and write the lock, build nothing. Outputs recorded by an
/// earlier build are kept when the inputs did not change.
pub fn lock(opts: &BuildOptions) -> Result<(PathBuf, Vec<String>)> {
    let plan = plan(opts)?;
    let (mut fresh, _) = plan.resolve_all(opts)?;
    let mut changed = Vec::new();
    if let Some(existing) = &plan.existing {
        changed = existing.diff_inputs(&fresh);
        if changed.is_empty() && existing.epoch == fresh.epoch && existing.tag == fresh.tag {
            fresh = existing.clone();
            fresh.tool = lock::tool_version();
        }
    }
    fresh.write(&plan.lock_path)?;
    Ok((plan.lock_path, changed))
}

/// One line of `compose verify`'s audit.
#[derive(Debug, Clone)]
pub struct AuditLine {
    pub ok: bool,
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
    let tmp = tempfile::tempdir()
        .map_err(|e| Error::Build(format!("verify: cannot make a temporary directory: {e}")))?;
    let mut o = opts.clone();
    o.archs = recorded.archs.keys().cloned().collect();
    o.epoch = recorded.epoch;
    o.tag = Some(recorded.tag.clone());
    o.output = Some(tmp.path().join("out"));
    // The rebuilt lock goes to the temp dir: verify never rewrites the recorded one.
    let rebuilt_lock = tmp.path().join("rebuilt.lock");
    std::fs::copy(&lock_path, &rebuilt_lock)
        .map_err(|e| Error::Build(format!("verify: cannot copy the lock: {e}")))?;
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
    drop(plan);
    let result = build(&o)?;
    let rebuilt = Lock::load(&rebuilt_lock)?.expect("build writes the lock");
    let mut lines = Vec::new();
    for image in &result.images {
        lines.push(AuditLine {
            ok: true,
            text: format!(
                "{}: {} packages fetched by their recorded URL, size and SHA256 checked",
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

fn architectures(manifest: &Manifest, requested: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for a in requested {
        let arch = manifest::normalise_arch(a).ok_or_else(|| {
            Error::Usage(format!(
                "--arch {a}: unknown architecture; use a Debian name such as amd64 or arm64 (or linux/arm64)"
            ))
        })?;
        if !out.iter().any(|x| x == arch) {
            out.push(arch.to_string());
        }
    }
    if out.is_empty() {
        out = manifest.default_architectures();
    }
    if out.is_empty() {
        out.push(host_arch().to_string());
    }
    Ok(out)
}

/// Verified Release files by `dists/<suite>` URL: several architectures share them.
#[derive(Default)]
struct ReleaseCache {
    releases: HashMap<String, Arc<VerifiedRelease>>,
    keyrings: HashMap<PathBuf, Arc<Keyring>>,
}

impl ReleaseCache {
    fn keyring(&mut self, source: &Source) -> Result<Arc<Keyring>> {
        if let Some(k) = self.keyrings.get(&source.keyring) {
            return Ok(k.clone());
        }
        let bytes = std::fs::read(&source.keyring).map_err(|e| {
            Error::Build(format!(
                "{}: cannot read keyring {}: {e}",
                source.location,
                source.keyring.display()
            ))
        })?;
        let keyring = Arc::new(Keyring::from_bytes(
            &bytes,
            &source.keyring.display().to_string(),
        )?);
        self.keyrings
            .insert(source.keyring.clone(), keyring.clone());
        Ok(keyring)
    }
}

/// A verified Release and what the lock records of it.
struct VerifiedRelease {
    release: Release,
    /// The InRelease (or Release) URL before `--mirror`.
    url: String,
    sha256: Sha256,
}

/// Fetch and verify `dists/<suite>/InRelease` (or `Release` + `Release.gpg`).
async fn release(
    fetcher: &Fetcher,
    dists: &str,
    keyring: &Keyring,
    allow_expired: bool,
) -> Result<VerifiedRelease> {
    let in_release = format!("{dists}/InRelease");
    let (body, what, signed) = match fetcher.get(&in_release, RELEASE_LIMIT).await? {
        Some(data) => {
            let body = apt::verify_clearsigned(&data, keyring, &in_release)?.body;
            (body, in_release, data)
        }
        None => {
            let url = format!("{dists}/Release");
            let Some(data) = fetcher.get(&url, RELEASE_LIMIT).await? else {
                return Err(Error::Build(format!(
                    "{dists}: neither InRelease nor Release exists; check the source URL and the suite name"
                )));
            };
            let sig_url = format!("{url}.gpg");
            let Some(sig) = fetcher.get(&sig_url, RELEASE_LIMIT).await? else {
                return Err(Error::Build(format!(
                    "{url} has no signature: {sig_url} is missing and there is no InRelease; compose only uses signed repositories"
                )));
            };
            let body = apt::verify_detached(&data, &sig, keyring, &url)?.body;
            (body, url, data)
        }
    };
    let release = Release::parse(&body, &what)?;
    release.check_dates(now(), allow_expired, &what)?;
    Ok(VerifiedRelease {
        release,
        sha256: Sha256::of(&signed),
        url: what,
    })
}

/// Resolve the manifest's packages for `arch`: the highest version across the
/// sources' suites, from verified indexes. Returns them with the lock's facts.
async fn resolve(
    fetcher: &Fetcher,
    manifest: &Manifest,
    arch: &str,
    opts: &BuildOptions,
    cache: &mut ReleaseCache,
) -> Result<(Vec<Resolved>, ArchLock)> {
    let wanted: BTreeSet<&str> = manifest
        .packages
        .iter()
        .filter(|p| p.applies_to(arch))
        .map(|p| p.name.as_str())
        .collect();
    let keep = |name: &str| wanted.contains(name);
    let mut arch_lock = ArchLock::default();

    // 1. Every suite's Release, fetched and verified concurrently (once per URL for all
    //    architectures).
    let mut suites = Vec::new(); // (source, base URL, suite, dists URL), in manifest order
    for source in &manifest.sources {
        let base = source.base_url(arch).to_string();
        for suite in &source.suites {
            let dists = format!("{base}/dists/{suite}");
            suites.push((source, base.clone(), suite.clone(), dists));
        }
    }
    let mut missing = Vec::new();
    for (source, _, _, dists) in &suites {
        if !cache.releases.contains_key(dists) && !missing.iter().any(|(d, _, _)| d == dists) {
            let allow_expired = opts.allow_expired || source.snapshot.is_some();
            missing.push((dists.clone(), cache.keyring(source)?, allow_expired));
        }
    }
    let fetched = futures::future::try_join_all(
        missing
            .iter()
            .map(|(dists, keyring, allow)| release(fetcher, dists, keyring, *allow)),
    )
    .await?;
    for ((dists, _, _), r) in missing.iter().zip(fetched) {
        cache.releases.insert(dists.clone(), Arc::new(r));
    }
    crate::timings::mark(format_args!(
        "{arch}: keyrings read, Release files verified"
    ));

    // 2. Every component's Packages index, fetched concurrently.
    let mut indexes = Vec::new(); // (base URL, suite, dists, component, candidates)
    for (source, base, suite, dists) in &suites {
        let rel = &cache.releases[dists];
        arch_lock.releases.insert(
            rel.url.clone(),
            lock::ReleaseLock {
                sha256: rel.sha256.clone(),
                date: rel.release.date.clone(),
            },
        );
        for component in &source.components {
            let candidates = rel.release.packages_indexes(component, arch, dists)?;
            indexes.push((base, suite, dists, component, candidates));
        }
    }
    let texts = futures::future::try_join_all(indexes.iter().map(
        |(_, _, dists, component, candidates)| {
            packages_index(fetcher, dists, component, arch, candidates)
        },
    ))
    .await?;
    crate::timings::mark(format_args!(
        "{arch}: Packages indexes fetched and verified"
    ));

    // 3. Parse them in manifest order (ties between equal versions go to the first).
    let mut candidates: Vec<(PackageEntry, String, String)> = Vec::new();
    for ((base, suite, dists, component, _), (url, index, text)) in indexes.iter().zip(texts) {
        arch_lock.indexes.insert(url, index);
        let what = format!("{dists}/{component}/binary-{arch}/Packages");
        for entry in apt::parse_packages(&text, &what, &keep)? {
            if entry.architecture == arch || entry.architecture == "all" {
                candidates.push((entry, base.to_string(), suite.to_string()));
            }
        }
    }
    crate::timings::mark(format_args!("{arch}: Packages indexes parsed"));
    let searched: Vec<&str> = suites.iter().map(|(_, _, _, d)| d.as_str()).collect();
    let mut chosen: Vec<&(PackageEntry, String, String)> = Vec::new();
    for name in &wanted {
        match apt::resolve::highest(&candidates, name, |c| &c.0) {
            Some(best) => chosen.push(best),
            None => {
                return Err(Error::Build(format!(
                    "package {name} is not in any index for {arch} (searched {}); check its name with `apt-cache policy {name}` or add the suite/component that has it",
                    searched.join(", ")
                )))
            }
        }
    }
    if !opts.quiet {
        let entries: Vec<&PackageEntry> = chosen.iter().map(|c| &c.0).collect();
        for (package, group) in apt::resolve::unmet_depends(&entries) {
            eprintln!("warning: {package} depends on {group}, which the manifest does not declare");
        }
    }
    let mut resolved = Vec::new();
    for (entry, base, suite) in chosen {
        let url = format!("{base}/{}", entry.filename);
        let pin = lock::PackageLock::new(
            &entry.version,
            &entry.architecture,
            suite,
            &url,
            entry.size,
            &entry.sha256,
        )
        .map_err(|e| Error::Build(format!("{url}: {e}")))?;
        arch_lock.packages.insert(entry.name.clone(), pin);
        resolved.push(Resolved {
            name: entry.name.clone(),
            version: entry.version.clone(),
            architecture: entry.architecture.clone(),
            suite: suite.clone(),
            url,
            size: entry.size,
            sha256: entry.sha256.clone(),
        });
    }
    Ok((resolved, arch_lock))
}

/// The first of `candidates` (`.xz`, `.gz`, plain, as Release lists them) the server
/// has, verified against Release and decompressed: (URL, lock entry, text).
async fn packages_index(
    fetcher: &Fetcher,
    dists: &str,
    component: &str,
    arch: &str,
    candidates: &[apt::IndexFile],
) -> Result<(String, lock::IndexLock, Vec<u8>)> {
    let want = |index: &apt::IndexFile| {
        let url = format!("{dists}/{}", index.path);
        Want {
            what: format!("index {}", index.path),
            url,
            size: index.size,
            sha256: index.sha256.clone(),
        }
    };
    // A form already in the cache is used without asking the server for the others.
    let mut found = None;
    for index in candidates {
        if let Some(bytes) = fetcher.cached_bytes(&want(index)).await? {
            found = Some((index, bytes));
            break;
        }
    }
    let mut tried = Vec::new();
    if found.is_none() {
        for index in candidates {
            let want = want(index);
            let Some(path) = fetcher.get_verified(&want, None).await? else {
                tried.push(fetcher.rewrite(&want.url));
                continue;
            };
            let bytes = std::fs::read(&path).map_err(|e| {
                Error::Build(format!("cannot read cached index {}: {e}", path.display()))
            })?;
            found = Some((index, bytes));
            break;
        }
    }
    if let Some((index, bytes)) = found {
        let url = want(index).url;
        let text = match index.compression {
            apt::Compression::None => bytes,
            c => apt::decompress(&bytes, c, PACKAGES_LIMIT, &url)?,
        };
        let entry = lock::IndexLock {
            size: index.size,
            sha256: Sha256::from_hex(&index.sha256)
                .map_err(|e| Error::Build(format!("{url}: {e}")))?,
        };
        return Ok((url, entry, text));
    }
    Err(Error::Build(format!(
        "{dists}: no Packages index for {component}/binary-{arch} could be fetched (tried {})",
        tried.join(", ")
    )))
}

/// One package's data.tar streamed through its selector into a tree of its own.
struct PackagePart {
    tree: Tree,
    contribution: select::Contribution,
    shipped: Shipped,
    /// The Mozilla certificates (PEM by package path), from ca-certificates only.
    certs: BTreeMap<String, Vec<u8>>,
    control: deb::Control,
}

/// Select one package's files (from its cached, verified .deb) into its own tree.
fn select_package(
    manifest: &Manifest,
    arch: &str,
    resolved: &Resolved,
    path: &Path,
) -> Result<PackagePart> {
    let name = &resolved.name;
    let spec = manifest
        .packages
        .iter()
        .find(|p| &p.name == name)
        .expect("resolved packages come from the manifest");
    let capture = manifest.generate.ca_bundle && name == "ca-certificates";
    let mut tree =
        Tree::new().map_err(|e| Error::Build(format!("cannot create the spool: {e}")))?;
    let mut certs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // Every file of the package, selected or not: what a linkage miss can suggest adding.
    let mut shipped = Shipped::new(manifest.image.merged_usr);
    let open = || {
        std::fs::File::open(path)
            .map(|f| std::io::BufReader::with_capacity(256 * 1024, f))
            .map_err(|e| Error::Build(format!("cannot open cached {}: {e}", path.display())))
    };
    let what = resolved.url.clone();
    let mut selector = Selector::new(
        spec,
        arch,
        manifest.image.merged_usr,
        manifest.image.copyright,
    );
    let control = deb::read_deb(open()?, &what, |entry, data| -> Result<()> {
        shipped.record(name, entry);
        let is_cert = capture
            && matches!(entry.kind, deb::EntryKind::File)
            && entry.path.starts_with(MOZILLA_CERTS)
            && entry.path.ends_with(".crt");
        if is_cert {
            let mut pem = Vec::new();
            data.read_to_end(&mut pem)
                .map_err(|e| Error::Build(format!("{what}: reading {}: {e}", entry.path)))?;
            selector.entry(&mut tree, entry, &mut &pem[..])?;
            certs.insert(entry.path.clone(), pem);
        } else {
            selector.entry(&mut tree, entry, data)?;
        }
        Ok(())
    })?;
    // Selected hard links whose target was not selected: a second pass copies it.
    let orphans = selector.orphan_targets();
    if !orphans.is_empty() {
        deb::read_deb(open()?, &what, |entry, data| -> Result<()> {
            if orphans.contains(&entry.path) {
                selector.orphan_target(&mut tree, entry, data)?;
            }
            Ok(())
        })?;
    }
    Ok(PackagePart {
        tree,
        contribution: selector.finish()?,
        shipped,
        certs,
        control,
    })
}

/// `work(i)` for every `i` in `0..n` on all cores, and `consume(i, result)` on this
/// thread in index order as the results come in (so what is built from them does not
/// depend on which finished first). Workers run at most `2 × workers` indexes ahead of
/// the last consumed one, so the results waiting (for packages: a spool file each) stay
/// bounded however large `n` is. The first error of `consume` stops the workers and is
/// returned; a panic in `work` stops them and is resumed here.
fn ordered_parallel<T: Send, E>(
    n: usize,
    work: impl Fn(usize) -> T + Sync,
    mut consume: impl FnMut(usize, T) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::{mpsc, Condvar, Mutex};
    let workers = std::thread::available_parallelism()
        .map_or(1, |c| c.get())
        .min(n)
        .max(1);
    let ahead = 2 * workers;
    let next = AtomicUsize::new(0);
    // (indexes consumed so far, stop)
    let gate = (Mutex::new((0usize, false)), Condvar::new());
    let set = |f: &dyn Fn(&mut (usize, bool))| {
        let mut g = gate.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
        gate.1.notify_all();
    };
    /// Stops the other workers when this one unwinds.
    struct StopOnPanic<'a>(&'a (Mutex<(usize, bool)>, Condvar));
    impl Drop for StopOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0 .0.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
                self.0 .1.notify_all();
            }
        }
    }
    let (tx, rx) = mpsc::channel::<(usize, T)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, gate, work) = (&next, &gate, &work);
            scope.spawn(move || {
                let _stop = StopOnPanic(gate);
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= n {
                        return;
                    }
                    {
                        let mut g = gate.0.lock().unwrap_or_else(|e| e.into_inner());
                        while i >= g.0 + ahead && !g.1 {
                            g = gate.1.wait(g).unwrap_or_else(|e| e.into_inner());
                        }
                        if g.1 {
                            return;
                        }
                    }
                    if tx.send((i, work(i))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut waiting = BTreeMap::new();
        let mut consumed = 0;
        let mut result = Ok(());
        // Ends when every worker has ended (and dropped its sender).
        for (i, t) in rx {
            if result.is_err() {
                continue;
            }
            waiting.insert(i, t);
            while let Some(t) = waiting.remove(&consumed) {
                if let Err(e) = consume(consumed, t) {
                    result = Err(e);
                    set(&|g| g.1 = true);
                    break;
                }
                consumed += 1;
                set(&|g| g.0 = consumed);
            }
        }
        result
    })
}

/// Stream each package's data.tar through its selector (packages on all cores, each
/// into a tree of its own), merge them in package order into one tree as they come,
/// then add what the generators make.
fn compose_tree(
    manifest: &Manifest,
    arch: &str,
    packages: &[Resolved],
    debs: &[PathBuf],
) -> Result<(Tree, Vec<String>, Shipped)> {
    let mut tree =
        Tree::new().map_err(|e| Error::Build(format!("cannot create the spool: {e}")))?;
    let mut certs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut setid = Vec::new();
    let have_ca =
        manifest.generate.ca_bundle && packages.iter().any(|p| p.name == "ca-certificates");
    let mut shipped = Shipped::new(manifest.image.merged_usr);
    // Packages are read on all cores and merged here in package order, so the first
    // failure in package order is the one reported, whichever thread saw it.
    ordered_parallel(
        packages.len(),
        |i| select_package(manifest, arch, &packages[i], &debs[i]),
        |i, part| -> Result<()> {
            let part = part?;
            select::merge(&mut tree, &part.tree, &part.contribution)?;
            drop(part.tree);
            shipped.absorb(part.shipped);
            certs.extend(part.certs);
            setid.extend(part.contribution.setid);
            if manifest.generate.dpkg_status {
                generate::dpkg_status(
                    &mut tree,
                    &packages[i].name,
                    &part.control.control,
                    part.control.md5sums.as_deref(),
                )?;
            }
            Ok(())
        },
    )?;
    if manifest.generate.ca_bundle {
        if !have_ca {
            return Err(generate::GenerateError::NoCertificates {
                detail: format!("it is not declared for {arch}"),
            }
            .into());
        }
        generate::ca_bundle(&mut tree, &certs)?;
    }
    if manifest.generate.passwd {
        generate::passwd(&mut tree, manifest)?;
    }
    generate::manifest_entries(&mut tree, manifest, arch)?;
    if manifest.image.merged_usr {
        select::add_merged_usr_links(&mut tree, arch).map_err(select::SelectError::from)?;
    }
    Ok((tree, setid, shipped))
}

fn image_config(manifest: &Manifest, arch: &str) -> ImageConfig {
    let (architecture, variant) = manifest::oci_platform(arch).unwrap_or(("unknown", None));
    let mut env = manifest.image.env.clone();
    env.entry("PATH".to_string())
        .or_insert_with(|| DEFAULT_PATH.to_string());
    ImageConfig {
        architecture: architecture.to_string(),
        variant: variant.map(str::to_string),
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        user: manifest.resolved_user(),
        workdir: manifest.image.workdir.clone(),
        entrypoint: manifest.image.entrypoint.clone(),
        cmd: manifest.image.cmd.clone(),
        labels: manifest.image.labels.clone(),
    }
}

/// Parse `FROM=TO` of `--mirror`.
pub fn parse_mirror(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok((
            from.trim_end_matches('/').to_string(),
            to.trim_end_matches('/').to_string(),
        )),
        _ => Err(format!(
            "`{s}` is not FROM=TO, e.g. http://archive.ubuntu.com=http://127.0.0.1:8080"
        )),
    }
}

/// The human summary printed on stderr after a build.
pub fn summary(result: &BuildResult) -> String {
    let mut out = String::new();
    for image in &result.images {
        out.push_str(&format!(
            "{}: {} packages, {} entries ({} ELF files linked), layer {} ({} bytes)\n",
            image.arch,
            image.packages.len(),
            image.entries,
            image.elf_files,
            image.layer.digest,
            image.layer.size
        ));
        for p in &image.packages {
            out.push_str(&format!(
                "  {} {} ({}, {})\n",
                p.name, p.version, p.architecture, p.suite
            ));
        }
        for f in &image.setid {
            out.push_str(&format!("  setuid/setgid: {f}\n"));
        }
    }
    out.push_str(&format!(
        "{} {}\n",
        if result.from_lock {
            "packages pinned by"
        } else {
            "lock"
        },
        result.lock_path.display()
    ));
    if let Some(r) = &result.rootfs {
        out.push_str(&format!(
            "rootfs {}: {} files, {} directories, {} symlinks, {} hard links, {} bytes\n",
            r.dir.display(),
            r.files,
            r.dirs,
            r.symlinks,
            r.hardlinks,
            r.bytes
        ));
    }
    out.push_str(&format!(
        "wrote {} tagged {}\n",
        result.output.display(),
        result.tag
    ));
    if let Some(r) = &result.rootfs {
        out.push_str(&format!(
            "wrote root filesystem {} ({} directories, {} files, {} symlinks, {} hard links)\n",
            r.dir.display(),
            r.dirs,
            r.files,
            r.symlinks,
            r.hardlinks
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ordered_parallel;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    #[test]
    fn results_are_consumed_in_index_order() {
        let mut seen = Vec::new();
        let r: Result<(), ()> = ordered_parallel(
            200,
            |i| {
                // Later indexes finish first now and then.
                if i % 7 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                i * 2
            },
            |i, v| {
                assert_eq!(v, i * 2);
                seen.push(i);
                Ok(())
            },
        );
        assert!(r.is_ok());
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn workers_stay_a_bounded_distance_ahead() {
        let consumed = AtomicUsize::new(0);
        let widest = AtomicUsize::new(0);
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let r: Result<(), ()> = ordered_parallel(
            100,
            |i| {
                let gap = i.saturating_sub(consumed.load(SeqCst));
                widest.fetch_max(gap, SeqCst);
            },
            |_, ()| {
                std::thread::sleep(std::time::Duration::from_micros(200));
                consumed.fetch_add(1, SeqCst);
                Ok(())
            },
        );
        assert!(r.is_ok());
        let limit = 2 * cores.min(100);
        assert!(
            widest.load(SeqCst) <= limit,
            "{} > {limit}",
            widest.load(SeqCst)
        );
    }

    #[test]
    fn the_first_error_in_order_stops_the_work() {
        let started = AtomicUsize::new(0);
        let r = ordered_parallel(
            10_000,
            |i| {
                started.fetch_add(1, SeqCst);
                i
            },
            |i, _| {
                if i == 5 {
                    Err(format!("stop at {i}"))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err("stop at 5".to_string()));
        assert!(started.load(SeqCst) < 100, "{}", started.load(SeqCst));
    }

    #[test]
    fn a_panicking_worker_does_not_hang_the_others() {
        let r = std::panic::catch_unwind(|| {
            let _: Result<(), ()> = ordered_parallel(
                1000,
                |i| {
                    if i == 3 {
                        panic!("worker panic");
                    }
                },
                |_, ()| Ok(()),
            );
        });
        assert!(r.is_err());
    }
}
