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

use lora_bert_encoder::tokenizer::{BertTokenizer, Encoding, LengthPolicy};
use lora_bert_metrics::chunks::chunks_of;
use lora_bert_train::AppKind;

use crate::Error;
use crate::runtime::{Logits, Row, Runtime};

/// Rows per forward pass (default of both pipelines).
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// How a word's label is read from its pieces' predictions (Hugging Face's
/// `aggregation_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubwordAggregation {
    /// The first piece's prediction (what fine-tuning with first-piece labels trains).
    #[default]
    First,
    /// The label with the highest probability averaged over the pieces.
    Average,
    /// The prediction of the piece that is most confident.
    Max,
}

/// A named entity found in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// The entity's text, exactly `input[start..end]` in characters.
    pub text: String,
    /// Its type (`person`, `PER`, ...): the label without its `B-`/`I-` prefix.
    pub label: String,
    /// Mean probability of its words' labels.
    pub score: f32,
    /// Character offset of its first character in the input.
    pub start: usize,
    /// Character offset one past its last character.
    pub end: usize,
}

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

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// `O`, or an entity tag: a scheme prefix (`B I E S L U`), `-`, and a non-empty type.
fn is_entity_tag(label: &str) -> bool {
    if label == "O" {
        return true;
    }
    let mut chars = label.chars();
    matches!(chars.next(), Some('B' | 'I' | 'E' | 'S' | 'L' | 'U'))
        && chars.next() == Some('-')
        && chars.next().is_some()
}

/// Checks that `app` is registered and classifies what the pipeline expects.
fn check_app(runtime: &Runtime, app: &str, kind: AppKind) -> Result<Vec<String>, Error> {
    let info = runtime.app(app)?;
    if info.kind != kind {
        return Err(Error::InvalidInput(format!(
            "app `{app}` is a {:?} app, the pipeline needs a {kind:?} app",
            info.kind
        )));
    }
    Ok(info.labels)
}

