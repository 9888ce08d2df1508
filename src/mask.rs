//! Secret masking: everything the proxy logs, echoes or sends goes through here first, so the
//! card password (and other configured secrets) leave the process only as `***MASKED***`.
//!
//! Two kinds, for two audiences. What only the operator reads (the log, webhooks, the journal)
//! is masked by key and by content: a secret anywhere in it, raw or JSON-escaped, is replaced.
//! What a caller reads back (an /rpc reply, which echoes the caller's own `_method` and text) is
//! masked by key only (`mask_keys`): the values under `passwd`/`password`/`app_secret`, which is
//! where the proxy itself puts the password, always, whatever they hold. Masking by content
//! there would tell a caller whether its text contained the password (M4: 1,000 candidates in
//! one `_method`, and the echo showed which one came back as `***MASKED***`); not masking it
//! shows the caller only the text it sent.

use serde_json::Value;
use std::sync::OnceLock;

pub const MASK: &str = "***MASKED***";

/// Keys whose values are secrets wherever they appear in a JSON document.
const SECRET_KEYS: [&str; 3] = ["passwd", "password", "app_secret"];

/// Secrets shorter than this are masked by key only: replacing every occurrence of, say, "1234"
/// inside signatures and amounts would corrupt answers. Factory card passwords have 8 digits.
const MIN_SUBSTRING_LEN: usize = 4;

/// Masks a set of secret strings.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    secrets: Vec<String>,
}

impl Masker {
    pub fn new<I, S>(secrets: I) -> Masker
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(Into::into)
            .filter(|s| s.len() >= MIN_SUBSTRING_LEN)
            // and as it appears inside JSON text (L1: `"` and `\` are escaped in a frame)
            .flat_map(|s| {
                let escaped = serde_json::to_string(&s).unwrap_or_default();
                let escaped = escaped[1..escaped.len() - 1].to_string();
                [s, escaped]
            })
            .collect();
        // longest first, so a secret containing another is masked whole
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Masker { secrets }
    }

    /// Replaces every occurrence of a secret in `text`.
    pub fn mask_str(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    /// Masks a JSON value in place: values under secret keys become `***MASKED***`, and secrets
    /// inside any other string are replaced.
    pub fn mask_value(&self, value: &mut Value) {
        match value {
            Value::String(s) if self.secrets.iter().any(|sec| s.contains(sec.as_str())) => {
                *s = self.mask_str(s);
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_value(v)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if SECRET_KEYS.contains(&key.as_str()) && !v.is_null() {
                        *v = Value::String(MASK.into());
                    } else {
                        self.mask_value(v);
                    }
                }
            }
            _ => {}
        }
    }

    /// Masks only the values under secret keys, whatever they hold: for answers a caller reads,
    /// where masking by content would be an oracle (see the module comment).
    pub fn mask_keys(value: &mut Value) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(Masker::mask_keys),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if SECRET_KEYS.contains(&key.as_str()) && !v.is_null() {
                        *v = Value::String(MASK.into());
                    } else {
                        Masker::mask_keys(v);
                    }
                }
            }
            _ => {}
        }
    }

    /// A JSON text (a card frame) for the log: by key, so that a password of any length or
    /// with characters JSON escapes is masked where the proxy put it, and by content. Text that
    /// is not JSON is masked by content.
    pub fn mask_json_text(&self, text: &str) -> String {
        match serde_json::from_str::<Value>(text) {
            Ok(mut v) => {
                self.mask_value(&mut v);
                v.to_string()
            }
            Err(_) => self.mask_str(text),
        }
    }

    /// A masked copy of `value`.
    pub fn masked(&self, value: &Value) -> Value {
        let mut v = value.clone();
        self.mask_value(&mut v);
        v
    }
}

static GLOBAL: OnceLock<Masker> = OnceLock::new();

/// Sets the process-wide masker used by the log formatter; the first call wins.
pub fn install_global(masker: Masker) {
    let _ = GLOBAL.set(masker);
}

/// The process-wide masker (empty until `install_global`).
pub fn global() -> &'static Masker {
    GLOBAL.get_or_init(Masker::default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_keys_and_substrings() {
        let m = Masker::new(["88888888"]);
        let mut v = json!({"args": {"passwd": "anything", "inData": "x88888888y"},
                           "list": ["88888888", 1], "password": "p"});
        m.mask_value(&mut v);
        assert_eq!(
            v,
            json!({"args": {"passwd": MASK, "inData": "x***MASKED***y"},
                   "list": [MASK, 1], "password": MASK})
        );
        assert_eq!(m.mask_str("pw=88888888;"), "pw=***MASKED***;");
    }

    #[test]
    fn short_secrets_masked_by_key_only() {
        let m = Masker::new(["12", ""]);
        let mut v = json!({"passwd": "12", "amount": "123"});
        m.mask_value(&mut v);
        assert_eq!(v, json!({"passwd": MASK, "amount": "123"}));
    }

    /// L1: a password with `"` or `\\`, or shorter than 4 characters, in a frame's text.
    #[test]
    fn frames_are_masked_whatever_the_password_looks_like() {
        for pw in ["Pa\"ss\\w0rd", "123", "x"] {
            let m = Masker::new([pw]);
            let frame = serde_json::json!({"_method": "m", "args": {"passwd": pw}}).to_string();
            let logged = m.mask_json_text(&frame);
            assert!(
                !logged.contains(&format!(
                    "\"passwd\":{}",
                    serde_json::to_string(pw).unwrap()
                )),
                "{logged}"
            );
            assert!(logged.contains(MASK), "{logged}");
        }
        let m = Masker::new(["Pa\"ss\\w0rd"]);
        assert_eq!(
            m.mask_str(r#"{"x":"Pa\"ss\\w0rd"}"#),
            format!(r#"{{"x":"{MASK}"}}"#)
        );
    }

    /// M4: what a caller reads back does not depend on whether its text held the password.
    #[test]
    fn caller_answers_are_masked_by_key_only() {
        let mut echoed = json!({"_method": "87654320 87654321 87654322", "_args": {"passwd": "x"}});
        Masker::mask_keys(&mut echoed);
        assert_eq!(
            echoed,
            json!({"_method": "87654320 87654321 87654322", "_args": {"passwd": MASK}})
        );
    }

    #[test]
    fn longest_secret_first() {
        let m = Masker::new(["abcd", "abcdefgh"]);
        assert_eq!(m.mask_str("abcdefgh"), MASK);
    }
}
