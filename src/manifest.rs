//! The manifest: TOML schema (DESIGN §2), parsing and validation.
//!
//! Every error points at the manifest with `file:line:column` and ends with a one-line
//! hint. Values that later checks may complain about keep their span
//! ([`serde_spanned::Spanned`]) so those checks can point at the manifest too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::Deserialize;
use serde_spanned::Spanned;

/// Architectures the tool knows, with their OCI platform (architecture, variant).
const ARCHES: &[(&str, &str, Option<&str>)] = &[
    ("amd64", "amd64", None),
    ("arm64", "arm64", Some("v8")),
    ("armhf", "arm", Some("v7")),
    ("armel", "arm", Some("v5")),
    ("i386", "386", None),
    ("ppc64el", "ppc64le", None),
    ("s390x", "s390x", None),
    ("riscv64", "riscv64", None),
];

/// The OCI platform of a Debian architecture name: `("arm64", Some("v8"))`.
pub fn oci_platform(debian_arch: &str) -> Option<(&'static str, Option<&'static str>)> {
    ARCHES
        .iter()
        .find(|(d, _, _)| *d == debian_arch)
        .map(|(_, a, v)| (*a, *v))
}

/// Accept Debian names (`arm64`) and OCI platform names (`linux/arm64`, `linux/arm64/v8`).
pub fn normalise_arch(arch: &str) -> Option<&'static str> {
    if let Some((d, _, _)) = ARCHES.iter().find(|(d, _, _)| *d == arch) {
        return Some(d);
    }
    let rest = arch.strip_prefix("linux/")?;
    let (oci, variant) = match rest.split_once('/') {
        Some((a, v)) => (a, Some(v)),
        None => (rest, None),
    };
    ARCHES
        .iter()
        .find(|(_, a, v)| *a == oci && (variant.is_none() || variant == *v))
        .map(|(d, _, _)| *d)
}

/// Top-level directories that merged-usr turns into symlinks into `/usr`.
pub const MERGED_TOP: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

pub fn is_merged_top(component: &str) -> bool {
    MERGED_TOP.contains(&component)
}

/// The merged-usr form of an absolute, normalised path: `/lib/x` → `/usr/lib/x`,
/// `/bin` → `/usr/bin`. Paths outside the merged directories are returned unchanged.
///
/// `None` for anything that is not absolute and normalised (a relative path, an empty,
/// `.` or `..` component, a trailing `/`, a NUL): the result is never a path that could
/// leave `/`, whatever the input.
pub fn merged_usr_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix('/')?;
    let normalised = path == "/"
        || (!rest.contains('\0') && rest.split('/').all(|c| !matches!(c, "" | "." | "..")));
    if !normalised {
        return None;
    }
    let first = rest.split('/').next().unwrap_or("");
    if is_merged_top(first) {
        Some(format!("/usr/{rest}"))
    } else {
        Some(path.to_string())
    }
}

/// A manifest error: where, what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
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

