//! From the data crate's host batches (row-major `Vec`s) to tensors on a device.
//!
//! Model inputs go through [`BertInput::from_ids`], which checks every id against the model's
//! [`BertConfig`]; labels become `Int` tensors with their lengths checked. Nothing here reads
//! a label's value: class ids are checked against the head by the loss
//! ([`cross_entropy`](crate::loss::cross_entropy)).
//!
//! ```
//! use lora_bert_data::batch::TextBatch;
//! use lora_bert_encoder::{BertConfig, device};
//! use lora_bert_train::input::{ToBertInput, class_labels};
//!
//! let config: BertConfig = serde_json::from_str(
//!     r#"{"vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 1,
//!         "num_attention_heads": 2, "intermediate_size": 16}"#,
//! )?;
//! let cpu = device::device(device::Backend::default_cpu()?)?;
//! let batch = TextBatch {
//!     input_ids: vec![2, 7, 3, 2, 3, 0],
//!     type_ids: vec![0; 6],
//!     attention_mask: vec![1, 1, 1, 1, 1, 0],
//!     labels: vec![1, 0],
//!     seq_len: 3,
//! };
//! let input = batch.to_input(&config, &cpu)?;
//! assert_eq!(input.shape(), [2, 3]);
//! assert_eq!(class_labels(&batch, &cpu)?.dims(), [2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_bert_data::batch::{InputBatch, PairBatch, TextBatch};
use lora_bert_data::token::TokenBatch;
use lora_bert_encoder::{BertConfig, BertInput};

use crate::{Result, TrainError};

/// A padded host batch that can be moved to a device as model input.
pub trait ToBertInput {
    /// `[rows, seq_len]`.
    fn input_shape(&self) -> [usize; 2];

    /// The batch as a [`BertInput`] on `device`.
    ///
    /// # Errors
    ///
    /// [`TrainError::Input`] when the batch is empty, longer than the model's positions, its
    /// id, type id and mask buffers disagree in length, or an id is outside `config`'s
    /// vocabulary or token type table; [`TrainError::Shape`] when `seq_len` is 0 but the
    /// buffers are not empty.
    fn to_input(&self, config: &BertConfig, device: &Device) -> Result<BertInput>;
}

/// Checks a row-major buffer set and builds the input.
fn build_input(
    what: &str,
    ids: &[u32],
    types: &[u32],
    mask: &[u32],
    shape: [usize; 2],
    config: &BertConfig,
    device: &Device,
) -> Result<BertInput> {
    if shape[1] == 0 && !ids.is_empty() {
        return Err(TrainError::Shape {
            what: format!("{what}: {} ids with a sequence length of 0", ids.len()),
            expected: vec![0],
            found: vec![ids.len()],
        });
    }
    Ok(BertInput::from_ids(
        ids, types, mask, shape, config, device,
    )?)
}

impl ToBertInput for TokenBatch {
    fn input_shape(&self) -> [usize; 2] {
        self.shape()
    }

    fn to_input(&self, config: &BertConfig, device: &Device) -> Result<BertInput> {
        build_input(
            "token batch",
            &self.input_ids,
            &self.type_ids,
            &self.attention_mask,
            self.shape(),
            config,
            device,
        )
    }
}

impl ToBertInput for TextBatch {
    fn input_shape(&self) -> [usize; 2] {
        self.shape()
    }

    fn to_input(&self, config: &BertConfig, device: &Device) -> Result<BertInput> {
        build_input(
            "text batch",
            &self.input_ids,
            &self.type_ids,
            &self.attention_mask,
            self.shape(),
            config,
            device,
        )
    }
}

impl ToBertInput for InputBatch {
    fn input_shape(&self) -> [usize; 2] {
        self.shape()
    }

    fn to_input(&self, config: &BertConfig, device: &Device) -> Result<BertInput> {
        build_input(
            "input batch",
            &self.input_ids,
            &self.type_ids,
            &self.attention_mask,
            self.shape(),
            config,
            device,
        )
    }
}

/// Both sides of a contrastive [`PairBatch`] as model inputs: `(anchor, positive)`.
///
/// # Errors
///
/// As [`ToBertInput::to_input`] for either side; [`TrainError::Shape`] when the sides have
/// different numbers of rows.
pub fn pair_inputs(
    batch: &PairBatch,
    config: &BertConfig,
    device: &Device,
) -> Result<(BertInput, BertInput)> {
    let (a, p) = (batch.anchor.rows(), batch.positive.rows());
    if a != p {
        return Err(TrainError::Shape {
            what: "rows of the pair batch (anchor vs positive)".into(),
            expected: vec![a],
            found: vec![p],
        });
    }
    Ok((
        batch.anchor.to_input(config, device)?,
        batch.positive.to_input(config, device)?,
    ))
}

/// The per-token labels of a [`TokenBatch`], `[batch, seq_len]`, with
/// [`IGNORE_INDEX`](lora_bert_data::align::IGNORE_INDEX) kept as is.
///
/// # Errors
///
/// [`TrainError::Shape`] when the batch holds a number of labels other than
/// `rows × seq_len`.
pub fn token_labels(batch: &TokenBatch, device: &Device) -> Result<Tensor<2, Int>> {
    let [rows, seq_len] = batch.shape();
    labels_2d(&batch.labels, [rows, seq_len], device)
}

/// The class ids of a [`TextBatch`], `[batch]`.
///
/// # Errors
///
/// [`TrainError::Shape`] when the batch holds a number of labels other than its rows of
/// ids (`input_ids.len() / seq_len`).
pub fn class_labels(batch: &TextBatch, device: &Device) -> Result<Tensor<1, Int>> {
    let rows = batch
        .input_ids
        .len()
        .checked_div(batch.seq_len)
        .unwrap_or(0);
    if rows != batch.labels.len() {
        return Err(TrainError::Shape {
            what: "labels of the text batch (one per row of ids)".into(),
            expected: vec![rows],
            found: vec![batch.labels.len()],
        });
    }
    labels_1d(&batch.labels, device)
}

/// Class ids as a `[n]` `Int` tensor.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for no label (burn has no empty tensors to train on).
pub fn labels_1d(labels: &[u32], device: &Device) -> Result<Tensor<1, Int>> {
    if labels.is_empty() {
        return Err(TrainError::InvalidArgument {
            what: "labels",
            message: "no label".into(),
        });
    }
    let values: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
    Ok(Tensor::from_data(
        TensorData::new(values, [labels.len()]),
        device,
    ))
}

/// Row-major labels (class ids or `-100`) as a `[rows, seq_len]` `Int` tensor.
///
/// # Errors
///
/// [`TrainError::Shape`] when `labels.len() != rows × seq_len`;
/// [`TrainError::InvalidArgument`] for an empty shape.
pub fn labels_2d(labels: &[i64], shape: [usize; 2], device: &Device) -> Result<Tensor<2, Int>> {
    let [rows, seq_len] = shape;
    if rows == 0 || seq_len == 0 {
        return Err(TrainError::InvalidArgument {
            what: "labels",
            message: format!("empty shape {shape:?}"),
        });
    }
    if labels.len() != rows * seq_len {
        return Err(TrainError::Shape {
            what: format!("labels of a {rows} x {seq_len} batch"),
            expected: vec![rows * seq_len],
            found: vec![labels.len()],
        });
    }
    Ok(Tensor::from_data(
        TensorData::new(labels.to_vec(), shape),
        device,
    ))
}
