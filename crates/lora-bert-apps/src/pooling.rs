//! Pooling token states into one vector per sequence ([`Pooling`]) or one per word
//! ([`word_pool`], for word-level distillation between models with different tokenizers).
//!
//! Everything is a tensor operation, so gradients flow back to the token states.

use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_bert_data::token::TokenExample;
use lora_bert_encoder::mean_pool;
use serde::{Deserialize, Serialize};

use crate::{AppError, Result};

/// How a sequence's token states `[B, S, H]` become one vector `[B, H]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The state of the first token (`[CLS]`), as it is before BERT's pooler.
    Cls,
    /// The mean over real tokens (attention mask 1, `[CLS]` and `[SEP]` included, padding
    /// excluded), as sentence-transformers pools. A row with no real token pools to zeros.
    #[default]
    Mean,
}

impl Pooling {
    /// Pools `hidden` `[B, S, H]` under `attention_mask` `[B, S]` (1 real, 0 padding) into
    /// `[B, H]`.
    ///
    /// ```
    /// use burn::tensor::{Int, Tensor, TensorData};
    /// use lora_bert_encoder::device;
    /// use lora_bert_apps::pooling::Pooling;
    ///
    /// let cpu = device::device(device::Backend::default_cpu()?)?;
    /// let hidden = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 3.0, 8.0], [1, 3, 1]), &cpu);
    /// let mask = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 1, 0], [1, 3]), &cpu);
    /// let mean = Pooling::Mean.pool(hidden.clone(), mask.clone())?;
    /// assert_eq!(mean.into_data().try_to_vec::<f32>()?, [2.0]);
    /// let cls = Pooling::Cls.pool(hidden, mask)?;
    /// assert_eq!(cls.into_data().try_to_vec::<f32>()?, [1.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`AppError::Shape`] when the mask is not `[B, S]` or the sequence is empty.
    pub fn pool(self, hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Result<Tensor<2>> {
        let [batch, seq_len, width] = hidden.dims();
        let mask_dims = attention_mask.dims();
        if mask_dims != [batch, seq_len] || seq_len == 0 {
            return Err(AppError::Shape {
                what: "attention mask vs hidden states [B, S, H] (pooling)".into(),
                expected: vec![batch, seq_len],
                found: mask_dims.to_vec(),
            });
        }
        Ok(match self {
            Pooling::Cls => hidden.narrow(1, 0, 1).reshape([batch, width]),
            Pooling::Mean => mean_pool(hidden, attention_mask),
        })
    }
}

/// How the pieces of a word become one word vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordPooling {
    /// The state of the word's first piece in the row.
    First,
    /// The mean of the states of the word's pieces in the row.
    #[default]
    Mean,
}

/// Where each word of each row of a padded batch lies: the host side of [`word_pool`].
///
/// Built from per-row token→word maps ([`TokenExample::token_word`]: one entry per token,
/// `None` for special tokens; positions past a row's map are padding). Words are numbered
/// **relative to the row's first word** ([`first_word`](Self::first_word)): column `j` of row
/// `b` is sentence word `first_word[b] + j`. Windows of long sentences thus start at column 0;
/// a caller aligning with another model's words (a teacher's cache) takes the same sentence
/// words `first_word[b] ..` from it. A row has `num_words[b] = last - first + 1` columns;
/// columns past it, and words of that range with no token in the row, are masked out.
///
/// In a window that cuts a word, only the word's pieces in the window are pooled
/// ([`WordPooling::First`] then takes the first piece *in the window*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordMap {
    seq_len: usize,
    width: usize,
    first_word: Vec<usize>,
    num_words: Vec<usize>,
    /// Per row, per column: token positions of the word, ascending (empty: no token).
    pieces: Vec<Vec<Vec<usize>>>,
}

impl WordMap {
    /// The map of rows `rows` (each a token→word map) padded to `seq_len` tokens.
    ///
    /// # Errors
    ///
    /// [`AppError::InvalidArgument`] for no row, `seq_len` 0, or a row whose words span more
    /// than `2 × seq_len` columns (a broken map); [`AppError::Shape`] for a row longer than
    /// `seq_len`.
    pub fn new<R: AsRef<[Option<usize>]>>(rows: &[R], seq_len: usize) -> Result<Self> {
        if rows.is_empty() || seq_len == 0 {
            return Err(AppError::InvalidArgument {
                what: "word map",
                message: format!("{} rows of {seq_len} tokens", rows.len()),
            });
        }
        let mut first_word = Vec::with_capacity(rows.len());
        let mut num_words = Vec::with_capacity(rows.len());
        let mut pieces = Vec::with_capacity(rows.len());
        for (b, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            if row.len() > seq_len {
                return Err(AppError::Shape {
                    what: format!("token→word map of row {b} vs the padded sequence length"),
                    expected: vec![seq_len],
                    found: vec![row.len()],
                });
            }
            let words = row.iter().flatten();
            let (first, last) = match (words.clone().min(), words.max()) {
                (Some(&f), Some(&l)) => (f, l),
                _ => (0, 0),
            };
            let n = if row.iter().any(Option::is_some) {
                last - first + 1
            } else {
                0
            };
            // Every word of a row has a token except the rare word that tokenizes to nothing,
            // so a span far wider than the row is a broken map, not a sentence.
            if n > 2 * seq_len {
                return Err(AppError::InvalidArgument {
                    what: "word map",
                    message: format!(
                        "row {b} spans words {first}..={last} with {} tokens: not a \
                         token→word map of one sequence",
                        row.len()
                    ),
                });
            }
            let mut cols = vec![Vec::new(); n];
            for (s, w) in row.iter().enumerate() {
                if let Some(w) = w {
                    cols[w - first].push(s);
                }
            }
            first_word.push(first);
            num_words.push(n);
            pieces.push(cols);
        }
        let width = num_words.iter().copied().max().unwrap_or(0).max(1);
        Ok(Self {
            seq_len,
            width,
            first_word,
            num_words,
            pieces,
        })
    }

