//! The status page at `GET /`: plain server-rendered HTML that reloads itself every two
//! seconds. No JavaScript.

use std::fmt::Write;
use std::time::Duration;

use browserpool::{PoolMemory, PoolStats, SweepReport};

use crate::api::{human, SessionRow};

/// Everything the page shows.
pub(crate) struct View<'a> {
    pub stats: PoolStats,
    pub memory: PoolMemory,
    pub rows: &'a [SessionRow],
    pub max_browsers: usize,
    pub draining: bool,
    pub ws_open: usize,
    pub product: &'a str,
    pub ws_base: &'a str,
    pub uptime: Duration,
    pub sweep: &'a SweepReport,
}

/// Escape text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `123.4 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#f6f7f9}\
h1{font-size:20px;margin:0 0 4px}.sub{color:#667;margin-bottom:16px}\
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:18px}\
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 14px;min-width:110px}\
.card b{display:block;font-size:22px}.card span{color:#667;font-size:12px;text-transform:uppercase;letter-spacing:.04em}\
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e7;min-width:720px}\
th,td{padding:6px 10px;border-bottom:1px solid #eceff3;text-align:left;white-space:nowrap}\
th{background:#eef1f5;font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#445}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.st{padding:1px 8px;border-radius:10px;font-size:12px}\
.idle{background:#e3f1e5;color:#1f6b2c}.busy{background:#fff0cc;color:#7a5300}.launching{background:#e2ecfb;color:#1f4f99}\
.stopping,.removing{background:#fbe4e4;color:#8d1f1f}.drain{background:#8d1f1f;color:#fff;padding:4px 10px;border-radius:6px}\
h2{font-size:15px;margin:18px 0 8px}.ended span{margin-right:14px}.empty{color:#667;padding:10px}";

/// The page.
pub(crate) fn render(v: &View<'_>) -> String {
    let s = &v.stats;
    let t = &s.totals;
    let idle = s.live.saturating_sub(s.busy);
    let mut h = String::with_capacity(4096 + v.rows.len() * 512);
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta http-equiv=refresh content=2><title>browserpool-server</title>\
<meta name=viewport content=\"width=device-width\"><style>{STYLE}</style></head><body>\
<h1>browserpool-server</h1><div class=sub>{} · up {} · connect CDP clients to <code>{}/</code>{}</div>",
        escape(v.product),
        human(v.uptime),
        escape(v.ws_base),
        if v.draining {
            " · <span class=drain>draining</span>"
        } else {
            ""
        },
    );
    h.push_str("<div class=cards id=figures>");
    let cards: [(&str, &str, String); 9] = [
        ("live", "live", format!("{} / {}", s.live, v.max_browsers)),
        ("busy", "busy", s.busy.to_string()),
        ("idle", "idle", idle.to_string()),
        ("launching", "launching", s.launching.to_string()),
        (
            "stopping",
            "stopping",
            (s.stopping + s.removing).to_string(),
        ),
        ("waiting", "queued requests", s.waiting.to_string()),
        (
            "processes",
            "chromium processes",
            v.memory.total.processes.to_string(),
        ),
        ("pss", "PSS (sum)", mib(v.memory.total.pss_bytes)),
        ("connections", "connections", v.ws_open.to_string()),
    ];
    for (key, label, value) in cards {
        let _ = write!(
            h,
            "<div class=card data-figure={key}><b>{}</b><span>{label}</span></div>",
            escape(&value)
        );
    }
    h.push_str("</div><h2>Ended, by reason</h2><div class=ended id=ended>");
    for (reason, n) in [
        ("destroyed", t.destroyed),
        ("idle", t.reaped),
        ("evicted", t.evicted),
        ("owner released", t.owner_released),
        ("retired", t.retired),
        ("crashed", t.crashed),
        ("launch failed", t.launch_failed),
        ("shutdown", t.shutdown),
        ("abandoned", t.abandoned),
    ] {
        let _ = write!(h, "<span>{reason}: <b>{n}</b></span>");
    }
    let _ = write!(
        h,
        "<span>created: <b>{}</b></span><span>startup sweep removed: <b>{}</b></span></div>",
        t.created,
        v.sweep.removed.len()
    );
    h.push_str(
        "<h2>Sessions</h2><table id=sessions><thead><tr><th>id</th><th>owner</th><th>state</th>\
<th>idle for</th><th>uses</th><th>PSS</th><th>conns</th></tr></thead><tbody>",
    );
    if v.rows.is_empty() {
        h.push_str("<tr><td colspan=7 class=empty>no sessions</td></tr>");
    }
    for r in v.rows {
        let pss = r.pss_bytes.map_or_else(|| "–".to_owned(), mib);
        let state = match (&r.ending, r.on_notice) {
            (Some(why), _) => format!("{} ({why})", r.state),
            (None, true) => format!("{} (disconnected)", r.state),
            (None, false) => r.state.to_owned(),
        };
        let _ = write!(
            h,
            "<tr data-id=\"{id}\"><td class=id>{id}</td><td class=owner>{owner}</td>\
<td><span class=\"st {cls}\" data-state=\"{cls}\">{state}</span></td><td class=\"idle-for n\">{idle}</td>\
<td class=\"uses n\">{uses}</td><td class=\"pss n\">{pss}</td><td class=\"conns n\">{conns}</td></tr>",
            id = escape(&r.id),
            owner = escape(r.owner.as_deref().unwrap_or("–")),
            cls = r.state,
            state = escape(&state),
            idle = escape(&r.idle_for),
            uses = r.uses,
            pss = escape(&pss),
            conns = r.connections,
        );
    }
    h.push_str("</tbody></table></body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_products_are_escaped() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let rows = [SessionRow {
            id: "s1".into(),
            owner: Some("http-1 <script>alert(1)</script>".into()),
            state: "idle",
            idle_for_ms: 0,
            idle_for: "0s".into(),
            uses: 3,
            in_flight: 0,
            age_ms: 0,
            connections: 1,
            on_notice: false,
            ending: None,
            pss_bytes: Some(80 << 20),
            rss_bytes: None,
            processes: None,
            dir: "/tmp/x".into(),
            ws_url: "ws://h/devtools/browser/s1".into(),
        }];
        let sweep = SweepReport::default();
        let page = render(&View {
            stats: PoolStats::default(),
            memory: PoolMemory::default(),
            rows: &rows,
            max_browsers: 4,
            draining: true,
            ws_open: 1,
            product: "HeadlessChrome/1<b>",
            ws_base: "ws://h",
            uptime: Duration::from_secs(5),
            sweep: &sweep,
        });
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("http-equiv=refresh"));
        assert!(page.contains("data-id=\"s1\""));
        assert!(page.contains("80.0 MiB"));
        assert!(page.contains("class=drain"));
        assert!(!page.contains("<b>\n"));
    }
}
