//! CEB XML-DSig: puts an enveloped `ds:Signature` made by the UKey into a CEB
//! customs message (CEB311 orders, CEB621 inventories, …), the way standard verifiers check it:
//! DigestValue = SHA-1 of the document's inclusive C14N without comments, SignedInfo
//! canonicalised in its place and signed by the card, KeyName the certificate number, the signing
//! certificate in X509Data. The signature is the root's last child, with no whitespace added, so
//! that removing it (the enveloped-signature transform) gives back exactly what was digested.

use super::c14n;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha1::{Digest, Sha1};
use std::fmt;

const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const C14N_URI: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const SM2_SM3: &str = "http://www.w3.org/2000/09/xmldsig#sm2-sm3";
/// The SM2-with-SM3 signature algorithm OID 1.2.156.10197.1.501, DER-encoded.
const SM3_WITH_SM2_OID: [u8; 10] = [0x06, 0x08, 0x2A, 0x81, 0x1C, 0xCF, 0x55, 0x01, 0x83, 0x75];

/// The signature method for a certificate (base64 DER): SM2 certificates sign with sm2-sm3.
pub fn method_for(cert_b64: &str, forced: &str) -> &'static str {
    match forced {
        "rsa-sha1" => return RSA_SHA1,
        "sm2-sm3" => return SM2_SM3,
        _ => {}
    }
    let der = B64.decode(cert_b64).unwrap_or_default();
    if der
        .windows(SM3_WITH_SM2_OID.len())
        .any(|w| w == SM3_WITH_SM2_OID)
    {
        SM2_SM3
    } else {
        RSA_SHA1
    }
}

fn signed_info(method: &str, digest: &str) -> String {
    format!(
        "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{C14N_URI}\"></ds:CanonicalizationMethod>\
<ds:SignatureMethod Algorithm=\"{method}\"></ds:SignatureMethod><ds:Reference URI=\"\"><ds:Transforms>\
<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"></ds:Transform></ds:Transforms>\
<ds:DigestMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#sha1\"></ds:DigestMethod>\
<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
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

/// A parsed message ready to be signed: its text (line ends LF), its tree and its digest.
pub struct Unsigned {
    text: String,
    doc: c14n::Document,
    /// Base64 SHA-1 of the document's inclusive C14N.
    pub digest: String,
}

impl Unsigned {
    /// Parses the message, refuses one already signed, and computes its digest.
    pub fn prepare(xml: &str) -> Result<Unsigned, CebError> {
        let text = c14n::normalise_line_ends(xml);
        let doc = c14n::parse(&text).map_err(CebError::NotAccepted)?;
        if c14n::contains_element(&doc, DSIG_NS, "Signature") {
            return Err(CebError::AlreadySigned);
        }
        let digest = B64.encode(Sha1::digest(c14n::canonicalize(&doc).as_bytes()));
        Ok(Unsigned { text, doc, digest })
    }

    /// SignedInfo for `method`, canonicalised in its place (inherited namespaces come with it):
    /// the exact string the card signs.
    pub fn canonical_signed_info(&self, method: &str) -> Result<String, CebError> {
        let info = signed_info(method, &self.digest);
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
    pub fn signed(&self, method: &str, value: &str, cert_no: &str, cert: &str) -> String {
        let info = signed_info(method, &self.digest);
        insert(
            &self.text,
            &self.doc,
            &signature(&info, value, cert_no, cert),
        )
    }
}

/// A certificate as the card hands it out, PEM armour and line breaks removed.
pub fn bare_base64(cert: &str) -> String {
    cert.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_follows_the_certificate() {
        let rsa = B64.encode([
            0x30, 0x82, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x05,
        ]);
        let sm2 = B64.encode([
            0x30, 0x82, 0x06, 0x08, 0x2A, 0x81, 0x1C, 0xCF, 0x55, 0x01, 0x83, 0x75,
        ]);
        assert_eq!(method_for(&rsa, "auto"), RSA_SHA1);
        assert_eq!(method_for(&sm2, "auto"), SM2_SM3);
        assert_eq!(method_for(&rsa, "sm2-sm3"), SM2_SM3);
    }
}
