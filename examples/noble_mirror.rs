//! Writes the loopback noble repository of `tests/support/noble.rs` (the real noble
//! `.deb`s of `../shared/data/ubuntu/debs` with their real stanzas, each suite signed with
//! a key made for this run) into a directory, with the key's public keyring beside it:
//!
//!     cargo run --example noble_mirror -- DIR
//!
//! DIR then holds `ubuntu/dists/{noble,noble-updates,noble-security}`, `ubuntu/pool/…`
//! (symbolic links to the `.deb`s in `../shared/data`) and `test-keyring.gpg`. Serve DIR on
//! loopback and build the shipped manifests from it: `scripts/noble-mirror.sh` does both.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: cargo run --example noble_mirror -- DIR");
        return ExitCode::from(2);
    };
    let Some(shared) = support::noble::shared_ubuntu() else {
        eprintln!(
            "error: ../shared/data/ubuntu/debs is not there: the repository is made of those files"
        );
        return ExitCode::FAILURE;
    };
    let dir = PathBuf::from(dir);
    if dir.exists() && std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_some()) {
        eprintln!("error: {} exists and is not empty", dir.display());
        return ExitCode::FAILURE;
    }
    std::fs::create_dir_all(&dir).expect("create DIR");
    let key = support::TestKey::generate("compose noble loopback mirror <noble@example.invalid>");
    let mirror = support::noble::build(&shared, &dir, &key);
    let keyring = support::write_keyring(&dir, "test-keyring.gpg", &key);
    for p in &mirror.packages {
        println!(
            "{:<15} {:<22} {:<22} {:<5} {}",
            p.suite,
            p.name,
            p.version,
            p.arch,
            if p.real_stanza {
                "real stanza"
            } else {
                "stanza made from the .deb's control"
            }
        );
    }
    println!("repository: {}/ubuntu", dir.display());
    println!(
        "keyring:    {} (signing key {})",
        keyring.display(),
        key.fingerprint()
    );
    ExitCode::SUCCESS
}
