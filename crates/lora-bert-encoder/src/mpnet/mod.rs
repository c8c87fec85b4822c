//! MPNet (as in sentence-transformers' all-mpnet-base-v2), matching Hugging Face's
//! `transformers.models.mpnet.modeling_mpnet.MPNetModel`.
//!
//! MPNet differs from BERT in four places, all reproduced here:
//!
//! - no token-type embeddings; position ids count the non-padding tokens starting at
//!   `padding_idx + 1` (HF `create_position_ids_from_input_ids`), so padding tokens sit at
//!   position `padding_idx`;
//! - a relative position bias (`encoder.relative_attention_bias`, one scalar per bucket and
//!   head) computed once per forward pass from [`relative_position_bucket`] and added to the
//!   attention scores of every layer;
//! - attention projections named `attention.attn.{q,k,v,o}`, with the attention LayerNorm at
//!   `attention.LayerNorm`;
//! - LayerNorm epsilon 1e-5 in all-mpnet-base-v2 (read from the config).
//!
//! It is meant as a frozen teacher: projections are plain linears (no adapters).
//!
//! ```no_run
//! use lora_bert_encoder::{BertTokenizer, MpnetModel, device, mean_pool};
//!
//! let device = device::device(device::Backend::Flex)?;
//! let (model, _report) = MpnetModel::load("all-mpnet-base-v2", &device)?;
//! let tokenizer = BertTokenizer::from_file("all-mpnet-base-v2/tokenizer.json")?
//!     .with_max_length(model.config().max_sequence_length());
//! let batch = tokenizer.encode_batch(&["A man is eating food.", "The market fell."])?;
//! let input = model.input(&batch, &device)?;
//! let output = model.forward(&input)?;
//! let sentence_embeddings = mean_pool(output.last_hidden_state, input.attention_mask);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checkpoint;
mod config;
mod layers;
mod model;
mod position;

pub use config::MpnetConfig;
pub use layers::{
    MpnetAttention, MpnetEmbeddings, MpnetEncoder, MpnetIntermediate, MpnetLayer, MpnetOutputBlock,
    MpnetPooler, MpnetSelfAttention,
};
pub use model::{MpnetModel, MpnetOutput};
pub use position::{position_ids, relative_position_bucket};

/// The padding index transformers' MPNet hard-codes (`MPNetEmbeddings.padding_idx = 1`).
const PADDING_IDX: u32 = 1;
/// The number of buckets transformers' MPNet uses whatever the config says
/// (`compute_position_bias(..., num_buckets=32)`).
const NUM_BUCKETS: usize = 32;
/// The distance from which all buckets are the same (transformers' default).
const MAX_DISTANCE: usize = 128;
