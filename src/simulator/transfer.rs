//! The simulated customs transfer client (`--simulate --transfer`): a thread that takes each
//! `.xml` file from the outbox, checks its DXP envelope (when it has one) and its signature with
//! the proxy's own verifier against the simulator card's certificate, moves it to `SentBox` (or
//! `FailBox` when a check fails) beside the outbox, and drops receipts into the inbox as customs
//! sends them: status 2 then 120 (and 800 for inventories), a rejection (100 with a
//! `[Code:…;Desc:…]` returnInfo) when a business key contains `REJECT`, an unreadable file
//! when one contains `GARBLE`. Nothing it answers comes from customs.

use crate::customs::c14n;
use crate::transfer::envelope::{self, child, text};
use crate::transfer::message::Meta;
use crate::transfer::outbox;
use crossbeam_channel::Receiver;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A business key containing this makes customs reject the message (status 100).
pub const REJECT: &str = "REJECT";
/// A business key containing this makes the answer an unreadable (truncated) file.
pub const GARBLE: &str = "GARBLE";

/// Where the simulated client works, and whose signatures it accepts.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub outbox: PathBuf,
    pub inbox: PathBuf,
    /// Taken files go here (the client's SentBox)…
    pub sent: PathBuf,
    /// …or here when their envelope or signature fails (its FailBox).
    pub fail: PathBuf,
    /// How often the outbox is looked at; also the time between one message's receipts.
    pub poll: Duration,
    /// The simulator card's certificate number and signing certificate (DER).
    pub cert_no: String,
    pub cert_der: Vec<u8>,
}

impl ClientOptions {
    /// `SentBox` and `FailBox` beside the outbox, as the real client lays its folders out.
    pub fn beside(
        outbox: &Path,
        inbox: &Path,
        poll: Duration,
        cert_no: String,
        der: Vec<u8>,
    ) -> Self {
        let parent = outbox.parent().unwrap_or(Path::new("."));
        ClientOptions {
            outbox: outbox.to_path_buf(),
            inbox: inbox.to_path_buf(),
            sent: parent.join("SentBox"),
            fail: parent.join("FailBox"),
            poll,
            cert_no,
            cert_der: der,
        }
    }
}

/// Creates the folders, then starts the thread; it ends when `stop` is sent to or dropped.
pub fn spawn(options: ClientOptions, stop: Receiver<()>) -> std::io::Result<JoinHandle<()>> {
    for dir in [
        &options.outbox,
        &options.inbox,
        &options.sent,
        &options.fail,
    ] {
        std::fs::create_dir_all(dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    }
    log::warn!(
        "transfer client SIMULATOR: takes files from {}, drops receipts into {} (NOT from customs)",
        options.outbox.display(),
        options.inbox.display()
    );
    std::thread::Builder::new()
        .name("sim-transfer".into())
        .spawn(move || run(&options, &stop))
}

/// A receipt file to drop when its time comes.
struct Due {
    at: Instant,
    name: String,
    bytes: Vec<u8>,
}

fn run(o: &ClientOptions, stop: &Receiver<()>) {
    let mut due: Vec<Due> = Vec::new();
    loop {
        // every file there is complete: the proxy renames a file into place only when it is
        for (path, _) in crate::transfer::watcher::scan(&o.outbox).unwrap_or_default() {
            due.extend(take(o, &path));
        }
        let now = Instant::now();
        for d in due.iter().filter(|d| d.at <= now) {
            match outbox::write_atomically(&o.inbox, &d.name, &d.bytes) {
                Ok(_) => log::info!("transfer client SIMULATOR: receipt {} dropped", d.name),
                Err(e) => log::error!("transfer client SIMULATOR: {e}"),
            }
        }
        due.retain(|d| d.at > now);
        if !matches!(
            stop.recv_timeout(o.poll),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        ) {
            return;
        }
    }
}

/// What a taken message is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Rejected,
    Garbled,
}

/// Takes one file: checks it, moves it away, and answers the receipts to drop.
fn take(o: &ClientOptions, path: &Path) -> Vec<Due> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            log::debug!("transfer client SIMULATOR: {name} not readable yet: {e}");
            return Vec::new();
        }
    };
    let (taken, refusal) = check(o, &bytes);
    let folder = if refusal.is_none() { &o.sent } else { &o.fail };
    if crate::transfer::watcher::move_to(path, folder).is_none() {
        // left in place it would be taken again on every poll
        let _ = std::fs::remove_file(path);
    }
    log::info!(
        "transfer client SIMULATOR: {name} moved to {} ({})",
        folder.display(),
        refusal.as_deref().unwrap_or("checked")
    );
    match (taken, refusal) {
        (Some(m), None) => receipts(o, &m),
        // customs answers a CEB message whose envelope or signature is wrong with a refusal
        (Some(m), Some(why)) => vec![due_now(
            &m,
            0,
            Duration::ZERO,
            "100",
            &format!("验签失败：{why}"),
        )],
        // not a CEB message it can name: nothing to answer
        (None, _) => Vec::new(),
    }
}

