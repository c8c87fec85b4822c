//! Tests of `lora_bert_encoder::tokenizer` against the real all-MiniLM-L6-v2 tokenizer and the
//! Hugging Face reference outputs in `tests/fixtures/all-minilm-l6-v2.golden.json`.

use std::path::PathBuf;
use std::sync::OnceLock;

use lora_bert_encoder::tokenizer::{BertTokenizer, Encoding, LengthPolicy, TokenizerError};
use proptest::prelude::*;
use serde::Deserialize;
use tokenizers::{NormalizedString, Normalizer};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Directory holding all-MiniLM-L6-v2's `tokenizer.json` and `vocab.txt`.
fn model_dir() -> PathBuf {
    lora_bert_assets::all_minilm_l6_v2(&lora_bert_assets::AssetCache::from_env().unwrap())
        .unwrap()
        .dir
}

#[derive(Deserialize)]
struct Golden {
    sentences: Vec<Sentence>,
    pair_example: Pair,
    extra_tokenizer_cases: Vec<Case>,
    raw_tokenizers_file_behaviour: RawBehaviour,
}

#[derive(Deserialize)]
struct Sentence {
    text: String,
    num_tokens: usize,
    tokens: Vec<String>,
    input_ids: Vec<u32>,
    token_type_ids: Vec<u32>,
    attention_mask: Vec<u32>,
}

#[derive(Deserialize)]
struct Pair {
    text_a: String,
    text_b: String,
    input_ids: Vec<u32>,
    token_type_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    tokens: Vec<String>,
    input_ids: Vec<u32>,
    token_type_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct RawBehaviour {
    padding: RawPadding,
}

#[derive(Deserialize)]
struct RawPadding {
    length: usize,
    pad_id: u32,
}

fn golden() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| {
        serde_json::from_str(include_str!("fixtures/all-minilm-l6-v2.golden.json")).unwrap()
    })
}

/// The tokenizer from `tokenizer.json`, default settings.
fn tok() -> &'static BertTokenizer {
    static T: OnceLock<BertTokenizer> = OnceLock::new();
    T.get_or_init(|| BertTokenizer::from_file(model_dir().join("tokenizer.json")).unwrap())
}

/// The tokenizer built from `vocab.txt`, default settings.
fn vocab_tok() -> &'static BertTokenizer {
    static T: OnceLock<BertTokenizer> = OnceLock::new();
    T.get_or_init(|| BertTokenizer::from_vocab(model_dir().join("vocab.txt"), true).unwrap())
}

fn both() -> [(&'static str, &'static BertTokenizer); 2] {
    [("from_file", tok()), ("from_vocab", vocab_tok())]
}

fn single(t: &BertTokenizer, text: &str) -> Encoding {
    let mut v = t.encode(text).unwrap();
    assert_eq!(v.len(), 1, "{text:?} gave {} encodings", v.len());
    v.pop().unwrap()
}

/// The full, untruncated encoding of `text`.
fn full(text: &str) -> Encoding {
    single(&tok().clone().with_max_length(usize::MAX), text)
}

/// Non-special tokens of sequence `seq`: (id, token, offsets, word id).
type Tok = (u32, String, (usize, usize), Option<u32>);
fn content(e: &Encoding, seq: usize) -> Vec<Tok> {
    (0..e.len())
        .filter(|&i| e.sequence_ids[i] == Some(seq))
        .map(|i| (e.ids[i], e.tokens[i].clone(), e.offsets[i], e.word_ids[i]))
        .collect()
}

/// Deterministic long text: golden sentence 4 (53 non-special tokens) repeated `k` times.
fn long_text(k: usize) -> (String, usize) {
    let s = &golden().sentences[4];
    let text = vec![s.text.as_str(); k].join(" ");
    (text, k * (s.num_tokens - 2) + 2)
}

// ---------------------------------------------------------------------------------------------
// 1. Golden ids, both constructors
// ---------------------------------------------------------------------------------------------

#[test]
fn golden_sentences_match_reference() {
    for (name, t) in both() {
        for s in &golden().sentences {
            let e = single(t, &s.text);
            assert_eq!(e.tokens, s.tokens, "{name}: {:?}", s.text);
            assert_eq!(e.ids, s.input_ids, "{name}: {:?}", s.text);
            assert_eq!(e.type_ids, s.token_type_ids, "{name}: {:?}", s.text);
            assert_eq!(e.len(), s.num_tokens);
            assert!(!e.truncated);
            assert_eq!(
                (e.source, e.window, e.num_windows, e.token_start),
                (0, 0, 1, 0)
            );
        }
    }
}

