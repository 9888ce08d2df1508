//! RFC 9421 HTTP Message Signatures (with RFC 9530 `Content-Digest`), as eBay's API signing uses
//! them: `Signature-Input` / `Signature`, algorithms `ed25519` and `hmac-sha256`, `keyid` naming
//! the client. The signature base is built exactly as §2.5 says: one line per covered component,
//! `@signature-params` last, LF between lines and none at the end; identifiers and parameters are
//! serialised as Structured Fields.
//!
//! Policy: the covered components must include `@method`, `@path`, `@authority` and, with a body,
//! `content-digest` (verified against the body); `created` is required and within the window,
//! `expires` is honoured. A `nonce` is accepted once per client; a signature without one is
//! remembered by its signature base (what was signed), so the identical request is accepted
//! once too (M1). Either is kept until `created` leaves the window.

use super::replay::ReplayCache;
use super::secret::{MacAlg, Secret};
use super::{
    AuthError, Authenticated, ClientKey, Clients, RequestParts, constant_time_eq, replay_error,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sfv::{BareItem, FieldType, InnerList, Item, ListEntry, Parameters};

/// Signature-Input / Signature values longer than this are refused before parsing.
const MAX_HEADER_LEN: usize = 8 * 1024;

/// Components every accepted signature must cover.
const REQUIRED: [&str; 3] = ["@method", "@path", "@authority"];

pub struct HttpSigScheme {
    max_skew_ms: u64,
    nonces: ReplayCache,
}

/// A parsed signature: its label, covered components, parameters, and bytes.
#[derive(Debug)]
pub struct ParsedSignature {
    pub label: String,
    pub inner: InnerList,
    pub signature: Vec<u8>,
}

fn malformed(what: &'static str, why: impl Into<String>) -> AuthError {
    AuthError::Malformed(what, why.into())
}

/// Picks the first label of `Signature-Input` that `Signature` also has.
pub fn parse_headers(signature_input: &str, signature: &str) -> Result<ParsedSignature, AuthError> {
    if signature_input.len() > MAX_HEADER_LEN || signature.len() > MAX_HEADER_LEN {
        return Err(malformed("Signature-Input", "too long"));
    }
    let inputs: sfv::Dictionary = sfv::Parser::new(signature_input)
        .parse()
        .map_err(|e| malformed("Signature-Input", e.to_string()))?;
    let sigs: sfv::Dictionary = sfv::Parser::new(signature)
        .parse()
        .map_err(|e| malformed("Signature", e.to_string()))?;
    for (label, entry) in &inputs {
        let Some(sig_entry) = sigs.get(label) else {
            continue;
        };
        let ListEntry::InnerList(inner) = entry else {
            return Err(malformed(
                "Signature-Input",
                format!("{} is not an inner list", label.as_str()),
            ));
        };
        let ListEntry::Item(sig_item) = sig_entry else {
            return Err(malformed("Signature", "not a byte sequence"));
        };
        let bytes = sig_item
            .bare_item
            .as_byte_sequence()
            .ok_or_else(|| malformed("Signature", "not a byte sequence"))?;
        return Ok(ParsedSignature {
            label: label.as_str().to_string(),
            inner: inner.clone(),
            signature: bytes.to_vec(),
        });
    }
    Err(malformed("Signature", "no label matches Signature-Input"))
}

/// The serialised component identifier, e.g. `"@query-param";name="Pet"`.
fn identifier(item: &Item) -> String {
    item.serialize()
}

fn component_name(item: &Item) -> Result<&str, AuthError> {
    match &item.bare_item {
        BareItem::String(s) => Ok(s.as_str()),
        _ => Err(malformed(
            "Signature-Input",
            "a component identifier must be a string",
        )),
    }
}

fn param_str<'a>(params: &'a Parameters, key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.as_str() == key)
        .and_then(|(_, v)| v.as_string())
        .map(|s| s.as_str())
}

fn param_int(params: &Parameters, key: &str) -> Option<i64> {
    params
        .iter()
        .find(|(k, _)| k.as_str() == key)
        .and_then(|(_, v)| v.as_integer())
        .map(i64::from)
}

/// `@authority`: the host lower-cased, the default port (80, this server speaks http) omitted.
fn authority(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    host.strip_suffix(":80").map(str::to_owned).unwrap_or(host)
}

