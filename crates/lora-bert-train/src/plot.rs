//! Charts as PNG ([`plotters`], text in an embedded DejaVu Sans, so no system font or
//! fontconfig is needed), written atomically:
//!
//! * [`learning_curves`]: the training loss per step (with a moving average) above, the dev
//!   metric at each evaluation below, one colour per run;
//! * [`grouped_bars`]: one group of bars per category, one colour per series, each bar with an
//!   error bar (a mean and a standard deviation, or an estimate and its confidence interval).

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::trainer::FitReport;
use crate::{Result, TrainError};

/// Size of the PNG in pixels (width, height).
pub const SIZE: (u32, u32) = (1000, 800);

/// Draws the learning curves of `runs` (a name and a report each) into the PNG `path`,
/// written atomically (a sibling temporary file renamed over it).
///
/// The loss panel shows each run's step losses faintly and their moving average over
/// `max(1, steps / 50)` steps; the metric panel marks each evaluation. `metric` names the
/// dev metric on the axis.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for no run or a run without steps;
/// [`TrainError::Plot`] when drawing or writing fails.
///
/// ```no_run
/// # fn main() -> lora_bert_train::Result<()> {
/// # let report: lora_bert_train::FitReport = todo!();
/// lora_bert_train::plot::learning_curves("curves.png", "WNUT-16", "entity F1", &[("lora", &report)])?;
/// # Ok(()) }
/// ```
pub fn learning_curves(
    path: impl AsRef<Path>,
    title: &str,
    metric: &str,
    runs: &[(&str, &FitReport)],
) -> Result<()> {
    let path = path.as_ref();
    if runs.is_empty() || runs.iter().any(|(_, r)| r.losses.is_empty()) {
        return Err(TrainError::InvalidArgument {
            what: "learning curves",
            message: "need at least one run, each with at least one step".into(),
        });
    }
    write_atomically(path, |partial| draw(partial, title, metric, runs))
}

/// One bar of [`grouped_bars`]: its value and the span of its error bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Height of the bar.
    pub value: f64,
    /// Bottom of the error bar (no error bar when it is not below `high`, or not finite).
    pub low: f64,
    /// Top of the error bar.
    pub high: f64,
}

impl Bar {
    /// `value ± error` (a standard deviation, say); an error of 0 or not finite draws no error
    /// bar.
    pub fn with_error(value: f64, error: f64) -> Bar {
        let e = if error.is_finite() { error.abs() } else { 0.0 };
        Bar {
            value,
            low: value - e,
            high: value + e,
        }
    }

    /// `value` with an error bar from `low` to `high`, which need not be symmetric (a
    /// bootstrap interval, say).
    pub fn with_range(value: f64, low: f64, high: f64) -> Bar {
        Bar { value, low, high }
    }

    fn has_error_bar(&self) -> bool {
        self.low.is_finite() && self.high.is_finite() && self.low < self.high
    }
}

impl From<(f64, f64)> for Bar {
    /// `(value, error)`: [`Bar::with_error`].
    fn from((value, error): (f64, f64)) -> Bar {
        Bar::with_error(value, error)
    }
}

/// One series of [`grouped_bars`]: its name and a bar per category.
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    /// Name in the legend.
    pub name: String,
    /// One bar per category, in the order of the categories.
    pub values: Vec<Bar>,
}

/// Draws a grouped bar chart into the PNG `path` (written atomically): one group per entry of
/// `categories`, one bar per series in each group (same colour across groups), each with an
/// error bar, and a line at 0 when the values change sign. Non-finite values draw no bar.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for no category, no series, or a series whose number of
/// values is not the number of categories; [`TrainError::Plot`] when drawing or writing fails.
///
/// ```no_run
/// use lora_bert_train::plot::{Bar, BarSeries, grouped_bars};
///
/// let series = [
///     // Means ± standard deviations.
///     BarSeries { name: "NER PF".into(), values: vec![(0.8, 0.3).into(), (-1.2, 0.5).into()] },
///     // Estimates with 95% intervals.
///     BarSeries {
///         name: "MTPF-TPL".into(),
///         values: vec![Bar::with_range(0.6, 0.1, 1.4), Bar::with_range(2.1, 1.2, 2.6)],
///     },
/// ];
/// grouped_bars("deltas.png", "gain over no PF", "points", &["NER", "TC"], &series)?;
/// # Ok::<(), lora_bert_train::TrainError>(())
/// ```
pub fn grouped_bars(
    path: impl AsRef<Path>,
    title: &str,
    y_label: &str,
    categories: &[&str],
    series: &[BarSeries],
) -> Result<()> {
    let path = path.as_ref();
    if categories.is_empty() || series.is_empty() {
        return Err(TrainError::InvalidArgument {
            what: "bar chart",
            message: "need at least one category and one series".into(),
        });
    }
    if let Some(bad) = series.iter().find(|s| s.values.len() != categories.len()) {
        return Err(TrainError::InvalidArgument {
            what: "bar chart",
            message: format!(
                "series `{}` has {} values for {} categories",
                bad.name,
                bad.values.len(),
                categories.len()
            ),
        });
    }
    write_atomically(path, |partial| {
        draw_bars(partial, title, y_label, categories, series)
    })
}

