//! Precision, recall and F1 from counts, and their averages, as scikit-learn and seqeval
//! compute them (`zero_division=0`).

use serde::Serialize;

/// Precision, recall, F1 and support of one class (or an average).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prf {
    /// `tp / predicted` (0 when nothing was predicted).
    pub precision: f64,
    /// `tp / actual` (0 when there is no gold instance).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Number of gold instances.
    pub support: usize,
}

fn divide(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

impl Prf {
    /// Scores from true positives, predicted and gold counts.
    pub fn from_counts(tp: usize, predicted: usize, actual: usize) -> Self {
        let precision = divide(tp as f64, predicted as f64);
        let recall = divide(tp as f64, actual as f64);
        Self {
            precision,
            recall,
            f1: f1(precision, recall),
            support: actual,
        }
    }
}

/// `2pr / (p + r)`, 0 when `p + r = 0` (scikit-learn's and seqeval's `zero_division=0`).
fn f1(precision: f64, recall: f64) -> f64 {
    divide(2.0 * precision * recall, precision + recall)
}

/// Micro, macro and support-weighted averages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Averages {
    /// Scores of the pooled counts.
    #[serde(rename = "micro")]
    pub micro_avg: Prf,
    /// Unweighted mean of the per-class scores (NaN when there is no class, as in seqeval).
    #[serde(rename = "macro")]
    pub macro_avg: Prf,
    /// Mean of the per-class scores weighted by support.
    #[serde(rename = "weighted")]
    pub weighted_avg: Prf,
}

/// Averages of per-class `(tp, predicted, actual)` counts and their scores.
pub(crate) fn averages(counts: &[(usize, usize, usize)], scores: &[Prf]) -> Averages {
    let (tp, predicted, actual) = counts
        .iter()
        .fold((0, 0, 0), |(a, b, c), &(x, y, z)| (a + x, b + y, c + z));
    let micro_avg = Prf::from_counts(tp, predicted, actual);
    let n = scores.len() as f64;
    // The mean of no class is undefined: NaN, as numpy's (and so seqeval's) average gives.
    let mean = |f: fn(&Prf) -> f64| scores.iter().map(f).sum::<f64>() / n;
    let macro_avg = Prf {
        precision: mean(|s| s.precision),
        recall: mean(|s| s.recall),
        f1: mean(|s| s.f1),
        support: actual,
    };
    let weighted = |f: fn(&Prf) -> f64| {
        divide(
            scores.iter().map(|s| f(s) * s.support as f64).sum::<f64>(),
            actual as f64,
        )
    };
    let weighted_avg = Prf {
        precision: weighted(|s| s.precision),
        recall: weighted(|s| s.recall),
        f1: weighted(|s| s.f1),
        support: actual,
    };
    Averages {
        micro_avg,
        macro_avg,
        weighted_avg,
    }
}
