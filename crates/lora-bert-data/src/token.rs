//! Tagged sentences encoded into model-ready token-classification examples.

use lora_bert_encoder::tokenizer::{BertTokenizer, Encoding, TokenizerError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::align::{IGNORE_INDEX, LabelAligner, LabelAlignment, token_words};
use crate::batch::{InputBatch, SeqLen, check_indices, pad_rows_to};
use crate::{DataError, LabelVocab, Result, TaggedSentence};

/// One encoded sequence (a sentence, or one window of a long sentence) with its training
/// labels and its map back to the sentence's words.
///
/// All per-token vectors have one entry per token, special tokens included, no padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenExample {
    /// Token ids, `[CLS] ... [SEP]`.
    pub input_ids: Vec<u32>,
    /// Token type ids (all 0 for a single text).
    pub type_ids: Vec<u32>,
    /// Training label per token: a label id, or [`IGNORE_INDEX`]
    /// for special tokens (and with [`LabelAlignment::FirstSubword`] for all pieces but a
    /// word's first).
    pub labels: Vec<i64>,
    /// The sentence word each token belongs to (`None` for special tokens).
    pub token_word: Vec<Option<usize>>,
    /// Index of the sentence in the input of [`encode_tagged`].
    pub sentence: usize,
    /// Number of words of the sentence.
    pub num_words: usize,
    /// Index of this window within the sentence (0 when it was not windowed).
    pub window: usize,
    /// Number of windows of the sentence (1 when it was not windowed).
    pub num_windows: usize,
    /// Index of this example's first non-special token among the sentence's non-special
    /// tokens (0 when not windowed).
    pub token_start: usize,
}

impl TokenExample {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// `true` when there is no token (never the case for an example [`encode_tagged`] makes).
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

impl SeqLen for TokenExample {
    fn seq_len(&self) -> usize {
        self.len()
    }
}

/// A padded token-classification batch, row-major `[batch, seq_len]`, padded on the right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Token ids, `pad_id` in padding.
    pub input_ids: Vec<u32>,
    /// Token type ids, 0 in padding.
    pub type_ids: Vec<u32>,
    /// 1 for tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Training label per token, [`IGNORE_INDEX`] in padding (and wherever the example has
    /// it).
    pub labels: Vec<i64>,
    /// Length of every row: the longest example of the batch.
    pub seq_len: usize,
}

