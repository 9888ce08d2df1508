//! What operators and integrators look at: the status page rendered by a real browser (headless
//! Chromium), `/metrics` read by a real Prometheus parser (Python's prometheus_client), and the
//! OpenAPI description served as the file says.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

/// The page as headless Chromium renders it (its DOM after loading).
fn chromium_dom(url: &str) -> String {
    let profile = TempDir::new("chromium");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .output()
        .expect("chromium (.ci/run installs Debian's chromium)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text a person sees: the DOM without its tags.
fn visible_text(dom: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    let body = dom.split("<body").nth(1).unwrap_or(dom);
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_status_page_shows_the_card_and_the_last_calls_in_a_real_browser() {
    let sim = simulator_sm2();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let call = proxy.rpc(
        "cus-sec_SpcSignDataAsPEM",
        json!({"inData": "secret order data"}),
    );
    assert_eq!(call.status, 200);
    let request_id = call.header("X-Request-ID").unwrap().to_string();
    let signature = call.json()["_args"]["Data"][0]
        .as_str()
        .unwrap()
        .to_string();

    let en = visible_text(&chromium_dom(&format!("http://{}/?lang=en", proxy.addr)));
    for seen in [
        "connected",
        &sim.cert_no(),
        "SM2",
        "days left",
        "Last 100 calls",
        "/rpc",
        "cus-sec_SpcSignDataAsPEM",
        &request_id,
        "127.0.0.1",
        "SIMULATOR",
    ] {
        assert!(en.contains(seen), "the page does not show {seen:?}: {en}");
    }
    // transfer is not configured: no section for it
    assert!(!en.contains("messages sent"), "{en}");
    for secret in [PASSWORD, "secret order data", &signature] {
        assert!(!en.contains(secret), "the page shows {secret:?}");
    }
    let zh = visible_text(&chromium_dom(&format!("http://{}/?lang=zh", proxy.addr)));
    assert!(
        zh.contains("已连接") && zh.contains("证书编号") && zh.contains(&request_id),
        "{zh}"
    );
    // the raw HTML needs nothing from outside and refreshes itself
    let html = proxy.get("/").text();
    assert!(html.contains("http-equiv=\"refresh\""));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
}

/// A CEB312 receipt for the corpus order, as customs' import samples come (default namespace).
fn order_receipt(code: &str, time: &str, info: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CEB312Message xmlns=\"http://www.chinaport.gov.cn/ceb\" \
         guid=\"{}\" version=\"1.0\"><OrderReturn><guid>{}</guid><ebpCode>1105910159</ebpCode>\
         <ebcCode>1105910159</ebcCode><orderNo>cp477912536700681230</orderNo><returnStatus>{code}</returnStatus>\
         <returnTime>{time}</returnTime><returnInfo>{info}</returnInfo></OrderReturn></CEB312Message>",
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4()
    )
}

#[test]
fn the_status_page_lists_the_messages_sent_with_their_latest_receipt() {
    let sim = simulator();
    let work = TempDir::new("status-transfer");
    let (outbox, inbox) = (work.path().join("out"), work.path().join("in"));
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::create_dir_all(&inbox).unwrap();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"transfer": {"outbox": outbox.display().to_string(), "inbox": inbox.display().to_string(),
                            "poll_ms": 50}}),
    );
    proxy.wait_healthy();
    let send = |file: &str| {
        let r = request(
            proxy.addr,
            "POST",
            "/api/ceb/send",
            &[("Content-Type", "application/xml")],
            &std::fs::read(format!("tests/ceb_corpus/{file}")).unwrap(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let order = send("ceb311.xml");
    let inventory = send("ceb621-crlf.xml");
    let order_guid = order["guid"].as_str().unwrap().to_string();
    let invt_guid = inventory["guid"].as_str().unwrap().to_string();
    // two receipts for the order, the later status last
    std::fs::write(
        inbox.join("r1.xml"),
        order_receipt(
            "2",
            "20240301101500100",
            &format!("新增申报成功[{order_guid}]"),
        ),
    )
    .unwrap();
    std::fs::write(
        inbox.join("r2.xml"),
        order_receipt("120", "20240301101502300", "[Code:1800;Desc:逻辑校验通过]"),
    )
    .unwrap();
    wait_for(Duration::from_secs(10), "both receipts stored", || {
        let r = proxy
            .get(&format!("/api/receipts?guid={order_guid}"))
            .json();
        (r["records"].as_array()?.len() == 3).then_some(())
    });

    let en = visible_text(&chromium_dom(&format!("http://{}/?lang=en", proxy.addr)));
    let section = en
        .split("Last 100 messages sent")
        .nth(1)
        .and_then(|s| s.split("Last 100 calls").next())
        .unwrap_or_else(|| panic!("no section of messages sent: {en}"));
    for seen in [
        order_guid.as_str(),
        "CEB311Message",
        "orderNo cp477912536700681230",
        "120 accepted by customs (CEB312Message)",
        "[Code:1800;Desc:逻辑校验通过]",
        "2024-03-01T10:15:02.300+08:00",
        invt_guid.as_str(),
        "CEB621Message",
        "awaiting a receipt",
    ] {
        assert!(section.contains(seen), "{seen:?} not in: {section}");
    }
    assert!(
        !section.contains("being declared"),
        "an older status shown: {section}"
    );
    // newest first
    assert!(
        section.find(&invt_guid) < section.find(&order_guid),
        "{section}"
    );
    let zh = visible_text(&chromium_dom(&format!("http://{}/?lang=zh", proxy.addr)));
    for seen in ["最近发送的 100 条报文", "120 海关入库", "等待回执"] {
        assert!(zh.contains(seen), "{seen:?} not in: {zh}");
    }
}

#[test]
fn the_status_page_can_be_turned_off() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({"server": {"status_page": false}}));
    assert_eq!(proxy.get("/").status, 404);
}

