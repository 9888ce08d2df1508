//! Safe defaults (#30.1, M10): without a secret only this PC is served (a caller from
//! 127.0.0.2, standing for another computer, is refused with a JSON error saying how to let it
//! in), unless auth.allow_unauthenticated; the default bind is 127.0.0.1; a web page's
//! cross-site request (text/plain CSRF) never reaches the card; the status page answers only
//! to this PC's host names (DNS rebinding).

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

const SIGN: &str = r#"{"_method":"cus-sec_SpcSignDataAsPEM","args":{"inData":"csrf"}}"#;

fn signs(sim: &chinaport_proxy::simulator::Simulator) -> usize {
    sim.received()
        .iter()
        .filter(|f| f["_method"] == "cus-sec_SpcSignDataAsPEM")
        .count()
}

#[test]
fn without_a_secret_only_this_pc_is_served_unless_allowed() {
    let sim = simulator();
    let p = Proxy::start(&sim.url(), json!({"server": {"host": "0.0.0.0"}}));
    p.wait_healthy();
    p.wait_log(
        "requests from other computers are refused",
        Duration::from_secs(5),
    );
    assert!(p.log().contains("WARN"), "{}", p.log());
    let mut lan = Client::connect_from([127, 0, 0, 2], p.addr);
    let r = lan.send("POST", "/rpc", &[], SIGN.as_bytes()).unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    let why = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        why.contains("auth.app_secret") && why.contains("auth.allow_unauthenticated"),
        "{why}"
    );
    assert_eq!(signs(&sim), 0, "the card was not used");
    // this PC is served, and its status page says that only it is
    assert_eq!(p.post("/rpc", SIGN).status, 200);
    let page = p.get("/?lang=en").text();
    assert!(
        page.contains("id=\"auth-off\">Authentication is off (auth.app_secret is empty)"),
        "{page}"
    );
    drop(p);

    let p = Proxy::start(
        &sim.url(),
        json!({"server": {"host": "0.0.0.0"}, "auth": {"allow_unauthenticated": true}}),
    );
    p.wait_healthy();
    p.wait_log("AUTHENTICATION IS OFF", Duration::from_secs(5));
    // the status page warns too, in both languages
    let page = p.get("/?lang=en").text();
    assert!(
        page.contains("class=\"warn\" id=\"auth-off\">Authentication is off (auth.allow_unauthenticated: true): anyone"),
        "{page}"
    );
    let page = p.get("/?lang=zh").text();
    assert!(page.contains("id=\"auth-off\">认证已关闭"), "{page}");
    let mut lan = Client::connect_from([127, 0, 0, 2], p.addr);
    let r = lan.send("POST", "/rpc", &[], SIGN.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    drop(p);

    // with a secret, a signed caller from elsewhere is served and there is no warning
    let p = Proxy::start(
        &sim.url(),
        json!({"server": {"host": "0.0.0.0"}, "auth": {"app_secret": "s3cret-app"}}),
    );
    p.wait_healthy();
    let r = signed(p.addr, "POST", "/rpc", SIGN, "s3cret-app");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!p.log().contains("authentication is off"), "{}", p.log());
    let page = p.get("/?lang=en").text();
    assert!(page.contains("id=\"card\""), "{page}");
    assert!(!page.contains("auth-off"), "{page}");
}

#[test]
fn the_default_bind_is_this_pc_and_says_so() {
    let sim = simulator();
    let mut config = Proxy::base_config(&sim.url());
    config["server"].as_object_mut().unwrap().remove("host");
    let p = Proxy::start_with_config(&config);
    p.wait_log("only this PC can use the card", Duration::from_secs(5));
    assert!(
        p.log().contains("listening on http://127.0.0.1:"),
        "{}",
        p.log()
    );
}

/// M10: the reproduction, a text/plain POST with a foreign Origin (what any web page can send
/// without a preflight). On 40b6e27 it got 200 and a signature.
#[test]
fn a_web_pages_cross_site_request_never_reaches_the_card() {
    let sim = simulator();
    let p = Proxy::start(&sim.url(), json!({}));
    p.wait_healthy();
    for headers in [
        vec![
            ("Origin", "http://attacker.example"),
            ("Content-Type", "text/plain"),
        ],
        vec![("Origin", "null"), ("Content-Type", "text/plain")],
        vec![
            ("Sec-Fetch-Site", "cross-site"),
            ("Content-Type", "text/plain"),
        ],
    ] {
        let r = request(p.addr, "POST", "/rpc", &headers, SIGN.as_bytes());
        assert_eq!(r.status, 403, "{headers:?}: {}", r.text());
        assert!(r.text().contains("server.allowed_origins"), "{}", r.text());
    }
    assert_eq!(signs(&sim), 0, "the card was not used");
    drop(p);
    let p = Proxy::start(
        &sim.url(),
        json!({"server": {"allowed_origins": ["https://erp.example"]}}),
    );
    p.wait_healthy();
    let r = request(
        p.addr,
        "POST",
        "/rpc",
        &[("Origin", "https://erp.example")],
        SIGN.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// M10: the status page through a rebound DNS name. On 40b6e27 it answered 200 (26 KB).
#[test]
fn the_status_page_answers_to_this_pcs_names_only() {
    let sim = simulator();
    let p = Proxy::start(&sim.url(), json!({"auth": {"app_secret": "s3cret-app"}}));
    p.wait_healthy();
    let raw = |host: &str| {
        raw_request(
            p.addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let r = raw("rebind.attacker.example");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!r.text().contains(&sim.cert_no()));
    assert_eq!(raw(&p.addr.to_string()).status, 200);
    assert_eq!(raw(&format!("localhost:{}", p.addr.port())).status, 200);
}
