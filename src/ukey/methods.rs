//! The card's method names as the proxy knows them: the closed set that may become a metric label,
//! and the length a caller-chosen name may have before it is stored, logged or sent.

/// The methods `eport-protocol.md` documents (plus the SHA variant the client software exposes).
/// Only these become their own metric label; any other name is counted under [`OTHER`], so a
/// caller cannot grow `/metrics` by inventing names (finding H4).
pub const KNOWN: &[&str] = &[
    "cus-sec_SpcGetCertNo",
    "cus-sec_SpcGetEntName",
    "cus-sec_SpcGetSignCertAsPEM",
    "cus-sec_SpcGetEnvCertAsPEM",
    "cus-sec_SpcGetValidTimeFromCert",
    "cus-sec_SpcSHA1DigestAsPEM",
    "cus-sec_SpcSignDataAsPEM",
    "cus-sec_SpcSignDataNoHashAsPEM",
    "cus-sec_SpcVerifySignData",
];

/// The label shared by every method outside [`KNOWN`].
pub const OTHER: &str = "other";

/// How many labels there are: the known methods and [`OTHER`].
pub const LABELS: usize = KNOWN.len() + 1;

/// The slot of a method's label in per-label counters: its place in [`KNOWN`], or the last
/// for [`OTHER`].
pub fn index(method: &str) -> usize {
    KNOWN
        .iter()
        .position(|known| *known == method)
        .unwrap_or(KNOWN.len())
}

/// The label of slot `i` (see [`index`]).
pub fn label_at(i: usize) -> &'static str {
    KNOWN.get(i).copied().unwrap_or(OTHER)
}

/// The longest `_method` the proxy accepts. The documented names are 20–32 characters; 128 leaves
/// room for vendor methods we have not seen while keeping every stored copy (metrics, the status
/// page's recent calls, log lines, audit webhooks) small.
pub const MAX_LEN: usize = 128;

/// The metric label for a method: itself when known, else [`OTHER`]. Never allocates.
pub fn label(method: &str) -> &'static str {
    KNOWN
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or(OTHER)
}

/// Why a caller's `_method` is refused before anything stores it, or `None` when it is fine.
pub fn refusal(method: &str) -> Option<String> {
    if method.len() > MAX_LEN {
        return Some(format!(
            "\"_method\" is {} bytes long; the limit is {MAX_LEN}",
            method.len()
        ));
    }
    if method.chars().any(|c| c.is_control()) {
        return Some("\"_method\" must not contain control characters (newlines, tabs, …)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(
            label("cus-sec_SpcSignDataAsPEM"),
            "cus-sec_SpcSignDataAsPEM"
        );
        assert_eq!(label("cus-sec_SpcMadeUp"), OTHER);
        assert_eq!(label(&"x".repeat(2_000_000)), OTHER);
    }

    #[test]
    fn long_or_control_names_are_refused() {
        assert!(refusal("cus-sec_SpcGetCertNo").is_none());
        assert!(refusal(&"m".repeat(MAX_LEN)).is_none());
        assert!(
            refusal(&"m".repeat(MAX_LEN + 1))
                .unwrap()
                .contains("limit is 128")
        );
        assert!(refusal("a\nINFO forged line").is_some());
    }
}