fn derived(name: &str, item: &Item, req: &RequestParts<'_>) -> Result<String, AuthError> {
    let path = if req.path.is_empty() { "/" } else { req.path };
    Ok(match name {
        "@method" => req.method.to_string(),
        "@path" => path.to_string(),
        "@authority" => authority(req.authority),
        "@scheme" => "http".into(),
        "@target-uri" => format!("http://{}{path}{}", authority(req.authority), req.query),
        "@request-target" => format!("{path}{}", req.query),
        "@query" => {
            if req.query.is_empty() {
                "?".into()
            } else {
                req.query.to_string()
            }
        }
        "@query-param" => {
            let wanted = param_str(&item.params, "name")
                .ok_or_else(|| malformed("Signature-Input", "@query-param needs a name"))?;
            let values: Vec<&str> = req
                .query
                .trim_start_matches('?')
                .split('&')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (k == wanted).then_some(v)
                })
                .collect();
            match values.as_slice() {
                [v] => v.to_string(),
                [] => {
                    return Err(AuthError::MissingComponent(format!(
                        "query parameter {wanted}"
                    )));
                }
                _ => {
                    return Err(malformed(
                        "Signature-Input",
                        format!("query parameter {wanted} repeats"),
                    ));
                }
            }
        }
        "@status" => return Err(malformed("Signature-Input", "@status is for responses")),
        other => return Err(AuthError::Unsupported(format!("derived component {other}"))),
    })
}

fn field(name: &str, item: &Item, req: &RequestParts<'_>) -> Result<String, AuthError> {
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(malformed(
            "Signature-Input",
            format!("field names are lower case: {name}"),
        ));
    }
    for (k, _) in &item.params {
        if matches!(k.as_str(), "req" | "tr") {
            return Err(AuthError::Unsupported(format!(
                "component parameter {}",
                k.as_str()
            )));
        }
    }
    let values = req.header_values(name);
    if values.is_empty() {
        return Err(AuthError::MissingComponent(format!(
            "the {name} header (it is missing)"
        )));
    }
    let bs = item.params.iter().any(|(k, _)| k.as_str() == "bs");
    if bs {
        let wrapped: Vec<String> = values
            .iter()
            .map(|v| format!(":{}:", B64.encode(v.trim().as_bytes())))
            .collect();
        return Ok(wrapped.join(", "));
    }
    let joined = values
        .iter()
        .map(|v| v.trim())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(key) = param_str(&item.params, "key") {
        let dict: sfv::Dictionary = sfv::Parser::new(&joined).parse().map_err(|e| {
            malformed(
                "Signature-Input",
                format!("{name} is not a dictionary: {e}"),
            )
        })?;
        let member = dict
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
            .ok_or_else(|| AuthError::MissingComponent(format!("{name} member {key}")))?;
        return match member {
            ListEntry::Item(i) => Ok(i.serialize()),
            ListEntry::InnerList(il) => vec![ListEntry::InnerList(il.clone())]
                .serialize()
                .ok_or_else(|| malformed("Signature-Input", "empty member")),
        };
    }
    if item.params.iter().any(|(k, _)| k.as_str() == "sf") {
        return reserialize(&joined).ok_or_else(|| {
            malformed(
                "Signature-Input",
                format!("{name} is not a structured field"),
            )
        });
    }
    Ok(joined)
}

fn reserialize(value: &str) -> Option<String> {
    if let Ok(d) = sfv::Parser::new(value).parse::<sfv::Dictionary>() {
        return d.serialize();
    }
    if let Ok(l) = sfv::Parser::new(value).parse::<sfv::List>() {
        return l.serialize();
    }
    sfv::Parser::new(value)
        .parse::<Item>()
        .ok()
        .map(|i| i.serialize())
}

/// The signature base (RFC 9421 §2.5) for the covered components and parameters in `inner`.
pub fn signature_base(inner: &InnerList, req: &RequestParts<'_>) -> Result<String, AuthError> {
    let mut base = String::new();
    let mut seen: Vec<String> = Vec::new();
    for item in &inner.items {
        let id = identifier(item);
        if seen.contains(&id) {
            return Err(malformed(
                "Signature-Input",
                format!("{id} is listed twice"),
            ));
        }
        let name = component_name(item)?;
        let value = if name.starts_with('@') {
            derived(name, item, req)?
        } else {
            field(name, item, req)?
        };
        if value.contains('\n') || value.contains('\r') {
            return Err(malformed(
                "Signature-Input",
                format!("{id} has a line break"),
            ));
        }
        base.push_str(&id);
        base.push_str(": ");
        base.push_str(&value);
        base.push('\n');
        seen.push(id);
    }
    let params = vec![ListEntry::InnerList(inner.clone())]
        .serialize()
        .ok_or_else(|| malformed("Signature-Input", "cannot serialise the parameters"))?;
    base.push_str("\"@signature-params\": ");
    base.push_str(&params);
    if !base.is_ascii() {
        return Err(malformed(
            "Signature-Input",
            "the signature base must be ASCII",
        ));
    }
    Ok(base)
}

