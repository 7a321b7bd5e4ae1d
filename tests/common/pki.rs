//! Test PKI: root CA → intermediate CA → server leaves, plus self-signed and mismatched
//! pairs, written as PEM files into a temporary directory. [`ClientPki`]: client CAs
//! with valid, expired, not-yet-valid, serverAuth-only, too-deep and self-signed client
//! certificates and CRLs revoking them.
//!
//! Keys are ECDSA P-256 or RSA 2048, and each key file can be written as PKCS#8
//! (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`). rcgen only
//! emits PKCS#8, so SEC1 and PKCS#1 are cut out of the PKCS#8 DER here (a PKCS#8
//! `PrivateKeyInfo` wraps exactly those structures in its `privateKey` OCTET STRING).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

/// Key algorithm of a generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    Rsa2048,
}

/// How a private key is written to its PEM file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    /// `-----BEGIN PRIVATE KEY-----`
    Pkcs8,
    /// `-----BEGIN EC PRIVATE KEY-----` (ECDSA keys only)
    Sec1,
    /// `-----BEGIN RSA PRIVATE KEY-----` (RSA keys only)
    Pkcs1,
}

/// One certificate chain file and its key file.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// PEM: leaf, then the intermediate (for CA-issued leaves).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// DER of the leaf, to compare with what a client was served.
    pub leaf_der: Vec<u8>,
}

/// A root CA and an intermediate CA living in a temporary directory.
pub struct TestPki {
    dir: TempDir,
    root_der: CertificateDer<'static>,
    root_pem_path: PathBuf,
    intermediate: Issuer<'static, KeyPair>,
    intermediate_pem: String,
    counter: AtomicUsize,
}

impl TestPki {
    /// A fresh root and intermediate (both ECDSA P-256).
    pub fn new() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("ringgate-pki-")
            .tempdir()
            .expect("create temporary directory for the test PKI");

        let root_key = KeyPair::generate().expect("generate root CA key");
        let root_params = ca_params("ringgate test root CA");
        let root_cert = root_params
            .self_signed(&root_key)
            .expect("self-sign root CA");
        let root_issuer = Issuer::new(root_params, root_key);

        let int_key = KeyPair::generate().expect("generate intermediate CA key");
        let int_params = ca_params("ringgate test intermediate CA");
        let int_cert = int_params
            .signed_by(&int_key, &root_issuer)
            .expect("sign intermediate CA");
        let intermediate = Issuer::new(int_params, int_key);

        let root_pem_path = dir.path().join("root.pem");
        std::fs::write(&root_pem_path, root_cert.pem()).expect("write root.pem");
        TestPki {
            dir,
            root_der: root_cert.der().clone(),
            root_pem_path,
            intermediate,
            intermediate_pem: int_cert.pem(),
            counter: AtomicUsize::new(0),
        }
    }

    /// The directory holding every file of this PKI (usable as a config's base dir).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The root certificate, for clients' trust stores.
    pub fn root_der(&self) -> CertificateDer<'static> {
        self.root_der.clone()
    }

    /// Path of the root certificate in PEM (for curl's `--cacert`).
    pub fn root_pem_path(&self) -> &Path {
        &self.root_pem_path
    }

    /// A server leaf for `names` (DNS names or IP addresses) issued by the intermediate.
    pub fn leaf(&self, names: &[&str], key_type: KeyType, encoding: KeyEncoding) -> CertFiles {
        let key = generate_key(key_type);
        let cert = leaf_params(names)
            .signed_by(&key, &self.intermediate)
            .expect("sign leaf certificate");
        let chain = format!("{}{}", cert.pem(), self.intermediate_pem);
        self.write_pair(&chain, &key, key_type, encoding, cert.der().to_vec())
    }

    /// A self-signed leaf for `names` (not trusted by the test root).
    pub fn self_signed(&self, names: &[&str], key_type: KeyType) -> CertFiles {
        let key = generate_key(key_type);
        let cert = leaf_params(names)
            .self_signed(&key)
            .expect("self-sign leaf certificate");
        self.write_pair(
            &cert.pem(),
            &key,
            key_type,
            KeyEncoding::Pkcs8,
            cert.der().to_vec(),
        )
    }

    /// A valid chain for `names` whose key file holds a different key of the same type.
    pub fn mismatched(&self, names: &[&str], key_type: KeyType) -> CertFiles {
        let key = generate_key(key_type);
        let cert = leaf_params(names)
            .signed_by(&key, &self.intermediate)
            .expect("sign leaf certificate");
        let other = generate_key(key_type);
        let chain = format!("{}{}", cert.pem(), self.intermediate_pem);
        self.write_pair(
            &chain,
            &other,
            key_type,
            KeyEncoding::Pkcs8,
            cert.der().to_vec(),
        )
    }

    fn write_pair(
        &self,
        chain_pem: &str,
        key: &KeyPair,
        key_type: KeyType,
        encoding: KeyEncoding,
        leaf_der: Vec<u8>,
    ) -> CertFiles {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let cert = self.dir.path().join(format!("cert{n}.pem"));
        let key_path = self.dir.path().join(format!("cert{n}.key"));
        std::fs::write(&cert, chain_pem).expect("write certificate chain");
        std::fs::write(&key_path, encode_key(key, key_type, encoding)).expect("write key");
        CertFiles {
            cert,
            key: key_path,
            leaf_der,
        }
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("empty CA params");
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(sans).expect("leaf subject alt names");
    p.distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    p
}

