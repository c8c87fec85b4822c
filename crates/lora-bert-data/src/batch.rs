//! Batching: seeded batch plans with optional length bucketing, padding, and padded batches of
//! tokenized texts for classification and contrastive training.
//!
//! The pieces are separate so that any kind of example can be batched:
//!
//! * a [`BatchPlan`] decides which examples go together, from their lengths only
//!   ([`SeqLen`]), deterministically for a seed and an epoch;
//! * [`pad_rows`] and [`attention_mask`] turn the rows of one batch into row-major
//!   `[batch, seq_len]` buffers padded on the right (ids with the pad id, labels with `-100`);
//! * a [`TextEncoder`] tokenizes a whole dataset once, in parallel ([`EncodedTexts`],
//!   [`EncodedPairs`]), and collates the batches of a plan ([`TextBatch`], [`PairBatch`]).
//!
//! ```
//! use lora_bert_data::batch::{BatchConfig, BatchPlan};
//!
//! let lengths = [5, 9, 3, 12, 7, 4, 8];
//! let plan = BatchPlan::new(lengths.to_vec(), BatchConfig::new(3).shuffled(42))?;
//! let epoch0 = plan.epoch(0);
//! assert_eq!(epoch0.len(), 3); // 3 + 3 + 1
//! let mut seen: Vec<usize> = epoch0.concat();
//! seen.sort();
//! assert_eq!(seen, [0, 1, 2, 3, 4, 5, 6]);
//! assert_eq!(plan.epoch(0), epoch0); // same seed and epoch: same batches
//! # Ok::<(), lora_bert_data::DataError>(())
//! ```

pub use lora_bert_encoder::padding::{InputBatch, attention_mask, pad_rows, pad_rows_to};
use lora_bert_encoder::tokenizer::{BertTokenizer, Encoding, LengthPolicy, TokenizerError};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{DataError, LabeledText, Result, TextPair};

/// Anything with a length in tokens, the only thing a [`BatchPlan`] looks at.
pub trait SeqLen {
    /// Number of tokens (special tokens included) the example takes in a batch row.
    fn seq_len(&self) -> usize;
}

impl SeqLen for Encoding {
    fn seq_len(&self) -> usize {
        self.len()
    }
}

impl<T> SeqLen for [T] {
    fn seq_len(&self) -> usize {
        self.len()
    }
}

impl<T> SeqLen for Vec<T> {
    fn seq_len(&self) -> usize {
        self.len()
    }
}

impl<T: SeqLen + ?Sized> SeqLen for &T {
    fn seq_len(&self) -> usize {
        (**self).seq_len()
    }
}

/// How a [`BatchPlan`] cuts a dataset into batches.
///
/// [`BatchConfig::new`] gives batches in dataset order (no shuffle, no bucketing, last batch
/// kept), the setting for evaluation; training usually adds [`BatchConfig::shuffled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Examples per batch (the last batch may be smaller unless `drop_last`). Must be > 0.
    pub batch_size: usize,
    /// Shuffle the examples (and, with bucketing, the batches) every epoch.
    pub shuffle: bool,
    /// Seed of the shuffles; with `epoch` it fixes the plan.
    pub seed: u64,
    /// Length bucketing: the number of batches per bucket (see [`BatchPlan`]). Must be > 0.
    pub bucket: Option<usize>,
    /// Drop the `len % batch_size` examples that would make a smaller last batch.
    pub drop_last: bool,
}

impl BatchConfig {
    /// Batches of `batch_size` in dataset order: no shuffle, no bucketing, last batch kept.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: false,
            seed: 0,
            bucket: None,
            drop_last: false,
        }
    }

    /// Shuffles with `seed`.
    #[must_use]
    pub fn shuffled(mut self, seed: u64) -> Self {
        self.shuffle = true;
        self.seed = seed;
        self
    }

    /// Buckets by length, `batches_per_bucket` batches per bucket.
    #[must_use]
    pub fn bucketed(mut self, batches_per_bucket: usize) -> Self {
        self.bucket = Some(batches_per_bucket);
        self
    }

    /// Sets `drop_last`.
    #[must_use]
    pub fn drop_last(mut self, yes: bool) -> Self {
        self.drop_last = yes;
        self
    }
}

