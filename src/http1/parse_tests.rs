use super::*;

const LIMITS: HeadLimits = HeadLimits {
    max_request_line: 8192,
    max_head_bytes: 32768,
    max_headers: 100,
};

const RESPONSE_LIMITS: ResponseLimits = ResponseLimits {
    max_head_bytes: 65536,
    max_headers: 4096,
};

/// Parses `input` fed in two pieces split at `split`; the first piece alone must never
/// be `Complete` unless it holds the whole head.
fn parse_split(input: &[u8], split: usize) -> Result<(RequestHead, usize), Reject> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&input[..split]);
    match parse_request(&buf, &LIMITS) {
        Parsed::Invalid(r) => return Err(r),
        Parsed::Complete(raw, used) => {
            let head = take_request(&mut buf, raw, used)?;
            return Ok((head, used));
        }
        Parsed::Incomplete => {}
    }
    buf.extend_from_slice(&input[split..]);
    match parse_request(&buf, &LIMITS) {
        Parsed::Invalid(r) => Err(r),
        Parsed::Complete(raw, used) => Ok((take_request(&mut buf, raw, used)?, used)),
        Parsed::Incomplete => Err(Reject {
            fault: Fault::Malformed,
            reason: "incomplete",
        }),
    }
}

/// The status a client would get; 0 for a head that never completed.
fn status_for(r: &Reject) -> u16 {
    if r.reason == "incomplete" {
        0
    } else {
        crate::error::fault_status(r.fault)
    }
}

fn parse_all_splits(input: &[u8]) -> Result<(RequestHead, usize), Reject> {
    let whole = parse_split(input, input.len());
    for split in 0..input.len() {
        let r = parse_split(input, split);
        match (&whole, &r) {
            (Ok((_, a)), Ok((_, b))) => assert_eq!(a, b, "split {split}"),
            (Err(a), Err(b)) => assert_eq!(a, b, "split {split}"),
            _ => panic!("split {split} disagrees: {whole:?} vs {r:?}"),
        }
    }
    whole
}

fn header<'a>(h: &'a RequestHead, name: &str) -> Option<&'a [u8]> {
    h.headers
        .iter()
        .find(|x| x.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|x| x.value.as_ref())
}

#[test]
fn simple_get_at_every_split() {
    let input = b"GET /a/b?c=d HTTP/1.1\r\nHost: Example.COM:8443\r\nAccept: */*\r\n\r\nNEXT";
    let (h, used) = parse_all_splits(input).unwrap();
    assert_eq!(used, input.len() - 4);
    assert_eq!(&h.method[..], b"GET");
    assert_eq!(&h.path()[..], b"/a/b?c=d");
    assert_eq!(h.host.as_deref(), Some(&b"example.com"[..]));
    assert_eq!(h.body, BodyKind::Empty);
    assert!(h.keep_alive);
    assert_eq!(header(&h, "accept"), Some(&b"*/*"[..]));
}

#[test]
fn headers_are_slices_of_the_read_buffer() {
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789\r\n\r\n"[..]);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let Parsed::Complete(raw, used) = parse_request(&buf, &LIMITS) else {
        panic!("complete head expected");
    };
    let h = take_request(&mut buf, raw, used).unwrap();
    for x in &h.headers {
        let p = x.value.as_ptr() as usize;
        assert!(p >= start && p < end, "value copied out of the buffer");
    }
}

