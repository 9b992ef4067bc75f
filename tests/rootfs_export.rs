//! `--rootfs DIR` over the hermetic fixture: the directory equals what a real OCI
//! consumer (`umoci unpack`) makes of the layer, hostile packages cannot make it write
//! outside DIR, and a user's directory is never replaced.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use compose::build::{build, BuildOptions, BuildResult};
use support::{DebSpec, Member, DEB_MTIME};

const ARCH: &str = "arm64";
const TRIPLET: &str = "aarch64-linux-gnu";
/// Before the packages' mtimes: every packaged entry is clamped to it.
const EPOCH: u64 = 1_700_000_000;

fn packages() -> Vec<DebSpec> {
    vec![
        DebSpec::new("libc6", "2.39-0ubuntu8", ARCH, Member::Zstd)
            .file(
                &format!("/lib/{TRIPLET}/libc.so.6"),
                b"libc bytes".to_vec(),
                0o755,
            )
            .copyright(),
        DebSpec::new("sutool", "1.0-1", ARCH, Member::Xz)
            .file("/usr/bin/su-tool", b"setuid tool".to_vec(), 0o4755)
            .file("/usr/bin/sg-tool", b"setgid tool".to_vec(), 0o2711)
            // One link sorting after the file, one before (tar order matters).
            .hardlink("/usr/bin/su-alias", "/usr/bin/su-tool")
            .hardlink("/usr/bin/a-alias", "/usr/bin/su-tool")
            .symlink("/usr/bin/tool", "su-tool")
            .symlink("/usr/bin/abs-tool", "/usr/bin/su-tool")
            .file("/usr/share/sutool/private", b"secret".to_vec(), 0o640)
            .copyright(),
        DebSpec::new("tzdata", "2024a-1", "all", Member::Gz)
            .file("/usr/share/zoneinfo/UTC", b"TZif utc".to_vec(), 0o644)
            .copyright(),
        // Hostile: a symlink out of the image, then a file "under" it.
        DebSpec::new("evil", "1", ARCH, Member::Gz)
            .symlink("/usr/lib/evil", "/tmp/compose-rootfs-outside")
            .file("/usr/lib/evil/planted", b"pwned".to_vec(), 0o644),
    ]
}

const MANIFEST_BODY: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]

[package.sutool]
paths = ["/usr/bin/**", "/usr/share/sutool/**"]

[package.tzdata]
paths = ["/usr/share/zoneinfo/**"]

[generate]
passwd = true

[[user]]
name = "app"
uid = 1002
gid = 1001
home = "/home/app"

[[group]]
name = "app"
gid = 1001

[[dir]]
path = "/tmp"
mode = "1777"

[[file]]
path = "/etc/motd"
text = "hello\n"
mode = "0600"
uid = 1002
gid = 1001

[[symlink]]
path = "/etc/localtime"
target = "/usr/share/zoneinfo/UTC"
"#;

/// The evil package's symlink and the file "under" it, with (first) and without
/// (second) the directory entry the data.tar also has for it.
const EVIL_BODIES: [&str; 2] = [
    "[package.evil]\npaths = [\"/usr/lib/evil\", \"/usr/lib/evil/**\"]\n",
    "[package.evil]\npaths = [\"/usr/lib/evil\", \"/usr/lib/evil/planted\"]\n",
];

struct Fixture {
    ws: support::Workspace,
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let ws = support::Workspace::with_packages("noble", &[ARCH], |_| packages());
        let dir = ws.dir.clone();
        Fixture { ws, dir }
    }

    fn manifest(&self, body: &str) -> PathBuf {
        self.ws.manifest("fixture", ARCH, &["noble"], body)
    }

    fn opts(&self, body: &str) -> BuildOptions {
        BuildOptions {
            manifest: self.manifest(body),
            output: Some(self.dir.join("out")),
            cache: Some(self.dir.join("cache")),
            rootfs: Some(self.dir.join("rootfs")),
            quiet: true,
            epoch: EPOCH,
            ..BuildOptions::default()
        }
    }

    fn build(&self, body: &str) -> Result<BuildResult, compose::Error> {
        build(&self.opts(body))
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        == 0
}

/// Everything of a directory tree that an image defines, by relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    kind: &'static str,
    mode: u32,
    owner: Option<(u32, u32)>,
    mtime: i64,
    link: Option<PathBuf>,
    content: Option<Vec<u8>>,
}

