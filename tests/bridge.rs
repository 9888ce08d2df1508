//! The core bridge, end to end: the real proxy binary, a real HTTP client and the UKey simulator.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SIGN: &str = "cus-sec_SpcSignDataAsPEM";
const CERT_NO: &str = "cus-sec_SpcGetCertNo";

#[test]
fn rpc_success_answers_the_frame_without_id() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let r = proxy.rpc(SIGN, json!({"inData": "Hello World"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_uuid_v4(r.header("X-Request-ID").expect("X-Request-ID"));
    let body = r.json();
    assert_eq!(body["_method"], SIGN);
    assert_eq!(body["_status"], "00");
    assert_eq!(body["_args"]["Result"], true);
    assert_eq!(body["_args"]["Data"][0], sim.signature_of("Hello World"));
    assert!(body.get("_id").is_none(), "{body}");

    // args may be omitted
    let r = proxy.post("/rpc", &json!({"_method": CERT_NO}).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["_args"]["Data"][0], sim.cert_no().as_str());
}

#[test]
fn passwd_is_injected_and_a_clients_is_never_forwarded() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let r = proxy.rpc(SIGN, json!({"inData": "x", "passwd": "client-guess"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let frames: Vec<Value> = sim
        .received()
        .into_iter()
        .filter(|f| f["_method"] == SIGN)
        .collect();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["args"]["passwd"], PASSWORD);
    assert_eq!(frames[0]["args"]["inData"], "x");
    assert!(!frames[0].to_string().contains("client-guess"));
    // a fresh _id per frame, counting from 1 (0 is the greeting's)
    let ids: Vec<u64> = sim
        .received()
        .iter()
        .filter_map(|f| f["_id"].as_u64())
        .collect();
    assert!(ids.iter().all(|&id| id >= 1), "{ids:?}");
    let mut dedup = ids.clone();
    dedup.dedup();
    assert_eq!(ids, dedup, "ids repeat: {ids:?}");
}

#[test]
fn card_failure_answers_400_with_the_frame() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let r = proxy.rpc(SIGN, json!({}));
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_eq!(body["_args"]["Result"], false);
    let errors = body["_args"]["Error"].to_string();
    assert!(
        errors.contains("inData") && errors.contains("Err:Base50000"),
        "{errors}"
    );

    // the certificate number was read on connecting and is answered from the cache (#28):
    // a read the card has not answered yet shows its failure
    let ent = "cus-sec_SpcGetEntName";
    sim.faults()
        .set_error(ent, Some(vec!["Err:Custom50200".into()]));
    let r = proxy.rpc(ent, json!({}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["_args"]["Error"][0], "Err:Custom50200");
}

#[test]
fn invalid_requests_get_json_errors_with_request_id() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({"server": {"max_body_bytes": 1000}}));
    proxy.wait_healthy();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("POST", "/rpc", b"not json".to_vec(), 400, "not valid JSON"),
        ("POST", "/rpc", b"[1,2]".to_vec(), 400, "JSON object"),
        ("POST", "/rpc", b"{}".to_vec(), 400, "missing \"_method\""),
        (
            "POST",
            "/rpc",
            br#"{"_method":7}"#.to_vec(),
            400,
            "must be a string",
        ),
        (
            "POST",
            "/rpc",
            br#"{"_method":"m","args":[1]}"#.to_vec(),
            400,
            "\"args\"",
        ),
        (
            "POST",
            "/rpc",
            br#"{"_method":"m","args":"s"}"#.to_vec(),
            400,
            "\"args\"",
        ),
        (
            "POST",
            "/rpc",
            b"{\"_method\":\"\xff\xfe\"}".to_vec(),
            400,
            "UTF-8",
        ),
        (
            "POST",
            "/rpc",
            b"{\"_method\":\"m\"".to_vec(),
            400,
            "not valid JSON",
        ),
        ("POST", "/rpc", b"".to_vec(), 400, "empty"),
        (
            "POST",
            "/rpc",
            vec![b' '; 1001],
            413,
            "larger than the limit",
        ),
        ("GET", "/rpc", Vec::new(), 405, "POST"),
        ("PUT", "/rpc", Vec::new(), 405, "POST"),
        ("DELETE", "/health", Vec::new(), 405, "GET"),
        ("GET", "/nope", Vec::new(), 404, "/nope"),
        ("POST", "/rpc/extra?x=1", Vec::new(), 404, "/rpc/extra"),
    ];
    for (method, path, body, status, needle) in cases {
        let r = request(proxy.addr, method, path, &[], &body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        let rid = r.header("X-Request-ID").expect("X-Request-ID").to_string();
        assert_uuid_v4(&rid);
        let j = r.json();
        assert_eq!(j["request_id"], rid.as_str(), "{j}");
        let e = j["error"].as_str().unwrap_or_default();
        assert!(
            e.contains(needle),
            "{method} {path}: {e:?} lacks {needle:?}"
        );
    }
    // the process kept serving through all of that
    assert_eq!(proxy.rpc(CERT_NO, json!({})).status, 200);
    // request ids are fresh each time
    let a = proxy.get("/nope");
    let b = proxy.get("/nope");
    assert_ne!(a.header("X-Request-ID"), b.header("X-Request-ID"));
}

#[test]
fn truncated_body_is_a_400_and_the_server_lives_on() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    // announces 5000 bytes, sends 20, then stops sending
    let head = "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n";
    let mut s = open_raw(
        proxy.addr,
        format!("{head}{{\"_method\":\"cus-se").as_bytes(),
    );
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (out, _) = read_until_closed(&mut s, Duration::from_secs(10));
    let r = parse_response(&out).expect("a response");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(proxy.rpc(CERT_NO, json!({})).status, 200);
}

