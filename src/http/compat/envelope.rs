//! The Java signer's answer envelope `Result<T>` (`message`, `success`, `timestamp`, `code`,
//! `data`; null fields left out, as its Jackson `non_null` setting does) and its codes. Envelopes
//! are HTTP 200 even for errors, as the Java signer's are: its Feign clients throw on any other
//! status before their code could read `success` and `code`.

use crate::http::reply::Reply;
use serde_json::{Map, Value, json};

/// Success (`Result.ok`, `Result.success`).
pub const OK: i64 = 200;
/// A missing or wrong token (`AuthWebMvcConfiguration`).
pub const UNAUTHORIZED: i64 = 401;
/// Every other failure (`Result.error`, `GlobalExceptionHandler.handleUnknownException`).
pub const ERROR: i64 = 500;
/// A required field missing or blank (`BizCodeEnum.VALID_EXCEPTION`).
pub const VALID_EXCEPTION: i64 = 10001;

/// `Result.ok(data)`.
pub fn ok(data: Value) -> Reply {
    envelope(OK, "操作成功", true, Some(data))
}

/// A failure with `code` and `message`, and `data` when there is any.
pub fn error(code: i64, message: impl Into<String>, data: Option<Value>) -> Reply {
    envelope(code, &message.into(), false, data)
}

/// `handleValidException`: which fields failed, and why.
pub fn invalid(field: &str, why: &str) -> Reply {
    let mut fields = Map::new();
    fields.insert(field.to_string(), Value::String(why.to_string()));
    error(
        VALID_EXCEPTION,
        "参数格式校验异常",
        Some(json!({"globalError": {}, "fieldError": fields})),
    )
}

fn envelope(code: i64, message: &str, success: bool, data: Option<Value>) -> Reply {
    let mut body = Map::new();
    body.insert("message".into(), json!(message));
    body.insert("success".into(), json!(success));
    body.insert(
        "timestamp".into(),
        json!(china_time(crate::time::now_ms() / 1000)),
    );
    body.insert("code".into(), json!(code));
    if let Some(d) = data.filter(|d| !d.is_null()) {
        body.insert("data".into(), d);
    }
    Reply::json(200, Value::Object(body))
}

/// `yyyy-MM-dd HH:mm:ss` in China time (UTC+8, no daylight saving), as `Result.preCreate` writes
/// it on the servers the Java signer runs on.
pub fn china_time(unix_s: u64) -> String {
    let text = crate::time::rfc3339(unix_s + 8 * 3600);
    text.trim_end_matches('Z').replacen('T', " ", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_time_is_utc_plus_8() {
        // 2023-07-15 04:15:47 UTC, the README sample's 12:15:47 in Beijing
        assert_eq!(china_time(1_689_394_547), "2023-07-15 12:15:47");
    }

    #[test]
    fn errors_are_http_200_envelopes_without_null_data() {
        let r = error(ERROR, "加签失败", None);
        assert_eq!(r.status, 200);
        let j = r.body_json("x").unwrap();
        assert_eq!(j["success"], false);
        assert_eq!(j["code"], 500);
        assert!(j.get("data").is_none());
        let j = invalid("data", "加签数据不能为空").body_json("x").unwrap();
        assert_eq!(j["code"], 10001);
        assert_eq!(j["data"]["fieldError"]["data"], "加签数据不能为空");
    }
}
