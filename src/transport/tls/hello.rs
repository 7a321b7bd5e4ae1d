//! The SNI host name of a ClientHello, read from the raw records of the client's first
//! flight as they arrive. rustls' unbuffered server connection does not expose the name
//! it saw (and its certificate resolver is not asked on resumption), so the handshake
//! feeds each read's bytes to a [`HelloReader`] until it has an answer. No I/O. The work
//! is linear in the bytes fed: each byte is looked at once as it arrives, and the joined
//! message is parsed once, when whole.
//!
//! Anything it cannot read is "no SNI" (rustls itself decides whether the hello is
//! acceptable). The one thing it refuses is a hello spread over more than
//! [`MAX_HELLO_RECORDS`] records: [`Sni::TooManyRecords`], which the handshake turns into
//! a `handshake_failure` alert and a close (metrics reason `hello_fragmented`).

/// Largest ClientHello the parser reassembles (rustls refuses larger handshake messages).
const MAX_HELLO: usize = 64 * 1024;

/// Most records one ClientHello may span. A hello of [`MAX_HELLO`] bytes needs 4 full
/// records and real clients send one; clients that split the hello on purpose (to get
/// past middleboxes) use a handful. Thousands of tiny records only make the server work
/// per record (60,000 one-byte records cost 0.2 s of CPU in nginx): refused.
pub const MAX_HELLO_RECORDS: usize = 32;

/// What the first-flight bytes so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// The ClientHello is not complete yet.
    NeedMore,
    /// The name (lower case), or `None`: no SNI extension, or not a readable ClientHello.
    Done(Option<String>),
    /// The ClientHello came in more records than allowed ([`MAX_HELLO_RECORDS`]).
    TooManyRecords,
}

/// Reads a client's first flight as it arrives: feed it each read's bytes in order
/// until it answers something other than [`Sni::NeedMore`].
#[derive(Debug)]
pub struct HelloReader {
    /// A record header split across reads: its first `header_len` bytes.
    header: [u8; 5],
    header_len: usize,
    /// Payload bytes of the current record still to come.
    body_left: usize,
    /// The handshake bytes so far (the record payloads joined).
    msg: Vec<u8>,
    records: usize,
    max_records: usize,
    /// Bytes looked at so far: each byte fed, and the whole message once (tests check
    /// that this stays linear).
    examined: usize,
}

impl Default for HelloReader {
    fn default() -> Self {
        HelloReader::with_max_records(MAX_HELLO_RECORDS)
    }
}

impl HelloReader {
    /// A reader refusing hellos in more than `max_records` records.
    pub fn with_max_records(max_records: usize) -> Self {
        HelloReader {
            header: [0; 5],
            header_len: 0,
            body_left: 0,
            msg: Vec::new(),
            records: 0,
            max_records,
            examined: 0,
        }
    }

    /// Bytes looked at so far.
    pub fn examined(&self) -> usize {
        self.examined
    }

    /// Takes the next bytes of the first flight.
    pub fn feed(&mut self, mut fresh: &[u8]) -> Sni {
        while !fresh.is_empty() {
            if self.body_left == 0 {
                let n = (5 - self.header_len).min(fresh.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&fresh[..n]);
                self.header_len += n;
                self.examined += n;
                fresh = &fresh[n..];
                if self.header_len < 5 {
                    break;
                }
                self.header_len = 0;
                let len = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                if self.header[0] != 22 || self.msg.len() + len > MAX_HELLO {
                    return Sni::Done(None);
                }
                self.records += 1;
                if self.records > self.max_records {
                    return Sni::TooManyRecords;
                }
                self.body_left = len;
                continue;
            }
            let n = self.body_left.min(fresh.len());
            self.msg.extend_from_slice(&fresh[..n]);
            self.examined += n;
            self.body_left -= n;
            fresh = &fresh[n..];
            if let Some(done) = try_hello(&self.msg) {
                self.examined += self.msg.len();
                return Sni::Done(done);
            }
        }
        Sni::NeedMore
    }
}

/// `Some(answer)` once `msg` (handshake bytes) holds a whole first message.
fn try_hello(msg: &[u8]) -> Option<Option<String>> {
    if msg.len() < 4 {
        return None;
    }
    if msg[0] != 1 {
        return Some(None);
    }
    let len = usize::from(msg[1]) << 16 | usize::from(msg[2]) << 8 | usize::from(msg[3]);
    let body = msg.get(4..4 + len)?;
    Some(server_name(body))
}

