//! ③' The client stream after the switch to ringgate's own record layer: where the
//! kernel cannot take the secrets (no `tls` module, a suite it lacks, `ktls = "off"`),
//! the records are sealed and opened here, in place, with aws-lc-rs's AEADs. rustls made
//! the handshake and keeps the TLS 1.3 key schedule (its `KernelConnection`, as for
//! kTLS); this layer does exactly the kernel's job after the switch and shares its
//! decisions ([`records`]: which records are allowed after the handshake, the alert for
//! each fault).
//!
//! Why not stay in rustls: its unbuffered API copies each record's plaintext into a
//! fresh allocation, seals it there, then copies the sealed record into our buffer — two
//! copies and one allocation per record, 22% of the proxy's CPU on 64 KiB responses.
//! Here each plaintext byte is copied once, into the record buffer, and sealed where it
//! lies; records are opened in place in the read buffer and handed to the reader from
//! there. `[listener.tls] record_layer = "rustls"` keeps rustls's own record layer.
//!
//! The nonce is the traffic IV XOR the record's sequence number (RFC 8446 §5.3; RFC 5288
//! §3 as rustls builds it for TLS 1.2 AES-GCM, whose explicit part goes on the wire; RFC
//! 7905 §2 for ChaCha20-Poly1305), with sequence numbers continuing from rustls's: a
//! sequence number is never used twice under one key, and running out of them ends the
//! connection. TLS 1.3 AES-GCM keys are replaced by a KeyUpdate before 2^24 records
//! (RFC 8446 §5.5 allows 2^24.5); TLS 1.2 cannot re-key, so its connection closes there.
//!
//! Faults end the connection with one fatal alert and nothing after it: a record that
//! fails to open (bad_record_mac), one over the length limits (record_overflow), a TLS
//! 1.3 record without a content type (unexpected_message), and everything
//! [`records::classify`] refuses.

use std::io;

use aws_lc_rs::aead::{
    AES_128_GCM, AES_256_GCM, Aad, Algorithm, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce,
    UnboundKey,
};
use bytes::{Buf, BytesMut};
use monoio::net::TcpStream;
use rustls::ConnectionTrafficSecrets;
use rustls::kernel::KernelConnection;

use super::driver::{CIPHER_READ, Out};
use super::io::read_spare;
use super::ktls::records::{
    self, ALERT_BAD_RECORD_MAC, ALERT_CLOSE_NOTIFY, ALERT_NO_RENEGOTIATION, ALERT_RECORD_OVERFLOW,
    ALERT_UNEXPECTED_MESSAGE, CONTENT_ALERT, CONTENT_APPLICATION_DATA, CONTENT_HANDSHAKE,
    ControlRecord, HANDSHAKE_KEY_UPDATE, KEY_UPDATE_REQUESTED,
};

/// Largest plaintext in one record (RFC 8446 §5.1, RFC 5246 §6.2.1).
const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest TLS 1.3 ciphertext (RFC 8446 §5.2) and TLS 1.2 ciphertext (RFC 5246 §6.2.3).
const MAX_CIPHERTEXT_13: usize = MAX_PLAINTEXT + 256;
const MAX_CIPHERTEXT_12: usize = MAX_PLAINTEXT + 2048;
const HEADER: usize = 5;
const TAG: usize = 16;
/// TLS 1.2 AES-GCM's explicit nonce, sent before each record's ciphertext.
const EXPLICIT_NONCE: usize = 8;
/// Alert level `warning`, and TLS 1.3's one warning that does not end the connection.
const LEVEL_WARNING: u8 = 1;
const USER_CANCELED: u8 = 90;
/// Records sealed under one TLS 1.3 AES-GCM key before a KeyUpdate replaces it.
const AES_GCM_RECORDS_PER_KEY: u64 = 1 << 24;

/// One direction's AEAD state: key, IV and the next sequence number.
struct Keys {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
    /// TLS 1.2 AES-GCM: the nonce's last 8 bytes travel with each record.
    explicit_nonce: bool,
    /// Sequence numbers this key may still use (AES-GCM's limit under TLS 1.3).
    limit: u64,
}

