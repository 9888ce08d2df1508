//! Entry point: parses the command line and wires config, logging, the UKey thread, the
//! simulator and the HTTP server together. No logic of its own.

use chinaport_proxy::cli::{self, Command};
use chinaport_proxy::config::{self, Config};
use chinaport_proxy::logging;
use chinaport_proxy::mask::{self, Masker};
use chinaport_proxy::server::{self, App, HttpServer};
#[cfg(feature = "simulator")]
use chinaport_proxy::simulator::{SimOptions, Simulator};
use chinaport_proxy::ukey::Ukey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

fn main() -> ExitCode {
    let outcome = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            Ok(())
        }
        Ok(Command::Version) => {
            println!("chinaport-proxy {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Ok(Command::Run { config, simulate }) => run(config, simulate),
        Ok(Command::Simulate {
            config,
            listen,
            faults,
        }) => simulate_only(config, listen, &faults),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // one clear line, in the log when there is one, else on stderr
            if log::log_enabled!(log::Level::Error) {
                log::error!("{e}");
            } else {
                eprintln!("chinaport-proxy: error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<PathBuf>) -> Result<(Config, PathBuf), String> {
    let (config, path) = config::locate_and_load(path.as_deref()).map_err(|e| e.to_string())?;
    mask::install_global(Masker::new([
        config.ukey.password.clone(),
        config.auth.app_secret.clone(),
    ]));
    logging::init(config.log.verbose);
    log::info!(
        "chinaport-proxy {} using {}",
        env!("CARGO_PKG_VERSION"),
        path.display()
    );
    Ok((config, path))
}

/// Stands in for the simulator in a build without it; never constructed.
#[cfg(not(feature = "simulator"))]
struct Simulator;

#[cfg(not(feature = "simulator"))]
fn start_simulator(_: &Config, _: &Path, _: Option<String>) -> Result<Simulator, String> {
    Err("this build has no UKey simulator (built without the `simulator` feature)".into())
}

/// Starts the simulator on `listen` (default: where `ukey.url` points), keeping its key next to
/// the configuration file so that its certificate survives restarts.
#[cfg(feature = "simulator")]
fn start_simulator(
    config: &Config,
    config_path: &Path,
    listen: Option<String>,
) -> Result<Simulator, String> {
    let listen = match listen {
        Some(l) => l,
        None => {
            let ep = chinaport_proxy::ukey::conn::Endpoint::parse(&config.ukey.url)?;
            format!("{}:{}", ep.host, ep.port)
        }
    };
    let key_file = config_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("simulator-ukey.pem");
    let sim = Simulator::start(SimOptions {
        listen: listen.clone(),
        password: config.ukey.password.clone(),
        key_file: Some(key_file.clone()),
    })
    .map_err(|e| format!("cannot start the UKey simulator on {listen}: {e}"))?;
    log::warn!(
        "UKey SIMULATOR listening on {} (key {}): its signatures are NOT valid at customs",
        sim.url(),
        key_file.display()
    );
    Ok(sim)
}

fn run(config_path: Option<PathBuf>, simulate: bool) -> Result<(), String> {
    let (config, path) = load(config_path)?;
    let _simulator = if simulate {
        Some(start_simulator(&config, &path, None)?)
    } else {
        None
    };
    // Bind first: a second copy (port in use) must fail before it touches the card.
    let listener = server::bind(&config.server).map_err(|e| e.to_string())?;
    let (ukey, ukey_thread) = Ukey::spawn(&config.ukey, None)
        .map_err(|e| format!("cannot start the UKey thread: {e}"))?;
    let app = Arc::new(App {
        masker: mask::global().clone(),
        config,
        ukey,
        started: Instant::now(),
    });
    let http = HttpServer::start(listener, app).map_err(|e| format!("cannot start HTTP: {e}"))?;
    log::info!("listening on http://{}", http.addr);
    let _ = ukey_thread.join();
    http.stop();
    Ok(())
}

fn simulate_only(
    config_path: Option<PathBuf>,
    listen: Option<String>,
    faults: &serde_json::Value,
) -> Result<(), String> {
    let (config, path) = load(config_path)?;
    let sim = start_simulator(&config, &path, listen)?;
    #[cfg(feature = "simulator")]
    log::info!("simulator faults: {}", sim.faults().apply(faults));
    #[cfg(not(feature = "simulator"))]
    let _ = (sim, faults);
    loop {
        std::thread::park();
    }
}
