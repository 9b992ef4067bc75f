//! Several manifests in one run (`compose A.toml B.toml …`, or a quoted glob such as
//! `'manifests/*.toml'`, less the bases the others include): each image is built in turn by [`build::build_in`] in
//! one [`Session`], so the runtime, the HTTP client and the download cache are shared,
//! and so are the verified Releases and the read `Packages` indexes (each index is
//! fetched and read once per suite, component and architecture for the whole run,
//! keeping every package name the run's manifests declare). A failed image does not
//! stop the others: each manifest gets its own result.
//!
//! Options that name one output take a `{name}` placeholder, replaced by each image's
//! name (`--output 'out/{name}'`, `--tag`, `--rootfs`, `--sbom`); without it they are
//! refused, as are `--lock` (each manifest's lock is beside it) and `--push`, and two
//! manifests whose images have the same name (their default outputs would collide).
//! docs/manifest.md ("Many manifests, one run") says the same for users.
//!
//! Prints nothing: the caller reports each result as [`build_many`] hands it over.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::build::{self, BuildOptions, BuildResult, Session};
use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// The placeholder of per-image options.
pub const NAME: &str = "{name}";

/// One manifest's outcome.
#[derive(Debug)]
pub struct Built {
    /// The manifest as given (or as its glob matched it).
    pub manifest: PathBuf,
    /// The build's result.
    pub result: Result<BuildResult>,
    /// How long its build took.
    pub elapsed: Duration,
}

impl Built {
    /// The one line that sums it up: `MANIFEST: DIGEST OUTPUT (…)` or
    /// `MANIFEST: failed: …` with the first line of the error.
    pub fn line(&self) -> String {
        let m = self.manifest.display();
        match &self.result {
            Ok(r) => {
                let packages: usize = r.images.iter().map(|i| i.packages.len()).sum();
                let archs: Vec<String> = r.images.iter().map(|i| i.arch.to_string()).collect();
                format!(
                    "{m}: {} {} ({}, {packages} packages, {:.1} s)",
                    r.digest,
                    r.output.display(),
                    archs.join(" "),
                    self.elapsed.as_secs_f64()
                )
            }
            Err(e) => {
                let text = e.to_string();
                format!("{m}: failed: {}", text.lines().next().unwrap_or(""))
            }
        }
    }
}

/// The manifests named on the command line: each path as given, or, when its file name
/// holds `*`, `?` or `[` and no such file exists, the files of its directory the glob
/// matches, sorted. A file named twice is built once.
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for arg in args {
        let name = arg.file_name().map(|n| n.to_string_lossy().into_owned());
        let glob = name
            .as_deref()
            .filter(|n| n.contains(['*', '?', '[']) && !arg.exists());
        let found = match glob {
            None => vec![arg.clone()],
            Some(pattern) => matches(arg, pattern)?,
        };
        for path in found {
            let key = path.canonicalize().unwrap_or_else(|_| path.clone());
            if seen.insert(key) {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// The files of `arg`'s directory whose name `pattern` matches, sorted.
fn matches(arg: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let dir = arg.parent().filter(|d| !d.as_os_str().is_empty());
    let matcher = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| Error::Usage(format!("`{}` is not a usable glob: {e}", arg.display())))?
        .compile_matcher();
    let entries = std::fs::read_dir(dir.unwrap_or(Path::new("."))).map_err(|source| Error::Io {
        context: format!("cannot list the manifests of `{}`", arg.display()),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name())
        .filter(|n| matcher.is_match(Path::new(n)))
        .map(|n| dir.map_or_else(|| PathBuf::from(&n), |d| d.join(&n)))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(Error::Usage(format!(
            "`{}` matches no file; name the manifests, or quote a glob of existing ones",
            arg.display()
        )));
    }
    Ok(found)
}

/// Refuse what cannot apply to several images.
fn check_options(opts: &BuildOptions) -> Result<()> {
    let refuse = |what: &str, why: &str| {
        Err(Error::Usage(format!(
            "{what} with several manifests: {why}"
        )))
    };
    if opts.lock.is_some() {
        return refuse(
            "--lock",
            "each manifest's lock is beside it; leave --lock out",
        );
    }
    if opts.push.is_some() {
        return refuse("--push", "push each image in its own run");
    }
    let paths = [
        ("--output", &opts.output),
        ("--rootfs", &opts.rootfs),
        ("--sbom", &opts.sbom),
    ];
    for (what, value) in paths {
        if value
            .as_ref()
            .is_some_and(|p| !p.to_string_lossy().contains(NAME))
        {
            return refuse(
                what,
                "put {name} in it (e.g. 'out/{name}'), each image's name replaces it",
            );
        }
    }
    if opts.tag.as_ref().is_some_and(|t| !t.contains(NAME)) {
        return refuse(
            "--tag",
            "put {name} in it (e.g. '{name}-v2'), each image's name replaces it",
        );
    }
    Ok(())
}

/// `opts` for the manifest `manifest` whose image is `name`: `{name}` replaced.
fn options_for(opts: &BuildOptions, manifest: &Path, name: &str) -> BuildOptions {
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| PathBuf::from(p.to_string_lossy().replace(NAME, name)))
    };
    BuildOptions {
        manifest: manifest.to_path_buf(),
        output: path(&opts.output),
        rootfs: path(&opts.rootfs),
        sbom: path(&opts.sbom),
        tag: opts.tag.as_ref().map(|t| t.replace(NAME, name)),
        ..opts.clone()
    }
}

/// Build every manifest in one [`Session`], in order, handing each result to `done` as
/// it comes; all the results. Only a refused option or a failure to start the session
/// is an error of the whole run.
pub fn build_many(
    opts: &BuildOptions,
    manifests: &[PathBuf],
    mut done: impl FnMut(&Built),
) -> Result<Vec<Built>> {
    check_options(opts)?;
    let mut loaded: Vec<(PathBuf, Result<Manifest>)> = manifests
        .iter()
        .map(|m| (m.clone(), Manifest::load(m).map_err(Error::from)))
        .collect();
    // A base the others include (`'manifests/*.toml'` matches them) is no image: skip it.
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let bases: BTreeSet<PathBuf> = loaded
        .iter()
        .filter_map(|(_, m)| m.as_ref().ok())
        .flat_map(|m| m.includes.iter().map(|i| canonical(&i.path)))
        .collect();
    loaded.retain(|(path, m)| m.is_ok() || !bases.contains(&canonical(path)));
    let mut names: BTreeMap<&str, &Path> = BTreeMap::new();
    for (path, manifest) in &loaded {
        if let Ok(m) = manifest {
            if let Some(first) = names.insert(&m.image.name, path) {
                return Err(Error::Usage(format!(
                    "{} and {} both describe the image `{}`: their outputs would collide; give each image its own name",
                    first.display(),
                    path.display(),
                    m.image.name
                )));
            }
        }
    }
    let session = Session::new(opts)?;
    session.keep_names(
        loaded
            .iter()
            .filter_map(|(_, m)| m.as_ref().ok())
            .flat_map(|m| m.packages.iter().map(|p| p.name.clone())),
    );
    let mut all = Vec::new();
    for (path, manifest) in loaded {
        let start = Instant::now();
        let result = manifest.and_then(|m| {
            let o = options_for(opts, &path, &m.image.name);
            build::build_in(&o, Some(&session))
        });
        let built = Built {
            manifest: path,
            result,
            elapsed: start.elapsed(),
        };
        done(&built);
        all.push(built);
    }
    Ok(all)
}
