//! The manifest: the validated types the rest of compose reads ([`Manifest`] and its
//! parts), [`Manifest::load`]/[`Manifest::parse`], and the errors that point at the
//! manifest. The schema as written in TOML is in `schema`, the checks that turn it into
//! these types in `validate`, the command line's changes to a loaded manifest
//! (`--keyring`, `--exclude-package`) in `overrides`; docs/manifest.md describes the
//! format for users.
//!
//! Every error points at the manifest with `file:line:column` and ends with a one-line
//! hint. Values that later checks may complain about keep their span
//! ([`serde_spanned::Spanned`]) so those checks can point at the manifest too.
//!
//! Nothing here touches the network; the file system only in [`Manifest::load`] (and
//! validation's check that a keyring exists).

mod include;
mod overrides;
mod schema;
mod validate;

#[cfg(test)]
mod fixtures;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use globset::GlobMatcher;

use crate::arch::Arch;
use serde::Deserialize;

use validate::Cx;

/// A manifest error: where, what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// the manifest file as given
    pub file: PathBuf,
    /// 1-based line; 0 when the file could not be read at all
    pub line: usize,
    /// 1-based column, in characters; 0 when the file could not be read at all
    pub column: usize,
    /// what is wrong, one sentence
    pub message: String,
    /// what to do about it, one line (empty for none)
    pub hint: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestError {}

/// A place in the manifest, for errors found after loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// the manifest file as given
    pub file: PathBuf,
    /// 1-based line
    pub line: usize,
    /// 1-based column, in characters
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A validated manifest: every value checked, image paths absolute and normalised (and in
/// merged-usr form when `[image] merged-usr` is on), host paths resolved against the
/// manifest's directory.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file as given.
    pub path: PathBuf,
    /// Its bytes (the lock ties itself to their hash).
    pub text: String,
    /// The files it includes (`[image] include`, and theirs), each once, in the order
    /// they were reached.
    pub includes: Vec<Included>,
    /// The `[image]` table.
    pub image: Image,
    /// `[[source]]` tables, in manifest order (at least one).
    pub sources: Vec<Source>,
    /// Sorted by name.
    pub packages: Vec<Package>,
    /// `[generate]`, with defaults for the keys left out.
    pub generate: Generate,
    /// `[[user]]` tables, in manifest order.
    pub users: Vec<User>,
    /// `[[group]]` tables, in manifest order.
    pub groups: Vec<Group>,
    /// `[[file]]` tables, in manifest order.
    pub files: Vec<FileSpec>,
    /// `[[dir]]` tables, in manifest order.
    pub dirs: Vec<DirSpec>,
    /// `[[symlink]]` tables, in manifest order.
    pub symlinks: Vec<SymlinkSpec>,
}

/// A base manifest a manifest includes (`[image] include`).
#[derive(Debug, Clone)]
pub struct Included {
    /// How the lock names it: its path from the including manifest's directory,
    /// `/`-separated and normalised (`noble-base.toml`, `../common/base.toml`).
    pub name: String,
    /// The file as read.
    pub path: PathBuf,
    /// Its bytes (the lock records their hash, so a changed base is noticed).
    pub text: String,
}

/// `[image]`: the image's name and configuration (docs/manifest.md has each key).
#[derive(Debug, Clone)]
pub struct Image {
    /// The default tag and output name: letters, digits, `.`, `_`, `-`, at most 128, not
    /// starting with `.` or `-`.
    pub name: String,
    /// Built when no `--arch` is given (each at most once); may be empty.
    pub architectures: Vec<Arch>,
    /// Map `/bin`, `/sbin`, `/lib*` into `/usr` and add the top-level links (default true).
    pub merged_usr: bool,
    /// As written: a `[[user]]` name or `uid:gid`.
    pub user: Option<String>,
    /// The config's `WorkingDir`: an absolute, normalised image path.
    pub workdir: Option<String>,
    /// The config's `Entrypoint`, as written.
    pub entrypoint: Option<Vec<String>>,
    /// The config's `Cmd`, as written.
    pub cmd: Option<Vec<String>>,
    /// The config's `Env` by name (names non-empty, without `=`); the build adds a default
    /// `PATH` when it is missing.
    pub env: BTreeMap<String, String>,
    /// The config's `Labels`.
    pub labels: BTreeMap<String, String>,
    /// Annotations of each image manifest.
    pub annotations: BTreeMap<String, String>,
    /// Keep every contributing package's `/usr/share/doc/<pkg>/copyright` whatever its
    /// patterns say (default true).
    pub copyright: bool,
    /// How layers are compressed, `gzip[:LEVEL]` or `zstd[:LEVEL]`; None: the default
    /// (gzip:6), unless `--compression` says otherwise.
    pub compression: Option<crate::oci::Compressor>,
}

