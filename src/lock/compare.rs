//! Comparing a recorded lock with a fresh one, for `--locked` and `compose verify`:
//! [`Lock::diff_inputs`] and [`Lock::diff_outputs`] list, one human line each, what
//! differs, with the recorded line's number ([`Change`]).
//!
//! Pure: two locks in, a list of changes out. Nothing here reads or writes a file, and
//! nothing decides what a difference means for the build (the caller does).

use crate::arch::Arch;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{ArchLock, Fact, IndexLock, Lock, Outputs, PackageLock, ReleaseLock};

/// One difference between a recorded lock and a fresh one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The recorded value's line in the recorded lock; `None` when it has none (the
    /// fact is new).
    pub line: Option<usize>,
    /// What differs, one line, e.g. `amd64: index URL changed (size 1 → 2)`.
    pub text: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.text),
            None => f.write_str(&self.text),
        }
    }
}

/// The changes found so far, in order.
struct Changes(Vec<Change>);

impl Changes {
    fn push(&mut self, line: Option<usize>, text: String) {
        self.0.push(Change { line, text });
    }
}

impl Lock {
    /// What differs in the inputs between `self`, the recorded lock, and `other`, a
    /// fresh resolution: the manifest, the tool, the epoch, the packages left out, the
    /// architectures, each release, `Packages` index and package. Each line names the
    /// recorded line.
    pub fn diff_inputs(&self, other: &Lock) -> Vec<String> {
        self.input_changes(other)
            .iter()
            .map(Change::to_string)
            .collect()
    }

    /// What differs in the outputs between `self`, the recorded lock, and `other`: the
    /// tag, the index and, per architecture recorded in both, the layer, config and
    /// manifest digests. Nothing is compared where either side has no outputs.
    pub fn diff_outputs(&self, other: &Lock) -> Vec<String> {
        self.output_changes(other)
            .iter()
            .map(Change::to_string)
            .collect()
    }

    /// [`Lock::diff_inputs`] with the line numbers apart (to print `path:line: …`).
    pub fn input_changes(&self, other: &Lock) -> Vec<Change> {
        let mut out = Changes(Vec::new());
        if self.manifest != other.manifest {
            out.push(
                self.line_of(&Fact::Manifest),
                format!(
                    "manifest changed ({} → {})",
                    self.manifest.short(),
                    other.manifest.short()
                ),
            );
        }
        let names: BTreeSet<&String> = self.includes.keys().chain(other.includes.keys()).collect();
        for name in names {
            let fact = Fact::Include { name: name.clone() };
            match (self.includes.get(name), other.includes.get(name)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => out.push(
                    self.line_of(&fact),
                    format!("included {name} changed ({} → {})", a.short(), b.short()),
                ),
                (Some(_), None) => {
                    out.push(self.line_of(&fact), format!("{name} is no longer included"))
                }
                _ => out.push(None, format!("{name} is now included")),
            }
        }
        if self.tool != other.tool {
            out.push(
                self.line_of(&Fact::Tool),
                format!("tool changed ({} → {})", self.tool, other.tool),
            );
        }
        if self.epoch != other.epoch {
            out.push(
                self.line_of(&Fact::Epoch),
                format!("epoch changed ({} → {})", self.epoch, other.epoch),
            );
        }
        for name in self.excluded.symmetric_difference(&other.excluded) {
            let fact = Fact::ExcludedPackage { name: name.clone() };
            if self.excluded.contains(name) {
                out.push(
                    self.line_of(&fact),
                    format!("package {name} was left out (--exclude-package), now it is not"),
                );
            } else {
                out.push(
                    None,
                    format!("package {name} is left out (--exclude-package), the lock has it"),
                );
            }
        }
        let archs: BTreeSet<&Arch> = self.archs.keys().chain(other.archs.keys()).collect();
        for arch in archs {
            match (self.archs.get(arch), other.archs.get(arch)) {
                (Some(a), Some(b)) => {
                    self.release_changes(*arch, a, b, &mut out);
                    self.index_changes(*arch, a, b, &mut out);
                    self.package_changes(*arch, a, b, &mut out);
                }
                (Some(_), None) => out.push(
                    self.arch_line(*arch),
                    format!("{arch}: in the lock, not in this build"),
                ),
                (None, _) => out.push(None, format!("{arch}: not in the lock")),
            }
        }
        out.0
    }

