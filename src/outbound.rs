//! The outgoing HTTP client, shared by the webhooks and the customs upload: a time limit per
//! request, statuses as answers (not errors), and which TLS roots it trusts.
//!
//! TLS is the platform's: SChannel on Windows (native-tls), which trusts the Windows certificate
//! store, and rustls with the platform verifier elsewhere (see `Cargo.toml`).

use crate::config::Config;
use std::path::Path;
use std::time::Duration;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// The TLS library compiled in for this platform (see `Cargo.toml`). ureq defaults to rustls
/// whatever is compiled in, and panics on the first https:// request without it.
#[cfg(windows)]
const PROVIDER: TlsProvider = TlsProvider::NativeTls;
#[cfg(not(windows))]
const PROVIDER: TlsProvider = TlsProvider::Rustls;

/// What outgoing TLS connections trust: `webhook.tls_roots` and `webhook.ca_file`.
#[derive(Clone, Debug)]
pub struct TlsTrust {
    /// The OS certificate store; otherwise the bundled Mozilla roots.
    system: bool,
    /// Extra roots from `webhook.ca_file`. When there are any, the trusted set is the bundled
    /// Mozilla roots plus these (on Windows, these alone): neither TLS backend can add roots to
    /// the OS store's.
    extra: Vec<Certificate<'static>>,
}

impl TlsTrust {
    /// Reads `webhook.ca_file` (PEM; relative to the configuration's folder).
    pub fn from_config(config: &Config, config_path: &Path) -> Result<TlsTrust, String> {
        let mut extra = Vec::new();
        if !config.webhook.ca_file.is_empty() {
            let dir = config_path.parent().unwrap_or(Path::new("."));
            let file = dir.join(&config.webhook.ca_file);
            let pem =
                std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
                    extra.push(cert);
                }
            }
            if extra.is_empty() {
                return Err(format!(
                    "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    file.display()
                ));
            }
        }
        Ok(TlsTrust {
            system: config.webhook.tls_roots == crate::config::TlsRoots::System,
            extra,
        })
    }

    /// Elsewhere: the bundled Mozilla roots plus `ca_file`, or the OS verifier, or the bundled
    /// roots alone.
    #[cfg(not(windows))]
    fn roots(&self) -> RootCerts {
        if !self.extra.is_empty() {
            let bundled = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned());
            return RootCerts::new_with_certs(
                &bundled
                    .chain(self.extra.iter().cloned())
                    .collect::<Vec<_>>(),
            );
        }
        if self.system {
            RootCerts::PlatformVerifier
        } else {
            RootCerts::WebPki
        }
    }

    /// On Windows: the Windows certificate store, or the CAs of `ca_file` instead of it (the
    /// exe carries no bundled roots; config validation refuses `tls_roots: "bundled"` there).
    #[cfg(windows)]
    fn roots(&self) -> RootCerts {
        let _ = self.system;
        if self.extra.is_empty() {
            RootCerts::PlatformVerifier
        } else {
            RootCerts::new_with_certs(&self.extra)
        }
    }

    /// An agent whose requests may take `timeout` each (for a request path: the caller's
    /// budget bounds the whole exchange, name lookup included).
    pub fn agent(&self, timeout: Duration) -> ureq::Agent {
        self.config().timeout_global(Some(timeout)).build().into()
    }

    /// An agent for a background thread (the webhook sender), whose requests may take
    /// `timeout` in each phase: connect, send, answer. The name lookup has no timeout of its
    /// own (the system resolver's applies) because with one ureq looks up in a new thread on
    /// every request, even for an IP address: a thread per webhook event.
    pub fn background_agent(&self, timeout: Duration) -> ureq::Agent {
        self.config()
            .timeout_connect(Some(timeout))
            .timeout_send_request(Some(timeout))
            .timeout_send_body(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_recv_body(Some(timeout))
            .build()
            .into()
    }

    fn config(&self) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                TlsConfig::builder()
                    .provider(PROVIDER)
                    .root_certs(self.roots())
                    .build(),
            )
    }
}

/// An error of an outgoing request, with a hint when the peer's certificate was not trusted.
pub fn explain(url: &str, e: &ureq::Error) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let untrusted = [
        "certificate",
        "unknownissuer",
        "unknown issuer",
        "cert",
        "trust",
    ]
    .iter()
    .any(|w| lower.contains(w));
    if untrusted && url.starts_with("https://") {
        format!(
            "{url}: {text} (its TLS certificate is not trusted: add the CA that issued it to \
             webhook.ca_file, or to the Windows certificate store with webhook.tls_roots \"system\")"
        )
    } else {
        format!("{url}: {text}")
    }
}
