//! Certificate and key files → a matched [`CertifiedKey`]: read, PEM-decoded, checked as
//! X.509, and the key matched against the certificate.
//!
//! Each problem is said in plain words with the file it is about ("truncated PEM block",
//! "not a PEM certificate", "no certificate in file", "key does not match certificate"),
//! never in a parser's own terms. Used by validation (`check`, `run`, a reload) and by the
//! certificate-only reload ([`super::Config::with_reloaded_certificates`]). It reads
//! files: never call it on a worker.

use std::path::Path;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{FNV_SEED, fnv1a};

/// A certificate chain and its key, parsed and matched.
pub(crate) struct Pair {
    pub certified: CertifiedKey,
    /// DNS names of the leaf (subjectAltName, else the subject CN), as written in it.
    pub names: Vec<String>,
    /// FNV-1a of each file's content as loaded.
    pub cert_hash: u64,
    pub key_hash: u64,
}

/// Which of the two files a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Cert,
    Key,
}

impl Which {
    /// The config field naming the file (`cert` or `key`).
    pub fn field(self) -> &'static str {
        match self {
            Which::Cert => "cert",
            Which::Key => "key",
        }
    }
}

/// One problem with a certificate or key file; `message` starts with the file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PairError {
    pub which: Which,
    pub message: String,
}

/// Reads and checks `cert_path` and `key_path`; every problem found in either file.
pub(crate) fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Pair, Vec<PairError>> {
    let mut errors = Vec::new();
    let mut fail = |which, path: &Path, what: String| {
        errors.push(PairError {
            which,
            message: format!("{}: {what}", path.display()),
        });
    };
    let cert = std::fs::read(cert_path)
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|pem| Ok((fnv1a(FNV_SEED, &pem), parse_chain(&pem)?)));
    let key = std::fs::read(key_path)
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|pem| Ok((fnv1a(FNV_SEED, &pem), parse_key(&pem)?)));
    let (cert, key) = match (cert, key) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => {
            if let Err(e) = c {
                fail(Which::Cert, cert_path, e);
            }
            if let Err(e) = k {
                fail(Which::Key, key_path, e);
            }
            return Err(errors);
        }
    };
    let ((cert_hash, (chain, names)), (key_hash, key)) = (cert, key);
    match certified_key(chain, key) {
        Ok(certified) => Ok(Pair {
            certified,
            names,
            cert_hash,
            key_hash,
        }),
        Err(e) => {
            let what = match e {
                KeyProblem::Unusable => {
                    "not a usable private key (damaged, truncated, or an unsupported type)"
                        .to_string()
                }
                KeyProblem::Mismatch => {
                    format!("key does not match certificate {}", cert_path.display())
                }
                KeyProblem::Other(e) => format!(
                    "cannot check the key against certificate {}: {e}",
                    cert_path.display()
                ),
            };
            fail(Which::Key, key_path, what);
            Err(errors)
        }
    }
}

/// The chain in a PEM file, each certificate checked as X.509, and the leaf's names.
fn parse_chain(pem: &[u8]) -> Result<(Vec<CertificateDer<'static>>, Vec<String>), String> {
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        chain.push(item.map_err(|e| pem_problem(&e, "certificate"))?);
    }
    if chain.is_empty() {
        return Err(if contains(pem, b"PRIVATE KEY-----") {
            "no certificate in file: it holds a private key (cert and key swapped?)".into()
        } else if pem.iter().all(u8::is_ascii_whitespace) {
            "no certificate in file: the file is empty".into()
        } else {
            "no certificate in file: not a PEM certificate (expected a \
             \"-----BEGIN CERTIFICATE-----\" block)"
                .into()
        });
    }
    let mut names = Vec::new();
    for (i, der) in chain.iter().enumerate() {
        let parsed = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => cert,
            Err(_) if der_is_truncated(der) => {
                return Err(format!(
                    "certificate #{} is truncated: its PEM block holds fewer bytes than the \
                     certificate says it has (lines missing?)",
                    i + 1
                ));
            }
            Err(_) => {
                return Err(format!(
                    "certificate #{} is not an X.509 certificate (its PEM block decodes, \
                     but not to a certificate)",
                    i + 1
                ));
            }
        };
        if i == 0 {
            names = dns_names(&parsed);
        }
    }
    Ok((chain, names))
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound if contains(pem, b"BEGIN CERTIFICATE") => {
            "no private key in file: it holds a certificate (cert and key swapped?)".into()
        }
        pem::Error::NoItemsFound => "no private key in file (expected PKCS#8 \"PRIVATE KEY\", \
             SEC1 \"EC PRIVATE KEY\" or PKCS#1 \"RSA PRIVATE KEY\")"
            .to_string(),
        other => pem_problem(&other, "private key"),
    })
}