impl Keys {
    fn new(tls13: bool, seq: u64, secrets: ConnectionTrafficSecrets) -> io::Result<Keys> {
        let (algorithm, key, iv, gcm): (&'static Algorithm, _, _, bool) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv, true),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv, true),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&CHACHA20_POLY1305, key, iv, false)
            }
            _ => return Err(io::Error::other("a cipher this record layer does not know")),
        };
        let key = UnboundKey::new(algorithm, key.as_ref())
            .map_err(|_| io::Error::other("the traffic key does not fit its cipher"))?;
        let iv: [u8; NONCE_LEN] = iv
            .as_ref()
            .try_into()
            .map_err(|_| io::Error::other("the traffic IV is not 12 bytes"))?;
        Ok(Keys {
            key: LessSafeKey::new(key),
            iv,
            seq,
            explicit_nonce: gcm && !tls13,
            // u64::MAX itself is never used: the sequence number would wrap after it.
            limit: if gcm && tls13 {
                AES_GCM_RECORDS_PER_KEY
            } else {
                u64::MAX
            },
        })
    }

    /// The nonce for the record at `seq`: the IV XOR the sequence number.
    fn nonce_at(&self, seq: u64) -> [u8; NONCE_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    /// Takes the next sequence number; `None` when this key has used all it may.
    fn next_seq(&mut self) -> Option<u64> {
        let seq = self.seq;
        if seq >= self.limit {
            return None;
        }
        self.seq += 1;
        Some(seq)
    }
}

/// TLS 1.2's additional data: sequence number, type, version, plaintext length.
fn tls12_aad(seq: u64, typ: u8, len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9..11].copy_from_slice(&[3, 3]);
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// A record's additional data, on the stack: TLS 1.3's is the record header, TLS 1.2's
/// [`tls12_aad`].
enum AadBytes {
    Tls13([u8; HEADER]),
    Tls12([u8; 13]),
}

impl AsRef<[u8]> for AadBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            AadBytes::Tls13(b) => b,
            AadBytes::Tls12(b) => b,
        }
    }
}

/// A fault in the peer's records: the fatal alert it gets and why, for the log.
struct Fault(u8, &'static str);

/// What one pass over the buffered ciphertext found.
enum Opened {
    /// Application data, in place: `cin[start..end]`.
    Data(usize, usize),
    /// Any other record, classified.
    Control(ControlRecord),
    /// No whole record buffered.
    NeedMore,
}

/// A connection whose records this layer seals and opens; `D` is rustls' data for our
/// role.
pub(super) struct SealState<D> {
    /// What rustls keeps after the hand-over: the TLS 1.3 key schedule, for KeyUpdates.
    kernel: KernelConnection<D>,
    tls13: bool,
    tx: Keys,
    rx: Keys,
    /// Ciphertext from the socket; `cin[cin_start..]` is not yet opened. Opened records
    /// stay in place: `cin[plain.0..plain.1]` is plaintext not yet handed to the reader.
    cin: BytesMut,
    cin_start: usize,
    plain: (usize, usize),
    /// Records to send.
    out: Out,
    /// A handshake message read in part (its next fragment must be the next record).
    hs: Vec<u8>,
    /// close_notify received, or the peer closed TCP.
    eof: bool,
    /// The session ended on a fault or an alert: nothing more is read, and nothing is
    /// sent after the one fatal alert.
    failed: bool,
}

fn aborted(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, why.to_string())
}

impl<D> SealState<D> {
    /// Takes over from rustls: its key schedule, the traffic secrets with their sequence
    /// numbers, and the ciphertext it had read but not processed (`cin`).
    pub(super) fn new(
        kernel: KernelConnection<D>,
        secrets: rustls::ExtractedSecrets,
        cin: BytesMut,
    ) -> io::Result<SealState<D>> {
        let tls13 = match kernel.protocol_version() {
            rustls::ProtocolVersion::TLSv1_3 => true,
            rustls::ProtocolVersion::TLSv1_2 => false,
            other => return Err(io::Error::other(format!("unsupported protocol {other:?}"))),
        };
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        Ok(SealState {
            tx: Keys::new(tls13, tx_seq, tx)?,
            rx: Keys::new(tls13, rx_seq, rx)?,
            kernel,
            tls13,
            cin,
            cin_start: 0,
            plain: (0, 0),
            out: Out::default(),
            hs: Vec::new(),
            eof: false,
            failed: false,
        })
    }