    fn release_changes(&self, arch: Arch, a: &ArchLock, b: &ArchLock, out: &mut Changes) {
        for (url, old, new) in join(&a.releases, &b.releases) {
            let line = self.line_of(&Fact::Release {
                arch,
                url: url.clone(),
            });
            match (old, new) {
                (Some(_), None) => out.push(line, format!("{arch}: release {url} no longer used")),
                (None, Some(_)) => out.push(None, format!("{arch}: release {url} not in the lock")),
                (Some(o), Some(n)) if o != n => out.push(
                    line,
                    format!("{arch}: release {url} changed ({})", release_change(o, n)),
                ),
                _ => {}
            }
        }
    }

    fn index_changes(&self, arch: Arch, a: &ArchLock, b: &ArchLock, out: &mut Changes) {
        for (url, old, new) in join(&a.indexes, &b.indexes) {
            let line = self.line_of(&Fact::Packages {
                arch,
                url: url.clone(),
            });
            match (old, new) {
                (Some(_), None) => out.push(line, format!("{arch}: index {url} no longer used")),
                (None, Some(_)) => out.push(None, format!("{arch}: index {url} not in the lock")),
                (Some(o), Some(n)) if o != n => out.push(
                    line,
                    format!("{arch}: index {url} changed ({})", index_change(o, n)),
                ),
                _ => {}
            }
        }
    }

    fn package_changes(&self, arch: Arch, a: &ArchLock, b: &ArchLock, out: &mut Changes) {
        for (name, old, new) in join(&a.packages, &b.packages) {
            let line = self.line_of(&Fact::Package {
                arch,
                name: name.clone(),
            });
            match (old, new) {
                (Some(o), None) => out.push(line, format!("{arch}: {name} {} removed", o.version)),
                (None, Some(n)) => out.push(
                    None,
                    format!(
                        "{arch}: {name} {} ({}) added, not in the lock",
                        n.version, n.suite
                    ),
                ),
                (Some(o), Some(n)) if o != n => {
                    out.push(line, format!("{arch}: {}", package_change(name, o, n)))
                }
                _ => {}
            }
        }
    }

    /// [`Lock::diff_outputs`] with the line numbers apart.
    pub fn output_changes(&self, other: &Lock) -> Vec<Change> {
        let mut out = Changes(Vec::new());
        if self.tag != other.tag {
            out.push(
                self.line_of(&Fact::Tag),
                format!("tag changed ({} → {})", self.tag, other.tag),
            );
        }
        for (arch, a) in &self.archs {
            let (Some(o), Some(n)) = (
                &a.outputs,
                other.archs.get(arch).and_then(|b| b.outputs.as_ref()),
            ) else {
                continue;
            };
            self.arch_output_changes(*arch, o, n, &mut out);
        }
        if let (Some(o), Some(n)) = (self.layer_compressor(), other.layer_compressor()) {
            if o != n {
                out.push(
                    self.line_of(&Fact::Compression),
                    format!("layer compression differs ({o} → {n})"),
                );
            }
        }
        if let (Some(o), Some(n)) = (&self.index, &other.index) {
            if o != n {
                out.push(
                    self.line_of(&Fact::Index),
                    format!("index differs ({} → {})", o.short(), n.short()),
                );
            }
        }
        out.0
    }

