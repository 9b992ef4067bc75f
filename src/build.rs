//! The pipeline: manifest → verified indexes → resolved packages → fetched `.deb`s →
//! selected tree → OCI layout, per architecture, written atomically.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::apt::{self, Keyring, PackageEntry, Release};
use crate::deb;
use crate::error::{Error, Result};
use crate::fetch::{FetchOptions, Fetcher, Want};
use crate::manifest::{self, Manifest, Source};
use crate::oci::{ImageConfig, LayerInfo, LayoutWriter};
use crate::rootfs::generate::{self, MOZILLA_CERTS};
use crate::rootfs::linkage::{self, Shipped};
use crate::rootfs::select::{self, Selector};
use crate::rootfs::tree::Tree;

/// InRelease/Release/Release.gpg larger than this are refused (Ubuntu's are ~250 KB).
const RELEASE_LIMIT: u64 = 32 << 20;
/// Decompressed Packages larger than this are refused (Debian main is ~50 MB).
const PACKAGES_LIMIT: u64 = 1 << 30;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What `compose MANIFEST` was asked to do.
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
}

/// A package chosen for an architecture.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub entry: PackageEntry,
    /// Repository base URL (before `--mirror`) and suite it came from.
    pub base_url: String,
    pub suite: String,
}

impl Resolved {
    pub fn url(&self) -> String {
        format!("{}/{}", self.base_url, self.entry.filename)
    }
}

/// One architecture's result.
#[derive(Debug, Clone)]
pub struct ArchImage {
    pub arch: String,
    pub packages: Vec<Resolved>,
    pub layer: LayerInfo,
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

/// Compose the image a manifest describes.
pub fn build(opts: &BuildOptions) -> Result<BuildResult> {
    let manifest = Manifest::load(&opts.manifest)?;
    let archs = architectures(&manifest, &opts.archs)?;
    for s in &manifest.sources {
        if s.snapshot.is_some() {
            return Err(Error::Usage(format!(
                "{}: `snapshot` is not yet supported by this version of compose; remove it to build from the live archive",
                s.location
            )));
        }
    }
    let tag = opts
        .tag
        .clone()
        .unwrap_or_else(|| manifest.image.name.clone());
    let output = opts
        .output
        .clone()
        .unwrap_or_else(|| Path::new("out").join(&manifest.image.name));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Build(format!("cannot start the async runtime: {e}")))?;
    let fetcher = Arc::new(Fetcher::new(FetchOptions {
        cache_dir: opts
            .cache
            .clone()
            .unwrap_or_else(crate::fetch::Cache::default_dir),
        mirrors: opts.mirrors.clone(),
        quiet: opts.quiet,
        jobs: if opts.jobs == 0 { 8 } else { opts.jobs },
    })?);

    let mut layout = LayoutWriter::create_beside(&output)?;
    let mut images = Vec::new();
    let mut descriptors = Vec::new();
    let mut releases = ReleaseCache::default();
    for arch in &archs {
        let packages = runtime.block_on(resolve(&fetcher, &manifest, arch, opts, &mut releases))?;
        let wants: Vec<Want> = packages
            .iter()
            .map(|r| Want {
                what: format!(
                    "package {} {} ({})",
                    r.entry.name, r.entry.version, r.entry.architecture
                ),
                url: r.url(),
                size: r.entry.size,
                sha256: r.entry.sha256.clone(),
            })
            .collect();
        let debs = runtime.block_on(fetcher.get_all(&wants))?;
        let (tree, setid, shipped) = compose_tree(&manifest, arch, &packages, &debs)?;
        // Linkage check (DESIGN §5), before anything of this architecture is written.
        let linked = linkage::check(&tree, &[], Some(&shipped))?;
        let layer = layout.write_layer(&tree, opts.epoch)?;
        let config = image_config(&manifest, arch);
        let desc = layout.write_image(&config, &layer, opts.epoch, &manifest.image.annotations)?;
        images.push(ArchImage {
            arch: arch.clone(),
            packages,
            layer,
            manifest_digest: desc.digest.clone(),
            entries: tree.len(),
            setid,
            elf_files: linked.elf_files,
        });
        descriptors.push(desc);
    }
    let digest = layout.finish(descriptors, &tag)?;
    layout.commit(&output)?;
    Ok(BuildResult {
        digest,
        output,
        tag,
        images,
    })
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
    releases: HashMap<String, Arc<Release>>,
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

/// Fetch and verify `dists/<suite>/InRelease` (or `Release` + `Release.gpg`).
async fn release(
    fetcher: &Fetcher,
    dists: &str,
    keyring: &Keyring,
    allow_expired: bool,
) -> Result<Release> {
    let in_release = format!("{dists}/InRelease");
    let (body, what) = match fetcher.get(&in_release, RELEASE_LIMIT).await? {
        Some(data) => (
            apt::verify_clearsigned(&data, keyring, &in_release)?.body,
            in_release,
        ),
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
            (apt::verify_detached(&data, &sig, keyring, &url)?.body, url)
        }
    };
    let release = Release::parse(&body, &what)?;
    release.check_dates(now(), allow_expired, &what)?;
    Ok(release)
}

