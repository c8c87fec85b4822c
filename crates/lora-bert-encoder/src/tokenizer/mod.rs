//! BERT WordPiece tokenizer wrapper with an explicit length policy.
//!
//! [`BertTokenizer`] wraps a Hugging Face [`tokenizers::Tokenizer`] and turns text into
//! [`Encoding`]s and padded [`Batch`]es ready for a BERT encoder:
//!
//! * it is loaded from a `tokenizer.json` ([`BertTokenizer::from_file`]) or built from a
//!   `vocab.txt` ([`BertTokenizer::from_vocab`]); both give the same ids as Hugging Face
//!   `transformers` called with no padding and no truncation;
//! * any padding or truncation baked into `tokenizer.json` is switched off; instead the
//!   wrapper applies its own [`LengthPolicy`] against [`BertTokenizer::max_length`]
//!   (special tokens included): a typed error (the default), right-side truncation, or
//!   overlapping windows in the style of Hugging Face's `return_overflowing_tokens` + `stride`;
//! * empty input is refused with a typed error unless [`BertTokenizer::allow_empty`] is set;
//! * batches are padded on the right to the longest row, with an attention mask.
//!
//! Offsets are byte offsets into the original text, so `&text[start..end]` is the span a
//! token came from.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::parallelism::MaybeParallelIterator;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, PostProcessor, Tokenizer, TruncationDirection, TruncationParams,
    TruncationStrategy, truncate_encodings,
};

mod encoding;

pub use encoding::{Batch, Encoding};

/// Default maximum sequence length: BERT's `max_position_embeddings` (512).
pub const DEFAULT_MAX_LENGTH: usize = 512;

/// What to do with a text whose encoding (special tokens included) is longer than
/// [`BertTokenizer::max_length`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LengthPolicy {
    /// Refuse the text with [`TokenizerError::TooLong`] (the default).
    #[default]
    Error,
    /// Cut the text on the right so that the encoding is exactly `max_length` tokens
    /// (special tokens included) and mark it with [`Encoding::truncated`]. For a pair,
    /// tokens are removed from the longer text first (Hugging Face's `longest_first`).
    Truncate,
    /// Split the text into overlapping windows, each at most `max_length` tokens with its own
    /// `[CLS]`/`[SEP]`, like Hugging Face's `return_overflowing_tokens=True` with `stride`.
    ///
    /// `stride` is the number of tokens shared by two consecutive windows. Window `k`
    /// covers the non-special tokens `k * step .. k * step + content` of the text, where
    /// `content = max_length - specials` and `step = content - stride`; the last window is the
    /// first one that reaches the end of the text, so no window is empty and every token is in
    /// at least one window. `stride` must be smaller than `content`, otherwise encoding fails
    /// with [`TokenizerError::InvalidPolicy`].
    ///
    /// For a pair, only the **second** text is windowed (Hugging Face's `only_second`, the
    /// question/context convention): every window repeats the whole first text. If the first
    /// text leaves room for no more than `stride` tokens of the second, the pair is refused
    /// with [`TokenizerError::TooLong`].
    Window {
        /// Number of overlapping tokens between consecutive windows.
        stride: usize,
    },
}

