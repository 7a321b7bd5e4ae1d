use std::path::Path;

use crate::config::{AllowedOrigins, Config, HeaderRule, from_toml_str};

/// A plain listener with `listener` appended to its table, one route with `route`
/// appended; the errors as `ringgate check` prints them (file:line:col: field: why).
fn load(listener: &str, route: &str) -> Result<Config, Vec<String>> {
    let text = format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n{listener}\n\
         [[route]]\nupstream = \"u\"\n{route}\n\
         [upstream.u]\nservers = [\"127.0.0.1:9000\"]\n"
    );
    from_toml_str(&text, "t.toml", Path::new("."))
        .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
}

fn names(fields: impl Iterator<Item = (Vec<u8>, Vec<u8>)>) -> Vec<String> {
    fields
        .map(|(n, v)| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(&n),
                String::from_utf8_lossy(&v)
            )
        })
        .collect()
}

#[test]
fn nothing_written_is_nothing_configured() {
    let c = load("", "").expect("valid");
    assert!(c.listeners[0].headers.is_empty());
    assert!(c.routes[0].headers.is_empty());
    assert!(c.routes[0].cors.is_none());
}

#[test]
fn security_headers_rules_and_cors_are_read() {
    let c = load(
        "[listener.security_headers]\n\
         hsts = \"max-age=31536000; includeSubDomains\"\n\
         content_type_options = \"nosniff\"\n\
         frame_options = \"DENY\"\n\
         content_security_policy = \"default-src 'self'\"\n\
         referrer_policy = \"no-referrer, strict-origin-when-cross-origin\"\n\
         custom = { \"Permissions-Policy\" = \"geolocation=()\" }\n\
         override = true\n\
         [[listener.response_headers]]\naction = \"remove\"\nname = \"Server\"\n",
        "[[route.request_headers]]\naction = \"set\"\nname = \"X-Api-Version\"\nvalue = \"2\"\n\
         [[route.request_headers]]\naction = \"add\"\nname = \"X-Edge\"\nvalue = \"a b\"\n\
         [[route.response_headers]]\naction = \"remove\"\nname = \"X-Powered-By\"\n\
         [route.cors]\n\
         allow_origins = [\"https://app.example.com\", \"https://*.example.com:8443\"]\n\
         allow_methods = [\"GET\", \"PUT\"]\n\
         allow_headers = [\"Content-Type\", \"Authorization\"]\n\
         expose_headers = [\"X-Request-Id\"]\n\
         allow_credentials = true\n\
         max_age_secs = 600\n",
    )
    .expect("valid");
    let l = &c.listeners[0].headers;
    let s = l.security.as_ref().expect("security headers");
    assert!(s.override_upstream);
    assert_eq!(
        names(s.fields().map(|h| (h.name.to_vec(), h.value.to_vec()))),
        [
            "Strict-Transport-Security: max-age=31536000; includeSubDomains",
            "X-Content-Type-Options: nosniff",
            "X-Frame-Options: DENY",
            "Content-Security-Policy: default-src 'self'",
            "Referrer-Policy: no-referrer, strict-origin-when-cross-origin",
            "Permissions-Policy: geolocation=()",
        ]
    );
    assert!(matches!(&l.response[..], [HeaderRule::Remove(n)] if n == "Server"));
    let r = &c.routes[0].headers;
    assert!(r.security.is_none());
    assert!(
        matches!(&r.request[..], [HeaderRule::Set(a), HeaderRule::Add(b)]
        if a.name == "X-Api-Version" && a.value == "2" && b.value == "a b")
    );
    assert!(matches!(&r.response[..], [HeaderRule::Remove(n)] if n == "X-Powered-By"));
    let cors = c.routes[0].cors.as_ref().expect("cors");
    assert!(cors.credentials);
    assert_eq!(cors.allow_methods, "GET, PUT");
    assert_eq!(
        cors.allow_headers.as_deref(),
        Some(&b"Content-Type, Authorization"[..])
    );
    assert_eq!(cors.expose_headers.as_deref(), Some(&b"X-Request-Id"[..]));
    assert_eq!(cors.max_age.as_deref(), Some(&b"600"[..]));
    let AllowedOrigins::List(list) = &cors.origins else {
        panic!("a list");
    };
    assert!(list[0].matches(b"https://app.example.com"));
    assert!(list[1].matches(b"https://x.example.com:8443"));
}

