//! Wall-clock time as the proxy writes it: Unix milliseconds (signature windows, records) and
//! RFC 3339 in UTC (certificate dates, webhooks, pages), the latter through `der`'s DateTime,
//! which reads the certificates' dates and spans exactly their range (up to 9999-12-31).

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 (UTC, whole seconds, `Z`) of Unix seconds; a date past 9999-12-31T23:59:59Z (the
/// "no expiry" of X.509) is written as that.
pub fn rfc3339(unix_s: u64) -> String {
    use x509_cert::der::DateTime;
    DateTime::from_unix_duration(std::time::Duration::from_secs(unix_s))
        .unwrap_or(DateTime::INFINITY)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_756_571_640), "2025-08-30T16:34:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
