//! #30.2, #30.3, L7: what ends a webhook event (only a 2xx or 410 Gone), that an event is never
//! sent unsigned, that a receiver whose clock jumped gets everything once the clocks agree, the
//! marker's loss bound under SIGKILL, and a full journal refusing requests instead of serving them
//! unaudited. Every receiver is a real HTTP server on 127.0.0.1; backoffs are scaled down.

mod common;

use common::receiver::Receiver;
use common::*;
use serde_json::json;
use std::time::Duration;

const SECRET: &str = "test-app-secret-9f2";
const SIGN: &str = "cus-sec_SpcSignDataAsPEM";

fn body(data: &str) -> String {
    json!({"_method": SIGN, "args": {"inData": data}}).to_string()
}

/// Audit webhooks to `rx`, retried after 20 ms doubling up to 100 ms.
fn overlay(rx: &Receiver, extra: serde_json::Value) -> serde_json::Value {
    let mut o = json!({
        "auth": {"app_secret": SECRET},
        "webhook": {"audit_url": rx.url("/hooks/audit"), "retry_first_ms": 20, "retry_max_ms": 100},
    });
    merge(&mut o, &extra);
    o
}

fn start(
    sim: &chinaport_proxy::simulator::Simulator,
    rx: &Receiver,
    env: &[(&str, &str)],
) -> Proxy {
    let mut config = Proxy::base_config(&sim.url());
    merge(&mut config, &overlay(rx, json!({})));
    let proxy = Proxy::start_with_env(TempDir::new("delivery"), &config, env);
    proxy.wait_healthy();
    proxy
}

fn call(proxy: &Proxy, tag: &str) -> String {
    let r = signed(proxy.addr, "POST", "/rpc", &body(tag), SECRET);
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("X-Request-ID").unwrap().to_string()
}

fn audit_ids(rx: &Receiver) -> Vec<String> {
    rx.of_kind("api_audit")
        .iter()
        .map(|e| e.body["request_id"].as_str().unwrap().to_string())
        .collect()
}

fn wait_delivered(proxy: &Proxy, rx: &Receiver, sent: &[String]) {
    wait_for(Duration::from_secs(10), "every audit", || {
        (audit_ids(rx).len() >= sent.len()).then_some(())
    });
    wait_for(Duration::from_secs(5), "an empty backlog", || {
        (proxy.get("/health").json()["webhook_backlog"]["events"] == 0).then_some(())
    });
}

fn metric(proxy: &Proxy, name: &str) -> Option<f64> {
    proxy.get("/metrics").text().lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[test]
fn every_4xx_but_410_is_retried_shown_as_backlog_and_arrives_once_in_order() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    let proxy = start(&sim, &rx, &[]);
    rx.set_status(400);
    let mut sent: Vec<String> = (0..2).map(|i| call(&proxy, &format!("held{i}"))).collect();
    // failing: the receiver has been asked more than once, and both wait as backlog
    wait_for(Duration::from_secs(10), "retries of a 400", || {
        (rx.attempts().len() >= 3).then_some(())
    });
    let h = proxy.get("/health").json();
    assert_eq!(h["webhook_backlog"]["events"], 2, "{h}");
    assert_eq!(
        metric(&proxy, "chinaport_webhook_events_pending"),
        Some(2.0)
    );
    // each of these answers is followed by a retry, not the end of the event
    rx.set_status(200);
    rx.script(&[401, 403, 404, 409, 413, 422, 500, 503]);
    sent.extend((0..3).map(|i| call(&proxy, &format!("after{i}"))));
    wait_delivered(&proxy, &rx, &sent);
    assert_eq!(audit_ids(&rx), sent, "every audit exactly once, in order");
}

#[test]
fn a_receiver_whose_clock_jumped_gets_every_record_once_the_clocks_agree() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    rx.set_strict(true);
    let proxy = start(&sim, &rx, &[]);
    let mut sent = vec![call(&proxy, "before")];
    wait_delivered(&proxy, &rx, &sent);
    // the receiver's clock jumps 10 s ahead: every signature is outside its 3 s window
    rx.set_clock_offset(10_000);
    sent.extend((0..3).map(|i| call(&proxy, &format!("jumped{i}"))));
    wait_for(Duration::from_secs(10), "401s after the jump", || {
        (rx.attempts().iter().filter(|a| a.status == 401).count() >= 3).then_some(())
    });
    assert_eq!(audit_ids(&rx).len(), 1);
    rx.set_clock_offset(0);
    wait_delivered(&proxy, &rx, &sent);
    assert_eq!(audit_ids(&rx), sent);
    // each attempt was signed afresh: the one accepted carries a current timestamp
    assert!(rx.of_kind("api_audit").iter().all(|e| e.signature_ok));
}

