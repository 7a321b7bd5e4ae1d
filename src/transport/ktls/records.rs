//! What a record the kernel hands over with its type means after the handshake, and the
//! alert each fault gets (RFC 8446 §5, §6, §4.6.3; RFC 5246 §7.2.2). Pure logic: the
//! kernel calls live in the parent module.
//!
//! The kernel decrypts and frames; this decides. Only application data, alerts and (TLS
//! 1.3) KeyUpdates are accepted; a TLS 1.2 renegotiation ClientHello is refused with a
//! warning `no_renegotiation` and the connection goes on, as rustls does in userspace;
//! every other record type or handshake message ends the connection with a fatal alert.
//! A handshake message may span records (it is reassembled in a small buffer, bounded:
//! only a 1-byte KeyUpdate is accepted), but no other record may come between its
//! fragments, and a KeyUpdate must end its record (RFC 8446 §5.1: no message spans a
//! key change).

use std::io;

/// TLS record content types (RFC 8446 §5.1).
pub const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
pub const CONTENT_ALERT: u8 = 21;
pub const CONTENT_HANDSHAKE: u8 = 22;
pub const CONTENT_APPLICATION_DATA: u8 = 23;

/// Handshake message types seen here and the KeyUpdate request values (RFC 8446 §4.6.3).
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
pub const HANDSHAKE_KEY_UPDATE: u8 = 24;
pub const KEY_UPDATE_REQUESTED: u8 = 1;

/// Alert descriptions (RFC 8446 §6).
pub const ALERT_CLOSE_NOTIFY: u8 = 0;
pub const ALERT_UNEXPECTED_MESSAGE: u8 = 10;
pub const ALERT_BAD_RECORD_MAC: u8 = 20;
pub const ALERT_RECORD_OVERFLOW: u8 = 22;
pub const ALERT_ILLEGAL_PARAMETER: u8 = 47;
pub const ALERT_DECODE_ERROR: u8 = 50;
pub const ALERT_NO_RENEGOTIATION: u8 = 100;

/// Alert levels.
const LEVEL_WARNING: u8 = 1;
const LEVEL_FATAL: u8 = 2;

/// The level an alert we send carries: close_notify and no_renegotiation are warnings,
/// everything else is fatal.
pub fn alert_level(description: u8) -> u8 {
    match description {
        ALERT_CLOSE_NOTIFY | ALERT_NO_RENEGOTIATION => LEVEL_WARNING,
        _ => LEVEL_FATAL,
    }
}

