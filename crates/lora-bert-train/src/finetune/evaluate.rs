//! Prediction and evaluation: logits to word tags, entities and classes, and their scores.

use burn::module::Module;
use lora_bert_adapters::Adapter;
use lora_bert_apps::TokenDecoder;
use lora_bert_apps::decode::argmax;
use lora_bert_data::align::{Aggregation, LabelAlignment};
use lora_bert_data::batch::{EncodedRows, EncodedTexts};
use lora_bert_data::token::{TokenBatch, TokenExample};
use lora_bert_data::{LabelVocab, TaggedSentence};
use lora_bert_metrics::{ClassificationReport, NerReport};

use super::classifiers::{TextClassifier, TokenClassifier, host_values};
use crate::input::ToBertInput;
use crate::{Result, TrainError};

/// How token predictions are made and read back to words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEvalOptions {
    /// Examples per forward pass.
    pub batch_size: usize,
    /// The tokenizer's padding id.
    pub pad_id: u32,
    /// How a word's tag is read from its pieces.
    pub aggregation: Aggregation,
    /// How the labels were aligned to pieces.
    pub alignment: LabelAlignment,
}

impl TokenEvalOptions {
    /// Batches of 64, first-piece aggregation.
    pub fn new(pad_id: u32) -> Self {
        Self {
            batch_size: 64,
            pad_id,
            aggregation: Aggregation::First,
            alignment: LabelAlignment::FirstSubword,
        }
    }

    /// Sets the examples per forward pass.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }
}

