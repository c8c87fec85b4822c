//! One interface over this crate's encoders: the hidden states of padded token rows.
//!
//! [`Encoder`] is what code that only needs states (a distillation teacher, a probe, a tagger
//! built on an encoder) asks of a model, so that a [`BertModel`] with any adapters and an
//! [`MpnetModel`] serve alike.
//!
//! ```no_run
//! use lora_bert_encoder::states::{Encoder, HiddenLayer};
//! use lora_bert_encoder::padding::InputBatch;
//! use lora_bert_encoder::{BertModel, Device, NoAdapter, Route};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::default();
//! let (model, _report): (BertModel<NoAdapter>, _) = BertModel::load("all-MiniLM-L6-v2", &device)?;
//! let ids: (&[u32], &[u32]) = (&[101, 7592, 102], &[0, 0, 0]);
//! let batch = InputBatch::new([ids], 0);
//! let states = model.states(batch.view(), HiddenLayer::Hidden(3), &Route::Base, &device)?;
//! assert_eq!(states.dims(), [1, 3, model.hidden_size()]);
//! # Ok(())
//! # }
//! ```

use burn::tensor::Tensor;

use crate::device::Device;
use crate::model::{BertInput, BertModel, InputError};
use crate::mpnet::MpnetModel;
use crate::projection::{ProjectionAdapter, Route};

/// Which hidden state an [`Encoder`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HiddenLayer {
    /// The last layer's output (`last_hidden_state`), the default: the states a
    /// sentence-transformers model is trained to make useful.
    #[default]
    Last,
    /// Hugging Face's `hidden_states[i]`: 0 is the embedding output, `num_hidden_layers` the
    /// last layer (the same as [`HiddenLayer::Last`]).
    Hidden(usize),
}

/// A padded batch of token rows, row-major, borrowed from whoever padded it (an
/// [`InputBatch`](crate::padding::InputBatch), a training batch).
#[derive(Debug, Clone, Copy)]
pub struct PaddedRows<'a> {
    /// Token ids, `shape[0] * shape[1]`.
    pub ids: &'a [u32],
    /// Segment ids (ignored by encoders without token types).
    pub type_ids: &'a [u32],
    /// 1 for a real token, 0 for padding.
    pub mask: &'a [u32],
    /// `[rows, tokens per row]`.
    pub shape: [usize; 2],
}

/// An encoder that gives hidden states: a [`BertModel`] (with any adapters, under a
/// [`Route`]) or an [`MpnetModel`]; a model built on one (a tagger) may implement it too.
pub trait Encoder: std::fmt::Debug + Send + Sync {
    /// Width of the states.
    fn hidden_size(&self) -> usize;
    /// Transformer layers (hidden states `0..=num_hidden_layers`).
    fn num_hidden_layers(&self) -> usize;
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// The longest input in tokens, specials included.
    fn max_length(&self) -> usize;
    /// The architecture in a few words, for descriptions and cache keys.
    fn architecture(&self) -> String;
    /// The `[rows, tokens, hidden]` states of `layer` for `rows`, under `route`.
    ///
    /// # Errors
    ///
    /// Input the model refuses; [`InputError::Layer`] for a layer it does not have;
    /// [`InputError::Route`] for a route it cannot take.
    fn states(
        &self,
        rows: PaddedRows<'_>,
        layer: HiddenLayer,
        route: &Route,
        device: &Device,
    ) -> Result<Tensor<3>, InputError>;
}

/// `"{kind} encoder: {layers} layers, hidden {hidden}, vocab {vocab}"`: the description teacher
/// caches and feature caches are keyed by, so it must not change.
fn describe(kind: &str, e: &impl Encoder) -> String {
    format!(
        "{kind} encoder: {} layers, hidden {}, vocab {}",
        e.num_hidden_layers(),
        e.hidden_size(),
        e.vocab_size()
    )
}

/// Checks `layer` against a model of `layers` layers.
fn check_layer(layer: HiddenLayer, layers: usize) -> Result<(), InputError> {
    match layer {
        HiddenLayer::Hidden(layer) if layer > layers => Err(InputError::Layer {
            layer,
            message: format!("the model has hidden states 0..={layers}"),
        }),
        _ => Ok(()),
    }
}

impl<A: ProjectionAdapter + Sync> Encoder for BertModel<A> {
    fn hidden_size(&self) -> usize {
        self.config().hidden_size
    }

    fn num_hidden_layers(&self) -> usize {
        self.config().num_hidden_layers
    }

    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    fn max_length(&self) -> usize {
        self.config().max_position_embeddings
    }

    fn architecture(&self) -> String {
        describe("bert", self)
    }

    fn states(
        &self,
        rows: PaddedRows<'_>,
        layer: HiddenLayer,
        route: &Route,
        device: &Device,
    ) -> Result<Tensor<3>, InputError> {
        check_layer(layer, self.num_hidden_layers())?;
        let PaddedRows {
            ids,
            type_ids,
            mask,
            shape,
        } = rows;
        let input = BertInput::from_ids(ids, type_ids, mask, shape, self.config(), device)?;
        Ok(match layer {
            HiddenLayer::Last => self.forward(&input, route)?.last_hidden_state,
            HiddenLayer::Hidden(l) => self
                .forward_all(&input, route)?
                .hidden_states
                .swap_remove(l),
        })
    }
}

impl Encoder for MpnetModel {
    fn hidden_size(&self) -> usize {
        self.config().hidden_size
    }

    fn num_hidden_layers(&self) -> usize {
        self.config().num_hidden_layers
    }

    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    fn max_length(&self) -> usize {
        self.config().max_sequence_length()
    }

    fn architecture(&self) -> String {
        describe("mpnet", self)
    }

    fn states(
        &self,
        rows: PaddedRows<'_>,
        layer: HiddenLayer,
        route: &Route,
        device: &Device,
    ) -> Result<Tensor<3>, InputError> {
        if !matches!(route, Route::Base) {
            return Err(InputError::Route(
                "an MPNet model has no adapters: use Route::Base".into(),
            ));
        }
        check_layer(layer, self.num_hidden_layers())?;
        let input = self.input_from_ids(rows.ids, rows.mask, rows.shape, device)?;
        Ok(match layer {
            HiddenLayer::Last => self.forward(&input)?.last_hidden_state,
            HiddenLayer::Hidden(l) => self.forward_all(&input)?.hidden_states.swap_remove(l),
        })
    }
}