    fn arch_output_changes(&self, arch: Arch, o: &Outputs, n: &Outputs, out: &mut Changes) {
        let fact = |f: fn(Arch) -> Fact| self.line_of(&f(arch));
        let mut layer = Vec::new();
        if o.layer_diff_id != n.layer_diff_id {
            layer.push(format!(
                "diff_id {} → {}",
                o.layer_diff_id.short(),
                n.layer_diff_id.short()
            ));
        }
        if o.layer_digest != n.layer_digest {
            layer.push(format!(
                "digest {} → {}",
                o.layer_digest.short(),
                n.layer_digest.short()
            ));
        }
        if o.layer_size != n.layer_size {
            layer.push(format!("size {} → {}", o.layer_size, n.layer_size));
        }
        if !layer.is_empty() {
            out.push(
                fact(|arch| Fact::Layer { arch }),
                format!("{arch}: layer differs ({})", layer.join(", ")),
            );
        }
        if o.config != n.config {
            out.push(
                fact(|arch| Fact::Config { arch }),
                format!(
                    "{arch}: config differs ({} → {})",
                    o.config.short(),
                    n.config.short()
                ),
            );
        }
        if o.manifest != n.manifest {
            out.push(
                fact(|arch| Fact::ImageManifest { arch }),
                format!(
                    "{arch}: manifest differs ({} → {})",
                    o.manifest.short(),
                    n.manifest.short()
                ),
            );
        }
    }
}

fn release_change(o: &ReleaseLock, n: &ReleaseLock) -> String {
    let mut what = Vec::new();
    if o.sha256 != n.sha256 {
        what.push(format!("{} → {}", o.sha256.short(), n.sha256.short()));
    }
    if o.date != n.date {
        let d = |d: &Option<String>| d.clone().unwrap_or_else(|| "no Date".into());
        what.push(format!("Date {} → {}", d(&o.date), d(&n.date)));
    }
    what.join(", ")
}

fn index_change(o: &IndexLock, n: &IndexLock) -> String {
    let mut what = Vec::new();
    if o.size != n.size {
        what.push(format!("size {} → {}", o.size, n.size));
    }
    if o.sha256 != n.sha256 {
        what.push(format!("{} → {}", o.sha256.short(), n.sha256.short()));
    }
    what.join(", ")
}

fn package_change(name: &str, o: &PackageLock, n: &PackageLock) -> String {
    let mut what = Vec::new();
    if o.arch != n.arch {
        what.push(format!("arch {} → {}", o.arch, n.arch));
    }
    if o.suite != n.suite {
        what.push(format!("suite {} → {}", o.suite, n.suite));
    }
    if o.version != n.version {
        let more = if what.is_empty() {
            String::new()
        } else {
            format!(" ({})", what.join(", "))
        };
        return format!("{name} {} → {}{more}", o.version, n.version);
    }
    if o.url != n.url {
        what.push(format!("url {} → {}", o.url, n.url));
    }
    if o.size != n.size {
        what.push(format!("size {} → {}", o.size, n.size));
    }
    if o.sha256 != n.sha256 {
        what.push(format!("{} → {}", o.sha256.short(), n.sha256.short()));
    }
    format!("{name} {} changed ({})", o.version, what.join(", "))
}

