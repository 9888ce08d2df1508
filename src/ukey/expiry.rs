//! Watching the card's certificate run out: an expired certificate stops every filing, and
//! renewal takes days. 30, 7 and 1 days before `notAfter` one warning each, then one when it has
//! expired. What was sent for which certificate is remembered next to the configuration, so a
//! restart does not send it again.

use crate::customs::cert::CertInfo;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "cert-expiry-notices.json";
/// Days before `notAfter` at which a warning is sent.
pub const THRESHOLDS: [i64; 3] = [30, 7, 1];
/// The mark of the "expired" notice among the thresholds sent.
const EXPIRED: i64 = -1;

/// What to tell the operator now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Expiring { days_left: i64, not_after: u64 },
    Expired { not_after: u64 },
}

/// Whole days from `now_s` until `not_after` (negative once past).
pub fn days_left(not_after: u64, now_s: u64) -> i64 {
    (not_after as i64 - now_s as i64).div_euclid(86_400)
}

pub struct ExpiryWatch {
    file: Option<PathBuf>,
    /// The certificate (serial) the notices below were sent for.
    serial: String,
    sent: Vec<i64>,
}

impl ExpiryWatch {
    pub fn open(dir: Option<&Path>) -> ExpiryWatch {
        let file = dir.map(|d| d.join(FILE_NAME));
        let saved: Option<Value> = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| serde_json::from_str(&t).ok());
        let serial = saved
            .as_ref()
            .and_then(|v| v["serial"].as_str())
            .unwrap_or_default()
            .to_string();
        let sent = saved
            .as_ref()
            .and_then(|v| v["sent"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        ExpiryWatch { file, serial, sent }
    }

    /// The notice due for `cert` at `now_s`, if one is and it was not sent before. A first look
    /// at a certificate 5 days from expiry sends the 7-day warning alone, not the 30-day one.
    pub fn check(&mut self, cert: &CertInfo, now_s: u64) -> Option<Notice> {
        if cert.serial_hex != self.serial {
            self.serial = cert.serial_hex.clone();
            self.sent.clear();
        }
        let days = days_left(cert.not_after, now_s);
        let notice = if now_s > cert.not_after {
            (!self.sent.contains(&EXPIRED)).then(|| {
                self.sent.push(EXPIRED);
                Notice::Expired {
                    not_after: cert.not_after,
                }
            })
        } else {
            let due: Vec<i64> = THRESHOLDS.into_iter().filter(|t| days <= *t).collect();
            let new = due.iter().any(|t| !self.sent.contains(t));
            for t in &due {
                if !self.sent.contains(t) {
                    self.sent.push(*t);
                }
            }
            new.then_some(Notice::Expiring {
                days_left: days,
                not_after: cert.not_after,
            })
        };
        if notice.is_some() {
            self.save();
        }
        notice
    }

    fn save(&self) {
        if let Some(f) = &self.file {
            let v = json!({"serial": self.serial, "sent": self.sent});
            if let Err(e) = std::fs::write(f, v.to_string()) {
                log::warn!(
                    "cannot remember the certificate notices in {}: {e}",
                    f.display()
                );
            }
        }
    }
}

/// Moved to `crate::time`; kept here for code that still names it.
pub use crate::time::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_after: u64) -> CertInfo {
        CertInfo {
            der: Vec::new(),
            algorithm: crate::customs::cert::Algorithm::Sm2,
            serial_hex: "ab".into(),
            subject: String::new(),
            issuer: String::new(),
            not_before: 0,
            not_after,
            spki_der: Vec::new(),
            public_key_bits: Vec::new(),
        }
    }

    #[test]
    fn one_notice_per_threshold_and_one_when_expired() {
        let day = 86_400;
        let c = cert(100 * day);
        let mut w = ExpiryWatch::open(None);
        assert_eq!(w.check(&c, 10 * day), None, "90 days left: nothing");
        assert_eq!(
            w.check(&c, 71 * day),
            Some(Notice::Expiring {
                days_left: 29,
                not_after: 100 * day
            })
        );
        assert_eq!(
            w.check(&c, 72 * day),
            None,
            "the 30-day warning went out once"
        );
        assert!(matches!(
            w.check(&c, 95 * day),
            Some(Notice::Expiring { days_left: 5, .. })
        ));
        assert!(matches!(
            w.check(&c, 99 * day + 1),
            Some(Notice::Expiring { days_left: 0, .. })
        ));
        assert_eq!(w.check(&c, 99 * day + 2), None);
        assert_eq!(
            w.check(&c, 100 * day + 1),
            Some(Notice::Expired {
                not_after: 100 * day
            })
        );
        assert_eq!(w.check(&c, 101 * day), None);
        // a first look at 5 days sends the 7-day warning alone
        let mut fresh = ExpiryWatch::open(None);
        assert!(matches!(
            fresh.check(&c, 95 * day),
            Some(Notice::Expiring { days_left: 5, .. })
        ));
        assert_eq!(fresh.check(&c, 96 * day), None);
    }
}
