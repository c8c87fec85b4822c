//! Data for lora-bert: readers for real formats, tag schemes, label vocabularies, alignment of
//! word labels to word pieces and back, batching, multi-task sampling, splits, and a registry
//! of the real datasets lora-bert trains and evaluates on.
//!
//! Nothing here touches a tensor: batches are row-major host vectors the trainer moves to a
//! device. Every random choice is seeded ([`rand_chacha::ChaCha8Rng`]), so splits, shuffles and
//! task draws repeat exactly.
//!
//! ```no_run
//! use lora_bert_assets::{AssetCache, all_minilm_l6_v2};
//! use lora_bert_data::align::LabelAlignment;
//! use lora_bert_data::batch::{BatchConfig, BatchPlan, TextEncoder};
//! use lora_bert_data::token::{TokenBatch, encode_tagged};
//! use lora_bert_data::{LabelVocab, registry};
//! use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy};
//!
//! let cache = AssetCache::from_env()?;
//! let tokenizer = BertTokenizer::from_file(all_minilm_l6_v2(&cache)?.tokenizer)?
//!     .with_max_length(128)
//!     .with_length_policy(LengthPolicy::Window { stride: 32 });
//!
//! // Token classification: WNUT-16 NER, word tags aligned to word pieces.
//! let wnut = registry::wnut16(&cache)?;
//! let tags = LabelVocab::from_tags(wnut.iter().flat_map(|s| s.tags.iter()))?;
//! let train = encode_tagged(&tokenizer, &wnut.train, &tags, LabelAlignment::FirstSubword)?;
//! let plan = BatchPlan::for_examples(&train, BatchConfig::new(32).shuffled(7).bucketed(8))?;
//! for indices in plan.epoch(0) {
//!     let batch = TokenBatch::collate(&train, &indices, tokenizer.pad_id())?;
//!     // batch.input_ids, batch.attention_mask, batch.labels: [rows, seq_len], -100 ignored
//! }
//!
//! // Text classification: BBC News topics.
//! let bbc = registry::bbc_news(&cache)?;
//! let topics = LabelVocab::from_labels(bbc.train.iter().map(|t| t.label.as_str()))?;
//! let encoded = TextEncoder::new(&tokenizer).encode_texts(&bbc.train, |l| topics.id(l))?;
//! let plan = BatchPlan::new(encoded.lengths(), BatchConfig::new(32).shuffled(7))?;
//! let first = encoded.batch(&plan.epoch(0)[0])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod align;
pub mod batch;
mod error;
mod example;
pub mod read;
pub mod registry;
pub mod sampler;
pub mod scheme;
pub mod split;
pub mod token;
mod vocab;
pub mod window;

pub use error::DataError;
pub use example::{LabeledText, TaggedSentence, TextPair, join_words};
pub use lora_bert_metrics::Scheme;
pub use vocab::LabelVocab;

/// The result type of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
