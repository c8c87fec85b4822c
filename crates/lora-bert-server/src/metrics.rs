//! Counters and histograms, rendered in Prometheus' text format (`GET /metrics`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::ErrorKind;

/// Latency buckets, in seconds.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Rows-per-batch buckets.
const ROWS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Tokens-per-batch buckets.
const TOKENS: &[f64] = &[
    64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

/// A label value in Prometheus' text format: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug)]
struct Inner {
    /// Requests by (route, app, status).
    requests: BTreeMap<(String, String, u16), u64>,
    /// Latency by (route, app).
    latency: BTreeMap<(String, String), Histogram>,
    errors: BTreeMap<ErrorKind, u64>,
    batch_rows: Histogram,
    batch_tokens: Histogram,
    batch_seconds: Histogram,
    /// Texts answered.
    texts: u64,
    /// Requests whose client left before their rows ran.
    cancelled: u64,
}

/// The server's metrics; shared by the routes and the batcher.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// Requests waiting for the model.
    pub(crate) queue_depth: AtomicUsize,
    /// Rows of the waiting requests.
    pub(crate) queue_rows: AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                latency: BTreeMap::new(),
                errors: BTreeMap::new(),
                batch_rows: Histogram::new(ROWS),
                batch_tokens: Histogram::new(TOKENS),
                batch_seconds: Histogram::new(SECONDS),
                texts: 0,
                cancelled: 0,
            }),
            queue_depth: AtomicUsize::new(0),
            queue_rows: AtomicUsize::new(0),
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One answered request.
    pub(crate) fn request(
        &self,
        route: &str,
        app: &str,
        status: u16,
        seconds: f64,
        texts: usize,
        error: Option<ErrorKind>,
    ) {
        let mut inner = self.lock();
        *inner
            .requests
            .entry((route.to_owned(), app.to_owned(), status))
            .or_default() += 1;
        inner
            .latency
            .entry((route.to_owned(), app.to_owned()))
            .or_insert_with(|| Histogram::new(SECONDS))
            .observe(seconds);
        if let Some(kind) = error {
            *inner.errors.entry(kind).or_default() += 1;
        } else {
            inner.texts += texts as u64;
        }
    }

    /// One forward pass.
    pub(crate) fn batch(&self, rows: usize, padded_tokens: usize, seconds: f64) {
        let mut inner = self.lock();
        inner.batch_rows.observe(rows as f64);
        inner.batch_tokens.observe(padded_tokens as f64);
        inner.batch_seconds.observe(seconds);
    }

    /// A request dropped unrun: its client left.
    pub(crate) fn cancelled(&self) {
        self.lock().cancelled += 1;
    }

    /// Everything, in Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self, apps: usize) -> String {
        let inner = self.lock();
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "lora_bert_queue_depth",
            "gauge",
            "Requests waiting for the model.",
        );
        let _ = writeln!(
            out,
            "lora_bert_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        head(
            &mut out,
            "lora_bert_queue_rows",
            "gauge",
            "Rows (texts or windows) of the requests waiting for the model.",
        );
        let _ = writeln!(
            out,
            "lora_bert_queue_rows {}",
            self.queue_rows.load(Ordering::Relaxed)
        );
        head(&mut out, "lora_bert_apps", "gauge", "Registered apps.");
        let _ = writeln!(out, "lora_bert_apps {apps}");
        head(
            &mut out,
            "lora_bert_batch_rows",
            "histogram",
            "Rows per forward pass.",
        );
        inner
            .batch_rows
            .render(&mut out, "lora_bert_batch_rows", "");
        head(
            &mut out,
            "lora_bert_batch_tokens",
            "histogram",
            "Padded tokens (rows x longest row) per forward pass.",
        );
        inner
            .batch_tokens
            .render(&mut out, "lora_bert_batch_tokens", "");
        head(
            &mut out,
            "lora_bert_batch_duration_seconds",
            "histogram",
            "Time of one forward pass and its heads.",
        );
        inner
            .batch_seconds
            .render(&mut out, "lora_bert_batch_duration_seconds", "");
        head(
            &mut out,
            "lora_bert_requests_total",
            "counter",
            "Requests answered, by route, app and status code.",
        );
        for ((route, app, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "lora_bert_requests_total{{route=\"{}\",app=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(app)
            );
        }
        head(
            &mut out,
            "lora_bert_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its answer, by route and app.",
        );
        for ((route, app), h) in &inner.latency {
            let labels = format!("route=\"{}\",app=\"{}\"", escape(route), escape(app));
            h.render(&mut out, "lora_bert_request_duration_seconds", &labels);
        }
        head(
            &mut out,
            "lora_bert_texts_total",
            "counter",
            "Texts answered without error.",
        );
        let _ = writeln!(out, "lora_bert_texts_total {}", inner.texts);
        head(
            &mut out,
            "lora_bert_cancelled_total",
            "counter",
            "Requests dropped before they ran: their client left.",
        );
        let _ = writeln!(out, "lora_bert_cancelled_total {}", inner.cancelled);
        head(
            &mut out,
            "lora_bert_errors_total",
            "counter",
            "Error answers, by kind.",
        );
        for (kind, n) in &inner.errors {
            let _ = writeln!(
                out,
                "lora_bert_errors_total{{kind=\"{}\"}} {n}",
                kind.as_str()
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_cumulative_and_counts_every_observation_in_inf() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert_eq!(
            out,
            "x_bucket{a=\"b\",le=\"1\"} 2\nx_bucket{a=\"b\",le=\"2\"} 3\n\
             x_bucket{a=\"b\",le=\"+Inf\"} 4\nx_sum{a=\"b\"} 6\nx_count{a=\"b\"} 4\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.request("ner", "a\"b\\c\nd", 200, 0.01, 1, None);
        let text = m.render(1);
        assert!(text.contains(r#"app="a\"b\\c\nd""#), "{text}");
    }
}
