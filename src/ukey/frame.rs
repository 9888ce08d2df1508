//! Reading the card's reply frames: did the operation succeed, what errors did it give, and what
//! a signing reply carries. Shared by every endpoint that calls the card.

use serde_json::Value;

/// Whether the card carried out the operation: `_status` "00" and `_args.Result` true.
pub fn succeeded(frame: &Value) -> bool {
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
pub fn errors(frame: &Value) -> Vec<String> {
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

/// `Data[0]` of a successful frame as a string (a certificate, a digest, …).
pub fn first_data(frame: &Value) -> Option<&str> {
    frame
        .get("_args")
        .and_then(|a| a.get("Data"))
        .and_then(|d| d.get(0))
        .and_then(Value::as_str)
}

/// What a successful `cus-sec_SpcSignDataAsPEM` reply carries: the signature (`Data[0]`) and the
/// certificate number (`Data[1]`, else `known_cert_no`, the one the health probe read). `None`
/// without a signature.
pub fn signature_and_cert(
    frame: &Value,
    known_cert_no: Option<String>,
) -> Option<(String, String)> {
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
        .or(known_cert_no)
        .unwrap_or_default();
    Some((signature, cert_no))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn success_is_status_00_and_result_true() {
        assert!(succeeded(&json!({"_status":"00","_args":{"Result":true}})));
        assert!(!succeeded(
            &json!({"_status":"00","_args":{"Result":false}})
        ));
        assert!(!succeeded(&json!({"_status":"01","_args":{"Result":true}})));
        assert_eq!(
            errors(&json!({"_args":{"Error":["a", 1]}})),
            vec!["a".to_string(), "1".to_string()]
        );
    }

    #[test]
    fn signing_replies_give_signature_and_certificate() {
        let f = json!({"_args":{"Result":true,"Data":["c2ln","0177f045"]}});
        assert_eq!(
            signature_and_cert(&f, None),
            Some(("c2ln".into(), "0177f045".into()))
        );
        let f = json!({"_args":{"Result":true,"Data":["c2ln"]}});
        assert_eq!(
            signature_and_cert(&f, Some("ab".into())),
            Some(("c2ln".into(), "ab".into()))
        );
        assert_eq!(
            signature_and_cert(&json!({"_args":{"Data":[""]}}), None),
            None
        );
    }
}
