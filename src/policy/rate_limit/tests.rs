//! The nginx arithmetic against sequences worked out by hand from
//! `ngx_http_limit_req_lookup` / `_account`, and the shared table against a
//! single-threaded reference.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::algo::{self, Charge, Params, State};
use super::table::{Occupancy, Step, Table, Updated};
use super::*;
use crate::policy::conn_limit::Admission;

/// `rate` (r/s), `burst`, `delay` (`None`: nodelay) in nginx's units.
fn p(rate_milli: u64, burst: u64, delay: Option<u64>) -> Params {
    Params {
        rate: rate_milli,
        burst: burst * 1000,
        delay: delay.map_or(u64::MAX, |d| d * 1000),
    }
}

/// Runs requests at the given times through the reference arithmetic: the excess of
/// each admitted one, `None` for each refused one.
fn run(times: &[u64], params: &Params) -> Vec<Option<u64>> {
    let mut state = None;
    times
        .iter()
        .map(|&t| match algo::charge(state, t, params) {
            Charge::Admit(s) => {
                state = Some(s);
                Some(s.excess)
            }
            Charge::Refuse { .. } => None,
        })
        .collect()
}

#[test]
fn the_seed_example_admits_burst_plus_one_at_once() {
    // 10r/s burst=20 nodelay, 100 requests in one millisecond: the first is a new key
    // (excess 0), each next adds 1000 until 20,000; the 22nd would be 21,000 > 20,000.
    let params = p(10_000, 20, None);
    let out = run(&[5; 100], &params);
    let admitted: Vec<u64> = out.iter().flatten().copied().collect();
    assert_eq!(admitted, (0..=20).map(|i| i * 1000).collect::<Vec<_>>());
    assert!(out[21..].iter().all(Option::is_none));
    // Refused at 21,000: 1,000 over, at 10 per ms → 100 ms → Retry-After 1.
    assert_eq!(algo::retry_after_secs(21_000, &params), 1);
    for e in admitted {
        assert_eq!(algo::delay_ms(e, &params), 0, "nodelay never waits");
    }
}

#[test]
fn excess_leaks_at_the_rate_with_integer_division() {
    let params = p(10_000, 20, None);
    let mut times = vec![1; 21];
    // 100 ms later exactly one more fits (20,000 - 1,000 + 1,000); a second does not;
    // 99 ms after that leaks 990 only (20,010 > 20,000); the next ms leaks 1,000.
    times.extend([101, 101, 200, 201]);
    let out = run(&times, &params);
    assert_eq!(&out[21..], &[Some(20_000), None, None, Some(20_000)]);
}

#[test]
fn rates_per_minute_keep_nginx_rounding() {
    // 600r/m is 10,000 milli-requests per second; 1r/m is 1000/60 = 16 (not 16.67).
    assert_eq!(
        crate::config::rate_limit::parse_rate("600r/m", 1_000_000),
        Ok(10_000)
    );
    assert_eq!(
        crate::config::rate_limit::parse_rate("1r/m", 1_000_000),
        Ok(16)
    );
    let params = p(16, 0, None);
    // After exactly 60 s only 960 has leaked: nginx refuses; at 62.5 s it admits.
    assert_eq!(
        run(&[1, 60_001, 62_500, 62_501], &params),
        vec![Some(0), None, None, Some(0)]
    );
    // Refused at excess 1,000 with 16 per second: 62.5 s → Retry-After 63.
    assert_eq!(algo::retry_after_secs(1_000, &params), 63);
}

#[test]
fn odd_rates_truncate_each_leak() {
    // 3r/s: 3 milli-requests per ms. burst=1.
    let params = p(3_000, 1, None);
    // t=1 new; t=2: 0-3+1000 → clamp… 997; t=3: 997-3+1000 = 1994 > 1000 refused;
    // t=336: 997 - 3000*334/1000 (1002) + 1000 = 995.
    assert_eq!(
        run(&[1, 2, 3, 336], &params),
        vec![Some(0), Some(997), None, Some(995)]
    );
}

