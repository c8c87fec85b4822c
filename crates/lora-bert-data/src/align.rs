//! Word labels to word-piece labels and back.
//!
//! A dataset splits a sentence into words its own way (`Atlanta's` is one WNUT word), while
//! BERT's tokenizer splits at every punctuation mark and then into word pieces
//! (`atlanta ' s`). Tokens are therefore mapped to dataset words by **byte offset**
//! ([`token_words`]): the words are joined by single spaces
//! ([`TaggedSentence::text_and_spans`](crate::TaggedSentence::text_and_spans)), the text is
//! encoded, and each token belongs to the word whose byte range holds the token's start. The
//! tokenizer's own `word_ids` are not used.
//!
//! A word can give no token at all: the normalizer drops control and format characters
//! (`"\u{200b}"`, `"\u{0}"`, a lone combining accent), so such a word has nothing to train on
//! and nothing to predict from. It is still a word: predictions come back with one entry per
//! word, `None` for those ([`LabelAligner::word_predictions`]), and [`dropped_words`] lists
//! them, so that a caller gives them `O` or another fallback and metrics still see one tag per
//! word. (Characters the vocabulary lacks, such as most emoji, give `[UNK]`, which is a token.)
//!
//! [`LabelAligner`] holds the policy of both directions: which pieces carry a label when
//! training ([`LabelAlignment`]) and how piece predictions become word predictions
//! ([`Aggregation`]).

use lora_bert_encoder::tokenizer::{BertTokenizer, Encoding, TokenizerError};
use serde::{Deserialize, Serialize};

use crate::scheme::Tag;
use crate::{DataError, LabelVocab, Result};

/// The label of tokens that take no part in the loss (`[CLS]`, `[SEP]`, padding, and with
/// [`LabelAlignment::FirstSubword`] every piece but a word's first), as PyTorch's
/// `CrossEntropyLoss(ignore_index=-100)` and Hugging Face expect.
pub const IGNORE_INDEX: i64 = -100;

/// Which word pieces carry a word's label in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum LabelAlignment {
    /// Only the first piece of each word; the others get [`IGNORE_INDEX`] (the usual choice,
    /// Hugging Face's default).
    #[default]
    FirstSubword,
    /// Every piece: the first gets the word's label, the others its *continuation* label,
    /// which is `I-X` for a `B-X` word when the vocabulary has `I-X` (Hugging Face's
    /// `label_all_tokens` with `b_to_i_label`) and the word's own label otherwise. In IOBES
    /// and BILOU, `E-`/`S-`/`L-`/`U-` words thus give all their pieces their own tag: piece
    /// sequences need not be valid in the scheme, which does not matter since predictions are
    /// read back per word.
    AllSubwords,
}

/// How the predictions of a word's pieces become the word's prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Aggregation {
    /// The prediction of the word's first piece (the only one trained with
    /// [`LabelAlignment::FirstSubword`]).
    #[default]
    First,
    /// The word label whose piece labels (as [`LabelAligner::token_labels`] would write them:
    /// the label on the first piece, its continuation label on the others) agree with the most
    /// piece predictions. With [`LabelAlignment::FirstSubword`] this is a plain majority vote.
    /// Ties go to the first piece's prediction when it is among the tied labels, else to the
    /// lowest id. Scores are first reduced to each piece's best label (ties: lowest id).
    Majority,
    /// The word label with the highest score averaged over the pieces (the first piece's score
    /// for the label, the other pieces' scores for its continuation label); ties go to the
    /// lowest id. Needs [`TokenPredictions::Scores`].
    Average,
    /// The best label of the piece most confident in its best label (Hugging Face's `max`
    /// aggregation; ties: the earlier piece). Needs [`TokenPredictions::Scores`].
    Max,
}

impl Aggregation {
    /// Whether it reads scores, so that [`TokenPredictions::Labels`] cannot feed it.
    pub fn needs_scores(self) -> bool {
        matches!(self, Aggregation::Average | Aggregation::Max)
    }
}