#[test]
fn a_failure_to_sign_is_retried_and_never_sent_unsigned() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    rx.set_strict(true);
    let proxy = start(&sim, &rx, &[("CHINAPORT_TEST_SIGN_FAILURES", "3")]);
    let sent: Vec<String> = (0..2).map(|i| call(&proxy, &format!("s{i}"))).collect();
    wait_delivered(&proxy, &rx, &sent);
    assert_eq!(audit_ids(&rx), sent);
    proxy.wait_log("not sent, retried", Duration::from_secs(1));
    let attempts = rx.attempts();
    assert!(
        attempts.iter().all(|a| a.signed && a.status == 200),
        "an unsigned or refused attempt: {attempts:?}"
    );
}

#[test]
fn receiver_down_then_up_gets_every_record_once_in_order() {
    let sim = simulator();
    let mut rx = Receiver::start(SECRET);
    let proxy = start(&sim, &rx, &[]);
    rx.down();
    let sent: Vec<String> = (0..10).map(|i| call(&proxy, &format!("d{i}"))).collect();
    // several attempts fail while it is down (the backoff is capped at 100 ms here; the 60 s
    // outage with the default cap is the same test with the default config, 60 s a run)
    proxy.wait_log("webhooks: still failing", Duration::from_secs(10));
    assert_eq!(proxy.get("/health").json()["webhook_backlog"]["events"], 10);
    rx.up();
    wait_delivered(&proxy, &rx, &sent);
    assert_eq!(audit_ids(&rx), sent);
}

#[test]
fn sigkill_after_delivery_repeats_at_most_the_marker_bound_and_loses_nothing() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    let dir = TempDir::new("kill");
    let journal = dir.path().join("journal.jsonl");
    let mut config = Proxy::base_config(&sim.url());
    merge(
        &mut config,
        &overlay(
            &rx,
            json!({"webhook": {"journal_path": journal.to_string_lossy()}}),
        ),
    );
    let mut proxy = Proxy::start_with_config(&config);
    proxy.wait_healthy();
    let sent: Vec<String> = (0..100).map(|i| call(&proxy, &format!("k{i}"))).collect();
    wait_for(Duration::from_secs(20), "every audit", || {
        (audit_ids(&rx).len() >= sent.len()).then_some(())
    });
    proxy.signal("KILL");
    proxy.wait_exit(Duration::from_secs(5));
    drop(proxy);
    let proxy = Proxy::start_with_config(&config);
    proxy.wait_healthy();
    wait_for(Duration::from_secs(10), "an empty backlog", || {
        (proxy.get("/health").json()["webhook_backlog"]["events"] == 0).then_some(())
    });
    let received = audit_ids(&rx);
    let repeated = received.len() - sent.len();
    assert!(
        repeated < 64,
        "{repeated} re-sent: more than the marker's bound"
    );
    // the duplicates are the last ones delivered, again in order, with the same X-Webhook-Seq
    assert_eq!(received[..sent.len()], sent[..]);
    assert_eq!(received[sent.len()..], sent[sent.len() - repeated..]);
    let seqs: Vec<u64> = rx
        .of_kind("api_audit")
        .iter()
        .map(|e| e.header("x-webhook-seq").unwrap().parse().unwrap())
        .collect();
    let mut unique = seqs.clone();
    unique.dedup();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sent.len(), "one seq per event: {seqs:?}");
}

