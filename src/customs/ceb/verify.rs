//! Checking a signed CEB message the way customs does, part by part, so that a "签名错误"
//! receipt can be traced: the one `ds:Signature` in its place and layout (no signature wrapping,
//! finding M5), its Reference resolving to the whole message, the DigestValue, the
//! SignatureValue with the embedded certificate, its validity and KeyName, and whether it is
//! this card's.

use super::{C14N_URI, CHINAPORT_SM2_SM3, CebError, DSIG_NS, RSA_SHA1, SM2_SM3, digest_by};
use crate::customs::c14n;
use crate::customs::cardsig;
use crate::customs::cert::{Algorithm, CertInfo};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// The certificate that signed a message, as the verifier names it.
#[derive(Debug, Clone, Default)]
pub struct Signer {
    /// The serial number in lower-case hex (what cards call the certificate number).
    pub serial_hex: String,
    pub subject: String,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
}

/// What `verify` found in a signed message, part by part.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    pub algorithm: Option<Algorithm>,
    /// The KeyName (the certificate number).
    pub key_name: String,
    /// The embedded certificate, when it could be read.
    pub signer: Option<Signer>,
    pub digest: bool,
    pub signature: bool,
    pub certificate_valid_now: bool,
    pub key_name_matches: bool,
    /// Whether the embedded certificate is this proxy's card's signing certificate; `None` when
    /// the card's certificate is not known (no card connected).
    pub this_card: Option<bool>,
    pub errors: Vec<String>,
}

impl Verification {
    /// Valid: the digest covers the whole message, the signature verifies with the embedded
    /// certificate, which is valid now, named by the KeyName, and is this card's. An embedded
    /// certificate alone proves nothing (anyone can make one), hence the last condition.
    pub fn valid(&self) -> bool {
        self.digest
            && self.signature
            && self.certificate_valid_now
            && self.key_name_matches
            && self.this_card == Some(true)
    }
}

const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// The parts of a `ds:Signature` laid out as XML-DSig orders them (SignedInfo, SignatureValue,
/// KeyInfo; in SignedInfo one Reference), each taken from its one place, never from anywhere
/// else in the subtree (finding M5: a `DigestValue` smuggled into an `Object` was used).
struct Parts {
    signed_info_index: usize,
    canonicalization: String,
    signature_method: String,
    reference_uri: String,
    transforms: Vec<String>,
    digest_method: String,
    digest_value: String,
    signature_value: String,
    key_name: String,
    certificate: String,
}

type Scope = Vec<(String, String)>;

/// The namespace URI of `el`'s prefix, with `scope` the declarations of its ancestors.
fn namespace_of(el: &c14n::Element, scope: &Scope) -> Option<String> {
    let prefix = el.name.split_once(':').map(|(p, _)| p).unwrap_or("");
    el.ns
        .iter()
        .rev()
        .chain(scope.iter().rev())
        .find(|(p, _)| p == prefix)
        .map(|(_, uri)| uri.clone())
}

fn extended(scope: &Scope, el: &c14n::Element) -> Scope {
    let mut s = scope.clone();
    s.extend(el.ns.iter().cloned());
    s
}

/// The element children of `el`, each with its scope, all in the XML-DSig namespace.
fn dsig_children<'a>(
    el: &'a c14n::Element,
    scope: &Scope,
) -> Result<Vec<(&'a c14n::Element, Scope)>, String> {
    let inner = extended(scope, el);
    let mut out = Vec::new();
    for child in element_children(el) {
        if namespace_of(child, &inner).as_deref() != Some(DSIG_NS) {
            return Err(format!(
                "<{}> inside ds:{} is not an XML-DSig element",
                child.name,
                local(&el.name)
            ));
        }
        out.push((child, inner.clone()));
    }
    Ok(out)
}

/// Checks that the children of `el` are exactly `names`, in that order.
fn expect_layout(
    el: &c14n::Element,
    children: &[(&c14n::Element, Scope)],
    names: &[&str],
) -> Result<(), String> {
    let found: Vec<&str> = children.iter().map(|(c, _)| local(&c.name)).collect();
    if found == names {
        return Ok(());
    }
    Err(format!(
        "ds:{} must hold exactly {} in that order, found {}",
        local(&el.name),
        names.join(", "),
        if found.is_empty() {
            "nothing".to_string()
        } else {
            found.join(", ")
        }
    ))
}

