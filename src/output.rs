//! The output stage: every output a build was asked for, in one place — the format and
//! its default path, the architecture limits of each output, staging while the build
//! runs, the optional push, and the commit that puts everything in place or nothing.
//!
//! [`Outputs::plan`] checks, before any work, everything that can be: architecture
//! limits, what is at each destination (`--output`, `--rootfs`, `--sbom`, the lock) and
//! that each destination's directory is writable; it also sweeps away what killed runs
//! left beside them ([`crate::temporary`]). [`Outputs::stage`] opens the temporary
//! layout; [`Staging::add_image`] writes one architecture's layer, config and manifest
//! (and stages its `--rootfs` and SBOM facts); [`Staging::finish`] writes the index;
//! [`Staging::commit`] stages the rest (the archive, the SBOM, the lock: each complete
//! in a temporary file beside its destination), pushes, then renames every output into
//! place, in order, taking back the ones already in place when one cannot follow. It
//! never resolves, fetches packages or composes trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::atomic::{AtomicFile, Replaced};
use crate::error::{Error, Result};
use crate::interrupt::{self, Cleanup};
use crate::lock::Lock;
use crate::oci::archive::{self, DockerImage};
use crate::oci::referrers;
use crate::oci::{
    CommittedLayout, Compressor, ImageConfig, LayerCache, LayerInfo, LayoutWriter, WrittenImage,
};
use crate::push::{PushOptions, PushReport};
use crate::repo::Resolved;
use crate::rootfs::export::{self, ExportSummary, Staged};
use crate::rootfs::tree::Tree;
use crate::sbom::{self, SbomError};

/// What `--format` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// An OCI image layout directory.
    #[default]
    Oci,
    /// The OCI image layout as one tar file.
    OciArchive,
    /// `docker save`'s format (one architecture): `manifest.json`, `repositories`,
    /// the config and the (gzip) layer.
    DockerArchive,
}

impl Format {
    /// The format a `--format` value names: `oci`, `oci-archive` or `docker-archive`; any
    /// other value is an error sentence.
    pub fn parse(s: &str) -> std::result::Result<Format, String> {
        match s {
            "oci" => Ok(Format::Oci),
            "oci-archive" => Ok(Format::OciArchive),
            "docker-archive" => Ok(Format::DockerArchive),
            _ => Err(format!(
                "`{s}` is not a format; use oci, oci-archive or docker-archive"
            )),
        }
    }

    /// Whether the output is one file (an archive) rather than a layout directory.
    pub fn is_archive(self) -> bool {
        self != Format::Oci
    }

    /// Where the output goes when `--output` is not given: `out/<name>` for a layout
    /// directory, `out/<name>.tar` for an archive.
    pub fn default_path(self, name: &str) -> PathBuf {
        match self {
            Format::Oci => Path::new("out").join(name),
            _ => Path::new("out").join(format!("{name}.tar")),
        }
    }

    /// How many architectures the format can hold, when it is limited.
    fn max_archs(self) -> Option<usize> {
        match self {
            Format::DockerArchive => Some(1),
            _ => None,
        }
    }
}

/// The outputs a build was asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Where the lock goes when the build changes it (checked like the outputs).
    pub lock: Option<PathBuf>,
    /// `--format`.
    pub format: Format,
    /// `--output`; default [`Format::default_path`].
    pub output: Option<PathBuf>,
    /// `--rootfs DIR`: also the (single-arch) tree as a plain directory.
    pub rootfs: Option<PathBuf>,
    /// `--sbom FILE`: SPDX 2.3 JSON of the image, written only when the build succeeds.
    pub sbom: Option<PathBuf>,
    /// `--push REGISTRY/REPO[:TAG]`, `--insecure`.
    pub push: Option<PushOptions>,
    /// `--attach-record`: the layout lists the build record and the SBOM as referrers
    /// of the image (a push attaches them always).
    pub attach_record: bool,
    /// How the layers are compressed (`--compression`, `[image] compression`).
    pub compression: Compressor,
}

/// The outputs of one build, checked before any work.
#[derive(Debug)]
pub struct Outputs {
    format: Format,
    /// Where the layout or archive goes.
    pub path: PathBuf,
    rootfs: Option<PathBuf>,
    sbom: Option<PathBuf>,
    push: Option<PushOptions>,
    attach_record: bool,
    compression: Compressor,
    name: String,
    tag: String,
    epoch: u64,
    audit: bool,
}

