//! Why a signing workflow did not end with a checked signature, in words a user can act on.

use crate::customs::ceb::CebError;
use crate::customs::customs179::Invalid;
use crate::ukey::CallError;
use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone)]
pub enum SignError {
    /// The card gave no answer (not connected, busy, timed out).
    Unavailable(CallError),
    /// The card answered that it could not `what` (`sign`, `hand out its certificate`); its frame.
    Refused { what: &'static str, frame: Value },
    /// The card said it signed, but its answer holds no signature; its frame.
    NoSignature { frame: Value },
    /// The card answered without a certificate.
    NoCertificate,
    /// The card's signing certificate cannot be read, so no signature can be checked.
    UnreadableCertificate(String),
    /// The self-check failed: the signature does not verify against the card's own certificate.
    /// Already logged and reported by the `signature_mismatch` webhook.
    SelfCheck {
        message: String,
        cert_no: String,
        algorithm: &'static str,
    },
    /// The CEB message is not accepted (not well-formed, refused, already signed), or could
    /// not be signed (`CebError::Internal`).
    Message(CebError),
    /// The 179 order is invalid: the field and why.
    Order(Invalid),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Unavailable(e) => write!(f, "{e}"),
            SignError::Refused { what, frame } => write!(
                f,
                "the UKey could not {what}: {}",
                crate::ukey::frame::errors(frame).join("; ")
            ),
            SignError::NoSignature { .. } => write!(f, "the UKey answered without a signature"),
            SignError::NoCertificate => write!(f, "the UKey answered without a certificate"),
            SignError::UnreadableCertificate(e) => write!(
                f,
                "the UKey's signing certificate cannot be read ({e}), so its signatures cannot be checked"
            ),
            SignError::SelfCheck { message, .. } => write!(f, "{message}"),
            SignError::Message(e) => write!(f, "{e}"),
            SignError::Order(e) => write!(f, "invalid customs 179 data: {e}"),
        }
    }
}

impl std::error::Error for SignError {}