/// Errors from loading a tokenizer or encoding text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizer file or vocabulary could not be read or parsed.
    #[error("cannot load tokenizer from {}: {message}", path.display())]
    Load {
        /// The file that failed to load.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The text (or one text of a pair) gives no token at all: it is empty, whitespace-only or
    /// made only of characters the normalizer removes. See [`BertTokenizer::allow_empty`].
    #[error(
        "text {index} is empty (it gives no token); use allow_empty(true) to encode it as [CLS] [SEP]"
    )]
    EmptyText {
        /// Index of the text (or pair) in the input; 0 for a single encode.
        index: usize,
    },
    /// The text is longer than the maximum length and the policy is [`LengthPolicy::Error`]
    /// (or, with [`LengthPolicy::Window`] on a pair, the first text leaves no room to window
    /// the second).
    #[error(
        "text {index} has {tokens} tokens (special tokens included), more than the maximum of {max}"
    )]
    TooLong {
        /// Index of the text (or pair) in the input; 0 for a single encode.
        index: usize,
        /// Number of tokens of the full encoding, special tokens included.
        tokens: usize,
        /// The tokenizer's maximum length.
        max: usize,
    },
    /// A batch encode was called with no text.
    #[error("cannot encode an empty batch")]
    EmptyBatch,
    /// The length policy cannot work with the maximum length (for example a window stride
    /// that is not smaller than the room left for text in a window).
    #[error("invalid length policy {policy:?} with max_length {max_length}: {message}")]
    InvalidPolicy {
        /// The policy that was set.
        policy: LengthPolicy,
        /// The maximum length that was set.
        max_length: usize,
        /// Why they do not fit together.
        message: String,
    },
    /// The underlying tokenizer failed on a text.
    #[error("failed to encode text {index}: {message}")]
    Encode {
        /// Index of the text (or pair) in the input; 0 for a single encode.
        index: usize,
        /// The underlying error.
        message: String,
    },
}

/// A BERT WordPiece tokenizer with an explicit length policy.
///
/// Cheap to share: it is `Clone`, `Send` and `Sync`, and every method takes `&self`.
///
/// ```no_run
/// use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy, TokenizerError};
///
/// # fn main() -> Result<(), TokenizerError> {
/// let tok = BertTokenizer::from_file("all-MiniLM-L6-v2/tokenizer.json")?
///     .with_max_length(128)
///     .with_length_policy(LengthPolicy::Window { stride: 32 });
///
/// let enc = tok.encode("Hello, world!")?;
/// assert_eq!(enc[0].tokens, ["[CLS]", "hello", ",", "world", "!", "[SEP]"]);
/// assert_eq!(enc[0].ids, [101, 7592, 1010, 2088, 999, 102]);
///
/// let batch = tok.encode_batch(&["a short text", "a somewhat longer text here"])?;
/// assert_eq!(batch.shape(), [2, 7]);
/// assert_eq!(batch.attention_mask[..7], [1, 1, 1, 1, 1, 0, 0]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BertTokenizer {
    inner: Tokenizer,
    max_length: usize,
    policy: LengthPolicy,
    allow_empty: bool,
    pad_id: u32,
}

impl fmt::Debug for BertTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BertTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("max_length", &self.max_length)
            .field("policy", &self.policy)
            .field("allow_empty", &self.allow_empty)
            .field("pad_id", &self.pad_id)
            .finish_non_exhaustive()
    }
}

/// Non-special token ranges of a full (post-processed) encoding: first text, second text.
struct Parts {
    full: tokenizers::Encoding,
    a: Range<usize>,
    b: Option<Range<usize>>,
}

impl Parts {
    fn len_a(&self) -> usize {
        self.a.len()
    }
    fn len_b(&self) -> usize {
        self.b.as_ref().map_or(0, Range::len)
    }
    fn n_special(&self) -> usize {
        self.full.len() - self.len_a() - self.len_b()
    }
}

/// Sub-encoding of `e` covering `range`, with no special tokens and no sequence ranges.
fn slice(e: &tokenizers::Encoding, range: Range<usize>) -> tokenizers::Encoding {
    tokenizers::Encoding::new(
        e.get_ids()[range.clone()].to_vec(),
        e.get_type_ids()[range.clone()].to_vec(),
        e.get_tokens()[range.clone()].to_vec(),
        e.get_word_ids()[range.clone()].to_vec(),
        e.get_offsets()[range.clone()].to_vec(),
        e.get_special_tokens_mask()[range.clone()].to_vec(),
        e.get_attention_mask()[range].to_vec(),
        Vec::new(),
        Default::default(),
    )
}

