//! The settings of the header policies ([`crate::policy::headers`]): security headers
//! and header rules per listener and route, every name and value checked and made into
//! `Bytes` at load. Applying them is the policy's; this module holds what they apply and
//! the two field-list helpers they share.

use bytes::Bytes;

use crate::field::Header;

/// One `[[…request_headers]]` / `[[…response_headers]]` entry.
#[derive(Debug, Clone)]
pub enum HeaderRule {
    /// Appends the field, whatever is there already (nginx `add_header`).
    Add(Header),
    /// Replaces every field of that name by this one (nginx `proxy_set_header`;
    /// Envoy `append_action: OVERWRITE_IF_EXISTS_OR_ADD`).
    Set(Header),
    /// Removes every field of that name (nginx `proxy_hide_header`; Envoy
    /// `*_headers_to_remove`).
    Remove(Bytes),
}

/// One security field and whether it may go out over plain HTTP.
#[derive(Debug, Clone)]
struct SecurityField {
    field: Header,
    /// `Strict-Transport-Security`: RFC 6797 §7.2 forbids it over plain HTTP.
    https_only: bool,
}

/// `[listener.security_headers]` / `[route.security_headers]`: fields every response
/// carries.
#[derive(Debug, Clone, Default)]
pub struct SecurityHeaders {
    fields: Vec<SecurityField>,
    /// `override = true`: replace a field of the same name the upstream sent; `false`
    /// (default): the upstream's field stays and ours is not added.
    pub override_upstream: bool,
}

impl SecurityHeaders {
    /// No fields yet; `override_upstream` as in the field's doc.
    pub fn new(override_upstream: bool) -> SecurityHeaders {
        SecurityHeaders {
            fields: Vec::new(),
            override_upstream,
        }
    }

    /// Adds a field (names and values checked by the caller, at load).
    pub fn push(&mut self, name: Bytes, value: Bytes) {
        let https_only = name.eq_ignore_ascii_case(b"strict-transport-security");
        self.fields.push(SecurityField {
            field: Header { name, value },
            https_only,
        });
    }

    /// The configured fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = &Header> {
        self.fields.iter().map(|f| &f.field)
    }

    /// Puts the fields into a response's `headers`; `https`: the client's connection
    /// is TLS (Strict-Transport-Security is left out otherwise).
    pub fn apply(&self, headers: &mut Vec<Header>, https: bool) {
        for f in &self.fields {
            if f.https_only && !https {
                continue;
            }
            let name = &f.field.name;
            if self.override_upstream {
                remove(headers, name);
            } else if has(headers, name) {
                continue;
            }
            headers.push(f.field.clone());
        }
    }
}

/// The header settings of one listener or one route.
#[derive(Debug, Clone, Default)]
pub struct HeaderPolicy {
    /// `security_headers`; `None`: not written (a route then uses its listener's).
    pub security: Option<SecurityHeaders>,
    /// `request_headers`: rules for the request sent upstream.
    pub request: Vec<HeaderRule>,
    /// `response_headers`: rules for the response sent to the client.
    pub response: Vec<HeaderRule>,
}

impl HeaderPolicy {
    /// Nothing configured: the steps below can be skipped.
    pub fn is_empty(&self) -> bool {
        self.security.is_none() && self.request.is_empty() && self.response.is_empty()
    }
}

/// Whether a field named `name` is in `headers`.
pub fn has(headers: &[Header], name: &[u8]) -> bool {
    headers.iter().any(|h| h.name.eq_ignore_ascii_case(name))
}

/// Removes every field named `name`.
pub fn remove(headers: &mut Vec<Header>, name: &[u8]) {
    headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
}
