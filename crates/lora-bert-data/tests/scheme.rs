//! Tag schemes: hand-worked conversions between every pair, invalid sequences, proptests.

use lora_bert_data::scheme::{
    Span, convert, convert_lenient, encode, entities, entities_lenient, validate,
};
use lora_bert_data::{DataError, Scheme};
use lora_bert_metrics::scheme::strict_entities;
use proptest::prelude::*;

fn tags(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// The same spans written by hand in each scheme.
struct Worked {
    spans: Vec<Span>,
    len: usize,
    by_scheme: [(Scheme, &'static str); 6],
}

fn worked() -> Vec<Worked> {
    vec![
        // Adjacent entities of one type, single words, a gap.
        Worked {
            spans: vec![
                Span::new("PER", 0, 2),
                Span::new("PER", 2, 3),
                Span::new("LOC", 4, 5),
                Span::new("LOC", 5, 7),
                Span::new("ORG", 8, 9),
            ],
            len: 9,
            by_scheme: [
                (
                    Scheme::Iob1,
                    "I-PER I-PER B-PER O I-LOC B-LOC I-LOC O I-ORG",
                ),
                (
                    Scheme::Iob2,
                    "B-PER I-PER B-PER O B-LOC B-LOC I-LOC O B-ORG",
                ),
                (
                    Scheme::Ioe1,
                    "I-PER E-PER I-PER O E-LOC I-LOC I-LOC O I-ORG",
                ),
                (
                    Scheme::Ioe2,
                    "I-PER E-PER E-PER O E-LOC I-LOC E-LOC O E-ORG",
                ),
                (
                    Scheme::Iobes,
                    "B-PER E-PER S-PER O S-LOC B-LOC E-LOC O S-ORG",
                ),
                (
                    Scheme::Bilou,
                    "B-PER L-PER U-PER O U-LOC B-LOC L-LOC O U-ORG",
                ),
            ],
        },
        // Adjacent entities of different types, a three-word entity, a type with a dash.
        Worked {
            spans: vec![Span::new("PER", 0, 3), Span::new("geo-loc", 3, 4)],
            len: 5,
            by_scheme: [
                (Scheme::Iob1, "I-PER I-PER I-PER I-geo-loc O"),
                (Scheme::Iob2, "B-PER I-PER I-PER B-geo-loc O"),
                (Scheme::Ioe1, "I-PER I-PER I-PER I-geo-loc O"),
                (Scheme::Ioe2, "I-PER I-PER E-PER E-geo-loc O"),
                (Scheme::Iobes, "B-PER I-PER E-PER S-geo-loc O"),
                (Scheme::Bilou, "B-PER I-PER L-PER U-geo-loc O"),
            ],
        },
        // Nothing but O, and nothing at all.
        Worked {
            spans: vec![],
            len: 2,
            by_scheme: Scheme::ALL.map(|s| (s, "O O")),
        },
        Worked {
            spans: vec![],
            len: 0,
            by_scheme: Scheme::ALL.map(|s| (s, "")),
        },
    ]
}

#[test]
fn hand_worked_examples_in_every_scheme_and_every_pair() {
    for w in worked() {
        for (scheme, written) in w.by_scheme {
            let t = tags(written);
            assert_eq!(encode(&w.spans, w.len, scheme).unwrap(), t, "{scheme}");
            validate(&t, scheme).unwrap();
            assert_eq!(entities(&t, scheme).unwrap(), w.spans, "{scheme}");
            assert_eq!(entities_lenient(&t).unwrap(), w.spans, "{scheme}");
            for (to, expected) in w.by_scheme {
                assert_eq!(
                    convert(&t, scheme, to).unwrap(),
                    tags(expected),
                    "{scheme} -> {to}"
                );
                assert_eq!(
                    convert_lenient(&t, to).unwrap(),
                    tags(expected),
                    "{scheme} ~> {to}"
                );
            }
        }
    }
}

#[test]
fn encode_takes_spans_in_any_order() {
    let spans = [Span::new("B", 3, 4), Span::new("A", 0, 2)];
    assert_eq!(
        encode(&spans, 4, Scheme::Iob2).unwrap(),
        tags("B-A I-A O B-B")
    );
}

#[test]
fn encode_refuses_bad_spans() {
    for spans in [
        vec![Span::new("A", 0, 3)],                       // past the end
        vec![Span::new("A", 1, 1)],                       // empty
        vec![Span::new("A", 0, 2), Span::new("B", 1, 2)], // overlap
        vec![Span::new("", 0, 1)],                        // no type
        vec![Span::new("A B", 0, 1)],                     // whitespace
    ] {
        let err = encode(&spans, 2, Scheme::Iob2).unwrap_err();
        assert!(
            matches!(err, DataError::InvalidArgument { what: "spans", .. }),
            "{spans:?}: {err}"
        );
    }
}

#[test]
fn invalid_sequences_are_refused_at_the_right_position() {
    let cases: &[(Scheme, &str, usize, &str)] = &[
        (Scheme::Iob2, "O I-PER", 1, "must follow B-PER"),
        (Scheme::Iob2, "B-PER I-LOC", 1, "must follow B-LOC"),
        (
            Scheme::Iob2,
            "B-PER E-PER",
            1,
            "prefix `E` is not part of IOB2",
        ),
        (Scheme::Iob2, "O B-PER XX", 2, "expected `O`"),
        (Scheme::Iob2, "B", 0, "expected `O`"),
        (Scheme::Iob2, "B-", 0, "expected `O`"),
        (Scheme::Iob2, "O-PER", 0, "expected `O`"),
        (Scheme::Iob1, "O B-PER", 1, "B-PER must directly follow"),
        (Scheme::Iob1, "I-LOC B-PER", 1, "B-PER must directly follow"),
        (Scheme::Iob1, "B-PER", 0, "B-PER must directly follow"),
        (Scheme::Iob1, "I-PER S-PER", 1, "prefix `S`"),
        (
            Scheme::Ioe1,
            "I-PER E-PER O",
            1,
            "E-PER must be directly followed",
        ),
        (
            Scheme::Ioe1,
            "O E-PER I-LOC",
            1,
            "E-PER must be directly followed",
        ),
        (Scheme::Ioe1, "E-PER", 0, "E-PER must be directly followed"),
        (
            Scheme::Ioe2,
            "I-PER O",
            0,
            "must be followed by I-PER or E-PER",
        ),
        (
            Scheme::Ioe2,
            "O O I-PER",
            2,
            "must be followed by I-PER or E-PER",
        ),
        (
            Scheme::Ioe2,
            "I-PER E-LOC",
            0,
            "must be followed by I-PER or E-PER",
        ),
        (Scheme::Ioe2, "O B-PER", 1, "prefix `B` is not part of IOE2"),
        (
            Scheme::Iobes,
            "B-PER O",
            0,
            "must be followed by I-PER or E-PER",
        ),
        (Scheme::Iobes, "S-LOC B-PER I-PER", 2, "has no E- tag"),
        (
            Scheme::Iobes,
            "O I-PER E-PER",
            1,
            "must follow B-PER or I-PER",
        ),
        (
            Scheme::Iobes,
            "O E-PER",
            1,
            "E-PER must follow B-PER or I-PER",
        ),
        (
            Scheme::Iobes,
            "B-PER E-LOC",
            0,
            "must be followed by I-PER or E-PER",
        ),
        (Scheme::Iobes, "U-PER", 0, "prefix `U`"),
        (
            Scheme::Iobes,
            "B-PER S-PER L-PER",
            0,
            "must be followed by I-PER or E-PER",
        ),
        (Scheme::Iobes, "B-PER XX", 1, "expected `O`"),
        (Scheme::Bilou, "B-PER I-PER O", 1, "has no L- tag"),
        (Scheme::Bilou, "L-PER", 0, "L-PER must follow"),
        (Scheme::Bilou, "S-PER", 0, "prefix `S`"),
        (
            Scheme::Bilou,
            "B-PER U-PER",
            0,
            "must be followed by I-PER or L-PER",
        ),
    ];
    for &(scheme, written, position, reason_part) in cases {
        let t = tags(written);
        let err = validate(&t, scheme).unwrap_err();
        match &err {
            DataError::InvalidTag {
                position: p,
                tag,
                scheme: s,
                reason,
            } => {
                assert_eq!(
                    (*p, tag.as_str(), *s),
                    (position, t[position].as_str(), scheme),
                    "{written}"
                );
                assert!(reason.contains(reason_part), "{scheme} {written}: {reason}");
            }
            other => panic!("{scheme} {written}: {other}"),
        }
        assert!(err.to_string().contains(scheme.name()), "{err}");
        // entities and convert refuse it the same way.
        assert!(entities(&t, scheme).is_err());
        assert!(convert(&t, scheme, Scheme::Iob2).is_err());
    }
}

#[test]
fn lenient_reading_follows_seqeval_default_mode() {
    let t = tags("I-PER I-PER O I-LOC B-LOC E-ORG");
    assert_eq!(
        entities_lenient(&t).unwrap(),
        [
            Span::new("PER", 0, 2),
            Span::new("LOC", 3, 4),
            Span::new("LOC", 4, 5),
            Span::new("ORG", 5, 6)
        ]
    );
    assert_eq!(
        convert_lenient(&t, Scheme::Iob2).unwrap(),
        tags("B-PER I-PER O B-LOC B-LOC B-ORG")
    );
    // A type change inside an entity splits it; BILOU's L- and U- are understood.
    assert_eq!(
        convert_lenient(&tags("B-PER I-LOC I-LOC"), Scheme::Iobes).unwrap(),
        tags("S-PER B-LOC E-LOC")
    );
    assert_eq!(
        entities_lenient(&tags("U-PER B-LOC L-LOC U-LOC")).unwrap(),
        [
            Span::new("PER", 0, 1),
            Span::new("LOC", 1, 3),
            Span::new("LOC", 3, 4)
        ]
    );
    let err = entities_lenient(&tags("O X-PER")).unwrap_err();
    assert!(
        matches!(err, DataError::InvalidTag { position: 1, .. }),
        "{err}"
    );
}

#[test]
fn seqeval_strict_ioe1_misses_a_single_word_e_entity_we_read() {
    let t = tags("O E-PER I-PER");
    validate(&t, Scheme::Ioe1).unwrap();
    assert_eq!(
        entities(&t, Scheme::Ioe1).unwrap(),
        [Span::new("PER", 1, 2), Span::new("PER", 2, 3)]
    );
    let strict = strict_entities(&t, Scheme::Ioe1, 0).unwrap();
    assert_eq!(strict.len(), 1);
    assert_eq!((strict[0].start, strict[0].end), (2, 3));
}

/// Random non-overlapping spans over a random length.
fn spans_strategy() -> impl Strategy<Value = (Vec<Span>, usize)> {
    let kinds = ["PER", "LOC", "geo-loc"];
    (
        prop::collection::vec((0usize..3, 1usize..5, 0usize..3), 0..7),
        0usize..3,
    )
        .prop_map(move |(parts, tail)| {
            let mut spans = Vec::new();
            let mut at = 0;
            for (gap, len, kind) in parts {
                at += gap;
                spans.push(Span::new(kinds[kind], at, at + len));
                at += len;
            }
            (spans, at + tail)
        })
}

fn scheme_strategy() -> impl Strategy<Value = Scheme> {
    prop::sample::select(Scheme::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn encode_then_read_gives_the_spans_back((spans, len) in spans_strategy()) {
        for scheme in Scheme::ALL {
            let t = encode(&spans, len, scheme).unwrap();
            prop_assert_eq!(t.len(), len);
            prop_assert!(validate(&t, scheme).is_ok(), "{} {:?}", scheme, t);
            prop_assert_eq!(&entities(&t, scheme).unwrap(), &spans);
            prop_assert_eq!(&entities_lenient(&t).unwrap(), &spans);
            if scheme != Scheme::Ioe1 {
                // seqeval's strict reader agrees (see the IOE1 test above for its one miss).
                let strict: Vec<Span> = strict_entities(&t, scheme, 0)
                    .unwrap()
                    .into_iter()
                    .map(|e| Span::new(e.kind, e.start, e.end))
                    .collect();
                prop_assert_eq!(&strict, &spans);
            }
        }
    }

    #[test]
    fn conversions_round_trip((spans, len) in spans_strategy(), a in scheme_strategy(), b in scheme_strategy()) {
        let ta = encode(&spans, len, a).unwrap();
        let tb = convert(&ta, a, b).unwrap();
        prop_assert_eq!(&tb, &encode(&spans, len, b).unwrap());
        prop_assert_eq!(&convert(&tb, b, a).unwrap(), &ta);
        prop_assert_eq!(&convert_lenient(&ta, b).unwrap(), &tb);
    }

    /// A sequence is valid exactly when it is the encoding of its own (lenient) reading, and
    /// the repaired sequence is always valid.
    #[test]
    fn valid_means_canonical(
        raw in prop::collection::vec(
            prop::sample::select(vec!["O", "B-A", "I-A", "E-A", "S-A", "L-A", "U-A", "B-B", "I-B", "E-B", "S-B", "L-B", "U-B"]),
            0..10,
        ),
        scheme in scheme_strategy(),
    ) {
        let canonical = encode(&entities_lenient(&raw).unwrap(), raw.len(), scheme).unwrap();
        let valid = validate(&raw, scheme);
        prop_assert_eq!(valid.is_ok(), canonical == raw, "{} {:?}: {:?}", scheme, raw, valid);
        prop_assert!(validate(&convert_lenient(&raw, scheme).unwrap(), scheme).is_ok());
        if let Err(DataError::InvalidTag { position, .. }) = valid {
            // Everything before the reported tag is a valid prefix up to lookahead: the
            // error is never reported past the first tag that differs from the repair.
            let first_diff = canonical.iter().zip(&raw).position(|(c, r)| c != r);
            prop_assert!(position < raw.len());
            if let Some(d) = first_diff {
                prop_assert!(position <= d + 1, "{} {:?}: error at {}, first change at {}", scheme, raw, position, d);
            }
        }
    }
}
