//! Message bodies: a strict chunked decoder and encoder. No I/O.
//!
//! The decoder takes bytes as they arrive and hands back data as `Bytes` split off the
//! read buffer (no copy). It refuses anything ambiguous — non-hex or overflowing sizes,
//! a missing line end after data, control bytes in extensions or trailers — with a
//! [`Reject`] ([`Fault::Malformed`]: 400 from a client, 502 from an upstream). Client bodies must end every
//! line with CRLF (a bare LF is a smuggling vector between proxies); upstream bodies may
//! use a bare LF (RFC 9112 §2.2 lets a recipient accept it), so a response whose head
//! was already forwarded is never cut short by that variant. Trailers are read, checked
//! and dropped: HTTP/1.1 trailers are rare and not forwarded.

use bytes::{BufMut, BytesMut};

use super::parse::{Fault, Reject};
pub use crate::message::is_tchar;

/// Longest chunk-size line (size + extensions) or trailer section accepted.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// 16 hex digits fill a u64; more would overflow.
const MAX_SIZE_DIGITS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// What the decoder produced from the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Body bytes.
    Data(BytesMut),
    /// Read more and call again.
    NeedMore,
    /// The last chunk and trailers were read: the body is complete.
    Done,
}

/// Decodes `Transfer-Encoding: chunked` (RFC 9112 §7.1).
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Accept a bare LF where CRLF belongs (upstream bodies).
    bare_lf: bool,
}

impl ChunkedDecoder {
    /// For a client's request body: every line ends in CRLF.
    pub fn request() -> Self {
        ChunkedDecoder {
            state: State::Size,
            bare_lf: false,
        }
    }

    /// For an upstream's response body: a bare LF is accepted as a line end.
    pub fn response() -> Self {
        ChunkedDecoder {
            state: State::Size,
            bare_lf: true,
        }
    }

    /// `line` (up to, without, its LF) without its CR; `None` when the CR is missing
    /// and a bare LF is not accepted.
    fn line_body<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        match line.strip_suffix(b"\r") {
            Some(l) => Some(l),
            None if self.bare_lf => Some(line),
            None => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn fail(&self, reason: &'static str) -> Reject {
        Reject {
            fault: Fault::Malformed,
            reason,
        }
    }

    /// Consumes what it can from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Chunk, Reject> {
        loop {
            match self.state {
                State::Done => return Ok(Chunk::Done),
                State::Size => {
                    let Some(line_len) = find_lf(buf, MAX_LINE)
                        .map_err(|()| self.fail("chunk size line too long"))?
                    else {
                        return Ok(Chunk::NeedMore);
                    };
                    let size = self
                        .line_body(&buf[..line_len])
                        .and_then(parse_size_line)
                        .ok_or_else(|| self.fail("invalid chunk size line"))?;
                    let _ = buf.split_to(line_len + 1);
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(Chunk::NeedMore);
                    }
                    let n = (buf.len() as u64).min(remaining) as usize;
                    let data = buf.split_to(n);
                    self.state = if remaining == n as u64 {
                        State::DataEnd
                    } else {
                        State::Data(remaining - n as u64)
                    };
                    return Ok(Chunk::Data(data));
                }
                State::DataEnd => {
                    let end = match (buf.first(), buf.get(1)) {
                        (Some(b'\n'), _) if self.bare_lf => 1,
                        (Some(b'\r'), Some(b'\n')) => 2,
                        (None, _) | (Some(b'\r'), None) => return Ok(Chunk::NeedMore),
                        _ => return Err(self.fail("chunk data not followed by CRLF")),
                    };
                    let _ = buf.split_to(end);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let room = MAX_TRAILERS.saturating_sub(seen);
                    let Some(line_len) =
                        find_lf(buf, room).map_err(|()| self.fail("trailer section too large"))?
                    else {
                        return Ok(Chunk::NeedMore);
                    };
                    let Some(line) = self.line_body(&buf[..line_len]) else {
                        return Err(self.fail("trailer line not ended by CRLF"));
                    };
                    if line.is_empty() {
                        let _ = buf.split_to(line_len + 1);
                        self.state = State::Done;
                        return Ok(Chunk::Done);
                    }
                    if !valid_trailer(line) {
                        return Err(self.fail("invalid trailer field"));
                    }
                    let _ = buf.split_to(line_len + 1);
                    self.state = State::Trailers(seen + line_len + 1);
                }
            }
        }
    }
}

/// Position of the first LF within `limit` bytes; `Err` when none within the limit.
fn find_lf(buf: &[u8], limit: usize) -> Result<Option<usize>, ()> {
    match buf.iter().take(limit + 1).position(|&b| b == b'\n') {
        Some(p) => Ok(Some(p)),
        None if buf.len() > limit => Err(()),
        None => Ok(None),
    }
}

/// `1*HEXDIG *( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] )` (line end removed)
/// → size.
fn parse_size_line(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > MAX_SIZE_DIGITS {
        return None;
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let d = (b as char).to_digit(16)? as u64;
        size = size.checked_mul(16)?.checked_add(d)?;
    }
    let ext = &line[digits..];
    // Extensions are ignored, but must not carry anything a peer could read differently.
    let ext_ok = ext.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    let starts_ok = ext.is_empty() || ext.iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b';');
    (ext_ok && starts_ok).then_some(size)
}

