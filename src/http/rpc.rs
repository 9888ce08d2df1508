//! `POST /rpc`: validates the client's call, hands it to the UKey thread, and maps the card's
//! answer to an HTTP status (200 done, 400 the card said no, 503 no answer).

use crate::http::reply::Reply;
use crate::ukey::{CallError, Ukey};
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
    let args = match object.remove("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(a)) => a,
        Some(_) => return Err("\"args\" must be a JSON object".into()),
    };
    Ok(RpcCall { method, args })
}

/// Whether the card carried out the operation: `_status` "00" and `_args.Result` true.
pub fn frame_succeeded(frame: &Value) -> bool {
    let status_ok = frame
        .get("_status")
        .and_then(Value::as_str)
        .is_none_or(|s| s == "00");
    let result = frame
        .get("_args")
        .and_then(|a| a.get("Result"))
        .and_then(Value::as_bool);
    status_ok && result != Some(false)
}

/// The `Error` list of a failed frame, for logs and failure webhooks.
pub fn frame_errors(frame: &Value) -> Vec<String> {
    frame
        .get("_args")
        .and_then(|a| a.get("Error"))
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| e.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a successful `cus-sec_SpcSignDataAsPEM` reply carries: the signature (`Data[0]`) and the
/// certificate number (`Data[1]`, else the one the health probe read). `None` without a signature.
pub fn signature_and_cert(frame: &Value, ukey: &Ukey) -> Option<(String, String)> {
    let data = frame.get("_args").and_then(|a| a.get("Data"));
    let signature = data
        .and_then(|d| d.get(0))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?
        .to_string();
    let cert_no = data
        .and_then(|d| d.get(1))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| ukey.status().cert_no())
        .unwrap_or_default();
    Some((signature, cert_no))
}

/// The HTTP reply for a call error (no answer from the card).
pub fn call_error_reply(e: &CallError) -> Reply {
    Reply::error(503, e.to_string())
}

/// Runs the call and maps the outcome. The reply frame is the card's, without `_id`.
pub fn execute(ukey: &Ukey, call: &RpcCall, request_id: &str) -> Reply {
    match ukey.call(&call.method, call.args.clone(), request_id) {
        Ok(frame) => {
            let status = if frame_succeeded(&frame) { 200 } else { 400 };
            Reply::json(status, frame)
        }
        Err(e) => call_error_reply(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn success_is_status_00_and_result_true() {
        assert!(frame_succeeded(
            &json!({"_status":"00","_args":{"Result":true}})
        ));
        assert!(!frame_succeeded(
            &json!({"_status":"00","_args":{"Result":false}})
        ));
        assert!(!frame_succeeded(
            &json!({"_status":"01","_args":{"Result":true}})
        ));
        assert_eq!(
            frame_errors(&json!({"_args":{"Error":["a", 1]}})),
            vec!["a".to_string(), "1".to_string()]
        );
    }
}
