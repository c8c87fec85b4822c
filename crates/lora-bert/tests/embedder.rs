//! End to end: text through the tokenizer and the encoder, against transformers.

use lora_bert::encoder::tokenizer::{LengthPolicy, TokenizerError};
use lora_bert::{Backend, Embedder, Error, device};
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lora-bert-encoder/tests/fixtures/all-minilm-l6-v2.golden.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn embedder() -> Embedder {
    let device = device::device(Backend::default_cpu().unwrap()).unwrap();
    Embedder::all_minilm_l6_v2(&device).unwrap()
}

#[test]
fn texts_embed_like_transformers() {
    let g = golden();
    let sentences = g["sentences"].as_array().unwrap();
    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let e = embedder();
    let out = e.embed(&texts).unwrap();
    assert_eq!(out.len(), texts.len());
    for (i, s) in sentences.iter().enumerate() {
        let enc = &out.batch.encodings[i];
        let tokens: Vec<&str> = s["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(enc.tokens, tokens);
        let states: Vec<&[f32]> = out.token_states(i).collect();
        assert_eq!(states.len(), tokens.len());
        for (t, want) in s["last_hidden_state_first8"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            for (a, b) in states[t][..8].iter().zip(f32s(want)) {
                assert!((a - b).abs() < 1e-4, "sentence {i} token {t}: {a} vs {b}");
            }
        }
        for (a, b) in out.pooled(i)[..16]
            .iter()
            .zip(f32s(&s["mean_pooled_first16"]))
        {
            assert!((a - b).abs() < 1e-4, "sentence {i} pooled: {a} vs {b}");
        }
    }
}

#[test]
fn similarity_sanity_figures_hold() {
    // From the asset notes: cos = 0.755 and 0.004 for sentence-transformers.
    let out = embedder()
        .embed(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The stock market fell sharply today.",
        ])
        .unwrap();
    assert!(
        (out.cosine(0, 1) - 0.755).abs() < 1e-3,
        "{}",
        out.cosine(0, 1)
    );
    assert!(
        (out.cosine(0, 2) - 0.004).abs() < 1e-3,
        "{}",
        out.cosine(0, 2)
    );
}

#[test]
fn bad_texts_are_typed_errors_and_long_texts_can_be_truncated() {
    let e = embedder();
    assert!(matches!(
        e.embed(&["fine", ""]),
        Err(Error::Tokenizer(TokenizerError::EmptyText { index: 1 }))
    ));
    assert!(matches!(
        e.embed(&[]),
        Err(Error::Tokenizer(TokenizerError::EmptyBatch))
    ));
    let long = "word ".repeat(600);
    assert!(matches!(
        e.embed(&[long.as_str()]),
        Err(Error::Tokenizer(TokenizerError::TooLong {
            index: 0,
            tokens: 602,
            max: 512
        }))
    ));
    let tokenizer = e
        .tokenizer()
        .clone()
        .with_length_policy(LengthPolicy::Truncate);
    let out = e.with_tokenizer(tokenizer).embed(&[long.as_str()]).unwrap();
    assert_eq!(out.batch.seq_len, 512);
    assert!(out.pooled(0).iter().all(|x| x.is_finite()));
}

/// `Embedder::load_adapter` (what `embed --adapter DIR` runs) reproduces Python PEFT's hidden
/// states for every PEFT fixture of the adapters crate.
#[test]
fn peft_adapters_embed_like_peft() {
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lora-bert-adapters/tests/fixtures/peft"
    );
    let mut e = embedder();
    let plain_pooled = {
        let out = e.embed(&["Paris"]).unwrap();
        out.pooled(0).to_vec()
    };
    for name in [
        "key-dense-r2",
        "qv-last2-rslora",
        "regex-r2",
        "lora-bert-made",
    ] {
        let dir = std::path::Path::new(fixtures).join(name);
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        e.load_adapter(name, &dir).unwrap();
        let texts: Vec<&str> = expected["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let out = e.embed(&texts).unwrap();
        for (i, rows) in expected["last_hidden_state"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let ids: Vec<u32> = expected["input_ids"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let enc = &out.batch.encodings[i];
            assert_eq!(enc.ids, ids[..enc.ids.len()], "{name}: tokens of text {i}");
            for (t, ours) in out.token_states(i).take(enc.ids.len()).enumerate() {
                let theirs = f32s(&rows[t]);
                let diff = ours
                    .iter()
                    .zip(&theirs)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(diff < 1e-4, "{name}: text {i} token {t} differs by {diff}");
            }
        }
    }
    e.use_adapter(None).unwrap();
    let again = e.embed(&["Paris"]).unwrap();
    assert_eq!(again.pooled(0), plain_pooled.as_slice());
    assert!(matches!(
        e.use_adapter(Some("nope")),
        Err(Error::Adapter(_))
    ));
}
