//! OpenPGP verification of `InRelease` (clearsigned) and `Release` +
//! `Release.gpg` (detached), with rules never weaker than apt's:
//!
//! - sequoia's `StandardPolicy` at the current time (SHA-1 data signatures,
//!   weak keys, expired or revoked keys do not count);
//! - at least one good signature by a key of the keyring;
//! - signatures by keys not in the keyring are ignored;
//! - a signature by a keyring key that does not verify is a hard error, even
//!   when another signature is good (gpgv exits 1 on any BADSIG, apt fails);
//! - for clearsigned files, nothing but whitespace may surround the signed
//!   block, and only the text sequoia verified is returned.

use std::io::Read;

use sequoia_openpgp as openpgp;

use openpgp::cert::{Cert, CertParser};
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
    VerifierBuilder,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::KeyHandle;

use super::AptError;

/// A set of trusted certificates (an apt source's `signed-by` keyring).
#[derive(Clone, Debug)]
pub struct Keyring {
    certs: Vec<Cert>,
}

impl Keyring {
    /// Reads a binary (`.gpg`) or ASCII-armored (`.asc`) keyring holding one
    /// or more certificates. Anything else is an error naming `origin`.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Keyring, AptError> {
        let err = |reason: String| AptError::Keyring {
            origin: origin.to_string(),
            reason,
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(err("the file is empty".into()));
        }
        let parser = CertParser::from_bytes(bytes).map_err(|e| err(one_line(&e)))?;
        let mut certs = Vec::new();
        for cert in parser {
            certs.push(cert.map_err(|e| err(one_line(&e)))?);
        }
        if certs.is_empty() {
            return Err(err("it holds no certificate".into()));
        }
        Ok(Keyring { certs })
    }

    /// Primary-key fingerprints of the certificates, uppercase hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|c| c.fingerprint().to_hex())
            .collect()
    }

    /// The certificates themselves (e.g. to serialize them).
    pub fn certs(&self) -> &[Cert] {
        &self.certs
    }
}

/// The outcome of a successful verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The signed text exactly as the signature covers it (for clearsigned
    /// input: dash-unescaped, without the armor headers).
    pub body: Vec<u8>,
    /// Primary fingerprints (uppercase hex, sorted, unique) of the keyring
    /// certificates whose keys made good signatures.
    pub signers: Vec<String>,
}

const BEGIN_SIGNED: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";
const BEGIN_SIGNATURE: &[u8] = b"-----BEGIN PGP SIGNATURE-----";
const END_SIGNATURE: &[u8] = b"-----END PGP SIGNATURE-----";

/// Verifies a clearsigned `InRelease`. `what` (the URL) names it in errors.
pub fn verify_clearsigned(
    data: &[u8],
    keyring: &Keyring,
    what: &str,
) -> Result<Verified, AptError> {
    let block = split_clearsigned(data, what)?;
    let policy = StandardPolicy::new();
    let helper = Helper::new(keyring);
    let mut verifier = VerifierBuilder::from_bytes(block)
        .and_then(|b| b.with_policy(&policy, None, helper))
        .map_err(|e| sig_error(what, e))?;
    let mut body = Vec::new();
    verifier
        .read_to_end(&mut body)
        .map_err(|e| sig_error(what, e.into()))?;
    if !verifier.message_processed() {
        return Err(AptError::Signature {
            what: what.to_string(),
            reason: "the message was not processed to its end".into(),
        });
    }
    let helper = verifier.into_helper();
    if !helper.csf {
        return Err(AptError::Framing {
            what: what.to_string(),
            reason: "the signed block is not a cleartext signature".into(),
        });
    }
    let signers = helper.judge(keyring, what)?;
    Ok(Verified { body, signers })
}

/// Verifies `Release` against its detached signature `Release.gpg`
/// (armored or binary). `what` (the URL of `Release`) names it in errors.
pub fn verify_detached(
    data: &[u8],
    signature: &[u8],
    keyring: &Keyring,
    what: &str,
) -> Result<Verified, AptError> {
    if signature.iter().all(u8::is_ascii_whitespace) {
        return Err(AptError::NoSignature {
            what: what.to_string(),
        });
    }
    let policy = StandardPolicy::new();
    let helper = Helper::new(keyring);
    let mut verifier = DetachedVerifierBuilder::from_bytes(signature)
        .and_then(|b| b.with_policy(&policy, None, helper))
        .map_err(|e| sig_error(what, e))?;
    verifier
        .verify_bytes(data)
        .map_err(|e| sig_error(what, e))?;
    let signers = verifier.into_helper().judge(keyring, what)?;
    Ok(Verified {
        body: data.to_vec(),
        signers,
    })
}