    /// A read can be answered without the socket.
    pub(super) fn has_buffered(&self) -> bool {
        self.plain.0 < self.plain.1 || self.cin_start < self.cin.len() || self.eof || self.failed
    }

    /// Appends up to `want` plaintext bytes to `dst`; `Ok(0)` is end of stream (a
    /// close_notify, or the peer closing TCP without one, as the rustls layer treats it).
    ///
    /// Cancel safety: as [`super::Stream::read`] — ciphertext and plaintext already read
    /// stay in `cin`; a dropped KeyUpdate answer leaves `out` cut, so nothing is sent again.
    pub(super) async fn read(
        &mut self,
        tcp: &mut TcpStream,
        dst: &mut BytesMut,
        want: usize,
    ) -> io::Result<usize> {
        let want = want.max(1);
        loop {
            if self.failed {
                return Err(aborted("the TLS session ended on an alert"));
            }
            if self.plain.0 < self.plain.1 {
                let n = (self.plain.1 - self.plain.0).min(want);
                dst.extend_from_slice(&self.cin[self.plain.0..self.plain.0 + n]);
                self.plain.0 += n;
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            let opened = match self.open() {
                Ok(o) => o,
                Err(Fault(desc, why)) => return Err(self.fatal(tcp, desc, why).await),
            };
            match opened {
                Opened::Data(start, end) => self.plain = (start, end),
                Opened::NeedMore => {
                    self.compact();
                    self.cin.reserve(CIPHER_READ);
                    if read_spare(tcp, &mut self.cin, usize::MAX).await? == 0 {
                        self.eof = true;
                    }
                }
                Opened::Control(record) => self.control(tcp, record).await?,
            }
        }
    }

    /// Answers a record other than application data.
    async fn control(&mut self, tcp: &mut TcpStream, record: ControlRecord) -> io::Result<()> {
        match record {
            ControlRecord::CloseNotify => self.eof = true,
            ControlRecord::Alert(LEVEL_WARNING, desc) if !self.tls13 || desc == USER_CANCELED => {
                // A TLS 1.2 warning may be ignored (RFC 5246 §7.2), and TLS 1.3's
                // user_canceled is followed by close_notify (RFC 8446 §6.1): the
                // connection goes on, as rustls lets it.
                tracing::debug!(desc, "peer sent a TLS warning alert; ignored");
            }
            ControlRecord::Alert(level, desc) => {
                // Any other alert ends the connection (RFC 8446 §6), and after it
                // nothing more is sent (§6.2).
                self.failed = true;
                return Err(aborted(&format!(
                    "peer sent TLS alert {desc} (level {level})"
                )));
            }
            ControlRecord::KeyUpdate(request) => {
                let (seq, rx) = self
                    .kernel
                    .update_rx_secret()
                    .map_err(|e| io::Error::other(format!("next receive key: {e}")))?;
                self.rx = Keys::new(self.tls13, seq, rx)?;
                if request == KEY_UPDATE_REQUESTED {
                    self.update_tx()?;
                    self.out.flush(tcp).await?;
                }
            }
            ControlRecord::Renegotiation => {
                // RFC 5246 §7.2.2: a warning; the connection goes on.
                self.alert(ALERT_NO_RENEGOTIATION)?;
                self.out.flush(tcp).await?;
            }
            ControlRecord::Fatal(desc, why) => return Err(self.fatal(tcp, desc, why).await),
            ControlRecord::Fragment | ControlRecord::Data(_) | ControlRecord::WouldBlock => {}
        }
        Ok(())
    }

    /// Opens the next whole record in `cin`, in place.
    fn open(&mut self) -> Result<Opened, Fault> {
        let buffered = &self.cin[self.cin_start..];
        if buffered.len() < HEADER {
            return Ok(Opened::NeedMore);
        }
        let outer = buffered[0];
        let len = usize::from(u16::from_be_bytes([buffered[3], buffered[4]]));
        if buffered[1] != 3 {
            return Err(Fault(
                records::ALERT_DECODE_ERROR,
                "a record whose version is not 3.x",
            ));
        }
        let (max, known) = if self.tls13 {
            (MAX_CIPHERTEXT_13, outer == CONTENT_APPLICATION_DATA)
        } else {
            (MAX_CIPHERTEXT_12, (20..=24).contains(&outer))
        };
        if !known {
            return Err(Fault(
                ALERT_UNEXPECTED_MESSAGE,
                "a record type not allowed after the handshake",
            ));
        }
        if len > max {
            return Err(Fault(
                ALERT_RECORD_OVERFLOW,
                "a record over the length limit",
            ));
        }
        let front = if self.rx.explicit_nonce {
            EXPLICIT_NONCE
        } else {
            0
        };
        if len < front + TAG {
            return Err(Fault(
                ALERT_BAD_RECORD_MAC,
                "a record too short for its tag",
            ));
        }
        if buffered.len() < HEADER + len {
            return Ok(Opened::NeedMore);
        }
        let start = self.cin_start;
        self.cin_start += HEADER + len;
        let Some(seq) = self.rx.next_seq() else {
            return Err(Fault(
                ALERT_UNEXPECTED_MESSAGE,
                "the peer's record sequence numbers ran out",
            ));
        };
        let mut header = [0u8; HEADER];
        header.copy_from_slice(&self.cin[start..start + HEADER]);
        let mut nonce = self.rx.nonce_at(seq);
        let body = start + HEADER;
        if self.rx.explicit_nonce {
            nonce[NONCE_LEN - EXPLICIT_NONCE..].copy_from_slice(&self.cin[body..body + 8]);
        }
        let sealed = &mut self.cin[body + front..body + len];
        let plain_len = sealed.len() - TAG;
        let aad = if self.tls13 {
            Aad::from(AadBytes::Tls13(header))
        } else {
            Aad::from(AadBytes::Tls12(tls12_aad(seq, outer, plain_len)))
        };
        let opened = self
            .rx
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), aad, sealed)
            .map_err(|_| Fault(ALERT_BAD_RECORD_MAC, "a record that does not decrypt"))?;
        let mut end = opened.len();
        let typ = if self.tls13 {
            // The inner content type is the last non-zero byte; zeros after it are padding.
            let Some(at) = opened.iter().rposition(|b| *b != 0) else {
                return Err(Fault(
                    ALERT_UNEXPECTED_MESSAGE,
                    "a TLS 1.3 record without a content type",
                ));
            };
            end = at;
            opened[at]
        } else {
            outer
        };
        if end > MAX_PLAINTEXT {
            return Err(Fault(
                ALERT_RECORD_OVERFLOW,
                "a record's plaintext is over 2^14",
            ));
        }
        let (from, to) = (body + front, body + front + end);
        if typ == CONTENT_APPLICATION_DATA && self.hs.is_empty() {
            return Ok(Opened::Data(from, to));
        }
        let mut data = Vec::new();
        let record = records::classify(
            self.tls13,
            typ,
            &self.cin[from..to],
            &mut data,
            &mut self.hs,
        );
        Ok(Opened::Control(record))
    }

    /// Seals one record of `typ` around `payload` (at most 2^14 bytes) into `out`.
    fn seal(&mut self, typ: u8, payload: &[u8]) -> io::Result<()> {
        debug_assert!(payload.len() <= MAX_PLAINTEXT);
        if self.tls13 && self.tx.seq.saturating_add(1) >= self.tx.limit {
            // One sequence number left under this key: it carries the KeyUpdate that
            // announces the next key (RFC 8446 §5.5).
            self.update_tx()?;
        }
        seal_record(&mut self.tx, self.tls13, typ, payload, &mut self.out)
    }

    /// Queues our KeyUpdate(update_not_requested) under the current key, then moves to
    /// the next one.
    fn update_tx(&mut self) -> io::Result<()> {
        let msg = [HANDSHAKE_KEY_UPDATE, 0, 0, 1, 0];
        seal_record(
            &mut self.tx,
            self.tls13,
            CONTENT_HANDSHAKE,
            &msg,
            &mut self.out,
        )?;
        let (seq, tx) = self
            .kernel
            .update_tx_secret()
            .map_err(|e| io::Error::other(format!("next send key: {e}")))?;
        self.tx = Keys::new(self.tls13, seq, tx)?;
        Ok(())
    }

    /// Queues an alert (its level from [`records::alert_level`]).
    fn alert(&mut self, description: u8) -> io::Result<()> {
        let level = records::alert_level(description);
        self.seal(CONTENT_ALERT, &[level, description])
    }

    /// The peer broke the protocol: one fatal alert, then nothing. Returns the error for
    /// the caller.
    async fn fatal(&mut self, tcp: &mut TcpStream, description: u8, why: &str) -> io::Error {
        self.failed = true;
        if self.alert(description).is_ok() {
            let _ = self.out.flush(tcp).await;
        }
        self.cin = BytesMut::new();
        self.cin_start = 0;
        self.plain = (0, 0);
        io::Error::new(io::ErrorKind::InvalidData, why.to_string())
    }

    /// Seals and sends all of `data`.
    pub(super) async fn write(&mut self, tcp: &mut TcpStream, data: &[u8]) -> io::Result<()> {
        if self.failed {
            return Err(aborted("the TLS session ended on an alert"));
        }
        let records = data.len().div_ceil(MAX_PLAINTEXT);
        self.out
            .reserve(data.len() + records * (HEADER + EXPLICIT_NONCE + TAG + 1));
        for chunk in data.chunks(MAX_PLAINTEXT) {
            self.seal(CONTENT_APPLICATION_DATA, chunk)?;
        }
        self.out.flush(tcp).await
    }

    /// Sends close_notify, unless the session already ended on an alert.
    pub(super) async fn close_notify(&mut self, tcp: &mut TcpStream) {
        if !self.failed && self.alert(ALERT_CLOSE_NOTIFY).is_ok() {
            let _ = self.out.flush(tcp).await;
        }
    }

    /// Drops consumed ciphertext from the front of `cin`, keeping plaintext not yet read.
    fn compact(&mut self) {
        let keep = if self.plain.0 < self.plain.1 {
            self.plain.0
        } else {
            self.cin_start
        };
        if keep > 0 {
            self.cin.advance(keep);
            self.cin_start -= keep;
            self.plain = if self.plain.0 < self.plain.1 {
                (self.plain.0 - keep, self.plain.1 - keep)
            } else {
                (0, 0)
            };
        }
    }

    /// Drops idle buffers (keep-alive wait).
    pub(super) fn release_buffers(&mut self) {
        self.compact();
        if self.cin.is_empty() {
            self.cin = BytesMut::new();
        }
        self.out.release();
    }
}