/// `[[source]]`: an apt repository, its suites and components, and the keyring that signs it.
#[derive(Debug, Clone)]
pub struct Source {
    /// Base URL (the directory holding `dists/`), http(s), without a trailing `/`; already
    /// the snapshot service's when `snapshot` is set. Before `--mirror`.
    pub url: String,
    /// The `url` key as written (without a trailing `/`), before `snapshot` rewrites it:
    /// what `--keyring URL=FILE` names the source by.
    pub written_url: String,
    /// Base URLs replacing `url` for some architectures (`arch-url`), as written (a trailing
    /// `/` is trimmed by [`Source::base_url`]).
    pub arch_url: BTreeMap<Arch, String>,
    /// Suites read under `dists/`, in manifest order (at least one).
    pub suites: Vec<String>,
    /// Components read in every suite; `["main"]` when none is written.
    pub components: Vec<String>,
    /// Host path, resolved against the manifest's directory.
    pub keyring: PathBuf,
    /// The `YYYYMMDDTHHMMSSZ` timestamp of the snapshot service, when given.
    pub snapshot: Option<String>,
    /// `snapshot-url`: the snapshot service of `url`'s archive (http(s), no trailing
    /// `/`), for an archive [`snapshot_url`] does not know; `<it>/<timestamp>` is that
    /// archive at that time.
    pub snapshot_url: Option<String>,
    /// `snapshot-fallback` (default true): a pinned `.deb` the archive no longer has is
    /// fetched from the snapshot service ([`crate::snapshot`]).
    pub snapshot_fallback: bool,
    /// Where the `[[source]]` table is written.
    pub location: Location,
}

impl Source {
    /// The repository base URL for `arch` (no trailing slash; the snapshot service's
    /// when `snapshot` is set).
    pub fn base_url(&self, arch: Arch) -> &str {
        self.arch_url
            .get(&arch)
            .map(String::as_str)
            .unwrap_or(&self.url)
            .trim_end_matches('/')
    }
}

/// A glob pattern of image paths, with where it was written.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The glob as written (absolute, without `..`).
    pub text: String,
    /// The compiled glob: `*` and `?` stay within one path component, `**` crosses `/`.
    pub matcher: GlobMatcher,
    /// Where the pattern is written.
    pub location: Location,
}

/// `[package.NAME]`: a Debian package and which of its entries go into the image.
#[derive(Debug, Clone)]
pub struct Package {
    /// The binary package name (lowercase letters, digits, `+`, `-`, `.`).
    pub name: String,
    /// Patterns that must each match at least one entry of the package.
    pub paths: Vec<Pattern>,
    /// Patterns that may match nothing.
    pub optional_paths: Vec<Pattern>,
    /// Patterns of entries left out even when `paths` or `optional_paths` match them.
    pub exclude: Vec<Pattern>,
    /// `None`: every architecture of the image.
    pub arch: Option<Vec<Arch>>,
    /// Where the package's name is written.
    pub location: Location,
}

impl Package {
    /// Whether the package is taken on `arch` (no `arch` list: on every architecture).
    pub fn applies_to(&self, arch: Arch) -> bool {
        self.arch.as_ref().is_none_or(|a| a.contains(&arch))
    }
}

/// `[generate]`: which files compose writes into the image besides the packages'.
/// Read straight from the TOML (kebab-case keys, unknown keys refused); a key left out
/// takes its value from [`Generate::default`], so a new generator's switch is one field
/// here and its default there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Generate {
    /// `/etc/ssl/certs/ca-certificates.crt` from the package ca-certificates, and its links.
    pub ca_bundle: bool,
    /// `/etc/passwd` and `/etc/group` (root, nobody/nogroup, then the manifest's accounts)
    /// and the users' home directories.
    pub passwd: bool,
    /// `/var/lib/dpkg/status.d/<pkg>` and `<pkg>.md5sums`, read by image scanners.
    pub dpkg_status: bool,
    /// The SPDX document of each architecture's tree, inside it (`crate::sbom::embed`).
    pub sbom: bool,
}

impl Default for Generate {
    /// `dpkg-status` on (scanners read it), the others off.
    fn default() -> Self {
        Generate {
            ca_bundle: false,
            passwd: false,
            dpkg_status: true,
            sbom: false,
        }
    }
}