pub(super) fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(TrainError::InvalidArgument {
            what: "batch_size",
            message: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// The logits of every example, row-major `[len, num_labels]` (padding cut off), computed in
/// batches of `batch_size` with the model in validation mode through the app's route.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for a zero batch size; errors of collation and of the
/// forward pass.
pub fn predict_token_logits<S: Adapter>(
    classifier: &TokenClassifier<S>,
    examples: &[TokenExample],
    batch_size: usize,
    pad_id: u32,
) -> Result<Vec<Vec<f32>>> {
    check_batch_size(batch_size)?;
    let model = classifier.valid();
    let route = model.route()?;
    let device = model.model.device();
    let classes = model.head.config().num_labels;
    let all: Vec<usize> = (0..examples.len()).collect();
    let mut out = Vec::with_capacity(examples.len());
    for indices in all.chunks(batch_size) {
        let batch = TokenBatch::collate(examples, indices, pad_id)?;
        let input = batch.to_input(model.model.config(), &device)?;
        let logits = host_values(model.forward(&input, &route)?, "logits")?;
        let row = batch.seq_len * classes;
        for (k, &i) in indices.iter().enumerate() {
            let len = examples[i].len() * classes;
            out.push(logits[k * row..k * row + len].to_vec());
        }
    }
    Ok(out)
}

/// One predicted label id per word of every sentence the examples come from (`None` for a
/// word with no token), indexed by [`TokenExample::sentence`]: `num_sentences` entries.
/// Read as [`stitch_word_ids`] reads them; `vocab` (the head's labels) gives the
/// continuation labels the majority and average aggregations read.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] when `vocab` does not have one label per class of the
/// head; errors of [`predict_token_logits`] and [`stitch_word_ids`].
pub fn predict_word_ids<S: Adapter>(
    classifier: &TokenClassifier<S>,
    examples: &[TokenExample],
    num_sentences: usize,
    vocab: &LabelVocab,
    options: &TokenEvalOptions,
) -> Result<Vec<Vec<Option<u32>>>> {
    let num_labels = classifier.head.config().num_labels;
    check_vocab(vocab, num_labels)?;
    let logits = predict_token_logits(classifier, examples, options.batch_size, options.pad_id)?;
    stitch_word_ids(examples, &logits, num_sentences, vocab, options)
}

/// One label id per word of every sentence (`None` for a word with no token) from the
/// row-major `[len, vocab.len()]` token `logits` of every example (as
/// [`predict_token_logits`] gives them), through the path serving uses
/// ([`TokenDecoder::sentences`]): the windows of each sentence are stitched and each word's
/// label read with `options.aggregation` from the tokens' probabilities. This is the part of
/// [`predict_word_ids`] after the forward pass, for models other than a [`TokenClassifier`]
/// (a [`Tagger`](crate::teacher::Tagger), say).
///
/// # Errors
///
/// [`TrainError::App`] when `logits` has not one row per example, an example's sentence is
/// not below `num_sentences`, a sentence has no example, a sentence's windows are not
/// consecutive, or a row does not fit its window.
pub fn stitch_word_ids(
    examples: &[TokenExample],
    logits: &[Vec<f32>],
    num_sentences: usize,
    vocab: &LabelVocab,
    options: &TokenEvalOptions,
) -> Result<Vec<Vec<Option<u32>>>> {
    let decoder = TokenDecoder::new(vocab.clone(), options.alignment, options.aggregation);
    Ok(decoder
        .sentences(examples, logits, num_sentences)?
        .into_iter()
        .map(|words| words.into_iter().map(|w| w.map(|w| w.label)).collect())
        .collect())
}

/// Word tags of every sentence (see [`predict_word_ids`]), named with `vocab`; a word with no
/// token is tagged `O`.
///
/// # Errors
///
/// As [`predict_word_ids`]; [`TrainError::InvalidArgument`] when `vocab` does not have one
/// label per class of the head.
pub fn predict_word_tags<S: Adapter>(
    classifier: &TokenClassifier<S>,
    examples: &[TokenExample],
    num_sentences: usize,
    vocab: &LabelVocab,
    options: &TokenEvalOptions,
) -> Result<Vec<Vec<String>>> {
    let ids = predict_word_ids(classifier, examples, num_sentences, vocab, options)?;
    Ok(word_tags(ids, vocab))
}

/// Word label ids named with `vocab`; a word with no token (`None`) is tagged `O`.
pub fn word_tags(ids: Vec<Vec<Option<u32>>>, vocab: &LabelVocab) -> Vec<Vec<String>> {
    ids.into_iter()
        .map(|words| {
            words
                .into_iter()
                .map(|id| id.and_then(|id| vocab.label(id)).unwrap_or("O").to_owned())
                .collect()
        })
        .collect()
}

pub(super) fn check_vocab(vocab: &LabelVocab, num_labels: usize) -> Result<()> {
    if vocab.len() != num_labels {
        return Err(TrainError::InvalidArgument {
            what: "labels",
            message: format!("{} labels for a head of {num_labels} classes", vocab.len()),
        });
    }
    Ok(())
}

/// Entity scores ([`entity_report`]) of the word tags predicted for `examples` against
/// the `gold` sentences they were encoded from.
///
/// # Errors
///
/// As [`predict_word_tags`]; [`TrainError::Shape`] when a sentence's predicted words are not
/// its gold words in number; [`TrainError::InvalidArgument`] when there is no sentence.
pub fn evaluate_tokens<S: Adapter>(
    classifier: &TokenClassifier<S>,
    examples: &[TokenExample],
    gold: &[TaggedSentence],
    vocab: &LabelVocab,
    options: &TokenEvalOptions,
) -> Result<NerReport> {
    let pred = predict_word_tags(classifier, examples, gold.len(), vocab, options)?;
    entity_report(gold, &pred)
}

/// Entity scores of predicted word tags against the `gold` sentences, sentence by sentence,
/// with entities read as serving reads them ([`lora_bert_apps::entity_report`]: seqeval's
/// default mode, BILOU's `L-`/`U-` as `E-`/`S-`).
///
/// # Errors
///
/// [`TrainError::Shape`] when the sentences or a sentence's words differ in number;
/// [`TrainError::InvalidArgument`] when there is no sentence.
pub fn entity_report(gold: &[TaggedSentence], pred: &[Vec<String>]) -> Result<NerReport> {
    if gold.len() != pred.len() {
        return Err(TrainError::Shape {
            what: "sentences (gold vs predicted)".into(),
            expected: vec![gold.len()],
            found: vec![pred.len()],
        });
    }
    let gold: Vec<&Vec<String>> = gold.iter().map(|s| &s.tags).collect();
    for (s, (g, p)) in gold.iter().zip(pred).enumerate() {
        if g.len() != p.len() {
            return Err(TrainError::Shape {
                what: format!("words of sentence {s} (gold tags vs the examples' words)"),
                expected: vec![g.len()],
                found: vec![p.len()],
            });
        }
    }
    let gold: Vec<Vec<&str>> = gold.iter().map(|tags| strs(tags)).collect();
    let pred: Vec<Vec<&str>> = pred.iter().map(|tags| strs(tags)).collect();
    Ok(lora_bert_apps::entity_report(&gold, &pred)?)
}

fn strs(tags: &[String]) -> Vec<&str> {
    tags.iter().map(String::as_str).collect()
}

/// The predicted class of every row, in batches of `batch_size`, with the model in validation
/// mode through the app's route (ties: the lowest class id).
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for a zero batch size; errors of collation and of the
/// forward pass.
pub fn predict_texts<S: Adapter>(
    classifier: &TextClassifier<S>,
    rows: &EncodedRows,
    batch_size: usize,
) -> Result<Vec<u32>> {
    check_batch_size(batch_size)?;
    let model = classifier.valid();
    let route = model.route()?;
    let device = model.model.device();
    let classes = model.head.config().num_labels;
    let all: Vec<usize> = (0..rows.len()).collect();
    let mut out = Vec::with_capacity(rows.len());
    for indices in all.chunks(batch_size) {
        let batch = rows.batch(indices)?;
        let input = batch.to_input(model.model.config(), &device)?;
        let logits = host_values(model.forward(&input, &route)?, "logits")?;
        out.extend(logits.chunks_exact(classes).map(|row| argmax(row) as u32));
    }
    Ok(out)
}

/// Accuracy, per-class scores and averages (scikit-learn's) of the classes predicted for
/// `texts` against their labels, named with `vocab`.
///
/// # Errors
///
/// As [`predict_texts`]; [`TrainError::InvalidArgument`] when `vocab` does not fit the head
/// or a label is outside it.
pub fn evaluate_texts<S: Adapter>(
    classifier: &TextClassifier<S>,
    texts: &EncodedTexts,
    vocab: &LabelVocab,
    batch_size: usize,
) -> Result<ClassificationReport> {
    check_vocab(vocab, classifier.head.config().num_labels)?;
    let pred = predict_texts(classifier, texts.rows(), batch_size)?;
    let name = |id: u32| {
        vocab.label(id).ok_or_else(|| TrainError::InvalidArgument {
            what: "labels",
            message: format!("class {id} is outside the {} labels", vocab.len()),
        })
    };
    let gold = texts
        .labels()
        .iter()
        .map(|&id| name(id))
        .collect::<Result<Vec<_>>>()?;
    let pred = pred.into_iter().map(name).collect::<Result<Vec<_>>>()?;
    Ok(ClassificationReport::new(&gold, &pred)?)
}