/// A PEM decoding failure in plain words; `what` is what the file should hold.
fn pem_problem(e: &pem::Error, what: &str) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "truncated PEM block: a \"-----BEGIN\" line without its \"-----END\" line".into()
        }
        pem::Error::IllegalSectionStart { .. } => {
            format!("not a PEM {what}: a malformed \"-----BEGIN\" line")
        }
        pem::Error::Base64Decode(_) => {
            format!("not a PEM {what}: a block is not valid base64 (damaged or edited?)")
        }
        pem::Error::SectionTooLarge => "a PEM block is larger than 256 MB".into(),
        other => format!("not a PEM {what} ({other})"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether DER says it is longer than it is: the outer SEQUENCE's length (short form,
/// or long form of up to 4 length bytes) against the bytes present.
fn der_is_truncated(der: &[u8]) -> bool {
    let Some(&first) = der.get(1) else {
        return true;
    };
    let (len, header) = match first {
        n if n < 0x80 => (usize::from(n), 2),
        0x81..=0x84 => {
            let k = usize::from(first & 0x7f);
            let Some(bytes) = der.get(2..2 + k) else {
                return true;
            };
            let len = bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
            (len, 2 + k)
        }
        _ => return false,
    };
    header.saturating_add(len) > der.len()
}

enum KeyProblem {
    Unusable,
    Mismatch,
    Other(rustls::Error),
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, KeyProblem> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| KeyProblem::Unusable)?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(KeyProblem::Mismatch)
        }
        Err(e) => Err(KeyProblem::Other(e)),
    }
}

/// DNS names from the certificate's subjectAltName (falling back to the subject CN).
fn dns_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_string());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        _dir: tempfile::TempDir,
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        cert_pem: String,
        key_pem: String,
    }

    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["a.example.test".into()]).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (cert_pem, key_pem) = (made.cert.pem(), made.signing_key.serialize_pem());
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, &key_pem).unwrap();
        Files {
            _dir: dir,
            cert,
            key,
            cert_pem,
            key_pem,
        }
    }

    /// The one error `load_pair` reports after `cert`'s content is replaced.
    fn cert_error(f: &Files, cert: &str) -> String {
        std::fs::write(&f.cert, cert).unwrap();
        let errors = load_pair(&f.cert, &f.key).err().expect("an error");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].which, Which::Cert);
        assert!(
            errors[0]
                .message
                .starts_with(&format!("{}: ", f.cert.display())),
            "{errors:?}"
        );
        errors[0].message.clone()
    }

    #[test]
    fn a_good_pair_loads_with_its_names() {
        let f = files();
        let pair = load_pair(&f.cert, &f.key).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(pair.names, ["a.example.test"]);
        assert_eq!(pair.cert_hash, fnv1a(FNV_SEED, f.cert_pem.as_bytes()));
    }

    #[test]
    fn broken_certificates_are_said_in_plain_words() {
        let f = files();
        let lines: Vec<&str> = f.cert_pem.lines().collect();
        let cut_in_half = f.cert_pem[..f.cert_pem.len() / 2].to_string();
        let lines_missing = [&lines[..2], &lines[lines.len() - 3..]].concat().join("\n");
        let not_base64 = f.cert_pem.replacen('M', "%", 1);
        let cases = [
            (cut_in_half.as_str(), "truncated PEM block"),
            (lines_missing.as_str(), "certificate #1 is truncated"),
            (not_base64.as_str(), "not a PEM certificate"),
            ("hello\n", "no certificate in file: not a PEM certificate"),
            ("", "no certificate in file: the file is empty"),
            (f.key_pem.as_str(), "it holds a private key"),
        ];
        for (content, expected) in cases {
            let msg = cert_error(&f, content);
            assert!(msg.contains(expected), "{expected:?} not in {msg:?}");
            for jargon in ["Nom", "Parsing Error", "Eof", "section end marker"] {
                assert!(!msg.contains(jargon), "{msg}");
            }
        }
    }

    #[test]
    fn a_key_of_another_certificate_does_not_match() {
        let f = files();
        let other = rcgen::generate_simple_self_signed(vec!["a.example.test".into()]).unwrap();
        std::fs::write(&f.key, other.signing_key.serialize_pem()).unwrap();
        let errors = load_pair(&f.cert, &f.key).err().expect("mismatch");
        assert_eq!(errors[0].which, Which::Key);
        assert_eq!(
            errors[0].message,
            format!(
                "{}: key does not match certificate {}",
                f.key.display(),
                f.cert.display()
            )
        );
        std::fs::write(&f.key, &f.cert_pem).unwrap();
        let errors = load_pair(&f.cert, &f.key).err().expect("swapped");
        assert!(
            errors[0].message.contains("it holds a certificate"),
            "{errors:?}"
        );
    }
}
