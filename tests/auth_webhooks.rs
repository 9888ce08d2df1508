//! Request authentication (MD5 scheme), signed audit and failure webhooks that lose nothing, and
//! the graceful stop.

mod common;

use common::receiver::Receiver;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const SECRET: &str = "test-app-secret-9f2";
const SIGN: &str = "cus-sec_SpcSignDataAsPEM";

fn body(data: &str) -> String {
    json!({"_method": SIGN, "args": {"inData": data}}).to_string()
}

fn authed_proxy(sim: &chinaport_proxy::simulator::Simulator) -> Proxy {
    let proxy = Proxy::start(&sim.url(), json!({"auth": {"app_secret": SECRET}}));
    proxy.wait_healthy();
    proxy
}

#[test]
fn every_401_reason_and_nothing_reaches_the_card() {
    let sim = simulator();
    let proxy = authed_proxy(&sim);
    let a = proxy.addr;
    let b = body("unauthenticated");
    let now = now_ms();
    let sig = |ts: u64, body: &str, secret: &str| {
        receiver::md5_hex(&format!("POST/rpc{ts}{body}{secret}"))
    };
    let good = sig(now, &b, SECRET);
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![], "missing X-Timestamp"),
        (
            vec![("X-Timestamp", now.to_string())],
            "missing X-Signature",
        ),
        (vec![("X-Signature", good.clone())], "missing X-Timestamp"),
        (
            vec![
                ("X-Timestamp", "yesterday".into()),
                ("X-Signature", good.clone()),
            ],
            "malformed X-Timestamp",
        ),
        (
            vec![
                ("X-Timestamp", now.to_string()),
                ("X-Signature", "abc".into()),
            ],
            "malformed X-Signature",
        ),
        (
            vec![
                ("X-Timestamp", (now - 60_000).to_string()),
                ("X-Signature", sig(now - 60_000, &b, SECRET)),
            ],
            "outside the allowed window",
        ),
        (
            vec![
                ("X-Timestamp", (now + 60_000).to_string()),
                ("X-Signature", sig(now + 60_000, &b, SECRET)),
            ],
            "outside the allowed window",
        ),
        (
            vec![
                ("X-Timestamp", now.to_string()),
                ("X-Signature", sig(now, &b, "wrong")),
            ],
            "bad signature",
        ),
        (
            vec![
                ("X-Timestamp", now.to_string()),
                ("X-Signature", sig(now, "{}", SECRET)),
            ],
            "bad signature",
        ),
    ];
    for (headers, reason) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let r = request(a, "POST", "/rpc", &h, b.as_bytes());
        assert_eq!(r.status, 401, "{reason}: {}", r.text());
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains(reason), "{e:?} lacks {reason:?}");
        assert!(!e.contains(&good), "the expected signature leaked: {e}");
        assert_uuid_v4(r.header("X-Request-ID").unwrap());
    }
    // unknown paths need authentication too; /health does not
    assert_eq!(proxy.get("/nope").status, 401);
    assert_eq!(proxy.get("/health").status, 200);
    assert!(
        !sim.received()
            .iter()
            .any(|f| f["args"]["inData"] == "unauthenticated"),
        "an unauthenticated request reached the card"
    );

    // a good one passes; the same bytes again are a replay
    let ts = now_ms();
    let r = signed_at(a, "POST", "/rpc", &b, SECRET, ts);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = signed_at(a, "POST", "/rpc", &b, SECRET, ts);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("replayed"));
    // upper-case hex is accepted; the query string is not part of the signed path
    let ts = now_ms();
    let sig_upper = receiver::md5_hex(&format!("POST/rpc{ts}{b}{SECRET}")).to_uppercase();
    let tss = ts.to_string();
    let r = request(
        a,
        "POST",
        "/rpc?trace=1",
        &[("X-Timestamp", &tss), ("X-Signature", &sig_upper)],
        b.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn run_client(program: &str, args: &[&str], proxy: &Proxy) -> serde_json::Value {
    let out = std::process::Command::new(program)
        .args(args)
        .env("PROXY_URL", format!("http://{}", proxy.addr))
        .env("APP_SECRET", SECRET)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed for this test: {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn the_readme_clients_are_accepted() {
    let readme = std::fs::read_to_string("docs/reference.md").unwrap();
    for file in ["sign.js", "sign.py", "sign.sh"] {
        let code = std::fs::read_to_string(format!("examples/clients/{file}")).unwrap();
        assert!(
            readme.replace("\r\n", "\n").contains(code.trim()),
            "docs/reference.md's copy of examples/clients/{file} has drifted"
        );
    }
    let sim = simulator();
    let proxy = authed_proxy(&sim);
    for (program, file) in [
        ("node", "examples/clients/sign.js"),
        ("python3", "examples/clients/sign.py"),
    ] {
        let out = run_client(program, &[file], &proxy);
        assert_eq!(out["status"], 200, "{program}: {out}");
        assert_eq!(
            out["body"]["_args"]["Data"][0],
            sim.signature_of("报关数据 Hello").as_str()
        );
        assert_uuid_v4(out["requestId"].as_str().unwrap());
    }
    let out = run_client("bash", &["examples/clients/sign.sh"], &proxy);
    assert_eq!(out["_args"]["Data"][0], sim.cert_no().as_str());
}

fn webhook_proxy(sim_url: &str, rx: &Receiver, extra: serde_json::Value) -> Proxy {
    let mut overlay = json!({
        "auth": {"app_secret": SECRET},
        "webhook": {"audit_url": rx.url("/hooks/audit"), "failure_url": rx.url("/hooks/failure")},
    });
    merge(&mut overlay, &extra);
    Proxy::start(sim_url, overlay)
}

#[test]
fn audit_is_delivered_signed_for_success_card_failure_and_bad_input() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    let proxy = webhook_proxy(&sim.url(), &rx, json!({}));
    proxy.wait_healthy();
    let ok = signed(proxy.addr, "POST", "/rpc", &body("audited"), SECRET);
    let failed = signed(
        proxy.addr,
        "POST",
        "/rpc",
        &json!({"_method": SIGN}).to_string(),
        SECRET,
    );
    let bad = signed(proxy.addr, "POST", "/rpc", "not json", SECRET);
    let with_pw = signed(
        proxy.addr,
        "POST",
        "/rpc",
        &json!({"_method": SIGN, "args": {"inData": "x", "passwd": PASSWORD}}).to_string(),
        SECRET,
    );
    assert_eq!(
        (ok.status, failed.status, bad.status, with_pw.status),
        (200, 400, 400, 200)
    );
    let audits = wait_for(Duration::from_secs(10), "four audit events", || {
        let a = rx.of_kind("api_audit");
        (a.len() >= 4).then_some(a)
    });
    assert!(
        audits.iter().all(|e| e.signature_ok),
        "unsigned or badly signed webhook"
    );
    assert!(audits.iter().all(|e| e.path == "/hooks/audit"));
    let by_id = |r: &Resp| {
        let id = r.header("X-Request-ID").unwrap();
        audits
            .iter()
            .find(|e| e.body["request_id"] == id)
            .unwrap_or_else(|| panic!("no audit for {id}"))
            .clone()
    };
    let a = by_id(&ok);
    assert_eq!(a.request_id.as_deref(), ok.header("X-Request-ID"));
    assert_eq!(a.body["success"], true);
    assert_eq!(a.body["method"], SIGN);
    assert_eq!(a.body["request"]["args"]["inData"], "audited");
    assert_eq!(a.body["response"]["_args"]["Result"], true);
    assert!(a.body["duration_ms"].is_u64() && a.body["timestamp"].is_u64());
    let f = by_id(&failed);
    assert_eq!(f.body["success"], false);
    assert!(f.body["error"].as_str().unwrap().contains("inData"));
    let b = by_id(&bad);
    assert_eq!(b.body["success"], false);
    assert!(b.body["error"].as_str().unwrap().contains("not valid JSON"));
    assert_eq!(b.body["request"]["body"], "not json");
    let p = by_id(&with_pw);
    assert_eq!(p.body["request"]["args"]["passwd"], "***MASKED***");
    for e in rx.events() {
        assert!(
            !e.body.to_string().contains(PASSWORD),
            "password in a webhook"
        );
    }
    // the journal on disk never holds it either
    let journal = std::fs::read_to_string(proxy.dir.path().join("webhook-journal.jsonl")).unwrap();
    assert!(!journal.contains(PASSWORD));
}

#[test]
fn failure_webhooks_for_each_type() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    let proxy = webhook_proxy(
        &sim.url(),
        &rx,
        json!({"ukey": {"timeout_ms": 600, "health_interval_s": 1}}),
    );
    proxy.wait_healthy();
    // operation_failure: Result false, and a timeout
    let r = signed(
        proxy.addr,
        "POST",
        "/rpc",
        &json!({"_method": SIGN}).to_string(),
        SECRET,
    );
    assert_eq!(r.status, 400);
    let rid = r.header("X-Request-ID").unwrap().to_string();
    sim.faults().set_silent(SIGN, true);
    let r = signed(proxy.addr, "POST", "/rpc", &body("slow"), SECRET);
    assert_eq!(
        r.status, 504,
        "a call the card had and did not answer (#26.1)"
    );
    sim.faults().set_silent(SIGN, false);
    let ops = wait_for(Duration::from_secs(10), "two operation failures", || {
        let f: Vec<_> = rx
            .of_kind("ukey_malfunction")
            .into_iter()
            .filter(|e| e.body["details"]["type"] == "operation_failure")
            .collect();
        (f.len() >= 2).then_some(f)
    });
    assert_eq!(ops[0].body["details"]["method"], SIGN);
    assert_eq!(ops[0].body["details"]["request_id"], rid.as_str());
    assert!(
        ops[0].body["details"]["errors"]
            .to_string()
            .contains("Err:Base50000")
    );
    assert!(
        ops[1].body["error"]
            .as_str()
            .unwrap()
            .contains("did not answer")
    );

    // health_check_failure: the probe goes unanswered (and the proxy reconnects)
    sim.faults().set_silent("cus-sec_SpcGetCertNo", true);
    wait_for(Duration::from_secs(10), "a health check failure", || {
        rx.of_kind("ukey_malfunction")
            .into_iter()
            .find(|e| e.body["details"]["type"] == "health_check_failure")
    });
    sim.faults().set_silent("cus-sec_SpcGetCertNo", false);
    proxy.wait_healthy();

    // connection_failure once per outage, then one ukey_recovered
    let before = rx.of_kind("ukey_recovered").len();
    let conn_before = rx
        .of_kind("ukey_malfunction")
        .iter()
        .filter(|e| e.body["details"]["type"] == "connection_failure")
        .count();
    // the drop is the outage's first failure, one refused attempt its second: each could
    // report it, and only the first may (one refused attempt, not three: the backoff doubles,
    // and the third would cost the suite 4 s more)
    let attempts_before = sim.connections_accepted();
    sim.faults().set_refuse(true);
    sim.drop_connections();
    wait_for(Duration::from_secs(15), "a refused attempt", || {
        (sim.connections_accepted() > attempts_before).then_some(())
    });
    sim.faults().set_refuse(false);
    wait_for(Duration::from_secs(15), "ukey_recovered", || {
        (rx.of_kind("ukey_recovered").len() > before).then_some(())
    });
    let conn_after = rx
        .of_kind("ukey_malfunction")
        .iter()
        .filter(|e| e.body["details"]["type"] == "connection_failure")
        .count();
    assert_eq!(
        conn_after - conn_before,
        1,
        "one connection_failure per outage"
    );
    assert!(rx.events().iter().all(|e| e.signature_ok));
    assert!(
        rx.events()
            .iter()
            .all(|e| e.path == "/hooks/failure" || e.path == "/hooks/audit")
    );
}

fn audit_ids(rx: &Receiver) -> Vec<String> {
    rx.of_kind("api_audit")
        .iter()
        .map(|e| e.body["request_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn receiver_down_then_up_gets_every_audit_once_in_order_even_across_restarts() {
    let sim = simulator();
    let mut rx = Receiver::start(SECRET);
    let journal_dir = TempDir::new("journal");
    let journal = journal_dir.path().join("journal.jsonl");
    let extra = json!({"webhook": {"journal_path": journal.to_string_lossy()}});
    let mut proxy = webhook_proxy(&sim.url(), &rx, extra.clone());
    proxy.wait_healthy();
    rx.down();
    let mut sent = Vec::new();
    for i in 0..5 {
        let r = signed(proxy.addr, "POST", "/rpc", &body(&format!("a{i}")), SECRET);
        assert_eq!(r.status, 200);
        sent.push(r.header("X-Request-ID").unwrap().to_string());
    }
    // killed without warning, as Task Scheduler does, while the receiver is down
    proxy.signal("KILL");
    proxy.wait_exit(Duration::from_secs(5));
    drop(proxy);
    let proxy = webhook_proxy(&sim.url(), &rx, extra);
    proxy.wait_healthy();
    for i in 5..8 {
        let r = signed(proxy.addr, "POST", "/rpc", &body(&format!("b{i}")), SECRET);
        assert_eq!(r.status, 200);
        sent.push(r.header("X-Request-ID").unwrap().to_string());
    }
    let h = proxy.get("/health").json();
    assert!(h["webhook_backlog"]["events"].as_u64().unwrap() >= 3, "{h}");
    rx.up();
    wait_for(Duration::from_secs(30), "all audits", || {
        (audit_ids(&rx).len() >= sent.len()).then_some(())
    });
    // let any duplicate show itself before judging "exactly once"
    wait_for(Duration::from_secs(5), "an empty backlog", || {
        (proxy.get("/health").json()["webhook_backlog"]["events"] == 0).then_some(())
    });
    assert_eq!(audit_ids(&rx), sent, "every audit exactly once, in order");
}

#[test]
fn a_failing_receiver_is_retried_and_410_gone_is_not() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    let proxy = webhook_proxy(&sim.url(), &rx, json!({}));
    proxy.wait_healthy();
    rx.set_status(503);
    let first = signed(proxy.addr, "POST", "/rpc", &body("retry-me"), SECRET);
    proxy.wait_log("webhooks: delivery failed", Duration::from_secs(5));
    rx.set_status(200);
    wait_for(Duration::from_secs(10), "the retried audit", || {
        audit_ids(&rx)
            .contains(&first.header("X-Request-ID").unwrap().to_string())
            .then_some(())
    });
    // only 410 Gone ends an event the receiver did not accept (every other 4xx is retried)
    rx.set_status(410);
    signed(proxy.addr, "POST", "/rpc", &body("rejected"), SECRET);
    proxy.wait_log("410 Gone", Duration::from_secs(5));
    rx.set_status(200);
    let after = signed(proxy.addr, "POST", "/rpc", &body("after"), SECRET);
    wait_for(Duration::from_secs(10), "the next audit", || {
        audit_ids(&rx)
            .contains(&after.header("X-Request-ID").unwrap().to_string())
            .then_some(())
    });
}

#[test]
fn a_slow_receiver_adds_nothing_to_rpc_latency() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    // slower than the bar below, so a delivery on the request path would show
    rx.set_delay(Duration::from_millis(700));
    let proxy = webhook_proxy(&sim.url(), &rx, json!({}));
    proxy.wait_healthy();
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let t = Instant::now();
        let r = signed(proxy.addr, "POST", "/rpc", &body(&format!("s{i}")), SECRET);
        worst = worst.max(t.elapsed());
        assert_eq!(r.status, 200);
    }
    assert!(worst < Duration::from_millis(500), "a call took {worst:?}");
    // the sender goes on past a slow answer (every record arriving is tested elsewhere)
    wait_for(Duration::from_secs(20), "two slow deliveries", || {
        (rx.of_kind("api_audit").len() >= 2).then_some(())
    });
}

