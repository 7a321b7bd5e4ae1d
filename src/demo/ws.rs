//! The demo origin's echo WebSocket at `/ws`: the RFC 6455 server handshake
//! ([`handshake`], the accept value from [`crate::websocket::accept_for`]) and an echo of
//! every message ([`Echo`]): text and binary echoed whole (fragmented ones reassembled,
//! up to [`MAX_MESSAGE`] bytes), ping answered with pong, close with a close of the same
//! code and reason, after which the origin closes the connection.
//!
//! Only a request for `/ws` reaches this module, so `/bytes/N` (the load-test backend)
//! pays nothing for it. [`handshake`] and [`Echo::process`] do no I/O; [`serve`] drives
//! them on the socket.
//!
//! Errors: a handshake that is not a WebSocket one → 400 (a version other than 13 → 426
//! with `Sec-WebSocket-Version: 13`); after it, an unmasked client frame, reserved bits,
//! an unknown opcode, a bad control frame or continuation → close 1002; text that is not
//! UTF-8 → 1007; a message over [`MAX_MESSAGE`] → 1009 (RFC 6455 §7.4.1).

use bytes::{BufMut, Bytes, BytesMut};
use monoio::net::TcpStream;

use crate::field::trim;
use crate::http1::parse::{RequestHead, comma_tokens};
use crate::transport::{read_tcp, write_tcp};

/// The largest message echoed (its fragments together); more is closed with 1009.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Bytes asked of the socket per read.
const READ_SIZE: usize = 64 * 1024;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Close codes (RFC 6455 §7.4.1).
const PROTOCOL_ERROR: u16 = 1002;
const INVALID_DATA: u16 = 1007;
const TOO_BIG: u16 = 1009;

/// The response to a request for `/ws`: `101` with the accept value, or the error
/// response that refuses it (the connection closes after either error).
pub fn handshake(head: &RequestHead) -> Result<Bytes, Bytes> {
    let field = |name: &[u8]| {
        head.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| trim(&h.value))
    };
    let wants_websocket = field(b"upgrade")
        .is_some_and(|v| comma_tokens(v).any(|t| t.eq_ignore_ascii_case(b"websocket")));
    let key = field(b"sec-websocket-key").filter(|k| !k.is_empty());
    let (true, true, Some(key)) = (
        head.method.as_ref() == b"GET" && head.connection_upgrade,
        wants_websocket,
        key,
    ) else {
        return Err(Bytes::from_static(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 53\r\n\
              Connection: close\r\n\r\nthis is a WebSocket echo: connect a WebSocket client\n",
        ));
    };
    if field(b"sec-websocket-version") != Some(&b"13"[..]) {
        return Err(Bytes::from_static(
            b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        ));
    }
    let mut out = BytesMut::with_capacity(160);
    out.put_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.put_slice(crate::websocket::accept_for(key).as_bytes());
    out.put_slice(b"\r\n\r\n");
    Ok(out.freeze())
}

/// Whether the connection goes on after [`Echo::process`].
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read more.
    More,
    /// A close frame is the last thing written: write the output, then close.
    Close,
}

/// A frame's head, parsed.
struct FrameHead {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Bytes of head (2–14).
    len: usize,
    payload: u64,
}

/// The head at the start of `buf`; `None`: not all of it arrived.
fn frame_head(buf: &[u8]) -> Option<Result<FrameHead, u16>> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    if b0 & 0x70 != 0 {
        // No extension was negotiated: reserved bits must be zero.
        return Some(Err(PROTOCOL_ERROR));
    }
    let (mut len, payload) = match b1 & 0x7F {
        126 => (
            4,
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
        ),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (10, u64::from_be_bytes(b))
        }
        n => (2, u64::from(n)),
    };
    let mask = if b1 & 0x80 != 0 {
        let m: [u8; 4] = buf.get(len..len + 4)?.try_into().ok()?;
        len += 4;
        Some(m)
    } else {
        None
    };
    Some(Ok(FrameHead {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        mask,
        len,
        payload,
    }))
}

/// Appends an unmasked server frame.
fn put_frame(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.put_u8(n as u8),
        n @ 126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
}

/// The echo's state between reads: the message being reassembled.
#[derive(Default)]
pub struct Echo {
    /// The opcode (text or binary) of a message whose first fragment came.
    fragmented: Option<u8>,
    message: BytesMut,
}

