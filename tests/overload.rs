//! Load and abuse: every caller gets an answer within its budget or a fast 503 with
//! `Retry-After`; the card never works for a caller who is gone; waiting is not idleness; one
//! host cannot lock out another; failed authentication is audited with its address, bounded.
//! Timings here are generous bounds on promises, not performance figures (those are in
//! `benches/load.rs`).

mod common;

use common::receiver::Receiver;
use common::*;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

const SIGN: &str = "cus-sec_SpcSignDataAsPEM";

fn sign_body(i: usize) -> Vec<u8> {
    json!({"_method": SIGN, "args": {"inData": format!("order-{i}")}})
        .to_string()
        .into_bytes()
}

#[test]
fn a_burst_gets_answers_within_budget_or_fast_503s_with_retry_after() {
    let sim = simulator();
    sim.faults().set_latency(Duration::from_millis(150));
    let budget = Duration::from_millis(1500);
    let proxy = Proxy::start(
        &sim.url(),
        json!({"ukey": {"timeout_ms": budget.as_millis() as u64, "health_interval_s": 3600},
               "server": {"max_connections_per_ip": 128},
               "log": {"verbose": false}}),
    );
    proxy.wait_healthy();
    // one call first, so that the proxy knows the card's pace
    assert_eq!(proxy.rpc(SIGN, json!({"inData": "warm-up"})).status, 200);
    let sent_before = sim
        .received()
        .iter()
        .filter(|f| f["_method"] == SIGN)
        .count();
    let addr = proxy.addr;
    // 40 keep-alive clients, 3 calls each: ~18 s of card work against a 1.5 s budget
    let clients: Vec<_> = (0..40)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                (0..3)
                    .map(|k| {
                        let started = Instant::now();
                        let r = client.send("POST", "/rpc", &[], &sign_body(c * 10 + k));
                        (r, started.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let (mut ok, mut shed) = (0, 0);
    for c in clients {
        for (r, took) in c.join().unwrap() {
            let r = r.expect("every request gets an answer; none is dropped");
            assert!(
                took <= budget + Duration::from_millis(500),
                "answered after {took:?}, over the {budget:?} budget"
            );
            match r.status {
                200 => ok += 1,
                503 => {
                    shed += 1;
                    let after: u64 = r
                        .header("Retry-After")
                        .expect("a 503 under load says when to retry")
                        .parse()
                        .unwrap();
                    assert!(after >= 1);
                    assert!(
                        r.json()["error"].as_str().unwrap().contains("busy"),
                        "{}",
                        r.text()
                    );
                }
                s => panic!("unexpected {s}: {}", r.text()),
            }
        }
    }
    assert!(ok > 0 && shed > 0, "{ok} answered, {shed} shed");
    // the card only worked for callers who got its answer (a little slack for scheduling jitter)
    let sent = sim
        .received()
        .iter()
        .filter(|f| f["_method"] == SIGN)
        .count()
        - sent_before;
    assert!(
        sent >= ok && sent <= ok + 2,
        "{sent} calls reached the card for {ok} answers"
    );
}

#[test]
fn a_call_waiting_for_a_slow_card_is_answered_on_its_keep_alive_connection() {
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"ukey": {"timeout_ms": 6000},
               "server": {"read_timeout_ms": 800}}),
    );
    proxy.wait_healthy();
    sim.faults().set_latency(Duration::from_millis(2500));
    let mut client = Client::connect(proxy.addr);
    // waiting 2.5 s for the card, three times the idle timeout
    let r = client
        .send("POST", "/rpc", &[], &sign_body(1))
        .expect("answered, not cut by the idle timeout");
    assert_eq!(r.status, 200, "{}", r.text());
    sim.faults().set_latency(Duration::ZERO);
    let r = client
        .send("POST", "/rpc", &[], &sign_body(2))
        .expect("the same connection is still open");
    assert_eq!(r.status, 200);
}