/// A record the kernel would not hand over as plain data, or a fault.
#[derive(Debug, PartialEq, Eq)]
pub enum ControlRecord {
    /// `close_notify`: a clean end of stream.
    CloseNotify,
    /// Any other alert from the peer (level, description): the connection ends.
    Alert(u8, u8),
    /// TLS 1.3 KeyUpdate: the peer rotated its keys; 1 when it asks us to rotate too.
    KeyUpdate(u8),
    /// Part of a handshake message; the rest must come in the next records.
    Fragment,
    /// A TLS 1.2 renegotiation ClientHello: answered with a warning no_renegotiation.
    Renegotiation,
    /// The peer broke the protocol: send this fatal alert and close.
    Fatal(u8, &'static str),
    /// Application data that came with a control message (appended to the buffer).
    Data(usize),
    /// Nothing to read right now.
    WouldBlock,
}

/// Classifies one record the kernel returned with its type. `hs` holds the fragment of
/// a handshake message read so far (empty between messages).
pub fn classify(
    tls13: bool,
    record_type: u8,
    payload: &[u8],
    data: &mut Vec<u8>,
    hs: &mut Vec<u8>,
) -> ControlRecord {
    if !hs.is_empty() && record_type != CONTENT_HANDSHAKE {
        return ControlRecord::Fatal(
            ALERT_UNEXPECTED_MESSAGE,
            "a record between the fragments of a handshake message",
        );
    }
    match record_type {
        CONTENT_APPLICATION_DATA => {
            data.extend_from_slice(payload);
            ControlRecord::Data(payload.len())
        }
        CONTENT_ALERT => match payload {
            [_, ALERT_CLOSE_NOTIFY] => ControlRecord::CloseNotify,
            [level, description] => ControlRecord::Alert(*level, *description),
            _ => ControlRecord::Fatal(ALERT_DECODE_ERROR, "an alert record that is not 2 bytes"),
        },
        CONTENT_HANDSHAKE if payload.is_empty() => {
            ControlRecord::Fatal(ALERT_DECODE_ERROR, "an empty handshake record")
        }
        CONTENT_HANDSHAKE => {
            hs.extend_from_slice(payload);
            let result = handshake(tls13, hs);
            if result != ControlRecord::Fragment {
                hs.clear();
            }
            result
        }
        _ => ControlRecord::Fatal(
            ALERT_UNEXPECTED_MESSAGE,
            "a record type other than application data, alert or handshake",
        ),
    }
}

/// Decides on the handshake bytes read so far (`hs`, at least one record's worth).
fn handshake(tls13: bool, hs: &[u8]) -> ControlRecord {
    let typ = hs[0];
    if !tls13 {
        // Renegotiation is all a TLS 1.2 client can start; it is refused politely (as
        // rustls does) once the whole ClientHello is in, whatever it says.
        return match (typ, message_len(hs)) {
            // rustls' own bound on a handshake message.
            (HANDSHAKE_CLIENT_HELLO, Some(len)) if len > 0xffff => {
                ControlRecord::Fatal(ALERT_DECODE_ERROR, "a ClientHello over 64 KiB")
            }
            (HANDSHAKE_CLIENT_HELLO, Some(len)) if hs.len() >= 4 + len => {
                ControlRecord::Renegotiation
            }
            (HANDSHAKE_CLIENT_HELLO, _) => ControlRecord::Fragment,
            _ => ControlRecord::Fatal(
                ALERT_UNEXPECTED_MESSAGE,
                "a TLS 1.2 handshake message after the handshake",
            ),
        };
    }
    if typ != HANDSHAKE_KEY_UPDATE {
        return ControlRecord::Fatal(
            ALERT_UNEXPECTED_MESSAGE,
            "a TLS 1.3 handshake message other than KeyUpdate after the handshake",
        );
    }
    let Some(len) = message_len(hs) else {
        return ControlRecord::Fragment;
    };
    if len != 1 {
        return ControlRecord::Fatal(ALERT_DECODE_ERROR, "a KeyUpdate whose body is not 1 byte");
    }
    match &hs[4..] {
        [] => ControlRecord::Fragment,
        [request @ (0 | KEY_UPDATE_REQUESTED)] => ControlRecord::KeyUpdate(*request),
        [_] => ControlRecord::Fatal(
            ALERT_ILLEGAL_PARAMETER,
            "a KeyUpdate with an unknown request_update value",
        ),
        [..] => ControlRecord::Fatal(
            ALERT_UNEXPECTED_MESSAGE,
            "a KeyUpdate that does not end its record",
        ),
    }
}

/// The 24-bit length of the handshake message starting `hs`, once its header is in.
fn message_len(hs: &[u8]) -> Option<usize> {
    match hs {
        [_, a, b, c, ..] => Some(usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c)),
        _ => None,
    }
}

