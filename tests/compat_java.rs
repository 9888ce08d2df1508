//! The Java signer's API (issue 29, docs/compat-java-signer.md) against the UKey simulator: its
//! own request and response samples (tests/fixtures/java-signer/, copied from its README, tests
//! and controller docs) sent to the real binary, answers compared field by field with the
//! samples; the values that depend on the key (signatures, the certificate) verified with OpenSSL
//! against the simulator's certificate, and the digest with lxml's canonical form.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::receiver::Receiver;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// A fixture's JSON (its `#` header lines name where it was copied from).
fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("tests/fixtures/java-signer/{name}")).unwrap();
    let body: String = text
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The envelope has the sample's fields with the sample's types, and the success values.
fn assert_ok_envelope(answer: &Value, sample: &Value) {
    assert_eq!(keys(answer), keys(sample), "{answer}");
    for k in keys(sample) {
        assert_eq!(
            json_type(&answer[&k]),
            json_type(&sample[&k]),
            "{k}: {answer}"
        );
    }
    assert_eq!(answer["message"], sample["message"]);
    assert_eq!(answer["success"], true);
    assert_eq!(answer["code"], sample["code"]);
    assert_timestamp(answer);
}

/// `yyyy-MM-dd HH:mm:ss`, within a minute of now in UTC+8.
fn assert_timestamp(answer: &Value) {
    let t = answer["timestamp"].as_str().unwrap();
    let b = t.as_bytes();
    assert!(
        b.len() == 19
            && b.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b' ',
                13 | 16 => *c == b':',
                _ => c.is_ascii_digit(),
            }),
        "timestamp {t}"
    );
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // days from the civil date (Howard Hinnant's algorithm), then UTC+8 back to UTC
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + doe - 719_468;
    let then = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19) - 8 * 3600;
    let now = (now_ms() / 1000) as i64;
    assert!(
        (now - then).abs() < 60,
        "timestamp {t} is not China time now"
    );
}

