//! Memory and time bounded by what the manifest selects, never by what the archive
//! sends: each case of `docs/errors.md` ("Memory and time bounds") through the real
//! `compose` binary against a signed fixture repository on 127.0.0.1. As in
//! `tests/hostile.rs`, a hostile archive is a compromised one: the index or package is
//! listed with its true size and hashes under a Release re-signed with the archive key,
//! so only compose's own limits stand.
//!
//! The peak resident set of each `compose` run (as GNU time reports it for that process
//! alone, [`measure`]) must stay under a bound that does not grow with the hostile size.
//! Growth in time is measured as a ratio of CPU times at two sizes in one run, never as
//! an absolute time; CPU time, unlike wall time, hardly depends on what else the machine
//! is doing.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{libc6_arm64, tzdata_utc, DebSpec, Fault, Faulty, Member, SuiteSpec, Workspace};

const ARCH: &str = "arm64";
const MIB: u64 = 1 << 20;
/// The peak resident set no case may exceed, whatever its hostile size: a build of the
/// small fixture takes about 28 MiB.
const RSS_BOUND: u64 = 150 * MIB;

/// One run of `compose`: what it printed, how it ended, its peak resident set and its
/// wall time.
struct Measured {
    output: Output,
    /// Peak resident set, bytes.
    rss: u64,
    wall: Duration,
    /// CPU time, user and system, of all its threads: what it cost, whatever else the
    /// machine was doing.
    cpu: Duration,
}

impl Measured {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn mib(&self) -> u64 {
        self.rss / MIB
    }

    /// Exit 1 with exactly one `error:` line, which is returned.
    fn one_error(&self) -> String {
        let stderr = self.stderr();
        assert_eq!(self.output.status.code(), Some(1), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line, got: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(self.output.stdout.is_empty(), "no digest on failure");
        lines[0].to_string()
    }

    /// Exit 0 with a digest as the last line of stdout.
    fn succeeded(&self) {
        support::digest_of(&self.output);
    }
}

/// Run `cmd` to its end and measure it, through GNU time (`/usr/bin/time`): the peak
/// resident set a process reports is that of its memory image, and a child spawned by
/// the test inherits the test's own at `exec` (Linux keeps the larger), so only a child
/// forked by a small process of its own (time's) says what `compose` alone used.
fn measure(cmd: &Command) -> Measured {
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("--format=%M %U %S")
        .arg("--output")
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let start = Instant::now();
    let output = timed
        .output()
        .expect("run compose under /usr/bin/time (Debian package `time`)");
    let wall = start.elapsed();
    let text = std::fs::read_to_string(report.path()).unwrap();
    // A failing command adds a line before the figures.
    let figures: Vec<&str> = text.lines().last().unwrap_or("").split(' ').collect();
    let [kib, user, system] = figures[..] else {
        panic!("unexpected /usr/bin/time report: {text:?}")
    };
    let secs = |s: &str| Duration::from_secs_f64(s.parse().unwrap());
    Measured {
        output,
        rss: kib.parse::<u64>().unwrap() * 1024,
        wall,
        cpu: secs(user) + secs(system),
    }
}

/// The peak resident set of `m` is under [`RSS_BOUND`].
fn assert_flat(what: &str, m: &Measured) {
    assert!(
        m.rss < RSS_BOUND,
        "{what}: peak resident set {} MiB, over the bound of {} MiB",
        m.mib(),
        RSS_BOUND / MIB
    );
}

/// A workspace: the fixture repository and `compose.toml` in a temporary directory.
struct Fixture {
    ws: Workspace,
    manifest: PathBuf,
}

impl Fixture {
    fn new(suites: &[SuiteSpec], suite_names: &[&str], body: &str) -> Fixture {
        let ws = Workspace::new(suites);
        let manifest = ws.manifest("bounds", ARCH, suite_names, body);
        Fixture { ws, manifest }
    }

    fn dir(&self) -> &Path {
        &self.ws.dir
    }

    fn url_of(&self, rel: &str) -> String {
        self.ws.server.url_of(rel)
    }

    /// `compose MANIFEST --output <out> --lock <out>.lock --cache cache --quiet`, then
    /// `extra`.
    fn command(&self, out: &str, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_compose"));
        c.arg(&self.manifest)
            .arg("--output")
            .arg(self.dir().join(out))
            .arg("--lock")
            .arg(self.dir().join(format!("{out}.lock")))
            .arg("--cache")
            .arg(self.dir().join("cache"))
            .arg("--quiet")
            .args(extra)
            .env("COMPOSE_HTTP_TIMEOUT", "20")
            .env_remove("COMPOSE_CACHE")
            .env_remove("SOURCE_DATE_EPOCH");
        c
    }

