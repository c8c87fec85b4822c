//! A teacher that knows entities: an encoder with a token-classification head, trained here
//! on labelled sentences, whose word "states" are its label logits.
//!
//! The NER family's pre-finetuning distils entity knowledge (NuNER-style: an annotator labels
//! entities on raw text, a student learns its labels). A [`Tagger`] is that annotator: any
//! [`Encoder`] (all-mpnet-base-v2 in the examples) plus a [`TokenClassificationHead`],
//! fine-tuned end to end by [`train_tagger`] with token cross-entropy and scored on a dev set
//! with seqeval's entity F1. A `Tagger` is itself a [`Encoder`] whose hidden size is
//! the number of labels and whose states are the logits, so an [`EncoderTeacher`] over it
//! (first-piece pooling) gives each word's logits, and a
//! [`TeacherCache`](super::TeacherCache) keeps them for a corpus. The student's objective
//! applies the temperature ([`kl_words`](crate::loss::kl_words)).
//!
//! [`EncoderTeacher`]: super::EncoderTeacher

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleDisplay};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor};
use lora_bert_data::align::LabelAlignment;
use lora_bert_data::batch::{BatchConfig, BatchPlan};
use lora_bert_data::token::{TokenBatch, TokenExample, encode_tagged};
use lora_bert_data::{LabelVocab, TaggedSentence};
use lora_bert_encoder::tokenizer::BertTokenizer;
use lora_bert_encoder::{Encoder, HiddenLayer, InputError, PaddedRows, Route};
use lora_bert_metrics::NerReport;

use super::cache::sha256_file;
use crate::finetune::{TokenEvalOptions, entity_report, host_values, stitch_word_ids, word_tags};
use crate::groups::param_ids;
use crate::heads::{TokenClassificationHead, TokenClassificationHeadConfig};
use crate::input::token_labels;
use crate::loss::{CrossEntropy, token_cross_entropy};
use crate::{FitReport, Result, TrainConfig, TrainError, Trainer};

/// An encoder and a token-classification head: per-token logits.
#[derive(Module, Debug)]
pub struct Tagger<E: Module + ModuleDisplay> {
    /// The encoder.
    pub encoder: E,
    /// The head on its last hidden state.
    pub head: TokenClassificationHead,
}

impl<E: Encoder + Module + ModuleDisplay> Tagger<E> {
    /// `encoder` with a fresh head over `num_labels` classes (dropout `head_dropout`), on
    /// `device` (the encoder's).
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] for zero labels or a dropout outside `[0, 1)`.
    pub fn new(encoder: E, num_labels: usize, head_dropout: f64, device: &Device) -> Result<Self> {
        let head = TokenClassificationHeadConfig::new(encoder.hidden_size(), num_labels)
            .with_dropout(head_dropout)
            .init(device)?;
        Ok(Tagger { encoder, head })
    }

    /// Number of labels (the head's classes).
    pub fn num_labels(&self) -> usize {
        self.head.config().num_labels
    }

    /// Logits `[rows, tokens, num_labels]` of a padded batch.
    ///
    /// # Errors
    ///
    /// Input the encoder refuses.
    pub fn logits(&self, rows: PaddedRows<'_>, device: &Device) -> Result<Tensor<3>> {
        let hidden = self
            .encoder
            .states(rows, HiddenLayer::Last, &Route::Base, device)?;
        Ok(self.head.forward(hidden)?)
    }
}

impl<E: Encoder + Module + ModuleDisplay> Encoder for Tagger<E> {
    fn hidden_size(&self) -> usize {
        self.num_labels()
    }

    fn num_hidden_layers(&self) -> usize {
        self.encoder.num_hidden_layers()
    }

    fn vocab_size(&self) -> usize {
        self.encoder.vocab_size()
    }

    fn max_length(&self) -> usize {
        self.encoder.max_length()
    }

    fn architecture(&self) -> String {
        format!(
            "tagger of {} labels over {}",
            self.num_labels(),
            self.encoder.architecture()
        )
    }

    /// The logits (only [`HiddenLayer::Last`], or the last layer by number: a tagger has no
    /// other output).
    fn states(
        &self,
        rows: PaddedRows<'_>,
        layer: HiddenLayer,
        route: &Route,
        device: &Device,
    ) -> std::result::Result<Tensor<3>, InputError> {
        let last = self.num_hidden_layers();
        if let HiddenLayer::Hidden(layer) = layer
            && layer != last
        {
            return Err(InputError::Layer {
                layer,
                message: format!("a tagger gives only its logits, over layer {last}"),
            });
        }
        let hidden = self
            .encoder
            .states(rows, HiddenLayer::Last, route, device)?;
        // The head is built for the encoder's width, so a refusal here is a shape error.
        self.head
            .forward(hidden)
            .map_err(|e| InputError::Shape(e.to_string()))
    }
}

