//! Logging set-up: env_logger at INFO (DEBUG with `log.verbose`, `RUST_LOG` overrides), with
//! every line passed through the secret masker before it is written.

use std::io::Write;

/// Initialises the global logger. Safe to call once; later calls are ignored.
pub fn init(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let env = env_logger::Env::default().default_filter_or(format!(
        "chinaport_proxy={default},{}",
        if verbose { "info" } else { "warn" }
    ));
    let _ = env_logger::Builder::from_env(env)
        .format(|buf, record| {
            let line = crate::mask::global().mask_str(&record.args().to_string());
            writeln!(
                buf,
                "{} {:<5} {line}",
                buf.timestamp_millis(),
                record.level()
            )
        })
        .try_init();
}
