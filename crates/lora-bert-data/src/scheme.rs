//! Tagging schemes: validation, entity spans, encoding and conversion.
//!
//! A tag is `O` or `P-TYPE`, where `P` is one of the scheme's prefixes and `TYPE` is a
//! non-empty entity type (it may itself contain `-`, as WNUT's `B-geo-loc`). Six schemes
//! ([`Scheme`]) are supported:
//!
//! | scheme | prefixes | rule |
//! |---|---|---|
//! | IOB1 | `I B` | entities are `I-`; `B-` only starts an entity right after one of the same type |
//! | IOB2 | `B I` | every entity starts with `B-`; `I-` continues a `B-`/`I-` of the same type |
//! | IOE1 | `I E` | entities are `I-`; `E-` only ends an entity right before one of the same type |
//! | IOE2 | `I E` | every entity ends with `E-`; `I-` is followed by `I-`/`E-` of the same type |
//! | IOBES | `B I E S` | `B- I-* E-` for longer entities, `S-` for single words |
//! | BILOU | `B I L U` | `B- I-* L-` for longer entities, `U-` for single words |
//!
//! [`validate`] checks those rules and names the first tag that breaks one; [`entities`]
//! reads the spans of a valid sequence (the spans seqeval's strict mode reads, see
//! [`entities`] for its one IOE1 miss); [`encode`] writes spans in a scheme, and
//! [`convert`] chains the two. Real data is not always valid: [`entities_lenient`] and
//! [`convert_lenient`] read any tag sequence the way seqeval's default (conlleval) mode does.

use std::fmt::Write as _;

use lora_bert_metrics::Mode;
pub use lora_bert_metrics::Span;
use lora_bert_metrics::chunks::chunks_of;

use crate::{DataError, Result, Scheme};

/// A parsed tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag<'a> {
    /// `O`.
    Outside,
    /// `P-TYPE`.
    Entity(char, &'a str),
}

impl<'a> Tag<'a> {
    /// `O`, or a one-character prefix among `BIESLU`, a `-` and a non-empty type without
    /// whitespace (the rule [`encode`] and [`LabelVocab::for_scheme`] apply to
    /// types, so every tag this accepts can be converted between schemes).
    ///
    /// [`LabelVocab::for_scheme`]: crate::LabelVocab::for_scheme
    pub(crate) fn parse(tag: &'a str) -> Option<Self> {
        if tag == "O" {
            return Some(Tag::Outside);
        }
        let mut chars = tag.chars();
        let prefix = chars.next()?;
        let kind = chars.as_str().strip_prefix('-')?;
        (matches!(prefix, 'B' | 'I' | 'E' | 'S' | 'L' | 'U')
            && !kind.is_empty()
            && !kind.chars().any(char::is_whitespace))
        .then_some(Tag::Entity(prefix, kind))
    }

    fn prefix(self) -> char {
        match self {
            Tag::Outside => 'O',
            Tag::Entity(p, _) => p,
        }
    }

    fn kind(self) -> Option<&'a str> {
        match self {
            Tag::Outside => None,
            Tag::Entity(_, k) => Some(k),
        }
    }
}

/// The prefixes a scheme allows besides `O`, in the order label vocabularies list them.
pub fn prefixes(scheme: Scheme) -> &'static [char] {
    match scheme {
        Scheme::Iob1 | Scheme::Iob2 => &['B', 'I'],
        Scheme::Ioe1 | Scheme::Ioe2 => &['I', 'E'],
        Scheme::Iobes => &['B', 'I', 'E', 'S'],
        Scheme::Bilou => &['B', 'I', 'L', 'U'],
    }
}

/// The single-word and last-word prefixes of IOBES (`S`, `E`) or BILOU (`U`, `L`).
fn single_last(scheme: Scheme) -> (char, char) {
    if scheme == Scheme::Bilou {
        ('U', 'L')
    } else {
        ('S', 'E')
    }
}