#[test]
fn golden_pair_matches_reference() {
    let p = &golden().pair_example;
    for (name, t) in both() {
        let v = t.encode_pair(&p.text_a, &p.text_b).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].ids, p.input_ids, "{name}");
        assert_eq!(v[0].type_ids, p.token_type_ids, "{name}");
        // Each half is the single encoding of its text.
        let a = single(t, &p.text_a);
        let b = single(t, &p.text_b);
        assert_eq!(content(&v[0], 0), content(&a, 0), "{name}");
        assert_eq!(content(&v[0], 1), content(&b, 0), "{name}");
    }
}

#[test]
fn golden_extra_cases_match_reference() {
    for (name, t) in both() {
        let lenient = t.clone().allow_empty(true);
        for c in &golden().extra_tokenizer_cases {
            let e = single(&lenient, &c.text);
            assert_eq!(e.tokens, c.tokens, "{name}: {:?}", c.text);
            assert_eq!(e.ids, c.input_ids, "{name}: {:?}", c.text);
            assert_eq!(e.type_ids, c.token_type_ids, "{name}: {:?}", c.text);
            if c.text.trim().is_empty() {
                assert_eq!(
                    t.encode(&c.text),
                    Err(TokenizerError::EmptyText { index: 0 }),
                    "{name}"
                );
            } else {
                assert_eq!(
                    single(t, &c.text),
                    e,
                    "{name}: allow_empty changed {:?}",
                    c.text
                );
            }
        }
        assert!(
            golden()
                .extra_tokenizer_cases
                .iter()
                .any(|c| c.text.is_empty())
        );
    }
}

#[test]
fn empty_and_whitespace_text_is_a_typed_error_unless_allowed() {
    for (name, t) in both() {
        for text in ["", " ", "   \t\n ", "\u{0}\u{7}", "\u{3000}"] {
            assert_eq!(
                t.encode(text),
                Err(TokenizerError::EmptyText { index: 0 }),
                "{name}: {text:?}"
            );
            assert_eq!(
                t.encode_pair("question", text),
                Err(TokenizerError::EmptyText { index: 0 }),
                "{name}: {text:?}"
            );
            assert_eq!(
                t.encode_pair(text, "answer"),
                Err(TokenizerError::EmptyText { index: 0 }),
                "{name}: {text:?}"
            );
            let e = single(&t.clone().allow_empty(true), text);
            assert_eq!(e.tokens, ["[CLS]", "[SEP]"], "{name}: {text:?}");
            assert_eq!(e.ids, [101, 102]);
        }
        assert_eq!(
            t.encode_batch(&["fine", "also fine", "  "]).unwrap_err(),
            TokenizerError::EmptyText { index: 2 }
        );
        let err = t.encode("").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }
}

#[test]
fn from_vocab_agrees_with_from_file_on_tricky_texts() {
    let texts = [
        "[CLS] literal [SEP] special [MASK] tokens [PAD] and [UNK]",
        "lowercase [cls] is not special",
        "Ünïcödé ÀÉÎÕÜ ǅ ﬁ ﬂ Straße İstanbul ΣΊΣΥΦΟΣ",
        "控制字符\u{0}\u{1}\u{7f}\u{200b}zero width\u{feff}bom",
        "mixed 日本語テキスト and 한국어 text with ½ ² ① ㎏",
        "https://example.com/path?q=1&r=2#frag user@mail.org",
        &"a".repeat(150),
        &"é".repeat(120),
        "tabs\tand\r\nwindows\u{2028}line\u{2029}seps\u{85}nel",
        "👩‍👩‍👧‍👦 family 🇫🇷 flag e\u{301}\u{301} combining",
    ];
    let big_f = tok().clone().with_max_length(usize::MAX).allow_empty(true);
    let big_v = vocab_tok()
        .clone()
        .with_max_length(usize::MAX)
        .allow_empty(true);
    for text in texts {
        assert_eq!(big_f.encode(text), big_v.encode(text), "{text:?}");
    }
    let pairs: Vec<(&str, &str)> = texts.windows(2).map(|w| (w[0], w[1])).collect();
    assert_eq!(
        big_f.encode_pair_batch(&pairs),
        big_v.encode_pair_batch(&pairs)
    );
    // Literal special tokens are recognised, exactly like tokenizer.json.
    let e = single(&big_f, texts[0]);
    assert_eq!(e.ids[1], 101);
    assert!(e.ids.contains(&103));
    assert_eq!(vocab_tok().vocab_size(), tok().vocab_size());
    assert_eq!(vocab_tok().pad_id(), tok().pad_id());
}

