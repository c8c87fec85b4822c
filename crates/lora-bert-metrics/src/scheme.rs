//! Tagging schemes and seqeval's strict-mode entity reader (`seqeval.scheme`), rule for rule.
//!
//! Each scheme allows some prefixes and defines, as `(previous prefix, prefix, type
//! condition)` patterns, when a token starts an entity, continues it, and when the token after
//! an entity closes it. An entity counts only if it is both started and properly closed, so
//! `I-PER` without `B-PER` under IOB2 is no entity at all (unlike the default mode).

use std::fmt;
use std::str::FromStr;

use crate::error::MetricsError;
use crate::span::Span;

/// A tagging scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `B-` only separates two adjacent entities of the same type.
    Iob1,
    /// Every entity starts with `B-` (CoNLL-2003 as usually distributed).
    Iob2,
    /// `E-` only separates two adjacent entities of the same type.
    Ioe1,
    /// Every entity ends with `E-`.
    Ioe2,
    /// `B-`, `I-`, `E-`, and `S-` for single-token entities.
    Iobes,
    /// `B-`, `I-`, `L-`ast, `U-`nit.
    Bilou,
}

impl Scheme {
    /// All six.
    pub const ALL: [Scheme; 6] = [
        Scheme::Iob1,
        Scheme::Iob2,
        Scheme::Ioe1,
        Scheme::Ioe2,
        Scheme::Iobes,
        Scheme::Bilou,
    ];

    /// The name seqeval uses (`IOB2`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Iob1 => "IOB1",
            Scheme::Iob2 => "IOB2",
            Scheme::Ioe1 => "IOE1",
            Scheme::Ioe2 => "IOE2",
            Scheme::Iobes => "IOBES",
            Scheme::Bilou => "BILOU",
        }
    }

    fn rules(self) -> &'static Rules {
        match self {
            Scheme::Iob1 => &IOB1,
            Scheme::Iob2 => &IOB2,
            Scheme::Ioe1 => &IOE1,
            Scheme::Ioe2 => &IOE2,
            Scheme::Iobes => &IOBES,
            Scheme::Bilou => &BILOU,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown scheme name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tagging scheme `{0}` (expected IOB1, IOB2, IOE1, IOE2, IOBES or BILOU)")]
pub struct UnknownScheme(pub String);

impl FromStr for Scheme {
    type Err = UnknownScheme;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::ALL
            .into_iter()
            .find(|x| x.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownScheme(s.to_owned()))
    }
}

/// A set of prefixes, as a bit mask.
type Prefixes = u8;
const I: Prefixes = 1;
const O: Prefixes = 2;
const B: Prefixes = 4;
const E: Prefixes = 8;
const S: Prefixes = 16;
const U: Prefixes = 32;
const L: Prefixes = 64;
const ANY: Prefixes = I | O | B | E | S | U | L;

#[derive(Clone, Copy)]
enum Cond {
    Same,
    Diff,
    Any,
}

/// `(previous prefix, current prefix, type condition)`.
type Pattern = (Prefixes, Prefixes, Cond);

struct Rules {
    allowed: Prefixes,
    start: &'static [Pattern],
    inside: &'static [Pattern],
    end: &'static [Pattern],
}

use Cond::{Any, Diff, Same};

static IOB1: Rules = Rules {
    allowed: I | O | B,
    start: &[
        (O, I, Any),
        (I, I, Diff),
        (B, I, Any),
        (I, B, Same),
        (B, B, Same),
    ],
    inside: &[(B, I, Same), (I, I, Same)],
    end: &[
        (I, I, Diff),
        (I, O, Any),
        (I, B, Any),
        (B, O, Any),
        (B, I, Diff),
        (B, B, Same),
    ],
};

static IOE1: Rules = Rules {
    allowed: I | O | E,
    start: &[(O, I, Any), (I, I, Diff), (E, I, Any), (E, E, Same)],
    inside: &[(I, I, Same), (I, E, Same)],
    end: &[
        (I, I, Diff),
        (I, O, Any),
        (I, E, Diff),
        (E, I, Same),
        (E, E, Same),
    ],
};

static IOB2: Rules = Rules {
    allowed: I | O | B,
    start: &[(ANY, B, Any)],
    inside: &[(B, I, Same), (I, I, Same)],
    end: &[
        (I, O, Any),
        (I, I, Diff),
        (I, B, Any),
        (B, O, Any),
        (B, I, Diff),
        (B, B, Any),
    ],
};

static IOE2: Rules = Rules {
    allowed: I | O | E,
    start: &[
        (O, I, Any),
        (O, E, Any),
        (E, I, Any),
        (E, E, Any),
        (I, I, Diff),
        (I, E, Diff),
    ],
    inside: &[(I, E, Same), (I, I, Same)],
    end: &[(E, ANY, Any)],
};

static IOBES: Rules = Rules {
    allowed: I | O | B | E | S,
    start: &[(ANY, B, Any), (ANY, S, Any)],
    inside: &[(B, I, Same), (B, E, Same), (I, I, Same), (I, E, Same)],
    end: &[(S, ANY, Any), (E, ANY, Any)],
};