fn generate_key(key_type: KeyType) -> KeyPair {
    match key_type {
        KeyType::EcdsaP256 => KeyPair::generate().expect("generate ECDSA P-256 key"),
        KeyType::Rsa2048 => {
            // rcgen's ring backend cannot generate RSA keys; aws-lc-rs can, and rcgen can
            // sign with the resulting PKCS#8 key.
            use aws_lc_rs::encoding::AsDer;
            let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .expect("generate RSA 2048 key");
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp)
                .expect("encode RSA key as PKCS#8");
            KeyPair::from_pkcs8_der_and_sign_algo(
                &PrivatePkcs8KeyDer::from(der.as_ref().to_vec()),
                &rcgen::PKCS_RSA_SHA256,
            )
            .expect("load RSA key into rcgen")
        }
    }
}

/// `prime256v1` (1.2.840.10045.3.1.7) as an encoded OBJECT IDENTIFIER.
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn encode_key(key: &KeyPair, key_type: KeyType, encoding: KeyEncoding) -> String {
    let pkcs8 = key.serialize_der();
    match (key_type, encoding) {
        (_, KeyEncoding::Pkcs8) => pem("PRIVATE KEY", &pkcs8),
        (KeyType::EcdsaP256, KeyEncoding::Sec1) => {
            pem("EC PRIVATE KEY", &sec1_with_curve(pkcs8_inner(&pkcs8)))
        }
        (KeyType::Rsa2048, KeyEncoding::Pkcs1) => pem("RSA PRIVATE KEY", pkcs8_inner(&pkcs8)),
        (t, e) => panic!("test PKI: {e:?} encoding does not exist for {t:?} keys"),
    }
}

