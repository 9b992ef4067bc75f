//! Real `.deb` files built in memory, laid out the way `dpkg-deb --build` lays them out:
//! an ar archive of `debian-binary` ("2.0\n"), `control.tar.<c>` and `data.tar.<c>`;
//! GNU tar members whose names carry the `./` prefix, every parent directory listed,
//! root:root ownership and one fixed mtime. The bytes are a pure function of the spec.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use md5::{Digest, Md5};

/// mtime of every tar entry and ar member (2024-04-20T00:00:00Z).
pub const DEB_MTIME: u64 = 1_713_571_200;

/// Compression of the `control.tar` and `data.tar` members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// `.zst`: Ubuntu since 21.10
    Zstd,
    /// `.xz`: Debian
    Xz,
    /// `.gz`: old packages
    Gz,
}

impl Member {
    /// The member name suffix: `zst`, `xz` or `gz`.
    pub fn ext(self) -> &'static str {
        match self {
            Member::Zstd => "zst",
            Member::Xz => "xz",
            Member::Gz => "gz",
        }
    }

    /// Compresses `data` deterministically.
    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        compress(self, data)
    }
}

/// What goes into a test package. Paths are absolute image paths (`/usr/lib/...`).
#[derive(Clone, Debug)]
pub struct DebSpec {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub member: Member,
    pub depends: Option<String>,
    /// (absolute path, contents, mode e.g. 0o644)
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// (absolute path, link target as stored, e.g. "libfoo.so.1.2" or "/usr/bin/x")
    pub symlinks: Vec<(String, String)>,
    /// (absolute path, absolute path of a file in `files`)
    pub hardlinks: Vec<(String, String)>,
    /// extra directories (mode 0755); parents of every entry are added anyway
    pub dirs: Vec<String>,
    /// further control fields, written after Depends (e.g. ("Multi-Arch", "same"))
    pub control_fields: Vec<(String, String)>,
    /// further members of control.tar (e.g. ("postinst", script, 0o755))
    pub control_members: Vec<(String, Vec<u8>, u32)>,
}

impl DebSpec {
    pub fn new(name: &str, version: &str, arch: &str, member: Member) -> Self {
        DebSpec {
            name: name.to_string(),
            version: version.to_string(),
            arch: arch.to_string(),
            member,
            depends: None,
            files: Vec::new(),
            symlinks: Vec::new(),
            hardlinks: Vec::new(),
            dirs: Vec::new(),
            control_fields: Vec::new(),
            control_members: Vec::new(),
        }
    }

    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push((path.to_string(), bytes.into(), mode));
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.symlinks.push((path.to_string(), target.to_string()));
        self
    }

    /// `path` becomes a hard link to the file `target` (an absolute path in `files`).
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        self.hardlinks.push((path.to_string(), target.to_string()));
        self
    }

    pub fn dir(mut self, path: &str) -> Self {
        self.dirs.push(path.to_string());
        self
    }

    pub fn depends(mut self, depends: &str) -> Self {
        self.depends = Some(depends.to_string());
        self
    }

    pub fn control_field(mut self, name: &str, value: &str) -> Self {
        self.control_fields
            .push((name.to_string(), value.to_string()));
        self
    }

    pub fn control_member(mut self, name: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.control_members
            .push((name.to_string(), bytes.into(), mode));
        self
    }

    /// Adds `/usr/share/doc/<name>/copyright` (every real package has one).
    pub fn copyright(self) -> Self {
        let path = format!("/usr/share/doc/{}/copyright", self.name);
        let text = format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: {}\n\nFiles: *\nCopyright: 2024 compose test fixture\nLicense: Apache-2.0\n",
            self.name
        );
        self.file(&path, text.into_bytes(), 0o644)
    }

    /// The version as it appears in file names: without the epoch.
    pub fn file_version(&self) -> &str {
        match self.version.split_once(':') {
            Some((_, rest)) => rest,
            None => &self.version,
        }
    }

    /// `<name>_<version without epoch>_<arch>.deb`
    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.file_version(), self.arch)
    }

    /// The `control` file exactly as stored in control.tar.
    pub fn control_text(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("Package: {}\n", self.name));
        s.push_str(&format!("Version: {}\n", self.version));
        s.push_str(&format!("Architecture: {}\n", self.arch));
        s.push_str("Maintainer: Compose Test Fixture <fixture@compose.invalid>\n");
        s.push_str(&format!("Installed-Size: {}\n", self.installed_size()));
        if let Some(d) = &self.depends {
            s.push_str(&format!("Depends: {d}\n"));
        }
        for (k, v) in &self.control_fields {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push_str("Section: libs\nPriority: optional\n");
        s.push_str(&format!(
            "Description: {} (compose test fixture)\n Generated by the compose test suite.\n .\n Not a real package.\n",
            self.name
        ));
        s
    }

    /// The `md5sums` control member: "<md5>  <path without leading />\n" per regular file,
    /// sorted by path (hard links included, as dpkg lists them).
    pub fn md5sums_text(&self) -> String {
        let mut lines = BTreeMap::new();
        for (path, data, _) in &self.files {
            lines.insert(rel(path), hex::encode(Md5::digest(data)));
        }
        for (path, target) in &self.hardlinks {
            let data = self.file_data(target);
            lines.insert(rel(path), hex::encode(Md5::digest(data)));
        }
        lines.iter().map(|(p, h)| format!("{h}  {p}\n")).collect()
    }

    /// dpkg's estimate: 1 KiB blocks per regular file (rounded up) + 1 per other entry.
    pub fn installed_size(&self) -> u64 {
        let entries = entries(self);
        let mut kib = 0;
        for e in entries.values() {
            kib += match e {
                Entry::File { data, .. } => (data.len() as u64).div_ceil(1024),
                Entry::Hardlink(..) => 0,
                Entry::Dir(_) | Entry::Symlink(_) => 1,
            };
        }
        kib
    }

    fn file_data(&self, abs: &str) -> &[u8] {
        self.files
            .iter()
            .find(|(p, _, _)| norm(p) == norm(abs))
            .map(|(_, d, _)| d.as_slice())
            .unwrap_or_else(|| panic!("{}: hard link target {abs} is not in files", self.name))
    }
}

