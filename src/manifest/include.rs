//! `[image] include`: base manifests a family of images shares. Each included file is
//! read (relative to the file that includes it), parsed at its own offset so that every
//! span names its file (see `validate::Cx::location`), its own includes merged under it,
//! and the result merged under the including file, by the rules docs/manifest.md
//! tabulates ("Base manifests"):
//!
//! - scalar keys of `[image]` (`name`, `architectures`, `merged-usr`, `user`, `workdir`,
//!   `entrypoint`, `cmd`, `copyright`, `compression`) and each key of `env`, `labels`, `annotations`
//!   and `[generate]`: the including file wins, and a later include over an earlier one;
//! - declarations (`[[source]]` by `url`, `[package.NAME]` by name, `[[user]]` and
//!   `[[group]]` by name, `[[file]]`, `[[dir]]`, `[[symlink]]` by `path`): merged, the
//!   included ones first; the same one declared identically in two files is kept once,
//!   declared differently it is an error naming both places;
//! - a file reached twice (two includes of one base) is merged once; a file that
//!   includes itself, directly or not, is an error at the include that closes the cycle.
//!
//! Reads only the included files; checks no value (that is `validate`).

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde_spanned::Spanned;

use super::schema::{RawImage, RawManifest};
use super::validate::Cx;
use super::ManifestError;

const CONFLICT_HINT: &str =
    "declare it in one of the two files, or make the two declarations the same";

impl Cx {
    /// File `file` (already added) parsed, with every file it includes merged under it.
    pub(super) fn read_merged(&mut self, file: usize) -> Result<RawManifest, ManifestError> {
        let root = self.files[file].path.clone();
        let mut stack = vec![(canonical(&root), root.clone())];
        let mut seen = BTreeSet::from([canonical(&root)]);
        self.merged(file, &mut stack, &mut seen)
    }

    /// One file, parsed at its offset: spans of the result index the merged text.
    fn parse_file(&self, file: usize) -> Result<RawManifest, ManifestError> {
        let f = &self.files[file];
        // Leading spaces are TOML whitespace: the file's spans start at its offset.
        let mut text = " ".repeat(f.base);
        text.push_str(&f.text);
        toml::from_str(&text).map_err(|e| {
            let span = e.span().unwrap_or(f.base..f.base);
            let message = e.message().trim().to_string();
            let hint = super::toml_hint(&message);
            self.error(span, message, hint)
        })
    }

    fn merged(
        &mut self,
        file: usize,
        stack: &mut Vec<(PathBuf, PathBuf)>,
        seen: &mut BTreeSet<PathBuf>,
    ) -> Result<RawManifest, ManifestError> {
        let mut own = self.parse_file(file)?;
        let includes = std::mem::take(&mut own.image.include);
        let mut merged = RawManifest::default();
        for include in includes {
            let (path, name) = self.include_path(file, include.get_ref());
            let text = std::fs::read_to_string(&path).map_err(|e| {
                self.error(
                    include.span(),
                    format!(
                        "cannot read the included manifest `{}` ({}): {e}",
                        include.get_ref(),
                        path.display()
                    ),
                    "an include is a path relative to the file that names it",
                )
            })?;
            let key = canonical(&path);
            if let Some(at) = stack.iter().position(|(p, _)| *p == key) {
                let chain: Vec<String> = stack[at..]
                    .iter()
                    .map(|(_, shown)| shown)
                    .chain([&path])
                    .map(|p| p.display().to_string())
                    .collect();
                return Err(self.error(
                    include.span(),
                    format!("include cycle: {}", chain.join(" includes ")),
                    "remove one of these includes: a base cannot include what includes it",
                ));
            }
            if !seen.insert(key.clone()) {
                continue;
            }
            let index = self.add(path.clone(), name, text);
            stack.push((key, path));
            let base = self.merged(index, stack, seen)?;
            stack.pop();
            merged = self.merge(merged, base)?;
        }
        self.merge(merged, own)
    }

    /// The included file's path (from the including file's directory) and its name in
    /// the lock (from the manifest's directory, normalised).
    fn include_path(&self, file: usize, written: &str) -> (PathBuf, String) {
        let including = &self.files[file];
        let dir = including.path.parent().unwrap_or(Path::new(""));
        let from_root = Path::new(&including.name)
            .parent()
            .unwrap_or(Path::new(""))
            .join(written);
        (dir.join(written), normalised(&from_root))
    }