/// The `privateKey` OCTET STRING of a PKCS#8 `PrivateKeyInfo`:
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, ... }`.
fn pkcs8_inner(pkcs8: &[u8]) -> &[u8] {
    let (tag, body, _) = der_tlv(pkcs8);
    assert_eq!(tag, 0x30, "PKCS#8 must be a SEQUENCE");
    let (tag, _, rest) = der_tlv(body);
    assert_eq!(tag, 0x02, "PKCS#8 version must be an INTEGER");
    let (tag, _, rest) = der_tlv(rest);
    assert_eq!(tag, 0x30, "PKCS#8 algorithm must be a SEQUENCE");
    let (tag, key, _) = der_tlv(rest);
    assert_eq!(tag, 0x04, "PKCS#8 privateKey must be an OCTET STRING");
    key
}

/// SEC1 `ECPrivateKey` with the `[0] parameters` (named curve) present, as `openssl ec`
/// writes it; inside PKCS#8 the field is usually left out.
fn sec1_with_curve(ec_private_key: &[u8]) -> Vec<u8> {
    let (tag, body, _) = der_tlv(ec_private_key);
    assert_eq!(tag, 0x30, "ECPrivateKey must be a SEQUENCE");
    let mut fields = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let start = rest;
        let (tag, _, next) = der_tlv(rest);
        fields.push((tag, &start[..start.len() - next.len()]));
        rest = next;
    }
    if fields.iter().any(|(t, _)| *t == 0xa0) {
        return ec_private_key.to_vec();
    }
    let mut out = Vec::new();
    for (tag, raw) in &fields {
        if *tag == 0xa1 {
            out.extend(der_wrap(0xa0, P256_OID));
        }
        out.extend_from_slice(raw);
    }
    if !fields.iter().any(|(t, _)| *t == 0xa1) {
        out.extend(der_wrap(0xa0, P256_OID));
    }
    der_wrap(0x30, &out)
}

/// Splits one DER TLV off `input`: (tag, contents, rest).
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    assert!(input.len() >= 2, "truncated DER");
    let tag = input[0];
    let (len, header) = match input[1] {
        l if l < 0x80 => (l as usize, 2),
        l => {
            let n = (l & 0x7f) as usize;
            assert!((1..=4).contains(&n), "unsupported DER length form");
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        }
    };
    assert!(input.len() >= header + len, "truncated DER contents");
    (tag, &input[header..header + len], &input[header + len..])
}

fn der_wrap(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// PEM armour with 64-column base64.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A client leaf as files and as what a rustls client needs.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// PEM: leaf, then its intermediates (what `curl --cert` sends).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// DER, leaf first, the same certificates as `cert`.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 DER of the key.
    pub key_der: Vec<u8>,
    pub serial: u64,
}

/// What kind of client certificate [`ClientPki::client`] issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// clientAuth EKU, valid from 2020 to 2099, issued by the intermediate.
    Valid,
    /// notAfter in 2001.
    Expired,
    /// notBefore in 2090.
    NotYetValid,
    /// serverAuth-only extended key usage.
    ServerAuthOnly,
    /// Issued by a second intermediate below the first: three certificates below the root.
    TooDeep,
}

/// A client CA: root → intermediate → client leaves (and root → intermediate →
/// sub-intermediate → leaf for chains too deep), CRLs for both intermediates. Files go
/// into `dir`, named after `name`.
pub struct ClientPki {
    dir: PathBuf,
    name: String,
    /// The root in PEM (the `ca` file of `client_auth`).
    pub ca: PathBuf,
    intermediate: Issuer<'static, KeyPair>,
    intermediate_der: CertificateDer<'static>,
    sub: Issuer<'static, KeyPair>,
    sub_der: CertificateDer<'static>,
    counter: AtomicUsize,
}

/// Serials of client leaves, unique across every [`ClientPki`] of a test binary.
static SERIAL: AtomicUsize = AtomicUsize::new(1000);

impl ClientPki {
    pub fn new(dir: &Path, name: &str) -> ClientPki {
        let root_key = KeyPair::generate().expect("generate client root key");
        let root_params = ca_params(&format!("{name} client root CA"));
        let root_cert = root_params.self_signed(&root_key).expect("self-sign root");
        let root = Issuer::new(root_params, root_key);
        let int_key = KeyPair::generate().expect("generate client intermediate key");
        let int_params = ca_params(&format!("{name} client intermediate CA"));
        let int_cert = int_params
            .signed_by(&int_key, &root)
            .expect("sign intermediate");
        let intermediate = Issuer::new(int_params, int_key);
        let sub_key = KeyPair::generate().expect("generate client sub-intermediate key");
        let sub_params = ca_params(&format!("{name} client sub-intermediate CA"));
        let sub_cert = sub_params
            .signed_by(&sub_key, &intermediate)
            .expect("sign sub-intermediate");
        let sub = Issuer::new(sub_params, sub_key);
        let ca = dir.join(format!("{name}-clients-ca.pem"));
        std::fs::write(&ca, root_cert.pem()).expect("write client CA");
        ClientPki {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            ca,
            intermediate,
            intermediate_der: int_cert.der().clone(),
            sub,
            sub_der: sub_cert.der().clone(),
            counter: AtomicUsize::new(0),
        }
    }

    /// A client leaf with subject `CN=<cn>,O=Example` and, when given, a URI SAN.
    pub fn client(&self, kind: ClientKind, cn: &str, uri: Option<&str>) -> ClientCert {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("client params");
        // Encoded O first, then CN: RFC 4514 writes it `CN=<cn>,O=Example`.
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "Example");
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(u) = uri {
            p.subject_alt_names = vec![rcgen::SanType::URI(u.try_into().expect("URI SAN"))];
        }
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![if kind == ClientKind::ServerAuthOnly {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        p.use_authority_key_identifier_extension = true;
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed) as u64;
        p.serial_number = Some(rcgen::SerialNumber::from(serial));
        let (from, to) = match kind {
            ClientKind::Expired => ((2000, 1, 1), (2001, 1, 1)),
            ClientKind::NotYetValid => ((2090, 1, 1), (2095, 1, 1)),
            _ => ((2020, 1, 1), (2099, 1, 1)),
        };
        p.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        p.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        let key = KeyPair::generate().expect("generate client key");
        let (leaf, intermediates) = if kind == ClientKind::TooDeep {
            let leaf = p.signed_by(&key, &self.sub).expect("sign client leaf");
            (
                leaf,
                vec![self.sub_der.clone(), self.intermediate_der.clone()],
            )
        } else {
            let leaf = p
                .signed_by(&key, &self.intermediate)
                .expect("sign client leaf");
            (leaf, vec![self.intermediate_der.clone()])
        };
        let mut chain = vec![leaf.der().clone()];
        chain.extend(intermediates);
        self.write(chain, &key, serial)
    }

    /// A self-signed client certificate (clientAuth EKU) no CA vouches for.
    pub fn self_signed(&self, cn: &str) -> ClientCert {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("client params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("generate client key");
        let cert = p.self_signed(&key).expect("self-sign client");
        self.write(vec![cert.der().clone()], &key, 0)
    }

    fn write(&self, chain: Vec<CertificateDer<'static>>, key: &KeyPair, serial: u64) -> ClientCert {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let cert = self.dir.join(format!("{}-client{n}.pem", self.name));
        let key_path = self.dir.join(format!("{}-client{n}.key", self.name));
        let pem_chain: String = chain.iter().map(|c| pem("CERTIFICATE", c)).collect();
        std::fs::write(&cert, pem_chain).expect("write client chain");
        std::fs::write(&key_path, pem("PRIVATE KEY", &key.serialize_der())).expect("write key");
        ClientCert {
            cert,
            key: key_path,
            chain,
            key_der: key.serialize_der(),
            serial,
        }
    }

    /// Writes `file` (in this PKI's directory): one CRL per intermediate, PEM, listing
    /// `revoked`; `expired`: its next update in 2001.
    pub fn write_crl(&self, file: &str, revoked: &[&ClientCert], expired: bool) -> PathBuf {
        let (this, next) = if expired {
            ((2000, 1, 1), (2001, 1, 1))
        } else {
            ((2020, 1, 1), (2099, 1, 1))
        };
        let number = SERIAL.fetch_add(1, Ordering::Relaxed) as u64;
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(this.0, this.1, this.2),
            next_update: rcgen::date_time_ymd(next.0, next.1, next.2),
            crl_number: rcgen::SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|c| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(c.serial),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let mut text = String::new();
        for issuer in [&self.intermediate, &self.sub] {
            let crl = params.signed_by(issuer).expect("sign CRL");
            text += &crl.pem().expect("CRL PEM");
        }
        let path = self.dir.join(file);
        let tmp = self.dir.join(format!("{file}.tmp"));
        std::fs::write(&tmp, text).expect("write CRL");
        std::fs::rename(&tmp, &path).expect("move CRL into place");
        path
    }
}
