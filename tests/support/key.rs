//! OpenPGP test keys: generated per test run, used to sign Release files the way an apt
//! archive does (clearsigned `InRelease`, detached armored `Release.gpg`).

use std::io::Write;
use std::time::{Duration, SystemTime};

use sequoia_openpgp as openpgp;

use openpgp::armor;
use openpgp::cert::prelude::*;
use openpgp::crypto::KeyPair;
use openpgp::packet::signature::SignatureBuilder;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Message, Signer};
use openpgp::serialize::{Serialize, SerializeInto};
use openpgp::types::{HashAlgorithm, SignatureType};

/// A freshly generated certificate (with secret keys): an Ed25519 certification-only
/// primary key and an Ed25519 signing subkey, as archive keys are laid out.
pub struct TestKey {
    pub cert: openpgp::Cert,
}

impl TestKey {
    /// Generates a v4 (RFC 4880) Cv25519 certificate, which gpgv 2.2 understands.
    /// The key is dated one hour in the past so that signatures made "now" never
    /// precede it, whatever the clock granularity.
    pub fn generate(user_id: &str) -> TestKey {
        let created = SystemTime::now() - Duration::from_secs(3600);
        let (cert, _revocation) = CertBuilder::new()
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_creation_time(created)
            .add_userid(user_id)
            .add_signing_subkey()
            .generate()
            .expect("generate test OpenPGP certificate");
        TestKey { cert }
    }

    /// The public certificate, binary (an apt `.gpg` keyring).
    pub fn keyring_binary(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.cert.serialize(&mut out).expect("serialize cert");
        out
    }

    /// The public certificate, ASCII-armored (an apt `.asc` keyring).
    pub fn keyring_armored(&self) -> Vec<u8> {
        self.cert.armored().to_vec().expect("armor cert")
    }

    /// Fingerprint of the primary key, upper-case hex.
    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    /// Fingerprint of the signing subkey, upper-case hex.
    pub fn signing_fingerprint(&self) -> String {
        self.signing_keypair().public().fingerprint().to_hex()
    }

    fn signing_keypair(&self) -> KeyPair {
        let policy = StandardPolicy::new();
        self.cert
            .keys()
            .subkeys()
            .secret()
            .with_policy(&policy, None)
            .supported()
            .alive()
            .revoked(false)
            .for_signing()
            .next()
            .expect("test cert has a signing subkey")
            .key()
            .clone()
            .into_keypair()
            .expect("unencrypted secret key")
    }

    /// Clearsigns `text` with `Hash: SHA512`, the form of an `InRelease` file.
    pub fn clearsign(&self, text: &[u8]) -> Vec<u8> {
        clearsign_with(&[self], text, HashAlgorithm::SHA512)
    }

    /// Clearsigns with a chosen hash algorithm (e.g. SHA1, to test policy rejection).
    pub fn clearsign_with_hash(&self, text: &[u8], hash: HashAlgorithm) -> Vec<u8> {
        clearsign_with(&[self], text, hash)
    }

    /// Detached, ASCII-armored signature over `text` (the form of `Release.gpg`).
    pub fn detach_sign(&self, text: &[u8]) -> Vec<u8> {
        detach_sign_with(&[self], text, HashAlgorithm::SHA512)
    }
}

/// Clearsigned message carrying one signature per key (real archives sign with several).
///
/// Laid out byte for byte as `gpg --clearsign` writes it (and as archive InRelease files
/// are): the text, dash-escaped, directly followed by the signature block. The final line
/// ending of `text` is not signed (RFC 4880 §7.1); trailing blanks are not hashed.
pub fn clearsign_with(keys: &[&TestKey], text: &[u8], hash: HashAlgorithm) -> Vec<u8> {
    assert!(!keys.is_empty(), "clearsign needs at least one key");
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let mut hashed = Vec::with_capacity(body.len());
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            hashed.push(b'\n');
        }
        let end = line
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r'))
            .map_or(0, |p| p + 1);
        hashed.extend_from_slice(&line[..end]);
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"-----BEGIN PGP SIGNED MESSAGE-----\n");
    out.extend_from_slice(format!("Hash: {}\n\n", hash.text_name().expect("hash name")).as_bytes());
    for line in &lines {
        if line.starts_with(b"-") {
            out.extend_from_slice(b"- ");
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend(sign(keys, &hashed, hash, SignatureType::Text));
    out
}

fn sign(keys: &[&TestKey], text: &[u8], hash: HashAlgorithm, typ: SignatureType) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let message = Message::new(&mut out);
        let message = Armorer::new(message)
            .kind(armor::Kind::Signature)
            .build()
            .expect("armorer");
        let mut signer = Signer::with_template(
            message,
            keys[0].signing_keypair(),
            SignatureBuilder::new(typ),
        )
        .expect("signer")
        .detached();
        for key in &keys[1..] {
            signer = signer
                .add_signer(key.signing_keypair())
                .expect("add signer");
        }
        let mut signer = signer
            .hash_algo(hash)
            .expect("hash algorithm")
            .build()
            .expect("build detached signer");
        signer.write_all(text).expect("write signed text");
        signer.finalize().expect("finalize signature");
    }
    out
}

/// Detached ASCII-armored signature block (binary mode) with one signature per key.
pub fn detach_sign_with(keys: &[&TestKey], text: &[u8], hash: HashAlgorithm) -> Vec<u8> {
    assert!(!keys.is_empty(), "detach_sign needs at least one key");
    sign(keys, text, hash, SignatureType::Binary)
}
