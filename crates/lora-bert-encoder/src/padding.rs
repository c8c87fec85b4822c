//! Right padding of token rows into row-major `[rows, seq_len]` buffers: the one routine the
//! tokenizer's [`Batch`](crate::tokenizer::Batch), the data crate's collators and the teachers
//! pad with.
//!
//! ```
//! use lora_bert_encoder::padding::{attention_mask, pad_rows, pad_rows_to};
//!
//! let rows: [&[u32]; 2] = [&[101, 7592, 102], &[101, 102]];
//! let (ids, seq_len) = pad_rows(&rows, 0);
//! assert_eq!((ids, seq_len), (vec![101, 7592, 102, 101, 102, 0], 3));
//! assert_eq!(attention_mask(&[3, 2], seq_len), [1, 1, 1, 1, 1, 0]);
//! assert_eq!(pad_rows_to(&[&[-100_i64, 3][..]], -100, 3), [-100, 3, -100]);
//! ```

/// Pads `rows` on the right with `pad` to the longest row: the row-major `[rows.len(),
/// seq_len]` buffer and `seq_len`.
///
/// Works for ids (`pad` = the tokenizer's pad id), type ids (0) and token labels (`-100`, the
/// index a cross-entropy loss ignores).
pub fn pad_rows<T: Copy>(rows: &[&[T]], pad: T) -> (Vec<T>, usize) {
    let seq_len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    (pad_rows_to(rows, pad, seq_len), seq_len)
}

/// Pads `rows` on the right with `pad` to `seq_len` (row-major `[rows.len(), seq_len]`), for
/// buffers that must line up with another padded buffer.
///
/// # Panics
///
/// If a row is longer than `seq_len`.
pub fn pad_rows_to<T: Copy>(rows: &[&[T]], pad: T, seq_len: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(rows.len() * seq_len);
    for row in rows {
        assert!(
            row.len() <= seq_len,
            "row of {} longer than seq_len {seq_len}",
            row.len()
        );
        out.extend_from_slice(row);
        out.extend(std::iter::repeat_n(pad, seq_len - row.len()));
    }
    out
}

/// Attention mask for rows of the given lengths padded to `seq_len`: 1 for tokens, 0 for
/// padding, row-major.
///
/// # Panics
///
/// If a length is larger than `seq_len`.
pub fn attention_mask(lengths: &[usize], seq_len: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(lengths.len() * seq_len);
    for &len in lengths {
        assert!(len <= seq_len, "length {len} larger than seq_len {seq_len}");
        out.extend(std::iter::repeat_n(1, len));
        out.extend(std::iter::repeat_n(0, seq_len - len));
    }
    out
}

/// Model inputs padded together: ids, type ids and attention mask, row-major `[rows, seq_len]`,
/// padded on the right.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputBatch {
    /// Token ids, the pad id in padding.
    pub input_ids: Vec<u32>,
    /// Token type ids, 0 in padding.
    pub type_ids: Vec<u32>,
    /// 1 for a token, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Tokens per row: the longest row.
    pub seq_len: usize,
}

impl InputBatch {
    /// Pads rows given as `(ids, type ids)` pairs of equal length.
    ///
    /// # Panics
    ///
    /// If a row's ids and type ids differ in length.
    pub fn new<'a>(rows: impl IntoIterator<Item = (&'a [u32], &'a [u32])>, pad_id: u32) -> Self {
        let (ids, types): (Vec<&[u32]>, Vec<&[u32]>) = rows.into_iter().unzip();
        let lengths: Vec<usize> = ids.iter().map(|r| r.len()).collect();
        for (i, t) in lengths.iter().zip(&types) {
            assert_eq!(*i, t.len(), "a row's ids and type ids differ in length");
        }
        let (input_ids, seq_len) = pad_rows(&ids, pad_id);
        Self {
            type_ids: pad_rows_to(&types, 0, seq_len),
            attention_mask: attention_mask(&lengths, seq_len),
            input_ids,
            seq_len,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.input_ids.len().checked_div(self.seq_len).unwrap_or(0)
    }

    /// `[rows, seq_len]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.rows(), self.seq_len]
    }

    /// The batch as borrowed rows, for an [`Encoder`](crate::states::Encoder).
    pub fn view(&self) -> crate::states::PaddedRows<'_> {
        crate::states::PaddedRows {
            ids: &self.input_ids,
            type_ids: &self.type_ids,
            mask: &self.attention_mask,
            shape: self.shape(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_ids_line_up() {
        let a: (&[u32], &[u32]) = (&[101, 7, 102], &[0, 0, 0]);
        let b: (&[u32], &[u32]) = (&[101, 102], &[0, 1]);
        let p = InputBatch::new([a, b], 9);
        assert_eq!(p.input_ids, [101, 7, 102, 101, 102, 9]);
        assert_eq!(p.type_ids, [0, 0, 0, 0, 1, 0]);
        assert_eq!(p.attention_mask, [1, 1, 1, 1, 1, 0]);
        assert_eq!(p.shape(), [2, 3]);
        assert_eq!(InputBatch::new([], 0).shape(), [0, 0]);
    }
}
