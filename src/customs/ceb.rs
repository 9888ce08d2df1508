//! CEB XML-DSig: puts an enveloped `ds:Signature` made by the UKey into a CEB
//! customs message (CEB311 orders, CEB621 inventories, …), the way standard verifiers check it:
//! DigestValue = SHA-1 of the document's inclusive C14N without comments, SignedInfo
//! canonicalised in its place and signed by the card, KeyName the certificate number, the signing
//! certificate in X509Data. The signature is the root's last child, with no whitespace added, so
//! that removing it (the enveloped-signature transform) gives back exactly what was digested.

use super::c14n;
use super::cardsig;
use super::cert::{Algorithm, CertInfo};
use crate::config::{SignatureMethod, Sm2Form};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
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

/// What `verify` found in a signed message, part by part.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    pub algorithm: Option<Algorithm>,
    /// The KeyName (the certificate number).
    pub key_name: String,
    pub digest: bool,
    pub signature: bool,
    pub certificate_valid_now: bool,
    pub key_name_matches: bool,
    pub errors: Vec<String>,
}

impl Verification {
    pub fn valid(&self) -> bool {
        self.digest && self.signature && self.certificate_valid_now && self.key_name_matches
    }
}

/// Checks a signed CEB message the way customs does, and says which part fails: the
/// DigestValue against the message without its signature, the SignatureValue over the
/// canonical SignedInfo with the certificate's key, the certificate's validity at `now_s`, and
/// whether the KeyName names the certificate (its serial, or `card`'s certificate number when
/// the certificate is that card's). Bad XML is an error; a missing part is a failed check.
pub fn verify(
    xml: &str,
    now_s: u64,
    card: Option<(&str, &[u8])>,
) -> Result<Verification, CebError> {
    let text = c14n::normalise_line_ends(xml.trim_start_matches('\u{feff}'));
    let doc = c14n::parse(&text).map_err(CebError::NotAccepted)?;
    let mut v = Verification::default();
    let Some((node_index, element_index)) = signature_child(&doc) else {
        v.errors
            .push("no ds:Signature element among the root's children".into());
        return Ok(v);
    };
    let c14n::Node::Element(sig) = &doc.root.children[node_index] else {
        return Err(CebError::Internal("signature node moved"));
    };
    let parts = SignatureParts::of(sig);
    v.key_name = parts.get("KeyName");

    // the digest: the document without its signature (the enveloped-signature transform)
    let mut unsigned = doc.clone();
    unsigned.root.children.remove(node_index);
    let digest_method = parts.attr("DigestMethod");
    match digest_by(&digest_method, c14n::canonicalize(&unsigned).as_bytes()) {
        Some(d) if same_base64(&d, &parts.get("DigestValue")) => v.digest = true,
        Some(_) => v.errors.push(
            "DigestValue does not match the message: it was changed after signing, or digested in another form".into(),
        ),
        None => v.errors.push(format!("unknown DigestMethod {digest_method:?}")),
    }

    let cert = match CertInfo::from_base64(&parts.get("X509Certificate")) {
        Ok(c) => Some(c),
        Err(e) => {
            v.errors.push(format!("X509Certificate: {e}"));
            None
        }
    };
    if let Some(cert) = &cert {
        v.algorithm = Some(cert.algorithm);
        let method = parts.attr("SignatureMethod");
        let method_fits = match cert.algorithm {
            Algorithm::Rsa => method == RSA_SHA1,
            Algorithm::Sm2 => method == SM2_SM3 || method == CHINAPORT_SM2_SM3,
        };
        if !method_fits {
            v.errors.push(format!(
                "SignatureMethod {method:?} does not fit the certificate's {} key",
                cert.algorithm.name()
            ));
        }
        let info_index = element_children(sig).position(|e| local(&e.name) == "SignedInfo");
        match info_index.and_then(|i| c14n::canonicalize_subtree(&doc, &[element_index, i])) {
            Some(info) => {
                match cardsig::verify(cert, info.as_bytes(), &parts.get("SignatureValue")) {
                    Ok(()) => v.signature = method_fits,
                    Err(e) => v.errors.push(format!("SignatureValue: {e}")),
                }
            }
            None => v.errors.push("no SignedInfo in the signature".into()),
        }
        v.certificate_valid_now = cert.valid_at(now_s);
        if !v.certificate_valid_now {
            v.errors.push(format!(
                "the certificate is not valid now (valid from {} to {}, Unix seconds)",
                cert.not_before, cert.not_after
            ));
        }
        let card_named = card.is_some_and(|(no, der)| {
            no.eq_ignore_ascii_case(v.key_name.trim()) && der == cert.der.as_slice()
        });
        v.key_name_matches = cert.is_named(&v.key_name) || card_named;
        if !v.key_name_matches {
            v.errors.push(format!(
                "KeyName {:?} does not name the certificate (serial {})",
                v.key_name, cert.serial_hex
            ));
        }
    }
    Ok(v)
}

/// The (node index, element index) of the root's `ds:Signature` child.
fn signature_child(doc: &c14n::Document) -> Option<(usize, usize)> {
    let mut element_index = 0;
    for (i, node) in doc.root.children.iter().enumerate() {
        if let c14n::Node::Element(e) = node {
            let prefix = e.name.split_once(':').map(|(p, _)| p).unwrap_or("");
            let declared =
                e.ns.iter()
                    .chain(doc.root.ns.iter())
                    .find(|(p, _)| p == prefix)
                    .map(|(_, uri)| uri.as_str());
            if local(&e.name) == "Signature" && declared == Some(DSIG_NS) {
                return Some((i, element_index));
            }
            element_index += 1;
        }
    }
    None
}

fn local(name: &str) -> &str {
    name.split_once(':').map(|(_, l)| l).unwrap_or(name)
}

fn element_children(e: &c14n::Element) -> impl Iterator<Item = &c14n::Element> {
    e.children.iter().filter_map(|n| match n {
        c14n::Node::Element(e) => Some(e),
        _ => None,
    })
}

fn same_base64(a: &str, b: &str) -> bool {
    let clean = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    match (B64.decode(clean(a)), B64.decode(clean(b))) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The text and `Algorithm` attributes of a signature's elements, by local name (first wins).
struct SignatureParts {
    text: BTreeMap<String, String>,
    algorithm: BTreeMap<String, String>,
}

impl SignatureParts {
    fn of(sig: &c14n::Element) -> SignatureParts {
        let mut parts = SignatureParts {
            text: BTreeMap::new(),
            algorithm: BTreeMap::new(),
        };
        parts.walk(sig);
        parts
    }

    fn walk(&mut self, e: &c14n::Element) {
        let name = local(&e.name).to_string();
        let text: String = e
            .children
            .iter()
            .filter_map(|n| match n {
                c14n::Node::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        self.text.entry(name.clone()).or_insert(text);
        if let Some((_, a)) = e.attrs.iter().find(|(k, _)| k == "Algorithm") {
            self.algorithm.entry(name).or_insert_with(|| a.clone());
        }
        for child in element_children(e) {
            self.walk(child);
        }
    }

    fn get(&self, name: &str) -> String {
        self.text
            .get(name)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    fn attr(&self, name: &str) -> String {
        self.algorithm.get(name).cloned().unwrap_or_default()
    }
}

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
