//! Entry point: parses the command line and wires config, logging, the UKey thread, the
//! simulator and the HTTP server together. No logic of its own.

use chinaport_proxy::cli::{self, Command};
use chinaport_proxy::config::{self, Config};
use chinaport_proxy::logging;
use chinaport_proxy::mask::{self, Masker};
use chinaport_proxy::server::{self, App, HttpServer};
use chinaport_proxy::simulator::{SimOptions, Simulator};
use chinaport_proxy::ukey::{Ukey, conn::Endpoint};
use std::path::PathBuf;
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
        Ok(Command::Simulate { config, listen }) => simulate_only(config, listen),
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

fn load(path: Option<PathBuf>) -> Result<Config, String> {
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
    Ok(config)
}

fn start_simulator(config: &Config, listen: Option<String>) -> Result<Simulator, String> {
    let listen = match listen {
        Some(l) => l,
        None => {
            let ep = Endpoint::parse(&config.ukey.url)?;
            format!("{}:{}", ep.host, ep.port)
        }
    };
    let sim = Simulator::start(SimOptions {
        listen: listen.clone(),
        password: config.ukey.password.clone(),
        ..SimOptions::default()
    })
    .map_err(|e| format!("cannot start the UKey simulator on {listen}: {e}"))?;
    log::warn!(
        "UKey SIMULATOR listening on {} — its signatures are NOT valid at customs",
        sim.url()
    );
    Ok(sim)
}

fn run(config_path: Option<PathBuf>, simulate: bool) -> Result<(), String> {
    let config = load(config_path)?;
    let _simulator = if simulate {
        Some(start_simulator(&config, None)?)
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

fn simulate_only(config_path: Option<PathBuf>, listen: Option<String>) -> Result<(), String> {
    let config = load(config_path)?;
    let _sim = start_simulator(&config, listen)?;
    loop {
        std::thread::park();
    }
}
