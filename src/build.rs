//! The build, as one readable sequence of stages:
//!
//! 1. `plan`: the manifest, the architectures, the lock on disk, the HTTP client;
//! 2. [`Outputs::plan`]: every requested output checked before any work;
//! 3. `pin`: the packages of each architecture, from a matching lock or resolved from
//!    verified indexes ([`Repository`]), with the `--locked` checks;
//! 4. per architecture: fetch the pinned `.deb`s, compose the tree
//!    ([`rootfs::compose`](crate::rootfs::compose)), check its ELF linkage, stage the
//!    image ([`Staging::add_image`]);
//! 5. the index, the `--locked` hash audit, then [`Staging::commit`]: push, every output
//!    in place or none, the lock.
//!
//! Each stage lives in its own module; this file only sequences them and turns their
//! results into the summary. `compose lock` is stages 1 and 3; `compose verify` is in
//! [`crate::verify`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::fetch::{FetchOptions, Fetcher, Timeouts};
use crate::lock::{self, Lock, Sha256};
use crate::manifest::Manifest;
use crate::oci::{ImageConfig, LayerInfo};
use crate::output::{Format, Outputs, Request, Staging};
use crate::repo::{Repository, Resolved};
use crate::rootfs::compose::compose_tree;
use crate::rootfs::export::ExportSummary;
use crate::rootfs::generate::Generators;
use crate::rootfs::linkage::{self, ImageLinkageError};
use crate::text::shown;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What `compose MANIFEST` (or `compose lock`/`verify`) was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The manifest file; host paths in it are relative to its directory.
    pub manifest: PathBuf,
    /// Debian or `linux/…` names; empty: the manifest's, else the host's.
    pub archs: Vec<String>,
    /// Default `out/<image name>` ([`Format::default_path`]).
    pub output: Option<PathBuf>,
    /// Default: the image name.
    pub tag: Option<String>,
    /// Default: the XDG cache dir.
    pub cache: Option<PathBuf>,
    /// `--mirror FROM=TO` URL prefix rewrites, in the order given (first match wins).
    pub mirrors: Vec<(String, String)>,
    /// `--keyring URL=FILE`: the keyring of the sources whose `url` (as written in the
    /// manifest) is URL ([`Manifest::override_keyrings`]).
    pub keyrings: Vec<(String, PathBuf)>,
    /// `--exclude-package NAME`: declared packages left out of this build
    /// ([`Manifest::exclude_packages`]); the lock records them.
    pub exclude_packages: Vec<String>,
    /// `--quiet`: no progress display and no unmet-dependency warnings.
    pub quiet: bool,
    /// `--allow-expired`: accept Release files whose `Valid-Until` has passed.
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
    /// `--format`: a layout directory (default) or one archive file at `output`.
    pub format: Format,
    /// `--sbom FILE`: SPDX 2.3 JSON of the image, written only when the build succeeds.
    pub sbom: Option<PathBuf>,
    /// HTTP connect and read timeouts; default `COMPOSE_HTTP_TIMEOUT`, else 20 s / 60 s.
    pub http_timeout: Option<std::time::Duration>,
    /// `--push REGISTRY/REPO[:TAG]` and `--insecure`.
    pub push: Option<crate::push::PushOptions>,
    /// `--compression`: overrides the manifest's `[image] compression`.
    pub compression: Option<crate::oci::Compressor>,
}

impl BuildOptions {
    fn outputs(&self) -> Request {
        Request {
            format: self.format,
            output: self.output.clone(),
            rootfs: self.rootfs.clone(),
            sbom: self.sbom.clone(),
            push: self.push.clone(),
            lock: None,
            compression: Default::default(),
        }
    }
}

