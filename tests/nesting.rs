//! Finding H2: documents nested a million deep on every endpoint that takes XML or JSON are
//! answered 400 (naming the limit for XML), and the proxy goes on serving. Before the fix,
//! 4,000 levels of XML on `/api/ceb/sign` aborted the process on a stack overflow. The Java
//! signer's endpoints (`compat.java_signer`) answer their own envelope with `success: false`.

mod common;

use common::*;
use serde_json::json;

const DEPTH: usize = 1_000_000;

fn deep_xml() -> String {
    format!("<r>{}{}</r>", "<a>".repeat(DEPTH), "</a>".repeat(DEPTH))
}

fn deep_json() -> String {
    format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH))
}

fn still_serving(proxy: &mut Proxy, after: &str) {
    assert!(
        proxy.child().try_wait().unwrap().is_none(),
        "the proxy exited after {after}: {}",
        proxy.log()
    );
    assert_eq!(proxy.get("/health").status, 200, "after {after}");
}

#[test]
fn a_million_levels_of_xml_or_json_are_refused_and_the_proxy_lives_on() {
    let sim = simulator();
    // room for the 7 MB document, so that it reaches the parser rather than the 413
    let outbox = TempDir::new("nesting-outbox");
    let mut proxy = Proxy::start(
        &sim.url(),
        json!({"server": {"max_body_bytes": 16 * 1024 * 1024}, "compat": {"java_signer": true},
               "transfer": {"outbox": outbox.path().display().to_string()}}),
    );
    proxy.wait_healthy();
    let xml = deep_xml();
    let xml_in_json = json!({ "xml": xml }).to_string();
    for path in ["/api/ceb/sign", "/api/ceb/verify", "/api/ceb/send"] {
        for (content_type, body) in [
            ("application/xml", xml.as_str()),
            ("application/json", xml_in_json.as_str()),
        ] {
            let r = request(
                proxy.addr,
                "POST",
                path,
                &[("Content-Type", content_type)],
                body.as_bytes(),
            );
            assert_eq!(r.status, 400, "{path} {content_type}: {}", r.text());
            let error = r.json()["error"].as_str().unwrap().to_string();
            assert!(
                error.contains("nested more than 256 levels"),
                "{path}: {error}"
            );
            still_serving(&mut proxy, &format!("{path} {content_type}"));
        }
    }
    let json_doc = deep_json();
    let in_args = format!("{{\"_method\":\"m\",\"args\":{{\"x\":{json_doc}}}}}");
    let stringified_head = json!({"sessionID": "s", "payExchangeInfoHead": json_doc,
        "payExchangeInfoLists": [], "serviceTime": 1})
    .to_string();
    let mut bodies = vec![("/rpc", json_doc.clone()), ("/rpc", in_args)];
    for path in [
        "/api/customs179",
        "/api/ceb/sign",
        "/api/ceb/verify",
        "/api/ceb/send",
    ] {
        bodies.push((path, json_doc.clone()));
    }
    bodies.push(("/api/customs179", stringified_head));
    for (path, body) in &bodies {
        let r = request(
            proxy.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("recursion limit"),
            "{path}: {}",
            r.text()
        );
        still_serving(&mut proxy, path);
    }
    // the Java signer's endpoints answer its envelope (HTTP 200, success false) by design
    let xml_as_data = json!({ "data": deep_xml() }).to_string();
    for (path, body) in [
        ("/rpc/eport/signature", json_doc.as_str()),
        ("/rpc/eport/signature", xml_as_data.as_str()),
        ("/rpc/eport/upload/179/data", json_doc.as_str()),
    ] {
        let r = request(
            proxy.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["success"], false, "{path}: {}", r.text());
        still_serving(&mut proxy, path);
    }
    // the one route that takes no body is still audited (its body parsed as JSON)
    let r = request(
        proxy.addr,
        "POST",
        "/api/ukey/restart",
        &[("Content-Type", "application/json")],
        json_doc.as_bytes(),
    );
    assert_eq!(
        r.status,
        503,
        "no restart command is configured: {}",
        r.text()
    );
    still_serving(&mut proxy, "/api/ukey/restart");
    // nothing of it reached the card, nor the transfer client's outbox
    assert_eq!(std::fs::read_dir(outbox.path()).unwrap().count(), 0);
    assert!(
        !sim.received()
            .iter()
            .any(|f| f["_method"] == "cus-sec_SpcSignDataAsPEM" || f["_method"] == "m")
    );
}
