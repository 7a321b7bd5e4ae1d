//! ⑤ The request path as routes and policies see it: a client's path-and-query in, its
//! normalised form out. No I/O, no status numbers, no protocol: the exchange calls
//! [`normalize`] on every [`crate::message::Request`] (HTTP/1.1 today, HTTP/2 `:path`
//! next) before anything reads the path, and forwards what it routed.
//!
//! The path part (before `?`) is normalised as nginx does before it matches a location
//! and as Envoy's `normalize_path` + `merge_slashes` do (RFC 3986 §6.2.2, §5.2.4):
//! - escapes of unreserved characters are decoded (`%2e` → `.`, `%41` → `A`), other escapes
//!   kept with upper-case hex digits (`%c3` → `%C3`);
//! - dot-segments are removed, also when written encoded (`%2e%2e`, `.%2E`); a `..` that
//!   would climb above `/` is refused;
//! - with `merge_slashes`, empty segments are dropped (`//a` → `/a`; a trailing `/` stays);
//! - encoded separators (`%2F`, `%5C`) and a raw `\` follow [`EscapedSlashes`]: refused,
//!   kept encoded (never a separator; `\` is forwarded as `%5C`), or decoded to `/`;
//! - a `.` or `..` segment with `;` parameters (`/..;/`, which Tomcat and Jetty resolve
//!   as a dot-segment) is refused;
//! - `%00` and a `%` without two hex digits are refused; a fragment (`#…`) is dropped;
//!   the query is kept byte for byte.
//!
//! An already-normal path (no `%`, `\`, `#`, `//` or `/.`) is returned borrowed: one byte
//! scan, no allocation. Refusals are typed ([`PathReject`]); the exchange turns them into
//! a `Fault::Target` and [`crate::error::fault_status`] into 400.

use std::borrow::Cow;

/// What to do with `%2F`, `%5C` and `\` in a path (Envoy:
/// `path_with_escaped_slashes_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// Refuse the request (400). Envoy: `REJECT_REQUEST`.
    Reject,
    /// Keep them as escapes: never a separator to routing, forwarded encoded (a raw `\`
    /// as `%5C`). Envoy: `KEEP_UNCHANGED`.
    Keep,
    /// Decode them to `/` before matching: a separator like any other. Envoy:
    /// `UNESCAPE_AND_FORWARD` plus `normalize_path`'s `\` → `/`.
    Decode,
}

