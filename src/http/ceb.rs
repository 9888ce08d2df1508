//! `POST /api/ceb/sign`: takes a CEB message as XML or `{"xml": …}`, has the UKey sign its
//! SignedInfo, checks the signature against the card's certificate, and answers the signed
//! message in the same form. `POST /api/ceb/verify` checks a signed one part by part. The
//! XML-DSig itself is `crate::customs::ceb`.

use super::App;
use super::audit;
use super::exchange::{Exchange, Input};
use super::reply::{Body, Reply};
use super::rpc::call_error_reply;
use super::signing;
use crate::customs::ceb::{self, CebError, Form, Unsigned};
use crate::customs::cert::CertInfo;
use crate::ukey::frame;
use serde_json::{Map, Value, json};

const SIGN_METHOD: &str = "cus-sec_SpcSignDataAsPEM";

pub fn sign(app: &App, input: &Input, ex: &mut Exchange) -> Reply {
    ex.ukey_method = Some("ceb.sign".into());
    let reply = sign_message(app, input, ex);
    audit::report_operation_failure(app, SIGN_METHOD, &reply, &ex.request_id);
    reply
}

fn sign_message(app: &App, input: &Input, ex: &Exchange) -> Reply {
    let request_id = ex.request_id.as_str();
    let (xml, want_json) = match message_of(&input.body, &input.content_type) {
        Ok(i) => i,
        Err(e) => return Reply::error(400, e),
    };
    let unsigned = match Unsigned::prepare(&xml) {
        Ok(u) => u,
        Err(e @ CebError::Internal(_)) => return Reply::error(500, e.to_string()),
        Err(e) => return Reply::error(400, e.to_string()),
    };
    let cert = match signing::sign_cert(app, ex) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    let ceb = &app.config.ceb;
    let form = Form::choose(
        Some(cert.info.algorithm),
        ceb.signature_method,
        ceb.sm2_form,
    );
    let digest = unsigned.digest(&form);
    let canonical_info = match unsigned.canonical_signed_info(&form, &digest) {
        Ok(c) => c,
        Err(e) => return Reply::error(500, e.to_string()),
    };
    let mut args = Map::new();
    args.insert("inData".into(), Value::String(canonical_info.clone()));
    let f = match app.ukey.call(SIGN_METHOD, args, request_id, ex.arrived) {
        Ok(f) => f,
        Err(e) => return call_error_reply(&e),
    };
    if !frame::succeeded(&f) {
        return signing::card_error(&f, "sign", request_id);
    }
    let Some((value, cert_no)) = frame::signature_and_cert(&f, app.ukey.status().cert_no()) else {
        return Reply::json(
            502,
            json!({"error": "the UKey answered without a signature", "request_id": request_id, "ukey": f}),
        );
    };
    if let Err(reply) =
        signing::self_check(app, ex, &cert, &cert_no, canonical_info.as_bytes(), &value)
    {
        return reply;
    }
    let signed = unsigned.signed(&form, &digest, &value, &cert_no, &cert.b64);
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

/// `POST /api/ceb/verify`: checks a signed message part by part, so that a customs "签名错误"
/// receipt can be traced to the digest, the signature, the certificate or the KeyName.
pub fn verify(app: &App, input: &Input, ex: &mut Exchange) -> Reply {
    ex.ukey_method = Some("ceb.verify".into());
    let (xml, _) = match message_of(&input.body, &input.content_type) {
        Ok(i) => i,
        Err(e) => return Reply::error(400, e),
    };
    let status = app.ukey.status();
    let card = status
        .cert_no()
        .zip(status.sign_cert())
        .and_then(|(no, b64)| Some((no, CertInfo::from_base64(&b64).ok()?.der)));
    let now_s = crate::ukey::now_ms() / 1000;
    match ceb::verify(
        &xml,
        now_s,
        card.as_ref().map(|(n, d)| (n.as_str(), d.as_slice())),
    ) {
        Ok(v) => Reply::json(
            200,
            json!({
                "valid": v.valid(),
                "algorithm": v.algorithm.map(|a| a.name()),
                "cert_no": v.key_name,
                "checks": {
                    "digest": v.digest,
                    "signature": v.signature,
                    "certificate_valid_now": v.certificate_valid_now,
                    "key_name_matches": v.key_name_matches,
                },
                "errors": v.errors,
            }),
        ),
        Err(e @ CebError::Internal(_)) => Reply::error(500, e.to_string()),
        Err(e) => Reply::error(400, e.to_string()),
    }
}

/// What the caller sent: the XML, and whether it wants a JSON answer.
fn message_of(body: &[u8], content_type: &str) -> Result<(String, bool), String> {
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
