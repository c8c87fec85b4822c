//! A teacher that runs an encoder of the encoder crate (BERT or MPNet).

use burn::tensor::Device;
use lora_bert_data::align::token_words;
use lora_bert_encoder::padding::InputBatch;
use lora_bert_encoder::tokenizer::{BertTokenizer, Encoding, LengthPolicy};
use lora_bert_encoder::{BertModel, Encoder, HiddenLayer, NoAdapter, Route};

use super::{Teacher, WordStates};
use crate::finetune::host_values;
use crate::pooling::WordPooling;
use crate::{Result, TrainError};
use lora_bert_data::join_words;

/// A [`Teacher`] running an encoder ([`BertModel`] by default, or [`MpnetModel`](lora_bert_encoder::MpnetModel): any
/// [`Encoder`]) with its [`BertTokenizer`] on a non-autodiff device.
///
/// A sentence's words are joined by single spaces, encoded, and each token is mapped to the
/// word whose byte range holds its start ([`token_words`], as the data crate aligns labels). A
/// word's state is the mean (or first, [`WordPooling`]) of its pieces' states at the chosen
/// layer ([`HiddenLayer`], the last by default). A word with no token gets zeros and
/// `present == false`; a sentence none of whose words gives a token is accepted (the tokenizer
/// is switched to `allow_empty`).
///
/// **Long sentences** follow the tokenizer's [`LengthPolicy`]:
/// - [`LengthPolicy::Error`] (the tokenizer's default): a sentence longer than `max_length`
///   tokens is refused with [`TokenizerError::TooLong`](lora_bert_encoder::TokenizerError::TooLong);
/// - [`LengthPolicy::Window`]: the sentence is encoded as overlapping windows and each word
///   takes its states from **one** window: among the windows holding its first piece, one that
///   holds all its pieces if any does, then the one where the word is most central (the
///   largest distance, in tokens, from the word to the nearer window edge: the convention of
///   [`lora_bert_data::window`]), ties going to the earlier window;
/// - [`LengthPolicy::Truncate`] is refused by [`EncoderTeacher::new`]: it would silently drop
///   the last words.
///
/// Rows (windows) are sorted by length and run in batches of
/// [`batch_size`](EncoderTeacher::with_batch_size) (32 by default) to save padding; results do
/// not depend on the batch size or on the other sentences beyond float noise, since padding is
/// masked.
#[derive(Debug)]
pub struct EncoderTeacher<E: Encoder = BertModel<NoAdapter>> {
    model: E,
    tokenizer: BertTokenizer,
    device: Device,
    layer: HiddenLayer,
    pooling: WordPooling,
    batch_size: usize,
    route: Route,
    description: Option<String>,
}

