//! Transfer for the server (issue 27): resolving its folders, starting the inbox watcher and,
//! with `--simulate --transfer`, the simulated customs transfer client; and stopping them.

use super::simulate::{self, Simulator};
use crate::config::TransferConfig;
use crate::shutdown::join_within;
use crate::transfer::{Transfer, watcher};
use crate::webhook::Webhooks;
use crossbeam_channel::Sender;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The transfer threads, in the order they stop: the simulated client before the watcher.
pub struct Threads(Vec<(Sender<()>, JoinHandle<()>)>);

impl Threads {
    pub fn stop(self) {
        for (stop, thread) in self.0 {
            let _ = stop.try_send(());
            join_within(thread, Duration::from_secs(2));
        }
    }
}

/// Transfer as configured (`None`: off), and its threads. `sim`: the UKey simulator when one
/// runs; `simulate_transfer`: also run the simulated client (default folders set in `config`
/// if none are).
pub fn start(
    config: &mut TransferConfig,
    config_dir: &Path,
    webhooks: &Webhooks,
    sim: Option<&Simulator>,
    simulate_transfer: bool,
) -> Result<(Option<Arc<Transfer>>, Threads), String> {
    if simulate_transfer {
        simulate::transfer_defaults(config);
    }
    let transfer = Transfer::start(config, config_dir)?.map(Arc::new);
    let mut threads = Vec::new();
    match (&transfer, sim, simulate_transfer) {
        // first: the simulated client makes the folders the watcher looks at
        (Some(t), Some(sim), true) => {
            let (stop, stop_rx) = crossbeam_channel::bounded(1);
            threads.push((stop, simulate::start_transfer_client(sim, t, stop_rx)?));
        }
        (None, _, true) => {
            return Err("--transfer: transfer.client_settings found no folders; set transfer.outbox and transfer.inbox".into());
        }
        _ => {}
    }
    if let Some(t) = &transfer {
        let (stop, stop_rx) = crossbeam_channel::bounded(1);
        let thread = watcher::spawn(t.clone(), webhooks.clone(), stop_rx)
            .map_err(|e| format!("cannot start the transfer inbox watcher: {e}"))?;
        threads.push((stop, thread));
    }
    Ok((transfer, Threads(threads)))
}
