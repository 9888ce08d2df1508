//! `POST /api/ceb/sign`: takes a CEB message as XML or `{"xml": …}`, has the UKey sign its
//! SignedInfo, checks the signature against the card's certificate, and answers the signed
//! message in the same form. `POST /api/ceb/verify` checks a signed one part by part. The
//! XML-DSig itself is `crate::customs::ceb`.

use super::App;
use super::audit;
use super::domain;
use super::exchange::{Exchange, Input};
use super::reply::{Body, Reply};
use crate::customs::ceb::{self, CebError};
use crate::customs::cert::CertInfo;
use crate::sign;
use serde_json::{Value, json};

const SIGN_METHOD: &str = "cus-sec_SpcSignDataAsPEM";

pub fn sign(app: &App, input: &Input, ex: &mut Exchange) -> Reply {
    ex.ukey_method = Some("ceb.sign".into());
    let reply = sign_message(app, input, ex);
    audit::report_operation_failure(app, SIGN_METHOD, &reply, &ex.request_id);
    reply
}

fn sign_message(app: &App, input: &Input, ex: &Exchange) -> Reply {
    let (xml, want_json) = match message_of(&input.body, &input.content_type) {
        Ok(i) => i,
        Err(e) => return Reply::error(400, e),
    };
    let s = match sign::sign_ceb(&domain::card(app, ex), &app.config.ceb, &xml) {
        Ok(s) => s,
        Err(e) => return domain::reply(&e, &ex.request_id),
    };
    if want_json {
        return Reply::json(
            200,
            json!({"signedXml": s.signed, "digestValue": s.digest, "signatureValue": s.signature, "certNo": s.cert_no}),
        );
    }
    Reply {
        status: 200,
        body: Body::Raw {
            bytes: s.signed.into_bytes(),
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
    let now_s = crate::time::now_ms() / 1000;
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
                "signer": v.signer.as_ref().map(|s| json!({
                    "serial": s.serial_hex,
                    "subject": s.subject,
                    "issuer": s.issuer,
                    "not_before": crate::time::rfc3339(s.not_before),
                    "not_after": crate::time::rfc3339(s.not_after),
                })),
                "this_card": v.this_card,
                "card_cert_no": status.cert_no(),
                "checks": {
                    "digest": v.digest,
                    "signature": v.signature,
                    "certificate_valid_now": v.certificate_valid_now,
                    "key_name_matches": v.key_name_matches,
                    "this_card": v.this_card == Some(true),
                },
                "errors": v.errors,
            }),
        ),
        Err(e @ CebError::Internal(_)) => Reply::error(500, e.to_string()),
        Err(e) => Reply::error(400, e.to_string()),
    }
}

/// What the caller sent: the XML, and whether it wants a JSON answer.
pub fn message_of(body: &[u8], content_type: &str) -> Result<(String, bool), String> {
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
