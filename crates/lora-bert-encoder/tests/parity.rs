//! Numerical parity with Hugging Face transformers on the real all-MiniLM-L6-v2 weights.
//!
//! The reference (tests/fixtures/all-minilm-l6-v2.golden.json) was computed by transformers
//! 5.24 / torch 2.15 in fp32; its fp32 noise is about 3e-6, so a correct encoder lands within
//! 1e-4 of every number. Inputs are the reference's own token ids, so this test checks the
//! encoder alone; the tokenizer has its own parity test.

mod common;

use common::{devices, f32s, golden, max_abs_diff, minilm_dir, u32s};
use lora_bert_encoder::{BertConfig, BertInput, BertModel, Device, Route, mean_pool};
use serde_json::Value;

const ATOL: f32 = 1e-4;

struct Rows {
    ids: Vec<Vec<u32>>,
    types: Vec<Vec<u32>>,
}

/// Right-padded `[batch, seq]` input from per-example ids.
fn padded(rows: &Rows, config: &BertConfig, device: &Device) -> BertInput {
    let seq = rows.ids.iter().map(Vec::len).max().unwrap();
    let (mut ids, mut types, mut mask) = (vec![], vec![], vec![]);
    for (row, ty) in rows.ids.iter().zip(&rows.types) {
        let pad = seq - row.len();
        ids.extend(row.iter().copied().chain(std::iter::repeat_n(0, pad)));
        types.extend(ty.iter().copied().chain(std::iter::repeat_n(0, pad)));
        mask.extend(std::iter::repeat_n(1, row.len()).chain(std::iter::repeat_n(0, pad)));
    }
    BertInput::from_ids(&ids, &types, &mask, [rows.ids.len(), seq], config, device).unwrap()
}

/// `[batch, seq, hidden]` flattened, plus shape.
fn hidden_of(model: &BertModel, input: &BertInput) -> (Vec<f32>, [usize; 3], Vec<f32>) {
    let out = model.forward(input, &Route::Base).unwrap();
    let shape = out.last_hidden_state.dims();
    let pooled = mean_pool(out.last_hidden_state.clone(), input.attention_mask.clone());
    (
        out.last_hidden_state
            .into_data()
            .try_into_vec::<f32>()
            .unwrap(),
        shape,
        pooled.into_data().try_into_vec::<f32>().unwrap(),
    )
}

fn sentences(g: &Value) -> &Vec<Value> {
    g["sentences"].as_array().unwrap()
}

/// The reference's token ids and types of every golden sentence.
fn golden_rows(g: &Value) -> Rows {
    Rows {
        ids: sentences(g).iter().map(|s| u32s(&s["input_ids"])).collect(),
        types: sentences(g)
            .iter()
            .map(|s| u32s(&s["token_type_ids"]))
            .collect(),
    }
}

fn check_sentence(
    name: &str,
    s: &Value,
    row: usize,
    hidden: &[f32],
    shape: [usize; 3],
    pooled: &[f32],
) {
    let [_, seq, width] = shape;
    let n = s["input_ids"].as_array().unwrap().len();
    let first8 = s["last_hidden_state_first8"].as_array().unwrap();
    let norms = f32s(&s["last_hidden_state_token_l2norm"]);
    assert_eq!(first8.len(), n);
    let mut worst = 0f32;
    for t in 0..n {
        let h = &hidden[(row * seq + t) * width..(row * seq + t + 1) * width];
        worst = worst.max(max_abs_diff(&h[..8], &f32s(&first8[t])));
        let norm = h.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - norms[t]).abs() < ATOL * norms[t].max(1.0),
            "{name}: token {t} norm {norm} vs {}",
            norms[t]
        );
    }
    assert!(
        worst < ATOL,
        "{name}: sentence {row}: hidden differs by {worst}"
    );

    let p = &pooled[row * width..(row + 1) * width];
    let d = max_abs_diff(&p[..16], &f32s(&s["mean_pooled_first16"]));
    assert!(d < ATOL, "{name}: sentence {row}: pooled differs by {d}");
    let norm = p.iter().map(|x| x * x).sum::<f32>().sqrt();
    let want = s["mean_pooled_l2norm"].as_f64().unwrap() as f32;
    assert!(
        (norm - want).abs() < ATOL,
        "{name}: pooled norm {norm} vs {want}"
    );
    let normalized: Vec<f32> = p[..16].iter().map(|x| x / norm).collect();
    let d = max_abs_diff(&normalized, &f32s(&s["mean_pooled_normalized_first16"]));
    assert!(d < ATOL, "{name}: normalized pooled differs by {d}");
}

