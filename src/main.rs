//! `compose` command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

#[derive(clap::Args, Debug)]
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
    /// Content-addressed download cache (default: $XDG_CACHE_HOME/compose)
    #[arg(long, value_name = "DIR", env = "COMPOSE_CACHE")]
    cache: Option<PathBuf>,
    /// Rewrite a source URL prefix, e.g. http://archive.ubuntu.com=http://mirror.local
    #[arg(long, value_name = "FROM=TO", value_parser = compose::build::parse_mirror)]
    mirror: Vec<(String, String)>,
    /// Also write the root filesystem (one architecture) as a plain directory
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Accept a Release whose Valid-Until has passed
    #[arg(long)]
    allow_expired: bool,
    /// No progress output
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Resolve and write the lock, build nothing (not yet supported)
    Lock { manifest: PathBuf },
    /// Rebuild from the lock and compare digests (not yet supported)
    Verify { manifest: PathBuf },
    /// Check the ELF linkage of an image (not yet supported)
    Check { image: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = cli.command {
        let name = match command {
            Command::Lock { .. } => "lock",
            Command::Verify { .. } => "verify",
            Command::Check { .. } => "check",
        };
        eprintln!("error: `compose {name}` is not yet supported by this version");
        return ExitCode::from(2);
    }
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(e) => e,
            Err(_) => {
                eprintln!("error: SOURCE_DATE_EPOCH=`{v}` is not a whole number of seconds");
                return ExitCode::from(2);
            }
        },
        Err(_) => 0,
    };
    let opts = compose::build::BuildOptions {
        manifest: cli.manifest.expect("clap requires MANIFEST"),
        archs: cli.build.arch,
        output: cli.build.output,
        tag: cli.build.tag,
        cache: cli.build.cache,
        mirrors: cli.build.mirror,
        quiet: cli.build.quiet,
        allow_expired: cli.build.allow_expired,
        epoch,
        jobs: 0,
        rootfs: cli.build.rootfs,
    };
    match compose::build::build(&opts) {
        Ok(result) => {
            if !opts.quiet {
                eprint!("{}", compose::build::summary(&result));
            }
            println!("{}", result.digest);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
