//! The TLS key-exchange groups a listener can name in `kx_groups`, with the one name each
//! goes by in the configuration, in `TlsInfo` (for the access log) and in `/metrics`.
//!
//! A table of the aws-lc-rs provider's groups, nothing more: it reads no file and knows
//! no connection. Names are the IANA TLS Supported Groups names (`X25519MLKEM768`,
//! `secp256r1`, …; `X25519` as OpenSSL and rustls spell it); a configuration may also use
//! OpenSSL's aliases (`P-256`, `prime256v1`, `P-384`), in any case.

use std::ops::Range;

use rustls::NamedGroup;
use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::kx_group;
use toml::Spanned;

/// One group: its name and the provider's implementation.
pub struct KxGroup {
    pub name: &'static str,
    pub group: &'static dyn SupportedKxGroup,
    /// Offered with TLS 1.2 too (the classic ECDHE curves); the ML-KEM groups are
    /// TLS 1.3 only.
    pub tls12: bool,
}

/// Every group ringgate can negotiate, hybrid post-quantum first.
pub static KX_GROUPS: [KxGroup; 7] = [
    KxGroup {
        name: "X25519MLKEM768",
        group: kx_group::X25519MLKEM768,
        tls12: false,
    },
    KxGroup {
        name: "SecP256r1MLKEM768",
        group: kx_group::SECP256R1MLKEM768,
        tls12: false,
    },
    KxGroup {
        name: "X25519",
        group: kx_group::X25519,
        tls12: true,
    },
    KxGroup {
        name: "secp256r1",
        group: kx_group::SECP256R1,
        tls12: true,
    },
    KxGroup {
        name: "secp384r1",
        group: kx_group::SECP384R1,
        tls12: true,
    },
    KxGroup {
        name: "MLKEM768",
        group: kx_group::MLKEM768,
        tls12: false,
    },
    KxGroup {
        name: "MLKEM1024",
        group: kx_group::MLKEM1024,
        tls12: false,
    },
];

/// OpenSSL's other names for the same groups (nginx's `ssl_ecdh_curve` takes these).
const ALIASES: [(&str, &str); 3] = [
    ("P-256", "secp256r1"),
    ("prime256v1", "secp256r1"),
    ("P-384", "secp384r1"),
];

/// The group a configuration names (case-insensitive; OpenSSL aliases too).
pub fn by_name(name: &str) -> Option<&'static KxGroup> {
    let canonical = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
        .map_or(name, |(_, canonical)| canonical);
    KX_GROUPS
        .iter()
        .find(|g| g.name.eq_ignore_ascii_case(canonical))
}

/// The position of `group` in [`KX_GROUPS`], or `KX_GROUPS.len()` for one not listed.
pub fn index(group: NamedGroup) -> usize {
    KX_GROUPS
        .iter()
        .position(|g| g.group.name() == group)
        .unwrap_or(KX_GROUPS.len())
}

/// The name of a negotiated group; `"other"` for one not in [`KX_GROUPS`].
pub fn name(group: NamedGroup) -> &'static str {
    KX_GROUPS.get(index(group)).map_or("other", |g| g.name)
}

/// The known names, for error messages.
pub fn names() -> String {
    let names: Vec<&str> = KX_GROUPS.iter().map(|g| g.name).collect();
    names.join(", ")
}

/// A problem with a `kx_groups` list: where, which entry (`None`: the whole list), why.
pub(super) struct ListError {
    pub span: Range<usize>,
    pub entry: Option<usize>,
    pub message: String,
}

/// Checks a `kx_groups` list: known names, no repeats, not empty, and — when the
/// listener offers TLS 1.2 (`tls12`) — at least one group TLS 1.2 can use.
pub(super) fn check_list(
    list: &Spanned<Vec<Spanned<String>>>,
    tls12: bool,
) -> (Vec<&'static dyn SupportedKxGroup>, Vec<ListError>) {
    let mut out: Vec<&'static KxGroup> = Vec::new();
    let mut errors = Vec::new();
    for (i, name) in list.get_ref().iter().enumerate() {
        let wanted = name.get_ref();
        let message = match by_name(wanted) {
            Some(g) if out.iter().any(|o| o.name == g.name) => {
                format!("{wanted:?} is listed twice")
            }
            Some(g) => {
                out.push(g);
                continue;
            }
            None => format!("unknown key-exchange group {wanted:?} (known: {})", names()),
        };
        errors.push(ListError {
            span: name.span(),
            entry: Some(i),
            message,
        });
    }
    let whole = |message: &str| ListError {
        span: list.span(),
        entry: None,
        message: message.to_string(),
    };
    if list.get_ref().is_empty() {
        errors.push(whole(
            "empty list: leave the key out to allow the default groups",
        ));
    } else if tls12 && !out.is_empty() && !out.iter().any(|g| g.tls12) {
        errors.push(whole(
            "no group TLS 1.2 can use (the ML-KEM groups are TLS 1.3 only): add \"X25519\" \
             or \"secp256r1\", or set min_version = \"1.3\"",
        ));
    }
    (out.iter().map(|g| g.group).collect(), errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_group_is_named_once() {
        for g in rustls::crypto::aws_lc_rs::ALL_KX_GROUPS {
            let i = index(g.name());
            assert!(i < KX_GROUPS.len(), "{:?} has no name", g.name());
            assert_eq!(
                KX_GROUPS[i].tls12,
                g.usable_for_version(rustls::ProtocolVersion::TLSv1_2)
            );
        }
        assert_eq!(
            KX_GROUPS.len(),
            rustls::crypto::aws_lc_rs::ALL_KX_GROUPS.len()
        );
    }

    #[test]
    fn names_aliases_and_case() {
        assert_eq!(
            by_name("x25519mlkem768").map(|g| g.name),
            Some("X25519MLKEM768")
        );
        assert_eq!(by_name("P-256").map(|g| g.name), Some("secp256r1"));
        assert_eq!(by_name("prime256v1").map(|g| g.name), Some("secp256r1"));
        assert_eq!(by_name("p-384").map(|g| g.name), Some("secp384r1"));
        assert!(by_name("X448").is_none());
        assert!(by_name("").is_none());
        assert_eq!(name(NamedGroup::X25519), "X25519");
        assert_eq!(name(NamedGroup::FFDHE2048), "other");
    }
}
