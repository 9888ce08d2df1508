//! Sorted-field checksums carried inside the JSON body, as payment and platform APIs sign:
//! - `pairs` (WeChat Pay v2 style): top-level fields except the signature field, null and empty
//!   values skipped, sorted by name (byte order), joined `name=value` with `&`, then
//!   `&key=SECRET`; MD5 (or HMAC-SHA256 keyed with the secret), upper-case hex. Nested objects
//!   and arrays are taken as their compact JSON.
//! - `values` (the checksum-library form): the values alone, in field-name order, the secret
//!   prepended as a salt; MD5, upper-case hex.
//!
//! `timestamp` and `nonce` fields take part in the signature, so the window and replay rules
//! apply; the signature field is removed before the body goes on.

use super::replay::ReplayCache;
use super::secret::{MacAlg, Secret, Tag};
use super::{
    AuthError, Authenticated, ClientKey, Clients, RequestParts, check_window, constant_time_eq,
    replay_error,
};
use crate::config::{ChecksumAlgorithm, ChecksumConfig, ChecksumVariant};
use md5::{Digest, Md5};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// A field's value as it is signed: strings as they are, other scalars and nested values as
/// compact JSON. `None` for null and the empty string (skipped in `pairs`).
fn signed_value(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// Calls `each` for the signed fields, sorted by name (byte order). serde_json's map is already
/// in that order, so nothing is collected; should a feature switch it to insertion order, the
/// fields are sorted first.
fn for_signed_fields<'a>(
    obj: &'a Map<String, Value>,
    sign_field: &str,
    exclude: &[String],
    mut each: impl FnMut(&'a str, &'a Value),
) {
    let signed = |k: &String| k.as_str() != sign_field && !exclude.iter().any(|e| e == k);
    if obj.keys().is_sorted_by(|a, b| a.as_bytes() <= b.as_bytes()) {
        for (k, v) in obj.iter().filter(|(k, _)| signed(k)) {
            each(k, v);
        }
        return;
    }
    let mut fields: Vec<(&str, &Value)> = obj
        .iter()
        .filter(|(k, _)| signed(k))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (k, v) in fields {
        each(k, v);
    }
}

/// `a=1&b=2&key=SECRET` (the string that is hashed in the `pairs` variant).
pub fn pairs_string(
    obj: &Map<String, Value>,
    sign_field: &str,
    exclude: &[String],
    secret: &str,
) -> String {
    let mut out = Vec::new();
    feed_pairs(obj, sign_field, exclude, secret.as_bytes(), |b| {
        out.extend_from_slice(b)
    });
    String::from_utf8_lossy(&out).into_owned()
}

/// Feeds `a=1&b=2&key=SECRET` to `update` piece by piece: the hashers take it without the
/// string being built, and `pairs_string` builds it from the same pieces.
fn feed_pairs(
    obj: &Map<String, Value>,
    sign_field: &str,
    exclude: &[String],
    secret: &[u8],
    mut update: impl FnMut(&[u8]),
) {
    for_signed_fields(obj, sign_field, exclude, |k, v| {
        if let Some(value) = signed_value(v) {
            update(k.as_bytes());
            update(b"=");
            update(value.as_bytes());
            update(b"&");
        }
    });
    update(b"key=");
    update(secret);
}

/// The raw signature: `pairs` is MD5 or HMAC-SHA256 of the pairs string, `values` MD5 of the
/// secret followed by the values in name order.
fn digest(obj: &Map<String, Value>, cfg: &ChecksumConfig, secret: &Secret) -> Tag {
    let (field, exclude) = (cfg.field.as_str(), cfg.exclude.as_slice());
    if cfg.variant == ChecksumVariant::Values {
        let mut h = Md5::new();
        h.update(secret.bytes());
        for_signed_fields(obj, field, exclude, |_, v| {
            if let Some(value) = signed_value(v) {
                h.update(value.as_bytes());
            }
        });
        Tag::of(&h.finalize())
    } else if cfg.algorithm == ChecksumAlgorithm::HmacSha256 {
        let mut mac = secret.hmac(MacAlg::Sha256);
        feed_pairs(obj, field, exclude, secret.bytes(), |b| mac.update(b));
        mac.finish()
    } else {
        let mut h = Md5::new();
        feed_pairs(obj, field, exclude, secret.bytes(), |b| h.update(b));
        Tag::of(&h.finalize())
    }
}