/// The batches of every epoch of a dataset, as lists of example indices.
///
/// [`BatchPlan::epoch`] builds the batches of epoch `e`:
///
/// 1. the indices `0..n`, shuffled when [`BatchConfig::shuffle`] is set, with a generator
///    seeded from `seed` on stream `e` ([`ChaCha8Rng`]), so every epoch has its own order and
///    the same `(seed, e)` always gives the same batches, on every platform;
/// 2. with [`BatchConfig::drop_last`], the last `n % batch_size` of these indices are left
///    out (random examples when shuffled, the last ones otherwise);
/// 3. without bucketing, consecutive runs of `batch_size` indices are the batches;
/// 4. with `bucket: Some(k)`, the indices are cut into buckets of `k * batch_size`, each bucket
///    is sorted by length (a stable sort, so equal lengths keep the shuffled order) and cut
///    into batches, and, when shuffling, the order of all the batches is shuffled (same
///    generator) so that a batch's length does not tell its position in the epoch. Examples
///    of similar length share a batch, which cuts padding; a larger `k` cuts more padding and
///    randomness. Without shuffling the buckets are runs of the dataset order.
///
/// Every kept index appears in exactly one batch of an epoch, and every batch has
/// `batch_size` indices except, without `drop_last`, possibly one smaller batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    lengths: Vec<usize>,
    config: BatchConfig,
}

impl BatchPlan {
    /// A plan over examples of the given lengths.
    ///
    /// # Errors
    ///
    /// [`DataError::InvalidArgument`] for a zero batch size or zero batches per bucket;
    /// [`DataError::Empty`] for no example.
    pub fn new(lengths: Vec<usize>, config: BatchConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DataError::InvalidArgument {
                what: "batch_size",
                message: "must be at least 1".into(),
            });
        }
        if config.bucket == Some(0) {
            return Err(DataError::InvalidArgument {
                what: "bucket",
                message: "batches per bucket must be at least 1".into(),
            });
        }
        if lengths.is_empty() {
            return Err(DataError::Empty("dataset to batch".into()));
        }
        Ok(Self { lengths, config })
    }

    /// A plan over `examples`, from their [`SeqLen`].
    ///
    /// # Errors
    ///
    /// As [`BatchPlan::new`].
    pub fn for_examples<E: SeqLen>(examples: &[E], config: BatchConfig) -> Result<Self> {
        Self::new(examples.iter().map(SeqLen::seq_len).collect(), config)
    }

    /// The configuration.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// The example lengths the plan was built from.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Number of examples (never 0).
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Always `false`: a plan has at least one example.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Number of batches in every epoch (0 only with `drop_last` and fewer examples than
    /// `batch_size`).
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The batches of epoch `epoch` (see [`BatchPlan`] for how they are made).
    pub fn epoch(&self, epoch: u64) -> Vec<Vec<usize>> {
        let BatchConfig {
            batch_size,
            shuffle,
            seed,
            bucket,
            drop_last,
        } = self.config;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch);
        let mut order: Vec<usize> = (0..self.len()).collect();
        if shuffle {
            order.shuffle(&mut rng);
        }
        if drop_last {
            order.truncate(order.len() - order.len() % batch_size);
        }
        let Some(k) = bucket else {
            return order.chunks(batch_size).map(<[usize]>::to_vec).collect();
        };
        let mut batches = Vec::with_capacity(self.num_batches());
        for chunk in order.chunks_mut(batch_size.saturating_mul(k)) {
            chunk.sort_by_key(|&i| self.lengths[i]);
            batches.extend(chunk.chunks(batch_size).map(<[usize]>::to_vec));
        }
        if shuffle {
            batches.shuffle(&mut rng);
        }
        batches
    }

    /// Padding tokens the given batches need: for each batch, `rows * longest - sum(lengths)`.
    ///
    /// # Panics
    ///
    /// If a batch holds an index `>= len()` (batches from [`BatchPlan::epoch`] never do).
    pub fn padding(&self, batches: &[Vec<usize>]) -> usize {
        batches
            .iter()
            .map(|b| {
                let longest = b.iter().map(|&i| self.lengths[i]).max().unwrap_or(0);
                b.iter().map(|&i| longest - self.lengths[i]).sum::<usize>()
            })
            .sum()
    }
}