impl<E: Encoder> EncoderTeacher<E> {
    /// A teacher running `model` (whose weights live on `device`) with `tokenizer`.
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] when `device` is an autodiff device (the teacher would
    /// build a graph and run dropout), when the tokenizer's policy is
    /// [`LengthPolicy::Truncate`], or when the tokenizer does not fit the model (a
    /// `max_length` above the model's longest input, a vocabulary larger than the model's).
    pub fn new(model: E, tokenizer: BertTokenizer, device: &Device) -> Result<Self> {
        let invalid = |message: String| TrainError::InvalidArgument {
            what: "encoder teacher",
            message,
        };
        if device.is_autodiff() {
            return Err(invalid(
                "the teacher runs without autodiff: pass the inner (non-autodiff) device".into(),
            ));
        }
        if matches!(tokenizer.length_policy(), LengthPolicy::Truncate) {
            return Err(invalid(
                "LengthPolicy::Truncate would drop the last words of long sentences; use Error or Window"
                    .into(),
            ));
        }
        if tokenizer.max_length() > model.max_length() {
            return Err(invalid(format!(
                "tokenizer max_length {} exceeds the model's longest input {}",
                tokenizer.max_length(),
                model.max_length()
            )));
        }
        if tokenizer.vocab_size() > model.vocab_size() {
            return Err(invalid(format!(
                "tokenizer vocabulary of {} exceeds the model's vocab_size {}",
                tokenizer.vocab_size(),
                model.vocab_size()
            )));
        }
        Ok(EncoderTeacher {
            model,
            tokenizer: tokenizer.allow_empty(true),
            device: device.clone(),
            layer: HiddenLayer::Last,
            pooling: WordPooling::Mean,
            batch_size: 32,
            route: Route::Base,
            description: None,
        })
    }

    /// Pools from `layer` instead of the last hidden state.
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] for `Hidden(i)` with `i > num_hidden_layers`.
    pub fn with_layer(mut self, layer: HiddenLayer) -> Result<Self> {
        let layers = self.model.num_hidden_layers();
        if let HiddenLayer::Hidden(i) = layer
            && i > layers
        {
            return Err(TrainError::InvalidArgument {
                what: "teacher layer",
                message: format!("hidden state {i} of a model with {layers} layers (0..={layers})"),
            });
        }
        self.layer = layer;
        Ok(self)
    }

    /// Pools a word's pieces with `pooling` (mean by default).
    pub fn with_pooling(mut self, pooling: WordPooling) -> Self {
        self.pooling = pooling;
        self
    }

    /// Runs at most `rows` encodings (windows) per forward pass.
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] for 0.
    pub fn with_batch_size(mut self, rows: usize) -> Result<Self> {
        if rows == 0 {
            return Err(TrainError::InvalidArgument {
                what: "teacher batch size",
                message: "must be at least 1".into(),
            });
        }
        self.batch_size = rows;
        Ok(self)
    }

    /// Runs the model under `route` (an adapted teacher); [`Route::Base`] by default.
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] for [`Route::PerExample`]: rows are reordered by
    /// length, so a per-row route cannot follow them.
    pub fn with_route(mut self, route: Route) -> Result<Self> {
        if matches!(route, Route::PerExample(_)) {
            return Err(TrainError::InvalidArgument {
                what: "teacher route",
                message: "a per-example route cannot be used: pass Base or Group".into(),
            });
        }
        self.route = route;
        Ok(self)
    }

    /// Sets the description recorded in caches (name the model here, e.g.
    /// `"all-MiniLM-L6-v2"`); the default names only the architecture and settings.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The model.
    pub fn model(&self) -> &E {
        &self.model
    }

    /// The tokenizer (with `allow_empty` set).
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// The layer pooled from.
    pub fn layer(&self) -> HiddenLayer {
        self.layer
    }

    /// The pooling of pieces.
    pub fn pooling(&self) -> WordPooling {
        self.pooling
    }

    /// Rows per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The unpadded `[len, hidden]` states of each row, in the order given.
    fn forward_rows(&self, rows: &[&Encoding]) -> Result<Vec<Vec<f32>>> {
        let hidden = self.model.hidden_size();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); rows.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch = InputBatch::new(
                chunk
                    .iter()
                    .map(|&i| (&rows[i].ids[..], &rows[i].type_ids[..])),
                self.tokenizer.pad_id(),
            );
            let seq_len = batch.seq_len;
            let states = self
                .model
                .states(batch.view(), self.layer, &self.route, &self.device)?;
            let values = host_values(states, "teacher output")?;
            for (r, &i) in chunk.iter().enumerate() {
                let start = r * seq_len * hidden;
                out[i] = values[start..start + rows[i].len() * hidden].to_vec();
            }
        }
        Ok(out)
    }
}

/// Where each word of a sentence takes its state: (row, token positions in that row).
type WordPlan = Vec<Option<(usize, Vec<usize>)>>;

/// Chooses, for each word, the window (row) its pieces are read from; see [`EncoderTeacher`].
/// `rows` are the windows of one sentence, `row0` the index of the first in the global list.
fn plan_words(
    windows: &[Encoding],
    token_word: &[Vec<Option<usize>>],
    num_words: usize,
    row0: usize,
) -> WordPlan {
    // Per word: its global piece positions (in the full text's non-special tokens).
    let mut all_pieces: Vec<Vec<usize>> = vec![Vec::new(); num_words];
    // Per window: per word, positions of its pieces in the window.
    let mut local: Vec<Vec<Vec<usize>>> = Vec::with_capacity(windows.len());
    for (e, tw) in windows.iter().zip(token_word) {
        let mut in_window: Vec<Vec<usize>> = vec![Vec::new(); num_words];
        let mut content = 0;
        for (t, w) in tw.iter().enumerate() {
            if let Some(w) = *w {
                let global = e.token_start + content;
                if !all_pieces[w].contains(&global) {
                    all_pieces[w].push(global);
                }
                in_window[w].push(t);
            }
            if e.sequence_ids[t].is_some() {
                content += 1;
            }
        }
        local.push(in_window);
    }
    let mut plan = vec![None; num_words];
    for (w, slot) in plan.iter_mut().enumerate() {
        let Some(&first) = all_pieces[w].iter().min() else {
            continue;
        };
        // (holds all pieces, context) of the best window so far.
        let mut best: Option<((bool, usize), usize)> = None;
        for (k, (e, in_window)) in windows.iter().zip(&local).enumerate() {
            let pieces = &in_window[w];
            if pieces.is_empty() {
                continue;
            }
            let content_positions =
                |t: usize| e.sequence_ids[..t].iter().filter(|s| s.is_some()).count();
            let c0 = content_positions(pieces[0]);
            let c1 = content_positions(pieces[pieces.len() - 1]);
            if e.token_start + c0 != first {
                continue;
            }
            let content = e.sequence_ids.iter().filter(|s| s.is_some()).count();
            let score = (
                pieces.len() == all_pieces[w].len(),
                c0.min(content - 1 - c1),
            );
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, k));
            }
        }
        *slot = best.map(|(_, k)| (row0 + k, local[k][w].clone()));
    }
    plan
}