/// Checks that `tags` follow the rules of `scheme` (see the [module docs](self)).
///
/// # Errors
///
/// [`DataError::InvalidTag`] for the first tag (lowest position) that is malformed, uses a
/// prefix the scheme does not have, or breaks one of its rules; the reason says which.
///
/// ```
/// use lora_bert_data::{DataError, Scheme, scheme::validate};
///
/// validate(&["B-PER", "I-PER", "O"], Scheme::Iob2)?;
/// let err = validate(&["O", "I-PER"], Scheme::Iob2).unwrap_err();
/// assert!(matches!(err, DataError::InvalidTag { position: 1, .. }));
/// # Ok::<(), DataError>(())
/// ```
pub fn validate<S: AsRef<str>>(tags: &[S], scheme: Scheme) -> Result<()> {
    let allowed = prefixes(scheme);
    // `None` for a malformed tag or a prefix the scheme lacks.
    let parsed: Vec<Option<Tag<'_>>> = tags
        .iter()
        .map(|t| {
            Tag::parse(t.as_ref()).filter(|t| t.prefix() == 'O' || allowed.contains(&t.prefix()))
        })
        .collect();
    for (position, &tag) in parsed.iter().enumerate() {
        let invalid = |reason: String| DataError::InvalidTag {
            position,
            tag: tags[position].as_ref().to_owned(),
            scheme,
            reason,
        };
        let Some(tag) = tag else {
            return Err(invalid(match Tag::parse(tags[position].as_ref()) {
                Some(t) => {
                    let mut list = String::new();
                    for p in allowed {
                        let _ = write!(list, "{p}, ");
                    }
                    format!(
                        "prefix `{}` is not part of {scheme} (allowed: {list}O)",
                        t.prefix()
                    )
                }
                None => {
                    "expected `O` or a prefix, `-` and an entity type without whitespace".into()
                }
            }));
        };
        let Tag::Entity(p, kind) = tag else { continue };
        // Lower positions are valid; a malformed next tag is reported at its own position.
        let prev = match position.checked_sub(1) {
            Some(i) => parsed[i].unwrap_or(Tag::Outside),
            None => Tag::Outside,
        };
        let next = match parsed.get(position + 1) {
            Some(None) => None,
            Some(Some(t)) => Some(*t),
            None => Some(Tag::Outside),
        };
        let same = |t: Tag<'_>, ps: &[char]| t.kind() == Some(kind) && ps.contains(&t.prefix());
        let next_same = |ps: &[char]| next.is_none_or(|n| same(n, ps));
        let (single, last) = single_last(scheme);
        let broken = match (scheme, p) {
            (Scheme::Iob1, 'B') if !same(prev, &['B', 'I']) => Some(format!(
                "in IOB1, B-{kind} must directly follow an entity of the same type (use I-{kind} to start one)"
            )),
            (Scheme::Iob2, 'I') if !same(prev, &['B', 'I']) => {
                Some(format!("I-{kind} must follow B-{kind} or I-{kind}"))
            }
            (Scheme::Ioe1, 'E') if !next_same(&['I', 'E']) => Some(format!(
                "in IOE1, E-{kind} must be directly followed by an entity of the same type (use I-{kind} to end one)"
            )),
            (Scheme::Ioe2, 'I') if !next_same(&['I', 'E']) => {
                Some(format!("I-{kind} must be followed by I-{kind} or E-{kind}"))
            }
            (Scheme::Iobes | Scheme::Bilou, 'B') if !next_same(&['I', last]) => Some(format!(
                "B-{kind} must be followed by I-{kind} or {last}-{kind} (a single-word entity is {single}-{kind})"
            )),
            (Scheme::Iobes | Scheme::Bilou, 'I') if !same(prev, &['B', 'I']) => {
                Some(format!("I-{kind} must follow B-{kind} or I-{kind}"))
            }
            (Scheme::Iobes | Scheme::Bilou, 'I') if !next_same(&['I', last]) => Some(format!(
                "I-{kind} must be followed by I-{kind} or {last}-{kind}: the entity has no {last}- tag"
            )),
            (Scheme::Iobes | Scheme::Bilou, p) if p == last && !same(prev, &['B', 'I']) => {
                Some(format!(
                    "{last}-{kind} must follow B-{kind} or I-{kind} (a single-word entity is {single}-{kind})"
                ))
            }
            _ => None,
        };
        if let Some(reason) = broken {
            return Err(invalid(reason));
        }
    }
    Ok(())
}