    /// Run [`Fixture::command`] after removing what an earlier run left at `out` and its
    /// lock: every run resolves afresh.
    fn run(&self, out: &str, extra: &[&str]) -> Measured {
        let _ = std::fs::remove_dir_all(self.dir().join(out));
        let _ = std::fs::remove_file(self.dir().join(format!("{out}.lock")));
        let m = measure(&self.command(out, extra));
        eprintln!(
            "compose --output {out} {}: {} MiB peak, {:.2} s ({:.2} s CPU): {}",
            extra.join(" "),
            m.mib(),
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.stderr().lines().last().unwrap_or("")
        );
        m
    }

    /// Publish `bytes` as the `.deb` of `name`, listed with its true size and hashes.
    fn publish(&mut self, name: &str, bytes: &[u8]) {
        self.ws.repo.replace_deb(name, ARCH, bytes);
    }
}

/// The packages of the small fixture, plus `evil`, whose `.deb` a test replaces.
fn suite(name: &str) -> SuiteSpec {
    SuiteSpec::new(name, &["main"], &[ARCH])
        .package("main", libc6_arm64(b"libc bytes".to_vec()))
        .package("main", tzdata_utc())
        .package("main", evil())
}

fn evil() -> DebSpec {
    DebSpec::new("evil", "1.0", ARCH, Member::Xz).file(
        "/usr/lib/evil/placeholder",
        b"harmless".to_vec(),
        0o644,
    )
}

const BODY: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]

[package.tzdata]
paths = ["/usr/share/zoneinfo/UTC"]
"#;

/// [`BODY`] and `[package.evil]` with these `paths`.
fn with_evil(paths: &str) -> String {
    format!("{BODY}\n[package.evil]\npaths = [{paths}]\n")
}

/// A `.deb` of `spec`'s control archive and `data` as its data member, already
/// compressed and named `data_member` (e.g. `data.tar.xz`).
fn deb_with_member(spec: &DebSpec, data_member: &str, data: &[u8]) -> Vec<u8> {
    let control = spec.member.compress(&support::control_tar(spec));
    let mut ar = ar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("debian-binary".to_string(), b"2.0\n".to_vec()),
        (format!("control.tar.{}", spec.member.ext()), control),
        (data_member.to_string(), data.to_vec()),
    ] {
        let mut h = ar::Header::new(name.into_bytes(), bytes.len() as u64);
        h.set_mode(0o100644);
        h.set_mtime(support::DEB_MTIME);
        ar.append(&h, bytes.as_slice()).unwrap();
    }
    ar.into_inner().unwrap()
}

/// xz of `data` (one stream; streams concatenate into one decoded text).
fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gnu_header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(support::DEB_MTIME);
    h
}

// ------------------------------------------------------------------ super-linear paths

/// A data.tar whose `./usr/lib/evil/` holds directories nested `depth` deep
/// (`d/d/d/…`), a file at the bottom.
fn nested_tar(depth: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut path = String::from("./");
    for part in ["usr/", "lib/", "evil/"] {
        path.push_str(part);
        b.append_data(
            &mut gnu_header(tar::EntryType::Directory, 0, 0o755),
            &path,
            std::io::empty(),
        )
        .unwrap();
    }
    for _ in 0..depth {
        path.push_str("d/");
        b.append_data(
            &mut gnu_header(tar::EntryType::Directory, 0, 0o755),
            &path,
            std::io::empty(),
        )
        .unwrap();
    }
    path.push_str("bottom");
    b.append_data(
        &mut gnu_header(tar::EntryType::Regular, 6, 0o644),
        &path,
        &b"bottom"[..],
    )
    .unwrap();
    b.into_inner().unwrap()
}

/// `small` and `big` cost CPU time at most 1.75 times in proportion to their sizes (2×
/// the size may cost less than 3.5× the time; quadratic growth would cost 4×, cubic 8×).
fn assert_linear(what: &str, small: (u64, &Measured), big: (u64, &Measured)) {
    let size = big.0 as f64 / small.0 as f64;
    let time = big.1.cpu.as_secs_f64() / small.1.cpu.as_secs_f64();
    eprintln!(
        "{what}: {} in {:.2} s CPU, {} in {:.2} s CPU: ×{size:.2} the size, ×{time:.2} the time",
        small.0,
        small.1.cpu.as_secs_f64(),
        big.0,
        big.1.cpu.as_secs_f64()
    );
    assert!(
        time < 1.75 * size,
        "{what}: ×{size:.2} the size cost ×{time:.2} the time"
    );
}

