//! The fine-tuning loops.

use lora_bert_adapters::{AdaptedModel, Adapter};
use lora_bert_apps::manifest::WordDecoding;
use lora_bert_data::batch::EncodedTexts;
use lora_bert_data::token::{TokenBatch, TokenExample};
use lora_bert_data::{LabelVocab, TaggedSentence};

use super::classifiers::{TextClassifier, TokenClassifier};
use super::evaluate::{check_batch_size, evaluate_texts, evaluate_tokens};
use super::{FineTuneConfig, TextMetric, TokenMetric};
use crate::heads::{SequenceClassificationHeadConfig, TokenClassificationHeadConfig};
use crate::input::{ToBertInput, class_labels, token_labels};
use crate::loss::{cross_entropy, token_cross_entropy};
use crate::{FitReport, Result};

/// Fine-tunes token classification on `train`, evaluated by
/// [`FineTuneConfig::token_metric`] (entity micro-F1 by default) on `dev`: the
/// examples and the gold sentences they were encoded from (in the order of
/// [`TokenExample::sentence`]). `vocab` names the head's classes; `pad_id` is the tokenizer's.
///
/// Returns the best classifier (by the dev metric) and the trainer's report.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`](crate::TrainError::InvalidArgument) for no training example, a zero batch size or a bad
/// setup; errors of [`TokenClassifier::new`], of the loss (a label outside `vocab`), of the
/// evaluation and of [`Trainer::fit`](crate::Trainer::fit).
pub fn finetune_tokens<S: Adapter>(
    model: AdaptedModel<S>,
    train: &[TokenExample],
    dev: (&[TokenExample], &[TaggedSentence]),
    vocab: &LabelVocab,
    config: &FineTuneConfig<S::Config>,
    pad_id: u32,
) -> Result<(TokenClassifier<S>, FitReport)> {
    check_batch_size(config.batch_size)?;
    check_batch_size(config.eval_batch_size)?;
    let device = model.device();
    device.seed(config.seed);
    let head = TokenClassificationHeadConfig::new(model.config().hidden_size, vocab.len())
        .with_dropout(config.head_dropout);
    let mut classifier = TokenClassifier::new(model, &config.app, &head)?;
    // Saved with the app, so that serving reads words as this evaluation does.
    classifier.app.decoding = Some(WordDecoding {
        alignment: config.alignment,
        aggregation: config.aggregation,
    });
    let route = classifier.route()?;
    let batches = config.batches(train.iter().map(TokenExample::len).collect())?;
    let options = config.token_options(pad_id);
    let (dev_examples, dev_gold) = dev;
    config.trainer().fit(
        classifier,
        batches,
        |m: &TokenClassifier<S>, indices: Vec<usize>| {
            let device = m.model.device();
            let batch = TokenBatch::collate(train, &indices, pad_id)?;
            let input = batch.to_input(m.model.config(), &device)?;
            let labels = token_labels(&batch, &device)?;
            token_cross_entropy(m.forward(&input, &route)?, labels, &config.cross_entropy)
        },
        |m: &TokenClassifier<S>| {
            let report = evaluate_tokens(m, dev_examples, dev_gold, vocab, &options)?;
            Ok(match config.token_metric {
                TokenMetric::EntityF1 => report.averages.micro_avg.f1,
                TokenMetric::Accuracy => report.accuracy,
            })
        },
    )
}

/// Fine-tunes text classification on `train`, evaluated on `dev` by
/// [`FineTuneConfig::text_metric`]. `vocab` names the classes.
///
/// Returns the best classifier (by the dev metric) and the trainer's report.
///
/// # Errors
///
/// As [`finetune_tokens`].
pub fn finetune_texts<S: Adapter>(
    model: AdaptedModel<S>,
    train: &EncodedTexts,
    dev: &EncodedTexts,
    vocab: &LabelVocab,
    config: &FineTuneConfig<S::Config>,
) -> Result<(TextClassifier<S>, FitReport)> {
    check_batch_size(config.batch_size)?;
    check_batch_size(config.eval_batch_size)?;
    let device = model.device();
    device.seed(config.seed);
    let head = SequenceClassificationHeadConfig::new(model.config().hidden_size, vocab.len())
        .with_pooling(config.pooling)
        .with_dropout(config.head_dropout);
    let classifier = TextClassifier::new(model, &config.app, &head)?;
    let route = classifier.route()?;
    let batches = config.batches(train.lengths())?;
    config.trainer().fit(
        classifier,
        batches,
        |m: &TextClassifier<S>, indices: Vec<usize>| {
            let device = m.model.device();
            let batch = train.batch(&indices)?;
            let input = batch.to_input(m.model.config(), &device)?;
            let labels = class_labels(&batch, &device)?;
            cross_entropy(m.forward(&input, &route)?, labels, &config.cross_entropy)
        },
        |m: &TextClassifier<S>| {
            let report = evaluate_texts(m, dev, vocab, config.eval_batch_size)?;
            Ok(match config.text_metric {
                TextMetric::Accuracy => report.accuracy,
                TextMetric::MacroF1 => report.macro_f1(),
            })
        },
    )
}