/// An error with its causes (`{:#}`) on one line: sequoia's parser errors span several
/// lines, and compose reports every failure as one `error:` line.
fn one_line(e: &dyn std::fmt::Display) -> String {
    format!("{e:#}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn sig_error(what: &str, e: anyhow::Error) -> AptError {
    AptError::Signature {
        what: what.to_string(),
        reason: one_line(&e),
    }
}

/// The framing check of [`verify_clearsigned`], before any cryptography.
///
/// Returns the bytes from `-----BEGIN PGP SIGNED MESSAGE-----` to the end of
/// the `-----END PGP SIGNATURE-----` line, after checking that only
/// whitespace surrounds them and that the signed text is properly
/// dash-escaped (so the block cannot hide a second message). The result is
/// always a sub-slice of `data`. Public so that it can be fuzzed on its own.
pub fn split_clearsigned<'d>(data: &'d [u8], what: &str) -> Result<&'d [u8], AptError> {
    let framing = |reason: String| AptError::Framing {
        what: what.to_string(),
        reason,
    };
    let start = data
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or_else(|| framing("the file is empty".into()))?;
    let mut lines = Lines { data, pos: start };
    let first = lines.next().map(trim_end).unwrap_or_default();
    if first != BEGIN_SIGNED {
        let shown = String::from_utf8_lossy(&first[..first.len().min(60)]).into_owned();
        return Err(framing(format!(
            "it must start with {}, found {shown:?}",
            String::from_utf8_lossy(BEGIN_SIGNED)
        )));
    }
    let mut seen_signature = false;
    let mut end = None;
    for line in lines.by_ref() {
        let t = trim_end(line);
        if !seen_signature {
            if t == BEGIN_SIGNATURE {
                seen_signature = true;
            } else if t.starts_with(b"-") && !t.starts_with(b"- ") {
                let shown = String::from_utf8_lossy(&t[..t.len().min(60)]).into_owned();
                return Err(framing(format!(
                    "the signed text holds an armor or unescaped dash line {shown:?}"
                )));
            }
        } else if t == END_SIGNATURE {
            end = Some(lines.pos);
            break;
        } else if t.starts_with(b"-----") {
            let shown = String::from_utf8_lossy(&t[..t.len().min(60)]).into_owned();
            return Err(framing(format!(
                "unexpected armor line {shown:?} in the signature block"
            )));
        }
    }
    if !seen_signature {
        return Err(AptError::NoSignature {
            what: what.to_string(),
        });
    }
    let end = end.ok_or_else(|| {
        framing(format!(
            "the signature block has no {} line",
            String::from_utf8_lossy(END_SIGNATURE)
        ))
    })?;
    if let Some(off) = data[end..].iter().position(|b| !b.is_ascii_whitespace()) {
        let rest = &data[end + off..];
        let shown = String::from_utf8_lossy(&rest[..rest.len().min(60)]).into_owned();
        return Err(framing(format!(
            "text follows the signature block: {shown:?}"
        )));
    }
    Ok(&data[start..end])
}

fn trim_end(line: &[u8]) -> &[u8] {
    let n = line
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .map_or(0, |p| p + 1);
    &line[..n]
}

/// Lines including their `\n`; `pos` is the offset after the last one returned.
struct Lines<'d> {
    data: &'d [u8],
    pos: usize,
}

impl<'d> Iterator for Lines<'d> {
    type Item = &'d [u8];
    fn next(&mut self) -> Option<&'d [u8]> {
        if self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1);
        self.pos += len;
        Some(&rest[..len])
    }
}

/// Key lookup in the keyring, and the record of what the signatures said.
struct Helper<'k> {
    keyring: &'k Keyring,
    checked: bool,
    csf: bool,
    good: Vec<String>,
    /// (key, reason) of signatures by keyring keys that failed to verify.
    bad: Vec<(String, String)>,
    /// Signatures that do not count (unknown key, policy, expired...).
    ignored: Vec<String>,
    structure_error: Option<String>,
}

