//! The output stage: every output a build was asked for, in one place — the format and
//! its default path, the architecture limits of each output, staging while the build
//! runs, the optional push, and the commit that puts everything in place or nothing.
//!
//! [`Outputs::plan`] checks what can be checked before any work (architecture limits,
//! the `--rootfs` destination); [`Outputs::stage`] opens the temporary layout;
//! [`Staging::add_image`] writes one architecture's layer, config and manifest (and
//! stages its `--rootfs` and SBOM facts); [`Staging::finish`] writes the index;
//! [`Staging::commit`] pushes, then renames the outputs into place and writes the lock
//! and the SBOM. It never resolves, fetches packages or composes trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::interrupt::{self, Cleanup};
use crate::lock::Lock;
use crate::oci::archive::{self, DockerImage};
use crate::oci::{ImageConfig, LayerCache, LayerInfo, LayoutWriter, OciError, WrittenImage};
use crate::push::{PushOptions, PushReport};
use crate::repo::Resolved;
use crate::rootfs::export::{self, ExportSummary, Staged};
use crate::rootfs::tree::Tree;
use crate::sbom;

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

    /// Put the finished layout at `output` in this format.
    fn commit(
        self,
        layout: LayoutWriter,
        output: &Path,
        epoch: u64,
        docker: DockerImage,
    ) -> std::result::Result<(), OciError> {
        match self {
            Format::Oci => layout.commit(output),
            Format::OciArchive => archive::write_oci_archive(layout.path(), output, epoch),
            Format::DockerArchive => {
                archive::write_docker_archive(layout.path(), output, &docker, epoch)
            }
        }
    }
}

/// The outputs a build was asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
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
        if let Some(dir) = &request.rootfs {
            if archs.len() > 1 {
                return Err(too_many(
                    "--rootfs writes one root filesystem",
                    archs,
                    "choose one with --arch",
                ));
            }
            export::check_destination(dir)?;
        }
        Ok(Outputs {
            format: request.format,
            path: request
                .output
                .clone()
                .unwrap_or_else(|| request.format.default_path(name)),
            rootfs: request.rootfs.clone(),
            sbom: request.sbom.clone(),
            push: request.push.clone(),
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
            LayerCache::under(cache_root)
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
        let layer = self
            .layout
            .write_layer_cached(tree, epoch, self.layer_cache.as_ref())?;
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

    /// Push (when asked), then put every output in place: the root filesystem first,
    /// taken back if the layout cannot follow; then the lock (when `lock` is given) and
    /// the SBOM of the image `digest`. Ctrl-C waits until they are written.
    pub fn commit(
        self,
        digest: &str,
        lock: Option<(&Lock, &Path)>,
        runtime: &tokio::runtime::Runtime,
        phase: impl FnOnce(String) -> indicatif::ProgressBar,
        timeouts: crate::fetch::Timeouts,
    ) -> Result<Committed> {
        let o = self.outputs;
        // The SBOM is made before anything is committed, written after.
        let sbom_doc = match &o.sbom {
            Some(_) => Some(sbom::document(&sbom::SbomImage {
                name: &o.name,
                tag: &o.tag,
                digest,
                epoch: o.epoch,
                archs: &self.sbom_archs,
            })?),
            None => None,
        };
        // Upload from the finished temporary layout (read only, so its digest is
        // unchanged), before anything is committed: a failed push writes nothing.
        let pushed = match &o.push {
            Some(p) => {
                let bar = phase(format!("pushing to {}", p.reference));
                let pushed = runtime.block_on(crate::push::push_layout(
                    self.layout.path(),
                    p,
                    timeouts,
                    &o.tag,
                ));
                bar.finish_and_clear();
                Some(pushed?)
            }
            None => None,
        };
        let _critical = interrupt::critical();
        let (config_digest, layer_digest) = self.first.clone().unwrap_or_default();
        let repo = o.name.to_ascii_lowercase();
        let docker = DockerImage {
            config_digest: &config_digest,
            layer_digest: &layer_digest,
            name: &repo,
            tag: &o.tag,
        };
        let rootfs = match self.rootfs {
            None => {
                o.format.commit(self.layout, &o.path, o.epoch, docker)?;
                None
            }
            Some((staged, _cleanup)) => {
                let committed = staged.commit()?;
                if let Err(e) = o.format.commit(self.layout, &o.path, o.epoch, docker) {
                    committed.rollback();
                    return Err(e.into());
                }
                Some(committed.finish()?)
            }
        };
        if let Some((lock, path)) = lock {
            lock.write(path)?;
        }
        if let (Some(path), Some(doc)) = (&o.sbom, &sbom_doc) {
            sbom::write(path, doc)?;
        }
        Ok(Committed {
            rootfs,
            push: pushed,
        })
    }
}

/// What the commit put in place beside the layout.
#[derive(Debug)]
pub struct Committed {
    /// What `--rootfs` wrote.
    pub rootfs: Option<ExportSummary>,
    /// What `--push` uploaded.
    pub push: Option<PushReport>,
}
