//! Raw TLS records for the record-layer tests: a client that does the handshake with
//! rustls, then takes the traffic keys (`dangerous_extract_secrets`, plus the TLS 1.3
//! traffic secrets from the key log, for KeyUpdates) and builds every record itself with
//! aws-lc-rs — any content type, length, padding, fragmentation or corruption — and
//! decrypts the server's records to see which alert it sent.
//!
//! The sequences themselves, with the answers expected, are in [`super::record_cases`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    CipherSuite, ClientConfig, ClientConnection, ConnectionTrafficSecrets, RootCertStore,
};

/// Record content types (RFC 8446 §5.1) and the two odd ones the tests send.
pub const CCS: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPDATA: u8 = 23;
pub const HEARTBEAT: u8 = 24;
pub const UNKNOWN_TYPE: u8 = 0x30;

/// Alert descriptions (RFC 8446 §6).
pub const CLOSE_NOTIFY: u8 = 0;
pub const UNEXPECTED_MESSAGE: u8 = 10;
pub const BAD_RECORD_MAC: u8 = 20;
pub const RECORD_OVERFLOW: u8 = 22;
pub const ILLEGAL_PARAMETER: u8 = 47;
pub const DECODE_ERROR: u8 = 50;
pub const NO_RENEGOTIATION: u8 = 100;

/// Longest plaintext fragment (2^14) and ciphertext expansion allowed (RFC 8446 §5.2).
pub const MAX_PLAINTEXT: usize = 1 << 14;
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;

/// The six suites both record layers must handle.
pub const SUITES: [CipherSuite; 6] = [
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Where the server under test listens, and how to trust it.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub root: CertificateDer<'static>,
    pub host: String,
    pub read_timeout: Duration,
}

/// A short name for a suite, for messages and report lines.
pub fn suite_name(suite: CipherSuite) -> &'static str {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "tls13-aes128",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "tls13-aes256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "tls13-chacha20",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "tls12-aes128",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "tls12-aes256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "tls12-chacha20",
        _ => "other",
    }
}

pub fn is_tls13(suite: CipherSuite) -> bool {
    suite_name(suite).starts_with("tls13")
}

fn client_config(target: &Target, suite: CipherSuite) -> (ClientConfig, Arc<SecretLog>) {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .filter(|s| s.suite() == suite)
        .copied()
        .collect();
    let version: &'static rustls::SupportedProtocolVersion = if is_tls13(suite) {
        &rustls::version::TLS13
    } else {
        &rustls::version::TLS12
    };
    let mut roots = RootCertStore::empty();
    roots.add(target.root.clone()).expect("test root");
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.enable_secret_extraction = true;
    // Resumption would change nothing here but the handshake; keep every one full.
    config.resumption = rustls::client::Resumption::disabled();
    let log = Arc::new(SecretLog::default());
    config.key_log = log.clone();
    (config, log)
}

/// TLS 1.3 secrets from rustls' key log (the traffic secrets KeyUpdates derive from).
#[derive(Default, Debug)]
struct SecretLog(Mutex<HashMap<String, Vec<u8>>>);

impl rustls::KeyLog for SecretLog {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        self.0
            .lock()
            .expect("key log")
            .insert(label.to_string(), secret.to_vec());
    }
    fn will_log(&self, _label: &str) -> bool {
        true
    }
}

