//! What was sent and received, in an append-only JSON-lines file next to the configuration,
//! read back on start (a torn last line from a crash is skipped): the first answer per `guid`
//! (so a repeated send answers it again), and the identities of receipts already delivered (so
//! a receipt seen twice is delivered once), and, for the status page, the last messages sent
//! with the latest receipt matched to each. SQLite would not fit the exe budget; this needs none.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Default)]
struct State {
    /// guid → its latest send, and what came back.
    sent: HashMap<String, Sent>,
    seen: HashSet<String>,
    /// Every record, oldest first, for `GET /api/receipts`.
    records: Vec<Value>,
    /// The last `RECENT` distinct guids sent, oldest first: the status page.
    recent: Vec<String>,
    /// "receipt type key value" → the guid sent with that business key, so that a receipt
    /// (which carries customs' own guid) finds its message in one look-up. One string as the
    /// key: a map type the exe already holds (its size budget).
    by_key: HashMap<String, String>,
}

struct Sent {
    /// The answer of its latest send.
    answer: Value,
    /// How many sends there were.
    count: u32,
    /// When it was last sent (ms).
    at: u64,
    /// The latest receipt event matched to it.
    latest: Option<Value>,
}

/// How many messages the status page lists.
pub const RECENT: usize = 100;

/// The keys that name one message; `ebpCode` and the like are shared by all of a company's.
const STRONG: [&str; 6] = [
    "orderNo",
    "copNo",
    "invtNo",
    "logisticsNo",
    "preNo",
    "payTransactionId",
];

/// The receipt type that answers `msg_type`: 311 → 312, 621 → 622, 303 → 304, … (spec 202205).
pub fn receipt_type(msg_type: &str) -> Option<String> {
    let code: u32 = msg_type.strip_prefix("CEB")?.get(..3)?.parse().ok()?;
    Some(format!("CEB{:03}Message", code + 1))
}

/// One line of the status page: what was sent, and the latest receipt for it.
#[derive(Debug, Clone)]
pub struct Recent {
    pub at_ms: u64,
    pub answer: Value,
    pub receipt: Option<Value>,
}

