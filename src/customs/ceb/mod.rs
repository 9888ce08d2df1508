//! CEB XML-DSig: puts an enveloped `ds:Signature` made by the UKey into a CEB
//! customs message (CEB311 orders, CEB621 inventories, …), the way standard verifiers check it:
//! DigestValue = SHA-1 of the document's inclusive C14N without comments, SignedInfo
//! canonicalised in its place and signed by the card, KeyName the certificate number, the signing
//! certificate in X509Data. The signature is the root's last child, with no whitespace added, so
//! that removing it (the enveloped-signature transform) gives back exactly what was digested.
//! Checking a signed message is `verify.rs`.

use super::c14n;
use super::cert::Algorithm;
use crate::config::{SignatureMethod, Sm2Form};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha1::{Digest, Sha1};
use std::fmt;

const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const C14N_URI: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const SM2_SM3: &str = "http://www.w3.org/2000/09/xmldsig#sm2-sm3";
pub const SHA1_DIGEST: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
/// The form some ports ask for with SM2 cards: its own namespace, and an SM3 DigestValue.
pub const CHINAPORT_SM2_SM3: &str = "http://www.chinaport.gov.cn/2022/04/xmldsig#sm2-sm3";
pub const CHINAPORT_SM3_DIGEST: &str = "http://www.chinaport.gov.cn/2022/04/xmldsig#sm3";

/// How a message is signed: the SignatureMethod and DigestMethod it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form {
    pub signature_method: &'static str,
    pub digest_method: &'static str,
}

impl Form {
    pub const RSA: Form = Form {
        signature_method: RSA_SHA1,
        digest_method: SHA1_DIGEST,
    };
    /// What customs expects from SM2 cards: sm2-sm3 in the W3C namespace, a SHA-1 digest.
    pub const SM2: Form = Form {
        signature_method: SM2_SM3,
        digest_method: SHA1_DIGEST,
    };
    pub const SM2_CHINAPORT_2022: Form = Form {
        signature_method: CHINAPORT_SM2_SM3,
        digest_method: CHINAPORT_SM3_DIGEST,
    };

    /// The form for a card (`algorithm` from its certificate; `None` when unreadable):
    /// `ceb.signature_method` (`auto`, `rsa-sha1`, `sm2-sm3`) and `ceb.sm2_form` (`w3c`,
    /// `chinaport-2022`).
    pub fn choose(
        algorithm: Option<Algorithm>,
        forced: SignatureMethod,
        sm2_form: Sm2Form,
    ) -> Form {
        let sm2 = match forced {
            SignatureMethod::RsaSha1 => false,
            SignatureMethod::Sm2Sm3 => true,
            SignatureMethod::Auto => algorithm == Some(Algorithm::Sm2),
        };
        match (sm2, sm2_form) {
            (false, _) => Form::RSA,
            (true, Sm2Form::Chinaport2022) => Form::SM2_CHINAPORT_2022,
            (true, Sm2Form::W3c) => Form::SM2,
        }
    }
}

/// Base64 digest of `data` by a DigestMethod URI; `None` for one not known.
pub fn digest_by(method: &str, data: &[u8]) -> Option<String> {
    if method == SHA1_DIGEST {
        Some(B64.encode(Sha1::digest(data)))
    } else if method.ends_with("#sm3") {
        Some(B64.encode(sm3::Sm3::digest(data)))
    } else if method == "http://www.w3.org/2001/04/xmlenc#sha256" {
        Some(B64.encode(sha2::Sha256::digest(data)))
    } else {
        None
    }
}

fn signed_info(form: &Form, digest: &str) -> String {
    format!(
        "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{C14N_URI}\"></ds:CanonicalizationMethod>\
<ds:SignatureMethod Algorithm=\"{}\"></ds:SignatureMethod><ds:Reference URI=\"\"><ds:Transforms>\
<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"></ds:Transform></ds:Transforms>\
<ds:DigestMethod Algorithm=\"{}\"></ds:DigestMethod>\
<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>",
        form.signature_method, form.digest_method
    )
}

fn signature(signed_info: &str, value: &str, cert_no: &str, cert: &str) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info}<ds:SignatureValue>{}</ds:SignatureValue>\
<ds:KeyInfo><ds:KeyName>{}</ds:KeyName><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate>\
</ds:X509Data></ds:KeyInfo></ds:Signature>",
        esc(value),
        esc(cert_no),
        esc(cert)
    )
}

