//! Learning curves as PNG ([`plotters`], text in an embedded DejaVu Sans, so no system font
//! or fontconfig is needed): the training loss per step (with a moving average) above, the dev
//! metric at each evaluation below, one colour per run.

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
    register_font();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "curves.png".into());
    // The bitmap backend picks the format from the extension: keep `.png` on the temporary.
    let partial = path.with_file_name(format!(".{file_name}.partial.png"));
    let plot_err = |e: &dyn std::fmt::Display| TrainError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    draw(&partial, title, metric, runs).map_err(|e| plot_err(&e))?;
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