pub struct Store {
    path: PathBuf,
    state: Mutex<State>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, String> {
        let mut state = State::default();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    if let Ok(v) = serde_json::from_str::<Value>(line) {
                        apply(&mut state, v);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        Ok(Store {
            path: path.to_path_buf(),
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest answer for `guid`, and how many times it was sent.
    pub fn sent(&self, guid: &str) -> Option<(Value, u32)> {
        self.lock()
            .sent
            .get(guid)
            .map(|s| (s.answer.clone(), s.count))
    }

    pub fn seen(&self, id: &str) -> bool {
        self.lock().seen.contains(id)
    }

    pub fn record_sent(&self, guid: &str, answer: &Value) -> Result<(), String> {
        self.append(
            json!({"kind": "sent", "guid": guid, "at": crate::ukey::now_ms(), "answer": answer}),
        )
    }

    /// Records a receipt event under its identities `ids`.
    pub fn record_receipt(&self, ids: &[String], event: &Value) -> Result<(), String> {
        self.append(
            json!({"kind": "receipt", "ids": ids, "at": crate::ukey::now_ms(), "event": event}),
        )
    }

    fn append(&self, record: Value) -> Result<(), String> {
        let mut state = self.lock();
        let mut line = record.to_string();
        line.push('\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(line.as_bytes())?;
                f.sync_data()
            })
            .map_err(|e| format!("cannot append to {}: {e}", self.path.display()))?;
        apply(&mut state, record);
        Ok(())
    }

    /// The last `n` messages sent (one line per guid, its latest send), newest first, each
    /// with the latest receipt matched to it.
    pub fn recent(&self, n: usize) -> Vec<Recent> {
        let state = self.lock();
        state
            .recent
            .iter()
            .rev()
            .take(n)
            .filter_map(|guid| {
                let s = state.sent.get(guid)?;
                Some(Recent {
                    at_ms: s.at,
                    answer: s.answer.clone(),
                    receipt: s.latest.clone(),
                })
            })
            .collect()
    }

    /// Everything sent and received whose guid or business keys equal `value` (for `field`,
    /// or any field when `field` is `guid`), newest first.
    pub fn find(&self, field: &str, value: &str) -> Vec<Value> {
        let state = self.lock();
        // receipts carry customs' guid: also match them by the keys of what was sent
        let mut keys: Vec<(String, String)> = vec![(field.to_string(), value.to_string())];
        if let Some(sent) = state.sent.get(value).filter(|_| field == "guid")
            && let Some(k) = sent.answer["keys"].as_object()
        {
            for (n, v) in k {
                if let Some(v) = v.as_str() {
                    keys.push((n.clone(), v.to_string()));
                }
            }
        }
        let matches = |r: &Value| {
            let body = if r["kind"] == "sent" {
                &r["answer"]
            } else {
                &r["event"]
            };
            if field == "guid" && (body["guid"] == value || r["guid"] == value) {
                return true;
            }
            if field == "guid"
                && body["returnInfo"]
                    .as_str()
                    .is_some_and(|i| i.contains(value))
            {
                return true;
            }
            keys.iter().any(|(n, v)| {
                (n == field || STRONG.contains(&n.as_str()))
                    && body["keys"][n.as_str()] == v.as_str()
            })
        };
        state
            .records
            .iter()
            .rev()
            .filter(|r| matches(r))
            .cloned()
            .collect()
    }
}

fn apply(state: &mut State, v: Value) {
    match v["kind"].as_str() {
        Some("sent") => {
            if let Some(g) = v["guid"].as_str() {
                let at = v["at"].as_u64().unwrap_or(0);
                let entry = state.sent.entry(g.to_string()).or_insert(Sent {
                    answer: Value::Null,
                    count: 0,
                    at,
                    latest: None,
                });
                entry.answer = v["answer"].clone();
                entry.count += 1;
                entry.at = at;
                remember_sent(state, g, &v["answer"]);
            }
        }
        Some("receipt") => {
            for id in v["ids"].as_array().into_iter().flatten() {
                if let Some(id) = id.as_str() {
                    state.seen.insert(id.to_string());
                }
            }
            match_receipt(state, &v["event"]);
        }
        _ => return,
    }
    state.records.push(v);
}

fn remember_sent(state: &mut State, guid: &str, answer: &Value) {
    state.recent.retain(|g| g != guid);
    state.recent.push(guid.to_string());
    if state.recent.len() > RECENT {
        state.recent.remove(0);
    }
    let Some(rtype) = answer["msg_type"].as_str().and_then(receipt_type) else {
        return;
    };
    for (k, val) in answer["keys"].as_object().into_iter().flatten() {
        if let (true, Some(val)) = (STRONG.contains(&k.as_str()), val.as_str()) {
            state
                .by_key
                .insert(format!("{rtype} {k} {val}"), guid.to_string());
        }
    }
}

/// Finds the message a receipt answers (by business key of the receipt's type, else by the
/// sent guid echoed in `returnInfo` as `新增申报成功[<guid>]` or in the receipt's `guid`) and
/// keeps it as that message's latest when it is not older than the one kept.
fn match_receipt(state: &mut State, event: &Value) {
    let rtype = event["msg_type"].as_str().unwrap_or("");
    let by_key = event["keys"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| STRONG.contains(&k.as_str()))
        .find_map(|(k, val)| state.by_key.get(&format!("{rtype} {k} {}", val.as_str()?)))
        .cloned();
    let echoed = || {
        let info = event["returnInfo"].as_str().unwrap_or("");
        info.split('[')
            .filter_map(|p| p.split(']').next())
            .chain(event["guid"].as_str())
            .find(|g| state.sent.contains_key(*g))
            .map(str::to_string)
    };
    let Some(guid) = by_key.or_else(echoed) else {
        return;
    };
    let Some(sent) = state.sent.get_mut(&guid) else {
        return;
    };
    let time = |e: &Value| e["returnTimeRaw"].as_str().unwrap_or("").to_string();
    if sent
        .latest
        .as_ref()
        .is_none_or(|old| time(event) >= time(old))
    {
        sent.latest = Some(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_receipt_is_matched_to_what_was_sent() {
        assert_eq!(
            receipt_type("CEB311Message").as_deref(),
            Some("CEB312Message")
        );
        assert_eq!(
            receipt_type("CEB621Message").as_deref(),
            Some("CEB622Message")
        );
        assert_eq!(receipt_type("Order"), None);
        let path = std::env::temp_dir().join(format!("store-{}.jsonl", uuid::Uuid::new_v4()));
        let store = Store::open(&path).unwrap();
        let sent = |guid: &str, t: &str, keys: Value| {
            store
                .record_sent(guid, &json!({"guid": guid, "msg_type": t, "keys": keys}))
                .unwrap()
        };
        // an inventory carries the order's number too: a 312 must still find the order
        sent(
            "G-ORDER",
            "CEB311Message",
            json!({"orderNo": "O1", "ebpCode": "E"}),
        );
        sent(
            "G-INVT",
            "CEB621Message",
            json!({"orderNo": "O1", "copNo": "C1", "ebpCode": "E"}),
        );
        sent("G-WAIT", "CEB511Message", json!({"logisticsNo": "L1"}));
        let receipt = |t: &str, keys: Value, code: &str, time: &str, info: &str| {
            store
                .record_receipt(
                    &[format!("{t}{code}{time}")],
                    &json!({"msg_type": t, "keys": keys, "returnStatus": code,
                            "returnTimeRaw": time, "returnInfo": info, "guid": "CUSTOMS"}),
                )
                .unwrap()
        };
        receipt(
            "CEB312Message",
            json!({}),
            "2",
            "20240101000000001",
            "新增申报成功[G-ORDER]",
        );
        receipt(
            "CEB312Message",
            json!({"orderNo": "O1"}),
            "120",
            "20240101000000003",
            "",
        );
        // an older status arriving late does not hide the newer one
        receipt(
            "CEB312Message",
            json!({"orderNo": "O1"}),
            "3",
            "20240101000000002",
            "",
        );
        receipt(
            "CEB622Message",
            json!({"copNo": "C1"}),
            "800",
            "20240101000000009",
            "",
        );
        let check = |store: &Store| {
            let r = store.recent(RECENT);
            let seen: Vec<(&str, Option<&str>)> = r
                .iter()
                .map(|x| {
                    (
                        x.answer["guid"].as_str().unwrap(),
                        x.receipt.as_ref().and_then(|e| e["returnStatus"].as_str()),
                    )
                })
                .collect();
            assert_eq!(
                seen,
                [
                    ("G-WAIT", None),
                    ("G-INVT", Some("800")),
                    ("G-ORDER", Some("120"))
                ]
            );
        };
        check(&store);
        // rebuilt from the file on start
        check(&Store::open(&path).unwrap());
        // sent again: first in the list, once
        sent("G-ORDER", "CEB311Message", json!({"orderNo": "O1"}));
        assert_eq!(store.recent(1)[0].answer["guid"], "G-ORDER");
        assert_eq!(store.recent(RECENT).len(), 3);
        std::fs::remove_file(&path).unwrap();
    }
}
