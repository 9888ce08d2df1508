//! `POST /api/ceb/sign`: puts an enveloped XML-DSig `ds:Signature` made by the UKey into a CEB
//! customs message (CEB311 orders, CEB621 inventories, …), the way standard verifiers check it:
//! DigestValue = SHA-1 of the document's inclusive C14N without comments, SignedInfo
//! canonicalised in its place and signed by the card, KeyName the certificate number, the signing
//! certificate in X509Data. The signature is the root's last child, with no whitespace added, so
//! that removing it (the enveloped-signature transform) gives back exactly what was digested.

use crate::customs::c14n;
use crate::http::reply::{Body, Reply};
use crate::http::rpc;
use crate::ukey::{SIGN_CERT_METHOD, Ukey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};

const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const C14N_URI: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const SM2_SM3: &str = "http://www.w3.org/2000/09/xmldsig#sm2-sm3";
/// The SM2-with-SM3 signature algorithm OID 1.2.156.10197.1.501, DER-encoded.
const SM3_WITH_SM2_OID: [u8; 10] = [0x06, 0x08, 0x2A, 0x81, 0x1C, 0xCF, 0x55, 0x01, 0x83, 0x75];

/// The signature method for a certificate (base64 DER): SM2 certificates sign with sm2-sm3.
pub fn method_for(cert_b64: &str, forced: &str) -> &'static str {
    match forced {
        "rsa-sha1" => return RSA_SHA1,
        "sm2-sm3" => return SM2_SM3,
        _ => {}
    }
    let der = B64.decode(cert_b64).unwrap_or_default();
    if der
        .windows(SM3_WITH_SM2_OID.len())
        .any(|w| w == SM3_WITH_SM2_OID)
    {
        SM2_SM3
    } else {
        RSA_SHA1
    }
}

fn signed_info(method: &str, digest: &str) -> String {
    format!(
        "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{C14N_URI}\"></ds:CanonicalizationMethod>\
<ds:SignatureMethod Algorithm=\"{method}\"></ds:SignatureMethod><ds:Reference URI=\"\"><ds:Transforms>\
<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"></ds:Transform></ds:Transforms>\
<ds:DigestMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#sha1\"></ds:DigestMethod>\
<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
    )
}

fn signature(signed_info: &str, value: &str, cert_no: &str, cert: &str) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info}<ds:SignatureValue>{}</ds:SignatureValue>\
<ds:KeyInfo><ds:KeyName>{}</ds:KeyName><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate>\
</ds:X509Data></ds:KeyInfo></ds:Signature>",
        esc(value),
        esc(cert_no),
        esc(cert)
    )
}

/// The document with `element` inserted as the root's last child.
fn insert(text: &str, doc: &c14n::Document, element: &str) -> String {
    let at = doc.root.end_tag_at;
    if doc.root.empty {
        // <root .../> becomes <root ...>SIG</root>
        format!(
            "{}>{element}</{}>{}",
            &text[..at],
            doc.root.name,
            &text[at + 2..]
        )
    } else {
        format!("{}{element}{}", &text[..at], &text[at..])
    }
}

/// What the caller sent: the XML, and whether it wants a JSON answer.
fn input(body: &[u8], content_type: &str) -> Result<(String, bool), String> {
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("the message is not UTF-8 (at byte {})", e.valid_up_to()))?;
    let json = content_type.starts_with("application/json")
        || (!content_type.contains("xml") && text.trim_start().starts_with('{'));
    if !json {
        return Ok((text.trim_start_matches('\u{feff}').to_string(), false));
    }
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("body is not valid JSON: {e}"))?;
    match v.get("xml") {
        Some(Value::String(x)) => Ok((x.clone(), true)),
        _ => Err("JSON body must be {\"xml\": \"<the message>\"}".into()),
    }
}

fn card_error(frame: &Value, what: &str, request_id: &str) -> Reply {
    let errors = rpc::frame_errors(frame).join("; ");
    Reply::json(
        400,
        json!({"error": format!("the UKey could not {what}: {errors}"), "request_id": request_id, "ukey": frame}),
    )
}