#[test]
fn a_full_journal_refuses_requests_counts_them_across_restarts_and_logs_once() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    rx.set_status(503);
    let dir = TempDir::new("full");
    let journal = dir.path().join("journal.jsonl");
    let mut config = Proxy::base_config(&sim.url());
    merge(
        &mut config,
        &overlay(
            &rx,
            json!({"webhook": {"journal_path": journal.to_string_lossy(), "journal_max_bytes": 20000}}),
        ),
    );
    let mut proxy = Proxy::start_with_config(&config);
    proxy.wait_healthy();
    // a body whose record can never fit is refused before the card is used
    let big = signed(
        proxy.addr,
        "POST",
        "/rpc",
        &body(&"B".repeat(12_000)),
        SECRET,
    );
    assert_eq!(big.status, 507, "{}", big.text());
    assert!(
        big.json()["error"]
            .as_str()
            .unwrap()
            .contains("journal is full")
    );
    // alternating big (refused) and small (kept) calls log "full" once, not once per call
    let mut refused = 1;
    let mut small = 0;
    for i in 0..10 {
        let r = signed(proxy.addr, "POST", "/rpc", &body(&format!("s{i}")), SECRET);
        match r.status {
            200 => small += 1,
            507 => refused += 1,
            s => panic!("{s}: {}", r.text()),
        }
        let b = signed(
            proxy.addr,
            "POST",
            "/rpc",
            &body(&"B".repeat(12_000)),
            SECRET,
        );
        assert_eq!(b.status, 507);
        refused += 1;
    }
    assert!(small > 0);
    // small calls until the journal is full: the next is refused with the JSON error
    let refusal = wait_for(Duration::from_secs(10), "a full journal", || {
        let r = signed(proxy.addr, "POST", "/rpc", &body("fill"), SECRET);
        if r.status == 507 {
            return Some(r);
        }
        assert_eq!(r.status, 200);
        None
    });
    refused += 1;
    assert_eq!(
        refusal.json()["error"]
            .as_str()
            .map(|e| e.contains("refused")),
        Some(true)
    );
    let h = proxy.get("/health").json();
    assert_eq!(h["webhook_backlog"]["dropped"], refused, "{h}");
    let errors = proxy.log().matches("webhook journal is full").count();
    assert_eq!(errors, 1, "the full line flapped");
    // the count survives a kill, once the marker has it (within MARKER_EVERY)
    let marker = dir.path().join("journal.jsonl.delivered");
    wait_for(Duration::from_secs(5), "the count in the marker", || {
        let text = std::fs::read_to_string(&marker).ok()?;
        (text.split_whitespace().nth(1) == Some(&refused.to_string())).then_some(())
    });
    proxy.signal("KILL");
    proxy.wait_exit(Duration::from_secs(5));
    drop(proxy);
    let proxy = Proxy::start_with_config(&config);
    proxy.wait_healthy();
    assert_eq!(
        proxy.get("/health").json()["webhook_backlog"]["dropped"],
        refused
    );
}

#[test]
fn new_events_do_not_cut_the_backoff_short() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    rx.set_status(503);
    let mut config = Proxy::base_config(&sim.url());
    merge(
        &mut config,
        &overlay(
            &rx,
            json!({"webhook": {"retry_first_ms": 30_000, "retry_max_ms": 60_000}}),
        ),
    );
    let proxy = Proxy::start_with_config(&config);
    proxy.wait_healthy();
    call(&proxy, "first");
    wait_for(Duration::from_secs(5), "the first attempt", || {
        (!rx.attempts().is_empty()).then_some(())
    });
    // each of these wakes the sender; none may start an attempt before the 30 s backoff is over
    for i in 0..20 {
        call(&proxy, &format!("n{i}"));
    }
    assert_eq!(proxy.get("/health").json()["webhook_backlog"]["events"], 21);
    let attempts = rx.attempts().len();
    assert!(attempts < 3, "{attempts} attempts within the backoff");
}

/// A new connection per event cost the sender most of its time (connect, close, fresh buffers):
/// the sender must read each answer to its end so that the next event rides the same one.
#[test]
fn events_to_one_receiver_ride_one_kept_alive_connection() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    let proxy = start(&sim, &rx, &[]);
    // an answer with a body, which the sender must read for the connection to be kept
    rx.set_reply(&"x".repeat(4096));
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(call(&proxy, &format!("keep-alive-{i}")));
        // one at a time: each event is delivered before the next, so none share a batch
        wait_delivered(&proxy, &rx, &sent);
    }
    let peers: std::collections::BTreeSet<_> =
        rx.attempts().iter().filter_map(|a| a.peer).collect();
    assert_eq!(
        peers.len(),
        1,
        "20 events came over {} connections: {peers:?}",
        peers.len()
    );
}
