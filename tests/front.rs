//! The HTTP front against hostile and heavy clients, on real sockets against the real binary:
//! unsupported versions (H1), refusals a plain client can read (#25.1), the per-host limit
//! counting only connections without a complete request (#25.2, #25.4), deadlines for bodies
//! and for clients that never read (M7), the memory bounds (M6), strict framing (L5) and a
//! bounded fuzz of the request head (#32.4). Counts and orders are asserted, not timings.

mod common;

use common::fuzz::Rng;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const SIGN: &str = "cus-sec_SpcSignDataAsPEM";

fn sign_body(i: usize) -> Vec<u8> {
    json!({"_method": SIGN, "args": {"inData": format!("order-{i}")}})
        .to_string()
        .into_bytes()
}

/// Sends `raw` on a new connection and reads until the server closes (or `timeout`).
fn exchange(addr: SocketAddr, raw: &[u8], timeout: Duration) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.write_all(raw);
    read_until_closed(&mut s, timeout)
}

/// Every response in `raw`, one after the other (each framed by its Content-Length).
fn responses(mut raw: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while let Some(r) = parse_response(raw) {
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let len = r.body.len();
        raw = &raw[(end + 4 + len).min(raw.len())..];
        out.push(r);
    }
    out
}

#[test]
fn http2_and_http3_request_lines_get_505_and_do_not_use_up_the_connections() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({"log": {"verbose": false}}));
    proxy.wait_healthy();
    // more than `server.max_connections` (1024): each used to hold its thread forever
    for i in 0..1100 {
        let version = if i % 2 == 0 { "HTTP/2.0" } else { "HTTP/3.0" };
        let raw = format!("GET /health {version}\r\nHost: x\r\n\r\n");
        let (out, closed) = exchange(proxy.addr, raw.as_bytes(), Duration::from_secs(5));
        let r = parse_response(&out).unwrap_or_else(|| {
            panic!(
                "request {i}: no answer: {:?}",
                String::from_utf8_lossy(&out)
            )
        });
        assert_eq!(r.status, 505, "request {i}");
        assert!(closed, "request {i}: the connection was left open");
    }
    let r = proxy.get("/health");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A plain keep-alive client that writes a request's head, then its body in pieces (as many
/// HTTP libraries do), then reads the answer.
struct PieceClient {
    stream: std::io::BufReader<TcpStream>,
}

impl PieceClient {
    fn connect(addr: SocketAddr) -> PieceClient {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        PieceClient {
            stream: std::io::BufReader::new(s),
        }
    }

    /// `None` when the connection broke (reset, broken pipe, or closed with no answer).
    fn send(&mut self, body: &[u8]) -> Option<Resp> {
        use std::io::BufRead;
        let head = format!(
            "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).ok()?;
        for piece in body.chunks(8 * 1024) {
            s.write_all(piece).ok()?;
        }
        let mut raw = Vec::new();
        while !raw.ends_with(b"\r\n\r\n") {
            let n = self.stream.read_until(b'\n', &mut raw).ok()?;
            if n == 0 {
                return None;
            }
        }
        let mut r = parse_response(&raw)?;
        let len = r.header("Content-Length")?.parse().ok()?;
        r.body = vec![0; len];
        self.stream.read_exact(&mut r.body).ok()?;
        Some(r)
    }
}

#[test]
fn every_refusal_over_capacity_is_a_readable_503_with_retry_after() {
    let sim = simulator();
    sim.faults().set_latency(Duration::from_millis(40));
    let proxy = Proxy::start(
        &sim.url(),
        json!({"server": {"max_connections": 4},
               "ukey": {"timeout_ms": 20000, "health_interval_s": 3600},
               "log": {"verbose": false}}),
    );
    proxy.wait_healthy();
    let addr = proxy.addr;
    // 24 keep-alive clients against 4 connections; after a refusal (Connection: close) or a
    // broken connection each opens a new one
    let clients: Vec<_> = (0..24)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = PieceClient::connect(addr);
                let mut seen = Vec::new();
                for k in 0..4 {
                    // large enough that the client is still sending when a refusal comes
                    let body = json!({"_method": SIGN,
                                      "args": {"inData": format!("{c}-{k}-{}", "x".repeat(64_000))}});
                    let r = client.send(body.to_string().as_bytes());
                    if r.as_ref().is_none_or(|r| r.header("Connection") == Some("close")) {
                        client = PieceClient::connect(addr);
                    }
                    seen.push(r);
                }
                seen
            })
        })
        .collect();
    let (mut ok, mut refused, mut broken) = (0, 0, 0);
    for c in clients {
        for r in c.join().unwrap() {
            let Some(r) = r else {
                broken += 1;
                continue;
            };
            match r.status {
                200 => ok += 1,
                503 => {
                    refused += 1;
                    assert!(r.header("Retry-After").is_some(), "{:?}", r.headers);
                    assert!(r.json()["error"].is_string(), "{}", r.text());
                }
                s => panic!("unexpected {s}: {}", r.text()),
            }
        }
    }
    assert_eq!(
        broken, 0,
        "{broken} connections ended in a reset or broken pipe ({ok} answered, {refused} refused)"
    );
    assert!(ok > 0 && refused > 0, "{ok} answered, {refused} refused");
}