/// Everything [`train_tagger`] needs besides the model and data.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggerConfig {
    /// The training loop.
    pub train: TrainConfig,
    /// Training sentences (windows) per batch (default 16).
    pub batch_size: usize,
    /// Windows per forward pass when predicting (default 64).
    pub eval_batch_size: usize,
    /// The encoder tokenizer's padding id (MPNet: 1, BERT: 0).
    pub pad_id: u32,
    /// Dropout of the head (default 0.1).
    pub head_dropout: f64,
    /// Peak learning rate of the fresh head (the [`TAGGER_HEAD_GROUP`] parameter group);
    /// `None` (default): the encoder's, `train.learning_rate`. At 5e-5 for both, a
    /// CoNLL-2003 tagger over all-mpnet-base-v2 still tagged every word `O` after 50 steps
    /// (valid entity F1 0); short runs want the head at 1e-3.
    pub head_lr: Option<f64>,
    /// Seed of the batch shuffles and the head's initial values (default 0).
    pub seed: u64,
    /// Length bucketing of the training batches, batches per bucket (default `Some(50)`:
    /// sentences of similar length train together, so little is spent on padding).
    pub bucket: Option<usize>,
    /// The loss's options (default: ignore `-100`).
    pub cross_entropy: CrossEntropy,
    /// Keep checkpoints (and resume) in this folder.
    pub checkpoints: Option<PathBuf>,
}

impl TaggerConfig {
    /// `train` with the defaults above and the tokenizer's `pad_id`.
    pub fn new(train: TrainConfig, pad_id: u32) -> Self {
        Self {
            train,
            batch_size: 16,
            eval_batch_size: 64,
            pad_id,
            head_dropout: 0.1,
            head_lr: None,
            seed: 0,
            bucket: Some(50),
            cross_entropy: CrossEntropy::default(),
            checkpoints: None,
        }
    }

    fn eval_options(&self) -> TokenEvalOptions {
        TokenEvalOptions::new(self.pad_id).with_batch_size(self.eval_batch_size)
    }
}

fn rows_of(batch: &TokenBatch) -> PaddedRows<'_> {
    PaddedRows {
        ids: &batch.input_ids,
        type_ids: &batch.type_ids,
        mask: &batch.attention_mask,
        shape: [batch.len(), batch.seq_len],
    }
}

fn check_labels(vocab: &LabelVocab, classes: usize) -> Result<()> {
    if vocab.len() != classes {
        return Err(TrainError::InvalidArgument {
            what: "labels",
            message: format!("{} labels for a tagger of {classes} classes", vocab.len()),
        });
    }
    Ok(())
}

fn device_of<M: Module>(model: &M) -> Result<Device> {
    model
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| TrainError::InvalidArgument {
            what: "tagger",
            message: "the model has no parameter, so no device".into(),
        })
}

/// The parameter group of a tagger's head, trained at [`TaggerConfig::head_lr`].
pub const TAGGER_HEAD_GROUP: &str = "tagger-head";