fn concurrent_calls_get_their_own_answers(max_in_flight: usize, reverse_batch: usize) {
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"ukey": {"max_in_flight": max_in_flight, "timeout_ms": 10000, "health_interval_s": 3600},
               "server": {"max_connections_per_ip": 128},
               "log": {"verbose": false}}),
    );
    // the first probe is answered before batching starts, so 64 calls make whole batches
    proxy.wait_healthy();
    sim.faults()
        .reverse_batch
        .store(reverse_batch, std::sync::atomic::Ordering::SeqCst);
    let addr = proxy.addr;
    let handles: Vec<_> = (0..64)
        .map(|i| {
            std::thread::spawn(move || {
                let data = format!("order-{i}-{}", "x".repeat(i));
                let body = json!({"_method": SIGN, "args": {"inData": data}}).to_string();
                (data, request(addr, "POST", "/rpc", &[], body.as_bytes()))
            })
        })
        .collect();
    for h in handles {
        let (data, r) = h.join().unwrap();
        assert_eq!(r.status, 200, "{data}: {}", r.text());
        assert_eq!(
            r.json()["_args"]["Data"][0],
            sim.signature_of(&data),
            "{data} got another caller's answer"
        );
    }
    let sent = sim
        .received()
        .iter()
        .filter(|f| f["_method"] == SIGN)
        .count();
    assert_eq!(sent, 64);
}

#[test]
fn sixty_four_concurrent_calls_one_at_a_time() {
    concurrent_calls_get_their_own_answers(1, 0);
}

#[test]
fn sixty_four_concurrent_calls_in_flight_together_answered_out_of_order() {
    // the simulator answers each batch of 8 newest first: matching must go by _id
    concurrent_calls_get_their_own_answers(8, 8);
}

/// A proxy in front of `sim` whose card holds every signing call (a silent card).
fn proxy_with_a_silent_card(sim: &chinaport_proxy::simulator::Simulator) -> Proxy {
    let proxy = Proxy::start(&sim.url(), json!({"ukey": {"timeout_ms": 20000}}));
    proxy.wait_healthy();
    sim.faults().set_silent(SIGN, true);
    proxy
}

/// Starts a signing call of `data` on its own thread.
fn sign_in_background(
    addr: std::net::SocketAddr,
    data: &'static str,
) -> std::thread::JoinHandle<Resp> {
    std::thread::spawn(move || {
        let body = json!({"_method": SIGN, "args": {"inData": data}}).to_string();
        request(addr, "POST", "/rpc", &[], body.as_bytes())
    })
}

/// Waits until the card has received the call signing `data`.
fn wait_until_the_card_has(sim: &chinaport_proxy::simulator::Simulator, data: &str) {
    wait_for(Duration::from_secs(5), "the call to reach the card", || {
        sim.received()
            .iter()
            .any(|f| f["args"]["inData"] == data)
            .then_some(())
    });
}

