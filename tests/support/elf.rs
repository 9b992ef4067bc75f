//! Minimal, structurally valid ELF64 little-endian shared objects for linkage tests:
//! a `PT_INTERP` (optional), a `PT_DYNAMIC` with `DT_NEEDED`, `DT_SONAME`, `DT_RPATH`, `DT_RUNPATH`,
//! and matching section headers (`.interp`, `.dynstr`, `.dynamic`, `.shstrtab`), so
//! both segment-based and section-based readers (readelf, `object`) see the same
//! facts. No code: they are never run.

/// What the ELF file declares.
#[derive(Clone, Debug, Default)]
pub struct ElfSpec {
    /// Debian architecture: "amd64" (EM_X86_64) or "arm64" (EM_AARCH64)
    pub arch: String,
    /// PT_INTERP, e.g. "/lib64/ld-linux-x86-64.so.2"
    pub interp: Option<String>,
    pub needed: Vec<String>,
    pub soname: Option<String>,
    pub runpath: Option<String>,
    /// DT_RPATH (the older form; the loader ignores it when DT_RUNPATH is present)
    pub rpath: Option<String>,
}

impl ElfSpec {
    /// A shared library with a SONAME.
    pub fn library(arch: &str, soname: &str, needed: &[&str]) -> Self {
        ElfSpec {
            arch: arch.to_string(),
            soname: Some(soname.to_string()),
            needed: needed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// A dynamically linked executable with the arch's usual interpreter.
    pub fn executable(arch: &str, needed: &[&str]) -> Self {
        ElfSpec {
            arch: arch.to_string(),
            interp: Some(default_interp(arch).to_string()),
            needed: needed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn build(&self) -> Vec<u8> {
        build_elf(self)
    }
}

/// The glibc dynamic loader path of an architecture.
pub fn default_interp(arch: &str) -> &'static str {
    match arch {
        "amd64" => "/lib64/ld-linux-x86-64.so.2",
        "arm64" => "/lib/ld-linux-aarch64.so.1",
        other => panic!("no ELF machine for arch {other}"),
    }
}

fn machine(arch: &str) -> u16 {
    match arch {
        "amd64" => 62,
        "arm64" => 183,
        other => panic!("no ELF machine for arch {other}"),
    }
}

fn align8(v: &mut Vec<u8>) {
    while v.len() % 8 != 0 {
        v.push(0);
    }
}

const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// Lays out the file; virtual addresses equal file offsets (one PT_LOAD at 0).
pub fn build_elf(spec: &ElfSpec) -> Vec<u8> {
    let em = machine(&spec.arch);
    let nph: u64 = if spec.interp.is_some() { 3 } else { 2 };
    let mut out = vec![0u8; 64 + 56 * nph as usize];

    let interp_off = out.len() as u64;
    if let Some(i) = &spec.interp {
        out.extend_from_slice(i.as_bytes());
        out.push(0);
    }
    let interp_len = out.len() as u64 - interp_off;

    let dynstr_off = out.len() as u64;
    let mut dynstr = vec![0u8];
    let mut add = |s: &str| {
        let at = dynstr.len() as u64;
        dynstr.extend_from_slice(s.as_bytes());
        dynstr.push(0);
        at
    };
    let mut dyns: Vec<(u64, u64)> = Vec::new();
    for n in &spec.needed {
        dyns.push((DT_NEEDED, add(n)));
    }
    if let Some(s) = &spec.soname {
        dyns.push((DT_SONAME, add(s)));
    }
    if let Some(r) = &spec.rpath {
        dyns.push((DT_RPATH, add(r)));
    }
    if let Some(r) = &spec.runpath {
        dyns.push((DT_RUNPATH, add(r)));
    }
    dyns.push((DT_STRTAB, dynstr_off));
    dyns.push((DT_STRSZ, dynstr.len() as u64));
    dyns.push((DT_NULL, 0));
    out.extend_from_slice(&dynstr);
    align8(&mut out);

    let dynamic_off = out.len() as u64;
    for (tag, val) in &dyns {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&val.to_le_bytes());
    }
    let dynamic_len = out.len() as u64 - dynamic_off;

    let shstrtab_off = out.len() as u64;
    let shstr = b"\0.interp\0.dynstr\0.dynamic\0.shstrtab\0";
    out.extend_from_slice(shstr);
    align8(&mut out);
    let load_len = out.len() as u64;

    // Section headers: null, [.interp], .dynstr, .dynamic, .shstrtab
    let shoff = out.len() as u64;
    let mut shdrs: Vec<[u64; 8]> = vec![[0; 8]];
    // [name|type packed separately below], flags, addr, offset, size, link, info, align, entsize
    let mut names: Vec<(u32, u32)> = vec![(0, 0)];
    if spec.interp.is_some() {
        names.push((1, 1)); // .interp, SHT_PROGBITS
        shdrs.push([2, interp_off, interp_off, interp_len, 0, 0, 1, 0]);
    }
    let dynstr_index = shdrs.len() as u64;
    names.push((9, 3)); // .dynstr, SHT_STRTAB
    shdrs.push([2, dynstr_off, dynstr_off, dynstr.len() as u64, 0, 0, 1, 0]);
    names.push((17, 6)); // .dynamic, SHT_DYNAMIC
    shdrs.push([
        3,
        dynamic_off,
        dynamic_off,
        dynamic_len,
        dynstr_index,
        0,
        8,
        16,
    ]);
    let shstrndx = shdrs.len() as u16;
    names.push((26, 3)); // .shstrtab, SHT_STRTAB
    shdrs.push([0, 0, shstrtab_off, shstr.len() as u64, 0, 0, 1, 0]);
    for ((name, typ), f) in names.iter().zip(&shdrs) {
        out.extend_from_slice(&name.to_le_bytes());
        out.extend_from_slice(&typ.to_le_bytes());
        out.extend_from_slice(&f[0].to_le_bytes()); // sh_flags
        out.extend_from_slice(&f[1].to_le_bytes()); // sh_addr
        out.extend_from_slice(&f[2].to_le_bytes()); // sh_offset
        out.extend_from_slice(&f[3].to_le_bytes()); // sh_size
        out.extend_from_slice(&(f[4] as u32).to_le_bytes()); // sh_link
        out.extend_from_slice(&(f[5] as u32).to_le_bytes()); // sh_info
        out.extend_from_slice(&f[6].to_le_bytes()); // sh_addralign
        out.extend_from_slice(&f[7].to_le_bytes()); // sh_entsize
    }

    // ELF header
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    h.extend_from_slice(&em.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    h.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    h.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    h.extend_from_slice(&shoff.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    h.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h.extend_from_slice(&(nph as u16).to_le_bytes());
    h.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    h.extend_from_slice(&(shdrs.len() as u16).to_le_bytes());
    h.extend_from_slice(&shstrndx.to_le_bytes());
    out[..64].copy_from_slice(&h);

    // Program headers: PT_PHDR-less: [PT_INTERP], PT_LOAD, PT_DYNAMIC
    let mut ph = Vec::new();
    let mut phdr = |typ: u32, flags: u32, off: u64, len: u64, align: u64| {
        ph.extend_from_slice(&typ.to_le_bytes());
        ph.extend_from_slice(&flags.to_le_bytes());
        ph.extend_from_slice(&off.to_le_bytes()); // p_offset
        ph.extend_from_slice(&off.to_le_bytes()); // p_vaddr
        ph.extend_from_slice(&off.to_le_bytes()); // p_paddr
        ph.extend_from_slice(&len.to_le_bytes()); // p_filesz
        ph.extend_from_slice(&len.to_le_bytes()); // p_memsz
        ph.extend_from_slice(&align.to_le_bytes());
    };
    if spec.interp.is_some() {
        phdr(3, 4, interp_off, interp_len, 1); // PT_INTERP, R
    }
    phdr(1, 4 | 2, 0, load_len, 0x1000); // PT_LOAD, RW
    phdr(2, 4 | 2, dynamic_off, dynamic_len, 8); // PT_DYNAMIC
    out[64..64 + ph.len()].copy_from_slice(&ph);
    out
}
