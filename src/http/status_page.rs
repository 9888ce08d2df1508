//! `GET /`: the status page for the operator at the customs PC. One server-rendered HTML page in
//! Chinese or English (`Accept-Language`, or `?lang=zh|en`), no external assets (the PC may be
//! offline), refreshed by a meta tag, readable without JavaScript. It shows the card, the last
//! probe, the queue, the webhook backlog, the last 100 messages handed to the customs transfer
//! client with their latest receipt (when transfer is on) and the last 100 calls; never a payload, a password, a
//! signature or a secret, and it never calls the card. `server.status_page: false` turns it off.

use super::App;
use super::exchange::{Exchange, Input};
use super::reply::{Body, Reply};
use crate::auth::exposure::Exposure;
use crate::customs::cert::CertInfo;
use crate::time::now_ms;
use crate::time::rfc3339;
use crate::ukey::expiry::days_left;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// The page's words in one language.
struct Words {
    lang: &'static str,
    title: &'static str,
    card: &'static str,
    connection: &'static str,
    connected: &'static str,
    disconnected: &'static str,
    since: &'static str,
    cert_no: &'static str,
    enterprise: &'static str,
    algorithm: &'static str,
    expires: &'static str,
    days_left: &'static str,
    probe: &'static str,
    ok: &'static str,
    failed: &'static str,
    none_yet: &'static str,
    queue: &'static str,
    pending: &'static str,
    webhooks: &'static str,
    backlog: &'static str,
    dropped: &'static str,
    last_error: &'static str,
    refused: &'static str,
    /// Authentication is off and anyone on the network may use the card (#30.1).
    open: &'static str,
    /// Authentication is off and only this PC is served.
    this_pc_only: &'static str,
    calls: &'static str,
    time: &'static str,
    route: &'static str,
    method: &'static str,
    status: &'static str,
    duration: &'static str,
    request_id: &'static str,
    client: &'static str,
    no_calls: &'static str,
    /// The messages sent through `/api/ceb/send` (issue 27).
    sent: &'static str,
    sent_time: &'static str,
    msg_type: &'static str,
    keys: &'static str,
    file: &'static str,
    receipt: &'static str,
    receipt_info: &'static str,
    receipt_time: &'static str,
    awaiting: &'static str,
    none_sent: &'static str,
    version: &'static str,
    uptime: &'static str,
    refresh: &'static str,
}

const ZH: Words = Words {
    lang: "zh-CN",
    title: "中国电子口岸 UKey 代理 状态",
    card: "UKey（加签卡）",
    connection: "连接状态",
    connected: "已连接",
    disconnected: "未连接",
    since: "连接时间",
    cert_no: "证书编号",
    enterprise: "企业（证书主体）",
    algorithm: "算法",
    expires: "证书到期",
    days_left: "剩余天数",
    probe: "最近一次健康检查",
    ok: "正常",
    failed: "失败",
    none_yet: "尚无",
    queue: "排队与处理中的调用",
    pending: "个",
    webhooks: "Webhook 待发送",
    backlog: "条",
    dropped: "已丢弃",
    last_error: "最近错误",
    refused: "UKey 拒绝了配置的口令：已停止向卡发送任何请求，以免锁卡。请修改 ukey.password 后重启。",
    open: "认证已关闭（auth.allow_unauthenticated: true）：网络上任何能访问本端口的人都能让这张卡签名。请设置 auth.app_secret，要求请求签名。",
    this_pc_only: "认证已关闭（auth.app_secret 为空）：只有本机可以使用这张卡。要让其他电脑上的 ERP 使用，请设置 auth.app_secret 并为请求签名。",
    calls: "最近 100 次调用",
    time: "时间",
    route: "接口",
    method: "UKey 方法",
    status: "状态码",
    duration: "耗时 (ms)",
    request_id: "请求 ID",
    client: "客户端地址",
    no_calls: "暂无调用",
    sent: "最近发送的 100 条报文（交给海关传输客户端）",
    sent_time: "发送时间",
    msg_type: "报文类型",
    keys: "业务编号",
    file: "文件",
    receipt: "最新回执",
    receipt_info: "回执信息",
    receipt_time: "回执时间",
    awaiting: "等待回执",
    none_sent: "尚未发送报文",
    version: "版本",
    uptime: "已运行",
    refresh: "本页每 10 秒自动刷新",
};

