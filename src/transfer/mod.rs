//! Handing signed CEB messages to the customs transfer client and bringing its receipts back
//! (issue 27, docs/transfer-client.md). No HTTP in here: `http::transfer` is the thin handler.
//! `folders` finds the folders, `message` reads what is sent, `envelope` wraps and unwraps DXP,
//! `outbox` writes atomically, `receipt` parses what comes back, `decode` honours its encoding,
//! `store` remembers both, `watcher` is the thread that polls the inbox.

pub mod decode;
pub mod envelope;
pub mod folders;
pub mod message;
pub mod outbox;
pub mod receipt;
pub mod store;
pub mod watcher;

use crate::config::{Envelope, TransferConfig};
use folders::Folders;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use store::Store;

/// The transfer settings in force, resolved, and what is remembered.
pub struct Transfer {
    pub folders: Folders,
    pub envelope: Envelope,
    pub dxp_id: String,
    pub poll: Duration,
    pub delete_processed: bool,
    pub store: Store,
    /// Guids being sent now: a second request for one answers 409 instead of writing twice.
    sending: Mutex<HashSet<String>>,
}

impl Transfer {
    /// `None` when transfer is off (no folder configured or found). `config_dir` is where
    /// default folders and the store go.
    pub fn start(config: &TransferConfig, config_dir: &Path) -> Result<Option<Transfer>, String> {
        let Some(folders) = Folders::resolve(config, config_dir)? else {
            return Ok(None);
        };
        let store = Store::open(&config_dir.join("transfer-store.jsonl"))?;
        log::info!(
            "transfer: outbox {}, inbox {}, envelope {:?}",
            folders.outbox.display(),
            folders.inbox.display(),
            config.envelope
        );
        Ok(Some(Transfer {
            folders,
            envelope: config.envelope,
            dxp_id: config.dxp_id.clone(),
            poll: Duration::from_millis(config.poll_ms),
            delete_processed: config.delete_processed,
            store,
            sending: Mutex::new(HashSet::new()),
        }))
    }

    /// Marks `guid` as being sent; false when it already is.
    pub fn begin(&self, guid: &str) -> bool {
        match self.sending.lock() {
            Ok(mut s) => s.insert(guid.to_string()),
            Err(p) => p.into_inner().insert(guid.to_string()),
        }
    }

    pub fn end(&self, guid: &str) {
        match self.sending.lock() {
            Ok(mut s) => s.remove(guid),
            Err(p) => p.into_inner().remove(guid),
        };
    }
}