/// The signature a client puts in the body, upper-case hex.
pub fn sign(obj: &Map<String, Value>, cfg: &ChecksumConfig, secret: &Secret) -> String {
    super::hex(digest(obj, cfg, secret).as_bytes(), true)
}

/// Whether `given` (hex, either case) is the body's signature under `secret`, compared as bytes
/// in constant time.
pub fn matches(
    obj: &Map<String, Value>,
    cfg: &ChecksumConfig,
    secret: &Secret,
    given: &str,
) -> bool {
    let tag = digest(obj, cfg, secret);
    let mut buf = [0u8; 64];
    match super::decode_hex(given, &mut buf[..tag.as_bytes().len()]) {
        Some(given) => constant_time_eq(given, tag.as_bytes()),
        None => false,
    }
}

pub struct ChecksumScheme {
    max_skew_ms: u64,
    config: ChecksumConfig,
    nonces: ReplayCache,
}

impl ChecksumScheme {
    /// `remembered`: nonces and signatures kept per client (`auth.max_remembered_per_client`).
    pub fn new(max_skew_ms: u64, config: ChecksumConfig, remembered: usize) -> ChecksumScheme {
        ChecksumScheme {
            max_skew_ms,
            config,
            nonces: ReplayCache::new(remembered),
        }
    }

    /// A JSON object body with the signature field.
    pub fn applies(&self, req: &RequestParts<'_>) -> bool {
        serde_json::from_slice::<Value>(req.body)
            .ok()
            .and_then(|v| v.as_object().map(|o| o.contains_key(&self.config.field)))
            .unwrap_or(false)
    }

