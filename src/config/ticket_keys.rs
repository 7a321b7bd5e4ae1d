//! Session-ticket key files (`[listener.tls] session_ticket_keys`) → [`TicketKeyFile`]:
//! read and split in nginx's `ssl_session_ticket_key` layout.
//!
//! A file holds exactly 80 bytes — a 16-byte key name, a 32-byte HMAC-SHA256 key and a
//! 32-byte AES-256 key, in that order, as nginx reads it — or 48 bytes: name, 16-byte
//! AES-128 key, 16-byte HMAC key (nginx's older size). `openssl rand 80 > ticket.key`
//! makes one. Any other length is refused with the file and its size, in plain words.
//! The key material never reaches a log line or `Debug` output: only the key name's hex
//! does. [`parse`] does no I/O; [`load`] reads the file: never call it on a worker.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{FNV_SEED, fnv1a};

/// Bytes of a key name.
pub const NAME_LEN: usize = 16;

/// One session-ticket key file, read and split.
#[derive(Clone)]
pub struct TicketKeyFile {
    pub path: PathBuf,
    /// FNV-1a of the file's content as loaded (a changed file is noticed by content).
    pub hash: u64,
    /// The key name written into every ticket this key encrypts (not secret).
    pub name: [u8; NAME_LEN],
    /// 16 bytes (48-byte file) or 32 (80-byte file); cleared when dropped.
    aes: Zeroizing<Vec<u8>>,
    /// 16 or 32 bytes; cleared when dropped.
    hmac: Zeroizing<Vec<u8>>,
}

impl TicketKeyFile {
    /// The key name as lower-case hex: what logs and `Debug` show of a key.
    pub fn name_hex(&self) -> String {
        self.name.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The AES key (16 or 32 bytes). Key material: for the ticketer only, never logged.
    pub fn dangerous_aes_key(&self) -> &[u8] {
        &self.aes
    }

    /// The HMAC-SHA256 key (16 or 32 bytes). Key material: for the ticketer only.
    pub fn dangerous_hmac_key(&self) -> &[u8] {
        &self.hmac
    }
}

impl std::fmt::Debug for TicketKeyFile {
    // Never prints key material: the path and the key name only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeyFile")
            .field("path", &self.path)
            .field("name", &self.name_hex())
            .finish_non_exhaustive()
    }
}

/// Why a key file's content is not a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TicketKeyProblem {
    /// The file is not 48 or 80 bytes long (the length it has).
    WrongLength(usize),
}

impl std::fmt::Display for TicketKeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TicketKeyProblem::WrongLength(n) => write!(
                f,
                "{n} bytes: a session-ticket key file holds exactly 80 bytes (or 48), \
                 as nginx's ssl_session_ticket_key (make one with `openssl rand 80 > FILE`)"
            ),
        }
    }
}

/// Splits a key file's content (`path` is only recorded).
pub fn parse(path: &Path, data: &[u8]) -> Result<TicketKeyFile, TicketKeyProblem> {
    // nginx: 48 bytes are name | AES-128 | HMAC, 80 bytes are name | HMAC | AES-256.
    let (aes, hmac) = match data.len() {
        48 => (&data[16..32], &data[32..48]),
        80 => (&data[48..80], &data[16..48]),
        n => return Err(TicketKeyProblem::WrongLength(n)),
    };
    let mut name = [0u8; NAME_LEN];
    name.copy_from_slice(&data[..NAME_LEN]);
    Ok(TicketKeyFile {
        path: path.to_path_buf(),
        hash: fnv1a(FNV_SEED, data),
        name,
        aes: Zeroizing::new(aes.to_vec()),
        hmac: Zeroizing::new(hmac.to_vec()),
    })
}

/// Reads and splits the key file at `path`; the error starts with the path.
pub fn load(path: &Path) -> Result<TicketKeyFile, String> {
    let data = std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(path, &data).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_nginx_layouts_split_and_other_lengths_are_refused() {
        let data: Vec<u8> = (0..80).collect();
        let k = parse(Path::new("k"), &data).unwrap();
        assert_eq!(k.name_hex(), "000102030405060708090a0b0c0d0e0f");
        assert_eq!(k.dangerous_hmac_key(), &data[16..48]);
        assert_eq!(k.dangerous_aes_key(), &data[48..80]);
        let k = parse(Path::new("k"), &data[..48]).unwrap();
        assert_eq!(k.dangerous_aes_key(), &data[16..32]);
        assert_eq!(k.dangerous_hmac_key(), &data[32..48]);
        for n in [0, 16, 47, 49, 79, 81, 96] {
            let bytes = vec![7u8; n];
            assert_eq!(
                parse(Path::new("k"), &bytes).err(),
                Some(TicketKeyProblem::WrongLength(n))
            );
        }
    }

    #[test]
    fn debug_shows_the_name_never_the_key() {
        let data = [0xabu8; 80];
        let mut data = data.to_vec();
        data[..16].copy_from_slice(&[0x01; 16]);
        let shown = format!("{:?}", parse(Path::new("k"), &data).unwrap());
        assert!(shown.contains(&"01".repeat(16)), "{shown}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(!shown.contains("171, 171"), "{shown}");
    }
}
