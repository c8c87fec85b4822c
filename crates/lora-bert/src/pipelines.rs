//! Text in, answers out, for any app of a [`Runtime`]: [`NerPipeline`] (entities with
//! character offsets) and [`ClassifierPipeline`] (a label per text).
//!
//! ```no_run
//! use std::sync::Arc;
//! use lora_bert::pipelines::{ClassifierPipeline, NerPipeline};
//! use lora_bert::runtime::Runtime;
//! use lora_bert::{BertTokenizer, device};
//!
//! let device = device::device(device::Backend::Flex)?;
//! let runtime = Arc::new(Runtime::load("path/to/backbone", &device)?);
//! runtime.register("ner", "apps/wnut16")?;
//! runtime.register("sentiment", "apps/vader-movies")?;
//! let tokenizer = BertTokenizer::from_file("path/to/backbone/tokenizer.json")?;
//! let ner = NerPipeline::new(runtime.clone(), "ner", tokenizer.clone())?;
//! for e in &ner.predict(&["Going to see Coldplay in London tonight"])?[0] {
//!     println!("{} {} {:.2} [{}, {})", e.label, e.text, e.score, e.start, e.end);
//! }
//! let sentiment = ClassifierPipeline::new(runtime, "sentiment", tokenizer)?;
//! println!("{:?}", sentiment.predict(&["A gripping, beautifully shot film."])?[0].label);
//! # Ok::<(), lora_bert::Error>(())
//! ```

use std::sync::Arc;

use lora_bert_adapters::{Adapter, Lora};
use lora_bert_apps::decode::{argmax, softmax};
use lora_bert_apps::manifest::AppKind;
use lora_bert_apps::{TokenDecoder, is_entity_tag};
use lora_bert_data::LabelVocab;
use lora_bert_data::join_words;
use lora_bert_data::token::{TokenExample, encode_text, encode_words};
use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy};

use crate::Error;
use crate::runtime::{AppInfo, Logits, Row, Runtime};

/// Rows per forward pass (default of both pipelines).
pub const DEFAULT_BATCH_SIZE: usize = 32;

pub use lora_bert_apps::{Aggregation, Entity};

/// A text's label ([`ClassifierPipeline::predict`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The most probable label.
    pub label: String,
    /// Its probability.
    pub score: f32,
    /// Every label with its probability, in the app's label order.
    pub scores: Vec<(String, f32)>,
}

/// Checks that `app` is registered and classifies what the pipeline expects.
fn check_app<S: Adapter>(runtime: &Runtime<S>, app: &str, kind: AppKind) -> Result<AppInfo, Error> {
    let info = runtime.app(app)?;
    if info.kind != kind {
        return Err(Error::InvalidInput(format!(
            "app `{app}` is a {:?} app, the pipeline needs a {kind:?} app",
            info.kind
        )));
    }
    Ok(info)
}

/// Runs `rows` through the runtime in batches of `batch_size` and returns their logits in the
/// order of `rows`. A batch pads to its longest row, so the rows go in order of length: texts
/// of similar length share a batch and little of it is padding.
fn run<S: Adapter>(
    runtime: &Runtime<S>,
    rows: &[Row<'_>],
    batch_size: usize,
) -> Result<Vec<Logits>, Error> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].ids.len());
    let mut out: Vec<Option<Logits>> = vec![None; rows.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<Row<'_>> = chunk.iter().map(|&i| rows[i]).collect();
        for (&i, logits) in chunk.iter().zip(runtime.logits(&batch)?) {
            out[i] = Some(logits);
        }
    }
    out.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
        Error::InvalidInput("the runtime returned fewer rows than it was given".into())
    })
}

