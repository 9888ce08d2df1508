//! Command-line parsing: `-config PATH` (the Go proxy's spelling), `--config`, `--simulate`,
//! the `simulate` subcommand, `--version` and `--help`.

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the proxy; with `simulate`, also a UKey simulator on `ukey.url`.
    Run {
        config: Option<PathBuf>,
        simulate: bool,
    },
    /// Run only the UKey simulator.
    Simulate {
        config: Option<PathBuf>,
        listen: Option<String>,
    },
    Version,
    Help,
}

pub const USAGE: &str = "\
chinaport-proxy: use a China E-Port customs UKey over HTTP

USAGE:
    chinaport-proxy [-config PATH] [--simulate]
    chinaport-proxy simulate [-config PATH] [--listen HOST:PORT]
    chinaport-proxy --version | --help

OPTIONS:
    -config, --config PATH   configuration file (default: config.json next to the
                             executable, then in the working directory)
    --simulate               also run a UKey simulator on ukey.url (no card needed;
                             its signatures are NOT valid at customs)
    --listen HOST:PORT       where `simulate` listens (default: the host and port of ukey.url)
    -V, --version            print the version
    -h, --help               print this help
";

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, String> {
    let mut args = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    let mut config = None;
    let mut simulate = false;
    let mut subcommand_simulate = false;
    let mut listen = None;
    let mut first = true;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" | "-help" => return Ok(Command::Help),
            "-V" | "--version" | "-version" => return Ok(Command::Version),
            "-config" | "--config" | "-c" => config = Some(PathBuf::from(value(&flag)?)),
            "--simulate" | "-simulate" => simulate = true,
            "--listen" | "-listen" => listen = Some(value(&flag)?),
            "simulate" if first => subcommand_simulate = true,
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
        first = false;
    }
    if subcommand_simulate {
        return Ok(Command::Simulate { config, listen });
    }
    if listen.is_some() {
        return Err("--listen goes with the `simulate` subcommand".into());
    }
    Ok(Command::Run { config, simulate })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn config_spellings() {
        for args in [
            &["-config", "a.json"][..],
            &["--config", "a.json"],
            &["--config=a.json"],
            &["-config=a.json"],
        ] {
            assert_eq!(
                p(args).unwrap(),
                Command::Run {
                    config: Some("a.json".into()),
                    simulate: false
                }
            );
        }
        assert_eq!(
            p(&[]).unwrap(),
            Command::Run {
                config: None,
                simulate: false
            }
        );
    }

    #[test]
    fn subcommands_and_flags() {
        assert_eq!(p(&["--version"]).unwrap(), Command::Version);
        assert_eq!(p(&["-h"]).unwrap(), Command::Help);
        assert_eq!(
            p(&["--simulate"]).unwrap(),
            Command::Run {
                config: None,
                simulate: true
            }
        );
        assert_eq!(
            p(&["simulate", "--listen", "127.0.0.1:1"]).unwrap(),
            Command::Simulate {
                config: None,
                listen: Some("127.0.0.1:1".into())
            }
        );
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["-config"]).is_err());
        assert!(p(&["--listen", "x"]).is_err());
    }
}
