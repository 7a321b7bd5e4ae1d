//! Session tickets under keys a fleet shares: [`FileTicketer`], rustls' `ProducesTickets`
//! over the key files of `[listener.tls] session_ticket_keys` (nginx's
//! `ssl_session_ticket_key`). The first key encrypts every new ticket; every key decrypts,
//! chosen by the key name the ticket carries. Hosts behind one L4 balancer that share the
//! files resume each other's sessions, TLS 1.2 and 1.3 alike (rustls sends both through
//! the ticketer).
//!
//! Ticket format — RFC 5077 §4's recommended construction, the one OpenSSL (and so nginx)
//! writes, encrypt-then-MAC:
//!
//! ```text
//! key_name (16) | IV (16) | AES-CBC(PKCS#7 padded session state) | HMAC-SHA256 (32)
//! ```
//!
//! AES-256 with an 80-byte key file, AES-128 with a 48-byte one; the HMAC covers name, IV
//! and ciphertext. It is also what rustls' own aws-lc-rs `Ticketer` (the default without
//! key files) does, so a ticket costs the same either way. Chosen over AES-GCM because it uses all the key material nginx's files
//! hold, and because a random 128-bit IV under one key shared by a whole fleet for days
//! has no nonce-reuse cliff (GCM's 96-bit random nonce does, at fleet scale). Byte
//! compatibility with nginx's tickets is not a goal: only the key-file layout is shared.
//!
//! Decryption authenticates first (HMAC compared in constant time, aws-lc-rs'
//! `hmac::verify`) and decrypts only what verified; anything short, unknown or altered is
//! `None` (a full handshake follows). Nothing here is `Debug`-printed beyond the key names'
//! hex, and nothing does I/O: the files are read by [`crate::config`].

use aws_lc_rs::cipher::{
    AES_128, AES_256, DecryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use crate::config::TicketKeyFile;

/// Bytes of the key name at the start of a ticket.
const NAME_LEN: usize = 16;
/// Bytes of the CBC IV (one AES block).
const IV_LEN: usize = 16;
/// Bytes of the HMAC-SHA256 tag at the end of a ticket.
const TAG_LEN: usize = 32;
/// The lifetime hint sent with each ticket (seconds): six hours, the same hint rustls'
/// own rotating ticketer gives. How long a ticket really works is up to the key files'
/// rotation (a ticket resumes while its key is listed).
const LIFETIME_SECS: u32 = 6 * 60 * 60;

/// A key file that the crypto library refused (cannot happen for the lengths the
/// configuration accepts; kept as an error rather than a panic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRefused {
    /// The key name's hex.
    pub name: String,
}

impl std::fmt::Display for KeyRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "session-ticket key {} refused by aws-lc", self.name)
    }
}

impl std::error::Error for KeyRefused {}

struct Key {
    name: [u8; NAME_LEN],
    encrypt: PaddedBlockEncryptingKey,
    decrypt: PaddedBlockDecryptingKey,
    mac: hmac::Key,
}

impl Key {
    fn new(file: &TicketKeyFile) -> Result<Key, KeyRefused> {
        let refused = || KeyRefused {
            name: file.name_hex(),
        };
        let aes = file.dangerous_aes_key();
        let algorithm = if aes.len() == 32 { &AES_256 } else { &AES_128 };
        let unbound = || UnboundCipherKey::new(algorithm, aes).map_err(|_| refused());
        Ok(Key {
            name: file.name,
            encrypt: PaddedBlockEncryptingKey::cbc_pkcs7(unbound()?).map_err(|_| refused())?,
            decrypt: PaddedBlockDecryptingKey::cbc_pkcs7(unbound()?).map_err(|_| refused())?,
            mac: hmac::Key::new(hmac::HMAC_SHA256, file.dangerous_hmac_key()),
        })
    }
}

/// Tickets under the configured key files: the first encrypts, all decrypt.
pub struct FileTicketer {
    /// Never empty (the configuration refuses an empty list).
    keys: Vec<Key>,
}

impl FileTicketer {
    /// A ticketer over `files` (first = encrypting key). `None` for an empty list.
    pub fn new(files: &[TicketKeyFile]) -> Result<Option<FileTicketer>, KeyRefused> {
        if files.is_empty() {
            return Ok(None);
        }
        let keys = files.iter().map(Key::new).collect::<Result<Vec<_>, _>>()?;
        Ok(Some(FileTicketer { keys }))
    }
}

impl std::fmt::Debug for FileTicketer {
    // Never prints key material: the key names' hex only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.name.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        f.debug_struct("FileTicketer")
            .field("key_names", &names)
            .finish()
    }
}

