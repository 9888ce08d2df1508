//! Customs "179 announcement" payment data: validates an order's payment data, writes it exactly
//! as customs checks it (their field order whatever the caller's, `totalAmount` a bare number
//! without trailing zeros, `guid` upper case, every other value a string, raw UTF-8), builds the
//! source string `"sessionID":"…"||"payExchangeInfoHead":"…"||"payExchangeInfoLists":"…"||
//! "serviceTime":"…"`, and the upload-ready object whose head and lists are byte for byte the
//! JSON that was signed.

use serde_json::{Map, Value};

/// The production upload endpoint (the default of `customs.upload_url`).
pub use crate::config::CUSTOMS_PRODUCTION_URL as PRODUCTION_URL;
/// The test endpoint.
pub const TEST_URL: &str = "https://swapptest.singlewindow.cn/ceb2grab/grab/realTimeDataUpload";

/// How a field is written and checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    /// A non-empty string.
    Required,
    /// A string that may be empty or absent (written as "").
    Optional,
    /// `guid`: a non-empty string, upper-cased.
    Guid,
    /// `totalAmount`: a number (or a decimal string), written bare.
    Amount,
}

/// Customs' field order (the spelling "inital" is customs').
const HEAD: [(&str, Field); 12] = [
    ("guid", Field::Guid),
    ("initalRequest", Field::Required),
    ("initalResponse", Field::Required),
    ("ebpCode", Field::Required),
    ("payCode", Field::Required),
    ("payTransactionId", Field::Required),
    ("totalAmount", Field::Amount),
    ("currency", Field::Required),
    ("verDept", Field::Required),
    ("payType", Field::Required),
    ("tradingTime", Field::Required),
    ("note", Field::Optional),
];
const LIST: [(&str, Field); 4] = [
    ("orderNo", Field::Required),
    // goodsInfo is written between orderNo and recpAccount (see `list_entry`)
    ("recpAccount", Field::Required),
    ("recpCode", Field::Optional),
    ("recpName", Field::Required),
];
const GOODS: [(&str, Field); 2] = [("gname", Field::Required), ("itemLink", Field::Required)];

/// A validated, customs-ordered order.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub session_id: String,
    /// The head as customs reads it: compact JSON in customs' order.
    pub head_json: String,
    pub lists_json: String,
    pub service_time: String,
    pub upload: bool,
}

impl Order {
    /// The exact string the UKey signs.
    pub fn source(&self) -> String {
        format!(
            "\"sessionID\":\"{}\"||\"payExchangeInfoHead\":\"{}\"||\"payExchangeInfoLists\":\"{}\"||\"serviceTime\":\"{}\"",
            self.session_id, self.head_json, self.lists_json, self.service_time
        )
    }

    /// The upload object (`payExInfoStr`), head and lists exactly as signed.
    pub fn upload_json(&self, cert_no: &str, sign_value: &str) -> String {
        format!(
            "{{\"sessionID\":{},\"payExchangeInfoHead\":{},\"payExchangeInfoLists\":{},\"serviceTime\":{},\"certNo\":{},\"signValue\":{}}}",
            json_str(&self.session_id),
            self.head_json,
            self.lists_json,
            json_str(&self.service_time),
            json_str(cert_no),
            json_str(sign_value)
        )
    }
}

/// A JSON string: raw UTF-8, `/` not escaped, quotes and controls escaped (serde_json's rules).
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A validation error, naming the path of the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> Invalid {
    Invalid {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// 2^53: the largest count of fen below which every whole number of fen is an exact f64.
const MAX_EXACT_FEN: f64 = 9_007_199_254_740_992.0;
/// The same in yuan, as the refusal states it.
const MAX_EXACT_YUAN: &str = "90071992547409.92";

/// `totalAmount` as customs wants it: a bare number without trailing zeros or float artefacts.
/// It is money (yuan, at most two decimals for fen), so a number is rounded to two decimals,
/// which removes artefacts such as 143.64000000000001 however the caller's JSON library wrote
/// them, and more precision than a fen is refused rather than silently rounded.
pub fn format_amount(v: &Value, path: &str) -> Result<String, Invalid> {
    let fen = |s: &str| {
        invalid(
            path,
            format!("has more than two decimals ({s}); amounts are in yuan with at most fen"),
        )
    };
    match v {
        Value::Number(n) => {
            let f = match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => f,
                _ => return Err(invalid(path, "must be a non-negative amount")),
            };
            // a JSON number reaches us as an f64: beyond 2^53 fen it no longer holds every
            // amount exactly, and what was signed would differ from what was sent (L10)
            if f >= MAX_EXACT_FEN / 100.0 {
                return Err(invalid(
                    path,
                    format!(
                        "{n} is too large to be carried exactly as a JSON number (the limit is \
                         {MAX_EXACT_YUAN} yuan); send it as a decimal string such as \"{n}\" if it is meant"
                    ),
                ));
            }
            let cents = (f * 100.0).round();
            if (f * 100.0 - cents).abs() > 1e-6 {
                return Err(fen(&n.to_string()));
            }
            normalise_decimal(&format!("{:.2}", cents / 100.0))
                .ok_or_else(|| invalid(path, "must be an amount"))
        }
        Value::String(s) => {
            let text = normalise_decimal(s.trim())
                .ok_or_else(|| invalid(path, "must be a decimal amount such as 143.64"))?;
            if text.split_once('.').is_some_and(|(_, frac)| frac.len() > 2) {
                return Err(fen(s));
            }
            Ok(text)
        }
        _ => Err(invalid(path, "must be a number")),
    }
}

/// "0100.10" → "100.1", "100.0" → "100", exactly (no floating point).
fn normalise_decimal(s: &str) -> Option<String> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.trim_end_matches('0');
    Some(if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    })
}