/// The fatal alert for an error the kernel's record layer returned from a receive: a
/// record that failed to decrypt or was too short for its tag (`EBADMSG`), one longer
/// than the limits (`EMSGSIZE`). `None` for errors that are not the peer's records.
pub fn alert_for_receive_error(e: &io::Error) -> Option<(u8, &'static str)> {
    match e.raw_os_error()? {
        libc::EBADMSG => Some((
            ALERT_BAD_RECORD_MAC,
            "the kernel could not decrypt a record",
        )),
        libc::EMSGSIZE => Some((
            ALERT_RECORD_OVERFLOW,
            "the kernel refused a record over the length limit",
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(tls13: bool, typ: u8, payload: &[u8]) -> ControlRecord {
        classify(tls13, typ, payload, &mut Vec::new(), &mut Vec::new())
    }

    fn fatal(r: ControlRecord) -> Option<u8> {
        match r {
            ControlRecord::Fatal(d, _) => Some(d),
            _ => None,
        }
    }

    #[test]
    fn alerts_and_data() {
        assert_eq!(
            one(true, CONTENT_ALERT, &[1, 0]),
            ControlRecord::CloseNotify
        );
        assert_eq!(
            one(true, CONTENT_ALERT, &[2, 40]),
            ControlRecord::Alert(2, 40)
        );
        for bad in [&[][..], &[2], &[2, 40, 0]] {
            assert_eq!(
                fatal(one(true, CONTENT_ALERT, bad)),
                Some(ALERT_DECODE_ERROR)
            );
        }
        let mut data = Vec::new();
        let r = classify(false, 23, b"abc", &mut data, &mut Vec::new());
        assert_eq!((r, data), (ControlRecord::Data(3), b"abc".to_vec()));
    }

    #[test]
    fn other_record_types_are_unexpected() {
        for tls13 in [true, false] {
            for typ in [0, CONTENT_CHANGE_CIPHER_SPEC, 24, 0x30, 255] {
                let r = one(tls13, typ, b"GET / HTTP/1.0\r\n\r\n");
                assert_eq!(fatal(r), Some(ALERT_UNEXPECTED_MESSAGE), "{typ}");
            }
        }
    }

    #[test]
    fn key_updates() {
        let hs = CONTENT_HANDSHAKE;
        assert_eq!(
            one(true, hs, &[24, 0, 0, 1, 0]),
            ControlRecord::KeyUpdate(0)
        );
        assert_eq!(
            one(true, hs, &[24, 0, 0, 1, 1]),
            ControlRecord::KeyUpdate(1)
        );
        assert_eq!(
            fatal(one(true, hs, &[24, 0, 0, 1, 2])),
            Some(ALERT_ILLEGAL_PARAMETER)
        );
        assert_eq!(
            fatal(one(true, hs, &[24, 0, 0, 0])),
            Some(ALERT_DECODE_ERROR)
        );
        assert_eq!(
            fatal(one(true, hs, &[24, 0, 0, 2, 0, 0])),
            Some(ALERT_DECODE_ERROR)
        );
        assert_eq!(fatal(one(true, hs, &[])), Some(ALERT_DECODE_ERROR));
        let two = [24, 0, 0, 1, 0, 24, 0, 0, 1, 0];
        assert_eq!(fatal(one(true, hs, &two)), Some(ALERT_UNEXPECTED_MESSAGE));
        assert_eq!(
            fatal(one(true, hs, &[4, 0, 0, 1, 0])),
            Some(ALERT_UNEXPECTED_MESSAGE)
        );
    }

    #[test]
    fn a_key_update_may_span_records_but_nothing_may_come_between() {
        let msg = [24u8, 0, 0, 1, 1];
        for cut in 1..msg.len() {
            let (mut data, mut hs) = (Vec::new(), Vec::new());
            let (a, b) = msg.split_at(cut);
            assert_eq!(
                classify(true, CONTENT_HANDSHAKE, a, &mut data, &mut hs),
                ControlRecord::Fragment
            );
            assert_eq!(
                classify(true, CONTENT_HANDSHAKE, b, &mut data, &mut hs),
                ControlRecord::KeyUpdate(1),
                "cut at {cut}"
            );
            assert!(hs.is_empty());
            classify(true, CONTENT_HANDSHAKE, a, &mut data, &mut hs);
            let r = classify(true, CONTENT_APPLICATION_DATA, b"x", &mut data, &mut hs);
            assert_eq!(fatal(r), Some(ALERT_UNEXPECTED_MESSAGE));
            assert!(data.is_empty());
        }
    }

    #[test]
    fn tls12_renegotiation_is_refused_politely() {
        let mut hello = vec![HANDSHAKE_CLIENT_HELLO, 0, 0, 3, 3, 3, 0];
        assert_eq!(
            one(false, CONTENT_HANDSHAKE, &hello),
            ControlRecord::Renegotiation
        );
        let (mut data, mut hs) = (Vec::new(), Vec::new());
        let rest = hello.split_off(5);
        assert_eq!(
            classify(false, CONTENT_HANDSHAKE, &hello, &mut data, &mut hs),
            ControlRecord::Fragment
        );
        assert_eq!(
            classify(false, CONTENT_HANDSHAKE, &rest, &mut data, &mut hs),
            ControlRecord::Renegotiation
        );
        assert_eq!(
            fatal(one(false, CONTENT_HANDSHAKE, &[20, 0, 0, 0])),
            Some(10)
        );
        // A TLS 1.3 ClientHello after the handshake is no renegotiation: unexpected.
        assert_eq!(fatal(one(true, CONTENT_HANDSHAKE, &[1, 0, 0, 0])), Some(10));
    }

    #[test]
    fn receive_errors_map_to_alerts() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(
            alert_for_receive_error(&e(libc::EBADMSG)).map(|a| a.0),
            Some(20)
        );
        assert_eq!(
            alert_for_receive_error(&e(libc::EMSGSIZE)).map(|a| a.0),
            Some(22)
        );
        assert_eq!(alert_for_receive_error(&e(libc::ECONNRESET)), None);
        assert_eq!(alert_level(ALERT_CLOSE_NOTIFY), 1);
        assert_eq!(alert_level(ALERT_NO_RENEGOTIATION), 1);
        assert_eq!(alert_level(ALERT_BAD_RECORD_MAC), 2);
    }
}
