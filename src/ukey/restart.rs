//! Restarting the E-Port client software when it wedges (the key's LED goes dark, replies
//! `Err:Custom50070` or `Err:Custom50200`), as operators otherwise do by hand. The command is
//! `ukey.client_restart_command` (program and arguments, never a shell line), or on Windows the
//! vendor's `SetAccessControl.exe -restart -i` when it is found. Automatic runs are rate-limited
//! and run on a thread of their own, so the UKey thread never waits for them; at most one runs
//! at a time. Each run is logged with its exit status and (bounded) output, reported by the
//! failure webhook `client_restarted`, and shown in `/health`.

use super::{Status, UkeyEvent};
use crate::config::UkeyConfig;
use crate::time::now_ms;
use crossbeam_channel::Sender;
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The vendor's control tool and the arguments that restart the client software.
pub const VENDOR_TOOL: &str = "SetAccessControl.exe";
pub const VENDOR_ARGS: [&str; 2] = ["-restart", "-i"];
/// The card's replies that call for a restart.
pub const RESTART_CODES: [&str; 2] = ["Err:Custom50070", "Err:Custom50200"];
/// A run that takes longer is killed.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Output kept per run (stdout and stderr together).
const OUTPUT_KEPT: usize = 2000;

/// Why a restart was not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartError {
    NotConfigured,
    AlreadyRunning,
    TooSoon(Duration),
}

impl std::fmt::Display for RestartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartError::NotConfigured => write!(
                f,
                "no restart command: set ukey.client_restart_command (program and arguments), or on \
                 Windows install the E-Port client software so that {VENDOR_TOOL} is found"
            ),
            RestartError::AlreadyRunning => {
                write!(f, "a restart of the client software is running")
            }
            RestartError::TooSoon(left) => write!(
                f,
                "the client software was restarted less than ukey.client_restart_min_interval_s ago; next possible in {} s",
                left.as_secs()
            ),
        }
    }
}

#[derive(Default)]
struct State {
    running: bool,
    last_start: Option<Instant>,
}

/// Runs the restart command; shared by the UKey thread and the HTTP handlers.
pub struct Restarter {
    command: Option<Vec<String>>,
    min_interval: Duration,
    state: Mutex<State>,
    status: Arc<Status>,
    events: Option<Sender<UkeyEvent>>,
}

impl Restarter {
    pub fn new(
        config: &UkeyConfig,
        status: Arc<Status>,
        events: Option<Sender<UkeyEvent>>,
    ) -> Restarter {
        let command = if !config.client_restart_command.is_empty() {
            Some(config.client_restart_command.clone())
        } else if cfg!(windows) {
            discover().map(|tool| {
                std::iter::once(tool.display().to_string())
                    .chain(VENDOR_ARGS.iter().map(|a| a.to_string()))
                    .collect()
            })
        } else {
            None
        };
        match &command {
            Some(c) => log::info!("client software restart command: {}", c.join(" ")),
            None => log::info!(
                "client software restart: no command (ukey.client_restart_command is empty)"
            ),
        }
        Restarter {
            command,
            min_interval: Duration::from_secs(config.client_restart_min_interval_s),
            state: Mutex::new(State::default()),
            status,
            events,
        }
    }

    /// An automatic restart, for `reason`: skipped when none is configured, one is running, or
    /// the last one started less than `min_interval` ago. Runs on a thread of its own.
    pub fn trigger(self: &Arc<Self>, reason: &str) {
        match self.claim(true) {
            Ok(()) => {
                let me = self.clone();
                let reason = reason.to_string();
                let spawned = std::thread::Builder::new()
                    .name("client-restart".into())
                    .spawn(move || {
                        me.run(&reason);
                    });
                if spawned.is_err() {
                    self.release();
                }
            }
            Err(RestartError::NotConfigured) => {}
            Err(e) => log::debug!("client software restart for {reason:?} skipped: {e}"),
        }
    }

    /// A restart on demand: runs now (not limited by the interval) and returns the outcome.
    pub fn run_now(&self, reason: &str) -> Result<Value, RestartError> {
        self.claim(false)?;
        Ok(self.run(reason))
    }

    fn claim(&self, limited: bool) -> Result<(), RestartError> {
        if self.command.is_none() {
            return Err(RestartError::NotConfigured);
        }
        let mut s = crate::sync::lock(&self.state);
        if s.running {
            return Err(RestartError::AlreadyRunning);
        }
        if limited
            && let Some(last) = s.last_start
            && last.elapsed() < self.min_interval
        {
            return Err(RestartError::TooSoon(self.min_interval - last.elapsed()));
        }
        s.running = true;
        s.last_start = Some(Instant::now());
        Ok(())
    }