/// A padded batch of texts with one class label each, row-major `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextBatch {
    /// Token ids, the tokenizer's pad id in padding.
    pub input_ids: Vec<u32>,
    /// Token type ids, 0 in padding.
    pub type_ids: Vec<u32>,
    /// 1 for tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Class id of each row.
    pub labels: Vec<u32>,
    /// Length of every row: the longest text of the batch.
    pub seq_len: usize,
}

impl TextBatch {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` when there is no row (never the case for a batch this module returns).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[batch, seq_len]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.len(), self.seq_len]
    }
}

/// A batch of positive pairs for contrastive training: row `i` of `anchor` and row `i` of
/// `positive` belong together, the other rows of `positive` are its negatives. Each side is
/// tokenized and padded on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairBatch {
    /// The anchors.
    pub anchor: InputBatch,
    /// The positives, in the same order.
    pub positive: InputBatch,
}

impl PairBatch {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.anchor.rows()
    }

    /// `true` when there is no pair (never the case for a batch this module returns).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Token ids and type ids of texts, tokenized once; rows are collated into [`InputBatch`]es.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRows {
    ids: Vec<Vec<u32>>,
    type_ids: Vec<Vec<u32>>,
    pad_id: u32,
}

impl EncodedRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// `true` when there is no row (never the case for rows this module returns).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Token ids of row `i` (special tokens included, no padding).
    pub fn ids(&self, i: usize) -> Option<&[u32]> {
        self.ids.get(i).map(Vec::as_slice)
    }

    /// Length of each row, for a [`BatchPlan`].
    pub fn lengths(&self) -> Vec<usize> {
        self.ids.iter().map(Vec::len).collect()
    }

    /// The rows `indices`, in that order, padded to the longest.
    ///
    /// # Errors
    ///
    /// [`DataError::Empty`] for no index; [`DataError::InvalidArgument`] for an index out of
    /// range.
    pub fn batch(&self, indices: &[usize]) -> Result<InputBatch> {
        check_indices(indices, self.len())?;
        let rows = indices
            .iter()
            .map(|&i| (self.ids[i].as_slice(), self.type_ids[i].as_slice()));
        Ok(InputBatch::new(rows, self.pad_id))
    }
}

/// A text classification dataset, tokenized once: collate batches with
/// [`EncodedTexts::batch`], plan them with [`EncodedTexts::lengths`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedTexts {
    rows: EncodedRows,
    labels: Vec<u32>,
}

impl EncodedTexts {
    /// Number of texts.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` when there is no text (never the case for texts this module returns).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The tokenized texts.
    pub fn rows(&self) -> &EncodedRows {
        &self.rows
    }

    /// Class id of every text.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Length in tokens of every text, for a [`BatchPlan`].
    pub fn lengths(&self) -> Vec<usize> {
        self.rows.lengths()
    }

    /// The texts `indices`, in that order, padded to the longest, with their labels.
    ///
    /// # Errors
    ///
    /// As [`EncodedRows::batch`].
    pub fn batch(&self, indices: &[usize]) -> Result<TextBatch> {
        let InputBatch {
            input_ids,
            type_ids,
            attention_mask,
            seq_len,
        } = self.rows.batch(indices)?;
        Ok(TextBatch {
            input_ids,
            type_ids,
            attention_mask,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            seq_len,
        })
    }
}

/// Text pairs, each side tokenized once on its own: collate with [`EncodedPairs::batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPairs {
    /// The anchors.
    pub anchor: EncodedRows,
    /// The positives, in the same order.
    pub positive: EncodedRows,
}

