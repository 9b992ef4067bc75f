//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/<target>/seed-*`) and the
//! fixed keyring of the `clearsigned` target (`fuzz/keyring.gpg`).
//!
//! A program, not a test (it writes into the source tree):
//!
//!     cargo run --example fuzz_seeds
//!
//! Seeds come from the hermetic fixture (tests/support: Release, Packages, InRelease and
//! `.deb` files) and from the real vectors in `../shared/data`: excerpts of real Release
//! bodies (every field, each multi-line field cut to a few lines, so no seed is a copy
//! of a vector and each stays far below 64 KiB), the real signature blocks of the
//! InRelease files around such an excerpt, `Packages` stanzas made from the control
//! files of the real `.deb` packages, and the paths and versions those packages hold.
//! Seeds derived from `../shared/data` go to `fuzz/seeds-shared/<target>/`, which git
//! ignores: the repository keeps no copy of those vectors, not even excerpts (pass that
//! directory as a second corpus to `cargo fuzz run`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::fs;
use std::path::{Path, PathBuf};

use compose::deb::{read_deb, DebError};
use sha2::{Digest, Sha256};
use support::*;

/// Largest seed written (the corpus must stay small).
const MAX_SEED: usize = 64 * 1024;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn shared_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("SKIPPED (real-vector seeds): ../shared/data not present");
        None
    }
}

