//! The simulated card's methods: what each `cus-sec_Spc…` call answers.

use super::SimOptions;
use md5::{Digest, Md5};
use serde_json::Value;

/// Who the simulated card says it is. Every name says "simulator".
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert_no: String,
    pub ent_name: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            cert_no: "5100000000sim".into(),
            ent_name: "UKey simulator (not valid at customs)".into(),
        }
    }
}

type Outcome = Result<Vec<String>, Vec<String>>;

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

/// Answers one call: `Ok(Data)` or `Err(Error)`.
pub fn call(options: &SimOptions, method: &str, args: &Value) -> Outcome {
    if args.get("passwd").and_then(Value::as_str) != Some(options.password.as_str()) {
        return Err(vec![
            "口令验证失败 (simulator: wrong or missing passwd)".into(),
            "Err:Custom50030".into(),
        ]);
    }
    let id = &options.identity;
    match method {
        "cus-sec_SpcGetCertNo" => Ok(vec![id.cert_no.clone()]),
        "cus-sec_SpcGetEntName" => Ok(vec![id.ent_name.clone()]),
        "cus-sec_SpcSignDataAsPEM" => {
            let data = required(args, "inData")?;
            Ok(vec![sign(data), id.cert_no.clone()])
        }
        _ => Err(vec![
            format!("simulator: unknown method {method}"),
            "Err:Base50001".into(),
        ]),
    }
}

/// Placeholder signature until the simulator signs with a real key.
pub(crate) fn sign(data: &str) -> String {
    let digest = Md5::digest(data.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("SIM{hex}")
}
