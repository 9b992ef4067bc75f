//! Test fixtures shared by the lock's modules: a two-architecture lock with inputs and
//! outputs, and the helpers to build and search its text. Test-only; nothing here
//! touches the file system.

use super::{ArchLock, IndexLock, Lock, Outputs, PackageLock, ReleaseLock, Sha256};
use crate::arch::Arch;

pub(super) fn h(c: char) -> Sha256 {
    Sha256::from_hex(&c.to_string().repeat(64)).unwrap()
}

pub(super) const UB: &str = "http://archive.ubuntu.com/ubuntu";
pub(super) const PORTS: &str = "http://ports.ubuntu.com/ubuntu-ports";

pub(super) fn pkg(
    arch: &str,
    name: &str,
    version: &str,
    suite: &str,
    base: &str,
    sha: char,
) -> PackageLock {
    PackageLock {
        version: version.into(),
        arch: arch.into(),
        suite: suite.into(),
        url: format!("{base}/pool/main/{name}_{version}_{arch}.deb"),
        size: 1000 + name.len() as u64,
        sha256: h(sha),
    }
}

fn arch_lock(arch: &str, base: &str, sha: [char; 4]) -> ArchLock {
    let mut a = ArchLock::default();
    a.releases.insert(
        format!("{base}/dists/noble/InRelease"),
        ReleaseLock {
            sha256: h('1'),
            date: Some("Thu, 25 Apr 2024 15:10:33 UTC".into()),
        },
    );
    a.releases.insert(
        format!("{base}/dists/noble-updates/InRelease"),
        ReleaseLock {
            sha256: h('2'),
            date: None,
        },
    );
    a.indexes.insert(
        format!("{base}/dists/noble/main/binary-{arch}/Packages.xz"),
        IndexLock {
            size: 1394124,
            sha256: h(sha[0]),
        },
    );
    a.packages.insert(
        "libc6".into(),
        pkg(arch, "libc6", "2.39-0ubuntu8", "noble", base, sha[1]),
    );
    a.packages.insert(
        "tzdata".into(),
        pkg(
            "all",
            "tzdata",
            "2024a-2ubuntu1",
            "noble-updates",
            base,
            sha[2],
        ),
    );
    a.outputs = Some(Outputs {
        layer_diff_id: h(sha[3]),
        layer_digest: h('d'),
        layer_size: 4242,
        config: h('e'),
        manifest: h('f'),
    });
    a
}

pub(super) fn sample() -> Lock {
    let mut lock = Lock::new(h('0'), 0, "noble-tiny");
    lock.tool = "compose 0.1.0".into();
    lock.archs
        .insert(Arch::AMD64, arch_lock("amd64", UB, ['3', '4', '5', '6']));
    lock.archs
        .insert(Arch::ARM64, arch_lock("arm64", PORTS, ['7', '8', '9', 'a']));
    lock.index = Some(h('b'));
    lock
}

pub(super) fn line_no(text: &str, prefix: &str) -> usize {
    text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
}
