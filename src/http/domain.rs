//! The one place the signing workflows' errors become HTTP answers: no answer from the card
//! 503 (with `Retry-After` when busy), the card refused or the request is invalid 400, the
//! card's answer unusable or its signature not verifying 502, our own fault 500. Also hands
//! a handler the card for its request.

use super::App;
use super::exchange::Exchange;
use super::reply::Reply;
use super::rpc::call_error_reply;
use crate::customs::ceb::CebError;
use crate::sign::{Card, SignError};
use serde_json::json;

/// The card, for this request (its ID and time budget).
pub fn card<'a>(app: &'a App, ex: &'a Exchange) -> Card<'a> {
    Card {
        ukey: &app.ukey,
        webhooks: &app.webhooks,
        request_id: &ex.request_id,
        arrived: ex.arrived,
        client: ex.client_ip,
        served: &ex.card_served,
    }
}

/// The answer for a workflow's error.
pub fn reply(e: &SignError, request_id: &str) -> Reply {
    let error = e.to_string();
    match e {
        SignError::Unavailable(call) => call_error_reply(call),
        SignError::Refused { frame, .. } => Reply::json(
            400,
            json!({"error": error, "request_id": request_id, "ukey": frame}),
        ),
        SignError::NoSignature { frame } => Reply::json(
            502,
            json!({"error": error, "request_id": request_id, "ukey": frame}),
        ),
        SignError::NoCertificate | SignError::UnreadableCertificate(_) => Reply::error(502, error),
        SignError::SelfCheck {
            cert_no, algorithm, ..
        } => Reply::json(
            502,
            json!({"error": error, "request_id": request_id, "cert_no": cert_no,
                   "algorithm": algorithm}),
        ),
        SignError::Message(CebError::Internal(_)) => Reply::error(500, error),
        SignError::Message(_) | SignError::Order(_) => Reply::error(400, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ukey::CallError;

    #[test]
    fn every_error_has_its_status() {
        let frame =
            json!({"_status": "01", "_args": {"Result": false, "Data": [], "Error": ["no"]}});
        let cases = [
            (
                SignError::Unavailable(CallError::Unavailable("x".into())),
                503,
            ),
            (
                SignError::Refused {
                    what: "sign",
                    frame: frame.clone(),
                },
                400,
            ),
            (SignError::NoSignature { frame }, 502),
            (SignError::NoCertificate, 502),
            (SignError::UnreadableCertificate("bad".into()), 502),
            (
                SignError::SelfCheck {
                    message: "m".into(),
                    cert_no: "c".into(),
                    algorithm: "RSA",
                },
                502,
            ),
            (SignError::Message(CebError::AlreadySigned), 400),
            (SignError::Message(CebError::Internal("x")), 500),
        ];
        for (e, status) in cases {
            let r = reply(&e, "rid");
            assert_eq!(r.status, status, "{e}");
            let body = r.body_json("rid").unwrap();
            assert_eq!(body["error"], e.to_string());
            assert_eq!(body["request_id"], "rid");
        }
    }
}
