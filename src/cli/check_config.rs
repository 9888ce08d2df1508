//! `check-config`: validates a configuration and prints the effective settings, secrets masked.

use std::path::PathBuf;

pub fn run(path: Option<PathBuf>) -> Result<(), String> {
    let (config, path) = super::load::validated(path.as_deref()).map_err(|e| e.to_string())?;
    println!("# {} is valid; effective settings:", path.display());
    let text = serde_json::to_string_pretty(&config.masked_json()).map_err(|e| e.to_string())?;
    println!("{text}");
    if let Some(log) = config.log_path() {
        println!("# log file: {}", log.display());
    }
    Ok(())
}
