//! `compose` command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use compose::build::{self, BuildOptions};

#[derive(Parser, Debug)]
#[command(
    name = "compose",
    version,
    about = "Compose a minimal, reproducible OCI image from signed Debian/Ubuntu packages",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// The manifest (TOML, see manifests/)
    #[arg(required = true)]
    manifest: Option<PathBuf>,
    #[command(flatten)]
    build: BuildArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where packages come from: shared by building, `lock` and `verify`.
#[derive(Args, Debug, Clone)]
struct SourceArgs {
    /// Content-addressed download cache (default: $XDG_CACHE_HOME/compose)
    #[arg(long, value_name = "DIR", env = "COMPOSE_CACHE")]
    cache: Option<PathBuf>,
    /// Rewrite a source URL prefix, e.g. http://archive.ubuntu.com=http://mirror.local
    #[arg(long, value_name = "FROM=TO", value_parser = build::parse_mirror)]
    mirror: Vec<(String, String)>,
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
    #[command(flatten)]
    source: SourceArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Resolve and write the lock, build nothing
    Lock {
        manifest: PathBuf,
        #[arg(long = "arch", value_name = "ARCH")]
        arch: Vec<String>,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Rebuild from the lock in a temporary directory and compare every digest
    Verify {
        manifest: PathBuf,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Check the ELF linkage of an image (not yet supported)
    Check { image: PathBuf },
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
        lock: source.lock,
        allow_expired: source.allow_expired,
        quiet: source.quiet,
        epoch,
        ..BuildOptions::default()
    }
}

fn fail(e: compose::Error) -> ExitCode {
    eprintln!("error: {e}");
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
            source,
        }) => match build::lock(&options(manifest, arch, source, epoch)) {
            Ok((path, changes)) => {
                for c in &changes {
                    eprintln!("  {c}");
                }
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Some(Command::Verify { manifest, source }) => {
            match build::verify(&options(manifest, Vec::new(), source, epoch)) {
                Ok(lines) => {
                    let ok = lines.iter().all(|l| l.ok);
                    for l in &lines {
                        println!("{} {}", if l.ok { "ok  " } else { "FAIL" }, l.text);
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
        Some(Command::Check { .. }) => {
            eprintln!("error: `compose check` is not yet supported by this version");
            ExitCode::from(2)
        }
        None => {
            let b = cli.build;
            let mut opts = options(
                cli.manifest.expect("clap requires MANIFEST"),
                b.arch,
                b.source,
                epoch,
            );
            opts.output = b.output;
            opts.tag = b.tag;
            opts.locked = b.locked;
            opts.offline = b.offline;
            opts.rootfs = b.rootfs;
            match build::build(&opts) {
                Ok(result) => {
                    if !opts.quiet {
                        eprint!("{}", build::summary(&result));
                    }
                    println!("{}", result.digest);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}
