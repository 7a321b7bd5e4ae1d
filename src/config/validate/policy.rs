//! Checks of the policy keys on listeners and routes (`redirect_https`,
//! `redirect_status`, `redirect_https_port`; a route's `max_request_body_bytes` is an
//! integer range checked with the route): each wrong value becomes an error naming
//! file, line and field.

use super::Validator;
use crate::config::RedirectHttps;
use crate::config::raw::RawListener;

impl Validator<'_> {
    /// The listener's `redirect_https` settings at `field` (`listener[0]`); `tls`: the
    /// listener has a `[listener.tls]`. `None` when off or after an error.
    pub(super) fn redirect_https(
        &mut self,
        field: &str,
        l: &RawListener,
        tls: bool,
    ) -> Option<RedirectHttps> {
        let on = l.redirect_https.as_ref();
        if let Some(r) = on.filter(|r| *r.get_ref() && tls) {
            let msg = "redirect_https is for a plain listener: this one has [listener.tls]";
            self.error(Some(r.span()), &format!("{field}.redirect_https"), msg);
        }
        let on = on.is_some_and(|r| *r.get_ref());
        for (key, value) in [
            ("redirect_status", &l.redirect_status),
            ("redirect_https_port", &l.redirect_https_port),
        ] {
            if let Some(v) = value.as_ref().filter(|_| !on) {
                let msg = format!("{key} needs redirect_https = true on this listener");
                self.error(Some(v.span()), &format!("{field}.{key}"), msg);
            }
        }
        let status = match &l.redirect_status {
            None => 308,
            Some(s) if matches!(*s.get_ref(), 301 | 308) => *s.get_ref() as u16,
            Some(s) => {
                let msg = format!(
                    "{} is not a redirect status here: 308 (default; keeps the method) or 301",
                    s.get_ref()
                );
                self.error(Some(s.span()), &format!("{field}.redirect_status"), msg);
                308
            }
        };
        let port = self.int(
            &l.redirect_https_port,
            &format!("{field}.redirect_https_port"),
            443,
            1..=65_535,
        ) as u16;
        (on && !tls).then_some(RedirectHttps { status, port })
    }
}