fn too_many(what: &str, archs: &[Arch], advice: &str) -> Error {
    Error::Usage(format!(
        "{what}, but {} {} asked for ({}); {advice}",
        archs.len(),
        if what.starts_with("--rootfs") {
            "architectures were"
        } else {
            "were"
        },
        archs
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

impl Outputs {
    /// Resolve default paths and refuse, before any work, what cannot be written: more
    /// architectures than an output holds, an unusable `--rootfs` directory. `audit`:
    /// the hash audit of `compose verify`, which never takes a layer from the cache.
    pub fn plan(
        request: &Request,
        name: &str,
        tag: &str,
        archs: &[Arch],
        epoch: u64,
        audit: bool,
    ) -> Result<Outputs> {
        if let Some(max) = request.format.max_archs() {
            if archs.len() > max {
                return Err(too_many(
                    "--format docker-archive holds one architecture",
                    archs,
                    "choose one with --arch, or use --format oci-archive",
                ));
            }
        }
        if request.format == Format::DockerArchive {
            if let Compressor::Zstd(_) = request.compression {
                return Err(Error::Usage(format!(
                    "--format docker-archive holds gzip layers only: Docker before 23 cannot load a zstd layer ({} asked for); use --format oci or oci-archive, or --compression gzip",
                    request.compression
                )));
            }
        }
        if request.rootfs.is_some() && archs.len() > 1 {
            return Err(too_many(
                "--rootfs writes one root filesystem",
                archs,
                "choose one with --arch",
            ));
        }
        let path = request
            .output
            .clone()
            .unwrap_or_else(|| request.format.default_path(name));
        check_destinations(request, &path)?;
        Ok(Outputs {
            format: request.format,
            path,
            rootfs: request.rootfs.clone(),
            sbom: request.sbom.clone(),
            push: request.push.clone(),
            attach_record: request.attach_record,
            compression: request.compression,
            name: name.to_string(),
            tag: tag.to_string(),
            epoch,
            audit,
        })
    }

    /// Start writing: a temporary layout beside the output, removed on Ctrl-C or when
    /// the build fails. `cache_root`: where compressed layers of earlier builds are kept.
    pub fn stage(&self, cache_root: &Path) -> Result<Staging<'_>> {
        let layout = LayoutWriter::create_beside(&self.path)?;
        let cleanup = interrupt::remove_on_interrupt(layout.path());
        // Compressed layers of earlier builds, by diff_id; the hash audit recompresses.
        let layer_cache = if self.audit {
            None
        } else {
            LayerCache::under(cache_root, self.compression)
        };
        Ok(Staging {
            outputs: self,
            layout,
            _cleanup: cleanup,
            layer_cache,
            rootfs: None,
            sbom_archs: Vec::new(),
            descriptors: Vec::new(),
            first: None,
            record: None,
        })
    }
}

/// One architecture's image, as written into the staged layout.
#[derive(Debug, Clone)]
pub struct StagedImage {
    /// The layer's digests and size.
    pub layer: LayerInfo,
    /// The image manifest's and config's descriptors.
    pub written: WrittenImage,
}

/// Outputs being written, not yet in place. Dropping it removes them.
pub struct Staging<'a> {
    outputs: &'a Outputs,
    layout: LayoutWriter,
    _cleanup: Cleanup,
    layer_cache: Option<LayerCache>,
    rootfs: Option<(Staged, Cleanup)>,
    /// What the SBOM needs of each tree before it is dropped.
    sbom_archs: Vec<sbom::SbomArch>,
    descriptors: Vec<crate::oci::Descriptor>,
    /// The first image's config and layer digests (a docker archive holds one).
    first: Option<(String, String)>,
    /// The build record ([`Staging::record`]): the manifest's and the lock's file names
    /// and bytes.
    record: Option<[(String, Vec<u8>); 2]>,
}

impl Staging<'_> {
    /// Write one architecture's layer (from the layer cache when it holds this tree's),
    /// its config and its image manifest; stage `--rootfs` and collect what `--sbom`
    /// needs.
    pub fn add_image(
        &mut self,
        arch: Arch,
        tree: &Tree,
        packages: &[Resolved],
        config: &ImageConfig,
        annotations: &BTreeMap<String, String>,
    ) -> Result<StagedImage> {
        let epoch = self.outputs.epoch;
        let layer = self.layout.write_layer_cached(
            tree,
            epoch,
            self.outputs.compression,
            self.layer_cache.as_ref(),
        )?;
        crate::timings::mark(format_args!("{arch}: layer written ({} bytes)", layer.size));
        if self.outputs.sbom.is_some() {
            self.sbom_archs
                .push(sbom::SbomArch::collect(arch, packages, tree)?);
        }
        if let Some(dir) = &self.outputs.rootfs {
            let staged = export::stage(tree, dir, epoch)?;
            let cleanup = interrupt::remove_on_interrupt(staged.path());
            self.rootfs = Some((staged, cleanup));
        }
        let written = self
            .layout
            .write_image(config, &layer, epoch, annotations)?;
        self.first
            .get_or_insert((written.config.digest.clone(), layer.digest.clone()));
        self.descriptors.push(written.manifest.clone());
        Ok(StagedImage { layer, written })
    }

    /// Write the index; the digest `index.json` points to.
    pub fn finish(&mut self) -> Result<String> {
        let descriptors = std::mem::take(&mut self.descriptors);
        Ok(self.layout.finish(descriptors, &self.outputs.tag)?)
    }

    /// The build record to attach to the image: the manifest file and the lock (its
    /// text as committed), each by its file name.
    pub fn record(&mut self, manifest: (&Path, &[u8]), lock: (&Path, &[u8])) {
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        self.record = Some([
            (name(manifest.0), manifest.1.to_vec()),
            (name(lock.0), lock.1.to_vec()),
        ]);
    }

    /// The referrers of the image (`oci::referrers`) when a push or `--attach-record`
    /// wants them: the build record, when given, and the SPDX document, when `--sbom`
    /// asked for one. With `--attach-record` they are added to the staged layout (so
    /// the layout and an `oci-archive` carry them); the push takes them as they are.
    fn attach_referrers(
        &mut self,
        sbom: Option<&sbom::Document<'_>>,
    ) -> Result<Vec<referrers::Artifact>> {
        let o = self.outputs;
        let Some(subject) = self
            .layout
            .subject()
            .filter(|_| o.attach_record || o.push.is_some())
        else {
            return Ok(Vec::new());
        };
        let created = crate::oci::rfc3339(self.outputs.epoch);
        let mut artifacts = Vec::new();
        if let Some([(m_name, m), (l_name, l)]) = &self.record {
            artifacts.push(referrers::build_record(
                (m_name, m),
                (l_name, l),
                &subject,
                &created,
            )?);
        }
        if let Some(doc) = sbom {
            let mut bytes = Vec::new();
            doc.write_to(&mut bytes).map_err(|source| SbomError::Io {
                context: "cannot serialise the SBOM".into(),
                source,
            })?;
            artifacts.push(referrers::sbom(
                &self.outputs.name,
                &bytes,
                &subject,
                &created,
            )?);
        }
        if o.attach_record && !artifacts.is_empty() {
            self.layout.attach(&artifacts)?;
        }
        Ok(artifacts)
    }

    /// Stage what is not staged yet (the archive, the SBOM of the image `digest`, the
    /// lock when `lock` is given), push when asked, then put every output in place in
    /// this order: `--rootfs`, the layout or archive, the SBOM, the lock. When one cannot
    /// be put in place, those before it are taken back: all outputs or none. Ctrl-C waits
    /// until the renames are done.
    pub fn commit(
        mut self,
        digest: &str,
        lock: Option<(&Lock, &Path)>,
        runtime: &tokio::runtime::Runtime,
        phase: impl FnOnce(String) -> indicatif::ProgressBar,
        timeouts: crate::fetch::Timeouts,
    ) -> Result<Committed> {
        let o = self.outputs;
        let (config_digest, layer_digest) = self.first.clone().unwrap_or_default();
        let repo = o.name.to_ascii_lowercase();
        let docker = DockerImage {
            config_digest: &config_digest,
            layer_digest: &layer_digest,
            name: &repo,
            tag: &o.tag,
        };
        let sbom_archs = std::mem::take(&mut self.sbom_archs);
        let sbom_doc = match &o.sbom {
            Some(_) => Some(sbom::document(&sbom::SbomImage {
                name: &o.name,
                tag: &o.tag,
                digest,
                epoch: o.epoch,
                archs: &sbom_archs,
            })?),
            None => None,
        };
        let referrers = self.attach_referrers(sbom_doc.as_ref())?;
        // Everything complete beside its destination before anything is committed.
        let image = match o.format {
            Format::Oci => StagedImageOutput::Layout(self.layout),
            Format::OciArchive => {
                let file = archive::stage_oci_archive(self.layout.path(), &o.path, o.epoch)?;
                StagedImageOutput::Archive(self.layout, file)
            }
            Format::DockerArchive => {
                let file =
                    archive::stage_docker_archive(self.layout.path(), &o.path, &docker, o.epoch)?;
                StagedImageOutput::Archive(self.layout, file)
            }
        };
        let _archive_cleanup = match &image {
            StagedImageOutput::Archive(_, file) => {
                Some(interrupt::remove_on_interrupt(file.temp_path()))
            }
            StagedImageOutput::Layout(_) => None,
        };
        let sbom = match (&o.sbom, &sbom_doc) {
            (Some(path), Some(doc)) => Some(sbom::stage(path, doc)?),
            _ => None,
        };
        let _sbom_cleanup = sbom
            .as_ref()
            .map(|f| interrupt::remove_on_interrupt(f.temp_path()));
        let lock = match lock {
            Some((lock, path)) => Some(lock.stage(path)?),
            None => None,
        };
        let _lock_cleanup = lock
            .as_ref()
            .map(|l| interrupt::remove_on_interrupt(l.temp_path()));
        // Upload from the finished temporary layout (read only, so its digest is
        // unchanged), before anything is committed: a failed push writes nothing.
        let pushed = match &o.push {
            Some(p) => {
                let bar = phase(format!("pushing to {}", p.reference));
                let pushed = runtime.block_on(crate::push::push_layout(
                    image.layout_path(),
                    p,
                    timeouts,
                    &o.tag,
                    &referrers,
                ));
                bar.finish_and_clear();
                Some(pushed?)
            }
            None => None,
        };
        let _critical = interrupt::critical();
        let mut done = Done::default();
        if let Some((staged, _cleanup)) = self.rootfs {
            done.rootfs = Some(staged.commit()?);
        }
        match image {
            StagedImageOutput::Layout(layout) => match layout.commit_keeping_old(&o.path) {
                Ok(c) => done.layout = Some(c),
                Err(e) => return Err(done.rollback(e.into())),
            },
            StagedImageOutput::Archive(layout, file) => {
                match file.commit_keeping_old() {
                    Ok(r) => done.files.push(r),
                    Err(e) => return Err(done.rollback(archive::replace_err(e).into())),
                }
                drop(layout);
            }
        }
        if let (Some(file), Some(path)) = (sbom, &o.sbom) {
            match file.commit_keeping_old() {
                Ok(r) => done.files.push(r),
                Err(e) => {
                    let e = SbomError::Io {
                        context: format!("cannot write {}", path.display()),
                        source: e.source,
                    };
                    return Err(done.rollback(e.into()));
                }
            }
        }
        if let Some(lock) = lock {
            match lock.commit_keeping_old() {
                Ok(r) => done.files.push(r),
                Err(e) => return Err(done.rollback(e.into())),
            }
        }
        let rootfs = done.finish()?;
        Ok(Committed {
            rootfs,
            push: pushed,
        })
    }
}

