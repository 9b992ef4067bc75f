//! The clearsigned-message splitter (`split_clearsigned`, the framing check of
//! `verify_clearsigned`) over arbitrary bytes, then `verify_clearsigned` itself with
//! a fixed keyring (`fuzz/keyring.gpg`, the public key that signed the seeds).
//!
//! Splitter invariants: the block returned is a sub-slice of the input; only ASCII
//! whitespace surrounds it; it starts with the BEGIN PGP SIGNED MESSAGE line, holds a
//! BEGIN PGP SIGNATURE line, ends with the END PGP SIGNATURE line; no line of the
//! signed text before the signature starts with `-` unless dash-escaped.
//! Verifier invariants: it never succeeds where the splitter refuses (and then fails
//! with the splitter's error); a success names at least one signer, each a key of the
//! keyring, sorted and unique.
#![no_main]

use std::sync::OnceLock;

use compose::apt::signature::{split_clearsigned, verify_clearsigned, Keyring};
use libfuzzer_sys::fuzz_target;

const BEGIN_SIGNED: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";
const BEGIN_SIGNATURE: &[u8] = b"-----BEGIN PGP SIGNATURE-----";
const END_SIGNATURE: &[u8] = b"-----END PGP SIGNATURE-----";

fn keyring() -> &'static Keyring {
    static K: OnceLock<Keyring> = OnceLock::new();
    K.get_or_init(|| {
        Keyring::from_bytes(include_bytes!("../keyring.gpg"), "fuzz/keyring.gpg")
            .expect("fuzz/keyring.gpg is a keyring")
    })
}

fn trim_end(l: &[u8]) -> &[u8] {
    let n = l
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .map_or(0, |p| p + 1);
    &l[..n]
}

fuzz_target!(|data: &[u8]| {
    let split = split_clearsigned(data, "fuzz");
    if let Ok(block) = split {
        let start = block.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + block.len() <= data.len(), "block outside the input");
        assert_eq!(&data[start..start + block.len()], block);
        assert!(
            data[..start].iter().all(u8::is_ascii_whitespace),
            "text before the block"
        );
        assert!(
            data[start + block.len()..]
                .iter()
                .all(u8::is_ascii_whitespace),
            "text after the block"
        );
        let lines: Vec<&[u8]> = block
            .split_inclusive(|&b| b == b'\n')
            .map(trim_end)
            .collect();
        assert_eq!(lines.first().copied(), Some(BEGIN_SIGNED));
        assert_eq!(lines.last().copied(), Some(END_SIGNATURE));
        let sig = lines
            .iter()
            .position(|l| *l == BEGIN_SIGNATURE)
            .expect("a signature block");
        for l in &lines[1..sig] {
            assert!(
                !l.starts_with(b"-") || l.starts_with(b"- "),
                "unescaped {l:?}"
            );
        }
        for l in &lines[sig + 1..lines.len() - 1] {
            assert!(
                !l.starts_with(b"-----"),
                "armor line {l:?} in the signature"
            );
        }
    }

    let keyring = keyring();
    match (verify_clearsigned(data, keyring, "fuzz"), &split) {
        (Ok(v), Ok(_)) => {
            assert!(!v.signers.is_empty(), "verified without a signer");
            let known = keyring.fingerprints();
            for s in &v.signers {
                assert!(known.contains(s), "signer {s} not in the keyring");
            }
            assert!(
                v.signers.windows(2).all(|w| w[0] < w[1]),
                "signers not sorted/unique"
            );
        }
        (Ok(_), Err(e)) => panic!("verified a message the splitter refuses: {e}"),
        (Err(v), Err(s)) => assert_eq!(v.to_string(), s.to_string()),
        (Err(_), Ok(_)) => {}
    }
});
