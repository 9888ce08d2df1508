//! Loading the configuration for a command: find and parse it, check the key material it names,
//! install the secret masker and start logging. A failure is one line naming the file and field.

use crate::config::{self, Config, ConfigError};
use crate::logging;
use crate::mask::{self, Masker};
use std::path::{Path, PathBuf};

/// Finds, parses and validates the configuration, including the clients' keys (which `auth`
/// decodes: `config` is plain data and does not know key formats).
pub fn validated(path: Option<&Path>) -> Result<(Config, PathBuf), ConfigError> {
    let (config, path) = config::locate_and_load(path)?;
    crate::auth::clients_of(&config.auth).map_err(|reason| ConfigError::Invalid {
        path: path.clone(),
        field: "auth.clients",
        reason,
    })?;
    crate::outbound::TlsTrust::from_config(&config, &path).map_err(|reason| {
        ConfigError::Invalid {
            path: path.clone(),
            field: "webhook.ca_file",
            reason,
        }
    })?;
    Ok((config, path))
}

/// `validated`, then the masker and logging (to `log.file` when set). A configuration that
/// cannot be read is also written next to the executable, since `log.file` is unknown then.
pub fn load(path: Option<PathBuf>) -> Result<(Config, PathBuf), String> {
    let (config, path) = validated(path.as_deref()).map_err(|e| {
        let message = e.to_string();
        logging::early_error(&message);
        message
    })?;
    mask::install_global(Masker::new(config.secrets()));
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
