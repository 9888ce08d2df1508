//! `POST /rpc`: validates the client's call, hands it to the UKey thread, and maps the card's
//! answer to an HTTP status (200 done, 400 the card said no, 503 no answer).

use super::App;
use super::audit;
use super::exchange::{Exchange, Input};
use super::reply::{Body, Reply};
use crate::sign::{SIGN_METHOD, SignError};
use crate::ukey::{CallError, frame};
use serde_json::{Map, Value};

/// A validated `/rpc` call.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    pub method: String,
    pub args: Map<String, Value>,
}

/// Parses the body of `/rpc`: `{"_method": "...", "args": {...}}`, `args` optional.
pub fn parse_call(body: &[u8]) -> Result<RpcCall, String> {
    let text = std::str::from_utf8(body).map_err(|e| {
        format!(
            "request body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        )
    })?;
    if text.trim().is_empty() {
        return Err("request body is empty; expected a JSON object with \"_method\"".into());
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let Value::Object(mut object) = value else {
        return Err("request body must be a JSON object".into());
    };
    let method = match object.remove("_method") {
        Some(Value::String(m)) if !m.trim().is_empty() => m,
        Some(Value::String(_)) => return Err("\"_method\" must not be empty".into()),
        Some(_) => return Err("\"_method\" must be a string".into()),
        None => return Err("missing \"_method\"".into()),
    };
    if let Some(refusal) = crate::ukey::methods::refusal(&method) {
        return Err(refusal);
    }
    let args = match object.remove("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(a)) => a,
        Some(_) => return Err("\"args\" must be a JSON object".into()),
    };
    Ok(RpcCall { method, args })
}

/// The HTTP reply for a call error (no answer from the card): 503, with `Retry-After` when the
/// card is busy rather than broken.
pub fn call_error_reply(e: &CallError) -> Reply {
    let reply = Reply::error(e.http_status(), e.to_string());
    match e.retry_after_s() {
        Some(s) => reply.with_header("Retry-After", s.to_string()),
        None => reply,
    }
}

/// The self-check of a signature answered through `/rpc`, as the customs endpoints do it:
/// against the signing certificate cached for this connection (asked for when not cached).
/// A frame without a signature is the card's to explain and goes back as it is.
fn self_check(app: &App, ex: &Exchange, f: &Value, data: &str) -> Result<(), SignError> {
    let Some((signature, cert_no)) = frame::signature_and_cert(f, app.ukey.status().cert_no())
    else {
        return Ok(());
    };
    let card = super::domain::card(app, ex);
    let cert = card.sign_cert()?;
    card.self_check(&cert, &cert_no, data.as_bytes(), &signature)
}

/// `POST /rpc`: runs the call and maps the outcome. The reply frame is the card's, without `_id`,
/// with the password masked.
pub fn post(app: &App, input: &Input, ex: &mut Exchange) -> Reply {
    let request_id = ex.request_id.as_str();
    let call = match parse_call(&input.body) {
        Ok(c) => c,
        Err(e) => return Reply::error(400, e),
    };
    ex.ukey_method = Some(call.method.clone());
    // #28.2: a signature goes back only once it verifies against the card's certificate
    let check = (app.config.ukey.self_check && call.method == SIGN_METHOD)
        .then(|| {
            call.args
                .get("inData")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .flatten();
    if log::log_enabled!(log::Level::Debug) {
        let args = app.masker.masked(&Value::Object(call.args.clone()));
        log::debug!("[{request_id}] rpc {} args {}", call.method, args);
    }
    let outcome = app.ukey.call(
        &call.method,
        call.args,
        request_id,
        ex.arrived,
        ex.client_ip,
    );
    ex.note_card(&outcome);
    let mut reply = match outcome {
        Ok(f) if !frame::succeeded(&f) => Reply::json(400, f),
        Ok(f) => match check.map(|data| self_check(app, ex, &f, &data)) {
            Some(Err(e)) => super::domain::reply(&e, request_id),
            _ => Reply::json(200, f),
        },
        Err(e) => call_error_reply(&e),
    };
    if let Body::Json(f) = &mut reply.body {
        // by key only: the reply echoes the caller's own text (M4, see crate::mask)
        crate::mask::Masker::mask_keys(f);
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("[{request_id}] rpc {} answer {}", call.method, f);
        }
    }
    audit::report_operation_failure(app, &call.method, &reply, request_id);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_calls() {
        let c = parse_call(br#"{"_method":"cus-sec_SpcGetCertNo"}"#).unwrap();
        assert_eq!(c.method, "cus-sec_SpcGetCertNo");
        assert!(c.args.is_empty());
        let c = parse_call(br#"{"_method":"m","args":{"inData":"x"}}"#).unwrap();
        assert_eq!(c.args["inData"], "x");
        assert!(parse_call(br#"{"_method":"m","args":null}"#).is_ok());
    }

    #[test]
    fn rejects_invalid_calls_with_reasons() {
        let cases: [(&[u8], &str); 9] = [
            (b"", "empty"),
            (b"not json", "not valid JSON"),
            (b"[1]", "JSON object"),
            (b"{}", "missing \"_method\""),
            (br#"{"_method":5}"#, "must be a string"),
            (br#"{"_method":""}"#, "must not be empty"),
            (
                br#"{"_method":"m","args":[]}"#,
                "\"args\" must be a JSON object",
            ),
            (
                br#"{"_method":"m","args":"x"}"#,
                "\"args\" must be a JSON object",
            ),
            (b"{\"_method\":\"\xff\"}", "UTF-8"),
        ];
        for (body, expected) in cases {
            let e = parse_call(body).unwrap_err();
            assert!(e.contains(expected), "{e:?} should contain {expected:?}");
        }
    }
}