/// "/usr/lib/x" -> "usr/lib/x" (panics on relative paths or `..`).
fn norm(abs: &str) -> String {
    assert!(
        abs.starts_with('/'),
        "package paths must be absolute: {abs:?}"
    );
    let parts: Vec<&str> = abs
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    assert!(!parts.contains(&".."), "`..` in package path {abs:?}");
    parts.join("/")
}

fn rel(abs: &str) -> String {
    norm(abs)
}

#[derive(Clone, Debug)]
enum Entry {
    Dir(u32),
    File {
        data: Vec<u8>,
        mode: u32,
    },
    Symlink(String),
    /// link name as stored ("./usr/bin/a") and the mode of the linked file
    Hardlink(String, u32),
}

/// tar member name ("./", "./usr/", "./usr/bin/a") -> entry, in the order they are written.
fn entries(spec: &DebSpec) -> BTreeMap<String, Entry> {
    let mut map: BTreeMap<String, Entry> = BTreeMap::new();
    let add_parents = |map: &mut BTreeMap<String, Entry>, rel: &str| {
        let mut acc = String::from("./");
        map.entry(acc.clone()).or_insert(Entry::Dir(0o755));
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            acc.push_str(c);
            acc.push('/');
            map.entry(acc.clone()).or_insert(Entry::Dir(0o755));
        }
    };
    let mut seen = BTreeSet::new();
    let mut claim = |r: &str| {
        assert!(
            seen.insert(r.to_string()),
            "{}: path /{r} given twice",
            spec.name
        );
    };
    for d in &spec.dirs {
        let r = norm(d);
        if r.is_empty() {
            continue;
        }
        add_parents(&mut map, &r);
        map.insert(format!("./{r}/"), Entry::Dir(0o755));
    }
    for (p, data, mode) in &spec.files {
        let r = norm(p);
        claim(&r);
        add_parents(&mut map, &r);
        map.insert(
            format!("./{r}"),
            Entry::File {
                data: data.clone(),
                mode: *mode,
            },
        );
    }
    for (p, target) in &spec.symlinks {
        let r = norm(p);
        claim(&r);
        add_parents(&mut map, &r);
        map.insert(format!("./{r}"), Entry::Symlink(target.clone()));
    }
    // Hard-link groups: as GNU tar (sorted) writes them, the first name of a group in
    // archive order carries the data and every other name links to it.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (p, target) in &spec.hardlinks {
        let r = norm(p);
        claim(&r);
        add_parents(&mut map, &r);
        spec.file_data(target);
        groups
            .entry(format!("./{}", norm(target)))
            .or_default()
            .push(format!("./{r}"));
    }
    for (target, links) in groups {
        let Some(Entry::File { data, mode }) = map.get(&target).cloned() else {
            panic!("{}: hard link target {target} is not a file", spec.name);
        };
        let mut names: Vec<String> = links;
        names.push(target);
        names.sort();
        let first = names[0].clone();
        map.insert(first.clone(), Entry::File { data, mode });
        for n in &names[1..] {
            map.insert(n.clone(), Entry::Hardlink(first.clone(), mode));
        }
    }
    map
}

