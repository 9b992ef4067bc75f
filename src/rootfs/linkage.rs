//! Linkage check (docs/architecture.md, "The linkage check"): every dynamically linked ELF file of the image must find
//! its interpreter (`PT_INTERP`) and each library it names (`DT_NEEDED`) inside the
//! image, the way the dynamic loader would: `DT_RUNPATH` (or `DT_RPATH` without one,
//! `$ORIGIN` expanded), then the multiarch directories of the file's machine, then
//! `/lib`, `/usr/lib` (and `/lib64`, `/usr/lib64` for 64-bit files), through the image's
//! own symbolic links. A library of another class or machine does not count: the loader
//! skips it.
//!
//! A miss names the file, the missing name, and, when one of the manifest's declared
//! packages ships that name ([`Shipped`]), the pattern to add to that package.
//!
//! Not modelled: `LD_LIBRARY_PATH` of the image config, `/etc/ld.so.cache` and
//! `ld.so.conf` (distroless images have neither), the `DT_RPATH` of an executable applying
//! to the libraries it loads (each file is checked on its own), `$LIB`/`$PLATFORM`.
//!
//! It only reads: the tree and the extra binaries' bytes it is given. It never runs or
//! loads a file, never reads the host, and never changes the tree.

use crate::arch::Arch;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Read;

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, ReadCache, ReadRef};

use crate::deb::{Entry, EntryKind};
use crate::rootfs::merged_usr::merged_usr_path;
use crate::rootfs::tree::{Node, NodeKind, Tree};
use crate::text::shown;

/// Symbolic links followed while resolving one path before giving up (as Linux's ELOOP).
const MAX_HOPS: usize = 40;

/// Names the kernel maps into every process: never files.
const VDSO: &[&str] = &[
    "linux-vdso.so.1",
    "linux-gate.so.1",
    "linux-vdso32.so.1",
    "linux-vdso64.so.1",
];

/// The files and symbolic links of every declared package, selected or not, whose base
/// names a dynamic loader looks for (`*.so`, `*.so.*`: sonames and the loader itself),
/// by base name: what a miss can suggest adding. Other entries are not kept, so the
/// record stays small whatever a package holds; at most [`MAX_SHIPPED_PER_PACKAGE`]
/// paths of one package are kept.
#[derive(Debug, Default, Clone)]
pub struct Shipped {
    merged_usr: bool,
    by_name: HashMap<String, Vec<ShippedFile>>,
    /// (package, path) of everything kept: an entry a package repeats is kept once.
    seen: HashSet<(String, String)>,
    /// Paths kept, per package.
    per_package: HashMap<String, usize>,
}

/// Paths of one package [`Shipped`] keeps: far more shared objects than any real
/// package ships; beyond, a hostile package would only make suggestions incomplete.
pub const MAX_SHIPPED_PER_PACKAGE: usize = 1 << 16;

/// Is `base` a name the dynamic loader could be asked for (`DT_NEEDED`, `PT_INTERP`)?
fn loadable_name(base: &str) -> bool {
    base.ends_with(".so") || base.contains(".so.")
}

/// One path a package ships (canonical, merged-usr form when the image is merged-usr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedFile {
    /// The package that ships it.
    pub package: String,
    /// Absolute path (canonical).
    pub path: String,
    /// For a symbolic link: its target as an absolute canonical path.
    pub link_target: Option<String>,
}

impl Shipped {
    /// An empty record; `merged_usr`: canonicalise paths to merged-usr form.
    pub fn new(merged_usr: bool) -> Shipped {
        Shipped {
            merged_usr,
            ..Shipped::default()
        }
    }

    fn canonical(&self, path: &str) -> String {
        if self.merged_usr {
            merged_usr_path(path).unwrap_or_else(|| path.to_string())
        } else {
            path.to_string()
        }
    }

    /// Record an entry of `package`'s data.tar: files, hard links and symbolic links
    /// with a [loadable name](Shipped); directories and the rest are ignored.
    pub fn record(&mut self, package: &str, entry: &Entry) {
        if !loadable_name(basename(&entry.path)) {
            return;
        }
        let link_target = match &entry.kind {
            EntryKind::File | EntryKind::Hardlink(_) => None,
            EntryKind::Symlink(target) => {
                let dir = parent(&entry.path);
                Some(self.canonical(&normalise(&join(dir, target))))
            }
            EntryKind::Dir | EntryKind::Other(_) => return,
        };
        let path = self.canonical(&entry.path);
        self.keep(ShippedFile {
            package: package.to_string(),
            path,
            link_target,
        });
    }

