//! `POST /api/ceb/sign`: takes a CEB message as XML or `{"xml": …}`, has the UKey sign its
//! SignedInfo, and answers the signed message in the same form. The XML-DSig itself is
//! `crate::customs::ceb`.

use super::App;
use super::audit;
use super::exchange::{Exchange, Input};
use super::reply::{Body, Reply};
use super::rpc::call_error_reply;
use crate::customs::ceb::{self, CebError, Unsigned};
use crate::ukey::{SIGN_CERT_METHOD, frame};
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
    let cert = match certificate(app, ex) {
        Ok(c) => ceb::bare_base64(&c),
        Err(reply) => return reply,
    };
    let method = ceb::method_for(&cert, &app.config.ceb.signature_method);
    let canonical_info = match unsigned.canonical_signed_info(method) {
        Ok(c) => c,
        Err(e) => return Reply::error(500, e.to_string()),
    };
    let mut args = Map::new();
    args.insert("inData".into(), Value::String(canonical_info));
    let f = match app.ukey.call(SIGN_METHOD, args, request_id, ex.arrived) {
        Ok(f) => f,
        Err(e) => return call_error_reply(&e),
    };
    if !frame::succeeded(&f) {
        return card_error(&f, "sign", request_id);
    }
    let Some((value, cert_no)) = frame::signature_and_cert(&f, app.ukey.status().cert_no()) else {
        return Reply::json(
            502,
            json!({"error": "the UKey answered without a signature", "request_id": request_id, "ukey": f}),
        );
    };
    let signed = unsigned.signed(method, &value, &cert_no, &cert);
    if want_json {
        return Reply::json(
            200,
            json!({"signedXml": signed, "digestValue": unsigned.digest, "signatureValue": value, "certNo": cert_no}),
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

fn card_error(f: &Value, what: &str, request_id: &str) -> Reply {
    let errors = frame::errors(f).join("; ");
    Reply::json(
        400,
        json!({"error": format!("the UKey could not {what}: {errors}"), "request_id": request_id, "ukey": f}),
    )
}

/// The signing certificate: the one read on connecting, or asked for now.
fn certificate(app: &App, ex: &Exchange) -> Result<String, Reply> {
    let request_id = ex.request_id.as_str();
    if let Some(c) = app.ukey.status().sign_cert() {
        return Ok(c);
    }
    let f = app
        .ukey
        .call(SIGN_CERT_METHOD, Map::new(), request_id, ex.arrived)
        .map_err(|e| call_error_reply(&e))?;
    if !frame::succeeded(&f) {
        return Err(card_error(&f, "hand out its certificate", request_id));
    }
    frame::first_data(&f)
        .map(str::to_owned)
        .ok_or_else(|| Reply::error(502, "the UKey answered without a certificate"))
}
