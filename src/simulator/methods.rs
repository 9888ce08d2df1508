//! The simulated card's methods: what each `cus-sec_Spc…` call answers, as the protocol notes
//! describe the real client software.

use super::card::Card;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

/// What the simulated card calls its enterprise.
pub const ENT_NAME: &str = "UKey SIMULATOR (not valid at customs)";

pub type Outcome = Result<Vec<String>, Vec<String>>;

fn missing(name: &str) -> Vec<String> {
    vec![
        format!("参数检查失败,传入的args中必须包含必要的非空白参数:{name}"),
        "Err:Base50000".into(),
    ]
}

fn required<'a>(args: &'a Value, name: &str) -> Result<&'a str, Vec<String>> {
    match args.get(name).and_then(Value::as_str) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(missing(name)),
    }
}

fn failed(message: String) -> Vec<String> {
    vec![message, "Err:Custom50100".into()]
}

/// Whether `passwd` is the card's password; a wrong one fails like the card does.
pub fn check_password(expected: &str, args: &Value) -> Result<(), Vec<String>> {
    if args.get("passwd").and_then(Value::as_str) == Some(expected) {
        Ok(())
    } else {
        Err(vec![
            "口令验证失败 (simulator: wrong or missing passwd)".into(),
            "Err:Custom50030".into(),
        ])
    }
}

/// Answers one card method: `Ok(Data)` or `Err(Error)`.
/// With `bad_signatures`, signatures are made over other data: well-formed, but they do not
/// verify (a swapped card or a faulty reader).
pub fn call(card: &Card, method: &str, args: &Value, bad_signatures: bool) -> Outcome {
    match method {
        "cus-sec_SpcGetCertNo" => Ok(vec![card.cert_no()]),
        "cus-sec_SpcGetEntName" => Ok(vec![ENT_NAME.into()]),
        "cus-sec_SpcGetSignCertAsPEM" => Ok(vec![card.sign_cert_b64()]),
        "cus-sec_SpcGetEnvCertAsPEM" => Ok(vec![card.env_cert_b64()]),
        "cus-sec_SpcSHA1DigestAsPEM" => {
            let info = required(args, "szInfo")?;
            Ok(vec![B64.encode(Sha1::digest(info.as_bytes()))])
        }
        "cus-sec_SpcSignDataAsPEM" => {
            let data = required(args, "inData")?;
            let signed = if bad_signatures {
                format!("{data} (not what was asked)")
            } else {
                data.to_string()
            };
            let signature = card.sign(signed.as_bytes()).map_err(failed)?;
            Ok(vec![signature, card.cert_no()])
        }
        "cus-sec_SpcSignDataNoHashAsPEM" => {
            let digest = decode_digest(required(args, "inData")?)?;
            Ok(vec![card.sign_digest(&digest).map_err(failed)?])
        }
        "cus-sec_SpcVerifySignData" => {
            let data = required(args, "inData")?;
            let signature = required(args, "signData")?;
            let cert = match args.get("certDataPEM").and_then(Value::as_str) {
                Some(pem) if !pem.trim().is_empty() => Some(cert_der(pem)?),
                _ => None,
            };
            card.verify(data.as_bytes(), signature, cert.as_deref())
                .map_err(failed)?;
            Ok(vec!["成功!".into()])
        }
        "cus-sec_SpcGetValidTimeFromCert" => {
            let (start, end) = card.validity().map_err(failed)?;
            let times = json!({"szStartTime": start, "szEndTime": end});
            Ok(vec![times.to_string()])
        }
        _ => Err(vec![
            format!("不支持的方法 (simulator: unknown method {method})"),
            "Err:Base50001".into(),
        ]),
    }
}

/// A digest given as base64 (what `cus-sec_SpcSHA1DigestAsPEM` answers) or as hex.
fn decode_digest(text: &str) -> Result<Vec<u8>, Vec<String>> {
    let text = text.trim();
    let hex = (text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| {
            (0..20)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .flatten();
    match hex.or_else(|| B64.decode(text).ok()) {
        Some(d) if d.len() == 20 => Ok(d),
        _ => Err(failed(
            "inData must be a SHA-1 digest (20 bytes, base64 or hex)".into(),
        )),
    }
}

/// A certificate given as base64 DER, or PEM with its header lines.
fn cert_der(text: &str) -> Result<Vec<u8>, Vec<String>> {
    B64.decode(crate::encoding::pem_body(text))
        .map_err(|_| failed("certDataPEM is not a base64 certificate".into()))
}