/// The image output, complete beside its destination.
enum StagedImageOutput {
    /// The layout directory.
    Layout(LayoutWriter),
    /// The archive file, and the layout it was packed from (deleted after the commit).
    Archive(LayoutWriter, AtomicFile),
}

impl StagedImageOutput {
    /// The finished temporary layout (what a push uploads).
    fn layout_path(&self) -> &Path {
        match self {
            StagedImageOutput::Layout(l) | StagedImageOutput::Archive(l, _) => l.path(),
        }
    }
}

/// The outputs put in place so far, with what they replaced still kept.
#[derive(Default)]
struct Done {
    rootfs: Option<export::Committed>,
    layout: Option<CommittedLayout>,
    /// The archive, the SBOM, the lock, in the order they were committed.
    files: Vec<Replaced>,
}

impl Done {
    /// Take back every output already in place, the last first; return `error`.
    fn rollback(mut self, error: Error) -> Error {
        while let Some(file) = self.files.pop() {
            file.rollback();
        }
        if let Some(layout) = self.layout.take() {
            layout.rollback();
        }
        if let Some(rootfs) = self.rootfs.take() {
            rootfs.rollback();
        }
        error
    }

    /// Everything is in place: delete what the outputs replaced.
    fn finish(self) -> Result<Option<ExportSummary>> {
        for file in self.files {
            file.finish();
        }
        if let Some(layout) = self.layout {
            layout.finish()?;
        }
        Ok(match self.rootfs {
            Some(rootfs) => Some(rootfs.finish()?),
            None => None,
        })
    }
}

