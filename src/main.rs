//! `compose` command line: parses arguments and calls the library. Every message it
//! prints passes through [`for_terminal`], so archive text never reaches the terminal raw.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use compose::build::{self, BuildOptions};
use compose::text::for_terminal;

#[derive(Parser, Debug)]
#[command(
    name = "compose",
    version,
    about = "Compose a minimal, reproducible OCI image from signed Debian/Ubuntu packages",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// The manifest (TOML, see manifests/); several (or a quoted glob) build each image
    /// in one run, sharing indexes and downloads
    #[arg(required = true, value_name = "MANIFEST")]
    manifests: Vec<PathBuf>,
    #[command(flatten)]
    build: BuildArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where packages come from and which are left out: shared by building, `lock` and
/// `verify`.
#[derive(Args, Debug, Clone)]
struct SourceArgs {
    /// Content-addressed download cache (default: $XDG_CACHE_HOME/compose)
    #[arg(long, value_name = "DIR", env = "COMPOSE_CACHE")]
    cache: Option<PathBuf>,
    /// Rewrite a source URL prefix, e.g. http://archive.ubuntu.com=http://mirror.local
    #[arg(long, value_name = "FROM=TO", value_parser = parse_mirror)]
    mirror: Vec<(String, String)>,
    /// Use FILE as the keyring of the sources whose url (as the manifest writes it) is
    /// URL, e.g. for a mirror that re-signs; repeatable
    #[arg(long, value_name = "URL=FILE", value_parser = parse_keyring)]
    keyring: Vec<(String, PathBuf)>,
    /// Leave the declared package NAME out of this build (the lock records it, and
    /// --locked and verify must be given the same); repeatable
    #[arg(long, value_name = "NAME")]
    exclude_package: Vec<String>,
    /// The lock file (default: MANIFEST.lock beside the manifest)
    #[arg(long, value_name = "FILE")]
    lock: Option<PathBuf>,
    /// Accept a Release whose Valid-Until has passed
    #[arg(long)]
    allow_expired: bool,
    /// No progress output
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// Target architecture (Debian name, or linux/arm64 style); repeat for multi-arch
    #[arg(long = "arch", value_name = "ARCH")]
    arch: Vec<String>,
    /// OCI image layout directory to write (default out/<image name>)
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Tag in index.json (default: the image name)
    #[arg(long, value_name = "TAG")]
    tag: Option<String>,
    /// Also write the root filesystem (one architecture) as a plain directory
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Fail unless the lock matches the manifest, a fresh resolution and the output
    #[arg(long)]
    locked: bool,
    /// Build from the lock and the cache only, without network
    #[arg(long)]
    offline: bool,
    /// Output format: oci (a layout directory), oci-archive or docker-archive (one tar
    /// file at --output, default out/<image name>.tar)
    #[arg(long, value_name = "FORMAT", default_value = "oci", value_parser = compose::output::Format::parse)]
    format: compose::output::Format,
    /// Also write an SPDX 2.3 JSON SBOM of the image to FILE
    #[arg(long, value_name = "FILE")]
    sbom: Option<PathBuf>,
    /// Layer compression: gzip[:LEVEL] (1-12, default gzip:6) or zstd[:LEVEL] (1-19,
    /// zstd = zstd:3); gzip-miniz[:LEVEL] rebuilds images of locks of format 1. Overrides
    /// the manifest's [image] compression
    #[arg(long, value_name = "gzip[:LEVEL]|zstd[:LEVEL]", value_parser = compose::oci::Compressor::parse)]
    compression: Option<compose::oci::Compressor>,
    /// Push the image to an OCI registry: REGISTRY/REPO[:TAG] (default tag: --tag).
    /// Credentials: COMPOSE_REGISTRY_USER/COMPOSE_REGISTRY_PASSWORD, else ~/.docker/config.json
    #[arg(long, value_name = "REGISTRY/REPO:TAG", value_parser = parse_push)]
    push: Option<compose::push::Reference>,
    /// Allow --push over plain HTTP when the registry does not speak HTTPS
    #[arg(long, requires = "push")]
    insecure: bool,
    /// When the linkage check names packages that ship what is missing, write their
    /// blocks into the manifest (saying what was added) and build again
    #[arg(long)]
    fix: bool,
    /// Also list the build record (manifest and lock) and the --sbom document in the
    /// layout's index.json, as referrers of the image (--push always attaches them)
    #[arg(long)]
    attach_record: bool,
    #[command(flatten)]
    source: SourceArgs,
}

