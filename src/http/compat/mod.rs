//! The Java signer's HTTP API (Weasley-J/chinaport-data-signature), answered under
//! `compat.java_signer`: `POST /rpc/eport/signature`, `GET /rpc/eport/cert/download`,
//! `POST /rpc/eport/ukey/health/endpoint/{command}` and `POST /rpc/eport/upload/179/data`, in its
//! `Result<T>` envelope with its codes (docs/compat-java-signer.md). The signing itself is this
//! proxy's, reached through `engine`.

pub mod engine;
pub mod envelope;

use super::App;
use super::exchange::{Exchange, Input};
use super::reply::{Body, Reply};
use crate::customs::c14n;
use engine::UploadError;
use envelope::{ERROR, UNAUTHORIZED};
use serde_json::{Value, json};

/// Where the Java signer's endpoints live; its token check covers them (`/rpc/**` there).
pub const PREFIX: &str = "/rpc/eport/";

/// 404 when `compat.java_signer` is off, as for any path the proxy does not serve.
fn switched_off(app: &App) -> Option<Reply> {
    (!app.config.compat.java_signer).then(|| {
        Reply::error(
            404,
            "no such endpoint: the Java signer's /rpc/eport/ endpoints are off (compat.java_signer)",
        )
    })
}

/// A failed authentication on one of these paths answers as the Java signer's token check does:
/// the envelope with code 401 `Unauthorized` (HTTP 200). Other paths keep the proxy's 401.
pub fn on_auth_failure(app: &App, path: &str, reply: Reply) -> Reply {
    if !app.config.compat.java_signer || !path.starts_with(PREFIX) {
        return reply;
    }
    let mut wrapped = envelope::error(UNAUTHORIZED, "Unauthorized", None);
    wrapped.headers = reply.headers;
    wrapped
}

/// `POST /rpc/eport/signature`: a CEB message or a 179 source string, signed.
pub fn signature(app: &App, input: &Input, ex: &mut Exchange) -> Reply {
    if let Some(r) = switched_off(app) {
        return r;
    }
    ex.ukey_method = Some("java.signature".into());
    let data = match sign_request(&input.body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match detect(&data) {
        Some(Kind::Ceb) => match engine::sign_ceb(app, ex, &data) {
            Ok(s) => envelope::ok(json!({
                "success": true,
                "certNo": s.cert_no,
                "x509Certificate": s.certificate,
                "digestValue": s.digest,
                "signatureValue": s.signature,
                "signatureNode": s.signed_info,
            })),
            Err(e) => sign_failed(&e),
        },
        Some(Kind::Customs179) => match engine::sign_179_source(app, ex, &data) {
            Ok((cert_no, value)) => envelope::ok(json!({
                "success": true,
                "certNo": cert_no,
                "signatureValue": value,
            })),
            Err(e) => sign_failed(&e),
        },
        None => envelope::error(
            ERROR,
            "加签数据请求入参不合法,请检查参数: data 应是CEB报文XML（格式正确或以<ceb:CEB开头），或以\"sessionID\"开头的海关179加签串",
            None,
        ),
    }
}

fn sign_failed(reason: &str) -> Reply {
    envelope::error(ERROR, format!("加签失败：{reason}"), None)
}

/// `SignRequest`'s `data`, checked as its bean validation does (`@NotBlank`; `id` at most
/// `Integer.MAX_VALUE`).
fn sign_request(body: &[u8]) -> Result<String, Reply> {
    let unreadable = |why: String| envelope::error(ERROR, format!("请求体不合法: {why}"), None);
    let v: Value =
        serde_json::from_slice(body).map_err(|e| unreadable(format!("不是合法的 JSON ({e})")))?;
    let Value::Object(obj) = v else {
        return Err(unreadable(
            "应是 JSON 对象 {\"id\": 1, \"data\": \"...\"}".into(),
        ));
    };
    match obj.get("id") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_i64().is_some_and(|i| i <= i64::from(i32::MAX)) => {}
        Some(_) => return Err(unreadable("id 应是 int 范围内的整数".into())),
    }
    match obj.get("data") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            Err(envelope::invalid("data", "加签数据不能为空"))
        }
        Some(_) => Err(unreadable("data 应是字符串".into())),
    }
}

#[derive(Debug, PartialEq)]
enum Kind {
    Ceb,
    Customs179,
}

/// As `SignHandler.isSignXml`: XML when well-formed or starting with `<ceb:CEB`, 179 when
/// starting with `"sessionID"`; both or neither is no type.
fn detect(data: &str) -> Option<Kind> {
    let is_179 = data.starts_with("\"sessionID\"");
    let is_xml = data.starts_with("<ceb:CEB")
        || (data
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('<')
            && c14n::parse(&c14n::normalise_line_ends(
                data.trim_start_matches('\u{feff}'),
            ))
            .is_ok());
    match (is_xml, is_179) {
        (true, false) => Some(Kind::Ceb),
        (false, true) => Some(Kind::Customs179),
        _ => None,
    }
}