fn walk(root: &Path, owners: bool) -> (BTreeMap<String, Seen>, Vec<Vec<String>>) {
    fn go(
        root: &Path,
        rel: &str,
        owners: bool,
        out: &mut BTreeMap<String, Seen>,
        inodes: &mut HashMap<u64, Vec<String>>,
    ) {
        let path = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let m = std::fs::symlink_metadata(&path).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            "other"
        };
        out.insert(
            format!("/{rel}"),
            Seen {
                kind,
                // A symlink's mode means nothing on Linux.
                mode: if ft.is_symlink() {
                    0
                } else {
                    m.mode() & 0o7777
                },
                owner: owners.then(|| (m.uid(), m.gid())),
                mtime: m.mtime(),
                link: ft.is_symlink().then(|| std::fs::read_link(&path).unwrap()),
                content: ft.is_file().then(|| std::fs::read(&path).unwrap()),
            },
        );
        if ft.is_file() {
            inodes.entry(m.ino()).or_default().push(format!("/{rel}"));
        }
        if ft.is_dir() {
            let mut names: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            for n in names {
                let child = if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                };
                go(root, &child, owners, out, inodes);
            }
        }
    }
    let mut out = BTreeMap::new();
    let mut inodes = HashMap::new();
    go(root, "", owners, &mut out, &mut inodes);
    let mut groups: Vec<Vec<String>> = inodes.into_values().filter(|g| g.len() > 1).collect();
    for g in &mut groups {
        g.sort();
    }
    groups.sort();
    (out, groups)
}

#[test]
fn the_rootfs_equals_umoci_unpack_of_the_layout() {
    let f = Fixture::new();
    let result = f.build(MANIFEST_BODY).unwrap();
    let summary = result.rootfs.clone().expect("a rootfs summary");
    let rootfs = f.dir.join("rootfs");
    assert_eq!(summary.dir, rootfs);
    assert_eq!(summary.owners_set, is_root());
    assert_eq!(summary.hardlinks, 2);
    // One line for the root filesystem, with its counts.
    let text = compose::summary::summary(&result);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&rootfs.display().to_string()))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].starts_with("wrote root filesystem ") && lines[0].contains(" 2 hard links, "),
        "{text}"
    );

    let owners = is_root();
    let (ours, our_links) = walk(&rootfs, owners);

    // What compose itself promises, independently of umoci.
    let get = |p: &str| ours.get(p).unwrap_or_else(|| panic!("{p} missing"));
    assert_eq!(get("/usr/bin/su-tool").mode, 0o4755);
    assert_eq!(get("/usr/bin/sg-tool").mode, 0o2711);
    assert_eq!(get("/usr/share/sutool/private").mode, 0o640);
    assert_eq!(get("/tmp").mode, 0o1777);
    assert_eq!(get("/home/app").mode, 0o700);
    assert_eq!(get("/etc/motd").mode, 0o600);
    assert_eq!(
        get("/usr/bin/tool").link.as_deref(),
        Some(Path::new("su-tool"))
    );
    assert_eq!(get("/lib").link.as_deref(), Some(Path::new("usr/lib")));
    assert_eq!(
        get(&format!("/usr/lib/{TRIPLET}/libc.so.6"))
            .content
            .as_deref(),
        Some(&b"libc bytes"[..])
    );
    assert_eq!(
        our_links,
        vec![vec![
            "/usr/bin/a-alias".to_string(),
            "/usr/bin/su-alias".to_string(),
            "/usr/bin/su-tool".to_string()
        ]]
    );
    const { assert!(DEB_MTIME > EPOCH) };
    for (path, seen) in &ours {
        assert!(
            seen.mtime <= EPOCH as i64,
            "{path}: mtime {} not clamped",
            seen.mtime
        );
    }
    assert_eq!(get("/usr/bin/su-tool").mtime, EPOCH as i64);
    assert_eq!(get("/usr/bin/tool").mtime, EPOCH as i64);
    assert_eq!(get("/usr/share/zoneinfo").mtime, EPOCH as i64);
    if owners {
        assert_eq!(get("/home/app").owner, Some((1002, 1001)));
        assert_eq!(get("/etc/motd").owner, Some((1002, 1001)));
        assert_eq!(get("/usr/bin/su-tool").owner, Some((0, 0)));
    }

    // The same as a real OCI consumer unpacks the layer.
    let bundle = f.dir.join("bundle");
    let mut cmd = Command::new("umoci");
    cmd.arg("unpack");
    if !owners {
        cmd.arg("--rootless");
    }
    let run = match cmd
        .args([
            "--image",
            &format!("{}:fixture", f.dir.join("out").display()),
        ])
        .arg(&bundle)
        .output()
    {
        Ok(run) => run,
        Err(_) => {
            eprintln!("SKIPPED umoci comparison: umoci is not installed (apt-get install umoci)");
            return;
        }
    };
    assert!(
        run.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (theirs, their_links) = walk(&bundle.join("rootfs"), owners);
    let our_paths: Vec<_> = ours.keys().collect();
    let their_paths: Vec<_> = theirs.keys().collect();
    assert_eq!(our_paths, their_paths, "the same set of paths");
    eprintln!(
        "compared {} paths with umoci: {our_paths:?}",
        our_paths.len()
    );
    for (path, seen) in &ours {
        let mut theirs = theirs.get(path).unwrap();
        let root;
        if path == "/" {
            // The layer has no entry for the root: umoci's rootfs directory keeps the
            // time it was made at.
            root = Seen {
                mtime: seen.mtime,
                ..theirs.clone()
            };
            theirs = &root;
        }
        assert_eq!(seen, theirs, "{path}");
    }
    assert_eq!(our_links, their_links, "hard-link groups");
}

