//! The verified repository client: what the manifest's sources offer, checked before use.
//!
//! [`Repository`] fetches each suite's `InRelease` (or `Release` + `Release.gpg`),
//! verifies it against the source's keyring once per URL for every architecture, picks
//! the `Packages` index variants the Release lists, fetches them (by hash when the
//! Release offers it) and checks them, and resolves
//! the manifest's packages to [`Resolved`] pins (with the facts the lock records). It
//! also fetches the pinned `.deb`s, each against its pinned size and SHA-256, from URLs
//! checked to stay under their source ([`package_url`]), telling the caller each one as
//! it is verified ([`Repository::fetch_each`]).
//!
//! It owns no format parsing (that is [`crate::apt`]), no HTTP or cache logic (that is
//! [`crate::fetch`]) and writes nothing but verified blobs into the download cache; it
//! never prints: warnings are returned to the caller.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::apt::{self, AptError, Keyring, PackageEntry, Release};
use crate::arch::Arch;
use crate::fetch::{FetchError, Fetcher, Want};
use crate::lock::{self, ArchLock, Lock, Sha256};
use crate::manifest::{Manifest, Source};
use crate::text::{quoted, shown};

/// InRelease/Release/Release.gpg larger than this are refused (Ubuntu's are ~250 KB).
const RELEASE_LIMIT: u64 = 32 << 20;
/// Decompressed Packages larger than this are refused (Debian main is ~50 MB).
const PACKAGES_LIMIT: u64 = 1 << 30;

/// What can go wrong between a source's URL and a verified package pin.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A Release, signature, keyring or `Packages` index was rejected.
    #[error(transparent)]
    Apt(#[from] AptError),
    /// A download failed or did not match its expected size or SHA-256.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A source's keyring file could not be read.
    #[error("{location}: cannot read keyring {}: {source}", .path.display())]
    Keyring {
        /// where the `[[source]]` is written in the manifest
        location: String,
        /// the keyring's host path
        path: PathBuf,
        /// the underlying error
        source: std::io::Error,
    },
    /// The server has neither `InRelease` nor `Release` for a suite (both 404).
    #[error(
        "{dists}: neither InRelease nor Release exists; check the source URL and the suite name"
    )]
    NoRelease {
        /// `<base URL>/dists/<suite>`, before `--mirror`
        dists: String,
    },
    /// There is `Release` but neither `InRelease` nor `Release.gpg`.
    #[error("{url} has no signature: {sig_url} is missing and there is no InRelease; compose only uses signed repositories")]
    Unsigned {
        /// the Release URL, before `--mirror`
        url: String,
        /// the Release.gpg URL, before `--mirror`
        sig_url: String,
    },
    /// None of the variants of a `Packages` index that Release lists is on the server.
    #[error(
        "{dists}: no Packages index for {component}/binary-{arch} could be fetched (tried {tried})"
    )]
    NoIndex {
        /// `<base URL>/dists/<suite>`, before `--mirror`
        dists: String,
        /// the component, e.g. `main`
        component: String,
        /// the architecture
        arch: Arch,
        /// the URLs tried (after `--mirror`), comma-separated
        tried: String,
    },
    /// The plain path of an index held other bytes than the InRelease lists, twice, and
    /// the InRelease changed in between: the mirror published while compose read it,
    /// and offers no by-hash copies to read a consistent set from.
    #[error("{what}: {url} is not the file {release} lists (the server sent {got}), and {release} changed while compose read the suite ({change}): the mirror published new indexes mid-run and offers no by-hash copy of the old ones; run compose again once the mirror's update is complete")]
    MirrorRace {
        /// the index, e.g. `index main/binary-amd64/Packages.xz`
        what: String,
        /// the URL requested (after `--mirror`)
        url: String,
        /// what the server sent instead: `sha256 <hex>` or `<n> bytes`
        got: String,
        /// the InRelease (or Release) URL, before `--mirror`
        release: String,
        /// the short SHA256s of the InRelease verified first and of the one read
        /// again: `sha256:… → sha256:…`
        change: String,
    },
    /// An index just admitted to the cache could not be read back.
    #[error("cannot read cached index {}: {source}", .path.display())]
    CachedIndex {
        /// the cache entry
        path: PathBuf,
        /// the underlying error
        source: std::io::Error,
    },
    /// A declared package is in no verified index of the architecture.
    #[error("package {name} is not in any index for {arch} (searched {searched}); check its name with `apt-cache policy {name}` or add the suite/component that has it")]
    NotFound {
        /// the package's name
        name: String,
        /// the architecture
        arch: Arch,
        /// the `dists/` URLs searched, comma-separated
        searched: String,
    },
    /// A package's URL would leave its source.
    #[error(transparent)]
    Outside(#[from] Box<OutsideSource>),
    /// A hash or field the lock cannot record (the index gave something malformed).
    #[error("{}: {}", shown(.url), shown(.reason))]
    Unrecordable {
        /// the package's or index's URL, before `--mirror`
        url: String,
        /// why it cannot be recorded
        reason: String,
    },
}