#[test]
fn one_hosts_calls_waiting_for_the_card_are_not_capped_by_the_per_host_limit() {
    let sim = simulator();
    sim.faults().set_latency(Duration::from_millis(30));
    let proxy = Proxy::start(
        &sim.url(),
        json!({"server": {"max_connections_per_ip": 4},
               "ukey": {"timeout_ms": 20000, "health_interval_s": 3600},
               "log": {"verbose": false}}),
    );
    proxy.wait_healthy();
    let addr = proxy.addr;
    // 16 parallel calls from one host: they wait for the card with their requests complete
    let calls: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                Client::connect(addr)
                    .send("POST", "/rpc", &[], &sign_body(i))
                    .map(|r| (r.status, r.text()))
            })
        })
        .collect();
    let statuses: Vec<_> = calls.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(
        statuses
            .iter()
            .all(|s| s.as_ref().is_some_and(|(status, _)| *status == 200)),
        "every call of the batch is answered: {statuses:?}"
    );
}

#[test]
fn half_open_connections_of_one_host_do_not_lock_out_another() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({"log": {"verbose": false}}));
    proxy.wait_healthy();
    let mut held = Vec::new();
    for i in 0..500 {
        let mut s = connect_from([127, 0, 0, 2], proxy.addr).expect("connect from 127.0.0.2");
        // nothing, half a head, or a head with half a body
        let _ = match i % 3 {
            0 => Ok(()),
            1 => s.write_all(b"POST /rpc HTTP/1.1\r\nHost: x\r\n"),
            _ => s.write_all(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"),
        };
        held.push(s);
    }
    let mut client = Client::connect_from([127, 0, 0, 1], proxy.addr);
    let r = client
        .send("POST", "/rpc", &[], &sign_body(1))
        .expect("answered");
    assert_eq!(r.status, 200, "{}", r.text());
    drop(held);
}

#[test]
fn a_body_trickled_in_is_cut_with_408_at_the_body_deadline() {
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"server": {"body_timeout_ms": 800, "read_timeout_ms": 10000}}),
    );
    proxy.wait_healthy();
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    // one byte every 150 ms: each well within the read timeout, the body never ends
    let mut answer = Vec::new();
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(150));
        if s.write_all(b"x").is_err() {
            break;
        }
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1024];
        if let Ok(n) = s.read(&mut buf) {
            answer.extend_from_slice(&buf[..n]);
            s.set_nonblocking(false).unwrap();
            break;
        }
        s.set_nonblocking(false).unwrap();
    }
    let (rest, closed) = read_until_closed(&mut s, Duration::from_secs(5));
    answer.extend_from_slice(&rest);
    let r = parse_response(&answer).expect("an answer to the trickled body");
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(closed, "the connection is closed after the 408");
}