// ---------------------------------------------------------------------------------------
// Schema, as written in TOML.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    image: RawImage,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
    #[serde(default)]
    package: BTreeMap<Spanned<String>, RawPackage>,
    #[serde(default)]
    generate: RawGenerate,
    #[serde(default)]
    user: Vec<Spanned<RawUser>>,
    #[serde(default)]
    group: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    file: Vec<Spanned<RawFile>>,
    #[serde(default)]
    dir: Vec<Spanned<RawDir>>,
    #[serde(default)]
    symlink: Vec<Spanned<RawSymlink>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawImage {
    name: Spanned<String>,
    #[serde(default)]
    architectures: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    merged_usr: bool,
    user: Option<Spanned<String>>,
    workdir: Option<Spanned<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default = "yes")]
    copyright: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSource {
    url: Spanned<String>,
    #[serde(default)]
    arch_url: BTreeMap<Spanned<String>, Spanned<String>>,
    suites: Vec<Spanned<String>>,
    #[serde(default)]
    components: Vec<Spanned<String>>,
    keyring: Spanned<String>,
    snapshot: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPackage {
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    #[serde(default)]
    optional_paths: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    arch: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawGenerate {
    #[serde(default)]
    ca_bundle: bool,
    #[serde(default)]
    passwd: bool,
    #[serde(default = "yes")]
    dpkg_status: bool,
    #[serde(default)]
    sbom: bool,
}

impl Default for RawGenerate {
    fn default() -> Self {
        RawGenerate {
            ca_bundle: false,
            passwd: false,
            dpkg_status: true,
            sbom: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    uid: u32,
    gid: u32,
    home: Option<Spanned<String>>,
    shell: Option<String>,
    gecos: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    gid: u32,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Spanned<String>,
    text: Option<String>,
    source: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    uid: Option<u32>,
    gid: Option<u32>,
    arch: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    path: Spanned<String>,
    mode: Option<Spanned<String>>,
    uid: Option<u32>,
    gid: Option<u32>,
    arch: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSymlink {
    path: Spanned<String>,
    target: Spanned<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    arch: Option<Vec<Spanned<String>>>,
}

// ---------------------------------------------------------------------------------------
// The validated manifest.

/// A place in the manifest, for errors found after loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file as given.
    pub path: PathBuf,
    /// Its bytes (the lock ties itself to their hash).
    pub text: String,
    pub image: Image,
    pub sources: Vec<Source>,
    /// Sorted by name.
    pub packages: Vec<Package>,
    pub generate: Generate,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub files: Vec<FileSpec>,
    pub dirs: Vec<DirSpec>,
    pub symlinks: Vec<SymlinkSpec>,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub architectures: Vec<String>,
    pub merged_usr: bool,
    /// As written: a [[user]] name or `uid:gid`.
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub copyright: bool,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub url: String,
    pub arch_url: BTreeMap<String, String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// Host path, resolved against the manifest's directory.
    pub keyring: PathBuf,
    pub snapshot: Option<String>,
    pub location: Location,
}

impl Source {
    /// The repository base URL for `arch` (no trailing slash; the snapshot service's
    /// when `snapshot` is set).
    pub fn base_url(&self, arch: &str) -> &str {
        self.arch_url
            .get(arch)
            .map(String::as_str)
            .unwrap_or(&self.url)
            .trim_end_matches('/')
    }
}

/// A glob pattern of image paths, with where it was written.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub text: String,
    pub matcher: GlobMatcher,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub paths: Vec<Pattern>,
    pub optional_paths: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
    /// `None`: every architecture of the image.
    pub arch: Option<Vec<String>>,
    pub location: Location,
}

impl Package {
    pub fn applies_to(&self, arch: &str) -> bool {
        self.arch
            .as_ref()
            .is_none_or(|a| a.iter().any(|x| x == arch))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generate {
    pub ca_bundle: bool,
    pub passwd: bool,
    pub dpkg_status: bool,
    /// The SPDX document of each architecture's tree, inside it (`crate::sbom::embed`).
    pub sbom: bool,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub gecos: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum FileContent {
    Text(String),
    /// Host path, resolved against the manifest's directory; may contain `{arch}`.
    Source(PathBuf),
}

#[derive(Debug, Clone)]
pub struct FileSpec {
    pub path: String,
    pub content: FileContent,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub arch: Option<Vec<String>>,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct DirSpec {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub arch: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct SymlinkSpec {
    pub path: String,
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub arch: Option<Vec<String>>,
}

fn arch_matches(list: &Option<Vec<String>>, arch: &str) -> bool {
    list.as_ref().is_none_or(|a| a.iter().any(|x| x == arch))
}

impl FileSpec {
    pub fn applies_to(&self, arch: &str) -> bool {
        arch_matches(&self.arch, arch)
    }
}
impl DirSpec {
    pub fn applies_to(&self, arch: &str) -> bool {
        arch_matches(&self.arch, arch)
    }
}
impl SymlinkSpec {
    pub fn applies_to(&self, arch: &str) -> bool {
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

    /// Parse and validate manifest text; `path` names it in errors and anchors host paths.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let cx = Cx { path, text };
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_string();
            let hint = toml_hint(&message);
            cx.error(span, message, hint)
        })?;
        cx.validate(raw)
    }

    /// The image's architectures when none are given on the command line.
    pub fn default_architectures(&self) -> Vec<String> {
        self.image.architectures.clone()
    }

    /// The user the image runs as, resolved to `uid:gid` when it names a [[user]].
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
        "remove or correct the key; the schema is DESIGN §2 (manifests/ has examples)".into()
    } else if message.contains("missing field") {
        "add the missing key".into()
    } else if message.contains("duplicate key") {
        "each key (package name, table) may appear once: merge the two".into()
    } else if message.contains("invalid type") {
        "check the value's type against DESIGN §2 (strings are quoted, lists use [...])".into()
    } else {
        "fix the TOML syntax at this place".into()
    }
}

/// Parsing context: the file and its text, for turning spans into line:column.
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn location(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..start].chars().count() + 1;
        Location {
            file: self.path.to_path_buf(),
            line,
            column,
        }
    }

    fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ManifestError {
        let Location { file, line, column } = self.location(span);
        ManifestError {
            file,
            line,
            column,
            message: message.into(),
            hint: hint.into(),
        }
    }

    fn host_path(&self, rel: &str) -> PathBuf {
        let base = self.path.parent().unwrap_or(Path::new(""));
        base.join(rel)
    }

    fn arch_list(
        &self,
        list: &Option<Vec<Spanned<String>>>,
    ) -> Result<Option<Vec<String>>, ManifestError> {
        let Some(list) = list else { return Ok(None) };
        let mut out = Vec::new();
        for a in list {
            out.push(self.arch(a)?);
        }
        Ok(Some(out))
    }

    fn arch(&self, a: &Spanned<String>) -> Result<String, ManifestError> {
        normalise_arch(a.get_ref())
            .map(str::to_string)
            .ok_or_else(|| {
                let known: Vec<_> = ARCHES.iter().map(|(d, _, _)| *d).collect();
                self.error(
                    a.span(),
                    format!("unknown architecture `{}`", a.get_ref()),
                    format!("use a Debian architecture name: {}", known.join(", ")),
                )
            })
    }

    /// An absolute, normalised image path in merged-usr form.
    fn image_path(
        &self,
        p: &Spanned<String>,
        merged_usr: bool,
        what: &str,
    ) -> Result<String, ManifestError> {
        let s = p.get_ref();
        if !s.starts_with('/') {
            return Err(self.error(
                p.span(),
                format!("{what} `{s}` is not an absolute path in the image"),
                format!(
                    "write it from the image root: `/{}`",
                    s.trim_start_matches("./")
                ),
            ));
        }
        if s.contains('\0') {
            return Err(self.error(p.span(), format!("{what} contains a NUL byte"), "remove it"));
        }
        let mut parts = Vec::new();
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    return Err(self.error(
                        p.span(),
                        format!("{what} `{s}` contains `..`"),
                        "write the path without `..` components",
                    ))
                }
                c => parts.push(c),
            }
        }
        let norm = format!("/{}", parts.join("/"));
        if merged_usr {
            if let Some(usr) = merged_usr_path(&norm) {
                if usr != norm && parts.len() > 1 {
                    return Err(self.error(
                        p.span(),
                        format!("{what} `{s}` is not in merged-usr form"),
                        format!(
                            "write `{usr}` (the image has /{} -> usr/{})",
                            parts[0], parts[0]
                        ),
                    ));
                }
            }
        }
        Ok(norm)
    }

    fn pattern(&self, p: &Spanned<String>, merged_usr: bool) -> Result<Pattern, ManifestError> {
        let text = p.get_ref();
        if !text.starts_with('/') {
            return Err(self.error(
                p.span(),
                format!("pattern `{text}` is not an absolute path in the image"),
                format!(
                    "patterns start at the image root: `/{}`",
                    text.trim_start_matches("./")
                ),
            ));
        }
        if text.split('/').any(|c| c == "..") {
            return Err(self.error(
                p.span(),
                format!("pattern `{text}` contains `..`"),
                "write the pattern without `..` components",
            ));
        }
        if merged_usr {
            let first = text.split('/').nth(1).unwrap_or("");
            if text.split('/').count() > 2 && is_merged_top(first) {
                return Err(self.error(
                    p.span(),
                    format!("pattern `{text}` is not in merged-usr form"),
                    format!("write `/usr{text}` (the image has /{first} -> usr/{first})"),
                ));
            }
        }
        let glob: Glob = GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| {
                self.error(
                    p.span(),
                    format!("bad glob `{text}`: {}", e.kind()),
                    "globs: `*` and `?` stay within one path component, `**` crosses `/`, `{a,b}` alternates",
                )
            })?;
        Ok(Pattern {
            text: text.clone(),
            matcher: glob.compile_matcher(),
            location: self.location(p.span()),
        })
    }

    /// Suite or component names: non-empty, no `..`, no leading `/`, no whitespace.
    fn names(
        &self,
        list: &[Spanned<String>],
        kind: &str,
        example: &str,
    ) -> Result<Vec<String>, ManifestError> {
        let mut out = Vec::new();
        for x in list {
            let v = x.get_ref();
            if v.is_empty()
                || v.contains("..")
                || v.starts_with('/')
                || v.contains(char::is_whitespace)
            {
                return Err(self.error(
                    x.span(),
                    format!("{kind} `{v}` is not a {kind} name"),
                    format!("write a {kind} such as {example}"),
                ));
            }
            out.push(v.clone());
        }
        Ok(out)
    }

    /// A [[user]] or [[group]] name: valid, unique, and not `root` or `builtin` (the
    /// generator always writes those).
    fn account_name(
        &self,
        name: &Spanned<String>,
        seen: &mut BTreeSet<String>,
        kind: &str,
        builtin: &str,
    ) -> Result<(), ManifestError> {
        let n = name.get_ref();
        let valid = !n.is_empty()
            && n.len() <= 32
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            && !n.starts_with('-');
        if !valid {
            return Err(self.error(
                name.span(),
                format!("`{n}` is not a valid {kind} name"),
                "use letters, digits, `_`, `-` and `.` (at most 32)",
            ));
        }
        if !seen.insert(n.clone()) || n == "root" || n == builtin {
            return Err(self.error(
                name.span(),
                format!("{kind} `{n}` is defined twice (root and {builtin} are always there)"),
                format!("give each [[{kind}]] a unique name"),
            ));
        }
        Ok(())
    }

    fn mode(&self, m: &Option<Spanned<String>>, default: u32) -> Result<u32, ManifestError> {
        let Some(m) = m else { return Ok(default) };
        let s = m.get_ref();
        let digits = s.strip_prefix("0o").unwrap_or(s);
        match u32::from_str_radix(digits, 8) {
            Ok(v) if v <= 0o7777 && !digits.is_empty() => Ok(v),
            _ => Err(self.error(
                m.span(),
                format!("mode `{s}` is not an octal permission"),
                "write it as an octal string, e.g. mode = \"0644\" or \"1777\"",
            )),
        }
    }

    fn validate(&self, raw: RawManifest) -> Result<Manifest, ManifestError> {
        let merged_usr = raw.image.merged_usr;

        // [image]
        let name = raw.image.name.get_ref();
        let valid_tag = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !name.starts_with(['.', '-']);
        if !valid_tag {
            return Err(self.error(
                raw.image.name.span(),
                format!("image name `{name}` is not usable as a tag"),
                "use letters, digits, `.`, `_` and `-` (at most 128, not starting with `.` or `-`)",
            ));
        }
        let mut architectures = Vec::new();
        for a in &raw.image.architectures {
            let a2 = self.arch(a)?;
            if architectures.contains(&a2) {
                return Err(self.error(
                    a.span(),
                    format!("architecture `{a2}` is listed twice"),
                    "list each architecture once",
                ));
            }
            architectures.push(a2);
        }
        let workdir = match &raw.image.workdir {
            Some(w) => Some(self.image_path(w, merged_usr, "workdir")?),
            None => None,
        };
        let mut env = BTreeMap::new();
        for (k, v) in raw.image.env {
            if k.get_ref().is_empty() || k.get_ref().contains('=') {
                return Err(self.error(
                    k.span(),
                    format!("environment variable name `{}` is not valid", k.get_ref()),
                    "names may not be empty or contain `=`",
                ));
            }
            env.insert(k.into_inner(), v);
        }

        // [[source]]
        if raw.source.is_empty() {
            return Err(self.error(
                0..0,
                "the manifest has no [[source]]",
                "add a [[source]] with url, suites, components and keyring (DESIGN §2)",
            ));
        }
        let mut sources = Vec::new();
        for s in &raw.source {
            let span = s.span();
            let s = s.get_ref();
            let mut urls = vec![&s.url];
            urls.extend(s.arch_url.values());
            for u in &urls {
                let ok = u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://");
                if !ok {
                    return Err(self.error(
                        u.span(),
                        format!("source URL `{}` is not http(s)", u.get_ref()),
                        "write the repository's base URL, e.g. http://archive.ubuntu.com/ubuntu",
                    ));
                }
            }
            let mut arch_url = BTreeMap::new();
            for (a, u) in &s.arch_url {
                arch_url.insert(self.arch(a)?, u.get_ref().clone());
            }
            if s.suites.is_empty() {
                return Err(self.error(
                    span,
                    "the source lists no suites",
                    "add suites = [\"noble\", \"noble-updates\", \"noble-security\"] or similar",
                ));
            }
            let suites = self.names(&s.suites, "suite", "`noble` or `bookworm-updates`")?;
            let mut components = self.names(&s.components, "component", "`main`")?;
            if components.is_empty() {
                components.push("main".to_string());
            }
            let keyring = self.host_path(s.keyring.get_ref());
            if !keyring.is_file() {
                return Err(self.error(
                    s.keyring.span(),
                    format!("keyring `{}` not found (looked at {})", s.keyring.get_ref(), keyring.display()),
                    "keyring paths are relative to the manifest file; keys/ holds the Ubuntu and Debian keyrings",
                ));
            }
            if let Some(ts) = &s.snapshot {
                let v = ts.get_ref();
                let ok = v.len() == 16
                    && v.as_bytes()[8] == b'T'
                    && v.ends_with('Z')
                    && v[..8].bytes().all(|b| b.is_ascii_digit())
                    && v[9..15].bytes().all(|b| b.is_ascii_digit());
                if !ok {
                    return Err(self.error(
                        ts.span(),
                        format!("snapshot `{v}` is not a timestamp"),
                        "write it as YYYYMMDDTHHMMSSZ, e.g. \"20251115T000000Z\"",
                    ));
                }
            }
            let mut url = s.url.get_ref().trim_end_matches('/').to_string();
            if let Some(ts) = &s.snapshot {
                let at = |u: &str, span| {
                    snapshot_url(u, ts.get_ref()).ok_or_else(|| {
                        self.error(
                            span,
                            format!("no known snapshot service serves `{u}`"),
                            "snapshot works for archive/security/ports.ubuntu.com and deb/security.debian.org; for another archive give its snapshot URL as `url` and drop `snapshot`",
                        )
                    })
                };
                url = at(&url, s.url.span())?;
                for (a, u) in &s.arch_url {
                    let mapped = at(u.get_ref(), u.span())?;
                    arch_url.insert(
                        normalise_arch(a.get_ref()).unwrap_or_default().to_string(),
                        mapped,
                    );
                }
            }
            sources.push(Source {
                url,
                arch_url,
                suites,
                components,
                keyring,
                snapshot: s.snapshot.as_ref().map(|t| t.get_ref().clone()),
                location: self.location(span),
            });
        }

        // [package.NAME]
        let mut packages = Vec::new();
        for (name, p) in &raw.package {
            let n = name.get_ref();
            let valid = n.len() >= 2
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
                && n.as_bytes()[0].is_ascii_alphanumeric();
            if !valid {
                return Err(self.error(
                    name.span(),
                    format!("`{n}` is not a Debian package name"),
                    "package names are lowercase letters, digits, `+`, `-` and `.`; quote names with `+`: [package.\"libstdc++6\"]",
                ));
            }
            let mut seen = BTreeSet::new();
            let mut pats = |list: &Vec<Spanned<String>>| -> Result<Vec<Pattern>, ManifestError> {
                let mut out = Vec::new();
                for x in list {
                    if !seen.insert(x.get_ref().clone()) {
                        return Err(self.error(
                            x.span(),
                            format!("pattern `{}` is given twice for package {n}", x.get_ref()),
                            "remove the duplicate",
                        ));
                    }
                    out.push(self.pattern(x, merged_usr)?);
                }
                Ok(out)
            };
            let paths = pats(&p.paths)?;
            let optional_paths = pats(&p.optional_paths)?;
            let exclude = pats(&p.exclude)?;
            packages.push(Package {
                name: n.clone(),
                paths,
                optional_paths,
                exclude,
                arch: self.arch_list(&p.arch)?,
                location: self.location(name.span()),
            });
        }
        if packages.is_empty() {
            return Err(self.error(
                0..0,
                "the manifest declares no packages",
                "add at least one [package.NAME] table",
            ));
        }

        // [[group]], [[user]]
        let mut groups = Vec::new();
        let mut group_names = BTreeSet::new();
        for g in &raw.group {
            let gr = g.get_ref();
            self.account_name(&gr.name, &mut group_names, "group", "nogroup")?;
            groups.push(Group {
                name: gr.name.get_ref().clone(),
                gid: gr.gid,
                members: gr.members.clone(),
            });
        }
        let mut users = Vec::new();
        let mut user_names = BTreeSet::new();
        for u in &raw.user {
            let ur = u.get_ref();
            self.account_name(&ur.name, &mut user_names, "user", "nobody")?;
            let home = match &ur.home {
                Some(h) => Some(self.image_path(h, merged_usr, "home")?),
                None => None,
            };
            users.push(User {
                name: ur.name.get_ref().clone(),
                uid: ur.uid,
                gid: ur.gid,
                home,
                shell: ur.shell.clone(),
                gecos: ur.gecos.clone(),
            });
        }
        if let Some(user) = &raw.image.user {
            let u = user.get_ref();
            let numeric = u
                .split_once(':')
                .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
                || u.parse::<u32>().is_ok();
            if !numeric && !user_names.contains(u) && u != "root" {
                return Err(self.error(
                    user.span(),
                    format!("user `{u}` is neither a [[user]] of the manifest nor `uid:gid`"),
                    "add a [[user]] with that name, or write the numeric form, e.g. \"1002:1001\"",
                ));
            }
        }

        // [[file]], [[dir]], [[symlink]]
        let mut claimed: BTreeMap<(String, Option<Vec<String>>), Location> = BTreeMap::new();
        let mut claim = |cx: &Self, path: &str, arch: &Option<Vec<String>>, span: Range<usize>| {
            let key = (path.to_string(), arch.clone());
            if let Some(first) = claimed.get(&key) {
                return Err(cx.error(
                    span,
                    format!("`{path}` is declared twice (first at line {})", first.line),
                    "declare each path once, or give the two different `arch` lists",
                ));
            }
            claimed.insert(key, cx.location(span));
            Ok(())
        };
        let mut files = Vec::new();
        for f in &raw.file {
            let span = f.span();
            let fr = f.get_ref();
            let path = self.image_path(&fr.path, merged_usr, "file path")?;
            let arch = self.arch_list(&fr.arch)?;
            claim(self, &path, &arch, fr.path.span())?;
            let content = match (&fr.text, &fr.source) {
                (Some(t), None) => FileContent::Text(t.clone()),
                (None, Some(s)) => FileContent::Source(self.host_path(s.get_ref())),
                _ => {
                    return Err(self.error(
                        span,
                        format!("[[file]] `{path}` needs exactly one of `text` and `source`"),
                        "text = \"…\" for inline content, source = \"host/path\" (relative to the manifest) for a host file",
                    ))
                }
            };
            files.push(FileSpec {
                path,
                content,
                mode: self.mode(&fr.mode, 0o644)?,
                uid: fr.uid.unwrap_or(0),
                gid: fr.gid.unwrap_or(0),
                arch,
                location: self.location(span),
            });
        }
        let mut dirs = Vec::new();
        for d in &raw.dir {
            let dr = d.get_ref();
            let path = self.image_path(&dr.path, merged_usr, "dir path")?;
            let arch = self.arch_list(&dr.arch)?;
            claim(self, &path, &arch, dr.path.span())?;
            dirs.push(DirSpec {
                path,
                mode: self.mode(&dr.mode, 0o755)?,
                uid: dr.uid.unwrap_or(0),
                gid: dr.gid.unwrap_or(0),
                arch,
            });
        }
        let mut symlinks = Vec::new();
        for s in &raw.symlink {
            let sr = s.get_ref();
            let path = self.image_path(&sr.path, merged_usr, "symlink path")?;
            let arch = self.arch_list(&sr.arch)?;
            claim(self, &path, &arch, sr.path.span())?;
            let target = sr.target.get_ref();
            if target.is_empty() || target.contains('\0') {
                return Err(self.error(
                    sr.target.span(),
                    "symlink target is empty or contains NUL",
                    "give the path the link points to",
                ));
            }
            symlinks.push(SymlinkSpec {
                path,
                target: target.clone(),
                uid: sr.uid.unwrap_or(0),
                gid: sr.gid.unwrap_or(0),
                arch,
            });
        }

        Ok(Manifest {
            path: self.path.to_path_buf(),
            text: self.text.to_string(),
            image: Image {
                name: name.clone(),
                architectures,
                merged_usr,
                user: raw.image.user.map(Spanned::into_inner),
                workdir,
                entrypoint: raw.image.entrypoint,
                cmd: raw.image.cmd,
                env,
                labels: raw.image.labels,
                annotations: raw.image.annotations,
                copyright: raw.image.copyright,
            },
            sources,
            packages,
            generate: Generate {
                ca_bundle: raw.generate.ca_bundle,
                passwd: raw.generate.passwd,
                dpkg_status: raw.generate.dpkg_status,
                sbom: raw.generate.sbom,
            },
            users,
            groups,
            files,
            dirs,
            symlinks,
        })
    }
}