/// Why a package URL would not stay under its source (see [`package_url`]).
#[derive(Debug, thiserror::Error)]
#[error("package {} {}: its URL {} would leave the source {}: {reason}; refusing to request it", shown(.name), shown(.version), quoted(.url), shown(.base))]
pub struct OutsideSource {
    /// The package's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The URL as the index (`Filename`) or the lock gives it.
    pub url: String,
    /// The source's base URL (several, comma-separated, when none of the manifest's
    /// sources holds a URL of the lock).
    pub base: String,
    /// Why.
    pub reason: String,
}

/// The longest `Filename` accepted (a path, like the file systems' `PATH_MAX`; real
/// ones are under 200 bytes).
const MAX_FILENAME: usize = 4096;

/// The URL of `filename` (a stanza's `Filename`) under a source's `base` URL, checked
/// to stay there once an HTTP client has resolved it. Refused: a `Filename` longer than
/// [`MAX_FILENAME`] or holding a
/// backslash, a percent-encoded `.`, `/`, `\` or `%`, a `?` or `#`, a control
/// character, an empty, `.` or `..` component, and anything whose resolved URL is not
/// `base` followed by exactly these path components. The reason is returned.
pub fn package_url(base: &str, filename: &str) -> Result<String, String> {
    if filename.len() > MAX_FILENAME {
        return Err(format!("its path is longer than {MAX_FILENAME} bytes"));
    }
    let lower = filename.to_ascii_lowercase();
    if filename.contains('\\') {
        return Err("its path holds a backslash".into());
    }
    if ["%2e", "%2f", "%5c", "%25"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return Err("its path holds a percent-encoded `.`, `/`, `\\` or `%`".into());
    }
    if filename.contains(['?', '#']) {
        return Err("its path holds `?` or `#`".into());
    }
    if let Some(c) = crate::text::first_unsafe(filename) {
        return Err(format!(
            "its path holds the control character {}",
            c.escape_default()
        ));
    }
    if filename.starts_with('/')
        || filename
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("its path has an empty, `.` or `..` component".into());
    }
    let url = format!("{base}/{filename}");
    let parse = |u: &str| reqwest::Url::parse(u).map_err(|e| format!("it is not a URL ({e})"));
    let (root, resolved) = (parse(&format!("{base}/"))?, parse(&url)?);
    let expected = format!("{}{filename}", root.path());
    let same_server = root.scheme() == resolved.scheme()
        && root.host_str() == resolved.host_str()
        && root.port_or_known_default() == resolved.port_or_known_default();
    if !same_server
        || resolved.query().is_some()
        || resolved.fragment().is_some()
        || resolved.path() != expected
    {
        return Err(format!("it resolves to {}", shown(resolved.as_str())));
    }
    Ok(url)
}

/// A package pinned for an architecture, by resolution or by the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The binary package name.
    pub name: String,
    /// Its `Version`.
    pub version: String,
    /// The package's `Architecture`: the target architecture or `all`.
    pub architecture: String,
    /// The suite it came from.
    pub suite: String,
    /// Its URL before `--mirror`.
    pub url: String,
    /// Bytes of the `.deb`.
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

impl Resolved {
    /// [`Resolved::pinned`], each URL checked to lie under one of the manifest's
    /// sources for `arch` ([`package_url`]): a lock edited to send requests elsewhere is
    /// refused before anything is fetched.
    pub fn pinned_checked(
        lock: &Lock,
        arch: Arch,
        manifest: &Manifest,
    ) -> Result<Vec<Resolved>, Box<OutsideSource>> {
        let pinned = Resolved::pinned(lock, arch);
        let bases: Vec<&str> = manifest.sources.iter().map(|s| s.base_url(arch)).collect();
        for p in &pinned {
            let under = bases.iter().find_map(|b| {
                p.url
                    .strip_prefix(b)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(|rest| (b, rest))
            });
            let outside = |base: String, reason: String| {
                Box::new(OutsideSource {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    url: p.url.clone(),
                    base,
                    reason,
                })
            };
            match under {
                Some((base, rest)) => {
                    package_url(base, rest).map_err(|why| outside(base.to_string(), why))?;
                }
                None => {
                    return Err(outside(
                        bases.join(", "),
                        format!("the lock pins it under none of the manifest's sources for {arch}"),
                    ))
                }
            }
        }
        Ok(pinned)
    }