#[test]
fn dropped_socket_answers_in_flight_calls_at_once_and_reconnects() {
    let sim = simulator();
    let proxy = proxy_with_a_silent_card(&sim);
    let call = sign_in_background(proxy.addr, "pending");
    wait_until_the_card_has(&sim, "pending");
    let dropped_at = Instant::now();
    sim.drop_connections();
    let r = call.join().unwrap();
    let took = dropped_at.elapsed();
    // #26.1: the card had the call, it may have been carried out: 502, never replayed
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("Retry-After"), None);
    assert_eq!(r.header("X-Cert-No"), Some(sim.cert_no().as_str()));
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    assert!(r.json()["error"].as_str().unwrap().contains("unavailable"));
    sim.faults().set_silent(SIGN, false);

    // it comes back by itself (first retry after 1 s)
    proxy.wait_log("UKey: reconnected", Duration::from_secs(10));
    proxy.wait_healthy();
    assert_eq!(proxy.rpc(SIGN, json!({"inData": "after"})).status, 200);
    assert_eq!(sim.connections_accepted(), 2);
}

/// Calls waiting behind the one the card holds are not read by the UKey thread until the card
/// answers (they wait in the channel); a dropped socket answers them at once all the same.
#[test]
fn dropped_socket_answers_the_calls_waiting_behind_at_once_too() {
    let sim = simulator();
    let proxy = proxy_with_a_silent_card(&sim);
    let addr = proxy.addr;
    let first = sign_in_background(addr, "held");
    wait_until_the_card_has(&sim, "held");
    let behind: Vec<_> = ["b1", "b2", "b3"]
        .into_iter()
        .map(|data| sign_in_background(addr, data))
        .collect();
    wait_for(Duration::from_secs(5), "four calls to be waiting", || {
        let metrics = request(addr, "GET", "/metrics", &[], b"").text();
        metrics
            .lines()
            .any(|l| l == "chinaport_ukey_calls_pending 4")
            .then_some(())
    });
    let dropped_at = Instant::now();
    sim.drop_connections();
    // #26.1: the held call reached the card (502); the ones behind never did (503, Retry-After)
    let r = first.join().unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    for handle in behind {
        let r = handle.join().unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.header("Retry-After").is_some());
        assert!(r.json()["error"].as_str().unwrap().contains("unavailable"));
    }
    let took = dropped_at.elapsed();
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    // only the held call was ever sent
    let sent = sim.received();
    assert!(
        !sent
            .iter()
            .any(|f| ["b1", "b2", "b3"].contains(&f["args"]["inData"].as_str().unwrap_or(""))),
        "{sent:?}"
    );
}

#[test]
fn calls_while_disconnected_are_answered_503_at_once() {
    let sim = simulator();
    sim.faults().set_refuse(true);
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_log("UKey: cannot reach", Duration::from_secs(10));
    let started = Instant::now();
    let r = proxy.rpc(CERT_NO, json!({}));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_uuid_v4(r.header("X-Request-ID").unwrap());
    assert_eq!(proxy.get("/health").status, 503);

    // a second failed attempt (after 1 s), but the outage is logged once; the 1-2-4-8 s
    // backoff itself is the session's unit tests' (src/ukey/session.rs, fake clock)
    wait_for(Duration::from_secs(10), "a second attempt", || {
        (sim.connections_accepted() >= 2).then_some(())
    });
    assert_eq!(proxy.log().matches("UKey: cannot reach").count(), 1);
    sim.faults().set_refuse(false);
    proxy.wait_healthy();
    assert_eq!(proxy.rpc(CERT_NO, json!({})).status, 200);
    assert_eq!(proxy.log().matches("UKey: connected").count(), 1);
}

#[test]
fn silent_card_answers_504_after_the_timeout() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({"ukey": {"timeout_ms": 700}}));
    proxy.wait_healthy();
    sim.faults().set_silent(SIGN, true);
    let started = Instant::now();
    let r = proxy.rpc(SIGN, json!({"inData": "x"}));
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.header("Retry-After"), None);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 700 ms")
    );
    assert!(took >= Duration::from_millis(650), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    // the next call is not confused by a late frame and still works
    sim.faults().set_silent(SIGN, false);
    let r = proxy.rpc(SIGN, json!({"inData": "y"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["_args"]["Data"][0], sim.signature_of("y"));
}

#[test]
fn slow_card_is_waited_for_within_the_timeout() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({"ukey": {"timeout_ms": 3000}}));
    proxy.wait_healthy();
    sim.faults().set_latency(Duration::from_millis(600));
    let r = proxy.rpc(SIGN, json!({"inData": "slow"}));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn unreachable_card_url_still_serves_http() {
    // nothing listens on port 1
    let proxy = Proxy::start("ws://127.0.0.1:1", json!({}));
    let r = proxy.rpc(CERT_NO, json!({}));
    assert_eq!(r.status, 503);
    assert!(r.json()["error"].as_str().unwrap().contains("unavailable"));
}

#[test]
fn the_password_never_reaches_the_log() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({"log": {"verbose": true}}));
    proxy.wait_healthy();
    proxy.rpc(SIGN, json!({"inData": "a", "passwd": PASSWORD}));
    proxy.rpc(
        SIGN,
        json!({"inData": format!("contains {PASSWORD} inside")}),
    );
    proxy.rpc(SIGN, json!({}));
    sim.faults()
        .set_error(CERT_NO, Some(vec![format!("bad passwd {PASSWORD}")]));
    proxy.rpc(CERT_NO, json!({}));
    proxy.wait_log("rpc cus-sec_SpcGetCertNo answer", Duration::from_secs(5));
    let log = proxy.log();
    assert!(log.contains("UKey <-"), "verbose frames are logged: {log}");
    assert!(log.contains("***MASKED***"), "{log}");
    assert!(
        !log.contains(PASSWORD),
        "password leaked into the log:\n{log}"
    );
}