/// One direction's record protection.
struct Keys {
    tls13: bool,
    aead: &'static aead::Algorithm,
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    /// TLS 1.3 traffic secret and its hash (for the next key after a KeyUpdate).
    secret: Vec<u8>,
    hkdf: hkdf::Algorithm,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(alg: hkdf::Algorithm, secret: &[u8], label: &str, len: usize) -> Vec<u8> {
    let full = format!("tls13 {label}");
    let mut info = Vec::new();
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    let prk = hkdf::Prk::new_less_safe(alg, secret);
    let mut out = vec![0u8; len];
    prk.expand(&[&info], Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .expect("hkdf expand");
    out
}

impl Keys {
    fn new(
        tls13: bool,
        seq: u64,
        secrets: ConnectionTrafficSecrets,
        secret: Vec<u8>,
        hkdf: hkdf::Algorithm,
    ) -> Keys {
        let (aead, key, iv): (&'static aead::Algorithm, Vec<u8>, Vec<u8>) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (
                &aead::AES_128_GCM,
                key.as_ref().to_vec(),
                iv.as_ref().to_vec(),
            ),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (
                &aead::AES_256_GCM,
                key.as_ref().to_vec(),
                iv.as_ref().to_vec(),
            ),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (
                &aead::CHACHA20_POLY1305,
                key.as_ref().to_vec(),
                iv.as_ref().to_vec(),
            ),
            _ => panic!("unexpected traffic secrets"),
        };
        Keys {
            tls13,
            aead,
            key: LessSafeKey::new(UnboundKey::new(aead, &key).expect("aead key")),
            iv: iv.try_into().expect("12-byte iv"),
            seq,
            secret,
            hkdf,
        }
    }

    /// TLS 1.2 AES-GCM carries an explicit nonce; ChaCha20 and TLS 1.3 do not.
    fn explicit_nonce(&self) -> bool {
        !self.tls13 && !std::ptr::eq(self.aead, &aead::CHACHA20_POLY1305)
    }

    fn nonce(&self, explicit: Option<[u8; 8]>) -> Nonce {
        let mut n = self.iv;
        match explicit {
            Some(e) => n[4..].copy_from_slice(&e),
            None => {
                for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
                    *b ^= s;
                }
            }
        }
        Nonce::assume_unique_for_key(n)
    }

    /// One protected record: TLS 1.3 puts `typ` inside (outer type 23) followed by
    /// `padding` zeros; TLS 1.2 puts it in the header and the AAD.
    fn seal(&mut self, typ: u8, payload: &[u8], padding: usize) -> Vec<u8> {
        let tag = self.aead.tag_len();
        let mut body = payload.to_vec();
        let record = if self.tls13 {
            body.push(typ);
            body.resize(body.len() + padding, 0);
            let len = (body.len() + tag) as u16;
            let mut header = vec![APPDATA, 3, 3];
            header.extend_from_slice(&len.to_be_bytes());
            self.key
                .seal_in_place_append_tag(self.nonce(None), Aad::from(&header), &mut body)
                .expect("seal");
            [header, body].concat()
        } else {
            let mut aad = self.seq.to_be_bytes().to_vec();
            aad.extend_from_slice(&[typ, 3, 3]);
            aad.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            let explicit = self.explicit_nonce().then(|| self.seq.to_be_bytes());
            self.key
                .seal_in_place_append_tag(self.nonce(explicit), Aad::from(&aad), &mut body)
                .expect("seal");
            let prefix = explicit.map(|e| e.to_vec()).unwrap_or_default();
            let len = (prefix.len() + body.len()) as u16;
            let mut header = vec![typ, 3, 3];
            header.extend_from_slice(&len.to_be_bytes());
            [header, prefix, body].concat()
        };
        self.seq += 1;
        record
    }

    /// Decrypts one record (header + body): (content type, plaintext).
    fn open(&mut self, record: &[u8]) -> Result<(u8, Vec<u8>), String> {
        let (header, body) = record.split_at(5);
        let result = if self.tls13 {
            let mut body = body.to_vec();
            let plain = self
                .key
                .open_in_place(self.nonce(None), Aad::from(header), &mut body)
                .map_err(|_| format!("cannot decrypt a server record {header:?}"))?;
            let end = plain
                .iter()
                .rposition(|b| *b != 0)
                .ok_or("server record without a content type")?;
            (plain[end], plain[..end].to_vec())
        } else {
            let (explicit, mut body) = if self.explicit_nonce() {
                let e: [u8; 8] = body.get(..8).ok_or("short record")?.try_into().unwrap();
                (Some(e), body[8..].to_vec())
            } else {
                (None, body.to_vec())
            };
            let len = body.len().checked_sub(self.aead.tag_len()).ok_or("short")?;
            let mut aad = self.seq.to_be_bytes().to_vec();
            aad.extend_from_slice(&header[..3]);
            aad.extend_from_slice(&(len as u16).to_be_bytes());
            let plain = self
                .key
                .open_in_place(self.nonce(explicit), Aad::from(&aad), &mut body)
                .map_err(|_| format!("cannot decrypt a server record {header:?}"))?;
            (header[0], plain.to_vec())
        };
        self.seq += 1;
        Ok(result)
    }