#[test]
fn delay_admits_the_first_excess_at_once_and_the_rest_later() {
    // burst=20 delay=8 at 10r/s, all in one ms: excess 0..=8,000 pass at once, 9,000
    // waits (9,000-8,000)*1000/10,000 = 100 ms, 20,000 waits 1,200 ms.
    let params = p(10_000, 20, Some(8));
    let out: Vec<u64> = run(&[7; 21], &params).into_iter().flatten().collect();
    let delays: Vec<u64> = out.iter().map(|&e| algo::delay_ms(e, &params)).collect();
    assert_eq!(&delays[..9], &[0; 9]);
    assert_eq!(delays[9], 100);
    assert_eq!(delays[20], 1_200);
    // Neither nodelay nor delay: every excess waits (excess 1,000 → 100 ms).
    let params = p(10_000, 20, Some(0));
    assert_eq!(algo::delay_ms(1_000, &params), 100);
    assert_eq!(algo::delay_ms(0, &params), 0);
}

#[test]
fn a_spent_key_is_one_never_seen() {
    let params = p(10_000, 20, None);
    let s = State {
        last_ms: 100,
        excess: 5_000,
    };
    // 5,000 + 1,000 must leak: 600 ms at 10 per ms.
    assert!(!algo::is_spent(s, 699, &params));
    assert!(algo::is_spent(s, 700, &params));
    assert_eq!(
        algo::charge(Some(s), 700, &params),
        algo::charge(None, 700, &params)
    );
    // The packed word round-trips and is never EMPTY or BUSY.
    let w = algo::pack(s);
    assert_eq!(algo::unpack(w), s);
    assert_ne!(w, table::EMPTY);
    let top = algo::pack(State {
        last_ms: (1 << 38) - 1,
        excess: algo::MAX_BURST * 1000,
    });
    assert_ne!(top, table::BUSY);
}

#[test]
fn the_store_answers_as_the_reference_for_sequential_use() {
    let params = p(10_000, 20, Some(8));
    let store = LocalStore::new(1000);
    let mut times = vec![3; 30];
    times.extend((0..200).map(|i| 3 + i * 37));
    let reference = run(&times, &params);
    let got: Vec<Option<u64>> = times
        .iter()
        .map(|&t| match store.charge(b"10.0.0.1", t, &params) {
            Charged::Admitted { excess, .. } => Some(excess),
            Charged::Refused { .. } => None,
            Charged::Full => panic!("room for one key"),
        })
        .collect();
    assert_eq!(got, reference);
}

#[test]
fn keys_are_compared_exactly_short_and_long() {
    let table = Table::new(10);
    // Short keys are stored as they are, long ones as a 128-bit digest.
    assert_ne!(table.key(b"a"), table.key(b"a\0"));
    assert_ne!(table.key(&[0; 15]), table.key(&[0; 14]));
    let long_a = [b'a'; 40];
    let mut long_b = long_a;
    long_b[39] = b'b';
    assert_ne!(table.key(&long_a), table.key(&long_b));
    assert_eq!(table.key(&long_a), table.key(&long_a));
    let params = p(1_000, 0, None);
    let store = LocalStore::new(10);
    for k in [&b"x"[..], &long_a, &long_b, b"10.0.0.1", b"10.0.0.2"] {
        assert!(matches!(
            store.charge(k, 10, &params),
            Charged::Admitted { excess: 0, .. }
        ));
    }
    for k in [&b"x"[..], &long_a, &long_b] {
        assert!(matches!(
            store.charge(k, 10, &params),
            Charged::Refused { .. }
        ));
    }
}