/// A message that the client could name.
struct Taken {
    meta: Meta,
    /// The envelope's sender, when it came in one: receipts then come enveloped back to it.
    envelope_sender: Option<String>,
}

/// The message in a file, if it is one, and why the client refuses it, if it does: the
/// envelope's checks (when enveloped), then the signature's, with the proxy's verifier.
fn check(o: &ClientOptions, bytes: &[u8]) -> (Option<Taken>, Option<String>) {
    let outer = crate::transfer::decode::xml_text(bytes)
        .map_err(|e| e.to_string())
        .and_then(|decoded| {
            let doc = c14n::parse(&c14n::normalise_line_ends(
                decoded.trim_start_matches('\u{feff}'),
            ))
            .map_err(|e| format!("not well-formed XML: {e}"))?;
            Ok((decoded, doc))
        });
    let (decoded, doc) = match outer {
        Ok(x) => x,
        Err(e) => return (None, Some(e)),
    };
    let (inner, envelope_sender, envelope_type) = match envelope::unwrap(&doc.root) {
        None => (decoded, None, None),
        Some(Err(e)) => return (None, Some(e)),
        Some(Ok(u)) => (
            String::from_utf8_lossy(&u.data).into_owned(),
            Some(u.sender),
            Some(u.msg_type),
        ),
    };
    let meta = match Meta::read(&inner) {
        Ok(m) => m,
        Err(e) => return (None, Some(e)),
    };
    let refusal = match (&envelope_sender, &envelope_type) {
        (Some(sender), Some(t)) => {
            let receiver = child(&doc.root, "TransInfo")
                .and_then(|i| child(i, "ReceiverIds"))
                .and_then(|r| child(r, "ReceiverId"))
                .map(text)
                .unwrap_or_default();
            if sender.is_empty() || receiver.is_empty() {
                Some("the DxpMsg lacks its SenderId or ReceiverId".to_string())
            } else if *t != meta.msg_type {
                Some(format!("the DxpMsg's MsgType {t} is not {}", meta.msg_type))
            } else {
                None
            }
        }
        _ => None,
    };
    let refusal = refusal.or_else(|| {
        let now_s = crate::time::now_ms() / 1000;
        match crate::customs::ceb::verify(&inner, now_s, Some((&o.cert_no, &o.cert_der))) {
            Ok(v) if v.valid() => None,
            Ok(v) if v.errors.is_empty() => {
                Some("the signature is not the simulator card's".to_string())
            }
            Ok(v) => Some(v.errors.join("; ")),
            Err(e) => Some(e.to_string()),
        }
    });
    let taken = Taken {
        meta,
        envelope_sender,
    };
    (Some(taken), refusal)
}