    fn keep(&mut self, file: ShippedFile) {
        let count = self.per_package.entry(file.package.clone()).or_default();
        if *count >= MAX_SHIPPED_PER_PACKAGE
            || !self.seen.insert((file.package.clone(), file.path.clone()))
        {
            return;
        }
        *count += 1;
        let name = basename(&file.path).to_string();
        self.by_name.entry(name).or_default().push(file);
    }

    /// Add what `other` recorded (packages read after those of `self`).
    pub fn absorb(&mut self, other: Shipped) {
        let mut files: Vec<ShippedFile> = other.by_name.into_values().flatten().collect();
        // In a fixed order, whatever the order of the hash map.
        files.sort_by(|a, b| (&a.package, &a.path).cmp(&(&b.package, &b.path)));
        for file in files {
            self.keep(file);
        }
    }

    /// Whether paths are kept in their merged-usr form.
    pub fn merged_usr(&self) -> bool {
        self.merged_usr
    }

    /// Everything shipped under this base name.
    pub fn lookup(&self, name: &str) -> &[ShippedFile] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Number of distinct paths recorded (per package).
    pub fn len(&self) -> usize {
        self.by_name.values().map(Vec::len).sum()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The manifest pattern for a shipped path: the multiarch directory becomes a
/// wildcard (`/usr/lib/x86_64-linux-gnu/libgcc_s.so.1` →
/// `/usr/lib/*-linux-gnu/libgcc_s.so.1`), so one pattern serves every architecture.
pub fn pattern_for(path: &str) -> String {
    path.split('/')
        .map(|c| match c.find("-linux-") {
            Some(i) if i > 0 && !c.contains('.') => format!("*{}", &c[i..]),
            _ => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// What a file needs and did not find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// `PT_INTERP`, the absolute path of the dynamic loader.
    Interpreter(String),
    /// A `DT_NEEDED` name.
    Library(String),
}

/// One unresolved need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    /// Path in the image, or the name of an extra binary.
    pub file: String,
    /// The interpreter or library not found.
    pub need: Need,
    /// What to do or what was found instead, e.g. "add `…` to package libgcc-s1".
    pub hint: String,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.need {
            Need::Interpreter(p) => write!(
                f,
                "{} needs the interpreter {}, which is not in the image",
                shown(&self.file),
                shown(p)
            )?,
            Need::Library(n) => write!(
                f,
                "{} needs {}, which is not in the image",
                shown(&self.file),
                shown(n)
            )?,
        }
        if !self.hint.is_empty() {
            write!(f, "; {}", self.hint)?;
        }
        Ok(())
    }
}

/// What one extra binary resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraResult {
    /// As given; an absolute name is also where `$ORIGIN` points.
    pub name: String,
    /// `x86_64`, `aarch64`, … (empty when the file is not ELF).
    pub machine: String,
    /// Whether it parsed as ELF (false for a non-ELF or unreadable file).
    pub is_elf: bool,
    /// No interpreter and no needed libraries.
    pub is_static: bool,
    /// Its `PT_INTERP`, if any.
    pub interpreter: Option<String>,
    /// `(needed name, path in the image)` for each need that resolved.
    pub resolved: Vec<(String, String)>,
    /// Needs that did not resolve (each is also in [`Report::misses`]).
    pub misses: usize,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// ELF files of the image read (files and hard links).
    pub elf_files: usize,
    /// Of those, dynamically linked ones (an interpreter or needed libraries).
    pub dynamic: usize,
    /// Needs resolved in all (interpreters and libraries, image and extras).
    pub resolved: usize,
    /// One result per extra binary, in the order given.
    pub extras: Vec<ExtraResult>,
    /// Files with the ELF magic that could not be parsed: `(path, reason)`; not checked.
    pub unreadable: Vec<(String, String)>,
    /// Every unresolved need, image files (in path order) first, then extras.
    pub misses: Vec<Miss>,
}

/// A failed check: its report, with at least one miss.
#[derive(Debug, Clone, thiserror::Error)]
pub struct LinkageError {
    /// The whole report; its `misses` are the message.
    pub report: Report,
}

impl fmt::Display for LinkageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.report.misses.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

/// The linkage misses of every architecture of a build, as one error: the build checks
/// each architecture before it fails, so the user fixes everything in one round.
///
/// The first line sums up (files that would not load, per architecture); under it, one
/// indented line per missing name and hint, naming the architectures and the files that
/// need it (the first [`FILES_NAMED`], then how many more) and what to do; then the
/// blocks to add for the names no declared package ships.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ImageLinkageError {
    /// Each failed architecture's report, in build order (each has at least one miss).
    pub archs: Vec<(Arch, Report)>,
    /// The packages that ship the names no declared package ships, with their blocks
    /// ([`crate::suggest`]); printed under the lines of the misses.
    pub suggestions: crate::suggest::Suggestions,
}