/// A field written in customs' order, or an error naming its path.
fn write_fields(
    obj: &Map<String, Value>,
    spec: &[(&str, Field)],
    path: &str,
    out: &mut Vec<String>,
) -> Result<(), Invalid> {
    for (name, kind) in spec {
        let p = format!("{path}.{name}");
        let value = obj.get(*name);
        let text = match (kind, value) {
            (Field::Amount, Some(v)) => format_amount(v, &p)?,
            (Field::Amount, None) => return Err(invalid(&p, "is required")),
            (Field::Optional, None | Some(Value::Null)) => json_str(""),
            (_, None | Some(Value::Null)) => return Err(invalid(&p, "is required")),
            (_, Some(Value::String(s))) => {
                if s.trim().is_empty() && *kind != Field::Optional {
                    return Err(invalid(&p, "must not be empty"));
                }
                if *kind == Field::Guid {
                    json_str(&s.to_uppercase())
                } else {
                    json_str(s)
                }
            }
            (_, Some(other)) => {
                return Err(invalid(
                    &p,
                    format!("must be a string, got {}", type_name(other)),
                ));
            }
        };
        out.push(format!("\"{name}\":{text}"));
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Unknown fields would silently change what customs receives.
fn reject_unknown(obj: &Map<String, Value>, known: &[&str], path: &str) -> Result<(), Invalid> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(invalid(
            &format!("{path}.{k}"),
            "is not a field customs knows",
        )),
        None => Ok(()),
    }
}

/// An object, or a JSON string holding one (the "stringified" form some callers send).
fn object_or_string<'a>(
    v: &'a Value,
    path: &str,
    holder: &'a mut Option<Value>,
) -> Result<&'a Value, Invalid> {
    match v {
        Value::String(s) => {
            let parsed: Value = serde_json::from_str(s)
                .map_err(|e| invalid(path, format!("is a string but not JSON: {e}")))?;
            Ok(holder.insert(parsed))
        }
        other => Ok(other),
    }
}

fn head(v: &Value) -> Result<String, Invalid> {
    let path = "payExchangeInfoHead";
    let Value::Object(obj) = v else {
        return Err(invalid(path, "must be an object"));
    };
    let names: Vec<&str> = HEAD.iter().map(|(n, _)| *n).collect();
    reject_unknown(obj, &names, path)?;
    let mut out = Vec::new();
    write_fields(obj, &HEAD, path, &mut out)?;
    Ok(format!("{{{}}}", out.join(",")))
}

fn lists(v: &Value) -> Result<String, Invalid> {
    let path = "payExchangeInfoLists";
    let Value::Array(entries) = v else {
        return Err(invalid(path, "must be an array"));
    };
    if entries.is_empty() {
        return Err(invalid(path, "must have at least one entry"));
    }
    let mut written = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        written.push(list_entry(entry, &format!("{path}[{i}]"))?);
    }
    Ok(format!("[{}]", written.join(",")))
}