/// Seals one record into `out`: header, (TLS 1.2 AES-GCM) explicit nonce, the payload
/// copied once and sealed where it lies, (TLS 1.3) its inner type, then the tag.
fn seal_record(
    keys: &mut Keys,
    tls13: bool,
    typ: u8,
    payload: &[u8],
    out: &mut Out,
) -> io::Result<()> {
    let Some(seq) = keys.next_seq() else {
        return Err(io::Error::other(
            "the TLS record sequence numbers of this key ran out; closing",
        ));
    };
    let nonce = keys.nonce_at(seq);
    let front = if keys.explicit_nonce {
        EXPLICIT_NONCE
    } else {
        0
    };
    let inner = payload.len() + usize::from(tls13);
    let len = front + inner + TAG;
    let buf = out.spare(HEADER + len);
    buf[0] = if tls13 { CONTENT_APPLICATION_DATA } else { typ };
    buf[1..3].copy_from_slice(&[3, 3]);
    buf[3..5].copy_from_slice(&(len as u16).to_be_bytes());
    if keys.explicit_nonce {
        buf[HEADER..HEADER + EXPLICIT_NONCE].copy_from_slice(&nonce[NONCE_LEN - EXPLICIT_NONCE..]);
    }
    let p = HEADER + front;
    buf[p..p + payload.len()].copy_from_slice(payload);
    if tls13 {
        buf[p + payload.len()] = typ;
    }
    let aad = if tls13 {
        let mut header = [0u8; HEADER];
        header.copy_from_slice(&buf[..HEADER]);
        Aad::from(AadBytes::Tls13(header))
    } else {
        Aad::from(AadBytes::Tls12(tls12_aad(seq, typ, payload.len())))
    };
    let tag = keys
        .key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            aad,
            &mut buf[p..p + inner],
        )
        .map_err(|_| io::Error::other("sealing a record failed"))?;
    buf[p + inner..p + inner + TAG].copy_from_slice(tag.as_ref());
    out.len += HEADER + len;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::server::UnbufferedServerConnection;

    use super::super::stream::{ClientStream, Layer};
    use super::*;

    const NAME: &str = "seal.test";

    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let made = rcgen::generate_simple_self_signed(vec![NAME.into()]).unwrap();
        let cert = made.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        server.enable_secret_extraction = true;
        server.send_tls13_tickets = 0;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// A TLS 1.3 AES-GCM key that reaches its record limit is replaced: our KeyUpdate
    /// goes out under it, with its last sequence number, and the next records use the
    /// next key. The limit is lowered to a few records here; rustls as the client must
    /// read every byte across the changes (a wrong key or nonce fails its decryption).
    #[test]
    fn a_key_at_its_record_limit_is_replaced_by_a_key_update() {
        let (server_config, client_config) = configs();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        const RECORDS: usize = 10;
        let client = std::thread::spawn(move || {
            let name = ServerName::try_from(NAME).unwrap();
            let conn = rustls::ClientConnection::new(client_config, name).unwrap();
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            std::io::Write::write_all(&mut tls, b"go").unwrap();
            let mut got = Vec::new();
            tls.read_to_end(&mut got).expect("every record decrypts");
            got
        });
        let (server, _) = listener.accept().unwrap();
        let sent = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(async move {
                server.set_nonblocking(true).unwrap();
                let tcp = TcpStream::from_std(server).unwrap();
                let conn = UnbufferedServerConnection::new(server_config).unwrap();
                let mut s = ClientStream::tls(tcp, conn, true);
                s.handshake().await.expect("handshake");
                let mut plaintext = BytesMut::new();
                assert_eq!(s.seal_in_userspace(&mut plaintext), Ok(true));
                let mut first = BytesMut::new();
                while first.len() < 2 {
                    assert!(s.read(&mut first, 2).await.unwrap() > 0);
                }
                assert_eq!(&first[..], b"go");
                let Layer::Sealed(state) = &mut s.layer else {
                    panic!("not sealed here");
                };
                // Three records left under the first key, then under each next one.
                state.tx.limit = state.tx.seq + 3;
                let keys_before = state.tx.iv;
                let mut sent = Vec::new();
                for i in 0..RECORDS {
                    let record = vec![i as u8; MAX_PLAINTEXT];
                    s.write(bytes::Bytes::from(record.clone())).await.unwrap();
                    sent.extend(record);
                    if let Layer::Sealed(state) = &mut s.layer
                        && state.tx.limit == AES_GCM_RECORDS_PER_KEY
                    {
                        state.tx.limit = state.tx.seq + 3;
                    }
                }
                let Layer::Sealed(state) = &s.layer else {
                    panic!("not sealed here");
                };
                assert_ne!(state.tx.iv, keys_before, "the send key was never replaced");
                s.shutdown().await;
                sent
            });
        let got = client.join().unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "the client read other bytes than were sent");
    }
}