fn valid_trailer(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = &line[..colon];
    !name.is_empty()
        && name.iter().all(|&b| is_tchar(b))
        && line[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Appends one chunk (`size CRLF data CRLF`) to `out`; empty data writes nothing.
pub fn encode_chunk(out: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.reserve(data.len() + 20);
    write_hex(out, data.len() as u64);
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// The last chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn write_hex(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], split: usize) -> Result<(Vec<u8>, usize), Reject> {
        decode_with(ChunkedDecoder::request(), input, split)
    }

    fn decode_with(
        mut dec: ChunkedDecoder,
        input: &[u8],
        split: usize,
    ) -> Result<(Vec<u8>, usize), Reject> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        let pieces: Vec<&[u8]> = if split == 0 {
            vec![input]
        } else {
            vec![&input[..split], &input[split..]]
        };
        for piece in pieces {
            buf.extend_from_slice(piece);
            fed += piece.len();
            loop {
                match dec.decode(&mut buf)? {
                    Chunk::Data(d) => out.extend_from_slice(&d),
                    Chunk::NeedMore => break,
                    Chunk::Done => return Ok((out, fed - buf.len())),
                }
            }
        }
        Err(Reject {
            fault: Fault::Malformed,
            reason: "incomplete",
        })
    }

    const GOOD: &[u8] = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";

    #[test]
    fn decodes_at_every_split_point() {
        for split in 0..GOOD.len() {
            let (data, used) = decode_all(GOOD, split).unwrap();
            assert_eq!(data, b"hello 0123456789", "split at {split}");
            assert_eq!(&GOOD[used..], b"NEXT", "split at {split}");
        }
    }

    #[test]
    fn every_byte_alone() {
        let mut dec = ChunkedDecoder::request();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in GOOD {
            buf.put_u8(b);
            while let Chunk::Data(d) = dec.decode(&mut buf).unwrap() {
                out.extend_from_slice(&d);
            }
        }
        assert!(dec.is_done());
        assert_eq!(out, b"hello 0123456789");
        assert_eq!(&buf[..], b"NEXT");
    }

    #[test]
    fn refuses_bad_framing() {
        let bad: &[&[u8]] = &[
            b"zz\r\n",
            b"ffffffffffffffffff\r\n",
            b"10000000000000000\r\n",
            b"-1\r\n",
            b"0x5\r\n",
            b"5\r\nhelloXX",
            b"5\nhello\r\n",
            b"5 junk\r\n",
            b"5;a=\x00\r\n",
            b"\r\n",
            b"0\r\nbad trailer\r\n\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
        ];
        for input in bad {
            for split in 0..input.len() {
                let r = decode_all(input, split);
                assert!(
                    matches!(
                        r,
                        Err(Reject {
                            fault: Fault::Malformed,
                            ..
                        })
                    ),
                    "{:?} split {split} gave {r:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn upstream_bodies_accept_bare_lf_line_ends_client_bodies_do_not() {
        let lf: &[u8] = b"5\nhello\n1;ext=1\r\n \nA\n0123456789\r\n0\nX-T: 1\n\nNEXT";
        for split in 0..lf.len() {
            let (data, used) = decode_with(ChunkedDecoder::response(), lf, split).unwrap();
            assert_eq!(data, b"hello 0123456789", "split at {split}");
            assert_eq!(&lf[used..], b"NEXT", "split at {split}");
            assert!(
                matches!(
                    decode_all(lf, split),
                    Err(Reject {
                        fault: Fault::Malformed,
                        ..
                    })
                ),
                "client body with bare LF, split at {split}"
            );
        }
        // Still strict about everything else.
        for bad in [
            &b"5\nhelloX\n"[..],
            b"5\rhello\n",
            b"zz\n",
            b"0\nbad trailer\n\n",
        ] {
            for split in 0..bad.len() {
                let r = decode_with(ChunkedDecoder::response(), bad, split);
                assert!(
                    matches!(
                        r,
                        Err(Reject {
                            fault: Fault::Malformed,
                            ..
                        })
                    ),
                    "{:?} split {split} gave {r:?}",
                    String::from_utf8_lossy(bad)
                );
            }
        }
    }

    #[test]
    fn largest_size_parses_without_overflow() {
        let mut dec = ChunkedDecoder::request();
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nab"[..]);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Chunk::Data(BytesMut::from(&b"ab"[..]))
        );
    }

    #[test]
    fn encodes_round_trip() {
        let mut out = BytesMut::new();
        encode_chunk(&mut out, b"hello");
        encode_chunk(&mut out, &[b'x'; 300]);
        encode_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        let (data, used) = decode_all(&out, 0).unwrap();
        assert_eq!(data.len(), 305);
        assert_eq!(used, out.len());
        assert!(out.starts_with(b"5\r\nhello\r\n12c\r\n"));
    }
}