#[test]
fn a_pipelining_client_that_never_reads_is_closed() {
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"server": {"read_timeout_ms": 300}, "log": {"verbose": true}}),
    );
    proxy.wait_healthy();
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    let one = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    let count = 3000;
    let all: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * count)
        .collect();
    s.write_all(&all).unwrap();
    // the server's writes block on a client that does not read, until the write timeout
    proxy.wait_log("could not send the response", Duration::from_secs(20));
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(20));
    assert!(closed, "the connection was closed");
    // the requests after the blocked answer were never served (the access log counts them)
    let served = proxy.log().matches("GET /openapi.json").count();
    assert!(
        served < count,
        "all {count} pipelined requests were served to a client that did not read"
    );
}

#[test]
fn a_request_head_is_bounded_in_total_size() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    let line = format!("X-Filler: {}\r\n", "a".repeat(8000));
    let raw = format!("GET /health HTTP/1.1\r\nHost: x\r\n{}\r\n", line.repeat(5));
    let (out, closed) = exchange(proxy.addr, raw.as_bytes(), Duration::from_secs(5));
    let r = parse_response(&out).expect("an answer");
    assert_eq!(r.status, 431, "{}", r.text());
    assert!(closed);
}

#[test]
fn pending_bodies_are_held_against_one_memory_budget() {
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"server": {"max_connections_per_ip": 200}, "log": {"verbose": false}}),
    );
    proxy.wait_healthy();
    // the budget (128 MiB) holds at most 64 bodies declared at the largest size (2 MiB): of
    // 70 such requests, at least 6 are refused while the others wait for their bodies
    let head = "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n{";
    let mut held: Vec<(TcpStream, Vec<u8>)> = (0..70)
        .map(|_| {
            let mut s = TcpStream::connect(proxy.addr).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            s.set_nonblocking(true).unwrap();
            (s, Vec::new())
        })
        .collect();
    let refused = wait_for(Duration::from_secs(20), "6 bodies past the budget", || {
        let mut refused = Vec::new();
        for (s, seen) in held.iter_mut() {
            let mut buf = [0u8; 1024];
            if let Ok(n) = s.read(&mut buf) {
                seen.extend_from_slice(&buf[..n]);
            }
            if let Some(r) = parse_response(seen) {
                refused.push(r);
            }
        }
        (refused.len() >= 6).then_some(refused)
    });
    for r in refused {
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.header("Retry-After").is_some(), "{:?}", r.headers);
        assert!(r.text().contains("bodies"), "{}", r.text());
    }
    drop(held);
    // and given back when they go
    wait_for(
        Duration::from_secs(10),
        "the budget to be given back",
        || (proxy.rpc(SIGN, json!({"inData": "after"})).status == 200).then_some(()),
    );
}