/// `[[user]]`: an account for `[generate] passwd` that `[image] user` may name.
#[derive(Debug, Clone)]
pub struct User {
    /// Unique, never `root` or `nobody`; letters, digits, `_`, `-`, `.`, at most 32.
    pub name: String,
    /// numeric user ID
    pub uid: u32,
    /// numeric primary group ID
    pub gid: u32,
    /// Home directory (an image path); the passwd generator writes `/nonexistent` without one.
    pub home: Option<String>,
    /// Login shell; the passwd generator writes `/usr/sbin/nologin` without one.
    pub shell: Option<String>,
    /// GECOS (comment) field; empty without one.
    pub gecos: Option<String>,
}

/// `[[group]]`: a group for `[generate] passwd`.
#[derive(Debug, Clone)]
pub struct Group {
    /// Unique, never `root` or `nogroup`; same characters as a user name.
    pub name: String,
    /// numeric group ID
    pub gid: u32,
    /// User names listed as members, as written.
    pub members: Vec<String>,
}

/// Where a `[[file]]`'s content comes from.
#[derive(Debug, Clone)]
pub enum FileContent {
    /// `text`: the content inline.
    Text(String),
    /// Host path, resolved against the manifest's directory; may contain `{arch}`.
    Source(PathBuf),
}

/// `[[file]]`: a file the manifest adds, replacing whatever is at its path.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Absolute, normalised image path.
    pub path: String,
    /// inline text or a host file
    pub content: FileContent,
    /// Permission bits (at most `0o7777`); `0o644` when not written.
    pub mode: u32,
    /// owner user ID (default 0)
    pub uid: u32,
    /// owner group ID (default 0)
    pub gid: u32,
    /// Architectures to add it on; `None`: every one.
    pub arch: Option<Vec<Arch>>,
    /// Where the `[[file]]` table is written.
    pub location: Location,
}

/// `[[dir]]`: a directory the manifest adds or whose metadata it sets.
#[derive(Debug, Clone)]
pub struct DirSpec {
    /// Absolute, normalised image path.
    pub path: String,
    /// Permission bits (at most `0o7777`); `0o755` when not written.
    pub mode: u32,
    /// owner user ID (default 0)
    pub uid: u32,
    /// owner group ID (default 0)
    pub gid: u32,
    /// Architectures to add it on; `None`: every one.
    pub arch: Option<Vec<Arch>>,
}

/// `[[symlink]]`: a symbolic link the manifest adds, replacing whatever is at its path.
#[derive(Debug, Clone)]
pub struct SymlinkSpec {
    /// Absolute, normalised image path.
    pub path: String,
    /// The link's target, written as given (relative or absolute; not empty, no NUL).
    pub target: String,
    /// owner user ID (default 0)
    pub uid: u32,
    /// owner group ID (default 0)
    pub gid: u32,
    /// Architectures to add it on; `None`: every one.
    pub arch: Option<Vec<Arch>>,
}

fn arch_matches(list: &Option<Vec<Arch>>, arch: Arch) -> bool {
    list.as_ref().is_none_or(|a| a.contains(&arch))
}

impl FileSpec {
    /// Whether the file is added on `arch`.
    pub fn applies_to(&self, arch: Arch) -> bool {
        arch_matches(&self.arch, arch)
    }
}
impl DirSpec {
    /// Whether the directory is added on `arch`.
    pub fn applies_to(&self, arch: Arch) -> bool {
        arch_matches(&self.arch, arch)
    }
}
impl SymlinkSpec {
    /// Whether the link is added on `arch`.
    pub fn applies_to(&self, arch: Arch) -> bool {
        arch_matches(&self.arch, arch)
    }
}

impl Manifest {
    /// Read and validate a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the manifest: {e}"),
            hint: "give the path of a TOML manifest (see manifests/ for examples)".into(),
        })?;
        Manifest::parse(path, &text)
    }

    /// Parse and validate manifest text; `path` names it in errors and anchors host
    /// paths and includes. The files it includes are read from the file system.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let mut cx = Cx::new(path, text);
        let raw = cx.read_merged(0)?;
        cx.validate(raw)
    }

    /// The image's architectures when none are given on the command line.
    pub fn default_architectures(&self) -> Vec<Arch> {
        self.image.architectures.clone()
    }

    /// The user the image runs as, resolved to `uid:gid` when it names a `[[user]]`.
    pub fn resolved_user(&self) -> Option<String> {
        let user = self.image.user.as_ref()?;
        Some(match self.users.iter().find(|u| &u.name == user) {
            Some(u) => format!("{}:{}", u.uid, u.gid),
            None => user.clone(),
        })
    }
}

