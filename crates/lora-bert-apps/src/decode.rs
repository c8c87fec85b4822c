//! The one path from a token classifier's logits to word labels to entities.
//!
//! 1. Each token's logits become probabilities ([`softmax`]).
//! 2. The windows of a sentence are stitched: each word is read from the window where it has
//!    the most context, and its label from its pieces by an [`Aggregation`] (first piece,
//!    majority, average or max), with a score ([`WordPrediction`];
//!    [`stitch_scored`]).
//! 3. Word labels become entities as seqeval's default mode reads tags, with BILOU's `L-` and
//!    `U-` read as `E-` and `S-` ([`entity_spans`]): `U-LOC U-LOC` is two entities, `B-PER
//!    I-LOC` a `PER` and a `LOC`.
//! 4. Entities are placed on the text by their words' byte ranges and reported in characters
//!    ([`Entity`]).
//!
//! Evaluation scores entities read by step 3 ([`entity_report`]), and serving answers with
//! steps 1–4, so that the entities a user gets are the ones the app was scored on.
//!
//! ```
//! use lora_bert_apps::{Aggregation, LabelAlignment, TokenDecoder};
//! use lora_bert_data::LabelVocab;
//! use lora_bert_data::align::WordPrediction;
//!
//! let vocab = LabelVocab::from_tags(["O", "U-LOC"])?;
//! let decoder = TokenDecoder::new(vocab, LabelAlignment::FirstSubword, Aggregation::First);
//! let text = "Paris Rome";
//! let words = [(0, 5), (6, 10)];
//! let predicted = [
//!     Some(WordPrediction { label: 1, score: 0.9 }),
//!     Some(WordPrediction { label: 1, score: 0.7 }),
//! ];
//! let entities = decoder.entities(text, &words, &predicted)?;
//! assert_eq!(entities.len(), 2);
//! assert_eq!((entities[1].text.as_str(), entities[1].start, entities[1].end), ("Rome", 6, 10));
//! # Ok::<(), lora_bert_apps::AppError>(())
//! ```

use std::borrow::Cow;
use std::ops::Range;

use lora_bert_data::align::{
    Aggregation, LabelAligner, LabelAlignment, TokenPredictions, WordPrediction,
};
use lora_bert_data::scheme::{Span, entities_lenient};
use lora_bert_data::token::TokenExample;
use lora_bert_data::window::stitch_scored;
use lora_bert_data::{DataError, LabelVocab};
use lora_bert_metrics::{Mode, NerReport};

use crate::{AppError, Result};

/// A named entity found in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Its type (`PER`, `person`, ...): the tag without its scheme prefix.
    pub label: String,
    /// The entity's text: from its first word's start to its last word's end.
    pub text: String,
    /// Character offset of its first character in the text.
    pub start: usize,
    /// Character offset one past its last character.
    pub end: usize,
    /// The words it covers.
    pub words: Range<usize>,
    /// The mean score of its words' labels (probabilities, with [`TokenDecoder`]).
    pub score: f32,
}

/// The probabilities of one row of logits (a row of `NaN` for a row holding one).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let mut p = logits.to_vec();
    softmax_in_place(&mut p);
    p
}

/// [`softmax`] over `row`, in place.
fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in row.iter_mut() {
        *x /= sum;
    }
}

/// The index of the largest value of `row`, the first one on ties (0 for an empty row).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// The entities of one sentence's word tags, read as seqeval's default mode reads them
/// ([`lora_bert_metrics::chunks`]: an `I-X` after `O` or another type starts an entity, a
/// change of type ends one) with BILOU's `L-` and `U-` read as `E-` and `S-`. What
/// [`entity_report`] counts and what [`TokenDecoder::entities`] returns.
///
/// # Errors
///
/// [`AppError::Data`] for a tag that is neither `O` nor a `B I E S L U` prefix, `-` and a
/// type.
pub fn entity_spans<S: AsRef<str>>(tags: &[S]) -> Result<Vec<Span>> {
    Ok(entities_lenient(tags)?)
}

/// Whether `label` is a tag [`entity_spans`] reads: `O`, or a `B I E S L U` prefix, `-` and a
/// type without whitespace. A token app whose labels are not all such tags (a
/// part-of-speech tagger's) has no entities to serve.
pub fn is_entity_tag(label: &str) -> bool {
    entities_lenient(&[label]).is_ok()
}

