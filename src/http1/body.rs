//! Message bodies: a strict chunked decoder and encoder. No I/O.
//!
//! The decoder takes bytes as they arrive and hands back data as `Bytes` split off the
//! read buffer (no copy). It refuses anything ambiguous — non-hex or overflowing sizes,
//! a missing CRLF after data, control bytes in extensions or trailers — with
//! [`Reject`] status 400 (502 when decoding an upstream). Trailers are read, checked and
//! dropped: HTTP/1.1 trailers are rare and not forwarded.

use bytes::{BufMut, Bytes, BytesMut};

use super::parse::Reject;

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
    Data(Bytes),
    /// Read more and call again.
    NeedMore,
    /// The last chunk and trailers were read: the body is complete.
    Done,
}

/// Decodes `Transfer-Encoding: chunked` (RFC 9112 §7.1).
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    status_on_error: u16,
}

impl ChunkedDecoder {
    /// `status_on_error`: 400 for client bodies, 502 for upstream bodies.
    pub fn new(status_on_error: u16) -> Self {
        ChunkedDecoder {
            state: State::Size,
            status_on_error,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn fail(&self, reason: &'static str) -> Reject {
        Reject {
            status: self.status_on_error,
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
                    let line = &buf[..line_len];
                    let size = parse_size_line(line)
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
                    let data = buf.split_to(n).freeze();
                    self.state = if remaining == n as u64 {
                        State::DataEnd
                    } else {
                        State::Data(remaining - n as u64)
                    };
                    return Ok(Chunk::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(self.fail("chunk data not followed by CRLF"));
                        }
                        return Ok(Chunk::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(self.fail("chunk data not followed by CRLF"));
                    }
                    let _ = buf.split_to(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let room = MAX_TRAILERS.saturating_sub(seen);
                    let Some(line_len) =
                        find_lf(buf, room).map_err(|()| self.fail("trailer section too large"))?
                    else {
                        return Ok(Chunk::NeedMore);
                    };
                    let line = &buf[..line_len];
                    let Some(line) = line.strip_suffix(b"\r") else {
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

/// `1*HEXDIG *( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] ) CR` → size.
fn parse_size_line(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r")?;
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

/// RFC 9110 token characters.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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
        let mut dec = ChunkedDecoder::new(400);
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
            status: 0,
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
        let mut dec = ChunkedDecoder::new(400);
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
                    matches!(r, Err(Reject { status: 400, .. })),
                    "{:?} split {split} gave {r:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn largest_size_parses_without_overflow() {
        let mut dec = ChunkedDecoder::new(400);
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nab"[..]);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Chunk::Data(Bytes::from_static(b"ab"))
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
