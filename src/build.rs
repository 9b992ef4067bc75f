//! The build, as one readable sequence of stages:
//!
//! 1. `plan`: the manifest, the architectures, the lock on disk, the HTTP client;
//! 2. [`Outputs::plan`]: every requested output checked before any work;
//! 3. `pin`: the packages of each architecture, from a matching lock or resolved from
//!    verified indexes ([`Repository`]), with the `--locked` checks;
//! 4. per architecture: fetch the pinned `.deb`s and compose the tree
//!    ([`rootfs::compose`](crate::rootfs::compose)), each package selected as soon as its
//!    `.deb` is verified, check its ELF linkage, stage the image
//!    ([`Staging::add_image`]);
//! 5. the index, the `--locked` hash audit, then [`Staging::commit`]: push, every output
//!    in place or none, the lock.
//!
//! Each stage lives in its own module; this file only sequences them and turns their
//! results into the summary. `compose lock` is stages 1 and 3; `compose verify` is in
//! [`crate::verify`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::fetch::{FetchOptions, Fetcher, Timeouts};
use crate::lock::{self, Lock, Sha256};
use crate::manifest::Manifest;
use crate::oci::{Compressor, ImageConfig, LayerInfo};
use crate::output::{Format, Outputs, Request, Staging};
use crate::repo::{RepoCache, Repository, Resolved};
use crate::rootfs::compose::{compose_tree, Composed};
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
    /// `--attach-record`: the layout lists the build record (and the SBOM) as referrers.
    pub attach_record: bool,
    /// `--compression`: overrides the manifest's `[image] compression`.
    pub compression: Option<Compressor>,
}

impl BuildOptions {
    fn outputs(&self) -> Request {
        Request {
            format: self.format,
            output: self.output.clone(),
            rootfs: self.rootfs.clone(),
            sbom: self.sbom.clone(),
            push: self.push.clone(),
            attach_record: self.attach_record,
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
    /// With [`BuildOptions::audit`]: each path of the tree and the package (or
    /// generator) it came from, for `compose verify`'s report; empty otherwise.
    pub origins: BTreeMap<String, String>,
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
    pub(crate) runtime: Arc<tokio::runtime::Runtime>,
    pub(crate) fetcher: Arc<Fetcher>,
    /// HTTP timeouts, also for `--push`.
    timeouts: Timeouts,
    /// What resolutions keep for the next ([`Session`]).
    repo_cache: Arc<Mutex<RepoCache>>,
}

/// What the builds of one run share (`crate::many`): the async runtime, the HTTP client
/// with its download cache, and the repository's verified Releases and read indexes.
#[derive(Clone)]
pub struct Session {
    runtime: Arc<tokio::runtime::Runtime>,
    fetcher: Arc<Fetcher>,
    timeouts: Timeouts,
    repo_cache: Arc<Mutex<RepoCache>>,
}

impl Session {
    /// The runtime and client for `opts` (their manifest aside), with an empty
    /// repository cache.
    pub fn new(opts: &BuildOptions) -> Result<Session> {
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
        Ok(Session {
            runtime: Arc::new(runtime),
            fetcher,
            timeouts,
            repo_cache: Arc::default(),
        })
    }

    /// Keep these package names in every index read from now on (each manifest's of
    /// the run), so that one read serves every manifest.
    pub fn keep_names(&self, names: impl IntoIterator<Item = String>) {
        let mut cache = self.repo_cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.names.extend(names);
    }
}

/// Stage 1: read the manifest and the lock, choose the architectures, start the client.
pub(crate) fn plan(opts: &BuildOptions) -> Result<Plan> {
    plan_in(opts, None)
}

/// [`plan`] in a run's [`Session`] (a new one when `None`).
fn plan_in(opts: &BuildOptions, session: Option<&Session>) -> Result<Plan> {
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
    let Session {
        runtime,
        fetcher,
        timeouts,
        repo_cache,
    } = match session {
        Some(shared) => shared.clone(),
        None => Session::new(opts)?,
    };
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
        repo_cache,
    })
}