#[test]
fn directories_nested_thousands_deep_cost_time_linear_in_the_archive() {
    let mut f = Fixture::new(
        &[suite("noble")],
        &["noble"],
        &with_evil("\"/usr/lib/evil/**\""),
    );
    let mut run = |depth: usize| {
        let data = nested_tar(depth);
        let bytes = support::build_deb_with_data(&evil(), &data);
        f.publish("evil", &bytes);
        let m = f.run(&format!("out-{depth}"), &[]);
        m.succeeded();
        (data.len() as u64, m)
    };
    // The data.tar grows as the square of the depth: each entry names all its parents.
    let (small_bytes, small) = run(800);
    let (big_bytes, big) = run(2400);
    assert_linear(
        "nesting (bytes of data.tar)",
        (small_bytes, &small),
        (big_bytes, &big),
    );
}

/// `[[file]]` tables, one per path `/etc/many/f<i>`.
fn many_files(n: usize) -> String {
    let mut body = String::from(BODY);
    for i in 0..n {
        body.push_str(&format!(
            "\n[[file]]\npath = \"/etc/many/f{i}\"\ntext = \"{i}\"\n"
        ));
    }
    body
}

#[test]
fn a_manifest_with_many_files_costs_time_linear_in_its_entries() {
    let run = |n: usize| {
        let f = Fixture::new(&[suite("noble")], &["noble"], &many_files(n));
        let m = f.run("out", &[]);
        m.succeeded();
        (n as u64, m)
    };
    let (small_n, small) = run(10_000);
    let (big_n, big) = run(20_000);
    assert_linear("[[file]] tables", (small_n, &small), (big_n, &big));
}

// ------------------------------------------------------------------------ index bombs

/// The index of `suite` (`dists/<suite>/main/binary-arm64/Packages.xz`).
fn index_path(suite: &str) -> String {
    format!("dists/{suite}/main/binary-{ARCH}/Packages.xz")
}

/// Stanzas of packages nobody asks for (about 1 KiB each, as real ones), `bytes` of
/// them (about).
fn filler(bytes: usize) -> Vec<u8> {
    let sum = "0".repeat(64);
    let description = " a line of a long description, as real packages have them\n".repeat(14);
    let block: String = (0..1000)
        .map(|i| {
            format!(
                "Package: filler{i}\nVersion: 1.0\nArchitecture: {ARCH}\nFilename: pool/main/f/filler{i}.deb\nSize: 1\nSHA256: {sum}\nDescription: nothing\n{description}\n"
            )
        })
        .collect();
    block.as_bytes().repeat(bytes / block.len() + 1)
}

/// One stanza of a package nobody asks for, with a description of `bytes` (about).
fn huge_stanza(bytes: usize) -> Vec<u8> {
    let mut s = b"Package: huge\nVersion: 1\nDescription: a long one\n".to_vec();
    s.extend(b" the same line again and again\n".repeat(bytes / 32));
    s.extend_from_slice(b"\n");
    s
}

/// Publish `xz` as the index of `suite` and re-sign its Release over it.
fn publish_index(f: &Fixture, suite: &str, xz: &[u8]) {
    f.ws.repo.write(&index_path(suite), xz);
    f.ws.repo.rehash_release(suite);
}

/// The index text of `suite` as built.
fn index_text(f: &Fixture, suite: &str) -> String {
    f.ws.repo
        .packages_text(&format!("dists/{suite}/main/binary-{ARCH}/Packages"))
}