/// The misses of one need with one hint, across architectures.
struct MissGroup<'a> {
    need: &'a Need,
    hint: &'a str,
    archs: Vec<Arch>,
    files: Vec<&'a str>,
}

/// Files named per missing name in an [`ImageLinkageError`] line before "and N more".
pub const FILES_NAMED: usize = 3;

impl fmt::Display for ImageLinkageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_arch: Vec<(Arch, usize)> = (self.archs.iter())
            .map(|(arch, report)| {
                let files: std::collections::BTreeSet<&str> =
                    report.misses.iter().map(|m| m.file.as_str()).collect();
                (*arch, files.len())
            })
            .collect();
        let total: usize = per_arch.iter().map(|(_, n)| n).sum();
        let counts: Vec<String> = (per_arch.iter())
            .map(|(arch, n)| format!("{arch}: {n}"))
            .collect();
        // One group per (need, hint), in the order first seen.
        let mut groups: Vec<MissGroup<'_>> = Vec::new();
        for (arch, report) in &self.archs {
            for m in &report.misses {
                let at = match (groups.iter())
                    .position(|g| g.need == &m.need && g.hint == m.hint.as_str())
                {
                    Some(i) => i,
                    None => {
                        groups.push(MissGroup {
                            need: &m.need,
                            hint: &m.hint,
                            archs: Vec::new(),
                            files: Vec::new(),
                        });
                        groups.len() - 1
                    }
                };
                let group = &mut groups[at];
                if !group.archs.contains(arch) {
                    group.archs.push(*arch);
                }
                if !group.files.contains(&m.file.as_str()) {
                    group.files.push(&m.file);
                }
            }
        }
        write!(
            f,
            "{total} ELF file{} would not load ({}): {} name{} missing from the image; do what each line below says, then build again",
            if total == 1 { "" } else { "s" },
            counts.join(", "),
            groups.len(),
            if groups.len() == 1 { " is" } else { "s are" },
        )?;
        for MissGroup {
            need,
            hint,
            archs,
            files,
        } in &groups
        {
            let need = match need {
                Need::Interpreter(p) => format!("the interpreter {p}"),
                Need::Library(n) => n.clone(),
            };
            let mut named = files
                .iter()
                .take(FILES_NAMED)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if files.len() > FILES_NAMED {
                named.push_str(&format!(" and {} more", files.len() - FILES_NAMED));
            }
            write!(
                f,
                "\n  {need} ({}), needed by {named}",
                Arch::list(archs.iter())
            )?;
            if !hint.is_empty() {
                write!(f, ": {hint}")?;
            }
        }
        write!(f, "{}", self.suggestions.lines())
    }
}

/// The facts of an ELF file the loader acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ElfInfo {
    class64: bool,
    big_endian: bool,
    machine: u16,
    flags: u32,
    interp: Option<String>,
    needed: Vec<String>,
    runpath: Option<String>,
    rpath: Option<String>,
}

impl ElfInfo {
    fn is_dynamic(&self) -> bool {
        self.interp.is_some() || !self.needed.is_empty()
    }

    /// Could the loader of `self` load `lib`?
    fn accepts(&self, lib: &ElfInfo) -> bool {
        self.class64 == lib.class64
            && self.big_endian == lib.big_endian
            && self.machine == lib.machine
    }

