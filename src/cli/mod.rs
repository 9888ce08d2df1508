//! The command line: parsing (`-config PATH`, the Go proxy's spelling, `--config`, `--simulate`,
//! `--version`, `--help`) here, and the commands that are not the server in their own files:
//! `sign`, `check-config`, `simulate`; `transfer` starts transfer's threads for the server.
//! `load` reads the configuration and starts logging for every command that needs them.

pub mod check_config;
pub mod load;
pub mod sign;
pub mod simulate;
pub mod transfer;

use crate::config::Scheme;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the proxy; with `simulate`, also a UKey simulator on `ukey.url`.
    Run {
        config: Option<PathBuf>,
        simulate: bool,
        /// The simulator's card kind, "sm2" (default) or "rsa".
        card: String,
        /// With `simulate`, also a simulated customs transfer client on the transfer folders.
        transfer: bool,
    },
    /// Run only the UKey simulator.
    Simulate {
        config: Option<PathBuf>,
        listen: Option<String>,
        /// Fault knobs, in the form `sim-ctl_Faults` takes.
        faults: serde_json::Value,
        /// The card kind, "sm2" (default) or "rsa".
        card: String,
    },
    /// Validate a config and print the effective settings, secrets masked.
    CheckConfig {
        config: Option<PathBuf>,
    },
    /// Sign a request by hand and print the headers and a curl command.
    Sign(SignArgs),
    Version,
    Help,
}

/// Arguments of `sign`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignArgs {
    pub scheme: Option<Scheme>,
    /// A shared secret.
    pub key: Option<String>,
    /// An Ed25519 private key (httpsig): PEM, base64, or @file.
    pub ed25519_key: Option<String>,
    /// An RSA private key (httpsig rsa-v1_5-sha256): PEM, or @file.
    pub rsa_key: Option<String>,
    pub key_id: Option<String>,
    pub method: String,
    pub url: String,
    pub body: String,
    pub json: bool,
}

pub const USAGE: &str = "\
chinaport-proxy: use a China E-Port customs UKey over HTTP

USAGE:
    chinaport-proxy [-config PATH] [--simulate [--card sm2|rsa] [--transfer]]
    chinaport-proxy simulate [-config PATH] [--listen HOST:PORT] [--card sm2|rsa] [FAULTS]
    chinaport-proxy check-config [-config PATH]
    chinaport-proxy sign --scheme md5|hmac|httpsig|checksum (--key SECRET | --ed25519-key KEY | --rsa-key KEY)
                         [--key-id ID] [--method POST] --url URL [--body JSON] [--json]
    chinaport-proxy --version | --help

OPTIONS:
    -config, --config PATH   configuration file (default: config.json next to the
                             executable, then in the working directory)
    --simulate               also run a UKey simulator on ukey.url (no card needed;
                             its signatures are NOT valid at customs)
    --listen HOST:PORT       where `simulate` listens (default: the host and port of ukey.url)
    --card sm2|rsa           the kind of card the simulator plays: sm2 (default, as cards
                             issued since mid-2022) or rsa (older cards)
    --transfer               with --simulate, also play the customs transfer client
                             (docs/transfer-client.md)

SIGN prints the headers (or, for checksum, the signed body) and a ready curl command, for
testing by hand. --key-id names the client (x-mg-secretid, keyid); --ed25519-key takes a PEM or
base64 private key, or @FILE; --rsa-key a PEM RSA private key (PKCS#8 or PKCS#1), or @FILE,
and signs with rsa-v1_5-sha256.

FAULTS (simulate, for testing how your system copes; also settable at run time by calling
the method sim-ctl_Faults through /rpc, and sim-ctl_Drop drops the connection):
    --latency-ms N           answer every call N ms late
    --silent METHOD          never answer METHOD (repeatable)
    --error METHOD=MESSAGE   answer METHOD with Result:false and MESSAGE (repeatable)
    --drop-after N           close the connection instead of answering the Nth request
    --refuse                 close every connection as soon as it is accepted
    --bad-signatures         sign other data than asked: signatures that do not verify
    -V, --version            print the version
    -h, --help               print this help
";

/// Splits `--flag=value` (or `-flag=value`) into the flag and its inline value.
fn split_flag(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with('-') => (f.to_string(), Some(v.to_string())),
        _ => (arg.to_string(), None),
    }
}