/// Token range of sequence `seq` in `ids` (contiguous in BERT-style encodings).
fn sequence_range(seq_ids: &[Option<usize>], seq: usize) -> Range<usize> {
    let start = seq_ids.iter().position(|s| *s == Some(seq));
    match start {
        None => 0..0,
        Some(start) => {
            let len = seq_ids[start..]
                .iter()
                .take_while(|s| **s == Some(seq))
                .count();
            start..start + len
        }
    }
}

/// Deserializes any JSON value without keeping it, decoding every string on the way, where
/// [`serde::de::IgnoredAny`] skips strings unchecked (invalid UTF-8 or a lone surrogate
/// escape passes it, and fails later inside tokenizers' own deserializers).
struct StrictJson;

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictJson)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictJson {
    type Value = StrictJson;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<StrictJson>()?.is_some() {}
        Ok(StrictJson)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<StrictJson, StrictJson>()?.is_some() {}
        Ok(StrictJson)
    }
}

/// HF-style overflow windows over `len` tokens: `content` tokens each, `stride` shared.
fn window_ranges(len: usize, content: usize, stride: usize) -> Vec<Range<usize>> {
    debug_assert!(stride < content);
    let step = content - stride;
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let stop = (start + content).min(len);
        out.push(start..stop);
        if stop == len {
            return out;
        }
        start += step;
    }
}

impl BertTokenizer {
    fn new(mut inner: Tokenizer, pad_id: u32) -> Self {
        inner.with_padding(None);
        BertTokenizer {
            inner,
            max_length: DEFAULT_MAX_LENGTH,
            policy: LengthPolicy::Error,
            allow_empty: false,
            pad_id,
        }
    }