/// A word's predicted label and its score: the score the aggregation chose the label by
/// (the first piece's score for it; the mean over the pieces for [`Aggregation::Average`] and
/// [`Aggregation::Majority`], each piece scored for the label it should predict; the most
/// confident piece's for [`Aggregation::Max`]). Label-only predictions score `1` for the
/// predicted label and `0` otherwise, so a majority's score is its share of the votes. With
/// probabilities in, the score is a probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WordPrediction {
    /// The label id.
    pub label: u32,
    /// Its score.
    pub score: f32,
}

/// A model's output for the tokens of one encoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TokenPredictions<'a> {
    /// One predicted label id per token.
    Labels(&'a [u32]),
    /// Row-major `[tokens, num_labels]` scores (logits, probabilities or log-probabilities).
    Scores {
        /// The scores.
        scores: &'a [f32],
        /// Labels per token: the vocabulary size.
        num_labels: usize,
    },
}

/// The word each token of `encoding` belongs to, given the byte range of each word in the
/// encoded text; `None` for special tokens (those with no sequence id).
///
/// A token belongs to the word whose range holds the token's first byte. `word_spans` must be
/// sorted and must not overlap (as [`TaggedSentence::text_and_spans`](crate::TaggedSentence::text_and_spans)
/// and [`split_words`] give them). Works on windows too: their offsets point into the full
/// text.
///
/// # Errors
///
/// [`DataError::InvalidArgument`] when the spans are unsorted or overlap, when the encoding
/// is a pair, or when a token starts outside every word (the spans do not come from the
/// encoded text).
pub fn token_words(
    encoding: &Encoding,
    word_spans: &[(usize, usize)],
) -> Result<Vec<Option<usize>>> {
    let bad = |message: String| DataError::InvalidArgument {
        what: "word spans",
        message,
    };
    if let Some(w) = word_spans
        .windows(2)
        .position(|w| w[0].0 > w[0].1 || w[0].1 > w[1].0)
    {
        return Err(bad(format!(
            "word {w} {:?} and word {} {:?} are unsorted or overlap",
            word_spans[w],
            w + 1,
            word_spans[w + 1]
        )));
    }
    let mut out = Vec::with_capacity(encoding.len());
    for (i, (&(start, end), seq)) in encoding
        .offsets
        .iter()
        .zip(&encoding.sequence_ids)
        .enumerate()
    {
        match seq {
            None => out.push(None),
            Some(0) => {
                // The last word starting at or before `start`.
                let w = word_spans.partition_point(|&(s, _)| s <= start);
                let word = w
                    .checked_sub(1)
                    .filter(|&w| start < word_spans[w].1)
                    .ok_or_else(|| {
                        bad(format!(
                            "token {i} `{}` at bytes {start}..{end} lies in no word",
                            encoding.tokens[i]
                        ))
                    })?;
                out.push(Some(word));
            }
            Some(_) => {
                return Err(bad(
                    "cannot map a pair encoding onto one text's words".into()
                ));
            }
        }
    }
    Ok(out)
}

/// The words (of `num_words`) that no token maps to, in order.
///
/// Pass the `token_word` of every window of a text to account for all of them.
pub fn dropped_words<'a>(
    token_words: impl IntoIterator<Item = &'a [Option<usize>]>,
    num_words: usize,
) -> Vec<usize> {
    let mut seen = vec![false; num_words];
    for tw in token_words {
        for &w in tw.iter().flatten() {
            if let Some(s) = seen.get_mut(w) {
                *s = true;
            }
        }
    }
    (0..num_words).filter(|&w| !seen[w]).collect()
}