#[test]
fn metrics_parse_with_prometheus_client_and_count_what_happened() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    for _ in 0..3 {
        assert_eq!(proxy.rpc("cus-sec_SpcGetCertNo", json!({})).status, 200);
    }
    assert_eq!(proxy.post("/nope", "").status, 404);
    let text = proxy.get("/metrics").text();
    let dir = TempDir::new("metrics");
    std::fs::write(dir.path().join("metrics.txt"), &text).unwrap();
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    out[fam.name] = {"type": fam.type, "samples": [[s.name, s.labels, s.value] for s in fam.samples]}
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir.path().join("metrics.txt"))
        .output()
        .expect("python3 with prometheus_client (.ci/run installs it)");
    assert!(
        out.status.success(),
        "the parser refused it: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fams: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, kind) in [
        ("chinaport_http_requests", "counter"),
        ("chinaport_http_request_duration_seconds", "histogram"),
        ("chinaport_ukey_call_duration_seconds", "histogram"),
        ("chinaport_ukey_connected", "gauge"),
        ("chinaport_ukey_reconnects", "counter"),
        ("chinaport_ukey_probe_failures", "counter"),
        ("chinaport_ukey_calls_pending", "gauge"),
        ("chinaport_ukey_calls_in_flight", "gauge"),
        ("chinaport_shed", "counter"),
        ("chinaport_webhook_events_pending", "gauge"),
        ("chinaport_webhook_events_delivered", "counter"),
        ("chinaport_webhook_delivery_failures", "counter"),
        ("chinaport_webhook_events_dropped", "counter"),
        ("chinaport_cert_days_left", "gauge"),
        ("chinaport_build_info", "gauge"),
        ("chinaport_card_info", "gauge"),
    ] {
        assert_eq!(fams[name]["type"], kind, "{name} in {fams}");
    }
    let rpc_ok = fams["chinaport_http_requests"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[1]["route"] == "/rpc" && s[1]["status"] == "200")
        .expect("requests to /rpc answered 200");
    assert!(rpc_ok[2].as_f64().unwrap() >= 3.0);
    assert!(
        fams["chinaport_http_requests"]["samples"]
            .to_string()
            .contains("\"other\"")
    );
    assert_eq!(fams["chinaport_ukey_connected"]["samples"][0][2], 1.0);
    // the card this proxy serves, for a Prometheus job over the fleet (#26.1)
    assert_eq!(
        fams["chinaport_card_info"]["samples"][0][1]["cert_no"],
        sim.cert_no().as_str()
    );
    assert!(!text.contains(PASSWORD));
}

