//! Predictions over the windows of a long sentence stitched back into one prediction per word.
//!
//! A sentence longer than the tokenizer's `max_length` is encoded as overlapping windows
//! ([`LengthPolicy::Window`](lora_bert_encoder::tokenizer::LengthPolicy::Window),
//! [`encode_tagged`](crate::token::encode_tagged)); a word in an overlap is predicted once per
//! window. [`stitch`] keeps, for each word, the prediction of the window where the word has the
//! **most context**: the window in which the distance from the word to the nearest window edge
//! (the number of the window's tokens before its first piece, or after its last piece,
//! whichever is smaller) is largest, ties going to the earlier window (the rule of BERT's SQuAD
//! recipe, without its length bonus). Only windows that hold the word's first piece compete, so
//! [`Aggregation::First`] always reads the piece that was trained.

use crate::align::{Aggregation, LabelAligner, Preds, TokenPredictions, WordPrediction, pieces};
use crate::token::{TokenExample, content_positions, first_pieces};
use crate::{DataError, Result};

/// One prediction per word of a sentence from the predictions of each of its windows (in
/// window order, as [`encode_tagged`](crate::token::encode_tagged) returns them); `None` for a
/// word with no token (see the [`align`](crate::align) module docs). A sentence that was not
/// windowed is one window.
///
/// # Errors
///
/// [`DataError::Empty`] for no window; [`DataError::InvalidArgument`] when the examples are not
/// the windows `0..num_windows` of one sentence, in order; as
/// [`LabelAligner::word_predictions`] for predictions that do not fit their window.
pub fn stitch(
    aligner: &LabelAligner,
    windows: &[(&TokenExample, TokenPredictions<'_>)],
    aggregation: Aggregation,
) -> Result<Vec<Option<u32>>> {
    Ok(stitch_scored(aligner, windows, aggregation)?
        .into_iter()
        .map(|w| w.map(|w| w.label))
        .collect())
}

/// [`stitch`], with each word's score ([`WordPrediction`]).
///
/// # Errors
///
/// As [`stitch`].
pub fn stitch_scored(
    aligner: &LabelAligner,
    windows: &[(&TokenExample, TokenPredictions<'_>)],
    aggregation: Aggregation,
) -> Result<Vec<Option<WordPrediction>>> {
    let (head, _) = windows
        .first()
        .ok_or_else(|| DataError::Empty("windows to stitch".into()))?;
    for (k, (ex, _)) in windows.iter().enumerate() {
        if ex.sentence != head.sentence
            || ex.num_words != head.num_words
            || ex.window != k
            || ex.num_windows != windows.len()
        {
            return Err(DataError::InvalidArgument {
                what: "windows",
                message: format!(
                    "entry {k} is window {} of {} of sentence {}, expected window {k} of {} of sentence {}",
                    ex.window,
                    ex.num_windows,
                    ex.sentence,
                    windows.len(),
                    head.sentence
                ),
            });
        }
    }
    let num_words = head.num_words;
    let first = first_pieces(
        windows
            .iter()
            .map(|(ex, _)| (ex.token_word.as_slice(), ex.token_start)),
        num_words,
    );
    // Per word: (context, window, pieces in that window).
    let mut best: Vec<Option<(usize, usize, Vec<usize>)>> = vec![None; num_words];
    let mut preds = Vec::with_capacity(windows.len());
    for (k, (ex, p)) in windows.iter().enumerate() {
        preds.push(Preds::new(aligner, *p, ex.len(), aggregation)?);
        let global: Vec<Option<usize>> = content_positions(&ex.token_word, ex.token_start)
            .map(|(_, g)| g)
            .collect();
        let content = global.iter().flatten().count();
        for (w, pieces) in pieces(&ex.token_word, num_words)?.into_iter().enumerate() {
            let (Some(&t0), Some(&t1)) = (pieces.first(), pieces.last()) else {
                continue;
            };
            let (Some(g0), Some(g1)) = (global[t0], global[t1]) else {
                continue;
            };
            if first[w] != Some(g0) {
                continue;
            }
            let context = (g0 - ex.token_start).min(ex.token_start + content - 1 - g1);
            if best[w].as_ref().is_none_or(|b| context > b.0) {
                best[w] = Some((context, k, pieces));
            }
        }
    }
    Ok(best
        .into_iter()
        .map(|b| b.map(|(_, k, pieces)| aligner.aggregate(&preds[k], &pieces, aggregation)))
        .collect())
}