/// The document with `element` inserted as the root's last child.
fn insert(text: &str, doc: &c14n::Document, element: &str) -> String {
    let at = doc.root.end_tag_at;
    if doc.root.empty {
        // <root .../> becomes <root ...>SIG</root>
        format!(
            "{}>{element}</{}>{}",
            &text[..at],
            doc.root.name,
            &text[at + 2..]
        )
    } else {
        format!("{}{element}{}", &text[..at], &text[at..])
    }
}

/// Why a message cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CebError {
    /// Not well-formed, or refused (DOCTYPE, …): the position and the reason.
    NotAccepted(c14n::XmlError),
    /// It carries a `ds:Signature` already.
    AlreadySigned,
    /// SignedInfo could not be canonicalised in place (a bug, not the caller's fault).
    Internal(&'static str),
}

impl fmt::Display for CebError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CebError::NotAccepted(e) => write!(f, "the message is not accepted: {e}"),
            CebError::AlreadySigned => {
                write!(
                    f,
                    "the message already has a ds:Signature; send it unsigned"
                )
            }
            CebError::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}

/// A parsed message ready to be signed: its text (line ends LF) and its tree.
pub struct Unsigned {
    text: String,
    doc: c14n::Document,
}

impl Unsigned {
    /// Parses the message and refuses one already signed.
    pub fn prepare(xml: &str) -> Result<Unsigned, CebError> {
        let text = c14n::normalise_line_ends(xml);
        let doc = c14n::parse(&text).map_err(CebError::NotAccepted)?;
        if c14n::contains_element(&doc, DSIG_NS, "Signature") {
            return Err(CebError::AlreadySigned);
        }
        Ok(Unsigned { text, doc })
    }

    /// The DigestValue: the document's inclusive C14N, digested as `form` says.
    pub fn digest(&self, form: &Form) -> String {
        digest_by(form.digest_method, c14n::canonicalize(&self.doc).as_bytes()).unwrap_or_default()
    }

    /// SignedInfo for `form`, canonicalised in its place (inherited namespaces come with it):
    /// the exact string the card signs.
    pub fn canonical_signed_info(&self, form: &Form, digest: &str) -> Result<String, CebError> {
        let info = signed_info(form, digest);
        let draft = insert(&self.text, &self.doc, &signature(&info, "", "", ""));
        c14n::parse(&draft)
            .ok()
            .and_then(|d| {
                let last = d
                    .root
                    .children
                    .iter()
                    .filter(|n| matches!(n, c14n::Node::Element(_)))
                    .count();
                c14n::canonicalize_subtree(&d, &[last.checked_sub(1)?, 0])
            })
            .ok_or(CebError::Internal("could not canonicalise SignedInfo"))
    }

    /// The signed message: the signature as the root's last child, nothing else changed.
    pub fn signed(
        &self,
        form: &Form,
        digest: &str,
        value: &str,
        cert_no: &str,
        cert: &str,
    ) -> String {
        let info = signed_info(form, digest);
        insert(
            &self.text,
            &self.doc,
            &signature(&info, value, cert_no, cert),
        )
    }
}

mod verify;
pub use verify::{Signer, Verification, verify};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_follows_the_card_and_the_options() {
        assert_eq!(
            Form::choose(Some(Algorithm::Rsa), SignatureMethod::Auto, Sm2Form::W3c),
            Form::RSA
        );
        assert_eq!(
            Form::choose(Some(Algorithm::Sm2), SignatureMethod::Auto, Sm2Form::W3c),
            Form::SM2
        );
        assert_eq!(
            Form::choose(
                Some(Algorithm::Sm2),
                SignatureMethod::Auto,
                Sm2Form::Chinaport2022
            ),
            Form::SM2_CHINAPORT_2022
        );
        assert_eq!(
            Form::choose(Some(Algorithm::Rsa), SignatureMethod::Sm2Sm3, Sm2Form::W3c),
            Form::SM2
        );
        assert_eq!(
            Form::choose(Some(Algorithm::Sm2), SignatureMethod::RsaSha1, Sm2Form::W3c),
            Form::RSA
        );
        assert_eq!(
            Form::SM2.digest_method,
            SHA1_DIGEST,
            "SM2 cards keep a SHA-1 DigestValue"
        );
    }
}