fn post(proxy: &Proxy, path: &str, body: &Value) -> Value {
    let r = proxy.post(path, &body.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// OpenSSL's verdict on `signature_b64` over `data`, with the public key of `cert_b64` (DER).
fn openssl_verifies(dir: &Path, cert_b64: &str, data: &[u8], signature_b64: &str) -> bool {
    std::fs::write(dir.join("cert.der"), B64.decode(cert_b64).unwrap()).unwrap();
    std::fs::write(dir.join("data"), data).unwrap();
    std::fs::write(dir.join("sig"), B64.decode(signature_b64).unwrap()).unwrap();
    let key = openssl(
        dir,
        &[
            "x509", "-inform", "DER", "-in", "cert.der", "-pubkey", "-noout",
        ],
    );
    std::fs::write(dir.join("key.pem"), key).unwrap();
    Command::new("openssl")
        .args([
            "dgst",
            "-sha1",
            "-verify",
            "key.pem",
            "-signature",
            "sig",
            "data",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl")
        .status
        .success()
}

/// base64 SHA-1 of lxml's canonical form of the message (the enveloped transform of an unsigned
/// message is the whole document).
fn lxml_digest(dir: &Path, xml: &str) -> String {
    let path = dir.join("message.xml");
    std::fs::write(&path, xml).unwrap();
    let script = r#"
import sys, hashlib, base64
from lxml import etree
tree = etree.parse(sys.argv[1], etree.XMLParser(resolve_entities=False))
c = etree.tostring(tree, method="c14n", with_comments=False)
sys.stdout.write(base64.b64encode(hashlib.sha1(c).digest()).decode())
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("python3 with lxml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn its_ceb_sample_is_signed_and_answered_as_its_readme_shows() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let request = fixture("sign-ceb311.request.json");
    let sample = fixture("sign-ceb.response.json");
    let answer = post(&proxy, "/rpc/eport/signature", &request);
    assert_ok_envelope(&answer, &sample);
    let (data, want) = (&answer["data"], &sample["data"]);
    assert_eq!(keys(data), keys(want), "{data}");
    for k in keys(want) {
        assert_eq!(json_type(&data[&k]), json_type(&want[&k]), "data.{k}");
    }
    assert_eq!(data["success"], true);
    assert_eq!(data["certNo"], sim.cert_no().as_str());
    let cert = data["x509Certificate"].as_str().unwrap();
    assert_eq!(B64.decode(cert).unwrap(), sim.sign_cert_der());
    let dir = TempDir::new("java-ceb");
    let xml = request["data"].as_str().unwrap();
    let digest = data["digestValue"].as_str().unwrap();
    assert_eq!(digest, lxml_digest(dir.path(), xml));
    // the node is the sample's, but for this message's digest and this card's algorithm (RSA)
    let node = data["signatureNode"].as_str().unwrap();
    let expected = want["signatureNode"]
        .as_str()
        .unwrap()
        .replace(want["digestValue"].as_str().unwrap(), digest)
        .replace("xmldsig#sm2-sm3", "xmldsig#rsa-sha1");
    assert_eq!(node, expected);
    // and it is exactly what the card signed
    let signature = data["signatureValue"].as_str().unwrap();
    assert!(openssl_verifies(
        dir.path(),
        cert,
        node.as_bytes(),
        signature
    ));
    assert!(!openssl_verifies(
        dir.path(),
        cert,
        node.replacen(digest, &B64.encode([0u8; 20]), 1).as_bytes(),
        signature
    ));
}

#[test]
fn its_179_sample_is_signed_as_sent_and_answered_as_its_readme_shows() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let request = fixture("sign-179.request.json");
    let sample = fixture("sign-179.response.json");
    let answer = post(&proxy, "/rpc/eport/signature", &request);
    assert_ok_envelope(&answer, &sample);
    let (data, want) = (&answer["data"], &sample["data"]);
    // success, certNo and signatureValue only, as its README's sample
    assert_eq!(keys(data), keys(want), "{data}");
    assert_eq!(data["success"], true);
    assert_eq!(data["certNo"], sim.cert_no().as_str());
    let source = request["data"].as_str().unwrap();
    let cert = B64.encode(sim.sign_cert_der());
    let dir = TempDir::new("java-179");
    let signature = data["signatureValue"].as_str().unwrap();
    assert!(openssl_verifies(
        dir.path(),
        &cert,
        source.as_bytes(),
        signature
    ));
    // signed as sent: its totalAmount 5.0 is not rewritten to 5 (which /api/customs179 would)
    assert!(source.contains(r#""totalAmount":5.0"#));
}

#[test]
fn errors_come_back_in_its_envelope_with_its_codes() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let error = |answer: &Value, code: i64| {
        assert_eq!(answer["success"], false, "{answer}");
        assert_eq!(answer["code"], code, "{answer}");
        assert_timestamp(answer);
    };
    // @NotBlank data: 10001 with the field's message
    let a = post(
        &proxy,
        "/rpc/eport/signature",
        &json!({"id": 1, "data": ""}),
    );
    error(&a, 10001);
    assert_eq!(a["message"], "参数格式校验异常");
    assert_eq!(a["data"]["fieldError"]["data"], "加签数据不能为空");
    // neither a CEB message nor a 179 string
    let a = post(&proxy, "/rpc/eport/signature", &json!({"data": "hello"}));
    error(&a, 500);
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .starts_with("加签数据请求入参不合法")
    );
    assert!(a.get("data").is_none(), "null data is left out: {a}");
    // the card refuses
    sim.faults().set_error(
        "cus-sec_SpcSignDataAsPEM",
        Some(vec!["Err:Custom50070".into()]),
    );
    for data in [
        fixture("sign-179.request.json")["data"].clone(),
        fixture("sign-ceb311.request.json")["data"].clone(),
    ] {
        let a = post(&proxy, "/rpc/eport/signature", &json!({"data": data}));
        error(&a, 500);
        let m = a["message"].as_str().unwrap();
        assert!(
            m.starts_with("加签失败") && m.contains("Custom50070"),
            "{m}"
        );
    }
    sim.faults().set_error("cus-sec_SpcSignDataAsPEM", None);
    // a signature that does not verify is never answered as one
    sim.faults()
        .bad_signatures
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let a = post(
        &proxy,
        "/rpc/eport/signature",
        &fixture("sign-179.request.json"),
    );
    error(&a, 500);
    assert!(
        a["message"].as_str().unwrap().contains("does not verify"),
        "{a}"
    );
    assert!(a.get("data").is_none());
    // the Java signer's START, STOP and REPAIR cannot be mapped honestly
    for c in ["START", "STOP", "REPAIR"] {
        let a = post(
            &proxy,
            &format!("/rpc/eport/ukey/health/endpoint/{c}"),
            &json!({}),
        );
        error(&a, 500);
        assert!(a["message"].as_str().unwrap().contains("不支持"), "{a}");
    }
    // RESTART without a configured command, as the Java signer without SetAccessControl.exe
    let a = post(
        &proxy,
        "/rpc/eport/ukey/health/endpoint/RESTART",
        &json!({}),
    );
    error(&a, 500);
}

#[test]
fn restart_runs_the_client_software_command() {
    let sim = simulator();
    let dir = TempDir::new("java-restart");
    let script = dir.path().join("restart.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"restarted $@\"\n").unwrap();
    let command = ["/bin/sh", script.to_str().unwrap(), "-restart", "-i"];
    let proxy = Proxy::start(
        &sim.url(),
        json!({"ukey": {"client_restart_command": command}}),
    );
    proxy.wait_healthy();
    let a = post(
        &proxy,
        "/rpc/eport/ukey/health/endpoint/RESTART",
        &json!({}),
    );
    assert_eq!(a["code"], 200, "{a}");
    assert_eq!(a["success"], true);
    assert_eq!(a["message"], "操作成功");
    assert_eq!(
        a["data"],
        json!({"stdOutList": ["restarted -restart -i"], "errorOutList": []})
    );
}

#[test]
fn the_certificate_downloads_as_cert_no_dot_cer() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let r = proxy.get("/rpc/eport/cert/download");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/x-x509-ca-cert"));
    assert_eq!(
        r.header("Content-Disposition").unwrap(),
        format!("attachment; filename=\"{}.cer\"", sim.cert_no())
    );
    let dir = TempDir::new("java-cert");
    std::fs::write(dir.path().join("c.cer"), &r.body).unwrap();
    let der = openssl(dir.path(), &["x509", "-in", "c.cer", "-outform", "DER"]);
    // the card's envelope certificate, as the Java signer's download (SpcGetEnvCertAsPEM)
    assert_eq!(der, proxy.get("/api/cert/env.cer").body);
}

/// Decodes application/x-www-form-urlencoded.
fn form_value(body: &str, name: &str) -> String {
    let raw = body
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {body}"));
    let (bytes, mut out, mut i) = (raw.as_bytes(), Vec::new(), 0);
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&raw[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// The text of `payExInfoStr` between two field names.
fn between<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
    let start = text.find(from).unwrap() + from.len();
    &text[start..start + text[start..].find(to).unwrap()]
}

#[test]
fn its_179_upload_sample_is_signed_uploaded_and_answered() {
    let mut customs = Receiver::start("");
    let reply = r#"{"code":"10000","message":"","serviceTime":1601282210417}"#;
    customs.set_reply(reply);
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"customs": {"upload_url": customs.url("/ceb2grab/grab/realTimeDataUpload"),
        // the stand-in going down leaves the proxy's pooled connection to it open and silent,
        // like a hung server: the upload then ends at this timeout (10 s by default)
        "timeout_ms": 1000}}),
    );
    proxy.wait_healthy();
    let request = fixture("upload-179.request.json");
    let a = post(&proxy, "/rpc/eport/upload/179/data", &request);
    assert_eq!(a["code"], 200, "{a}");
    assert_eq!(a["success"], true);
    assert_eq!(
        keys(&a["data"]),
        ["expected", "original", "payload"].map(String::from).into()
    );
    assert_eq!(
        a["data"]["expected"],
        json!({"code": "10000", "message": "上传成功", "total": 0, "serviceTime": 1601282210417u64})
    );
    let original: Value = serde_json::from_str(a["data"]["original"].as_str().unwrap()).unwrap();
    assert_eq!(original, serde_json::from_str::<Value>(reply).unwrap());
    // what customs received is the payload answered
    let got = customs.events();
    assert_eq!(got.len(), 1);
    let uploaded = form_value(&got[0].raw, "payExInfoStr");
    assert_eq!(a["data"]["payload"]["payExInfoStr"], uploaded.as_str());
    // with the caller's sessionID (the Java signer replaced it), and a signature that verifies
    let up: Value = serde_json::from_str(&uploaded).unwrap();
    assert_eq!(up["sessionID"], request["sessionID"]);
    assert_eq!(up["certNo"], sim.cert_no().as_str());
    let source = format!(
        r#""sessionID":"{}"||"payExchangeInfoHead":"{}"||"payExchangeInfoLists":"{}"||"serviceTime":"{}""#,
        request["sessionID"].as_str().unwrap(),
        between(
            &uploaded,
            r#""payExchangeInfoHead":"#,
            r#","payExchangeInfoLists":"#
        ),
        between(
            &uploaded,
            r#""payExchangeInfoLists":"#,
            r#","serviceTime":"#
        ),
        request["serviceTime"].as_str().unwrap()
    );
    let dir = TempDir::new("java-upload");
    let cert = B64.encode(sim.sign_cert_der());
    assert!(openssl_verifies(
        dir.path(),
        &cert,
        source.as_bytes(),
        up["signValue"].as_str().unwrap()
    ));

    // a missing field: 10001 naming it; customs down: 500
    let mut missing = request.clone();
    missing.as_object_mut().unwrap().remove("serviceTime");
    let a = post(&proxy, "/rpc/eport/upload/179/data", &missing);
    assert_eq!(a["code"], 10001, "{a}");
    assert!(a["data"]["fieldError"]["serviceTime"].is_string(), "{a}");
    customs.down();
    let mut other = request.clone();
    other["sessionID"] = json!("another-session");
    let a = post(&proxy, "/rpc/eport/upload/179/data", &other);
    assert_eq!(a["code"], 500, "{a}");
    assert_eq!(a["success"], false);
}

#[test]
fn its_token_header_is_one_more_scheme_and_never_logged() {
    let sim = simulator();
    let token = "tok-9f2c41d7e0b35a86";
    let proxy = Proxy::start(
        &sim.url(),
        json!({"auth": {"scheme": ["md5", "token"], "clients": {"erp": {"secret": token}}}}),
    );
    proxy.wait_healthy();
    let body = fixture("sign-179.request.json").to_string();
    let send = |path: &str, t: Option<&str>| {
        let headers: Vec<(&str, &str)> = t
            .map(|t| vec![("x-auth-token-eport-sign", t)])
            .unwrap_or_default();
        request(proxy.addr, "POST", path, &headers, body.as_bytes())
    };
    let wrong = "tok-9f2c41d7e0b35a87";
    for t in [None, Some(wrong)] {
        let r = send("/rpc/eport/signature", t);
        assert_eq!(r.status, 200, "{}", r.text());
        let a = r.json();
        assert_eq!(
            (a["code"].clone(), a["message"].clone()),
            (json!(401), json!("Unauthorized"))
        );
        assert_eq!(a["success"], false);
        // the proxy's own endpoints keep their 401
        assert_eq!(send("/api/customs179", t).status, 401);
    }
    let a = send("/rpc/eport/signature", Some(token)).json();
    assert_eq!(a["code"], 200, "{a}");
    // md5 still works beside it
    let r = signed(proxy.addr, "POST", "/rpc/eport/signature", &body, token);
    assert_eq!(r.json()["code"], 200);
    let log = proxy.log();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(
        !log.contains(token) && !log.contains(wrong),
        "a token reached the log"
    );
}

#[test]
fn switched_off_every_route_answers_404() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({"compat": {"java_signer": false}}));
    proxy.wait_healthy();
    assert_eq!(proxy.get("/rpc/eport/cert/download").status, 404);
    for path in [
        "/rpc/eport/signature",
        "/rpc/eport/upload/179/data",
        "/rpc/eport/ukey/health/endpoint/RESTART",
        "/rpc/eport/ukey/health/endpoint/START",
        "/rpc/eport/ukey/health/endpoint/STOP",
        "/rpc/eport/ukey/health/endpoint/REPAIR",
    ] {
        let r = proxy.post(path, &fixture("sign-179.request.json").to_string());
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("compat.java_signer")
        );
    }
    assert!(
        sim.received()
            .iter()
            .all(|f| f["_method"] != "cus-sec_SpcSignDataAsPEM")
    );
}