/// Fine-tunes `encoder` and a fresh head over `vocab` on `train` (examples encoded with the
/// encoder's own tokenizer by
/// [`encode_tagged`](lora_bert_data::token::encode_tagged), first-sub-word labels), every
/// parameter trained. The dev metric is the entity micro-F1 (seqeval's default mode) of the
/// word tags predicted for `dev` (its examples and gold sentences).
///
/// Returns the best tagger by the dev metric and the trainer's report.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for no training example or a zero batch size; errors of
/// the head, the loss (a label outside `vocab`), the evaluation and [`Trainer::fit`].
pub fn train_tagger<E>(
    encoder: E,
    train: &[TokenExample],
    dev: (&[TokenExample], &[TaggedSentence]),
    vocab: &LabelVocab,
    config: &TaggerConfig,
) -> Result<(Tagger<E>, FitReport)>
where
    E: Encoder + Module + ModuleDisplay + Clone,
{
    if train.is_empty() || config.batch_size == 0 || config.eval_batch_size == 0 {
        return Err(TrainError::InvalidArgument {
            what: "tagger training",
            message: format!(
                "{} training examples, batch size {}, eval batch size {} (all must be > 0)",
                train.len(),
                config.batch_size,
                config.eval_batch_size
            ),
        });
    }
    let device = device_of(&encoder)?;
    device.seed(config.seed);
    let tagger = Tagger::new(encoder, vocab.len(), config.head_dropout, &device)?;
    let mut batch = BatchConfig::new(config.batch_size).shuffled(config.seed);
    batch.bucket = config.bucket;
    let plan = BatchPlan::new(train.iter().map(TokenExample::len).collect(), batch)?;
    let batches = (0u64..).flat_map(move |e| plan.epoch(e));
    let mut train_config = config.train.clone();
    if let Some(lr) = config.head_lr {
        train_config = train_config.with_group_lr(TAGGER_HEAD_GROUP, lr);
    }
    let mut trainer = Trainer::new(train_config).with_param_groups(|m: &Tagger<E>| {
        vec![(TAGGER_HEAD_GROUP.to_owned(), param_ids(&m.head))]
    });
    if let Some(dir) = &config.checkpoints {
        trainer = trainer.with_checkpoints(dir);
    }
    let (dev_examples, dev_gold) = dev;
    trainer.fit(
        tagger,
        batches,
        |m: &Tagger<E>, indices: Vec<usize>| {
            let device = device_of(m)?;
            let batch = TokenBatch::collate(train, &indices, config.pad_id)?;
            let labels = token_labels(&batch, &device)?;
            token_cross_entropy(
                m.logits(rows_of(&batch), &device)?,
                labels,
                &config.cross_entropy,
            )
        },
        |m: &Tagger<E>| {
            let report = evaluate_tagger(m, dev_examples, dev_gold, vocab, &config.eval_options())?;
            Ok(report.averages.micro_avg.f1)
        },
    )
}

/// The logits of every example, row-major `[len, num_labels]` (padding cut off), in batches
/// of `options.batch_size`, with `tagger` as it is (call `.valid()` first for inference).
///
/// # Errors
///
/// Errors of collation and of the forward pass.
pub fn tagger_logits(
    tagger: &Tagger<impl Encoder + Module + ModuleDisplay>,
    examples: &[TokenExample],
    options: &TokenEvalOptions,
) -> Result<Vec<Vec<f32>>> {
    let device = device_of(tagger)?;
    let classes = tagger.num_labels();
    let all: Vec<usize> = (0..examples.len()).collect();
    let mut out = Vec::with_capacity(examples.len());
    for indices in all.chunks(options.batch_size.max(1)) {
        let batch = TokenBatch::collate(examples, indices, options.pad_id)?;
        let logits = host_values(tagger.logits(rows_of(&batch), &device)?, "tagger logits")?;
        let row = batch.seq_len * classes;
        for (k, &i) in indices.iter().enumerate() {
            let len = examples[i].len() * classes;
            out.push(logits[k * row..k * row + len].to_vec());
        }
    }
    Ok(out)
}

/// Entity scores (seqeval's default mode) of the word tags `tagger` predicts for `examples`
/// against the `gold` sentences they were encoded from.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] when `vocab` does not have one label per class; errors of
/// [`tagger_logits`], [`stitch_word_ids`] and [`entity_report`].
pub fn evaluate_tagger(
    tagger: &Tagger<impl Encoder + Module + ModuleDisplay>,
    examples: &[TokenExample],
    gold: &[TaggedSentence],
    vocab: &LabelVocab,
    options: &TokenEvalOptions,
) -> Result<NerReport> {
    check_labels(vocab, tagger.num_labels())?;
    let logits = tagger_logits(tagger, examples, options)?;
    let ids = stitch_word_ids(examples, &logits, gold.len(), vocab, options)?;
    entity_report(gold, &word_tags(ids, vocab))
}

/// The file of a saved tagger's weights (burn's record format), inside its directory.
pub const TAGGER_WEIGHTS: &str = "tagger.bpk";
/// The file of a saved tagger's labels and description.
pub const TAGGER_MANIFEST: &str = "tagger.json";
/// The file of a saved tagger's test scores ([`NerReport`]), written by
/// [`train_and_save_tagger`].
pub const TAGGER_REPORT: &str = "report.json";

/// What [`save_tagger`] writes beside the weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaggerManifest {
    /// Format version (1).
    pub version: u32,
    /// The encoder the tagger was trained from, in words (e.g. `all-mpnet-base-v2`).
    pub base: String,
    /// The labels, in class order.
    pub labels: Vec<String>,
    /// sha256 of the weights file, so that a cache made by this tagger names it.
    pub weights_sha256: String,
    /// Free-form notes (data, steps, dev F1).
    pub notes: serde_json::Value,
}