/// Before any work: what is at each destination may be replaced, and each
/// destination's directory (or the nearest existing one above it) takes new files.
/// Also sweeps, beside each destination, what runs that died left there.
fn check_destinations(request: &Request, output: &Path) -> Result<()> {
    let mut named: Vec<(&str, &Path)> = vec![("--output", output)];
    if request.format.is_archive() {
        if output.is_dir() {
            return Err(Error::Output(format!(
                "refusing to write the archive to {}: it is a directory; give --output a file name such as image.tar",
                output.display()
            )));
        }
    } else {
        LayoutWriter::check_destination(output)?;
    }
    if let Some(dir) = &request.rootfs {
        export::check_destination(dir)?;
        named.push(("--rootfs", dir));
    }
    for (flag, path, what) in [
        ("--sbom", &request.sbom, "the SBOM"),
        ("--lock", &request.lock, "the lock"),
    ] {
        let Some(path) = path else { continue };
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(Error::Output(format!(
                "refusing to write {what} to {}: it is a directory; give {flag} a file path",
                path.display()
            )));
        }
        named.push((flag, path));
    }
    for (i, (flag, path)) in named.iter().enumerate() {
        if let Some((other, _)) = named[..i].iter().find(|(_, p)| same_path(p, path)) {
            return Err(Error::Usage(format!(
                "{flag} and {other} name the same path {}; give each output its own",
                path.display()
            )));
        }
    }
    for (flag, path) in &named {
        sweep_beside(path);
        // An existing lock is rewritten only when the build changes it: a read-only
        // checkout with an up-to-date lock still builds (staging finds the rest).
        if *flag == "--lock" && std::fs::symlink_metadata(path).is_ok() {
            continue;
        }
        check_writable(flag, path)?;
    }
    Ok(())
}

