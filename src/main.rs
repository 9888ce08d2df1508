//! Entry point: parses the command line and wires config, logging, the UKey thread, the
//! simulator and the HTTP server together. No logic of its own.

use chinaport_proxy::auth::Scheme;
use chinaport_proxy::auth::outgoing::{OutKey, Signer};
use chinaport_proxy::cli::{self, Command};
use chinaport_proxy::config::{self, Config};
use chinaport_proxy::http::{self as server, App, HttpServer};
use chinaport_proxy::logging;
use chinaport_proxy::mask::{self, Masker};
use chinaport_proxy::shutdown;
#[cfg(feature = "simulator")]
use chinaport_proxy::simulator::{SimOptions, Simulator};
use chinaport_proxy::ukey::Ukey;
use chinaport_proxy::webhook::{WebhookSettings, Webhooks};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
        Ok(Command::CheckConfig { config }) => check_config(config),
        Ok(Command::Sign(args)) => sign(&args),
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
    let (config, path) = config::locate_and_load(path.as_deref()).map_err(|e| {
        let message = e.to_string();
        logging::early_error(&message);
        message
    })?;
    mask::install_global(Masker::new([
        config.ukey.password.clone(),
        config.auth.app_secret.clone(),
    ]));
    let log_file = config.log_path();
    let rotation = log_file
        .as_deref()
        .map(|p| (p, config.log.max_size_mb * 1024 * 1024, config.log.keep));
    logging::init(config.log.verbose, rotation).map_err(|e| {
        let message = format!(
            "cannot open the log file {}: {e}",
            log_file.as_deref().unwrap_or(Path::new("")).display()
        );
        logging::early_error(&message);
        message
    })?;
    log::info!(
        "chinaport-proxy {} using {}",
        env!("CARGO_PKG_VERSION"),
        path.display()
    );
    Ok((config, path))
}

/// `sign`: signs a request by hand and prints the headers and a ready curl command.
fn sign(a: &cli::SignArgs) -> Result<(), String> {
    let scheme = Scheme::parse(&a.scheme).ok_or_else(|| {
        format!(
            "unknown scheme {:?} (md5, hmac, httpsig, checksum)",
            a.scheme
        )
    })?;
    let key = match (&a.key, &a.ed25519_key) {
        (Some(secret), _) => OutKey::Secret(secret.clone()),
        (None, Some(k)) => {
            let text = match k.strip_prefix('@') {
                Some(file) => {
                    std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?
                }
                None => k.clone(),
            };
            OutKey::Ed25519(chinaport_proxy::auth::outgoing::parse_ed25519_private(
                &text,
            )?)
        }
        (None, None) => return Err("sign needs --key or --ed25519-key".into()),
    };
    let signer = Signer {
        scheme,
        key,
        key_id: a.key_id.clone().unwrap_or_else(|| "default".into()),
        checksum: chinaport_proxy::config::ChecksumConfig::default(),
    };
    let now = chinaport_proxy::ukey::now_ms();
    let signed = signer.sign(&a.method, &a.url, a.body.as_bytes(), now)?;
    let body = String::from_utf8_lossy(&signed.body).into_owned();
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut curl = format!(
        "curl -sS -X {} -H 'Content-Type: application/json'",
        a.method
    );
    for (n, v) in &signed.headers {
        curl.push_str(&format!(" -H {}", quote(&format!("{n}: {v}"))));
    }
    if !body.is_empty() {
        curl.push_str(&format!(" --data-binary {}", quote(&body)));
    }
    curl.push_str(&format!(" {}", quote(&a.url)));
    if a.json {
        let out = serde_json::json!({"headers": signed.headers, "body": body, "curl": curl});
        println!("{out}");
        return Ok(());
    }
    println!(
        "# {} signature for {} {} (valid for a few seconds, once)",
        scheme.name(),
        a.method,
        a.url
    );
    for (n, v) in &signed.headers {
        println!("{n}: {v}");
    }
    if scheme == Scheme::Checksum {
        println!("# signed body:\n{body}");
    }
    println!("# curl:\n{curl}");
    Ok(())
}

