//! Record sequences and the answer each must get, for every record layer: they run
//! against ringgate's own and userspace rustls (tests/tls_records.rs) and, inside the VM,
//! against kernel TLS (tests/ktls_vm.rs). ringgate's own layer gives the outcome the RFCs
//! ask for in every case. [`post_handshake_cases`] and [`handshake_cases`] carry the outcome
//! RFC 8446 §5/§6 and RFC 5246 §7.2 ask for, and where a layer can only do otherwise
//! (rustls has no alert for some errors; the kernel reports some faults as a decryption
//! failure), what it does instead.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CipherSuite, ClientConfig, ClientConnection, RootCertStore};

use super::records::*;

/// What a post-handshake case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One fatal alert with this description, then close.
    Fatal(u8),
    /// The connection goes on: a request sent after the case is answered.
    Serves,
    /// A warning alert with this description, and the connection goes on.
    WarningThenServes(u8),
    /// The connection closes without any alert.
    Close,
    /// A clean close: close_notify, then EOF (a kernel that cannot re-key, on a
    /// KeyUpdate).
    CloseNotify,
}

/// Which record layer serves the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// ringgate's own record layer in userspace (`record_layer = "ringgate"`).
    Ringgate,
    /// rustls in userspace (`record_layer = "rustls"`).
    Rustls,
    /// Kernel TLS; `rekeys`: the kernel can take a new key (Linux >= 6.14).
    Kernel { rekeys: bool },
}

/// One post-handshake record sequence.
pub struct Case {
    pub name: &'static str,
    /// Only for TLS 1.3 suites (KeyUpdate, inner content types) or only TLS 1.2.
    pub versions: Versions,
    pub expect: Expect,
    /// What userspace rustls answers where it differs from `expect` (it has no alert to
    /// give for some errors, and rejects some record types while decoding them).
    pub rustls: Option<Expect>,
    /// What kernel TLS allows where it differs from `expect` (it reports a TLS 1.3 record
    /// without a content type as a decryption failure, EBADMSG).
    pub kernel: Option<Expect>,
    /// The legal sequence needs the server to re-key: a kernel that cannot closes
    /// cleanly instead.
    pub rekeys: bool,
    /// Builds the bytes to send (records from the session's keys).
    pub build: fn(&mut RawSession) -> Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    Both,
    Tls13,
    Tls12,
}

impl Case {
    pub fn applies(&self, suite: CipherSuite) -> bool {
        match self.versions {
            Versions::Both => true,
            Versions::Tls13 => is_tls13(suite),
            Versions::Tls12 => !is_tls13(suite),
        }
    }