/// The snapshot service URL of an archive at `ts` (`YYYYMMDDTHHMMSSZ`).
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
        _ => return None,
    };
    Some(format!("https://{service}/{ts}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[image]
name = "noble-tiny"
architectures = ["amd64", "linux/arm64"]
user = "cnb"
workdir = "/home/cnb"
env = { SSL_CERT_FILE = "/etc/ssl/certs/ca-certificates.crt" }

[[source]]
url = "http://archive.ubuntu.com/ubuntu/"
arch-url = { arm64 = "http://ports.ubuntu.com/ubuntu-ports" }
suites = ["noble", "noble-updates"]
keyring = "Cargo.toml"

[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]
[package."libstdc++6"]
paths = ["/usr/lib/*-linux-gnu/libstdc++.so.6*"]
arch = ["amd64"]
[package.ca-certificates]
paths = []

[[user]]
name = "cnb"
uid = 1002
gid = 1001
home = "/home/cnb"

[[dir]]
path = "/tmp"
mode = "1777"
"#;

    fn manifest_path() -> PathBuf {
        // Anchored at the crate root so `keyring = "Cargo.toml"` resolves to a real file.
        Path::new(env!("CARGO_MANIFEST_DIR")).join("test.toml")
    }

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(&manifest_path(), text)
    }

    #[test]
    fn a_good_manifest_parses() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.image.architectures, ["amd64", "arm64"]);
        assert_eq!(m.sources[0].url, "http://archive.ubuntu.com/ubuntu");
        assert_eq!(
            m.sources[0].base_url("arm64"),
            "http://ports.ubuntu.com/ubuntu-ports"
        );
        assert_eq!(
            m.sources[0].base_url("amd64"),
            "http://archive.ubuntu.com/ubuntu"
        );
        assert_eq!(m.sources[0].components, ["main"]);
        let names: Vec<_> = m.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["ca-certificates", "libc6", "libstdc++6"]);
        assert!(m.packages[2].applies_to("amd64"));
        assert!(!m.packages[2].applies_to("arm64"));
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

    fn err(text: &str) -> ManifestError {
        parse(text).unwrap_err()
    }

    fn with(extra: &str) -> String {
        format!("{GOOD}\n{extra}")
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
    fn bad_glob_is_an_error_with_location() {
        let e = err(&GOOD.replace("libc.so.6\"]", "libc.so.{6\"]"));
        assert_eq!(e.line, 16, "{e}");
        assert!(e.message.contains("bad glob"), "{e}");
    }

    #[test]
    fn relative_and_non_merged_paths_are_refused() {
        let e = err(&GOOD.replace(
            "\"/usr/lib/*-linux-gnu/libc.so.6\"",
            "\"usr/lib/libc.so.6\"",
        ));
        assert!(e.message.contains("not an absolute path"), "{e}");
        assert!(e.hint.contains("/usr/lib/libc.so.6"), "{e}");
        let e = err(&GOOD.replace("\"/usr/lib/*-linux-gnu/libc.so.6\"", "\"/lib/*/libc.so.6\""));
        assert!(e.message.contains("merged-usr"), "{e}");
        assert!(e.hint.contains("/usr/lib/*/libc.so.6"), "{e}");
        let e = err(&GOOD.replace("workdir = \"/home/cnb\"", "workdir = \"home\""));
        assert_eq!(e.line, 6, "{e}");
        let e = err(&with("[[file]]\npath = \"/etc/../x\"\ntext = \"\"\n"));
        assert!(e.message.contains("`..`"), "{e}");
    }

    #[test]
    fn duplicates_are_refused() {
        let e = err(&with("[[dir]]\npath = \"/tmp\"\n"));
        assert!(e.message.contains("declared twice"), "{e}");
        let e = err(&with("[[user]]\nname = \"cnb\"\nuid = 1\ngid = 1\n"));
        assert!(e.message.contains("defined twice"), "{e}");
        let e = err(&with("[package.libc6]\npaths = []\n"));
        assert!(e.message.contains("duplicate"), "{e}");
    }

    #[test]
    fn values_are_checked() {
        let e = err(&GOOD.replace("\"linux/arm64\"", "\"sparc\""));
        assert!(e.message.contains("unknown architecture"), "{e}");
        assert_eq!((e.line, e.column), (4, 27), "{e}");
        let e = err(&GOOD.replace("mode = \"1777\"", "mode = \"999\""));
        assert!(e.message.contains("not an octal"), "{e}");
        let e = err(&GOOD.replace("user = \"cnb\"", "user = \"nobody-here\""));
        assert!(e.message.contains("neither a [[user]]"), "{e}");
        let e = err(&GOOD.replace("keyring = \"Cargo.toml\"", "keyring = \"nope.gpg\""));
        assert!(e.message.contains("not found"), "{e}");
        let e = err(&with("[[file]]\npath = \"/x\"\n"));
        assert!(e.message.contains("exactly one of"), "{e}");
        let e = err(&GOOD.replace(
            "suites = [\"noble\", \"noble-updates\"]",
            "suites = [\"noble\"]\nsnapshot = \"2025\"",
        ));
        assert!(e.message.contains("not a timestamp"), "{e}");
        let e = err(&GOOD.replace("[package.libc6]", "[package.Libc6]"));
        assert!(e.message.contains("not a Debian package name"), "{e}");
    }

    #[test]
    fn merged_usr_paths() {
        assert_eq!(
            merged_usr_path("/lib/x86_64-linux-gnu/libc.so.6").unwrap(),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(
            merged_usr_path("/lib64/ld-linux-x86-64.so.2").unwrap(),
            "/usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(merged_usr_path("/bin").unwrap(), "/usr/bin");
        assert_eq!(merged_usr_path("/").unwrap(), "/");
        assert_eq!(merged_usr_path("/etc/passwd").unwrap(), "/etc/passwd");
    }

    /// Found by the `tar_paths` fuzz target (fuzz/regressions/tar_paths-merged-usr-dotdot):
    /// a path that was not normalised came back unchanged, `..` and all.
    #[test]
    fn merged_usr_path_refuses_unnormalised_paths() {
        for p in [
            "/u.sr/../.ha$ow",
            "/lib/../../etc/shadow",
            "/usr/..",
            "/lib//x",
            "/lib/./x",
            "/lib/",
            "/x\0y",
            "lib/x",
            "",
        ] {
            assert_eq!(merged_usr_path(p), None, "{p:?}");
        }
        assert_eq!(merged_usr_path("/usr/lib/x").unwrap(), "/usr/lib/x");
        assert_eq!(merged_usr_path("/library/x").unwrap(), "/library/x");
        assert_eq!(merged_usr_path("/etc/passwd").unwrap(), "/etc/passwd");
    }

    #[test]
    fn snapshot_rewrites_the_source_urls() {
        let m = parse(&GOOD.replace(
            "suites = [\"noble\", \"noble-updates\"]",
            "suites = [\"noble\"]\nsnapshot = \"20251115T000000Z\"",
        ))
        .unwrap();
        let s = &m.sources[0];
        assert_eq!(
            s.base_url("amd64"),
            "https://snapshot.ubuntu.com/ubuntu/20251115T000000Z"
        );
        assert_eq!(
            s.base_url("arm64"),
            "https://snapshot.ubuntu.com/ubuntu-ports/20251115T000000Z"
        );
        assert_eq!(
            snapshot_url("http://deb.debian.org/debian-security/", "20240101T000000Z").as_deref(),
            Some("https://snapshot.debian.org/archive/debian-security/20240101T000000Z")
        );
        let e = err(&GOOD
            .replace(
                "http://archive.ubuntu.com/ubuntu/",
                "http://mirror.example/ubuntu",
            )
            .replace(
                "suites = [\"noble\", \"noble-updates\"]",
                "suites = [\"noble\"]\nsnapshot = \"20251115T000000Z\"",
            ));
        assert!(e.message.contains("no known snapshot service"), "{e}");
    }

    #[test]
    fn arch_names() {
        assert_eq!(normalise_arch("linux/arm64/v8"), Some("arm64"));
        assert_eq!(normalise_arch("linux/amd64"), Some("amd64"));
        assert_eq!(normalise_arch("linux/arm/v7"), Some("armhf"));
        assert_eq!(normalise_arch("arm64"), Some("arm64"));
        assert_eq!(normalise_arch("linux/sparc"), None);
        assert_eq!(oci_platform("arm64"), Some(("arm64", Some("v8"))));
    }
}