impl<'k> Helper<'k> {
    fn new(keyring: &'k Keyring) -> Self {
        Helper {
            keyring,
            checked: false,
            csf: false,
            good: Vec::new(),
            bad: Vec::new(),
            ignored: Vec::new(),
            structure_error: None,
        }
    }

    /// Applies the rules to what `check` recorded.
    fn judge(mut self, keyring: &Keyring, what: &str) -> Result<Vec<String>, AptError> {
        if let Some(reason) = self.structure_error {
            return Err(AptError::Signature {
                what: what.to_string(),
                reason,
            });
        }
        if !self.checked {
            return Err(AptError::Signature {
                what: what.to_string(),
                reason: "the signatures were never checked".into(),
            });
        }
        if let Some((key, reason)) = self.bad.into_iter().next() {
            return Err(AptError::BadSignature {
                what: what.to_string(),
                key,
                reason,
            });
        }
        if self.good.is_empty() {
            if self.ignored.is_empty() {
                return Err(AptError::NoSignature {
                    what: what.to_string(),
                });
            }
            return Err(AptError::NoTrustedSignature {
                what: what.to_string(),
                keyring: keyring.fingerprints().join(", "),
                seen: self.ignored.join("; "),
            });
        }
        self.good.sort();
        self.good.dedup();
        Ok(self.good)
    }
}

fn issuer_of(sig: &openpgp::packet::Signature) -> String {
    sig.get_issuers()
        .first()
        .map_or_else(|| "unknown issuer".to_string(), |h| h.to_hex())
}