    /// Runs the case on a fresh connection against rustls in userspace (`userspace`) or
    /// kernel TLS; `Err` says what happened instead.
    pub fn run(&self, target: &Target, suite: CipherSuite, layer: Layer) -> Result<(), String> {
        let expect = match layer {
            Layer::Ringgate => self.expect,
            Layer::Rustls => self.rustls.unwrap_or(self.expect),
            Layer::Kernel { rekeys: false } if self.rekeys => Expect::CloseNotify,
            Layer::Kernel { .. } => self.kernel.unwrap_or(self.expect),
        };
        let mut s = RawSession::connect(target, suite).map_err(|e| format!("connect: {e}"))?;
        let bytes = (self.build)(&mut s);
        // The server may close before it read everything (a reset while sending).
        let _ = s.send(&bytes);
        match expect {
            Expect::Fatal(desc) => s.outcome().check_fatal(desc),
            Expect::Close | Expect::CloseNotify => {
                let out = s.outcome();
                let alerts = match expect {
                    Expect::CloseNotify => vec![(1, CLOSE_NOTIFY)],
                    _ => Vec::new(),
                };
                if out.alerts == alerts && out.data.is_empty() && out.closed() {
                    Ok(())
                } else {
                    Err(format!(
                        "expected alerts {alerts:?} then close, got {out:?}"
                    ))
                }
            }
            Expect::Serves | Expect::WarningThenServes(_) => {
                let req = get(&target.host, "/bytes/10");
                s.send_data(&req).map_err(|e| format!("send: {e}"))?;
                let mut warnings = Vec::new();
                let mut data = Vec::new();
                // The response, with the warning (if any) before it.
                loop {
                    match s.read_record()? {
                        None => return Err(format!("closed; warnings {warnings:?}")),
                        Some((ALERT, a)) if a.first() == Some(&1) => warnings.push(a[1]),
                        Some((ALERT, a)) => return Err(format!("alert {a:?}")),
                        Some((APPDATA, d)) => {
                            data.extend_from_slice(&d);
                            // The status line is all this checks.
                            if data.windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                }
                if !data.starts_with(b"HTTP/1.1 200") {
                    return Err(format!("answer {:?}", String::from_utf8_lossy(&data)));
                }
                let want: Vec<u8> = match expect {
                    Expect::WarningThenServes(d) => vec![d],
                    _ => Vec::new(),
                };
                if warnings != want {
                    return Err(format!("warnings {warnings:?}, expected {want:?}"));
                }
                Ok(())
            }
        }
    }
}

/// A request in one record, for the cases that hide one behind a bad record.
fn request() -> Vec<u8> {
    b"GET / HTTP/1.0\r\n\r\n".to_vec()
}

/// Post-handshake record sequences and what RFC 8446 / RFC 5246 ask of the server.
pub fn post_handshake_cases() -> Vec<Case> {
    use Expect::*;
    vec![
        Case {
            name: "corrupted-tag",
            versions: Versions::Both,
            expect: Fatal(BAD_RECORD_MAC),
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| {
                let mut r = s.record(APPDATA, &request());
                let last = r.len() - 1;
                r[last] ^= 0x80;
                r
            },
        },
        Case {
            name: "corrupted-ciphertext",
            versions: Versions::Both,
            expect: Fatal(BAD_RECORD_MAC),
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| {
                let mut r = s.record(APPDATA, &request());
                let mid = r.len() - 20;
                r[mid] ^= 0x01;
                r
            },
        },
        Case {
            name: "short-ciphertext",
            versions: Versions::Both,
            expect: Fatal(BAD_RECORD_MAC),
            rustls: None,
            kernel: None,
            rekeys: false,
            // A good record after it: kernel TLS reads a TLS 1.2 AES-GCM header only
            // with its 8-byte explicit nonce, so a lone 8-byte record just waits.
            build: |s| {
                [
                    plain_record(APPDATA, &[1, 2, 3]),
                    s.record(APPDATA, &request()),
                ]
                .concat()
            },
        },
        Case {
            name: "plaintext-over-2^14",
            versions: Versions::Both,
            expect: Fatal(RECORD_OVERFLOW),
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| s.record(APPDATA, &vec![b'a'; MAX_PLAINTEXT + 1]),
        },
        Case {
            // A well-formed TLS 1.3 record whose padding takes it past 2^14 + 256.
            name: "ciphertext-over-2^14+256",
            versions: Versions::Tls13,
            expect: Fatal(RECORD_OVERFLOW),
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| {
                let req = request();
                let padding = MAX_CIPHERTEXT + 1 - req.len() - 1 - 16;
                s.padded_record(APPDATA, &req, padding)
            },
        },
        Case {
            name: "record-type-24",
            versions: Versions::Both,
            expect: Fatal(UNEXPECTED_MESSAGE),
            rustls: Some(Fatal(DECODE_ERROR)),
            kernel: None,
            rekeys: false,
            build: |s| s.record(HEARTBEAT, &request()),
        },
        Case {
            name: "record-type-0x30",
            versions: Versions::Both,
            expect: Fatal(UNEXPECTED_MESSAGE),
            rustls: Some(Fatal(DECODE_ERROR)),
            kernel: None,
            rekeys: false,
            build: |s| s.record(UNKNOWN_TYPE, &request()),
        },
        Case {
            name: "encrypted-ccs",
            versions: Versions::Tls13,
            expect: Fatal(UNEXPECTED_MESSAGE),
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| {
                let mut r = s.record(CCS, &[1]);
                r.extend(s.record(APPDATA, &request()));
                r
            },
        },
        Case {
            name: "ccs-after-finished",
            versions: Versions::Tls12,
            expect: Fatal(UNEXPECTED_MESSAGE),
            rustls: Some(Fatal(DECODE_ERROR)),
            kernel: None,
            rekeys: false,
            build: |s| {
                let mut r = s.record(CCS, &[1]);
                r.extend(s.record(APPDATA, &request()));
                r
            },
        },
        Case {
            name: "zero-content-type",
            versions: Versions::Tls13,
            expect: Fatal(UNEXPECTED_MESSAGE),
            rustls: Some(Close),
            kernel: Some(Fatal(BAD_RECORD_MAC)),
            rekeys: false,
            build: |s| s.record(0, &[0, 0, 0]),
        },
        Case {
            name: "empty-alert",
            versions: Versions::Both,
            expect: Fatal(DECODE_ERROR),
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| s.record(ALERT, &[]),
        },
        Case {
            name: "key-update-request-2",
            versions: Versions::Tls13,
            expect: Fatal(ILLEGAL_PARAMETER),
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| s.record(HANDSHAKE, &key_update(2)),
        },
        Case {
            name: "key-update-empty",
            versions: Versions::Tls13,
            expect: Fatal(DECODE_ERROR),
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| s.record(HANDSHAKE, &handshake_message(24, &[])),
        },
        Case {
            name: "key-update-oversized",
            versions: Versions::Tls13,
            expect: Fatal(DECODE_ERROR),
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| s.record(HANDSHAKE, &handshake_message(24, &[0, 0])),
        },
        Case {
            name: "two-key-updates-in-one-record",
            versions: Versions::Tls13,
            expect: Fatal(UNEXPECTED_MESSAGE),
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| s.record(HANDSHAKE, &[key_update(0), key_update(0)].concat()),
        },
        Case {
            name: "key-update-fragments-around-data",
            versions: Versions::Tls13,
            expect: Fatal(UNEXPECTED_MESSAGE),
            rustls: Some(Close),
            kernel: None,
            rekeys: false,
            build: |s| {
                let ku = key_update(0);
                let mut r = s.record(HANDSHAKE, &ku[..2]);
                r.extend(s.record(APPDATA, &request()));
                r.extend(s.record(HANDSHAKE, &ku[2..]));
                r
            },
        },
        Case {
            name: "renegotiation-client-hello",
            versions: Versions::Tls12,
            expect: WarningThenServes(NO_RENEGOTIATION),
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| {
                let hello = client_hello_message(&Target::placeholder(), false);
                s.record(HANDSHAKE, &hello)
            },
        },
        Case {
            name: "key-update-split-over-two-records",
            versions: Versions::Tls13,
            expect: Serves,
            rustls: None,
            kernel: None,
            rekeys: true,
            build: |s| {
                let ku = key_update(0);
                let mut r = s.record(HANDSHAKE, &ku[..2]);
                r.extend(s.record(HANDSHAKE, &ku[2..]));
                s.update_tx_key();
                r
            },
        },
        Case {
            name: "32-key-updates",
            versions: Versions::Tls13,
            expect: Serves,
            rustls: None,
            kernel: None,
            rekeys: true,
            build: |s| {
                let mut r = Vec::new();
                for _ in 0..32 {
                    r.extend(s.record(HANDSHAKE, &key_update(0)));
                    s.update_tx_key();
                }
                r
            },
        },
    ]
}

/// Warning alerts a userspace layer lets pass, as RFC 5246 §7.2 allows for TLS 1.2 and
/// RFC 8446 §6.1 asks for TLS 1.3's user_canceled; run against ringgate's record layer
/// and rustls (tests/tls_records.rs), not the kernel's (its layer above closes on any
/// alert).
pub fn warning_alert_cases() -> Vec<Case> {
    use Expect::*;
    vec![
        Case {
            // Any TLS 1.2 warning, and TLS 1.3's user_canceled; then the request.
            name: "user-canceled-warning",
            versions: Versions::Both,
            expect: Serves,
            rustls: None,
            kernel: None,
            rekeys: false,
            build: |s| s.record(ALERT, &[1, 90]),
        },
        Case {
            name: "tls13-other-warning-alert",
            versions: Versions::Tls13,
            expect: Close,
            rustls: Some(Fatal(DECODE_ERROR)),
            kernel: None,
            rekeys: false,
            build: |s| s.record(ALERT, &[1, 100]),
        },
    ]
}

impl Target {
    /// A target for building messages only (a ClientHello needs a config, not a server).
    fn placeholder() -> Target {
        Target {
            addr: ([127, 0, 0, 1], 9).into(),
            root: CertificateDer::from(Vec::new()),
            host: "app.test".into(),
            read_timeout: Duration::from_secs(1),
        }
    }
}

/// The ClientHello handshake message rustls would send (without its record header);
/// `padded`: grown past 64 KiB with a junk extension-sized tail in its length.
pub fn client_hello_message(target: &Target, tls13: bool) -> Vec<u8> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.retain(|s| {
        let v13 = is_tls13(s.suite());
        v13 == tls13 || !tls13
    });
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS12]
    };
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(target.host.clone()).expect("name");
    let mut conn = ClientConnection::new(Arc::new(config), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls");
    }
    // Strip record headers: the handshake message may span records.
    let mut msg = Vec::new();
    let mut rest = &out[..];
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        msg.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    msg
}