/// The keys of two maps in order, with each side's value.
fn join<'a, V>(
    a: &'a BTreeMap<String, V>,
    b: &'a BTreeMap<String, V>,
) -> Vec<(&'a String, Option<&'a V>, Option<&'a V>)> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().map(|k| (k, a.get(k), b.get(k))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::fixtures::{h, line_no, pkg, sample, UB};

    fn fresh() -> Lock {
        let mut new = sample();
        new.manifest = h('c');
        let amd64 = new.archs.get_mut(&Arch::AMD64).unwrap();
        let libc = amd64.packages.get_mut("libc6").unwrap();
        libc.version = "2.39-0ubuntu8.1".into();
        libc.suite = "noble-updates".into();
        libc.sha256 = h('c');
        amd64.packages.get_mut("tzdata").unwrap().sha256 = h('c');
        amd64.packages.insert(
            "zlib1g".into(),
            pkg("amd64", "zlib1g", "1:1.3", "noble", UB, 'c'),
        );
        let idx = amd64.indexes.values_mut().next().unwrap();
        idx.sha256 = h('c');
        idx.size += 1;
        amd64
            .releases
            .get_mut(&format!("{UB}/dists/noble/InRelease"))
            .unwrap()
            .date = Some("Fri, 26 Apr 2024 00:00:00 UTC".into());
        let arm64 = new.archs.get_mut(&Arch::ARM64).unwrap();
        arm64.packages.remove("tzdata");
        let out = arm64.outputs.as_mut().unwrap();
        out.layer_digest = h('c');
        out.layer_size = 4343;
        out.manifest = h('c');
        new.index = Some(h('c'));
        new.tag = "other".into();
        new
    }

    #[test]
    fn diff_inputs_lists_what_changed_with_the_recorded_lines() {
        let old = sample();
        assert!(old.diff_inputs(&old).is_empty());
        assert!(old.diff_outputs(&old).is_empty());
        let text = old.to_text();
        let l = |prefix: &str| line_no(&text, prefix);
        let c = "sha256:cccccccccccc…";
        let expected = vec![
            format!("line {}: manifest changed (sha256:000000000000… → {c})", l("manifest ")),
            format!(
                "line {}: amd64: release {UB}/dists/noble/InRelease changed (Date Thu, 25 Apr 2024 15:10:33 UTC → Fri, 26 Apr 2024 00:00:00 UTC)",
                l("amd64 release http://archive.ubuntu.com/ubuntu/dists/noble/")
            ),
            format!(
                "line {}: amd64: index {UB}/dists/noble/main/binary-amd64/Packages.xz changed (size 1394124 → 1394125, sha256:333333333333… → {c})",
                l("amd64 packages ")
            ),
            format!(
                "line {}: amd64: libc6 2.39-0ubuntu8 → 2.39-0ubuntu8.1 (suite noble → noble-updates)",
                l("amd64 package libc6 ")
            ),
            format!(
                "line {}: amd64: tzdata 2024a-2ubuntu1 changed (sha256:555555555555… → {c})",
                l("amd64 package tzdata ")
            ),
            "amd64: zlib1g 1:1.3 (noble) added, not in the lock".to_string(),
            format!("line {}: arm64: tzdata 2024a-2ubuntu1 removed", l("arm64 package tzdata ")),
        ];
        assert_eq!(old.diff_inputs(&fresh()), expected);

        let mut more = sample();
        more.tool = "compose 0.2.0".into();
        more.epoch = 1;
        more.archs.remove(&Arch::ARM64);
        more.archs
            .insert(Arch::parse("riscv64").unwrap(), ArchLock::default());
        assert_eq!(
            old.diff_inputs(&more),
            vec![
                format!(
                    "line {}: tool changed (compose 0.1.0 → compose 0.2.0)",
                    l("tool ")
                ),
                format!("line {}: epoch changed (0 → 1)", l("epoch ")),
                format!(
                    "line {}: arm64: in the lock, not in this build",
                    l("arm64 ")
                ),
                "riscv64: not in the lock".to_string(),
            ]
        );
    }

    #[test]
    fn diff_outputs_lists_the_digests_that_differ() {
        let old = sample();
        let text = old.to_text();
        let l = |prefix: &str| line_no(&text, prefix);
        let c = "sha256:cccccccccccc…";
        assert_eq!(
            old.diff_outputs(&fresh()),
            vec![
                format!("line {}: tag changed (noble-tiny → other)", l("tag ")),
                format!(
                    "line {}: arm64: layer differs (digest sha256:dddddddddddd… → {c}, size 4242 → 4343)",
                    l("arm64 layer ")
                ),
                format!(
                    "line {}: arm64: manifest differs (sha256:ffffffffffff… → {c})",
                    l("arm64 manifest ")
                ),
                format!("line {}: index differs (sha256:bbbbbbbbbbbb… → {c})", l("index ")),
            ]
        );
        let changes = old.output_changes(&fresh());
        assert_eq!(changes[1].line, Some(l("arm64 layer ")));

        // Nothing to compare where a side records no outputs.
        let mut resolved_only = sample();
        resolved_only.index = None;
        for a in resolved_only.archs.values_mut() {
            a.outputs = None;
        }
        assert!(old.diff_outputs(&resolved_only).is_empty());
        assert!(resolved_only.diff_outputs(&old).is_empty());
    }
}
