//! The SNI host name of a ClientHello, read from the raw records of the client's first
//! flight. rustls' unbuffered server connection does not expose the name it saw (and its
//! certificate resolver is not asked on resumption), so the handshake keeps a copy of the
//! first-flight bytes until this parser has an answer. No I/O; never fails: anything it
//! cannot read is "no SNI" (rustls itself decides whether the hello is acceptable).

/// Largest ClientHello the parser reassembles (rustls refuses larger handshake messages).
const MAX_HELLO: usize = 64 * 1024;

/// What the first-flight bytes so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// The ClientHello is not complete yet.
    NeedMore,
    /// The name (lower case), or `None`: no SNI extension, or not a readable ClientHello.
    Done(Option<String>),
}

/// Reads the SNI host name from `raw`, the bytes of the client's first TLS records.
pub fn sni(raw: &[u8]) -> Sni {
    let mut msg = Vec::new();
    let mut rest = raw;
    loop {
        if let Some(done) = try_hello(&msg) {
            return Sni::Done(done);
        }
        if rest.len() < 5 {
            return Sni::NeedMore;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rest[0] != 22 || msg.len() + len > MAX_HELLO {
            return Sni::Done(None);
        }
        let Some(payload) = rest.get(5..5 + len) else {
            return Sni::NeedMore;
        };
        msg.extend_from_slice(payload);
        rest = &rest[5 + len..];
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

    #[test]
    fn reads_the_name_at_every_split_and_fragmentation() {
        let flight = client_hello("API.Example.com");
        for fragment in [1, 7, 100, flight.len()] {
            let raw = refragment(&flight, fragment);
            for cut in 0..raw.len() {
                assert_eq!(
                    sni(&raw[..cut]),
                    Sni::NeedMore,
                    "fragment {fragment} cut {cut}"
                );
            }
            assert_eq!(sni(&raw), Sni::Done(Some("api.example.com".into())));
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
}
