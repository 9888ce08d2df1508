//! The `token` scheme: the Java signer's (Weasley-J/chinaport-data-signature) bearer header
//! `x-auth-token-eport-sign`, which must equal a client's secret. It signs nothing: it lets that
//! signer's clients switch without code changes (docs/compat-java-signer.md). The token is
//! compared in constant time and never logged, audited or echoed.

use super::{AuthError, Authenticated, ClientKey, Clients, RequestParts, constant_time_eq};
use sha2::{Digest, Sha256};

/// The header, as the Java signer names it (`AuthenticationProperties.AUTHENTICATION_HEADER`).
pub const HEADER: &str = "x-auth-token-eport-sign";

pub struct TokenScheme;

impl TokenScheme {
    /// Whether the request carries the token header.
    pub fn applies(req: &RequestParts<'_>) -> bool {
        req.header(HEADER).is_some()
    }

    /// The client whose secret the token is. Both sides are hashed first, so the comparison's
    /// time depends on neither the token's nor a secret's length; every client is compared, so it
    /// does not depend on which one matched either.
    pub fn verify(req: &RequestParts<'_>, clients: &Clients) -> Result<Authenticated, AuthError> {
        let token = req.header(HEADER).ok_or(AuthError::MissingHeader(HEADER))?;
        if token.trim().is_empty() {
            return Err(AuthError::MissingHeader(HEADER));
        }
        let given = Sha256::digest(token.as_bytes());
        let mut found = None;
        for (id, key) in clients {
            let ClientKey::Secret(secret) = key else {
                continue;
            };
            let expected = Sha256::digest(secret.bytes());
            if constant_time_eq(&given, &expected) && found.is_none() {
                found = Some(id.clone());
            }
        }
        found
            .map(Authenticated::client)
            .ok_or(AuthError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;

    fn clients() -> Clients {
        vec![
            ("default".into(), ClientKey::Secret(Secret::new("s3cret"))),
            ("erp".into(), ClientKey::Secret(Secret::new("erp-token"))),
        ]
    }

    fn check(headers: &[(String, String)]) -> Result<Authenticated, AuthError> {
        let req = RequestParts::for_tests("POST", "/rpc/eport/signature", "", "h", headers, b"{}");
        TokenScheme::verify(&req, &clients())
    }

    #[test]
    fn the_token_names_its_client_and_a_wrong_one_names_nothing() {
        let h = |v: &str| vec![(HEADER.to_string(), v.to_string())];
        assert_eq!(check(&h("erp-token")).unwrap().client, "erp");
        assert_eq!(check(&h("s3cret")).unwrap().client, "default");
        let e = check(&h("erp-tokeN")).unwrap_err();
        assert_eq!(e, AuthError::BadSignature);
        assert!(!e.to_string().contains("erp-tokeN"));
        assert_eq!(
            check(&h("erp-token-longer")).unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(
            check(&h(" ")).unwrap_err(),
            AuthError::MissingHeader(HEADER)
        );
        assert_eq!(check(&[]).unwrap_err(), AuthError::MissingHeader(HEADER));
    }

    #[test]
    fn auth_scheme_accepts_token_beside_the_signing_schemes_and_webhooks_refuse_it() {
        let parse =
            |text: &str| crate::config::parse(text.as_bytes(), std::path::Path::new("c.json"));
        let c = parse(
            r#"{"auth":{"scheme":["md5","token"],"clients":{"erp":{"secret":"erp-token"}}}}"#,
        )
        .unwrap();
        let auth = crate::auth::Authenticator::from_config(&c.auth)
            .unwrap()
            .unwrap();
        let headers = vec![(HEADER.to_string(), "erp-token".to_string())];
        let req = RequestParts::for_tests("POST", "/rpc/eport/signature", "", "h", &headers, b"{}");
        let ok = auth.verify(&req, 0).unwrap();
        assert_eq!(ok.client, "erp");
        assert_eq!(ok.scheme, Some(crate::config::Scheme::Token));
        // without the header, md5 judges and both are named
        let e = auth
            .verify(&RequestParts::for_tests("POST", "/x", "", "h", &[], b""), 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x-auth-token-eport-sign") && e.contains("X-Signature"),
            "{e}"
        );
        let e = parse(r#"{"webhook":{"sign_scheme":"token"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("webhook.sign_scheme") && e.contains("signs nothing"),
            "{e}"
        );
    }
}