static BILOU: Rules = Rules {
    allowed: B | I | L | O | U,
    start: &[(ANY, B, Any), (ANY, U, Any)],
    inside: &[(B, I, Same), (B, L, Same), (I, I, Same), (I, L, Same)],
    end: &[(U, ANY, Any), (L, ANY, Any)],
};

/// A parsed tag: its prefix (as a one-bit mask) and type.
#[derive(Clone)]
struct Token<'a> {
    prefix: Prefixes,
    kind: &'a str,
}

impl<'a> Token<'a> {
    /// seqeval's `Token.__init__`: the first character is the prefix, the rest stripped of
    /// `-` is the type (`_` when empty). `None` for an empty tag or an unknown prefix.
    fn parse(tag: &'a str) -> Option<Self> {
        let mut chars = tag.chars();
        let prefix = match chars.next()? {
            'I' => I,
            'O' => O,
            'B' => B,
            'E' => E,
            'S' => S,
            'U' => U,
            'L' => L,
            _ => return None,
        };
        let kind = chars.as_str().trim_matches('-');
        Some(Self {
            prefix,
            kind: if kind.is_empty() { "_" } else { kind },
        })
    }

    fn matches(&self, prev: &Token<'_>, patterns: &[Pattern]) -> bool {
        patterns.iter().any(|&(p, c, cond)| {
            prev.prefix & p != 0
                && self.prefix & c != 0
                && match cond {
                    Any => true,
                    Same => prev.kind == self.kind,
                    Diff => prev.kind != self.kind,
                }
        })
    }
}

/// The entities of one sentence under `scheme`, as `seqeval.scheme.Tokens.entities` reads
/// them. `sentence_index` only names the sentence in errors.
pub fn strict_entities<T: AsRef<str>>(
    tags: &[T],
    scheme: Scheme,
    sentence_index: usize,
) -> Result<Vec<Span>, MetricsError> {
    let rules = scheme.rules();
    let outside = Token {
        prefix: O,
        kind: "_",
    };
    let mut tokens = Vec::with_capacity(tags.len() + 1);
    for (i, tag) in tags.iter().enumerate() {
        let tag = tag.as_ref();
        match Token::parse(tag) {
            Some(t) if t.prefix & rules.allowed != 0 => tokens.push(t),
            _ => {
                return Err(MetricsError::InvalidTag {
                    sentence: sentence_index,
                    token: i,
                    tag: tag.to_owned(),
                    scheme: scheme.name().to_owned(),
                });
            }
        }
    }
    tokens.push(outside.clone());
    let mut entities = Vec::new();
    let mut prev = outside;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if token.matches(&prev, rules.start) {
            // Tokens._forward: extend while tokens continue the entity.
            let mut inner_prev = token;
            let mut end = i + 1;
            while end < tokens.len() && tokens[end].matches(inner_prev, rules.inside) {
                inner_prev = &tokens[end];
                end += 1;
            }
            if end == tokens.len() {
                // Unreachable in seqeval: the closing `O` is never inside an entity.
                end = tokens.len() - 2;
            }
            if tokens[end].matches(&tokens[end - 1], rules.end) {
                entities.push(Span {
                    kind: token.kind.to_owned(),
                    start: i,
                    end,
                });
            }
            i = end;
        } else {
            i += 1;
        }
        prev = tokens[i - 1].clone();
    }
    Ok(entities)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(tags: &[&str], scheme: Scheme) -> Vec<(String, usize, usize)> {
        strict_entities(tags, scheme, 0)
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.start, e.end))
            .collect()
    }

    #[test]
    fn seqeval_docstring_example() {
        // Tokens(['B-PER', 'I-PER', 'O', 'B-LOC'], IOB2).entities == [('PER', 0, 2), ('LOC', 3, 4)]
        assert_eq!(
            spans(&["B-PER", "I-PER", "O", "B-LOC"], Scheme::Iob2),
            [("PER".into(), 0, 2), ("LOC".into(), 3, 4)]
        );
    }

    #[test]
    fn strict_rules_drop_malformed_spans() {
        assert!(spans(&["I-PER", "I-PER"], Scheme::Iob2).is_empty());
        assert_eq!(
            spans(&["I-PER", "I-PER"], Scheme::Iob1),
            [("PER".into(), 0, 2)]
        );
        assert_eq!(
            spans(&["B-PER", "I-PER", "E-PER"], Scheme::Iobes),
            [("PER".into(), 0, 3)]
        );
        assert!(spans(&["B-PER", "I-PER"], Scheme::Iobes).is_empty());
        assert_eq!(spans(&["U-LOC", "B-PER", "L-PER"], Scheme::Bilou).len(), 2);
        let err = strict_entities(&["O", "E-PER"], Scheme::Iob2, 3).unwrap_err();
        assert_eq!(
            err,
            MetricsError::InvalidTag {
                sentence: 3,
                token: 1,
                tag: "E-PER".into(),
                scheme: "IOB2".into()
            }
        );
    }
}