/// `check-config`: validates, then prints the effective settings with secrets masked.
fn check_config(path: Option<PathBuf>) -> Result<(), String> {
    let (config, path) = config::locate_and_load(path.as_deref()).map_err(|e| e.to_string())?;
    println!("# {} is valid; effective settings:", path.display());
    let text = serde_json::to_string_pretty(&config.masked_json()).map_err(|e| e.to_string())?;
    println!("{text}");
    if let Some(log) = config.log_path() {
        println!("# log file: {}", log.display());
    }
    Ok(())
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

/// How long in-flight requests may take to finish after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn run(config_path: Option<PathBuf>, simulate: bool) -> Result<(), String> {
    let (config, path) = load(config_path)?;
    let signals = shutdown::install()?;
    let _simulator = if simulate {
        Some(start_simulator(&config, &path, None)?)
    } else {
        None
    };
    // Bind first: a second copy (port in use) must fail before it touches the card.
    let listener = server::bind(&config.server).map_err(|e| e.to_string())?;
    let (events_tx, events_rx) = crossbeam_channel::bounded(64);
    let (ukey, ukey_thread) = Ukey::spawn(&config.ukey, Some(events_tx))
        .map_err(|e| format!("cannot start the UKey thread: {e}"))?;
    let (stop_webhooks, stop_rx) = crossbeam_channel::bounded(1);
    let (webhooks, webhook_thread) = Webhooks::start(
        webhook_settings(&config, &path),
        mask::global().clone(),
        events_rx,
        stop_rx,
    )?;
    let app = Arc::new(App::new(
        config,
        ukey.clone(),
        mask::global().clone(),
        webhooks,
    )?);
    let http =
        HttpServer::start(listener, app.clone()).map_err(|e| format!("cannot start HTTP: {e}"))?;
    log::info!("listening on http://{}", http.addr);

    signals.wait();
    log::info!(
        "stop requested: no new connections; letting {} request(s) finish (up to {} s)",
        app.in_flight.load(Ordering::SeqCst),
        DRAIN_TIMEOUT.as_secs()
    );
    http.close_listener();
    app.draining.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while app.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = app.in_flight.load(Ordering::SeqCst);
    if left > 0 {
        log::warn!(
            "{left} request(s) still running after {} s; stopping anyway",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    http.stop();
    ukey.shutdown();
    join_within(ukey_thread, Duration::from_secs(3));
    // undelivered events stay in the journal and go out after the next start
    let _ = stop_webhooks.try_send(());
    if let Some(t) = webhook_thread {
        join_within(t, Duration::from_secs(2));
    }
    log::info!("stopped");
    Ok(())
}

fn webhook_settings(config: &Config, config_path: &Path) -> WebhookSettings {
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let journal = match config.webhook.journal_path.as_str() {
        "" => dir.join("webhook-journal.jsonl"),
        p => dir.join(p), // an absolute path stays as it is
    };
    WebhookSettings {
        audit_url: config.webhook.audit_url.clone(),
        failure_url: config.webhook.failure_url.clone(),
        signer: webhook_signer(config).map(Arc::new),
        journal_path: journal,
        journal_max_bytes: config.webhook.journal_max_bytes,
        system_roots: config.webhook.tls_roots == "system",
    }
}

/// Webhooks are signed with `webhook.sign_scheme` (default: the first accepted scheme) and
/// `auth.app_secret`; without a secret they go unsigned.
fn webhook_signer(config: &Config) -> Option<Signer> {
    if config.auth.app_secret.is_empty() {
        return None;
    }
    let name = match config.webhook.sign_scheme.as_str() {
        "" => config
            .auth
            .scheme
            .first()
            .map(String::as_str)
            .unwrap_or("md5"),
        s => s,
    };
    Some(Signer {
        scheme: Scheme::parse(name).unwrap_or(Scheme::Md5),
        key: OutKey::Secret(config.auth.app_secret.clone()),
        key_id: config.webhook.key_id.clone(),
        checksum: config.auth.checksum.clone(),
    })
}

/// Waits for a thread to end, at most `limit`.
fn join_within(thread: std::thread::JoinHandle<()>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if thread.is_finished() {
        let _ = thread.join();
    }
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