/// Splits raw text into the words BERT's tokenizer sees (its normalizer and pre-tokenizer:
/// whitespace, every punctuation character and every CJK character separate words; control
/// and format characters vanish), as byte ranges into `text`.
///
/// Use it to run a token classifier on raw text: label the words, then place the entities on
/// the text by these ranges (the apps crate's `TokenDecoder::entities` does both).
///
/// # Errors
///
/// [`DataError::Tokenizer`] when the tokenizer fails.
pub fn split_words(tokenizer: &BertTokenizer, text: &str) -> Result<Vec<(usize, usize)>> {
    let enc = tokenizer
        .inner()
        .encode(text, false)
        .map_err(|e| TokenizerError::Encode {
            index: 0,
            message: e.to_string(),
        })?;
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut last = None;
    for (word, &(start, end)) in enc.get_word_ids().iter().zip(enc.get_offsets()) {
        match spans.last_mut() {
            Some(span) if word.is_some() && *word == last => span.1 = span.1.max(end),
            _ => spans.push((start, end)),
        }
        last = *word;
    }
    Ok(spans)
}

/// Aligns word labels to word pieces and piece predictions back to words, for one label
/// vocabulary.
///
/// ```
/// use lora_bert_data::{LabelVocab, align::{LabelAligner, LabelAlignment, Aggregation, TokenPredictions, IGNORE_INDEX}};
///
/// let vocab = LabelVocab::from_tags(["O", "B-LOC", "I-LOC"])?;
/// let all = LabelAligner::new(&vocab, LabelAlignment::AllSubwords);
/// // [CLS] atlanta ' s [SEP]: one dataset word, "Atlanta's", tagged B-LOC (id 1).
/// let token_word = [None, Some(0), Some(0), Some(0), None];
/// let labels = all.token_labels(&token_word, &[1])?;
/// assert_eq!(labels, [IGNORE_INDEX, 1, 2, 2, IGNORE_INDEX]);
/// let back = all.word_predictions(&token_word, TokenPredictions::Labels(&[0, 1, 2, 2, 0]), 1, Aggregation::Majority)?;
/// assert_eq!(back, [Some(1)]);
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelAligner {
    alignment: LabelAlignment,
    /// The label continuation pieces get, per label id.
    continuation: Vec<u32>,
}

impl LabelAligner {
    /// An aligner for the labels of `vocab`.
    pub fn new(vocab: &LabelVocab, alignment: LabelAlignment) -> Self {
        let continuation = vocab
            .iter()
            .map(|(id, label)| match Tag::parse(label) {
                Some(Tag::Entity('B', kind)) => vocab.get(&format!("I-{kind}")).unwrap_or(id),
                _ => id,
            })
            .collect();
        LabelAligner {
            alignment,
            continuation,
        }
    }

    /// The alignment policy.
    pub fn alignment(&self) -> LabelAlignment {
        self.alignment
    }

    /// Number of labels.
    pub fn num_labels(&self) -> usize {
        self.continuation.len()
    }

    /// The label continuation pieces of a word labelled `id` get with
    /// [`LabelAlignment::AllSubwords`] (`I-X` for `B-X`, else `id`).
    pub fn continuation(&self, id: u32) -> Option<u32> {
        self.continuation.get(id as usize).copied()
    }

    /// The label piece `first` (is it the word's first piece?) of a word labelled `label`
    /// gets.
    pub(crate) fn piece_label(&self, label: u32, first: bool) -> i64 {
        match (first, self.alignment) {
            (true, _) => i64::from(label),
            (false, LabelAlignment::AllSubwords) => i64::from(self.continuation[label as usize]),
            (false, LabelAlignment::FirstSubword) => IGNORE_INDEX,
        }
    }

    /// The expected prediction of a piece of a word labelled `label`, for aggregation.
    fn expected(&self, label: u32, first: bool) -> u32 {
        match (first, self.alignment) {
            (false, LabelAlignment::AllSubwords) => self.continuation[label as usize],
            _ => label,
        }
    }