#[test]
fn accessors() {
    let t = tok();
    assert_eq!(t.vocab_size(), 30522);
    assert_eq!(
        t.pad_id(),
        golden().raw_tokenizers_file_behaviour.padding.pad_id
    );
    assert_eq!(t.pad_id(), 0);
    assert_eq!(t.max_length(), 512);
    assert_eq!(t.length_policy(), LengthPolicy::Error);
    assert_eq!(t.token_to_id("[CLS]"), Some(101));
    assert_eq!(t.token_to_id("[SEP]"), Some(102));
    assert_eq!(t.token_to_id("hello"), Some(7592));
    assert_eq!(t.token_to_id("##izer"), Some(17629));
    assert_eq!(t.token_to_id("definitely-not-a-token"), None);
    assert_eq!(t.id_to_token(7592).as_deref(), Some("hello"));
    let t2 = t
        .clone()
        .with_max_length(64)
        .with_length_policy(LengthPolicy::Truncate);
    assert_eq!(t2.max_length(), 64);
    assert_eq!(t2.length_policy(), LengthPolicy::Truncate);
    assert_eq!(t.max_length(), 512, "builders must not affect the original");
    assert!(format!("{t:?}").contains("max_length"));
}

#[test]
fn load_errors_are_typed() {
    let missing = model_dir().join("no-such-file.json");
    match BertTokenizer::from_file(&missing) {
        Err(TokenizerError::Load { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        BertTokenizer::from_vocab(&missing, true),
        Err(TokenizerError::Load { .. })
    ));
    let dir = std::env::temp_dir().join(format!("lora-bert-tok-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_vocab = dir.join("vocab.txt");
    std::fs::write(&bad_vocab, "[PAD]\n[UNK]\nhello\n").unwrap();
    match BertTokenizer::from_vocab(&bad_vocab, true) {
        Err(TokenizerError::Load { message, .. }) => {
            assert!(message.contains("[CLS]"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let bad_json = dir.join("tokenizer.json");
    std::fs::write(&bad_json, "{ not json").unwrap();
    assert!(matches!(
        BertTokenizer::from_file(&bad_json),
        Err(TokenizerError::Load { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. The file's Fixed(128) padding and 128 truncation are off
// ---------------------------------------------------------------------------------------------

#[test]
fn baked_in_padding_and_truncation_are_off() {
    assert_eq!(golden().raw_tokenizers_file_behaviour.padding.length, 128);
    let s = &golden().sentences[1];
    let e = single(tok(), &s.text);
    assert_eq!(e.len(), s.num_tokens);
    assert!(e.len() < 128);
    assert!(!e.ids.contains(&0), "no [PAD] in an unpadded encoding");
    // Longer than the file's 128 but within the default 512: kept whole.
    let (text, n) = long_text(4);
    assert!(n > 128 && n <= 512);
    assert_eq!(single(tok(), &text).len(), n);
}

// ---------------------------------------------------------------------------------------------
// 3. Offsets and word ids
// ---------------------------------------------------------------------------------------------

/// What the tokenizer's own normalizer makes of `s` (lower-cased, accents stripped, ...).
fn normalize(s: &str) -> String {
    let mut n = NormalizedString::from(s);
    tok()
        .inner()
        .get_normalizer()
        .unwrap()
        .normalize(&mut n)
        .unwrap();
    n.get().trim().to_string()
}

fn check_offsets(e: &Encoding, texts: &[&str]) {
    let mut last_start = vec![0usize; texts.len()];
    for i in 0..e.len() {
        let (s, end) = e.offsets[i];
        let Some(seq) = e.sequence_ids[i] else {
            assert_eq!((s, end), (0, 0), "special token {i} {:?}", e.tokens[i]);
            assert_eq!(e.special_tokens_mask[i], 1);
            assert_eq!(e.word_ids[i], None);
            continue;
        };
        assert_eq!(e.special_tokens_mask[i], 0);
        let text = texts[seq];
        assert!(
            s < end && end <= text.len(),
            "token {i} {:?}: {s}..{end}",
            e.tokens[i]
        );
        assert!(text.is_char_boundary(s) && text.is_char_boundary(end));
        assert!(s >= last_start[seq], "offsets must not decrease");
        last_start[seq] = s;
        let token = &e.tokens[i];
        let literal_special =
            ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"].contains(&token.as_str());
        if !literal_special {
            let piece = token.strip_prefix("##").unwrap_or(token);
            assert_eq!(normalize(&text[s..end]), piece, "token {i} of {text:?}");
        }
        // Word ids: "##" pieces share their head's word; anything else starts a new word.
        if i > 0 && e.sequence_ids[i - 1] == Some(seq) {
            if token.starts_with("##") {
                assert_eq!(e.word_ids[i], e.word_ids[i - 1], "{token}");
            } else {
                assert_ne!(e.word_ids[i], e.word_ids[i - 1], "{token}");
            }
        } else if e.window == 0 {
            // A later window may start inside a word; the text itself may not.
            assert!(!token.starts_with("##"));
        }
    }
}

#[test]
fn offsets_point_into_the_original_text() {
    for (name, t) in both() {
        let t = t.clone().allow_empty(true);
        for s in &golden().sentences {
            check_offsets(&single(&t, &s.text), &[&s.text]);
        }
        for c in &golden().extra_tokenizer_cases {
            check_offsets(&single(&t, &c.text), &[&c.text]);
        }
        let p = &golden().pair_example;
        let v = t.encode_pair(&p.text_a, &p.text_b).unwrap();
        check_offsets(&v[0], &[&p.text_a, &p.text_b]);
        let _ = name;
    }
    // Spot checks: accents map back to the accented original, pieces to their sub-spans.
    let text = &golden().sentences[3].text; // "Zürich's café served crème brûlée ..."
    let e = single(tok(), text);
    let i = e.tokens.iter().position(|t| t == "cafe").unwrap();
    assert_eq!(&text[e.offsets[i].0..e.offsets[i].1], "café");
    let text = "supercalifragilisticexpialidocious";
    let e = single(tok(), text);
    assert_eq!(&text[e.offsets[2].0..e.offsets[2].1], "cal");
    assert!(e.word_ids[1..e.len() - 1].iter().all(|w| *w == Some(0)));
}

// ---------------------------------------------------------------------------------------------
// 4. Batches
// ---------------------------------------------------------------------------------------------

#[test]
fn batch_is_padded_to_longest_and_rows_equal_single_encodes() {
    let texts: Vec<&str> = golden().sentences.iter().map(|s| s.text.as_str()).collect();
    for (name, t) in both() {
        let b = t.encode_batch(&texts).unwrap();
        let longest = golden()
            .sentences
            .iter()
            .map(|s| s.num_tokens)
            .max()
            .unwrap();
        assert_eq!(b.shape(), [texts.len(), longest], "{name}");
        assert_eq!(b.len(), texts.len());
        assert!(!b.is_empty());
        assert_eq!(b.input_ids.len(), texts.len() * longest);
        assert_eq!(b.type_ids.len(), texts.len() * longest);
        assert_eq!(b.attention_mask.len(), texts.len() * longest);
        for (r, s) in golden().sentences.iter().enumerate() {
            let row = r * longest..(r + 1) * longest;
            let n = s.num_tokens;
            assert_eq!(
                b.encodings[r],
                Encoding {
                    source: r,
                    ..single(t, &s.text)
                }
            );
            assert_eq!(b.input_ids[row.clone()][..n], s.input_ids[..]);
            assert!(
                b.input_ids[row.clone()][n..]
                    .iter()
                    .all(|&x| x == t.pad_id())
            );
            assert_eq!(b.type_ids[row.clone()][..n], s.token_type_ids[..]);
            assert!(b.type_ids[row.clone()][n..].iter().all(|&x| x == 0));
            assert_eq!(b.attention_mask[row.clone()][..n], s.attention_mask[..]);
            assert!(b.attention_mask[row][n..].iter().all(|&x| x == 0));
        }
    }
}

#[test]
fn pair_batch_and_single_row_batch() {
    let p = &golden().pair_example;
    let s0 = &golden().sentences[0];
    let b = tok()
        .encode_pair_batch(&[(&p.text_a, &p.text_b), ("short", "pair")])
        .unwrap();
    let n = p.input_ids.len();
    assert_eq!(b.shape(), [2, n]);
    assert_eq!(b.input_ids[..n], p.input_ids[..]);
    assert_eq!(b.type_ids[..n], p.token_type_ids[..]);
    let short = &tok().encode_pair("short", "pair").unwrap()[0];
    assert_eq!(
        b.encodings[1],
        Encoding {
            source: 1,
            ..short.clone()
        }
    );
    assert_eq!(short.type_ids, [0, 0, 0, 1, 1]);
    assert_eq!(b.attention_mask[n..n + 5], [1; 5]);
    assert!(b.attention_mask[n + 5..].iter().all(|&x| x == 0));

    let one = tok().encode_batch(&[&s0.text]).unwrap();
    assert_eq!(one.shape(), [1, s0.num_tokens]);
    assert!(one.attention_mask.iter().all(|&x| x == 1));
}

#[test]
fn doc_example_holds() {
    let t = BertTokenizer::from_file(model_dir().join("tokenizer.json"))
        .unwrap()
        .with_max_length(128)
        .with_length_policy(LengthPolicy::Window { stride: 32 });
    let enc = t.encode("Hello, world!").unwrap();
    assert_eq!(
        enc[0].tokens,
        ["[CLS]", "hello", ",", "world", "!", "[SEP]"]
    );
    assert_eq!(enc[0].ids, [101, 7592, 1010, 2088, 999, 102]);
    let batch = t
        .encode_batch(&["a short text", "a somewhat longer text here"])
        .unwrap();
    assert_eq!(batch.shape(), [2, 7]);
    assert_eq!(batch.attention_mask[..7], [1, 1, 1, 1, 1, 0, 0]);
}

#[test]
fn batch_errors_are_typed_and_indexed() {
    assert_eq!(tok().encode_batch(&[]), Err(TokenizerError::EmptyBatch));
    assert_eq!(
        tok().encode_pair_batch(&[]),
        Err(TokenizerError::EmptyBatch)
    );
    let (long, n) = long_text(3);
    let t = tok().clone().with_max_length(64);
    assert_eq!(
        t.encode_batch(&["ok", "fine", &long, ""]),
        Err(TokenizerError::TooLong {
            index: 2,
            tokens: n,
            max: 64
        })
    );
    assert_eq!(
        t.encode_pair_batch(&[("ok", "fine"), ("q", &long)]),
        Err(TokenizerError::TooLong {
            index: 1,
            tokens: n + 2,
            max: 64
        })
    );
}

#[test]
fn window_batch_rows_are_in_order_with_source_and_window() {
    let (long, n) = long_text(5);
    let t = tok()
        .clone()
        .with_max_length(64)
        .with_length_policy(LengthPolicy::Window { stride: 8 });
    let b = t.encode_batch(&["first text", &long, "last"]).unwrap();
    let windows = t.encode(&long).unwrap();
    assert!(windows.len() > 2);
    assert_eq!(b.len(), 2 + windows.len());
    assert_eq!(b.seq_len, 64);
    let tags: Vec<(usize, usize)> = b.encodings.iter().map(|e| (e.source, e.window)).collect();
    let mut expect = vec![(0, 0)];
    expect.extend((0..windows.len()).map(|w| (1, w)));
    expect.push((2, 0));
    assert_eq!(tags, expect);
    for (w, e) in windows.iter().enumerate() {
        assert_eq!(
            b.encodings[1 + w],
            Encoding {
                source: 1,
                ..e.clone()
            }
        );
        assert_eq!(e.num_windows, windows.len());
    }
    let covered: usize =
        windows.iter().map(|e| e.len() - 2).sum::<usize>() - 8 * (windows.len() - 1);
    assert_eq!(covered, n - 2);
}

// ---------------------------------------------------------------------------------------------
// 5. Long texts: Error, Truncate, Window
// ---------------------------------------------------------------------------------------------

#[test]
fn long_text_error_policy_reports_count() {
    let per_sentence = golden().sentences[4].text.split_whitespace().count();
    let (text, n) = long_text(2000usize.div_ceil(per_sentence));
    assert!(text.split_whitespace().count() >= 2000);
    assert_eq!(full(&text).len(), n);
    assert_eq!(
        tok().encode(&text),
        Err(TokenizerError::TooLong {
            index: 0,
            tokens: n,
            max: 512
        })
    );
    let t = tok().clone().with_max_length(128);
    assert_eq!(
        t.encode(&text),
        Err(TokenizerError::TooLong {
            index: 0,
            tokens: n,
            max: 128
        })
    );
    let msg = t.encode(&text).unwrap_err().to_string();
    assert!(msg.contains(&n.to_string()) && msg.contains("128"), "{msg}");
    // Exactly max fits.
    let (text, n) = long_text(2);
    assert_eq!(single(&tok().clone().with_max_length(n), &text).len(), n);
    assert!(tok().clone().with_max_length(n - 1).encode(&text).is_err());
}

#[test]
fn long_text_truncate_policy_cuts_to_max() {
    let (text, _) = long_text(40);
    let reference = full(&text);
    for max in [3, 16, 128, 512] {
        let t = tok()
            .clone()
            .with_max_length(max)
            .with_length_policy(LengthPolicy::Truncate);
        let e = single(&t, &text);
        assert_eq!(e.len(), max);
        assert!(e.truncated);
        assert_eq!(e.tokens[0], "[CLS]");
        assert_eq!(e.tokens[max - 1], "[SEP]");
        assert_eq!(e.special_tokens_mask[max - 1], 1);
        assert_eq!(content(&e, 0)[..], content(&reference, 0)[..max - 2]);
        check_offsets(&e, &[&text]);
    }
    // Short text is untouched and not marked.
    let t = tok()
        .clone()
        .with_max_length(128)
        .with_length_policy(LengthPolicy::Truncate);
    let s = &golden().sentences[0];
    let e = single(&t, &s.text);
    assert!(!e.truncated);
    assert_eq!(e.ids, s.input_ids);
    // Pairs: longest first.
    let (long, _) = long_text(3);
    let e = &t.encode_pair("a short question?", &long).unwrap()[0];
    assert_eq!(e.len(), 128);
    assert!(e.truncated);
    assert_eq!(content(e, 0).len(), 4);
    assert_eq!(content(e, 1).len(), 128 - 3 - 4);
    assert_eq!(e.tokens.iter().filter(|t| *t == "[SEP]").count(), 2);
    let e = &t.encode_pair(&long, &long).unwrap()[0];
    assert_eq!((content(e, 0).len(), content(e, 1).len()), (62, 63));
    // Too small to hold any text.
    let t = tok()
        .clone()
        .with_max_length(2)
        .with_length_policy(LengthPolicy::Truncate);
    assert!(matches!(
        t.encode("hi"),
        Err(TokenizerError::InvalidPolicy { .. })
    ));
}

/// Checks every window invariant of `windows` (the encodings of `text` under
/// `Window { stride }` with `max` tokens) against the full encoding `reference`.
fn check_windows(windows: &[Encoding], reference: &Encoding, max: usize, stride: usize) {
    let all = content(reference, 0);
    assert!(!windows.is_empty());
    if reference.len() <= max {
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0], *reference);
        return;
    }
    let n = windows.len();
    let mut rebuilt: Vec<Tok> = Vec::new();
    for (w, e) in windows.iter().enumerate() {
        assert_eq!((e.window, e.num_windows, e.source), (w, n, 0));
        assert!(e.len() <= max, "window {w} has {} tokens > {max}", e.len());
        assert_eq!(e.tokens[0], "[CLS]");
        assert_eq!(e.tokens[e.len() - 1], "[SEP]");
        assert_eq!(e.ids[0], 101);
        assert_eq!(e.ids[e.len() - 1], 102);
        assert!(!e.truncated);
        assert!(e.type_ids.iter().all(|&x| x == 0));
        let c = content(e, 0);
        assert_eq!(c.len(), e.len() - 2, "specials only at the ends");
        assert!(!c.is_empty(), "window {w} is empty");
        assert_eq!(
            c[..],
            all[e.token_start..e.token_start + c.len()],
            "window {w}"
        );
        if w + 1 < n {
            assert_eq!(e.len(), max, "only the last window may be short");
            let next = &windows[w + 1];
            assert_eq!(next.token_start, e.token_start + c.len() - stride);
            let nc = content(next, 0);
            assert_eq!(c[c.len() - stride..], nc[..stride], "overlap {w}");
        }
        if w == 0 {
            assert_eq!(e.token_start, 0);
            rebuilt.extend(c);
        } else {
            rebuilt.extend_from_slice(&c[stride..]);
        }
    }
    assert_eq!(rebuilt, all, "windows minus overlaps rebuild the text");
}

#[test]
fn long_text_window_policy_stride_32_max_128() {
    let (text, n) = long_text(40);
    let reference = full(&text);
    assert_eq!(reference.len(), n);
    for (name, t) in both() {
        let t = t
            .clone()
            .with_max_length(128)
            .with_length_policy(LengthPolicy::Window { stride: 32 });
        let windows = t.encode(&text).unwrap();
        // ceil((content - 126) / 94) + 1 windows.
        assert_eq!(windows.len(), (n - 2 - 126).div_ceil(94) + 1, "{name}");
        check_windows(&windows, &reference, 128, 32);
        for w in &windows {
            check_offsets(w, &[&text]);
        }
    }
}

#[test]
fn window_policy_rejects_impossible_strides() {
    for stride in [126, 127, 500] {
        let t = tok()
            .clone()
            .with_max_length(128)
            .with_length_policy(LengthPolicy::Window { stride });
        for r in [t.encode("short"), t.encode_pair("a", "b")] {
            assert!(
                matches!(r, Err(TokenizerError::InvalidPolicy { .. })),
                "{stride}"
            );
        }
        assert!(matches!(
            t.encode_batch(&["short"]),
            Err(TokenizerError::InvalidPolicy { .. })
        ));
    }
    let t = tok()
        .clone()
        .with_max_length(128)
        .with_length_policy(LengthPolicy::Window { stride: 125 });
    assert!(t.encode("short").is_ok());
    let err = tok()
        .clone()
        .with_max_length(2)
        .with_length_policy(LengthPolicy::Window { stride: 0 })
        .encode("x")
        .unwrap_err();
    assert!(matches!(
        err,
        TokenizerError::InvalidPolicy { max_length: 2, .. }
    ));
}

/// Checks pair windows: `a` whole in every window, `b` windowed like a single text.
fn check_pair_windows(windows: &[Encoding], a: &str, b: &str, max: usize, stride: usize) {
    let reference = tok()
        .clone()
        .with_max_length(usize::MAX)
        .allow_empty(true)
        .encode_pair(a, b)
        .unwrap()
        .remove(0);
    let all_a = content(&reference, 0);
    let all_b = content(&reference, 1);
    if reference.len() <= max {
        assert_eq!(windows, [reference]);
        return;
    }
    let n = windows.len();
    let mut rebuilt = Vec::new();
    for (w, e) in windows.iter().enumerate() {
        assert_eq!((e.window, e.num_windows), (w, n));
        assert!(e.len() <= max);
        assert_eq!(content(e, 0), all_a);
        let c = content(e, 1);
        assert!(!c.is_empty());
        assert_eq!(c[..], all_b[e.token_start..e.token_start + c.len()]);
        let expected_types: Vec<u32> = (0..e.len())
            .map(|i| u32::from(i > all_a.len() + 1))
            .collect();
        assert_eq!(e.type_ids, expected_types);
        check_offsets(e, &[a, b]);
        if w + 1 < n {
            assert_eq!(e.len(), max);
            assert_eq!(windows[w + 1].token_start, e.token_start + c.len() - stride);
        }
        if w == 0 {
            rebuilt.extend(c);
        } else {
            rebuilt.extend_from_slice(&c[stride..]);
        }
    }
    assert_eq!(rebuilt, all_b);
}

#[test]
fn pair_window_policy_windows_second_text_only() {
    let (long, _) = long_text(10);
    let q = "What did the small research team realise?";
    let t = tok()
        .clone()
        .with_max_length(128)
        .with_length_policy(LengthPolicy::Window { stride: 32 });
    let windows = t.encode_pair(q, &long).unwrap();
    assert!(windows.len() > 3);
    check_pair_windows(&windows, q, &long, 128, 32);
    // The first text is so long that fewer than stride + 1 tokens of b fit: TooLong.
    let (a, na) = long_text(2); // 108 tokens with specials, 106 without
    let total = na - 2 + (long_text(10).1 - 2) + 3;
    assert_eq!(
        t.encode_pair(&a, &long),
        Err(TokenizerError::TooLong {
            index: 0,
            tokens: total,
            max: 128
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

const WORDS: &[&str] = &[
    "the",
    "a",
    "research",
    "team",
    "measurement",
    "supercalifragilisticexpialidocious",
    "antidisestablishmentarianism",
    "uncharacteristically",
    "tokenizers",
    "don't",
    "well-known",
    "2024",
    "3.14159",
    "café",
    "crème",
    "brûlée",
    "Zürich",
    "naïve",
    "東京",
    "北京",
    "日本語",
    "🙂",
    "👩‍👩‍👧",
    "!",
    "?",
    "...",
    ",",
    "(",
    ")",
    "\"",
    "https://example.org/a?b=c",
    "[MASK]",
    "[SEP]",
    "Straße",
    "İstanbul",
    "e\u{301}",
    "x",
    "NATO",
    "D.C.",
    "ΣΊΣΥΦΟΣ",
    "",
];

fn words_text(max_words: usize) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(WORDS), 0..max_words),
        prop::sample::select(&[" ", "  ", "\n", "\t", " \u{a0}"][..]),
    )
        .prop_map(|(words, sep)| words.join(sep))
}

fn max_and_stride() -> impl Strategy<Value = (usize, usize)> {
    (3usize..=160).prop_flat_map(|max| (Just(max), 0..max - 2))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn prop_windows_cover_text_with_exact_overlap(
        text in words_text(400),
        (max, stride) in max_and_stride(),
    ) {
        let t = tok()
            .clone()
            .with_max_length(max)
            .with_length_policy(LengthPolicy::Window { stride })
            .allow_empty(true);
        let windows = t.encode(&text).unwrap();
        let reference = single(&tok().clone().with_max_length(usize::MAX).allow_empty(true), &text);
        check_windows(&windows, &reference, max, stride);
    }

    #[test]
    fn prop_window_32_of_128(text in words_text(600)) {
        let t = tok()
            .clone()
            .with_max_length(128)
            .with_length_policy(LengthPolicy::Window { stride: 32 })
            .allow_empty(true);
        let windows = t.encode(&text).unwrap();
        let reference = single(&tok().clone().with_max_length(usize::MAX).allow_empty(true), &text);
        check_windows(&windows, &reference, 128, 32);
    }

    #[test]
    fn prop_pair_windows(
        a in words_text(12),
        b in words_text(300),
        (max, stride) in max_and_stride(),
    ) {
        let t = tok()
            .clone()
            .with_max_length(max)
            .with_length_policy(LengthPolicy::Window { stride })
            .allow_empty(true);
        match t.encode_pair(&a, &b) {
            Ok(windows) => check_pair_windows(&windows, &a, &b, max, stride),
            Err(TokenizerError::TooLong { tokens, max: m, .. }) => {
                let r = full_pair(&a, &b);
                prop_assert_eq!(tokens, r.len());
                prop_assert_eq!(m, max);
                prop_assert!(r.len() > max);
                // Room for b after [CLS] a [SEP] ... [SEP] is not more than the stride.
                prop_assert!(max.saturating_sub(3 + content(&r, 0).len()) <= stride);
            }
            Err(TokenizerError::InvalidPolicy { .. }) => prop_assert!(stride + 4 >= max),
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }

    #[test]
    fn prop_truncate(text in words_text(300), b in words_text(100), max in 5usize..200) {
        let t = tok()
            .clone()
            .with_max_length(max)
            .with_length_policy(LengthPolicy::Truncate)
            .allow_empty(true);
        let reference = single(&tok().clone().with_max_length(usize::MAX).allow_empty(true), &text);
        let e = single(&t, &text);
        prop_assert_eq!(e.len(), reference.len().min(max));
        prop_assert_eq!(e.truncated, reference.len() > max);
        prop_assert_eq!(e.tokens.last().map(String::as_str), Some("[SEP]"));
        let c = content(&e, 0);
        prop_assert_eq!(&c[..], &content(&reference, 0)[..c.len()]);

        let r = full_pair(&text, &b);
        let v = t.encode_pair(&text, &b).unwrap();
        prop_assert_eq!(v.len(), 1);
        prop_assert_eq!(v[0].len(), r.len().min(max));
        let (ca, cb) = (content(&v[0], 0), content(&v[0], 1));
        prop_assert_eq!(&ca[..], &content(&r, 0)[..ca.len()]);
        prop_assert_eq!(&cb[..], &content(&r, 1)[..cb.len()]);
    }

    #[test]
    fn prop_batch_rows_equal_single_encodes(texts in prop::collection::vec(words_text(40), 1..8)) {
        let t = tok().clone().allow_empty(true);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let b = t.encode_batch(&refs).unwrap();
        prop_assert_eq!(b.len(), texts.len());
        for (i, text) in texts.iter().enumerate() {
            let e = single(&t, text);
            let row = i * b.seq_len..(i + 1) * b.seq_len;
            prop_assert_eq!(&b.input_ids[row.clone()][..e.len()], &e.ids[..]);
            prop_assert_eq!(
                b.attention_mask[row].iter().sum::<u32>() as usize,
                e.len()
            );
            prop_assert_eq!(&b.encodings[i], &Encoding { source: i, ..e });
        }
    }
}

fn full_pair(a: &str, b: &str) -> Encoding {
    tok()
        .clone()
        .with_max_length(usize::MAX)
        .allow_empty(true)
        .encode_pair(a, b)
        .unwrap()
        .remove(0)
}

/// Encoding arbitrary Unicode never panics: it is Ok (with sane encodings) or a typed error.
fn check_any(t: &BertTokenizer, text: &str) -> Result<(), TestCaseError> {
    match t.encode(text) {
        Ok(v) => {
            prop_assert!(!v.is_empty());
            for e in &v {
                prop_assert!(e.len() >= 2 && e.len() <= t.max_length());
                for (i, &(s, end)) in e.offsets.iter().enumerate() {
                    if e.sequence_ids[i].is_some() {
                        prop_assert!(s <= end && end <= text.len());
                        prop_assert!(text.is_char_boundary(s) && text.is_char_boundary(end));
                    }
                }
            }
        }
        Err(TokenizerError::EmptyText { index: 0 })
        | Err(TokenizerError::TooLong { index: 0, .. }) => {}
        Err(e) => prop_assert!(false, "unexpected error {e:?}"),
    }
    match t.encode_pair(text, text) {
        Ok(_) | Err(TokenizerError::EmptyText { .. }) | Err(TokenizerError::TooLong { .. }) => {}
        Err(e) => prop_assert!(false, "unexpected pair error {e:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn prop_no_panic_on_arbitrary_unicode(
        text in any::<String>(),
        policy in prop_oneof![
            Just(LengthPolicy::Error),
            Just(LengthPolicy::Truncate),
            Just(LengthPolicy::Window { stride: 3 }),
        ],
        allow in any::<bool>(),
    ) {
        for t in [tok(), vocab_tok()] {
            let t = t.clone().with_max_length(16).with_length_policy(policy).allow_empty(allow);
            check_any(&t, &text)?;
        }
    }

    #[test]
    fn prop_no_panic_on_printable_text(text in "\\PC{0,300}") {
        check_any(tok(), &text)?;
        let t = tok().clone().with_max_length(24).with_length_policy(LengthPolicy::Window { stride: 5 });
        check_any(&t, &text)?;
    }
}