/// The host name in a ClientHello body (RFC 8446 §4.1.2, RFC 6066 §3).
fn server_name(body: &[u8]) -> Option<String> {
    let mut c = Cursor(body);
    c.skip(2 + 32)?; // legacy_version, random
    c.vec8()?; // legacy_session_id
    c.vec16()?; // cipher_suites
    c.vec8()?; // legacy_compression_methods
    let mut exts = Cursor(c.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut list = Cursor(Cursor(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type == 0 {
                let ok = !name.is_empty()
                    && name
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b));
                return ok.then(|| String::from_utf8_lossy(name).to_ascii_lowercase());
            }
        }
        return None;
    }
    None
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The first flight of a real rustls client (one record).
    fn client_hello(name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    /// The same handshake bytes cut into records of `fragment` bytes each.
    fn refragment(flight: &[u8], fragment: usize) -> Vec<u8> {
        let payload = &flight[5..];
        let mut out = Vec::new();
        for piece in payload.chunks(fragment) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
            out.extend_from_slice(piece);
        }
        out
    }

    /// A reader without the record cap (for fragmentation tests).
    fn uncapped() -> HelloReader {
        HelloReader::with_max_records(usize::MAX)
    }

    /// The answer for `raw` fed in one piece.
    fn sni(raw: &[u8]) -> Sni {
        uncapped().feed(raw)
    }

    #[test]
    fn reads_the_name_at_every_split_and_fragmentation() {
        let flight = client_hello("API.Example.com");
        let name = Sni::Done(Some("api.example.com".into()));
        for fragment in [1, 7, 100, flight.len()] {
            let raw = refragment(&flight, fragment);
            for cut in 0..raw.len() {
                let mut r = uncapped();
                assert_eq!(
                    r.feed(&raw[..cut]),
                    Sni::NeedMore,
                    "fragment {fragment} cut {cut}"
                );
                assert_eq!(r.feed(&raw[cut..]), name, "fragment {fragment} cut {cut}");
            }
            let mut r = uncapped();
            let (last, rest) = raw.split_last().unwrap();
            for b in rest {
                assert_eq!(r.feed(std::slice::from_ref(b)), Sni::NeedMore);
            }
            assert_eq!(r.feed(&[*last]), name, "fragment {fragment}, byte by byte");
        }
    }

    #[test]
    fn an_ip_address_or_garbage_is_no_name() {
        // rustls sends no SNI for an IP address.
        assert_eq!(sni(&client_hello("127.0.0.1")), Sni::Done(None));
        assert_eq!(sni(b"GET / HTTP/1.1\r\n"), Sni::Done(None));
        assert_eq!(sni(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Sni::Done(None));
        let mut flight = client_hello("a.test");
        flight.truncate(60);
        let len = (flight.len() - 5) as u16;
        flight[3..5].copy_from_slice(&len.to_be_bytes());
        // A whole record whose message claims more than it has: wait for more.
        assert_eq!(sni(&flight), Sni::NeedMore);
    }

    /// `flight` (one record) with a padding extension (RFC 7685) in front of the others,
    /// so that the hello's message is `size` bytes long.
    fn padded(flight: &[u8], size: usize) -> Vec<u8> {
        let msg = &flight[5..];
        let body = &msg[4..];
        // legacy_version, random, then the three vectors before the extensions.
        let mut at = 2 + 32;
        at += 1 + usize::from(body[at]);
        at += 2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
        at += 1 + usize::from(body[at]);
        let exts = &body[at + 2..];
        let pad = size - msg.len() - 4;
        let mut new_body = body[..at].to_vec();
        new_body.extend_from_slice(&((exts.len() + 4 + pad) as u16).to_be_bytes());
        new_body.extend_from_slice(&21u16.to_be_bytes());
        new_body.extend_from_slice(&(pad as u16).to_be_bytes());
        new_body.resize(new_body.len() + pad, 0);
        new_body.extend_from_slice(exts);
        let mut out = vec![22, 3, 1];
        out.extend_from_slice(&(size as u16).to_be_bytes());
        out.push(1);
        out.extend_from_slice(&(new_body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&new_body);
        assert_eq!(out.len() - 5, size);
        out
    }

    /// The attack: a 60 KB hello (a padding extension) as 60,000 one-byte records,
    /// each fed as its own read (the kTLS handshake reads one record at a time). The work
    /// must stay linear in the bytes fed — re-parsing the whole flight after each read
    /// was ~2×10⁹ steps. Counted, not timed; without the record cap, to count them all.
    #[test]
    fn a_hello_in_one_byte_records_costs_linear_work() {
        let flight = padded(&client_hello("api.example.com"), 60_000);
        assert_eq!(
            sni(&flight),
            Sni::Done(Some("api.example.com".into())),
            "the padded hello itself reads"
        );
        let raw = refragment(&flight, 1);
        let mut r = uncapped();
        let mut fed = 0;
        let mut answer = Sni::NeedMore;
        for record in raw.chunks(6) {
            assert_eq!(answer, Sni::NeedMore, "answered before the last record");
            answer = r.feed(record);
            fed += record.len();
            // Each byte once, plus one parse of the whole message at the end.
            assert!(
                r.examined() <= fed + MAX_HELLO,
                "{} bytes examined for {fed} fed",
                r.examined()
            );
        }
        assert_eq!(answer, Sni::Done(Some("api.example.com".into())));
    }

    #[test]
    fn a_hello_in_more_records_than_allowed_is_refused() {
        let flight = client_hello("api.example.com");
        // Within the cap: read as usual.
        let raw = refragment(&flight, (flight.len() - 5).div_ceil(MAX_HELLO_RECORDS));
        let name = Sni::Done(Some("api.example.com".into()));
        assert_eq!(HelloReader::default().feed(&raw), name);
        // One byte per record: refused at the record over the cap, whatever follows.
        let raw = refragment(&flight, 1);
        let mut r = HelloReader::default();
        let over = 6 * MAX_HELLO_RECORDS;
        assert_eq!(r.feed(&raw[..over]), Sni::NeedMore);
        assert_eq!(r.feed(&raw[over..over + 5]), Sni::TooManyRecords);
    }
}