impl TokenBatch {
    /// Collates `examples[i]` for each of `indices`, in that order, padded to the longest
    /// with `pad_id` ([`BertTokenizer::pad_id`]) and [`IGNORE_INDEX`]. Plan the indices with a
    /// [`BatchPlan`](crate::batch::BatchPlan) over the examples.
    ///
    /// ```
    /// use lora_bert_data::token::{TokenBatch, TokenExample};
    ///
    /// let ex = |ids: Vec<u32>, labels: Vec<i64>| TokenExample {
    ///     type_ids: vec![0; ids.len()],
    ///     token_word: vec![None; ids.len()],
    ///     input_ids: ids,
    ///     labels,
    ///     sentence: 0,
    ///     num_words: 0,
    ///     window: 0,
    ///     num_windows: 1,
    ///     token_start: 0,
    /// };
    /// let examples = [ex(vec![101, 7, 102], vec![-100, 2, -100]), ex(vec![101, 102], vec![-100, -100])];
    /// let batch = TokenBatch::collate(&examples, &[1, 0], 0)?;
    /// assert_eq!(batch.input_ids, [101, 102, 0, 101, 7, 102]);
    /// assert_eq!(batch.labels, [-100, -100, -100, -100, 2, -100]);
    /// assert_eq!(batch.attention_mask, [1, 1, 0, 1, 1, 1]);
    /// # Ok::<(), lora_bert_data::DataError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`DataError::Empty`] for no index; [`DataError::InvalidArgument`] for an index out of
    /// range; [`DataError::LengthMismatch`] for an example whose ids, type ids and labels
    /// differ in length.
    pub fn collate(examples: &[TokenExample], indices: &[usize], pad_id: u32) -> Result<Self> {
        check_indices(indices, examples.len())?;
        let rows: Vec<&TokenExample> = indices.iter().map(|&i| &examples[i]).collect();
        if let Some((i, e)) = indices
            .iter()
            .zip(&rows)
            .find(|(_, e)| e.type_ids.len() != e.len() || e.labels.len() != e.len())
        {
            return Err(DataError::LengthMismatch {
                what: format!("type ids and labels of token example {i}"),
                expected: e.len(),
                found: if e.type_ids.len() != e.len() {
                    e.type_ids.len()
                } else {
                    e.labels.len()
                },
            });
        }
        let InputBatch {
            input_ids,
            type_ids,
            attention_mask,
            seq_len,
        } = InputBatch::new(
            rows.iter()
                .map(|e| (e.input_ids.as_slice(), e.type_ids.as_slice())),
            pad_id,
        );
        let labels: Vec<&[i64]> = rows.iter().map(|e| e.labels.as_slice()).collect();
        Ok(TokenBatch {
            input_ids,
            type_ids,
            attention_mask,
            labels: pad_rows_to(&labels, IGNORE_INDEX, seq_len),
            seq_len,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.input_ids.len().checked_div(self.seq_len).unwrap_or(0)
    }

    /// `true` when there is no row (never the case for a batch [`collate`](Self::collate)
    /// returns).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[batch, seq_len]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.len(), self.seq_len]
    }
}

/// Encodes tagged sentences for token classification, in parallel (rayon), keeping their
/// order: one [`TokenExample`] per sentence, or several consecutive ones (its windows) when the
/// tokenizer's [`LengthPolicy`](lora_bert_encoder::tokenizer::LengthPolicy) is `Window` and the
/// sentence is longer than its `max_length`.
///
/// Tokens are mapped to words by byte offset ([`token_words`]), and labels placed as
/// `alignment` says. A word's *first piece* is its first token in the whole sentence: when a
/// word is cut by a window edge, the window that lacks its first piece gives its other pieces
/// the continuation label ([`LabelAlignment::AllSubwords`]) or
/// [`IGNORE_INDEX`]. Overlapping windows are **all** trained on:
/// a word in the overlap of two windows is labelled in both, as Hugging Face's
/// `return_overflowing_tokens` recipes do (more context for the model; at prediction time,
/// [`stitch`](crate::window::stitch) takes each word from one window only). With the
/// `Truncate` policy the words cut off get no label.
///
/// # Errors
///
/// The error of the first failing sentence (lowest index): [`DataError::LengthMismatch`] when
/// its tokens and tags differ in number; [`DataError::UnknownLabel`] naming the sentence,
/// word and tag for a tag outside `vocab`; [`DataError::Tokenizer`] with the sentence index
/// when it is empty or too long for the tokenizer's policy.
///
/// ```no_run
/// use lora_bert_data::{LabelVocab, TaggedSentence, align::LabelAlignment, token::encode_tagged};
/// use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tok = BertTokenizer::from_file("tokenizer.json")?
///     .with_max_length(128)
///     .with_length_policy(LengthPolicy::Window { stride: 32 });
/// let sentences = vec![TaggedSentence {
///     tokens: vec!["Atlanta's".into(), "mayor".into()],
///     tags: vec!["B-LOC".into(), "O".into()],
/// }];
/// let vocab = LabelVocab::from_tags(["O", "B-LOC", "I-LOC"])?;
/// let examples = encode_tagged(&tok, &sentences, &vocab, LabelAlignment::FirstSubword)?;
/// // [CLS] atlanta ' s mayor [SEP]
/// assert_eq!(examples[0].labels, [-100, 1, -100, -100, 0, -100]);
/// # Ok(())
/// # }
/// ```
pub fn encode_tagged(
    tokenizer: &BertTokenizer,
    sentences: &[TaggedSentence],
    vocab: &LabelVocab,
    alignment: LabelAlignment,
) -> Result<Vec<TokenExample>> {
    let aligner = LabelAligner::new(vocab, alignment);
    let results: Vec<Result<Vec<TokenExample>>> = sentences
        .par_iter()
        .enumerate()
        .map(|(i, s)| encode_sentence(tokenizer, i, s, vocab, &aligner))
        .collect();
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// Encodes sentence `index` into its examples.
fn encode_sentence(
    tokenizer: &BertTokenizer,
    index: usize,
    sentence: &TaggedSentence,
    vocab: &LabelVocab,
    aligner: &LabelAligner,
) -> Result<Vec<TokenExample>> {
    if sentence.tags.len() != sentence.tokens.len() {
        return Err(DataError::LengthMismatch {
            what: format!("tags of sentence {index}"),
            expected: sentence.tokens.len(),
            found: sentence.tags.len(),
        });
    }
    let word_labels = sentence
        .tags
        .iter()
        .enumerate()
        .map(|(w, tag)| {
            vocab.get(tag).ok_or_else(|| DataError::UnknownLabel {
                label: tag.clone(),
                context: Some(format!("sentence {index}, word {w}")),
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    let (text, spans) = sentence.text_and_spans();
    let mut examples = encode_words(tokenizer, &text, &spans, index)?;
    let first = first_pieces(
        examples
            .iter()
            .map(|e| (e.token_word.as_slice(), e.token_start)),
        spans.len(),
    );
    for e in &mut examples {
        e.labels = content_positions(&e.token_word, e.token_start)
            .map(|(w, g)| match (w, g) {
                (Some(w), Some(g)) => aligner.piece_label(word_labels[w], first[w] == Some(g)),
                _ => IGNORE_INDEX,
            })
            .collect();
    }
    Ok(examples)
}

/// The examples (windows, with the tokenizer's [`LengthPolicy::Window`](lora_bert_encoder::tokenizer::LengthPolicy::Window)) of one text whose
/// words are the byte ranges `word_spans` (sorted, not overlapping: as
/// [`split_words`](crate::align::split_words) or
/// [`TaggedSentence::text_and_spans`] give them), without training labels (every label is
/// [`IGNORE_INDEX`]), numbered as sentence `index`: what a token classifier predicts on, for
/// [`stitch`](crate::window::stitch) to read back per word. [`encode_tagged`] is this plus the
/// labels.
///
/// # Errors
///
/// [`DataError::Tokenizer`] (with `index`) when the text is empty or too long for the
/// tokenizer's policy; [`DataError::InvalidArgument`] when a token starts outside every word.
pub fn encode_words(
    tokenizer: &BertTokenizer,
    text: &str,
    word_spans: &[(usize, usize)],
    index: usize,
) -> Result<Vec<TokenExample>> {
    let encodings = tokenizer
        .encode(text)
        .map_err(|e| DataError::Tokenizer(reindex(e, index)))?;
    encodings
        .into_iter()
        .map(|e| {
            let token_word = token_words(&e, word_spans)?;
            Ok(unlabelled(e, token_word, index, word_spans.len()))
        })
        .collect()
}

/// The byte range of each word of a text, in text order.
pub type WordSpans = Vec<(usize, usize)>;

/// The words of a raw text (the tokenizer's pre-tokenized words, as byte ranges: what
/// [`split_words`](crate::align::split_words) gives) and its examples (as [`encode_words`]
/// gives them for those words), from one pass of the tokenizer: what a token classifier
/// predicts on for text that comes without words. Under
/// [`LengthPolicy::Truncate`](lora_bert_encoder::tokenizer::LengthPolicy::Truncate) the words
/// cut off are not among the words.
///
/// # Errors
///
/// [`DataError::Tokenizer`] (with `index`) when the text is empty or too long for the
/// tokenizer's policy.
pub fn encode_text(
    tokenizer: &BertTokenizer,
    text: &str,
    index: usize,
) -> Result<(WordSpans, Vec<TokenExample>)> {
    let encodings = tokenizer
        .encode(text)
        .map_err(|e| DataError::Tokenizer(reindex(e, index)))?;
    // Each word's byte range over all its pieces in all windows (windows keep the word
    // indices of the full text), words in text order.
    let mut ranges: std::collections::BTreeMap<u32, (usize, usize)> = Default::default();
    for e in &encodings {
        for (word, &(start, end)) in e.word_ids.iter().zip(&e.offsets) {
            if let Some(word) = word {
                let r = ranges.entry(*word).or_insert((start, end));
                *r = (r.0.min(start), r.1.max(end));
            }
        }
    }
    let position: std::collections::HashMap<u32, usize> =
        ranges.keys().enumerate().map(|(i, &w)| (w, i)).collect();
    let spans: Vec<(usize, usize)> = ranges.into_values().collect();
    let examples = encodings
        .into_iter()
        .map(|e| {
            let token_word = e.word_ids.iter().map(|w| w.map(|w| position[&w])).collect();
            unlabelled(e, token_word, index, spans.len())
        })
        .collect();
    Ok((spans, examples))
}

/// The example of encoding `e` (a window of text `index`, of `num_words` words) to predict
/// on: each token's word, no labels.
fn unlabelled(
    e: Encoding,
    token_word: Vec<Option<usize>>,
    index: usize,
    num_words: usize,
) -> TokenExample {
    let Encoding {
        ids,
        type_ids,
        window,
        num_windows,
        token_start,
        ..
    } = e;
    TokenExample {
        labels: vec![IGNORE_INDEX; ids.len()],
        input_ids: ids,
        type_ids,
        token_word,
        sentence: index,
        num_words,
        window,
        num_windows,
        token_start,
    }
}

/// Each token's word and its index among the text's non-special tokens (`None` for special
/// tokens), given the index of the sequence's first non-special token.
pub(crate) fn content_positions(
    token_word: &[Option<usize>],
    token_start: usize,
) -> impl Iterator<Item = (Option<usize>, Option<usize>)> + '_ {
    let mut next = token_start;
    token_word.iter().map(move |w| {
        let g = w.map(|_| {
            next += 1;
            next - 1
        });
        (*w, g)
    })
}

/// The index (among the text's non-special tokens) of each word's first piece over all the
/// windows of a text; `None` for a word with no token.
pub(crate) fn first_pieces<'a>(
    windows: impl IntoIterator<Item = (&'a [Option<usize>], usize)>,
    num_words: usize,
) -> Vec<Option<usize>> {
    let mut first: Vec<Option<usize>> = vec![None; num_words];
    for (tw, start) in windows {
        for (w, g) in content_positions(tw, start) {
            if let (Some(w), Some(g)) = (w, g)
                && let Some(f) = first.get_mut(w)
            {
                *f = Some(f.map_or(g, |f| f.min(g)));
            }
        }
    }
    first
}

/// The tokenizer error with the sentence index in place of the tokenizer's.
fn reindex(e: TokenizerError, sentence: usize) -> TokenizerError {
    match e {
        TokenizerError::EmptyText { .. } => TokenizerError::EmptyText { index: sentence },
        TokenizerError::TooLong { tokens, max, .. } => TokenizerError::TooLong {
            index: sentence,
            tokens,
            max,
        },
        TokenizerError::Encode { message, .. } => TokenizerError::Encode {
            index: sentence,
            message,
        },
        other => other,
    }
}