fn gnu_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_username("root").unwrap();
    h.set_groupname("root").unwrap();
    h.set_mtime(DEB_MTIME);
    h.set_size(size);
    h
}

/// Appends one entry, names stored verbatim (the `tar` crate would drop "./").
/// Names or link targets longer than 100 bytes get GNU `././@LongLink` records.
fn append_raw(
    b: &mut tar::Builder<Vec<u8>>,
    mut h: tar::Header,
    name: &str,
    link: Option<&str>,
    data: &[u8],
) {
    for (value, kind) in [(Some(name), b'L'), (link, b'K')] {
        let Some(value) = value else { continue };
        if value.len() > 100 {
            let mut body = value.as_bytes().to_vec();
            body.push(0);
            let mut lh = gnu_header(tar::EntryType::new(kind), 0o644, body.len() as u64);
            lh.set_mtime(0);
            set_raw(&mut lh.as_old_mut().name, b"././@LongLink");
            lh.set_cksum();
            b.append(&lh, body.as_slice()).unwrap();
        }
    }
    let n = name.as_bytes();
    set_raw(&mut h.as_old_mut().name, &n[..n.len().min(100)]);
    if let Some(l) = link {
        let l = l.as_bytes();
        set_raw(&mut h.as_old_mut().linkname, &l[..l.len().min(100)]);
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn set_raw(slot: &mut [u8; 100], bytes: &[u8]) {
    slot.fill(0);
    slot[..bytes.len()].copy_from_slice(bytes);
}

/// The uncompressed data.tar of a spec.
pub fn data_tar(spec: &DebSpec) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, e) in entries(spec) {
        match e {
            Entry::Dir(mode) => {
                let h = gnu_header(tar::EntryType::Directory, mode, 0);
                append_raw(&mut b, h, &name, None, &[]);
            }
            Entry::File { data, mode } => {
                let h = gnu_header(tar::EntryType::Regular, mode, data.len() as u64);
                append_raw(&mut b, h, &name, None, &data);
            }
            Entry::Symlink(target) => {
                let h = gnu_header(tar::EntryType::Symlink, 0o777, 0);
                append_raw(&mut b, h, &name, Some(&target), &[]);
            }
            Entry::Hardlink(target, mode) => {
                let h = gnu_header(tar::EntryType::Link, mode, 0);
                append_raw(&mut b, h, &name, Some(&target), &[]);
            }
        }
    }
    b.into_inner().unwrap()
}

/// The uncompressed control.tar of a spec.
pub fn control_tar(spec: &DebSpec) -> Vec<u8> {
    let mut members: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
    members.insert("control".into(), (spec.control_text().into_bytes(), 0o644));
    let md5sums = spec.md5sums_text();
    if !md5sums.is_empty() {
        members.insert("md5sums".into(), (md5sums.into_bytes(), 0o644));
    }
    for (n, d, m) in &spec.control_members {
        members.insert(n.clone(), (d.clone(), *m));
    }
    let mut b = tar::Builder::new(Vec::new());
    append_raw(
        &mut b,
        gnu_header(tar::EntryType::Directory, 0o755, 0),
        "./",
        None,
        &[],
    );
    for (n, (d, m)) in members {
        let h = gnu_header(tar::EntryType::Regular, m, d.len() as u64);
        append_raw(&mut b, h, &format!("./{n}"), None, &d);
    }
    b.into_inner().unwrap()
}

fn compress(member: Member, data: &[u8]) -> Vec<u8> {
    match member {
        Member::Zstd => zstd::bulk::compress(data, 3).expect("zstd"),
        Member::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Member::Gz => {
            let mut e = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::new(9));
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
    }
}

/// Builds the `.deb`.
pub fn build_deb(spec: &DebSpec) -> Vec<u8> {
    build_deb_with_data(spec, &data_tar(spec))
}

/// A `.deb` with the spec's control archive and `data` (an uncompressed tar, e.g. a
/// hostile one made by hand) as its data archive, compressed as the spec says.
pub fn build_deb_with_data(spec: &DebSpec, data: &[u8]) -> Vec<u8> {
    let ext = spec.member.ext();
    let control = compress(spec.member, &control_tar(spec));
    let data = compress(spec.member, data);
    let mut ar = ar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("debian-binary".to_string(), b"2.0\n".to_vec()),
        (format!("control.tar.{ext}"), control),
        (format!("data.tar.{ext}"), data),
    ] {
        let mut h = ar::Header::new(name.into_bytes(), bytes.len() as u64);
        h.set_mode(0o100644);
        h.set_mtime(DEB_MTIME);
        ar.append(&h, bytes.as_slice()).unwrap();
    }
    ar.into_inner().unwrap()
}