/// `L-X` as `E-X` and `U-X` as `S-X`, the other tags as they are.
fn default_mode_tag(tag: &str) -> Cow<'_, str> {
    match tag.split_at_checked(2) {
        Some(("L-", kind)) => Cow::Owned(format!("E-{kind}")),
        Some(("U-", kind)) => Cow::Owned(format!("S-{kind}")),
        _ => Cow::Borrowed(tag),
    }
}

/// Entity scores of predicted word tags against gold ones, sentence by sentence, with
/// entities read as [`entity_spans`] reads them: seqeval's default mode, except that BILOU's
/// `L-` and `U-` count as `E-` and `S-` (seqeval's default mode knows neither, and reads
/// `U-LOC U-LOC` as one entity). On tags without `L-` and `U-` this is exactly seqeval's
/// default mode. Token accuracy compares the tags so read.
///
/// # Errors
///
/// [`AppError::Metrics`] for no sentence, or sentences (or a sentence's tags) that differ in
/// number.
pub fn entity_report<'a, S: AsRef<str>>(
    gold: &'a [Vec<S>],
    pred: &'a [Vec<S>],
) -> Result<NerReport> {
    let read = |sentences: &'a [Vec<S>]| -> Vec<Vec<Cow<'a, str>>> {
        sentences
            .iter()
            .map(|s| s.iter().map(|t| default_mode_tag(t.as_ref())).collect())
            .collect()
    };
    Ok(NerReport::new(&read(gold), &read(pred), Mode::Default)?)
}

/// Reads a token classifier's logits back to word labels and entities (see the
/// [module docs](self)).
#[derive(Debug, Clone)]
pub struct TokenDecoder {
    vocab: LabelVocab,
    aligner: LabelAligner,
    aggregation: Aggregation,
}

impl TokenDecoder {
    /// A decoder for a head whose classes are `vocab`'s labels, trained with `alignment`,
    /// reading words by `aggregation`.
    pub fn new(vocab: LabelVocab, alignment: LabelAlignment, aggregation: Aggregation) -> Self {
        let aligner = LabelAligner::new(&vocab, alignment);
        Self {
            vocab,
            aligner,
            aggregation,
        }
    }

    /// The labels, one per class.
    pub fn vocab(&self) -> &LabelVocab {
        &self.vocab
    }

    /// How a word's label is read from its pieces.
    pub fn aggregation(&self) -> Aggregation {
        self.aggregation
    }

    /// How the head's training labels were aligned to pieces.
    pub fn alignment(&self) -> LabelAlignment {
        self.aligner.alignment()
    }