#[test]
fn connection_cap_idle_timeout_and_header_limits() {
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"server": {"max_connections": 4, "read_timeout_ms": 400}}),
    );
    proxy.wait_healthy();
    // four half-open connections take every slot
    let mut idle: Vec<_> = (0..4)
        .map(|_| open_raw(proxy.addr, b"POST /rpc HTTP/1.1\r\n"))
        .collect();
    let over = wait_for(Duration::from_secs(3), "a refused fifth connection", || {
        let r = request(proxy.addr, "GET", "/health", &[], b"");
        if r.status == 503 && r.text().contains("too many open connections") {
            return Some(r);
        }
        // a slot was still held by an answered connection that had not yet seen the client
        // close (the lingering close), so one of the four was refused: take the freed slot
        idle.push(open_raw(proxy.addr, b"POST /rpc HTTP/1.1\r\n"));
        None
    });
    assert_eq!(over.header("Connection"), Some("close"));
    // they are cut after the read timeout, and the slots come back
    for s in idle.iter_mut() {
        let (_, closed) = read_until_closed(s, Duration::from_secs(5));
        assert!(closed, "an idle connection stayed open");
    }
    wait_for(Duration::from_secs(3), "a free slot", || {
        (proxy.get("/health").status == 200).then_some(())
    });

    // a header line beyond 8 KiB is refused with 431, without reading it all
    let long = format!(
        "GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // (the slots of the connections above are freed as their threads finish: a request that
    // still finds them all taken is answered 503 "too many open connections" and tried again)
    let past_cap = |raw: &[u8]| {
        wait_for(
            Duration::from_secs(5),
            "a free slot for the request",
            || {
                let r = raw_request(proxy.addr, raw);
                (!(r.status == 503 && r.text().contains("too many open connections"))).then_some(r)
            },
        )
    };
    let r = past_cap(long.as_bytes());
    assert_eq!(r.status, 431);
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = past_cap(format!("GET /health HTTP/1.1\r\n{many}\r\n").as_bytes());
    assert_eq!(r.status, 431);

    // a forged huge Content-Length is refused without reading (or allocating) it
    let r = past_cap(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n{}");
    assert_eq!(r.status, 413);
    // and the proxy goes on serving (once the refused connections' lingering closes end)
    let call = json!({"_method": CERT_NO}).to_string();
    let r = past_cap(
        format!(
            "POST /rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{call}",
            call.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn health_reports_connection_and_certificate() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let h = proxy.get("/health").json();
    assert_eq!(h["connected"], true);
    assert_eq!(h["cert_no"], sim.cert_no().as_str());
    assert_eq!(h["last_probe"]["ok"], true);
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn failed_health_probe_triggers_a_reconnect() {
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"ukey": {"health_interval_s": 1, "timeout_ms": 500}}),
    );
    proxy.wait_healthy();
    sim.faults().set_silent(CERT_NO, true);
    proxy.wait_log(
        "health probe cus-sec_SpcGetCertNo got no answer",
        Duration::from_secs(5),
    );
    wait_for(Duration::from_secs(5), "a second connection", || {
        (sim.connections_accepted() >= 2).then_some(())
    });
    sim.faults().set_silent(CERT_NO, false);
    proxy.wait_healthy();
}

#[test]
fn keeps_accepting_after_idling_longer_than_the_read_timeout() {
    // regression: a read timeout on the listener also timed out accept() and ended the loop
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({"server": {"read_timeout_ms": 200}}));
    proxy.wait_healthy();
    std::thread::sleep(Duration::from_millis(800)); // the scenario: an idle server, not a sync
    assert_eq!(proxy.get("/health").status, 200);
}
