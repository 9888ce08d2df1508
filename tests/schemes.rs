//! The four signature schemes end to end: the `sign` command's curl line accepted by the running
//! proxy for every scheme, then replay, a wrong client id and a tampered body refused; per-client
//! keys; x-mg trace ids and codes; webhooks signed with the configured scheme.

mod common;

use common::receiver::Receiver;
use common::*;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

const SECRET: &str = "erp-shared-secret-42";
const BODY: &str = r#"{"_method":"cus-sec_SpcSignDataAsPEM","args":{"inData":"scheme test"}}"#;
/// RFC 9421 B.1.4 test-key-ed25519.
const ED_PRIVATE: &str = "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF";
const ED_PUBLIC: &str = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";

fn proxy_for(sim_url: &str, scheme: Value, extra: Value) -> Proxy {
    let mut overlay = json!({"auth": {"scheme": scheme, "clients": {
        "erp": {"secret": SECRET},
        "gateway": {"public_key": ED_PUBLIC},
    }}});
    merge(&mut overlay, &extra);
    let proxy = Proxy::start(sim_url, overlay);
    proxy.wait_healthy();
    proxy
}

/// Runs `chinaport-proxy sign … --json` and returns its output.
fn sign(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_chinaport-proxy"))
        .arg("sign")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs a curl command line as a user would, with the status appended on its own line.
fn curl(cmd: &str) -> (u16, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{cmd} -w '\\n%{{http_code}}'"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

fn url(proxy: &Proxy) -> String {
    format!("http://{}/rpc", proxy.addr)
}

#[test]
fn the_sign_command_is_accepted_for_every_scheme_and_replays_are_not() {
    let sim = simulator();
    for scheme in ["md5", "hmac", "httpsig", "checksum"] {
        let proxy = proxy_for(&sim.url(), json!(scheme), json!({}));
        let u = url(&proxy);
        let signed = sign(&[
            "--scheme", scheme, "--key", SECRET, "--key-id", "erp", "--url", &u, "--body", BODY,
        ]);
        let cmd = signed["curl"].as_str().unwrap();
        let (status, body) = curl(cmd);
        assert_eq!(status, 200, "{scheme}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            answer["_args"]["Data"][0],
            sim.signature_of("scheme test").as_str(),
            "{scheme}"
        );
        let (status, body) = curl(cmd);
        assert_eq!(status, 401, "{scheme} replay: {body}");
        assert!(body.contains("replayed"), "{scheme}: {body}");
        // the wrong secret
        let signed = sign(&[
            "--scheme",
            scheme,
            "--key",
            "not-the-secret",
            "--key-id",
            "erp",
            "--url",
            &u,
            "--body",
            BODY,
        ]);
        let (status, body) = curl(signed["curl"].as_str().unwrap());
        assert_eq!(status, 401, "{scheme}: {body}");
        assert!(body.contains("bad signature"), "{scheme}: {body}");
        // a body changed after signing
        let signed = sign(&[
            "--scheme", scheme, "--key", SECRET, "--key-id", "erp", "--url", &u, "--body", BODY,
        ]);
        let tampered = signed["curl"]
            .as_str()
            .unwrap()
            .replace("scheme test", "other data!");
        let (status, body) = curl(&tampered);
        assert_eq!(status, 401, "{scheme} tampered: {body}");
        // no credentials at all
        let r = proxy.post("/rpc", BODY);
        assert_eq!(r.status, 401, "{scheme}");
        assert!(
            !sim.received()
                .iter()
                .any(|f| f["args"]["inData"] == "other data!"),
            "{scheme}: a refused request reached the card"
        );
    }
}

#[test]
fn client_ids_select_keys() {
    let sim = simulator();
    for scheme in ["hmac", "httpsig"] {
        let proxy = proxy_for(&sim.url(), json!(scheme), json!({}));
        let u = url(&proxy);
        let signed = sign(&[
            "--scheme", scheme, "--key", SECRET, "--key-id", "nobody", "--url", &u, "--body", BODY,
        ]);
        let (status, body) = curl(signed["curl"].as_str().unwrap());
        assert_eq!(status, 401, "{scheme}");
        assert!(
            body.contains("unknown client id \\\"nobody\\\""),
            "{scheme}: {body}"
        );
    }
    // an Ed25519 client signs with its private key; the proxy holds only the public key
    let proxy = proxy_for(&sim.url(), json!("httpsig"), json!({}));
    let u = url(&proxy);
    let signed = sign(&[
        "--scheme",
        "httpsig",
        "--ed25519-key",
        ED_PRIVATE,
        "--key-id",
        "gateway",
        "--url",
        &u,
        "--body",
        BODY,
    ]);
    let (status, body) = curl(signed["curl"].as_str().unwrap());
    assert_eq!(status, 200, "{body}");
    // the ed25519 signature under another client's id does not pass
    let signed = sign(&[
        "--scheme",
        "httpsig",
        "--ed25519-key",
        ED_PRIVATE,
        "--key-id",
        "erp",
        "--url",
        &u,
        "--body",
        BODY,
    ]);
    let (status, body) = curl(signed["curl"].as_str().unwrap());
    assert_eq!(status, 401, "{body}");
}

#[test]
fn several_schemes_at_once() {
    let sim = simulator();
    let proxy = proxy_for(&sim.url(), json!(["md5", "hmac"]), json!({}));
    let u = url(&proxy);
    for scheme in ["md5", "hmac"] {
        let signed = sign(&[
            "--scheme", scheme, "--key", SECRET, "--key-id", "erp", "--url", &u, "--body", BODY,
        ]);
        assert_eq!(curl(signed["curl"].as_str().unwrap()).0, 200, "{scheme}");
    }
    let signed = sign(&[
        "--scheme", "httpsig", "--key", SECRET, "--key-id", "erp", "--url", &u, "--body", BODY,
    ]);
    let (status, body) = curl(signed["curl"].as_str().unwrap());
    assert_eq!(status, 401, "httpsig is not accepted here: {body}");
    assert!(body.contains("no credentials"), "{body}");
}

#[test]
fn hmac_trace_id_code_response_signature_and_body_digest() {
    let sim = simulator();
    let rx = Receiver::start("");
    let proxy = proxy_for(
        &sim.url(),
        json!("hmac"),
        json!({"auth": {"hmac": {"sign_response": true}},
               "webhook": {"audit_url": rx.url("/audit")}}),
    );
    let u = url(&proxy);
    let signed = sign(&[
        "--scheme", "hmac", "--key", SECRET, "--key-id", "erp", "--url", &u, "--body", BODY,
    ]);
    let headers: Vec<(String, String)> = serde_json::from_value(signed["headers"].clone()).unwrap();
    let mut h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    h.push(("x-mg-traceid", "trace-abc-123"));
    let r = request(proxy.addr, "POST", "/rpc", &h, BODY.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-mg-traceid"), Some("trace-abc-123"));
    assert_eq!(r.header("x-mg-code"), Some("200"));
    // the response is signed over its own nonce
    let nonce = r.header("x-mg-nonce").expect("response nonce");
    let expected = chinaport_proxy::auth::mg::mg_sign(
        chinaport_proxy::auth::mg::MgAlg::HmacSha256,
        "erp",
        &chinaport_proxy::auth::Secret::new(SECRET),
        nonce,
    );
    assert_eq!(r.header("x-mg-sign"), Some(expected.as_str()));
    proxy.wait_log("trace=trace-abc-123", Duration::from_secs(5));
    let audit = wait_for(Duration::from_secs(10), "the audit", || {
        rx.of_kind("api_audit").pop()
    });
    assert_eq!(audit.body["trace_id"], "trace-abc-123");
    assert_eq!(audit.body["client"], "erp");

    // a failure still carries the trace id and a code
    h.retain(|(n, _)| *n != "x-mg-sign");
    h.push(("x-mg-sign", "AAAA"));
    let r = request(proxy.addr, "POST", "/rpc", &h, BODY.as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-mg-code"), Some("401"));
    assert_eq!(r.header("x-mg-traceid"), Some("trace-abc-123"));

    // require_body_digest: the x-mg headers alone are not enough
    let strict = proxy_for(
        &sim.url(),
        json!("hmac"),
        json!({"auth": {"hmac": {"require_body_digest": true}}}),
    );
    let su = url(&strict);
    let signed = sign(&[
        "--scheme", "hmac", "--key", SECRET, "--key-id", "erp", "--url", &su, "--body", BODY,
    ]);
    let headers: Vec<(String, String)> = serde_json::from_value(signed["headers"].clone()).unwrap();
    let bare: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(n, _)| n != "Content-Digest")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let r = request(strict.addr, "POST", "/rpc", &bare, BODY.as_bytes());
    assert_eq!(r.status, 401);
    assert!(r.text().contains("Content-Digest"), "{}", r.text());
}

#[test]
fn webhooks_are_signed_with_the_configured_scheme() {
    let sim = simulator();
    let rx = Receiver::start("");
    let proxy = Proxy::start(
        &sim.url(),
        json!({"auth": {"app_secret": SECRET, "scheme": ["md5", "hmac"]},
               "webhook": {"audit_url": rx.url("/hooks/audit"), "sign_scheme": "hmac", "key_id": "proxy-7"}}),
    );
    proxy.wait_healthy();
    let r = signed(proxy.addr, "POST", "/rpc", BODY, SECRET);
    assert_eq!(r.status, 200);
    let e = wait_for(Duration::from_secs(10), "the audit", || {
        rx.of_kind("api_audit").pop()
    });
    assert_eq!(e.header("x-mg-secretid"), Some("proxy-7"));
    let nonce = e.header("x-mg-nonce").unwrap();
    let expected = chinaport_proxy::auth::mg::mg_sign(
        chinaport_proxy::auth::mg::MgAlg::HmacSha256,
        "proxy-7",
        &chinaport_proxy::auth::Secret::new(SECRET),
        nonce,
    );
    assert_eq!(e.header("x-mg-sign"), Some(expected.as_str()));
    assert!(e.header("content-digest").unwrap().starts_with("sha-256=:"));
}

#[test]
fn the_readme_worked_examples_are_right() {
    use chinaport_proxy::auth::{RequestParts, checksum, digest, httpsig, md5_signature, mg};
    let readme = std::fs::read_to_string("docs/reference.md").unwrap();
    let body = r#"{"_method":"cus-sec_SpcGetCertNo"}"#;
    let expect = |value: &str| assert!(readme.contains(value), "docs/reference.md lacks {value}");

    let md5 = md5_signature(
        "POST",
        "/rpc",
        "1700000003000",
        body.as_bytes(),
        "app-secret-123",
    );
    expect(&format!("X-Signature: {md5}"));

    let secret = chinaport_proxy::auth::Secret::new("erp-secret");
    let sign = mg::mg_sign(mg::MgAlg::HmacSha256, "erp", &secret, "9c1e4f7a2b");
    expect(&format!("x-mg-sign: {sign}"));

    let d = digest::content_digest("sha-256", body.as_bytes()).unwrap();
    let headers = vec![
        ("host".to_string(), "127.0.0.1:8780".to_string()),
        ("content-digest".to_string(), d.clone()),
    ];
    let req = RequestParts {
        method: "POST",
        path: "/rpc",
        query: "",
        authority: "127.0.0.1:8780",
        headers: &headers,
        body: body.as_bytes(),
    };
    let (input, signature) = httpsig::sign(
        &req,
        &["@method", "@path", "@authority", "content-digest"],
        1_700_000_000,
        Some("erp"),
        Some("n-1"),
        &httpsig::SigningKey::Hmac(secret.clone()),
    )
    .unwrap();
    expect(&format!("Content-Digest: {d}"));
    expect(&format!("Signature-Input: {input}"));
    expect(&format!("Signature: {signature}"));
    let parsed = httpsig::parse_headers(&input, &signature).unwrap();
    let base = httpsig::signature_base(&parsed.inner, &req).unwrap();
    expect(&format!("```\n{base}\n```"));

    let cfg = chinaport_proxy::config::ChecksumConfig::default();
    let fields: serde_json::Map<String, Value> = serde_json::from_str(
        r#"{"_method":"cus-sec_SpcGetCertNo","nonce":"n-1","timestamp":1700000000000}"#,
    )
    .unwrap();
    let pairs = checksum::pairs_string(&fields, "sign", &[], "erp-secret");
    expect(&format!("`{pairs}`"));
    expect(&format!("as\n`{}`", checksum::sign(&fields, &cfg, &secret)));
}

#[test]
fn an_rsa_request_signed_by_openssl_the_ebay_way_is_accepted() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    let dir = TempDir::new("rsa");
    let d = dir.path();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "key.pem",
        ],
    );
    openssl(d, &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
    let public = std::fs::read_to_string(d.join("pub.pem")).unwrap();
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"auth": {"scheme": "httpsig", "clients": {"ebay": {"public_key": public}}}}),
    );
    proxy.wait_healthy();
    // the request as eBay's guide builds it: Content-Digest, x-ebay-signature-key, and a
    // signature over them with RSADigestSigner (PKCS#1 v1.5, SHA-256); no alg, no keyid
    std::fs::write(d.join("body"), BODY).unwrap();
    let digest = B64.encode(openssl(d, &["dgst", "-sha256", "-binary", "body"]));
    let content_digest = format!("sha-256=:{digest}:");
    let jwe = "eyJ6aXAiOiJERUYiLCJlbmMiOiJBMjU2R0NNIn0.test-jwe";
    let created = now_ms() / 1000;
    let params = format!(
        "(\"content-digest\" \"x-ebay-signature-key\" \"@method\" \"@path\" \"@authority\");created={created}"
    );
    let base = format!(
        "\"content-digest\": {content_digest}\n\"x-ebay-signature-key\": {jwe}\n\"@method\": POST\n\"@path\": /rpc\n\"@authority\": {}\n\"@signature-params\": {params}",
        proxy.addr
    );
    std::fs::write(d.join("base"), &base).unwrap();
    let sig = B64.encode(openssl(d, &["dgst", "-sha256", "-sign", "key.pem", "base"]));
    let send = |jwe_sent: &str| {
        request(
            proxy.addr,
            "POST",
            "/rpc",
            &[
                ("Content-Digest", &content_digest),
                ("x-ebay-signature-key", jwe_sent),
                ("Signature-Input", &format!("sig1={params}")),
                ("Signature", &format!("sig1=:{sig}:")),
            ],
            BODY.as_bytes(),
        )
    };
    let r = send(jwe);
    assert_eq!(r.status, 200, "{}", r.text());
    // the covered x-ebay-signature-key is verified like any other header
    let r = send("eyJ0YW1wZXJlZCI6dHJ1ZX0.other");
    assert_eq!(r.status, 401, "{}", r.text());

    // and the sign command signs with an RSA key too (rsa-v1_5-sha256)
    let key_arg = format!("@{}", d.join("key.pem").display());
    let out = sign(&[
        "--scheme",
        "httpsig",
        "--rsa-key",
        &key_arg,
        "--key-id",
        "ebay",
        "--url",
        &url(&proxy),
        "--body",
        BODY,
    ]);
    assert!(
        out["headers"].to_string().contains("rsa-v1_5-sha256"),
        "{out}"
    );
    let (code, body) = curl(out["curl"].as_str().unwrap());
    assert_eq!(code, 200, "{body}");
}
