//! `simulate` and `--simulate`: starting the built-in UKey simulator next to (or instead of) the
//! proxy, its key kept next to the configuration so that its certificate survives restarts; with
//! `--transfer`, the simulated customs transfer client on the transfer folders.

use crate::config::{Config, Endpoint, TransferConfig};
#[cfg(feature = "simulator")]
pub use crate::simulator::Simulator;
use crate::transfer::Transfer;
use crossbeam_channel::Receiver;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Stands in for the simulator in a build without it; never constructed.
#[cfg(not(feature = "simulator"))]
pub struct Simulator;

/// Starts the simulator on `listen` (default: where `ukey.url` points), playing a `card` card
/// ("sm2" or "rsa").
#[cfg(feature = "simulator")]
pub fn start(
    config: &Config,
    config_path: &Path,
    listen: Option<String>,
    card: &str,
) -> Result<Simulator, String> {
    use crate::simulator::{CardKind, SimOptions};
    let kind = CardKind::parse(card).unwrap_or_default();
    let listen = match listen {
        Some(l) => l,
        None => {
            let ep = Endpoint::parse(&config.ukey.url)?;
            format!("{}:{}", ep.host, ep.port)
        }
    };
    let key_file = key_file(config_path, kind);
    let sim = Simulator::start(SimOptions {
        listen: listen.clone(),
        password: config.ukey.password.clone(),
        key_file: Some(key_file.clone()),
        card: kind,
        cert_days: None,
    })
    .map_err(|e| format!("cannot start the UKey simulator on {listen}: {e}"))?;
    log::warn!(
        "UKey SIMULATOR ({} card) listening on {} (key {}): its signatures are NOT valid at customs",
        kind.name(),
        sim.url(),
        key_file.display()
    );
    Ok(sim)
}

#[cfg(not(feature = "simulator"))]
pub fn start(_: &Config, _: &Path, _: Option<String>, _: &str) -> Result<Simulator, String> {
    let _ = Endpoint::parse;
    Err("this build has no UKey simulator (built without the `simulator` feature)".into())
}

/// `--transfer` with no transfer folders configured: `transfer/outbox` and `transfer/inbox` next
/// to the configuration, so that the loop runs with nothing set up.
pub fn transfer_defaults(t: &mut TransferConfig) {
    if t.outbox.is_empty() && t.inbox.is_empty() && t.client_settings.is_empty() {
        t.outbox = "transfer/outbox".into();
        t.inbox = "transfer/inbox".into();
    }
}

/// Starts the simulated transfer client on `transfer`'s folders, accepting `sim`'s signatures.
#[cfg(feature = "simulator")]
pub fn start_transfer_client(
    sim: &Simulator,
    transfer: &Transfer,
    stop: Receiver<()>,
) -> Result<JoinHandle<()>, String> {
    use crate::simulator::transfer::{ClientOptions, spawn};
    let f = &transfer.folders;
    let options = ClientOptions::beside(
        &f.outbox,
        &f.inbox,
        transfer.poll,
        sim.cert_no(),
        sim.sign_cert_der(),
    );
    spawn(options, stop).map_err(|e| format!("cannot start the simulated transfer client: {e}"))
}

#[cfg(not(feature = "simulator"))]
pub fn start_transfer_client(
    _: &Simulator,
    _: &Transfer,
    _: Receiver<()>,
) -> Result<JoinHandle<()>, String> {
    Err("this build has no simulators (built without the `simulator` feature)".into())
}

/// One key file per card kind next to the configuration (the RSA one keeps its old name).
#[cfg(feature = "simulator")]
fn key_file(config_path: &Path, kind: crate::simulator::CardKind) -> PathBuf {
    let name = match kind {
        crate::simulator::CardKind::Rsa => "simulator-ukey.pem",
        crate::simulator::CardKind::Sm2 => "simulator-ukey-sm2.pem",
    };
    config_path.parent().unwrap_or(Path::new(".")).join(name)
}

/// `simulate`: only the simulator, with the fault knobs given on the command line, until killed.
pub fn run_only(
    config_path: Option<PathBuf>,
    listen: Option<String>,
    faults: &serde_json::Value,
    card: &str,
) -> Result<(), String> {
    let (config, path) = super::load::load(config_path)?;
    let sim = start(&config, &path, listen, card)?;
    #[cfg(feature = "simulator")]
    log::info!("simulator faults: {}", sim.faults().apply(faults));
    #[cfg(not(feature = "simulator"))]
    let _ = (sim, faults);
    loop {
        std::thread::park();
    }
}
