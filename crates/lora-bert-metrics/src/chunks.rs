//! Entity spans in seqeval's default mode: the conlleval-compatible chunker of
//! `seqeval.metrics.sequence_labeling.get_entities`, reproduced rule for rule.
//!
//! A tag is `PREFIX-TYPE` (`B-PER`), a bare prefix (`B`: type `_`), or `O`. Sentences are
//! joined with an `O` between them, so token positions are offsets into that joined sequence
//! and no entity crosses a sentence boundary. The chunker is lenient: `I-` without `B-` starts
//! an entity, a change of type ends one and starts another, `E-` and `S-` close entities.

use crate::span::Span;

/// Splits a tag into its prefix character and type, as seqeval does without `suffix`.
fn split(tag: &str) -> (char, &str) {
    let mut chars = tag.chars();
    let prefix = chars.next().unwrap_or('O');
    let rest = chars.as_str();
    // seqeval: chunk[1:].split('-', maxsplit=1)[-1] or '_'
    let kind = match rest.split_once('-') {
        Some((_, after)) => after,
        None => rest,
    };
    (prefix, if kind.is_empty() { "_" } else { kind })
}

fn end_of_chunk(prev_tag: char, tag: char, prev_type: &str, kind: &str) -> bool {
    matches!(prev_tag, 'E' | 'S')
        || (matches!(prev_tag, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev_tag != 'O' && prev_tag != '.' && prev_type != kind)
}

fn start_of_chunk(prev_tag: char, tag: char, prev_type: &str, kind: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev_tag, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_type != kind)
}

/// The entities of `sentences`, as `seqeval.metrics.sequence_labeling.get_entities` returns
/// them for a list of sentences (whose ends are inclusive: here they are one past the last
/// token, as every [`Span`]).
pub fn chunks<S: AsRef<str>>(sentences: &[Vec<S>]) -> Vec<Span> {
    let joined: Vec<&str> = sentences
        .iter()
        .flat_map(|s| s.iter().map(AsRef::as_ref).chain(std::iter::once("O")))
        .collect();
    chunks_of(&joined)
}

/// The entities of one flat tag sequence (`get_entities` on a flat list).
pub fn chunks_of<S: AsRef<str>>(tags: &[S]) -> Vec<Span> {
    let mut out = Vec::new();
    let (mut prev_tag, mut prev_type) = ('O', String::new());
    let mut begin = 0;
    for (i, tag) in tags
        .iter()
        .map(AsRef::as_ref)
        .chain(std::iter::once("O"))
        .enumerate()
    {
        let (tag, kind) = split(tag);
        if end_of_chunk(prev_tag, tag, &prev_type, kind) {
            out.push(Span::new(prev_type.clone(), begin, i));
        }
        if start_of_chunk(prev_tag, tag, &prev_type, kind) {
            begin = i;
        }
        prev_tag = tag;
        prev_type = kind.to_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A span written as seqeval's `get_entities` writes it: the last token inclusive.
    fn c(kind: &str, start: usize, last: usize) -> Span {
        Span::new(kind, start, last + 1)
    }

    #[test]
    fn seqeval_docstring_example() {
        // get_entities(['B-PER', 'I-PER', 'O', 'B-LOC']) == [('PER', 0, 1), ('LOC', 3, 3)]
        assert_eq!(
            chunks_of(&["B-PER", "I-PER", "O", "B-LOC"]),
            [c("PER", 0, 1), c("LOC", 3, 3)]
        );
    }

    #[test]
    fn lenient_rules() {
        assert_eq!(chunks_of(&["I-PER", "I-PER"]), [c("PER", 0, 1)]);
        assert_eq!(
            chunks_of(&["B-PER", "I-LOC"]),
            [c("PER", 0, 0), c("LOC", 1, 1)]
        );
        assert_eq!(
            chunks_of(&["S-PER", "E-PER"]),
            [c("PER", 0, 0), c("PER", 1, 1)]
        );
        let s: Vec<Vec<&str>> = vec![vec!["I-PER"], vec!["I-PER"]];
        assert_eq!(chunks(&s), [c("PER", 0, 0), c("PER", 2, 2)]);
    }
}