/// Sequoia judges a key as of the signature's creation time; gpgv, and so
/// apt, also refuse a good signature by a key that is expired or revoked now
/// (EXPKEYSIG, REVKEYSIG). Do the same.
fn usable_now(cert: &Cert, key: KeyHandle) -> Result<(), String> {
    use openpgp::types::RevocationStatus;
    let policy = StandardPolicy::new();
    let valid = cert
        .with_policy(&policy, None)
        .map_err(|e| format!("is not valid now ({})", one_line(&e)))?;
    valid
        .alive()
        .map_err(|e| format!("has expired ({})", one_line(&e)))?;
    if let RevocationStatus::Revoked(_) = valid.revocation_status() {
        return Err("is revoked".into());
    }
    let usable = valid
        .keys()
        .key_handle(key)
        .alive()
        .revoked(false)
        .for_signing()
        .next()
        .is_some();
    if usable {
        Ok(())
    } else {
        Err(
            "made the signature with a subkey that is now expired, revoked or not for signing"
                .into(),
        )
    }
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self
            .keyring
            .certs
            .iter()
            .filter(|cert| {
                cert.keys()
                    .any(|k| ids.iter().any(|id| id.aliases(k.key().key_handle())))
            })
            .cloned()
            .collect())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        self.checked = true;
        self.csf = structure.processed_csf_message();
        let mut layers = 0;
        for layer in structure.into_iter() {
            layers += 1;
            let results = match layer {
                MessageLayer::SignatureGroup { results } if layers == 1 => results,
                _ => {
                    self.structure_error = Some(
                        "unexpected message structure: expected exactly one group of signatures"
                            .into(),
                    );
                    return Ok(());
                }
            };
            for result in results {
                match result {
                    Ok(good) => {
                        let cert = good.ka.cert();
                        let fp = cert.fingerprint().to_hex();
                        match usable_now(cert, good.ka.key().key_handle()) {
                            Ok(()) => self.good.push(fp),
                            Err(why) => self.ignored.push(format!("key {fp} {why}")),
                        }
                    }
                    Err(VerificationError::BadSignature { ka, error, .. }) => {
                        let key = ka.cert().fingerprint().to_hex();
                        match error.downcast_ref::<openpgp::Error>() {
                            // Not a forgery: a signature that does not count
                            // (SHA-1, expired, made in the future), as apt's
                            // "worthless" signatures.
                            Some(
                                openpgp::Error::PolicyViolation(..)
                                | openpgp::Error::Expired(..)
                                | openpgp::Error::NotYetLive(..),
                            ) => self.ignored.push(format!(
                                "key {key} signature not acceptable: {}",
                                one_line(&error)
                            )),
                            _ => self.bad.push((key, one_line(&error))),
                        }
                    }
                    Err(VerificationError::MissingKey { sig }) => self
                        .ignored
                        .push(format!("key {} not in keyring", issuer_of(sig))),
                    Err(e) => self.ignored.push(one_line(&e)),
                }
            }
        }
        if layers == 0 {
            self.structure_error = Some("the message holds no signature group".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::cert::CertBuilder;
    use openpgp::crypto::KeyPair;
    use openpgp::serialize::stream::{Armorer, Message, Signer};
    use openpgp::serialize::Serialize;
    use openpgp::types::HashAlgorithm;
    use std::io::Write;

    fn new_key(name: &str) -> (Cert, KeyPair) {
        let (cert, _) = CertBuilder::new()
            .add_userid(name)
            .add_signing_subkey()
            .generate()
            .unwrap();
        let policy = StandardPolicy::new();
        let pair = cert
            .keys()
            .secret()
            .with_policy(&policy, None)
            .for_signing()
            .next()
            .unwrap()
            .key()
            .clone()
            .into_keypair()
            .unwrap();
        (cert, pair)
    }

    fn keyring(certs: &[&Cert]) -> Keyring {
        let mut bytes = Vec::new();
        for c in certs {
            c.serialize(&mut bytes).unwrap();
        }
        Keyring::from_bytes(&bytes, "test keyring").unwrap()
    }

    fn clearsign(text: &[u8], keys: Vec<KeyPair>, hash: HashAlgorithm) -> Vec<u8> {
        let mut sink = Vec::new();
        {
            let mut keys = keys.into_iter();
            let mut signer = Signer::new(Message::new(&mut sink), keys.next().unwrap()).unwrap();
            for k in keys {
                signer = signer.add_signer(k).unwrap();
            }
            let mut w = signer.hash_algo(hash).unwrap().cleartext().build().unwrap();
            w.write_all(text).unwrap();
            w.finalize().unwrap();
        }
        sink
    }

    fn detach_sign(text: &[u8], key: KeyPair, armor: bool) -> Vec<u8> {
        let mut sink = Vec::new();
        {
            let mut message = Message::new(&mut sink);
            if armor {
                message = Armorer::new(message)
                    .kind(openpgp::armor::Kind::Signature)
                    .build()
                    .unwrap();
            }
            let mut w = Signer::new(message, key)
                .unwrap()
                .detached()
                .build()
                .unwrap();
            w.write_all(text).unwrap();
            w.finalize().unwrap();
        }
        sink
    }

    const TEXT: &[u8] =
        b"Origin: Test\nSuite: stable\nSHA256:\n 0123 12 main/binary-amd64/Packages\n";

    #[test]
    fn good_signature_by_keyring_key() {
        let (cert, key) = new_key("archive");
        let data = clearsign(TEXT, vec![key], HashAlgorithm::SHA512);
        let v = verify_clearsigned(&data, &keyring(&[&cert]), "t").unwrap();
        // Sequoia signs the final line break too (gpg does not, see the
        // real-vector tests): the body is exactly what was signed.
        assert_eq!(v.body, TEXT);
        assert_eq!(v.signers, vec![cert.fingerprint().to_hex()]);
    }

    #[test]
    fn unknown_signers_are_ignored_and_signers_sorted() {
        let (a, ka) = new_key("a");
        let (b, kb) = new_key("b");
        let (_stranger, ks) = new_key("stranger");
        let data = clearsign(TEXT, vec![ks, kb, ka], HashAlgorithm::SHA256);
        let v = verify_clearsigned(&data, &keyring(&[&a, &b]), "t").unwrap();
        let mut expected = vec![a.fingerprint().to_hex(), b.fingerprint().to_hex()];
        expected.sort();
        assert_eq!(v.signers, expected);
        // Only the stranger's key: no trusted signature, and the message says whose it was.
        let (_c, kc) = new_key("c");
        let data = clearsign(TEXT, vec![kc], HashAlgorithm::SHA256);
        let err = verify_clearsigned(&data, &keyring(&[&a]), "http://x/InRelease").unwrap_err();
        assert!(
            matches!(err, AptError::NoTrustedSignature { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("http://x/InRelease") && msg.contains("not in keyring"),
            "{msg}"
        );
    }

    #[test]
    fn tampered_text_is_a_bad_signature_even_next_to_a_good_one() {
        let (a, ka) = new_key("a");
        let data = clearsign(TEXT, vec![ka], HashAlgorithm::SHA512);
        let tampered = String::from_utf8(data)
            .unwrap()
            .replace("Suite: stable", "Suite: stablE");
        let err = verify_clearsigned(tampered.as_bytes(), &keyring(&[&a]), "t").unwrap_err();
        assert!(matches!(err, AptError::BadSignature { .. }), "{err:?}");
        assert!(err.to_string().contains(&a.fingerprint().to_hex()));

        // A keyring key's bad signature fails the file even when another
        // keyring key's signature is good (gpgv exits 1, apt refuses): put
        // c's signature of other text next to b's good one.
        let (b, kb) = new_key("b");
        let (c, kc) = new_key("c");
        let good_b = clearsign(TEXT, vec![kb], HashAlgorithm::SHA512);
        let good_c_other = clearsign(b"Origin: Other\n", vec![kc], HashAlgorithm::SHA512);
        let ring = keyring(&[&b, &c]);
        verify_clearsigned(&good_b, &ring, "t").unwrap();
        verify_clearsigned(&good_c_other, &ring, "t").unwrap();
        let mixed = merge_signatures(&good_b, &good_c_other);
        let err = verify_clearsigned(&mixed, &ring, "t").unwrap_err();
        assert!(matches!(err, AptError::BadSignature { .. }), "{err:?}");
        assert!(err.to_string().contains(&c.fingerprint().to_hex()), "{err}");
        // With c not in the keyring, its signature is ignored and b's counts.
        let v = verify_clearsigned(&mixed, &keyring(&[&b]), "t").unwrap();
        assert_eq!(v.signers, vec![b.fingerprint().to_hex()]);
    }

    /// The text of `first` signed by the signatures of both files.
    fn merge_signatures(first: &[u8], second: &[u8]) -> Vec<u8> {
        use openpgp::PacketPile;
        let block = |d: &[u8]| d[find(d, BEGIN_SIGNATURE)..].to_vec();
        let mut sigs = Vec::new();
        for d in [first, second] {
            let pile = PacketPile::from_bytes(&block(d)).unwrap();
            for p in pile.into_children() {
                sigs.push(p);
            }
        }
        let mut armored = Vec::new();
        {
            let mut w =
                openpgp::armor::Writer::new(&mut armored, openpgp::armor::Kind::Signature).unwrap();
            for p in &sigs {
                p.serialize(&mut w).unwrap();
            }
            w.finalize().unwrap();
        }
        let mut out = first[..find(first, BEGIN_SIGNATURE)].to_vec();
        out.extend_from_slice(&armored);
        out
    }

    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).unwrap()
    }

    #[test]
    fn sha1_signature_does_not_count() {
        let (a, ka) = new_key("a");
        let data = clearsign(TEXT, vec![ka], HashAlgorithm::SHA1);
        assert!(find(&data, b"Hash: SHA1") > 0);
        let err = verify_clearsigned(&data, &keyring(&[&a]), "t").unwrap_err();
        assert!(
            matches!(err, AptError::NoTrustedSignature { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("SHA1"), "{err}");
    }

    #[test]
    fn signature_by_a_key_expired_now_does_not_count() {
        use std::time::{Duration, SystemTime};
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        let (cert, _) = CertBuilder::new()
            .add_userid("short-lived")
            .set_creation_time(two_hours_ago)
            .set_validity_period(Duration::from_secs(3600))
            .add_signing_subkey()
            .generate()
            .unwrap();
        let policy = StandardPolicy::new();
        let signed_at = two_hours_ago + Duration::from_secs(600);
        let pair = cert
            .keys()
            .secret()
            .with_policy(&policy, signed_at)
            .for_signing()
            .next()
            .unwrap()
            .key()
            .clone()
            .into_keypair()
            .unwrap();
        let mut data = Vec::new();
        {
            let mut w = Signer::new(Message::new(&mut data), pair)
                .unwrap()
                .creation_time(signed_at)
                .cleartext()
                .build()
                .unwrap();
            w.write_all(TEXT).unwrap();
            w.finalize().unwrap();
        }
        let err = verify_clearsigned(&data, &keyring(&[&cert]), "t").unwrap_err();
        assert!(
            matches!(err, AptError::NoTrustedSignature { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("has expired"), "{err}");
    }

    #[test]
    fn dash_escaping() {
        let (a, ka) = new_key("a");
        let text = b"Origin: Test\n-----BEGIN PGP SIGNATURE-----\n- x\n";
        let data = clearsign(text, vec![ka], HashAlgorithm::SHA512);
        // Sequoia escapes the dash lines; the body has them unescaped.
        assert!(find(&data, b"- -----BEGIN PGP SIGNATURE-----\n") > 0);
        let v = verify_clearsigned(&data, &keyring(&[&a]), "t").unwrap();
        assert_eq!(v.body, text);
        // An unescaped dash line inside the signed text is refused.
        let s = String::from_utf8(data).unwrap().replace("- - x", "-x");
        let err = verify_clearsigned(s.as_bytes(), &keyring(&[&a]), "t").unwrap_err();
        assert!(matches!(err, AptError::Framing { .. }), "{err:?}");
    }

    #[test]
    fn missing_end_line_and_armor_inside_block() {
        let (a, ka) = new_key("a");
        let data = String::from_utf8(clearsign(TEXT, vec![ka], HashAlgorithm::SHA512)).unwrap();
        let cut = data.replace("-----END PGP SIGNATURE-----", "");
        let err = verify_clearsigned(cut.as_bytes(), &keyring(&[&a]), "t").unwrap_err();
        assert!(err.to_string().contains("END PGP SIGNATURE"), "{err}");
        let nested = data.replace(
            "-----END PGP SIGNATURE-----",
            "-----BEGIN PGP MESSAGE-----\n-----END PGP SIGNATURE-----",
        );
        let err = verify_clearsigned(nested.as_bytes(), &keyring(&[&a]), "t").unwrap_err();
        assert!(matches!(err, AptError::Framing { .. }), "{err:?}");
    }

    #[test]
    fn detached_binary_and_armored() {
        let (a, ka) = new_key("a");
        let (b, kb) = new_key("b");
        let ring = keyring(&[&a]);
        let bin = detach_sign(TEXT, ka, false);
        let v = verify_detached(TEXT, &bin, &ring, "Release").unwrap();
        assert_eq!(v.body, TEXT);
        assert_eq!(v.signers, vec![a.fingerprint().to_hex()]);

        let armored = detach_sign(TEXT, kb, true);
        assert!(armored.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
        let err = verify_detached(TEXT, &armored, &ring, "Release").unwrap_err();
        assert!(
            matches!(err, AptError::NoTrustedSignature { .. }),
            "{err:?}"
        );
        let v = verify_detached(TEXT, &armored, &keyring(&[&a, &b]), "Release").unwrap();
        assert_eq!(v.signers, vec![b.fingerprint().to_hex()]);

        let mut changed = TEXT.to_vec();
        changed[0] = b'o';
        let err = verify_detached(&changed, &bin, &ring, "Release").unwrap_err();
        assert!(matches!(err, AptError::BadSignature { .. }), "{err:?}");
        let err = verify_detached(TEXT, b"not a signature", &ring, "Release").unwrap_err();
        assert!(err.to_string().contains("Release"), "{err}");
    }

    #[test]
    fn keyring_parsing() {
        let (a, _) = new_key("a");
        let (b, _) = new_key("b");
        let ring = keyring(&[&a, &b]);
        assert_eq!(
            ring.fingerprints(),
            vec![a.fingerprint().to_hex(), b.fingerprint().to_hex()]
        );
        assert!(ring.fingerprints()[0]
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        let err = Keyring::from_bytes(b"hello world\n", "notes.txt").unwrap_err();
        assert!(matches!(err, AptError::Keyring { .. }));
        assert!(err.to_string().contains("notes.txt"), "{err}");
        let err = Keyring::from_bytes(b"  \n", "blank.asc").unwrap_err();
        assert!(err.to_string().contains("blank.asc"), "{err}");
        // A signature is not a keyring; sequoia's two-line parser error becomes one line.
        let (_, ka) = new_key("c");
        let sig = detach_sign(TEXT, ka, false);
        let err = Keyring::from_bytes(&sig, "sig.gpg").unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("Signature Packet"), "{msg}");
    }
}
