//! #28 end to end, on the real binary and simulator: identity reads through `/rpc` are answered
//! from the per-connection cache (the metrics and the card's own log show the card was not
//! asked), also while the card is busy; a swapped card (the simulator's `swap_card` fault:
//! another key and certificate number on the same socket) is seen by the next identity read and
//! the next signature, whether the probe or a signature notices it first; a `/rpc` signature
//! that does not verify is answered 502 with the `signature_mismatch` webhook unless
//! `ukey.self_check` is off.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::receiver::Receiver;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CERT_NO: &str = "cus-sec_SpcGetCertNo";
const SIGN_CERT: &str = "cus-sec_SpcGetSignCertAsPEM";
const ENT: &str = "cus-sec_SpcGetEntName";
const SIGN: &str = "cus-sec_SpcSignDataAsPEM";

/// A labelled counter's value in `/metrics` (0 when absent).
fn counter(proxy: &Proxy, family: &str, method: &str) -> u64 {
    let needle = format!("{family}{{method=\"{method}\"}} ");
    proxy
        .get("/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(needle.as_str()).map(str::to_owned))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

fn card_calls(proxy: &Proxy, method: &str) -> u64 {
    counter(proxy, "chinaport_ukey_calls_total", method)
}

fn cache_answers(proxy: &Proxy, method: &str) -> u64 {
    counter(proxy, "chinaport_ukey_cache_answers_total", method)
}

/// Waits until the connection's own reads (probe, certificate) have filled the cache.
fn wait_cache_warm(proxy: &Proxy) {
    proxy.wait_healthy();
    wait_for(Duration::from_secs(10), "the identity cache", || {
        let cached = proxy.get("/health").json()["identity_cache"].clone();
        let has = |m: &str| cached.as_array().unwrap().iter().any(|v| v == m);
        (has(CERT_NO) && has(SIGN_CERT)).then_some(())
    });
}

fn data(r: &Resp, i: usize) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["_args"]["Data"][i].as_str().unwrap().to_string()
}

fn received(sim: &chinaport_proxy::simulator::Simulator, method: &str) -> usize {
    sim.received()
        .iter()
        .filter(|f| f["_method"] == method)
        .count()
}

#[test]
fn identity_reads_are_answered_from_the_cache_without_the_card() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    wait_cache_warm(&proxy);
    let (no_calls, cert_calls) = (card_calls(&proxy, CERT_NO), card_calls(&proxy, SIGN_CERT));
    let (seen_no, seen_cert) = (received(&sim, CERT_NO), received(&sim, SIGN_CERT));
    let cert_b64 = B64.encode(sim.sign_cert_der());
    for _ in 0..20 {
        let r = proxy.rpc(CERT_NO, json!({}));
        assert_eq!(data(&r, 0), sim.cert_no());
        // the card's frame, as it gave it (minus `_id`)
        assert_eq!(
            r.json(),
            json!({"_method": CERT_NO, "_status": "00",
                   "_args": {"Result": true, "Data": [sim.cert_no()], "Error": []}})
        );
        assert_eq!(data(&proxy.rpc(SIGN_CERT, json!({})), 0), cert_b64);
    }
    assert_eq!(card_calls(&proxy, CERT_NO), no_calls, "the card was asked");
    assert_eq!(
        card_calls(&proxy, SIGN_CERT),
        cert_calls,
        "the card was asked"
    );
    assert_eq!(received(&sim, CERT_NO), seen_no);
    assert_eq!(received(&sim, SIGN_CERT), seen_cert);
    assert!(cache_answers(&proxy, CERT_NO) >= 20);
    assert!(cache_answers(&proxy, SIGN_CERT) >= 20);

    // a read the proxy does not make itself goes to the card once
    for _ in 0..5 {
        assert_eq!(
            data(&proxy.rpc(ENT, json!({})), 0),
            chinaport_proxy::simulator::ENT_NAME
        );
    }
    assert_eq!(card_calls(&proxy, ENT), 1);
    assert_eq!(received(&sim, ENT), 1);
    assert_eq!(cache_answers(&proxy, ENT), 4);
    // with an argument it asks about something else: not cached
    let r = proxy.rpc(CERT_NO, json!({"extra": "x"}));
    assert_eq!(r.status, 200);
    assert_eq!(card_calls(&proxy, CERT_NO), no_calls + 1);

    // while the card works on a long call, identity reads do not wait for it
    sim.faults().set_latency(Duration::from_millis(1500));
    let addr = proxy.addr;
    let busy = std::thread::spawn(move || {
        request(
            addr,
            "POST",
            "/rpc",
            &[],
            json!({"_method": SIGN, "args": {"inData": "slow"}})
                .to_string()
                .as_bytes(),
        )
    });
    wait_for(Duration::from_secs(5), "the signature on the card", || {
        (received(&sim, SIGN) == 1).then_some(())
    });
    let started = Instant::now();
    assert_eq!(data(&proxy.rpc(CERT_NO, json!({})), 0), sim.cert_no());
    assert_eq!(
        data(&proxy.rpc(ENT, json!({})), 0),
        chinaport_proxy::simulator::ENT_NAME
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(700),
        "waited for the card: {took:?}"
    );
    assert_eq!(busy.join().unwrap().status, 200);
}

/// The swap is seen by the next identity read and the next signature: both name the new card,
/// and the signature verifies against its certificate.
fn assert_new_card(proxy: &Proxy, sim: &chinaport_proxy::simulator::Simulator, new_no: &str) {
    assert_eq!(data(&proxy.rpc(CERT_NO, json!({})), 0), new_no);
    assert_eq!(
        data(&proxy.rpc(SIGN_CERT, json!({})), 0),
        B64.encode(sim.sign_cert_der())
    );
    let r = proxy.rpc(SIGN, json!({"inData": "after the swap"}));
    assert_eq!(data(&r, 1), new_no);
    assert_eq!(r.header("X-Cert-No"), Some(new_no));
}