/// Parse `FROM=TO` of `--mirror`.
fn parse_mirror(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok((
            from.trim_end_matches('/').to_string(),
            to.trim_end_matches('/').to_string(),
        )),
        _ => Err(format!(
            "`{s}` is not FROM=TO, e.g. http://archive.ubuntu.com=http://127.0.0.1:8080"
        )),
    }
}

/// Parse `URL=FILE` of `--keyring`.
fn parse_keyring(s: &str) -> std::result::Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((url, file)) if !url.is_empty() && !file.is_empty() => {
            Ok((url.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!(
            "`{s}` is not URL=FILE, e.g. http://archive.ubuntu.com/ubuntu=keys/mirror.gpg"
        )),
    }
}

fn parse_push(s: &str) -> Result<compose::push::Reference, String> {
    compose::push::Reference::parse(s).map_err(|e| e.to_string())
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Resolve and write the lock, build nothing
    Lock {
        manifest: PathBuf,
        #[arg(long = "arch", value_name = "ARCH")]
        arch: Vec<String>,
        /// Move the lock to the current resolution (only the named packages, if any) and
        /// report what moved and the CVEs the newer versions fix
        #[arg(long, value_name = "PACKAGE", num_args = 0..)]
        update: Option<Vec<String>>,
        /// With --update: also write the report as Markdown (a pull-request body) to FILE
        #[arg(long, value_name = "FILE", requires = "update")]
        report: Option<PathBuf>,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Compare the lock with the archive's current signed metadata: what moved, and the
    /// CVEs the newer versions fix. Exit 0 up to date, 3 updates available, 1 error
    Outdated {
        manifest: PathBuf,
        #[arg(long = "arch", value_name = "ARCH")]
        arch: Vec<String>,
        /// text (default) or json
        #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
        format: String,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Rebuild from the lock in a temporary directory and compare every digest: of the
    /// lock (MANIFEST), or of a published image (oci:DIR[:TAG], oci-archive:FILE[:TAG],
    /// [docker://]REGISTRY/REPO[:TAG|@DIGEST]) rebuilt from its build record. Exit 0
    /// identical, 1 different or unverifiable
    Verify {
        /// MANIFEST (a .toml file), or an image reference
        target: String,
        /// For an image without a build record: rebuild from this manifest (and --lock)
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Allow reading a registry over plain HTTP
        #[arg(long)]
        insecure: bool,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// What differs between two images (references as for verify): per platform the
    /// config fields and the paths added, removed or changed, and the package versions
    /// when both carry a build record. Exit 0 the same image, 1 different
    Diff {
        a: String,
        b: String,
        /// Allow reading a registry over plain HTTP
        #[arg(long)]
        insecure: bool,
    },
    /// Name the package blocks a native binary needs to start on the image a manifest
    /// describes (nothing is written). Exit 0 it would start, 1 blocks to add, 2 usage
    Suggest {
        manifest: PathBuf,
        /// The native binary (repeatable)
        #[arg(long = "binary", value_name = "FILE", required = true)]
        binary: Vec<PathBuf>,
        /// Architecture (default: the binary's)
        #[arg(long = "arch", value_name = "ARCH")]
        arch: Vec<String>,
        /// Also write the blocks into the manifest (saying what was added)
        #[arg(long)]
        fix: bool,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Check the ELF linkage of an image, and whether native binaries would run on it
    Check {
        /// OCI image layout directory, optionally DIR:TAG
        image: String,
        /// A native binary to check against the image (repeatable)
        #[arg(long = "binary", value_name = "FILE")]
        binary: Vec<PathBuf>,
        /// Which image of a multi-arch layout (default: the binary's, else the host's)
        #[arg(long, value_name = "ARCH")]
        arch: Option<String>,
    },
}

fn epoch() -> Result<u64, String> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("SOURCE_DATE_EPOCH=`{v}` is not a whole number of seconds")),
        Err(_) => Ok(0),
    }
}

fn options(manifest: PathBuf, archs: Vec<String>, source: SourceArgs, epoch: u64) -> BuildOptions {
    BuildOptions {
        manifest,
        archs,
        cache: source.cache,
        mirrors: source.mirror,
        keyrings: source.keyring,
        exclude_packages: source.exclude_package,
        lock: source.lock,
        allow_expired: source.allow_expired,
        quiet: source.quiet,
        epoch,
        ..BuildOptions::default()
    }
}

fn fail(e: compose::Error) -> ExitCode {
    eprintln!("error: {}", for_terminal(&e.to_string()));
    ExitCode::from(e.exit_code() as u8)
}

fn main() -> ExitCode {
    if let Err(e) = compose::interrupt::install() {
        eprintln!("warning: Ctrl-C will not clean up: {e}");
    }
    let cli = Cli::parse();
    let epoch = match epoch() {
        Ok(e) => e,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::Lock {
            manifest,
            arch,
            update: Some(only),
            report,
            source,
        }) => match compose::outdated::update(
            &options(manifest, arch, source, epoch),
            &only,
            report.as_deref(),
        ) {
            Ok(r) => {
                print!("{}", r.text());
                println!("{}", r.lock.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Some(Command::Outdated {
            manifest,
            arch,
            format,
            source,
        }) => match compose::outdated::outdated(&options(manifest, arch, source, epoch)) {
            Ok(r) => {
                if format == "json" {
                    use std::io::Write;
                    let _ = std::io::stdout().write_all(&r.json());
                } else {
                    print!("{}", r.text());
                }
                ExitCode::from(if r.has_updates() { 3 } else { 0 })
            }
            Err(e) => fail(e),
        },
        Some(Command::Lock {
            manifest,
            arch,
            update: None,
            report: _,
            source,
        }) => match build::lock(&options(manifest, arch, source, epoch)) {
            Ok((path, changes)) => {
                for c in &changes {
                    eprintln!("  {}", for_terminal(c));
                }
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Some(Command::Verify {
            target,
            manifest,
            insecure,
            source,
        }) => {
            let is_manifest = manifest.is_none()
                && !target.starts_with("oci:")
                && !target.starts_with("oci-archive:")
                && std::path::Path::new(&target).is_file();
            let run = if is_manifest {
                compose::verify::verify(&options(target.into(), Vec::new(), source, epoch))
            } else {
                compose::verify::verify_image(
                    &target,
                    &compose::verify::ImageAudit {
                        opts: options(PathBuf::new(), Vec::new(), source, epoch),
                        manifest,
                        insecure,
                    },
                )
            };
            match run {
                Ok(lines) => {
                    let ok = lines.iter().all(|l| l.ok);
                    for l in &lines {
                        println!(
                            "{} {}",
                            if l.ok { "ok  " } else { "FAIL" },
                            for_terminal(&l.text)
                        );
                    }
                    println!("{}", if ok { "verified" } else { "verify failed" });
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => fail(e),
            }
        }
        Some(Command::Diff { a, b, insecure }) => match compose::diff::diff(&a, &b, insecure) {
            Ok(report) => {
                for l in &report.lines {
                    println!("{}", for_terminal(l));
                }
                ExitCode::from(if report.identical { 0 } else { 1 })
            }
            Err(e) => fail(e),
        },
        Some(Command::Suggest {
            manifest,
            binary,
            arch,
            fix,
            source,
        }) => suggest(&options(manifest, arch, source, epoch), &binary, fix),
        Some(Command::Check {
            image,
            binary,
            arch,
        }) => check(&image, &binary, arch.as_deref()),
        None => {
            let manifests = match compose::many::expand(&cli.manifests) {
                Ok(m) => m,
                Err(e) => return fail(e),
            };
            let b = cli.build;
            let mut opts = options(manifests[0].clone(), b.arch, b.source, epoch);
            opts.output = b.output;
            opts.tag = b.tag;
            opts.locked = b.locked;
            opts.offline = b.offline;
            opts.rootfs = b.rootfs;
            opts.format = b.format;
            opts.sbom = b.sbom;
            opts.attach_record = b.attach_record;
            opts.compression = b.compression;
            opts.push = b
                .push
                .map(|r| compose::push::PushOptions::new(r, b.insecure));
            if manifests.len() > 1 {
                return build_many(&opts, &manifests);
            }
            let built = if b.fix {
                build::build_fixing(&opts)
            } else {
                build::build(&opts)
            };
            match built {
                Ok(result) => {
                    if !opts.quiet {
                        eprint!("{}", for_terminal(&compose::summary::summary(&result)));
                        if let Some(p) = &result.push {
                            eprintln!("{p}");
                        }
                    }
                    println!("{}", result.digest);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

// ---- compose suggest (src/suggest.rs) ----------------------------------------------

/// `compose suggest MANIFEST --binary FILE... [--fix]`: 0 every binary would start (or,
/// with `--fix`, will once the blocks written are built), 1 blocks to add (or an error),
/// 2 usage.
fn suggest(opts: &BuildOptions, binaries: &[PathBuf], fix: bool) -> ExitCode {
    let mut read = Vec::new();
    for path in binaries {
        match std::fs::read(path) {
            Ok(bytes) => read.push((path.display().to_string(), bytes)),
            Err(e) => {
                eprintln!("error: --binary {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    if fix {
        return match build::suggest_fixing(opts, &read) {
            Ok((report, fixed)) => {
                print!("{}", for_terminal(&report.text()));
                if !fixed.is_empty() {
                    eprintln!("{}", for_terminal(&fixed.summary(&opts.manifest)));
                }
                let done = report.would_start() || (!fixed.is_empty() && report.blocks_cover_all());
                ExitCode::from(u8::from(!done))
            }
            Err(e) => fail(e),
        };
    }
    match build::suggest(opts, &read) {
        Ok(report) => {
            print!("{}", for_terminal(&report.text()));
            ExitCode::from(u8::from(!report.would_start()))
        }
        Err(e) => fail(e),
    }
}

// ---- several manifests (src/many.rs) -------------------------------------------------

/// `compose A.toml B.toml …`: each image's summary (stderr) or error as it finishes,
/// then one line per image on stdout; 1 when any failed, 2 for a refused option.
fn build_many(opts: &BuildOptions, manifests: &[PathBuf]) -> ExitCode {
    let done = |b: &compose::many::Built| match &b.result {
        Ok(result) if !opts.quiet => {
            eprintln!("{}:", b.manifest.display());
            eprint!("{}", for_terminal(&compose::summary::summary(result)));
        }
        Ok(_) => {}
        Err(e) => eprintln!(
            "error: {}: {}",
            b.manifest.display(),
            for_terminal(&e.to_string())
        ),
    };
    match compose::many::build_many(opts, manifests, done) {
        Ok(all) => {
            for b in &all {
                println!("{}", for_terminal(&b.line()));
            }
            if all.iter().all(|b| b.result.is_ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(e),
    }
}

// ---- compose check (src/check.rs) ----------------------------------------------------

/// `compose check IMAGE [--binary FILE]... [--arch ARCH]`: 0 all resolve, 1 misses or a
/// damaged image, 2 usage.
fn check(image: &str, binaries: &[PathBuf], arch: Option<&str>) -> ExitCode {
    match compose::check::check(image, binaries, arch) {
        Ok(report) => {
            report.print();
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("error: {}", for_terminal(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}