    /// The map of token examples (their [`TokenExample::token_word`]) padded to `seq_len`, as
    /// [`TokenBatch::collate`](lora_bert_data::token::TokenBatch::collate) pads them.
    ///
    /// # Errors
    ///
    /// As [`WordMap::new`].
    pub fn from_examples(examples: &[&TokenExample], seq_len: usize) -> Result<Self> {
        let rows: Vec<&[Option<usize>]> =
            examples.iter().map(|e| e.token_word.as_slice()).collect();
        Self::new(&rows, seq_len)
    }

    /// `[B, W]`: rows, and word columns (the most words of a row, at least 1).
    pub fn shape(&self) -> [usize; 2] {
        [self.first_word.len(), self.width]
    }

    /// The padded sequence length `S` the map was built for.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Per row, the sentence word of column 0.
    pub fn first_word(&self) -> &[usize] {
        &self.first_word
    }

    /// Per row, the number of word columns it spans (`last - first + 1`, 0 for a row without
    /// words).
    pub fn num_words(&self) -> &[usize] {
        &self.num_words
    }

    /// Row-major `[B, W]` mask: 1 where the column is a word with at least one token in the
    /// row.
    pub fn mask_values(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.first_word.len() * self.width);
        for cols in &self.pieces {
            for j in 0..self.width {
                out.push(i64::from(cols.get(j).is_some_and(|p| !p.is_empty())));
            }
        }
        out
    }

    /// The `[B, W]` word mask on `device`.
    pub fn mask(&self, device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(self.mask_values(), self.shape()), device)
    }

    /// Row-major `[B, W, S]` pooling weights: row `(b, w)` averages (or picks the first of) the
    /// word's pieces; all zero for masked columns.
    pub fn weights(&self, mode: WordPooling) -> Vec<f32> {
        let (w_cols, s) = (self.width, self.seq_len);
        let mut out = vec![0.0f32; self.first_word.len() * w_cols * s];
        for (b, cols) in self.pieces.iter().enumerate() {
            for (j, positions) in cols.iter().enumerate() {
                let base = (b * w_cols + j) * s;
                match (mode, positions.first()) {
                    (_, None) => {}
                    (WordPooling::First, Some(&p)) => out[base + p] = 1.0,
                    (WordPooling::Mean, Some(_)) => {
                        let share = 1.0 / positions.len() as f32;
                        for &p in positions {
                            out[base + p] = share;
                        }
                    }
                }
            }
        }
        out
    }
}

/// Word states and their mask, as [`word_pool`] returns them.
#[derive(Debug, Clone)]
pub struct PooledWords {
    /// `[B, W, H]`; zeros in masked columns.
    pub states: Tensor<3>,
    /// `[B, W]`: 1 for a word, 0 for padding.
    pub mask: Tensor<2, Int>,
}

/// Pools token states `[B, S, H]` into word states `[B, W, H]` following `map`.
///
/// Computed as one batched matrix product with the host-built `[B, W, S]` weights of
/// [`WordMap::weights`], so gradients reach every piece that was pooled.
///
/// ```
/// use burn::tensor::{Tensor, TensorData};
/// use lora_bert_encoder::device;
/// use lora_bert_apps::pooling::{WordMap, WordPooling, word_pool};
///
/// let cpu = device::device(device::Backend::default_cpu()?)?;
/// // [CLS] new york ##er [SEP]: word 0 = "new", word 1 = "york ##er".
/// let map = WordMap::new(&[vec![None, Some(0), Some(1), Some(1), None]], 5)?;
/// let tokens = Tensor::<3>::from_data(TensorData::new(vec![9.0f32, 1.0, 2.0, 4.0, 9.0], [1, 5, 1]), &cpu);
/// let words = word_pool(tokens, &map, WordPooling::Mean)?;
/// assert_eq!(words.states.into_data().try_to_vec::<f32>()?, [1.0, 3.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`AppError::Shape`] when `states` is not `[B, S, H]` for the map's `B` and `S`.
pub fn word_pool(states: Tensor<3>, map: &WordMap, mode: WordPooling) -> Result<PooledWords> {
    let [batch, seq_len, _] = states.dims();
    let [rows, width] = map.shape();
    if [batch, seq_len] != [rows, map.seq_len] {
        return Err(AppError::Shape {
            what: "token states [B, S, H] vs word map [B, S] (word pooling)".into(),
            expected: vec![rows, map.seq_len],
            found: vec![batch, seq_len],
        });
    }
    let device = states.device();
    let weights = Tensor::<3>::from_data(
        TensorData::new(map.weights(mode), [rows, width, seq_len]),
        &device,
    );
    Ok(PooledWords {
        states: weights.matmul(states),
        mask: map.mask(&device),
    })
}