/// A flag's value: given inline, or the next argument.
fn take_value(
    inline: &Option<String>,
    args: &mut impl Iterator<Item = String>,
    name: &str,
) -> Result<String, String> {
    inline
        .clone()
        .or_else(|| args.next())
        .ok_or_else(|| format!("{name} needs a value"))
}

fn parse_sign(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut a = SignArgs {
        method: "POST".into(),
        ..SignArgs::default()
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        let mut value = |name: &str| take_value(&inline, &mut args, name);
        match flag.as_str() {
            "--scheme" => {
                let name = value(&flag)?;
                a.scheme = Some(Scheme::parse(&name).ok_or_else(|| {
                    format!("unknown scheme {name:?} (one of {})", Scheme::choices())
                })?)
            }
            "--key" => a.key = Some(value(&flag)?),
            "--rsa-key" => a.rsa_key = Some(value(&flag)?),
            "--ed25519-key" => a.ed25519_key = Some(value(&flag)?),
            "--key-id" => a.key_id = Some(value(&flag)?),
            "--method" => a.method = value(&flag)?.to_ascii_uppercase(),
            "--url" => a.url = value(&flag)?,
            "--body" => a.body = value(&flag)?,
            "--json" => a.json = true,
            other => return Err(format!("sign: unknown argument {other:?}; see --help")),
        }
    }
    if a.scheme.is_none() || a.url.is_empty() {
        return Err("sign needs --scheme and --url".into());
    }
    let keys = [
        a.key.is_some(),
        a.ed25519_key.is_some(),
        a.rsa_key.is_some(),
    ];
    if keys.iter().filter(|k| **k).count() != 1 {
        return Err("sign needs exactly one of --key, --ed25519-key and --rsa-key".into());
    }
    Ok(Command::Sign(a))
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, String> {
    let mut args = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .peekable();
    if args.peek().map(String::as_str) == Some("sign") {
        args.next();
        return parse_sign(args);
    }
    let mut config = None;
    let mut simulate = false;
    let mut subcommand_simulate = false;
    let mut subcommand_check = false;
    let mut listen = None;
    let mut faults = serde_json::json!({});
    let mut card = "sm2".to_string();
    let mut transfer = false;
    let mut first = true;
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        let mut value = |name: &str| take_value(&inline, &mut args, name);
        match flag.as_str() {
            "-h" | "--help" | "-help" => return Ok(Command::Help),
            "-V" | "--version" | "-version" => return Ok(Command::Version),
            "-config" | "--config" | "-c" => config = Some(PathBuf::from(value(&flag)?)),
            "--simulate" | "-simulate" => simulate = true,
            "--transfer" | "-transfer" => transfer = true,
            "--listen" | "-listen" => listen = Some(value(&flag)?),
            "--latency-ms" => faults["latency_ms"] = number(&flag, &value(&flag)?)?,
            "--drop-after" => faults["drop_after"] = number(&flag, &value(&flag)?)?,
            "--refuse" => faults["refuse"] = true.into(),
            "--bad-signatures" => faults["bad_signatures"] = true.into(),
            "--card" | "-card" => {
                card = value(&flag)?.to_ascii_lowercase();
                if card != "sm2" && card != "rsa" {
                    return Err(format!("--card takes sm2 or rsa, got {card:?}"));
                }
            }
            "--silent" => {
                let method = value(&flag)?;
                match faults["silent"].as_array_mut() {
                    Some(list) => list.push(method.into()),
                    None => faults["silent"] = serde_json::json!([method]),
                }
            }
            "--error" => {
                let spec = value(&flag)?;
                let (method, message) = spec
                    .split_once('=')
                    .ok_or_else(|| format!("--error takes METHOD=MESSAGE, got {spec:?}"))?;
                faults["errors"][method] = serde_json::json!([message]);
            }
            "simulate" if first => subcommand_simulate = true,
            "check-config" if first => subcommand_check = true,
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
        first = false;
    }
    if transfer && (!simulate || subcommand_simulate || subcommand_check) {
        return Err(
            "--transfer goes with --simulate (the proxy and its simulators in one process)".into(),
        );
    }
    if subcommand_check {
        if simulate || listen.is_some() {
            return Err("check-config takes only -config".into());
        }
        return Ok(Command::CheckConfig { config });
    }
    if subcommand_simulate {
        return Ok(Command::Simulate {
            config,
            listen,
            faults,
            card,
        });
    }
    if listen.is_some() || faults.as_object().is_some_and(|f| !f.is_empty()) {
        return Err("--listen and fault options go with the `simulate` subcommand".into());
    }
    Ok(Command::Run {
        config,
        simulate,
        card,
        transfer,
    })
}

fn number(flag: &str, text: &str) -> Result<serde_json::Value, String> {
    text.parse::<u64>()
        .map(Into::into)
        .map_err(|_| format!("{flag} takes a whole number, got {text:?}"))
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
                    simulate: false,
                    card: "sm2".into(),
                    transfer: false,
                }
            );
        }
        assert_eq!(
            p(&[]).unwrap(),
            Command::Run {
                config: None,
                simulate: false,
                card: "sm2".into(),
                transfer: false,
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
                simulate: true,
                card: "sm2".into(),
                transfer: false,
            }
        );
        assert_eq!(
            p(&["--simulate", "--transfer"]).unwrap(),
            Command::Run {
                config: None,
                simulate: true,
                card: "sm2".into(),
                transfer: true,
            }
        );
        assert!(p(&["--transfer"]).is_err(), "--transfer without --simulate");
        assert!(p(&["simulate", "--transfer"]).is_err());
        assert_eq!(
            p(&["simulate", "--listen", "127.0.0.1:1"]).unwrap(),
            Command::Simulate {
                config: None,
                listen: Some("127.0.0.1:1".into()),
                faults: serde_json::json!({}),
                card: "sm2".into(),
            }
        );
        let Command::Simulate { faults, .. } = p(&[
            "simulate",
            "--latency-ms",
            "200",
            "--silent",
            "a",
            "--silent",
            "b",
            "--error",
            "m=boom",
            "--drop-after",
            "3",
            "--refuse",
        ])
        .unwrap() else {
            panic!("not simulate")
        };
        assert_eq!(
            faults,
            serde_json::json!({"latency_ms": 200, "silent": ["a", "b"], "errors": {"m": ["boom"]},
                               "drop_after": 3, "refuse": true})
        );
        assert!(p(&["--latency-ms", "5"]).is_err());
        assert_eq!(
            p(&["check-config", "-config", "c.json"]).unwrap(),
            Command::CheckConfig {
                config: Some("c.json".into())
            }
        );
        assert!(p(&["check-config", "--simulate"]).is_err());
        let Command::Sign(a) = p(&[
            "sign",
            "--scheme",
            "hmac",
            "--key",
            "k",
            "--key-id",
            "erp",
            "--url",
            "http://h/rpc",
            "--body",
            "{}",
            "--method",
            "post",
        ])
        .unwrap() else {
            panic!("not sign")
        };
        assert_eq!(
            (a.scheme, a.method.as_str(), a.key_id.as_deref()),
            (Some(Scheme::Hmac), "POST", Some("erp"))
        );
        assert!(
            p(&["sign", "--scheme", "md5", "--url", "http://h/rpc"]).is_err(),
            "no key"
        );
        assert!(p(&["sign", "--key", "k"]).is_err(), "no scheme or url");
        assert!(p(&["simulate", "--latency-ms", "soon"]).is_err());
        assert!(p(&["simulate", "--error", "nomessage"]).is_err());
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["-config"]).is_err());
        assert!(p(&["--listen", "x"]).is_err());
    }
}
