//! What the tokenizer gives: an [`Encoding`] per text (or window) and padded [`Batch`]es.

#[cfg(doc)]
use super::{BertTokenizer, LengthPolicy};
use crate::padding::InputBatch;

/// One encoded sequence (a text, a pair, or one window of either), without padding.
///
/// All vectors have one entry per token, special tokens included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids, `[CLS] ... [SEP]` (or `[CLS] a [SEP] b [SEP]` for a pair).
    pub ids: Vec<u32>,
    /// Token type (segment) ids: 0 for the first text and its specials, 1 for the second text
    /// of a pair and its final `[SEP]`.
    pub type_ids: Vec<u32>,
    /// Token strings (`##` marks a word continuation).
    pub tokens: Vec<String>,
    /// Byte offsets `(start, end)` of each token into the **original** text it came from
    /// (the first or the second text of a pair, see [`Encoding::sequence_ids`]); `(0, 0)` for
    /// special tokens.
    pub offsets: Vec<(usize, usize)>,
    /// Index of the word each token belongs to, within its own text (`None` for special
    /// tokens). Word pieces of one word share the index. Windows keep the indices of the full
    /// text.
    pub word_ids: Vec<Option<u32>>,
    /// Which text each token came from: `Some(0)` first, `Some(1)` second, `None` special.
    pub sequence_ids: Vec<Option<usize>>,
    /// 1 for tokens added by the post-processor (`[CLS]`, `[SEP]`), 0 otherwise.
    pub special_tokens_mask: Vec<u32>,
    /// Index of the input text (or pair) this encoding came from, in the batch (0 for
    /// [`BertTokenizer::encode`] and [`BertTokenizer::encode_pair`]).
    pub source: usize,
    /// Index of this window within its text (0 when the text was not windowed).
    pub window: usize,
    /// Number of windows its text was split into (1 when it was not windowed).
    pub num_windows: usize,
    /// Index of this encoding's first non-special token within the full text's sequence of
    /// non-special tokens (for a windowed pair: within the second text). 0 when not windowed.
    pub token_start: usize,
    /// `true` when [`LengthPolicy::Truncate`] dropped tokens of the text. Windows are never
    /// truncated: together they cover the whole text.
    pub truncated: bool,
}

impl Encoding {
    /// Number of tokens, special tokens included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// `true` when there is no token (never the case for an encoding this module returns).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub(crate) fn from_hf(e: &tokenizers::Encoding, source: usize) -> Self {
        Encoding {
            ids: e.get_ids().to_vec(),
            type_ids: e.get_type_ids().to_vec(),
            tokens: e.get_tokens().to_vec(),
            offsets: e.get_offsets().to_vec(),
            word_ids: e.get_word_ids().to_vec(),
            sequence_ids: e.get_sequence_ids(),
            special_tokens_mask: e.get_special_tokens_mask().to_vec(),
            source,
            window: 0,
            num_windows: 1,
            token_start: 0,
            truncated: false,
        }
    }
}

/// A padded batch, row-major `[batch, seq_len]`, pad id on the right, attention_mask 1/0.
///
/// Row `i` is `encodings[i]` (unpadded) followed by padding: [`BertTokenizer::pad_id`] in
/// `input_ids`, 0 in `type_ids` and `attention_mask`. With [`LengthPolicy::Window`] a text
/// may give several rows, in order; [`Encoding::source`] and [`Encoding::window`] tell which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The unpadded encoding of each row.
    pub encodings: Vec<Encoding>,
    /// Length of every row: the longest encoding.
    pub seq_len: usize,
    /// Token ids, `len() * seq_len` values, row-major.
    pub input_ids: Vec<u32>,
    /// Token type ids, same layout.
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding, same layout.
    pub attention_mask: Vec<u32>,
}

impl Batch {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.encodings.len()
    }

    /// `true` when there is no row (never the case for a batch this module returns).
    pub fn is_empty(&self) -> bool {
        self.encodings.is_empty()
    }

    /// `[rows, seq_len]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.len(), self.seq_len]
    }

    pub(crate) fn pad(encodings: Vec<Encoding>, pad_id: u32) -> Self {
        let InputBatch {
            input_ids,
            type_ids,
            attention_mask,
            seq_len,
        } = InputBatch::new(
            encodings.iter().map(|e| (&e.ids[..], &e.type_ids[..])),
            pad_id,
        );
        Batch {
            encodings,
            seq_len,
            input_ids,
            type_ids,
            attention_mask,
        }
    }
}