impl rustls::server::ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut sealed = plain.to_vec();
        // A fresh random IV per ticket, made by aws-lc.
        let context = key.encrypt.encrypt(&mut sealed).ok()?;
        let iv: &[u8] = (&context).try_into().ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + IV_LEN + sealed.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(iv);
        out.extend_from_slice(&sealed);
        let tag = hmac::sign(&key.mac, &out);
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        // At least one cipher block between IV and tag.
        if ticket.len() < NAME_LEN + IV_LEN + IV_LEN + TAG_LEN {
            return None;
        }
        let (signed, tag) = ticket.split_at(ticket.len() - TAG_LEN);
        let (name, rest) = signed.split_at(NAME_LEN);
        let (iv, sealed) = rest.split_at(IV_LEN);
        if sealed.len() % IV_LEN != 0 {
            return None;
        }
        let iv: [u8; IV_LEN] = iv.try_into().ok()?;
        // Key names are public (every ticket carries one); a name listed twice is tried
        // with each of its keys.
        for key in self.keys.iter().filter(|k| k.name == name) {
            // Authenticate before decrypting; the tag comparison is constant-time.
            if hmac::verify(&key.mac, signed, tag).is_err() {
                continue;
            }
            let mut plain = sealed.to_vec();
            let context = DecryptionContext::Iv128(FixedLength::from(iv));
            let len = key.decrypt.decrypt(&mut plain, context).ok()?.len();
            plain.truncate(len);
            return Some(plain);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rustls::server::ProducesTickets;

    use super::*;
    use crate::config::parse_ticket_key;

    fn key(first: u8, len: usize) -> TicketKeyFile {
        let data: Vec<u8> = (0..len).map(|i| first.wrapping_add(i as u8)).collect();
        parse_ticket_key(Path::new("k"), &data).unwrap()
    }

    fn ticketer(keys: &[TicketKeyFile]) -> FileTicketer {
        FileTicketer::new(keys).unwrap().unwrap()
    }

    #[test]
    fn round_trip_with_80_and_48_byte_keys() {
        for len in [80, 48] {
            let t = ticketer(&[key(1, len)]);
            for plain in [&b""[..], b"x", &[7u8; 16], &[9u8; 1000]] {
                let ticket = t.encrypt(plain).unwrap();
                assert_eq!(&ticket[..16], &key(1, len).name);
                assert_eq!(t.decrypt(&ticket).as_deref(), Some(plain), "{len}-byte key");
            }
            let a = t.encrypt(b"same").unwrap();
            let b = t.encrypt(b"same").unwrap();
            assert_ne!(a, b, "a fresh IV per ticket");
        }
    }

    #[test]
    fn the_first_key_encrypts_and_every_key_decrypts() {
        let (old, new) = (key(1, 80), key(100, 80));
        let before = ticketer(std::slice::from_ref(&old));
        let old_ticket = before.encrypt(b"session").unwrap();
        let rotated = ticketer(&[new.clone(), old.clone()]);
        assert_eq!(
            rotated.decrypt(&old_ticket).as_deref(),
            Some(&b"session"[..])
        );
        let new_ticket = rotated.encrypt(b"later").unwrap();
        assert_eq!(&new_ticket[..16], &new.name);
        assert_eq!(
            before.decrypt(&new_ticket),
            None,
            "only the new key opens it"
        );
        assert_eq!(
            ticketer(&[new]).decrypt(&new_ticket).as_deref(),
            Some(&b"later"[..])
        );
    }

    #[test]
    fn unknown_name_wrong_key_tampered_or_short_is_none() {
        let t = ticketer(&[key(1, 80)]);
        let ticket = t.encrypt(b"session state").unwrap();
        assert_eq!(
            ticketer(&[key(50, 80)]).decrypt(&ticket),
            None,
            "other name"
        );
        // Same name, other key material: the MAC fails.
        let mut impostor = key(50, 80);
        impostor.name = key(1, 80).name;
        assert_eq!(ticketer(&[impostor]).decrypt(&ticket), None, "same name");
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 0x01;
            assert_eq!(t.decrypt(&bad), None, "byte {i} flipped");
        }
        for n in 0..ticket.len() {
            assert_eq!(t.decrypt(&ticket[..n]), None, "cut to {n} bytes");
        }
        let mut longer = ticket.clone();
        longer.push(0);
        assert_eq!(t.decrypt(&longer), None, "one byte more");
    }

    #[test]
    fn debug_names_keys_without_their_material() {
        let t = ticketer(&[key(0, 80)]);
        let shown = format!("{t:?}");
        assert_eq!(
            shown,
            "FileTicketer { key_names: [\"000102030405060708090a0b0c0d0e0f\"] }"
        );
    }
}