#[test]
fn an_index_bomb_is_refused_at_its_limit_with_memory_flat() {
    // 2 GiB of stanzas from a few hundred KiB of xz: 64 MiB compressed once, its stream
    // repeated (concatenated streams decode as one text).
    let f = Fixture::new(&[suite("noble")], &["noble"], BODY);
    let chunk = xz(&filler(64 << 20));
    let mut bomb = xz(index_text(&f, "noble").as_bytes());
    for _ in 0..32 {
        bomb.extend_from_slice(&chunk);
    }
    eprintln!("index bomb: {} KiB of xz", bomb.len() >> 10);
    publish_index(&f, "noble", &bomb);
    let m = f.run("out", &[]);
    assert_eq!(
        m.one_error(),
        format!(
            "error: {}: decompressed data exceeds the limit of 1073741824 bytes; refusing it",
            f.url_of(&index_path("noble"))
        )
    );
    assert_flat("a 2 GiB index bomb", &m);

    // A stanza of a package asked for is held whole to be parsed: up to 16 MiB.
    let text = index_text(&f, "noble").replacen(
        "Package: libc6\n",
        &format!(
            "Package: libc6\nDescription: long\n{}",
            " a line\n".repeat(17 << 17)
        ),
        1,
    );
    publish_index(&f, "noble", &xz(text.as_bytes()));
    let m = f.run("out", &[]);
    let e = m.one_error();
    assert!(
        e.starts_with(&format!(
            "error: {}/dists/noble/main/binary-{ARCH}/Packages: malformed Packages index: stanza ",
            f.ws.server.url
        )) && e.ends_with(" is longer than 16777216 bytes (no empty line ends it); refusing it"),
        "{e}"
    );
    assert_flat("a 17 MiB stanza", &m);
}

#[test]
fn large_indexes_in_several_suites_stream_with_memory_flat() {
    // Three suites, each index 96 MiB of text: unwanted stanzas, one 32 MiB stanza,
    // and the fixture's own stanzas last.
    let suites = ["noble", "noble-updates", "noble-security"];
    let specs: Vec<SuiteSpec> = suites.iter().map(|s| suite(s)).collect();
    let f = Fixture::new(&specs, &suites, BODY);
    let chunk = xz(&filler(32 << 20));
    let huge = xz(&huge_stanza(32 << 20));
    for s in suites {
        let mut index = chunk.clone();
        index.extend_from_slice(&chunk);
        index.extend_from_slice(&huge);
        index.extend_from_slice(&xz(index_text(&f, s).as_bytes()));
        publish_index(&f, s, &index);
    }
    let m = f.run("out", &[]);
    m.succeeded();
    assert_flat("three 96 MiB indexes", &m);
}

// ------------------------------------------------------------- decoder memory limits

/// `data` as xz whose block header declares a 4 GiB dictionary (LZMA2 properties byte
/// 40), its CRC-32 fixed: the stream decodes with any dictionary as large as the
/// encoder's, but asks for 4 GiB.
fn xz_declaring_4_gib(data: &[u8]) -> Vec<u8> {
    let mut x = xz(data);
    let start = 12; // after the stream header
    let size = (usize::from(x[start]) + 1) * 4;
    let flags = x[start + 1];
    assert_eq!(flags & 0xc0, 0, "no sizes in the block header");
    let props = start + 4; // size, flags, filter id 0x21, properties size 1
    assert_eq!(&x[start + 2..props], &[0x21, 0x01], "one LZMA2 filter");
    x[props] = 40;
    let crc = crc32fast::hash(&x[start..start + size - 4]);
    x[start + size - 4..start + size].copy_from_slice(&crc.to_le_bytes());
    x
}

/// `data` as a zstd frame whose window descriptor asks for a 2 GiB window.
fn zstd_declaring_2_gib(data: &[u8]) -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    e.include_contentsize(false).unwrap();
    e.write_all(data).unwrap();
    let mut z = e.finish().unwrap();
    assert_eq!(z[4] & 0x20, 0, "a window descriptor follows");
    z[5] = 21 << 3; // window log 10 + 21
    z
}

#[test]
fn decoders_refuse_input_needing_more_than_their_memory_limit() {
    let mut f = Fixture::new(
        &[suite("noble")],
        &["noble"],
        &with_evil("\"/usr/lib/evil/*\""),
    );
    let data = support::data_tar(&evil());
    let deb = f.ws.repo.package("evil", ARCH).filename;
    for (member, bytes, name) in [
        ("data.tar.xz", xz_declaring_4_gib(&data), "xz"),
        ("data.tar.zst", zstd_declaring_2_gib(&data), "zstd"),
    ] {
        f.publish("evil", &deb_with_member(&evil(), member, &bytes));
        let m = f.run("out", &[]);
        assert_eq!(
            m.one_error(),
            format!(
                "error: {}: cannot read `{member}`: the {name} data needs more than 128 MiB of memory to decode (a larger dictionary or window than real packages use); refusing it",
                f.url_of(&deb)
            )
        );
        assert_flat(member, &m);
    }
    // An index alike.
    let text = index_text(&f, "noble");
    publish_index(&f, "noble", &xz_declaring_4_gib(text.as_bytes()));
    let m = f.run("out", &[]);
    assert_eq!(
        m.one_error(),
        format!(
            "error: {}: cannot decompress (xz): the xz data needs more than 128 MiB of memory to decode (a larger dictionary or window than real packages use); refusing it",
            f.url_of(&index_path("noble"))
        )
    );
}

