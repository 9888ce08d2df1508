//! Never lock the card: after the card refuses the configured password, no frame reaches it
//! from anyone (callers of every endpoint, probes, the certificate read, a reconnect, a restart
//! with the same password), callers get a 503 that says how to fix it, and the failure webhook
//! fires once. A restart with another password tries again.

mod common;

use common::receiver::Receiver;
use common::*;
use serde_json::json;
use std::time::Duration;

const WRONG: &str = "wrong-pass-123";

fn frames_with_a_password(sim: &chinaport_proxy::simulator::Simulator) -> usize {
    sim.received()
        .iter()
        .filter(|f| f["args"]["passwd"].is_string())
        .count()
}

fn every_endpoint_answers_503_without_touching_the_card(
    proxy: &Proxy,
    sim: &chinaport_proxy::simulator::Simulator,
) {
    let before = frames_with_a_password(sim);
    let calls = [
        ("/rpc", json!({"_method": "cus-sec_SpcSignDataAsPEM", "args": {"inData": "x"}}).to_string()),
        ("/rpc", json!({"_method": "cus-sec_SpcGetCertNo"}).to_string()),
        (
            "/api/ceb/sign",
            json!({"xml": "<CEB311Message xmlns=\"http://www.chinaport.gov.cn/ceb\"><a>1</a></CEB311Message>"})
                .to_string(),
        ),
        (
            "/api/customs179",
            order_179("lock-1", false),
        ),
    ];
    for _ in 0..5 {
        for (path, body) in &calls {
            let r = proxy.post(path, body);
            assert_eq!(r.status, 503, "{path}: {}", r.text());
            let e = r.json()["error"].as_str().unwrap().to_string();
            assert!(
                e.contains("refused the configured password") && e.contains("ukey.password"),
                "{path}: {e}"
            );
        }
    }
    assert_eq!(
        frames_with_a_password(sim),
        before,
        "a frame carrying the refused password reached the card"
    );
}

#[test]
fn after_one_refusal_nothing_reaches_the_card_across_reconnects_and_restarts() {
    let sim = simulator();
    let rx = Receiver::start("");
    let config = |password: &str| {
        let mut c = Proxy::base_config(&sim.url());
        merge(
            &mut c,
            &json!({"ukey": {"password": password, "health_interval_s": 1},
                    "webhook": {"failure_url": rx.url("/failure")}}),
        );
        c
    };
    let proxy = Proxy::start_with_config(&config(WRONG));
    proxy.wait_log("the card rejected ukey.password", Duration::from_secs(10));
    // the first probe was the one attempt
    assert_eq!(frames_with_a_password(&sim), 1);
    every_endpoint_answers_503_without_touching_the_card(&proxy, &sim);

    let health = proxy.get("/health");
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["password_refused"], true);
    assert!(
        health.json()["last_error"]
            .as_str()
            .unwrap()
            .contains("ukey.password")
    );
    assert!(!health.text().contains(WRONG));

    // a reconnect is no reason to try again
    sim.drop_connections();
    wait_for(Duration::from_secs(10), "the reconnect", || {
        (sim.connections_accepted() >= 2).then_some(())
    });
    every_endpoint_answers_503_without_touching_the_card(&proxy, &sim);
    assert_eq!(frames_with_a_password(&sim), 1);

    // the failure webhook fired once
    let rejected = wait_for(
        Duration::from_secs(10),
        "the password_rejected webhook",
        || {
            let f: Vec<_> = rx
                .of_kind("ukey_malfunction")
                .into_iter()
                .filter(|e| e.body["details"]["type"] == "password_rejected")
                .collect();
            (!f.is_empty()).then_some(f)
        },
    );
    assert_eq!(rejected.len(), 1);
    assert!(!rejected[0].raw.contains(WRONG));

    // a restart with the same password remembers the refusal
    let dir = proxy.stop_keep_dir();
    assert!(dir.path().join("ukey-password-refused.json").exists());
    let proxy = Proxy::start_in(dir, &config(WRONG));
    proxy.wait_log(
        "the card refused the configured password",
        Duration::from_secs(10),
    );
    every_endpoint_answers_503_without_touching_the_card(&proxy, &sim);
    assert_eq!(frames_with_a_password(&sim), 1);

    // a restart with the right password tries it
    let dir = proxy.stop_keep_dir();
    let proxy = Proxy::start_in(dir, &config(PASSWORD));
    proxy.wait_healthy();
    assert_eq!(proxy.rpc("cus-sec_SpcGetCertNo", json!({})).status, 200);
    assert!(!proxy.dir.path().join("ukey-password-refused.json").exists());
}

#[test]
fn a_refusal_seen_first_by_a_caller_stops_everything_too_once_the_probe_confirms_it() {
    let sim = simulator();
    // the card accepts the probe, then starts refusing (as if the password had been changed on it)
    let proxy = Proxy::start(&sim.url(), json!({"ukey": {"health_interval_s": 3600}}));
    proxy.wait_healthy();
    for method in ["cus-sec_SpcSignDataAsPEM", "cus-sec_SpcGetCertNo"] {
        sim.faults().set_error(
            method,
            Some(vec!["口令验证失败".into(), "Err:Custom50030".into()]),
        );
    }
    let r = proxy.rpc("cus-sec_SpcSignDataAsPEM", json!({"inData": "x"}));
    assert_eq!(
        r.status, 400,
        "the refusing call gets the card's own answer"
    );
    // M3: a caller's reply only brings the probe forward; the proxy's own call decides
    proxy.wait_log("the card rejected ukey.password", Duration::from_secs(5));
    every_endpoint_answers_503_without_touching_the_card(&proxy, &sim);
}

#[test]
fn an_unrelated_failure_stops_nothing() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    sim.faults().set_error(
        "cus-sec_SpcGetEntName",
        Some(vec!["Err:Custom50070".into()]),
    );
    assert_eq!(proxy.rpc("cus-sec_SpcGetEntName", json!({})).status, 400);
    assert_eq!(proxy.rpc("cus-sec_SpcGetCertNo", json!({})).status, 200);
    assert_eq!(proxy.get("/health").json()["password_refused"], false);
}