const EN: Words = Words {
    lang: "en",
    title: "China E-Port UKey proxy status",
    card: "UKey (signing card)",
    connection: "connection",
    connected: "connected",
    disconnected: "not connected",
    since: "connected since",
    cert_no: "certificate number",
    enterprise: "enterprise (certificate subject)",
    algorithm: "algorithm",
    expires: "certificate expires",
    days_left: "days left",
    probe: "last health probe",
    ok: "ok",
    failed: "failed",
    none_yet: "none yet",
    queue: "calls queued and in flight",
    pending: "",
    webhooks: "webhook backlog",
    backlog: "events",
    dropped: "dropped",
    last_error: "last error",
    refused: "The card refused the configured password: nothing is sent to it any more, so that it does not lock. Fix ukey.password and restart.",
    open: "Authentication is off (auth.allow_unauthenticated: true): anyone who can reach this port can make the card sign. Set auth.app_secret to require signed requests.",
    this_pc_only: "Authentication is off (auth.app_secret is empty): only this PC can use the card. To let an ERP on another computer in, set auth.app_secret and sign its requests.",
    calls: "Last 100 calls",
    time: "time",
    route: "route",
    method: "UKey method",
    status: "status",
    duration: "ms",
    request_id: "request ID",
    client: "client address",
    no_calls: "no calls yet",
    sent: "Last 100 messages sent (to the customs transfer client)",
    sent_time: "sent",
    msg_type: "message type",
    keys: "business keys",
    file: "file",
    receipt: "latest receipt",
    receipt_info: "receipt information",
    receipt_time: "receipt time",
    awaiting: "awaiting a receipt",
    none_sent: "no messages sent yet",
    version: "version",
    uptime: "uptime",
    refresh: "This page refreshes every 10 s",
};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Chinese unless the caller asks for English (`?lang=en`) or prefers it.
fn words(query: &str, accept_language: &str) -> &'static Words {
    if query.contains("lang=en") {
        return &EN;
    }
    if query.contains("lang=zh") {
        return &ZH;
    }
    let first = accept_language
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if first.starts_with("en") { &EN } else { &ZH }
}

/// The organisation (or common) name in a certificate subject.
fn enterprise(subject: &str) -> String {
    let part = |key: &str| {
        subject
            .split(',')
            .find_map(|p| p.trim().strip_prefix(key).map(str::to_string))
    };
    part("O=").or_else(|| part("CN=")).unwrap_or_default()
}

pub fn get(app: &App, input: &Input, _: &mut Exchange) -> Reply {
    if !app.config.server.status_page {
        return Reply::error(404, "the status page is turned off (server.status_page)");
    }
    let w = words(&input.query, &input.accept_language);
    let status = app.ukey.status();
    let connected = status.connected.load(Ordering::SeqCst);
    let cert = status
        .sign_cert()
        .and_then(|c| CertInfo::from_base64(&c).ok());
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><style>\
body{{font-family:sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}}\
.ok{{color:#080;font-weight:bold}}.bad{{color:#b00;font-weight:bold}}.warn{{background:#fee;padding:.5em;border:1px solid #b00}}\
</style></head><body><p><a href=\"/?lang=zh\">中文</a> | <a href=\"/?lang=en\">English</a></p><h1>{}</h1>",
        w.lang,
        esc(w.title),
        esc(w.title)
    );
    if status.password_refused.load(Ordering::SeqCst) {
        let _ = write!(
            h,
            "<p class=\"warn\" id=\"password-refused\">{}</p>",
            esc(w.refused)
        );
    }
    match Exposure::of(&app.config) {
        Exposure::OpenWithoutAuthentication => {
            let _ = write!(h, "<p class=\"warn\" id=\"auth-off\">{}</p>", esc(w.open));
        }
        Exposure::ThisPcOnly => {
            let _ = write!(h, "<p id=\"auth-off\">{}</p>", esc(w.this_pc_only));
        }
        Exposure::Authenticated => {}
    }
    let _ = write!(h, "<h2>{}</h2><table id=\"card\">", esc(w.card));
    let row = |h: &mut String, k: &str, v: &str| {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), v);
    };
    let since = status.connected_since_ms.load(Ordering::SeqCst);
    row(
        &mut h,
        w.connection,
        &if connected {
            format!(
                "<span class=\"ok\" id=\"connected\">{}</span>",
                esc(w.connected)
            )
        } else {
            format!(
                "<span class=\"bad\" id=\"connected\">{}</span>",
                esc(w.disconnected)
            )
        },
    );
    if connected && since > 0 {
        row(&mut h, w.since, &esc(&rfc3339(since / 1000)));
    }
    row(
        &mut h,
        w.cert_no,
        &esc(&status.cert_no().unwrap_or_default()),
    );
    if let Some(c) = &cert {
        row(&mut h, w.enterprise, &esc(&enterprise(&c.subject)));
        row(&mut h, w.algorithm, c.algorithm.name());
        row(&mut h, w.expires, &esc(&rfc3339(c.not_after)));
        let days = days_left(c.not_after, now_ms() / 1000);
        let class = if days <= 30 { "bad" } else { "ok" };
        row(
            &mut h,
            w.days_left,
            &format!("<span class=\"{class}\">{days}</span>"),
        );
    }
    let probe_ms = status.last_probe_ms.load(Ordering::SeqCst);
    row(
        &mut h,
        w.probe,
        &if probe_ms == 0 {
            esc(w.none_yet)
        } else if status.last_probe_ok.load(Ordering::SeqCst) {
            format!(
                "<span class=\"ok\">{}</span> {}",
                esc(w.ok),
                esc(&rfc3339(probe_ms / 1000))
            )
        } else {
            format!(
                "<span class=\"bad\">{}</span> {}",
                esc(w.failed),
                esc(&rfc3339(probe_ms / 1000))
            )
        },
    );
    row(
        &mut h,
        w.queue,
        &format!(
            "{} {}",
            status.pending.load(Ordering::SeqCst),
            esc(w.pending)
        ),
    );
    let (events, _, dropped) = app.webhooks.backlog();
    row(
        &mut h,
        w.webhooks,
        &format!("{events} {} ({} {dropped})", esc(w.backlog), esc(w.dropped)),
    );
    if let Some(e) = status.last_error() {
        row(&mut h, w.last_error, &esc(&app.masker.mask_str(&e)));
    }
    h.push_str("</table>");
    if let Some(t) = app.transfer.as_deref() {
        sent_table(&mut h, w, t, app);
    }
    let _ = write!(
        h,
        "<h2>{}</h2><table id=\"calls\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(w.calls),
        esc(w.time),
        esc(w.route),
        esc(w.method),
        esc(w.status),
        esc(w.duration),
        esc(w.request_id),
        esc(w.client)
    );
    let calls = app.recent.list();
    if calls.is_empty() {
        let _ = write!(h, "<tr><td colspan=\"7\">{}</td></tr>", esc(w.no_calls));
    }
    for c in calls {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&rfc3339(c.time_ms / 1000)),
            esc(&c.route),
            esc(&c.ukey_method),
            c.status,
            c.duration_ms,
            esc(&c.request_id),
            esc(&c.client_ip)
        );
    }
    let _ = write!(
        h,
        "</table><p>{} {} · {} {} s · {}</p></body></html>",
        esc(w.version),
        env!("CARGO_PKG_VERSION"),
        esc(w.uptime),
        app.started.elapsed().as_secs(),
        esc(w.refresh)
    );
    Reply {
        status: 200,
        body: Body::Raw {
            bytes: h.into_bytes(),
            content_type: "text/html; charset=utf-8",
        },
        headers: Vec::new(),
    }
}

