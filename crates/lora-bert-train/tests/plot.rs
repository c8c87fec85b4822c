//! Learning curves: a PNG of the right size with drawn content, written atomically, and typed
//! errors for what cannot be drawn.

use lora_bert_train::plot::{Bar, BarSeries, SIZE, grouped_bars, learning_curves};
use lora_bert_train::{Evaluation, FitReport, TrainError};

fn report(steps: usize, offset: f64) -> FitReport {
    let losses: Vec<f64> = (0..steps)
        .map(|s| offset + 1.0 / (1.0 + s as f64) + 0.05 * ((s * 7) % 5) as f64)
        .collect();
    let history = (1..=steps / 10)
        .map(|k| Evaluation {
            step: k * 10,
            metric: 0.5 + 0.04 * k as f64 - offset,
            train_loss: losses[k * 10 - 1],
            lr: 1e-4,
        })
        .collect();
    FitReport {
        steps,
        resumed_from: None,
        best: None,
        stopped_early: false,
        history,
        losses,
    }
}

/// Width and height from the PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// The PNG at `path` (the only file of its folder: the temporary was renamed), checked for
/// size and for drawn content; returns its bytes.
fn drawn_png(path: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(png_size(&bytes), SIZE);
    // A blank white image compresses to a few hundred bytes; curves, axes and text do not.
    assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [path.file_name().unwrap()]);
    bytes
}

#[test]
fn curves_of_two_runs_make_a_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    let (a, b) = (report(100, 0.0), report(80, 0.1));
    learning_curves(&path, "two runs", "accuracy", &[("a", &a), ("b", &b)]).unwrap();
    let bytes = drawn_png(&path);

    // Text is drawn: the same chart with another title differs.
    let other = dir.path().join("other.png");
    learning_curves(&other, "another title", "accuracy", &[("a", &a), ("b", &b)]).unwrap();
    assert_ne!(std::fs::read(&other).unwrap(), bytes);
}

#[test]
fn nothing_to_draw_or_nowhere_to_write_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = report(0, 0.0);
    let err = learning_curves(dir.path().join("x.png"), "t", "m", &[("e", &empty)]).unwrap_err();
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err}");
    let err = learning_curves(dir.path().join("x.png"), "t", "m", &[]).unwrap_err();
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err}");

    let missing = dir.path().join("no/such/folder/x.png");
    let err = learning_curves(&missing, "t", "m", &[("a", &report(20, 0.0))]).unwrap_err();
    assert!(
        matches!(&err, TrainError::Plot { path, .. } if path == &missing),
        "{err}"
    );
}

fn series(name: &str, values: &[(f64, f64)]) -> BarSeries {
    BarSeries {
        name: name.into(),
        values: values.iter().map(|&v| v.into()).collect(),
    }
}

#[test]
fn grouped_bars_make_a_png_that_depends_on_the_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bars.png");
    let cats = ["NER 100%", "NER 10%", "TC 100%"];
    let a = series("NER PF", &[(0.8, 0.3), (-1.2, 0.5), (2.0, 0.0)]);
    let b = series("MTPF-TPL", &[(0.6, 0.2), (2.1, 0.4), (f64::NAN, 0.0)]);
    grouped_bars(
        &path,
        "gain over no PF",
        "points",
        &cats,
        &[a.clone(), b.clone()],
    )
    .unwrap();
    let bytes = drawn_png(&path);

    // Another value draws another bar.
    let other = dir.path().join("other.png");
    let b2 = series("MTPF-TPL", &[(0.6, 0.2), (1.1, 0.4), (f64::NAN, 0.0)]);
    grouped_bars(&other, "gain over no PF", "points", &cats, &[a.clone(), b2]).unwrap();
    assert_ne!(std::fs::read(&other).unwrap(), bytes);

    // An asymmetric interval draws another error bar than a symmetric one around the value.
    let ranged = dir.path().join("ranged.png");
    let mut b3 = b.clone();
    b3.values[0] = Bar::with_range(0.6, 0.5, 1.4);
    grouped_bars(&ranged, "gain over no PF", "points", &cats, &[a, b3]).unwrap();
    assert_ne!(std::fs::read(&ranged).unwrap(), bytes);
}

#[test]
fn grouped_bars_refuse_mismatched_series() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bars.png");
    let short = series("short", &[(1.0, 0.0)]);
    let err = grouped_bars(&path, "t", "y", &["a", "b"], &[short]).unwrap_err();
    assert!(
        matches!(&err, TrainError::InvalidArgument { message, .. } if message.contains("short")),
        "{err}"
    );
    let err = grouped_bars(&path, "t", "y", &[], &[]).unwrap_err();
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err}");
    assert!(!path.exists());
}