/// The entities of a valid tag sequence, in order.
///
/// The sequence is checked with [`validate`] first. Its spans are then the ones seqeval's
/// strict mode ([`lora_bert_metrics::scheme::strict_entities`]) reads, with one exception:
/// seqeval's strict IOE1 rules miss a single-word entity tagged `E-X` after `O` (`O E-X I-X`
/// is two entities, seqeval finds only the second); this function reads it.
///
/// # Errors
///
/// As [`validate`].
///
/// ```
/// use lora_bert_data::{Scheme, scheme::{entities, Span}};
///
/// let spans = entities(&["U-LOC", "B-PER", "L-PER", "O"], Scheme::Bilou)?;
/// assert_eq!(spans, [Span::new("LOC", 0, 1), Span::new("PER", 1, 3)]);
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
pub fn entities<S: AsRef<str>>(tags: &[S], scheme: Scheme) -> Result<Vec<Span>> {
    validate(tags, scheme)?;
    // On a valid sequence the lenient chunker reads exactly the scheme's entities (the
    // proptests of tests/scheme.rs check it against seqeval's strict reader).
    entities_lenient(tags)
}

/// The entities of any tag sequence, read leniently the way seqeval's default
/// (conlleval-compatible) mode does ([`lora_bert_metrics::chunks`]), whatever the scheme:
///
/// - `I-X` (or `E-X`) after `O` or after an entity of another type starts an entity, so
///   `O I-PER I-PER` is one `PER` entity;
/// - a change of type ends an entity and starts another: `B-PER I-LOC` is `PER`, `LOC`;
/// - `B-X` and `S-X` always start an entity, `E-X` and `S-X` always end one;
/// - BILOU's `L-` and `U-` are read as `E-` and `S-` (seqeval's default mode knows neither).
///
/// On a sequence that is valid in its scheme this gives the same spans as [`entities`].
///
/// # Errors
///
/// [`DataError::InvalidTag`] (with `Scheme::Iob2` as the nominal scheme) for a tag that is
/// neither `O` nor a `B I E S L U` prefix, `-` and a type.
pub fn entities_lenient<S: AsRef<str>>(tags: &[S]) -> Result<Vec<Span>> {
    let mut mapped = Vec::with_capacity(tags.len());
    for (position, tag) in tags.iter().enumerate() {
        let tag = tag.as_ref();
        mapped.push(match Tag::parse(tag) {
            None => {
                return Err(DataError::InvalidTag {
                    position,
                    tag: tag.to_owned(),
                    scheme: Scheme::Iob2,
                    reason: "expected `O` or a B, I, E, S, L or U prefix, `-` and an entity type \
                             without whitespace"
                        .into(),
                });
            }
            Some(Tag::Entity('L', kind)) => format!("E-{kind}"),
            Some(Tag::Entity('U', kind)) => format!("S-{kind}"),
            Some(_) => tag.to_owned(),
        });
    }
    Ok(chunks_of(&mapped))
}

/// The entities of `tags` read in `mode`: [`entities`] for [`Mode::Strict`],
/// [`entities_lenient`] for [`Mode::Default`].
///
/// # Errors
///
/// As the function `mode` selects.
pub fn decode<S: AsRef<str>>(tags: &[S], mode: Mode) -> Result<Vec<Span>> {
    match mode {
        Mode::Strict(scheme) => entities(tags, scheme),
        Mode::Default => entities_lenient(tags),
    }
}

