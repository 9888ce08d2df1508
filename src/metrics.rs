//! The proxy's counters and histograms for `GET /metrics`, in one process-wide registry that
//! every layer may record into without knowing about HTTP: requests by route and status, request
//! and UKey call durations, reconnects, probe failures, calls shed, webhook deliveries.

use crate::sync::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Upper bounds of the duration buckets, in seconds (a card takes 0.05 to 5 s).
pub const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of durations: counts per bucket (cumulative when rendered), sum and count.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub buckets: [u64; BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i] += 1;
        }
        self.sum += s;
        self.count += 1;
    }
}

#[derive(Default)]
pub struct Metrics {
    /// (route, status) → count.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    request_seconds: Mutex<Histogram>,
    /// UKey method label (a closed set, see `ukey::methods`) → durations of the calls the card
    /// answered.
    ukey_call_seconds: Mutex<BTreeMap<&'static str, Histogram>>,
    /// Calls sent to the card (callers' and the proxy's own), by method label (#28.3); one
    /// slot per label of the closed set (`ukey::methods::LABELS`), so counting takes no lock.
    ukey_calls: [AtomicU64; crate::ukey::methods::LABELS],
    /// Callers' identity reads answered without a card call of their own, by method label.
    ukey_cache_answers: [AtomicU64; crate::ukey::methods::LABELS],
    pub reconnects: AtomicU64,
    pub probe_failures: AtomicU64,
    /// Calls answered 503 at once because the card was busy (admission, queue, caps).
    pub shed: AtomicU64,
    pub webhooks_delivered: AtomicU64,
    pub webhooks_failed: AtomicU64,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::default);

pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        *lock(&self.requests)
            .entry((route.to_string(), status))
            .or_default() += 1;
        lock(&self.request_seconds).observe(took);
    }

    pub fn ukey_call(&self, method: &str, took: Duration) {
        // methods are the caller's choice: only the documented ones get their own label, so the
        // family has at most `KNOWN.len() + 1` series whatever callers send (finding H4)
        let label = crate::ukey::methods::label(method);
        {
            lock(&self.ukey_call_seconds)
                .entry(label)
                .or_default()
                .observe(took);
        }
    }

    /// A call was sent to the card.
    pub fn ukey_sent(&self, label: &str) {
        self.ukey_calls[crate::ukey::methods::index(label)].fetch_add(1, Ordering::Relaxed);
    }

    /// A caller's identity read was answered from the cache (or with an identical read's).
    pub fn ukey_cache_answer(&self, method: &str) {
        self.ukey_cache_answers[crate::ukey::methods::index(method)]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// (label, calls sent to the card, cache answers) for every label that has either.
    pub fn ukey_counts(&self) -> Vec<(&'static str, u64, u64)> {
        (0..crate::ukey::methods::LABELS)
            .map(|i| {
                (
                    crate::ukey::methods::label_at(i),
                    self.ukey_calls[i].load(Ordering::Relaxed),
                    self.ukey_cache_answers[i].load(Ordering::Relaxed),
                )
            })
            .filter(|(_, calls, cached)| *calls + *cached > 0)
            .collect()
    }

    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self) -> BTreeMap<(String, u16), u64> {
        lock(&self.requests).clone()
    }

    pub fn request_seconds(&self) -> Histogram {
        lock(&self.request_seconds).clone()
    }

    pub fn ukey_call_seconds(&self) -> BTreeMap<&'static str, Histogram> {
        lock(&self.ukey_call_seconds).clone()
    }
}

/// Prometheus text exposition (0.0.4), written by hand: a few families, no client library.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        self.out
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    /// One family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.head(name, kind, help);
        self.out.push_str(&format!("{name} {}\n", number(value)));
    }

    /// One family with labelled samples.
    pub fn labelled(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
        self.head(name, kind, help);
        for (labels, v) in samples {
            self.out
                .push_str(&format!("{name}{{{labels}}} {}\n", number(*v)));
        }
    }

    /// One histogram family; `series` are (labels, histogram).
    pub fn histograms(&mut self, name: &str, help: &str, series: &[(String, Histogram)]) {
        self.head(name, "histogram", help);
        for (labels, h) in series {
            let sep = if labels.is_empty() { "" } else { "," };
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                self.out.push_str(&format!(
                    "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}\n"
                ));
            }
            self.out.push_str(&format!(
                "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}\n",
                h.count
            ));
            let braces = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            };
            self.out
                .push_str(&format!("{name}_sum{braces} {}\n", number(h.sum)));
            self.out
                .push_str(&format!("{name}_count{braces} {}\n", h.count));
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A label value, escaped as the text format wants.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
