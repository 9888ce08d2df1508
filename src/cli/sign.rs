//! `sign`: signs a request by hand with any scheme and prints the headers (for `checksum`, the
//! signed body) and a ready curl command.

use super::SignArgs;
use crate::auth::Scheme;
use crate::auth::outgoing::{self, OutKey, Signer};
use crate::config::ChecksumConfig;

pub fn run(a: &SignArgs) -> Result<(), String> {
    let scheme = a.scheme.ok_or("sign needs --scheme")?;
    let key = match (&a.key, &a.ed25519_key, &a.rsa_key) {
        (Some(secret), _, _) => OutKey::Secret(crate::auth::Secret::new(secret.as_bytes())),
        (None, Some(k), _) => OutKey::Ed25519(outgoing::parse_ed25519_private(&key_text(k)?)?),
        (None, None, Some(k)) => OutKey::Rsa(Box::new(outgoing::parse_rsa_private(&key_text(k)?)?)),
        (None, None, None) => return Err("sign needs --key, --ed25519-key or --rsa-key".into()),
    };
    let signer = Signer {
        scheme,
        key,
        key_id: a.key_id.clone().unwrap_or_else(|| "default".into()),
        checksum: ChecksumConfig::default(),
    };
    let now = crate::time::now_ms();
    let signed = signer.sign(&a.method, &a.url, a.body.as_bytes(), now)?;
    let body = String::from_utf8_lossy(&signed.body).into_owned();
    let curl = curl_command(&a.method, &a.url, &signed.headers, &body);
    if a.json {
        let out = serde_json::json!({"headers": signed.headers, "body": body, "curl": curl});
        println!("{out}");
        return Ok(());
    }
    println!(
        "# {} signature for {} {} (valid for a few seconds, once)",
        scheme.name(),
        a.method,
        a.url
    );
    for (n, v) in &signed.headers {
        println!("{n}: {v}");
    }
    if scheme == Scheme::Checksum {
        println!("# signed body:\n{body}");
    }
    println!("# curl:\n{curl}");
    Ok(())
}

/// A key given inline, or `@FILE`.
fn key_text(k: &str) -> Result<String, String> {
    match k.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}")),
        None => Ok(k.to_string()),
    }
}

/// A curl command that sends exactly the signed bytes (single-quoted for a POSIX shell).
fn curl_command(method: &str, url: &str, headers: &[(String, String)], body: &str) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut curl = format!("curl -sS -X {method} -H 'Content-Type: application/json'");
    for (n, v) in headers {
        curl.push_str(&format!(" -H {}", quote(&format!("{n}: {v}"))));
    }
    if !body.is_empty() {
        curl.push_str(&format!(" --data-binary {}", quote(body)));
    }
    curl.push_str(&format!(" {}", quote(url)));
    curl
}