    fn machine_name(&self) -> String {
        let name = match self.machine {
            m if m == elf::EM_X86_64.0 && self.class64 => "x86_64",
            m if m == elf::EM_X86_64.0 => "x32",
            m if m == elf::EM_386.0 => "i386",
            m if m == elf::EM_AARCH64.0 => "aarch64",
            m if m == elf::EM_ARM.0 => "arm",
            m if m == elf::EM_PPC64.0 && self.big_endian => "ppc64",
            m if m == elf::EM_PPC64.0 => "ppc64le",
            m if m == elf::EM_S390.0 => "s390x",
            m if m == elf::EM_RISCV.0 => "riscv64",
            m => return format!("machine {m}, {}-bit", if self.class64 { 64 } else { 32 }),
        };
        name.to_string()
    }

    /// Multiarch triplets whose directories the loader of this machine searches.
    fn triplets(&self) -> &'static [&'static str] {
        const EF_ARM_ABI_FLOAT_HARD: u32 = 0x400;
        match self.machine {
            m if m == elf::EM_X86_64.0 && self.class64 => &["x86_64-linux-gnu"],
            m if m == elf::EM_X86_64.0 => &["x86_64-linux-gnux32"],
            m if m == elf::EM_386.0 => &["i386-linux-gnu"],
            m if m == elf::EM_AARCH64.0 => &["aarch64-linux-gnu"],
            m if m == elf::EM_ARM.0 && self.flags & EF_ARM_ABI_FLOAT_HARD != 0 => {
                &["arm-linux-gnueabihf", "arm-linux-gnueabi"]
            }
            m if m == elf::EM_ARM.0 => &["arm-linux-gnueabi", "arm-linux-gnueabihf"],
            m if m == elf::EM_PPC64.0 && self.big_endian => &["powerpc64-linux-gnu"],
            m if m == elf::EM_PPC64.0 => &["powerpc64le-linux-gnu"],
            m if m == elf::EM_S390.0 => &["s390x-linux-gnu"],
            m if m == elf::EM_RISCV.0 => &["riscv64-linux-gnu"],
            _ => &[],
        }
    }

    /// Directories searched for a `DT_NEEDED` name, in order, for a file in `origin`.
    fn search_dirs(&self, origin: &str) -> Vec<String> {
        let mut dirs = Vec::new();
        if let Some(list) = self.runpath.as_ref().or(self.rpath.as_ref()) {
            for d in list.split(':').filter(|d| !d.is_empty()) {
                let d = d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin);
                // Relative entries are relative to the working directory: `/` by default.
                dirs.push(if d.starts_with('/') {
                    d
                } else {
                    format!("/{d}")
                });
            }
        }
        for t in self.triplets() {
            dirs.push(format!("/lib/{t}"));
            dirs.push(format!("/usr/lib/{t}"));
        }
        dirs.push("/lib".into());
        dirs.push("/usr/lib".into());
        if self.class64 {
            dirs.push("/lib64".into());
            dirs.push("/usr/lib64".into());
        }
        dirs
    }
}

/// The architecture an ELF file is built for, when it is ELF and of a known machine:
/// `compose check --binary` picks that image of an index.
pub fn elf_arch(bytes: &[u8]) -> Option<Arch> {
    let info = read_elf(bytes).ok()??;
    Arch::from_triplet(info.triplets().first()?)
}

/// Read the ELF facts of `data`; `Ok(None)` when it is not an ELF file.
fn read_elf<'d, R: ReadRef<'d>>(data: R) -> Result<Option<ElfInfo>, String> {
    let ident = match data.read_bytes_at(0, 16) {
        Ok(b) => b,
        Err(()) => return Ok(None),
    };
    if ident[..4] != elf::ELFMAG {
        return Ok(None);
    }
    match elf::FileClass(ident[4]) {
        c if c == elf::ELFCLASS32 => parse_elf::<elf::FileHeader32<Endianness>, R>(data).map(Some),
        c if c == elf::ELFCLASS64 => parse_elf::<elf::FileHeader64<Endianness>, R>(data).map(Some),
        c => Err(format!("unknown ELF class {c}")),
    }
}