fn list_entry(v: &Value, path: &str) -> Result<String, Invalid> {
    let Value::Object(obj) = v else {
        return Err(invalid(path, "must be an object"));
    };
    reject_unknown(
        obj,
        &[
            "orderNo",
            "goodsInfo",
            "recpAccount",
            "recpCode",
            "recpName",
        ],
        path,
    )?;
    let mut out = Vec::new();
    write_fields(obj, &LIST[..1], path, &mut out)?;
    let goods_path = format!("{path}.goodsInfo");
    let goods = match obj.get("goodsInfo") {
        Some(Value::Array(g)) if !g.is_empty() => g,
        Some(Value::Array(_)) => return Err(invalid(&goods_path, "must have at least one entry")),
        Some(other) => {
            return Err(invalid(
                &goods_path,
                format!("must be an array, got {}", type_name(other)),
            ));
        }
        None => return Err(invalid(&goods_path, "is required")),
    };
    let mut goods_out = Vec::new();
    for (j, g) in goods.iter().enumerate() {
        let gp = format!("{goods_path}[{j}]");
        let Value::Object(gobj) = g else {
            return Err(invalid(&gp, "must be an object"));
        };
        reject_unknown(gobj, &["gname", "itemLink"], &gp)?;
        let mut fields = Vec::new();
        write_fields(gobj, &GOODS, &gp, &mut fields)?;
        goods_out.push(format!("{{{}}}", fields.join(",")));
    }
    out.push(format!("\"goodsInfo\":[{}]", goods_out.join(",")));
    write_fields(obj, &LIST[1..], path, &mut out)?;
    Ok(format!("{{{}}}", out.join(",")))
}

/// Validates a request body and writes it the customs way.
pub fn parse_order(body: &[u8]) -> Result<Order, Invalid> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid("body", format!("is not valid JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(invalid("body", "must be a JSON object"));
    };
    reject_unknown(
        &obj,
        &[
            "sessionId",
            "sessionID",
            "payExchangeInfoHead",
            "payExchangeInfoLists",
            "serviceTime",
            "realTimeDataUpload",
        ],
        "body",
    )
    .map_err(|e| invalid(e.path.trim_start_matches("body."), e.reason))?;
    let session = match (obj.get("sessionID"), obj.get("sessionId")) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid("sessionID", "sessionID and sessionId differ"));
        }
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => return Err(invalid("sessionID", "is required (sessionID or sessionId)")),
    };
    let session_id = match session {
        Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
        Value::String(_) => return Err(invalid("sessionID", "must not be empty")),
        other => {
            return Err(invalid(
                "sessionID",
                format!("must be a string, got {}", type_name(other)),
            ));
        }
    };
    if session_id.contains('"') {
        return Err(invalid("sessionID", "must not contain quotes"));
    }
    let mut holder = None;
    let head_value = obj
        .get("payExchangeInfoHead")
        .ok_or_else(|| invalid("payExchangeInfoHead", "is required"))?;
    let head_json = head(object_or_string(
        head_value,
        "payExchangeInfoHead",
        &mut holder,
    )?)?;
    let mut holder = None;
    let lists_value = obj
        .get("payExchangeInfoLists")
        .ok_or_else(|| invalid("payExchangeInfoLists", "is required"))?;
    let lists_json = lists(object_or_string(
        lists_value,
        "payExchangeInfoLists",
        &mut holder,
    )?)?;
    let service_time = match obj.get("serviceTime") {
        Some(Value::Number(n)) if n.as_u64().is_some() => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.clone()
        }
        Some(_) => {
            return Err(invalid(
                "serviceTime",
                "must be milliseconds since the epoch (number or digits)",
            ));
        }
        None => return Err(invalid("serviceTime", "is required")),
    };
    let upload = match obj.get("realTimeDataUpload") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(invalid(
                "realTimeDataUpload",
                format!("must be true or false, got {}", type_name(other)),
            ));
        }
    };
    Ok(Order {
        session_id,
        head_json,
        lists_json,
        service_time,
        upload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts() {
        for (v, want) in [
            (json!(100.0), "100"),
            (json!(100.10), "100.1"),
            (json!(143.64), "143.64"),
            (json!(0.1), "0.1"),
            (json!(143.64000000000001), "143.64"),
            (json!(0.1 + 0.2), "0.3"), // 0.30000000000000004
            (json!(1234567.89), "1234567.89"),
            (json!(100), "100"),
            (json!("143.60"), "143.6"),
            (json!("0100.0"), "100"),
            (json!("0.50"), "0.5"),
        ] {
            assert_eq!(format_amount(&v, "a").unwrap(), want, "{v}");
        }
        // beyond 2^53 fen a JSON number is no longer exact: refused, not rounded (L10)
        let huge: Value = serde_json::from_str("123456789012345678901234567890").unwrap();
        let e = format_amount(&huge, "a").unwrap_err();
        assert!(e.reason.contains("90071992547409.92"), "{e}");
        assert!(format_amount(&json!(9007199254740993u64), "a").is_err());
        assert_eq!(
            format_amount(&json!(90071992547409.0), "a").unwrap(),
            "90071992547409"
        );
        // as a string it is exact at any size
        assert_eq!(
            format_amount(&json!("123456789012345678901234567890.10"), "a").unwrap(),
            "123456789012345678901234567890.1"
        );
        for bad in [
            json!(-1),
            json!("1e3"),
            json!("abc"),
            json!(true),
            json!("."),
        ] {
            assert!(format_amount(&bad, "a").is_err(), "{bad}");
        }
    }
}
