//! The WebSocket opening handshake's keys (RFC 6455 §4): a fresh `Sec-WebSocket-Key`
//! for a request the gateway itself makes (RFC 8441 streams become HTTP/1.1 upgrades
//! towards the upstream) and the `Sec-WebSocket-Accept` that answers a key. No I/O,
//! no framing: after the handshake the gateway copies bytes, it does not parse frames.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The GUID RFC 6455 §1.3 appends to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a request's `Sec-WebSocket-Key` (as sent, trimmed):
/// base64(SHA-1(key ‖ GUID)).
pub fn accept_for(key: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(GUID);
    STANDARD.encode(ctx.finish().as_ref())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1), or `None`
/// when the system's random source fails.
pub fn new_key() -> Option<String> {
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).ok()?;
    Some(STANDARD.encode(nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_6455_example_key_has_its_accept() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn new_keys_are_16_bytes_and_differ() {
        let a = new_key().expect("random");
        let b = new_key().expect("random");
        assert_ne!(a, b);
        assert_eq!(STANDARD.decode(&a).expect("base64").len(), 16);
    }
}