fn parse_elf<'d, Elf, R>(data: R) -> Result<ElfInfo, String>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'d>,
{
    let e = |e: object::read::Error| e.to_string();
    let header = Elf::parse(data).map_err(e)?;
    let endian = header.endian().map_err(e)?;
    let mut info = ElfInfo {
        class64: header.is_class_64(),
        big_endian: !header.is_little_endian(),
        machine: header.e_machine(endian).0,
        flags: header.e_flags(endian).0,
        interp: None,
        needed: Vec::new(),
        runpath: None,
        rpath: None,
    };
    // Only executables and shared objects are loaded (not relocatable objects, cores).
    let e_type = header.e_type(endian);
    if e_type != elf::ET_EXEC && e_type != elf::ET_DYN {
        return Ok(info);
    }
    let phdrs = header.program_headers(endian, data).map_err(e)?;
    let mut dynamic = None;
    for ph in phdrs {
        if let Some(i) = ph.interpreter(endian, data).map_err(e)? {
            info.interp = Some(String::from_utf8_lossy(i).into_owned());
        }
        if let Some(d) = ph.dynamic(endian, data).map_err(e)? {
            dynamic = Some(d);
        }
    }
    let Some(dyns) = dynamic else {
        return Ok(info);
    };
    let (mut strtab, mut strsz) = (None, None);
    let (mut needed, mut runpath, mut rpath) = (Vec::new(), None, None);
    for d in dyns {
        let tag = d.d_tag(endian);
        let val: u64 = d.d_val(endian).into();
        match tag {
            t if t == elf::DT_NULL => break,
            t if t == elf::DT_NEEDED => needed.push(val),
            t if t == elf::DT_RUNPATH => runpath = Some(val),
            t if t == elf::DT_RPATH => rpath = Some(val),
            t if t == elf::DT_STRTAB => strtab = Some(val),
            t if t == elf::DT_STRSZ => strsz = Some(val),
            _ => {}
        }
    }
    if needed.is_empty() && runpath.is_none() && rpath.is_none() {
        return Ok(info);
    }
    let (Some(addr), Some(size)) = (strtab, strsz) else {
        return Err("dynamic section without DT_STRTAB/DT_STRSZ".into());
    };
    // DT_STRTAB is an address: find the loaded segment that holds it.
    let offset = phdrs
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .find_map(|ph| {
            let vaddr: u64 = ph.p_vaddr(endian).into();
            let filesz: u64 = ph.p_filesz(endian).into();
            let off: u64 = ph.p_offset(endian).into();
            (addr >= vaddr && addr - vaddr < filesz).then(|| addr - vaddr + off)
        })
        .ok_or("DT_STRTAB is outside every PT_LOAD segment")?;
    let strings = data
        .read_bytes_at(offset, size)
        .map_err(|()| "DT_STRTAB extends past the end of the file")?;
    let string = |at: u64| -> Result<String, String> {
        let rest = strings
            .get(at as usize..)
            .ok_or("dynamic string offset out of range")?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    for n in needed {
        info.needed.push(string(n)?);
    }
    info.runpath = runpath.map(string).transpose()?;
    info.rpath = rpath.map(string).transpose()?;
    Ok(info)
}

/// Where a path of the image leads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    /// A regular file (after symbolic and hard links): its path.
    File(String),
    Missing,
    /// Too many symbolic links (a loop).
    Loop(String),
    /// A directory or nothing loadable.
    NotAFile,
}

/// Follow `path` through the tree as the kernel would: symbolic links (absolute ones
/// from the image root, relative ones from their directory), `.` and `..`, hard links.
fn lookup(tree: &Tree, path: &str) -> Lookup {
    // A stack of components still to walk, the next one last.
    let mut pending: Vec<String> = path
        .split('/')
        .rev()
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let mut cur = String::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.truncate(cur.rfind('/').unwrap_or(0));
                continue;
            }
            _ => {}
        }
        let next = format!("{cur}/{c}");
        match tree.get(&next).map(|n| &n.kind) {
            None => return Lookup::Missing,
            Some(NodeKind::Dir) => cur = next,
            Some(NodeKind::Symlink(target)) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Lookup::Loop(next);
                }
                if target.starts_with('/') {
                    cur.clear();
                }
                pending.extend(
                    target
                        .split('/')
                        .rev()
                        .filter(|c| !c.is_empty())
                        .map(str::to_string),
                );
            }
            Some(NodeKind::File(_)) | Some(NodeKind::Hardlink(_)) => {
                if pending.iter().any(|c| c != ".") {
                    return Lookup::Missing; // ENOTDIR
                }
                return Lookup::File(file_of(tree, &next).unwrap_or(next));
            }
        }
    }
    Lookup::NotAFile
}

