//! Hostile input for every reader of this crate: `config.json` (BERT and MPNet), safetensors
//! checkpoints (header, length prefix, dtypes, shapes, offsets, values), `vocab.txt` and
//! `tokenizer.json`. Generated inputs (valid files, mutated) must give a typed error or a
//! valid value, never a panic, and the call must allocate no more than a bound set by the
//! input's size; the committed corpus in `tests/corpus/` pins the outcome of named cases.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lora_bert_encoder::checkpoint::CheckpointError;
use lora_bert_encoder::device::{self, Backend, Device};
use lora_bert_encoder::{
    BertConfig, BertModel, BertTokenizer, ConfigError, MAX_PARAMETERS, MpnetConfig, MpnetModel,
    TokenizerError,
};
use lora_bert_testkit::alloc::{Counting, MIB, peak_of, serial};
use lora_bert_testkit::corpus::{assert_every_file_has_a_case, file_names};
use lora_bert_testkit::mutate::{
    apply_byte_edits, apply_field_edits, byte_edits, field_edits, header_edits, mutate_safetensors,
    prefix,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// The counting allocator bounds what each call allocates (see lora_bert_testkit::alloc).
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn cpu() -> Device {
    device::device(Backend::default_cpu().unwrap()).unwrap()
}

fn tiny_config_json() -> Map<String, Value> {
    let Value::Object(m) = json!({
        "vocab_size": 12, "hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 8, "max_position_embeddings": 8, "type_vocab_size": 2,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "position_embedding_type": "absolute", "model_type": "bert"
    }) else {
        unreachable!()
    };
    m
}

fn tiny_config() -> BertConfig {
    BertConfig::from_json_str(&Value::Object(tiny_config_json()).to_string()).unwrap()
}

/// A valid checkpoint of [`tiny_config`] with a pooler, as `save_safetensors` writes it.
fn tiny_checkpoint() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        BertModel::init(&tiny_config(), true, &cpu())
            .save_safetensors(&path)
            .unwrap();
        std::fs::read(path).unwrap()
    })
}

fn corpus(parts: &[&str]) -> PathBuf {
    let mut path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    for p in parts {
        path.push(p);
    }
    path
}

/// Writes `bytes` to a fresh file named `name` and calls `f` with its path.
fn with_file<T>(name: &str, bytes: &[u8], f: impl FnOnce(&Path) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    f(&path)
}

// ---------------------------------------------------------------------------------------------
// Invariants of a value that was accepted

/// Parameters of an encoder of these sizes, computed in u128 (no overflow).
fn parameters(rows: &[usize], hidden: usize, ff: usize, layers: usize) -> u128 {
    let (h, f) = (hidden as u128, ff as u128);
    let embeddings: u128 = rows.iter().map(|&r| r as u128 * h).sum();
    embeddings + layers as u128 * (4 * (h * h + h) + 2 * h * f + f + 5 * h)
}

fn check_bert_config(c: &BertConfig) {
    for size in [
        c.vocab_size,
        c.hidden_size,
        c.num_attention_heads,
        c.intermediate_size,
        c.max_position_embeddings,
        c.type_vocab_size,
    ] {
        assert!(size > 0, "{c:?}");
    }
    assert_eq!(c.hidden_size % c.num_attention_heads, 0, "{c:?}");
    assert!((c.pad_token_id as usize) < c.vocab_size, "{c:?}");
    assert!((0.0..1.0).contains(&c.hidden_dropout_prob), "{c:?}");
    assert!(
        (0.0..1.0).contains(&c.attention_probs_dropout_prob),
        "{c:?}"
    );
    assert!(
        c.layer_norm_eps > 0.0 && c.layer_norm_eps.is_finite(),
        "{c:?}"
    );
    assert!(
        c.initializer_range.is_finite() && c.initializer_range >= 0.0,
        "{c:?}"
    );
    let rows = [c.vocab_size, c.max_position_embeddings, c.type_vocab_size];
    let n = parameters(
        &rows,
        c.hidden_size,
        c.intermediate_size,
        c.num_hidden_layers,
    );
    assert!(n <= MAX_PARAMETERS, "{n} parameters accepted: {c:?}");
}

