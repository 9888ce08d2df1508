//! The DXP terminal-node envelope `DxpMsg` (spec 202205 §4): built around a signed message for
//! `transfer.envelope: "dxp"`, and taken off what arrives (also inside a `DxpMsgSv`).

use super::folders::local;
use crate::customs::c14n::{Element, Node};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

pub const DXP_NS: &str = "http://www.chinaport.gov.cn/dxp";
/// Cross-border import and export receivers (research F17).
pub const RECEIVER_IMPORT: &str = "DXPEDCCEB0000002";
pub const RECEIVER_EXPORT: &str = "DXPEDCCEB0000003";

/// The customs receiver of a message type: export messages (303, 403, 505, 507, 509, 603, 605,
/// 607, 701, 213, 215) go to the export node, the rest to the import node.
pub fn receiver_for(msg_type: &str) -> &'static str {
    const EXPORT: [&str; 11] = [
        "303", "403", "505", "507", "509", "603", "605", "607", "701", "213", "215",
    ];
    let code = msg_type.trim_start_matches("CEB").get(..3).unwrap_or("");
    if EXPORT.contains(&code) {
        RECEIVER_EXPORT
    } else {
        RECEIVER_IMPORT
    }
}

/// China time now as `yyyy-MM-ddTHH:mm:ss` (CreatTime has no offset).
pub fn china_time_now() -> String {
    let s = crate::ukey::now_ms() / 1000 + 8 * 3600;
    crate::ukey::expiry::rfc3339(s)
        .trim_end_matches('Z')
        .to_string()
}

/// Escaped for XML text (the simulated client's receipts use it too).
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `signed` wrapped in a DxpMsg; the CopMsgId is an upper-case UUID.
pub fn wrap(
    signed: &str,
    msg_type: &str,
    sender: &str,
    receiver: &str,
    cop_msg_id: &str,
) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<dxp:DxpMsg xmlns:dxp=\"{DXP_NS}\" ver=\"1.0\">\
<dxp:TransInfo><dxp:CopMsgId>{id}</dxp:CopMsgId><dxp:SenderId>{s}</dxp:SenderId>\
<dxp:ReceiverIds><dxp:ReceiverId>{r}</dxp:ReceiverId></dxp:ReceiverIds>\
<dxp:CreatTime>{t}</dxp:CreatTime><dxp:MsgType>{m}</dxp:MsgType></dxp:TransInfo>\
<dxp:Data>{data}</dxp:Data>\
<dxp:AddInfo><dxp:FileName>{m}_{id}.xml</dxp:FileName></dxp:AddInfo></dxp:DxpMsg>\n",
        id = esc(cop_msg_id),
        s = esc(sender),
        r = esc(receiver),
        t = china_time_now(),
        m = esc(msg_type),
        data = B64.encode(signed.as_bytes()),
    )
}

/// What an envelope said, and the message inside.
#[derive(Debug, Clone, Default)]
pub struct Unwrapped {
    pub cop_msg_id: String,
    pub sender: String,
    pub msg_type: String,
    pub data: Vec<u8>,
}

/// The envelope around `root`, if it is one (`DxpMsg` or `DxpMsgSv`).
pub fn unwrap(root: &Element) -> Option<Result<Unwrapped, String>> {
    let msg = match local(&root.name) {
        "DxpMsg" => root,
        "DxpMsgSv" => match child(root, "DxpMsg") {
            Some(m) => m,
            None => return Some(Err("a DxpMsgSv without a DxpMsg".into())),
        },
        _ => return None,
    };
    let info = child(msg, "TransInfo");
    let field = |name: &str| {
        info.and_then(|i| child(i, name))
            .map(text)
            .unwrap_or_default()
    };
    let Some(data) = child(msg, "Data") else {
        return Some(Err("a DxpMsg without Data".into()));
    };
    let b64: String = text(data).chars().filter(|c| !c.is_whitespace()).collect();
    Some(match B64.decode(b64.as_bytes()) {
        Ok(data) => Ok(Unwrapped {
            cop_msg_id: field("CopMsgId"),
            sender: field("SenderId"),
            msg_type: field("MsgType"),
            data,
        }),
        Err(e) => Err(format!("the DxpMsg's Data is not Base64: {e}")),
    })
}

pub fn child<'a>(e: &'a Element, name: &str) -> Option<&'a Element> {
    e.children.iter().find_map(|c| match c {
        Node::Element(x) if local(&x.name) == name => Some(x),
        _ => None,
    })
}

pub fn text(e: &Element) -> String {
    let mut s = String::new();
    for c in &e.children {
        if let Node::Text(t) = c {
            s.push_str(t);
        }
    }
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_and_round_trip() {
        assert_eq!(receiver_for("CEB311Message"), RECEIVER_IMPORT);
        assert_eq!(receiver_for("CEB303Message"), RECEIVER_EXPORT);
        let xml = wrap(
            "<a>放</a>",
            "CEB311Message",
            "DXPENT0000012345",
            RECEIVER_IMPORT,
            "ID1",
        );
        let doc = crate::customs::c14n::parse(&xml).unwrap();
        let u = unwrap(&doc.root).unwrap().unwrap();
        assert_eq!(u.data, "<a>放</a>".as_bytes());
        assert_eq!(u.cop_msg_id, "ID1");
        assert_eq!(u.msg_type, "CEB311Message");
        assert_eq!(china_time_now().len(), 19);
    }
}