/// One architecture's result.
#[derive(Debug, Clone)]
pub struct ArchImage {
    /// The architecture built.
    pub arch: Arch,
    /// Its packages, in name order.
    pub packages: Vec<Resolved>,
    /// The layer's digests and size.
    pub layer: LayerInfo,
    /// `sha256:…` of the image config.
    pub config_digest: String,
    /// `sha256:…` of the image manifest.
    pub manifest_digest: String,
    /// Entries (paths) in the tree.
    pub entries: usize,
    /// Paths of setuid/setgid files, in package order.
    pub setid: Vec<String>,
    /// ELF files the linkage check read.
    pub elf_files: usize,
    /// Names of the packages the archive no longer had, fetched from the snapshot
    /// service ([`crate::snapshot`]), in name order.
    pub from_snapshot: Vec<String>,
}

/// What a successful build did, for the summary ([`crate::summary::summary`]).
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// What `index.json` points to: `sha256:…`.
    pub digest: String,
    /// Where the image was written: the layout directory or the archive file.
    pub output: PathBuf,
    /// The tag the image was written under.
    pub tag: String,
    /// One per architecture, in the order built.
    pub images: Vec<ArchImage>,
    /// The lock written (or checked) and whether the packages came from it.
    pub lock_path: PathBuf,
    /// The packages came from a matching lock without resolving.
    pub from_lock: bool,
    /// What `--rootfs` wrote.
    pub rootfs: Option<ExportSummary>,
    /// What `--push` uploaded.
    pub push: Option<crate::push::PushReport>,
}

/// Everything a build needs before it starts per-architecture work.
pub(crate) struct Plan {
    pub(crate) manifest: Manifest,
    /// The declared packages left out (`--exclude-package`).
    pub(crate) excluded: BTreeSet<String>,
    pub(crate) archs: Vec<Arch>,
    tag: String,
    pub(crate) lock_path: PathBuf,
    /// The lock on disk, if any.
    pub(crate) existing: Option<Lock>,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) fetcher: Arc<Fetcher>,
    /// HTTP timeouts, also for `--push`.
    timeouts: Timeouts,
}

/// Stage 1: read the manifest and the lock, choose the architectures, start the client.
pub(crate) fn plan(opts: &BuildOptions) -> Result<Plan> {
    crate::timings::start();
    let mut manifest = Manifest::load(&opts.manifest)?;
    manifest
        .override_keyrings(&opts.keyrings)
        .map_err(Error::Usage)?;
    let excluded: BTreeSet<String> = opts.exclude_packages.iter().cloned().collect();
    manifest.exclude_packages(&excluded).map_err(Error::Usage)?;
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
        .map_err(|source| Error::Io {
            context: "cannot start the async runtime".into(),
            source,
        })?;
    let timeouts = match opts.http_timeout {
        Some(d) => Timeouts::both(d),
        None => Timeouts::from_env()
            .map_err(Error::Usage)?
            .unwrap_or_default(),
    }
    .with_env_min_rate()
    .map_err(Error::Usage)?;
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
        excluded,
        archs,
        tag,
        lock_path,
        existing,
        runtime,
        fetcher,
        timeouts,
    })
}

impl Plan {
    pub(crate) fn manifest_sha(&self) -> Sha256 {
        Sha256::of(self.manifest.text.as_bytes())
    }

    /// The lock on disk if it pins exactly this manifest, these architectures and epoch,
    /// with the same packages left out.
    fn matching_lock(&self, epoch: u64) -> Option<&Lock> {
        self.existing.as_ref().filter(|l| {
            l.manifest == self.manifest_sha()
                && l.excluded == self.excluded
                && l.epoch == epoch
                && l.archs
                    .keys()
                    .eq(self.archs.iter().collect::<BTreeSet<_>>())
        })
    }

    /// A spinner for a phase, cleared when the returned guard drops.
    fn phase(&self, message: String) -> Phase {
        Phase(self.fetcher.phase(message))
    }

