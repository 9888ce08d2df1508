//! #32.5: RFC 9421's own RSA test key (Appendix B.1.1), as the RFC prints it: the private key
//! (PKCS#1, primes of unequal size) signs with `sign --rsa-key`, the public key (PKCS#1
//! `RSA PUBLIC KEY`) starts the proxy, and both directions are checked with an independent
//! RFC 9421 implementation (Python `http-message-signatures`, tests/httpsig_interop.py).

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::Command;

const PRIVATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/rfc9421-test-key-rsa.pem"
);
const PUBLIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/rfc9421-test-key-rsa.pub.pem"
);
const INTEROP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/httpsig_interop.py");

fn python(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(INTEROP)
        .args(args)
        .output()
        .expect("python3 with http-message-signatures (.ci/run installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn send(proxy: &Proxy, headers: &Value, body: &str) -> Resp {
    let h: Vec<(String, String)> = match headers {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
        Value::Array(a) => a
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect(),
        _ => panic!("headers: {headers}"),
    };
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    request(proxy.addr, "POST", "/rpc", &h, body.as_bytes())
}

#[test]
fn the_rfc_test_key_rsa_signs_and_verifies_in_both_directions() {
    let sim = simulator();
    let public = std::fs::read_to_string(PUBLIC).unwrap();
    assert!(public.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    let proxy = Proxy::start(
        &sim.url(),
        json!({"auth": {"scheme": "httpsig", "clients": {"test-key-rsa": {"public_key": public}}}}),
    );
    proxy.wait_healthy();
    let url = format!("http://{}/rpc", proxy.addr);

    // Python signs with the RFC's private key; the proxy verifies with the PKCS#1 public key
    let body = r#"{"_method":"cus-sec_SpcSignDataAsPEM","args":{"inData":"from python"}}"#;
    let (ok, out) = python(&["sign", &url, body, "test-key-rsa", PRIVATE]);
    assert!(ok, "{out}");
    let headers: Value = serde_json::from_str(out.trim()).unwrap();
    let r = send(&proxy, &headers, body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["_args"]["Data"][0],
        sim.signature_of("from python").as_str()
    );

    // the sign command signs with the RFC's private key; Python and the proxy verify it
    let body = r#"{"_method":"cus-sec_SpcSignDataAsPEM","args":{"inData":"from sign"}}"#;
    let key = format!("@{PRIVATE}");
    let out = Command::new(env!("CARGO_BIN_EXE_chinaport-proxy"))
        .args(["sign", "--scheme", "httpsig", "--rsa-key", &key])
        .args([
            "--key-id",
            "test-key-rsa",
            "--url",
            &url,
            "--body",
            body,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sign --rsa-key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let as_map: serde_json::Map<String, Value> = signed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].clone()))
        .collect();
    let (ok, out) = python(&[
        "verify",
        &url,
        body,
        &Value::Object(as_map).to_string(),
        PUBLIC,
    ]);
    assert!(ok, "Python verifies the sign command's signature: {out}");
    let r = send(&proxy, &signed["headers"], body);
    assert_eq!(r.status, 200, "{}", r.text());
}