/// Verifies `signature` over `base` with `key`; `alg` (when given) must fit the key.
pub fn verify_signature(
    key: &ClientKey,
    alg: Option<&str>,
    base: &[u8],
    signature: &[u8],
) -> Result<(), AuthError> {
    match (key, alg) {
        (ClientKey::Ed25519(vk), None | Some("ed25519")) => {
            let sig = ed25519_dalek::Signature::from_slice(signature)
                .map_err(|_| AuthError::BadSignature)?;
            vk.verify_strict(base, &sig)
                .map_err(|_| AuthError::BadSignature)
        }
        (ClientKey::Rsa(key), Some("rsa-v1_5-sha256")) => key
            .pkcs1v15_verify::<sha2::Sha256>(base, signature)
            .map_err(|_| AuthError::BadSignature),
        (ClientKey::Rsa(key), Some("rsa-pss-sha512")) => key
            .pss_verify::<sha2::Sha512>(base, signature)
            .map_err(|_| AuthError::BadSignature),
        // `alg` is optional (RFC 9421 3.3.7); eBay's guide leaves it out and signs PKCS#1 v1.5
        (ClientKey::Rsa(key), None) => key
            .pkcs1v15_verify::<sha2::Sha256>(base, signature)
            .or_else(|_| key.pss_verify::<sha2::Sha512>(base, signature))
            .map_err(|_| AuthError::BadSignature),
        (ClientKey::Secret(secret), None | Some("hmac-sha256")) => {
            let expected = secret.mac(MacAlg::Sha256, &[base]);
            if constant_time_eq(expected.as_bytes(), signature) {
                Ok(())
            } else {
                Err(AuthError::BadSignature)
            }
        }
        (_, Some(other)) => Err(AuthError::Unsupported(format!(
            "algorithm {other} for this client's key (ed25519 for Ed25519 keys, rsa-v1_5-sha256 or rsa-pss-sha512 for RSA keys, hmac-sha256 for secrets)"
        ))),
    }
}

impl HttpSigScheme {
    /// `remembered`: nonces and signature bases kept per client
    /// (`auth.max_remembered_per_client`).
    pub fn new(max_skew_ms: u64, remembered: usize) -> HttpSigScheme {
        HttpSigScheme {
            max_skew_ms,
            nonces: ReplayCache::new(remembered),
        }
    }

    pub fn applies(req: &RequestParts<'_>) -> bool {
        req.header("signature-input").is_some() || req.header("signature").is_some()
    }

    pub fn verify(
        &self,
        req: &RequestParts<'_>,
        clients: &Clients,
        now_ms: u64,
    ) -> Result<Authenticated, AuthError> {
        let input = req
            .header("signature-input")
            .ok_or(AuthError::MissingHeader("Signature-Input"))?;
        let signature = req
            .header("signature")
            .ok_or(AuthError::MissingHeader("Signature"))?;
        let parsed = parse_headers(input, signature)?;
        let params = &parsed.inner.params;
        // what must be covered
        let covered: Vec<String> = parsed
            .inner
            .items
            .iter()
            .filter_map(|i| component_name(i).ok().map(str::to_owned))
            .collect();
        for required in REQUIRED {
            if !covered.iter().any(|c| c == required) {
                return Err(AuthError::MissingComponent(required.into()));
            }
        }
        let has_digest = covered.iter().any(|c| c == "content-digest");
        if !req.body.is_empty() && !has_digest {
            return Err(AuthError::MissingComponent(
                "content-digest (the request has a body)".into(),
            ));
        }
        // time
        let created = param_int(params, "created")
            .ok_or_else(|| malformed("Signature-Input", "created is required"))?;
        let created_ms = i128::from(created) * 1000;
        let skew_ms = created_ms - i128::from(now_ms);
        // created has whole seconds: allow the second it was truncated from
        if skew_ms.unsigned_abs() > u128::from(self.max_skew_ms) + 1000 {
            return Err(AuthError::OutsideWindow {
                skew_ms,
                max_skew_ms: self.max_skew_ms,
            });
        }
        if let Some(expires) = param_int(params, "expires")
            && i128::from(expires) * 1000 < i128::from(now_ms)
        {
            return Err(AuthError::Expired);
        }
        // who
        let keyid = param_str(params, "keyid");
        let (client, key) = match keyid {
            Some(id) => clients
                .iter()
                .find(|(c, _)| c == id)
                .ok_or_else(|| AuthError::UnknownClient(id.to_string()))?,
            None => match clients.as_slice() {
                [only] => only,
                _ => {
                    return Err(malformed(
                        "Signature-Input",
                        "keyid is required (several clients)",
                    ));
                }
            },
        };
        let base = signature_base(&parsed.inner, req)?;
        verify_signature(
            key,
            param_str(params, "alg"),
            base.as_bytes(),
            &parsed.signature,
        )?;
        if has_digest {
            let header = req
                .header("content-digest")
                .ok_or(AuthError::MissingHeader("Content-Digest"))?;
            super::digest::verify(header, req.body)?;
        }
        // live while `created` is in the window; the base (not the signature bytes) so that a
        // re-encoded or malleated signature of the same request is the same entry
        let until = (i128::from(created) * 1000 + i128::from(self.max_skew_ms) + 1000)
            .clamp(0, i128::from(u64::MAX)) as u64;
        let remembered: [&[u8]; 2] = match param_str(params, "nonce") {
            Some(nonce) => [b"nonce", nonce.as_bytes()],
            None => [b"base", base.as_bytes()],
        };
        self.nonces
            .remember(client, &[&remembered], now_ms, until)
            .map_err(replay_error)?;
        Ok(Authenticated::client(client.clone()))
    }
}

