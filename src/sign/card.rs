//! The card as the signing workflows use it, for one request: its signing certificate (read
//! once per connection, or asked for now), a signature over data, and the self-check. A
//! signature that does not verify (a swapped card, a mixed-up certificate, a faulty reader) is
//! logged, reported by the failure webhook `signature_mismatch`, and never answered as valid.

use super::SignError;
use crate::customs::cardsig;
use crate::customs::cert::{self, CertInfo};
use crate::ukey::{CallError, SIGN_CERT_METHOD, Ukey, frame};
use crate::webhook::Webhooks;
use serde_json::{Map, Value};
use std::cell::Cell;
use std::time::Instant;

pub const SIGN_METHOD: &str = "cus-sec_SpcSignDataAsPEM";

/// The card's signing certificate, as it hands it out (base64 DER), and parsed.
pub struct SignCert {
    pub b64: String,
    pub info: CertInfo,
}

/// The card, for the request `request_id` that arrived at `arrived` (its time budget).
pub struct Card<'a> {
    pub ukey: &'a Ukey,
    pub webhooks: &'a Webhooks,
    pub request_id: &'a str,
    pub arrived: Instant,
    /// The caller's address: the card serves waiting calls round-robin by it.
    pub client: Option<std::net::IpAddr>,
    /// Set once the card received one of these calls: the answer
    /// then names the card in `X-Cert-No`.
    pub served: &'a Cell<bool>,
}

impl Card<'_> {
    /// One call to the card for this request, noting whether the card received it.
    fn call(&self, method: &str, args: Map<String, Value>) -> Result<Value, CallError> {
        let result = self
            .ukey
            .call(method, args, self.request_id, self.arrived, self.client);
        if crate::ukey::card_received(&result) {
            self.served.set(true);
        }
        result
    }

    /// The signing certificate: the one read on connecting, or asked for now.
    pub fn sign_cert(&self) -> Result<SignCert, SignError> {
        let b64 = match self.ukey.status().sign_cert() {
            Some(c) => c,
            None => {
                let f = self
                    .call(SIGN_CERT_METHOD, Map::new())
                    .map_err(SignError::Unavailable)?;
                if !frame::succeeded(&f) {
                    return Err(SignError::Refused {
                        what: "hand out its certificate",
                        frame: f,
                    });
                }
                frame::first_data(&f)
                    .map(str::to_owned)
                    .ok_or(SignError::NoCertificate)?
            }
        };
        let b64 = cert::bare_base64(&b64);
        let info = CertInfo::from_base64(&b64).map_err(SignError::UnreadableCertificate)?;
        Ok(SignCert { b64, info })
    }

    /// The card's signature over `data` and its certificate number, not yet checked.
    pub fn sign(&self, data: &str) -> Result<(String, String), SignError> {
        let mut args = Map::new();
        args.insert("inData".into(), Value::String(data.to_string()));
        let f = self
            .call(SIGN_METHOD, args)
            .map_err(SignError::Unavailable)?;
        if !frame::succeeded(&f) {
            return Err(SignError::Refused {
                what: "sign",
                frame: f,
            });
        }
        frame::signature_and_cert(&f, self.ukey.status().cert_no())
            .ok_or(SignError::NoSignature { frame: f })
    }

    /// The self-check: `signature_b64` over `data` must verify against the signing certificate.
    pub fn self_check(
        &self,
        cert: &SignCert,
        cert_no: &str,
        data: &[u8],
        signature_b64: &str,
    ) -> Result<(), SignError> {
        let Err(e) = cardsig::verify(&cert.info, data, signature_b64) else {
            return Ok(());
        };
        let message = format!(
            "the UKey's signature does not verify against its own signing certificate {cert_no} ({} card): {e}. \
             It was not answered as valid and not uploaded to customs: check that the right card is \
             inserted and that the E-Port client software reads it",
            cert.info.algorithm.name()
        );
        log::error!("[{}] {message}", self.request_id);
        // whatever is cached may describe another card than the one that signed (#28.1)
        self.ukey.forget_identity(format!(
            "a signature did not verify against certificate {cert_no}"
        ));
        self.webhooks.failure(
            "signature_mismatch",
            &message,
            SIGN_METHOD,
            std::slice::from_ref(&message),
            Some(self.request_id),
        );
        Err(SignError::SelfCheck {
            message,
            cert_no: cert_no.to_string(),
            algorithm: cert.info.algorithm.name(),
        })
    }

    /// A signature over `data` that passed the self-check, and the certificate number.
    pub fn sign_checked(&self, data: &str) -> Result<(String, String, SignCert), SignError> {
        let (value, cert_no) = self.sign(data)?;
        // nothing goes to customs, or back as valid, that does not verify
        let cert = self.sign_cert()?;
        self.self_check(&cert, &cert_no, data.as_bytes(), &value)?;
        Ok((value, cert_no, cert))
    }
}