/// `GET /rpc/eport/cert/download`: the card's certificate as `<certNo>.cer`.
pub fn cert_download(app: &App, _: &Input, ex: &mut Exchange) -> Reply {
    if let Some(r) = switched_off(app) {
        return r;
    }
    match engine::env_certificate(app, ex) {
        Ok((der, cert_no)) => Reply {
            status: 200,
            body: Body::Raw {
                bytes: pem(&der).into_bytes(),
                content_type: "application/x-x509-ca-cert",
            },
            headers: vec![(
                "Content-Disposition".into(),
                format!("attachment; filename=\"{cert_no}.cer\""),
            )],
        },
        Err(e) => envelope::error(ERROR, format!("下载证书失败：{e}"), None),
    }
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// `POST /rpc/eport/ukey/health/endpoint/RESTART`: the client-software restart.
pub fn health_restart(app: &App, _: &Input, ex: &mut Exchange) -> Reply {
    if let Some(r) = switched_off(app) {
        return r;
    }
    match engine::restart_client(app, ex) {
        Ok(outcome) => envelope::ok(console_output(&outcome)),
        Err(f) => envelope::error(
            ERROR,
            format!("重启控件失败：{}", f.reason),
            f.outcome.as_ref().map(console_output),
        ),
    }
}

/// The Java signer's `ConsoleOutput` of a restart's outcome.
fn console_output(outcome: &Value) -> Value {
    let lines = |v: &Value| -> Vec<String> {
        v.as_str()
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    json!({"stdOutList": lines(&outcome["output"]), "errorOutList": lines(&outcome["error"])})
}

fn unsupported(app: &App, ex: &mut Exchange, command: &str) -> Reply {
    if let Some(r) = switched_off(app) {
        return r;
    }
    ex.ukey_method = Some("java.health".into());
    envelope::error(
        ERROR,
        format!(
            "不支持的指令 {command}: 本代理只能重启电子口岸客户端控件（RESTART，即 ukey.client_restart_command），不能启动、停止或修复"
        ),
        None,
    )
}

pub fn health_start(app: &App, _: &Input, ex: &mut Exchange) -> Reply {
    unsupported(app, ex, "START")
}

pub fn health_stop(app: &App, _: &Input, ex: &mut Exchange) -> Reply {
    unsupported(app, ex, "STOP")
}

pub fn health_repair(app: &App, _: &Input, ex: &mut Exchange) -> Reply {
    unsupported(app, ex, "REPAIR")
}

/// `POST /rpc/eport/upload/179/data`: a 179 order signed and uploaded to customs.
pub fn upload_179(app: &App, input: &Input, ex: &mut Exchange) -> Reply {
    if let Some(r) = switched_off(app) {
        return r;
    }
    match engine::upload_179(app, ex, &input.body) {
        Ok(u) => envelope::ok(json!({
            "payload": {"payExInfoStr": u.payload},
            "original": u.customs.to_string(),
            "expected": {
                "code": "10000",
                "message": "上传成功",
                "total": 0,
                "serviceTime": u.service_time.parse::<u64>().unwrap_or_default(),
            },
        })),
        Err(UploadError::Invalid(path, why)) => envelope::invalid(&path, &why),
        Err(UploadError::Failed(e)) => {
            envelope::error(ERROR, format!("海关 179 数据抓取失败：{e}"), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_is_detected_as_the_java_signer_does() {
        assert_eq!(detect("<ceb:CEB311Message>unclosed"), Some(Kind::Ceb));
        assert_eq!(detect("<?xml version=\"1.0\"?><a/>"), Some(Kind::Ceb));
        assert_eq!(
            detect("\"sessionID\":\"1\"||\"serviceTime\":\"2\""),
            Some(Kind::Customs179)
        );
        assert_eq!(detect("<a>unclosed"), None);
        assert_eq!(detect("sessionID=1"), None);
    }

    #[test]
    fn sign_requests_are_validated_as_its_bean_validation() {
        let code = |body: &str| {
            sign_request(body.as_bytes())
                .unwrap_err()
                .body_json("x")
                .unwrap()["code"]
                .clone()
        };
        assert_eq!(code(r#"{"id":1}"#), 10001);
        assert_eq!(code(r#"{"data":"  "}"#), 10001);
        assert_eq!(code(r#"{"data":5}"#), 500);
        assert_eq!(code(r#"{"id":2147483648,"data":"x"}"#), 500);
        assert_eq!(code("not json"), 500);
        assert_eq!(sign_request(br#"{"id":null,"data":"x"}"#).unwrap(), "x");
    }
}
