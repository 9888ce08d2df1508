//! The one place the Java-signer endpoints call this proxy's own signing code: CEB messages go
//! through `POST /api/ceb/sign`'s handler, 179 orders through `POST /api/customs179`'s (so the
//! self-check, audit and failure webhooks are theirs), and a ready 179 source string is signed
//! and self-checked as the 179 handler does. Everything here answers plain values or a reason;
//! the envelope is the caller's business.

use crate::customs::customs179::{self, Order};
use crate::http::domain;
use crate::http::exchange::{Exchange, Input};
use crate::http::reply::Reply;
use crate::http::{App, audit, card, customs};
use crate::sign::{self, SignError};
use serde_json::Value;

/// A signed CEB message, in the Java signer's terms (`signed_info` is its `signatureNode`).
pub use crate::sign::CebSigned;

const SIGN_METHOD: &str = "cus-sec_SpcSignDataAsPEM";

/// A failed workflow: audited and reported as `POST /api/ceb/sign` and `/api/customs179`
/// report theirs, and its reason for the envelope.
fn failed(app: &App, ex: &Exchange, e: &SignError) -> String {
    let reply = domain::reply(e, &ex.request_id);
    audit::report_operation_failure(app, SIGN_METHOD, &reply, &ex.request_id);
    e.to_string()
}

/// Signs a CEB message as `POST /api/ceb/sign` does (the same workflow, self-check included).
pub fn sign_ceb(app: &App, ex: &mut Exchange, xml: &str) -> Result<CebSigned, String> {
    ex.ukey_method = Some("ceb.sign".into());
    sign::sign_ceb(&domain::card(app, ex), &app.config.ceb, xml).map_err(|e| failed(app, ex, &e))
}

/// Signs a 179 source string exactly as sent (the caller built it and uploads it), and
/// self-checks the signature. Answers the certificate number and the signature.
pub fn sign_179_source(
    app: &App,
    ex: &mut Exchange,
    source: &str,
) -> Result<(String, String), String> {
    ex.ukey_method = Some("customs179.source".into());
    sign::sign_source(&domain::card(app, ex), source)
        .map(|(value, cert_no)| (cert_no, value))
        .map_err(|e| failed(app, ex, &e))
}

/// An uploaded 179 order.
pub struct Uploaded {
    /// The JSON uploaded (`payExInfoStr`).
    pub payload: String,
    /// Customs' answer.
    pub customs: Value,
    pub service_time: String,
}

pub enum UploadError {
    /// A field is missing or wrong: its path and why.
    Invalid(String, String),
    /// Signing or the upload failed.
    Failed(String),
}

/// Validates, signs and uploads a 179 order with `/api/customs179`'s handler. Top-level fields
/// other than the order's are dropped, as the Java signer's JSON binding ignores them.
pub fn upload_179(app: &App, ex: &mut Exchange, body: &[u8]) -> Result<Uploaded, UploadError> {
    let mut obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return Err(UploadError::Invalid(
                "body".into(),
                "must be a JSON object".into(),
            ));
        }
        Err(e) => {
            return Err(UploadError::Invalid(
                "body".into(),
                format!("is not valid JSON: {e}"),
            ));
        }
    };
    obj.retain(|k, _| {
        matches!(
            k.as_str(),
            "sessionID"
                | "sessionId"
                | "payExchangeInfoHead"
                | "payExchangeInfoLists"
                | "serviceTime"
        )
    });
    obj.insert("realTimeDataUpload".into(), Value::Bool(true));
    let body = Value::Object(obj).to_string().into_bytes();
    let order: Order = customs179::parse_order(&body)
        .map_err(|e| UploadError::Invalid(e.path.clone(), e.reason.clone()))?;
    let input = Input {
        body,
        content_type: "application/json".into(),
        ..Input::default()
    };
    let reply = customs::post_179(app, &input, ex);
    let answer = reply.body_json(&ex.request_id).unwrap_or_default();
    // customs answered, whatever its code: the Java signer hands that answer on as it is
    match (
        &answer["customs"],
        answer["certNo"].as_str(),
        answer["signValue"].as_str(),
    ) {
        (Value::Object(_), Some(cert_no), Some(sign_value)) => Ok(Uploaded {
            payload: order.upload_json(cert_no, sign_value),
            customs: answer["customs"].clone(),
            service_time: order.service_time.clone(),
        }),
        _ => Err(UploadError::Failed(reason(&reply, ex))),
    }
}

/// The card's envelope certificate (base64 DER) and the certificate number, as the Java signer's
/// download hands them out.
pub fn env_certificate(app: &App, ex: &mut Exchange) -> Result<(Vec<u8>, String), String> {
    let reply = card::env_cer(app, &Input::default(), ex);
    match reply.body {
        crate::http::reply::Body::Raw { bytes, .. } if reply.status == 200 => {
            let name = reply
                .headers
                .iter()
                .find(|(n, _)| n == "Content-Disposition")
                .and_then(|(_, v)| v.split("filename=\"").nth(1))
                .and_then(|v| v.strip_suffix(".cer\""))
                .unwrap_or_default()
                .to_string();
            Ok((bytes, name))
        }
        _ => Err(reason(&reply, ex)),
    }
}

/// A restart that failed: why, and its outcome when it ran.
pub struct RestartFailed {
    pub reason: String,
    pub outcome: Option<Value>,
}

/// The restart of the client software, as `POST /api/ukey/restart` runs it: its outcome
/// (`output`, `error`, ...), or why it failed or did not run.
pub fn restart_client(app: &App, ex: &mut Exchange) -> Result<Value, RestartFailed> {
    let reply = card::restart(app, &Input::default(), ex);
    let answer = reply.body_json(&ex.request_id).unwrap_or_default();
    if reply.is_success() {
        return Ok(answer);
    }
    Err(RestartFailed {
        reason: reason(&reply, ex),
        outcome: answer.get("restart").cloned(),
    })
}

/// What an error reply says, for the envelope's `message`.
fn reason(reply: &Reply, ex: &Exchange) -> String {
    reply
        .body_json(&ex.request_id)
        .and_then(|j| j["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("failed with status {}", reply.status))
}
