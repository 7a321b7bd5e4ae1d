//! Checks of a route's upgrade settings ([`crate::proxy::upgrade`] applies them):
//! `upgrade` (protocol names: tokens, lower-cased, each once; `h2c` refused),
//! `websocket_origins` (origins as `[route.cors]` writes them; no `*`, no `null`, not
//! empty) and `tunnel_idle_timeout_ms`. Each mistake names file, line and field.

use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::raw::RawRoute;
use crate::config::{OriginPattern, WEBSOCKET};
use crate::field::is_tchar;

/// A route's upgrade settings, checked.
pub(super) struct Tunnels {
    pub upgrade: Vec<String>,
    pub websocket_origins: Option<Vec<OriginPattern>>,
    pub idle_timeout: Option<Duration>,
}

impl Validator<'_> {
    /// `upgrade`, `websocket_origins` and `tunnel_idle_timeout_ms` of the route at
    /// `field` (`route[3]`); defaults where a value is refused (the error fails the load).
    pub(super) fn route_tunnels(&mut self, field: &str, raw: &RawRoute) -> Tunnels {
        let upgrade = match &raw.upgrade {
            None => vec![WEBSOCKET.to_string()],
            Some(list) => self.upgrade_tokens(&format!("{field}.upgrade"), list),
        };
        let websocket_origins = raw
            .websocket_origins
            .as_ref()
            .map(|list| self.websocket_origins(&format!("{field}.websocket_origins"), list));
        if raw.websocket_origins.is_some() && !upgrade.iter().any(|u| u == WEBSOCKET) {
            let at = raw.websocket_origins.as_ref().map(|l| l.span());
            let msg = "the route's `upgrade` list has no \"websocket\": no WebSocket upgrade reaches this check";
            self.error(at, &format!("{field}.websocket_origins"), msg);
        }
        let idle_timeout = raw.tunnel_idle_timeout_ms.as_ref().map(|_| {
            self.millis(
                &raw.tunnel_idle_timeout_ms,
                &format!("{field}.tunnel_idle_timeout_ms"),
                Duration::from_secs(3600),
            )
        });
        Tunnels {
            upgrade,
            websocket_origins,
            idle_timeout,
        }
    }

    fn upgrade_tokens(&mut self, field: &str, list: &Spanned<Vec<Spanned<String>>>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (i, t) in list.get_ref().iter().enumerate() {
            let at = format!("{field}[{i}]");
            let name = t.get_ref().to_ascii_lowercase();
            let problem = if name.is_empty() || !name.bytes().all(is_tchar) {
                Some(format!(
                    "{:?} is not a protocol name (an HTTP token such as \"websocket\"; no version)",
                    t.get_ref()
                ))
            } else if name == "h2c" {
                Some("\"h2c\" cannot be tunnelled: its HTTP2-Settings field is connection-specific (HTTP/2 to clients is issue 23's h2 session)".to_string())
            } else if out.contains(&name) {
                Some(format!("{:?} is listed twice", t.get_ref()))
            } else {
                None
            };
            match problem {
                Some(msg) => self.error(Some(t.span()), &at, msg),
                None => out.push(name),
            }
        }
        out
    }

    fn websocket_origins(
        &mut self,
        field: &str,
        list: &Spanned<Vec<Spanned<String>>>,
    ) -> Vec<OriginPattern> {
        if list.get_ref().is_empty() {
            let msg = "empty list: every WebSocket upgrade would be refused (leave it out to allow any origin)";
            self.error(Some(list.span()), field, msg);
        }
        let mut out: Vec<OriginPattern> = Vec::new();
        for (i, o) in list.get_ref().iter().enumerate() {
            let at = format!("{field}[{i}]");
            match o.get_ref().as_str() {
                "*" => {
                    let msg = "\"*\" would allow every origin: leave websocket_origins out instead";
                    self.error(Some(o.span()), &at, msg);
                }
                "null" => {
                    let msg = "\"null\" is the origin of every sandboxed document and file: page: allowing it allows them all";
                    self.error(Some(o.span()), &at, msg);
                }
                text => match OriginPattern::parse(text) {
                    Ok(p) if out.contains(&p) => {
                        self.error(Some(o.span()), &at, format!("{text:?} is listed twice"));
                    }
                    Ok(p) => out.push(p),
                    Err(why) => self.error(Some(o.span()), &at, format!("{text:?} {why}")),
                },
            }
        }
        out
    }
}
