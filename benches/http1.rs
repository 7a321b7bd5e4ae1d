//! HTTP/1.1 hot path: request/response head parsing, chunked bodies, head rewriting.
//!
//! Run: `cargo bench --bench http1` (filter: `cargo bench --bench http1 -- parse_request`).
//! See benches/README.md for what each group guards.

use std::hint::black_box;
use std::net::SocketAddr;

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringgate::http1::body::{Chunk, ChunkedDecoder, LAST_CHUNK, encode_chunk};
use ringgate::http1::parse::{
    HeadLimits, Parsed, RequestHead, ResponseHead, ResponseLimits, parse_request, parse_response,
    take_request,
};
use ringgate::http1::write::{ClientFraming, request_head, response_head};
use ringgate::message::{self, BodyLength, ClientInfo, Request};

// Same allocator as the binary (src/main.rs), so the per-request Vec/Bytes allocations in
// the parser cost what they cost in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The defaults of `[http]` (src/config/mod.rs).
const LIMITS: HeadLimits = HeadLimits {
    max_request_line: 8 * 1024,
    max_head_bytes: 32 * 1024,
    max_headers: 100,
};

const RESPONSE_LIMITS: ResponseLimits = ResponseLimits {
    max_head_bytes: 64 * 1024,
    max_headers: 4096,
};

const SMALL_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

/// A typical browser navigation request: 15 headers, cookies, UA, ~800 bytes.
const BROWSER_GET: &[u8] = b"GET /account/orders?page=2&sort=date HTTP/1.1\r\n\
Host: shop.example.com\r\n\
Connection: keep-alive\r\n\
Cache-Control: max-age=0\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Dest: document\r\n\
Referer: https://shop.example.com/account/orders?page=1&sort=date\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9,de;q=0.8\r\n\
Cookie: session=5f2c1e0b9a7d4c3e8f6a1b2c3d4e5f60; _ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; theme=dark; cart=3f9a\r\n\
\r\n";

/// A typical upstream response to the request above.
const TYPICAL_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx\r\n\
Date: Tue, 14 May 2024 10:00:00 GMT\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Length: 48213\r\n\
Connection: keep-alive\r\n\
Keep-Alive: timeout=60\r\n\
Cache-Control: private, no-cache\r\n\
Vary: Accept-Encoding, Cookie\r\n\
Set-Cookie: session=5f2c1e0b9a7d4c3e8f6a1b2c3d4e5f60; Path=/; Secure; HttpOnly; SameSite=Lax\r\n\
Strict-Transport-Security: max-age=63072000; includeSubDomains\r\n\
X-Content-Type-Options: nosniff\r\n\
ETag: \"8c1f-5f2c1e0b\"\r\n\
\r\n";

/// What a stock nginx serving a static file answers (compare.sh's nginx backend): its
/// usual 8 header fields.
const NGINX_STATIC_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Tue, 01 Dec 2026 17:00:00 GMT\r\n\
Content-Type: application/octet-stream\r\n\
Content-Length: 12\r\n\
Last-Modified: Tue, 01 Dec 2026 16:59:00 GMT\r\n\
Connection: keep-alive\r\n\
ETag: \"692dca84-c\"\r\n\
Accept-Ranges: bytes\r\n\
\r\n";

/// A head with exactly 100 fields (Host + 99), the default `max_headers`.
fn hundred_header_get() -> Vec<u8> {
    let mut v = b"GET /api/v1/items/42 HTTP/1.1\r\nHost: api.example.com\r\n".to_vec();
    for i in 1..100 {
        v.extend_from_slice(
            format!("X-Custom-Header-{i:03}: value-{i:03}-abcdefghijklmnopqrstuvwxyz\r\n")
                .as_bytes(),
        );
    }
    v.extend_from_slice(b"\r\n");
    v
}

/// parse_request + take_request, as the connection loop does it; panics on anything but
/// a valid head so a bench can never silently measure a rejection path.
fn parse_and_take(buf: &mut BytesMut, limits: &HeadLimits) -> RequestHead {
    match parse_request(buf, limits) {
        Parsed::Complete(raw, used) => take_request(buf, raw, used).expect("valid request"),
        other => panic!("bench input did not parse: {other:?}"),
    }
}

fn parse_full_response(bytes: &[u8]) -> ResponseHead {
    match parse_response(&mut BytesMut::from(bytes), &RESPONSE_LIMITS) {
        Parsed::Complete(head, _) => head,
        other => panic!("bench response did not parse: {other:?}"),
    }
}

fn request_inputs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("small_get", SMALL_GET.to_vec()),
        ("browser", BROWSER_GET.to_vec()),
        ("100_headers", hundred_header_get()),
    ]
}