/// Named-entity recognition with a token app of a [`Runtime`].
///
/// Texts longer than the tokenizer's maximum are split into overlapping windows (the
/// tokenizer's [`LengthPolicy::Window`], stride a quarter of the maximum unless the tokenizer
/// already windows). Words are the tokenizer's pre-tokenized words
/// ([`encode_text`], the words [`split_words`](lora_bert_data::align::split_words) gives; or the caller's, with [`NerPipeline::predict_words`]). From the logits
/// on, the path is the one fine-tuning's evaluation scores ([`TokenDecoder`]): each word is
/// read from the window where it has the most context, its label from its pieces by an
/// [`Aggregation`] (the one the app was scored with, as its manifest records; the first piece
/// for apps that record none), and entities from the word labels as
/// seqeval's default mode reads them, with BILOU's `L-`/`U-` as `E-`/`S-`.
#[derive(Debug, Clone)]
pub struct NerPipeline<S: Adapter = Lora> {
    runtime: Arc<Runtime<S>>,
    app: String,
    decoder: TokenDecoder,
    tokenizer: BertTokenizer,
    batch_size: usize,
}

impl<S: Adapter> NerPipeline<S> {
    /// A pipeline for token app `app` of `runtime`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownApp`]; [`Error::InvalidInput`] for an app that is not a token app, or
    /// whose labels are not entity tags (`O` and `B-`/`I-`/`E-`/`S-`/`L-`/`U-` prefixed
    /// types, as a part-of-speech app's are not).
    pub fn new(
        runtime: Arc<Runtime<S>>,
        app: &str,
        tokenizer: BertTokenizer,
    ) -> Result<Self, Error> {
        let info = check_app(&runtime, app, AppKind::TokenClassification)?;
        let decoding = info.decoding.unwrap_or_default();
        let labels = info.labels;
        let not_tags: Vec<&str> = labels
            .iter()
            .map(String::as_str)
            .filter(|l| !is_entity_tag(l))
            .collect();
        if !not_tags.is_empty() || !labels.iter().any(|l| l != "O") {
            return Err(Error::InvalidInput(format!(
                "app `{app}` is not an entity tagger: its labels must be `O` and entity tags \
                 (B-/I-/E-/S-/L-/U- and a type); {}",
                if not_tags.is_empty() {
                    "it has no entity tag".to_owned()
                } else {
                    format!(
                        "these are not: {}",
                        not_tags
                            .iter()
                            .take(5)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )));
        }
        let tokenizer = match tokenizer.length_policy() {
            LengthPolicy::Window { .. } => tokenizer,
            _ => {
                let stride = tokenizer.max_length() / 4;
                tokenizer.with_length_policy(LengthPolicy::Window { stride })
            }
        };
        let vocab = LabelVocab::new(labels).map_err(|e| {
            Error::InvalidInput(format!("app `{app}`: its labels are not a vocabulary: {e}"))
        })?;
        Ok(Self {
            runtime,
            app: app.to_owned(),
            decoder: TokenDecoder::new(vocab, decoding.alignment, decoding.aggregation),
            tokenizer: tokenizer.allow_empty(true),
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Reads word labels with `aggregation` instead of the one the app was scored with (its
    /// manifest's; the first piece when it names none).
    pub fn with_aggregation(mut self, aggregation: Aggregation) -> Self {
        self.decoder = TokenDecoder::new(
            self.decoder.vocab().clone(),
            self.decoder.alignment(),
            aggregation,
        );
        self
    }

    /// Runs at most `n` windows per forward pass. Windows go into batches in order of length
    /// (a batch pads to its longest), and the results come back in the order of the texts.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The app this pipeline serves.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The tokenizer, with the windowing policy the pipeline encodes with.
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// The entities of each text, in text order. An empty text has none.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for no text; [`Error::Tokenizer`]; the runtime's errors (an
    /// app removed meanwhile is [`Error::UnknownApp`]).
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Vec<Entity>>, Error> {
        let input = self.encode(texts)?;
        let logits = self.logits(&input)?;
        self.decode(&input, logits)
    }

    /// The entities of sentences given as words, joined by single spaces into the text the
    /// entities' offsets point into (as datasets give sentences, and as fine-tuning encodes
    /// them): what fine-tuning's evaluation scored, for the same app and sentences.
    ///
    /// # Errors
    ///
    /// As [`NerPipeline::predict`].
    pub fn predict_words<W: AsRef<str>>(
        &self,
        sentences: &[Vec<W>],
    ) -> Result<Vec<Vec<Entity>>, Error> {
        let input = self.encode_words(sentences)?;
        let logits = self.logits(&input)?;
        self.decode(&input, logits)
    }

    /// The first half of [`predict`](Self::predict): `texts` as rows for the runtime (a text
    /// longer than the tokenizer's maximum gives several windows; an empty one none). Run
    /// [`NerInput::ids`] as [`Row`]s of this pipeline's [`app`](Self::app), alone or in any
    /// batch beside other apps' rows, then read the logits back with
    /// [`decode`](Self::decode): a server batches many requests this way.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for no text; [`Error::Tokenizer`].
    pub fn encode(&self, texts: &[&str]) -> Result<NerInput, Error> {
        if texts.is_empty() {
            return Err(Error::InvalidInput("no text".into()));
        }
        let mut words = Vec::with_capacity(texts.len());
        let mut examples = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            if text.trim().is_empty() {
                words.push(Vec::new());
                continue;
            }
            let (spans, encoded) = encode_text(&self.tokenizer, text, i)?;
            words.push(spans);
            examples.extend(encoded);
        }
        Ok(NerInput {
            texts: texts.iter().map(|t| (*t).to_owned()).collect(),
            words,
            examples,
        })
    }

    /// [`encode`](Self::encode) for sentences given as words ([`predict_words`](Self::predict_words)).
    ///
    /// # Errors
    ///
    /// As [`encode`](Self::encode).
    pub fn encode_words<W: AsRef<str>>(&self, sentences: &[Vec<W>]) -> Result<NerInput, Error> {
        if sentences.is_empty() {
            return Err(Error::InvalidInput("no text".into()));
        }
        let (texts, words): (Vec<String>, Vec<Vec<(usize, usize)>>) =
            sentences.iter().map(|s| join_words(s)).unzip();
        let mut examples = Vec::new();
        for (i, (text, spans)) in texts.iter().zip(&words).enumerate() {
            if !spans.is_empty() {
                examples.extend(encode_words(&self.tokenizer, text, spans, i)?);
            }
        }
        Ok(NerInput {
            texts,
            words,
            examples,
        })
    }

    /// The logits of `input`'s rows, in batches of the pipeline's size.
    fn logits(&self, input: &NerInput) -> Result<Vec<Logits>, Error> {
        let rows: Vec<Row<'_>> = input
            .ids()
            .map(|ids| Row {
                app: &self.app,
                ids,
            })
            .collect();
        if rows.is_empty() {
            Ok(Vec::new())
        } else {
            run(&self.runtime, &rows, self.batch_size)
        }
    }

    /// The second half of [`predict`](Self::predict): the entities of each text of `input`
    /// from the logits of its rows (one per [`NerInput::ids`], in that order).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when `logits` are not one token app's logits per row.
    pub fn decode(&self, input: &NerInput, logits: Vec<Logits>) -> Result<Vec<Vec<Entity>>, Error> {
        let examples = &input.examples;
        if logits.len() != examples.len() {
            return Err(Error::InvalidInput(format!(
                "{} rows of logits for {} rows",
                logits.len(),
                examples.len()
            )));
        }
        let logits = logits
            .into_iter()
            .zip(examples)
            .map(|(l, e)| match l {
                Logits::Tokens(t) if t.len() == e.input_ids.len() => Ok(t.concat()),
                Logits::Tokens(t) => Err(Error::InvalidInput(format!(
                    "logits for {} tokens of a {}-token row",
                    t.len(),
                    e.input_ids.len()
                ))),
                Logits::Sequence(_) => Err(Error::InvalidInput(
                    "a text app's logits given to an entity pipeline".into(),
                )),
            })
            .collect::<Result<Vec<Vec<f32>>, Error>>()?;
        let mut out = vec![Vec::new(); input.texts.len()];
        let mut k = 0;
        while k < examples.len() {
            let text = examples[k].sentence;
            let mut windows = Vec::new();
            while k < examples.len() && examples[k].sentence == text {
                windows.push((&examples[k], logits[k].as_slice()));
                k += 1;
            }
            let predicted = self.decoder.sentence(&windows)?;
            out[text] =
                self.decoder
                    .entities(&input.texts[text], &input.words[text], &predicted)?;
        }
        Ok(out)
    }
}

/// Texts a [`NerPipeline`] encoded ([`NerPipeline::encode`]): the rows to run and what reads
/// their logits back.
#[derive(Debug, Clone)]
pub struct NerInput {
    texts: Vec<String>,
    /// Each text's words, as byte ranges.
    words: Vec<Vec<(usize, usize)>>,
    /// The rows, in text order, a text's windows consecutive.
    examples: Vec<TokenExample>,
}

impl NerInput {
    /// The texts.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// The token ids of each row (window), in order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = &[u32]> {
        self.examples.iter().map(|e| e.input_ids.as_slice())
    }
}

/// Texts a [`ClassifierPipeline`] encoded ([`ClassifierPipeline::encode`]): one row per text.
#[derive(Debug, Clone)]
pub struct ClassifierInput {
    rows: Vec<Vec<u32>>,
}

impl ClassifierInput {
    /// The token ids of each text's row, in order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = &[u32]> {
        self.rows.iter().map(Vec::as_slice)
    }
}

/// Text classification with a sequence app of a [`Runtime`]: texts longer than the
/// tokenizer's maximum are truncated (the start of a text carries its label, as in
/// fine-tuning).
#[derive(Debug, Clone)]
pub struct ClassifierPipeline<S: Adapter = Lora> {
    runtime: Arc<Runtime<S>>,
    app: String,
    labels: Vec<String>,
    tokenizer: BertTokenizer,
    batch_size: usize,
}

impl<S: Adapter> ClassifierPipeline<S> {
    /// A pipeline for sequence app `app` of `runtime`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownApp`]; [`Error::InvalidInput`] for an app that is not a text app.
    pub fn new(
        runtime: Arc<Runtime<S>>,
        app: &str,
        tokenizer: BertTokenizer,
    ) -> Result<Self, Error> {
        let labels = check_app(&runtime, app, AppKind::SequenceClassification)?.labels;
        Ok(Self {
            runtime,
            app: app.to_owned(),
            labels,
            tokenizer: tokenizer.with_length_policy(LengthPolicy::Truncate),
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Runs at most `n` texts per forward pass. Texts go into batches in order of length (a
    /// batch pads to its longest), and the results come back in the order given.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The app this pipeline serves.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The tokenizer, with the truncating policy the pipeline encodes with.
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// The label of each text.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for no text; [`Error::Tokenizer`] for an empty text (with its
    /// index); the runtime's errors.
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Classification>, Error> {
        let input = self.encode(texts)?;
        let rows: Vec<Row<'_>> = input
            .ids()
            .map(|ids| Row {
                app: &self.app,
                ids,
            })
            .collect();
        self.decode(run(&self.runtime, &rows, self.batch_size)?)
    }

    /// The first half of [`predict`](Self::predict): one row per text (truncated to the
    /// tokenizer's maximum), to run as [`Row`]s of this pipeline's [`app`](Self::app) in any
    /// batch; [`decode`](Self::decode) reads their logits back.
    ///
    /// # Errors
    ///
    /// As [`predict`](Self::predict), before anything runs.
    pub fn encode(&self, texts: &[&str]) -> Result<ClassifierInput, Error> {
        if texts.is_empty() {
            return Err(Error::InvalidInput("no text".into()));
        }
        let batch = self.tokenizer.encode_batch(texts)?;
        Ok(ClassifierInput {
            rows: batch.encodings.into_iter().map(|e| e.ids).collect(),
        })
    }

    /// The second half of [`predict`](Self::predict): each text's label from its row's
    /// logits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for logits that are not this app's text logits.
    pub fn decode(&self, logits: Vec<Logits>) -> Result<Vec<Classification>, Error> {
        logits
            .into_iter()
            .map(|l| match l {
                Logits::Sequence(l) if l.len() == self.labels.len() => {
                    let p = softmax(&l);
                    let best = argmax(&p);
                    Ok(Classification {
                        label: self.labels[best].clone(),
                        score: p[best],
                        scores: self.labels.iter().cloned().zip(p).collect(),
                    })
                }
                Logits::Sequence(l) => Err(Error::InvalidInput(format!(
                    "{} logits for an app of {} labels",
                    l.len(),
                    self.labels.len()
                ))),
                Logits::Tokens(_) => Err(Error::InvalidInput(
                    "a token app's logits given to a text pipeline".into(),
                )),
            })
            .collect()
    }
}
