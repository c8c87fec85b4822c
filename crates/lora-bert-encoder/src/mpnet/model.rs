//! The MPNet model: its inputs, its forward pass and the attention bias its layers share.

use burn::module::Module;
use burn::tensor::module::embedding;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{
    MAX_DISTANCE, MpnetConfig, MpnetEmbeddings, MpnetEncoder, MpnetPooler, NUM_BUCKETS,
    relative_position_bucket,
};
use crate::model::{BertInput, InputError, InputLimits};
use crate::tokenizer::Batch;

/// What [`MpnetModel::forward`] returns.
#[derive(Debug, Clone)]
pub struct MpnetOutput {
    /// Hidden state of the last layer, `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<3>,
    /// The embedding output followed by every layer's output (`num_hidden_layers + 1`
    /// tensors, as transformers' `hidden_states`), when asked for with
    /// [`MpnetModel::forward_all`]; empty otherwise.
    pub hidden_states: Vec<Tensor<3>>,
    /// `tanh(dense(<s>))`, `[batch, hidden]`, when the checkpoint has a pooler.
    pub pooler_output: Option<Tensor<2>>,
}

/// An MPNet encoder (HF `MPNetModel`).
///
/// Load one with [`MpnetModel::load`]. Dropout is active only in training mode on an
/// autodiff device.
#[derive(Module, Debug)]
pub struct MpnetModel {
    /// HF `embeddings`.
    pub embeddings: MpnetEmbeddings,
    /// HF `encoder`.
    pub encoder: MpnetEncoder,
    /// HF `pooler`, present when the checkpoint has its weights.
    pub pooler: Option<MpnetPooler>,
    /// The configuration the model was built from.
    #[module(skip)]
    pub config: MpnetConfig,
}

impl MpnetModel {
    /// The configuration.
    pub fn config(&self) -> &MpnetConfig {
        &self.config
    }

    /// Moves a tokenised [`Batch`] to `device` as a [`BertInput`] (token types all 0, unused),
    /// checking ids and length against the config.
    ///
    /// # Errors
    ///
    /// [`InputError::Empty`], [`InputError::TooLong`] (longer than
    /// [`MpnetConfig::max_sequence_length`]) or [`InputError::TokenOutOfVocab`].
    pub fn input(&self, batch: &Batch, device: &Device) -> Result<BertInput, InputError> {
        self.input_from_ids(
            &batch.input_ids,
            &batch.attention_mask,
            batch.shape(),
            device,
        )
    }

    /// Builds an input from row-major `[batch, seq]` ids and attention mask (1 real, 0
    /// padding), checking them against the config. Pad with `pad_token_id` (1): positions
    /// are derived from the ids, as in transformers.
    ///
    /// # Errors
    ///
    /// As [`input`](Self::input), plus [`InputError::Shape`] if the arrays do not hold
    /// `batch * seq` entries.
    pub fn input_from_ids(
        &self,
        input_ids: &[u32],
        attention_mask: &[u32],
        shape: [usize; 2],
        device: &Device,
    ) -> Result<BertInput, InputError> {
        let types = vec![0; input_ids.len()];
        BertInput::checked(
            input_ids,
            &types,
            attention_mask,
            shape,
            InputLimits {
                vocab_size: self.config.vocab_size,
                type_vocab_size: 1,
                max_len: self.config.max_sequence_length(),
            },
            device,
        )
    }

    /// Runs the encoder (token types are ignored).
    ///
    /// # Errors
    ///
    /// [`InputError::Empty`], [`InputError::TooLong`] or [`InputError::Shape`].
    pub fn forward(&self, input: &BertInput) -> Result<MpnetOutput, InputError> {
        self.run(input, false)
    }

    /// Like [`forward`](Self::forward), also returning the embedding output and every layer's
    /// hidden state.
    ///
    /// # Errors
    ///
    /// As [`forward`](Self::forward).
    pub fn forward_all(&self, input: &BertInput) -> Result<MpnetOutput, InputError> {
        self.run(input, true)
    }

    fn run(&self, input: &BertInput, all: bool) -> Result<MpnetOutput, InputError> {
        let [batch, seq_len] = input.shape();
        if batch == 0 || seq_len == 0 {
            return Err(InputError::Empty { batch, seq_len });
        }
        let max = self.config.max_sequence_length();
        if seq_len > max {
            return Err(InputError::TooLong { seq_len, max });
        }
        let mask_dims = input.attention_mask.dims();
        if mask_dims != [batch, seq_len] {
            return Err(InputError::Shape(format!(
                "attention_mask is {mask_dims:?}, input_ids is {:?}",
                [batch, seq_len]
            )));
        }
        let bias = self.attention_bias(&input.attention_mask);
        let mut hidden = self.embeddings.forward(input.input_ids.clone());
        let mut hidden_states = Vec::new();
        for layer in &self.encoder.layer {
            if all {
                hidden_states.push(hidden.clone());
            }
            hidden = layer.forward(hidden, &bias);
        }
        if all {
            hidden_states.push(hidden.clone());
        }
        let pooler_output = self.pooler.as_ref().map(|p| p.forward(hidden.clone()));
        Ok(MpnetOutput {
            last_hidden_state: hidden,
            hidden_states,
            pooler_output,
        })
    }

    /// The additive attention bias every layer shares, `[batch, heads, seq, seq]`: the
    /// relative position bias of `key - query` ([`relative_position_bucket`] into
    /// `encoder.relative_attention_bias`), plus `f32::MIN` on padding keys (transformers adds
    /// `finfo(float32).min`), so padded batches give the same results as transformers.
    pub fn attention_bias(&self, attention_mask: &Tensor<2, Int>) -> Tensor<4> {
        let [batch, seq_len] = attention_mask.dims();
        let heads = self.config.num_attention_heads;
        let device = attention_mask.device();
        let buckets: Vec<i64> = (0..seq_len as i64)
            .flat_map(|query| {
                (0..seq_len as i64).map(move |key| {
                    relative_position_bucket(key - query, NUM_BUCKETS, MAX_DISTANCE) as i64
                })
            })
            .collect();
        let buckets =
            Tensor::<2, Int>::from_data(TensorData::new(buckets, [seq_len, seq_len]), &device);
        // [seq, seq, heads] -> [1, heads, seq, seq]
        let position = embedding(self.encoder.relative_attention_bias.val(), buckets)
            .permute([2, 0, 1])
            .unsqueeze_dim::<4>(0)
            .expand([batch, heads, seq_len, seq_len]);
        let padding = attention_mask
            .clone()
            .equal_elem(0)
            .float()
            .mul_scalar(f32::MIN)
            .reshape([batch, 1, 1, seq_len])
            .expand([batch, heads, seq_len, seq_len]);
        position + padding
    }
}
