//! The card and its software, for integrators and operators: `GET /api/cert` (what the signing
//! certificate says), `GET /api/cert/sign.cer` and `/api/cert/env.cer` (the DER certificates,
//! named after the certificate number), and `POST /api/ukey/restart` (restart the E-Port client
//! software now).

use super::App;
use super::domain;
use super::exchange::{Exchange, Input};
use super::reply::{Body, Reply};
use super::rpc::call_error_reply;
use crate::customs::cert::CertInfo;
use crate::sign::SignError;
use crate::time::now_ms;
use crate::time::rfc3339;
use crate::ukey::expiry::days_left;
use crate::ukey::frame;
use crate::ukey::restart::RestartError;
use serde_json::{Map, json};
use std::sync::atomic::Ordering;

fn not_connected(app: &App) -> Option<Reply> {
    (!app.ukey.status().connected.load(Ordering::SeqCst)).then(|| {
        let why = app
            .ukey
            .status()
            .last_error()
            .unwrap_or_else(|| "not connected".into());
        Reply::error(
            503,
            format!("UKey unavailable: {}", app.masker.mask_str(&why)),
        )
    })
}

/// The certificate number: the card's, else the certificate's serial.
fn cert_no(app: &App, cert: &CertInfo) -> String {
    app.ukey
        .status()
        .cert_no()
        .unwrap_or_else(|| cert.serial_hex.clone())
}

pub fn info(app: &App, _: &Input, ex: &mut Exchange) -> Reply {
    ex.ukey_method = Some("cert".into());
    if let Some(r) = not_connected(app) {
        return r;
    }
    let cert = match domain::card(app, ex).sign_cert() {
        Ok(c) => c,
        Err(e) => return domain::reply(&e, &ex.request_id),
    };
    // the answer describes this card, read now or on connecting
    ex.card_served.set(true);
    let ent_name = app.ukey.call(
        "cus-sec_SpcGetEntName",
        Map::new(),
        &ex.request_id,
        ex.arrived,
        ex.client_ip,
    );
    ex.note_card(&ent_name);
    let ent_name = ent_name
        .ok()
        .filter(frame::succeeded)
        .and_then(|f| frame::first_data(&f).map(str::to_owned));
    let info = &cert.info;
    Reply::json(
        200,
        json!({
            "cert_no": cert_no(app, info),
            "ent_name": ent_name,
            "algorithm": info.algorithm.name(),
            "subject": info.subject,
            "issuer": info.issuer,
            "serial": info.serial_hex,
            "not_before": rfc3339(info.not_before),
            "not_after": rfc3339(info.not_after),
            "days_left": days_left(info.not_after, now_ms() / 1000),
        }),
    )
}

fn download(der: Vec<u8>, cert_no: &str) -> Reply {
    let name: String = cert_no
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    Reply {
        status: 200,
        body: Body::Raw {
            bytes: der,
            content_type: "application/pkix-cert",
        },
        headers: vec![(
            "Content-Disposition".into(),
            format!("attachment; filename=\"{name}.cer\""),
        )],
    }
}

pub fn sign_cer(app: &App, _: &Input, ex: &mut Exchange) -> Reply {
    ex.ukey_method = Some("cert.sign".into());
    if let Some(r) = not_connected(app) {
        return r;
    }
    match domain::card(app, ex).sign_cert() {
        Ok(c) => {
            ex.card_served.set(true);
            let no = cert_no(app, &c.info);
            download(c.info.der, &no)
        }
        Err(e) => domain::reply(&e, &ex.request_id),
    }
}

pub fn env_cer(app: &App, _: &Input, ex: &mut Exchange) -> Reply {
    ex.ukey_method = Some("cert.env".into());
    if let Some(r) = not_connected(app) {
        return r;
    }
    let f = app.ukey.call(
        "cus-sec_SpcGetEnvCertAsPEM",
        Map::new(),
        &ex.request_id,
        ex.arrived,
        ex.client_ip,
    );
    ex.note_card(&f);
    let f = match f {
        Ok(f) => f,
        Err(e) => return call_error_reply(&e),
    };
    if !frame::succeeded(&f) {
        return domain::reply(
            &SignError::Refused {
                what: "hand out its envelope certificate",
                frame: f,
            },
            &ex.request_id,
        );
    }
    let Some(cert) = frame::first_data(&f).and_then(|b64| CertInfo::from_base64(b64).ok()) else {
        return Reply::error(502, "the UKey's envelope certificate cannot be read");
    };
    let no = cert_no(app, &cert);
    download(cert.der, &no)
}

pub fn restart(app: &App, _: &Input, ex: &mut Exchange) -> Reply {
    ex.ukey_method = Some("ukey.restart".into());
    let reason = format!(
        "asked for with POST /api/ukey/restart (request {}{})",
        ex.request_id,
        ex.client
            .as_deref()
            .map(|c| format!(", client {c}"))
            .unwrap_or_default()
    );
    match app.ukey.restarter().run_now(&reason) {
        Ok(outcome) if outcome["ok"] == true => Reply::json(200, outcome),
        Ok(outcome) => Reply::json(
            502,
            json!({"error": "the restart command failed", "request_id": ex.request_id, "restart": outcome}),
        ),
        Err(e @ RestartError::NotConfigured) => Reply::error(503, e.to_string()),
        Err(e) => Reply::error(409, e.to_string()),
    }
}