impl TaggerManifest {
    /// The description a teacher over this tagger records in caches: base, labels and
    /// weights, so that a cache made by another tagger (or the same one retrained) is refused.
    pub fn description(&self) -> String {
        format!(
            "tagger over {} (weights sha256 {}), labels [{}], word logits of the first piece",
            self.base,
            // The first 16 characters (a manifest read by serde may hold any string).
            self.weights_sha256.chars().take(16).collect::<String>(),
            self.labels.join(" ")
        )
    }
}

/// Saves `tagger` into `dir` (created if needed): [`TAGGER_WEIGHTS`] (burn's record of every
/// parameter, written atomically) and [`TAGGER_MANIFEST`], written last.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] when `vocab` does not fit the head; I/O and format errors.
pub fn save_tagger<E: Encoder + Module + ModuleDisplay + Clone>(
    tagger: &Tagger<E>,
    dir: impl AsRef<Path>,
    base: &str,
    vocab: &LabelVocab,
    notes: serde_json::Value,
) -> Result<TaggerManifest> {
    let dir = dir.as_ref();
    check_labels(vocab, tagger.num_labels())?;
    std::fs::create_dir_all(dir).map_err(crate::error::io_err(dir))?;
    let weights = dir.join(TAGGER_WEIGHTS);
    // Written beside, then renamed: a reader never sees half a record.
    let tmp = dir.join(format!(".{TAGGER_WEIGHTS}.tmp-{}", std::process::id()));
    tagger
        .clone()
        .into_record()
        .save(&tmp)
        .map_err(|e| TrainError::Format {
            path: tmp.clone(),
            message: format!("cannot write module record: {e}"),
        })?;
    std::fs::rename(&tmp, &weights).map_err(crate::error::io_err(&weights))?;
    let manifest = TaggerManifest {
        version: 1,
        base: base.to_owned(),
        labels: vocab.labels().to_vec(),
        weights_sha256: sha256_file(&weights)?,
        notes,
    };
    let json = serde_json::to_string_pretty(&manifest).map_err(|e| TrainError::Format {
        path: dir.join(TAGGER_MANIFEST),
        message: e.to_string(),
    })?;
    lora_bert_encoder::checkpoint::write_atomically(&dir.join(TAGGER_MANIFEST), json.as_bytes())
        .map_err(|e| TrainError::Format {
            path: dir.join(TAGGER_MANIFEST),
            message: e.to_string(),
        })?;
    Ok(manifest)
}

/// Loads a tagger saved by [`save_tagger`] onto `encoder` (the same architecture, e.g. the
/// base model loaded from its checkpoint; its weights are replaced). Checks the weights'
/// sha256 against the manifest.
///
/// # Errors
///
/// I/O and format errors; [`TrainError::Format`] when the weights are not the manifest's or
/// the manifest's version is unknown.
pub fn load_tagger<E: Encoder + Module + ModuleDisplay>(
    dir: impl AsRef<Path>,
    encoder: E,
) -> Result<(Tagger<E>, LabelVocab, TaggerManifest)> {
    let dir = dir.as_ref();
    let manifest_path = dir.join(TAGGER_MANIFEST);
    let text =
        std::fs::read_to_string(&manifest_path).map_err(crate::error::io_err(&manifest_path))?;
    let manifest: TaggerManifest = serde_json::from_str(&text).map_err(|e| TrainError::Format {
        path: manifest_path.clone(),
        message: e.to_string(),
    })?;
    if manifest.version != 1 {
        return Err(TrainError::Format {
            path: manifest_path,
            message: format!("unknown tagger format version {}", manifest.version),
        });
    }
    let weights = dir.join(TAGGER_WEIGHTS);
    let sha = sha256_file(&weights)?;
    if sha != manifest.weights_sha256 {
        return Err(TrainError::Format {
            path: weights,
            message: format!(
                "sha256 {sha} is not the manifest's {}",
                manifest.weights_sha256
            ),
        });
    }
    let vocab = LabelVocab::new(manifest.labels.clone()).map_err(|e| TrainError::Format {
        path: manifest_path.clone(),
        message: e.to_string(),
    })?;
    let device = device_of(&encoder)?;
    let tagger = Tagger::new(encoder, vocab.len(), 0.0, &device)?;
    let record = ModuleRecord::load(&weights).map_err(|e| TrainError::Format {
        path: weights.clone(),
        message: format!("cannot read module record: {e}"),
    })?;
    let tagger = tagger
        .try_load_record(record)
        .map_err(|e| TrainError::Format {
            path: weights.clone(),
            message: format!("does not fit the model: {e}"),
        })?;
    Ok((tagger, vocab, manifest))
}

