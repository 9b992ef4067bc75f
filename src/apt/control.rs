//! A package's own `control` file (the `./control` of its control archive): one deb822
//! paragraph, read strictly enough that what compose checks is what a scanner reads.
//!
//! The image's `/var/lib/dpkg/status.d/<package>` is this file verbatim, and scanners
//! take the package's identity from it. So [`identity`] refuses anything a lenient
//! reader could see differently: more than one paragraph (a second one is a second
//! package to a scanner), a field given twice (names compare without case, as deb822
//! says), a line that is neither a field nor a continuation, text that is not UTF-8. The
//! caller compares the identity with the package's verified pin
//! (`crate::rootfs::compose`).
//!
//! Bytes in, facts out: nothing here touches the file system or the network.

use std::collections::BTreeSet;

/// `Package`, `Version` and `Architecture` of a control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `Package`.
    pub package: String,
    /// `Version`.
    pub version: String,
    /// `Architecture`.
    pub architecture: String,
}

/// The identity of a control file, or why it cannot be read (one phrase: "it …").
pub fn identity(control: &[u8]) -> Result<Identity, String> {
    let text = std::str::from_utf8(control).map_err(|_| "it is not UTF-8".to_string())?;
    let body = text.trim_end_matches(['\n', '\r']);
    let mut seen = BTreeSet::new();
    let (mut package, mut version, mut architecture) = (None, None, None);
    for (i, line) in body.split('\n').enumerate() {
        if line.trim().is_empty() {
            return Err("it holds more than one paragraph".into());
        }
        if line.starts_with([' ', '\t']) {
            if i == 0 {
                return Err("it starts with a continuation line".into());
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "line {} is neither a field nor a continuation",
                i + 1
            ));
        };
        let key = name.to_ascii_lowercase();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("line {} has no field name", i + 1));
        }
        if !seen.insert(key.clone()) {
            return Err(format!("it gives the field {name} twice"));
        }
        let value = Some(value.trim().to_string());
        match key.as_str() {
            "package" => package = value,
            "version" => version = value,
            "architecture" => architecture = value,
            _ => {}
        }
    }
    let need = |v: Option<String>, field: &str| {
        v.filter(|v| !v.is_empty())
            .ok_or_else(|| format!("it has no {field} field"))
    };
    Ok(Identity {
        package: need(package, "Package")?,
        version: need(version, "Version")?,
        architecture: need(architecture, "Architecture")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_of_a_control_file() {
        let ok = b"Package: libc6\nSource: glibc\nVersion: 2.39-0ubuntu8\nArchitecture: arm64\nDescription: GNU C Library\n shared libraries\n";
        assert_eq!(
            identity(ok).unwrap(),
            Identity {
                package: "libc6".into(),
                version: "2.39-0ubuntu8".into(),
                architecture: "arm64".into(),
            }
        );
        for (text, why) in [
            (
                &b"Package: a\nVersion: 1\nArchitecture: all\n\nPackage: openssl\nVersion: 9\n"[..],
                "more than one paragraph",
            ),
            (
                b"Package: a\nVersion: 1\nversion: 9.9.9\nArchitecture: all\n",
                "field version twice",
            ),
            (
                b"Package: a\nVersion: 1\nArchitecture: all\nnot a field\n",
                "line 4",
            ),
            (b"Package: a\nArchitecture: all\n", "no Version"),
            (
                b"Package: a\nVersion: \xff\nArchitecture: all\n",
                "not UTF-8",
            ),
            (b" Package: a\n", "continuation"),
        ] {
            let e = identity(text).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