/// The file a hard link points to (hard links to hard links included).
fn file_of(tree: &Tree, path: &str) -> Option<String> {
    let mut p = path.to_string();
    for _ in 0..MAX_HOPS {
        match tree.get(&p).map(|n| &n.kind) {
            Some(NodeKind::File(_)) => return Some(p),
            Some(NodeKind::Hardlink(t)) => p = t.clone(),
            _ => return None,
        }
    }
    None
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn join(dir: &str, target: &str) -> String {
    if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{}/{target}", dir.trim_end_matches('/'))
    }
}

/// Lexical normalisation of an absolute path (`.`, `..`, doubled slashes).
fn normalise(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// Read the ELF facts of a file of the tree; `Ok(None)` when it is not ELF.
fn tree_elf(tree: &Tree, node: &Node) -> Result<Option<ElfInfo>, String> {
    let NodeKind::File(content) = &node.kind else {
        return Ok(None);
    };
    if content.len < 52 {
        return Ok(None);
    }
    let mut magic = [0u8; 4];
    if tree.spool.reader(content).read_exact(&mut magic).is_err() || magic != elf::ELFMAG {
        return Ok(None);
    }
    let cache = ReadCache::new(tree.spool.reader(content));
    read_elf(&cache)
}

/// What the check knows while it runs.
struct Checker<'a> {
    tree: &'a Tree,
    shipped: Option<&'a Shipped>,
    /// ELF facts of the tree's regular files, by path.
    elves: HashMap<String, ElfInfo>,
    report: Report,
}

