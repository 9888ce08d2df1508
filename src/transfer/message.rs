//! What a CEB message says about itself: its type (the root's local name), its `guid`, and the
//! business keys by which customs' receipts are matched to it.

use super::folders::local;
use crate::customs::c14n::{self, Element, Node};

/// The fields receipts are matched by (docs/transfer-client.md §4).
pub const KEY_NAMES: [&str; 14] = [
    "orderNo",
    "copNo",
    "invtNo",
    "preNo",
    "logisticsNo",
    "logisticsCode",
    "payTransactionId",
    "payCode",
    "ebpCode",
    "ebcCode",
    "agentCode",
    "billNo",
    "rkdNo",
    "payNo",
];

#[derive(Debug, Clone)]
pub struct Meta {
    /// `CEB311Message`.
    pub msg_type: String,
    pub guid: String,
    /// The first value of each key field outside `BaseTransfer`, in `KEY_NAMES` order.
    pub keys: Vec<(String, String)>,
}

impl Meta {
    pub fn read(xml: &str) -> Result<Meta, String> {
        let doc = c14n::parse(&c14n::normalise_line_ends(
            xml.trim_start_matches('\u{feff}'),
        ))
        .map_err(|e| format!("the message is not well-formed XML: {e}"))?;
        let root = &doc.root;
        let msg_type = local(&root.name).to_string();
        if !(msg_type.starts_with("CEB") && msg_type.ends_with("Message")) {
            return Err(format!(
                "the root element is {msg_type}; a CEB message (CEB311Message, CEB621Message, …) is expected"
            ));
        }
        let mut found: Vec<(String, String)> = Vec::new();
        collect(root, &mut found);
        let guid = root
            .attrs
            .iter()
            .find(|(k, _)| k == "guid")
            .map(|(_, v)| v.trim().to_string())
            .or_else(|| {
                found
                    .iter()
                    .find(|(k, _)| k == "guid")
                    .map(|(_, v)| v.clone())
            })
            .filter(|g| !g.is_empty())
            .ok_or("the message has no guid (root attribute or a guid element)")?;
        if guid.len() > 64 || !guid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(
                "the message's guid must be letters, digits and '-' (36 characters)".into(),
            );
        }
        let keys = KEY_NAMES
            .iter()
            .filter_map(|k| found.iter().find(|(n, _)| n == k).cloned())
            .collect();
        Ok(Meta {
            msg_type,
            guid,
            keys,
        })
    }
}

/// Every leaf element (name, text), document order, skipping `BaseTransfer` and signatures.
fn collect(e: &Element, out: &mut Vec<(String, String)>) {
    let name = local(&e.name);
    if name == "BaseTransfer" || name == "Signature" {
        return;
    }
    let mut leaf = true;
    let mut text = String::new();
    for c in &e.children {
        match c {
            Node::Element(child) => {
                leaf = false;
                collect(child, out);
            }
            Node::Text(t) => text.push_str(t),
            _ => {}
        }
    }
    if leaf {
        out.push((name.to_string(), text.trim().to_string()));
    }
}

/// Every leaf element of `e`, for receipts.
pub fn leaves(e: &Element) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in &e.children {
        if let Node::Element(child) = c {
            collect(child, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_guid_and_keys_of_the_corpus_order() {
        let xml = std::fs::read_to_string("tests/ceb_corpus/ceb311.xml").unwrap();
        let m = Meta::read(&xml).unwrap();
        assert_eq!(m.msg_type, "CEB311Message");
        assert_eq!(m.guid, "4CDE1CFD-EDED-46B1-946C-B8022E42FC94");
        assert!(
            m.keys
                .contains(&("orderNo".into(), "cp477912536700681230".into()))
        );
        assert!(Meta::read("<Order/>").is_err());
    }
}