/// The signing certificate: the one read on connecting, or asked for now.
fn certificate(ukey: &Ukey, request_id: &str) -> Result<String, Reply> {
    if let Some(c) = ukey.status().sign_cert() {
        return Ok(c);
    }
    let frame = ukey
        .call(SIGN_CERT_METHOD, Map::new(), request_id)
        .map_err(|e| rpc::call_error_reply(&e))?;
    if !rpc::frame_succeeded(&frame) {
        return Err(card_error(&frame, "hand out its certificate", request_id));
    }
    frame
        .get("_args")
        .and_then(|a| a.get("Data"))
        .and_then(|d| d.get(0))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Reply::error(502, "the UKey answered without a certificate"))
}

pub fn handle(
    ukey: &Ukey,
    forced_method: &str,
    body: &[u8],
    content_type: &str,
    request_id: &str,
) -> Reply {
    let (xml, want_json) = match input(body, content_type) {
        Ok(i) => i,
        Err(e) => return Reply::error(400, e),
    };
    let text = c14n::normalise_line_ends(&xml);
    let doc = match c14n::parse(&text) {
        Ok(d) => d,
        Err(e) => return Reply::error(400, format!("the message is not accepted: {e}")),
    };
    if c14n::contains_element(&doc, DSIG_NS, "Signature") {
        return Reply::error(
            400,
            "the message already has a ds:Signature; send it unsigned",
        );
    }
    let digest = B64.encode(Sha1::digest(c14n::canonicalize(&doc).as_bytes()));
    let cert = match certificate(ukey, request_id) {
        Ok(c) => c
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
        Err(reply) => return reply,
    };
    let method = method_for(&cert, forced_method);
    let info = signed_info(method, &digest);
    // canonicalise SignedInfo in its place: inherited namespaces come with it
    let draft = insert(&text, &doc, &signature(&info, "", "", ""));
    let canonical_info = match c14n::parse(&draft).ok().and_then(|d| {
        let last = d
            .root
            .children
            .iter()
            .filter(|n| matches!(n, c14n::Node::Element(_)))
            .count();
        c14n::canonicalize_subtree(&d, &[last.checked_sub(1)?, 0])
    }) {
        Some(c) => c,
        None => return Reply::error(500, "internal error: could not canonicalise SignedInfo"),
    };
    let mut args = Map::new();
    args.insert("inData".into(), Value::String(canonical_info));
    let frame = match ukey.call("cus-sec_SpcSignDataAsPEM", args, request_id) {
        Ok(f) => f,
        Err(e) => return rpc::call_error_reply(&e),
    };
    if !rpc::frame_succeeded(&frame) {
        return card_error(&frame, "sign", request_id);
    }
    let Some((value, cert_no)) = rpc::signature_and_cert(&frame, ukey) else {
        return Reply::json(
            502,
            json!({"error": "the UKey answered without a signature", "request_id": request_id, "ukey": frame}),
        );
    };
    let signed = insert(&text, &doc, &signature(&info, &value, &cert_no, &cert));
    if want_json {
        return Reply::json(
            200,
            json!({"signedXml": signed, "digestValue": digest, "signatureValue": value, "certNo": cert_no}),
        );
    }
    Reply {
        status: 200,
        body: Body::Raw {
            bytes: signed.into_bytes(),
            content_type: "application/xml; charset=utf-8",
        },
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_follows_the_certificate() {
        let rsa = B64.encode([
            0x30, 0x82, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x05,
        ]);
        let sm2 = B64.encode([
            0x30, 0x82, 0x06, 0x08, 0x2A, 0x81, 0x1C, 0xCF, 0x55, 0x01, 0x83, 0x75,
        ]);
        assert_eq!(method_for(&rsa, "auto"), RSA_SHA1);
        assert_eq!(method_for(&sm2, "auto"), SM2_SM3);
        assert_eq!(method_for(&rsa, "sm2-sm3"), SM2_SM3);
    }
}