/// A loaded model's weights all have the config's shapes and are finite.
fn check_model(model: &BertModel, config: &BertConfig) {
    assert_eq!(&model.config, config);
    assert_eq!(model.encoder.layer.len(), config.num_hidden_layers);
    let h = config.hidden_size;
    for (name, (shape, values)) in model.hf_tensors() {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
        assert!(values.iter().all(|v| v.is_finite()), "{name} not finite");
        if name == "embeddings.word_embeddings.weight" {
            assert_eq!(shape, [config.vocab_size, h]);
        }
    }
}

/// The errors a checkpoint given as bytes may give (no I/O, the config already valid).
fn is_file_error(e: &CheckpointError) -> bool {
    matches!(
        e,
        CheckpointError::Corrupt { .. }
            | CheckpointError::Missing { .. }
            | CheckpointError::Shape { .. }
            | CheckpointError::Dtype { .. }
            | CheckpointError::NonFinite { .. }
    )
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: lora_bert_testkit::cases(192), ..ProptestConfig::default() })]

    /// A mutated BERT config.json is a typed error or a config that passes every check; when
    /// it is valid, loading the tiny checkpoint under it fails small (missing or mis-shaped
    /// tensors are never allocated at the size the config asks for) or gives a valid model.
    #[test]
    fn bert_config_json(edits in field_edits(), bytes in byte_edits()) {
        let _serial = serial();
        let mut object = tiny_config_json();
        apply_field_edits(&mut object, &edits);
        let mut text = Value::Object(object).to_string().into_bytes();
        apply_byte_edits(&mut text, &bytes);
        let (result, peak) = with_file("config.json", &text, |path| {
            peak_of(|| BertConfig::from_file(path))
        });
        prop_assert!(peak < 64 * 1024 + 64 * text.len(), "{peak} bytes for {} bytes", text.len());
        let config = match result {
            Ok(config) => config,
            Err(ConfigError::Io { source, .. }) => {
                // Only invalid UTF-8: the file exists.
                prop_assert_eq!(source.kind(), std::io::ErrorKind::InvalidData);
                return Ok(());
            }
            Err(ConfigError::Json { line, column, .. }) => {
                prop_assert!(line >= 1 && column <= text.len() + 1);
                return Ok(());
            }
            Err(ConfigError::Invalid { field, message, .. }) => {
                prop_assert!(!field.is_empty() && !message.is_empty());
                return Ok(());
            }
        };
        check_bert_config(&config);
        let device = cpu();
        let (loaded, peak) = peak_of(|| {
            BertModel::load_safetensors_bytes(tiny_checkpoint(), "t".as_ref(), &config, &device)
        });
        prop_assert!(peak < 8 * MIB, "{peak} bytes loading under {config:?}");
        match loaded {
            Ok((model, _)) => check_model(&model, &config),
            Err(e) => prop_assert!(
                matches!(e, CheckpointError::Missing { .. } | CheckpointError::Shape { .. }),
                "{e}"
            ),
        }
        // A valid config of a small model can be initialised afresh.
        let rows = [config.vocab_size, config.max_position_embeddings, config.type_vocab_size];
        if parameters(&rows, config.hidden_size, config.intermediate_size, config.num_hidden_layers) < 100_000 {
            let model = BertModel::init(&config, true, &device);
            prop_assert_eq!(model.encoder.layer.len(), config.num_hidden_layers);
        }
    }

    /// The same for MPNet's config.json (its committed tiny fixture, mutated).
    #[test]
    fn mpnet_config_json(edits in field_edits(), bytes in byte_edits()) {
        let _serial = serial();
        let fixture = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mpnet-tiny/config.json"),
        ).unwrap();
        let Value::Object(mut object) = serde_json::from_str(&fixture).unwrap() else {
            unreachable!()
        };
        apply_field_edits(&mut object, &edits);
        let mut text = Value::Object(object).to_string().into_bytes();
        apply_byte_edits(&mut text, &bytes);
        let (result, peak) = peak_of(|| match std::str::from_utf8(&text) {
            Ok(s) => Some(MpnetConfig::from_json_str(s)),
            Err(_) => None,
        });
        prop_assert!(peak < 64 * 1024 + 64 * text.len());
        if let Some(Ok(c)) = result {
            prop_assert!(c.vocab_size > 0 && c.hidden_size % c.num_attention_heads == 0);
            prop_assert!(c.max_position_embeddings > c.pad_token_id as usize + 1);
            prop_assert!(c.layer_norm_eps > 0.0 && c.layer_norm_eps.is_finite());
            prop_assert!(c.initializer_range.is_finite() && c.initializer_range >= 0.0);
            let n = parameters(
                &[c.vocab_size, c.max_position_embeddings],
                c.hidden_size,
                c.intermediate_size,
                c.num_hidden_layers,
            );
            prop_assert!(n <= MAX_PARAMETERS);
        }
    }

    /// A mutated BERT checkpoint (header fields, length prefix, bytes) is a typed error naming
    /// the file, or a model whose every weight has the config's shape and is finite; loading
    /// allocates a small multiple of the file's size.
    #[test]
    fn bert_safetensors(
        header in header_edits(),
        prefix in prefix(),
        bytes in byte_edits(),
    ) {
        let _serial = serial();
        let file = mutate_safetensors(tiny_checkpoint(), &header, &prefix, &bytes);
        let config = tiny_config();
        let device = cpu();
        let (loaded, peak) = peak_of(|| {
            BertModel::load_safetensors_bytes(&file, "m.safetensors".as_ref(), &config, &device)
        });
        prop_assert!(peak < 2 * MIB + 16 * file.len(), "{peak} bytes for {} bytes", file.len());
        match loaded {
            Ok((model, report)) => {
                check_model(&model, &config);
                prop_assert!(report.unused_encoder_tensors().is_empty() || !report.unexpected.is_empty());
            }
            Err(e) => {
                prop_assert!(is_file_error(&e), "{e}");
                prop_assert!(e.to_string().contains("m.safetensors"), "{e}");
            }
        }
    }

    /// The same for MPNet, from its committed tiny checkpoint.
    #[test]
    fn mpnet_safetensors(
        header in header_edits(),
        prefix in prefix(),
        bytes in byte_edits(),
    ) {
        let _serial = serial();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mpnet-tiny");
        let original = std::fs::read(dir.join("model.safetensors")).unwrap();
        let config = MpnetConfig::from_file(dir.join("config.json")).unwrap();
        let file = mutate_safetensors(&original, &header, &prefix, &bytes);
        let device = cpu();
        let (loaded, peak) = peak_of(|| {
            MpnetModel::load_safetensors_bytes(&file, "m.safetensors".as_ref(), &config, &device)
        });
        prop_assert!(peak < 2 * MIB + 16 * file.len(), "{peak} bytes for {} bytes", file.len());
        if let Err(e) = loaded {
            prop_assert!(is_file_error(&e), "{e}");
        }
    }

    /// A `vocab.txt` of random lines (the three special tokens sometimes present) builds a
    /// tokenizer or is a `Load` error; a built tokenizer encodes text or refuses it typed.
    #[test]
    fn vocab_txt(
        lines in prop::collection::vec(
            prop_oneof![
                Just("[CLS]".to_owned()),
                Just("[SEP]".to_owned()),
                Just("[UNK]".to_owned()),
                Just("[PAD]".to_owned()),
                Just("##".to_owned()),
                Just(String::new()),
                "\\PC{0,6}",
            ],
            0..24,
        ),
        raw in prop::collection::vec(any::<u8>(), 0..4),
        lowercase in any::<bool>(),
        text in "\\PC{0,40}",
    ) {
        let _serial = serial();
        let mut bytes = lines.join("\n").into_bytes();
        bytes.extend_from_slice(&raw);
        let (built, peak) = with_file("vocab.txt", &bytes, |path| {
            peak_of(|| BertTokenizer::from_vocab(path, lowercase))
        });
        prop_assert!(peak < 4 * MIB + 256 * bytes.len(), "{peak} bytes");
        match built {
            Ok(tokenizer) => match tokenizer.encode(&text) {
                Ok(encodings) => {
                    for e in encodings {
                        prop_assert!(e.ids.iter().all(|&id| tokenizer.id_to_token(id).is_some()));
                    }
                }
                Err(e) => prop_assert!(
                    matches!(
                        e,
                        TokenizerError::EmptyText { .. }
                            | TokenizerError::TooLong { .. }
                            | TokenizerError::Encode { .. }
                    ),
                    "{e}"
                ),
            },
            Err(e) => prop_assert!(matches!(e, TokenizerError::Load { .. }), "{e}"),
        }
    }

    /// A mutated `tokenizer.json` (written from a valid tokenizer) loads or is a `Load` error.
    #[test]
    fn tokenizer_json(edits in field_edits(), inner in field_edits(), bytes in byte_edits()) {
        let _serial = serial();
        let Value::Object(mut object) = serde_json::from_str(tiny_tokenizer_json()).unwrap() else {
            unreachable!()
        };
        // Edit the top level and the model (vocabulary, unknown token, prefixes).
        if let Some(Value::Object(model)) = object.get_mut("model") {
            apply_field_edits(model, &inner);
        }
        apply_field_edits(&mut object, &edits);
        let mut text = Value::Object(object).to_string().into_bytes();
        apply_byte_edits(&mut text, &bytes);
        let (built, peak) = with_file("tokenizer.json", &text, |path| {
            peak_of(|| BertTokenizer::from_file(path))
        });
        prop_assert!(peak < 4 * MIB + 64 * text.len(), "{peak} bytes");
        match built {
            Ok(tokenizer) => {
                if let Ok(encodings) = tokenizer.encode("Hello, wörld [SEP] x") {
                    prop_assert!(!encodings.is_empty());
                }
            }
            Err(e) => prop_assert!(matches!(e, TokenizerError::Load { .. }), "{e}"),
        }
    }
}