/// Never reclaims, evicts the lowest word.
struct Lru;
impl Occupancy for Lru {
    fn reclaimable(&self, _: u64) -> bool {
        false
    }
    fn keep_rank(&self, word: u64) -> Option<u64> {
        Some(word)
    }
}
/// Never gives a slot up.
struct Keep;
impl Occupancy for Keep {
    fn reclaimable(&self, _: u64) -> bool {
        false
    }
    fn keep_rank(&self, _: u64) -> Option<u64> {
        None
    }
}

#[test]
fn a_full_neighbourhood_evicts_the_lowest_ranked_or_refuses() {
    let table = Table::new(1);
    let slots = table.capacity() as u64;
    let mut full = 0;
    for i in 0..slots {
        let key = table.key(&i.to_le_bytes());
        match table.update(key, &Keep, |_| Step::Store(i + 1, ())) {
            Updated::Stored { .. } => {}
            Updated::Full => full += 1,
            Updated::Declined(()) => unreachable!(),
        }
    }
    assert!(full > 0, "a table as full as its slots has full windows");
    // With eviction allowed every key finds a place.
    for i in slots..2 * slots {
        let key = table.key(&i.to_le_bytes());
        let stored = table.update(key, &Lru, |_| Step::Store(i + 1, ()));
        assert!(matches!(stored, Updated::Stored { .. }));
    }
}

#[test]
fn a_refund_restores_the_previous_state() {
    let params = p(10_000, 1, None);
    let store = LocalStore::new(10);
    let Charged::Admitted { receipt, .. } = store.charge(b"k", 50, &params) else {
        panic!("new key admitted");
    };
    store.refund(b"k", receipt);
    assert_eq!(store.state(b"k"), None, "a refunded new key is gone");
    // … and its next request is a new key's again (excess 0).
    assert!(matches!(
        store.charge(b"k", 50, &params),
        Charged::Admitted { excess: 0, .. }
    ));
    let before = store.state(b"k");
    let Charged::Admitted { receipt, .. } = store.charge(b"k", 50, &params) else {
        panic!("burst 1 admits a second");
    };
    store.refund(b"k", receipt);
    assert_eq!(store.state(b"k"), before);
}

#[test]
fn two_threads_on_one_hot_key_admit_exactly_what_one_would() {
    // Every request in the same millisecond: whatever the interleaving, exactly
    // burst + 1 pass (any order of the same requests gives the same answers).
    for _ in 0..20 {
        let params = p(10_000, 20, None);
        let store = Arc::new(LocalStore::new(100));
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (store, admitted) = (store.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        if let Charged::Admitted { .. } = store.charge(b"hot", 9, &params) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 21);
        assert_eq!(store.state(b"hot").map(|s| s.excess), Some(20_000));
    }
}