    pub fn verify(
        &self,
        req: &RequestParts<'_>,
        clients: &Clients,
        now_ms: u64,
    ) -> Result<Authenticated, AuthError> {
        let field = self.config.field.as_str();
        let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(req.body) else {
            return Err(AuthError::NoCredentials(format!(
                "a JSON object body with a {field:?} field"
            )));
        };
        let given = match obj.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim(),
            Some(_) => {
                return Err(AuthError::Malformed(
                    "signature field",
                    format!("{field:?} must be a hex string"),
                ));
            }
            None => {
                return Err(AuthError::NoCredentials(format!(
                    "a {field:?} field in the body"
                )));
            }
        };
        let ts_field = self.config.timestamp_field.as_str();
        let ts = match obj.get(ts_field) {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            None => {
                return Err(AuthError::Malformed(
                    "body",
                    format!("missing {ts_field:?} field"),
                ));
            }
            _ => None,
        }
        .ok_or(AuthError::MalformedTimestamp)?;
        // seconds or milliseconds: a timestamp before 1973 in ms is a timestamp in seconds, which
        // loses up to a second of precision
        let in_seconds = ts < 100_000_000_000;
        let (ts_ms, slack) = if in_seconds {
            (ts * 1000, 1000)
        } else {
            (ts, 0)
        };
        let nonce = match obj.get(self.config.nonce_field.as_str()) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => s.clone(),
            _ => {
                return Err(AuthError::Malformed(
                    "body",
                    format!("missing or bad {:?} field", self.config.nonce_field),
                ));
            }
        };
        check_window(ts_ms, now_ms, self.max_skew_ms + slack)?;
        let client = clients
            .iter()
            .filter_map(|(id, key)| match key {
                ClientKey::Secret(s) => Some((id, s)),
                ClientKey::Ed25519(_) | ClientKey::Rsa(_) => None,
            })
            .find(|(_, secret)| matches(&obj, &self.config, secret, given))
            .map(|(id, _)| id.clone())
            .ok_or(AuthError::BadSignature)?;
        // both the nonce and the signature: the signed string joins values (or pairs) with no
        // unambiguous separator, so the same signature can come with the nonce split across
        // an added field (M2); any such rearrangement signs the same string, so it has the same
        // signature, which is remembered
        // (hex in either case is accepted: one case is remembered)
        let sig = given.to_ascii_lowercase();
        let until = ts_ms.saturating_add(self.max_skew_ms + slack);
        self.nonces
            .remember(
                &client,
                &[&[b"nonce", nonce.as_bytes()], &[b"sign", sig.as_bytes()]],
                now_ms,
                until,
            )
            .map_err(replay_error)?;
        obj.remove(field);
        let mut ok = Authenticated::client(client);
        ok.body = Some(Value::Object(obj).to_string().into_bytes());
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn sign_with(o: &Map<String, Value>, c: &ChecksumConfig, key: &str) -> String {
        let secret = Secret::new(key.as_bytes());
        let sig = sign(o, c, &secret);
        assert!(matches(o, c, &secret, &sig.to_lowercase()), "either case");
        assert!(!matches(o, c, &secret, &sig[2..]), "a short signature");
        sig
    }

    fn cfg(variant: &str, algorithm: &str) -> ChecksumConfig {
        ChecksumConfig {
            variant: ChecksumVariant::parse(variant).unwrap(),
            algorithm: ChecksumAlgorithm::parse(algorithm).unwrap(),
            ..ChecksumConfig::default()
        }
    }

    #[test]
    fn wechat_pay_official_example() {
        let params = obj(json!({"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100",
            "device_info": "1000", "body": "test", "nonce_str": "ibuaiVcKdpRxkhJA"}));
        let key = "192006250b4c09247ec02edce69f6a2d";
        assert_eq!(
            pairs_string(&params, "sign", &[], key),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d"
        );
        assert_eq!(
            sign_with(&params, &cfg("pairs", "md5"), key),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        assert_eq!(
            sign_with(&params, &cfg("pairs", "hmac-sha256"), key),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn wechat_style_own_vector_skips_empty_and_sign() {
        let params = obj(json!({"body": "测试商品", "nonce_str": "5K8264ILTKCH16CQ",
            "out_trade_no": "20240101000001", "total_fee": "1", "attach": "", "sign": "WHATEVER"}));
        let key = "192006250b4c09247ec02edce69f6a2d";
        assert_eq!(
            pairs_string(&params, "sign", &[], key),
            "body=测试商品&nonce_str=5K8264ILTKCH16CQ&out_trade_no=20240101000001&total_fee=1&key=192006250b4c09247ec02edce69f6a2d"
        );
        assert_eq!(
            sign_with(&params, &cfg("pairs", "md5"), key),
            "7665EAD9FF799F43D296CBE1B3253024"
        );
    }

    #[test]
    fn checksum_library_values_form() {
        // houbb/checksum: name=ryo, password=1234, address excluded, checksum is the signature field
        let mut c = cfg("values", "md5");
        c.field = "checksum".into();
        c.exclude = vec!["address".into()];
        let user =
            obj(json!({"name": "ryo", "password": "1234", "address": "china", "checksum": null}));
        assert_eq!(
            sign_with(&user, &c, ""),
            "5A2A21025E5232FBFD8BFB2A08DE2A01",
            "D1, no salt"
        );
        assert_eq!(
            sign_with(&user, &c, "salt"),
            "E8C8989E950B36A60E2DC9655C22378D",
            "D2, salt prepended"
        );
        let no_name =
            obj(json!({"name": null, "password": "1234", "address": "china", "checksum": null}));
        assert_eq!(
            sign_with(&no_name, &c, ""),
            "81DC9BDB52D04DC20036DBD8313ED055",
            "D4"
        );
    }

    #[test]
    fn nested_values_are_compact_json() {
        let o = obj(json!({"args": {"b": 1, "a": [1, "x"]}, "n": 5, "t": true}));
        assert_eq!(
            pairs_string(&o, "sign", &[], "k"),
            r#"args={"a":[1,"x"],"b":1}&n=5&t=true&key=k"#
        );
    }
}