fn toml_hint(message: &str) -> String {
    if message.contains("unknown field") {
        "remove or correct the key; the schema is docs/manifest.md (manifests/ has examples)".into()
    } else if message.contains("missing field") {
        "add the missing key".into()
    } else if message.contains("duplicate key") {
        "each key (package name, table) may appear once: merge the two".into()
    } else if message.contains("invalid type") {
        "check the value's type against docs/manifest.md (strings are quoted, lists use [...])"
            .into()
    } else {
        "fix the TOML syntax at this place".into()
    }
}

/// The snapshot service URL of an archive at `ts` (`YYYYMMDDTHHMMSSZ`): Ubuntu's
/// archive (`archive.ubuntu.com`, `security.ubuntu.com`) and ports
/// (`ports.ubuntu.com/ubuntu-ports`) at snapshot.ubuntu.com, Debian's archives
/// (`debian`, `debian-security`, `debian-ports`, `debian-debug` on `deb.debian.org`, and
/// `ftp.debian.org/debian`, `security.debian.org/debian-security`) at
/// snapshot.debian.org. docs/manifest.md lists the same forms.
pub fn snapshot_url(url: &str, ts: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?
        .trim_end_matches('/');
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let service = match (host, path) {
        ("archive.ubuntu.com" | "security.ubuntu.com", "ubuntu") => "snapshot.ubuntu.com/ubuntu",
        ("ports.ubuntu.com", "ubuntu-ports") => "snapshot.ubuntu.com/ubuntu-ports",
        ("deb.debian.org" | "ftp.debian.org", "debian") => "snapshot.debian.org/archive/debian",
        ("deb.debian.org" | "security.debian.org", "debian-security") => {
            "snapshot.debian.org/archive/debian-security"
        }
        ("deb.debian.org", "debian-ports") => "snapshot.debian.org/archive/debian-ports",
        ("deb.debian.org", "debian-debug") => "snapshot.debian.org/archive/debian-debug",
        _ => return None,
    };
    Some(format!("https://{service}/{ts}"))
}

#[cfg(test)]
mod tests {
    use super::fixtures::{err, parse, GOOD};
    use super::*;

    #[test]
    fn a_good_manifest_parses() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.image.architectures, [Arch::AMD64, Arch::ARM64]);
        assert_eq!(m.sources[0].url, "http://archive.ubuntu.com/ubuntu");
        assert_eq!(
            m.sources[0].base_url(Arch::ARM64),
            "http://ports.ubuntu.com/ubuntu-ports"
        );
        assert_eq!(
            m.sources[0].base_url(Arch::AMD64),
            "http://archive.ubuntu.com/ubuntu"
        );
        assert_eq!(m.sources[0].components, ["main"]);
        let names: Vec<_> = m.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["ca-certificates", "libc6", "libstdc++6"]);
        assert!(m.packages[2].applies_to(Arch::AMD64));
        assert!(!m.packages[2].applies_to(Arch::ARM64));
        assert!(m.generate.dpkg_status);
        assert!(!m.generate.sbom, "[generate] sbom is opt-in");
        assert_eq!(m.resolved_user().as_deref(), Some("1002:1001"));
        assert_eq!(m.dirs[0].mode, 0o1777);
        let pat = &m.packages[1].paths[0];
        assert!(pat.matcher.is_match("/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(!pat
            .matcher
            .is_match("/usr/lib/x86_64-linux-gnu/sub/libc.so.6"));
        assert_eq!(pat.location.line, 16);
    }

    #[test]
    fn unknown_key_points_at_it() {
        let e = err(&GOOD.replace("workdir =", "workdri ="));
        assert_eq!((e.line, e.column), (6, 1), "{e}");
        assert!(e.message.contains("unknown field `workdri`"), "{e}");
        assert!(!e.hint.is_empty());
        let shown = e.to_string();
        assert!(shown.contains("test.toml:6:1: "), "{shown}");
    }

    #[test]
    fn generate_defaults_and_switches() {
        let m = parse(&format!(
            "{GOOD}\n[generate]\nca-bundle = true\nsbom = true\n"
        ))
        .unwrap();
        assert_eq!(
            m.generate,
            Generate {
                ca_bundle: true,
                passwd: false,
                dpkg_status: true,
                sbom: true,
            }
        );
        let m = parse(&format!("{GOOD}\n[generate]\ndpkg-status = false\n")).unwrap();
        assert_eq!(
            m.generate,
            Generate {
                dpkg_status: false,
                ..Generate::default()
            }
        );
        let e = err(&format!("{GOOD}\n[generate]\npaswd = true\n"));
        assert!(e.message.contains("unknown field `paswd`"), "{e}");
        assert!(e.hint.contains("docs/manifest.md"), "{e}");
    }
}