#[test]
fn cors_defaults_and_star() {
    let c = load("", "[route.cors]\nallow_origins = [\"*\"]\n").expect("valid");
    let cors = c.routes[0].cors.as_ref().expect("cors");
    assert!(matches!(cors.origins, AllowedOrigins::Any));
    assert!(!cors.credentials);
    assert_eq!(cors.allow_methods, "GET, HEAD, POST");
    assert!(
        cors.allow_headers.is_none() && cors.expose_headers.is_none() && cors.max_age.is_none()
    );
}

/// Each case: (listener part, route part, an expected substring of the one error).
#[test]
fn every_mistake_names_its_line_field_and_reason() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[listener.security_headers]\nhsts = \"includeSubDomains\"\n",
            "",
            "t.toml:4:8: listener[0].security_headers.hsts: \"includeSubDomains\" needs max-age=SECONDS",
        ),
        (
            "[listener.security_headers]\ncontent_type_options = \"no-sniff\"\n",
            "",
            "listener[0].security_headers.content_type_options: \"no-sniff\" must be \"nosniff\"",
        ),
        (
            "[listener.security_headers]\nframe_options = \"ALLOW-FROM https://a\"\n",
            "",
            "listener[0].security_headers.frame_options: \"ALLOW-FROM https://a\" must be \"DENY\" or \"SAMEORIGIN\"",
        ),
        (
            "[listener.security_headers]\nreferrer_policy = \"strict\"\n",
            "",
            "listener[0].security_headers.referrer_policy: \"strict\" must be referrer policies",
        ),
        (
            "[listener.security_headers]\ncontent_security_policy = \"a\\r\\nSet-Cookie: x=1\"\n",
            "",
            "listener[0].security_headers.content_security_policy: \"a\\r\\nSet-Cookie: x=1\" may hold visible ASCII",
        ),
        (
            "[listener.security_headers]\ncustom = { \"Bad Name\" = \"x\" }\n",
            "",
            "listener[0].security_headers.custom.\"Bad Name\": \"Bad Name\" is not a valid HTTP field name",
        ),
        (
            "[listener.security_headers]\ncustom = { \"Content-Length\" = \"0\" }\n",
            "",
            "\"Content-Length\" is a framing or connection field",
        ),
        (
            "[listener.security_headers]\ncustom = { \"strict-transport-security\" = \"max-age=1\" }\n",
            "",
            "has its own key: write hsts = …",
        ),
        (
            "[listener.security_headers]\noverride = true\n",
            "",
            "t.toml:3:1: listener[0].security_headers: no field set",
        ),
        (
            "[listener.security_headers]\nhsts = \"max-age=1\"\nx_frame_options = \"DENY\"\n",
            "",
            "security_headers.x_frame_options: unknown key; did you mean `frame_options`?",
        ),
        (
            "",
            "[[route.request_headers]]\naction = \"set\"\nname = \"Host\"\nvalue = \"a\"\n",
            "route[0].request_headers[0].name: \"Host\" is written by the proxy",
        ),
        (
            "",
            "[[route.request_headers]]\naction = \"add\"\nname = \"X-Forwarded-For\"\nvalue = \"1.2.3.4\"\n",
            "\"X-Forwarded-For\" is written by the proxy",
        ),
        (
            "",
            "[[route.response_headers]]\naction = \"set\"\nname = \"transfer-encoding\"\nvalue = \"chunked\"\n",
            "route[0].response_headers[0].name: \"transfer-encoding\" is a framing or connection field",
        ),
        (
            "",
            "[[route.response_headers]]\naction = \"replace\"\nname = \"X-A\"\nvalue = \"1\"\n",
            "route[0].response_headers[0].action: \"replace\" is not one of \"add\", \"set\", \"remove\"",
        ),
        (
            "",
            "[[route.response_headers]]\naction = \"remove\"\nname = \"X-A\"\nvalue = \"1\"\n",
            "route[0].response_headers[0].value: remove takes no value",
        ),
        (
            "",
            "[[route.response_headers]]\naction = \"add\"\nname = \"X-A\"\n",
            "route[0].response_headers[0].value: required key is missing",
        ),
        (
            "",
            "[[route.response_headers]]\naction = \"add\"\nname = \"X-A\"\nvalue = \" padded\"\n",
            "starts or ends with white space",
        ),
        (
            "",
            "[[route.response_headers]]\naction = \"add\"\nname = \"X-A\"\nvalue = \"\"\n",
            "route[0].response_headers[0].value: \"\" is empty",
        ),
        (
            "",
            "[[listener.request_headers]]\nname = \"X-A\"\n",
            "required key is missing",
        ),
        (
            "",
            "[route.cors]\nallow_methods = [\"GET\"]\n",
            "route[0].cors.allow_origins: required key is missing",
        ),
        (
            "",
            "[route.cors]\nallow_origins = [\"*\"]\nallow_credentials = true\n",
            "route[0].cors.allow_origins[0]: \"*\" cannot go with allow_credentials = true",
        ),
        (
            "",
            "[route.cors]\nallow_origins = [\"*\", \"https://a.example\"]\n",
            "\"*\" allows every origin: list it alone",
        ),
        (
            "",
            "[route.cors]\nallow_origins = [\"null\"]\n",
            "route[0].cors.allow_origins[0]: \"null\" is the origin of every sandboxed document",
        ),
        (
            "",
            "[route.cors]\nallow_origins = [\"https://app.example.com/\"]\n",
            "\"https://app.example.com/\" has a path",
        ),
        (
            "",
            "[route.cors]\nallow_origins = [\"https://*.com\"]\n",
            "would allow every site under a top-level domain",
        ),
        (
            "",
            "[route.cors]\nallow_origins = [\"app.example.com\"]\n",
            "\"app.example.com\" is not an origin",
        ),
        (
            "",
            "[route.cors]\nallow_origins = [\"https://a.example\", \"HTTPS://A.example:443\"]\n",
            "route[0].cors.allow_origins[1]: \"HTTPS://A.example:443\" is listed twice",
        ),
        (
            "",
            "[route.cors]\nallow_origins = []\n",
            "route[0].cors.allow_origins: empty list",
        ),
        (
            "",
            "[route.cors]\nallow_origins = [\"https://a.example\"]\nallow_headers = [\"*\"]\nallow_credentials = true\n",
            "route[0].cors.allow_headers[0]: \"*\" is taken literally by browsers",
        ),
        (
            "",
            "[route.cors]\nallow_origins = [\"https://a.example\"]\nallow_methods = [\"GET\", \"PUT DELETE\"]\n",
            "route[0].cors.allow_methods[1]: \"PUT DELETE\" is not an HTTP token",
        ),
        (
            "",
            "[route.cors]\nallow_origins = [\"https://a.example\"]\nexpose_headers = []\n",
            "route[0].cors.expose_headers: empty list",
        ),
        (
            "",
            "[route.cors]\nallow_origins = [\"https://a.example\"]\nmax_age_secs = -1\n",
            "route[0].cors.max_age_secs: -1 is out of range (allowed 0..=86400)",
        ),
    ];
    for (listener, route, want) in cases {
        let errors = match load(listener, route) {
            Ok(_) => panic!("accepted:\n{listener}{route}"),
            Err(e) => e,
        };
        assert_eq!(errors.len(), 1, "{listener}{route}: {errors:#?}");
        assert!(
            errors[0].contains(want),
            "{listener}{route}:\n  got  {}\n  want {want}",
            errors[0]
        );
    }
}