impl EncodedPairs {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.anchor.len()
    }

    /// `true` when there is no pair (never the case for pairs this module returns).
    pub fn is_empty(&self) -> bool {
        self.anchor.is_empty()
    }

    /// Length of each pair for a [`BatchPlan`]: the longer of its two sides.
    pub fn lengths(&self) -> Vec<usize> {
        self.anchor
            .ids
            .iter()
            .zip(&self.positive.ids)
            .map(|(a, p)| a.len().max(p.len()))
            .collect()
    }

    /// The pairs `indices`, in that order, each side padded to its own longest row.
    ///
    /// # Errors
    ///
    /// As [`EncodedRows::batch`].
    pub fn batch(&self, indices: &[usize]) -> Result<PairBatch> {
        Ok(PairBatch {
            anchor: self.anchor.batch(indices)?,
            positive: self.positive.batch(indices)?,
        })
    }
}

/// Tokenizes texts for sequence-level tasks (classification, contrastive pairs): one row per
/// text, tokenized in parallel with rayon, results in input order.
///
/// **Long texts.** [`TextEncoder::new`] truncates: it uses a copy of the tokenizer with
/// [`LengthPolicy::Truncate`] (same maximum length), the usual choice for classification, where
/// the label belongs to the whole text and the start of a text carries most of it.
/// [`TextEncoder::with_policy_of`] keeps the tokenizer's own policy instead (with
/// [`LengthPolicy::Error`], a long text is an error). [`LengthPolicy::Window`] is refused: it
/// would give several rows for one label.
///
/// Errors name the index of the failing text in the input (the first one, by index).
#[derive(Debug, Clone)]
pub struct TextEncoder {
    tokenizer: BertTokenizer,
}

impl TextEncoder {
    /// An encoder that truncates long texts to the tokenizer's maximum length.
    pub fn new(tokenizer: &BertTokenizer) -> Self {
        Self {
            tokenizer: tokenizer.clone().with_length_policy(LengthPolicy::Truncate),
        }
    }

    /// An encoder that keeps the tokenizer's length policy.
    ///
    /// # Errors
    ///
    /// [`DataError::InvalidArgument`] if the policy is [`LengthPolicy::Window`].
    pub fn with_policy_of(tokenizer: &BertTokenizer) -> Result<Self> {
        if let LengthPolicy::Window { .. } = tokenizer.length_policy() {
            return Err(DataError::InvalidArgument {
                what: "length policy",
                message: "windowing gives several rows per text; sequence-level batches need one \
                          (use Truncate or Error)"
                    .into(),
            });
        }
        Ok(Self {
            tokenizer: tokenizer.clone(),
        })
    }

    /// The tokenizer used, with the policy in force.
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// Tokenizes `texts`, one row each.
    ///
    /// # Errors
    ///
    /// [`DataError::Empty`] for no text; [`DataError::Tokenizer`] for a text the tokenizer
    /// refuses (empty, or too long under [`LengthPolicy::Error`]), with its index.
    pub fn encode_rows<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<EncodedRows> {
        if texts.is_empty() {
            return Err(DataError::Empty("texts to encode".into()));
        }
        let results: Vec<Result<(Vec<u32>, Vec<u32>)>> = texts
            .par_iter()
            .enumerate()
            .map(|(i, t)| self.encode_one(i, t.as_ref()))
            .collect();
        let mut ids = Vec::with_capacity(texts.len());
        let mut type_ids = Vec::with_capacity(texts.len());
        for r in results {
            let (i, t) = r?;
            ids.push(i);
            type_ids.push(t);
        }
        Ok(EncodedRows {
            ids,
            type_ids,
            pad_id: self.tokenizer.pad_id(),
        })
    }

    /// Tokenizes labelled texts and maps their labels with `label_id` (for example a label
    /// vocabulary's `id`). Labels are mapped first, in order, so an unknown label is reported
    /// before any tokenization.
    ///
    /// # Errors
    ///
    /// The first error of `label_id`; otherwise as [`TextEncoder::encode_rows`].
    pub fn encode_texts<F>(&self, texts: &[LabeledText], label_id: F) -> Result<EncodedTexts>
    where
        F: Fn(&str) -> Result<u32>,
    {
        let labels = texts
            .iter()
            .map(|t| label_id(&t.label))
            .collect::<Result<Vec<u32>>>()?;
        let strs: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
        Ok(EncodedTexts {
            rows: self.encode_rows(&strs)?,
            labels,
        })
    }

