//! Features from a frozen model: token states and mean-pooled text states at a chosen layer,
//! and the labelled token rows a probe is fitted on.

use burn::tensor::Tensor;
use lora_bert_adapters::{AdaptedModel, Lora};
use lora_bert_data::batch::EncodedRows;
use lora_bert_data::token::{TokenBatch, TokenExample};
use lora_bert_encoder::Route;

use super::invalid;
use crate::finetune::host_values;
use crate::input::ToBertInput;
use crate::pooling::Pooling;
use crate::{Result, TrainError};

fn check_inference(model: &AdaptedModel<Lora>, batch_size: usize) -> Result<()> {
    if model.device().is_autodiff() {
        return Err(invalid(
            "features are computed without autodiff: pass the model on an inference device (`.valid()`)"
                .into(),
        ));
    }
    if batch_size == 0 {
        return Err(invalid("batch size 0".into()));
    }
    Ok(())
}

/// Which hidden state features are read from.
///
/// BERT's top layers specialise in the pre-training (or sentence-embedding) objective; word
/// classes are often read more easily from a middle layer, which is what
/// [`Layer::Hidden`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layer {
    /// The last layer's output (`last_hidden_state`).
    #[default]
    Last,
    /// `hidden_states[i]` as transformers numbers them: 0 is the embeddings' output, `i` the
    /// output of layer `i`, `num_hidden_layers` the last one's.
    Hidden(usize),
}

impl Layer {
    fn check(self, model: &AdaptedModel<Lora>) -> Result<()> {
        match self {
            Layer::Hidden(i) if i > model.config().num_hidden_layers => Err(invalid(format!(
                "layer {i}: the model has {} layers (hidden states 0..={})",
                model.config().num_hidden_layers,
                model.config().num_hidden_layers
            ))),
            _ => Ok(()),
        }
    }

    fn states(
        self,
        model: &AdaptedModel<Lora>,
        input: &lora_bert_encoder::BertInput,
        route: &Route,
    ) -> Result<Tensor<3>> {
        Ok(match self {
            Layer::Last => model.forward(input, route)?.last_hidden_state,
            Layer::Hidden(i) => model
                .forward_all(input, route)?
                .hidden_states
                .swap_remove(i),
        })
    }
}

/// Indices `0..lengths.len()` in batches of at most `batch_size`, longest rows first, so a
/// batch pads to little more than its own rows' length.
fn length_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

/// The last hidden state of every token of every example through `route`, row-major
/// `[len, hidden]` per example (padding cut off), in batches of `batch_size`.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for a model on an autodiff device or a zero batch size;
/// errors of collation and of the forward pass.
pub fn token_states(
    model: &AdaptedModel<Lora>,
    route: &Route,
    examples: &[TokenExample],
    batch_size: usize,
    pad_id: u32,
) -> Result<Vec<Vec<f32>>> {
    token_states_at(model, route, examples, batch_size, pad_id, Layer::Last)
}

/// [`token_states`] read from `layer`.
///
/// Examples are batched by length (longest first) and returned in their own order.
///
/// # Errors
///
/// As [`token_states`], and [`TrainError::InvalidArgument`] for a layer the model does not
/// have.
pub fn token_states_at(
    model: &AdaptedModel<Lora>,
    route: &Route,
    examples: &[TokenExample],
    batch_size: usize,
    pad_id: u32,
    layer: Layer,
) -> Result<Vec<Vec<f32>>> {
    check_inference(model, batch_size)?;
    layer.check(model)?;
    let device = model.device();
    let hidden = model.config().hidden_size;
    let lengths: Vec<usize> = examples.iter().map(TokenExample::len).collect();
    let mut out = vec![Vec::new(); examples.len()];
    for indices in length_batches(&lengths, batch_size) {
        let batch = TokenBatch::collate(examples, &indices, pad_id)?;
        let input = batch.to_input(model.config(), &device)?;
        let values = host_values(layer.states(model, &input, route)?, "token states")?;
        let row = batch.seq_len * hidden;
        for (k, &i) in indices.iter().enumerate() {
            out[i] = values[k * row..k * row + lengths[i] * hidden].to_vec();
        }
    }
    Ok(out)
}

/// The mean-pooled last hidden state of every row through `route`, row-major
/// `[rows, hidden]`, in batches of `batch_size`.
///
/// # Errors
///
/// As [`token_states`].
pub fn text_states(
    model: &AdaptedModel<Lora>,
    route: &Route,
    rows: &EncodedRows,
    batch_size: usize,
) -> Result<Vec<f32>> {
    text_states_at(model, route, rows, batch_size, Layer::Last)
}

/// [`text_states`] pooled from `layer`.
///
/// Rows are batched by length (longest first) and returned in their own order.
///
/// # Errors
///
/// As [`token_states_at`].
pub fn text_states_at(
    model: &AdaptedModel<Lora>,
    route: &Route,
    rows: &EncodedRows,
    batch_size: usize,
    layer: Layer,
) -> Result<Vec<f32>> {
    check_inference(model, batch_size)?;
    layer.check(model)?;
    let device = model.device();
    let hidden = model.config().hidden_size;
    let mut out = vec![0f32; rows.len() * hidden];
    for indices in length_batches(&rows.lengths(), batch_size) {
        let batch = rows.batch(&indices)?;
        let input = batch.to_input(model.config(), &device)?;
        let states = layer.states(model, &input, route)?;
        let pooled = Pooling::Mean.pool(states, input.attention_mask.clone())?;
        let values = host_values(pooled, "pooled states")?;
        for (k, &i) in indices.iter().enumerate() {
            out[i * hidden..(i + 1) * hidden]
                .copy_from_slice(&values[k * hidden..(k + 1) * hidden]);
        }
    }
    Ok(out)
}

/// The labelled token rows of `examples` as probe training data: the states of every token
/// whose label is not ignored (with first-sub-word alignment, each word's first piece) and
/// its label, `(features [n, hidden], labels)`.
///
/// # Errors
///
/// [`TrainError::Shape`] when `states` does not have one entry of `len × hidden` values per
/// example.
pub fn labelled_tokens(
    examples: &[TokenExample],
    states: &[Vec<f32>],
    hidden: usize,
) -> Result<(Vec<f32>, Vec<u32>)> {
    if states.len() != examples.len() {
        return Err(TrainError::Shape {
            what: "token states, one entry per example".into(),
            expected: vec![examples.len()],
            found: vec![states.len()],
        });
    }
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (i, (e, s)) in examples.iter().zip(states).enumerate() {
        if s.len() != e.len() * hidden {
            return Err(TrainError::Shape {
                what: format!("token states of example {i} [len, hidden]"),
                expected: vec![e.len(), hidden],
                found: vec![s.len()],
            });
        }
        for (t, &label) in e.labels.iter().enumerate() {
            if label >= 0 {
                features.extend_from_slice(&s[t * hidden..(t + 1) * hidden]);
                labels.push(label as u32);
            }
        }
    }
    Ok((features, labels))
}
