//! What is signed with the card: a CEB message (its SignedInfo, after the certificate tells the
//! form) and a customs-179 order (its source string), each self-checked.

use super::{Card, SignError};
use crate::config::CebConfig;
use crate::customs::ceb::{Form, Unsigned};
use crate::customs::customs179::Order;

/// A CEB message signed and checked.
pub struct CebSigned {
    /// The signed message: the signature as the root's last child, nothing else changed.
    pub signed: String,
    pub digest: String,
    pub signature: String,
    pub cert_no: String,
    /// The signing certificate, base64 DER.
    pub certificate: String,
    /// The canonical `ds:SignedInfo` the card signed.
    pub signed_info: String,
}

/// Signs a CEB message: parses it (refusing one already signed), chooses the form from the
/// card's certificate and `ceb`, has the card sign the canonical SignedInfo, and self-checks.
pub fn sign_ceb(card: &Card, ceb: &CebConfig, xml: &str) -> Result<CebSigned, SignError> {
    let unsigned = Unsigned::prepare(xml).map_err(SignError::Message)?;
    let cert = card.sign_cert()?;
    let form = Form::choose(
        Some(cert.info.algorithm),
        ceb.signature_method,
        ceb.sm2_form,
    );
    let digest = unsigned.digest(&form);
    let signed_info = unsigned
        .canonical_signed_info(&form, &digest)
        .map_err(SignError::Message)?;
    let (signature, cert_no) = card.sign(&signed_info)?;
    card.self_check(&cert, &cert_no, signed_info.as_bytes(), &signature)?;
    Ok(CebSigned {
        signed: unsigned.signed(&form, &digest, &signature, &cert_no, &cert.b64),
        digest,
        signature,
        cert_no,
        certificate: cert.b64,
        signed_info,
    })
}

/// Signs a validated 179 order's source string: the signature and the certificate number.
pub fn sign_179(card: &Card, order: &Order) -> Result<(String, String), SignError> {
    sign_source(card, &order.source())
}

/// Signs a 179 source string exactly as given, self-checked.
pub fn sign_source(card: &Card, source: &str) -> Result<(String, String), SignError> {
    let (value, cert_no, _) = card.sign_checked(source)?;
    Ok((value, cert_no))
}
