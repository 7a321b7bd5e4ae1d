//! One header field and the RFC 9110 token rules: the leaf type every layer that holds
//! a field — the message, the settings that prepare fields at load — shares
//! ([`crate::message`] re-exports it).

use bytes::Bytes;

/// One header field: slices of the buffer the head was read into (or owned bytes once
/// edited).
#[derive(Debug, Clone)]
pub struct Header {
    pub name: Bytes,
    pub value: Bytes,
}

/// RFC 9110 token characters.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The fields that frame a message or decide its connection's fate (lower case): the
/// proxy writes them for each message, so no configured field may take their names.
pub const FRAMING_FIELDS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Trims optional whitespace (SP / HTAB) from both ends.
pub fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}
