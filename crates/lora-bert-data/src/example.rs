//! The examples datasets are made of.

use serde::{Deserialize, Serialize};

/// A sentence of words, each with one tag (NER, POS, ...): token classification.
///
/// `tokens` and `tags` always have the same length; readers refuse lines that break this.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaggedSentence {
    /// The words, as the corpus splits them.
    pub tokens: Vec<String>,
    /// One tag per word.
    pub tags: Vec<String>,
}

impl TaggedSentence {
    /// Number of words.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// `true` when the sentence has no word.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The words joined by single spaces, and the byte range of each word in that text.
    ///
    /// ```
    /// use lora_bert_data::TaggedSentence;
    ///
    /// let s = TaggedSentence {
    ///     tokens: vec!["New".into(), "York".into()],
    ///     tags: vec!["B-LOC".into(), "I-LOC".into()],
    /// };
    /// let (text, spans) = s.text_and_spans();
    /// assert_eq!(text, "New York");
    /// assert_eq!(spans, [(0, 3), (4, 8)]);
    /// ```
    pub fn text_and_spans(&self) -> (String, Vec<(usize, usize)>) {
        join_words(&self.tokens)
    }
}

/// Words joined by single spaces, and the byte range of each word in that text: how every
/// word-level sequence (a [`TaggedSentence`], a teacher's input) becomes tokenizer input that
/// maps back to its words.
///
/// ```
/// let (text, spans) = lora_bert_data::join_words(&["Atlanta's", "mayor"]);
/// assert_eq!(text, "Atlanta's mayor");
/// assert_eq!(spans, [(0, 9), (10, 15)]);
/// ```
pub fn join_words<S: AsRef<str>>(words: &[S]) -> (String, Vec<(usize, usize)>) {
    let mut text = String::with_capacity(words.iter().map(|t| t.as_ref().len() + 1).sum());
    let mut spans = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        let start = text.len();
        text.push_str(word.as_ref());
        spans.push((start, text.len()));
    }
    (text, spans)
}

/// A text with one label: text classification.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabeledText {
    /// The text.
    pub text: String,
    /// Its label.
    pub label: String,
}

/// Two texts that belong together (a subject and its body, a headline and its first paragraph,
/// two neighbouring sentences): a positive pair for contrastive training, with the other pairs
/// of a batch as negatives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TextPair {
    /// The first text (the query side).
    pub anchor: String,
    /// The text that belongs with it.
    pub positive: String,
}