    /// Loads a Hugging Face `tokenizer.json`.
    ///
    /// Padding and truncation stored in the file (all-MiniLM-L6-v2 ships `Fixed(128)` padding
    /// and truncation at 128) are switched off; the pad id is kept for [`Batch`] padding
    /// (falling back to the id of `[PAD]`, then of `<pad>`, then 0). The special tokens are
    /// the file's post-processor's: `[CLS] a [SEP]` for BERT, `<s> a </s>` (pad id 1) for
    /// MPNet. Length is then governed by
    /// [`BertTokenizer::with_max_length`] and [`BertTokenizer::with_length_policy`].
    ///
    /// # Errors
    ///
    /// [`TokenizerError::Load`] when the file cannot be read or is not a tokenizer.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let load_err = |message: String| TokenizerError::Load {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| load_err(e.to_string()))?;
        // tokenizers 0.23 panics (`expect("Helper")` in its decoder's deserializer) on any
        // JSON error inside the `decoder` object: a truncated download, a byte that is not
        // UTF-8, an escape naming no code point. Only JSON whose every string decodes reaches it.
        serde_json::from_slice::<StrictJson>(&bytes)
            .map_err(|e| load_err(format!("not valid JSON: {e}")))?;
        let mut inner = Tokenizer::from_bytes(&bytes).map_err(|e| load_err(e.to_string()))?;
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .or_else(|| inner.token_to_id("<pad>"))
            .unwrap_or(0);
        inner
            .with_truncation(None)
            .map_err(|e| load_err(e.to_string()))?;
        Ok(Self::new(inner, pad_id))
    }

    /// Builds the BERT WordPiece pipeline from a `vocab.txt` (one token per line, id = line
    /// number), as `transformers.BertTokenizerFast` does: `BertNormalizer` (clean text, spaces
    /// around CJK characters, lower-casing and accent stripping when `lowercase`),
    /// `BertPreTokenizer`, WordPiece with `##` continuations, `[UNK]` and at most 100
    /// characters per word, `[CLS] a [SEP] (b [SEP])` post-processing, and the special tokens
    /// `[PAD] [UNK] [CLS] [SEP] [MASK]` (those in the vocabulary) recognised in the text.
    ///
    /// For all-MiniLM-L6-v2 (`lowercase = true`) this gives the same encodings as its
    /// `tokenizer.json`.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::Load`] when the file cannot be read or lacks `[CLS]`, `[SEP]` or
    /// `[UNK]`.
    pub fn from_vocab(path: impl AsRef<Path>, lowercase: bool) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let load_err = |message: String| TokenizerError::Load {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| load_err(e.to_string()))?;
        let vocab = WordPiece::read_bytes(&bytes).map_err(|e| load_err(e.to_string()))?;
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| load_err(format!("vocabulary has no {t} token")))
        };
        let cls = id("[CLS]")?;
        let sep = id("[SEP]")?;
        id("[UNK]")?;
        let pad_id = vocab.get("[PAD]").copied().unwrap_or(0);
        let specials: Vec<AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .into_iter()
            .filter(|t| vocab.contains_key(*t))
            .map(|t| AddedToken::from(t, true))
            .collect();
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(100)
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        let mut inner = Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::new(
                true,
                true,
                Some(lowercase),
                lowercase,
            )))
            .map_err(|e| load_err(e.to_string()))?;
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        inner.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        inner.with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
        inner
            .add_special_tokens(specials)
            .map_err(|e| load_err(e.to_string()))?;
        Ok(Self::new(inner, pad_id))
    }

    /// Sets the maximum number of tokens of an encoding, special tokens included (default
    /// 512, BERT's `max_position_embeddings`; take it from the model config). The
    /// [`LengthPolicy`] says what happens to longer texts.
    #[must_use]
    pub fn with_max_length(mut self, max: usize) -> Self {
        self.max_length = max;
        self
    }

    /// Sets what happens to texts longer than [`BertTokenizer::max_length`] (default
    /// [`LengthPolicy::Error`]). A policy that cannot work with the maximum length is
    /// reported by the encode methods as [`TokenizerError::InvalidPolicy`].
    #[must_use]
    pub fn with_length_policy(mut self, policy: LengthPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether a text that gives no token (empty, whitespace-only, or only characters the
    /// normalizer drops) is accepted. `false` (default): [`TokenizerError::EmptyText`].
    /// `true`: it is encoded as `[CLS] [SEP]`, like Hugging Face.
    #[must_use]
    pub fn allow_empty(mut self, yes: bool) -> Self {
        self.allow_empty = yes;
        self
    }

    /// Maximum tokens per encoding, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The current length policy.
    pub fn length_policy(&self) -> LengthPolicy {
        self.policy
    }

    /// Id used to pad batches (`[PAD]`, 0, for BERT; `<pad>`, 1, for MPNet).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of a token string (`"[CLS]"`, `"hello"`, `"##s"`), if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token string of an id, if the id is in the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The wrapped Hugging Face tokenizer (padding and truncation off).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Encodes one text as `[CLS] text [SEP]`.
    ///
    /// Returns one encoding, or several with [`LengthPolicy::Window`] when the text is too
    /// long. Errors use index 0.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::EmptyText`], [`TokenizerError::TooLong`] or
    /// [`TokenizerError::InvalidPolicy`] as set by [`BertTokenizer::allow_empty`] and the
    /// [`LengthPolicy`]; [`TokenizerError::Encode`] if the underlying tokenizer fails.
    pub fn encode(&self, text: &str) -> Result<Vec<Encoding>, TokenizerError> {
        self.check_policy(false)?;
        self.encode_one(0, text, None)
    }

    /// Encodes a pair as `[CLS] a [SEP] b [SEP]`, type ids 0 up to the first `[SEP]` and 1
    /// after it.
    ///
    /// With [`LengthPolicy::Truncate`] the longer text loses tokens first; with
    /// [`LengthPolicy::Window`] only `b` is windowed and every window repeats `a` in full
    /// (see [`LengthPolicy::Window`]). Errors use index 0.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::EmptyText`], [`TokenizerError::TooLong`] or
    /// [`TokenizerError::InvalidPolicy`] as set by [`BertTokenizer::allow_empty`] and the
    /// [`LengthPolicy`]; [`TokenizerError::Encode`] if the underlying tokenizer fails.
    pub fn encode_pair(&self, a: &str, b: &str) -> Result<Vec<Encoding>, TokenizerError> {
        self.check_policy(true)?;
        self.encode_one(0, a, Some(b))
    }

    /// Encodes several texts (in parallel, following `TOKENIZERS_PARALLELISM`) into one
    /// padded [`Batch`]. Windows of a text become consecutive rows. The first failing text
    /// (lowest index) gives the error, with its index.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::EmptyBatch`] for no text; otherwise as [`BertTokenizer::encode`].
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Batch, TokenizerError> {
        self.check_policy(false)?;
        let inputs: Vec<(usize, &str, Option<&str>)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (i, *t, None))
            .collect();
        self.batch(inputs)
    }

    /// Encodes several pairs into one padded [`Batch`], like [`BertTokenizer::encode_pair`]
    /// for each and [`BertTokenizer::encode_batch`] for the batch.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::EmptyBatch`] for no pair; otherwise as [`BertTokenizer::encode_pair`].
    pub fn encode_pair_batch(&self, pairs: &[(&str, &str)]) -> Result<Batch, TokenizerError> {
        self.check_policy(true)?;
        let inputs: Vec<(usize, &str, Option<&str>)> = pairs
            .iter()
            .enumerate()
            .map(|(i, (a, b))| (i, *a, Some(*b)))
            .collect();
        self.batch(inputs)
    }

    fn batch(&self, inputs: Vec<(usize, &str, Option<&str>)>) -> Result<Batch, TokenizerError> {
        if inputs.is_empty() {
            return Err(TokenizerError::EmptyBatch);
        }
        let results: Vec<Result<Vec<Encoding>, TokenizerError>> = inputs
            .into_maybe_par_iter()
            .map(|(i, a, b)| self.encode_one(i, a, b))
            .collect();
        let mut rows = Vec::with_capacity(results.len());
        for r in results {
            rows.extend(r?);
        }
        Ok(Batch::pad(rows, self.pad_id))
    }

    /// Number of special tokens the post-processor adds.
    fn n_special(&self, pair: bool) -> usize {
        self.inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(pair))
    }

    /// Checks that the policy can work with `max_length`, whatever the text.
    fn check_policy(&self, pair: bool) -> Result<(), TokenizerError> {
        let n_seq = if pair { 2 } else { 1 };
        let room = self.max_length.saturating_sub(self.n_special(pair));
        let invalid = |message: String| TokenizerError::InvalidPolicy {
            policy: self.policy,
            max_length: self.max_length,
            message,
        };
        match self.policy {
            LengthPolicy::Error => Ok(()),
            LengthPolicy::Truncate if room < n_seq => Err(invalid(format!(
                "truncating leaves room for {room} text tokens, fewer than the {n_seq} needed"
            ))),
            LengthPolicy::Truncate => Ok(()),
            LengthPolicy::Window { stride } => {
                // A pair needs at least one token of the first text in each window.
                let content = room.saturating_sub(n_seq - 1);
                if stride >= content {
                    Err(invalid(format!(
                        "stride {stride} must be smaller than the {content} text tokens a window can hold"
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Full encoding (specials included) and its text ranges.
    fn parts(&self, index: usize, a: &str, b: Option<&str>) -> Result<Parts, TokenizerError> {
        let full = match b {
            None => self.inner.encode(a, true),
            Some(b) => self.inner.encode((a, b), true),
        }
        .map_err(|e| TokenizerError::Encode {
            index,
            message: e.to_string(),
        })?;
        let seq_ids = full.get_sequence_ids();
        let ra = sequence_range(&seq_ids, 0);
        let rb = b.map(|_| sequence_range(&seq_ids, 1));
        Ok(Parts { full, a: ra, b: rb })
    }

    fn post_process(
        &self,
        index: usize,
        a: tokenizers::Encoding,
        b: Option<tokenizers::Encoding>,
    ) -> Result<tokenizers::Encoding, TokenizerError> {
        self.inner
            .post_process(a, b, true)
            .map_err(|e| TokenizerError::Encode {
                index,
                message: e.to_string(),
            })
    }

    fn encode_one(
        &self,
        index: usize,
        a: &str,
        b: Option<&str>,
    ) -> Result<Vec<Encoding>, TokenizerError> {
        let parts = self.parts(index, a, b)?;
        if !self.allow_empty && (parts.len_a() == 0 || (b.is_some() && parts.len_b() == 0)) {
            return Err(TokenizerError::EmptyText { index });
        }
        let total = parts.full.len();
        if total <= self.max_length {
            return Ok(vec![Encoding::from_hf(&parts.full, index)]);
        }
        let too_long = TokenizerError::TooLong {
            index,
            tokens: total,
            max: self.max_length,
        };
        let room = self.max_length.saturating_sub(parts.n_special());
        match self.policy {
            LengthPolicy::Error => Err(too_long),
            LengthPolicy::Truncate => {
                let ea = slice(&parts.full, parts.a.clone());
                let eb = parts.b.clone().map(|r| slice(&parts.full, r));
                let params = TruncationParams {
                    max_length: room,
                    strategy: TruncationStrategy::LongestFirst,
                    stride: 0,
                    direction: TruncationDirection::Right,
                };
                let (mut ea, mut eb) =
                    truncate_encodings(ea, eb, &params).map_err(|e| TokenizerError::Encode {
                        index,
                        message: e.to_string(),
                    })?;
                ea.take_overflowing();
                if let Some(eb) = eb.as_mut() {
                    eb.take_overflowing();
                }
                let out = self.post_process(index, ea, eb)?;
                let mut enc = Encoding::from_hf(&out, index);
                enc.truncated = true;
                Ok(vec![enc])
            }
            LengthPolicy::Window { stride } => {
                let (windowed, fixed) = match &parts.b {
                    None => (parts.a.clone(), None),
                    Some(rb) => (rb.clone(), Some(parts.a.clone())),
                };
                let content = room.saturating_sub(fixed.as_ref().map_or(0, Range::len));
                if stride >= content {
                    return Err(too_long);
                }
                let ranges = window_ranges(windowed.len(), content, stride);
                let num_windows = ranges.len();
                ranges
                    .into_iter()
                    .enumerate()
                    .map(|(w, r)| {
                        let piece = slice(
                            &parts.full,
                            windowed.start + r.start..windowed.start + r.end,
                        );
                        let out = match &fixed {
                            None => self.post_process(index, piece, None)?,
                            Some(ra) => self.post_process(
                                index,
                                slice(&parts.full, ra.clone()),
                                Some(piece),
                            )?,
                        };
                        let mut enc = Encoding::from_hf(&out, index);
                        enc.window = w;
                        enc.num_windows = num_windows;
                        enc.token_start = r.start;
                        Ok(enc)
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_ranges_follow_hf_overflow() {
        assert_eq!(window_ranges(0, 4, 1), vec![0..0]);
        assert_eq!(window_ranges(4, 4, 1), vec![0..4]);
        assert_eq!(window_ranges(5, 4, 1), vec![0..4, 3..5]);
        assert_eq!(window_ranges(10, 4, 2), vec![0..4, 2..6, 4..8, 6..10]);
        assert_eq!(window_ranges(7, 3, 0), vec![0..3, 3..6, 6..7]);
    }

    #[test]
    fn sequence_range_finds_contiguous_run() {
        let s = [None, Some(0), Some(0), None, Some(1), None];
        assert_eq!(sequence_range(&s, 0), 1..3);
        assert_eq!(sequence_range(&s, 1), 4..5);
        assert_eq!(sequence_range(&[None, None], 0), 0..0);
    }

    #[test]
    fn tokenizer_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<BertTokenizer>();
        check::<Batch>();
        check::<Encoding>();
        check::<TokenizerError>();
    }
}