#[test]
fn ambiguous_framing_is_refused_and_upgrade_does_not_read_to_the_end() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let smuggled = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases = [
        ("Content-Length: abc\r\n", 400),
        ("Content-Length: -1\r\n", 400),
        ("Content-Length: +35\r\n", 400),
        ("Content-Length: 0x23\r\n", 400),
        ("Content-Length: 5, 5\r\n", 400),
        ("Content-Length: 99999999999999999999999\r\n", 400),
        ("Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        ("Transfer-Encoding: gzip\r\n", 501),
        ("Transfer-Encoding: identity\r\n", 501),
        ("Transfer-Encoding: xchunked\r\n", 501),
        ("Transfer-Encoding: chunked\r\nContent-Length: 35\r\n", 400),
    ];
    for (headers, status) in cases {
        let raw = format!("POST /rpc HTTP/1.1\r\nHost: x\r\n{headers}\r\n{smuggled}");
        let (out, closed) = exchange(proxy.addr, raw.as_bytes(), Duration::from_secs(5));
        let answers = responses(&out);
        assert_eq!(
            answers.len(),
            1,
            "{headers:?}: the body ran as a request: {answers:?}"
        );
        assert_eq!(
            answers[0].status,
            status,
            "{headers:?}: {}",
            answers[0].text()
        );
        assert!(closed, "{headers:?}: the connection stays open");
    }
    // Connection: upgrade used to read the body until the client closed
    let body = sign_body(1);
    let raw = format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while parse_response(&out).is_none_or(|r| {
        r.body.len()
            < r.header("Content-Length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0)
    }) {
        let n = s
            .read(&mut buf)
            .expect("answered while the client keeps its side open");
        assert!(n > 0, "closed without an answer");
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(parse_response(&out).unwrap().status, 200);
}

/// A request head mutated at random: bytes flipped, inserted, deleted or duplicated, with the
/// characters that matter to a parser (CR, LF, colon, space, NUL, bytes above 0x7f) favoured.
fn mutated_head(rng: &mut Rng) -> Vec<u8> {
    const SEEDS: [&str; 6] = [
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        "POST /rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "POST /rpc HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
        "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n\r\n",
    ];
    const SPECIAL: [u8; 10] = [b'\r', b'\n', b':', b' ', 0, 0xff, 0x80, b'\t', b'9', b'/'];
    let mut head = SEEDS[rng.below(SEEDS.len())].as_bytes().to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(head.len() + 1);
        let byte = if rng.below(2) == 0 {
            SPECIAL[rng.below(SPECIAL.len())]
        } else {
            rng.next() as u8
        };
        match rng.below(5) {
            0 if at < head.len() => head[at] = byte,
            1 => head.insert(at, byte),
            2 if at < head.len() => {
                let end = (at + 1 + rng.below(8)).min(head.len());
                head.drain(at..end);
            }
            3 => {
                let end = (at + 1 + rng.below(40)).min(head.len());
                let piece = head[at.min(head.len())..end].to_vec();
                for (i, b) in piece.into_iter().enumerate() {
                    head.insert(at + i, b);
                }
            }
            _ => head.truncate(at.max(1)),
        }
    }
    head
}

/// Sends `head` (then ends the sending side when `half_close`) and checks what comes back.
fn fuzz_one(addr: SocketAddr, head: &[u8], half_close: bool) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.write_all(head);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(3));
    // the server answers or closes: nothing waits past the deadlines
    assert!(
        closed,
        "no close within 3 s for {:?}",
        String::from_utf8_lossy(head)
    );
    if out.is_empty() {
        return;
    }
    let answers = responses(&out);
    assert!(
        !answers.is_empty() && out.starts_with(b"HTTP/1."),
        "malformed answer {:?} to {:?}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(head)
    );
    for r in answers {
        assert!((100..600).contains(&r.status), "status {}", r.status);
        assert_ne!(
            r.status,
            500,
            "a 500 for {:?}",
            String::from_utf8_lossy(head)
        );
    }
}

#[test]
fn fuzzed_request_heads_get_a_well_formed_answer_or_a_close_and_never_a_hang() {
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"server": {"header_timeout_ms": 300, "body_timeout_ms": 300, "read_timeout_ms": 300},
               "log": {"verbose": false}}),
    );
    proxy.wait_healthy();
    let addr = proxy.addr;
    // four clients at once, each with its own fixed seed, for about 2 s
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            std::thread::spawn(move || {
                let mut rng = Rng(0x00C0_FFEE_D00D_F00D ^ (w + 1).wrapping_mul(0x9E37_79B9));
                let started = Instant::now();
                let mut cases = 0;
                while started.elapsed() < Duration::from_secs(2) {
                    fuzz_one(addr, &mutated_head(&mut rng), rng.below(4) != 0);
                    cases += 1;
                }
                cases
            })
        })
        .collect();
    let cases: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    eprintln!("{cases} fuzzed heads against the binary");
    assert!(cases > 50, "only {cases} cases ran");
    assert_eq!(
        proxy.get("/health").status,
        200,
        "still serving after {cases} cases"
    );
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
}