#[test]
fn padded_batch_matches_transformers_on_every_backend() {
    let g = golden();
    let dir = minilm_dir();
    let rows = golden_rows(&g);
    for (backend, device) in devices() {
        let (model, report) = BertModel::load(&dir, &device).unwrap();
        assert!(report.unexpected.is_empty(), "{:?}", report.unexpected);
        let input = padded(&rows, model.config(), &device);
        let (hidden, shape, pooled) = hidden_of(&model, &input);
        for (row, s) in sentences(&g).iter().enumerate() {
            check_sentence(backend.name(), s, row, &hidden, shape, &pooled);
        }
    }
}

#[test]
fn single_sentences_match_the_padded_batch() {
    let g = golden();
    let dir = minilm_dir();
    let all = golden_rows(&g);
    for (backend, device) in devices() {
        let (model, _) = BertModel::load(&dir, &device).unwrap();
        let (batch_hidden, [_, seq, width], _) =
            hidden_of(&model, &padded(&all, model.config(), &device));
        for (row, s) in sentences(&g).iter().enumerate() {
            let one = Rows {
                ids: vec![all.ids[row].clone()],
                types: vec![all.types[row].clone()],
            };
            let (hidden, shape, pooled) = hidden_of(&model, &padded(&one, model.config(), &device));
            check_sentence(backend.name(), s, 0, &hidden, shape, &pooled);
            let n = all.ids[row].len();
            let in_batch = &batch_hidden[row * seq * width..(row * seq + n) * width];
            let d = max_abs_diff(&hidden, in_batch);
            assert!(
                d < 1e-5,
                "{backend}: sentence {row}: batch vs single differ by {d}"
            );
        }
    }
}

#[test]
fn sentence_pair_uses_token_types() {
    let g = golden();
    let pair = &g["pair_example"];
    let dir = minilm_dir();
    let types = u32s(&pair["token_type_ids"]);
    assert!(types.contains(&1));
    let rows = Rows {
        ids: vec![u32s(&pair["input_ids"])],
        types: vec![types.clone()],
    };
    for (backend, device) in devices() {
        let (model, _) = BertModel::load(&dir, &device).unwrap();
        let (hidden, [_, _, width], _) = hidden_of(&model, &padded(&rows, model.config(), &device));
        let want = pair["last_hidden_state_first8"].as_array().unwrap();
        assert_eq!(want.len(), types.len());
        for (t, w) in want.iter().enumerate() {
            let d = max_abs_diff(&hidden[t * width..t * width + 8], &f32s(w));
            assert!(d < ATOL, "{backend}: pair token {t} differs by {d}");
        }
        // With every token type forced to 0 the second segment must change: the types matter.
        let zeros = Rows {
            ids: rows.ids.clone(),
            types: vec![vec![0; types.len()]],
        };
        let (other, _, _) = hidden_of(&model, &padded(&zeros, model.config(), &device));
        assert!(max_abs_diff(&hidden, &other) > 1e-2);
    }
}

#[test]
fn all_hidden_states_end_with_the_last_one() {
    let g = golden();
    let (backend, device) = devices().remove(0);
    let (model, _) = BertModel::load(minilm_dir(), &device).unwrap();
    let s = &sentences(&g)[0];
    let rows = Rows {
        ids: vec![u32s(&s["input_ids"])],
        types: vec![u32s(&s["token_type_ids"])],
    };
    let input = padded(&rows, model.config(), &device);
    let out = model.forward_all(&input, &Route::Base).unwrap();
    assert_eq!(
        out.hidden_states.len(),
        model.config().num_hidden_layers + 1
    );
    let last = out
        .hidden_states
        .last()
        .unwrap()
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let want = out
        .last_hidden_state
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(last, want, "{backend}");

    // The checkpoint carries pooler weights: pooled = tanh(W · h[CLS] + b), recomputed here on
    // the host from the HF-layout weights.
    let pooled = out
        .pooler_output
        .expect("all-MiniLM-L6-v2 has a pooler")
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let tensors = model.hf_tensors();
    let (shape, w) = &tensors["pooler.dense.weight"];
    let (_, b) = &tensors["pooler.dense.bias"];
    let width = shape[1];
    let cls = &want[..width];
    for (o, got) in pooled.iter().enumerate() {
        let z: f32 = w[o * width..(o + 1) * width]
            .iter()
            .zip(cls)
            .map(|(a, x)| a * x)
            .sum::<f32>()
            + b[o];
        assert!(
            (z.tanh() - got).abs() < 1e-5,
            "pooler dim {o}: {got} vs {}",
            z.tanh()
        );
    }
}
