//! CEB messages: the canonicaliser against independent implementations (lxml, xmllint) on a corpus
//! of CEB-shaped messages, and POST /api/ceb/sign end to end, verified by xmlsec1.

mod common;

use chinaport_proxy::customs::c14n;
use std::path::Path;
use std::process::Command;

/// lxml's C14N 1.0 without comments (the reference); .ci/run installs lxml.
fn lxml_c14n(path: &Path) -> Vec<u8> {
    let script = r#"
import sys
from lxml import etree
tree = etree.parse(sys.argv[1], etree.XMLParser(resolve_entities=False))
sys.stdout.buffer.write(etree.tostring(tree, method="c14n", with_comments=False))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 with lxml");
    assert!(
        out.status.success(),
        "lxml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// xmllint's C14N 1.0 (with comments: only for documents that have none).
fn xmllint_c14n(path: &Path) -> Vec<u8> {
    let out = Command::new("xmllint")
        .arg("--c14n")
        .arg(path)
        .output()
        .expect("xmllint");
    assert!(
        out.status.success(),
        "xmllint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn ours(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = c14n::parse(&c14n::normalise_line_ends(&text)).unwrap();
    c14n::canonicalize(&doc)
}

#[test]
fn canonical_form_agrees_with_lxml_and_xmllint_byte_for_byte() {
    let mut checked = 0;
    for entry in std::fs::read_dir("tests/ceb_corpus").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        let mine = ours(&path);
        let reference = String::from_utf8(lxml_c14n(&path)).unwrap();
        assert_eq!(mine, reference, "{} differs from lxml", path.display());
        if !std::fs::read_to_string(&path).unwrap().contains("<!--") {
            let lint = String::from_utf8(xmllint_c14n(&path)).unwrap();
            assert_eq!(mine, lint, "{} differs from xmllint", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 3, "the corpus is missing");
    // the CRLF message must reach the test as CRLF (.gitattributes keeps the corpus bytes)
    let crlf = std::fs::read("tests/ceb_corpus/ceb621-crlf.xml").unwrap();
    assert!(
        crlf.windows(2).any(|w| w == b"\r\n"),
        "ceb621-crlf.xml lost its CRLF line ends"
    );
}

use chinaport_proxy::simulator::{CardKind, SimOptions, Simulator};
use common::*;
use serde_json::json;

/// xmlsec1's verdict on a signed document, given the signer's certificate.
fn xmlsec_verifies(dir: &TempDir, signed: &str, cert: &str) -> bool {
    let doc = dir.path().join("signed.xml");
    let pem = dir.path().join("cert.pem");
    std::fs::write(&doc, signed).unwrap();
    std::fs::write(&pem, cert).unwrap();
    Command::new("xmlsec1")
        .args(["--verify", "--pubkey-cert-pem"])
        .arg(&pem)
        .arg(&doc)
        .output()
        .expect("xmlsec1 (.ci/run installs it)")
        .status
        .success()
}

#[test]
fn signed_messages_verify_with_xmlsec1_and_tampering_is_caught() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let dir = TempDir::new("ceb");
    let cert = cert_pem(&sim);
    for entry in std::fs::read_dir("tests/ceb_corpus").unwrap() {
        let path = entry.unwrap().path();
        let message = std::fs::read(&path).unwrap();
        let r = request(
            proxy.addr,
            "POST",
            "/api/ceb/sign",
            &[("Content-Type", "application/xml")],
            &message,
        );
        assert_eq!(r.status, 200, "{}: {}", path.display(), r.text());
        assert!(
            r.header("Content-Type")
                .unwrap()
                .starts_with("application/xml")
        );
        let signed = r.text();
        assert!(signed.contains(&format!("<ds:KeyName>{}</ds:KeyName>", sim.cert_no())));
        assert!(signed.contains("xmldsig#rsa-sha1"));
        assert!(
            xmlsec_verifies(&dir, &signed, &cert),
            "{} does not verify:\n{signed}",
            path.display()
        );
        // the signature is the root's last child
        let root_end = signed.trim_end().rfind("</").unwrap();
        assert!(
            signed[..root_end].ends_with("</ds:Signature>"),
            "{}",
            path.display()
        );
        // one value changed after signing, inside the signed content
        let token = ["143.64", "INV-001", "no default"]
            .into_iter()
            .find(|t| signed.contains(t))
            .expect("a token to tamper with");
        let tampered = signed.replacen(token, &token.replace('1', "2").replace('t', "T"), 1);
        assert_ne!(tampered, signed);
        assert!(
            !xmlsec_verifies(&dir, &tampered, &cert),
            "{}: tampering not detected",
            path.display()
        );
    }
}

#[test]
fn json_in_json_out() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let xml = "<CEB311Message xmlns=\"http://www.chinaport.gov.cn/ceb\"><Order>订单 &amp; 1</Order></CEB311Message>";
    let r = proxy.post("/api/ceb/sign", &json!({"xml": xml}).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["certNo"], sim.cert_no().as_str());
    assert!(j["digestValue"].as_str().unwrap().len() == 28);
    let signed = j["signedXml"].as_str().unwrap();
    assert!(signed.contains(j["signatureValue"].as_str().unwrap()));
    let dir = TempDir::new("ceb-json");
    assert!(xmlsec_verifies(&dir, signed, &cert_pem(&sim)));
    // an empty root element is expanded to hold the signature
    let r = proxy.post(
        "/api/ceb/sign",
        &json!({"xml": "<CEB621Message xmlns=\"http://www.chinaport.gov.cn/ceb\"/>"}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(xmlsec_verifies(
        &dir,
        r.json()["signedXml"].as_str().unwrap(),
        &cert_pem(&sim)
    ));
}

#[test]
fn hostile_and_broken_messages_are_refused() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let xml = |body: &str| {
        request(
            proxy.addr,
            "POST",
            "/api/ceb/sign",
            &[("Content-Type", "text/xml")],
            body.as_bytes(),
        )
    };
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>"#;
    let external =
        r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
    for (body, needle) in [
        (laughs, "DOCTYPE"),
        (external, "DOCTYPE"),
        ("<a>\n  <b></c></a>", "line 2"),
        ("<a>&undefined;</a>", "undefined"),
        (
            "<a><ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"/></a>",
            "already has a ds:Signature",
        ),
        ("", "line 1"),
    ] {
        let r = xml(body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains(needle), "{e:?} lacks {needle:?}");
    }
    let r = request(
        proxy.addr,
        "POST",
        "/api/ceb/sign",
        &[("Content-Type", "application/xml")],
        b"<a>\xff</a>",
    );
    assert_eq!(r.status, 400);
    // 10 MB is refused before it is read
    let big = format!("<a>{}</a>", "x".repeat(10 * 1024 * 1024));
    let r = xml(&big);
    assert_eq!(r.status, 413);
    // and nothing of that reached the card
    assert!(
        !sim.received()
            .iter()
            .any(|f| f["_method"] == "cus-sec_SpcSignDataAsPEM")
    );
    assert_eq!(proxy.get("/health").status, 200);
}

const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

/// Base64 SHA-1 of the message's C14N without its signature: what a wrapping attacker puts
/// beside the real DigestValue.
fn digest_without_signature(xml: &str) -> String {
    use base64::Engine;
    use sha1::Digest;
    let doc = c14n::parse(&c14n::normalise_line_ends(xml)).unwrap();
    let sig = c14n::find_elements(&doc, DSIG, "Signature")[0];
    let canonical = c14n::canonicalize_without(&doc, Some(sig));
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(canonical.as_bytes()))
}

fn verify(proxy: &Proxy, xml: &str) -> serde_json::Value {
    let r = proxy.post("/api/ceb/verify", &json!({ "xml": xml }).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Finding M5: the goods value changed and a DigestValue of the changed message slipped into a
/// `ds:Object` ahead of SignedInfo was answered `valid: true` on 40b6e27 (the first
/// DigestValue anywhere in the signature was taken). xmlsec1 refuses it; so must we.
#[test]
fn wrapped_signatures_are_not_valid() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let dir = TempDir::new("ceb-wrap");
    let cert = cert_pem(&sim);
    let message = std::fs::read_to_string("tests/ceb_corpus/ceb311.xml").unwrap();
    let r = request(
        proxy.addr,
        "POST",
        "/api/ceb/sign",
        &[("Content-Type", "application/xml")],
        message.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let signed = r.text();
    let v = verify(&proxy, &signed);
    assert_eq!(v["valid"], true, "{v}");

    let tampered = signed.replace("<ceb:goodsValue>143.64<", "<ceb:goodsValue>999999.00<");
    assert_ne!(tampered, signed);
    let open = format!("<ds:Signature xmlns:ds=\"{DSIG}\">");
    let wrapped = tampered.replace(
        &open,
        &format!(
            "{open}<ds:Object><ds:DigestValue>{}</ds:DigestValue></ds:Object>",
            digest_without_signature(&tampered)
        ),
    );
    assert!(
        !xmlsec_verifies(&dir, &wrapped, &cert),
        "xmlsec1 accepts it"
    );
    let v = verify(&proxy, &wrapped);
    assert_eq!(v["valid"], false, "{v}");
    assert!(v["errors"].to_string().contains("must hold exactly"), "{v}");
    let v = verify(&proxy, &signed);
    assert_eq!(v["this_card"], true, "{v}");
    assert_eq!(v["signer"]["serial"], sim.cert_no().trim_start_matches('0'));

    // the same smuggled DigestValue after KeyInfo, where XML-DSig allows an Object
    let after = tampered.replace(
        "</ds:KeyInfo>",
        &format!(
            "</ds:KeyInfo><ds:Object><ds:DigestValue>{}</ds:DigestValue></ds:Object>",
            digest_without_signature(&tampered)
        ),
    );
    assert!(!xmlsec_verifies(&dir, &after, &cert));
    let v = verify(&proxy, &after);
    assert_eq!(v["valid"], false, "{v}");

    // a second signature (the genuine one, copied into the order) is refused, wherever it is
    let sig_start = signed.find(&open).unwrap();
    let sig_end = signed.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let copy = &signed[sig_start..sig_end];
    let doubled = signed.replacen("<ceb:Order>", &format!("<ceb:Order>{copy}"), 1);
    let v = verify(&proxy, &doubled);
    assert_eq!(v["valid"], false, "{v}");
    assert!(v["errors"].to_string().contains("2 ds:Signature"), "{v}");

    // the signature moved off the root: not where CEB carries it
    let moved =
        signed
            .replacen(copy, "", 1)
            .replacen("<ceb:Order>", &format!("<ceb:Order>{copy}"), 1);
    let v = verify(&proxy, &moved);
    assert_eq!(v["valid"], false, "{v}");
    assert!(v["errors"].to_string().contains("not a child"), "{v}");
}

/// Finding M5, second part: a message signed by another card verified as valid because the
/// embedded certificate was trusted as it came. It is now named, and not this card's.
#[test]
fn a_message_signed_by_another_card_names_that_card() {
    let ours = simulator();
    let theirs = Simulator::start(SimOptions {
        listen: "127.0.0.1:0".into(),
        password: PASSWORD.into(),
        key_file: Some(
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("test-simulator-ukey-other.pem"),
        ),
        card: CardKind::Rsa,
        cert_days: None,
    })
    .expect("the other card");
    assert_ne!(ours.cert_no(), theirs.cert_no());
    let proxy = Proxy::start(&ours.url(), json!({}));
    let other = Proxy::start(&theirs.url(), json!({}));
    proxy.wait_healthy();
    other.wait_healthy();
    let xml = "<CEB311Message xmlns=\"http://www.chinaport.gov.cn/ceb\"><goodsValue>100.00</goodsValue></CEB311Message>";
    let r = other.post("/api/ceb/sign", &json!({ "xml": xml }).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let foreign = r.json()["signedXml"].as_str().unwrap().to_string();
    let dir = TempDir::new("ceb-foreign");
    // the independent judge: a sound signature by their card, not by ours
    assert!(xmlsec_verifies(&dir, &foreign, &cert_pem(&theirs)));
    assert!(!xmlsec_verifies(&dir, &foreign, &cert_pem(&ours)));

    let v = verify(&proxy, &foreign);
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["this_card"], false, "{v}");
    assert_eq!(v["checks"]["digest"], true, "{v}");
    assert_eq!(v["checks"]["signature"], true, "{v}");
    assert_eq!(v["cert_no"], theirs.cert_no());
    assert_eq!(
        v["signer"]["serial"],
        theirs.cert_no().trim_start_matches('0')
    );
    assert_eq!(v["card_cert_no"], ours.cert_no());
    assert!(
        v["signer"]["subject"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{v}"
    );
    assert!(v["errors"].to_string().contains(&ours.cert_no()), "{v}");
    // and on their own proxy it is theirs
    let v = verify(&other, &foreign);
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["this_card"], true, "{v}");
}