    /// The word predictions of one sentence from each of its windows' row-major
    /// `[tokens, labels]` logits (in window order; one window when it was not windowed):
    /// `None` for a word with no token.
    ///
    /// # Errors
    ///
    /// [`AppError::Data`] when the windows are not the windows of one sentence in order, or
    /// the logits do not have one row of the vocabulary's width per token or hold a value
    /// that is not finite.
    pub fn sentence(
        &self,
        windows: &[(&TokenExample, &[f32])],
    ) -> Result<Vec<Option<WordPrediction>>> {
        let n = self.vocab.len();
        let probs: Vec<Vec<f32>> = windows
            .iter()
            .map(|(_, logits)| {
                if n == 0 || logits.len() % n != 0 {
                    return Err(DataError::LengthMismatch {
                        what: format!("token logits (rows of {n} labels)"),
                        expected: logits.len().div_ceil(n.max(1)) * n,
                        found: logits.len(),
                    });
                }
                let mut p = logits.to_vec();
                p.chunks_exact_mut(n).for_each(softmax_in_place);
                Ok(p)
            })
            .collect::<std::result::Result<_, _>>()?;
        let windows: Vec<(&TokenExample, TokenPredictions<'_>)> = windows
            .iter()
            .zip(&probs)
            .map(|((ex, _), p)| {
                (
                    *ex,
                    TokenPredictions::Scores {
                        scores: p,
                        num_labels: n,
                    },
                )
            })
            .collect();
        Ok(stitch_scored(&self.aligner, &windows, self.aggregation)?)
    }

    /// The word predictions of every sentence the `examples` come from, indexed by
    /// [`TokenExample::sentence`] (`num_sentences` entries), from one row-major
    /// `[tokens, labels]` logits per example. A sentence's windows must be consecutive.
    ///
    /// # Errors
    ///
    /// [`AppError::InvalidArgument`] when `logits` has not one entry per example, an
    /// example's sentence is not below `num_sentences`, a sentence has no example, or a
    /// sentence's windows are not consecutive; as [`TokenDecoder::sentence`].
    pub fn sentences(
        &self,
        examples: &[TokenExample],
        logits: &[Vec<f32>],
        num_sentences: usize,
    ) -> Result<Vec<Vec<Option<WordPrediction>>>> {
        let invalid = |message: String| AppError::InvalidArgument {
            what: "examples",
            message,
        };
        if logits.len() != examples.len() {
            return Err(AppError::InvalidArgument {
                what: "token logits",
                message: format!(
                    "{} rows of logits for {} examples",
                    logits.len(),
                    examples.len()
                ),
            });
        }
        let mut words: Vec<Option<Vec<Option<WordPrediction>>>> = vec![None; num_sentences];
        let mut start = 0;
        while start < examples.len() {
            let sentence = examples[start].sentence;
            let mut end = start + 1;
            while end < examples.len() && examples[end].sentence == sentence {
                end += 1;
            }
            let slot = words.get_mut(sentence).ok_or_else(|| {
                invalid(format!(
                    "example {start} is from sentence {sentence}, but there are {num_sentences} sentences"
                ))
            })?;
            if slot.is_some() {
                return Err(invalid(format!(
                    "the windows of sentence {sentence} are not consecutive (again at example {start})"
                )));
            }
            let windows: Vec<(&TokenExample, &[f32])> = (start..end)
                .map(|i| (&examples[i], logits[i].as_slice()))
                .collect();
            *slot = Some(self.sentence(&windows)?);
            start = end;
        }
        words
            .into_iter()
            .enumerate()
            .map(|(s, w)| w.ok_or_else(|| invalid(format!("sentence {s} has no example"))))
            .collect()
    }

    /// The tag of each word (`O` for a word with no prediction).
    pub fn tags(&self, words: &[Option<WordPrediction>]) -> Vec<String> {
        words
            .iter()
            .map(|w| {
                w.and_then(|w| self.vocab.label(w.label))
                    .unwrap_or("O")
                    .to_owned()
            })
            .collect()
    }

    /// The entities of one text from its words' byte ranges in it and their predictions (as
    /// [`TokenDecoder::sentence`] gives them), read by [`entity_spans`].
    ///
    /// # Errors
    ///
    /// [`AppError::InvalidArgument`] when there is not one prediction per word;
    /// [`AppError::Data`] for a label that is not an entity tag, or word ranges outside the
    /// text or off its character boundaries.
    pub fn entities(
        &self,
        text: &str,
        word_spans: &[(usize, usize)],
        words: &[Option<WordPrediction>],
    ) -> Result<Vec<Entity>> {
        if words.len() != word_spans.len() {
            return Err(AppError::InvalidArgument {
                what: "word predictions",
                message: format!("{} for {} words", words.len(), word_spans.len()),
            });
        }
        let spans = entity_spans(&self.tags(words))?;
        spans
            .iter()
            .map(|span| {
                let mut entity = place(text, word_spans, span)?;
                let scores = words[span.start..span.end]
                    .iter()
                    .map(|w| w.map_or(0.0, |w| w.score));
                entity.score = scores.sum::<f32>() / span.len() as f32;
                Ok(entity)
            })
            .collect()
    }
}

/// `span` (over words) placed on `text`, given each word's byte range in it: its text and
/// character offsets, score 1.
fn place(text: &str, word_spans: &[(usize, usize)], span: &Span) -> Result<Entity> {
    let bytes = (span.start < span.end)
        .then(|| {
            Some((
                word_spans.get(span.start)?.0,
                word_spans.get(span.end - 1)?.1,
            ))
        })
        .flatten();
    let found = bytes.and_then(|(start, end)| Some((start, end, text.get(start..end)?)));
    let (start, end, slice) = found.ok_or_else(|| {
        AppError::Data(DataError::InvalidArgument {
            what: "entity span",
            message: format!(
                "`{}` over words {}..{} does not fit {} words of a {}-byte text",
                span.kind,
                span.start,
                span.end,
                word_spans.len(),
                text.len()
            ),
        })
    })?;
    Ok(Entity {
        label: span.kind.clone(),
        text: slice.to_owned(),
        start: text[..start].chars().count(),
        end: text[..end].chars().count(),
        words: span.start..span.end,
        score: 1.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lora_bert_metrics::chunks::chunks;
    use proptest::prelude::*;

    #[test]
    fn entities_are_placed_by_character_and_refused_off_the_text() {
        let text = "I met  Zoë Lovelace.";
        let words = [(0, 1), (2, 5), (7, 11), (12, 20), (20, 21)];
        let e = place(text, &words, &Span::new("PER", 2, 4)).unwrap();
        assert_eq!((e.text.as_str(), e.start, e.end), ("Zoë Lovelace", 7, 19));
        let chars: String = text.chars().skip(e.start).take(e.end - e.start).collect();
        assert_eq!(chars, e.text);
        // Past the words, outside the text, off a character boundary, empty.
        for (words, span) in [
            (&words[..], Span::new("X", 4, 6)),
            (&[(0, 50)][..], Span::new("X", 0, 1)),
            (&[(9, 10)][..], Span::new("X", 0, 1)),
            (&words[..], Span::new("X", 2, 2)),
        ] {
            let err = place(text, words, &span).unwrap_err();
            assert!(matches!(err, AppError::Data(_)), "{err}");
        }
    }

    #[test]
    fn softmax_sums_to_one_and_argmax_takes_the_first_of_ties() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
        assert_eq!(argmax(&p), 2);
        assert_eq!(argmax(&[0.5, 2.0, 2.0, -1.0]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn unit_tags_are_one_entity_each_in_both_readings() {
        let tags = ["U-LOC", "U-LOC", "B-PER", "L-PER"];
        let spans = entity_spans(&tags).unwrap();
        assert_eq!(
            spans,
            [
                Span::new("LOC", 0, 1),
                Span::new("LOC", 1, 2),
                Span::new("PER", 2, 4)
            ]
        );
        let report = entity_report(&[tags.to_vec()], &[tags.to_vec()]).unwrap();
        assert_eq!((report.found, report.correct), (3, 3));
        // seqeval's own default mode reads the two units as one entity.
        assert_eq!(chunks(&[tags.to_vec()]).len(), 2);
    }

    fn tag() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("O".to_owned()),
            (
                prop::sample::select(vec!['B', 'I', 'E', 'S', 'L', 'U']),
                prop::sample::select(vec!["PER", "LOC"])
            )
                .prop_map(|(p, k)| format!("{p}-{k}")),
        ]
    }

    proptest! {
        /// The entities evaluation counts are the entities serving returns: for any
        /// predicted tags, the report finds exactly the spans of `entity_spans`, and a gold
        /// sentence made of those spans' tags is matched entity for entity.
        #[test]
        fn the_report_counts_the_spans_serving_returns(
            sentences in prop::collection::vec(prop::collection::vec(tag(), 1..12), 1..4)
        ) {
            let report = entity_report(&sentences, &sentences).unwrap();
            let spans: usize = sentences.iter().map(|s| entity_spans(s).unwrap().len()).sum();
            prop_assert_eq!(report.found, spans);
            prop_assert_eq!(report.correct, spans);
            // Re-written in IOBES from the spans, the same entities score perfectly.
            let rewritten: Vec<Vec<String>> = sentences
                .iter()
                .map(|s| {
                    lora_bert_data::scheme::encode(
                        &entity_spans(s).unwrap(),
                        s.len(),
                        lora_bert_data::Scheme::Iobes,
                    )
                    .unwrap()
                })
                .collect();
            let across = entity_report(&rewritten, &sentences).unwrap();
            prop_assert_eq!(across.correct, spans);
            prop_assert_eq!(across.averages.micro_avg.f1, if spans == 0 { 0.0 } else { 1.0 });
        }
    }
}
