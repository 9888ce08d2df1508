//! SM2 cards end to end: the simulator plays one by default; the 179 and CEB signatures it
//! makes through the proxy verify with OpenSSL 3 (`pkeyutl -rawin -digest sm3 -pkeyopt
//! distid:1234567812345678`) and with Python's gmssl; lxml recomputes the CEB digest and
//! canonical SignedInfo; a card whose signatures do not verify gets 502 for both endpoints and
//! both algorithms, a `signature_mismatch` webhook, and nothing uploaded; `/api/ceb/verify`
//! names the failing part.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::receiver::Receiver;
use common::*;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

const ORDER: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ceb:CEB311Message xmlns:ceb="http://www.chinaport.gov.cn/ceb" guid="4CDE1CFD-EDED-46B1-946C-B8022E42FC94" version="1.0">
  <ceb:Order><ceb:OrderHead><ceb:orderNo>order-sm2-1</ceb:orderNo><ceb:goodsValue>143.64</ceb:goodsValue></ceb:OrderHead></ceb:Order>
</ceb:CEB311Message>"#;

/// DER SEQUENCE { INTEGER r, INTEGER s } from a raw r||s: what OpenSSL reads.
fn der_of_raw(raw: &[u8]) -> Vec<u8> {
    let int = |b: &[u8]| {
        let mut v: Vec<u8> = b.iter().skip_while(|x| **x == 0).copied().collect();
        if v.first().is_none_or(|x| *x & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let body = [int(&raw[..32]), int(&raw[32..])].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// Verifies an SM2 signature (base64 raw r||s) over `data` with the certificate (DER) by
/// OpenSSL 3 and by gmssl; returns (openssl, gmssl).
fn verify_sm2_independently(cert_der: &[u8], data: &[u8], sig_b64: &str) -> (bool, bool) {
    let dir = TempDir::new("sm2");
    let d = dir.path();
    let raw = B64.decode(sig_b64).unwrap();
    assert_eq!(raw.len(), 64, "an SM2 card answers raw r || s");
    std::fs::write(d.join("cert.der"), cert_der).unwrap();
    std::fs::write(d.join("cert.b64"), B64.encode(cert_der)).unwrap();
    std::fs::write(d.join("data"), data).unwrap();
    std::fs::write(d.join("sig.der"), der_of_raw(&raw)).unwrap();
    std::fs::write(d.join("sig.b64"), sig_b64).unwrap();
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl (.ci/run installs it)")
    };
    let pubkey = run(&[
        "x509", "-inform", "DER", "-in", "cert.der", "-pubkey", "-noout",
    ]);
    assert!(
        pubkey.status.success(),
        "{}",
        String::from_utf8_lossy(&pubkey.stderr)
    );
    std::fs::write(d.join("pub.pem"), &pubkey.stdout).unwrap();
    let openssl = run(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "pub.pem",
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        "distid:1234567812345678",
        "-in",
        "data",
        "-sigfile",
        "sig.der",
    ])
    .status
    .success();
    let gmssl = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sm2_verify.py"))
        .args([d.join("cert.b64"), d.join("data"), d.join("sig.b64")])
        .status()
        .expect("python3 with gmssl (.ci/run installs it)")
        .success();
    (openssl, gmssl)
}

/// lxml's view of a signed CEB message: its SignedInfo (C14N in place), its DigestValue, the
/// digest of the message without the signature (SHA-1 or SM3 by DigestMethod), and the methods.
fn lxml_view(signed: &str) -> Value {
    let dir = TempDir::new("lxml");
    std::fs::write(dir.path().join("signed.xml"), signed).unwrap();
    let script = r##"
import sys, json, hashlib, base64
from lxml import etree
from gmssl import sm3, func
DS = "http://www.w3.org/2000/09/xmldsig#"
doc = etree.parse(sys.argv[1])
sig = doc.getroot().find("{%s}Signature" % DS)
info = sig.find("{%s}SignedInfo" % DS)
c14n_info = etree.tostring(info, method="c14n")
dm = info.find(".//{%s}DigestMethod" % DS).get("Algorithm")
sm = info.find("{%s}SignatureMethod" % DS).get("Algorithm")
dv = info.find(".//{%s}DigestValue" % DS).text
sig.getparent().remove(sig)
body = etree.tostring(doc, method="c14n")
if dm.endswith("#sha1"):
    mine = base64.b64encode(hashlib.sha1(body).digest()).decode()
else:
    mine = base64.b64encode(bytes.fromhex(sm3.sm3_hash(func.bytes_to_list(body)))).decode()
print(json.dumps({"signed_info": c14n_info.decode(), "digest_method": dm, "signature_method": sm,
                  "digest_value": dv, "recomputed": mine}))
"##;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir.path().join("signed.xml"))
        .output()
        .expect("python3 with lxml and gmssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text_between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    let a = s.find(open).unwrap() + open.len();
    let b = a + s[a..].find(close).unwrap();
    &s[a..b]
}

#[test]
fn the_179_signature_of_an_sm2_card_verifies_with_openssl_and_gmssl() {
    let sim = simulator_sm2();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let r = proxy.post("/api/customs179", &order_179("sm2-179", false));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let sig = v["signValue"].as_str().unwrap();
    assert_eq!(sig.len(), 88, "64 bytes raw r||s, base64");
    assert_eq!(v["certNo"], sim.cert_no());
    let source = v["signSource"].as_str().unwrap();
    assert_eq!(
        verify_sm2_independently(&sim.sign_cert_der(), source.as_bytes(), sig),
        (true, true)
    );
    // and a tampered source does not
    assert_eq!(
        verify_sm2_independently(&sim.sign_cert_der(), format!("{source} ").as_bytes(), sig),
        (false, false)
    );
}

#[test]
fn a_ceb_message_signed_by_an_sm2_card_verifies_with_lxml_openssl_and_gmssl() {
    let sim = simulator_sm2();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let r = request(
        proxy.addr,
        "POST",
        "/api/ceb/sign",
        &[("Content-Type", "application/xml")],
        ORDER.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let signed = r.text();
    let view = lxml_view(&signed);
    assert_eq!(
        view["signature_method"],
        "http://www.w3.org/2000/09/xmldsig#sm2-sm3"
    );
    assert_eq!(
        view["digest_method"],
        "http://www.w3.org/2000/09/xmldsig#sha1"
    );
    assert_eq!(
        view["digest_value"], view["recomputed"],
        "lxml agrees with the DigestValue"
    );
    let value = text_between(&signed, "<ds:SignatureValue>", "</ds:SignatureValue>");
    let info = view["signed_info"].as_str().unwrap();
    assert_eq!(
        verify_sm2_independently(&sim.sign_cert_der(), info.as_bytes(), value),
        (true, true)
    );
    // the proxy's own verifier agrees, part by part
    let r = proxy.post("/api/ceb/verify", &json!({"xml": signed}).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["algorithm"], "SM2");
    assert_eq!(v["cert_no"], sim.cert_no());
}

#[test]
fn the_chinaport_2022_form_uses_its_namespace_and_an_sm3_digest() {
    let sim = simulator_sm2();
    let proxy = Proxy::start(&sim.url(), json!({"ceb": {"sm2_form": "chinaport-2022"}}));
    proxy.wait_healthy();
    let r = proxy.post("/api/ceb/sign", &json!({"xml": ORDER}).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let signed = r.json()["signedXml"].as_str().unwrap().to_string();
    let view = lxml_view(&signed);
    assert_eq!(
        view["signature_method"],
        "http://www.chinaport.gov.cn/2022/04/xmldsig#sm2-sm3"
    );
    assert_eq!(
        view["digest_method"],
        "http://www.chinaport.gov.cn/2022/04/xmldsig#sm3"
    );
    assert_eq!(
        view["digest_value"], view["recomputed"],
        "gmssl's SM3 agrees"
    );
    let v = proxy
        .post("/api/ceb/verify", &json!({"xml": signed}).to_string())
        .json();
    assert_eq!(v["valid"], true, "{v}");
}

#[test]
fn the_verifier_names_the_failing_part_for_both_card_kinds() {
    for sim in [simulator_sm2(), simulator()] {
        let proxy = Proxy::start(&sim.url(), json!({}));
        proxy.wait_healthy();
        let signed = proxy
            .post("/api/ceb/sign", &json!({"xml": ORDER}).to_string())
            .json()["signedXml"]
            .as_str()
            .unwrap()
            .to_string();
        let check = |xml: &str| {
            let r = proxy.post("/api/ceb/verify", &json!({"xml": xml}).to_string());
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        };
        let v = check(&signed);
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["checks"]["key_name_matches"], true);
        // a changed amount: the digest fails, the signature over SignedInfo still holds
        let v = check(&signed.replace("143.64", "143.65"));
        assert_eq!(v["valid"], false);
        assert_eq!(v["checks"]["digest"], false);
        assert_eq!(v["checks"]["signature"], true);
        // a signature over something else
        let value = text_between(&signed, "<ds:SignatureValue>", "</ds:SignatureValue>");
        let mut raw = B64.decode(value).unwrap();
        raw[10] ^= 1;
        let v = check(&signed.replace(value, &B64.encode(&raw)));
        assert_eq!(v["checks"]["digest"], true);
        assert_eq!(v["checks"]["signature"], false);
        assert!(v["errors"].to_string().contains("SignatureValue"), "{v}");
        // another KeyName
        let key = text_between(&signed, "<ds:KeyName>", "</ds:KeyName>");
        let v = check(&signed.replace(&format!("<ds:KeyName>{key}<"), "<ds:KeyName>deadbeef<"));
        assert_eq!(v["checks"]["key_name_matches"], false);
        // bad XML is 400, as for signing
        assert_eq!(
            proxy.post("/api/ceb/verify", "{\"xml\": \"<a>\"}").status,
            400
        );
    }
}

#[test]
fn a_card_whose_signatures_do_not_verify_gets_502_and_nothing_is_uploaded() {
    let rx = Receiver::start("");
    for sim in [simulator_sm2(), simulator()] {
        let proxy = Proxy::start(
            &sim.url(),
            json!({"webhook": {"failure_url": rx.url("/failure")},
                   "customs": {"upload_url": rx.url("/upload")}}),
        );
        proxy.wait_healthy();
        sim.faults()
            .bad_signatures
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let r = proxy.post("/api/customs179", &order_179("bad-sig", true));
        assert_eq!(r.status, 502, "{}", r.text());
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            e.contains("does not verify") && e.contains(&sim.cert_no()),
            "{e}"
        );
        let r = proxy.post("/api/ceb/sign", &json!({"xml": ORDER}).to_string());
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("does not verify")
        );
        wait_for(
            Duration::from_secs(10),
            "the signature_mismatch webhooks",
            || {
                let n = rx
                    .of_kind("ukey_malfunction")
                    .into_iter()
                    .filter(|e| e.body["details"]["type"] == "signature_mismatch")
                    .count();
                (n >= 2).then_some(())
            },
        );
        assert!(
            rx.events().iter().all(|e| e.path != "/upload"),
            "a bad signature reached customs"
        );
    }
}

#[test]
fn the_sm2_simulator_verifies_and_reports_validity_like_a_card() {
    let sim = simulator_sm2();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let sig = proxy
        .rpc("cus-sec_SpcSignDataAsPEM", json!({"inData": "报关 data"}))
        .json()["_args"]["Data"][0]
        .as_str()
        .unwrap()
        .to_string();
    let ok = proxy.rpc(
        "cus-sec_SpcVerifySignData",
        json!({"inData": "报关 data", "signData": sig}),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["_args"]["Data"][0], "成功!");
    // DER is accepted too
    let raw = B64.decode(&sig).unwrap();
    let der = B64.encode(der_of_raw(&raw));
    let ok = proxy.rpc(
        "cus-sec_SpcVerifySignData",
        json!({"inData": "报关 data", "signData": der}),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    let bad = proxy.rpc(
        "cus-sec_SpcVerifySignData",
        json!({"inData": "other", "signData": sig}),
    );
    assert_eq!(bad.status, 400);
    let times = proxy.rpc("cus-sec_SpcGetValidTimeFromCert", json!({}));
    assert_eq!(times.status, 200);
    let t: Value =
        serde_json::from_str(times.json()["_args"]["Data"][0].as_str().unwrap()).unwrap();
    assert!(
        t["szStartTime"].is_string() && t["szEndTime"].is_string(),
        "{t}"
    );
}