/// A handshake-phase sequence: plaintext records around a real ClientHello.
pub struct HandshakeCase {
    pub name: &'static str,
    /// The alert the server must send, or `None` for a close without one (what rustls
    /// does where it has no alert to give: a handshake message over 64 KiB, or another
    /// record type between the fragments of one). The handshake is always rustls', so
    /// these hold with and without kTLS.
    pub expect: Option<u8>,
    pub build: fn(&[u8]) -> Vec<u8>,
}

/// A body that starts like a record header announcing 4 KiB: a reader that takes the
/// body of a record type it skips for headers waits for bytes that never come.
const HIDDEN_HEADER: &[u8] = b"\x16\x03\x03\x10\x00GET / HTTP/1.0\r\n\r\n";

pub fn handshake_cases() -> Vec<HandshakeCase> {
    vec![
        HandshakeCase {
            name: "unknown-type-between-client-hello-fragments",
            expect: Some(DECODE_ERROR),
            build: |hello| {
                let (a, b) = hello.split_at(40);
                [
                    plain_record(HANDSHAKE, a),
                    plain_record(UNKNOWN_TYPE, b"GET / HTTP/1.0\r\n\r\n"),
                    plain_record(HANDSHAKE, b),
                ]
                .concat()
            },
        },
        HandshakeCase {
            name: "oversized-record-between-client-hello-fragments",
            expect: Some(DECODE_ERROR),
            build: |hello| {
                let (a, b) = hello.split_at(40);
                let mut r = plain_record(HANDSHAKE, a);
                r.extend_from_slice(&[HANDSHAKE, 3, 3, 0xff, 0xff]);
                r.extend_from_slice(&[0; 100]);
                r.extend(plain_record(HANDSHAKE, b));
                r
            },
        },
        HandshakeCase {
            name: "zero-length-record-in-client-hello",
            expect: Some(DECODE_ERROR),
            build: |hello| {
                let (a, b) = hello.split_at(40);
                [
                    plain_record(HANDSHAKE, a),
                    plain_record(HANDSHAKE, &[]),
                    plain_record(HANDSHAKE, b),
                ]
                .concat()
            },
        },
        HandshakeCase {
            // RFC 8446 §5 asks for unexpected_message; rustls rejects the record while
            // decoding it.
            name: "heartbeat-record-first",
            expect: Some(DECODE_ERROR),
            build: |hello| {
                [
                    plain_record(HEARTBEAT, HIDDEN_HEADER),
                    plain_record(HANDSHAKE, hello),
                ]
                .concat()
            },
        },
        HandshakeCase {
            name: "heartbeat-between-client-hello-fragments",
            expect: None,
            build: |hello| {
                let (a, b) = hello.split_at(40);
                [
                    plain_record(HANDSHAKE, a),
                    plain_record(HEARTBEAT, HIDDEN_HEADER),
                    plain_record(HANDSHAKE, b),
                ]
                .concat()
            },
        },
        HandshakeCase {
            name: "client-hello-over-64KiB",
            expect: None,
            build: |hello| {
                // The real ClientHello's start with a 24-bit length past 0xffff, in
                // full-size records.
                let mut msg = hello.to_vec();
                let len = 70_000u32;
                msg[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
                msg.resize(4 + len as usize, 0);
                msg.chunks(MAX_PLAINTEXT)
                    .flat_map(|c| plain_record(HANDSHAKE, c))
                    .collect()
            },
        },
    ]
}

impl HandshakeCase {
    /// Sends the sequence on a fresh connection and checks the answer: the expected
    /// plaintext fatal alert (or none), then close.
    pub fn run(&self, target: &Target, tls13: bool) -> Result<(), String> {
        let hello = client_hello_message(target, tls13);
        let mut sock = TcpStream::connect(target.addr).map_err(|e| format!("connect: {e}"))?;
        sock.set_read_timeout(Some(target.read_timeout))
            .map_err(|e| e.to_string())?;
        // The server may close before it read everything: a reset while sending is fine.
        let _ = sock.write_all(&(self.build)(&hello));
        let mut got = Vec::new();
        let end = loop {
            let mut buf = [0u8; 4096];
            match sock.read(&mut buf) {
                Ok(0) => break "eof",
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break io_end(&e),
            }
        };
        let want = match self.expect {
            Some(desc) => plain_record(ALERT, &[2, desc]),
            None => Vec::new(),
        };
        if got == want && (end == "eof" || end == "reset") {
            Ok(())
        } else {
            Err(format!(
                "expected {want:?} then close, got {got:?} then {end}"
            ))
        }
    }
}