impl Checker<'_> {
    /// Resolve the needs of one file: `(need, found path)` for those that resolved.
    fn check_one(&mut self, file: &str, origin: &str, info: &ElfInfo) -> Vec<(String, String)> {
        let mut resolved = Vec::new();
        if let Some(interp) = &info.interp {
            match self.find_path(interp, info) {
                Ok(found) => resolved.push((interp.clone(), found)),
                Err(why) => {
                    let hint = self.hint(interp, info, why, true);
                    self.report.misses.push(Miss {
                        file: file.to_string(),
                        need: Need::Interpreter(interp.clone()),
                        hint,
                    });
                }
            }
        }
        let dirs = info.search_dirs(origin);
        for name in &info.needed {
            if VDSO.contains(&name.as_str()) {
                continue;
            }
            let result = if name.contains('/') {
                self.find_path(&join("/", name), info)
            } else {
                self.find_in(name, &dirs, info)
            };
            match result {
                Ok(found) => resolved.push((name.clone(), found)),
                Err(why) => {
                    let hint = self.hint(name, info, why, false);
                    self.report.misses.push(Miss {
                        file: file.to_string(),
                        need: Need::Library(name.clone()),
                        hint,
                    });
                }
            }
        }
        self.report.resolved += resolved.len();
        resolved
    }

    fn find_in(&self, name: &str, dirs: &[String], info: &ElfInfo) -> Result<String, NotFound> {
        let mut why = NotFound::Absent;
        for dir in dirs {
            match self.find_path(&join(dir, name), info) {
                Ok(found) => return Ok(found),
                Err(NotFound::Absent) => {}
                Err(other) => {
                    if why == NotFound::Absent {
                        why = other;
                    }
                }
            }
        }
        Err(why)
    }

    /// Resolve one absolute path to a loadable file for `info`'s machine.
    fn find_path(&self, path: &str, info: &ElfInfo) -> Result<String, NotFound> {
        match lookup(self.tree, path) {
            Lookup::File(real) => match self.elves.get(&real) {
                Some(lib) if info.accepts(lib) => Ok(real),
                Some(lib) => Err(NotFound::Incompatible {
                    path: real,
                    machine: lib.machine_name(),
                }),
                None => Err(NotFound::NotElf(real)),
            },
            Lookup::Loop(at) => Err(NotFound::Loop(at)),
            Lookup::Missing | Lookup::NotAFile => Err(NotFound::Absent),
        }
    }

    /// What to tell the user about a need that did not resolve.
    fn hint(&self, name: &str, info: &ElfInfo, why: NotFound, interp: bool) -> String {
        let mut parts = Vec::new();
        match why {
            NotFound::Absent => {}
            NotFound::Incompatible { path, machine } => parts.push(format!(
                "{path} is for {machine}, not {} (the loader skips it)",
                info.machine_name()
            )),
            NotFound::NotElf(path) => parts.push(format!("{path} is not an ELF file")),
            NotFound::Loop(at) => parts.push(format!(
                "{at} is a loop of symbolic links (more than {MAX_HOPS})"
            )),
        }
        let base = basename(name);
        match self.shipped.map(|s| s.lookup(base)).unwrap_or(&[]) {
            [] => {
                if let Some(elsewhere) = self.elsewhere(base, info) {
                    parts.push(elsewhere);
                } else if self.shipped.is_some() {
                    parts.push("no declared package ships it: declare the package that does (`apt-file search` names it)".into());
                }
            }
            candidates => parts.push(self.suggest(name, info, candidates, interp)),
        }
        parts.join("; ")
    }

    /// "add `pattern` to package p" for the best of the shipped candidates.
    fn suggest(
        &self,
        name: &str,
        info: &ElfInfo,
        candidates: &[ShippedFile],
        interp: bool,
    ) -> String {
        // Prefer the exact interpreter path, then the directories the loader searches
        // (in order), then anything else.
        let dirs: Vec<String> = info
            .search_dirs("/")
            .iter()
            .map(|d| self.canonical(d))
            .collect();
        let rank = |c: &ShippedFile| -> usize {
            if interp && c.path == self.canonical(name) {
                return 0;
            }
            let dir = parent(&c.path);
            dirs.iter()
                .position(|d| d == dir)
                .map_or(usize::MAX, |i| i + 1)
        };
        let mut sorted: Vec<&ShippedFile> = candidates.iter().collect();
        sorted.sort_by_key(|c| (rank(c), c.package.clone(), c.path.clone()));
        let mut by_package: BTreeMap<&str, ()> = BTreeMap::new();
        let mut out = Vec::new();
        for c in sorted {
            if by_package.insert(&c.package, ()).is_some() {
                continue;
            }
            let mut text = format!("`{}`", pattern_for(&c.path));
            if let Some(target) = &c.link_target {
                if !matches!(lookup(self.tree, target), Lookup::File(_)) {
                    text.push_str(&format!(" and its target `{}`", pattern_for(target)));
                }
            }
            out.push(format!("{text} to package {}", c.package));
            if out.len() == 3 {
                break;
            }
        }
        format!("add {}", out.join(", or "))
    }

    /// Where else the image has this base name: the first loadable one for `info`'s
    /// machine ("is in the image but not where the loader looks"), else the first of
    /// another machine ("is for aarch64, not x86_64").
    fn elsewhere(&self, base: &str, info: &ElfInfo) -> Option<String> {
        let mut other = None;
        for (path, node) in self.tree.iter() {
            if basename(path) != base || matches!(node.kind, NodeKind::Dir) {
                continue;
            }
            let lib = match lookup(self.tree, path) {
                Lookup::File(real) => self.elves.get(&real),
                _ => None,
            };
            match lib {
                Some(lib) if !info.accepts(lib) => {
                    other.get_or_insert_with(|| {
                        format!(
                            "{path} is for {}, not {}",
                            lib.machine_name(),
                            info.machine_name()
                        )
                    });
                }
                _ => {
                    return Some(format!(
                        "{path} is in the image but not where the loader looks (RUNPATH, the multiarch directories, /lib, /usr/lib)"
                    ))
                }
            }
        }
        other
    }

    /// The canonical (merged-usr when `shipped` says so) form of an absolute path.
    fn canonical(&self, path: &str) -> String {
        let p = normalise(path);
        match self.shipped {
            Some(s) => s.canonical(&p),
            None => p,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NotFound {
    Absent,
    Incompatible { path: String, machine: String },
    NotElf(String),
    Loop(String),
}

/// Check every ELF file of `tree` and every extra binary `(name, bytes)` (checked as if
/// placed at `name` when it is an absolute path, at `/` otherwise, for `$ORIGIN`).
/// `shipped` (every file of the declared packages) makes a miss suggest what to add.
pub fn check(
    tree: &Tree,
    extra: &[(String, Vec<u8>)],
    shipped: Option<&Shipped>,
) -> Result<Report, LinkageError> {
    let mut checker = Checker {
        tree,
        shipped,
        elves: HashMap::new(),
        report: Report::default(),
    };
    for (path, node) in tree.iter() {
        match tree_elf(tree, node) {
            Ok(Some(info)) => {
                checker.elves.insert(path.clone(), info);
            }
            Ok(None) => {}
            Err(reason) => checker.report.unreadable.push((path.clone(), reason)),
        }
    }
    // Files, then hard links to ELF files (their $ORIGIN may differ), in path order.
    let mut todo: Vec<(String, ElfInfo)> = Vec::new();
    for (path, node) in tree.iter() {
        let info = match &node.kind {
            NodeKind::File(_) => checker.elves.get(path),
            NodeKind::Hardlink(_) => file_of(tree, path).and_then(|f| checker.elves.get(&f)),
            _ => None,
        };
        if let Some(info) = info {
            checker.report.elf_files += 1;
            if info.is_dynamic() {
                todo.push((path.clone(), info.clone()));
            }
        }
    }
    checker.report.dynamic = todo.len();
    for (path, info) in &todo {
        checker.check_one(path, parent(path), info);
    }
    for (name, bytes) in extra {
        let mut result = ExtraResult {
            name: name.clone(),
            machine: String::new(),
            is_elf: false,
            is_static: false,
            interpreter: None,
            resolved: Vec::new(),
            misses: 0,
        };
        match read_elf(&bytes[..]) {
            Ok(Some(info)) => {
                result.is_elf = true;
                result.machine = info.machine_name();
                result.is_static = !info.is_dynamic();
                result.interpreter = info.interp.clone();
                let before = checker.report.misses.len();
                let origin = if name.starts_with('/') {
                    parent(name)
                } else {
                    "/"
                };
                result.resolved = checker.check_one(name, origin, &info);
                result.misses = checker.report.misses.len() - before;
            }
            Ok(None) => {}
            Err(reason) => checker.report.unreadable.push((name.clone(), reason)),
        }
        checker.report.extras.push(result);
    }
    if checker.report.misses.is_empty() {
        Ok(checker.report)
    } else {
        Err(LinkageError {
            report: checker.report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_wildcard_the_triplet() {
        assert_eq!(
            pattern_for("/usr/lib/x86_64-linux-gnu/libgcc_s.so.1"),
            "/usr/lib/*-linux-gnu/libgcc_s.so.1"
        );
        assert_eq!(
            pattern_for("/usr/lib/arm-linux-gnueabihf/libz.so.1"),
            "/usr/lib/*-linux-gnueabihf/libz.so.1"
        );
        assert_eq!(
            pattern_for("/usr/lib64/ld-linux-x86-64.so.2"),
            "/usr/lib64/ld-linux-x86-64.so.2"
        );
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise("/usr/lib/../lib64//x"), "/usr/lib64/x");
        assert_eq!(normalise("/../a"), "/a");
        assert_eq!(join("/usr/lib", "../x"), "/usr/lib/../x");
        assert_eq!(parent("/x"), "/");
        assert_eq!(parent("/usr/lib/x"), "/usr/lib");
    }

    #[test]
    fn shipped_keeps_loadable_names_once_and_at_most_its_limit_per_package() {
        let entry = |path: String, kind: EntryKind| Entry {
            path,
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
        };
        let mut shipped = Shipped::new(true);
        for path in [
            "/lib/x86_64-linux-gnu/libz.so.1.3",
            "/lib/x86_64-linux-gnu/libz.so.1.3",
            "/usr/lib/python3/dist-packages/m.cpython-311-x86_64-linux-gnu.so",
            "/lib64/ld-linux-x86-64.so.2",
            "/usr/share/doc/zlib1g/copyright",
            "/usr/share/sounds/a.sound",
        ] {
            shipped.record("zlib1g", &entry(path.into(), EntryKind::File));
        }
        shipped.record(
            "zlib1g",
            &entry("/usr/lib/x86_64-linux-gnu".into(), EntryKind::Dir),
        );
        assert_eq!(shipped.len(), 3);
        assert_eq!(
            shipped.lookup("libz.so.1.3")[0].path,
            "/usr/lib/x86_64-linux-gnu/libz.so.1.3"
        );
        assert!(shipped.lookup("copyright").is_empty());

        let mut many = Shipped::new(false);
        for i in 0..MAX_SHIPPED_PER_PACKAGE + 10 {
            many.record("big", &entry(format!("/d{i}/libx.so.1"), EntryKind::File));
        }
        many.record("other", &entry("/libx.so.1".into(), EntryKind::File));
        assert_eq!(many.len(), MAX_SHIPPED_PER_PACKAGE + 1);
        shipped.absorb(many);
        assert_eq!(shipped.len(), 3 + MAX_SHIPPED_PER_PACKAGE + 1);
    }
}
