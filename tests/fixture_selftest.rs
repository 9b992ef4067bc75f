//! Proves the test fixture is real: its signatures satisfy `gpgv`, its packages satisfy
//! `dpkg-deb`, its indexes satisfy `xz`/`gzip`, and its server speaks real HTTP.
//! A host tool that is missing is reported as "SKIPPED: <tool> not installed".

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use support::*;

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        eprintln!("SKIPPED: {tool} not installed");
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    out
}

fn ok(cmd: &mut Command) -> Vec<u8> {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sample_suites() -> Vec<SuiteSpec> {
    let libfoo = |arch: &str, member| {
        DebSpec::new("libfoo1", "1.2-3ubuntu1", arch, member)
            .file(
                &format!(
                    "/usr/lib/{}-linux-gnu/libfoo.so.1.2.0",
                    if arch == "amd64" { "x86_64" } else { "aarch64" }
                ),
                format!("libfoo for {arch}\n"),
                0o644,
            )
            .symlink(
                &format!(
                    "/usr/lib/{}-linux-gnu/libfoo.so.1",
                    if arch == "amd64" { "x86_64" } else { "aarch64" }
                ),
                "libfoo.so.1.2.0",
            )
            .depends("libc6 (>= 2.34)")
            .copyright()
    };
    let noble = SuiteSpec::new("noble", &["main", "universe"], &["amd64", "arm64"])
        .package("main", libfoo("amd64", Member::Zstd))
        .package("main", libfoo("arm64", Member::Zstd))
        .package(
            "main",
            DebSpec::new("tzdata-lite", "2024a-1", "all", Member::Xz)
                .file(
                    "/usr/share/zoneinfo/Etc/UTC",
                    b"TZif2 fake\n".to_vec(),
                    0o644,
                )
                .hardlink("/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/Etc/UTC")
                .copyright(),
        )
        .package(
            "universe",
            DebSpec::new("oldtool", "1:0.9-1", "amd64", Member::Gz).file(
                "/usr/bin/oldtool",
                b"#!/bin/sh\necho old\n".to_vec(),
                0o755,
            ),
        );
    let updates = SuiteSpec::new("noble-updates", &["main"], &["amd64", "arm64"])
        .package("main", libfoo("amd64", Member::Zstd))
        .package(
            "main",
            DebSpec::new("libfoo1", "1.2-3ubuntu1.1", "arm64", Member::Zstd).file(
                "/usr/lib/aarch64-linux-gnu/libfoo.so.1.2.0",
                b"patched\n".to_vec(),
                0o644,
            ),
        );
    vec![noble, updates]
}

fn gpgv(home: &Path, keyring: &Path, files: &[&Path]) -> Output {
    let mut c = Command::new("gpgv");
    c.env("GNUPGHOME", home)
        .arg("--status-fd")
        .arg("1")
        .arg("--keyring")
        .arg(keyring)
        .args(files);
    run(&mut c)
}

#[test]
fn signatures_satisfy_gpgv() {
    let key = TestKey::generate("Compose Test Archive <archive@compose.invalid>");
    let repo = Repo::build(&key, &sample_suites(), IndexVariants::ALL);
    let work = tempfile::tempdir().unwrap();
    let keyring = write_keyring(work.path(), "archive.gpg", &key);

    // The InRelease body is the Release file, byte for byte, with Hash: SHA512.
    for suite in ["noble", "noble-updates"] {
        let release = repo.read(&format!("dists/{suite}/Release"));
        let inrelease = String::from_utf8(repo.read(&format!("dists/{suite}/InRelease"))).unwrap();
        let body = inrelease
            .strip_prefix("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n")
            .expect("clearsign header with Hash: SHA512");
        let (body, sig) = body
            .split_once("\n-----BEGIN PGP SIGNATURE-----")
            .expect("signature block");
        assert_eq!(format!("{body}\n").as_bytes(), &release[..]);
        assert!(sig.trim_end().ends_with("-----END PGP SIGNATURE-----"));
        let gpg = repo.read(&format!("dists/{suite}/Release.gpg"));
        assert!(gpg.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
    }

    // The armored keyring is the binary one, armored.
    assert!(key
        .keyring_armored()
        .starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    if have("gpg") {
        let asc = write_keyring(work.path(), "archive.asc", &key);
        let dearmored = ok(Command::new("gpg")
            .env("GNUPGHOME", work.path())
            .arg("--dearmor")
            .arg("--output")
            .arg("-")
            .arg(&asc));
        assert_eq!(dearmored, key.keyring_binary());
    }

    if !have("gpgv") {
        return;
    }
    let home = work.path();
    let fpr = key.signing_fingerprint();
    for suite in ["noble", "noble-updates"] {
        let out = gpgv(
            home,
            &keyring,
            &[&repo.path(&format!("dists/{suite}/InRelease"))],
        );
        let status = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "gpgv InRelease: {status}");
        assert!(status.contains(&format!("VALIDSIG {fpr}")), "{status}");
        let out = gpgv(
            home,
            &keyring,
            &[
                &repo.path(&format!("dists/{suite}/Release.gpg")),
                &repo.path(&format!("dists/{suite}/Release")),
            ],
        );
        assert!(
            out.status.success(),
            "gpgv Release.gpg: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Tampering: a flipped byte in Release breaks Release.gpg.
    repo.flip_byte("dists/noble/Release", 10);
    let out = gpgv(
        home,
        &keyring,
        &[
            &repo.path("dists/noble/Release.gpg"),
            &repo.path("dists/noble/Release"),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("BADSIG"));
    repo.flip_byte("dists/noble/Release", 10);

    // Valid-Until in the past, re-signed: still a good signature, field present.
    let past = SystemTime::now() - Duration::from_secs(3600);
    repo.set_valid_until("noble", past);
    let release = String::from_utf8(repo.read("dists/noble/Release")).unwrap();
    assert!(release.contains(&format!("\nValid-Until: {}\n", rfc2822(past))));
    assert!(gpgv(home, &keyring, &[&repo.path("dists/noble/InRelease")])
        .status
        .success());

    // Re-signed by a stranger: no good signature from our keyring.
    let stranger = TestKey::generate("Mallory <mallory@compose.invalid>");
    repo.resign("noble", &stranger);
    let out = gpgv(home, &keyring, &[&repo.path("dists/noble/InRelease")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("NO_PUBKEY"));

    // SHA-1 clearsigning (for policy tests): a real signature that gpgv 2.2 still checks.
    let sha1 = key.clearsign_with_hash(b"Origin: x\n", sequoia_openpgp::types::HashAlgorithm::SHA1);
    assert!(sha1.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA1\n\n"));
    let f = work.path().join("sha1-InRelease");
    std::fs::write(&f, &sha1).unwrap();
    let out = gpgv(home, &keyring, &[&f]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("VALIDSIG"));

    // Two signatures, one unknown: gpgv sees one good signature (apt accepts that).
    repo.resign_with("noble", &[&stranger, &key]);
    let out = gpgv(home, &keyring, &[&repo.path("dists/noble/InRelease")]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains(&format!("VALIDSIG {fpr}")), "{status}");
    assert!(status.contains("NO_PUBKEY"), "{status}");
}

#[test]
fn release_hashes_match_published_indexes() {
    let key = TestKey::generate("Compose Test Archive <archive@compose.invalid>");
    let repo = Repo::build(&key, &sample_suites(), IndexVariants::ALL);
    let release = String::from_utf8(repo.read("dists/noble/Release")).unwrap();
    for field in [
        "Origin: ",
        "Label: ",
        "Suite: noble\n",
        "Codename: noble\n",
        "Version: ",
        "Date: ",
        "Architectures: amd64 arm64\n",
        "Components: main universe\n",
        "Description: ",
        "MD5Sum:\n",
        "SHA256:\n",
    ] {
        assert!(
            release.contains(field),
            "Release lacks {field:?}:\n{release}"
        );
    }
    let updates = String::from_utf8(repo.read("dists/noble-updates/Release")).unwrap();
    assert!(updates.contains("Suite: noble-updates\nVersion: 24.04\nCodename: noble\n"));
    let sha_list = release.split("SHA256:\n").nth(1).unwrap();
    let mut listed = 0;
    for line in sha_list.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let bytes = repo.read(&format!("dists/noble/{}", parts[2]));
        assert_eq!(
            parts[0],
            hex::encode(Sha256::digest(&bytes)),
            "{}",
            parts[2]
        );
        assert_eq!(parts[1].parse::<usize>().unwrap(), bytes.len());
        listed += 1;
    }
    // 2 components x 2 archs x 3 variants
    assert_eq!(listed, 12);

    // Packages stanzas point at the pool files with their exact size and hash.
    let packages = String::from_utf8(repo.read("dists/noble/main/binary-arm64/Packages")).unwrap();
    assert!(packages.ends_with("\n\n"));
    let tz = repo.package("tzdata-lite", "arm64");
    assert_eq!(tz.arch, "all");
    assert!(
        packages.contains(&tz.stanza),
        "all-arch package in arm64 index"
    );
    let amd64 = String::from_utf8(repo.read("dists/noble/main/binary-amd64/Packages")).unwrap();
    assert!(
        amd64.contains(&tz.stanza),
        "all-arch package in amd64 index"
    );
    let foo = repo.package_in("noble", "libfoo1", "arm64");
    assert_eq!(
        foo.filename,
        "pool/main/libf/libfoo1/libfoo1_1.2-3ubuntu1_arm64.deb"
    );
    let deb = repo.read(&foo.filename);
    assert_eq!(deb.len() as u64, foo.size);
    assert_eq!(hex::encode(Sha256::digest(&deb)), foo.sha256);
    assert!(packages.contains(&format!("Filename: {}\nSize: {}\n", foo.filename, foo.size)));
    assert!(packages.contains(&format!("SHA256: {}\n", foo.sha256)));
    // The epoch is in Version but not in the file name.
    let old = repo.package("oldtool", "amd64");
    assert_eq!(old.version, "1:0.9-1");
    assert_eq!(
        old.filename,
        "pool/universe/o/oldtool/oldtool_0.9-1_amd64.deb"
    );
    // Same name in two suites: package_in tells them apart.
    let upd = repo.package_in("noble-updates", "libfoo1", "arm64");
    assert_eq!(upd.version, "1.2-3ubuntu1.1");

    // rehash_release: an edited Packages file gets a consistent, re-signed Release.
    let rel = "dists/noble/main/binary-amd64/Packages";
    let mut edited = repo.read(rel);
    edited.extend_from_slice(b"Package: extra\nVersion: 1\nArchitecture: amd64\n\n");
    repo.write(rel, &edited);
    repo.rehash_release("noble");
    let release = String::from_utf8(repo.read("dists/noble/Release")).unwrap();
    let sha = hex::encode(Sha256::digest(&edited));
    assert!(release.contains(&format!(
        " {sha} {:>16} main/binary-amd64/Packages\n",
        edited.len()
    )));
    if have("gpgv") {
        let work = tempfile::tempdir().unwrap();
        let keyring = write_keyring(work.path(), "k.gpg", &key);
        assert!(gpgv(
            work.path(),
            &keyring,
            &[&repo.path("dists/noble/InRelease")]
        )
        .status
        .success());
    }
}

#[test]
fn compressed_indexes_decode_with_host_tools() {
    let key = TestKey::generate("Compose Test Archive <archive@compose.invalid>");
    let repo = Repo::build(&key, &sample_suites(), IndexVariants::ALL);
    for dir in [
        "dists/noble/main/binary-amd64",
        "dists/noble/main/binary-arm64",
        "dists/noble/universe/binary-arm64", // empty index
        "dists/noble-updates/main/binary-arm64",
    ] {
        let plain = repo.read(&format!("{dir}/Packages"));
        let xz = repo.path(&format!("{dir}/Packages.xz"));
        let gz = repo.path(&format!("{dir}/Packages.gz"));
        if have("xz") {
            assert_eq!(ok(Command::new("xz").arg("-dc").arg(&xz)), plain, "{dir}");
            let list =
                String::from_utf8(ok(Command::new("xz").args(["--list", "--robot"]).arg(&xz)))
                    .unwrap();
            let totals = list
                .lines()
                .find(|l| l.starts_with("totals\t"))
                .expect("xz --list totals");
            assert_eq!(
                totals.split('\t').nth(1),
                Some("2"),
                "two xz streams: {list}"
            );
        }
        if have("gzip") {
            assert_eq!(ok(Command::new("gzip").arg("-dc").arg(&gz)), plain, "{dir}");
        }
    }
    // The xz split is at a stanza boundary: the first stream decodes to whole stanzas.
    let two = repo.read("dists/noble/main/binary-amd64/Packages.xz");
    let mut first = Vec::new();
    std::io::copy(&mut liblzma::read::XzDecoder::new(&two[..]), &mut first).unwrap();
    let plain = repo.read("dists/noble/main/binary-amd64/Packages");
    assert!(!first.is_empty() && first.len() < plain.len());
    assert!(first.ends_with(b"\n\n"));

    // Variants: only what is asked for is published and listed.
    let xz_only = Repo::build(&key, &sample_suites(), IndexVariants::XZ_ONLY);
    assert!(!xz_only
        .path("dists/noble/main/binary-amd64/Packages")
        .exists());
    assert!(!xz_only
        .path("dists/noble/main/binary-amd64/Packages.gz")
        .exists());
    let release = String::from_utf8(xz_only.read("dists/noble/Release")).unwrap();
    assert!(release.contains("main/binary-amd64/Packages.xz\n"));
    assert!(!release.contains("main/binary-amd64/Packages\n"));
    assert!(!release.contains("main/binary-amd64/Packages.gz\n"));
}

fn rich_spec(member: Member) -> DebSpec {
    let long_dir = format!("/usr/share/{}", "very-long-directory-name/".repeat(5));
    DebSpec::new("libbar2", "2.0-1", "amd64", member)
        .file(
            "/usr/lib/x86_64-linux-gnu/libbar.so.2.0.0",
            vec![0x7fu8; 5000],
            0o644,
        )
        .symlink("/usr/lib/x86_64-linux-gnu/libbar.so.2", "libbar.so.2.0.0")
        .file("/usr/bin/bar", b"#!/bin/sh\nexit 0\n".to_vec(), 0o755)
        .hardlink("/usr/bin/bar-alias", "/usr/bin/bar")
        .dir("/var/lib/bar")
        .file(
            &format!("{long_dir}long-file-name.txt"),
            b"long\n".to_vec(),
            0o644,
        )
        .symlink(
            "/usr/share/bar-long",
            &format!("{long_dir}long-file-name.txt"),
        )
        .depends("libc6 (>= 2.34), libfoo1")
        .control_field("Multi-Arch", "same")
        .copyright()
}

#[test]
fn debs_satisfy_dpkg_deb() {
    for member in [Member::Zstd, Member::Xz, Member::Gz] {
        let spec = rich_spec(member);
        let bytes = build_deb(&spec);
        assert_eq!(bytes, build_deb(&spec), "deterministic bytes");
        assert!(bytes.starts_with(b"!<arch>\ndebian-binary   "));
        let work = tempfile::tempdir().unwrap();
        let deb = work.path().join(spec.file_name());
        std::fs::write(&deb, &bytes).unwrap();

        if have("ar") {
            let members = String::from_utf8(ok(Command::new("ar").arg("t").arg(&deb))).unwrap();
            let ext = member.ext();
            assert_eq!(
                members,
                format!("debian-binary\ncontrol.tar.{ext}\ndata.tar.{ext}\n")
            );
        }
        if !have("dpkg-deb") {
            continue;
        }
        let info = String::from_utf8(ok(Command::new("dpkg-deb").arg("--info").arg(&deb))).unwrap();
        assert!(info.contains(" Package: libbar2\n"), "{info}");
        assert!(
            info.contains(" Depends: libc6 (>= 2.34), libfoo1\n"),
            "{info}"
        );
        let field = ok(Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg("Version"));
        assert_eq!(field, b"2.0-1\n");
        let control = ok(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("control"));
        assert_eq!(control, spec.control_text().as_bytes());

        let listing = String::from_utf8(ok(Command::new("dpkg-deb").arg("-c").arg(&deb))).unwrap();
        for want in [
            "drwxr-xr-x root/root         0 2024-04-20 00:00 ./\n",
            " ./usr/lib/x86_64-linux-gnu/\n",
            "-rw-r--r-- root/root      5000 2024-04-20 00:00 ./usr/lib/x86_64-linux-gnu/libbar.so.2.0.0\n",
            " ./usr/lib/x86_64-linux-gnu/libbar.so.2 -> libbar.so.2.0.0\n",
            "-rwxr-xr-x root/root        17 2024-04-20 00:00 ./usr/bin/bar\n",
            " ./usr/bin/bar-alias link to ./usr/bin/bar\n",
            " ./var/lib/bar/\n",
            "long-file-name.txt\n",
        ] {
            assert!(listing.contains(want), "{member:?}: {want:?} not in\n{listing}");
        }

        // Extract and compare bytes, links and modes.
        let root = work.path().join("root");
        ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
        let so = root.join("usr/lib/x86_64-linux-gnu/libbar.so.2.0.0");
        assert_eq!(std::fs::read(&so).unwrap(), vec![0x7fu8; 5000]);
        assert_eq!(
            std::fs::read_link(root.join("usr/lib/x86_64-linux-gnu/libbar.so.2")).unwrap(),
            Path::new("libbar.so.2.0.0")
        );
        use std::os::unix::fs::MetadataExt;
        let a = std::fs::metadata(root.join("usr/bin/bar")).unwrap();
        let b = std::fs::metadata(root.join("usr/bin/bar-alias")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard link");
        assert_eq!(a.mode() & 0o7777, 0o755);
        assert!(root.join("var/lib/bar").is_dir());
        assert!(root.join("usr/share/doc/libbar2/copyright").is_file());

        // md5sums verify against the extracted tree.
        let ctrl = work.path().join("ctrl");
        ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctrl));
        let md5sums = std::fs::read(ctrl.join("md5sums")).unwrap();
        assert_eq!(md5sums, spec.md5sums_text().as_bytes());
        if have("md5sum") {
            ok(Command::new("md5sum")
                .arg("--quiet")
                .arg("-c")
                .arg(ctrl.join("md5sums"))
                .current_dir(&root));
        }
    }
}

#[test]
fn zstd_members_decode_with_zstd_tool() {
    // dpkg-deb above already reads zstd members when it supports them; check the
    // member with the reference zstd tool too.
    if !have("zstd") || !have("ar") || !have("tar") {
        return;
    }
    let spec = rich_spec(Member::Zstd);
    let work = tempfile::tempdir().unwrap();
    let deb = work.path().join("x.deb");
    std::fs::write(&deb, build_deb(&spec)).unwrap();
    ok(Command::new("ar")
        .arg("x")
        .arg(&deb)
        .current_dir(work.path()));
    let tar = ok(Command::new("zstd")
        .args(["-dc", "data.tar.zst"])
        .current_dir(work.path()));
    assert_eq!(tar, data_tar(&spec));
    std::fs::write(work.path().join("data.tar"), &tar).unwrap();
    let names = String::from_utf8(ok(Command::new("tar")
        .args(["-tf", "data.tar"])
        .current_dir(work.path())))
    .unwrap();
    assert!(names.starts_with("./\n./usr/\n"), "{names}");
}

#[test]
fn server_serves_exact_bytes_and_404() {
    let key = TestKey::generate("Compose Test Archive <archive@compose.invalid>");
    let repo = Repo::build(&key, &sample_suites(), IndexVariants::ALL);
    let server = Server::start(&repo);
    assert!(server.url.starts_with("http://127.0.0.1:"));

    let (status, body) = http_get(&server.url_of("dists/noble/InRelease"));
    assert_eq!(status, 200);
    assert_eq!(body, repo.read("dists/noble/InRelease"));
    let foo = repo.package("libfoo1", "amd64");
    let foo = repo.package_in(&foo.suite, "libfoo1", "amd64");
    let (status, body) = http_get(&server.url_of(&foo.filename));
    assert_eq!(status, 200);
    assert_eq!(hex::encode(Sha256::digest(&body)), foo.sha256);

    assert_eq!(http_get(&server.url_of("dists/noble/nope")).0, 404);
    assert_eq!(
        http_get(&server.url_of("dists/noble")).0,
        404,
        "directories"
    );
    assert_eq!(http_get(&format!("{}/../etc/passwd", server.url)).0, 404);
    assert_eq!(
        http_get(&format!("{}/%2e%2e/etc/passwd", server.url)).0,
        404
    );

    // Removal and fault injection.
    repo.remove("dists/noble/main/binary-amd64/Packages");
    assert_eq!(
        http_get(&server.url_of("dists/noble/main/binary-amd64/Packages")).0,
        404
    );
    server.set_status("dists/noble/Release", 500);
    assert_eq!(http_get(&server.url_of("dists/noble/Release")).0, 500);
    server.clear_status("dists/noble/Release");
    assert_eq!(http_get(&server.url_of("dists/noble/Release")).0, 200);

    let reqs = server.requests();
    assert_eq!(reqs[0], "/dists/noble/InRelease");
    assert_eq!(reqs[1], format!("/{}", foo.filename));
    assert_eq!(server.hits("dists/noble/Release"), 2);
    assert!(server.log().iter().any(|s| s.status == 404));

    if have("curl") {
        let out = ok(Command::new("curl")
            .args(["-sS", "--fail"])
            .arg(server.url_of("dists/noble-updates/Release.gpg")));
        assert_eq!(out, repo.read("dists/noble-updates/Release.gpg"));
        let head = String::from_utf8(ok(Command::new("curl")
            .args(["-sS", "-I"])
            .arg(server.url_of("dists/noble/Release"))))
        .unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let len = repo.read("dists/noble/Release").len();
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-length: {len}")),
            "{head}"
        );
    }

    // Dropping the server frees the port.
    let url = server.url.clone();
    drop(server);
    let addr = url.strip_prefix("http://").unwrap();
    // tiny_http's accept thread closes the socket asynchronously, within milliseconds.
    let closed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        std::net::TcpStream::connect(addr).is_err()
    });
    assert!(closed, "server stopped");
}

#[test]
fn serve_dir_and_manifest_helpers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
    let server = Server::serve_dir(dir.path());
    assert_eq!(http_get(&server.url_of("a.txt")), (200, b"hello".to_vec()));
    let key = TestKey::generate("k <k@compose.invalid>");
    let source = source_toml(&server.url, &["noble", "noble-updates"], &["main"], "k.gpg");
    assert!(source.contains("suites = [\"noble\", \"noble-updates\"]\n"));
    let text = format!("[image]\nname = \"t\"\n\n{source}");
    assert!(text.parse::<toml::Table>().is_ok(), "{text}");
    let manifest = write_manifest(dir.path(), &text);
    assert_eq!(manifest, dir.path().join("compose.toml"));
    let kr = write_keyring(dir.path(), "keyring.gpg", &key);
    assert_eq!(std::fs::read(kr).unwrap(), key.keyring_binary());
}

#[test]
fn release_dates_are_rfc2822() {
    let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    assert_eq!(rfc2822(t(0)), "Thu, 01 Jan 1970 00:00:00 UTC");
    assert_eq!(rfc2822(t(951_782_400)), "Tue, 29 Feb 2000 00:00:00 UTC");
    assert_eq!(rfc2822(t(1_783_764_997)), "Sat, 11 Jul 2026 10:16:37 UTC");
    assert_eq!(rfc2822(t(1_783_736_197)), "Sat, 11 Jul 2026 02:16:37 UTC");
}

/// Verifies a clearsigned file with sequoia (the library compose uses) and returns the
/// signed text and the fingerprints of the keys that made good signatures.
fn sequoia_verify(keyring: &[u8], signed: &[u8]) -> (Vec<u8>, Vec<String>) {
    use openpgp::parse::stream::{
        MessageLayer, MessageStructure, VerificationHelper, VerifierBuilder,
    };
    use openpgp::parse::Parse;
    use sequoia_openpgp as openpgp;
    use std::io::Read;

    struct Helper {
        certs: Vec<openpgp::Cert>,
        good: Vec<String>,
    }
    impl VerificationHelper for Helper {
        fn get_certs(&mut self, _: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<openpgp::Cert>> {
            Ok(self.certs.clone())
        }
        fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
            for layer in structure {
                if let MessageLayer::SignatureGroup { results } = layer {
                    for r in results.into_iter().flatten() {
                        self.good.push(r.ka.key().fingerprint().to_hex());
                    }
                }
            }
            if self.good.is_empty() {
                Err(anyhow::anyhow!("no good signature"))
            } else {
                Ok(())
            }
        }
    }
    let certs = openpgp::cert::CertParser::from_bytes(keyring)
        .unwrap()
        .collect::<openpgp::Result<Vec<_>>>()
        .unwrap();
    let policy = openpgp::policy::StandardPolicy::new();
    let mut v = VerifierBuilder::from_bytes(signed)
        .unwrap()
        .with_policy(
            &policy,
            None,
            Helper {
                certs,
                good: vec![],
            },
        )
        .expect("sequoia verifies the signature");
    let mut body = Vec::new();
    v.read_to_end(&mut body).unwrap();
    let good = v.into_helper().good;
    (body, good)
}

#[test]
fn sequoia_reads_fixture_inrelease_like_real_ubuntu() {
    let key = TestKey::generate("Compose Test Archive <archive@compose.invalid>");
    let repo = Repo::build(&key, &sample_suites(), IndexVariants::ALL);
    let release = repo.read("dists/noble/Release");
    let (body, good) = sequoia_verify(&key.keyring_binary(), &repo.read("dists/noble/InRelease"));
    assert_eq!(good, vec![key.signing_fingerprint()]);
    // As with gpg-made files, the final newline of Release is outside the signed text.
    assert_eq!(body, release[..release.len() - 1]);
    // Armored keyrings parse the same.
    let (_, good) = sequoia_verify(&key.keyring_armored(), &repo.read("dists/noble/InRelease"));
    assert_eq!(good.len(), 1);

    // The real Ubuntu file has the same shape: signed text = text before the signature
    // block minus its last newline.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let real = data.join("ubuntu/noble-InRelease");
    let keyring = data.join("keys/ubuntu-archive-keyring.gpg");
    if !real.exists() || !keyring.exists() {
        eprintln!("SKIPPED: ../shared/data not present");
        return;
    }
    let real = std::fs::read(real).unwrap();
    let (body, good) = sequoia_verify(&std::fs::read(keyring).unwrap(), &real);
    assert_eq!(good.len(), 1);
    let text = String::from_utf8(real).unwrap();
    let text = text.split_once("\n\n").unwrap().1;
    let text = text.split_once("-----BEGIN PGP SIGNATURE-----").unwrap().0;
    assert_eq!(body, &text.as_bytes()[..text.len() - 1]);
}

#[test]
fn tiny_elfs_satisfy_readelf_and_object() {
    use object::{Object, ObjectSection};
    for arch in ["amd64", "arm64"] {
        let mut exe = ElfSpec::executable(arch, &["libfoo.so.1", "libc.so.6"]);
        exe.runpath = Some("$ORIGIN/../lib".into());
        let lib = ElfSpec::library(arch, "libfoo.so.1", &["libc.so.6"]);
        for (spec, bytes) in [(&exe, exe.build()), (&lib, lib.build())] {
            let file = object::File::parse(&bytes[..]).expect("object parses");
            let want = if arch == "amd64" {
                object::Architecture::X86_64
            } else {
                object::Architecture::Aarch64
            };
            assert_eq!(file.architecture(), want);
            assert!(file.section_by_name(".dynamic").is_some());
            let interp = file
                .section_by_name(".interp")
                .map(|s| s.data().unwrap().to_vec());
            assert_eq!(
                interp,
                spec.interp.as_ref().map(|i| format!("{i}\0").into_bytes())
            );

            if !have("readelf") {
                continue;
            }
            let work = tempfile::tempdir().unwrap();
            let f = work.path().join("elf");
            std::fs::write(&f, &bytes).unwrap();
            for flag in ["-d", "-l", "-S", "-dD"] {
                let out = run(Command::new("readelf").arg("-W").arg(flag).arg(&f));
                assert!(out.status.success());
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(stderr.is_empty(), "readelf {flag}: {stderr}");
                let stdout = String::from_utf8_lossy(&out.stdout);
                if flag.starts_with("-d") {
                    for n in &spec.needed {
                        assert!(
                            stdout.contains(&format!("(NEEDED)             Shared library: [{n}]")),
                            "{stdout}"
                        );
                    }
                    if let Some(s) = &spec.soname {
                        assert!(
                            stdout.contains(&format!("Library soname: [{s}]")),
                            "{stdout}"
                        );
                    }
                    if let Some(r) = &spec.runpath {
                        assert!(
                            stdout.contains(&format!("Library runpath: [{r}]")),
                            "{stdout}"
                        );
                    }
                }
                if flag == "-l" {
                    if let Some(i) = &spec.interp {
                        assert!(
                            stdout.contains(&format!("[Requesting program interpreter: {i}]")),
                            "{stdout}"
                        );
                    }
                }
            }
        }
    }
}