/// Key material to sign with.
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    Hmac(Secret),
    /// RSA with PKCS#1 v1.5 over SHA-256 (`rsa-v1_5-sha256`, eBay's default).
    Rsa(Box<rsa::PrivateKey>),
}

/// Signs a request: returns the `Signature-Input` and `Signature` values for label `sig1`.
/// `components` are covered in order; `created` in Unix seconds.
pub fn sign(
    req: &RequestParts<'_>,
    components: &[&str],
    created: i64,
    keyid: Option<&str>,
    nonce: Option<&str>,
    key: &SigningKey,
) -> Result<(String, String), AuthError> {
    let mut inner = InnerList::new(Vec::new());
    for c in components {
        let s = sfv::String::from_string((*c).to_string())
            .map_err(|e| malformed("component", e.0.to_string()))?;
        inner.items.push(Item::new(BareItem::String(s)));
    }
    let key_of = |k: &str| {
        sfv::Key::from_string(k.to_string()).map_err(|e| malformed("parameter", e.0.to_string()))
    };
    inner.params.insert(
        key_of("created")?,
        BareItem::Integer(
            sfv::Integer::try_from(created).map_err(|e| malformed("created", e.to_string()))?,
        ),
    );
    if let Some(n) = nonce {
        let s = sfv::String::from_string(n.to_string())
            .map_err(|e| malformed("nonce", e.0.to_string()))?;
        inner.params.insert(key_of("nonce")?, BareItem::String(s));
    }
    if let Some(id) = keyid {
        let s = sfv::String::from_string(id.to_string())
            .map_err(|e| malformed("keyid", e.0.to_string()))?;
        inner.params.insert(key_of("keyid")?, BareItem::String(s));
    }
    let alg = match key {
        SigningKey::Ed25519(_) => "ed25519",
        SigningKey::Hmac(_) => "hmac-sha256",
        SigningKey::Rsa(_) => "rsa-v1_5-sha256",
    };
    let s =
        sfv::String::from_string(alg.to_string()).map_err(|e| malformed("alg", e.0.to_string()))?;
    inner.params.insert(key_of("alg")?, BareItem::String(s));
    let base = signature_base(&inner, req)?;
    let sig = match key {
        SigningKey::Ed25519(sk) => {
            use ed25519_dalek::Signer;
            sk.sign(base.as_bytes()).to_bytes().to_vec()
        }
        SigningKey::Hmac(secret) => secret
            .mac(MacAlg::Sha256, &[base.as_bytes()])
            .as_bytes()
            .to_vec(),
        SigningKey::Rsa(k) => k
            .pkcs1v15_sign::<sha2::Sha256>(base.as_bytes())
            .map_err(|e| malformed("RSA key", e.to_string()))?,
    };
    let params = vec![ListEntry::InnerList(inner)]
        .serialize()
        .ok_or_else(|| malformed("Signature-Input", "empty"))?;
    Ok((
        format!("sig1={params}"),
        format!("sig1=:{}:", B64.encode(sig)),
    ))
}

#[cfg(test)]
mod tests;