/// Draws with `draw` into a sibling temporary PNG, then renames it over `path`.
fn write_atomically(path: &Path, draw: impl FnOnce(&Path) -> DrawResult) -> Result<()> {
    register_font();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "chart.png".into());
    // The bitmap backend picks the format from the extension: keep `.png` on the temporary.
    let partial = path.with_file_name(format!(".{file_name}.partial.png"));
    let plot_err = |e: &dyn std::fmt::Display| TrainError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    draw(&partial).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        plot_err(&e)
    })?;
    std::fs::rename(&partial, path).map_err(|source| {
        let _ = std::fs::remove_file(&partial);
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(path: &Path, title: &str, metric: &str, runs: &[(&str, &FitReport)]) -> DrawResult {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 26))?;
    let (top, bottom) = root.split_vertically(SIZE.1 * 11 / 20);

    let max_step = runs.iter().map(|(_, r)| r.losses.len()).max().unwrap_or(1) as f64;
    let (lo, hi) = bounds(runs.iter().flat_map(|(_, r)| r.losses.iter().copied()));
    let mut losses = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_step, lo..hi)?;
    losses
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("training loss")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (name, report)) in runs.iter().enumerate() {
        let colour = Palette99::pick(i);
        losses.draw_series(LineSeries::new(
            report
                .losses
                .iter()
                .enumerate()
                .map(|(s, &l)| ((s + 1) as f64, l)),
            colour.mix(0.25).stroke_width(1),
        ))?;
        let window = (report.losses.len() / 50).max(1);
        losses
            .draw_series(LineSeries::new(
                moving_average(&report.losses, window),
                colour.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    losses
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;

    let evaluations = || runs.iter().flat_map(|(_, r)| r.history.iter());
    let (lo, hi) = bounds(evaluations().map(|e| e.metric));
    let mut metrics = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_step, lo..hi)?;
    metrics
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(format!("dev {metric}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (_, report)) in runs.iter().enumerate() {
        let colour = Palette99::pick(i);
        let points: Vec<(f64, f64)> = report
            .history
            .iter()
            .map(|e| (e.step as f64, e.metric))
            .collect();
        metrics.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
        metrics.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, colour.filled())),
        )?;
    }
    root.present()?;
    Ok(())
}

fn draw_bars(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[&str],
    series: &[BarSeries],
) -> DrawResult {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 26))?;
    let ends = series
        .iter()
        .flat_map(|s| s.values.iter())
        .filter(|b| b.value.is_finite())
        .flat_map(|b| {
            if b.has_error_bar() {
                vec![b.value, b.low, b.high]
            } else {
                vec![b.value]
            }
        });
    // Bars start at 0: keep 0 in the range.
    let (lo, hi) = bounds(ends.chain([0.0]));
    let n = categories.len();
    // Category i is centred on x = i, so the axis's integer key points name the categories.
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, lo..hi)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            categories
                .get(i as usize)
                .map(|c| c.to_string())
                .unwrap_or_default()
        })
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .draw()?;
    if lo < 0.0 && hi > 0.0 {
        chart.draw_series(LineSeries::new([(-0.5, 0.0), (n as f64 - 0.5, 0.0)], BLACK))?;
    }
    let width = 0.8 / series.len() as f64;
    for (j, s) in series.iter().enumerate() {
        let colour = Palette99::pick(j);
        let bars = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, b)| b.value.is_finite());
        let x0 = |i: usize| i as f64 - 0.4 + j as f64 * width;
        chart
            .draw_series(bars.clone().map(|(i, b)| {
                Rectangle::new(
                    [(x0(i) + 0.1 * width, 0.0), (x0(i) + 0.9 * width, b.value)],
                    colour.filled(),
                )
            }))?
            .label(s.name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], colour.filled()));
        chart.draw_series(bars.filter(|(_, b)| b.has_error_bar()).map(|(i, b)| {
            let x = x0(i) + 0.5 * width;
            PathElement::new([(x, b.low), (x, b.high)], BLACK.stroke_width(2))
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}

/// A padded range holding every finite value (a unit range around a constant or no value).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad, hi + pad)
}

/// Trailing moving average over `window` steps, as (step, value) points from step 1.
fn moving_average(values: &[f64], window: usize) -> Vec<(f64, f64)> {
    let mut sum = 0.0;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            sum += v;
            if i >= window {
                sum -= values[i - window];
            }
            ((i + 1) as f64, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // DejaVu Sans is a valid TrueType font: registering it cannot fail.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_matches_a_direct_mean() {
        let values = [1.0, 2.0, 3.0, 4.0, 5.0];
        let got = moving_average(&values, 2);
        assert_eq!(
            got,
            vec![(1.0, 1.0), (2.0, 1.5), (3.0, 2.5), (4.0, 3.5), (5.0, 4.5)]
        );
    }

    #[test]
    fn bounds_pad_and_survive_constants() {
        assert_eq!(bounds([].into_iter()), (0.0, 1.0));
        let (lo, hi) = bounds([2.0, 2.0, f64::NAN].into_iter());
        assert!(lo < 2.0 && hi > 2.0);
    }
}