/// A tokenizer.json made by `BertTokenizer::from_vocab` over a tiny vocabulary.
fn tiny_tokenizer_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n,\nw\n##ö\n##rld\nx\n";
        with_file("vocab.txt", vocab.as_bytes(), |path| {
            BertTokenizer::from_vocab(path, true)
                .unwrap()
                .inner()
                .to_string(false)
                .unwrap()
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Corpus

/// What loading a corpus file must give.
#[derive(Debug)]
enum Expect {
    Ok,
    Json,
    Io,
    Invalid(&'static str),
}

fn check_config(result: Result<BertConfig, ConfigError>, expect: &Expect, name: &str) {
    match (expect, &result) {
        (Expect::Ok, Ok(c)) => check_bert_config(c),
        (Expect::Json, Err(ConfigError::Json { .. })) => {}
        (Expect::Io, Err(ConfigError::Io { .. })) => {}
        (Expect::Invalid(field), Err(ConfigError::Invalid { field: f, .. })) if f == field => {}
        _ => panic!("{name}: expected {expect:?}, got {result:?}"),
    }
}

/// Every file of `tests/corpus/config`, with the outcome it must have. The file names say why.
#[test]
fn corpus_config_json() {
    let _serial = serial();
    let cases = [
        ("layers-1e18.json", Expect::Invalid("num_hidden_layers")),
        ("vocab-1e12.json", Expect::Invalid("vocab_size")),
        ("vocab-u64-max.json", Expect::Invalid("vocab_size")),
        ("hidden-zero.json", Expect::Invalid("hidden_size")),
        (
            "heads-do-not-divide.json",
            Expect::Invalid("num_attention_heads"),
        ),
        ("layers-negative.json", Expect::Json),
        ("layers-float.json", Expect::Json),
        ("layers-string.json", Expect::Json),
        ("dropout-one.json", Expect::Invalid("hidden_dropout_prob")),
        ("eps-zero.json", Expect::Invalid("layer_norm_eps")),
        (
            "init-range-negative.json",
            Expect::Invalid("initializer_range"),
        ),
        ("pad-outside-vocab.json", Expect::Invalid("pad_token_id")),
        ("model-type-gpt2.json", Expect::Invalid("model_type")),
        ("nan-literal.json", Expect::Json),
        ("truncated.json", Expect::Json),
        ("not-an-object.json", Expect::Json),
        ("nested-deep.json", Expect::Json),
        ("empty.json", Expect::Json),
        ("invalid-utf8.json", Expect::Io),
        ("unknown-fields.json", Expect::Ok),
    ];
    let dir = corpus(&["config"]);
    assert_every_file_has_a_case(&dir, cases.iter().map(|c| c.0));
    for (name, expect) in &cases {
        let (result, peak) = peak_of(|| BertConfig::from_file(dir.join(name)));
        assert!(peak < MIB, "{name}: {peak} bytes");
        check_config(result, expect, name);
    }
}

/// What a corpus checkpoint's error must be.
type Expected = fn(&CheckpointError) -> bool;

/// A file that is not a safetensors file, or whose header does not fit its bytes.
fn corrupt(e: &CheckpointError) -> bool {
    matches!(e, CheckpointError::Corrupt { .. })
}

/// Every file of `tests/corpus/safetensors`, loaded under the tiny config.
#[test]
fn corpus_safetensors() {
    let _serial = serial();
    let cases: [(&str, Expected); 12] = [
        ("empty.safetensors", corrupt),
        ("prefix-only.safetensors", corrupt),
        ("header-len-u64-max.safetensors", corrupt),
        ("header-len-beyond-file.safetensors", corrupt),
        ("header-not-json.safetensors", corrupt),
        ("shape-overflows.safetensors", corrupt),
        ("offsets-overlap.safetensors", corrupt),
        ("offsets-past-end.safetensors", corrupt),
        (
            "no-tensors.safetensors",
            |e| matches!(e, CheckpointError::Missing { names, .. } if names.len() <= 33),
        ),
        (
            "word-embeddings-i32.safetensors",
            |e| matches!(e, CheckpointError::Dtype { name, .. } if name == "embeddings.word_embeddings.weight"),
        ),
        (
            "word-embeddings-nan.safetensors",
            |e| matches!(e, CheckpointError::NonFinite { name, .. } if name == "embeddings.word_embeddings.weight"),
        ),
        ("word-embeddings-transposed.safetensors", |e| {
            matches!(e, CheckpointError::Shape { name, expected, .. }
                if name == "embeddings.word_embeddings.weight" && expected == &[12, 4])
        }),
    ];
    let dir = corpus(&["safetensors"]);
    assert_every_file_has_a_case(
        &dir,
        cases.iter().map(|c| c.0).chain(["valid-tiny.safetensors"]),
    );
    let config = tiny_config();
    let device = cpu();
    for (name, expected) in cases {
        let (result, peak) =
            peak_of(|| BertModel::load_safetensors(dir.join(name), &config, &device));
        assert!(peak < 2 * MIB, "{name}: {peak} bytes");
        match result {
            Ok(_) => panic!("{name}: loaded"),
            Err(e) => {
                assert!(expected(&e), "{name}: {e:?}");
                assert!(e.to_string().contains(name), "{name}: {e}");
            }
        }
    }
    // The valid file the others were cut from, under a config asking for 10^6 layers of the
    // same width: refused after listing 32 missing tensors, with a few MiB at most.
    let valid = dir.join("valid-tiny.safetensors");
    let (loaded, _) = BertModel::load_safetensors(&valid, &config, &device).unwrap();
    check_model(&loaded, &config);
    let mut deep = config.clone();
    deep.num_hidden_layers = 1_000_000;
    let (result, peak) = peak_of(|| BertModel::load_safetensors(&valid, &deep, &device));
    assert!(peak < 8 * MIB, "{peak} bytes");
    assert!(
        matches!(&result, Err(CheckpointError::Missing { names, .. }) if names.len() == 33),
        "{result:?}"
    );
}

/// Every file of `tests/corpus/tokenizer`: a `Load` error naming the file, never a panic.
#[test]
fn corpus_tokenizer_json() {
    let _serial = serial();
    let dir = corpus(&["tokenizer"]);
    let names = file_names(&dir);
    assert_eq!(
        names,
        [
            "empty-object.json",
            "invalid-utf8-in-decoder.json",
            "lone-surrogate-in-decoder.json",
            "not-json.json",
            "truncated-in-decoder.json"
        ]
    );
    for name in names {
        let err = BertTokenizer::from_file(dir.join(&name)).unwrap_err();
        assert!(
            matches!(&err, TokenizerError::Load { path, .. } if path.ends_with(&name)),
            "{name}: {err:?}"
        );
    }
}
