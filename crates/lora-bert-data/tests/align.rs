//! Word-piece alignment, windows and stitching with the real all-MiniLM-L6-v2 tokenizer.

use std::sync::OnceLock;

use lora_bert_data::align::{
    Aggregation, IGNORE_INDEX, LabelAligner, LabelAlignment, TokenPredictions, WordPrediction,
    dropped_words, split_words, token_words,
};
use lora_bert_data::scheme::decode;
use lora_bert_data::token::{TokenExample, encode_tagged, encode_text, encode_words};
use lora_bert_data::window::{stitch, stitch_scored};
use lora_bert_data::{DataError, LabelVocab, Scheme, TaggedSentence};
use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy, TokenizerError};
use lora_bert_metrics::Mode;
use proptest::prelude::*;

fn tokenizer() -> &'static BertTokenizer {
    static TOK: OnceLock<BertTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let cache = lora_bert_assets::AssetCache::from_env().expect("asset cache");
        let files = lora_bert_assets::all_minilm_l6_v2(&cache).expect("all-MiniLM-L6-v2");
        BertTokenizer::from_file(&files.tokenizer).expect("tokenizer.json")
    })
}

fn sentence(words: &[&str], tags: &[&str]) -> TaggedSentence {
    TaggedSentence {
        tokens: words.iter().map(|w| (*w).to_owned()).collect(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn iob2() -> LabelVocab {
    LabelVocab::for_scheme(&["LOC", "PER"], Scheme::Iob2).unwrap()
}

const I: i64 = IGNORE_INDEX;

#[test]
fn hand_checked_alignment_first_and_all_subwords() {
    let tok = tokenizer();
    // O=0 B-LOC=1 I-LOC=2 B-PER=3 I-PER=4
    let vocab = iob2();
    let s = sentence(
        &["Visit", "Atlanta's", "tokenization", "museum"],
        &["O", "B-LOC", "I-LOC", "O"],
    );
    let enc = &tok.encode("Visit Atlanta's tokenization museum").unwrap()[0];
    assert_eq!(
        enc.tokens,
        [
            "[CLS]",
            "visit",
            "atlanta",
            "'",
            "s",
            "token",
            "##ization",
            "museum",
            "[SEP]"
        ]
    );
    // The tokenizer sees 5 words; the dataset has 4.
    assert_eq!(enc.word_ids[1..8].iter().flatten().max(), Some(&5));

    let first = encode_tagged(
        tok,
        std::slice::from_ref(&s),
        &vocab,
        LabelAlignment::FirstSubword,
    )
    .unwrap();
    assert_eq!(first.len(), 1);
    let ex = &first[0];
    assert_eq!(ex.input_ids, enc.ids);
    assert_eq!(ex.type_ids, vec![0; 9]);
    assert_eq!(
        ex.token_word,
        [
            None,
            Some(0),
            Some(1),
            Some(1),
            Some(1),
            Some(2),
            Some(2),
            Some(3),
            None
        ]
    );
    assert_eq!(ex.labels, [I, 0, 1, I, I, 2, I, 0, I]);
    assert_eq!(
        (ex.sentence, ex.num_words, ex.window, ex.num_windows),
        (0, 4, 0, 1)
    );

    let all = encode_tagged(tok, &[s], &vocab, LabelAlignment::AllSubwords).unwrap();
    // B-LOC's continuation pieces get I-LOC; I-LOC's stay I-LOC.
    assert_eq!(all[0].labels, [I, 0, 1, 2, 2, 2, 2, 0, I]);
}

#[test]
fn continuation_falls_back_to_the_label_itself() {
    // No I-PER in the vocabulary: B-PER pieces keep B-PER. S- and other labels keep theirs.
    let vocab = LabelVocab::new(vec!["O".into(), "B-PER".into(), "S-LOC".into()]).unwrap();
    let a = LabelAligner::new(&vocab, LabelAlignment::AllSubwords);
    assert_eq!(
        (0..3)
            .map(|i| a.continuation(i).unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let vocab = LabelVocab::for_scheme(&["PER"], Scheme::Iobes).unwrap();
    // O B-PER I-PER E-PER S-PER
    let a = LabelAligner::new(&vocab, LabelAlignment::AllSubwords);
    assert_eq!(
        (0..5)
            .map(|i| a.continuation(i).unwrap())
            .collect::<Vec<_>>(),
        [0, 2, 2, 3, 4]
    );
    assert_eq!(a.continuation(5), None);
}

#[test]
fn words_that_give_no_token_are_reported_and_come_back_as_none() {
    let tok = tokenizer();
    let vocab = iob2();
    let s = sentence(
        &["a", "\u{200b}", "😀", "b", "\u{0}"],
        &["O", "B-PER", "B-LOC", "O", "O"],
    );
    let ex = &encode_tagged(tok, &[s], &vocab, LabelAlignment::FirstSubword).unwrap()[0];
    // [CLS] a [UNK] b [SEP]: the emoji is [UNK], the zero-width space and NUL vanish.
    assert_eq!(ex.input_ids[2], tok.token_to_id("[UNK]").unwrap());
    assert_eq!(ex.token_word, [None, Some(0), Some(2), Some(3), None]);
    assert_eq!(ex.labels, [I, 0, 1, 0, I]);
    assert_eq!(
        dropped_words([ex.token_word.as_slice()], ex.num_words),
        [1, 4]
    );
    let aligner = LabelAligner::new(&vocab, LabelAlignment::FirstSubword);
    let preds: Vec<u32> = ex.labels.iter().map(|&l| l.max(0) as u32).collect();
    let back = stitch(
        &aligner,
        &[(ex, TokenPredictions::Labels(&preds))],
        Aggregation::First,
    )
    .unwrap();
    assert_eq!(back, [Some(0), None, Some(1), Some(0), None]);
}

#[test]
fn aggregation_rules() {
    let vocab = iob2(); // O B-LOC I-LOC B-PER I-PER
    let first = LabelAligner::new(&vocab, LabelAlignment::FirstSubword);
    let all = LabelAligner::new(&vocab, LabelAlignment::AllSubwords);
    // One word of four pieces between specials.
    let tw = [None, Some(0), Some(0), Some(0), Some(0), None];
    let run = |a: &LabelAligner, p: &[u32], agg| {
        a.word_predictions(&tw, TokenPredictions::Labels(p), 1, agg)
            .unwrap()[0]
            .unwrap()
    };
    // First: the first piece, whatever the others say.
    assert_eq!(run(&first, &[0, 3, 0, 0, 0, 0], Aggregation::First), 3);
    // Plain majority (FirstSubword): O wins 3 to 1.
    assert_eq!(run(&first, &[0, 3, 0, 0, 0, 0], Aggregation::Majority), 0);
    // Tie 2-2: the first piece's label.
    assert_eq!(run(&first, &[0, 4, 4, 1, 1, 0], Aggregation::Majority), 4);
    // Tie 1-1-1-1 where the first piece is among them: first piece.
    assert_eq!(run(&first, &[0, 2, 1, 4, 3, 0], Aggregation::Majority), 2);
    // AllSubwords: B-LOC I-LOC I-LOC I-LOC is exactly what a B-LOC word looks like.
    assert_eq!(run(&all, &[0, 1, 2, 2, 2, 0], Aggregation::Majority), 1);
    assert_eq!(run(&first, &[0, 1, 2, 2, 2, 0], Aggregation::Majority), 2);
    // Average over scores, continuation-aware: rows for the four pieces.
    let row = |best: usize, v: f32| {
        let mut r = [0.0f32; 5];
        r[best] = v;
        r
    };
    let rows = [
        row(0, 1.0),
        row(1, 0.6),
        row(2, 0.9),
        row(2, 0.9),
        row(2, 0.9),
        row(0, 1.0),
    ];
    let scores: Vec<f32> = rows.iter().flatten().copied().collect();
    let sc = TokenPredictions::Scores {
        scores: &scores,
        num_labels: 5,
    };
    // B-LOC: (0.6 + 0.9 * 3) / 4 = 0.825 beats I-LOC: (0 + 0.9 * 3) / 4 = 0.675.
    assert_eq!(
        all.word_predictions(&tw, sc, 1, Aggregation::Average)
            .unwrap(),
        [Some(1)]
    );
    // Without continuation I-LOC wins the plain average.
    assert_eq!(
        first
            .word_predictions(&tw, sc, 1, Aggregation::Average)
            .unwrap(),
        [Some(2)]
    );
    // First from scores is the first piece's argmax; ties go to the lowest id.
    assert_eq!(
        first
            .word_predictions(&tw, sc, 1, Aggregation::First)
            .unwrap(),
        [Some(1)]
    );
    let flat = [0.5f32; 30];
    let sc = TokenPredictions::Scores {
        scores: &flat,
        num_labels: 5,
    };
    assert_eq!(
        first
            .word_predictions(&tw, sc, 1, Aggregation::Majority)
            .unwrap(),
        [Some(0)]
    );
}

/// `Max` reads the most confident piece; every aggregation scores the label it chose.
#[test]
fn max_aggregation_and_word_scores() {
    let vocab = iob2(); // O B-LOC I-LOC B-PER I-PER
    let first = LabelAligner::new(&vocab, LabelAlignment::FirstSubword);
    let tw = vec![None, Some(0), Some(0), Some(0), None];
    let example = TokenExample {
        input_ids: vec![0; 5],
        type_ids: vec![0; 5],
        labels: vec![IGNORE_INDEX; 5],
        token_word: tw,
        sentence: 0,
        num_words: 1,
        window: 0,
        num_windows: 1,
        token_start: 0,
    };
    // Probabilities of three pieces: B-PER 0.5, I-LOC 0.8, O 0.6.
    let rows: [[f32; 5]; 5] = [
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.2, 0.1, 0.1, 0.5, 0.1],
        [0.05, 0.05, 0.8, 0.05, 0.05],
        [0.6, 0.1, 0.1, 0.1, 0.1],
        [1.0, 0.0, 0.0, 0.0, 0.0],
    ];
    let scores: Vec<f32> = rows.iter().flatten().copied().collect();
    let sc = TokenPredictions::Scores {
        scores: &scores,
        num_labels: 5,
    };
    let word =
        |aggregation| stitch_scored(&first, &[(&example, sc)], aggregation).unwrap()[0].unwrap();
    let close = |w: WordPrediction, label: u32, score: f32| {
        assert_eq!(w.label, label);
        assert!((w.score - score).abs() < 1e-6, "{w:?} against {score}");
    };
    close(word(Aggregation::First), 3, 0.5);
    close(word(Aggregation::Max), 2, 0.8);
    // The mean over the pieces: O (0.2 + 0.05 + 0.6) / 3 beats I-LOC (0.1 + 0.8 + 0.1) / 3.
    close(word(Aggregation::Average), 2, 1.0 / 3.0);
    // Majority (one vote each: B-PER, I-LOC, O): the first piece's, scored by its mean.
    close(word(Aggregation::Majority), 3, (0.5 + 0.05 + 0.1) / 3.0);
    // Labels are one-hot scores: a majority scores its share of the votes; Max needs scores.
    let labels = [0, 2, 2, 0, 0];
    let lp = TokenPredictions::Labels(&labels);
    let w = stitch_scored(&first, &[(&example, lp)], Aggregation::Majority).unwrap()[0].unwrap();
    close(w, 2, 2.0 / 3.0);
    assert!(stitch_scored(&first, &[(&example, lp)], Aggregation::Max).is_err());
}

#[test]
fn prediction_errors() {
    let vocab = iob2();
    let a = LabelAligner::new(&vocab, LabelAlignment::FirstSubword);
    let tw = [None, Some(0), Some(1), None];
    let err = a
        .word_predictions(
            &tw,
            TokenPredictions::Labels(&[0, 0, 0]),
            2,
            Aggregation::First,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LengthMismatch {
                expected: 4,
                found: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = a
        .word_predictions(
            &tw,
            TokenPredictions::Labels(&[0, 0, 5, 0]),
            2,
            Aggregation::First,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("5 is not below the 5 labels"),
        "{err}"
    );
    let err = a
        .word_predictions(
            &tw,
            TokenPredictions::Labels(&[0; 4]),
            2,
            Aggregation::Average,
        )
        .unwrap_err();
    assert!(err.to_string().contains("Average needs scores"), "{err}");
    let err = a
        .word_predictions(
            &tw,
            TokenPredictions::Labels(&[0; 4]),
            1,
            Aggregation::First,
        )
        .unwrap_err();
    assert!(err.to_string().contains("maps to word 1"), "{err}");
    let mut scores = vec![0.0f32; 20];
    scores[7] = f32::NAN;
    let sc = TokenPredictions::Scores {
        scores: &scores,
        num_labels: 5,
    };
    let err = a
        .word_predictions(&tw, sc, 2, Aggregation::First)
        .unwrap_err();
    assert!(
        err.to_string().contains("score 2 of token 1 is NaN"),
        "{err}"
    );
    let sc = TokenPredictions::Scores {
        scores: &scores[..16],
        num_labels: 4,
    };
    assert!(a.word_predictions(&tw, sc, 2, Aggregation::First).is_err());
    let sc = TokenPredictions::Scores {
        scores: &scores[..15],
        num_labels: 5,
    };
    assert!(matches!(
        a.word_predictions(&tw, sc, 2, Aggregation::First),
        Err(DataError::LengthMismatch {
            expected: 20,
            found: 15,
            ..
        })
    ));
    let err = a.token_labels(&tw, &[0]).unwrap_err();
    assert!(err.to_string().contains("maps to word 1"), "{err}");
    assert!(a.token_labels(&tw, &[0, 9]).is_err());
}

#[test]
fn encode_errors_name_the_sentence() {
    let tok = tokenizer();
    let vocab = iob2();
    let good = sentence(&["a"], &["O"]);
    let unknown = sentence(&["a", "b", "c"], &["O", "O", "B-ORG"]);
    let err = encode_tagged(
        tok,
        &[good.clone(), unknown],
        &vocab,
        LabelAlignment::FirstSubword,
    )
    .unwrap_err();
    match err {
        DataError::UnknownLabel { label, context } => {
            assert_eq!(label, "B-ORG");
            assert_eq!(context.as_deref(), Some("sentence 1, word 2"));
        }
        other => panic!("{other}"),
    }
    let mismatch = sentence(&["a", "b"], &["O"]);
    let err = encode_tagged(
        tok,
        &[good.clone(), good.clone(), mismatch],
        &vocab,
        LabelAlignment::FirstSubword,
    )
    .unwrap_err();
    assert!(
        matches!(err, DataError::LengthMismatch { expected: 2, found: 1, ref what } if what == "tags of sentence 2"),
        "{err}"
    );
    let empty = sentence(&["\u{200b}"], &["O"]);
    let err = encode_tagged(
        tok,
        &[good.clone(), empty],
        &vocab,
        LabelAlignment::FirstSubword,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Tokenizer(TokenizerError::EmptyText { index: 1 })
        ),
        "{err}"
    );
    let short = tok.clone().with_max_length(4);
    let long = sentence(&["one", "two", "three"], &["O", "O", "O"]);
    let err = encode_tagged(
        &short,
        &[good.clone(), good, long],
        &vocab,
        LabelAlignment::FirstSubword,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Tokenizer(TokenizerError::TooLong {
                index: 2,
                tokens: 5,
                max: 4
            })
        ),
        "{err}"
    );
}

#[test]
fn token_words_errors() {
    let tok = tokenizer();
    let enc = &tok.encode("ab cd").unwrap()[0];
    assert_eq!(
        token_words(enc, &[(0, 2), (3, 5)]).unwrap(),
        [None, Some(0), Some(1), None]
    );
    let err = token_words(enc, &[(3, 5), (0, 2)]).unwrap_err();
    assert!(err.to_string().contains("unsorted or overlap"), "{err}");
    let err = token_words(enc, &[(0, 2)]).unwrap_err();
    assert!(err.to_string().contains("lies in no word"), "{err}");
    let pair = &tok.encode_pair("ab", "cd").unwrap()[0];
    assert!(token_words(pair, &[(0, 2)]).is_err());
}

/// Predictions a perfect model would give: the training label where there is one, noise
/// elsewhere (which must not matter).
fn perfect(ex: &TokenExample, num_labels: usize) -> Vec<u32> {
    ex.labels
        .iter()
        .enumerate()
        .map(|(t, &l)| {
            if l >= 0 {
                l as u32
            } else {
                ((t * 7 + 3) % num_labels) as u32
            }
        })
        .collect()
}

fn one_hot(labels: &[u32], num_labels: usize) -> Vec<f32> {
    labels
        .iter()
        .flat_map(|&l| (0..num_labels).map(move |c| if c == l as usize { 2.0 } else { -1.0 }))
        .collect()
}

/// Round trip of every sentence: word tags -> piece labels -> perfect predictions -> stitched
/// word predictions, for both alignments and every aggregation that applies.
fn round_trip(
    tok: &BertTokenizer,
    sentences: &[TaggedSentence],
    vocab: &LabelVocab,
) -> Result<(), TestCaseError> {
    let n = vocab.len();
    for alignment in [LabelAlignment::FirstSubword, LabelAlignment::AllSubwords] {
        let aligner = LabelAligner::new(vocab, alignment);
        let examples = encode_tagged(tok, sentences, vocab, alignment).unwrap();
        let aggs: &[Aggregation] = match alignment {
            LabelAlignment::FirstSubword => &[Aggregation::First],
            LabelAlignment::AllSubwords => &[
                Aggregation::First,
                Aggregation::Majority,
                Aggregation::Average,
            ],
        };
        let mut at = 0;
        for (i, s) in sentences.iter().enumerate() {
            let windows = &examples[at..at + examples[at].num_windows];
            at += windows.len();
            prop_assert!(
                windows
                    .iter()
                    .all(|w| w.sentence == i && w.num_words == s.len())
            );
            for w in windows {
                prop_assert_eq!(w.labels.len(), w.len());
                prop_assert_eq!(w.labels[0], IGNORE_INDEX);
                prop_assert_eq!(*w.labels.last().unwrap(), IGNORE_INDEX);
                prop_assert!(w.len() <= tok.max_length());
            }
            let dropped = dropped_words(windows.iter().map(|w| w.token_word.as_slice()), s.len());
            let preds: Vec<Vec<u32>> = windows.iter().map(|w| perfect(w, n)).collect();
            let scores: Vec<Vec<f32>> = preds.iter().map(|p| one_hot(p, n)).collect();
            for &agg in aggs {
                let input: Vec<(&TokenExample, TokenPredictions<'_>)> = windows
                    .iter()
                    .zip(&preds)
                    .zip(&scores)
                    .map(|((w, p), sc)| {
                        let p = if agg == Aggregation::Average {
                            TokenPredictions::Scores {
                                scores: sc,
                                num_labels: n,
                            }
                        } else {
                            TokenPredictions::Labels(p)
                        };
                        (w, p)
                    })
                    .collect();
                let back = stitch(&aligner, &input, agg).unwrap();
                prop_assert_eq!(back.len(), s.len());
                for (w, (got, tag)) in back.iter().zip(&s.tags).enumerate() {
                    if dropped.contains(&w) {
                        prop_assert_eq!(*got, None, "word {} {:?}", w, s.tokens[w]);
                    } else {
                        prop_assert_eq!(
                            got.and_then(|g| vocab.label(g)),
                            Some(tag.as_str()),
                            "{:?} {:?} sentence {} word {} {:?}",
                            alignment,
                            agg,
                            i,
                            w,
                            s.tokens[w]
                        );
                    }
                }
            }
        }
        prop_assert_eq!(at, examples.len());
    }
    Ok(())
}

fn tweets() -> Vec<TaggedSentence> {
    vec![
        sentence(
            &[
                "@jane_doe",
                "heading",
                "to",
                "Atlanta's",
                "Fox",
                "Theatre",
                "tonight",
                "!",
                "#concert",
            ],
            &["O", "O", "O", "B-LOC", "B-LOC", "I-LOC", "O", "O", "O"],
        ),
        sentence(
            &[
                "RT",
                "Müller",
                "scores",
                "again",
                "for",
                "Bayern",
                "München",
                "😀",
                "http://t.co/x9Yz",
            ],
            &["O", "B-PER", "O", "O", "O", "B-LOC", "I-LOC", "O", "O"],
        ),
        sentence(
            &[
                "東京", "is", "huge", "...", "can't", "wait", "\u{200b}", "lol",
            ],
            &["B-LOC", "O", "O", "O", "O", "O", "O", "O"],
        ),
        sentence(&["Barack", "Obama"], &["B-PER", "I-PER"]),
        sentence(
            &["unbelievably", "naïve", "ﬁx", "e-mail", "[SEP]"],
            &["O", "B-PER", "I-PER", "O", "O"],
        ),
    ]
}

#[test]
fn round_trip_on_real_looking_tweets() {
    let vocab = iob2();
    round_trip(tokenizer(), &tweets(), &vocab).unwrap();
    // Windowed into tiny windows: words cut by window edges.
    let tok = tokenizer()
        .clone()
        .with_max_length(6)
        .with_length_policy(LengthPolicy::Window { stride: 2 });
    round_trip(&tok, &tweets(), &vocab).unwrap();
}

#[test]
fn encode_tagged_keeps_order() {
    let tok = tokenizer()
        .clone()
        .with_max_length(8)
        .with_length_policy(LengthPolicy::Window { stride: 2 });
    let vocab = iob2();
    let sentences: Vec<TaggedSentence> = tweets().into_iter().cycle().take(60).collect();
    let all = encode_tagged(&tok, &sentences, &vocab, LabelAlignment::FirstSubword).unwrap();
    let mut expected = Vec::new();
    for (i, s) in sentences.iter().enumerate() {
        let mut one = encode_tagged(
            &tok,
            std::slice::from_ref(s),
            &vocab,
            LabelAlignment::FirstSubword,
        )
        .unwrap();
        assert!(one.iter().all(|e| e.sentence == 0));
        one.iter_mut().for_each(|e| e.sentence = i);
        expected.extend(one);
    }
    assert!(all.len() > sentences.len());
    assert_eq!(all, expected);
}

const WORDS: &[&str] = &[
    "the",
    "Atlanta's",
    "tokenization",
    "@user",
    "#NBA",
    "http://t.co/Ab1",
    "don't",
    "Müller",
    "東京",
    "😀",
    "\u{200b}",
    "...",
    "New",
    "York",
    "!",
    "e-mail",
    "unbelievably",
    "naïve",
    "ﬁx",
    "a\u{a0}b",
    "\u{200b}x",
    "(",
    "U.S.",
    "42",
    "Ωmega",
];
const TAGS: &[&str] = &["O", "B-LOC", "I-LOC", "B-PER", "I-PER"];

fn sentences_strategy() -> impl Strategy<Value = Vec<TaggedSentence>> {
    let word = (prop::sample::select(WORDS), prop::sample::select(TAGS));
    prop::collection::vec(prop::collection::vec(word, 1..14), 1..5).prop_map(|ss| {
        ss.into_iter()
            .map(|s| {
                let (words, tags): (Vec<&str>, Vec<&str>) = s.into_iter().unzip();
                sentence(&words, &tags)
            })
            // A sentence of dropped words only cannot be encoded.
            .filter(|s| s.tokens.iter().any(|w| *w != "\u{200b}"))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_sentences_round_trip(sentences in sentences_strategy(), windowed in any::<bool>()) {
        let vocab = iob2();
        let tok = if windowed {
            tokenizer().clone().with_max_length(12).with_length_policy(LengthPolicy::Window { stride: 3 })
        } else {
            tokenizer().clone()
        };
        round_trip(&tok, &sentences, &vocab)?;
    }
}

/// A sentence of about 600 tokens.
fn long_sentence() -> TaggedSentence {
    let mut words = Vec::new();
    let mut tags = Vec::new();
    let mut i = 0;
    while words.len() < 330 {
        let (w, t): (&[&str], &[&str]) = match i % 5 {
            0 => (&["Barack", "Obama"], &["B-PER", "I-PER"]),
            1 => (&["visited", "the"], &["O", "O"]),
            2 => (&["Atlanta's", "tokenization"], &["B-LOC", "I-LOC"]),
            3 => (&["museum", "unbelievably"], &["O", "O"]),
            _ => (&["(", "U.S.", ")"], &["O", "B-LOC", "O"]),
        };
        words.extend(w.iter().map(|s| (*s).to_owned()));
        tags.extend(t.iter().map(|s| (*s).to_owned()));
        i += 1;
    }
    TaggedSentence {
        tokens: words,
        tags,
    }
}

#[test]
fn long_sentence_windows_stitch_back_exactly() {
    let s = long_sentence();
    let full = tokenizer().clone().with_max_length(100_000);
    let full_enc = &full.encode(&s.text_and_spans().0).unwrap()[0];
    let total = full_enc.len() - 2;
    assert!((550..700).contains(&total), "{total} tokens");
    let tok = tokenizer()
        .clone()
        .with_max_length(64)
        .with_length_policy(LengthPolicy::Window { stride: 16 });
    let vocab = iob2();
    let examples = encode_tagged(
        &tok,
        std::slice::from_ref(&s),
        &vocab,
        LabelAlignment::FirstSubword,
    )
    .unwrap();
    // 62 tokens a window, 46 new ones each: ceil((total - 62) / 46) + 1 windows.
    assert_eq!(examples.len(), (total - 62).div_ceil(46) + 1);
    assert!(
        examples
            .iter()
            .all(|e| e.len() <= 64 && e.num_windows == examples.len())
    );
    round_trip(&tok, std::slice::from_ref(&s), &vocab).unwrap();

    // Each word is read from the window where it has the most context: with predictions that
    // say which window they came from, the stitched prediction names the chosen window.
    let windows = LabelVocab::from_labels((0..examples.len()).map(|k| format!("w{k:02}"))).unwrap();
    let aligner = LabelAligner::new(&windows, LabelAlignment::FirstSubword);
    let preds: Vec<Vec<u32>> = examples
        .iter()
        .map(|e| vec![e.window as u32; e.len()])
        .collect();
    let input: Vec<_> = examples
        .iter()
        .zip(&preds)
        .map(|(e, p)| (e, TokenPredictions::Labels(p)))
        .collect();
    let chosen = stitch(&aligner, &input, Aggregation::First).unwrap();
    // Independently: word w's tokens in the full encoding, window k's range of tokens.
    let (_, spans) = s.text_and_spans();
    let word_tokens: Vec<(usize, usize)> = (0..s.len())
        .map(|w| {
            let ts: Vec<usize> = full_enc.offsets[1..full_enc.len() - 1]
                .iter()
                .enumerate()
                .filter(|(_, o)| spans[w].0 <= o.0 && o.0 < spans[w].1)
                .map(|(t, _)| t)
                .collect();
            (ts[0], *ts.last().unwrap())
        })
        .collect();
    // Training labels sit on first pieces only, in every window that holds one.
    for e in &examples {
        let mut g = e.token_start;
        for (t, w) in e.token_word.iter().enumerate() {
            let Some(w) = *w else { continue };
            assert_eq!(
                e.labels[t] != IGNORE_INDEX,
                g == word_tokens[w].0,
                "window {} token {t}",
                e.window
            );
            g += 1;
        }
    }
    for (w, &(a, b)) in word_tokens.iter().enumerate() {
        let mut best: Option<(usize, usize)> = None;
        for e in &examples {
            let (lo, hi) = (e.token_start, e.token_start + e.len() - 2);
            if lo <= a && a < hi {
                let context = (a - lo).min((hi - 1).saturating_sub(b));
                if best.is_none_or(|(c, _)| context > c) {
                    best = Some((context, e.window));
                }
            }
        }
        assert_eq!(chosen[w], best.map(|(_, k)| k as u32), "word {w}");
    }
    // A word in the middle of the first overlap is closer to an edge of window 0 than of 1 or
    // the other way round; both windows occur among the choices.
    assert!(chosen.contains(&Some(0)) && chosen.contains(&Some(1)));
}

#[test]
fn stitch_refuses_windows_out_of_order() {
    let tok = tokenizer()
        .clone()
        .with_max_length(8)
        .with_length_policy(LengthPolicy::Window { stride: 2 });
    let vocab = iob2();
    let a = LabelAligner::new(&vocab, LabelAlignment::FirstSubword);
    let ex = encode_tagged(&tok, &tweets()[..2], &vocab, LabelAlignment::FirstSubword).unwrap();
    assert!(ex[0].num_windows >= 2);
    let p0 = vec![0; ex[0].len()];
    let p1 = vec![0; ex[1].len()];
    let err = stitch(
        &a,
        &[
            (&ex[1], TokenPredictions::Labels(&p1)),
            (&ex[0], TokenPredictions::Labels(&p0)),
        ],
        Aggregation::First,
    )
    .unwrap_err();
    assert!(err.to_string().contains("expected window 0"), "{err}");
    let err = stitch(
        &a,
        &[(&ex[0], TokenPredictions::Labels(&p0))],
        Aggregation::First,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::InvalidArgument {
                what: "windows",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        stitch(&a, &[], Aggregation::First),
        Err(DataError::Empty(_))
    ));
}

#[test]
fn raw_text_words_follow_the_tokenizer() {
    let tok = tokenizer();
    let text = "Hello, I met  Ada Lovelace in New York's Museum\u{200b}.\t東京!";
    let spans = split_words(tok, text).unwrap();
    let words: Vec<&str> = spans.iter().map(|&(s, e)| &text[s..e]).collect();
    assert_eq!(
        words,
        [
            "Hello", ",", "I", "met", "Ada", "Lovelace", "in", "New", "York", "'", "s", "Museum",
            ".", "東", "京", "!"
        ]
    );
    // Label the raw words, predict, and map entities back onto the raw text.
    let mut tags = vec!["O"; words.len()];
    tags[4] = "B-PER";
    tags[5] = "I-PER";
    tags[7] = "B-LOC";
    tags[8] = "I-LOC";
    tags[13] = "B-LOC";
    tags[14] = "I-LOC";
    let found = decode(&tags, Mode::Default).unwrap();
    let got: Vec<&str> = found
        .iter()
        .map(|e| &text[spans[e.start].0..spans[e.end - 1].1])
        .collect();
    assert_eq!(got, ["Ada Lovelace", "New York", "東京"]);
    // A word list made from raw text encodes with one word per tokenizer word.
    let s = TaggedSentence {
        tokens: words.iter().map(|w| (*w).to_owned()).collect(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    };
    let ex = &encode_tagged(tok, &[s], &iob2(), LabelAlignment::FirstSubword).unwrap()[0];
    assert!(dropped_words([ex.token_word.as_slice()], ex.num_words).is_empty());
    assert_eq!(
        ex.labels.iter().filter(|&&l| l != IGNORE_INDEX).count(),
        words.len()
    );
    assert!(split_words(tok, "").unwrap().is_empty());
}

/// One pass of the tokenizer gives the words `split_words` finds and the examples
/// `encode_words` makes for them, windowed or not, through multi-byte text, dropped
/// characters and punctuation.
#[test]
fn encode_text_is_split_words_then_encode_words() {
    let text = "Hello, I met  Ada Lovelace in New York's Museum\u{200b}.\t東京! Zoë 🙂 naïve-ish.";
    let long = text.repeat(12);
    for tok in [
        tokenizer().clone(),
        tokenizer()
            .clone()
            .with_max_length(16)
            .with_length_policy(LengthPolicy::Window { stride: 4 }),
    ] {
        for (i, t) in [text, long.as_str()].into_iter().enumerate() {
            if i == 1 && !matches!(tok.length_policy(), LengthPolicy::Window { .. }) {
                continue;
            }
            let (spans, examples) = encode_text(&tok, t, i).unwrap();
            assert_eq!(spans, split_words(&tok, t).unwrap());
            assert_eq!(examples, encode_words(&tok, t, &spans, i).unwrap());
        }
    }
}

#[test]
fn planned_token_batches_hold_each_example_padded() {
    let tok = tokenizer()
        .clone()
        .with_max_length(10)
        .with_length_policy(LengthPolicy::Window { stride: 3 });
    let words = [
        "Visit",
        "Atlanta's",
        "tokenization",
        "museum",
        "with",
        "Ada",
        "Lovelace",
        "today",
        "!",
    ];
    let sentences: Vec<TaggedSentence> = (1..=words.len())
        .map(|n| {
            let tags: Vec<&str> = (0..n)
                .map(|i| match i % 3 {
                    0 => "B-PER",
                    1 => "I-PER",
                    _ => "O",
                })
                .collect();
            sentence(&words[..n], &tags)
        })
        .collect();
    let examples = encode_tagged(&tok, &sentences, &iob2(), LabelAlignment::FirstSubword).unwrap();
    assert!(
        examples.iter().any(|e| e.num_windows > 1),
        "some sentence is windowed"
    );
    let plan = lora_bert_data::batch::BatchPlan::for_examples(
        &examples,
        lora_bert_data::batch::BatchConfig::new(3)
            .shuffled(5)
            .bucketed(2),
    )
    .unwrap();
    let mut seen = vec![0; examples.len()];
    for indices in plan.epoch(0) {
        let batch =
            lora_bert_data::token::TokenBatch::collate(&examples, &indices, tok.pad_id()).unwrap();
        let longest = indices.iter().map(|&i| examples[i].len()).max().unwrap();
        assert_eq!(batch.shape(), [indices.len(), longest]);
        for (row, &i) in indices.iter().enumerate() {
            seen[i] += 1;
            let e = &examples[i];
            let r = row * longest..(row + 1) * longest;
            assert_eq!(batch.input_ids[r.clone()][..e.len()], e.input_ids[..]);
            assert_eq!(batch.labels[r.clone()][..e.len()], e.labels[..]);
            assert!(
                batch.input_ids[r.clone()][e.len()..]
                    .iter()
                    .all(|&id| id == tok.pad_id())
            );
            assert!(batch.labels[r.clone()][e.len()..].iter().all(|&l| l == I));
            let mask = &batch.attention_mask[r];
            assert_eq!(mask.iter().filter(|&&m| m == 1).count(), e.len());
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "every example once: {seen:?}");
    assert!(matches!(
        lora_bert_data::token::TokenBatch::collate(&examples, &[examples.len()], 0),
        Err(DataError::InvalidArgument { .. })
    ));
}
