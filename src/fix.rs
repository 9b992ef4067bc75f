//! `--fix` and `compose add`: the package blocks [`crate::suggest`] found, written into
//! the manifest with `toml_edit`, so that every comment, blank line and key order the
//! edit does not touch stays as it was. A new package becomes a `[package.X]` table after
//! the declared ones, under a comment saying what it ships; patterns for a package
//! already declared are appended to its `paths`.
//!
//! It refuses to write when the file changed on disk since the build read it (someone
//! else's edit is never overwritten), and writes through [`crate::atomic`]. It decides
//! nothing about which blocks: that is `crate::suggest`; and it prints nothing: the
//! caller says what was added ([`Fixed::summary`]).

use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::error::{Error, Result};
use crate::suggest::Block;

/// What was written into the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fixed {
    /// `[package.X]` tables added, as written (`[package."libstdc++6"]`).
    pub added: Vec<String>,
    /// `[package.X]` tables of declared packages whose `paths` got patterns: (table,
    /// patterns added).
    pub extended: Vec<(String, Vec<String>)>,
}

impl Fixed {
    /// Nothing was written.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.extended.is_empty()
    }

    /// One line: `FILE: added [package.a], [package.b]; added to the paths of
    /// [package.c]: "…"`.
    pub fn summary(&self, manifest: &Path) -> String {
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("added {}", self.added.join(", ")));
        }
        for (table, patterns) in &self.extended {
            parts.push(format!(
                "added to the paths of {table}: {}",
                patterns.join(", ")
            ));
        }
        format!("{}: {}", manifest.display(), parts.join("; "))
    }
}

/// The manifest changed on disk, or is not TOML `toml_edit` can edit.
fn refused(manifest: &Path, why: &str) -> Error {
    Error::Output(format!(
        "--fix: {} {why}; nothing was written to it",
        manifest.display()
    ))
}

/// Write `blocks` into the manifest at `path`, whose bytes were `read` when the build
/// loaded it.
pub fn apply(path: &Path, read: &[u8], blocks: &[Block]) -> Result<Fixed> {
    let now = std::fs::read(path).map_err(|source| Error::Io {
        context: format!("--fix: cannot read {}", path.display()),
        source,
    })?;
    if now != read {
        return Err(refused(
            path,
            "changed on disk since this build read it; build again to have the blocks named for the file as it is now",
        ));
    }
    let text = String::from_utf8(now).map_err(|_| refused(path, "is not UTF-8"))?;
    let (edited, fixed) = edit(&text, blocks).map_err(|why| refused(path, &why))?;
    if fixed.is_empty() {
        return Ok(fixed);
    }
    crate::atomic::write(path, "fix", edited.as_bytes())
        .map_err(|e| Error::Output(format!("--fix: {e}")))?;
    Ok(fixed)
}

/// `text` with `blocks` written in, and what was written.
pub fn edit(text: &str, blocks: &[Block]) -> std::result::Result<(String, Fixed), String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("cannot be edited as TOML: {}", e.message()))?;
    let mut fixed = Fixed::default();
    if !doc.contains_key("package") {
        let mut packages = Table::new();
        packages.set_implicit(true);
        doc.insert("package", Item::Table(packages));
    }
    let packages = doc["package"]
        .as_table_mut()
        .ok_or("has a `package` key that is not a table")?;
    for block in blocks {
        let heading = format!("[package.{}]", block.key());
        match packages.get_mut(&block.package) {
            Some(existing) => {
                let paths = existing
                    .as_table_like_mut()
                    .ok_or(format!("has a {heading} that is not a table"))?
                    .entry("paths")
                    .or_insert(Item::Value(Value::Array(Array::new())));
                let array = paths
                    .as_array_mut()
                    .ok_or(format!("has {heading} paths that are not a list"))?;
                let mut added = Vec::new();
                for p in &block.patterns {
                    if !array.iter().any(|v| v.as_str() == Some(p.as_str())) {
                        array.push(p.as_str());
                        added.push(format!("\"{p}\""));
                    }
                }
                if !added.is_empty() {
                    fixed.extended.push((heading, added));
                }
            }
            None => {
                let mut table = Table::new();
                let mut array = Array::new();
                for p in &block.patterns {
                    array.push(p.as_str());
                }
                table.insert("paths", Item::Value(Value::Array(array)));
                let why = block.why();
                table
                    .decor_mut()
                    .set_prefix(format!("\n# Added by compose --fix: {why}.\n"));
                packages.insert(&block.package, Item::Table(table));
                fixed.added.push(heading);
            }
        }
    }
    Ok((doc.to_string(), fixed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(package: &str, patterns: &[&str], declared: bool) -> Block {
        Block {
            package: package.into(),
            version: String::new(),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            ships: vec!["libx.so.1".into()],
            needed_by: Vec::new(),
            declared,
        }
    }

    #[test]
    fn blocks_are_added_and_comments_kept() {
        let text = "# top comment\n[image]\nname = \"x\"   # trailing\n\n[package.libc6]\npaths = [\"/usr/lib/*-linux-gnu/libc.so.6\"]  # libc\n\n[[file]]\npath = \"/a\"\ntext = \"\"\n";
        let (edited, fixed) = edit(
            text,
            &[
                block(
                    "libstdc++6",
                    &["/usr/lib/*-linux-gnu/libstdc++.so.6"],
                    false,
                ),
                block("libc6", &["/usr/lib/*-linux-gnu/libm.so.6"], true),
            ],
        )
        .unwrap();
        assert_eq!(fixed.added, ["[package.\"libstdc++6\"]"]);
        assert_eq!(
            fixed.extended,
            [(
                "[package.libc6]".to_string(),
                vec!["\"/usr/lib/*-linux-gnu/libm.so.6\"".to_string()]
            )]
        );
        for kept in [
            "# top comment\n",
            "name = \"x\"   # trailing\n",
            "# libc\n",
            "[[file]]\npath = \"/a\"\n",
        ] {
            assert!(edited.contains(kept), "{kept:?} lost:\n{edited}");
        }
        // The new table follows the declared packages; the rest of the file is as it was.
        assert_eq!(
            edited,
            text.replace(
                "libc.so.6\"]  # libc\n",
                "libc.so.6\", \"/usr/lib/*-linux-gnu/libm.so.6\"]  # libc\n\n# Added by compose --fix: ships libx.so.1.\n[package.\"libstdc++6\"]\npaths = [\"/usr/lib/*-linux-gnu/libstdc++.so.6\"]\n"
            )
        );
        let parsed: toml::Table = toml::from_str(&edited).unwrap();
        assert_eq!(
            parsed["package"]["libc6"]["paths"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}