    /// `over` (the including file, or a later include) merged over `base`.
    fn merge(
        &self,
        mut base: RawManifest,
        over: RawManifest,
    ) -> Result<RawManifest, ManifestError> {
        let RawManifest {
            image,
            source,
            package,
            generate,
            user,
            group,
            file,
            dir,
            symlink,
        } = over;
        merge_image(&mut base.image, image);
        self.merge_list(
            &mut base.source,
            source,
            |s| s.url.get_ref(),
            "[[source]] url",
        )?;
        let before: Vec<Spanned<String>> = base.package.keys().cloned().collect();
        for (name, p) in package {
            if let Some(first) = before.iter().find(|k| *k == &name) {
                if base.package[first] == p {
                    continue;
                }
                return Err(self.conflict(
                    first.span(),
                    name.span(),
                    &format!("[package.{}]", name.get_ref()),
                ));
            }
            base.package.insert(name, p);
        }
        for (key, value) in generate {
            base.generate.remove(&key);
            base.generate.insert(key, value);
        }
        self.merge_list(&mut base.user, user, |u| u.name.get_ref(), "[[user]]")?;
        self.merge_list(&mut base.group, group, |g| g.name.get_ref(), "[[group]]")?;
        self.merge_list(&mut base.file, file, |f| f.path.get_ref(), "[[file]]")?;
        self.merge_list(&mut base.dir, dir, |d| d.path.get_ref(), "[[dir]]")?;
        self.merge_list(
            &mut base.symlink,
            symlink,
            |l| l.path.get_ref(),
            "[[symlink]]",
        )?;
        Ok(base)
    }

    /// Declarations of `over` appended to `base`'s, each compared with those `base`
    /// had before (a file's own duplicates are `validate`'s to name).
    fn merge_list<T: PartialEq>(
        &self,
        base: &mut Vec<Spanned<T>>,
        over: Vec<Spanned<T>>,
        key: impl Fn(&T) -> &String,
        what: &str,
    ) -> Result<(), ManifestError> {
        let before = base.len();
        for item in over {
            let k = key(item.get_ref());
            if let Some(first) = base[..before].iter().find(|b| key(b.get_ref()) == k) {
                if first == &item {
                    continue;
                }
                return Err(self.conflict(first.span(), item.span(), &format!("{what} `{k}`")));
            }
            base.push(item);
        }
        Ok(())
    }

    /// `what`, declared at `second`, was declared differently at `first` (another file).
    fn conflict(&self, first: Range<usize>, second: Range<usize>, what: &str) -> ManifestError {
        let first = self.location(first);
        self.error(
            second,
            format!("{what} is declared here and differently in {first}: an included declaration cannot be changed"),
            CONFLICT_HINT,
        )
    }
}

/// Scalars: `over`'s when written; tables: key by key, `over`'s value winning.
fn merge_image(base: &mut RawImage, over: RawImage) {
    let RawImage {
        include: _,
        name,
        architectures,
        merged_usr,
        user,
        workdir,
        entrypoint,
        cmd,
        env,
        labels,
        annotations,
        copyright,
        compression,
    } = over;
    fn set<T>(base: &mut Option<T>, over: Option<T>) {
        if over.is_some() {
            *base = over;
        }
    }
    set(&mut base.name, name);
    set(&mut base.architectures, architectures);
    set(&mut base.merged_usr, merged_usr);
    set(&mut base.user, user);
    set(&mut base.workdir, workdir);
    set(&mut base.entrypoint, entrypoint);
    set(&mut base.cmd, cmd);
    set(&mut base.copyright, copyright);
    set(&mut base.compression, compression);
    for (k, v) in env {
        // Remove first: an insert keeps the old key, and its span must be the winner's.
        base.env.remove(&k);
        base.env.insert(k, v);
    }
    base.labels.extend(labels);
    base.annotations.extend(annotations);
}