#[test]
fn one_host_with_500_half_open_connections_does_not_lock_out_another() {
    let sim = simulator();
    // 127.0.0.2 and .3 stand for two computers on the LAN, served unsigned only when allowed
    let proxy = Proxy::start(
        &sim.url(),
        json!({"log": {"verbose": false}, "auth": {"allow_unauthenticated": true}}),
    );
    proxy.wait_healthy();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..500 {
        let mut s = connect_from([127, 0, 0, 2], proxy.addr).expect("connect from 127.0.0.2");
        s.write_all(b"POST /rpc HTTP/1.1\r\nHost: x\r\n").unwrap();
        held.push(s);
    }
    // those over the per-address cap (32 by default) are answered 503 at once and closed
    for s in held.iter_mut().skip(32) {
        let (out, closed) = read_until_closed(s, Duration::from_secs(5));
        let r = parse_response(&out).expect("an answer before the close");
        assert_eq!(r.status, 503);
        assert!(r.header("Retry-After").is_some());
        assert!(closed);
        refused += 1;
    }
    assert_eq!(refused, 468);
    let started = Instant::now();
    let mut other = Client::connect_from([127, 0, 0, 3], proxy.addr);
    let r = other
        .send("POST", "/rpc", &[], &sign_body(3))
        .expect("answered");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(held);
}

#[test]
fn a_request_head_trickled_in_is_cut_at_the_header_deadline() {
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"server": {"header_timeout_ms": 700, "read_timeout_ms": 10000}}),
    );
    proxy.wait_healthy();
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    let started = Instant::now();
    s.write_all(b"POST /rpc HTTP/1.1\r\n").unwrap();
    // one byte every 200 ms: each read is well within the read timeout, the head never ends
    let mut cut = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(200));
        if s.write_all(b"X").is_err() {
            cut = true;
            break;
        }
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        let gone = std::io::Read::read(&mut s, &mut buf).is_ok();
        s.set_nonblocking(false).unwrap();
        if gone {
            cut = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(cut, "the trickling client was never cut");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(4),
        "cut after {took:?}; header_timeout_ms is 700"
    );
    // and an ordinary request still goes through
    assert_eq!(proxy.rpc("cus-sec_SpcGetCertNo", json!({})).status, 200);
}

#[test]
fn failed_authentication_is_audited_with_its_address_and_bounded() {
    const SECRET: &str = "overload-secret";
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    let proxy = Proxy::start(
        &sim.url(),
        json!({"auth": {"app_secret": SECRET},
               "webhook": {"audit_url": rx.url("/audit")}}),
    );
    proxy.wait_healthy();
    for i in 0..12 {
        let mut c = Client::connect_from([127, 0, 0, 2], proxy.addr);
        let r = c
            .send(
                "POST",
                "/rpc",
                &[
                    ("X-Timestamp", &now_ms().to_string()),
                    ("X-Signature", "0123456789abcdef0123456789abcdef"),
                ],
                &sign_body(i),
            )
            .unwrap();
        assert_eq!(r.status, 401);
    }
    // a signed call from another host, audited after them (the journal keeps order)
    let body = json!({"_method": "cus-sec_SpcGetCertNo"}).to_string();
    let ts = now_ms().to_string();
    let sig = common::receiver::md5_hex(&format!("POST/rpc{ts}{body}{SECRET}"));
    let mut c = Client::connect_from([127, 0, 0, 3], proxy.addr);
    let r = c
        .send(
            "POST",
            "/rpc",
            &[("X-Timestamp", &ts), ("X-Signature", &sig)],
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let audits = wait_for(Duration::from_secs(10), "the signed call's audit", || {
        let a = rx.of_kind("api_audit");
        a.iter().any(|e| e.body["success"] == true).then_some(a)
    });
    let failures: Vec<_> = audits
        .iter()
        .filter(|e| e.body["success"] == false)
        .collect();
    assert_eq!(
        failures.len(),
        5,
        "the first 5 failures a minute per address are audited"
    );
    for f in &failures {
        assert_eq!(f.body["client_ip"], "127.0.0.2");
        assert!(
            f.body["error"]
                .as_str()
                .unwrap()
                .contains("authentication failed")
        );
        assert!(
            !f.raw.contains("0123456789abcdef"),
            "no signature value in the audit"
        );
    }
    let ok = audits.iter().find(|e| e.body["success"] == true).unwrap();
    assert_eq!(ok.body["client_ip"], "127.0.0.3");
    assert!(
        proxy.log().contains("127.0.0.3 POST /rpc"),
        "the log line names the address"
    );
}
