//! Never lock the card. Repeated wrong passwords lock an E-Port card, and unlocking it means a
//! trip to the card office. This module owns the one rule for what a refusal of the password is,
//! and remembers a refusal across reconnects and restarts until `ukey.password` changes: while
//! it stands, no frame carrying the password is sent, by anyone.
//!
//! The refusal is kept in a small file next to the configuration, holding a salted SHA-256
//! fingerprint of the refused password (never the password): a restart with the same password
//! finds it and sends nothing; a restart with another password removes it.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The file name of the remembered refusal, next to the configuration.
pub const FILE_NAME: &str = "ukey-password-refused.json";

/// The code the E-Port client software answers, with "口令验证失败", when the password is wrong.
pub const REFUSAL_CODE: &str = "Err:Custom50030";

/// Whether a reply frame is the card refusing the password. The rule: the operation failed
/// (`_args.Result` false) and an `Error` entry
/// - carries the refusal code `Err:Custom50030`, or
/// - names the card's PIN, 口令, or
/// - says 密码 together with a word of failure (错误, 不正确, 验证失败, 校验失败, 无效, 不匹配):
///   密码 alone also means "cryptographic" (密码设备, 密码模块), which is not a refusal, or
/// - in English, names the password (`password`, `passwd`, or the word `PIN`).
///
/// Any other `Result: false` (a missing argument, `Err:Custom50070`, a pulled card, …) is not a
/// refusal.
pub fn is_password_refusal(frame: &Value) -> bool {
    let args = frame.get("_args");
    if args.and_then(|a| a.get("Result")).and_then(Value::as_bool) != Some(false) {
        return false;
    }
    let Some(errors) = args.and_then(|a| a.get("Error")).and_then(Value::as_array) else {
        return false;
    };
    errors.iter().filter_map(Value::as_str).any(refuses)
}

fn refuses(error: &str) -> bool {
    const FAILED: [&str; 6] = ["错误", "不正确", "验证失败", "校验失败", "无效", "不匹配"];
    if error.contains(REFUSAL_CODE) || error.contains("口令") {
        return true;
    }
    if error.contains("密码") && FAILED.iter().any(|w| error.contains(w)) {
        return true;
    }
    let lower = error.to_ascii_lowercase();
    lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| matches!(word, "password" | "passwd" | "pin"))
}

/// The remembered refusal of one configured password.
pub struct Lockout {
    file: Option<PathBuf>,
    password: String,
}

impl Lockout {
    /// Looks for a refusal of `password` remembered in `dir`; `None` for `dir` keeps nothing on
    /// disk (the refusal then lasts until the process ends). Returns whether it stands now.
    pub fn open(dir: Option<&Path>, password: &str) -> (Lockout, bool) {
        let lockout = Lockout {
            file: dir.map(|d| d.join(FILE_NAME)),
            password: password.to_string(),
        };
        let refused = match lockout.read() {
            Some(v) if lockout.matches(&v) => true,
            Some(_) => {
                // another password was refused before: this one deserves a try
                if let Some(f) = &lockout.file {
                    let _ = std::fs::remove_file(f);
                }
                log::info!(
                    "UKey: ukey.password has changed since the card refused it; trying the new one"
                );
                false
            }
            None => false,
        };
        (lockout, refused)
    }

    fn read(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.file.as_ref()?).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn matches(&self, v: &Value) -> bool {
        let (Some(salt), Some(fp)) = (
            v.get("salt").and_then(Value::as_str),
            v.get("fingerprint").and_then(Value::as_str),
        ) else {
            return false;
        };
        crate::auth::constant_time_eq(fingerprint(salt, &self.password).as_bytes(), fp.as_bytes())
    }

    /// Remembers that the card refused the password (`reason`: the card's errors, masked).
    pub fn remember(&self, reason: &str, now_ms: u64) {
        let Some(file) = &self.file else { return };
        let salt = uuid::Uuid::new_v4().simple().to_string();
        let record = json!({
            "what": "the card refused ukey.password; chinaport-proxy sends nothing to the card until the password in the configuration changes",
            "salt": salt,
            "fingerprint": fingerprint(&salt, &self.password),
            "refused_at_ms": now_ms,
            "reason": reason,
        });
        if let Err(e) = std::fs::write(file, record.to_string()) {
            log::error!(
                "UKey: cannot remember the refusal in {}: {e} (a restart would try the password once more)",
                file.display()
            );
        }
    }
}

fn fingerprint(salt: &str, password: &str) -> String {
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update([0u8])
        .chain_update(password.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(errors: &[&str]) -> Value {
        json!({"_status": "00", "_args": {"Result": false, "Data": [], "Error": errors}})
    }

    #[test]
    fn every_known_form_of_refusal_is_one() {
        for errors in [
            &[
                "口令验证失败 (simulator: wrong or missing passwd)",
                "Err:Custom50030",
            ][..],
            &["Err:Custom50030"],
            &["口令错误,剩余次数:5"],
            &["用户密码错误"],
            &["密码不正确"],
            &["卡密码验证失败"],
            &["Wrong password"],
            &["verify PIN failed"],
            &["bad passwd"],
        ] {
            assert!(is_password_refusal(&failed(errors)), "{errors:?}");
        }
    }

    #[test]
    fn an_unrelated_failure_is_not_a_refusal() {
        for errors in [
            &[
                "参数检查失败,传入的args中必须包含必要的非空白参数:inData",
                "Err:Base50000",
            ][..],
            &["Err:Custom50070"],
            &["Err:Custom50200"],
            &["密码设备打开失败"],
            &["未检测到卡,请插入卡 (card not found)"],
            &["shipping mapping failed"],
            &[],
        ] {
            assert!(!is_password_refusal(&failed(errors)), "{errors:?}");
        }
        // a success that mentions a password is no refusal either
        let ok = json!({"_args": {"Result": true, "Data": ["password ok"], "Error": ["口令"]}});
        assert!(!is_password_refusal(&ok));
    }

    #[test]
    fn a_refusal_is_remembered_until_the_password_changes() {
        let dir = std::env::temp_dir().join(format!("lockout-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (l, refused) = Lockout::open(Some(&dir), "wrong-1");
        assert!(!refused);
        l.remember("口令验证失败", 1);
        let text = std::fs::read_to_string(dir.join(FILE_NAME)).unwrap();
        assert!(
            !text.contains("wrong-1"),
            "the password itself is never written"
        );
        assert!(
            Lockout::open(Some(&dir), "wrong-1").1,
            "same password: still refused"
        );
        assert!(
            !Lockout::open(Some(&dir), "right-2").1,
            "a new password is tried"
        );
        assert!(!dir.join(FILE_NAME).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