#[test]
fn framing_is_read() {
    let (h, _) =
        parse_all_splits(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").unwrap();
    assert_eq!(h.body, BodyKind::Length(12));
    let (h, _) =
        parse_all_splits(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n")
            .unwrap();
    assert_eq!(h.body, BodyKind::Chunked);
    let (h, _) = parse_all_splits(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    assert_eq!(h.body, BodyKind::Length(5));
    let (h, _) =
        parse_all_splits(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n").unwrap();
    assert_eq!(h.body, BodyKind::Length(5));
}

#[test]
fn keep_alive_defaults() {
    let (h, _) = parse_all_splits(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(!h.keep_alive);
    assert_eq!(h.host, None);
    let (h, _) = parse_all_splits(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
    assert!(h.keep_alive);
    let (h, _) =
        parse_all_splits(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n").unwrap();
    assert!(!h.keep_alive);
}

#[test]
fn absolute_form_target_gives_host_and_path() {
    let (h, _) =
        parse_all_splits(b"GET http://API.test:80/x?y HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
    assert_eq!(h.host.as_deref(), Some(&b"api.test"[..]));
    assert_eq!(&h.path()[..], b"/x?y");
}

#[test]
fn absolute_form_authority_wins_over_host_with_its_port_query_and_brackets() {
    // (target, routing host, authority as sent, path and query)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "http://public.test/pub/x",
            "public.test",
            "public.test",
            "/pub/x",
        ),
        ("http://A.test:8080/x", "a.test", "A.test:8080", "/x"),
        ("http://a.test?q=1", "a.test", "a.test", "/?q=1"),
        ("http://a.test:81?q=1#f", "a.test", "a.test:81", "/?q=1#f"),
        ("http://a.test#f", "a.test", "a.test", "/"),
        ("http://a.test", "a.test", "a.test", "/"),
        ("https://[::1]:8443/v6", "[::1]", "[::1]:8443", "/v6"),
        (
            "http://[2001:DB8::1]/",
            "[2001:db8::1]",
            "[2001:DB8::1]",
            "/",
        ),
    ];
    for (target, host, sent, path) in cases {
        let input = format!("GET {target} HTTP/1.1\r\nHost: admin.test\r\n\r\n");
        let (h, _) = parse_all_splits(input.as_bytes()).unwrap();
        assert_eq!(h.host.as_deref(), Some(host.as_bytes()), "{target}");
        assert_eq!(h.authority.as_deref(), Some(sent.as_bytes()), "{target}");
        assert_eq!(&h.path()[..], path.as_bytes(), "{target}");
    }
    // Origin-form: the Host field, as sent.
    let (h, _) = parse_all_splits(b"GET / HTTP/1.1\r\nHost: App.Test:8443 \r\n\r\n").unwrap();
    assert_eq!(h.host.as_deref(), Some(&b"app.test"[..]));
    assert_eq!(h.authority.as_deref(), Some(&b"App.Test:8443"[..]));
}

#[test]
fn absolute_form_with_a_bad_authority_or_host_is_refused() {
    for input in [
        // An authority that does not parse must not fall back to the Host field.
        &b"GET http://a.test:x/ HTTP/1.1\r\nHost: b.test\r\n\r\n"[..],
        b"GET http://[::1/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
        b"GET http://a{b/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
        // Host is still required and checked (RFC 9112 §3.2).
        b"GET http://a.test/ HTTP/1.1\r\n\r\n",
        b"GET http://a.test/ HTTP/1.1\r\nHost: b c\r\n\r\n",
        b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n",
    ] {
        assert_eq!(
            status_of(input),
            400,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

fn status_of(input: &[u8]) -> u16 {
    match parse_all_splits(input) {
        Ok(h) => panic!("{:?} accepted: {h:?}", String::from_utf8_lossy(input)),
        Err(r) => status_for(&r),
    }
}

#[test]
fn smuggling_vectors_are_refused() {
    let cases: &[(&[u8], u16)] = &[
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
        (b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", 417),
    ];
    for (input, status) in cases {
        assert_eq!(
            status_of(input),
            *status,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// Status for a large input, split at a few places only (every split would be slow).
fn status_sampled(input: &[u8]) -> u16 {
    let mut status = None;
    for split in [
        0,
        1,
        input.len() / 3,
        input.len() / 2,
        input.len() - 1,
        input.len(),
    ] {
        let s = status_for(&parse_split(input, split).expect_err("must be refused"));
        assert!(status.is_none_or(|p| p == s), "split {split} disagrees");
        status = Some(s);
    }
    status.unwrap()
}

#[test]
fn limits_give_414_and_431() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    assert_eq!(status_sampled(long_target.as_bytes()), 414);
    // Still incomplete but already too long: refused without waiting for the rest.
    let partial = format!("GET /{}", "a".repeat(9000));
    assert!(matches!(
        parse_request(partial.as_bytes(), &LIMITS),
        Parsed::Invalid(Reject {
            fault: Fault::LineTooLong,
            ..
        })
    ));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "b".repeat(40000)
    );
    assert_eq!(status_sampled(big.as_bytes()), 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..120 {
        many += &format!("X-{i}: v\r\n");
    }
    many += "\r\n";
    assert_eq!(status_sampled(many.as_bytes()), 431);
}

#[test]
fn response_heads() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"[..]);
    let Parsed::Complete(r, _) = parse_response(&mut buf, &RESPONSE_LIMITS) else {
        panic!()
    };
    assert_eq!(
        (r.status, r.body, r.keep_alive),
        (200, BodyKind::Length(3), true)
    );
    assert_eq!(&buf[..], b"abc");
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\nabc"[..]);
    let Parsed::Complete(r, _) = parse_response(&mut buf, &RESPONSE_LIMITS) else {
        panic!()
    };
    assert_eq!(
        (r.body, r.reusable_after(false)),
        (BodyKind::UntilClose, false)
    );
    // chunked wins over Content-Length from an upstream.
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
    );
    let Parsed::Complete(r, _) = parse_response(&mut buf, &RESPONSE_LIMITS) else {
        panic!()
    };
    assert_eq!(r.body, BodyKind::Chunked);
    let mut buf =
        BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"[..]);
    assert!(matches!(
        parse_response(&mut buf, &RESPONSE_LIMITS),
        Parsed::Invalid(Reject { .. })
    ));
    let mut buf = BytesMut::from(&b"garbage\r\n\r\n"[..]);
    assert!(matches!(
        parse_response(&mut buf, &RESPONSE_LIMITS),
        Parsed::Invalid(Reject { .. })
    ));
}

#[test]
fn options_asterisk_keeps_its_target() {
    let (h, _) = parse_all_splits(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(&h.path()[..], b"*");
}

#[test]
fn response_status_must_be_100_to_999() {
    for line in [
        "HTTP/1.1 000 x",
        "HTTP/1.1 099 x",
        "HTTP/1.1 0 x",
        "HTTP/1.1 1000 x",
    ] {
        let mut buf = BytesMut::from(format!("{line}\r\nContent-Length: 0\r\n\r\n").as_bytes());
        assert!(
            matches!(
                parse_response(&mut buf, &RESPONSE_LIMITS),
                Parsed::Invalid(Reject { .. })
            ),
            "{line}"
        );
    }
    for code in [100u16, 199, 200, 599, 999] {
        let mut buf = BytesMut::from(format!("HTTP/1.1 {code} x\r\n\r\n").as_bytes());
        let Parsed::Complete(r, _) = parse_response(&mut buf, &RESPONSE_LIMITS) else {
            panic!("{code}")
        };
        assert_eq!(r.status, code);
    }
}

#[test]
fn response_header_count_beyond_the_stack_slots_up_to_the_limit() {
    let head = |n: usize| {
        let mut h = String::from("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
        for i in 1..n {
            h += &format!("X-{i}: v\r\n");
        }
        h + "\r\n"
    };
    for n in [63, 64, 65, 300, 4096] {
        let mut buf = BytesMut::from(head(n).as_bytes());
        let Parsed::Complete(r, _) = parse_response(&mut buf, &RESPONSE_LIMITS) else {
            panic!("{n} fields")
        };
        assert_eq!(r.headers.len(), n);
    }
    let mut buf = BytesMut::from(head(4097).as_bytes());
    assert!(matches!(
        parse_response(&mut buf, &RESPONSE_LIMITS),
        Parsed::Invalid(Reject { .. })
    ));
    let small = ResponseLimits {
        max_head_bytes: 65536,
        max_headers: 10,
    };
    let mut buf = BytesMut::from(head(11).as_bytes());
    assert!(matches!(
        parse_response(&mut buf, &small),
        Parsed::Invalid(Reject { .. })
    ));
}

#[test]
fn bodiless_statuses_that_announce_a_body_are_not_reused() {
    let parse = |text: &str| {
        let mut buf = BytesMut::from(text.as_bytes());
        match parse_response(&mut buf, &RESPONSE_LIMITS) {
            Parsed::Complete(r, _) => r,
            other => panic!("{text}: {other:?}"),
        }
    };
    assert!(parse("HTTP/1.1 204 No Content\r\n\r\n").reusable_after(false));
    assert!(parse("HTTP/1.1 304 Not Modified\r\n\r\n").reusable_after(false));
    assert!(!parse("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n").reusable_after(false));
    assert!(
        !parse("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n")
            .reusable_after(false)
    );
    assert!(!parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n").reusable_after(false));
    // A HEAD response describes the body it would have had.
    assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").reusable_after(true));
    assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").reusable_after(false));
    assert!(!parse("HTTP/1.1 200 OK\r\n\r\n").reusable_after(false));
    assert!(
        !parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n")
            .reusable_after(false)
    );
}

#[test]
fn host_is_normalised_lower_case_without_port_or_trailing_dot() {
    for (raw, host) in [
        ("api.example.com", "api.example.com"),
        ("API.Example.COM:8443", "api.example.com"),
        (" api.test.:443 ", "api.test"),
        ("[::1]:80", "[::1]"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
    ] {
        let (got, sent) = parse_host_header(&Bytes::from(raw)).unwrap();
        assert_eq!(got, host.as_bytes(), "{raw}");
        assert_eq!(sent, raw.trim().as_bytes(), "as sent: {raw}");
    }
    for raw in ["", "a b", "host:port", "[::1", "[::1]x"] {
        assert!(parse_host_header(&Bytes::from(raw)).is_err(), "{raw:?}");
    }
}

#[test]
fn te_trailers_is_read_among_the_codings() {
    let te = |v: &str| {
        let req = format!("GET / HTTP/1.1\r\nHost: a\r\nTE: {v}\r\n\r\n");
        parse_all_splits(req.as_bytes()).unwrap().0.te_trailers
    };
    assert!(te("trailers"));
    assert!(te("gzip;q=0.5, Trailers"));
    assert!(!te("gzip"));
    assert!(!te("trailersx"));
    let none = parse_all_splits(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert!(!none.0.te_trailers);
}