fn text_of(e: &c14n::Element) -> String {
    e.children
        .iter()
        .filter_map(|n| match n {
            c14n::Node::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect::<String>()
        .trim()
        .to_string()
}

fn algorithm_of(e: &c14n::Element) -> String {
    e.attrs
        .iter()
        .find(|(k, _)| k == "Algorithm")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

impl Parts {
    fn of(sig: &c14n::Element, scope: &Scope) -> Result<Parts, String> {
        let top = dsig_children(sig, scope)?;
        expect_layout(sig, &top, &["SignedInfo", "SignatureValue", "KeyInfo"])?;
        let (info, info_scope) = &top[0];
        let in_info = dsig_children(info, info_scope)?;
        expect_layout(
            info,
            &in_info,
            &["CanonicalizationMethod", "SignatureMethod", "Reference"],
        )?;
        let (reference, reference_scope) = &in_info[2];
        let in_reference = dsig_children(reference, reference_scope)?;
        let (transforms, digest_method, digest_value) = match in_reference.as_slice() {
            [(t, t_scope), (m, _), (d, _)] if local(&t.name) == "Transforms" => {
                let list = dsig_children(t, t_scope)?;
                if let Some((odd, _)) = list.iter().find(|(e, _)| local(&e.name) != "Transform") {
                    return Err(format!("<{}> inside ds:Transforms", odd.name));
                }
                (list.iter().map(|(e, _)| algorithm_of(e)).collect(), *m, *d)
            }
            [(m, _), (d, _)] => (Vec::new(), *m, *d),
            _ => return Err(reference_layout(&in_reference)),
        };
        if [local(&digest_method.name), local(&digest_value.name)]
            != ["DigestMethod", "DigestValue"]
        {
            return Err(reference_layout(&in_reference));
        }
        let (key_info, key_scope) = &top[2];
        let in_key = dsig_children(key_info, key_scope)?;
        let mut key_name = None;
        let mut certificate = None;
        for (child, child_scope) in &in_key {
            match local(&child.name) {
                "KeyName" if key_name.is_none() => key_name = Some(text_of(child)),
                "X509Data" => {
                    for (c, _) in dsig_children(child, child_scope)? {
                        if local(&c.name) != "X509Certificate" {
                            continue;
                        }
                        if certificate.is_some() {
                            return Err("ds:KeyInfo holds more than one ds:X509Certificate; \
                                 a CEB signature carries only the signing certificate"
                                .into());
                        }
                        certificate = Some(text_of(c));
                    }
                }
                other => {
                    return Err(format!(
                        "ds:KeyInfo holds an unexpected or repeated ds:{other}"
                    ));
                }
            }
        }
        Ok(Parts {
            signed_info_index: 0,
            canonicalization: algorithm_of(in_info[0].0),
            signature_method: algorithm_of(in_info[1].0),
            reference_uri: reference
                .attrs
                .iter()
                .find(|(k, _)| k == "URI")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "(none)".into()),
            transforms,
            digest_method: algorithm_of(digest_method),
            digest_value: text_of(digest_value),
            signature_value: text_of(top[1].0),
            key_name: key_name.unwrap_or_default(),
            certificate: certificate.unwrap_or_default(),
        })
    }
}

fn reference_layout(children: &[(&c14n::Element, Scope)]) -> String {
    let found: Vec<&str> = children.iter().map(|(c, _)| local(&c.name)).collect();
    format!(
        "ds:Reference must hold ds:Transforms (optional), ds:DigestMethod, ds:DigestValue in that order, found {}",
        if found.is_empty() {
            "nothing".to_string()
        } else {
            found.join(", ")
        }
    )
}

/// The element a same-document Reference URI names: `""` the whole document (its root), `#id`
/// the one element whose `Id`, `ID` or `id` attribute is `id`. Two elements with that Id, or
/// none, is an error (a second one is how wrapped content would be slipped in).
fn resolve<'a>(doc: &'a c14n::Document, uri: &str) -> Result<&'a c14n::Element, String> {
    if uri.is_empty() {
        return Ok(&doc.root);
    }
    let Some(id) = uri.strip_prefix('#') else {
        return Err(format!(
            "Reference URI {uri:?} is not in this document; a CEB signature references \"\" (the whole message)"
        ));
    };
    let named: Vec<&c14n::Element> = c14n::all_elements(doc)
        .into_iter()
        .filter(|e| {
            e.attrs
                .iter()
                .any(|(k, v)| matches!(k.as_str(), "Id" | "ID" | "id") && v == id)
        })
        .collect();
    match named.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("Reference URI {uri:?} names no element")),
        many => Err(format!(
            "Reference URI {uri:?} names {} elements: an Id must be unique",
            many.len()
        )),
    }
}

/// Checks a signed CEB message the way customs does, and says which part fails: its one
/// `ds:Signature`, a child of the root, laid out as XML-DSig says; its Reference resolving to
/// the whole message; the DigestValue against the message without its signature; the
/// SignatureValue over the canonical SignedInfo with the embedded certificate's key; the
/// certificate's validity at `now_s`; whether the KeyName names it; and whether it is `card`'s
/// (the connected card's certificate number and DER). Bad XML is an error; a missing or
/// misplaced part is a failed check.
pub fn verify(
    xml: &str,
    now_s: u64,
    card: Option<(&str, &[u8])>,
) -> Result<Verification, CebError> {
    let text = c14n::normalise_line_ends(xml.trim_start_matches('\u{feff}'));
    let doc = c14n::parse(&text).map_err(CebError::NotAccepted)?;
    let mut v = Verification::default();
    let all = c14n::find_elements(&doc, DSIG_NS, "Signature");
    let Some((node_index, element_index)) = signature_child(&doc) else {
        v.errors.push(if all.is_empty() {
            "no ds:Signature element in the message".into()
        } else {
            "the ds:Signature is not a child of the message's root element (where CEB puts it)"
                .into()
        });
        return Ok(v);
    };
    if all.len() > 1 {
        v.errors.push(format!(
            "the message carries {} ds:Signature elements; a CEB message has exactly one",
            all.len()
        ));
        return Ok(v);
    }
    let c14n::Node::Element(sig) = &doc.root.children[node_index] else {
        return Err(CebError::Internal("signature node moved"));
    };
    let parts = match Parts::of(sig, &doc.root.ns) {
        Ok(p) => p,
        Err(e) => {
            v.errors.push(format!("the signature's layout: {e}"));
            return Ok(v);
        }
    };
    v.key_name = parts.key_name.clone();
    check_digest(&doc, sig, &parts, &mut v);
    check_signature(&doc, element_index, &parts, now_s, card, &mut v);
    Ok(v)
}