impl Plan {
    pub(crate) fn manifest_sha(&self) -> Sha256 {
        Sha256::of(self.manifest.text.as_bytes())
    }

    /// The SHA256 of each file the manifest includes, by name: the lock's `include` lines.
    pub(crate) fn includes_sha(&self) -> BTreeMap<String, Sha256> {
        self.manifest
            .includes
            .iter()
            .map(|i| (i.name.clone(), Sha256::of(i.text.as_bytes())))
            .collect()
    }

    /// Why the lock's `include` lines do not describe the files the manifest includes
    /// now (one sentence naming the first difference and its lock line), or `None`.
    pub(crate) fn includes_changed(&self, existing: &Lock) -> Option<String> {
        let now = self.includes_sha();
        let names: BTreeSet<&String> = now.keys().chain(existing.includes.keys()).collect();
        let why = names.into_iter().find_map(|name| {
            let fact = lock::Fact::Include { name: name.clone() };
            match (existing.includes.get(name), now.get(name)) {
                (Some(a), Some(b)) if a == b => None,
                (Some(a), Some(b)) => Some(format!(
                    "the included {name} changed since the lock was written ({}: {}, now {})",
                    existing.locate(&self.lock_path, &fact),
                    a.short(),
                    b.short()
                )),
                (Some(_), None) => Some(format!(
                    "the manifest no longer includes {name} ({})",
                    existing.locate(&self.lock_path, &fact)
                )),
                _ => Some(format!(
                    "the manifest includes {name}, which the lock {} does not record",
                    self.lock_path.display()
                )),
            }
        });
        why
    }