/// The path used to notice a file reached twice or a cycle: canonical when it exists.
fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// `a/./b/../c` → `a/c`, `/`-separated; leading `..` are kept.
fn normalised(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::RootDir => parts.push(String::new()),
            Component::ParentDir => {
                if parts.last().is_some_and(|p| p != "..") {
                    parts.pop();
                } else {
                    parts.push("..".into());
                }
            }
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::manifest::{Manifest, ManifestError};

    const BASE: &str = r#"[image]
architectures = ["amd64"]
user = "nonroot"
env = { SSL_CERT_FILE = "/etc/ssl/certs/ca-certificates.crt", TZ = "UTC" }
labels = { "a" = "base" }

[[source]]
url = "http://archive.ubuntu.com/ubuntu"
suites = ["noble"]
keyring = "keys/archive.gpg"

[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]

[generate]
passwd = true
ca-bundle = true

[[user]]
name = "nonroot"
uid = 65532
gid = 65532

[[dir]]
path = "/tmp"
mode = "1777"
"#;

    /// A directory holding `base/base.toml` (with its keyring) and the given files.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("base/keys")).unwrap();
        std::fs::write(dir.path().join("base/keys/archive.gpg"), b"k").unwrap();
        std::fs::write(dir.path().join("base/base.toml"), BASE).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn load(dir: &Path, name: &str) -> Result<Manifest, ManifestError> {
        Manifest::load(&dir.join(name))
    }

    #[test]
    fn an_image_takes_its_base_and_wins_on_scalar_keys() {
        let dir = tree(&[(
            "app.toml",
            "[image]\ninclude = [\"base/base.toml\"]\nname = \"app\"\nenv = { TZ = \"Europe/Paris\" }\nlabels = { \"b\" = \"app\" }\n\n[package.\"libstdc++6\"]\npaths = [\"/usr/lib/*-linux-gnu/libstdc++.so.6\"]\n\n[generate]\nca-bundle = false\n",
        )]);
        let m = load(dir.path(), "app.toml").unwrap();
        assert_eq!(m.image.name, "app");
        assert_eq!(m.image.user.as_deref(), Some("nonroot"));
        assert_eq!(m.image.env["TZ"], "Europe/Paris");
        assert_eq!(m.image.env.len(), 2);
        assert_eq!(m.image.labels.len(), 2);
        let names: Vec<_> = m.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libc6", "libstdc++6"]);
        assert!(m.generate.passwd && !m.generate.ca_bundle && m.generate.dpkg_status);
        assert_eq!(m.resolved_user().as_deref(), Some("65532:65532"));
        // Host paths are relative to the file they are written in, and so are locations.
        assert_eq!(
            m.sources[0].keyring,
            dir.path().join("base/keys/archive.gpg")
        );
        let libc = &m.packages[0].paths[0].location;
        assert_eq!(libc.file, dir.path().join("base/base.toml"));
        assert_eq!((libc.line, libc.column), (13, 10));
        assert_eq!(m.includes.len(), 1);
        assert_eq!(m.includes[0].name, "base/base.toml");
        assert_eq!(m.includes[0].text, BASE);
    }

    #[test]
    fn a_conflicting_declaration_names_both_places() {
        let dir = tree(&[(
            "app.toml",
            "[image]\ninclude = [\"base/base.toml\"]\nname = \"app\"\n\n[package.libc6]\npaths = [\"/usr/lib/*-linux-gnu/libm.so.6\"]\n",
        )]);
        let e = load(dir.path(), "app.toml").unwrap_err();
        let base = dir.path().join("base/base.toml");
        assert_eq!(
            (e.file.clone(), e.line, e.column),
            (dir.path().join("app.toml"), 5, 10),
            "{e}"
        );
        assert!(
            e.message.contains(&format!("{}:12:10", base.display())),
            "{e}"
        );
        let dir = tree(&[(
            "app.toml",
            "[image]\ninclude = [\"base/base.toml\"]\nname = \"app\"\n\n[[user]]\nname = \"nonroot\"\nuid = 1000\ngid = 1000\n",
        )]);
        let e = load(dir.path(), "app.toml").unwrap_err();
        assert_eq!((e.line, e.column), (5, 1), "{e}");
        assert!(e.message.contains("[[user]] `nonroot`"), "{e}");
        assert!(e.message.contains("base.toml:19:1"), "{e}");
        // The same declaration in both files is kept once.
        let dir = tree(&[(
            "app.toml",
            "[image]\ninclude = [\"base/base.toml\"]\nname = \"app\"\n\n[[dir]]\npath = \"/tmp\"\nmode = \"1777\"\n",
        )]);
        assert_eq!(load(dir.path(), "app.toml").unwrap().dirs.len(), 1);
    }

    #[test]
    fn cycles_and_missing_files_are_errors_at_the_include() {
        let dir = tree(&[
            ("a.toml", "[image]\nname = \"a\"\ninclude = [\"b.toml\"]\n"),
            (
                "b.toml",
                "# b\n[image]\ninclude = [\"base/base.toml\", \"a.toml\"]\n",
            ),
        ]);
        let e = load(dir.path(), "a.toml").unwrap_err();
        assert_eq!(e.file, dir.path().join("b.toml"), "{e}");
        assert_eq!((e.line, e.column), (3, 30), "{e}");
        assert!(e.message.starts_with("include cycle: "), "{e}");
        assert!(e.message.contains("a.toml includes"), "{e}");
        let dir = tree(&[(
            "a.toml",
            "[image]\nname = \"a\"\ninclude = [\"nope.toml\"]\n",
        )]);
        let e = load(dir.path(), "a.toml").unwrap_err();
        assert_eq!((e.line, e.column), (3, 12), "{e}");
        assert!(
            e.message
                .contains("cannot read the included manifest `nope.toml`"),
            "{e}"
        );
    }

    #[test]
    fn errors_inside_a_base_point_into_it() {
        let dir = tree(&[
            ("bad.toml", "[image]\nworkdri = \"/\"\n"),
            (
                "a.toml",
                "[image]\nname = \"a\"\ninclude = [\"base/base.toml\", \"bad.toml\"]\n",
            ),
        ]);
        let e = load(dir.path(), "a.toml").unwrap_err();
        assert_eq!(e.file, dir.path().join("bad.toml"), "{e}");
        assert_eq!((e.line, e.column), (2, 1), "{e}");
        // A base reached twice is merged once.
        let dir = tree(&[
            ("mid.toml", "[image]\ninclude = [\"base/base.toml\"]\n"),
            (
                "a.toml",
                "[image]\nname = \"a\"\ninclude = [\"base/base.toml\", \"mid.toml\"]\n",
            ),
        ]);
        let m = load(dir.path(), "a.toml").unwrap();
        assert_eq!(m.includes.len(), 2);
        // Without a name anywhere.
        let dir = tree(&[("a.toml", "[image]\ninclude = [\"base/base.toml\"]\n")]);
        let e = load(dir.path(), "a.toml").unwrap_err();
        assert!(e.message.contains("names no image"), "{e}");
    }
}