/// The DigestValue must be the digest of exactly what the Reference names (the whole message),
/// after exactly the transforms CEB uses (enveloped-signature, optionally inclusive C14N).
fn check_digest(doc: &c14n::Document, sig: &c14n::Element, parts: &Parts, v: &mut Verification) {
    let target = match resolve(doc, &parts.reference_uri) {
        Ok(t) => t,
        Err(e) => return v.errors.push(e),
    };
    if !std::ptr::eq(target, &doc.root) {
        return v.errors.push(format!(
            "the signature covers only <{}>, not the whole message",
            target.name
        ));
    }
    let unknown: Vec<&String> = parts
        .transforms
        .iter()
        .filter(|t| t.as_str() != ENVELOPED && t.as_str() != C14N_URI)
        .collect();
    if !unknown.is_empty() {
        return v.errors.push(format!(
            "Transform {unknown:?} is not one CEB uses (enveloped-signature, C14N 1.0)"
        ));
    }
    if parts.transforms.first().map(String::as_str) != Some(ENVELOPED) {
        return v.errors.push(
            "the Reference lacks the enveloped-signature transform, so its digest would cover the signature itself".into(),
        );
    }
    // "" is the document without comments; "#id" of the root is the root's subtree
    let canonical = if parts.reference_uri.is_empty() {
        c14n::canonicalize_without(doc, Some(sig))
    } else {
        match c14n::canonicalize_subtree_without(doc, &[], Some(sig)) {
            Some(c) => c,
            None => return v.errors.push("the root could not be canonicalised".into()),
        }
    };
    match digest_by(&parts.digest_method, canonical.as_bytes()) {
        Some(d) if same_base64(&d, &parts.digest_value) => v.digest = true,
        Some(_) => v.errors.push(
            "DigestValue does not match the message: it was changed after signing, or digested in another form".into(),
        ),
        None => v
            .errors
            .push(format!("unknown DigestMethod {:?}", parts.digest_method)),
    }
}

fn check_signature(
    doc: &c14n::Document,
    element_index: usize,
    parts: &Parts,
    now_s: u64,
    card: Option<(&str, &[u8])>,
    v: &mut Verification,
) {
    let cert = match CertInfo::from_base64(&parts.certificate) {
        Ok(c) => c,
        Err(e) => return v.errors.push(format!("X509Certificate: {e}")),
    };
    v.algorithm = Some(cert.algorithm);
    v.signer = Some(Signer {
        serial_hex: cert.serial_hex.clone(),
        subject: cert.subject.clone(),
        issuer: cert.issuer.clone(),
        not_before: cert.not_before,
        not_after: cert.not_after,
    });
    let method = &parts.signature_method;
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
    let canonical_ok = parts.canonicalization == C14N_URI;
    if !canonical_ok {
        v.errors.push(format!(
            "CanonicalizationMethod {:?} is not C14N 1.0 ({C14N_URI})",
            parts.canonicalization
        ));
    }
    match c14n::canonicalize_subtree(doc, &[element_index, parts.signed_info_index]) {
        Some(info) => match cardsig::verify(&cert, info.as_bytes(), &parts.signature_value) {
            Ok(()) => v.signature = method_fits && canonical_ok,
            Err(e) => v.errors.push(format!("SignatureValue: {e}")),
        },
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
    v.this_card = card.map(|(_, der)| der == cert.der.as_slice());
    match (v.this_card, card) {
        (Some(false), Some((no, _))) => v.errors.push(format!(
            "signed by certificate {} ({}), not by this proxy's card {no}",
            cert.serial_hex, cert.subject
        )),
        (None, _) => v.errors.push(
            "the card's certificate is not known (is the UKey connected?), so whether this card signed it cannot be told".into(),
        ),
        _ => {}
    }
}

/// The (node index, element index) of the root's `ds:Signature` child.
fn signature_child(doc: &c14n::Document) -> Option<(usize, usize)> {
    let mut element_index = 0;
    for (i, node) in doc.root.children.iter().enumerate() {
        if let c14n::Node::Element(e) = node {
            if local(&e.name) == "Signature"
                && namespace_of(e, &doc.root.ns).as_deref() == Some(DSIG_NS)
            {
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