    /// Resolve every architecture from verified indexes into a lock without outputs.
    pub(crate) fn resolve_all(
        &self,
        opts: &BuildOptions,
    ) -> Result<(Lock, BTreeMap<Arch, Vec<Resolved>>)> {
        let mut lock = Lock::new(self.manifest_sha(), opts.epoch, self.tag.clone());
        lock.excluded = self.excluded.clone();
        let mut pinned = BTreeMap::new();
        let mut repo = Repository::new(&self.fetcher, opts.allow_expired);
        // Each unmet dependency once, with the architectures it applies to.
        let mut unmet: BTreeMap<(String, String), Vec<Arch>> = BTreeMap::new();
        for &arch in &self.archs {
            let _phase = self.phase(format!("{arch}: verifying indexes, resolving"));
            let resolution = self.runtime.block_on(repo.resolve(&self.manifest, arch))?;
            for dependency in resolution.unmet {
                unmet.entry(dependency).or_default().push(arch);
            }
            lock.archs.insert(arch, resolution.lock);
            pinned.insert(arch, resolution.packages);
        }
        if !opts.quiet {
            for ((package, group), archs) in &unmet {
                eprintln!(
                    "warning: {} depends on {}, which the manifest does not declare ({})",
                    shown(package),
                    shown(group),
                    names(archs)
                );
            }
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

fn changes(lock_path: &Path, changes: &[lock::Change]) -> String {
    changes
        .iter()
        .map(|c| format!("  {}:{}", lock_path.display(), c))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The packages of every architecture, and the lock that will record the build.
struct Pins {
    lock: Lock,
    packages: BTreeMap<Arch, Vec<Resolved>>,
    /// Taken from a matching lock without resolving.
    from_lock: bool,
}

/// Stage 3: from a matching lock (no index needed), else resolved; with `--locked`, the
/// lock must exist, match the manifest, and be what a fresh resolution gives.
fn pin(plan: &Plan, opts: &BuildOptions) -> Result<Pins> {
    let matching = plan.matching_lock(opts.epoch);
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
        if existing.excluded != plan.excluded {
            return Err(Error::Lock(format!(
                "--locked: the lock {} was written with {}, this build has {}; give the same switches, or run `compose lock {}` with these to accept the change",
                plan.lock_path.display(),
                exclusions(&existing.excluded),
                exclusions(&plan.excluded),
                opts.manifest.display()
            )));
        }
        if matching.is_none() {
            return Err(Error::Lock(format!(
                "--locked: the lock {} pins architectures [{}] and epoch {}, this build asks for [{}] and epoch {}",
                plan.lock_path.display(),
                names(existing.archs.keys()),
                existing.epoch,
                names(&plan.archs),
                opts.epoch
            )));
        }
    }
    match (matching, opts.locked && !opts.offline) {
        (Some(existing), true) => {
            let (fresh, packages) = plan.resolve_all(opts)?;
            let diff = existing.input_changes(&fresh);
            if !diff.is_empty() {
                return Err(Error::Lock(format!(
                    "--locked: resolving again would change the lock:\n{}\n{}run `compose lock {}` to accept the new packages",
                    changes(&plan.lock_path, &diff),
                    crate::outdated::fixes(plan, opts, existing, &packages),
                    opts.manifest.display()
                )));
            }
            Ok(Pins {
                lock: fresh,
                packages,
                from_lock: false,
            })
        }
        (Some(existing), false) => {
            let mut lock = existing.clone();
            let packages = plan
                .archs
                .iter()
                .map(|&a| Ok((a, Resolved::pinned_checked(existing, a, &plan.manifest)?)))
                .collect::<Result<_>>()?;
            for a in lock.archs.values_mut() {
                a.outputs = None;
            }
            lock.index = None;
            lock.tool = lock::tool_version();
            lock.tag = plan.tag.clone();
            Ok(Pins {
                lock,
                packages,
                from_lock: true,
            })
        }
        (None, _) if opts.offline => Err(Error::Lock(format!(
            "--offline needs a lock that pins this manifest, its architectures and epoch; {} {}; run once without --offline",
            plan.lock_path.display(),
            if plan.existing.is_some() { "does not match" } else { "does not exist" }
        ))),
        (None, _) => {
            let (lock, packages) = plan.resolve_all(opts)?;
            Ok(Pins {
                lock,
                packages,
                from_lock: false,
            })
        }
    }
}

/// What stage 4 made of one architecture.
enum ArchOutcome {
    /// Its image is staged.
    Staged(ArchImage),
    /// Its linkage check passed; not staged, because an earlier architecture's failed.
    Checked,
    /// Its linkage check failed: the report with the misses.
    Unloadable(linkage::Report),
}

/// Stage 4 for one architecture: fetch (a pinned `.deb` the archive dropped from the
/// snapshot service at the `Date` `pinned` records for its suite), compose, check
/// linkage, stage the image (when
/// `staging` is given: after another architecture's linkage failed, the build only goes
/// on checking, so that one error names every architecture's misses).
fn build_arch(
    plan: &Plan,
    opts: &BuildOptions,
    arch: Arch,
    packages: Vec<Resolved>,
    pinned: &lock::ArchLock,
    staging: Option<&mut Staging>,
) -> Result<ArchOutcome> {
    let manifest = &plan.manifest;
    let repo = Repository::new(&plan.fetcher, opts.allow_expired);
    let snapshots = crate::snapshot::package_urls(manifest, arch, pinned, &packages);
    let fetched = plan.runtime.block_on(repo.fetch(&packages, &snapshots))?;
    let mut from_snapshot = Vec::new();
    for ((p, (_, snapshot)), url) in packages.iter().zip(&fetched).zip(&snapshots) {
        if let (true, Some(url)) = (snapshot, url) {
            eprintln!(
                "note: {} {} ({}) is gone from {}; fetched from the snapshot service: {url} (checked against the pinned size and SHA-256)",
                p.name, p.version, p.architecture, p.url
            );
            from_snapshot.push(p.name.clone());
        }
    }
    let debs: Vec<PathBuf> = fetched.into_iter().map(|(path, _)| path).collect();
    crate::timings::mark(format_args!("{arch}: packages fetched and verified"));
    let phase = plan.phase(format!("{arch}: selecting files"));
    let generators = Generators::new(manifest, arch, &plan.tag, opts.epoch);
    let composed = compose_tree(manifest, &generators, arch, &packages, &debs)?;
    let tree = &composed.tree;
    crate::timings::mark(format_args!(
        "{arch}: files selected ({} entries)",
        tree.len()
    ));
    // Before anything of this architecture is written.
    phase.0.set_message(format!("{arch}: checking ELF linkage"));
    let linked = match linkage::check(tree, &[], Some(&composed.shipped)) {
        Ok(report) => report,
        Err(failed) => return Ok(ArchOutcome::Unloadable(failed.report)),
    };
    crate::timings::mark(format_args!("{arch}: linkage checked"));
    let Some(staging) = staging else {
        return Ok(ArchOutcome::Checked);
    };
    phase.0.set_message(format!("{arch}: writing the layer"));
    let config = image_config(manifest, arch);
    let staged = staging.add_image(arch, tree, &packages, &config, &manifest.image.annotations)?;
    drop(phase);
    Ok(ArchOutcome::Staged(ArchImage {
        arch,
        packages,
        layer: staged.layer,
        config_digest: staged.written.config.digest,
        manifest_digest: staged.written.manifest.digest,
        entries: tree.len(),
        setid: composed.setid,
        elf_files: linked.elf_files,
        from_snapshot,
    }))
}

/// Compose the image a manifest describes; write (or, with `--locked`, check) its lock.
pub fn build(opts: &BuildOptions) -> Result<BuildResult> {
    let plan = plan(opts)?;
    if !opts.quiet && !plan.excluded.is_empty() {
        eprintln!(
            "note: left out of this build by {}: {} (the lock records it)",
            if plan.excluded.len() == 1 {
                "--exclude-package"
            } else {
                "--exclude-package switches"
            },
            plan.excluded.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let name = &plan.manifest.image.name;
    let mut request = opts.outputs();
    request.lock = Some(plan.lock_path.clone());
    request.compression = opts
        .compression
        .or(plan.manifest.image.compression)
        .unwrap_or_default();
    let outputs = Outputs::plan(
        &request,
        name,
        &plan.tag,
        &plan.archs,
        opts.epoch,
        opts.audit,
    )?;
    let Pins {
        mut lock,
        mut packages,
        from_lock,
    } = pin(&plan, opts)?;
    let mut staging = outputs.stage(plan.fetcher.cache.root())?;
    let mut images = Vec::new();
    let mut unloadable = Vec::new();
    for &arch in &plan.archs {
        let packages = packages.remove(&arch).unwrap_or_default();
        let unpinned = lock::ArchLock::default();
        let pinned = lock.archs.get(&arch).unwrap_or(&unpinned);
        let stage = unloadable.is_empty().then_some(&mut staging);
        let image = match build_arch(&plan, opts, arch, packages, pinned, stage)? {
            ArchOutcome::Staged(image) => image,
            ArchOutcome::Checked => continue,
            ArchOutcome::Unloadable(report) => {
                unloadable.push((arch, report));
                continue;
            }
        };
        let outputs =
            lock::Outputs::new(&image.layer, &image.config_digest, &image.manifest_digest)
                .map_err(Error::Internal)?;
        if let Some(a) = lock.archs.get_mut(&arch) {
            a.outputs = Some(outputs);
        }
        images.push(image);
    }
    if !unloadable.is_empty() {
        return Err(ImageLinkageError { archs: unloadable }.into());
    }
    let digest = staging.finish()?;
    lock.index = Some(Sha256::from_digest(&digest).map_err(Error::Internal)?);
    lock.compression = Some(request.compression);
    if opts.locked {
        // The hash audit: what was built must be what the lock recorded.
        let existing = plan.existing.as_ref().expect("checked by pin");
        if existing.has_outputs() {
            let diff = existing.output_changes(&lock);
            if !diff.is_empty() {
                return Err(Error::Lock(format!(
                    "--locked: the output differs from the lock (hash audit failed):\n{}",
                    changes(&plan.lock_path, &diff)
                )));
            }
        }
    }
    let write_lock = plan.existing.as_ref() != Some(&lock);
    let committed = staging.commit(
        &digest,
        write_lock.then_some((&lock, plan.lock_path.as_path())),
        &plan.runtime,
        |message| plan.fetcher.phase(message),
        plan.timeouts,
    )?;
    if let Some(summary) = &committed.rootfs {
        if !summary.owners_set {
            eprintln!(
                "note: not running as root, so {} was written without owners: every entry belongs to you (the image layer has the real ones)",
                summary.dir.display()
            );
        }
    }
    crate::timings::mark("output committed");
    Ok(BuildResult {
        digest,
        output: outputs.path.clone(),
        tag: plan.tag,
        images,
        lock_path: plan.lock_path,
        from_lock,
        rootfs: committed.rootfs,
        push: committed.push,
    })
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

/// `--arch` as given, else the manifest's, else the host's.
fn architectures(manifest: &Manifest, requested: &[String]) -> Result<Vec<Arch>> {
    Arch::choose(requested, &manifest.default_architectures()).map_err(Error::Usage)
}

/// `--exclude-package a --exclude-package b`, or `no --exclude-package`.
pub(crate) fn exclusions(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        return "no --exclude-package".into();
    }
    names
        .iter()
        .map(|n| format!("--exclude-package {n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `amd64, arm64`.
fn names<'a>(archs: impl IntoIterator<Item = &'a Arch>) -> String {
    Arch::list(archs)
}

fn image_config(manifest: &Manifest, arch: Arch) -> ImageConfig {
    let mut env = manifest.image.env.clone();
    env.entry("PATH".to_string())
        .or_insert_with(|| DEFAULT_PATH.to_string());
    ImageConfig {
        architecture: arch.oci_architecture().to_string(),
        variant: arch.oci_variant().map(str::to_string),
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        user: manifest.resolved_user(),
        workdir: manifest.image.workdir.clone(),
        entrypoint: manifest.image.entrypoint.clone(),
        cmd: manifest.image.cmd.clone(),
        labels: manifest.image.labels.clone(),
    }
}