#[test]
fn two_threads_on_the_real_clock_stay_within_the_rate() {
    // With time moving, the count depends on timing; the bound does not: at most
    // burst + 1 plus what the rate leaks over the elapsed time.
    let params = p(100_000, 5, None); // 100r/s
    let store = Arc::new(LocalStore::new(100));
    let start = now_ms();
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (store, admitted) = (store.clone(), admitted.clone());
            std::thread::spawn(move || {
                for _ in 0..200_000 {
                    if let Charged::Admitted { .. } = store.charge(b"hot", now_ms(), &params) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let elapsed = now_ms() - start;
    let most = 5 + 1 + (100 * (elapsed + 1)).div_ceil(1000);
    let got = admitted.load(Ordering::Relaxed);
    assert!(got >= 6, "the burst passes: {got}");
    assert!(
        got <= most,
        "{got} admitted in {elapsed} ms (at most {most})"
    );
}

#[test]
fn a_request_without_the_key_is_not_counted() {
    use crate::config::{LimitKey, RateLimitConfig};
    let config = RateLimitConfig {
        name: "h".into(),
        key: LimitKey::Header("x-user".into()),
        rate: 1_000,
        rate_text: "1r/s".into(),
        burst: 0,
        delay: None,
        status: 429,
        max_keys: 10,
    };
    let limiter = Arc::new(Limiter::new(&config, None));
    let limits = [limiter];
    let mut req = request();
    for _ in 0..5 {
        assert_eq!(check(&limits, &[0], &req, 3), Decision::Continue);
    }
    req.headers.push(crate::message::Header {
        name: bytes::Bytes::from_static(b"X-User"),
        value: bytes::Bytes::from_static(b"alice"),
    });
    assert_eq!(check(&limits, &[0], &req, 3), Decision::Continue);
    let Decision::Refuse(r) = check(&limits, &[0], &req, 3) else {
        panic!("burst 0: the second request in a ms is refused");
    };
    assert_eq!(
        (r.status, r.retry_after_secs, r.reason),
        (429, 1, Reason::Burst)
    );
}

#[test]
fn the_first_refusal_answers_and_earlier_limits_are_refunded() {
    use crate::config::{LimitKey, RateLimitConfig};
    let mk = |name: &str, burst: u64, status: u16| RateLimitConfig {
        name: name.into(),
        key: LimitKey::ClientIp,
        rate: 1_000,
        rate_text: "1r/s".into(),
        burst,
        delay: None,
        status,
        max_keys: 10,
    };
    let wide = Arc::new(Limiter::new(&mk("wide", 5, 503), None));
    let narrow = Arc::new(Limiter::new(&mk("narrow", 0, 429), None));
    let limits = [wide.clone(), narrow];
    let req = request();
    assert_eq!(check(&limits, &[0, 1], &req, 3), Decision::Continue);
    let Decision::Refuse(r) = check(&limits, &[0, 1], &req, 3) else {
        panic!("narrow refuses the second");
    };
    assert_eq!((r.limit, r.status), (1, 429));
    // nginx charges no limit for a refused request: wide was charged for the first
    // request only, so its next is its second (excess 1,000, not 2,000).
    let mut buf = [0u8; 8];
    let key = key_of(&LimitKey::ClientIp, &req, &mut buf).expect("an address");
    assert!(matches!(
        wide.store.charge(key, 3, &wide.params),
        Charged::Admitted { excess: 1_000, .. }
    ));
}

fn request() -> Request {
    use bytes::Bytes;
    Request {
        method: Bytes::from_static(b"GET"),
        scheme: "https",
        authority: Some(Bytes::from_static(b"api.test")),
        authority_sent: Some(Bytes::from_static(b"api.test")),
        path: Bytes::from_static(b"/"),
        headers: Vec::new(),
        body: crate::message::BodyLength::None,
        client: crate::message::ClientInfo::new(
            "198.51.100.7:4000".parse().expect("address"),
            "https",
        ),
        tls: None,
        received: monoio::time::Instant::now(),
    }
}

#[test]
fn a_reload_keeps_the_state_of_an_unchanged_limit_and_the_connection_counts() {
    use crate::generation::Live;
    let text = |burst: u64, max_keys: u64| {
        format!(
            "[[listener]]\naddr = \"127.0.0.1:0\"\nmax_connections_per_ip = 5\n\
             [rate_limit.a]\nkey = \"client_ip\"\nrate = \"10r/s\"\nburst = {burst}\n\
             nodelay = true\nmax_keys = {max_keys}\n\
             [[route]]\nupstream = \"u\"\nrate_limit = [\"a\"]\n\
             [upstream.u]\nservers = [\"127.0.0.1:1\"]\n"
        )
    };
    let config = |t: &str| {
        crate::config::from_toml_str(t, "t.toml", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let live = Live::new(config(&text(20, 100))).expect("generation 1");
    let first = live.load_full();
    let req = request();
    assert_eq!(check(&first.rate_limits, &[0], &req, 5), Decision::Continue);
    let table = first.conn_limits[0].clone().expect("a limit");
    let Admission::Admit(Some(_guard)) = table.table.admit(req.client.addr.ip(), table.max) else {
        panic!("admitted");
    };
    // A new burst applies to the kept state: the key's second request sees excess 1,000.
    live.reload_with(config(&text(1, 100)), "test")
        .expect("reload");
    let second = live.load_full();
    assert!(Arc::ptr_eq(
        &first.rate_limits[0].store,
        &second.rate_limits[0].store
    ));
    assert_eq!(
        check(&second.rate_limits, &[0], &req, 5),
        Decision::Continue
    );
    assert!(matches!(
        check(&second.rate_limits, &[0], &req, 5),
        Decision::Refuse(_)
    ));
    let kept = second.conn_limits[0].clone().expect("a limit");
    assert!(Arc::ptr_eq(&table.table, &kept.table));
    assert_eq!(kept.table.open(req.client.addr.ip()), 1);
    // Another table size is another table: the counts start again.
    live.reload_with(config(&text(1, 200)), "test")
        .expect("reload");
    let third = live.load_full();
    assert!(!Arc::ptr_eq(
        &first.rate_limits[0].store,
        &third.rate_limits[0].store
    ));
    assert_eq!(check(&third.rate_limits, &[0], &req, 5), Decision::Continue);
}

#[test]
fn keys_come_from_the_address_by_64_the_field_or_the_certificate() {
    use crate::config::LimitKey;
    use crate::transport::tls::{ClientIdentity, ClientVerify, TlsInfo};
    use bytes::Bytes;
    let key = |k: &LimitKey, req: &Request| {
        let mut buf = [0u8; 8];
        key_of(k, req, &mut buf).map(<[u8]>::to_vec)
    };
    let at = |addr: &str| {
        let mut r = request();
        r.client = crate::message::ClientInfo::new(addr.parse().expect("addr"), "https");
        r
    };
    // IPv6: one key per /64; IPv4 (also IPv4-mapped): the address.
    let ip = LimitKey::ClientIp;
    assert_eq!(
        key(&ip, &at("[2001:db8:1:2::a]:1")),
        key(&ip, &at("[2001:db8:1:2:ffff::b]:2"))
    );
    assert_ne!(
        key(&ip, &at("[2001:db8:1:2::a]:1")),
        key(&ip, &at("[2001:db8:1:3::a]:1"))
    );
    assert_eq!(
        key(&ip, &at("[::ffff:10.0.0.1]:1")),
        Some(vec![10, 0, 0, 1])
    );
    // A field: case-insensitive name, the first one; an empty value is no key.
    let h = LimitKey::Header("x-api-user".into());
    let mut r = request();
    assert_eq!(key(&h, &r), None);
    r.headers.push(crate::message::Header {
        name: Bytes::from_static(b"X-Api-User"),
        value: Bytes::new(),
    });
    assert_eq!(
        key(&h, &r),
        None,
        "an empty value is not counted, as nginx's empty key"
    );
    r.headers[0].value = Bytes::from_static(b"alice");
    assert_eq!(key(&h, &r), Some(b"alice".to_vec()));
    // The verified certificate's subject; none without one.
    let dn = LimitKey::ClientCertDn;
    assert_eq!(key(&dn, &r), None);
    r.tls = Some(std::rc::Rc::new(TlsInfo {
        sni: None,
        alpn: None,
        version: None,
        cipher_suite: None,
        kx_group: None,
        resumed: false,
        handshake_duration: std::time::Duration::ZERO,
        client_chain: Vec::new(),
        client_verify: ClientVerify::Success,
        client_identity: Some(ClientIdentity {
            subject: Bytes::from_static(b"CN=partner,O=Example"),
            issuer: Bytes::new(),
            serial: Bytes::new(),
            fingerprint: Bytes::new(),
            escaped_pem: Bytes::new(),
            san_uri: Bytes::new(),
            san_dns: Bytes::new(),
            san_email: Bytes::new(),
        }),
        ktls: false,
    }));
    assert_eq!(key(&dn, &r), Some(b"CN=partner,O=Example".to_vec()));
}