impl<E: Encoder> Teacher for EncoderTeacher<E> {
    fn hidden_size(&self) -> usize {
        self.model.hidden_size()
    }

    fn description(&self) -> String {
        if let Some(d) = &self.description {
            return format!("{d} ({:?}, {:?})", self.layer, self.pooling);
        }
        format!(
            "{} ({:?}, {:?}, max_length {}, {:?}, {:?})",
            self.model.architecture(),
            self.layer,
            self.pooling,
            self.tokenizer.max_length(),
            self.tokenizer.length_policy(),
            self.route,
        )
    }

    /// # Errors
    ///
    /// [`TrainError::Tokenizer`] for a sentence too long under [`LengthPolicy::Error`] (its
    /// index in `sentences` is in the error); [`TrainError::Data`] if tokens cannot be mapped
    /// to words.
    fn word_states(&self, sentences: &[&[String]]) -> Result<Vec<WordStates>> {
        let hidden = self.hidden_size();
        let mut rows: Vec<Encoding> = Vec::new();
        let mut plans: Vec<WordPlan> = Vec::with_capacity(sentences.len());
        for (i, words) in sentences.iter().enumerate() {
            if words.is_empty() {
                plans.push(Vec::new());
                continue;
            }
            let (text, spans) = join_words(words);
            let windows = self.tokenizer.encode(&text).map_err(|e| match e {
                lora_bert_encoder::TokenizerError::TooLong { tokens, max, .. } => {
                    lora_bert_encoder::TokenizerError::TooLong {
                        index: i,
                        tokens,
                        max,
                    }
                }
                other => other,
            })?;
            let token_word = windows
                .iter()
                .map(|e| token_words(e, &spans))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            plans.push(plan_words(&windows, &token_word, words.len(), rows.len()));
            rows.extend(windows);
        }
        // Only rows some word reads from are run.
        let mut used = vec![false; rows.len()];
        for plan in &plans {
            for (r, _) in plan.iter().flatten() {
                used[*r] = true;
            }
        }
        let run: Vec<usize> = (0..rows.len()).filter(|&r| used[r]).collect();
        let run_rows: Vec<&Encoding> = run.iter().map(|&r| &rows[r]).collect();
        let mut row_states: Vec<Vec<f32>> = vec![Vec::new(); rows.len()];
        for (r, s) in run.into_iter().zip(self.forward_rows(&run_rows)?) {
            row_states[r] = s;
        }
        let mut out = Vec::with_capacity(sentences.len());
        for (words, plan) in sentences.iter().zip(plans) {
            let mut states = WordStates::zeros(words.len(), hidden);
            for (w, p) in plan.into_iter().enumerate() {
                let Some((r, pieces)) = p else { continue };
                let row = &row_states[r];
                let dst = &mut states.data[w * hidden..(w + 1) * hidden];
                let used: &[usize] = match self.pooling {
                    WordPooling::Mean => &pieces,
                    WordPooling::First => &pieces[..1],
                };
                for &t in used {
                    for (d, s) in dst.iter_mut().zip(&row[t * hidden..(t + 1) * hidden]) {
                        *d += s;
                    }
                }
                let n = used.len() as f32;
                dst.iter_mut().for_each(|d| *d /= n);
                states.present[w] = true;
            }
            out.push(states);
        }
        Ok(out)
    }
}
