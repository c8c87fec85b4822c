//! Entity-level scores of a tagger, as seqeval computes them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::bootstrap::Counts;
use crate::chunks::chunks;
use crate::error::MetricsError;
use crate::prf::{Averages, Prf, averages};
use crate::scheme::{Scheme, strict_entities};

/// How entities are read from tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// seqeval's default, conlleval-compatible chunking: lenient (`I-` without `B-` starts an
    /// entity); the scheme is not consulted.
    #[default]
    Default,
    /// seqeval's strict mode: entities follow the scheme's rules exactly; a tag the scheme does
    /// not allow is an error.
    Strict(Scheme),
}

/// Entity-level precision, recall and F1 per type and averaged, and token accuracy.
///
/// ```
/// use lora_bert_metrics::{Mode, NerReport};
///
/// let gold = vec![vec!["B-PER", "I-PER", "O", "B-LOC"]];
/// let pred = vec![vec!["B-PER", "I-PER", "O", "O"]];
/// let r = NerReport::new(&gold, &pred, Mode::Default)?;
/// assert_eq!(r.averages.micro_avg.precision, 1.0);
/// assert_eq!(r.averages.micro_avg.recall, 0.5);
/// assert_eq!(r.per_type["LOC"].f1, 0.0);
/// assert_eq!(r.accuracy, 0.75);
/// # Ok::<(), lora_bert_metrics::MetricsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NerReport {
    /// Scores per entity type (types of gold and predicted entities, sorted).
    pub per_type: BTreeMap<String, Prf>,
    /// Micro, macro and weighted averages over the types.
    pub averages: Averages,
    /// Predicted entities, all types (conlleval's "found").
    pub found: usize,
    /// Predicted entities that match a gold entity exactly (conlleval's "correct").
    pub correct: usize,
    /// Token accuracy: fraction of tokens whose predicted tag equals the gold tag (NaN when
    /// there is no token).
    pub accuracy: f64,
}

/// An entity: type and a position key (sentence, start, end), comparable across gold and pred.
type Key = (usize, usize, usize);

fn entities<S: AsRef<str>>(
    sentences: &[Vec<S>],
    mode: Mode,
) -> Result<BTreeMap<String, BTreeSet<Key>>, MetricsError> {
    let mut out: BTreeMap<String, BTreeSet<Key>> = BTreeMap::new();
    match mode {
        Mode::Default => {
            for c in chunks(sentences) {
                out.entry(c.kind).or_default().insert((0, c.start, c.end));
            }
        }
        Mode::Strict(scheme) => {
            for (i, sentence) in sentences.iter().enumerate() {
                for e in strict_entities(sentence, scheme, i)? {
                    out.entry(e.kind).or_default().insert((i, e.start, e.end));
                }
            }
        }
    }
    Ok(out)
}

/// At least one sentence, as many predicted as gold, each of the same length.
fn check_lengths<S: AsRef<str>>(gold: &[Vec<S>], pred: &[Vec<S>]) -> Result<(), MetricsError> {
    if gold.is_empty() && pred.is_empty() {
        return Err(MetricsError::Empty);
    }
    if gold.len() != pred.len() {
        return Err(MetricsError::LengthMismatch {
            what: "sentences".into(),
            gold: gold.len(),
            pred: pred.len(),
        });
    }
    for (i, (g, p)) in gold.iter().zip(pred).enumerate() {
        if g.len() != p.len() {
            return Err(MetricsError::LengthMismatch {
                what: format!("tags of sentence {i}"),
                gold: g.len(),
                pred: p.len(),
            });
        }
    }
    Ok(())
}

/// What one sentence contributes to a [`NerReport`]'s micro scores and token accuracy: the
/// items of a [paired bootstrap](crate::bootstrap) over test sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SentenceCounts {
    /// Entities matched, predicted and gold in the sentence ([`Counts::score`] of their sum is
    /// the micro F1).
    pub entities: Counts,
    /// Tokens tagged right, of the sentence's tokens (the sum scores as token accuracy).
    pub tokens: Counts,
}