    /// The lock on disk if it pins exactly this manifest, these architectures and epoch,
    /// with the same packages left out.
    fn matching_lock(&self, epoch: u64) -> Option<&Lock> {
        self.existing.as_ref().filter(|l| {
            l.manifest == self.manifest_sha()
                && l.includes == self.includes_sha()
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
        lock.includes = self.includes_sha();
        lock.excluded = self.excluded.clone();
        let mut pinned = BTreeMap::new();
        let cache = std::mem::take(&mut *self.repo_cache.lock().unwrap_or_else(|e| e.into_inner()));
        let mut repo = Repository::with_cache(&self.fetcher, opts.allow_expired, cache);
        // Each unmet dependency once, with the architectures it applies to.
        let mut unmet: BTreeMap<(String, String), Vec<Arch>> = BTreeMap::new();
        let mut resolve = || -> Result<()> {
            for &arch in &self.archs {
                let _phase = self.phase(format!("{arch}: verifying indexes, resolving"));
                let resolution = self.runtime.block_on(repo.resolve(&self.manifest, arch))?;
                for dependency in resolution.unmet {
                    unmet.entry(dependency).or_default().push(arch);
                }
                lock.archs.insert(arch, resolution.lock);
                pinned.insert(arch, resolution.packages);
            }
            Ok(())
        };
        let resolved = resolve();
        *self.repo_cache.lock().unwrap_or_else(|e| e.into_inner()) = repo.into_cache();
        resolved?;
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
        if let Some(why) = plan.includes_changed(existing) {
            return Err(Error::Lock(format!(
                "--locked: {why}; run `compose lock {}` to accept the change",
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
    /// Its linkage check failed: the report with the misses, and the packages that ship
    /// what no declared package ships.
    Unloadable(linkage::Report, crate::suggest::Suggestions),
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
    let snapshots = crate::snapshot::package_urls(manifest, arch, pinned, &packages);
    let phase = plan.phase(format!("{arch}: selecting files"));
    let generators = Generators::new(manifest, arch, &plan.tag, opts.epoch);
    let (fetched, composed) =
        fetch_and_compose(plan, opts, &generators, arch, &packages, &snapshots);
    let fetched = fetched?;
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
    let composed = composed?;
    let tree = &composed.tree;
    crate::timings::mark(format_args!(
        "{arch}: files selected ({} entries)",
        tree.len()
    ));
    // Before anything of this architecture is written.
    phase.0.set_message(format!("{arch}: checking ELF linkage"));
    let linked = match linkage::check(tree, &[], Some(&composed.shipped)) {
        Ok(report) => report,
        Err(failed) => {
            let mut report = failed.report;
            phase.0.set_message(format!(
                "{arch}: searching the indexes for the packages that ship the missing names"
            ));
            let found = suggestions(plan, opts, arch, tree, &composed.shipped, &mut report);
            return Ok(ArchOutcome::Unloadable(report, found));
        }
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
        origins: if opts.audit {
            tree.iter()
                .map(|(p, n)| (p.clone(), n.origin.clone()))
                .collect()
        } else {
            BTreeMap::new()
        },
    }))
}

/// The cached `.deb` of each package, in package order, with whether the snapshot
/// service served it.
type Fetched = Vec<(PathBuf, bool)>;

/// Stage 4's fetch and tree together: the `.deb`s of `packages` fetched and verified
/// ([`Repository::fetch_each`], from `snapshots[i]` when the archive dropped one),
/// and each package selected as soon as its `.deb` is verified, while the others still
/// download ([`compose_tree`]). The fetch's result (the cached paths in package order,
/// each with whether the snapshot service served it) comes first: when it is an error,
/// the tree's is not to be reported, so a failed download is reported exactly as when
/// the tree was composed after every download. `COMPOSE_TIMINGS` marks each `.deb` as it
/// arrives, then `packages fetched and verified` when the last one has (selection may
/// still run), and `selected` for each package as its selection ends.
fn fetch_and_compose(
    plan: &Plan,
    opts: &BuildOptions,
    generators: &Generators,
    arch: Arch,
    packages: &[Resolved],
    snapshots: &[Option<String>],
) -> (Result<Fetched>, Result<Composed>) {
    let repo = Repository::new(&plan.fetcher, opts.allow_expired);
    let (arrived, debs) = std::sync::mpsc::channel::<(usize, PathBuf)>();
    std::thread::scope(|scope| {
        let composing = scope
            .spawn(|| compose_tree(&plan.manifest, generators, arch, packages, debs.into_iter()));
        let fetch = repo.fetch_each(packages, snapshots, move |i, path, _| {
            crate::timings::mark(format_args!("{arch}: fetched {}", packages[i].name));
            // Refused only once the tree stopped on an error: the fetch's result decides.
            let _ = arrived.send((i, path.to_path_buf()));
        });
        // The sender goes with the future: once the fetch has ended, so do the `.deb`s
        // the tree waits for.
        let fetched = plan.runtime.block_on(fetch).map_err(Error::from);
        if fetched.is_ok() {
            crate::timings::mark(format_args!("{arch}: packages fetched and verified"));
        }
        let composed = composing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .map_err(Error::from);
        (fetched, composed)
    })
}

/// What `compose suggest` found for each native binary on the image a manifest
/// describes: per architecture, the binaries' needs the image lacks (with hints), and the
/// blocks to add.
#[derive(Debug, Clone, Default)]
pub struct SuggestReport {
    /// Per architecture checked: `(binary, missing name, hint)`.
    pub misses: Vec<(Arch, Vec<linkage::Miss>)>,
    /// The blocks, merged across architectures.
    pub suggestions: crate::suggest::Suggestions,
}

impl SuggestReport {
    /// Every binary would start on the image as the manifest is.
    pub fn would_start(&self) -> bool {
        self.misses.iter().all(|(_, m)| m.is_empty())
    }

    /// Every miss is a library one of the blocks ships: with the blocks added, every
    /// binary would start.
    pub fn blocks_cover_all(&self) -> bool {
        (self.misses.iter().flat_map(|(_, m)| m)).all(|m| {
            let (linkage::Need::Library(n) | linkage::Need::Interpreter(n)) = &m.need;
            self.suggestions.block_for(n).is_some()
        })
    }

    /// What `compose suggest` prints on stdout.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (arch, misses) in &self.misses {
            if misses.is_empty() {
                out.push_str(&format!(
                    "{arch}: every need resolves on the image as the manifest is\n"
                ));
                continue;
            }
            for m in misses {
                out.push_str(&format!("{arch}: {m}\n"));
            }
        }
        let blocks = self.suggestions.lines();
        if !blocks.is_empty() {
            // The lines are written to follow one summary line: indented, one per line.
            for line in blocks.lines().filter(|l| !l.is_empty()) {
                out.push_str(line.strip_prefix("  ").unwrap_or(line));
                out.push('\n');
            }
        }
        out
    }
}

/// `compose suggest MANIFEST --binary FILE…`: compose the manifest's tree for each
/// architecture in memory (writing no output and no lock), check each binary against it
/// as if it were placed in the image, and name the blocks that would make it start.
/// Architectures: `--arch`, else the first binary's, else the manifest's.
pub fn suggest(opts: &BuildOptions, binaries: &[(String, Vec<u8>)]) -> Result<SuggestReport> {
    let mut opts = opts.clone();
    if opts.archs.is_empty() {
        if let Some(arch) = binaries.iter().find_map(|(_, b)| linkage::elf_arch(b)) {
            opts.archs = vec![arch.name().to_string()];
        }
    }
    let plan = plan(&opts)?;
    let Pins { mut packages, .. } = pin(&plan, &opts)?;
    let mut report = SuggestReport::default();
    for &arch in &plan.archs {
        let packages = packages.remove(&arch).unwrap_or_default();
        let generators = Generators::new(&plan.manifest, arch, &plan.tag, opts.epoch);
        let (fetched, composed) =
            fetch_and_compose(&plan, &opts, &generators, arch, &packages, &[]);
        fetched?;
        let composed = composed?;
        let mut checked = match linkage::check(&composed.tree, binaries, Some(&composed.shipped)) {
            Ok(checked) => checked,
            Err(failed) => failed.report,
        };
        // Only the binaries' needs: the image's own files are the build's business.
        checked
            .misses
            .retain(|m| binaries.iter().any(|(name, _)| name == &m.file));
        let found = suggestions(
            &plan,
            &opts,
            arch,
            &composed.tree,
            &composed.shipped,
            &mut checked,
        );
        report.suggestions.absorb(found);
        report.misses.push((arch, checked.misses));
    }
    Ok(report)
}

/// [`suggest`], then the blocks it names written into the manifest ([`crate::fix`],
/// refused when the file changed on disk meanwhile): what `compose suggest --fix` does.
pub fn suggest_fixing(
    opts: &BuildOptions,
    binaries: &[(String, Vec<u8>)],
) -> Result<(SuggestReport, crate::fix::Fixed)> {
    let read = std::fs::read(&opts.manifest).map_err(|source| Error::Io {
        context: format!("cannot read {}", opts.manifest.display()),
        source,
    })?;
    let report = suggest(opts, binaries)?;
    let fixed = if report.suggestions.blocks.is_empty() {
        crate::fix::Fixed::default()
    } else {
        crate::fix::apply(&opts.manifest, &read, &report.suggestions.blocks)?
    };
    Ok((report, fixed))
}

/// [`build`], and when the linkage check names packages to add: write their blocks into
/// the manifest ([`crate::fix`], refused when the file changed on disk meanwhile), say
/// on stderr what was added, and build once more.
pub fn build_fixing(opts: &BuildOptions) -> Result<BuildResult> {
    let read = std::fs::read(&opts.manifest).map_err(|source| Error::Io {
        context: format!("cannot read {}", opts.manifest.display()),
        source,
    })?;
    let failed = match build(opts) {
        Err(Error::Linkage(failed)) if !failed.suggestions.blocks.is_empty() => failed,
        other => return other,
    };
    let fixed = crate::fix::apply(&opts.manifest, &read, &failed.suggestions.blocks)?;
    if fixed.is_empty() {
        return Err(Error::Linkage(failed));
    }
    eprintln!("{}", fixed.summary(&opts.manifest));
    for block in &failed.suggestions.blocks {
        for line in block.toml().lines() {
            eprintln!("  {line}");
        }
    }
    eprintln!("building again with the fixed manifest");
    build(opts)
}

/// The library names of `report`'s misses that no declared package ships (`shipped`),
/// searched for in the manifest's indexes ([`crate::suggest`]); the misses of the names
/// found (or not) get the hint that says so. A search that fails leaves the misses as
/// they are and says why under them.
fn suggestions(
    plan: &Plan,
    opts: &BuildOptions,
    arch: Arch,
    tree: &crate::rootfs::tree::Tree,
    shipped: &linkage::Shipped,
    report: &mut linkage::Report,
) -> crate::suggest::Suggestions {
    use crate::suggest::Suggestions;
    let missing: BTreeSet<String> = (report.misses.iter())
        .filter_map(|m| match &m.need {
            linkage::Need::Library(n) if !n.contains('/') && shipped.lookup(n).is_empty() => {
                Some(n.clone())
            }
            linkage::Need::Interpreter(p) if p.starts_with('/') => {
                let base = p.rsplit('/').next().unwrap_or(p);
                shipped.lookup(base).is_empty().then(|| p.clone())
            }
            _ => None,
        })
        .collect();
    if missing.is_empty() {
        return Suggestions::default();
    }
    if opts.offline {
        return Suggestions {
            skipped: Some("--offline (build once without it to have them named)".into()),
            ..Suggestions::default()
        };
    }
    let missing: Vec<String> = missing.into_iter().collect();
    let mut repo = Repository::new(&plan.fetcher, opts.allow_expired);
    let search = crate::suggest::suggest(&mut repo, &plan.manifest, arch, tree, shipped, &missing);
    let found = match plan.runtime.block_on(search) {
        Ok(found) => found,
        Err(e) => Suggestions {
            skipped: Some(e.to_string()),
            ..Suggestions::default()
        },
    };
    for m in &mut report.misses {
        let (linkage::Need::Library(n) | linkage::Need::Interpreter(n)) = &m.need;
        if let Some(hint) = found.hint(n) {
            m.hint = hint;
        }
    }
    found
}

/// Compose the image a manifest describes; write (or, with `--locked`, check) its lock.
pub fn build(opts: &BuildOptions) -> Result<BuildResult> {
    build_in(opts, None)
}

/// The compressor of this build's layers: the one asked for (`--compression`, else the
/// manifest's), else the default; with `--locked`, what the lock recorded when nothing
/// is asked for, and its miniz gzip when gzip at the same level is asked for (a lock of
/// format 1 says `gzip` and means it, `crate::lock::FORMAT`), so that the hash audit
/// compares like with like.
fn layer_compressor(asked: Option<Compressor>, recorded: Option<Compressor>) -> Compressor {
    match (asked, recorded) {
        (Some(Compressor::Gzip(a)), Some(r @ Compressor::GzipMiniz(l))) if a == l => r,
        (Some(asked), _) => asked,
        (None, Some(recorded)) => recorded,
        (None, None) => Compressor::default(),
    }
}

/// [`build`] in a run's [`Session`] (`crate::many`; a new one when `None`).
pub fn build_in(opts: &BuildOptions, session: Option<&Session>) -> Result<BuildResult> {
    let plan = plan_in(opts, session)?;
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
    let recorded = match (&plan.existing, opts.locked) {
        (Some(existing), true) => existing.layer_compressor(),
        _ => None,
    };
    request.compression = layer_compressor(
        opts.compression.or(plan.manifest.image.compression),
        recorded,
    );
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
    let mut suggested = crate::suggest::Suggestions::default();
    for &arch in &plan.archs {
        let packages = packages.remove(&arch).unwrap_or_default();
        let unpinned = lock::ArchLock::default();
        let pinned = lock.archs.get(&arch).unwrap_or(&unpinned);
        let stage = unloadable.is_empty().then_some(&mut staging);
        let image = match build_arch(&plan, opts, arch, packages, pinned, stage)? {
            ArchOutcome::Staged(image) => image,
            ArchOutcome::Checked => continue,
            ArchOutcome::Unloadable(report, found) => {
                unloadable.push((arch, report));
                suggested.absorb(found);
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
        return Err(ImageLinkageError {
            archs: unloadable,
            suggestions: suggested,
        }
        .into());
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
    staging.record(
        (&plan.manifest.path, plan.manifest.text.as_bytes()),
        (&plan.lock_path, lock.to_text().as_bytes()),
    );
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
