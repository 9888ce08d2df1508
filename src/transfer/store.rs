//! What was sent and received, in an append-only JSON-lines file next to the configuration,
//! read back on start (a torn last line from a crash is skipped): the first answer per `guid`
//! (so a repeated send answers it again), and the identities of receipts already delivered (so
//! a receipt seen twice is delivered once). SQLite would not fit the exe budget; this needs none.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Default)]
struct State {
    /// guid → the answer of its latest send, and how many sends there were.
    sent: HashMap<String, (Value, u32)>,
    seen: HashSet<String>,
    /// Every record, oldest first, for `GET /api/receipts`.
    records: Vec<Value>,
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
        self.lock().sent.get(guid).cloned()
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

    /// Everything sent and received whose guid or business keys equal `value` (for `field`,
    /// or any field when `field` is `guid`), newest first.
    pub fn find(&self, field: &str, value: &str) -> Vec<Value> {
        let state = self.lock();
        // receipts carry customs' guid: also match them by the keys of what was sent
        let mut keys: Vec<(String, String)> = vec![(field.to_string(), value.to_string())];
        if let Some((answer, _)) = state.sent.get(value).filter(|_| field == "guid")
            && let Some(k) = answer["keys"].as_object()
        {
            for (n, v) in k {
                if let Some(v) = v.as_str() {
                    keys.push((n.clone(), v.to_string()));
                }
            }
        }
        let strong = [
            "orderNo",
            "copNo",
            "invtNo",
            "logisticsNo",
            "preNo",
            "payTransactionId",
        ];
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
                (n == field || strong.contains(&n.as_str()))
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
                let n = state.sent.get(g).map(|(_, n)| *n).unwrap_or(0) + 1;
                state.sent.insert(g.to_string(), (v["answer"].clone(), n));
            }
        }
        Some("receipt") => {
            for id in v["ids"].as_array().into_iter().flatten() {
                if let Some(id) = id.as_str() {
                    state.seen.insert(id.to_string());
                }
            }
        }
        _ => return,
    }
    state.records.push(v);
}
