//! How the report writes numbers, dates, durations and the machine.

use lora_bert::metrics::bootstrap::Interval;

use crate::pf::PfRecord;

use super::stats::mean_std;

/// `+1.23 [−0.45, +2.91]`: a difference and its interval, in points.
pub(super) fn with_interval(i: &Interval) -> String {
    format!(
        "{} [{}, {}]",
        signed(i.estimate),
        signed(i.low),
        signed(i.high)
    )
}

/// The time a pre-finetuning took in all: its record's time, which for a run resumed from a
/// checkpoint covers the steps after the resume only, scaled to all its steps.
pub(super) fn pf_seconds(p: &PfRecord) -> f64 {
    match p.fit.resumed_from {
        Some(from) if p.fit.steps > from => {
            p.seconds * p.fit.steps as f64 / (p.fit.steps - from) as f64
        }
        _ => p.seconds,
    }
}

/// `7`, or `5–9` when the values differ, `–` for none.
pub(super) fn span(values: impl Iterator<Item = usize>) -> String {
    let (mut lo, mut hi) = (usize::MAX, 0);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    match (lo, hi) {
        (usize::MAX, _) => "–".into(),
        (lo, hi) if lo == hi => lo.to_string(),
        (lo, hi) => format!("{lo}–{hi}"),
    }
}

/// `12.34 ± 0.56` in points (scores × 100).
pub(super) fn cell(values: &[f64]) -> String {
    if values.is_empty() {
        return "–".into();
    }
    let (m, s) = mean_std(values);
    if values.len() == 1 {
        format!("{:.2}", 100.0 * m)
    } else {
        format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * s)
    }
}

pub(super) fn signed(v: f64) -> String {
    format!("{:+.2}", 100.0 * v)
}

/// The machine, as far as the program can tell.
pub(super) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpu}, {threads} hardware threads, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// Today's date (UTC) from the system clock.
pub(super) fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    // Howard Hinnant's days-to-civil.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

pub(super) fn hours(seconds: f64) -> String {
    if seconds >= 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.1} min", seconds / 60.0)
    }
}
