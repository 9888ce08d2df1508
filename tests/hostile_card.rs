//! What a card (or its client software) sends cannot cross callers or stop the proxy: replies
//! without `_id` (M9), a frame that says nothing (L8), and error text a caller can make the card
//! echo (M3). Each test plays the finding's reproduction against the real binary.

mod common;

use common::standin::{Ids, StandIn};
use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const SIGN: &str = "cus-sec_SpcSignDataAsPEM";

/// The signing reply the stand-in makes for a request, without `_id`.
fn signed_without_id(request: &Value) -> Value {
    let data = request["args"]["inData"].as_str().unwrap_or_default();
    json!({"_method": SIGN, "_status": "00", "_args": {"Result": true, "Data": [format!("signature-of-{data}")]}})
}

/// Callers one after the other; returns how many got a 200 carrying another caller's signature,
/// and the statuses.
fn sequential_callers(proxy: &Proxy, n: usize) -> (usize, Vec<u16>) {
    let mut crossed = 0;
    let mut statuses = Vec::new();
    for i in 0..n {
        let data = format!("caller-{i}");
        let r = proxy.rpc(SIGN, json!({"inData": data}));
        statuses.push(r.status);
        if r.status == 200 && r.json()["_args"]["Data"][0] != format!("signature-of-{data}") {
            crossed += 1;
        }
    }
    (crossed, statuses)
}

fn proxy_for(card: &StandIn) -> Proxy {
    let proxy = Proxy::start(
        &card.url(),
        json!({"ukey": {"timeout_ms": 500, "health_interval_s": 3600}}),
    );
    proxy.wait_healthy();
    proxy
}

/// M9 `late_noid`: a card that never sends `_id` answers each call late, after the caller gave
/// up (here: when the next call comes). The late answer used to go to the next caller as a 200.
#[test]
fn m9_a_late_reply_without_id_never_reaches_the_next_caller() {
    let held: Arc<Mutex<Option<Value>>> = Arc::default();
    let card = StandIn::start(Ids::Never, move |request| {
        let mine = signed_without_id(request);
        held.lock().unwrap().replace(mine).into_iter().collect()
    });
    let proxy = proxy_for(&card);
    let (crossed, statuses) = sequential_callers(&proxy, 5);
    assert_eq!(crossed, 0, "statuses {statuses:?}");
    assert!(
        proxy.log().contains("cannot be matched unambiguously")
            || proxy.log().contains("frame ignored"),
        "the late replies were not dropped"
    );
}

/// M9 `twice_noid`: each answer also comes a second time, without `_id`, just ahead of the next
/// caller's answer. The duplicate used to go to the next caller as a 200.
#[test]
fn m9_a_duplicated_reply_without_id_never_reaches_the_next_caller() {
    let previous: Arc<Mutex<Option<Value>>> = Arc::default();
    let card = StandIn::start(Ids::Echoed, move |request| {
        let mine = signed_without_id(request);
        let mut frames: Vec<Value> = previous.lock().unwrap().take().into_iter().collect();
        frames.push(mine.clone());
        *previous.lock().unwrap() = Some(mine);
        frames
    });
    let proxy = proxy_for(&card);
    let (crossed, statuses) = sequential_callers(&proxy, 5);
    assert_eq!(crossed, 0, "statuses {statuses:?}");
}

/// L8: a frame with the call's `_id` and nothing else was answered 200 `{}`.
#[test]
fn l8_a_reply_with_only_an_id_is_a_502() {
    let card = StandIn::start(Ids::Echoed, |request| vec![json!({"_id": request["_id"]})]);
    let proxy = proxy_for(&card);
    let r = proxy.rpc(SIGN, json!({"inData": "x"}));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("neither _status nor _args"),
        "{}",
        r.text()
    );
    assert_eq!(
        card.received()
            .iter()
            .filter(|f| f["_method"] == SIGN)
            .count(),
        1
    );
}

/// M3: a method name with `PIN` or `passwd` in it, which the card echoes in its error, put the
/// proxy into "password refused" for good (and across restarts).
#[test]
fn m3_text_a_caller_chose_never_sets_the_password_refused_state() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    for method in [
        "cus-sec_Spc PIN check",
        "x {\"passwd\":\"x\"}",
        "Err:Custom50030",
    ] {
        let r = proxy.rpc(method, json!({}));
        assert_eq!(r.status, 400, "{method}: {}", r.text());
    }
    // a refusal would be set before the caller is answered: /health tells at once
    let h = proxy.get("/health");
    assert_eq!(h.status, 200, "{}", h.text());
    assert_eq!(h.json()["password_refused"], false);
    assert_eq!(proxy.rpc("cus-sec_SpcGetCertNo", json!({})).status, 200);
    assert!(!proxy.dir.path().join("ukey-password-refused.json").exists());
}