/// `a` and `b` name one path (compared as written, made absolute; links not followed).
fn same_path(a: &Path, b: &Path) -> bool {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs(a) == abs(b)
}

/// The directory a destination's temporaries go in: its parent, `.` when it has none.
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// New files can be made beside `path`: a file is created and removed in its directory,
/// or in the nearest existing directory above it (where the missing ones will be made).
fn check_writable(flag: &str, path: &Path) -> Result<()> {
    let what = match flag {
        "--lock" => format!("the lock {}", path.display()),
        _ => format!("{flag} {}", path.display()),
    };
    let mut dir = parent_of(path);
    while std::fs::symlink_metadata(&dir).is_err() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => {
                dir = PathBuf::from(".");
                break;
            }
        }
    }
    if !dir.is_dir() {
        return Err(Error::Output(format!(
            "cannot write {what}: {} is not a directory",
            dir.display()
        )));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let probe = dir.join(format!(
        "{}{nanos:09}",
        crate::temporary::prefix(PROBE_PREFIX)
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map(|_| {
            let _ = std::fs::remove_file(&probe);
        })
        .map_err(|source| Error::Io {
            context: format!(
                "cannot write {what}: cannot create a file in {}",
                dir.display()
            ),
            source,
        })
}

/// The start of the name of the file that [`check_writable`] creates and removes.
const PROBE_PREFIX: &str = ".compose-probe-";

/// Remove, beside `path`, what killed runs left: its own staged temporary directory
/// (`.<name>.tmp-<pid>-…`), staged single files (`.compose-…-<pid>-…`), and old outputs
/// moved aside, which go back in place if their place is empty ([`crate::temporary`]).
fn sweep_beside(path: &Path) {
    use crate::temporary::{sweep, Stale};
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let own = crate::oci::layout_temp_prefix(path);
    let rootfs = export::temp_prefix(&name);
    let mut prefixes = vec![
        (crate::oci::LAYOUT_ASIDE_PREFIX, Stale::Restore),
        (export::ASIDE_PREFIX, Stale::Restore),
        (".compose-lock-", Stale::Remove),
        (".compose-sbom-", Stale::Remove),
        (".compose-archive-", Stale::Remove),
        (crate::atomic::OLD_PREFIX, Stale::Remove),
        (PROBE_PREFIX, Stale::Remove),
        (own.as_str(), Stale::Remove),
    ];
    if rootfs != own {
        prefixes.push((rootfs.as_str(), Stale::Remove));
    }
    sweep(&parent_of(path), &prefixes);
}

/// What the commit put in place beside the layout.
#[derive(Debug)]
pub struct Committed {
    /// What `--rootfs` wrote.
    pub rootfs: Option<ExportSummary>,
    /// What `--push` uploaded.
    pub push: Option<PushReport>,
}