/// The return node and the fields it echoes from the message, per receipt type
/// (docs/transfer-client.md §4). Types not listed get a `Return` node with the usual keys.
fn node_of(receipt_type: &str) -> (&'static str, &'static [&'static str]) {
    const INVENTORY: &[&str] = &[
        "customsCode",
        "ebpCode",
        "ebcCode",
        "agentCode",
        "copNo",
        "preNo",
        "invtNo",
    ];
    match receipt_type {
        "CEB312Message" | "CEB304Message" => ("OrderReturn", &["ebpCode", "ebcCode", "orderNo"]),
        "CEB412Message" => ("PaymentReturn", &["payCode", "payTransactionId"]),
        "CEB512Message" => ("LogisticsReturn", &["logisticsCode", "logisticsNo"]),
        "CEB514Message" => (
            "LogisticsStatusReturn",
            &["logisticsCode", "logisticsNo", "logisticsStatus"],
        ),
        "CEB622Message" => ("InventoryReturn", INVENTORY),
        "CEB604Message" => (
            "InventoryReturn",
            &[
                "customsCode",
                "ebpCode",
                "ebcCode",
                "agentCode",
                "copNo",
                "preNo",
                "invtNo",
                "orderNo",
            ],
        ),
        "CEB624Message" => ("InvtCancelReturn", INVENTORY),
        "CEB626Message" => ("InvtRefundReturn", INVENTORY),
        "CEB712Message" => (
            "DeliveryReturn",
            &["customsCode", "operatorCode", "copNo", "preNo", "rkdNo"],
        ),
        "CEB404Message" => ("ReceiptsReturn", &["ebcCode", "orderNo", "payNo"]),
        _ => (
            "Return",
            &["copNo", "orderNo", "logisticsNo", "preNo", "invtNo"],
        ),
    }
}

/// The receipts customs would send for an accepted message, as customs' samples sequence them
/// (research F22: 2 新增申报成功[guid], 120 [Code:1800;Desc:逻辑校验通过], 800 [Code:2600;Desc:放行]).
fn receipts(o: &ClientOptions, m: &Taken) -> Vec<Due> {
    let outcome = if m.meta.keys.iter().any(|(_, v)| v.contains(GARBLE)) {
        Outcome::Garbled
    } else if m.meta.keys.iter().any(|(_, v)| v.contains(REJECT)) {
        Outcome::Rejected
    } else {
        Outcome::Accepted
    };
    let inventory = matches!(&m.meta.msg_type[..], "CEB621Message" | "CEB603Message");
    let mut steps: Vec<(&str, String)> = vec![("2", format!("新增申报成功[{}]", m.meta.guid))];
    match outcome {
        Outcome::Garbled => {
            let whole = due_now(m, 0, Duration::ZERO, "2", &steps[0].1);
            // half a file, as a copy cut short would leave it
            let half = whole.bytes[..whole.bytes.len() / 2].to_vec();
            return vec![Due {
                bytes: half,
                ..whole
            }];
        }
        // 1313 and 13035 are customs' refusals seen in public receipts (research F30)
        Outcome::Rejected if inventory => {
            steps.push(("100", "[Code:1313;Desc:超过年度限额]".into()))
        }
        Outcome::Rejected => steps.push(("100", "[Code:13035;Desc:支付企业不一致]".into())),
        Outcome::Accepted => {
            steps.push(("120", "[Code:1800;Desc:逻辑校验通过]".into()));
            if inventory {
                steps.push(("800", "[Code:2600;Desc:放行]".into()));
            }
        }
    }
    steps
        .iter()
        .enumerate()
        .map(|(i, (code, info))| due_now(m, i, o.poll * i as u32, code, info))
        .collect()
}

/// One receipt file, due `after` from now, for step `seq` of message `m`.
fn due_now(m: &Taken, seq: usize, after: Duration, code: &str, info: &str) -> Due {
    let time_ms = crate::time::now_ms() + after.as_millis() as u64;
    // Meta::read took it as CEBnnn…Message; 900 is the receipt any message may get
    let receipt_type = crate::transfer::store::receipt_type(&m.meta.msg_type)
        .unwrap_or_else(|| "CEB900Message".into());
    let (node, names) = node_of(&receipt_type);
    let raw_time = china_stamp(time_ms);
    let mut body = String::new();
    let mut element = |name: &str, value: &str| {
        for part in ["<", name, ">", &envelope::esc(value), "</", name, ">"] {
            body.push_str(part);
        }
    };
    element("guid", &customs_guid());
    for n in names {
        let key = m.meta.keys.iter().find(|(k, _)| k == n);
        let value = match (key, *n) {
            (Some((_, v)), _) => v.clone(),
            // numbers customs gives out, in their shape: B + date + sequence; customs code,
            // year, I, sequence
            (None, "preNo") => format!("B{}", &raw_time[..14]),
            (None, "invtNo") => format!("6400{}I{}", &raw_time[..4], &raw_time[8..17]),
            (None, _) => continue,
        };
        element(n, &value);
    }
    element("returnStatus", code);
    element("returnTime", &raw_time);
    element("returnInfo", info);
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
<{receipt_type} xmlns=\"http://www.chinaport.gov.cn/ceb\" guid=\"{}\" version=\"1.0\"><{node}>{body}</{node}></{receipt_type}>\n",
        customs_guid()
    );
    let bytes = match &m.envelope_sender {
        None => xml.into_bytes(),
        Some(back_to) => envelope::wrap(
            &xml,
            &receipt_type,
            envelope::receiver_for(&m.meta.msg_type),
            back_to,
            &customs_guid(),
        )
        .into_bytes(),
    };
    Due {
        at: Instant::now() + after,
        name: format!("{receipt_type}_{raw_time}_{seq}_{}.xml", m.meta.guid),
        bytes,
    }
}

fn customs_guid() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// `yyyyMMddHHmmssSSS` in China time (UTC+8), as customs writes `returnTime`.
fn china_stamp(unix_ms: u64) -> String {
    let s = crate::time::rfc3339((unix_ms / 1000) + 8 * 3600);
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    format!("{digits}{:03}", unix_ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_china_time_and_nodes_follow_the_type() {
        // 2024-03-01T02:15:00.123Z is 10:15 in China
        assert_eq!(china_stamp(1_709_259_300_123), "20240301101500123");
        assert_eq!(node_of("CEB622Message").0, "InventoryReturn");
        assert_eq!(
            node_of("CEB312Message").1,
            ["ebpCode", "ebcCode", "orderNo"]
        );
    }
}
