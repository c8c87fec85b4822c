//! Teachers for word-level knowledge distillation.
//!
//! The student and the teacher may use **different tokenizers** (a BERT-uncased student, an
//! MPNet teacher), so a teacher does not give per-token states: it gives one vector per
//! **word** of the dataset's sentences ([`TaggedSentence::tokens`], or any word list), and the
//! student's word states (pooled the same way from its own pieces) are matched to them by word
//! index.
//!
//! - [`Teacher`]: the interface, host values ([`WordStates`]) so that the teacher runs without
//!   autodiff and the trainer turns them into a tensor on its own device.
//! - [`EncoderTeacher`]: any encoder the encoder crate loads ([`BertModel`] +
//!   [`BertTokenizer`]), pooling each word's pieces.
//! - [`TeacherCache`]: teacher outputs computed once per corpus and kept on disk, itself a
//!   [`Teacher`] that looks sentences up by content.
//!
//! A word that gives no token to the teacher's tokenizer (`"\u{200b}"`, a lone combining
//! accent; see [`lora_bert_data::align`]) has a zero vector and `present == false`, so that the
//! loss skips it.
//!
//! [`TaggedSentence::tokens`]: lora_bert_data::TaggedSentence::tokens
//! [`BertModel`]: lora_bert_encoder::BertModel
//! [`BertTokenizer`]: lora_bert_encoder::tokenizer::BertTokenizer

pub(crate) mod cache;
mod encoder;
mod tagger;

pub use crate::pooling::WordPooling;
pub use cache::{BuildProgress, CacheDtype, CacheOptions, TeacherCache};
pub use encoder::EncoderTeacher;
pub use tagger::{
    TAGGER_HEAD_GROUP, TAGGER_MANIFEST, TAGGER_REPORT, TAGGER_WEIGHTS, Tagger, TaggerConfig,
    TaggerData, TaggerManifest, TaggerRun, evaluate_tagger, load_tagger, save_tagger,
    tagger_logits, train_and_save_tagger, train_tagger,
};

use lora_bert_data::TaggedSentence;

use crate::{Result, TrainError};

/// A teacher's states for the words of one sentence: row-major `[num_words, hidden]` host
/// values, one row per word in sentence order.
#[derive(Debug, Clone, PartialEq)]
pub struct WordStates {
    /// Row-major `[num_words, hidden]` values.
    pub data: Vec<f32>,
    /// Number of words (rows).
    pub num_words: usize,
    /// Width of a row: the teacher's hidden size.
    pub hidden: usize,
    /// One entry per word: `false` for a word the teacher saw no token of (its row is zeros
    /// and a loss must skip it).
    pub present: Vec<bool>,
}

impl WordStates {
    /// Checks that `data` holds `num_words * hidden` values and `present` one entry per word.
    ///
    /// ```
    /// use lora_bert_train::teacher::WordStates;
    ///
    /// let s = WordStates::new(vec![1.0, 2.0, 0.0, 0.0], 2, 2, vec![true, false])?;
    /// assert_eq!(s.row(0), [1.0, 2.0]);
    /// assert!(WordStates::new(vec![1.0], 2, 2, vec![true, true]).is_err());
    /// # Ok::<(), lora_bert_train::TrainError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`TrainError::Shape`] when the lengths do not fit.
    pub fn new(
        data: Vec<f32>,
        num_words: usize,
        hidden: usize,
        present: Vec<bool>,
    ) -> Result<Self> {
        let states = WordStates {
            data,
            num_words,
            hidden,
            present,
        };
        states.check()?;
        Ok(states)
    }

    /// `num_words` zero rows, all marked absent.
    pub fn zeros(num_words: usize, hidden: usize) -> Self {
        WordStates {
            data: vec![0.0; num_words * hidden],
            num_words,
            hidden,
            present: vec![false; num_words],
        }
    }

    /// The row of word `w`.
    ///
    /// # Panics
    ///
    /// When `w >= num_words` (an index error, like slice indexing).
    pub fn row(&self, w: usize) -> &[f32] {
        &self.data[w * self.hidden..(w + 1) * self.hidden]
    }

    /// Number of words with `present == true`.
    pub fn num_present(&self) -> usize {
        self.present.iter().filter(|&&p| p).count()
    }

    /// Checks the lengths of `data` and `present` against `num_words` and `hidden`.
    ///
    /// # Errors
    ///
    /// [`TrainError::Shape`] naming the field that does not fit.
    pub fn check(&self) -> Result<()> {
        let expected = self.num_words.checked_mul(self.hidden);
        if expected != Some(self.data.len()) {
            return Err(TrainError::Shape {
                what: "word states data".into(),
                expected: vec![self.num_words, self.hidden],
                found: vec![self.data.len()],
            });
        }
        if self.present.len() != self.num_words {
            return Err(TrainError::Shape {
                what: "word states present mask".into(),
                expected: vec![self.num_words],
                found: vec![self.present.len()],
            });
        }
        Ok(())
    }
}

/// A source of per-word teacher states.
///
/// Implementations are deterministic: the states of a sentence depend on its words only, not
/// on the other sentences of the call (no padding leak, no batch effect beyond float noise).
pub trait Teacher: Send + Sync {
    /// Width of a word state.
    fn hidden_size(&self) -> usize;

    /// A short description of the teacher (model, layer, pooling), recorded in a
    /// [`TeacherCache`] so that a cache built with another teacher is not reused.
    fn description(&self) -> String;

    /// The states of the words of each sentence, in order: one [`WordStates`] per sentence
    /// with `num_words == sentence.len()` and `hidden == self.hidden_size()`.
    ///
    /// # Errors
    ///
    /// Implementation-specific (tokenizer, model input, a cache without the sentence).
    fn word_states(&self, sentences: &[&[String]]) -> Result<Vec<WordStates>>;
}

impl<T: Teacher + ?Sized> Teacher for &T {
    fn hidden_size(&self) -> usize {
        (**self).hidden_size()
    }
    fn description(&self) -> String {
        (**self).description()
    }
    fn word_states(&self, sentences: &[&[String]]) -> Result<Vec<WordStates>> {
        (**self).word_states(sentences)
    }
}

/// The word lists of tagged sentences, as [`Teacher::word_states`] and
/// [`TeacherCache::build`] take them.
///
/// ```
/// use lora_bert_data::TaggedSentence;
/// use lora_bert_train::teacher::words_of;
///
/// let s = TaggedSentence { tokens: vec!["Hi".into()], tags: vec!["O".into()] };
/// assert_eq!(words_of(std::slice::from_ref(&s)), [&["Hi".to_string()][..]]);
/// ```
pub fn words_of(sentences: &[TaggedSentence]) -> Vec<&[String]> {
    sentences.iter().map(|s| s.tokens.as_slice()).collect()
}

/// A short, human-readable preview of a sentence for error messages.
pub(crate) fn preview(words: &[String]) -> String {
    let text = words.join(" ");
    let mut out: String = text.chars().take(60).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    format!("{:?} ({} words)", out, words.len())
}
