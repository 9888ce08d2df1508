//! Stop signals: SIGTERM, SIGINT and SIGHUP on Unix; Ctrl+C, Ctrl+Break and closing the console on
//! Windows. The first asks for a graceful stop; a second one exits at once.
//!
//! (Task Scheduler stops a task with TerminateProcess, which no program can catch: that case is
//! covered by the webhook journal, not here.)

use crossbeam_channel::{Receiver, bounded};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Exit code of a stop forced by a second signal.
pub const FORCED_EXIT_CODE: i32 = 130;

/// The first stop signal, when it comes.
pub struct Signals {
    first: Receiver<()>,
}

/// Installs the handler. Call once.
pub fn install() -> Result<Signals, String> {
    let (tx, first) = bounded(1);
    let count = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = tx.try_send(());
        } else {
            log::warn!("second stop signal: exiting at once");
            std::process::exit(FORCED_EXIT_CODE);
        }
    })
    .map_err(|e| format!("cannot install the stop-signal handler: {e}"))?;
    Ok(Signals { first })
}

impl Signals {
    /// Blocks until the first stop signal.
    pub fn wait(&self) {
        let _ = self.first.recv();
    }
}

/// Waits for a thread to end, at most `limit`.
pub fn join_within(thread: std::thread::JoinHandle<()>, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while !thread.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if thread.is_finished() {
        let _ = thread.join();
    }
}