/// Resolve the manifest's packages for `arch`: the highest version across the
/// sources' suites, from verified indexes.
async fn resolve(
    fetcher: &Fetcher,
    manifest: &Manifest,
    arch: &str,
    opts: &BuildOptions,
    cache: &mut ReleaseCache,
) -> Result<Vec<Resolved>> {
    let wanted: BTreeSet<&str> = manifest
        .packages
        .iter()
        .filter(|p| p.applies_to(arch))
        .map(|p| p.name.as_str())
        .collect();
    let keep = |name: &str| wanted.contains(name);
    let mut candidates: Vec<Resolved> = Vec::new();
    let mut searched = Vec::new();
    for source in &manifest.sources {
        let keyring = cache.keyring(source)?;
        let base = source.base_url(arch).to_string();
        for suite in &source.suites {
            let dists = format!("{base}/dists/{suite}");
            searched.push(dists.clone());
            let rel = match cache.releases.get(&dists) {
                Some(r) => r.clone(),
                None => {
                    let r = Arc::new(release(fetcher, &dists, &keyring, opts.allow_expired).await?);
                    cache.releases.insert(dists.clone(), r.clone());
                    r
                }
            };
            for component in &source.components {
                let indexes = rel.packages_indexes(component, arch, &dists)?;
                let mut text = None;
                let mut tried = Vec::new();
                for index in &indexes {
                    let url = format!("{dists}/{}", index.path);
                    let want = Want {
                        what: format!("index {}", index.path),
                        url: url.clone(),
                        size: index.size,
                        sha256: index.sha256.clone(),
                    };
                    match fetcher.get_verified(&want, None).await? {
                        Some(path) => {
                            let bytes = std::fs::read(&path).map_err(|e| {
                                Error::Build(format!(
                                    "cannot read cached index {}: {e}",
                                    path.display()
                                ))
                            })?;
                            text = Some(apt::decompress(
                                &bytes,
                                index.compression,
                                PACKAGES_LIMIT,
                                &url,
                            )?);
                            break;
                        }
                        None => tried.push(fetcher.rewrite(&url)),
                    }
                }
                let Some(text) = text else {
                    return Err(Error::Build(format!(
                        "{dists}: no Packages index for {component}/binary-{arch} could be fetched (tried {})",
                        tried.join(", ")
                    )));
                };
                let what = format!("{dists}/{component}/binary-{arch}/Packages");
                for entry in apt::parse_packages(&text, &what, &keep)? {
                    if entry.architecture == arch || entry.architecture == "all" {
                        candidates.push(Resolved {
                            entry,
                            base_url: base.clone(),
                            suite: suite.clone(),
                        });
                    }
                }
            }
        }
    }
    let mut chosen = Vec::new();
    for name in &wanted {
        let best = candidates
            .iter()
            .filter(|c| c.entry.name == *name)
            .reduce(|best, c| {
                if apt::version::compare(&c.entry.version, &best.entry.version).is_gt() {
                    c
                } else {
                    best
                }
            });
        match best {
            Some(b) => chosen.push(b.clone()),
            None => {
                return Err(Error::Build(format!(
                    "package {name} is not in any index for {arch} (searched {}); check its name with `apt-cache policy {name}` or add the suite/component that has it",
                    searched.join(", ")
                )))
            }
        }
    }
    warn_unmet_depends(&chosen, opts.quiet);
    Ok(chosen)
}