impl EscapedSlashes {
    /// The names `escaped_slashes` accepts.
    pub const NAMES: [&'static str; 3] = ["reject", "keep", "decode"];

    pub fn from_name(name: &str) -> Option<EscapedSlashes> {
        match name {
            "reject" => Some(EscapedSlashes::Reject),
            "keep" => Some(EscapedSlashes::Keep),
            "decode" => Some(EscapedSlashes::Decode),
            _ => None,
        }
    }
}

/// How paths are normalised (`[http] merge_slashes`, `escaped_slashes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathOptions {
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathOptions {
    /// nginx's `merge_slashes on`; encoded separators refused.
    fn default() -> Self {
        PathOptions {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathReject {
    /// The path does not start with `/`.
    NotAbsolute,
    /// A `..` segment would climb above `/`.
    AboveRoot,
    /// `%2F`, `%5C` or `\` while `escaped_slashes = "reject"`.
    EscapedSlash,
    /// `%00`.
    Nul,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A `.` or `..` segment right after a stripped `path_prefix` (`/api..` under
    /// `path_prefix = "/api"`): what the upstream would receive resolves elsewhere.
    DotAfterPrefix,
    /// A `.` or `..` segment with path parameters (`/..;x/`): not a dot-segment to RFC
    /// 3986, nginx or Envoy, but Tomcat, Jetty and Spring resolve it as one, so it would
    /// climb out of a route on those upstreams.
    DotWithParams,
}

impl PathReject {
    pub fn reason(self) -> &'static str {
        match self {
            PathReject::NotAbsolute => "request path does not start with '/'",
            PathReject::AboveRoot => "request path climbs above '/' with '..'",
            PathReject::EscapedSlash => "encoded '/' or '\\' in the request path",
            PathReject::Nul => "%00 in the request path",
            PathReject::BadEscape => "invalid percent-escape in the request path",
            PathReject::DotAfterPrefix => "dot-segment right after a stripped path prefix",
            PathReject::DotWithParams => "dot-segment with ';' parameters in the request path",
        }
    }
}

/// Normalises a path-and-query (`/a/./b?q`): borrowed when it is normal already.
pub fn normalize(target: &[u8], opts: PathOptions) -> Result<Cow<'_, [u8]>, PathReject> {
    if target.first() != Some(&b'/') {
        return Err(PathReject::NotAbsolute);
    }
    if is_normal(target) {
        return Ok(Cow::Borrowed(target));
    }
    let end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    let (path, rest) = target.split_at(end);
    let query = match rest.first() {
        Some(b'?') => {
            let q_end = rest.iter().position(|&b| b == b'#').unwrap_or(rest.len());
            &rest[..q_end]
        }
        _ => &[][..],
    };
    let mut out = Vec::with_capacity(target.len());
    normalize_path(path, opts, &mut out)?;
    out.extend_from_slice(query);
    Ok(Cow::Owned(out))
}

/// True when `target` needs no work: its path has no `%`, `\`, `//` or `/.`, and there is
/// no fragment. (`/.well-known` takes the slow path and comes back unchanged.)
pub fn is_normal(target: &[u8]) -> bool {
    let mut prev_slash = false;
    for (i, &b) in target.iter().enumerate() {
        match b {
            b'?' => return !target[i..].contains(&b'#'),
            b'%' | b'\\' | b'#' => return false,
            b'/' | b'.' if prev_slash => return false,
            _ => {}
        }
        prev_slash = b == b'/';
    }
    true
}

/// The path part (starting with `/`) normalised into `out`.
fn normalize_path(path: &[u8], opts: PathOptions, out: &mut Vec<u8>) -> Result<(), PathReject> {
    let mut i = 1;
    // Each segment is written as `/` + its bytes from `seg_start`, then judged.
    let mut seg_start = 0;
    out.push(b'/');
    loop {
        let mut at_end = false;
        loop {
            let Some(&b) = path.get(i) else {
                at_end = true;
                break;
            };
            i += 1;
            match b {
                b'/' => break,
                b'\\' => match opts.escaped_slashes {
                    EscapedSlashes::Reject => return Err(PathReject::EscapedSlash),
                    EscapedSlashes::Keep => out.extend_from_slice(b"%5C"),
                    EscapedSlashes::Decode => break,
                },
                b'%' => {
                    let (Some(hi), Some(lo)) = (
                        path.get(i).copied().and_then(hex),
                        path.get(i + 1).copied().and_then(hex),
                    ) else {
                        return Err(PathReject::BadEscape);
                    };
                    i += 2;
                    match hi << 4 | lo {
                        0 => return Err(PathReject::Nul),
                        b'/' | b'\\' => match opts.escaped_slashes {
                            EscapedSlashes::Reject => return Err(PathReject::EscapedSlash),
                            EscapedSlashes::Keep => put_escape(out, hi, lo),
                            EscapedSlashes::Decode => break,
                        },
                        c if is_unreserved(c) => out.push(c),
                        _ => put_escape(out, hi, lo),
                    }
                }
                _ => out.push(b),
            }
        }
        let seg = &out[seg_start + 1..];
        if let Some(semi) = seg.iter().position(|&c| c == b';')
            && matches!(&seg[..semi], b"." | b"..")
        {
            return Err(PathReject::DotWithParams);
        }
        if seg == b"." || seg == b".." {
            let up = seg.len() == 2;
            out.truncate(seg_start);
            if up {
                // Drop the previous segment with its `/`; none left means above the root.
                let Some(slash) = out.iter().rposition(|&c| c == b'/') else {
                    return Err(PathReject::AboveRoot);
                };
                out.truncate(slash);
            }
            if at_end {
                // `/a/b/..` → `/a/`: a final dot-segment leaves a directory.
                out.push(b'/');
                return Ok(());
            }
        } else if seg.is_empty() && opts.merge_slashes && !at_end {
            out.truncate(seg_start);
        } else if at_end {
            return Ok(());
        }
        seg_start = out.len();
        out.push(b'/');
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn put_escape(out: &mut Vec<u8>, hi: u8, lo: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(hi)], HEX[usize::from(lo)]]);
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether the first segment of `rest` (what follows a stripped prefix that does not end
/// in `/`) is `.` or `..` (also with `;` parameters), which would make `/` + `rest`
/// resolve elsewhere upstream.
pub fn starts_with_dot_segment(rest: &[u8]) -> bool {
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b';')
        .unwrap_or(rest.len());
    matches!(&rest[..end], b"." | b"..")
}

#[cfg(test)]
#[path = "uri_tests.rs"]
mod tests;