    /// The packages a lock pins for `arch`, in name order.
    pub fn pinned(lock: &Lock, arch: Arch) -> Vec<Resolved> {
        lock.archs[&arch]
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

    /// What the fetcher needs to download and check this package.
    fn want(&self) -> Want {
        Want {
            what: format!(
                "package {} {} ({})",
                self.name, self.version, self.architecture
            ),
            url: self.url.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
        }
    }
}

/// One architecture's resolution.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The chosen packages, in name order.
    pub packages: Vec<Resolved>,
    /// What the lock records of it (releases, indexes, packages; no outputs).
    pub lock: ArchLock,
    /// `(package, dependency group)` for each `Depends` group no declared package meets.
    pub unmet: Vec<(String, String)>,
    /// Declared packages no index offers (only with [`Repository::tolerate_missing`];
    /// otherwise such a package is an error).
    pub missing: Vec<String>,
}

/// A verified Release and what the lock records of it.
struct VerifiedRelease {
    release: Release,
    /// The InRelease (or Release) URL before `--mirror`.
    url: String,
    sha256: Sha256,
    /// The keyring it was verified with (canonical), and whether an expired one was accepted: a
    /// manifest with another keyring, or that accepts no expired Release, verifies again.
    keyring: PathBuf,
    allow_expired: bool,
}

/// One `Packages` index, verified and read: what resolution chooses from.
struct ParsedIndex {
    /// The plain URL the lock records.
    url: String,
    lock: lock::IndexLock,
    /// The newest stanza of each package kept ([`RepoCache::names`] and the manifest's).
    entries: Vec<PackageEntry>,
    /// The names it was read for: a later resolution wanting another reads it again.
    kept: BTreeSet<String>,
}

/// What a [`Repository`] keeps between resolutions: verified Releases (by `dists/<suite>`
/// URL), keyrings (by path) and the indexes read (by `dists`, component, architecture
/// and Release hash). One manifest's architectures share it; the manifests of one run
/// (`crate::many`) share it too, so each index is fetched and read once per run.
#[derive(Default)]
pub struct RepoCache {
    releases: HashMap<String, Arc<VerifiedRelease>>,
    keyrings: HashMap<PathBuf, Arc<Keyring>>,
    indexes: HashMap<String, Arc<ParsedIndex>>,
    /// Package names an index keeps beyond the manifest's own: every name the run's
    /// manifests declare, so that an index read for one serves them all.
    pub names: BTreeSet<String>,
}