impl Echo {
    /// Takes every whole frame from the front of `buf` and appends the answers to `out`.
    /// A protocol error appends a close frame with its code and says [`Flow::Close`].
    pub fn process(&mut self, buf: &mut BytesMut, out: &mut BytesMut) -> Flow {
        loop {
            let head = match frame_head(buf) {
                None => return Flow::More,
                Some(Ok(h)) => h,
                Some(Err(code)) => return close(out, code),
            };
            let control = head.opcode & 0x8 != 0;
            let Some(mask) = head.mask else {
                // RFC 6455 §5.1: a client masks every frame.
                return close(out, PROTOCOL_ERROR);
            };
            if control && (!head.fin || head.payload > 125) {
                return close(out, PROTOCOL_ERROR);
            }
            // Refused from the head alone: a message over the cap is never buffered.
            let so_far = if head.opcode == CONTINUATION {
                self.message.len() as u64
            } else {
                0
            };
            if !control && so_far.saturating_add(head.payload) > MAX_MESSAGE as u64 {
                return close(out, TOO_BIG);
            }
            let payload = head.payload as usize;
            if buf.len() < head.len + payload {
                buf.reserve(head.len + payload - buf.len());
                return Flow::More;
            }
            let _ = buf.split_to(head.len);
            let mut data = buf.split_to(payload);
            for (i, b) in data.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            match (head.opcode, self.fragmented) {
                (PING, _) => put_frame(out, PONG, &data),
                (PONG, _) => {}
                (CLOSE, _) => return self.closed(out, &data),
                (TEXT | BINARY, None) if head.fin => {
                    if head.opcode == TEXT && std::str::from_utf8(&data).is_err() {
                        return close(out, INVALID_DATA);
                    }
                    put_frame(out, head.opcode, &data);
                }
                (TEXT | BINARY, None) => {
                    self.fragmented = Some(head.opcode);
                    self.message.clear();
                    self.message.extend_from_slice(&data);
                }
                (CONTINUATION, Some(opcode)) => {
                    self.message.extend_from_slice(&data);
                    if head.fin {
                        self.fragmented = None;
                        if opcode == TEXT && std::str::from_utf8(&self.message).is_err() {
                            return close(out, INVALID_DATA);
                        }
                        put_frame(out, opcode, &self.message);
                        // The next message starts small again.
                        self.message = BytesMut::new();
                    }
                }
                // A continuation with no message begun, a new message inside one, or an
                // opcode RFC 6455 does not define.
                _ => return close(out, PROTOCOL_ERROR),
            }
        }
    }

    /// The client's close frame (`payload` unmasked): echoed when valid.
    fn closed(&mut self, out: &mut BytesMut, payload: &[u8]) -> Flow {
        match payload {
            [] => {
                put_frame(out, CLOSE, &[]);
                Flow::Close
            }
            [_] => close(out, PROTOCOL_ERROR),
            [a, b, reason @ ..] => {
                let code = u16::from_be_bytes([*a, *b]);
                // Codes an endpoint may send (RFC 6455 §7.4.1, §7.4.2).
                let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
                if !valid {
                    close(out, PROTOCOL_ERROR)
                } else if std::str::from_utf8(reason).is_err() {
                    close(out, INVALID_DATA)
                } else {
                    put_frame(out, CLOSE, payload);
                    Flow::Close
                }
            }
        }
    }
}

/// Appends a close frame with `code`.
fn close(out: &mut BytesMut, code: u16) -> Flow {
    put_frame(out, CLOSE, &code.to_be_bytes());
    Flow::Close
}

/// Serves `/ws` on `tcp` (`buf`: bytes already read after the request head) until
/// either side closes. The origin's task runs it to its end; were it dropped at an
/// await, the connection closes with it (no state outlives it). After a close frame the
/// origin closes the connection at once, also when it started the close for an error
/// (client bytes unread then end in a TCP reset, but the close frame is read first).
pub async fn serve(tcp: &mut TcpStream, buf: &mut BytesMut, head: &RequestHead) {
    let accepted = match handshake(head) {
        Ok(a) => a,
        Err(refusal) => {
            let _ = write_tcp(tcp, refusal).await;
            return;
        }
    };
    if write_tcp(tcp, accepted).await.is_err() {
        return;
    }
    let mut echo = Echo::default();
    let mut out = BytesMut::new();
    loop {
        let flow = echo.process(buf, &mut out);
        if !out.is_empty() && write_tcp(tcp, out.split().freeze()).await.is_err() {
            return;
        }
        if flow == Flow::Close {
            return;
        }
        match read_tcp(tcp, buf, READ_SIZE).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