    fn release(&self) {
        crate::sync::lock(&self.state).running = false;
    }

    /// Runs the command (claimed), logs, reports and publishes the outcome.
    fn run(&self, reason: &str) -> Value {
        let command = self.command.clone().unwrap_or_default();
        log::warn!(
            "restarting the E-Port client software ({reason}): {}",
            command.join(" ")
        );
        let started = Instant::now();
        let (exit, output, error) = run_bounded(&command, RUN_LIMIT);
        let output = crate::mask::global().mask_str(&output);
        let ok = exit == Some(0);
        let outcome = json!({
            "time_ms": now_ms(),
            "reason": reason,
            "command": command,
            "ok": ok,
            "exit_code": exit,
            "output": output,
            "error": error,
            "duration_ms": started.elapsed().as_millis() as u64,
        });
        if ok {
            log::info!(
                "client software restart finished: exit 0 in {} ms; output: {output}",
                started.elapsed().as_millis()
            );
        } else {
            log::error!(
                "client software restart failed: {}; output: {output}",
                error.clone().unwrap_or_else(|| format!("exit {exit:?}"))
            );
        }
        *crate::sync::lock(&self.status.client_restart) = Some(outcome.clone());
        if let Some(tx) = &self.events {
            let _ = tx.try_send(UkeyEvent::ClientRestarted {
                outcome: outcome.clone(),
            });
        }
        self.release();
        outcome
    }
}

/// Runs `command` (no shell), waiting at most `limit` (then kills it). Returns the exit code,
/// the first `OUTPUT_KEPT` bytes of stdout and stderr, and why it could not run.
fn run_bounded(command: &[String], limit: Duration) -> (Option<i32>, String, Option<String>) {
    let Some((program, args)) = command.split_first() else {
        return (None, String::new(), Some("no command".into()));
    };
    let mut child = match crate::memory::for_child(&mut Command::new(program))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return (
                None,
                String::new(),
                Some(format!("cannot start {program}: {e}")),
            );
        }
    };
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 1024];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = OUTPUT_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            kept
        })
    })
    .collect();
    let deadline = Instant::now() + limit;
    let (exit, error) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status.code(), None),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break (
                    None,
                    Some(format!("still running after {} s; killed", limit.as_secs())),
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break (None, Some(e.to_string())),
        }
    };
    let mut output = Vec::new();
    for r in readers {
        output.extend(r.join().unwrap_or_default());
    }
    output.truncate(OUTPUT_KEPT);
    (
        exit,
        String::from_utf8_lossy(&output).trim().to_string(),
        error,
    )
}

/// Where the vendor's tool is looked for on Windows: its usual install folders, then `PATH`.
fn discover() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from(r"C:\中国电子口岸客户端控件")];
    for var in ["ProgramFiles", "ProgramFiles(x86)", "ProgramW6432"] {
        if let Some(base) = std::env::var_os(var) {
            dirs.push(Path::new(&base).join("中国电子口岸客户端控件"));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    find_in(&dirs, VENDOR_TOOL)
}

/// The first `name` found in `dirs`.
pub fn find_in(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Whether a card's errors call for restarting the client software.
pub fn calls_for_restart(errors: &[String]) -> Option<&'static str> {
    RESTART_CODES
        .into_iter()
        .find(|code| errors.iter().any(|e| e.contains(code)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tool_is_found_in_the_first_folder_that_has_it() {
        let a = std::env::temp_dir().join(format!("restart-a-{}", std::process::id()));
        let b = std::env::temp_dir().join(format!("restart-b-{}", std::process::id()));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join(VENDOR_TOOL), b"stub").unwrap();
        assert_eq!(
            find_in(&[a.clone(), b.clone()], VENDOR_TOOL),
            Some(b.join(VENDOR_TOOL))
        );
        assert_eq!(find_in(std::slice::from_ref(&a), VENDOR_TOOL), None);
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }

    #[test]
    fn only_the_reader_errors_call_for_a_restart() {
        assert_eq!(
            calls_for_restart(&["Err:Custom50070".into()]),
            Some("Err:Custom50070")
        );
        assert_eq!(
            calls_for_restart(&["打开读卡器失败".into(), "Err:Custom50200".into()]),
            Some("Err:Custom50200")
        );
        assert_eq!(calls_for_restart(&["Err:Base50000".into()]), None);
    }
}