    /// One training label per token: the word labels (ids) placed on the pieces as the
    /// alignment says, [`IGNORE_INDEX`] on special tokens. A word's first piece is its first
    /// token in `token_word`.
    ///
    /// # Errors
    ///
    /// [`DataError::InvalidArgument`] for a token of a word past `word_labels` or a label id
    /// outside the vocabulary.
    pub fn token_labels(
        &self,
        token_word: &[Option<usize>],
        word_labels: &[u32],
    ) -> Result<Vec<i64>> {
        let mut seen = vec![false; word_labels.len()];
        token_word
            .iter()
            .map(|w| {
                let Some(w) = *w else { return Ok(IGNORE_INDEX) };
                let label = *word_labels
                    .get(w)
                    .ok_or_else(|| DataError::InvalidArgument {
                        what: "token_word",
                        message: format!("a token maps to word {w} of {}", word_labels.len()),
                    })?;
                self.check_id(label)?;
                let first = !std::mem::replace(&mut seen[w], true);
                Ok(self.piece_label(label, first))
            })
            .collect()
    }

    fn check_id(&self, id: u32) -> Result<()> {
        if (id as usize) < self.num_labels() {
            Ok(())
        } else {
            Err(DataError::InvalidArgument {
                what: "label id",
                message: format!("{id} is not below the {} labels", self.num_labels()),
            })
        }
    }

    /// One predicted label per word from the predictions for the tokens of one encoding
    /// (`None` for a word with no token: see the [module docs](self)). A word's first piece is
    /// its first token in `token_word`.
    ///
    /// # Errors
    ///
    /// [`DataError::LengthMismatch`] when the predictions do not have one entry (or one row)
    /// per token; [`DataError::InvalidArgument`] for a word index not below `num_words`, a
    /// label id or score row outside the vocabulary, a score that is not finite, or
    /// [`Aggregation::Average`] without scores.
    pub fn word_predictions(
        &self,
        token_word: &[Option<usize>],
        predictions: TokenPredictions<'_>,
        num_words: usize,
        aggregation: Aggregation,
    ) -> Result<Vec<Option<u32>>> {
        let preds = Preds::new(self, predictions, token_word.len(), aggregation)?;
        let pieces = pieces(token_word, num_words)?;
        Ok(pieces
            .iter()
            .map(|p| (!p.is_empty()).then(|| self.aggregate(&preds, p, aggregation).label))
            .collect())
    }

    /// The prediction of one word from its pieces (token indices, first piece first), with
    /// its score.
    pub(crate) fn aggregate(
        &self,
        preds: &Preds<'_>,
        pieces: &[usize],
        aggregation: Aggregation,
    ) -> WordPrediction {
        let mean = |c: u32| {
            pieces
                .iter()
                .enumerate()
                .map(|(j, &t)| preds.score(t, self.expected(c, j == 0)))
                .sum::<f32>()
                / pieces.len() as f32
        };
        let label = self.aggregate_label(preds, pieces, aggregation);
        let score = match aggregation {
            Aggregation::First => preds.score(pieces[0], label),
            Aggregation::Majority | Aggregation::Average => mean(label),
            Aggregation::Max => pieces
                .iter()
                .map(|&t| preds.score(t, preds.best(t)))
                .fold(f32::NEG_INFINITY, f32::max),
        };
        WordPrediction { label, score }
    }