/// Unmet `Depends:`/`Pre-Depends:` among the declared packages are warnings (the linkage
/// check is the real guard).
fn warn_unmet_depends(chosen: &[Resolved], quiet: bool) {
    if quiet {
        return;
    }
    let mut have: BTreeSet<&str> = chosen.iter().map(|r| r.entry.name.as_str()).collect();
    for r in chosen {
        if let Some(p) = &r.entry.provides {
            for alt in p.split(',') {
                if let Some(n) = alt.split_whitespace().next() {
                    have.insert(n);
                }
            }
        }
    }
    for r in chosen {
        let deps = [&r.entry.pre_depends, &r.entry.depends];
        for group in deps
            .iter()
            .filter_map(|d| d.as_deref())
            .flat_map(|d| d.split(','))
        {
            let names: Vec<&str> = group
                .split('|')
                .filter_map(|alt| alt.split_whitespace().next())
                .map(|n| n.split(':').next().unwrap_or(n))
                .collect();
            if !names.is_empty() && !names.iter().any(|n| have.contains(n)) {
                eprintln!(
                    "warning: {} depends on {}, which the manifest does not declare",
                    r.entry.name,
                    group.trim()
                );
            }
        }
    }
}

/// Stream each package's data.tar through its selector into one tree, then add what the
/// generators make.
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
    let mut have_ca = false;
    // Every file of every declared package, selected or not: what a linkage miss can
    // suggest adding.
    let mut shipped = Shipped::new(manifest.image.merged_usr);
    for (resolved, path) in packages.iter().zip(debs) {
        let name = &resolved.entry.name;
        let spec = manifest
            .packages
            .iter()
            .find(|p| &p.name == name)
            .expect("resolved packages come from the manifest");
        let capture = manifest.generate.ca_bundle && name == "ca-certificates";
        have_ca |= capture;
        let file = std::fs::File::open(path)
            .map_err(|e| Error::Build(format!("cannot open cached {}: {e}", path.display())))?;
        let what = resolved.url();
        let mut selector = Selector::new(
            spec,
            arch,
            manifest.image.merged_usr,
            manifest.image.copyright,
        );
        let control = deb::read_deb(
            std::io::BufReader::new(file),
            &what,
            |entry, data| -> Result<()> {
                shipped.record(name, entry);
                let is_cert = capture
                    && matches!(entry.kind, deb::EntryKind::File)
                    && entry.path.starts_with(MOZILLA_CERTS)
                    && entry.path.ends_with(".crt");
                if is_cert {
                    let mut pem = Vec::new();
                    data.read_to_end(&mut pem).map_err(|e| {
                        Error::Build(format!("{what}: reading {}: {e}", entry.path))
                    })?;
                    selector.entry(&mut tree, entry, &mut &pem[..])?;
                    certs.insert(entry.path.clone(), pem);
                } else {
                    selector.entry(&mut tree, entry, data)?;
                }
                Ok(())
            },
        )?;
        setid.extend(selector.finish()?.setid);
        if manifest.generate.dpkg_status {
            generate::dpkg_status(
                &mut tree,
                name,
                &control.control,
                control.md5sums.as_deref(),
            )?;
        }
    }
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
                p.entry.name, p.entry.version, p.entry.architecture, p.suite
            ));
        }
        for f in &image.setid {
            out.push_str(&format!("  setuid/setgid: {f}\n"));
        }
    }
    out.push_str(&format!(
        "wrote {} tagged {}\n",
        result.output.display(),
        result.tag
    ));
    out
}
