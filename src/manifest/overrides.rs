//! What the command line changes in a loaded manifest, for one run, without touching
//! the file: `--keyring URL=FILE` replaces the keyring of the sources whose `url` is URL,
//! and `--exclude-package NAME` leaves a declared package out of the build.
//!
//! The manifest's text (and so the SHA-256 the lock records) stays as read; the lock
//! records the packages left out itself (`crate::lock`). Nothing here touches the
//! network; the file system only to check that a keyring given exists.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::Manifest;

impl Manifest {
    /// `--keyring URL=FILE`, in the order given: every `[[source]]` whose `url` as written
    /// (a trailing `/` ignored, before `snapshot` and `--mirror`) is URL reads FILE as its
    /// keyring, for all its URLs (`arch-url` included). A URL no source has, or a FILE
    /// that is not a file, is a usage error.
    pub fn override_keyrings(&mut self, keyrings: &[(String, PathBuf)]) -> Result<(), String> {
        for (url, file) in keyrings {
            let url = url.trim_end_matches('/');
            if !file.is_file() {
                return Err(format!(
                    "--keyring {url}={}: no such file; give the path of a binary .gpg or armored .asc keyring",
                    file.display()
                ));
            }
            let mut matched = false;
            for source in self.sources.iter_mut().filter(|s| s.written_url == url) {
                source.keyring = file.clone();
                matched = true;
            }
            if !matched {
                let urls: BTreeSet<&str> = self
                    .sources
                    .iter()
                    .map(|s| s.written_url.as_str())
                    .collect();
                return Err(format!(
                    "--keyring {url}=…: {} has no [[source]] with url = \"{url}\" (its sources: {}); write the URL as the manifest does, before --mirror",
                    self.path.display(),
                    urls.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        Ok(())
    }

    /// `--exclude-package NAME`: drop the declared packages `names` for this build. A name
    /// the manifest does not declare is a usage error.
    pub fn exclude_packages(&mut self, names: &BTreeSet<String>) -> Result<(), String> {
        for name in names {
            if !self.packages.iter().any(|p| &p.name == name) {
                return Err(format!(
                    "--exclude-package {name}: {} declares no [package.{name}]; name a declared package",
                    self.path.display()
                ));
            }
        }
        self.packages.retain(|p| !names.contains(&p.name));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{parse, GOOD};
    use super::*;

    #[test]
    fn a_keyring_override_names_the_source_by_its_written_url() {
        let mut m = parse(GOOD).unwrap();
        let other = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock");
        // Written with a trailing slash in the manifest, without here (and the reverse).
        m.override_keyrings(&[("http://archive.ubuntu.com/ubuntu".into(), other.clone())])
            .unwrap();
        assert_eq!(m.sources[0].keyring, other);
        let mut m = parse(GOOD).unwrap();
        m.override_keyrings(&[("http://archive.ubuntu.com/ubuntu/".into(), other.clone())])
            .unwrap();
        assert_eq!(m.sources[0].keyring, other);

        let e = parse(GOOD)
            .unwrap()
            .override_keyrings(&[("http://ports.ubuntu.com/ubuntu-ports".into(), other.clone())])
            .unwrap_err();
        assert!(
            e.ends_with("has no [[source]] with url = \"http://ports.ubuntu.com/ubuntu-ports\" (its sources: http://archive.ubuntu.com/ubuntu); write the URL as the manifest does, before --mirror"),
            "{e}"
        );
        let e = parse(GOOD)
            .unwrap()
            .override_keyrings(&[(
                "http://archive.ubuntu.com/ubuntu".into(),
                PathBuf::from("/nonexistent/k.gpg"),
            )])
            .unwrap_err();
        assert_eq!(e, "--keyring http://archive.ubuntu.com/ubuntu=/nonexistent/k.gpg: no such file; give the path of a binary .gpg or armored .asc keyring");
    }

    #[test]
    fn a_snapshot_source_is_named_by_its_url_as_written() {
        let text = GOOD.replace(
            "suites = [\"noble\", \"noble-updates\"]",
            "suites = [\"noble\", \"noble-updates\"]\nsnapshot = \"20251115T000000Z\"",
        );
        let mut m = parse(&text).unwrap();
        assert_ne!(m.sources[0].url, m.sources[0].written_url);
        let other = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock");
        m.override_keyrings(&[("http://archive.ubuntu.com/ubuntu".into(), other.clone())])
            .unwrap();
        assert_eq!(m.sources[0].keyring, other);
    }

    #[test]
    fn excluding_a_package_drops_it_and_an_undeclared_name_is_refused() {
        let mut m = parse(GOOD).unwrap();
        let names: BTreeSet<String> = ["ca-certificates".to_string()].into();
        m.exclude_packages(&names).unwrap();
        let left: Vec<&str> = m.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(left, ["libc6", "libstdc++6"]);
        let names: BTreeSet<String> = ["tzdata".to_string()].into();
        let e = parse(GOOD).unwrap().exclude_packages(&names).unwrap_err();
        assert!(
            e.starts_with("--exclude-package tzdata: ")
                && e.ends_with("declares no [package.tzdata]; name a declared package"),
            "{e}"
        );
    }
}
