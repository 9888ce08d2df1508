//! What the customs endpoints share about the card's signatures: its signing certificate (read
//! once per connection, or asked for now), and the self-check that every signature obtained is
//! verified against that certificate before it is answered or uploaded. A signature that does
//! not verify (a swapped card, a mixed-up certificate, a faulty reader) answers 502, is reported
//! by the failure webhook `signature_mismatch`, and never reaches customs.

use super::App;
use super::exchange::Exchange;
use super::reply::Reply;
use super::rpc::call_error_reply;
use crate::customs::cardsig;
use crate::customs::cert::CertInfo;
use crate::ukey::{SIGN_CERT_METHOD, frame};
use serde_json::{Map, Value, json};

/// The card's signing certificate, as it hands it out (base64 DER), and parsed.
pub struct SignCert {
    pub b64: String,
    pub info: CertInfo,
}

/// The signing certificate: the one read on connecting, or asked for now.
pub fn sign_cert(app: &App, ex: &Exchange) -> Result<SignCert, Reply> {
    let request_id = ex.request_id.as_str();
    let b64 = match app.ukey.status().sign_cert() {
        Some(c) => c,
        None => {
            let f = app
                .ukey
                .call(SIGN_CERT_METHOD, Map::new(), request_id, ex.arrived)
                .map_err(|e| call_error_reply(&e))?;
            if !frame::succeeded(&f) {
                return Err(card_error(&f, "hand out its certificate", request_id));
            }
            frame::first_data(&f)
                .map(str::to_owned)
                .ok_or_else(|| Reply::error(502, "the UKey answered without a certificate"))?
        }
    };
    let b64 = crate::customs::cert::bare_base64(&b64);
    let info = CertInfo::from_base64(&b64).map_err(|e| {
        Reply::error(
            502,
            format!("the UKey's signing certificate cannot be read ({e}), so its signatures cannot be checked"),
        )
    })?;
    Ok(SignCert { b64, info })
}

/// The self-check: `signature_b64` over `data` must verify against the signing certificate.
pub fn self_check(
    app: &App,
    ex: &Exchange,
    cert: &SignCert,
    cert_no: &str,
    data: &[u8],
    signature_b64: &str,
) -> Result<(), Reply> {
    let Err(e) = cardsig::verify(&cert.info, data, signature_b64) else {
        return Ok(());
    };
    let error = format!(
        "the UKey's signature does not verify against its own signing certificate {cert_no} ({} card): {e}. \
         It was not answered as valid and not uploaded to customs: check that the right card is \
         inserted and that the E-Port client software reads it",
        cert.info.algorithm.name()
    );
    log::error!("[{}] {error}", ex.request_id);
    app.webhooks.failure(
        "signature_mismatch",
        &error,
        "cus-sec_SpcSignDataAsPEM",
        std::slice::from_ref(&error),
        Some(&ex.request_id),
    );
    Err(Reply::json(
        502,
        json!({"error": error, "request_id": ex.request_id, "cert_no": cert_no,
               "algorithm": cert.info.algorithm.name()}),
    ))
}

/// The card refused: 400 with its frame.
pub fn card_error(f: &Value, what: &str, request_id: &str) -> Reply {
    let errors = frame::errors(f).join("; ");
    Reply::json(
        400,
        json!({"error": format!("the UKey could not {what}: {errors}"), "request_id": request_id, "ukey": f}),
    )
}
