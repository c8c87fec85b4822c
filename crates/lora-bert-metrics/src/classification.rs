//! Classification scores, computed as scikit-learn computes them.
//!
//! Labels are the sorted union of the gold and predicted labels (scikit-learn's
//! `unique_labels`); a class with no prediction has precision 0, a class with no gold example
//! recall 0, and an F1 with `precision + recall = 0` is 0 (`zero_division=0`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::MetricsError;
use crate::prf::{Averages, Prf, averages};

/// Accuracy, per-class scores, averages and the confusion matrix of a classifier.
///
/// ```
/// use lora_bert_metrics::ClassificationReport;
///
/// let gold = ["pos", "neg", "neg", "pos"];
/// let pred = ["pos", "neg", "pos", "pos"];
/// let r = ClassificationReport::new(&gold, &pred)?;
/// assert_eq!(r.accuracy, 0.75);
/// assert_eq!(r.labels, ["neg", "pos"]);
/// assert_eq!(r.confusion, [[1, 1], [0, 2]]);
/// # Ok::<(), lora_bert_metrics::MetricsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationReport {
    /// The labels, sorted; the order of `per_class` and of the confusion matrix.
    pub labels: Vec<String>,
    /// Fraction of examples whose prediction equals the gold label.
    pub accuracy: f64,
    /// Precision, recall, F1 and support per label.
    pub per_class: BTreeMap<String, Prf>,
    /// Macro and weighted averages (micro equals accuracy for single-label classification).
    pub averages: Averages,
    /// `confusion[i][j]`: examples of gold label `labels[i]` predicted as `labels[j]`.
    pub confusion: Vec<Vec<usize>>,
}

impl ClassificationReport {
    /// Scores `pred` against `gold` (same length, at least one example).
    pub fn new<S: AsRef<str>>(gold: &[S], pred: &[S]) -> Result<Self, MetricsError> {
        if gold.len() != pred.len() {
            return Err(MetricsError::LengthMismatch {
                what: "labels".into(),
                gold: gold.len(),
                pred: pred.len(),
            });
        }
        if gold.is_empty() {
            return Err(MetricsError::Empty);
        }
        let mut labels: Vec<String> = gold
            .iter()
            .chain(pred)
            .map(|s| s.as_ref().to_owned())
            .collect();
        labels.sort();
        labels.dedup();
        let index: BTreeMap<&str, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let n = labels.len();
        let mut confusion = vec![vec![0usize; n]; n];
        for (g, p) in gold.iter().zip(pred) {
            confusion[index[g.as_ref()]][index[p.as_ref()]] += 1;
        }
        let correct: usize = (0..n).map(|i| confusion[i][i]).sum();
        let counts: Vec<(usize, usize, usize)> = (0..n)
            .map(|i| {
                let tp = confusion[i][i];
                let predicted = (0..n).map(|g| confusion[g][i]).sum();
                let actual = confusion[i].iter().sum();
                (tp, predicted, actual)
            })
            .collect();
        let scores: Vec<Prf> = counts
            .iter()
            .map(|&(tp, predicted, actual)| Prf::from_counts(tp, predicted, actual))
            .collect();
        let averages = averages(&counts, &scores);
        Ok(Self {
            accuracy: correct as f64 / gold.len() as f64,
            per_class: labels.iter().cloned().zip(scores).collect(),
            averages,
            confusion,
            labels,
        })
    }

    /// Macro-averaged F1 (scikit-learn's `f1_score(average="macro")`).
    pub fn macro_f1(&self) -> f64 {
        self.averages.macro_avg.f1
    }
}