    /// Tokenizes both sides of `pairs`, each side on its own (`[CLS] text [SEP]`).
    ///
    /// # Errors
    ///
    /// As [`TextEncoder::encode_rows`]; the index is the pair's.
    pub fn encode_pairs(&self, pairs: &[TextPair]) -> Result<EncodedPairs> {
        let anchors: Vec<&str> = pairs.iter().map(|p| p.anchor.as_str()).collect();
        let positives: Vec<&str> = pairs.iter().map(|p| p.positive.as_str()).collect();
        Ok(EncodedPairs {
            anchor: self.encode_rows(&anchors)?,
            positive: self.encode_rows(&positives)?,
        })
    }

    /// Tokenizes and collates `texts` as one batch, in order.
    ///
    /// # Errors
    ///
    /// As [`TextEncoder::encode_texts`].
    pub fn text_batch<F>(&self, texts: &[LabeledText], label_id: F) -> Result<TextBatch>
    where
        F: Fn(&str) -> Result<u32>,
    {
        let encoded = self.encode_texts(texts, label_id)?;
        encoded.batch(&(0..encoded.len()).collect::<Vec<_>>())
    }

    /// Tokenizes and collates `pairs` as one batch, in order.
    ///
    /// # Errors
    ///
    /// As [`TextEncoder::encode_pairs`].
    pub fn pair_batch(&self, pairs: &[TextPair]) -> Result<PairBatch> {
        let encoded = self.encode_pairs(pairs)?;
        encoded.batch(&(0..encoded.len()).collect::<Vec<_>>())
    }

    fn encode_one(&self, index: usize, text: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let mut encodings = self
            .tokenizer
            .encode(text)
            .map_err(|e| with_index(e, index))?;
        match (encodings.pop(), encodings.is_empty()) {
            (Some(e), true) => Ok((e.ids, e.type_ids)),
            // Unreachable: `with_policy_of` refuses windowing, the only source of several rows.
            _ => Err(DataError::InvalidArgument {
                what: "length policy",
                message: format!("text {index} did not give exactly one encoding"),
            }),
        }
    }
}

/// Puts the index of the text in the dataset into a single-text tokenizer error (index 0).
fn with_index(e: TokenizerError, index: usize) -> DataError {
    DataError::Tokenizer(match e {
        TokenizerError::EmptyText { .. } => TokenizerError::EmptyText { index },
        TokenizerError::TooLong { tokens, max, .. } => {
            TokenizerError::TooLong { index, tokens, max }
        }
        TokenizerError::Encode { message, .. } => TokenizerError::Encode { index, message },
        other => other,
    })
}

pub(crate) fn check_indices(indices: &[usize], len: usize) -> Result<()> {
    if indices.is_empty() {
        return Err(DataError::Empty("batch".into()));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
        return Err(DataError::InvalidArgument {
            what: "batch index",
            message: format!("index {bad} out of range for {len} examples"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucketing_without_shuffle_sorts_runs_of_the_dataset() {
        let plan = BatchPlan::new(vec![5, 1, 4, 2, 9, 3], BatchConfig::new(2).bucketed(2)).unwrap();
        // Buckets of 4: [0,1,2,3] sorted by length -> [1,3,2,0]; [4,5] -> [5,4].
        assert_eq!(plan.epoch(0), vec![vec![1, 3], vec![2, 0], vec![5, 4]]);
        assert_eq!(plan.padding(&plan.epoch(0)), 1 + 1 + 6);
    }

    #[test]
    fn drop_last_without_shuffle_drops_the_tail() {
        let plan = BatchPlan::new(vec![1; 7], BatchConfig::new(3).drop_last(true)).unwrap();
        assert_eq!(plan.epoch(3), vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(plan.num_batches(), 2);
    }

    #[test]
    fn check_indices_refuses_empty_and_out_of_range() {
        assert!(matches!(check_indices(&[], 3), Err(DataError::Empty(_))));
        assert!(matches!(
            check_indices(&[0, 3], 3),
            Err(DataError::InvalidArgument { .. })
        ));
        assert!(check_indices(&[2, 0, 2], 3).is_ok());
    }
}