/// Runs `rows` through the runtime in batches of `batch_size` and returns their logits in the
/// order of `rows`. A batch pads to its longest row, so the rows go in order of length: texts
/// of similar length share a batch and little of it is padding.
fn run(runtime: &Runtime, rows: &[Row<'_>], batch_size: usize) -> Result<Vec<Logits>, Error> {
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
/// already windows); each token takes its probabilities from the window where it has the most
/// context on both sides. Words are the tokenizer's pre-tokenized words; a word's label comes
/// from its pieces by [`SubwordAggregation`]; the word labels form entities exactly as
/// seqeval's default mode reads them (BIO, IOBES; an `I-X` after another type starts a new
/// entity), the way the apps are scored in fine-tuning.
#[derive(Debug, Clone)]
pub struct NerPipeline {
    runtime: Arc<Runtime>,
    app: String,
    labels: Vec<String>,
    tokenizer: BertTokenizer,
    aggregation: SubwordAggregation,
    batch_size: usize,
}

impl NerPipeline {
    /// A pipeline for token app `app` of `runtime`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownApp`]; [`Error::InvalidInput`] for an app that is not a token app, or
    /// whose labels are not entity tags (`O` and `B-`/`I-`/`E-`/`S-`/`L-`/`U-` prefixed
    /// types, as a part-of-speech app's are not).
    pub fn new(runtime: Arc<Runtime>, app: &str, tokenizer: BertTokenizer) -> Result<Self, Error> {
        let labels = check_app(&runtime, app, AppKind::TokenClassification)?;
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
        Ok(Self {
            runtime,
            app: app.to_owned(),
            labels,
            tokenizer: tokenizer.allow_empty(true),
            aggregation: SubwordAggregation::default(),
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Reads word labels with `aggregation` instead of the first piece.
    pub fn with_aggregation(mut self, aggregation: SubwordAggregation) -> Self {
        self.aggregation = aggregation;
        self
    }

    /// Runs at most `n` windows per forward pass. Windows go into batches in order of length
    /// (a batch pads to its longest), and the results come back in the order of the texts.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The entities of each text, in text order. An empty text has none.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for no text; [`Error::Tokenizer`]; the runtime's errors (an
    /// app removed meanwhile is [`Error::UnknownApp`]).
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Vec<Entity>>, Error> {
        if texts.is_empty() {
            return Err(Error::InvalidInput("no text".into()));
        }
        let mut encodings: Vec<(usize, Encoding)> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            if text.trim().is_empty() {
                continue;
            }
            for e in self.tokenizer.encode(text)? {
                encodings.push((i, e));
            }
        }
        let rows: Vec<Row<'_>> = encodings
            .iter()
            .filter(|(_, e)| e.ids.len() > 2)
            .map(|(_, e)| Row {
                app: &self.app,
                ids: &e.ids,
            })
            .collect();
        let logits = if rows.is_empty() {
            Vec::new()
        } else {
            run(&self.runtime, &rows, self.batch_size)?
        };
        let mut logits = logits.into_iter();
        let mut out = vec![Vec::new(); texts.len()];
        let mut k = 0;
        while k < encodings.len() {
            let text = encodings[k].0;
            let mut windows = Vec::new();
            while k < encodings.len() && encodings[k].0 == text {
                let e = &encodings[k].1;
                if e.ids.len() > 2 {
                    match logits.next() {
                        Some(Logits::Tokens(t)) => windows.push((e, t)),
                        _ => return Err(Error::Internal("token logits expected".into())),
                    }
                }
                k += 1;
            }
            out[text] = self.entities(texts[text], &windows)?;
        }
        Ok(out)
    }

    fn entities(
        &self,
        text: &str,
        windows: &[(&Encoding, Vec<Vec<f32>>)],
    ) -> Result<Vec<Entity>, Error> {
        // Per token of the whole text: probabilities, context (for windows), offsets, word.
        struct Token {
            probs: Vec<f32>,
            context: usize,
            offsets: (usize, usize),
            word: u32,
        }
        let mut tokens: Vec<Option<Token>> = Vec::new();
        for (e, logits) in windows {
            let content: Vec<usize> = (0..e.len()).filter(|&t| e.word_ids[t].is_some()).collect();
            for (pos, &t) in content.iter().enumerate() {
                let g = e.token_start + pos;
                let context = pos.min(content.len() - 1 - pos);
                if tokens.len() <= g {
                    tokens.resize_with(g + 1, || None);
                }
                if tokens[g].as_ref().is_none_or(|old| context > old.context) {
                    let word = e.word_ids[t].unwrap_or_default();
                    tokens[g] = Some(Token {
                        probs: softmax(&logits[t]),
                        context,
                        offsets: e.offsets[t],
                        word,
                    });
                }
            }
        }
        // Words: their span and label.
        let mut words: Vec<(usize, usize, usize, f32)> = Vec::new(); // start, end, label, score
        let mut i = 0;
        while i < tokens.len() {
            let Some(first) = &tokens[i] else {
                return Err(Error::Internal(format!("token {i} is in no window")));
            };
            let mut j = i + 1;
            while j < tokens.len() && tokens[j].as_ref().is_some_and(|t| t.word == first.word) {
                j += 1;
            }
            let pieces: Vec<&Token> = tokens[i..j].iter().flatten().collect();
            let (label, score) = match self.aggregation {
                SubwordAggregation::First => {
                    let l = argmax(&first.probs);
                    (l, first.probs[l])
                }
                SubwordAggregation::Average => {
                    let n = first.probs.len();
                    let mean: Vec<f32> = (0..n)
                        .map(|c| {
                            pieces.iter().map(|p| p.probs[c]).sum::<f32>() / pieces.len() as f32
                        })
                        .collect();
                    let l = argmax(&mean);
                    (l, mean[l])
                }
                SubwordAggregation::Max => {
                    let best = pieces
                        .iter()
                        .max_by(|a, b| {
                            let (x, y) = (a.probs[argmax(&a.probs)], b.probs[argmax(&b.probs)]);
                            x.total_cmp(&y)
                        })
                        .map_or(first, |p| *p);
                    let l = argmax(&best.probs);
                    (l, best.probs[l])
                }
            };
            let end = pieces.last().map_or(first.offsets.1, |p| p.offsets.1);
            words.push((first.offsets.0, end, label, score));
            i = j;
        }
        let tags: Vec<&str> = words.iter().map(|w| self.labels[w.2].as_str()).collect();
        Ok(chunks_of(&tags)
            .into_iter()
            .map(|c| {
                let (label, a, b) = (c.kind, c.start, c.end + 1);
                let (start, end) = (words[a].0, words[b - 1].1);
                let score = words[a..b].iter().map(|w| w.3).sum::<f32>() / (b - a) as f32;
                Entity {
                    text: text[start..end].to_owned(),
                    label,
                    score,
                    start: text[..start].chars().count(),
                    end: text[..end].chars().count(),
                }
            })
            .collect())
    }
}

/// Text classification with a sequence app of a [`Runtime`]: texts longer than the
/// tokenizer's maximum are truncated (the start of a text carries its label, as in
/// fine-tuning).
#[derive(Debug, Clone)]
pub struct ClassifierPipeline {
    runtime: Arc<Runtime>,
    app: String,
    labels: Vec<String>,
    tokenizer: BertTokenizer,
    batch_size: usize,
}

impl ClassifierPipeline {
    /// A pipeline for sequence app `app` of `runtime`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownApp`]; [`Error::InvalidInput`] for an app that is not a text app.
    pub fn new(runtime: Arc<Runtime>, app: &str, tokenizer: BertTokenizer) -> Result<Self, Error> {
        let labels = check_app(&runtime, app, AppKind::SequenceClassification)?;
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

    /// The label of each text.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for no text; [`Error::Tokenizer`] for an empty text (with its
    /// index); the runtime's errors.
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Classification>, Error> {
        if texts.is_empty() {
            return Err(Error::InvalidInput("no text".into()));
        }
        let batch = self.tokenizer.encode_batch(texts)?;
        let rows: Vec<Row<'_>> = batch
            .encodings
            .iter()
            .map(|e| Row {
                app: &self.app,
                ids: &e.ids,
            })
            .collect();
        run(&self.runtime, &rows, self.batch_size)?
            .into_iter()
            .map(|l| match l {
                Logits::Sequence(l) => {
                    let p = softmax(&l);
                    let best = argmax(&p);
                    Ok(Classification {
                        label: self.labels[best].clone(),
                        score: p[best],
                        scores: self.labels.iter().cloned().zip(p).collect(),
                    })
                }
                Logits::Tokens(_) => Err(Error::Internal("sequence logits expected".into())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(argmax(&p), 2);
    }
}
