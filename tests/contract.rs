//! The proxy's side of the fleet contract (#26.1, docs/fleet.md): a 503 with `Retry-After`
//! means the card never received the call; a call the card received that then failed or timed
//! out answers 502/504 without `Retry-After`; payload errors are 4xx; every answer that involved
//! the card names it in `X-Cert-No`; `/health` is 200 only while the card can sign. The rows
//! not here are tested where their feature is: queue full (tests/batch.rs), lost after sending
//! (tests/bridge.rs), an unreadable reply (tests/hostile_card.rs).

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

const SIGN: &str = "cus-sec_SpcSignDataAsPEM";

fn sign_in_background(
    addr: std::net::SocketAddr,
    data: &'static str,
) -> std::thread::JoinHandle<Resp> {
    std::thread::spawn(move || {
        let body = json!({"_method": SIGN, "args": {"inData": data}}).to_string();
        request(addr, "POST", "/rpc", &[], body.as_bytes())
    })
}

#[test]
fn a_call_the_card_never_answered_is_504_and_one_never_sent_is_503_with_retry_after() {
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"ukey": {"timeout_ms": 1000, "health_interval_s": 3600}}),
    );
    proxy.wait_healthy();
    // the card's pace is 800 ms: a call queued behind a held one cannot make its 1 s budget
    sim.faults().set_latency(Duration::from_millis(800));
    assert_eq!(proxy.rpc(SIGN, json!({"inData": "pace"})).status, 200);
    sim.faults().set_silent(SIGN, true);
    let held = sign_in_background(proxy.addr, "held");
    wait_for(Duration::from_secs(5), "the held call on the card", || {
        sim.received()
            .iter()
            .any(|f| f["args"]["inData"] == "held")
            .then_some(())
    });
    let behind = sign_in_background(proxy.addr, "behind");
    let r = held.join().unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.header("Retry-After"), None);
    assert_eq!(r.header("X-Cert-No"), Some(sim.cert_no().as_str()));
    let r = behind.join().unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("Retry-After").is_some(), "{:?}", r.headers);
    assert_eq!(r.header("X-Cert-No"), None);
    assert!(
        !sim.received()
            .iter()
            .any(|f| f["args"]["inData"] == "behind"),
        "a 503 with Retry-After reached the card"
    );
}

#[test]
fn payload_errors_are_4xx_and_answers_from_the_card_name_it() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let cert_no = sim.cert_no();
    let r = proxy.rpc(SIGN, json!({"inData": "x"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Cert-No"), Some(cert_no.as_str()));
    // the card says no (a missing argument): 400, and it did see the call
    let r = proxy.rpc(SIGN, json!({}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("X-Cert-No"), Some(cert_no.as_str()));
    // a malformed request never reaches the card
    let r = proxy.post("/rpc", "{not json");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("X-Cert-No"), None);
    assert_eq!(
        proxy.get("/health").status,
        200,
        "a bad message does not eject the card"
    );
}

#[test]
fn disconnected_is_503_with_retry_after() {
    let sim = simulator();
    sim.faults().set_refuse(true);
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_log("UKey: cannot reach", Duration::from_secs(10));
    let r = proxy.rpc(SIGN, json!({"inData": "x"}));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("Retry-After").is_some());
    assert_eq!(proxy.get("/health").status, 503);
}

#[test]
fn health_is_503_when_the_card_is_removed_while_the_socket_stays_up() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({"ukey": {"health_interval_s": 1}}));
    proxy.wait_healthy();
    // the client software is up, the card is gone: every call fails, the socket stays
    sim.faults().set_error(
        "cus-sec_SpcGetCertNo",
        Some(vec!["未检测到卡,请插入卡".into(), "Err:Base50000".into()]),
    );
    wait_for(
        Duration::from_secs(10),
        "/health to say unavailable",
        || (proxy.get("/health").status == 503).then_some(()),
    );
    // it stays 503 across the reconnects while the card is out
    wait_for(Duration::from_secs(10), "a reconnect", || {
        (sim.connections_accepted() >= 2).then_some(())
    });
    let h = proxy.get("/health");
    assert_eq!(h.status, 503, "{}", h.text());
    sim.faults().set_error("cus-sec_SpcGetCertNo", None);
    proxy.wait_healthy();
}

#[test]
fn the_customs_endpoints_name_the_card_that_served_them() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let cert_no = sim.cert_no();
    let xml =
        "<CEB311Message xmlns=\"http://www.chinaport.gov.cn/ceb\"><Order>1</Order></CEB311Message>";
    let r = proxy.post("/api/ceb/sign", &json!({"xml": xml}).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Cert-No"), Some(cert_no.as_str()));
    for path in ["/api/cert", "/api/cert/sign.cer", "/api/cert/env.cer"] {
        let r = proxy.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("X-Cert-No"), Some(cert_no.as_str()), "{path}");
    }
    // a message that is not XML is refused before the card sees anything
    let r = proxy.post("/api/ceb/sign", &json!({"xml": "<unclosed"}).to_string());
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("X-Cert-No"), None);
    // a signature the card never received: 503 with Retry-After and no card named
    sim.faults().set_refuse(true);
    sim.drop_connections();
    wait_for(
        Duration::from_secs(10),
        "the proxy to see the card gone",
        || (proxy.get("/health").status == 503).then_some(()),
    );
    let r = proxy.post("/api/ceb/sign", &json!({"xml": xml}).to_string());
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("Retry-After").is_some());
    assert_eq!(r.header("X-Cert-No"), None);
}
