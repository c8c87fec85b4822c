//! Learning curves: a PNG of the right size with drawn content, written atomically, and typed
//! errors for what cannot be drawn.

use lora_bert_train::plot::{SIZE, learning_curves};
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

#[test]
fn curves_of_two_runs_make_a_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    let (a, b) = (report(100, 0.0), report(80, 0.1));
    learning_curves(&path, "two runs", "accuracy", &[("a", &a), ("b", &b)]).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(png_size(&bytes), SIZE);
    // A blank white image compresses to a few hundred bytes; curves, axes and text do not.
    assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    // Nothing but the PNG is left in the folder (the temporary was renamed).
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["curves.png"]);

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
