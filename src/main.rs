//! Entry point: parses the command line and wires config, logging, the UKey thread, the
//! webhooks and the HTTP server together. No logic of its own.

use chinaport_proxy::cli::{self, Command};
use chinaport_proxy::http::{self, App, HttpServer};
use chinaport_proxy::mask;
use chinaport_proxy::memory;
use chinaport_proxy::outbound::TlsTrust;
use chinaport_proxy::shutdown::{self, join_within};
use chinaport_proxy::ukey::Ukey;
use chinaport_proxy::webhook::{WebhookSettings, Webhooks};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How long in-flight requests may take to finish after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
        Ok(Command::Run {
            config,
            simulate,
            card,
            transfer,
        }) => {
            memory::without_thread_cache();
            run(config, simulate.then_some(card), transfer)
        }
        Ok(Command::CheckConfig { config }) => cli::check_config::run(config),
        Ok(Command::Sign(args)) => cli::sign::run(&args),
        Ok(Command::Simulate {
            config,
            listen,
            faults,
            card,
        }) => {
            memory::without_thread_cache();
            cli::simulate::run_only(config, listen, &faults, &card)
        }
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

/// The proxy: simulator (if asked), listener, UKey thread, webhooks, HTTP; then wait for a stop
/// signal and drain.
/// `simulate`: the simulator's card kind when one runs alongside; `simulate_transfer`: a
/// simulated customs transfer client too.
fn run(
    config_path: Option<PathBuf>,
    simulate: Option<String>,
    simulate_transfer: bool,
) -> Result<(), String> {
    let (mut config, path) = cli::load::load(config_path)?;
    let signals = shutdown::install()?;
    let simulator = match simulate {
        Some(card) => Some(cli::simulate::start(&config, &path, None, &card)?),
        None => None,
    };
    // Bind first: a second copy (port in use) must fail before it touches the card.
    let listener = http::bind(&config.server).map_err(|e| e.to_string())?;
    let (events_tx, events_rx) = crossbeam_channel::bounded(64);
    let (ukey, ukey_thread) = Ukey::spawn(&config.ukey, Some(events_tx), path.parent())
        .map_err(|e| format!("cannot start the UKey thread: {e}"))?;
    let tls = TlsTrust::from_config(&config, &path).map_err(|e| format!("webhook.ca_file: {e}"))?;
    let (stop_webhooks, stop_rx) = crossbeam_channel::bounded(1);
    let (webhooks, webhook_thread) = Webhooks::start(
        WebhookSettings::from_config(&config, &path, tls.clone()),
        mask::global().clone(),
        events_rx,
        stop_rx,
    )?;
    let (transfer, transfer_threads) = cli::transfer::start(
        &mut config.transfer,
        path.parent().unwrap_or(std::path::Path::new(".")),
        &webhooks,
        simulator.as_ref(),
        simulate_transfer,
    )?;
    let mut app = App::new(config, ukey.clone(), mask::global().clone(), webhooks, &tls)?;
    app.transfer = transfer;
    let app = Arc::new(app);
    let server =
        HttpServer::start(listener, app.clone()).map_err(|e| format!("cannot start HTTP: {e}"))?;
    log::info!("listening on http://{}", server.addr);
    if let Some(warning) =
        chinaport_proxy::auth::exposure::Exposure::of(&app.config).warning(server.addr)
    {
        log::warn!("{warning}");
    }

    signals.wait();
    server.drain(&app, DRAIN_TIMEOUT);
    ukey.shutdown();
    join_within(ukey_thread, Duration::from_secs(3));
    transfer_threads.stop();
    // undelivered events stay in the journal and go out after the next start
    let _ = stop_webhooks.try_send(());
    if let Some(t) = webhook_thread {
        join_within(t, Duration::from_secs(2));
    }
    log::info!("stopped");
    Ok(())
}