/// The verified repository client over one [`Fetcher`].
pub struct Repository<'a> {
    fetcher: &'a Arc<Fetcher>,
    allow_expired: bool,
    /// Verified Releases, keyrings and read indexes: several architectures (and the
    /// manifests of one run) share them.
    cache: RepoCache,
    /// A declared package no index offers is reported in [`Resolution::missing`] rather
    /// than failing the resolution (what `compose outdated` needs to report removals).
    tolerate_missing: bool,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl<'a> Repository<'a> {
    /// `allow_expired`: accept a Release whose `Valid-Until` has passed (a source with
    /// `snapshot` always does).
    pub fn new(fetcher: &'a Arc<Fetcher>, allow_expired: bool) -> Repository<'a> {
        Repository {
            fetcher,
            allow_expired,
            cache: RepoCache::default(),
            tolerate_missing: false,
        }
    }

    /// A client that starts from what an earlier one kept ([`Repository::into_cache`]).
    pub fn with_cache(
        fetcher: &'a Arc<Fetcher>,
        allow_expired: bool,
        cache: RepoCache,
    ) -> Repository<'a> {
        Repository {
            cache,
            ..Repository::new(fetcher, allow_expired)
        }
    }

    /// What this client verified and read, for the next one.
    pub fn into_cache(self) -> RepoCache {
        self.cache
    }

    /// Report declared packages no index offers instead of failing on them.
    pub fn tolerate_missing(mut self) -> Self {
        self.tolerate_missing = true;
        self
    }

    /// Download (or take from the cache) every pinned `.deb`, each checked against its
    /// pinned size and SHA-256; the cached paths, in the order of `packages`, each with
    /// whether it came from its snapshot URL. A package the server no longer has
    /// (404/410) is fetched from `snapshots[i]` when given ([`crate::snapshot`] says
    /// where), checked the same way.
    pub async fn fetch(
        &self,
        packages: &[Resolved],
        snapshots: &[Option<String>],
    ) -> Result<Vec<(PathBuf, bool)>, RepoError> {
        self.fetch_each(packages, snapshots, |_, _, _| {}).await
    }

    /// [`Repository::fetch`], telling `verified(i, path, from_snapshot)` as soon as the
    /// `.deb` of `packages[i]` is in the cache, checked, while the others still
    /// download ([`Fetcher::get_all_or_each`]: on a failure, the same error as `fetch`).
    pub async fn fetch_each(
        &self,
        packages: &[Resolved],
        snapshots: &[Option<String>],
        verified: impl FnMut(usize, &Path, bool),
    ) -> Result<Vec<(PathBuf, bool)>, RepoError> {
        let wants: Vec<(Want, Option<String>)> = packages
            .iter()
            .enumerate()
            .map(|(i, p)| (p.want(), snapshots.get(i).cloned().flatten()))
            .collect();
        Ok(self.fetcher.get_all_or_each(&wants, verified).await?)
    }

    fn keyring(&mut self, source: &Source) -> Result<Arc<Keyring>, RepoError> {
        if let Some(k) = self.cache.keyrings.get(&source.keyring) {
            return Ok(k.clone());
        }
        let bytes = std::fs::read(&source.keyring).map_err(|e| RepoError::Keyring {
            location: source.location.to_string(),
            path: source.keyring.clone(),
            source: e,
        })?;
        let keyring = Arc::new(Keyring::from_bytes(
            &bytes,
            &source.keyring.display().to_string(),
        )?);
        self.cache
            .keyrings
            .insert(source.keyring.clone(), keyring.clone());
        Ok(keyring)
    }

    /// Resolve the manifest's packages for `arch`: the highest version across the
    /// sources' suites, from verified indexes, with the lock's facts.
    pub async fn resolve(
        &mut self,
        manifest: &Manifest,
        arch: Arch,
    ) -> Result<Resolution, RepoError> {
        let wanted: BTreeSet<&str> = manifest
            .packages
            .iter()
            .filter(|p| p.applies_to(arch))
            .map(|p| p.name.as_str())
            .collect();
        let keep = |name: &str| wanted.contains(name);
        let mut arch_lock = ArchLock::default();

        // 1. Every suite's Release, fetched and verified concurrently (once per URL for
        //    all architectures), and the Packages indexes it lists.
        let (listed, searched) = self.list_indexes(manifest, arch, &mut arch_lock).await?;

        // 2. Every component's Packages index not read before, fetched concurrently.
        let mut read: Vec<Option<Arc<ParsedIndex>>> = listed
            .iter()
            .map(|i| self.cache.indexes.get(&i.key).cloned())
            .map(|read| read.filter(|r| wanted.iter().all(|n| r.kept.contains(*n))))
            .collect();
        let unread: Vec<usize> = (0..listed.len()).filter(|&i| read[i].is_none()).collect();
        let opened = self.open(unread.iter().map(|&i| &listed[i]), arch).await?;

        // 3. Read them one at a time as each decompresses, keeping the run's names;
        //    then offer their stanzas in manifest order (ties between equal versions go
        //    to the first).
        let names = &self.cache.names;
        let keep_read = |name: &str| wanted.contains(name) || names.contains(name);
        let kept: BTreeSet<String> = (names.iter().cloned())
            .chain(wanted.iter().map(|n| n.to_string()))
            .collect();
        let mut parsed = Vec::new();
        for (&i, open) in unread.iter().zip(opened) {
            let entries = read_index(&open, arch, &keep_read, &|_| true)?;
            let index = Arc::new(ParsedIndex {
                url: open.url,
                lock: open.lock,
                entries,
                kept: kept.clone(),
            });
            parsed.push((listed[i].key.clone(), index.clone()));
            read[i] = Some(index);
        }
        self.cache.indexes.extend(parsed);
        let mut candidates: Vec<(PackageEntry, String, String)> = Vec::new();
        for (listed, index) in listed.iter().zip(read) {
            let index = index.expect("every index is read above");
            for entry in index.entries.iter().filter(|e| keep(&e.name)) {
                candidates.push((entry.clone(), listed.base.clone(), listed.suite.clone()));
            }
            arch_lock
                .indexes
                .insert(index.url.clone(), index.lock.clone());
        }
        crate::timings::mark(format_args!("{arch}: Packages indexes parsed"));
        let mut chosen: Vec<&(PackageEntry, String, String)> = Vec::new();
        let mut missing = Vec::new();
        for name in &wanted {
            match apt::resolve::highest(&candidates, name, |c| &c.0) {
                Some(best) => chosen.push(best),
                None if self.tolerate_missing => missing.push(name.to_string()),
                None => {
                    return Err(RepoError::NotFound {
                        name: name.to_string(),
                        arch,
                        searched: searched.join(", "),
                    })
                }
            }
        }
        let entries: Vec<&PackageEntry> = chosen.iter().map(|c| &c.0).collect();
        let unmet = apt::resolve::unmet_depends(&entries)
            .into_iter()
            .map(|(package, group)| (package.to_string(), group.to_string()))
            .collect();
        let mut resolved = Vec::new();
        for (entry, base, suite) in chosen {
            let url = package_url(base, &entry.filename).map_err(|reason| {
                Box::new(OutsideSource {
                    name: entry.name.clone(),
                    version: entry.version.clone(),
                    url: format!("{base}/{}", entry.filename),
                    base: base.clone(),
                    reason,
                })
            })?;
            let pin = lock::PackageLock::new(
                &entry.version,
                &entry.architecture,
                suite,
                &url,
                entry.size,
                &entry.sha256,
            )
            .map_err(|reason| RepoError::Unrecordable {
                url: url.clone(),
                reason,
            })?;
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
        Ok(Resolution {
            packages: resolved,
            lock: arch_lock,
            unmet,
            missing,
        })
    }

    /// Every suite of `manifest` for `arch` — (source, base URL, suite, dists URL), in
    /// manifest order — with its Release fetched and verified into the cache, concurrently
    /// (once per URL and keyring for all architectures and manifests of a session).
    async fn verify_releases<'m>(
        &mut self,
        manifest: &'m Manifest,
        arch: Arch,
    ) -> Result<Vec<(&'m Source, String, String, String)>, RepoError> {
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
            let allow_expired = self.allow_expired || source.snapshot.is_some();
            let path = canonical(&source.keyring);
            let verified = self
                .cache
                .releases
                .get(dists)
                .is_some_and(|r| r.keyring == path && (allow_expired || !r.allow_expired));
            if !verified && !missing.iter().any(|(d, _, _, _)| d == dists) {
                let keyring = self.keyring(source)?;
                missing.push((dists.clone(), keyring, path, allow_expired));
            }
        }
        let fetcher: &Fetcher = self.fetcher;
        let fetched =
            futures::future::try_join_all(missing.iter().map(|(dists, keyring, path, allow)| {
                release(fetcher, dists, keyring, path, *allow)
            }))
            .await?;
        for ((dists, _, _, _), r) in missing.iter().zip(fetched) {
            self.cache.releases.insert(dists.clone(), Arc::new(r));
        }
        crate::timings::mark(format_args!(
            "{arch}: keyrings read, Release files verified"
        ));
        Ok(suites)
    }

    /// Steps 1 and 2 of a resolution: every suite's Release fetched and verified
    /// concurrently (once per URL for all architectures; recorded in `arch_lock`), then
    /// every component's Packages index fetched and verified concurrently, in manifest
    /// order; with the `dists/` URLs searched.
    async fn open_indexes(
        &mut self,
        manifest: &Manifest,
        arch: Arch,
        arch_lock: &mut ArchLock,
    ) -> Result<(Vec<OpenIndex>, Vec<String>), RepoError> {
        let (listed, searched) = self.list_indexes(manifest, arch, arch_lock).await?;
        let opened = self.open(listed.iter(), arch).await?;
        Ok((opened, searched))
    }

    /// Every suite's Release verified ([`Repository::verify_releases`], recorded in
    /// `arch_lock`) and the Packages indexes each lists for `arch`, in manifest order;
    /// with the `dists/` URLs searched.
    async fn list_indexes(
        &mut self,
        manifest: &Manifest,
        arch: Arch,
        arch_lock: &mut ArchLock,
    ) -> Result<(Vec<ListedIndex>, Vec<String>), RepoError> {
        let suites = self.verify_releases(manifest, arch).await?;
        let mut listed = Vec::new();
        for (source, base, suite, dists) in &suites {
            let rel = &self.cache.releases[dists];
            arch_lock.releases.insert(
                rel.url.clone(),
                lock::ReleaseLock {
                    sha256: rel.sha256.clone(),
                    date: rel.release.date.clone(),
                },
            );
            for component in &source.components {
                listed.push(ListedIndex {
                    base: base.clone(),
                    suite: suite.clone(),
                    dists: dists.clone(),
                    component: component.clone(),
                    candidates: rel.release.packages_indexes(component, arch, dists)?,
                    key: format!("{dists} {component} {arch} {}", rel.sha256),
                });
            }
        }
        let searched = suites.into_iter().map(|(_, _, _, d)| d).collect();
        Ok((listed, searched))
    }

    /// The first variant of each of `listed` the server has, fetched concurrently and
    /// verified against its Release ([`packages_index`]), open for reading.
    async fn open(
        &self,
        listed: impl Iterator<Item = &ListedIndex>,
        arch: Arch,
    ) -> Result<Vec<OpenIndex>, RepoError> {
        let listed: Vec<&ListedIndex> = listed.collect();
        let releases = &self.cache.releases;
        let fetched = futures::future::try_join_all(listed.iter().map(|l| {
            let rel = &releases[l.dists.as_str()];
            packages_index(
                self.fetcher,
                rel,
                &l.dists,
                &l.component,
                arch,
                &l.candidates,
            )
        }))
        .await?;
        crate::timings::mark(format_args!(
            "{arch}: Packages indexes fetched and verified"
        ));
        Ok(listed
            .iter()
            .zip(fetched)
            .map(|(l, (url, lock, compression, file))| OpenIndex {
                base: l.base.clone(),
                suite: l.suite.clone(),
                what: format!("{}/{}/binary-{arch}/Packages", l.dists, l.component),
                url,
                lock,
                compression,
                file,
            })
            .collect())
    }

    /// A second pass over the verified indexes of the manifest's sources for `arch`
    /// (from the cache when a resolution read them): the highest version of each package
    /// `accept` keeps, every stanza parsed but only the kept ones held, each with its
    /// index stanza (for its `Depends` and `Provides`). What `crate::suggest` searches
    /// for the package that ships a missing library; a build never calls it.
    pub async fn scan(
        &mut self,
        manifest: &Manifest,
        arch: Arch,
        accept: &dyn Fn(&PackageEntry) -> bool,
    ) -> Result<Vec<(Resolved, PackageEntry)>, RepoError> {
        let mut arch_lock = ArchLock::default();
        let (opened, _) = self.open_indexes(manifest, arch, &mut arch_lock).await?;
        let mut candidates: Vec<(PackageEntry, String, String)> = Vec::new();
        for index in opened {
            for entry in read_index(&index, arch, &|_| true, accept)? {
                candidates.push((entry, index.base.clone(), index.suite.clone()));
            }
        }
        let names: BTreeSet<String> = candidates.iter().map(|c| c.0.name.clone()).collect();
        let mut out = Vec::new();
        for name in &names {
            let Some((entry, base, suite)) = apt::resolve::highest(&candidates, name, |c| &c.0)
            else {
                continue;
            };
            let Ok(url) = package_url(base, &entry.filename) else {
                continue;
            };
            out.push((
                Resolved {
                    name: entry.name.clone(),
                    version: entry.version.clone(),
                    architecture: entry.architecture.clone(),
                    suite: suite.clone(),
                    url,
                    size: entry.size,
                    sha256: entry.sha256.clone(),
                },
                entry.clone(),
            ));
        }
        Ok(out)
    }
}