    fn aggregate_label(
        &self,
        preds: &Preds<'_>,
        pieces: &[usize],
        aggregation: Aggregation,
    ) -> u32 {
        let first = pieces[0];
        match aggregation {
            Aggregation::First => preds.best(first),
            Aggregation::Max => {
                let mut best = first;
                for &t in &pieces[1..] {
                    if preds.score(t, preds.best(t)) > preds.score(best, preds.best(best)) {
                        best = t;
                    }
                }
                preds.best(best)
            }
            Aggregation::Majority => {
                let best: Vec<u32> = pieces.iter().map(|&t| preds.best(t)).collect();
                let votes = |c: u32| {
                    best.iter()
                        .enumerate()
                        .filter(|&(j, &b)| b == self.expected(c, j == 0))
                        .count()
                };
                let top = (0..self.num_labels() as u32).map(votes).max().unwrap_or(0);
                if votes(best[0]) == top {
                    best[0]
                } else {
                    (0..self.num_labels() as u32)
                        .find(|&c| votes(c) == top)
                        .unwrap_or(best[0])
                }
            }
            Aggregation::Average => {
                let mut best = (0, f32::NEG_INFINITY);
                for c in 0..self.num_labels() as u32 {
                    let total: f32 = pieces
                        .iter()
                        .enumerate()
                        .map(|(j, &t)| preds.score(t, self.expected(c, j == 0)))
                        .sum();
                    let mean = total / pieces.len() as f32;
                    if mean > best.1 {
                        best = (c, mean);
                    }
                }
                best.0
            }
        }
    }
}

/// Token indices of each word's pieces, in order.
pub(crate) fn pieces(token_word: &[Option<usize>], num_words: usize) -> Result<Vec<Vec<usize>>> {
    let mut out = vec![Vec::new(); num_words];
    for (t, w) in token_word.iter().enumerate() {
        if let Some(w) = *w {
            out.get_mut(w)
                .ok_or_else(|| DataError::InvalidArgument {
                    what: "token_word",
                    message: format!("token {t} maps to word {w}, not below the {num_words} words"),
                })?
                .push(t);
        }
    }
    Ok(out)
}

/// Checked predictions of one encoding.
pub(crate) struct Preds<'a> {
    predictions: TokenPredictions<'a>,
}

impl<'a> Preds<'a> {
    pub(crate) fn new(
        aligner: &LabelAligner,
        predictions: TokenPredictions<'a>,
        tokens: usize,
        aggregation: Aggregation,
    ) -> Result<Self> {
        let n = aligner.num_labels();
        match predictions {
            TokenPredictions::Labels(labels) => {
                if aggregation.needs_scores() {
                    return Err(DataError::InvalidArgument {
                        what: "aggregation",
                        message: format!("{aggregation:?} needs scores, not labels"),
                    });
                }
                if labels.len() != tokens {
                    return Err(DataError::LengthMismatch {
                        what: "token predictions".into(),
                        expected: tokens,
                        found: labels.len(),
                    });
                }
                labels.iter().try_for_each(|&l| aligner.check_id(l))?;
            }
            TokenPredictions::Scores { scores, num_labels } => {
                if num_labels != n {
                    return Err(DataError::InvalidArgument {
                        what: "num_labels",
                        message: format!("{num_labels} scores per token for {n} labels"),
                    });
                }
                if scores.len() != tokens * n {
                    return Err(DataError::LengthMismatch {
                        what: format!("token scores ({tokens} tokens x {n} labels)"),
                        expected: tokens * n,
                        found: scores.len(),
                    });
                }
                if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
                    return Err(DataError::InvalidArgument {
                        what: "scores",
                        message: format!("score {} of token {} is {}", i % n, i / n, scores[i]),
                    });
                }
            }
        }
        Ok(Preds { predictions })
    }

    /// The best label of token `t` (lowest id on ties).
    fn best(&self, t: usize) -> u32 {
        match self.predictions {
            TokenPredictions::Labels(l) => l[t],
            TokenPredictions::Scores { scores, num_labels } => {
                let row = &scores[t * num_labels..(t + 1) * num_labels];
                let mut best = 0;
                for (c, &s) in row.iter().enumerate() {
                    if s > row[best] {
                        best = c;
                    }
                }
                best as u32
            }
        }
    }

    /// Token `t`'s score for `label` (label-only predictions: 1 for the predicted label, 0
    /// otherwise).
    fn score(&self, t: usize, label: u32) -> f32 {
        match self.predictions {
            TokenPredictions::Scores { scores, num_labels } => {
                scores[t * num_labels + label as usize]
            }
            TokenPredictions::Labels(l) => f32::from(u8::from(l[t] == label)),
        }
    }
}