fn bench_parse_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_request");
    for (name, input) in request_inputs() {
        // Check once that the input is what we think it is.
        let head = parse_and_take(&mut BytesMut::from(&input[..]), &LIMITS);
        assert!(head.host.is_some());
        g.throughput(Throughput::Bytes(input.len() as u64));
        // httparse tokenising + offset recording only (no Bytes, no semantic checks).
        g.bench_with_input(BenchmarkId::new("tokenise", name), &input, |b, input| {
            b.iter(|| black_box(parse_request(black_box(input), &LIMITS)))
        });
        // Full path: tokenise, split the head off the buffer, build Header slices, run the
        // smuggling/Host/framing checks. The buffer copy is setup, not measured.
        g.bench_with_input(
            BenchmarkId::new("parse_and_take", name),
            &input,
            |b, input| {
                b.iter_batched(
                    || BytesMut::from(&input[..]),
                    |mut buf| parse_and_take(&mut buf, &LIMITS),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    // max_headers above the 128-slot stack array makes parse_request allocate its httparse
    // header array on the heap for every call.
    let input = hundred_header_get();
    let big_limits = HeadLimits {
        max_headers: 256,
        ..LIMITS
    };
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_with_input(
        BenchmarkId::new("tokenise", "100_headers_limit_256"),
        &input,
        |b, input| b.iter(|| black_box(parse_request(black_box(input), &big_limits))),
    );
    g.finish();
}

fn bench_parse_response(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_response");
    parse_full_response(TYPICAL_RESPONSE);
    g.throughput(Throughput::Bytes(TYPICAL_RESPONSE.len() as u64));
    g.bench_function("typical", |b| {
        b.iter_batched(
            || BytesMut::from(TYPICAL_RESPONSE),
            |mut buf| match parse_response(&mut buf, &RESPONSE_LIMITS) {
                Parsed::Complete(head, _) => head,
                _ => unreachable!(),
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

const BODY_LEN: usize = 1024 * 1024;

fn encoded_body(chunk_size: usize) -> BytesMut {
    let payload: Vec<u8> = (0..BODY_LEN).map(|i| (i % 251) as u8).collect();
    let mut out = BytesMut::new();
    for part in payload.chunks(chunk_size) {
        encode_chunk(&mut out, part);
    }
    out.extend_from_slice(LAST_CHUNK);
    out
}

/// Decodes a whole chunked body already in the buffer; returns the payload length.
fn decode_all(mut buf: BytesMut) -> usize {
    let mut dec = ChunkedDecoder::request();
    let mut total = 0;
    loop {
        match dec.decode(&mut buf).expect("valid chunked body") {
            Chunk::Data(d) => total += black_box(d).len(),
            Chunk::Done => return total,
            Chunk::NeedMore => panic!("body ended early"),
        }
    }
}

fn bench_chunked(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunked");
    // Throughput is payload bytes (1 MiB), not wire bytes: the 16-byte variant carries
    // ~37% framing overhead on the wire.
    g.throughput(Throughput::Bytes(BODY_LEN as u64));
    for (name, size) in [("4KiB_chunks", 4096), ("16B_chunks", 16)] {
        let wire = encoded_body(size);
        assert_eq!(decode_all(wire.clone()), BODY_LEN);
        g.bench_with_input(BenchmarkId::new("decode_1MiB", name), &wire, |b, wire| {
            b.iter_batched(|| wire.clone(), decode_all, BatchSize::LargeInput)
        });
        let payload: Vec<u8> = (0..BODY_LEN).map(|i| (i % 251) as u8).collect();
        let mut out = BytesMut::with_capacity(wire.len());
        g.bench_with_input(
            BenchmarkId::new("encode_1MiB", name),
            &payload,
            |b, payload| {
                b.iter(|| {
                    out.clear();
                    for part in payload.chunks(size) {
                        encode_chunk(&mut out, part);
                    }
                    out.extend_from_slice(LAST_CHUNK);
                    black_box(out.len())
                })
            },
        );
    }
    g.finish();
}

fn bench_rewrite(c: &mut Criterion) {
    let mut g = c.benchmark_group("rewrite");
    let client = ClientInfo::new(SocketAddr::from(([203, 0, 113, 7], 54321)), "https");
    // The output buffer is reused (cleared) so the numbers are the formatting work, not
    // the allocator; production allocates a fresh 1 KiB / 512 B buffer per head.
    let mut out = BytesMut::with_capacity(16 * 1024);
    for (name, input) in [
        ("browser", BROWSER_GET.to_vec()),
        ("100_headers", hundred_header_get()),
    ] {
        let head = parse_and_take(&mut BytesMut::from(&input[..]), &LIMITS);
        let path = head.path();
        let req = Request {
            method: head.method.clone(),
            scheme: "https",
            authority: head.host.clone(),
            authority_sent: head.authority.clone(),
            path: path.clone(),
            headers: head.headers.clone(),
            body: BodyLength::None,
            client,
            tls: None,
            received: monoio::time::Instant::now(),
        };
        g.bench_with_input(BenchmarkId::new("request_head", name), &req, |b, req| {
            b.iter(|| {
                out.clear();
                request_head(
                    &mut out,
                    req,
                    &path,
                    req.body,
                    "backend:8080",
                    ringgate::config::ForwardHeaders::ALL,
                );
                black_box(out.len())
            })
        });
    }
    for (name, input) in [
        ("typical", TYPICAL_RESPONSE),
        ("nginx_static", NGINX_STATIC_RESPONSE),
    ] {
        let parsed = parse_full_response(input);
        let resp = message::ResponseHead {
            status: parsed.status,
            reason: parsed.reason.clone(),
            headers: parsed.headers.clone(),
        };
        let framing = match parsed.body {
            ringgate::http1::parse::BodyKind::Length(n) => ClientFraming::Length(n),
            other => panic!("unexpected framing {other:?}"),
        };
        g.bench_function(BenchmarkId::new("response_head", name), |b| {
            b.iter(|| {
                out.clear();
                response_head(
                    &mut out,
                    black_box(&resp),
                    framing,
                    parsed.version,
                    true,
                    false,
                );
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_parse_request,
    bench_parse_response,
    bench_chunked,
    bench_rewrite
);
criterion_main!(benches);
