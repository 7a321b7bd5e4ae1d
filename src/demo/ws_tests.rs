//! The echo WebSocket's handshake and frames, with input split at every byte.

use super::*;
use crate::http1::parse::{self, HeadLimits, Parsed};

fn head(text: &str) -> RequestHead {
    let limits = HeadLimits {
        max_request_line: 8192,
        max_head_bytes: 65536,
        max_headers: 128,
    };
    let mut buf = BytesMut::from(text.as_bytes());
    let Parsed::Complete(raw, used) = parse::parse_request(&buf, &limits) else {
        panic!("not a whole head: {text}");
    };
    parse::take_request(&mut buf, raw, used).expect("a valid head")
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A masked client frame.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![b0];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// An unmasked server frame.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_frame(&mut out, opcode, payload);
    out.to_vec()
}

/// Feeds `input` in pieces split at `at` (each boundary in turn); what was written and
/// the last flow.
fn run(input: &[u8], at: usize) -> (Vec<u8>, Flow) {
    let mut echo = Echo::default();
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut flow = Flow::More;
    for part in [&input[..at], &input[at..]] {
        buf.extend_from_slice(part);
        flow = echo.process(&mut buf, &mut out);
        if flow == Flow::Close {
            break;
        }
    }
    (out.to_vec(), flow)
}

/// `input` answered with `want` and `flow` however it is split.
fn check(input: &[u8], want: &[u8], flow: Flow) {
    for at in 0..=input.len() {
        let (got, f) = run(input, at);
        assert_eq!(got, want, "split at {at}");
        assert_eq!(f, flow, "split at {at}");
    }
}

#[test]
fn the_handshake_answers_the_rfc_example_key() {
    let r = handshake(&head(UPGRADE)).expect("accepted");
    assert_eq!(
        &r[..],
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

#[test]
fn a_request_that_is_no_websocket_handshake_is_refused() {
    let plain = handshake(&head("GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n")).unwrap_err();
    assert!(plain.starts_with(b"HTTP/1.1 400 "));
    let text = String::from_utf8_lossy(&plain);
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{text}"
    );
    let old = handshake(&head_v8()).unwrap_err();
    assert!(old.starts_with(b"HTTP/1.1 426 "), "{old:?}");
    assert!(String::from_utf8_lossy(&old).contains("Sec-WebSocket-Version: 13\r\n"));
}

fn head_v8() -> RequestHead {
    head(&UPGRADE.replace("Version: 13", "Version: 8"))
}

#[test]
fn text_binary_and_ping_are_echoed() {
    let mut input = client_frame(0x81, "héllo".as_bytes());
    input.extend(client_frame(0x82, &[0, 1, 2, 255]));
    input.extend(client_frame(0x89, b"are you there"));
    input.extend(client_frame(0x8A, b"unasked pong"));
    let mut want = server_frame(TEXT, "héllo".as_bytes());
    want.extend(server_frame(BINARY, &[0, 1, 2, 255]));
    want.extend(server_frame(PONG, b"are you there"));
    check(&input, &want, Flow::More);
}

#[test]
fn a_fragmented_message_is_reassembled_around_a_ping() {
    let mut input = client_frame(0x01, b"frag-1 ");
    input.extend(client_frame(0x89, b"p"));
    input.extend(client_frame(0x00, b"frag-2 "));
    input.extend(client_frame(0x80, b"frag-3"));
    let mut want = server_frame(PONG, b"p");
    want.extend(server_frame(TEXT, b"frag-1 frag-2 frag-3"));
    check(&input, &want, Flow::More);
}

#[test]
fn medium_and_long_lengths_are_read_and_written() {
    for len in [126usize, 65535, 65536, 200_000] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let input = client_frame(0x82, &data);
        let (got, flow) = run(&input, input.len() / 2);
        assert_eq!(flow, Flow::More);
        assert_eq!(got, server_frame(BINARY, &data), "{len}");
    }
}

#[test]
fn close_is_answered_with_the_same_code_and_reason() {
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"client done");
    check(
        &client_frame(0x88, &payload),
        &server_frame(CLOSE, &payload),
        Flow::Close,
    );
    check(
        &client_frame(0x88, &[]),
        &server_frame(CLOSE, &[]),
        Flow::Close,
    );
}

fn closed_with(code: u16) -> Vec<u8> {
    server_frame(CLOSE, &code.to_be_bytes())
}

#[test]
fn protocol_errors_close_with_1002() {
    let unmasked = [0x81, 0x02, b'h', b'i'];
    check(&unmasked, &closed_with(1002), Flow::Close);
    check(
        &client_frame(0xC1, b"rsv1"),
        &closed_with(1002),
        Flow::Close,
    );
    check(
        &client_frame(0x83, b"opcode 3"),
        &closed_with(1002),
        Flow::Close,
    );
    check(
        &client_frame(0x80, b"lone"),
        &closed_with(1002),
        Flow::Close,
    );
    check(
        &client_frame(0x09, b"fragmented ping"),
        &closed_with(1002),
        Flow::Close,
    );
    check(
        &client_frame(0x89, &[0; 126]),
        &closed_with(1002),
        Flow::Close,
    );
    check(&client_frame(0x88, &[3]), &closed_with(1002), Flow::Close);
    check(
        &client_frame(0x88, &1005u16.to_be_bytes()),
        &closed_with(1002),
        Flow::Close,
    );
    let mut nested = client_frame(0x01, b"a");
    nested.extend(client_frame(0x81, b"b"));
    check(&nested, &closed_with(1002), Flow::Close);
}

#[test]
fn text_that_is_not_utf8_closes_with_1007() {
    check(
        &client_frame(0x81, &[0xff, 0xfe]),
        &closed_with(1007),
        Flow::Close,
    );
    let mut split = client_frame(0x01, &[0xc3]);
    split.extend(client_frame(0x80, &[0xa9]));
    check(&split, &server_frame(TEXT, "é".as_bytes()), Flow::More);
}

#[test]
fn a_message_over_the_cap_closes_with_1009_from_its_head_alone() {
    // Only the head of a frame one byte over the cap: refused before its payload.
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&(MAX_MESSAGE as u64 + 1).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    check(&head, &closed_with(1009), Flow::Close);
    // Fragments that only together exceed it.
    let half = vec![7u8; MAX_MESSAGE / 2];
    let mut input = client_frame(0x02, &half);
    input.extend(client_frame(0x00, &half));
    input.extend(client_frame(0x80, &[1]));
    let (got, flow) = run(&input, input.len());
    assert_eq!((got, flow), (closed_with(1009), Flow::Close));
    // Exactly the cap is echoed.
    let mut input = client_frame(0x02, &half);
    input.extend(client_frame(0x80, &half));
    let (got, flow) = run(&input, 0);
    assert_eq!(flow, Flow::More);
    assert_eq!(got.len(), MAX_MESSAGE + 10);
}