/// Writes `spans` as `len` tags of `scheme` (`O` outside every span).
///
/// Spans may come in any order.
///
/// # Errors
///
/// [`DataError::InvalidArgument`] when a span is empty, reaches past `len`, overlaps another
/// or has a type that is empty or contains whitespace.
///
/// ```
/// use lora_bert_data::{Scheme, scheme::{encode, Span}};
///
/// let spans = [Span::new("PER", 0, 2), Span::new("PER", 2, 3)];
/// assert_eq!(encode(&spans, 4, Scheme::Iob1)?, ["I-PER", "I-PER", "B-PER", "O"]);
/// assert_eq!(encode(&spans, 4, Scheme::Iobes)?, ["B-PER", "E-PER", "S-PER", "O"]);
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
pub fn encode(spans: &[Span], len: usize, scheme: Scheme) -> Result<Vec<String>> {
    let mut sorted: Vec<&Span> = spans.iter().collect();
    sorted.sort_by_key(|s| (s.start, s.end));
    let bad = |message: String| DataError::InvalidArgument {
        what: "spans",
        message,
    };
    for (i, s) in sorted.iter().enumerate() {
        if s.start >= s.end || s.end > len {
            return Err(bad(format!(
                "span {}..{} of `{}` is empty or reaches past the {len} words",
                s.start, s.end, s.kind
            )));
        }
        if s.kind.is_empty() || s.kind.chars().any(char::is_whitespace) {
            return Err(bad(format!(
                "entity type `{}` is empty or has whitespace",
                s.kind
            )));
        }
        if let Some(next) = sorted.get(i + 1).filter(|n| n.start < s.end) {
            return Err(bad(format!(
                "spans {}..{} and {}..{} overlap",
                s.start, s.end, next.start, next.end
            )));
        }
    }
    let mut tags = vec!["O".to_owned(); len];
    for (i, s) in sorted.iter().enumerate() {
        let adjacent_before = i > 0 && sorted[i - 1].end == s.start && sorted[i - 1].kind == s.kind;
        let adjacent_after = sorted
            .get(i + 1)
            .is_some_and(|n| n.start == s.end && n.kind == s.kind);
        let (single, last) = single_last(scheme);
        let n = s.end - s.start;
        for (j, tag) in tags[s.start..s.end].iter_mut().enumerate() {
            let prefix = match scheme {
                Scheme::Iob1 if j == 0 && adjacent_before => 'B',
                Scheme::Iob2 if j == 0 => 'B',
                Scheme::Ioe1 if j == n - 1 && adjacent_after => 'E',
                Scheme::Ioe2 if j == n - 1 => 'E',
                Scheme::Iobes | Scheme::Bilou if n == 1 => single,
                Scheme::Iobes | Scheme::Bilou if j == 0 => 'B',
                Scheme::Iobes | Scheme::Bilou if j == n - 1 => last,
                _ => 'I',
            };
            *tag = format!("{prefix}-{}", s.kind);
        }
    }
    Ok(tags)
}

/// Converts a valid tag sequence from one scheme to another: [`entities`] then [`encode`].
///
/// # Errors
///
/// As [`validate`] for `tags` under `from`.
///
/// ```
/// use lora_bert_data::{Scheme, scheme::convert};
///
/// let bilou = convert(&["B-PER", "I-PER", "B-LOC"], Scheme::Iob2, Scheme::Bilou)?;
/// assert_eq!(bilou, ["B-PER", "L-PER", "U-LOC"]);
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
pub fn convert<S: AsRef<str>>(tags: &[S], from: Scheme, to: Scheme) -> Result<Vec<String>> {
    encode(&entities(tags, from)?, tags.len(), to)
}

/// Converts any tag sequence to a valid one in `to`: [`entities_lenient`] then [`encode`].
///
/// This repairs real data that breaks its scheme's rules (an `I-` without `B-`, a type
/// change inside an entity) the way seqeval's default mode reads it, so evaluation in that
/// mode scores the repaired sequence exactly as the original. On a sequence that is valid in
/// any scheme it equals [`convert`] from that scheme.
///
/// # Errors
///
/// As [`entities_lenient`].
///
/// ```
/// use lora_bert_data::{Scheme, scheme::convert_lenient};
///
/// let fixed = convert_lenient(&["O", "I-PER", "I-PER", "I-LOC"], Scheme::Iob2)?;
/// assert_eq!(fixed, ["O", "B-PER", "I-PER", "B-LOC"]);
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
pub fn convert_lenient<S: AsRef<str>>(tags: &[S], to: Scheme) -> Result<Vec<String>> {
    encode(&entities_lenient(tags)?, tags.len(), to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_tags() {
        assert_eq!(Tag::parse("O"), Some(Tag::Outside));
        assert_eq!(Tag::parse("B-geo-loc"), Some(Tag::Entity('B', "geo-loc")));
        for bad in [
            "",
            "B",
            "B-",
            "BPER",
            "X-PER",
            "O-PER",
            "o",
            "b-PER",
            "I-PER ",
            "B-new york",
            "I-\t",
        ] {
            assert_eq!(Tag::parse(bad), None, "{bad}");
        }
    }
}