#[test]
fn a_swapped_card_is_seen_once_the_probe_reads_another_number() {
    let sim = simulator_sm2();
    let proxy = Proxy::start(&sim.url(), json!({"ukey": {"health_interval_s": 1}}));
    wait_cache_warm(&proxy);
    let old_no = sim.cert_no();
    assert_eq!(data(&proxy.rpc(CERT_NO, json!({})), 0), old_no);
    let new_no = sim.swap_card().unwrap();
    assert_ne!(new_no, old_no);
    wait_for(
        Duration::from_secs(10),
        "the probe to see the new card",
        || (proxy.get("/health").json()["cert_no"] == new_no.as_str()).then_some(()),
    );
    assert_new_card(&proxy, &sim, &new_no);
    proxy.wait_log("identity cache dropped", Duration::from_secs(5));
}

#[test]
fn a_swapped_card_is_seen_by_the_next_signature_and_identity_read() {
    for sim in [simulator(), simulator_sm2()] {
        // no probe during the test: the signature itself shows the swap
        let proxy = Proxy::start(&sim.url(), json!({"ukey": {"health_interval_s": 3600}}));
        wait_cache_warm(&proxy);
        let old_no = sim.cert_no();
        assert_eq!(data(&proxy.rpc(CERT_NO, json!({})), 0), old_no);
        // through the fault knob, as an integrator would: from the next call on
        let r = proxy.rpc("sim-ctl_Faults", json!({"swap_card": true}));
        assert_eq!(r.status, 200, "{}", r.text());
        // the signature names the new card; it verifies against the new card's certificate
        // (the self-check read it), so it is answered 200
        let r = proxy.rpc(SIGN, json!({"inData": "first after the swap"}));
        let new_no = data(&r, 1);
        assert_ne!(new_no, old_no);
        assert_eq!(new_no, sim.cert_no());
        assert_new_card(&proxy, &sim, &new_no);
    }
}

#[test]
fn a_card_removed_error_drops_the_cache() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    wait_cache_warm(&proxy);
    let before = card_calls(&proxy, SIGN_CERT);
    sim.faults().set_error(
        SIGN,
        Some(vec!["读卡器复位失败".into(), "Err:Custom50070".into()]),
    );
    assert_eq!(proxy.rpc(SIGN, json!({"inData": "x"})).status, 400);
    sim.faults().set_error(SIGN, None);
    proxy.wait_log("identity cache dropped", Duration::from_secs(5));
    // the next identity read is the card's
    assert_eq!(
        data(&proxy.rpc(SIGN_CERT, json!({})), 0),
        B64.encode(sim.sign_cert_der())
    );
    assert!(
        card_calls(&proxy, SIGN_CERT) > before,
        "answered from a dropped cache"
    );
}

#[test]
fn a_rpc_signature_that_does_not_verify_is_502_unless_the_self_check_is_off() {
    let rx = Receiver::start("");
    for (n, sim) in [simulator(), simulator_sm2()].into_iter().enumerate() {
        let proxy = Proxy::start(
            &sim.url(),
            json!({"webhook": {"failure_url": rx.url("/failure")}}),
        );
        wait_cache_warm(&proxy);
        // a good one passes, as the card gave it
        let r = proxy.rpc(SIGN, json!({"inData": "good"}));
        assert_eq!(r.status, 200, "{}", r.text());
        sim.faults()
            .bad_signatures
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let r = proxy.rpc(SIGN, json!({"inData": "bad"}));
        assert_eq!(r.status, 502, "{}", r.text());
        let body: Value = r.json();
        assert!(
            body["error"].as_str().unwrap().contains("does not verify"),
            "{body}"
        );
        assert_eq!(body["cert_no"], sim.cert_no().as_str());
        proxy.wait_log("identity cache dropped", Duration::from_secs(5));
        wait_for(
            Duration::from_secs(10),
            "the signature_mismatch webhook",
            || {
                let mismatches = rx
                    .of_kind("ukey_malfunction")
                    .into_iter()
                    .filter(|e| e.body["details"]["type"] == "signature_mismatch")
                    .count();
                (mismatches > n).then_some(())
            },
        );
    }
    // off: /rpc answers what the card gave
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({"ukey": {"self_check": false}}));
    wait_cache_warm(&proxy);
    sim.faults()
        .bad_signatures
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(proxy.rpc(SIGN, json!({"inData": "bad"})).status, 200);
}

#[test]
fn concurrent_reads_right_after_connecting_reach_the_card_once() {
    let sim = simulator_sm2();
    // the card is slow, so the callers all arrive while the connection's own reads are on it
    sim.faults().set_latency(Duration::from_millis(300));
    let proxy = Proxy::start(&sim.url(), json!({}));
    wait_for(Duration::from_secs(10), "connected", || {
        proxy.get("/health").json()["connected"]
            .as_bool()
            .filter(|c| *c)
    });
    let addr = proxy.addr;
    let callers: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let method = if i % 2 == 0 { ENT } else { SIGN_CERT };
                let body = json!({"_method": method}).to_string();
                request(addr, "POST", "/rpc", &[], body.as_bytes())
            })
        })
        .collect();
    for c in callers {
        assert_eq!(c.join().unwrap().status, 200);
    }
    assert_eq!(received(&sim, ENT), 1, "the name was read more than once");
    assert_eq!(
        received(&sim, SIGN_CERT),
        1,
        "the certificate was read more than once"
    );
}
