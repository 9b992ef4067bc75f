//! The target architecture: one [`Arch`] value per Debian architecture compose knows,
//! and the one table that says everything about it — its Debian name, its OCI platform
//! (architecture and variant), its multiarch triplet, its ELF machine, whether its
//! loader lives under `/lib64`, and the Rust name of a host of that architecture.
//!
//! Everything else asks this table; nothing here reads files or the network.

use std::cmp::Ordering;
use std::fmt;

/// One row of the table.
#[derive(Debug)]
struct Info {
    /// Debian's name: `amd64`, `arm64`, …; what manifests, the lock and URLs use.
    debian: &'static str,
    /// The OCI/Go architecture and variant of the image config and index.
    oci: &'static str,
    variant: Option<&'static str>,
    /// The multiarch triplet: `/usr/lib/<triplet>` holds its libraries.
    triplet: &'static str,
    /// `e_machine` of its ELF files.
    elf_machine: u16,
    /// The dynamic loader is `/lib64/…` (the image gets a `/lib64` link even when no
    /// package ships `/usr/lib64`).
    lib64: bool,
    /// `std::env::consts::ARCH` of a host of this architecture.
    rust: &'static str,
}

const EM_386: u16 = 3;
const EM_ARM: u16 = 40;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;

/// Sorted by Debian name (the order of the lock and of every listing).
static TABLE: [Info; 8] = [
    Info {
        debian: "amd64",
        oci: "amd64",
        variant: None,
        triplet: "x86_64-linux-gnu",
        elf_machine: EM_X86_64,
        lib64: true,
        rust: "x86_64",
    },
    Info {
        debian: "arm64",
        oci: "arm64",
        variant: Some("v8"),
        triplet: "aarch64-linux-gnu",
        elf_machine: EM_AARCH64,
        lib64: false,
        rust: "aarch64",
    },
    Info {
        debian: "armel",
        oci: "arm",
        variant: Some("v5"),
        triplet: "arm-linux-gnueabi",
        elf_machine: EM_ARM,
        lib64: false,
        rust: "",
    },
    Info {
        debian: "armhf",
        oci: "arm",
        variant: Some("v7"),
        triplet: "arm-linux-gnueabihf",
        elf_machine: EM_ARM,
        lib64: false,
        rust: "arm",
    },
    Info {
        debian: "i386",
        oci: "386",
        variant: None,
        triplet: "i386-linux-gnu",
        elf_machine: EM_386,
        lib64: false,
        rust: "x86",
    },
    Info {
        debian: "ppc64el",
        oci: "ppc64le",
        variant: None,
        triplet: "powerpc64le-linux-gnu",
        elf_machine: EM_PPC64,
        lib64: false,
        rust: "powerpc64",
    },
    Info {
        debian: "riscv64",
        oci: "riscv64",
        variant: None,
        triplet: "riscv64-linux-gnu",
        elf_machine: EM_RISCV,
        lib64: false,
        rust: "riscv64",
    },
    Info {
        debian: "s390x",
        oci: "s390x",
        variant: None,
        triplet: "s390x-linux-gnu",
        elf_machine: EM_S390,
        lib64: false,
        rust: "s390x",
    },
];

/// A target architecture compose knows. Compared, sorted and printed by its Debian name.
#[derive(Clone, Copy)]
pub struct Arch(&'static Info);

impl Arch {
    /// amd64.
    pub const AMD64: Arch = Arch(&TABLE[0]);
    /// arm64 (OCI variant v8).
    pub const ARM64: Arch = Arch(&TABLE[1]);

    /// Every architecture, sorted by Debian name.
    pub fn all() -> impl Iterator<Item = Arch> {
        TABLE.iter().map(Arch)
    }

    /// Debian names (`arm64`) and OCI platform names (`linux/arm64`, `linux/arm64/v8`).
    pub fn parse(name: &str) -> Option<Arch> {
        if let Some(a) = Arch::all().find(|a| a.0.debian == name) {
            return Some(a);
        }
        let rest = name.strip_prefix("linux/")?;
        let (oci, variant) = match rest.split_once('/') {
            Some((a, v)) => (a, Some(v)),
            None => (rest, None),
        };
        // `linux/arm` without a variant is the first of the table's arm rows by the
        // order Debian ports prefer: armhf before armel.
        let mut matches: Vec<Arch> = Arch::all()
            .filter(|a| a.0.oci == oci && (variant.is_none() || variant == a.0.variant))
            .collect();
        matches.sort_by_key(|a| a.0.variant.map(|v| std::cmp::Reverse(v.to_string())));
        matches.first().copied()
    }

    /// The architecture of the machine compose runs on, when the table has it.
    pub fn host() -> Option<Arch> {
        Arch::all().find(|a| a.0.rust == std::env::consts::ARCH)
    }

    /// The architecture whose multiarch triplet this is.
    pub fn from_triplet(triplet: &str) -> Option<Arch> {
        Arch::all().find(|a| a.0.triplet == triplet)
    }

    /// Debian's name.
    pub fn name(self) -> &'static str {
        self.0.debian
    }

    /// The OCI architecture (`amd64`, `arm64`, `arm`, `386`, …).
    pub fn oci_architecture(self) -> &'static str {
        self.0.oci
    }

    /// The OCI variant (`v8` for arm64), if it has one.
    pub fn oci_variant(self) -> Option<&'static str> {
        self.0.variant
    }

    /// `linux/arm64/v8`, `linux/amd64`.
    pub fn platform(self) -> String {
        match self.0.variant {
            Some(v) => format!("linux/{}/{v}", self.0.oci),
            None => format!("linux/{}", self.0.oci),
        }
    }

    /// The multiarch triplet (`aarch64-linux-gnu`).
    pub fn triplet(self) -> &'static str {
        self.0.triplet
    }

    /// `e_machine` of its ELF files.
    pub fn elf_machine(self) -> u16 {
        self.0.elf_machine
    }

    /// Whether its loader lives in `/lib64`, so the image always gets that link.
    pub fn loader_in_lib64(self) -> bool {
        self.0.lib64
    }

    /// The architectures a build is for: `requested` on the command line (Debian names
    /// or `linux/…`, duplicates dropped, in the order given), else `default` (the
    /// manifest's), else the host's. The error is a usage message.
    pub fn choose(requested: &[String], default: &[Arch]) -> Result<Vec<Arch>, String> {
        let mut out: Vec<Arch> = Vec::new();
        for a in requested {
            let arch = Arch::parse(a).ok_or_else(|| {
                format!(
                    "--arch {a}: unknown architecture; use a Debian name such as amd64 or arm64 (or linux/arm64)"
                )
            })?;
            if !out.contains(&arch) {
                out.push(arch);
            }
        }
        if out.is_empty() {
            out = default.to_vec();
        }
        if out.is_empty() {
            out.push(Arch::host().ok_or_else(|| {
                format!(
                    "this machine's architecture ({}) is not one compose knows; choose one with --arch ({})",
                    std::env::consts::ARCH,
                    Arch::known()
                )
            })?);
        }
        Ok(out)
    }

    /// Debian names joined for messages: `amd64, arm64`.
    pub fn list<'a>(archs: impl IntoIterator<Item = &'a Arch>) -> String {
        archs
            .into_iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The Debian names, for error messages: `amd64, arm64, …`.
    pub fn known() -> String {
        Arch::all().map(Arch::name).collect::<Vec<_>>().join(", ")
    }
}