// ------------------------------------------------------------------ tar header records

/// A data.tar.xz of the well-formed start of `evil` (`./usr/lib/evil/placeholder`), then
/// a `kind` record (`L`: GNU long name, `x`: PAX extended header) of 512 MiB for an
/// entry nothing selects, then that entry: its 512 MiB are streams of one compressed
/// 64 MiB block.
fn data_with_a_512_mib_record(kind: u8) -> Vec<u8> {
    let size: u64 = (512 << 20) + 1;
    let mut b = tar::Builder::new(Vec::new());
    let mut path = String::from("./");
    for part in ["usr/", "lib/", "evil/"] {
        path.push_str(part);
        b.append_data(
            &mut gnu_header(tar::EntryType::Directory, 0, 0o755),
            &path,
            std::io::empty(),
        )
        .unwrap();
    }
    b.append_data(
        &mut gnu_header(tar::EntryType::Regular, 8, 0o644),
        "./usr/lib/evil/placeholder",
        &b"harmless"[..],
    )
    .unwrap();
    let mut start = b.get_ref().clone();
    let mut h = gnu_header(tar::EntryType::new(kind), size, 0o644);
    h.set_path("././@LongLink").unwrap();
    h.set_cksum();
    start.extend_from_slice(h.as_bytes());
    let mut out = xz(&start);
    let block = xz(&vec![b'n'; 64 << 20]);
    for _ in 0..8 {
        out.extend_from_slice(&block);
    }
    // The record's last byte and padding, the entry, the end of the archive.
    let mut end = vec![0u8; 512];
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(
        &mut gnu_header(tar::EntryType::Regular, 1, 0o644),
        "./usr/lib/evil/unselected",
        &b"x"[..],
    )
    .unwrap();
    end.extend_from_slice(&b.into_inner().unwrap());
    out.extend_from_slice(&xz(&end));
    out
}

#[test]
fn a_512_mib_tar_name_or_pax_record_is_refused_before_it_is_read() {
    let mut f = Fixture::new(
        &[suite("noble")],
        &["noble"],
        &with_evil("\"/usr/lib/evil/placeholder\""),
    );
    let deb = f.ws.repo.package("evil", ARCH).filename;
    for (kind, what, limit) in [
        (b'L', "GNU long-name record", 65536),
        (b'x', "PAX extended header", 1048576),
    ] {
        let data = data_with_a_512_mib_record(kind);
        f.publish("evil", &deb_with_member(&evil(), "data.tar.xz", &data));
        let m = f.run("out", &[]);
        assert_eq!(
            m.one_error(),
            format!(
                "error: {}: cannot read `data.tar.xz`: a {what} of 536870913 bytes exceeds the limit of {limit} bytes; refusing the package",
                f.url_of(&deb)
            )
        );
        assert_flat(what, &m);
    }
}

// ------------------------------------------------------------ entries nobody selects