impl NerReport {
    /// Per-sentence counts whose sums give [`NerReport::new`]'s micro F1 (`correct`, `found`
    /// and the micro support) and token accuracy for the same arguments: no entity crosses a
    /// sentence boundary in either mode, so the corpus counts are the sentences' sums.
    ///
    /// ```
    /// use lora_bert_metrics::bootstrap::Counts;
    /// use lora_bert_metrics::{Mode, NerReport};
    ///
    /// let gold = vec![vec!["B-PER", "I-PER", "O"], vec!["B-LOC"]];
    /// let pred = vec![vec!["B-PER", "I-PER", "B-LOC"], vec!["O"]];
    /// let counts = NerReport::sentence_counts(&gold, &pred, Mode::Default)?;
    /// assert_eq!(counts[0].entities, Counts::entities(1, 2, 1));
    /// let f1 = Counts::sum(counts.iter().map(|c| &c.entities)).score();
    /// let report = NerReport::new(&gold, &pred, Mode::Default)?;
    /// assert!((f1 - report.averages.micro_avg.f1).abs() < 1e-12);
    /// # Ok::<(), lora_bert_metrics::MetricsError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`NerReport::new`].
    pub fn sentence_counts<S: AsRef<str>>(
        gold: &[Vec<S>],
        pred: &[Vec<S>],
        mode: Mode,
    ) -> Result<Vec<SentenceCounts>, MetricsError> {
        check_lengths(gold, pred)?;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        gold.iter()
            .zip(pred)
            .map(|(g, p)| {
                let truth = entities(std::slice::from_ref(g), mode)?;
                let guess = entities(std::slice::from_ref(p), mode)?;
                let empty = BTreeSet::new();
                let correct = truth
                    .iter()
                    .map(|(kind, g)| g.intersection(guess.get(kind).unwrap_or(&empty)).count())
                    .sum::<usize>();
                let right = g.iter().zip(p).filter(|(g, p)| g.as_ref() == p.as_ref());
                Ok(SentenceCounts {
                    entities: Counts::entities(
                        count(correct),
                        count(guess.values().map(BTreeSet::len).sum()),
                        count(truth.values().map(BTreeSet::len).sum()),
                    ),
                    tokens: Counts::tokens(right.count(), g.len()),
                })
            })
            .collect()
    }

    /// Scores predicted tag sequences against gold ones (at least one sentence; same number of
    /// sentences, same lengths).
    pub fn new<S: AsRef<str>>(
        gold: &[Vec<S>],
        pred: &[Vec<S>],
        mode: Mode,
    ) -> Result<Self, MetricsError> {
        check_lengths(gold, pred)?;
        let truth = entities(gold, mode)?;
        let guess = entities(pred, mode)?;
        let types: BTreeSet<&String> = truth.keys().chain(guess.keys()).collect();
        let empty = BTreeSet::new();
        let counts: Vec<(usize, usize, usize)> = types
            .iter()
            .map(|t| {
                let g = truth.get(*t).unwrap_or(&empty);
                let p = guess.get(*t).unwrap_or(&empty);
                (g.intersection(p).count(), p.len(), g.len())
            })
            .collect();
        let scores: Vec<Prf> = counts
            .iter()
            .map(|&(tp, predicted, actual)| Prf::from_counts(tp, predicted, actual))
            .collect();
        let tokens: usize = gold.iter().map(Vec::len).sum();
        let correct = gold
            .iter()
            .zip(pred)
            .flat_map(|(g, p)| g.iter().zip(p))
            .filter(|(g, p)| g.as_ref() == p.as_ref())
            .count();
        Ok(Self {
            found: counts.iter().map(|c| c.1).sum(),
            correct: counts.iter().map(|c| c.0).sum(),
            averages: averages(&counts, &scores),
            per_type: types.into_iter().cloned().zip(scores).collect(),
            accuracy: correct as f64 / tokens as f64,
        })
    }
}