fn seed(target: &str, name: &str, bytes: &[u8]) {
    assert!(
        bytes.len() <= MAX_SEED,
        "seed {target}/{name} is {} bytes",
        bytes.len()
    );
    // Anything derived from ../shared/data stays out of the repository.
    let tree = if name.starts_with("real-") {
        "seeds-shared"
    } else {
        "corpus"
    };
    let dir = fuzz_dir().join(tree).join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

/// The signed text of a clearsigned file (dash-unescaped) and its signature block.
fn split_inrelease(data: &[u8]) -> (String, String) {
    let text = std::str::from_utf8(data).expect("InRelease is UTF-8");
    let body_start = text.find("\n\n").expect("armor headers end") + 2;
    let sig_start = text
        .find("\n-----BEGIN PGP SIGNATURE-----")
        .expect("signature")
        + 1;
    let body: String = text[body_start..sig_start]
        .lines()
        .map(|l| l.strip_prefix("- ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    (body, text[sig_start..].to_string())
}

/// Every field of a deb822 text, each multi-line field cut to `keep` continuation lines.
fn excerpt(body: &str, keep: usize) -> String {
    let mut out = String::new();
    let mut continuation = 0;
    for line in body.lines() {
        if line.starts_with([' ', '\t']) {
            continuation += 1;
            if continuation > keep {
                continue;
            }
        } else {
            continuation = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn fixture_debs() -> Vec<DebSpec> {
    let lib = |member| {
        DebSpec::new("libfoo1", "1:1.2~rc1-3ubuntu1", "amd64", member)
            .file(
                "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.0",
                "libfoo\n",
                0o644,
            )
            .symlink("/usr/lib/x86_64-linux-gnu/libfoo.so.1", "libfoo.so.1.2.0")
            .hardlink(
                "/usr/lib/x86_64-linux-gnu/libfoo-hl.so",
                "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.0",
            )
            .dir("/usr/share/doc/libfoo1")
            .depends("libc6 (>= 2.34)")
    };
    vec![
        lib(Member::Zstd),
        lib(Member::Xz),
        lib(Member::Gz),
        DebSpec::new("tool", "2.0+dfsg-1", "all", Member::Gz)
            .file("/usr/bin/tool", "#!/bin/sh\necho tool\n", 0o4755)
            .symlink("/usr/bin/t", "/usr/bin/tool")
            .control_member("postinst", "#!/bin/sh\nexit 0\n", 0o755),
    ]
}

/// A `.deb` with uncompressed `control.tar` and `data.tar` members (dpkg accepts them),
/// so the fuzzer mutates tar headers directly.
fn plain_deb(spec: &DebSpec) -> Vec<u8> {
    let mut ar = ar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar", control_tar(spec)),
        ("data.tar", data_tar(spec)),
    ] {
        let mut h = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
        h.set_mode(0o100644);
        ar.append(&h, bytes.as_slice()).unwrap();
    }
    ar.into_inner().unwrap()
}

fn main() {
    // The key that signs the clearsigned seeds; its public half is the target's keyring.
    let key = TestKey::generate("compose fuzz seeds <fuzz@compose.invalid>");
    fs::write(fuzz_dir().join("keyring.gpg"), key.keyring_binary()).unwrap();
    let other = TestKey::generate("another key <other@compose.invalid>");

    // --- fixture repository: Release, Packages, InRelease, .deb --------------------
    let debs = fixture_debs();
    // One of each name in the repository (the libfoo1 variants share a file name).
    let suite = [&debs[0], &debs[3]].into_iter().fold(
        SuiteSpec::new("noble", &["main", "universe"], &["amd64", "arm64"]),
        |s, d| s.package("main", d.clone()),
    );
    let repo = Repo::build(&key, &[suite], IndexVariants::ALL);
    let release = repo.read("dists/noble/Release");
    seed("deb822", "fixture-Release", &release);
    seed(
        "clearsigned",
        "fixture-InRelease",
        &repo.read("dists/noble/InRelease"),
    );
    let packages = repo.read("dists/noble/main/binary-amd64/Packages");
    seed("deb822", "fixture-Packages", &packages);
    seed(
        "clearsigned",
        "fixture-InRelease-two-signers",
        &clearsign_with(&[&key, &other], &release, openpgp_sha512()),
    );
    seed(
        "clearsigned",
        "fixture-InRelease-unknown-key",
        &other.clearsign(&release),
    );
    let mut after = key.clearsign(b"Origin: x\n");
    after.extend_from_slice(b"\ntrailing text\n");
    seed("clearsigned", "fixture-text-after", &after);
    seed(
        "clearsigned",
        "fixture-dash-escaped",
        &key.clearsign(b"Origin: x\n-----BEGIN PGP SIGNATURE-----\n- x\n"),
    );
    for (i, d) in debs.iter().enumerate() {
        seed(
            "ar",
            &format!("fixture-{i}-{}", d.member.ext()),
            &build_deb(d),
        );
        seed("ar", &format!("fixture-{i}-plain"), &plain_deb(d));
        seed(
            "version",
            &format!("fixture-{i}"),
            format!("{}\n{}-0\n0:{}", d.version, d.version, d.version).as_bytes(),
        );
    }
    let text = std::str::from_utf8(&packages).unwrap();
    for stanza in text.split("\n\n").filter(|s| !s.trim().is_empty()).take(2) {
        seed(
            "deb822",
            &format!("fixture-stanza-{}", stanza.len()),
            stanza.as_bytes(),
        );
    }

    // --- manifests: the shipped examples and a fixture one -------------------------
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    for e in fs::read_dir(&manifests).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            seed("manifest", &name, &fs::read(&p).unwrap());
        }
    }
    let fixture = format!(
        "[image]\nname = \"fuzz\"\narchitectures = [\"amd64\", \"linux/arm64\"]\nuser = \"app\"\nworkdir = \"/srv\"\n\n{}\n\
         [package.libfoo1]\npaths = [\"/usr/lib/*/libfoo.so.*\"]\nexclude = [\"/usr/share/**\"]\n\n\
         [[user]]\nname = \"app\"\nuid = 1000\ngid = 1000\n\n\
         [[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\nmode = \"0644\"\n\n\
         [[dir]]\npath = \"/var/tmp\"\nmode = \"1777\"\n\n\
         [[symlink]]\npath = \"/usr/bin/sh\"\ntarget = \"dash\"\n",
        source_toml("http://127.0.0.1:1/ubuntu", &["noble"], &["main"], "keys/test.gpg")
    );
    seed("manifest", "fixture.toml", fixture.as_bytes());

    // --- paths and versions: edge cases --------------------------------------------
    for (i, p) in [
        "./",
        ".",
        "/",
        "./usr/lib/x86_64-linux-gnu/libc.so.6",
        "usr//lib/./x",
        "../etc/passwd",
        "./usr/../../etc/shadow",
        "/lib/x",
        "./bin",
        "a/b/..",
        "./...",
        "x\0y",
        "./lib64/",
    ]
    .iter()
    .enumerate()
    {
        seed("tar_paths", &format!("edge-{i}"), p.as_bytes());
    }
    seed("tar_paths", "edge-not-utf8", b"./usr/\xff\xfe/x");
    for (i, v) in [
        "1.0\n1.0~rc1\n1.0+b1",
        "1:0.9\n2.0\n0:2.0",
        "1.0-1\n1.0-1ubuntu1\n1.0-1~bpo1",
        "00001.002\n1.2\n1.02",
        "~\n~~\n\n",
        "1.0a\n1.0+\n1.0.",
        "2:1.0-1-1\n2:1.0-1\n2:1.0",
        "99999999999999999999999\n100000000000000000000000\n1",
        "a:1\n:1\n1:",
    ]
    .iter()
    .enumerate()
    {
        seed("version", &format!("edge-{i}"), v.as_bytes());
    }

    // --- the real vectors of ../shared/data ----------------------------------------
    let Some(data) = shared_data() else { return };
    for name in [
        "ubuntu/noble-InRelease",
        "debian/bookworm-InRelease",
        "debian/bullseye-11.1-InRelease",
    ] {
        let bytes = fs::read(data.join(name)).unwrap();
        let (body, signature) = split_inrelease(&bytes);
        let short = name.rsplit('/').next().unwrap();
        let ex = excerpt(&body, 12);
        seed(
            "deb822",
            &format!("real-{short}-Release-excerpt"),
            ex.as_bytes(),
        );
        // The real armor and signature block around the excerpt: the framing is
        // right, the signature is not (the text changed, and the key is not in the
        // target's keyring).
        let hash = std::str::from_utf8(&bytes)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap_or("Hash: SHA512")
            .to_string();
        let framed = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\n{hash}\n\n{}{signature}",
            excerpt(&body, 3)
        );
        seed(
            "clearsigned",
            &format!("real-{short}-framing"),
            framed.as_bytes(),
        );
    }
    let sid = fs::read_to_string(data.join("debian/sid-20240324-Release")).unwrap();
    seed(
        "deb822",
        "real-sid-Release-excerpt",
        excerpt(&sid, 12).as_bytes(),
    );

    let debs_dir = data.join("ubuntu/debs");
    let mut names: Vec<_> = fs::read_dir(&debs_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut versions = Vec::new();
    let mut stanzas = String::new();
    for p in names {
        let bytes = fs::read(&p).unwrap();
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        let mut paths = Vec::new();
        let control = read_deb(&bytes[..], &file, |e, _| -> Result<(), DebError> {
            paths.push(e.path.clone());
            Ok(())
        })
        .unwrap();
        let control = String::from_utf8(control.control).unwrap();
        // A Packages stanza as the archive would write it for this package.
        let (head, desc) = control.split_once("Description:").unwrap();
        let stanza = format!(
            "{head}Filename: pool/main/x/{file}\nSize: {}\nSHA256: {}\nDescription:{desc}",
            bytes.len(),
            hex::encode(Sha256::digest(&bytes))
        );
        stanzas.push_str(&stanza);
        stanzas.push('\n');
        if let Some(v) = control.lines().find_map(|l| l.strip_prefix("Version: ")) {
            versions.push(v.to_string());
        }
        let stem = file.split('_').next().unwrap();
        // As the tar stores them: `./usr/lib/…`.
        for (i, path) in [paths.get(1), paths.last()]
            .into_iter()
            .flatten()
            .enumerate()
        {
            seed(
                "tar_paths",
                &format!("real-{stem}-{i}"),
                format!(".{path}").as_bytes(),
            );
        }
    }
    seed("deb822", "real-debs-Packages", stanzas.as_bytes());
    seed("version", "real-debs", versions.join("\n").as_bytes());
}

fn openpgp_sha512() -> sequoia_openpgp::types::HashAlgorithm {
    sequoia_openpgp::types::HashAlgorithm::SHA512
}