#[test]
fn the_openapi_description_is_served_as_json() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    let r = proxy.get("/openapi.json");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["openapi"], "3.1.0");
    assert!(v["paths"]["/rpc"]["post"].is_object());
}

/// H4: `/metrics` labels come from a closed set. On 40b6e27 each invented `_method` (up to 64 of
/// ~1.9 MB) became a label kept forever, so one unauthenticated scrape grew to gigabytes.
#[test]
fn invented_methods_share_one_metric_label_and_long_names_are_refused() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    for i in 0..20 {
        // a long but accepted name, different each time: the card answers (its error frame, 400),
        // and the call is counted
        let method = format!("cus-sec_SpcInvented{i}{}", "x".repeat(100));
        let answer = proxy.rpc(&method, json!({}));
        assert!(answer.json().get("_status").is_some(), "{}", answer.text());
    }
    let huge = proxy.rpc(&"m".repeat(200_000), json!({}));
    assert_eq!(huge.status, 400);
    assert!(
        huge.json()["error"]
            .as_str()
            .unwrap()
            .contains("limit is 128")
    );
    let forged = proxy.rpc("cus-sec_SpcGetCertNo\nINFO forged", json!({}));
    assert_eq!(forged.status, 400, "{}", forged.text());
    // (the certificate number is answered from the identity cache, #28: this one is the card's)
    let digest = proxy.rpc("cus-sec_SpcSHA1DigestAsPEM", json!({"szInfo": "x"}));
    assert_eq!(digest.status, 200);
    assert_eq!(proxy.rpc("cus-sec_SpcGetCertNo", json!({})).status, 200);

    let text = proxy.get("/metrics").text();
    for (family, known) in [
        (
            "chinaport_ukey_call_duration_seconds",
            "cus-sec_SpcSHA1DigestAsPEM",
        ),
        ("chinaport_ukey_calls_total", "cus-sec_SpcSHA1DigestAsPEM"),
        ("chinaport_ukey_cache_answers_total", "cus-sec_SpcGetCertNo"),
    ] {
        let labels: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| l.starts_with(family))
            .filter_map(|l| l.split("method=\"").nth(1)?.split('"').next())
            .collect();
        if family != "chinaport_ukey_cache_answers_total" {
            assert!(labels.contains("other"), "{family}: {labels:?}");
        }
        assert!(labels.contains(known), "{family}: {labels:?}");
        assert!(
            labels.iter().all(|l| !l.contains("Invented")),
            "caller-chosen names became labels: {labels:?}"
        );
    }
    assert!(text.len() < 64 * 1024, "/metrics is {} bytes", text.len());
}

/// L4: `/health` is open to every host (a load balancer reads it), but the last error's text and
/// the client-restart command are shown only on this PC.
#[test]
fn health_keeps_this_pcs_details_to_this_pc() {
    // nothing listens on the card's port: the proxy keeps a last_error
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", closed.local_addr().unwrap());
    drop(closed);
    let proxy = Proxy::start(&url, json!({}));
    let local = wait_for(Duration::from_secs(10), "a last_error", || {
        let h = proxy.get("/health").json();
        h["last_error"].is_string().then_some(h)
    });
    assert_eq!(local["status"], "unavailable");

    let mut lan = Client::connect_from([127, 0, 0, 2], proxy.addr);
    let remote = lan.send("GET", "/health", &[], b"").expect("an answer");
    assert_eq!(remote.status, 503);
    let body = remote.json();
    assert_eq!(body["status"], "unavailable");
    assert!(body.get("last_error").is_none(), "{body}");
    assert!(body.get("client_restart").is_none(), "{body}");
}