/// Labelled sentences for [`train_and_save_tagger`]; the label set is the tags of all three.
#[derive(Debug, Clone, Copy)]
pub struct TaggerData<'a> {
    /// Training sentences.
    pub train: &'a [TaggedSentence],
    /// Sentences that choose the best step (entity F1).
    pub dev: &'a [TaggedSentence],
    /// Sentences the saved tagger is scored on.
    pub test: &'a [TaggedSentence],
    /// What the data is, in words (recorded in the manifest's notes).
    pub about: &'a str,
}

/// What [`train_and_save_tagger`] made.
#[derive(Debug, Clone)]
pub struct TaggerRun {
    /// The saved manifest (its notes hold the sizes, the settings and the scores).
    pub manifest: TaggerManifest,
    /// Entity scores on the test sentences (seqeval's default mode).
    pub report: NerReport,
    /// The training loop's report.
    pub fit: FitReport,
}

impl TaggerRun {
    /// Best dev entity F1 and its step (`NaN` and the last step when no evaluation ran).
    pub fn best(&self) -> (f64, usize) {
        self.fit.best.unwrap_or((f64::NAN, self.fit.steps))
    }
}

/// Trains a tagger teacher end to end and saves it into `dir`: encodes `data` with
/// `tokenizer` (the encoder's own; first-piece labels), trains `encoder` and a fresh head on
/// `data.train` with [`train_tagger`] (best step by dev entity F1), scores it on `data.test`,
/// and writes [`TAGGER_WEIGHTS`], [`TAGGER_MANIFEST`] (`base`, the labels and notes with the
/// sizes, settings and scores) and [`TAGGER_REPORT`]. Set `config.checkpoints` to make a
/// killed run resume.
///
/// # Errors
///
/// Errors of the label set (no tag at all) and of encoding, of [`train_tagger`],
/// [`evaluate_tagger`] and [`save_tagger`]; I/O errors naming the report.
pub fn train_and_save_tagger<E>(
    encoder: E,
    base: &str,
    tokenizer: &BertTokenizer,
    data: TaggerData<'_>,
    config: &TaggerConfig,
    dir: impl AsRef<Path>,
) -> Result<TaggerRun>
where
    E: Encoder + Module + ModuleDisplay + Clone,
{
    let dir = dir.as_ref();
    // The tags of all three splits: a split cut short (a smoke run's `--max-train`) may miss
    // a tag that dev or test has, which is then a label no example trained.
    let all = [data.train, data.dev, data.test];
    let vocab = LabelVocab::from_tags(
        all.iter()
            .flat_map(|split| split.iter())
            .flat_map(|s| s.tags.iter()),
    )?;
    let encode = |s: &[TaggedSentence]| {
        encode_tagged(tokenizer, s, &vocab, LabelAlignment::FirstSubword).map_err(TrainError::from)
    };
    let (train, dev, test) = (encode(data.train)?, encode(data.dev)?, encode(data.test)?);
    let (tagger, fit) = train_tagger(encoder, &train, (&dev, data.dev), &vocab, config)?;
    let tagger = tagger.valid();
    let report = evaluate_tagger(&tagger, &test, data.test, &vocab, &config.eval_options())?;
    let (dev_f1, best_step) = fit.best.unwrap_or((f64::NAN, fit.steps));
    let notes = serde_json::json!({
        "data": data.about,
        "train_sentences": data.train.len(),
        "valid_sentences": data.dev.len(),
        "test_sentences": data.test.len(),
        "steps": fit.steps,
        "best_step": best_step,
        "learning_rate": config.train.learning_rate,
        "head_learning_rate": config.head_lr.unwrap_or(config.train.learning_rate),
        "batch_size": config.batch_size,
        "seed": config.seed,
        "valid_entity_f1": dev_f1,
        "test_entity_f1": report.averages.micro_avg.f1,
        "test_word_accuracy": report.accuracy,
        "history": fit.history,
    });
    let manifest = save_tagger(&tagger, dir, base, &vocab, notes)?;
    let path = dir.join(TAGGER_REPORT);
    let json = serde_json::to_string_pretty(&report).map_err(|e| TrainError::Format {
        path: path.clone(),
        message: e.to_string(),
    })?;
    lora_bert_encoder::checkpoint::write_atomically(&path, json.as_bytes()).map_err(|e| {
        TrainError::Format {
            path: path.clone(),
            message: e.to_string(),
        }
    })?;
    Ok(TaggerRun {
        manifest,
        report,
        fit,
    })
}
