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

/// Whether a reply frame is the card refusing the password: the operation failed
/// (`_args.Result` false) and one `Error` entry is exactly the refusal code `Err:Custom50030`.
///
/// M3: no word match (口令, 密码, password, PIN): the card's messages may echo a caller's method
/// name or arguments, so text would let a caller lock every other caller out. And the session
/// trusts even the code only on the proxy's own calls (the probe, the certificate read), whose
/// method and arguments no caller chose (see `session::look_after_caller`).
pub fn is_password_refusal(frame: &Value) -> bool {
    let args = frame.get("_args");
    if args.and_then(|a| a.get("Result")).and_then(Value::as_bool) != Some(false) {
        return false;
    }
    let Some(errors) = args.and_then(|a| a.get("Error")).and_then(Value::as_array) else {
        return false;
    };
    errors
        .iter()
        .filter_map(Value::as_str)
        .any(|e| e.trim() == REFUSAL_CODE)
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
        crate::ct::constant_time_eq(fingerprint(salt, &self.password).as_bytes(), fp.as_bytes())
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
    crate::encoding::hex(&digest, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(errors: &[&str]) -> Value {
        json!({"_status": "00", "_args": {"Result": false, "Data": [], "Error": errors}})
    }

    #[test]
    fn the_refusal_code_is_a_refusal() {
        for errors in [
            &[
                "口令验证失败 (simulator: wrong or missing passwd)",
                "Err:Custom50030",
            ][..],
            &["Err:Custom50030"],
            &["口令错误,剩余次数:5", " Err:Custom50030 "],
        ] {
            assert!(is_password_refusal(&failed(errors)), "{errors:?}");
        }
    }

    #[test]
    fn words_and_echoed_text_are_not_a_refusal() {
        for errors in [
            &[
                "参数检查失败,传入的args中必须包含必要的非空白参数:inData",
                "Err:Base50000",
            ][..],
            &["Err:Custom50070"],
            &["Err:Custom50200"],
            &["密码设备打开失败"],
            &["未检测到卡,请插入卡 (card not found)"],
            // M3: what a caller can make the card echo
            &[
                "不支持的方法 (simulator: unknown method cus-sec_Spc PIN check)",
                "Err:Base50001",
            ],
            &["unknown method {\"passwd\":\"x\"}", "Err:Base50001"],
            &["unknown method Err:Custom50030x", "Err:Base50001"],
            &["口令验证失败"],
            &["Wrong password"],
            &[],
        ] {
            assert!(!is_password_refusal(&failed(errors)), "{errors:?}");
        }
        // a success that carries the code is no refusal either
        let ok = json!({"_args": {"Result": true, "Data": ["x"], "Error": ["Err:Custom50030"]}});
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