/// A Packages index a verified Release lists: where it is and its cache key in the
/// session (`dists component arch` and the Release's hash).
struct ListedIndex {
    base: String,
    suite: String,
    dists: String,
    component: String,
    /// Its variants (`.xz`, `.gz`, plain) as Release lists them.
    candidates: Vec<apt::IndexFile>,
    key: String,
}

/// One verified Packages index, open in the cache, with where it came from.
struct OpenIndex {
    base: String,
    suite: String,
    /// `<dists>/<component>/binary-<arch>/Packages`, for errors.
    what: String,
    /// The URL before `--mirror`.
    url: String,
    lock: lock::IndexLock,
    compression: apt::Compression,
    file: std::fs::File,
}

/// The keyring path a verified Release is remembered with: two manifests that reach one
/// keyring by different relative paths share the Release.
fn canonical(path: &std::path::Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// Fetch and verify `dists/<suite>/InRelease` (or `Release` + `Release.gpg`).
async fn release(
    fetcher: &Fetcher,
    dists: &str,
    keyring: &Keyring,
    keyring_path: &std::path::Path,
    allow_expired: bool,
) -> Result<VerifiedRelease, RepoError> {
    let in_release = format!("{dists}/InRelease");
    let (body, what, signed) = match fetcher.get(&in_release, RELEASE_LIMIT).await? {
        Some(data) => {
            let body = apt::verify_clearsigned(&data, keyring, &in_release)?.body;
            (body, in_release, data)
        }
        None => {
            let url = format!("{dists}/Release");
            let Some(data) = fetcher.get(&url, RELEASE_LIMIT).await? else {
                return Err(RepoError::NoRelease {
                    dists: dists.to_string(),
                });
            };
            let sig_url = format!("{url}.gpg");
            let Some(sig) = fetcher.get(&sig_url, RELEASE_LIMIT).await? else {
                return Err(RepoError::Unsigned { url, sig_url });
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
        keyring: keyring_path.to_path_buf(),
        allow_expired,
    })
}

/// The first of `candidates` (`.xz`, `.gz`, plain, as Release lists them) the server
/// has, verified against Release and open for reading: (URL, lock entry, its
/// compression, the cached file). Each variant is fetched by [`index_variant`]: by hash
/// when `rel` offers it. The URL recorded is the plain path's, however the bytes came.
async fn packages_index(
    fetcher: &Fetcher,
    rel: &VerifiedRelease,
    dists: &str,
    component: &str,
    arch: Arch,
    candidates: &[apt::IndexFile],
) -> Result<(String, lock::IndexLock, apt::Compression, std::fs::File), RepoError> {
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
        if let Some(file) = fetcher.cached_file(&want(index)).await? {
            found = Some((index, file));
            break;
        }
    }
    let mut tried = Vec::new();
    if found.is_none() {
        for index in candidates {
            let Some(path) =
                index_variant(fetcher, rel, dists, index, &want(index), &mut tried).await?
            else {
                continue;
            };
            let file = std::fs::File::open(&path)
                .map_err(|source| RepoError::CachedIndex { path, source })?;
            found = Some((index, file));
            break;
        }
    }
    if let Some((index, file)) = found {
        let url = want(index).url;
        let entry = lock::IndexLock {
            size: index.size,
            sha256: Sha256::from_hex(&index.sha256).map_err(|reason| RepoError::Unrecordable {
                url: url.clone(),
                reason,
            })?,
        };
        return Ok((url, entry, index.compression, file));
    }
    Err(RepoError::NoIndex {
        dists: dists.to_string(),
        component: component.to_string(),
        arch,
        tried: tried.join(", "),
    })
}

/// One variant of an index, verified into the cache; `None` when the server has it
/// neither by hash nor by path (the URLs asked for are added to `tried`).
///
/// When `rel` says `Acquire-By-Hash: yes`, the copy under `by-hash/` comes first: the
/// archive keeps it for days after publishing newer indexes, so a mirror that
/// publishes between our InRelease and this download still serves the file that
/// InRelease lists. Only a 404 there falls back to the plain path, as apt does. Bytes at
/// the plain path that are not the listed ones get one more attempt after reading the
/// InRelease again (a mirror in the middle of an update); when that changed in between,
/// the error says so ([`RepoError::MirrorRace`]).
async fn index_variant(
    fetcher: &Fetcher,
    rel: &VerifiedRelease,
    dists: &str,
    index: &apt::IndexFile,
    want: &Want,
    tried: &mut Vec<String>,
) -> Result<Option<PathBuf>, RepoError> {
    if let Some(by_hash) = rel.release.by_hash_path(&index.path) {
        let hashed = Want {
            url: format!("{dists}/{by_hash}"),
            ..want.clone()
        };
        if let Some(path) = fetcher.get_verified(&hashed, None).await? {
            return Ok(Some(path));
        }
        tried.push(fetcher.rewrite(&hashed.url));
    }
    match fetcher.get_verified(want, None).await {
        Ok(None) => {
            tried.push(fetcher.rewrite(&want.url));
            return Ok(None);
        }
        Ok(Some(path)) => return Ok(Some(path)),
        Err(e) if other_bytes(&e).is_some() => {}
        Err(e) => return Err(e.into()),
    }
    // Read the Release again: has the mirror published since? A failure to read it
    // leaves the question open (the retry and its error are the same).
    let now = match fetcher.get(&rel.url, RELEASE_LIMIT).await {
        Ok(Some(bytes)) => Some(Sha256::of(&bytes)),
        Ok(None) | Err(_) => None,
    };
    let changed = now.filter(|now| *now != rel.sha256);
    match fetcher.get_verified(want, None).await {
        Ok(Some(path)) => Ok(Some(path)),
        Ok(None) => {
            tried.push(fetcher.rewrite(&want.url));
            Ok(None)
        }
        Err(again) => match (other_bytes(&again), changed) {
            (Some(got), Some(now)) => Err(RepoError::MirrorRace {
                what: want.what.clone(),
                url: fetcher.rewrite(&want.url),
                got,
                release: rel.url.clone(),
                change: format!("{} → {}", rel.sha256.short(), now.short()),
            }),
            _ => Err(again.into()),
        },
    }
}

/// For a download whose bytes are not the listed ones (size or SHA256): what came
/// instead, for [`RepoError::MirrorRace`]. `None` for other failures.
fn other_bytes(e: &FetchError) -> Option<String> {
    match e {
        FetchError::HashMismatch { actual, .. } => Some(format!("sha256 {actual}")),
        FetchError::SizeMismatch { actual, .. } => Some(format!("{actual} bytes")),
        FetchError::Announced { announced, .. } => Some(format!("{announced} bytes")),
        _ => None,
    }
}

/// The stanzas of one verified index that resolution can choose for `arch`
/// ([`apt::resolve::Newest`] of the packages `keep` accepts), read as it decompresses:
/// memory stays flat whatever the index's size, and its decompressed size is limited.
/// Of the stanzas parsed, only those `accept` takes are held. The index's URL names the
/// file in decompression errors, its `what` the index in the others.
fn read_index(
    index: &OpenIndex,
    arch: Arch,
    keep: &dyn Fn(&str) -> bool,
    accept: &dyn Fn(&PackageEntry) -> bool,
) -> Result<Vec<PackageEntry>, RepoError> {
    let what = index.what.as_str();
    let mut newest = apt::resolve::Newest::new(what);
    let mut offer = |entry: PackageEntry| {
        if (arch == entry.architecture.as_str() || entry.architecture == "all") && accept(&entry) {
            newest.offer(entry)
        } else {
            Ok(())
        }
    };
    let mut stanzas = apt::packages::Stanzas::new(what, keep);
    let file = index
        .file
        .try_clone()
        .map_err(|source| RepoError::CachedIndex {
            path: PathBuf::from(&index.url),
            source,
        })?;
    apt::decompress_into(
        file,
        index.compression,
        PACKAGES_LIMIT,
        &index.url,
        &mut |chunk| stanzas.feed(chunk, &mut offer),
    )?;
    stanzas.finish(&mut offer)?;
    Ok(newest.into_entries())
}

#[cfg(test)]
mod tests {
    use super::package_url;

    #[test]
    fn package_urls_stay_under_their_source() {
        let base = "http://127.0.0.1:8080/ubuntu";
        assert_eq!(
            package_url(base, "pool/main/z/zlib/zlib1g_1.3+dfsg-1~ubuntu1_amd64.deb").unwrap(),
            "http://127.0.0.1:8080/ubuntu/pool/main/z/zlib/zlib1g_1.3+dfsg-1~ubuntu1_amd64.deb"
        );
        let long = "p/".repeat(4000);
        for (filename, why) in [
            ("pool/%2e%2e/%2e%2e/outside/good.deb", "percent-encoded"),
            ("pool/%2E%2E/x.deb", "percent-encoded"),
            ("pool/a%2fb.deb", "percent-encoded"),
            ("pool/a%252e.deb", "percent-encoded"),
            ("pool\\..\\..\\outside\\good2.deb", "backslash"),
            ("pool/x.deb?y", "`?` or `#`"),
            ("pool/x.deb#frag", "`?` or `#`"),
            ("pool/../../outside/x.deb", "`..` component"),
            ("/etc/passwd", "`..` component"),
            ("pool//x.deb", "`..` component"),
            ("pool/x\u{1b}[31m.deb", "control character \\u{1b}"),
            ("pool/a b.deb", "resolves to"),
            ("pool/é.deb", "resolves to"),
            (long.as_str(), "longer than 4096 bytes"),
        ] {
            let e = package_url(base, filename).unwrap_err();
            assert!(e.contains(why), "{filename}: {e}");
        }
        // The snapshot service's base keeps its path.
        let snap = "https://snapshot.debian.org/archive/debian/20240101T000000Z";
        assert!(package_url(snap, "pool/main/t/tzdata/tzdata_2024a-0+deb12u1_all.deb").is_ok());
    }
}