#[test]
fn sigterm_during_a_call_lets_it_finish_then_exits_cleanly() {
    let sim = simulator();
    let mut proxy = Proxy::start(&sim.url(), json!({"ukey": {"timeout_ms": 5000}}));
    proxy.wait_healthy();
    sim.faults().set_latency(Duration::from_secs(2));
    let addr = proxy.addr;
    let call = std::thread::spawn(move || {
        request(addr, "POST", "/rpc", &[], body("during-stop").as_bytes())
    });
    wait_for(Duration::from_secs(5), "the call to reach the card", || {
        sim.received()
            .iter()
            .any(|f| f["args"]["inData"] == "during-stop")
            .then_some(())
    });
    let stopped_at = Instant::now();
    proxy.signal("TERM");
    let r = call.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["_args"]["Data"][0],
        sim.signature_of("during-stop").as_str()
    );
    let code = proxy.wait_exit(Duration::from_secs(12));
    assert!(stopped_at.elapsed() < Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", proxy.log());
    assert_eq!(
        sim.close_frames_received(),
        1,
        "the socket was closed with a close frame"
    );
    assert!(proxy.log().contains("stop requested"));
    // no new connections once stopping
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn sigint_with_nothing_in_flight_exits_at_once() {
    let sim = simulator();
    let mut proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let t = Instant::now();
    proxy.signal("INT");
    assert_eq!(proxy.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(t.elapsed() < Duration::from_secs(3));
}