/// `evil`'s data.tar with `n` more entries (empty files and directories in turn, names
/// of 100 bytes) that the manifest does not select.
fn data_with_unselected(n: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut path = String::from("./");
    for part in ["usr/", "lib/", "evil/"] {
        path.push_str(part);
        b.append_data(
            &mut gnu_header(tar::EntryType::Directory, 0, 0o755),
            &path,
            std::io::empty(),
        )
        .unwrap();
    }
    b.append_data(
        &mut gnu_header(tar::EntryType::Regular, 8, 0o644),
        "./usr/lib/evil/placeholder",
        &b"harmless"[..],
    )
    .unwrap();
    for i in 0..n {
        let (kind, name) = match i % 2 {
            0 => (
                tar::EntryType::Regular,
                format!("./usr/share/evil/{i:0>83}"),
            ),
            _ => (
                tar::EntryType::Directory,
                format!("./usr/share/evil/{i:0>82}/"),
            ),
        };
        b.append_data(&mut gnu_header(kind, 0, 0o755), &name, std::io::empty())
            .unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn entries_nobody_selects_are_not_kept_in_memory() {
    let mut f = Fixture::new(
        &[suite("noble")],
        &["noble"],
        &with_evil("\"/usr/lib/evil/placeholder\""),
    );
    let mut run = |n: usize| {
        let data = data_with_unselected(n);
        f.publish("evil", &deb_with_member(&evil(), "data.tar.xz", &xz(&data)));
        let m = f.run(&format!("out-{n}"), &[]);
        m.succeeded();
        m
    };
    let few = run(10);
    let many = run(100_000);
    eprintln!(
        "100,000 unselected entries: {} MiB peak, against {} MiB for 10",
        many.mib(),
        few.mib()
    );
    assert!(
        many.rss < few.rss + 16 * MIB,
        "100,000 unselected entries cost {} MiB more",
        many.rss.saturating_sub(few.rss) / MIB
    );
}

// ------------------------------------------------------------------------------- SBOM

/// `evil`'s data.tar with `n` small files under `/usr/lib/evil/many/`.
fn data_with_files(n: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut path = String::from("./");
    for part in ["usr/", "lib/", "evil/", "many/"] {
        path.push_str(part);
        b.append_data(
            &mut gnu_header(tar::EntryType::Directory, 0, 0o755),
            &path,
            std::io::empty(),
        )
        .unwrap();
    }
    b.append_data(
        &mut gnu_header(tar::EntryType::Regular, 8, 0o644),
        "./usr/lib/evil/placeholder",
        &b"harmless"[..],
    )
    .unwrap();
    for i in 0..n {
        let body = format!("{i}");
        b.append_data(
            &mut gnu_header(tar::EntryType::Regular, body.len() as u64, 0o644),
            format!("./usr/lib/evil/many/f{i}"),
            body.as_bytes(),
        )
        .unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn an_sbom_of_many_files_is_written_with_memory_flat() {
    let mut f = Fixture::new(
        &[suite("noble")],
        &["noble"],
        &with_evil("\"/usr/lib/evil/**\""),
    );
    let n = 10_000;
    f.publish(
        "evil",
        &deb_with_member(&evil(), "data.tar.xz", &xz(&data_with_files(n))),
    );
    let plain = f.run("plain", &[]);
    plain.succeeded();
    let sbom = f.dir().join("sbom.json");
    let with = f.run("with", &["--sbom", sbom.to_str().unwrap()]);
    with.succeeded();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    assert!(doc["files"].as_array().unwrap().len() > n);
    eprintln!(
        "{n} files: {} MiB peak with --sbom, {} MiB without",
        with.mib(),
        plain.mib()
    );
    assert!(
        with.rss < plain.rss + 16 * MIB,
        "--sbom of {n} files cost {} MiB more",
        with.rss.saturating_sub(plain.rss) / MIB
    );
}

// -------------------------------------------------------------------- overall deadline

#[test]
fn a_server_dripping_bytes_is_cut_by_the_minimum_rate() {
    let ws = Workspace::new(&[suite("noble")]);
    let server = Faulty::serve_dir(&ws.repo.root);
    let manifest = ws.manifest_from("bounds", &[ARCH], &server.url, &["noble"], BODY);
    // One byte every 300 ms: each wait is well within the 1 s read timeout.
    server.set(
        "dists/noble/InRelease",
        Fault::Throttle {
            chunk: 1,
            pause: Duration::from_millis(300),
        },
    );
    let m = measure(
        Command::new(env!("CARGO_BIN_EXE_compose"))
            .arg(&manifest)
            .arg("--output")
            .arg(ws.dir.join("out"))
            .arg("--cache")
            .arg(ws.dir.join("cache"))
            .arg("--quiet")
            .env("COMPOSE_HTTP_TIMEOUT", "1")
            .env_remove("COMPOSE_HTTP_MIN_RATE")
            .env_remove("COMPOSE_CACHE"),
    );
    let e = m.one_error();
    let prefix = format!(
        "error: {}: too slow: ",
        server.url_of("dists/noble/InRelease")
    );
    assert!(e.starts_with(&prefix), "{e}");
    assert!(
        e.ends_with(" bytes/s after the first 1 s (set COMPOSE_HTTP_MIN_RATE, 0 for no minimum, and COMPOSE_HTTP_TIMEOUT), gave up after 3 attempts"),
        "{e}"
    );
    assert!(e.contains("less than the minimum of 1024 bytes/s"), "{e}");
    assert_eq!(server.hits("dists/noble/InRelease"), 3);
    assert!(m.wall < Duration::from_secs(20), "{:?}", m.wall);
}
