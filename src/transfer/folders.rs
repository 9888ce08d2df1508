//! Which folders transfer uses: the configured ones, else the client's own settings file
//! (`DFWJobSettings.xml`, module IMPCEB then EXPCEB), else defaults next to the configuration.

use crate::config::TransferConfig;
use crate::customs::c14n::{self, Element, Node};
use std::path::{Path, PathBuf};

/// The modules whose folders carry cross-border e-commerce messages, in order of preference.
const CEB_MODULES: [&str; 2] = ["IMPCEB", "EXPCEB"];

#[derive(Debug, Clone)]
pub struct Folders {
    pub outbox: PathBuf,
    pub inbox: PathBuf,
    pub processed: PathBuf,
    pub failed: PathBuf,
}

/// OutBox and InBox of a module, from the client's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFolders {
    pub module: String,
    pub outbox: String,
    pub inbox: String,
}

impl Folders {
    pub fn resolve(config: &TransferConfig, config_dir: &Path) -> Result<Option<Folders>, String> {
        let client = match config.client_settings.trim() {
            "" => None,
            "auto" => auto_candidates()
                .into_iter()
                .find(|p| p.is_file())
                .and_then(|p| match read_settings(&p) {
                    Ok(f) => {
                        log::info!(
                            "transfer: folders of module {} read from {}",
                            f.module,
                            p.display()
                        );
                        Some(f)
                    }
                    Err(e) => {
                        log::warn!("transfer: {}: {e}", p.display());
                        None
                    }
                }),
            path => {
                let p = config_dir.join(path);
                Some(
                    read_settings(&p)
                        .map_err(|e| format!("transfer.client_settings {}: {e}", p.display()))?,
                )
            }
        };
        let pick = |configured: &str, from_client: Option<&str>| -> Option<PathBuf> {
            if !configured.is_empty() {
                Some(config_dir.join(configured))
            } else {
                from_client.filter(|s| !s.is_empty()).map(PathBuf::from)
            }
        };
        let outbox = pick(&config.outbox, client.as_ref().map(|c| c.outbox.as_str()));
        let inbox = pick(&config.inbox, client.as_ref().map(|c| c.inbox.as_str()));
        if outbox.is_none() && inbox.is_none() {
            return Ok(None);
        }
        let here = config_dir.join("transfer");
        let or_here = |p: &str, name: &str| {
            if p.is_empty() {
                here.join(name)
            } else {
                config_dir.join(p)
            }
        };
        Ok(Some(Folders {
            outbox: outbox.unwrap_or_else(|| here.join("outbox")),
            inbox: inbox.unwrap_or_else(|| here.join("inbox")),
            processed: or_here(&config.processed, "processed"),
            failed: or_here(&config.failed, "failed"),
        }))
    }
}

/// Where the client keeps its settings (research F6).
fn auto_candidates() -> Vec<PathBuf> {
    ["LOCALAPPDATA", "APPDATA"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|base| {
            PathBuf::from(base)
                .join("SIC")
                .join("UserSetting")
                .join("DFWJobSettings.xml")
        })
        .collect()
}

/// The CEB module's folders in a `DFWJobSettings.xml`.
pub fn read_settings(path: &Path) -> Result<ClientFolders, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let text = super::decode::xml_text(&bytes).map_err(|e| e.to_string())?;
    client_folders(&text)
}

pub fn client_folders(text: &str) -> Result<ClientFolders, String> {
    let doc = c14n::parse(&c14n::normalise_line_ends(text)).map_err(|e| e.to_string())?;
    let mut found: Vec<ClientFolders> = Vec::new();
    collect(&doc.root, &mut found);
    CEB_MODULES
        .iter()
        .find_map(|m| found.iter().find(|f| f.module == *m).cloned())
        .ok_or_else(|| {
            "no SubFormSetting with FormId IMPCEB or EXPCEB (the cross-border modules) in it".into()
        })
}

fn collect(e: &Element, out: &mut Vec<ClientFolders>) {
    if local(&e.name) == "SubFormSetting" {
        let attr = |n: &str| {
            e.attrs
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        out.push(ClientFolders {
            module: attr("FormId"),
            outbox: attr("OutBox"),
            inbox: attr("InBox"),
        });
    }
    for c in &e.children {
        if let Node::Element(child) = c {
            collect(child, out);
        }
    }
}

/// An element's name without its prefix.
pub fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceb_module_is_found_among_others() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><Settings><FormSettings>
          <FormSetting Key="DEC"><SubFormSetting FormId="DECCUS001" OutBox="C:\ImpPath\Deccus001\OutBox" InBox="C:\ImpPath\Deccus001\InBox"/></FormSetting>
          <FormSetting Key="CEB"><SubFormSetting FormId="EXPCEB" OutBox="C:\ImpPath\Expceb\OutBox" InBox="C:\ImpPath\Expceb\InBox"/>
          <SubFormSetting FormId="IMPCEB" OutBox="C:\ImpPath\跨境 进口\OutBox" InBox="C:\ImpPath\跨境 进口\InBox"/></FormSetting>
        </FormSettings></Settings>"#;
        let f = client_folders(xml).unwrap();
        assert_eq!(f.module, "IMPCEB");
        assert_eq!(f.outbox, r"C:\ImpPath\跨境 进口\OutBox");
        assert!(client_folders("<Settings/>").is_err());
    }
}