/// The last messages sent through `/api/ceb/send`, newest first, with their latest receipt.
/// Pushed piece by piece rather than formatted: the exe's size budget.
fn sent_table(h: &mut String, w: &Words, t: &crate::transfer::Transfer, app: &App) {
    fn cell(h: &mut String, tag: &str, text: &str) {
        for part in ["<", tag, ">", &esc(text), "</", tag, ">"] {
            h.push_str(part);
        }
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    cell(h, "h2", w.sent);
    h.push_str("<table id=\"sent\"><tr>");
    for head in [
        w.sent_time,
        w.msg_type,
        "guid",
        w.keys,
        w.file,
        w.receipt,
        w.receipt_info,
        w.receipt_time,
    ] {
        cell(h, "th", head);
    }
    h.push_str("</tr>");
    let recent = t.store.recent(crate::transfer::store::RECENT);
    if recent.is_empty() {
        h.push_str("<tr><td colspan=\"8\">");
        h.push_str(&esc(w.none_sent));
        h.push_str("</td></tr>");
    }
    for r in recent {
        let a = &r.answer;
        h.push_str("<tr>");
        cell(h, "td", &rfc3339(r.at_ms / 1000));
        cell(h, "td", &text(&a["msg_type"]));
        cell(h, "td", &text(&a["guid"]));
        let mut keys = String::new();
        for (k, v) in a["keys"].as_object().into_iter().flatten() {
            // the company codes are the same on every line
            if !k.ends_with("Code") {
                if !keys.is_empty() {
                    keys.push_str(", ");
                }
                keys.push_str(k);
                keys.push(' ');
                keys.push_str(v.as_str().unwrap_or(""));
            }
        }
        cell(h, "td", &keys);
        cell(h, "td", &text(&a["file"]));
        match &r.receipt {
            None => {
                h.push_str("<td colspan=\"3\">");
                h.push_str(&esc(w.awaiting));
                h.push_str("</td>");
            }
            Some(e) => {
                let code = text(&e["returnStatus"]);
                // customs' refusals: 100 (退单), 4 (发送海关失败) and negative business errors
                let bad = code == "100" || code == "4" || code.starts_with('-');
                h.push_str(if bad {
                    "<td><span class=\"bad\">"
                } else {
                    "<td><span class=\"ok\">"
                });
                h.push_str(&esc(&code));
                h.push(' ');
                let lang = if w.lang == "en" { "en" } else { "zh" };
                h.push_str(&esc(&text(&e["status"][lang])));
                h.push_str("</span> (");
                h.push_str(&esc(&text(&e["msg_type"])));
                h.push_str(")</td>");
                cell(h, "td", &app.masker.mask_str(&text(&e["returnInfo"])));
                cell(h, "td", &text(&e["returnTime"]));
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_follows_the_switch_then_the_browser() {
        assert_eq!(words("lang=en", "zh-CN").lang, "en");
        assert_eq!(words("", "en-US,en;q=0.9").lang, "en");
        assert_eq!(words("", "zh-CN,zh;q=0.9").lang, "zh-CN");
        assert_eq!(words("", "").lang, "zh-CN");
        assert_eq!(enterprise("CN=x,OU=signing,O=SIMULATOR"), "SIMULATOR");
    }
}