impl PartialEq for Arch {
    fn eq(&self, other: &Self) -> bool {
        self.0.debian == other.0.debian
    }
}

impl Eq for Arch {}

impl std::hash::Hash for Arch {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.debian.hash(state);
    }
}

impl PartialOrd for Arch {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Arch {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.debian.cmp(other.0.debian)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.debian)
    }
}

impl fmt::Debug for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.debian)
    }
}

impl PartialEq<str> for Arch {
    fn eq(&self, other: &str) -> bool {
        self.0.debian == other
    }
}

impl PartialEq<&str> for Arch {
    fn eq(&self, other: &&str) -> bool {
        self.0.debian == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_platforms() {
        assert_eq!(Arch::parse("linux/arm64/v8"), Some(Arch::ARM64));
        assert_eq!(Arch::parse("linux/amd64"), Some(Arch::AMD64));
        assert_eq!(Arch::parse("linux/arm/v7").map(Arch::name), Some("armhf"));
        assert_eq!(Arch::parse("linux/arm/v5").map(Arch::name), Some("armel"));
        assert_eq!(Arch::parse("linux/arm").map(Arch::name), Some("armhf"));
        assert_eq!(Arch::parse("arm64"), Some(Arch::ARM64));
        assert_eq!(Arch::parse("linux/sparc"), None);
        assert_eq!(Arch::parse("sparc"), None);
        // `all` packages are in every binary-<arch> index: it is not a target.
        assert_eq!(Arch::parse("all"), None);
        assert_eq!(Arch::ARM64.oci_architecture(), "arm64");
        assert_eq!(Arch::ARM64.oci_variant(), Some("v8"));
        assert_eq!(Arch::ARM64.platform(), "linux/arm64/v8");
        assert_eq!(Arch::AMD64.platform(), "linux/amd64");
        assert_eq!(Arch::parse("i386").unwrap().oci_architecture(), "386");
    }

    #[test]
    fn the_table_is_sorted_and_every_name_round_trips() {
        let names: Vec<_> = Arch::all().map(Arch::name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for a in Arch::all() {
            assert_eq!(Arch::parse(a.name()), Some(a));
            assert_eq!(Arch::parse(&a.platform()), Some(a), "{}", a.platform());
            assert_eq!(Arch::from_triplet(a.triplet()), Some(a));
            assert_eq!(a.to_string(), a.name());
        }
        assert!(Arch::AMD64 < Arch::ARM64);
        assert_eq!(
            Arch::known(),
            "amd64, arm64, armel, armhf, i386, ppc64el, riscv64, s390x"
        );
    }

    #[test]
    fn choosing_the_architectures() {
        let req = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Arch::choose(&req(&["linux/arm64", "amd64", "arm64"]), &[]).unwrap(),
            [Arch::ARM64, Arch::AMD64]
        );
        assert_eq!(Arch::choose(&[], &[Arch::ARM64]).unwrap(), [Arch::ARM64]);
        let e = Arch::choose(&req(&["sparc"]), &[Arch::AMD64]).unwrap_err();
        assert!(e.starts_with("--arch sparc: unknown architecture"), "{e}");
        assert_eq!(Arch::list(&[Arch::AMD64, Arch::ARM64]), "amd64, arm64");
    }

    #[test]
    fn only_amd64_has_its_loader_in_lib64() {
        let lib64: Vec<_> = Arch::all().filter(|a| a.loader_in_lib64()).collect();
        assert_eq!(lib64, [Arch::AMD64]);
    }

    #[test]
    fn the_host_is_known_here() {
        let expected = match std::env::consts::ARCH {
            "x86_64" => Some(Arch::AMD64),
            "aarch64" => Some(Arch::ARM64),
            _ => return,
        };
        assert_eq!(Arch::host(), expected);
    }
}