/// docs/errors.md: "a symlink chain that would make --rootfs write outside its directory".
#[test]
fn a_package_symlink_leading_out_cannot_make_rootfs_write_outside() {
    let outside = Path::new("/tmp/compose-rootfs-outside");
    let _ = std::fs::remove_dir_all(outside);
    let f = Fixture::new();
    for evil in EVIL_BODIES {
        let body = format!("{MANIFEST_BODY}{evil}");
        let err = f.build(&body).unwrap_err();
        let msg = err.to_string();
        // The tree refuses it (a directory where the link is, or an entry under the
        // link), before anything is written.
        assert!(
            msg.contains("package evil gives /usr/lib/evil twice"),
            "{msg}"
        );
        assert!(msg.contains("different types"), "{msg}");
        assert_eq!(err.exit_code(), 1);
        assert!(!outside.exists(), "something was written outside");
        assert!(!f.dir.join("rootfs").exists());
        assert!(!f.dir.join("out").exists());
        let left: Vec<String> = std::fs::read_dir(&f.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "temporary directories left: {left:?}");
    }
}

#[test]
fn a_non_empty_unrelated_directory_is_refused_untouched_and_no_image_is_written() {
    let f = Fixture::new();
    let rootfs = f.dir.join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    std::fs::write(rootfs.join("thesis.tex"), b"years of work").unwrap();
    let err = f.build(MANIFEST_BODY).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("not empty") && msg.contains("rootfs"), "{msg}");
    assert_eq!(err.exit_code(), 1);
    assert_eq!(
        std::fs::read(rootfs.join("thesis.tex")).unwrap(),
        b"years of work"
    );
    assert_eq!(std::fs::read_dir(&rootfs).unwrap().count(), 1);
    assert!(!f.dir.join("out").exists());

    // Emptied, it is used; a rebuild replaces compose's own root filesystem.
    std::fs::remove_file(rootfs.join("thesis.tex")).unwrap();
    let first = f.build(MANIFEST_BODY).unwrap();
    assert!(rootfs.join("etc/motd").is_file());
    let second = f.build(MANIFEST_BODY).unwrap();
    assert_eq!(first.digest, second.digest);
    assert!(rootfs.join("etc/motd").is_file());
}

#[test]
fn rootfs_with_several_architectures_is_a_usage_error() {
    let f = Fixture::new();
    let mut opts = f.opts(MANIFEST_BODY);
    opts.archs = vec!["arm64".into(), "amd64".into()];
    let err = build(&opts).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--rootfs"), "{err}");
    assert!(!f.dir.join("rootfs").exists());
    assert!(!f.dir.join("out").exists());
}

#[test]
fn cli_rootfs_flag() {
    let f = Fixture::new();
    let manifest = f.manifest(MANIFEST_BODY);
    let run = Command::new(env!("CARGO_BIN_EXE_compose"))
        .arg(&manifest)
        .arg("--output")
        .arg(f.dir.join("out"))
        .arg("--cache")
        .arg(f.dir.join("cache"))
        .arg("--rootfs")
        .arg(f.dir.join("rootfs"))
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8(run.stdout)
        .unwrap()
        .trim_end()
        .starts_with("sha256:"));
    assert_eq!(
        std::fs::read(f.dir.join("rootfs/etc/motd")).unwrap(),
        b"hello\n"
    );

    let run = Command::new(env!("CARGO_BIN_EXE_compose"))
        .arg(&manifest)
        .args(["--arch", "arm64", "--arch", "amd64", "--rootfs"])
        .arg(f.dir.join("rootfs2"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
}