    /// The next traffic key after a KeyUpdate (RFC 8446 §7.2).
    fn update(&mut self) {
        let hash = self.hkdf.hmac_algorithm().digest_algorithm().output_len();
        self.secret = expand_label(self.hkdf, &self.secret, "traffic upd", hash);
        let key = expand_label(self.hkdf, &self.secret, "key", self.aead.key_len());
        let iv = expand_label(self.hkdf, &self.secret, "iv", 12);
        self.key = LessSafeKey::new(UnboundKey::new(self.aead, &key).expect("key"));
        self.iv = iv.try_into().expect("iv");
        self.seq = 0;
    }
}

/// A plaintext record.
pub fn plain_record(typ: u8, payload: &[u8]) -> Vec<u8> {
    let mut r = vec![typ, 3, 3];
    r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    r.extend_from_slice(payload);
    r
}

/// A handshake message: type, 24-bit length, body.
pub fn handshake_message(typ: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut m = vec![typ];
    m.extend_from_slice(&len.to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

/// KeyUpdate with this `request_update` value (RFC 8446 §4.6.3).
pub fn key_update(request: u8) -> Vec<u8> {
    handshake_message(24, &[request])
}

/// How the server ended a connection.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Alerts received, (level, description), in order.
    pub alerts: Vec<(u8, u8)>,
    /// Application data received.
    pub data: Vec<u8>,
    /// Records of other types received (type, length), e.g. handshake messages.
    pub other: Vec<(u8, usize)>,
    /// How the stream ended: "eof", "reset", or what went wrong ("timeout", ...).
    pub end: String,
}

impl Outcome {
    /// Exactly one alert, fatal, `desc`; nothing answered; then the connection closed.
    pub fn check_fatal(&self, desc: u8) -> Result<(), String> {
        if self.alerts == [(2, desc)] && self.data.is_empty() && self.closed() {
            Ok(())
        } else {
            Err(format!(
                "expected one fatal alert {desc} then close, got {self:?}"
            ))
        }
    }

    pub fn closed(&self) -> bool {
        self.end == "eof" || self.end == "reset"
    }
}

/// A TLS client whose record layer after the handshake is the test's own.
pub struct RawSession {
    pub sock: TcpStream,
    pub suite: CipherSuite,
    tx: Keys,
    rx: Keys,
    inbuf: Vec<u8>,
}

impl RawSession {
    /// Connects and completes a full handshake for `suite` with rustls.
    pub fn connect(target: &Target, suite: CipherSuite) -> io::Result<RawSession> {
        let (config, log) = client_config(target, suite);
        let name = ServerName::try_from(target.host.clone()).expect("server name");
        let mut conn = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
        let mut sock = TcpStream::connect(target.addr)?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(target.read_timeout))?;
        sock.set_write_timeout(Some(target.read_timeout))?;
        loop {
            while conn.wants_write() {
                conn.write_tls(&mut sock)?;
            }
            if !conn.is_handshaking() {
                break;
            }
            if conn.read_tls(&mut sock)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            conn.process_new_packets().map_err(io::Error::other)?;
        }
        // Nothing after the handshake can have arrived: the server only speaks again
        // once it has our Finished (TLS 1.3 tickets) or a request.
        let tls13 = is_tls13(suite);
        let hkdf = match suite {
            CipherSuite::TLS13_AES_256_GCM_SHA384 => hkdf::HKDF_SHA384,
            _ => hkdf::HKDF_SHA256,
        };
        let logged = |label: &str| {
            log.0
                .lock()
                .expect("key log")
                .get(label)
                .cloned()
                .unwrap_or_default()
        };
        let secrets = conn.dangerous_extract_secrets().map_err(io::Error::other)?;
        let tx = Keys::new(
            tls13,
            secrets.tx.0,
            secrets.tx.1,
            logged("CLIENT_TRAFFIC_SECRET_0"),
            hkdf,
        );
        let rx = Keys::new(
            tls13,
            secrets.rx.0,
            secrets.rx.1,
            logged("SERVER_TRAFFIC_SECRET_0"),
            hkdf,
        );
        Ok(RawSession {
            sock,
            suite,
            tx,
            rx,
            inbuf: Vec::new(),
        })
    }

    pub fn tls13(&self) -> bool {
        self.tx.tls13
    }

    /// Builds the next protected record (the sequence number advances).
    pub fn record(&mut self, typ: u8, payload: &[u8]) -> Vec<u8> {
        self.tx.seal(typ, payload, 0)
    }

    /// Like [`RawSession::record`] with TLS 1.3 padding zeros after the content type.
    pub fn padded_record(&mut self, typ: u8, payload: &[u8], padding: usize) -> Vec<u8> {
        self.tx.seal(typ, payload, padding)
    }

    /// Switches our send key after sending a KeyUpdate (TLS 1.3).
    pub fn update_tx_key(&mut self) {
        self.tx.update();
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Sends one application-data record with `data`.
    pub fn send_data(&mut self, data: &[u8]) -> io::Result<()> {
        let r = self.record(APPDATA, data);
        self.send(&r)
    }

    /// Reads and decrypts the next record; `Ok(None)` at EOF.
    pub fn read_record(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
        loop {
            if self.inbuf.len() >= 5 {
                let len = usize::from(u16::from_be_bytes([self.inbuf[3], self.inbuf[4]]));
                if self.inbuf.len() >= 5 + len {
                    let record: Vec<u8> = self.inbuf.drain(..5 + len).collect();
                    let (typ, plain) = self.rx.open(&record)?;
                    if typ == HANDSHAKE && plain.first() == Some(&24) && self.tls13() {
                        // The server's own KeyUpdate: its next records use the next key.
                        self.rx.update();
                    }
                    return Ok(Some((typ, plain)));
                }
            }
            let mut buf = [0u8; 32 * 1024];
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    return if self.inbuf.is_empty() {
                        Ok(None)
                    } else {
                        Err(format!("EOF inside a record ({} bytes)", self.inbuf.len()))
                    };
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) => return Err(io_end(&e).to_string()),
            }
        }
    }

    /// Reads everything the server sends until it closes the connection (or a read
    /// times out: a server that neither answers nor closes).
    pub fn outcome(&mut self) -> Outcome {
        let mut out = Outcome::default();
        loop {
            match self.read_record() {
                Ok(None) => {
                    out.end = "eof".into();
                    return out;
                }
                Ok(Some((ALERT, a))) if a.len() == 2 => out.alerts.push((a[0], a[1])),
                Ok(Some((APPDATA, d))) => out.data.extend_from_slice(&d),
                Ok(Some((t, p))) => out.other.push((t, p.len())),
                Err(e) => {
                    out.end = e;
                    return out;
                }
            }
        }
    }

    /// Reads until one whole HTTP response with a Content-Length body arrived (TLS 1.3
    /// tickets and alerts on the way are skipped); the response bytes, or what ended it.
    pub fn response(&mut self) -> Result<Vec<u8>, String> {
        let mut data = Vec::new();
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
                if data.len() >= end + 4 + len {
                    return Ok(data);
                }
            }
            match self.read_record()? {
                None => return Err(format!("closed before a whole response: {data:?}")),
                Some((APPDATA, d)) => data.extend_from_slice(&d),
                Some((ALERT, a)) => return Err(format!("alert {a:?} instead of a response")),
                Some(_) => {}
            }
        }
    }
}

/// How a failed read ended the stream, for [`Outcome::end`].
pub fn io_end(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "reset",
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timeout",
        _ => "read error",
    }
}

/// `GET / HTTP/1.1` for `host`, closing.
pub fn get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n").into_bytes()
}
