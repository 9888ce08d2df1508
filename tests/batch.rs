//! The ERP's batch from one host (#25.2, #25.3): every call ends with a 200 or a readable 503
//! with `Retry-After`, a second host's call is served ahead of the batch (round-robin by client
//! address), and a host that fills its share of the queue is turned away while another is not.
//! Counts and orders only; the timings are in `benches/batch.rs`.

mod common;

use common::*;
use serde_json::json;
use std::sync::mpsc;
use std::time::Duration;

const SIGN: &str = "cus-sec_SpcSignDataAsPEM";

fn sign_body(data: &str) -> Vec<u8> {
    json!({"_method": SIGN, "args": {"inData": data}})
        .to_string()
        .into_bytes()
}

/// A 503 as a plain client reads it: `Retry-After` and a JSON error saying busy.
fn assert_readable_503(r: &Resp) {
    let after: u64 = r
        .header("Retry-After")
        .expect("a 503 says when to retry")
        .parse()
        .expect("Retry-After in seconds");
    assert!(after >= 1);
    let e = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains("busy"), "{e}");
}

/// The answers counted as (200, readable 503); any other status fails the test.
fn tally(answers: impl Iterator<Item = Resp>) -> (usize, usize) {
    let (mut ok, mut shed) = (0, 0);
    for r in answers {
        match r.status {
            200 => ok += 1,
            503 => {
                assert_readable_503(&r);
                shed += 1;
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    (ok, shed)
}

fn pending(proxy: &Proxy) -> usize {
    proxy
        .get("/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("chinaport_ukey_calls_pending "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The position among the card's signing calls of the one that signs `data`.
fn position(sim: &chinaport_proxy::simulator::Simulator, data: &str) -> Option<usize> {
    sim.received()
        .iter()
        .filter(|f| f["_method"] == SIGN)
        .position(|f| f["args"]["inData"] == data)
}

#[test]
fn a_batch_of_128_from_one_host_is_answered_and_a_second_host_goes_ahead_of_it() {
    let sim = simulator();
    sim.faults().set_latency(Duration::from_millis(30));
    let proxy = Proxy::start(
        &sim.url(),
        json!({"ukey": {"timeout_ms": 3000, "health_interval_s": 3600}, "log": {"verbose": false},
               // the second host plays a LAN host (127.0.0.2)
               "auth": {"allow_unauthenticated": true}}),
    );
    proxy.wait_healthy();
    assert_eq!(proxy.rpc(SIGN, json!({"inData": "warm-up"})).status, 200);
    let addr = proxy.addr;
    // 128 keep-alive callers from 127.0.0.1, two calls each: more card work than one budget
    let callers: Vec<_> = (0..128)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = Client::connect_from([127, 0, 0, 1], addr);
                (0..2)
                    .map(|k| client.send("POST", "/rpc", &[], &sign_body(&format!("a-{c}-{k}"))))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    wait_for(Duration::from_secs(5), "the batch to be waiting", || {
        (pending(&proxy) >= 64).then_some(())
    });
    let sent_before = sim
        .received()
        .iter()
        .filter(|f| f["_method"] == SIGN)
        .count();
    let mut b = Client::connect_from([127, 0, 0, 2], addr);
    let r = b
        .send("POST", "/rpc", &[], &sign_body("host-b"))
        .expect("host b's answer");
    assert_eq!(r.status, 200, "{}", r.text());
    let at = position(&sim, "host-b").expect("host b's call reached the card");
    // behind the call on the card and at most one of host a's (slack: a few sent meanwhile)
    assert!(
        at <= sent_before + 3,
        "host b's call was the card's call {at}, with {sent_before} sent when it came"
    );
    let (ok, shed) = tally(callers.into_iter().flat_map(|c| {
        c.join()
            .unwrap()
            .into_iter()
            .map(|r| r.expect("every call gets a readable answer; none is broken"))
    }));
    assert_eq!(ok + shed, 256);
    assert!(ok > 0, "no call of the batch was answered");
}

#[test]
fn a_host_that_fills_its_share_is_turned_away_and_another_is_served() {
    let sim = simulator();
    sim.faults().set_latency(Duration::from_millis(300));
    // a share is half of max_queue: 4 waiting calls per host
    let proxy = Proxy::start(
        &sim.url(),
        json!({"ukey": {"timeout_ms": 8000, "max_queue": 8, "health_interval_s": 3600},
               "log": {"verbose": false}, "auth": {"allow_unauthenticated": true}}),
    );
    proxy.wait_healthy();
    let addr = proxy.addr;
    let (tx, rx) = mpsc::channel();
    let callers: Vec<_> = (0..12)
        .map(|i| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect_from([127, 0, 0, 1], addr);
                let r = client
                    .send("POST", "/rpc", &[], &sign_body(&format!("a-{i}")))
                    .expect("a readable answer");
                let _ = tx.send(r.status);
                r
            })
        })
        .collect();
    // once host a has been turned away at least once, host b asks
    loop {
        let status = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("an answer to host a");
        if status == 503 {
            break;
        }
    }
    let mut b = Client::connect_from([127, 0, 0, 2], addr);
    let r = b
        .send("POST", "/rpc", &[], &sign_body("host-b"))
        .expect("host b's answer");
    assert_eq!(r.status, 200, "{}", r.text());
    let (ok, shed) = tally(callers.into_iter().map(|c| c.join().unwrap()));
    assert_eq!(ok + shed, 12);
    assert!(
        ok <= 5,
        "host a got {ok} calls through a share of 4 (+1 on the card)"
    );
}
