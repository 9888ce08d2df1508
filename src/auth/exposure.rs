//! Who may reach the proxy without a signature (M10, #30.1): with no secret configured only this
//! PC (127.0.0.1, ::1) is served unless `auth.allow_unauthenticated` says otherwise; requests a
//! web browser makes for another site (an `Origin` not in `server.allowed_origins`, or
//! `Sec-Fetch-Site: cross-site`) are refused, so a web page cannot make the card sign; and the
//! status page answers only to loopback host names or `server.allowed_hosts` (DNS rebinding).

use crate::config::Config;
use std::net::SocketAddr;

/// How far the proxy is open, for the start-up WARN and the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Requests are signed (a secret or client key is configured).
    Authenticated,
    /// No secret: only callers on this PC are served.
    ThisPcOnly,
    /// No secret and `auth.allow_unauthenticated`: anyone who can reach the port may use the
    /// card. Shown as a warning at every start and on the status page.
    OpenWithoutAuthentication,
}

impl Exposure {
    pub fn of(config: &Config) -> Exposure {
        let has_key = !config.auth.app_secret.is_empty() || !config.auth.clients.is_empty();
        if has_key {
            Exposure::Authenticated
        } else if config.auth.allow_unauthenticated {
            Exposure::OpenWithoutAuthentication
        } else {
            Exposure::ThisPcOnly
        }
    }

    /// Whether a caller at `from_this_pc` may go on without a signature.
    pub fn admits(self, from_this_pc: bool) -> bool {
        match self {
            Exposure::Authenticated | Exposure::OpenWithoutAuthentication => true,
            Exposure::ThisPcOnly => from_this_pc,
        }
    }

    /// The WARN logged at start, if any, for a server listening on `addr`.
    pub fn warning(self, addr: SocketAddr) -> Option<String> {
        match self {
            Exposure::Authenticated => None,
            Exposure::ThisPcOnly if addr.ip().is_loopback() => Some(format!(
                "authentication is off (auth.app_secret is empty): only this PC can use the card, on {addr}. To let an ERP on another computer in, set auth.app_secret and sign its requests (chinaport-proxy sign prints a signed curl)"
            )),
            Exposure::ThisPcOnly => Some(format!(
                "authentication is off (auth.app_secret is empty): listening on {addr}, but requests from other computers are refused. Set auth.app_secret and sign requests, or auth.allow_unauthenticated: true to let anyone on the network use the card"
            )),
            Exposure::OpenWithoutAuthentication => Some(format!(
                "AUTHENTICATION IS OFF (auth.allow_unauthenticated: true): anyone who can reach {addr} can make the card sign. Set auth.app_secret to require signed requests"
            )),
        }
    }
}

/// Why a request from another computer is refused when authentication is off: says how to let
/// it in.
pub const NOT_THIS_PC: &str = "authentication is off, so only this PC (127.0.0.1) may use the proxy. To let other computers in, set auth.app_secret in config.json and sign requests (chinaport-proxy sign prints a signed curl), or set auth.allow_unauthenticated: true to allow anyone on the network";

/// A request a browser sends for another site: an `Origin` not allowed, or
/// `Sec-Fetch-Site: cross-site`/`same-site`. `None` when it may go on. A request without these
/// headers (curl, an ERP, a gateway) is not a browser's cross-site request.
pub fn cross_site_refusal(
    origin: Option<&str>,
    sec_fetch_site: Option<&str>,
    allowed_origins: &[String],
) -> Option<String> {
    if let Some(origin) = origin.map(str::trim).filter(|o| !o.is_empty()) {
        let allowed = allowed_origins
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin));
        if !allowed {
            return Some(format!(
                "requests from web pages are refused (Origin {origin:?}); to allow this site, add it to server.allowed_origins"
            ));
        }
        return None;
    }
    match sec_fetch_site.map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("cross-site") || s.eq_ignore_ascii_case("same-site") => {
            Some(
                "requests from web pages are refused (Sec-Fetch-Site: cross-site); to allow a site, add its origin to server.allowed_origins".into(),
            )
        }
        _ => None,
    }
}

/// Whether the `Host` a browser sent names this PC or a configured name, so that a page on a
/// rebound DNS name cannot read the status page.
pub fn host_allowed(host: Option<&str>, allowed_hosts: &[String]) -> bool {
    let Some(host) = host.map(str::trim) else {
        return false;
    };
    // without the port: "[::1]:8780" -> "[::1]", "localhost:8780" -> "localhost"
    let name = if host.starts_with('[') {
        host.split_once(']')
            .map(|(h, _)| &host[..h.len() + 1])
            .unwrap_or(host)
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    let name = name.trim_end_matches('.');
    ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
        || allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_fetch_metadata() {
        let allowed = vec!["https://erp.example".to_string()];
        assert!(cross_site_refusal(Some("http://attacker.example"), None, &allowed).is_some());
        assert!(cross_site_refusal(Some("https://erp.example"), None, &allowed).is_none());
        assert!(cross_site_refusal(Some("null"), None, &allowed).is_some());
        assert!(cross_site_refusal(None, Some("cross-site"), &allowed).is_some());
        assert!(cross_site_refusal(None, Some("none"), &allowed).is_none());
        assert!(cross_site_refusal(None, None, &allowed).is_none());
        assert!(cross_site_refusal(Some("http://x"), None, &["*".to_string()]).is_none());
    }

    #[test]
    fn hosts() {
        for h in [
            "localhost:8780",
            "127.0.0.1:8780",
            "[::1]:8780",
            "LOCALHOST",
            "localhost.",
        ] {
            assert!(host_allowed(Some(h), &[]), "{h}");
        }
        for h in [
            "rebind.attacker.example",
            "127.0.0.1.attacker.example:80",
            "",
            "[::2]:1",
        ] {
            assert!(!host_allowed(Some(h), &[]), "{h}");
        }
        assert!(!host_allowed(None, &[]));
        assert!(host_allowed(Some("proxy.lan:8780"), &["proxy.lan".into()]));
    }
}
